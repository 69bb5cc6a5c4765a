//! The default container of a `sagemaker` deployment: the Hugging Face LLM
//! container (TGI) at a pinned version, its image URI per region as the
//! `sagemaker` Python SDK computes it (`image_uris.retrieve("huggingface-llm")`),
//! from the table that package ships, copied into `data/` (a test compares
//! the copy with the package).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The table, embedded.
pub const TABLE: &str = include_str!("../../data/huggingface-llm-images.json");

#[derive(Debug, Deserialize)]
struct Table {
    repository: String,
    tag: String,
    registries: BTreeMap<String, String>,
}

/// The image URI for `region`, or `None` where the container is not published.
pub fn default_image(region: &str) -> Option<String> {
    let t: Table = serde_json::from_str(TABLE).ok()?;
    let account = t.registries.get(region)?;
    // China regions live under their own DNS suffix.
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Some(format!(
        "{account}.dkr.ecr.{region}.{suffix}/{}:{}",
        t.repository, t.tag
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_uris_as_the_sagemaker_sdk_builds_them() {
        assert_eq!(
            default_image("us-west-2").as_deref(),
            Some("763104351884.dkr.ecr.us-west-2.amazonaws.com/huggingface-pytorch-tgi-inference:2.3.0-tgi2.2.0-gpu-py310-cu121-ubuntu22.04-v2.0")
        );
        assert!(default_image("cn-north-1")
            .unwrap()
            .contains(".amazonaws.com.cn/"));
        assert_eq!(default_image("mars-1"), None);
    }
}
