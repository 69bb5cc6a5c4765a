//! SageMaker's control plane: the AWS JSON 1.1 protocol (`POST /` with
//! `X-Amz-Target: SageMaker.<Operation>`), signed with `aws-sigv4`. The few
//! calls a study needs are sent with reqwest rather than through the
//! generated `aws-sdk-sagemaker` crate, whose build alone would take several
//! minutes on two cores.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use servebench_loadgen::aws::AwsSigner;

/// A failed call, as one line: the call, AWS's error code and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{call}: {code}: {message}{}", advice(code))]
pub struct AwsError {
    /// The operation, e.g. `CreateEndpoint`.
    pub call: &'static str,
    /// AWS's error code (`ResourceLimitExceeded`, `AccessDeniedException`,
    /// ...), or `Http<status>` / `Network` when AWS did not say.
    pub code: String,
    pub message: String,
}

/// What the user can do about an error code.
fn advice(code: &str) -> String {
    let hint = match code {
        "ResourceLimitExceeded" => {
            "ask AWS for a higher SageMaker quota for this instance type (Service Quotas, \
             \"<instance> for endpoint usage\"), or pick another instance"
        }
        "AccessDeniedException" | "AccessDenied" => {
            "the caller needs sagemaker:CreateModel, CreateEndpointConfig, CreateEndpoint, \
             DescribeEndpoint, the three Delete calls and iam:PassRole on role_arn"
        }
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "SignatureDoesNotMatch" => {
            "check the AWS credentials (aws sts get-caller-identity) and the clock"
        }
        "ResourceInUse" => "a resource of that name exists; delete it or rename the deployment",
        "ResourceNotFound" => "the resource is gone (deleted elsewhere?)",
        "ValidationException" => "fix the deployment's fields in study.toml",
        "ThrottlingException" => "too many calls; lower --parallel",
        "Network" => "check the network and --aws-endpoint-url",
        _ => return String::new(),
    };
    format!(" ({hint})")
}

impl AwsError {
    /// Whether waiting and calling again can succeed.
    fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_str(),
            "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
        )
    }
}

/// Throttled calls are retried this many times, backing off.
const THROTTLE_RETRIES: u32 = 8;

/// The control plane of one region.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    http: reqwest::Client,
    url: String,
    signer: AwsSigner,
    /// First backoff after throttling; doubles per retry.
    pub backoff: Duration,
}

impl ControlPlane {
    /// `endpoint_url` replaces `https://api.sagemaker.{region}.amazonaws.com`.
    pub fn new(signer: AwsSigner, endpoint_url: Option<&str>) -> Result<Self, AwsError> {
        let url = endpoint_url.map_or_else(
            || format!("https://api.sagemaker.{}.amazonaws.com/", signer.region),
            |u| format!("{}/", u.trim_end_matches('/')),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| AwsError {
                call: "setup",
                code: "Network".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            url,
            signer,
            backoff: Duration::from_millis(500),
        })
    }

    /// The region calls go to.
    pub fn region(&self) -> &str {
        &self.signer.region
    }

    /// Calls `SageMaker.<call>` with `body`; throttling is answered with
    /// exponential backoff.
    pub async fn call(&self, call: &'static str, body: &Value) -> Result<Value, AwsError> {
        let mut wait = self.backoff;
        let mut tries = 0;
        loop {
            match self.call_once(call, body).await {
                Err(e) if e.is_throttling() && tries < THROTTLE_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(20));
                }
                other => return other,
            }
        }
    }

    async fn call_once(&self, call: &'static str, body: &Value) -> Result<Value, AwsError> {
        let fail = |code: String, message: String| AwsError {
            call,
            code,
            message,
        };
        let body = body.to_string();
        let target = format!("SageMaker.{call}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let credentials = self
            .signer
            .credentials()
            .await
            .map_err(|e| fail("NoCredentials".into(), e.to_string()))?;
        let signed = self
            .signer
            .sign(
                &credentials,
                SystemTime::now(),
                "POST",
                &self.url,
                &headers,
                body.as_bytes(),
            )
            .map_err(|e| fail("Signing".into(), e.to_string()))?;
        let mut req = self.http.post(&self.url).body(body);
        for (k, v) in headers.iter().copied() {
            req = req.header(k, v);
        }
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| fail("Network".into(), e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| fail("Network".into(), e.to_string()))?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        // AWS JSON errors: `__type` is `[namespace#]Code`; the message is
        // `message` or `Message`.
        let code = json
            .get("__type")
            .and_then(Value::as_str)
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
            .unwrap_or_else(|| format!("Http{}", status.as_u16()));
        let message = json
            .get("message")
            .or_else(|| json.get("Message"))
            .and_then(Value::as_str)
            .map_or_else(
                || String::from_utf8_lossy(&bytes).trim().to_string(),
                str::to_string,
            );
        Err(fail(code, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line_with_the_call_code_and_what_to_do() {
        let e = AwsError {
            call: "CreateEndpoint",
            code: "ResourceLimitExceeded".into(),
            message:
                "The account-level service limit 'ml.g5.48xlarge for endpoint usage' is 0 Instances"
                    .into(),
        };
        let text = e.to_string();
        assert!(text.starts_with("CreateEndpoint: ResourceLimitExceeded: The account-level"));
        assert!(text.contains("quota") && !text.contains('\n'), "{text}");
        let denied = AwsError {
            call: "CreateModel",
            code: "AccessDeniedException".into(),
            message: "not authorized".into(),
        };
        assert!(denied.to_string().contains("iam:PassRole"));
        assert!(AwsError {
            call: "DescribeEndpoint",
            code: "ThrottlingException".into(),
            message: String::new(),
        }
        .is_throttling());
    }
}
