//! `report.html` renders in headless Chromium: a screenshot is taken and
//! the DOM Chromium built holds the plots' SVG paths with data. Needs
//! `chromium` (Debian's package; `.ci/run` installs it); skips without it
//! unless SERVEBENCH_REQUIRE_PEERS=1.

mod support;

use std::path::Path;
use std::process::Command;

use support::{csv_2023, import_2023};

fn chromium() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var("SERVEBENCH_REQUIRE_PEERS").as_deref() != Ok("1"),
            "chromium is missing (apt-get install -y chromium)"
        );
        eprintln!("skipping: no chromium");
    }
    found
}

#[test]
fn report_html_renders_with_its_plots() {
    let Some(browser) = chromium() else { return };
    let Some(csv) = csv_2023() else { return };
    let out = import_2023(&csv, "chromium");
    let url = format!("file://{}", out.join("report.html").display());
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
    ];
    let png = out.join("report.png");
    let shot = Command::new(browser)
        .args(flags)
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,4000")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // A blank 1280x4000 page compresses to a few KB; tables and plots do not.
    assert!(
        bytes.len() > 50_000,
        "screenshot of {} bytes looks blank",
        bytes.len()
    );
    let dom = Command::new(browser)
        .args(flags)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    let drawn = dom
        .split("<path ")
        .skip(1)
        .filter(|p| p.contains("d=\"M") && p.contains(" L"))
        .count();
    // 3 line plots x 12 deployments, plus the Pareto front.
    assert!(drawn >= 30, "{drawn} drawn paths");
    let _ = std::fs::remove_dir_all(&out);
}
