//! The image table in `data/` equals the one the `sagemaker` PyPI package
//! ships, for the pinned version.

use std::process::Command;

#[path = "../../engine/tests/support/mod.rs"]
mod engine_support;

#[test]
fn the_image_table_matches_the_sagemaker_package() {
    let ours: serde_json::Value =
        serde_json::from_str(servebench_study::sagemaker::image::TABLE).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/sagemaker_images.py"
    );
    let out = Command::new("python3")
        .args([script, ours["version"].as_str().unwrap()])
        .output()
        .expect("python3 runs");
    if out.status.code() == Some(3) {
        engine_support::skip(
            "the sagemaker package is not installed (pip install --no-deps sagemaker==2.232.0)",
        );
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["repository", "tag", "registries"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
}
