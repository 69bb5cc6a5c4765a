//! One SageMaker endpoint's life: model, endpoint config and endpoint
//! created, `InService` awaited, then all three deleted — also when
//! creation fails half-way (what exists is deleted, newest first).

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::control::{AwsError, ControlPlane};

/// What to create, resolved from a `kind = "sagemaker"` deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSpec {
    /// Model, endpoint config and endpoint all take this name.
    pub name: String,
    pub image: String,
    /// A Hub id (the container reads `HF_MODEL_ID`) or an `s3://` artifact
    /// (the model's `ModelDataUrl`).
    pub model: String,
    pub env: Vec<(String, String)>,
    pub role_arn: String,
    pub instance: String,
    pub instance_count: u32,
}

impl EndpointSpec {
    fn create_model_body(&self) -> Value {
        let mut env: serde_json::Map<String, Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut container = json!({ "Image": self.image });
        if self.model.starts_with("s3://") {
            container["ModelDataUrl"] = self.model.clone().into();
        } else {
            env.entry("HF_MODEL_ID")
                .or_insert_with(|| self.model.clone().into());
        }
        container["Environment"] = Value::Object(env);
        json!({
            "ModelName": self.name,
            "ExecutionRoleArn": self.role_arn,
            "PrimaryContainer": container,
        })
    }
}

/// What a study records about an endpoint it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub endpoint_name: String,
    pub image: String,
    pub instance: String,
    pub instance_count: u32,
    pub region: String,
    /// When CreateEndpoint was sent (ms since the Unix epoch).
    pub created_at_unix_ms: u64,
    /// When DeleteEndpoint was answered (0 while it exists or when kept).
    pub deleted_at_unix_ms: u64,
    /// Instance-hours billed: instances x (deletion - creation). AWS bills
    /// per second from launch, so this is the upper bound of the bill.
    pub billed_instance_hours: f64,
}

/// Which of the three resources exist.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Created {
    model: bool,
    config: bool,
    endpoint: bool,
}

/// A created (or half-created) endpoint; [`Self::delete`] removes it.
#[derive(Debug)]
pub struct Endpoint {
    control: ControlPlane,
    spec: EndpointSpec,
    created: Created,
    created_at: SystemTime,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How creating an endpoint failed, and what is left to delete.
#[derive(Debug)]
pub struct CreateFailure {
    pub error: String,
    /// The half-created endpoint; delete it.
    pub leftover: Endpoint,
}

impl Endpoint {
    /// Creates model, endpoint config and endpoint. On failure the caller
    /// gets what exists back, to delete.
    pub async fn create(control: ControlPlane, spec: EndpointSpec) -> Result<Self, CreateFailure> {
        let mut e = Self {
            control,
            spec,
            created: Created::default(),
            created_at: SystemTime::now(),
        };
        if let Err(err) = e.create_all().await {
            return Err(CreateFailure {
                error: err.to_string(),
                leftover: e,
            });
        }
        Ok(e)
    }

    async fn create_all(&mut self) -> Result<(), AwsError> {
        let s = &self.spec;
        self.control
            .call("CreateModel", &s.create_model_body())
            .await?;
        self.created.model = true;
        let config = json!({
            "EndpointConfigName": s.name,
            "ProductionVariants": [{
                "VariantName": "AllTraffic",
                "ModelName": s.name,
                "InitialInstanceCount": s.instance_count,
                "InstanceType": s.instance,
                // Large models take minutes to download and load.
                "ContainerStartupHealthCheckTimeoutInSeconds": 900,
            }],
        });
        self.control.call("CreateEndpointConfig", &config).await?;
        self.created.config = true;
        self.created_at = SystemTime::now();
        let endpoint = json!({ "EndpointName": s.name, "EndpointConfigName": s.name });
        self.control.call("CreateEndpoint", &endpoint).await?;
        self.created.endpoint = true;
        Ok(())
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Polls `DescribeEndpoint` every `poll` until `InService`; fails on
    /// `Failed`, after `timeout`, or when `stop` says so (Ctrl-C).
    pub async fn wait_in_service(
        &self,
        poll: Duration,
        timeout: Duration,
        stop: impl Fn() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        let mut last = String::new();
        loop {
            let d = self
                .control
                .call(
                    "DescribeEndpoint",
                    &json!({ "EndpointName": self.spec.name }),
                )
                .await
                .map_err(|e| e.to_string())?;
            let status = d
                .get("EndpointStatus")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match status.as_str() {
                "InService" => return Ok(()),
                "Failed" | "OutOfService" | "Deleting" => {
                    let why = d.get("FailureReason").and_then(Value::as_str).unwrap_or("");
                    return Err(format!(
                        "endpoint {} is {status}: {why} (see its CloudWatch logs, /aws/sagemaker/Endpoints/{})",
                        self.spec.name, self.spec.name
                    ));
                }
                _ => {}
            }
            if status != last {
                eprintln!(
                    "study: {}: endpoint {status} after {:.0} s",
                    self.spec.name,
                    start.elapsed().as_secs_f64()
                );
                last = status;
            }
            if stop() {
                return Err("interrupted while the endpoint was being created".into());
            }
            if start.elapsed() >= timeout {
                return Err(format!(
                    "endpoint {} not InService within {:.0} s (raise --endpoint-timeout)",
                    self.spec.name,
                    timeout.as_secs_f64()
                ));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Deletes whatever exists, endpoint first; returns the record and the
    /// errors of calls that failed (each one line).
    pub async fn delete(mut self) -> (EndpointRecord, Vec<String>) {
        let name = self.spec.name.clone();
        let mut errors = Vec::new();
        let calls: [(&'static str, bool, &str); 3] = [
            ("DeleteEndpoint", self.created.endpoint, "EndpointName"),
            (
                "DeleteEndpointConfig",
                self.created.config,
                "EndpointConfigName",
            ),
            ("DeleteModel", self.created.model, "ModelName"),
        ];
        let mut deleted_at = SystemTime::now();
        for (call, exists, key) in calls {
            if !exists {
                continue;
            }
            match self.control.call(call, &json!({ key: name })).await {
                Ok(_) => {}
                Err(e)
                    if e.code == "ValidationException" && e.message.contains("Could not find") => {}
                Err(e) => errors.push(e.to_string()),
            }
            if call == "DeleteEndpoint" {
                deleted_at = SystemTime::now();
            }
        }
        let record = self.record(Some(deleted_at));
        self.created = Created::default();
        (record, errors)
    }

    /// The record; `deleted_at` `None` while the endpoint is kept.
    pub fn record(&self, deleted_at: Option<SystemTime>) -> EndpointRecord {
        let hours = deleted_at.map_or(0.0, |d| {
            d.duration_since(self.created_at)
                .map_or(0.0, |x| x.as_secs_f64() / 3600.0)
        });
        EndpointRecord {
            endpoint_name: self.spec.name.clone(),
            image: self.spec.image.clone(),
            instance: self.spec.instance.clone(),
            instance_count: self.spec.instance_count,
            region: self.control.region().to_string(),
            created_at_unix_ms: if self.created.endpoint || deleted_at.is_some() {
                unix_ms(self.created_at)
            } else {
                0
            },
            deleted_at_unix_ms: deleted_at.map_or(0, unix_ms),
            billed_instance_hours: if self.created.endpoint || deleted_at.is_some() {
                hours * f64::from(self.spec.instance_count)
            } else {
                0.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(model: &str) -> EndpointSpec {
        EndpointSpec {
            name: "e".into(),
            image: "img".into(),
            model: model.into(),
            env: vec![("SM_NUM_GPUS".into(), "4".into())],
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            instance: "ml.g5.12xlarge".into(),
            instance_count: 1,
        }
    }

    #[test]
    fn hub_models_go_in_the_environment_and_s3_artifacts_in_model_data() {
        let hub = spec("meta-llama/Llama-2-7b-chat-hf").create_model_body();
        assert_eq!(
            hub["PrimaryContainer"]["Environment"]["HF_MODEL_ID"],
            "meta-llama/Llama-2-7b-chat-hf"
        );
        assert_eq!(hub["PrimaryContainer"]["Environment"]["SM_NUM_GPUS"], "4");
        assert!(hub["PrimaryContainer"].get("ModelDataUrl").is_none());
        let s3 = spec("s3://bucket/model.tar.gz").create_model_body();
        assert_eq!(
            s3["PrimaryContainer"]["ModelDataUrl"],
            "s3://bucket/model.tar.gz"
        );
        assert!(s3["PrimaryContainer"]["Environment"]
            .get("HF_MODEL_ID")
            .is_none());
    }
}
