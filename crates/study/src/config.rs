//! `study.toml`: deployments and load settings, parsed and checked before
//! anything runs. Every error names the file, the line and the reason
//! (`toml`'s spans for syntax, types and values; the deployment's `name`
//! line for checks across fields).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use servebench_loadgen::api::sagemaker::{self, EndpointRef};
use servebench_loadgen::units::parse_duration;
use servebench_loadgen::workload::{DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT};
use servebench_loadgen::{Api, Slo};
use toml::Spanned;

use crate::error::{line_of, toml_error, Result, StudyError};

/// The embedded default study.
pub const DEFAULT_STUDY: &str = include_str!("../default_study.toml");

/// Weight types `servebench serve --quantize` accepts.
pub const QUANTIZE: [&str; 5] = ["q4_0", "q4_1", "q8_0", "f16", "f32"];

/// A duration as written (`"12s"`), checked when read.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationText {
    pub text: String,
    pub value: Duration,
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let value = parse_duration(&text).map_err(serde::de::Error::custom)?;
        Ok(Self { text, value })
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl DurationText {
    fn secs(text: &str) -> Self {
        Self {
            text: text.to_string(),
            value: parse_duration(text).unwrap_or_default(),
        }
    }
}

/// Closed-loop concurrencies, at least one, each at least 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Levels(pub Vec<u32>);

impl<'de> Deserialize<'de> for Levels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Vec::<u32>::deserialize(d)?;
        if v.is_empty() || v.contains(&0) {
            return Err(serde::de::Error::custom(
                "levels must list at least one concurrency, each at least 1",
            ));
        }
        Ok(Self(v))
    }
}

/// An objective as written (`"ttft_ms<=500"`), checked when read.
#[derive(Debug, Clone, PartialEq)]
pub struct SloText(pub Slo);

impl<'de> Deserialize<'de> for SloText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<Slo>()
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
    }
}

impl Serialize for SloText {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// Load and workload settings: once at the top (`[load]`), overridable per
/// deployment (`[deployment.load]`). Absent values take the 2023 study's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSettings {
    pub levels: Option<Levels>,
    /// Measured window per level.
    pub duration: Option<DurationText>,
    /// Requests per level (with or instead of `duration`).
    pub requests: Option<u64>,
    pub warmup: Option<u32>,
    pub pause: Option<DurationText>,
    /// Per request.
    pub timeout: Option<DurationText>,
    pub slo: Option<Vec<SloText>>,
    pub prompt: Option<String>,
    pub max_new_tokens: Option<u32>,
    pub ignore_eos: Option<bool>,
    pub stream: Option<bool>,
}

impl LoadSettings {
    /// `self` where set, else `base`.
    fn over(&self, base: &LoadSettings) -> LoadSettings {
        macro_rules! pick {
            ($($f:ident),*) => { LoadSettings { $($f: self.$f.clone().or_else(|| base.$f.clone())),* } };
        }
        pick!(
            levels,
            duration,
            requests,
            warmup,
            pause,
            timeout,
            slo,
            prompt,
            max_new_tokens,
            ignore_eos,
            stream
        )
    }

    /// The 2023 study's protocol (k6 constant VUs 1/5/10/20, 90 s, 2 warm-up
    /// requests, 10 s pause, non-streaming, 50 new tokens).
    pub fn study_2023() -> Self {
        Self {
            levels: Some(Levels(vec![1, 5, 10, 20])),
            duration: None,
            requests: None,
            warmup: Some(2),
            pause: Some(DurationText::secs("10s")),
            timeout: Some(DurationText::secs("60s")),
            slo: Some(Vec::new()),
            prompt: Some(DEFAULT_PROMPT.to_string()),
            max_new_tokens: Some(DEFAULT_MAX_NEW_TOKENS),
            ignore_eos: Some(false),
            stream: Some(false),
        }
    }

    fn resolve(&self) -> Plan {
        let d = Self::study_2023();
        let s = self.over(&d);
        // 90 s, the study's window, unless only a request count was given.
        let duration = match (&s.duration, s.requests) {
            (None, None) => Some(Duration::from_secs(90)),
            (d, _) => d.as_ref().map(|d| d.value),
        };
        Plan {
            levels: s.levels.map(|l| l.0).unwrap_or_default(),
            duration,
            requests: s.requests,
            warmup: s.warmup.unwrap_or(2),
            pause: s.pause.map(|p| p.value).unwrap_or_default(),
            timeout: s.timeout.map_or(Duration::from_secs(60), |t| t.value),
            slo: s.slo.unwrap_or_default().into_iter().map(|s| s.0).collect(),
            prompt: s.prompt.unwrap_or_default(),
            max_new_tokens: s.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
            ignore_eos: s.ignore_eos.unwrap_or(false),
            stream: s.stream.unwrap_or(false),
        }
    }
}

/// One deployment as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub name: Spanned<String>,
    /// `local` or `remote`.
    pub kind: String,
    /// Local: a GGUF path, `smollm2`, or `preset:NAME` (a `make-model`
    /// preset, written once into the output folder). Remote: the model's name.
    pub model: Option<String>,
    /// The model's name in reports (default: `model`).
    pub label: Option<String>,
    /// Local: `--quantize`; remote: a free-text description for reports.
    pub quantize: Option<String>,
    /// Local: the server's `--threads`.
    pub threads: Option<u32>,
    /// The instance it runs on, as named in the price catalog. Local default: `cpu-<threads>`.
    pub instance: Option<String>,
    /// Local: more `servebench serve` flags.
    #[serde(default)]
    pub server_args: Vec<String>,
    /// Remote: the endpoint's base URL, or `sagemaker://NAME?region=R` for a
    /// SageMaker endpoint (requests signed with the standard AWS credentials).
    pub url: Option<String>,
    /// Remote: tgi, openai-completions, openai-chat or sagemaker (local servers speak TGI).
    pub api: Option<String>,
    /// Remote: the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// SageMaker: the container image (default: the Hugging Face LLM
    /// container for the region, `sagemaker::image`).
    pub image: Option<String>,
    /// SageMaker: the container's environment (`SM_NUM_GPUS`,
    /// `HF_MODEL_QUANTIZE`, `MAX_TOTAL_TOKENS`, ...).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// SageMaker: the execution role SageMaker assumes to pull the model.
    pub role_arn: Option<String>,
    /// SageMaker: instances behind the endpoint (default 1).
    pub instance_count: Option<u32>,
    /// SageMaker: the region (default: the AWS settings' region).
    pub region: Option<String>,
    pub load: Option<LoadSettings>,
}

/// A study file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStudy {
    pub name: Option<String>,
    #[serde(default)]
    pub load: LoadSettings,
    #[serde(default)]
    pub deployment: Vec<RawDeployment>,
}

/// How a deployment is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `servebench serve` started by the study on a free loopback port.
    Local {
        model: String,
        quantize: Option<String>,
        threads: u32,
        server_args: Vec<String>,
    },
    /// An endpoint someone else runs.
    Remote {
        url: String,
        api: Api,
        api_key_env: Option<String>,
    },
    /// A SageMaker real-time endpoint the study creates and deletes.
    Sagemaker {
        /// A Hub id or an `s3://` model artifact.
        model: String,
        /// `None`: the Hugging Face LLM container of the region.
        image: Option<String>,
        env: Vec<(String, String)>,
        role_arn: String,
        instance_count: u32,
        region: Option<String>,
    },
}

/// Settings of one deployment's runs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub levels: Vec<u32>,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub warmup: u32,
    pub pause: Duration,
    pub timeout: Duration,
    pub slo: Vec<Slo>,
    pub prompt: String,
    pub max_new_tokens: u32,
    pub ignore_eos: bool,
    pub stream: bool,
}

/// One checked deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub name: String,
    /// The model's name in reports.
    pub model: String,
    /// The weight type in reports.
    pub quantization: String,
    pub instance: String,
    pub target: Target,
    pub plan: Plan,
}

/// A checked study.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    pub name: String,
    pub deployments: Vec<Deployment>,
    /// The file as parsed, for writing back the resolved `study.toml`.
    pub raw: RawStudy,
}

impl StudyConfig {
    /// Parses and checks `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let raw: RawStudy = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let err = |span: std::ops::Range<usize>, reason: String| StudyError::Config {
            file: file.to_string(),
            line: line_of(text, span.start),
            reason,
        };
        if raw.deployment.is_empty() {
            return Err(StudyError::Config {
                file: file.to_string(),
                line: 1,
                reason: "no [[deployment]]: a study needs at least one".into(),
            });
        }
        let mut names = HashSet::new();
        let mut deployments = Vec::new();
        for d in &raw.deployment {
            let name = d.name.get_ref().clone();
            let bad = |reason: String| err(d.name.span(), format!("deployment `{name}`: {reason}"));
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(bad(
                    "names use letters, digits, `-`, `_` and `.` only (they become folder names)"
                        .into(),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(bad("the name is used twice".into()));
            }
            let plan = d.load.clone().unwrap_or_default().over(&raw.load).resolve();
            if plan.duration.is_none() && plan.requests.is_none() {
                return Err(bad("give load.duration and/or load.requests".into()));
            }
            let sagemaker_only = [
                ("image", d.image.is_some()),
                ("env", !d.env.is_empty()),
                ("role_arn", d.role_arn.is_some()),
                ("instance_count", d.instance_count.is_some()),
                ("region", d.region.is_some()),
            ];
            if d.kind != "sagemaker" {
                if let Some((field, _)) = sagemaker_only.iter().find(|(_, set)| *set) {
                    return Err(bad(format!("`{field}` is for sagemaker deployments")));
                }
            }
            let (target, instance, quantization) = match d.kind.as_str() {
                "sagemaker" => {
                    for (field, set) in [
                        ("url", d.url.is_some()),
                        ("api", d.api.is_some()),
                        ("api_key_env", d.api_key_env.is_some()),
                        ("threads", d.threads.is_some()),
                        ("server_args", !d.server_args.is_empty()),
                    ] {
                        if set {
                            return Err(bad(format!(
                                "`{field}` does not apply to sagemaker deployments"
                            )));
                        }
                    }
                    let need = |field: &str, what: &str| {
                        bad(format!("a sagemaker deployment needs `{field}` ({what})"))
                    };
                    let model = d.model.clone().ok_or_else(|| {
                        need("model", "a Hugging Face Hub id or an s3:// model artifact")
                    })?;
                    let instance = d
                        .instance
                        .clone()
                        .ok_or_else(|| need("instance", "e.g. ml.g5.2xlarge"))?;
                    if !instance.starts_with("ml.") {
                        return Err(bad(format!(
                            "instance `{instance}`: SageMaker instance types start with `ml.`"
                        )));
                    }
                    let role_arn = d
                        .role_arn
                        .clone()
                        .ok_or_else(|| need("role_arn", "the execution role SageMaker assumes"))?;
                    let instance_count = d.instance_count.unwrap_or(1);
                    if instance_count == 0 {
                        return Err(bad("instance_count must be at least 1".into()));
                    }
                    let quantization = d
                        .quantize
                        .clone()
                        .or_else(|| d.env.get("HF_MODEL_QUANTIZE").cloned())
                        .unwrap_or_else(|| "none".into());
                    (
                        Target::Sagemaker {
                            model,
                            image: d.image.clone(),
                            env: d.env.clone().into_iter().collect(),
                            role_arn,
                            instance_count,
                            region: d.region.clone(),
                        },
                        instance,
                        quantization,
                    )
                }
                "local" => {
                    for (field, set) in [
                        ("url", d.url.is_some()),
                        ("api", d.api.is_some()),
                        ("api_key_env", d.api_key_env.is_some()),
                    ] {
                        if set {
                            return Err(bad(format!("`{field}` is for remote deployments")));
                        }
                    }
                    let model = d.model.clone().ok_or_else(|| bad("a local deployment needs `model` (a GGUF path, `smollm2` or `preset:NAME`)".into()))?;
                    if let Some(q) = &d.quantize {
                        if !QUANTIZE.contains(&q.as_str()) {
                            return Err(bad(format!(
                                "quantize `{q}`: one of {}",
                                QUANTIZE.join(", ")
                            )));
                        }
                    }
                    let threads = d.threads.unwrap_or(1);
                    if threads == 0 {
                        return Err(bad("threads must be at least 1".into()));
                    }
                    let instance = d
                        .instance
                        .clone()
                        .unwrap_or_else(|| format!("cpu-{threads}"));
                    let quantization = d.quantize.clone().unwrap_or_else(|| "as shipped".into());
                    (
                        Target::Local {
                            model,
                            quantize: d.quantize.clone(),
                            threads,
                            server_args: d.server_args.clone(),
                        },
                        instance,
                        quantization,
                    )
                }
                "remote" => {
                    if d.threads.is_some() || !d.server_args.is_empty() {
                        return Err(bad(
                            "`threads` and `server_args` are for local deployments".into()
                        ));
                    }
                    let url = d
                        .url
                        .clone()
                        .ok_or_else(|| bad("a remote deployment needs `url`".into()))?;
                    let sagemaker = url.starts_with(sagemaker::SCHEME);
                    if !(url.starts_with("http://") || url.starts_with("https://") || sagemaker) {
                        return Err(bad(format!(
                            "url `{url}` must start with http://, https:// or sagemaker://"
                        )));
                    }
                    let default_api = if sagemaker { "sagemaker" } else { "tgi" };
                    let api_text = d.api.clone().unwrap_or_else(|| default_api.into());
                    let api = Api::parse(&api_text).ok_or_else(|| {
                        bad(format!(
                            "api `{api_text}`: one of tgi, openai-completions, openai-chat, sagemaker"
                        ))
                    })?;
                    if sagemaker != (api == Api::Sagemaker) {
                        return Err(bad(
                            "a sagemaker:// url goes with api = \"sagemaker\", and only it".into(),
                        ));
                    }
                    if sagemaker {
                        EndpointRef::parse(&url).map_err(|e| bad(e.to_string()))?;
                    }
                    let instance = d.instance.clone().ok_or_else(|| {
                        bad(
                            "a remote deployment needs `instance` (what it runs on, for its price)"
                                .into(),
                        )
                    })?;
                    let quantization = d.quantize.clone().unwrap_or_else(|| "unknown".into());
                    (
                        Target::Remote {
                            url,
                            api,
                            api_key_env: d.api_key_env.clone(),
                        },
                        instance,
                        quantization,
                    )
                }
                other => return Err(bad(format!("kind `{other}`: local, remote or sagemaker"))),
            };
            let model = d
                .label
                .clone()
                .or_else(|| d.model.clone())
                .unwrap_or_else(|| name.clone());
            deployments.push(Deployment {
                name,
                model,
                quantization,
                instance,
                target,
                plan,
            });
        }
        Ok(Self {
            name: raw
                .name
                .clone()
                .unwrap_or_else(|| "servebench study".into()),
            deployments,
            raw,
        })
    }

    /// Reads and checks a study file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(StudyError::io(path))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// The embedded default study.
    pub fn embedded() -> Self {
        Self::parse("default_study.toml", DEFAULT_STUDY).expect("the embedded default study parses")
    }

    /// `--quick`: the same deployments at 1, 5 and 20 concurrent requests,
    /// 1 s windows, no warm-up and no pause (under 2 minutes on 2 cores).
    pub fn quick(&mut self) {
        let quick = LoadSettings {
            levels: Some(Levels(vec![1, 5, 20])),
            duration: Some(DurationText::secs("1s")),
            requests: None,
            warmup: Some(0),
            pause: Some(DurationText::secs("0s")),
            ..LoadSettings::default()
        };
        for (d, raw) in self
            .deployments
            .iter_mut()
            .zip(self.raw.deployment.iter_mut())
        {
            let merged = quick.over(&raw.load.clone().unwrap_or_default().over(&self.raw.load));
            d.plan = merged.resolve();
            raw.load = Some(merged);
        }
    }

    /// The study as run: every deployment with its settings filled in, in
    /// the study.toml format (it can be run again as it is).
    pub fn resolved_toml(&self) -> String {
        let mut raw = self.raw.clone();
        let base = raw.load.over(&LoadSettings::study_2023());
        for d in &mut raw.deployment {
            d.load = Some(d.load.clone().unwrap_or_default().over(&base));
        }
        raw.load = base;
        toml::to_string(&raw)
            .unwrap_or_else(|e| format!("# could not write the resolved study: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        StudyConfig::parse("s.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn the_default_study_has_24_runs() {
        let s = StudyConfig::embedded();
        assert_eq!(s.deployments.len(), 6);
        let runs: usize = s.deployments.iter().map(|d| d.plan.levels.len()).sum();
        assert_eq!(runs, 24);
        let d = &s.deployments[1];
        assert_eq!(
            (
                d.instance.as_str(),
                d.quantization.as_str(),
                d.model.as_str()
            ),
            ("cpu-2", "q4_1", "SmolLM2-135M")
        );
        assert_eq!(d.plan.max_new_tokens, 50);
        assert!(d.plan.ignore_eos && !d.plan.stream);
        assert_eq!(d.plan.duration, Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_resolved_study_parses_back() {
        let mut s = StudyConfig::embedded();
        s.quick();
        let again = StudyConfig::parse("study.toml", &s.resolved_toml()).unwrap();
        assert_eq!(again.deployments, s.deployments);
        assert_eq!(again.deployments[0].plan.levels, [1, 5, 20]);
    }

    #[test]
    fn per_deployment_settings_override_the_top() {
        let s = StudyConfig::parse(
            "s.toml",
            "[load]\nlevels = [1, 2]\nduration = \"5s\"\n\n[[deployment]]\nname = \"a\"\nkind = \"local\"\nmodel = \"m.gguf\"\nthreads = 2\n[deployment.load]\nlevels = [3]\n\n[[deployment]]\nname = \"b\"\nkind = \"remote\"\nurl = \"http://h:1\"\napi = \"openai-chat\"\ninstance = \"ml.g5.2xlarge\"\n",
        )
        .unwrap();
        assert_eq!(s.deployments[0].plan.levels, [3]);
        assert_eq!(s.deployments[0].instance, "cpu-2");
        assert_eq!(s.deployments[1].plan.levels, [1, 2]);
        assert_eq!(s.deployments[1].plan.duration, Some(Duration::from_secs(5)));
        assert!(matches!(
            s.deployments[1].target,
            Target::Remote {
                api: Api::OpenaiChat,
                ..
            }
        ));
    }

    #[test]
    fn the_2023_study_on_sagemaker_in_the_docs_parses() {
        let s = StudyConfig::parse(
            "docs/sagemaker-2023-study.toml",
            include_str!("../../../docs/sagemaker-2023-study.toml"),
        )
        .unwrap();
        assert_eq!(s.deployments.len(), 15);
        let gptq = s
            .deployments
            .iter()
            .filter(|d| d.quantization == "gptq")
            .count();
        assert_eq!(gptq, 6);
        assert!(s.deployments.iter().all(
            |d| matches!(d.target, Target::Sagemaker { .. }) && d.plan.levels == [1, 5, 10, 20]
        ));
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let dep = "[[deployment]]\nname = \"a\"\nkind = \"local\"\nmodel = \"m\"\n";
        // Syntax.
        assert!(
            err("name = \n").starts_with("s.toml:1: "),
            "{}",
            err("name = \n")
        );
        // An unknown key, on its own line.
        let e = err(&format!("{dep}colour = 1\n"));
        assert!(e.starts_with("s.toml:5: ") && e.contains("colour"), "{e}");
        // A value that does not parse: the duration's line.
        let e = err(&format!("[load]\nlevels = [1]\nduration = \"soon\"\n{dep}"));
        assert!(e.starts_with("s.toml:3: "), "{e}");
        let e = err(&format!("[load]\nlevels = [0]\n{dep}"));
        assert!(
            e.starts_with("s.toml:2: ") && e.contains("at least 1"),
            "{e}"
        );
        let e = err(&format!("[load]\nslo = [\"ttft<=1\"]\n{dep}"));
        assert!(e.starts_with("s.toml:2: "), "{e}");
        // Checks across fields point at the deployment's name.
        let e = err(&format!("{dep}\n[[deployment]]\nname = \"b\"\nkind = \"local\"\nquantize = \"q3\"\nmodel = \"m\"\n"));
        assert!(
            e.starts_with("s.toml:7: ") && e.contains("quantize `q3`"),
            "{e}"
        );
        let e = err(&format!(
            "{dep}\n[[deployment]]\nname = \"a\"\nkind = \"local\"\nmodel = \"m\"\n"
        ));
        assert!(e.starts_with("s.toml:7: ") && e.contains("twice"), "{e}");
        let e = err("[[deployment]]\nname = \"r\"\nkind = \"remote\"\nurl = \"http://x\"\n");
        assert!(e.starts_with("s.toml:2: ") && e.contains("instance"), "{e}");
        let sm = "[[deployment]]\nname = \"r\"\nkind = \"remote\"\ninstance = \"ml.g5.2xlarge\"\n";
        let ok = StudyConfig::parse(
            "s.toml",
            &format!("{sm}url = \"sagemaker://llama?region=us-west-2\"\n"),
        )
        .unwrap();
        assert!(matches!(
            ok.deployments[0].target,
            Target::Remote {
                api: Api::Sagemaker,
                ..
            }
        ));
        let e = err(&format!("{sm}url = \"sagemaker://llama\"\napi = \"tgi\"\n"));
        assert!(e.contains("api = \"sagemaker\""), "{e}");
        let e = err(&format!("{sm}url = \"sagemaker://llama?zone=1\"\n"));
        assert!(e.contains("unknown query"), "{e}");
        let smd = "[[deployment]]\nname = \"s\"\nkind = \"sagemaker\"\nmodel = \"meta-llama/Llama-2-7b-hf\"\ninstance = \"ml.g5.2xlarge\"\n";
        let e = err(smd);
        assert!(e.contains("role_arn"), "{e}");
        let ok = StudyConfig::parse(
            "s.toml",
            &format!("{smd}role_arn = \"arn:aws:iam::1:role/r\"\n[deployment.env]\nHF_MODEL_QUANTIZE = \"gptq\"\n"),
        )
        .unwrap();
        assert_eq!(ok.deployments[0].quantization, "gptq");
        assert!(matches!(
            ok.deployments[0].target,
            Target::Sagemaker {
                instance_count: 1,
                ..
            }
        ));
        let e = err(&format!("{dep}role_arn = \"x\"\n"));
        assert!(e.contains("`role_arn` is for sagemaker"), "{e}");
        let e = err("[[deployment]]\nname = \"r\"\nkind = \"cloud\"\n");
        assert!(e.contains("kind `cloud`"), "{e}");
        assert!(err("name = \"x\"\n").contains("no [[deployment]]"));
    }
}
