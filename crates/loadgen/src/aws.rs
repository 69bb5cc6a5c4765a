//! Talking to AWS as AWS's own SDKs do: credentials and region from the
//! standard chain (`aws-config`: environment, shared config and credentials
//! files with profiles, SSO, container and instance roles), endpoint URLs
//! overridable as the SDKs allow, and SigV4 signatures from `aws-sigv4`.

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
pub use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use crate::client::error_chain;
use crate::error::{LoadgenError, Result};

/// What signs requests for one service in one region.
#[derive(Debug, Clone)]
pub struct AwsSigner {
    credentials: SharedCredentialsProvider,
    /// The region requests are signed for, e.g. `us-west-2`.
    pub region: String,
    /// The SigV4 service name, e.g. `sagemaker`.
    pub service: &'static str,
}

/// The standard chain's settings: credentials and, unless given, the region.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub credentials: SharedCredentialsProvider,
    pub region: String,
}

impl AwsSettings {
    /// Resolves the standard chain once; `region` (e.g. from a URL) wins
    /// over `AWS_REGION`, `AWS_DEFAULT_REGION` and the profile's region.
    pub async fn load(region: Option<&str>) -> Result<Self> {
        // rustls with ring, as reqwest uses, instead of aws-config's default
        // TLS stack (aws-lc, a C library to build).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        let config = loader.load().await;
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            LoadgenError::config(
                "region",
                "no AWS region: add `?region=us-west-2` to the URL, or set AWS_REGION, \
                 or a region in the AWS profile",
            )
        })?;
        let credentials = config.credentials_provider().ok_or_else(|| {
            LoadgenError::config("AWS credentials", "the standard chain has no provider")
        })?;
        Ok(Self {
            credentials,
            region,
        })
    }

    /// A signer for `service` with these settings.
    pub fn signer(&self, service: &'static str) -> AwsSigner {
        AwsSigner {
            credentials: self.credentials.clone(),
            region: self.region.clone(),
            service,
        }
    }
}

impl AwsSigner {
    /// A signer with fixed credentials (tests, and callers that resolved them).
    pub fn with_credentials(credentials: Credentials, region: &str, service: &'static str) -> Self {
        Self {
            credentials: SharedCredentialsProvider::new(credentials),
            region: region.to_string(),
            service,
        }
    }

    /// The current credentials (cached by the chain; refreshed when they expire).
    pub async fn credentials(&self) -> Result<Credentials> {
        self.credentials.provide_credentials().await.map_err(|e| {
            LoadgenError::config(
                "AWS credentials",
                format!(
                    "{}; configure them as the AWS CLI does (aws configure, AWS_PROFILE, \
                     or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                    error_chain(&e)
                ),
            )
        })
    }

    /// The headers that sign a request (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` with temporary credentials), for `headers`
    /// exactly as they will be sent (the host comes from `url`).
    pub fn sign(
        &self,
        credentials: &Credentials,
        time: SystemTime,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>> {
        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| LoadgenError::config("AWS signing", e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| LoadgenError::config("AWS signing", format!("{url}: {e}")))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| LoadgenError::config("AWS signing", e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

/// The endpoint URL for `service_env` (e.g. `SAGEMAKER_RUNTIME`): an explicit
/// one first, then `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, as
/// the AWS SDKs resolve them; `None` means AWS's own endpoint.
pub fn endpoint_url(explicit: Option<&str>, service_env: &str) -> Option<String> {
    let from_env = |name: String| std::env::var(name).ok().filter(|v| !v.is_empty());
    explicit
        .map(str::to_string)
        .or_else(|| from_env(format!("AWS_ENDPOINT_URL_{service_env}")))
        .or_else(|| from_env("AWS_ENDPOINT_URL".into()))
        .map(|u| u.trim_end_matches('/').to_string())
}
