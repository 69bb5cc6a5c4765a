//! The price catalog (`prices.toml`): one on-demand price per instance, with
//! its region, source and date, and a per-vCPU-hour price for local `cpu-N`
//! "instances". There is one lookup, [`Catalog::price`], for every caller.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cost::UsdPerHour;
use crate::error::{toml_error, Result, StudyError};

/// The repository's catalog, embedded so that a study runs from anywhere.
pub const DEFAULT_CATALOG: &str = include_str!("../../../prices.toml");

/// Where a price comes from, carried into every priced row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub usd_per_hour: f64,
    pub region: String,
    pub source: String,
    pub date: String,
}

/// The local CPU price: `cpu-N` costs N times this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuEntry {
    pub usd_per_vcpu_hour: f64,
    pub region: String,
    pub source: String,
    pub date: String,
}

/// A resolved price for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub usd_per_hour: UsdPerHour,
    /// `source, region, date`, as the report prints it.
    pub source: String,
}

/// A parsed `prices.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub instances: BTreeMap<String, Entry>,
    pub cpu: Option<CpuEntry>,
}

impl Catalog {
    /// Parses catalog text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let bad = |name: &str, v: f64| {
            (!(v.is_finite() && v >= 0.0)).then(|| StudyError::Config {
                file: file.to_string(),
                line: text
                    .find(name)
                    .map_or(1, |o| crate::error::line_of(text, o)),
                reason: format!("price of `{name}` must be a non-negative number, got {v}"),
            })
        };
        for (name, e) in &catalog.instances {
            if let Some(err) = bad(name, e.usd_per_hour) {
                return Err(err);
            }
        }
        if let Some(err) = catalog
            .cpu
            .as_ref()
            .and_then(|c| bad("cpu", c.usd_per_vcpu_hour))
        {
            return Err(err);
        }
        Ok(catalog)
    }

    /// The embedded repository catalog.
    pub fn embedded() -> Self {
        Self::parse("prices.toml", DEFAULT_CATALOG).expect("the embedded prices.toml parses")
    }

    /// Reads a catalog file (`--prices FILE`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(StudyError::io(path))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// The price of `instance`: a named entry first, else `cpu-N` from the
    /// per-vCPU price; `None` when unknown (the run is reported unpriced).
    pub fn price(&self, instance: &str) -> Option<Price> {
        if let Some(e) = self.instances.get(instance) {
            return Some(Price {
                usd_per_hour: UsdPerHour(e.usd_per_hour),
                source: format!("{}, {}, {}", e.source, e.region, e.date),
            });
        }
        let vcpus: u32 = instance.strip_prefix("cpu-")?.parse().ok()?;
        let cpu = self.cpu.as_ref()?;
        Some(Price {
            usd_per_hour: UsdPerHour(cpu.usd_per_vcpu_hour * f64::from(vcpus)),
            source: format!(
                "{} vCPU x ${}/vCPU-h ({}, {}, {})",
                vcpus, cpu.usd_per_vcpu_hour, cpu.source, cpu.region, cpu.date
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_studys_prices_and_local_cpus() {
        let c = Catalog::embedded();
        let p = |i: &str| c.price(i).map(|p| p.usd_per_hour.0);
        assert_eq!(p("ml.g5.2xlarge"), Some(1.52));
        assert_eq!(p("ml.g5.12xlarge"), Some(7.09));
        assert_eq!(p("ml.p4d.24xlarge"), Some(37.69));
        assert_eq!(p("ml.g5.48xlarge"), Some(20.36));
        assert_eq!(p("ml.t9.nano"), None);
        // Every family a SageMaker study would pick today has a price.
        for family in [
            "ml.g5.", "ml.g6.", "ml.g6e.", "ml.p4d.", "ml.p5.", "ml.inf2.",
        ] {
            assert!(
                c.instances.keys().any(|k| k.starts_with(family)),
                "{family}"
            );
        }
        assert!(c
            .instances
            .values()
            .all(|e| !e.region.is_empty() && !e.source.is_empty() && e.date.len() >= 7));
        assert_eq!(p("cpu-1"), Some(0.044625));
        assert_eq!(p("cpu-2"), Some(0.08925));
        assert_eq!(p("cpu-x"), None);
        assert!(c
            .price("ml.g5.2xlarge")
            .unwrap()
            .source
            .contains("us-west-2"));
    }

    #[test]
    fn bad_catalogs_name_the_line() {
        let text = "[instances.a]\nusd_per_hour = 1\nregion = \"r\"\nsource = \"s\"\ndate = \"d\"\ncolour = 3\n";
        let e = Catalog::parse("p.toml", text).unwrap_err().to_string();
        assert!(e.starts_with("p.toml:6: "), "{e}");
        let text =
            "[instances.a]\nusd_per_hour = -1\nregion = \"r\"\nsource = \"s\"\ndate = \"d\"\n";
        let e = Catalog::parse("p.toml", text).unwrap_err().to_string();
        assert!(
            e.starts_with("p.toml:1: ") && e.contains("non-negative"),
            "{e}"
        );
    }
}
