//! The hardware catalog (`hardware.toml` at the repository root, beside
//! `prices.toml`): per instance its accelerators (count, memory, memory
//! bandwidth, FP16 and INT8 throughput, the interconnect between them), and
//! this machine's CPU for local `cpu-N` deployments. Every figure carries
//! its source. [`Catalog::hardware`] is the one lookup.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{PredictError, Result};

/// The repository's catalog, embedded so that `predict` runs from anywhere.
pub const DEFAULT_CATALOG: &str = include_str!("../../../hardware.toml");

/// One figure and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    pub value: f64,
    pub source: String,
}

/// An accelerator model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accelerator {
    pub memory_gib: Figure,
    pub memory_bandwidth_gb_s: Figure,
    pub fp16_tflops: Figure,
    pub int8_tops: Figure,
}

/// How an instance's accelerators exchange tensor-parallel all-reduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interconnect {
    /// The host's PCIe fabric, shared: an all-reduce's traffic crosses it
    /// once per peer, so its time grows with the number of devices.
    Pcie,
    /// A switch with a link per device (NVSwitch): ring all-reduce time.
    Nvlink,
}

impl Interconnect {
    /// The name used for its fitted factors.
    pub fn name(self) -> &'static str {
        match self {
            Interconnect::Pcie => "pcie",
            Interconnect::Nvlink => "nvlink",
        }
    }
}

/// An instance type with accelerators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceEntry {
    /// A key of `[accelerators]`.
    pub accelerator: String,
    pub count: Figure,
    pub interconnect: Interconnect,
    pub interconnect_gb_s: Figure,
}

/// This machine's CPU (`servebench probe` measures the figures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuEntry {
    pub name: String,
    pub memory_gib: Figure,
    pub cores: Figure,
    /// What one core streams alone.
    pub memory_bandwidth_gb_s_per_core: Figure,
    /// What all cores stream together.
    pub memory_bandwidth_gb_s: Figure,
    pub matmul_gflops_per_core: Figure,
}

/// A parsed `hardware.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub accelerators: BTreeMap<String, Accelerator>,
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceEntry>,
    pub cpu: Option<CpuEntry>,
}

/// The family local CPU deployments belong to (one set of fitted factors).
pub const CPU_FAMILY: &str = "cpu";

/// One deployment target resolved to the numbers the model uses: per
/// device, with `devices` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Hardware {
    pub instance: String,
    /// Accelerator name, or [`CPU_FAMILY`]: the key of per-family factors.
    pub family: String,
    pub devices: u32,
    pub memory_bytes_per_device: f64,
    pub bandwidth_bytes_s: f64,
    pub fp16_flops: f64,
    pub int8_ops: f64,
    /// `None` for a single device (CPU or one GPU cannot be split).
    pub interconnect: Option<(Interconnect, f64)>,
    /// CPU deployments: the cores (threads) the compute figure adds up.
    pub cores: Option<u32>,
}

impl Hardware {
    /// Local CPU deployments run servebench, accelerators TGI: the key of
    /// the per-software factors.
    pub fn software(&self) -> &'static str {
        if self.family == CPU_FAMILY {
            "servebench"
        } else {
            "tgi"
        }
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl Catalog {
    /// Parses catalog text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let c: Catalog = toml::from_str(text).map_err(|e| PredictError::Catalog {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
        for (name, i) in &c.instances {
            if !c.accelerators.contains_key(&i.accelerator) {
                return Err(PredictError::Catalog {
                    file: file.to_string(),
                    reason: format!(
                        "instance `{name}` names accelerator `{}`, which [accelerators] lacks",
                        i.accelerator
                    ),
                });
            }
        }
        Ok(c)
    }

    /// The embedded repository catalog.
    pub fn embedded() -> Self {
        Self::parse("hardware.toml", DEFAULT_CATALOG).expect("the embedded hardware.toml parses")
    }

    /// Reads a catalog file (`--hardware FILE`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| PredictError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    fn known(&self) -> String {
        let mut names: Vec<String> = self.instances.keys().cloned().collect();
        if self.cpu.is_some() {
            names.push("cpu-N".into());
        }
        names.join(", ")
    }

    /// `instance` resolved: a named instance, or `cpu-N` from the CPU entry.
    pub fn hardware(&self, instance: &str) -> Result<Hardware> {
        let unknown = || PredictError::UnknownInstance(instance.to_string(), self.known());
        if let Some(i) = self.instances.get(instance) {
            let a = self.accelerators.get(&i.accelerator).ok_or_else(unknown)?;
            let devices = i.count.value.max(1.0) as u32;
            return Ok(Hardware {
                instance: instance.to_string(),
                family: i.accelerator.clone(),
                devices,
                memory_bytes_per_device: a.memory_gib.value * GIB,
                bandwidth_bytes_s: a.memory_bandwidth_gb_s.value * 1e9,
                fp16_flops: a.fp16_tflops.value * 1e12,
                int8_ops: a.int8_tops.value * 1e12,
                interconnect: (devices > 1)
                    .then_some((i.interconnect, i.interconnect_gb_s.value * 1e9)),
                cores: None,
            });
        }
        let n: u32 = instance
            .strip_prefix("cpu-")
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .ok_or_else(unknown)?;
        let cpu = self.cpu.as_ref().ok_or_else(unknown)?;
        let cores = f64::from(n);
        let bandwidth = (cores * cpu.memory_bandwidth_gb_s_per_core.value).min(
            cpu.memory_bandwidth_gb_s
                .value
                .max(cpu.memory_bandwidth_gb_s_per_core.value),
        );
        let flops = cores * cpu.matmul_gflops_per_core.value * 1e9;
        Ok(Hardware {
            instance: instance.to_string(),
            family: CPU_FAMILY.to_string(),
            devices: 1,
            memory_bytes_per_device: cpu.memory_gib.value * GIB,
            bandwidth_bytes_s: bandwidth * 1e9,
            fp16_flops: flops,
            int8_ops: flops,
            interconnect: None,
            cores: Some(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_priced_instance_is_described_with_sources() {
        let c = Catalog::embedded();
        for name in [
            "ml.g5.2xlarge",
            "ml.g5.12xlarge",
            "ml.g5.48xlarge",
            "ml.p4d.24xlarge",
        ] {
            let h = c.hardware(name).unwrap();
            assert!(
                h.bandwidth_bytes_s > 1e11 && h.fp16_flops > 1e13,
                "{name}: {h:?}"
            );
        }
        assert_eq!(c.hardware("ml.g5.12xlarge").unwrap().devices, 4);
        assert!(c.hardware("ml.g5.2xlarge").unwrap().interconnect.is_none());
        for a in c.accelerators.values() {
            for f in [
                &a.memory_gib,
                &a.memory_bandwidth_gb_s,
                &a.fp16_tflops,
                &a.int8_tops,
            ] {
                assert!(!f.source.is_empty());
            }
        }
        let e = c.hardware("ml.x.large").unwrap_err().to_string();
        assert!(e.contains("ml.g5.2xlarge"), "{e}");
        assert!(c.hardware("cpu-0").is_err());
    }

    #[test]
    fn cpu_bandwidth_grows_with_cores_up_to_the_machine() {
        let c = Catalog::embedded();
        let one = c.hardware("cpu-1").unwrap();
        let two = c.hardware("cpu-2").unwrap();
        let many = c.hardware("cpu-64").unwrap();
        assert!(two.bandwidth_bytes_s >= one.bandwidth_bytes_s);
        assert!(many.bandwidth_bytes_s <= one.bandwidth_bytes_s * 64.0);
        assert_eq!(one.software(), "servebench");
    }

    #[test]
    fn an_instance_naming_a_missing_accelerator_is_refused() {
        let text = "[instances.x]\naccelerator = \"Z\"\ncount = { value = 1, source = \"s\" }\ninterconnect = \"pcie\"\ninterconnect_gb_s = { value = 1, source = \"s\" }\n";
        let e = Catalog::parse("h.toml", text).unwrap_err().to_string();
        assert!(e.contains("`Z`"), "{e}");
    }
}
