//! Deployments of kind `sagemaker`: a real-time endpoint created for the
//! study and deleted after it. [`control`] speaks the control plane,
//! [`endpoint`] runs one endpoint's life, [`image`] knows the default
//! container. Requests to the endpoint go through the load generator's
//! signed SageMaker client.

pub mod control;
pub mod endpoint;
pub mod image;

pub use control::{AwsError, ControlPlane};
pub use endpoint::{Endpoint, EndpointRecord, EndpointSpec};

/// A SageMaker name for a deployment: letters, digits and `-`, at most 63
/// characters, unique per study run (`stamp`).
pub fn resource_name(deployment: &str, stamp: &str) -> String {
    let clean: String = deployment
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let suffix = format!("-{stamp}");
    let room = 63 - "sb-".len() - suffix.len();
    let head: String = clean.chars().take(room).collect();
    format!("sb-{}{suffix}", head.trim_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_sagemakers_rules() {
        assert_eq!(resource_name("llama_2.7b", "123"), "sb-llama-2-7b-123");
        let long = resource_name(&"x".repeat(100), "20231114-221320");
        assert_eq!(long.len(), 63);
        assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
