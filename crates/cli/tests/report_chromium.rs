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
    check_reads_at_a_glance(&dom);
    let _ = std::fs::remove_dir_all(&out);
}

/// The text of every `<text class="CLASS" ...>` inside `svg`.
fn ticks(svg: &str, class: &str) -> Vec<String> {
    svg.split(&format!("class=\"{class}\""))
        .skip(1)
        .filter_map(|t| {
            let t = &t[t.find('>')? + 1..];
            Some(t[..t.find('<')?].to_string())
        })
        .collect()
}

/// A step or tick value of 1, 2 or 5 times a power of ten.
fn is_round(v: f64) -> bool {
    let m = v / 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().any(|r| (m - r).abs() < 1e-6)
}

/// What a reader sees first and on the plots: the answer before the tables,
/// x ticks at the measured levels, round y ticks (log where values span
/// over 10x), exact values on hover, and no Markdown syntax.
fn check_reads_at_a_glance(dom: &str) {
    assert!(!dom.contains('`'), "a backtick is rendered");
    let first_p = &dom[dom.find("<p").unwrap()..];
    assert!(
        first_p.starts_with("<p class=\"answer\">")
            && first_p.contains("For the lowest cost")
            && dom.find("class=\"answer\"") < dom.find("<table"),
        "the report does not open with the answer"
    );
    let svgs: Vec<&str> = dom.split("<svg ").skip(1).collect();
    assert_eq!(svgs.len(), 4, "3 plots against concurrency and the scatter");
    let mut log_plots = 0;
    for svg in &svgs {
        let svg = &svg[..svg.find("</svg>").unwrap()];
        assert!(svg.contains("width=\"100%\""), "plots span the page");
        if svg.contains("vs-concurrency") {
            // The 2023 study's levels, and nothing in between.
            assert_eq!(ticks(svg, "xtick"), ["1", "5", "10", "20"]);
        }
        let ys: Vec<f64> = ticks(svg, "ytick")
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        assert!(ys.len() >= 3, "{ys:?}");
        if svg.contains("data-yscale=\"log\"") {
            log_plots += 1;
            assert!(ys.iter().all(|&v| is_round(v)), "log ticks {ys:?}");
        } else {
            let step = ys[1] - ys[0];
            assert!(is_round(step), "linear step {step} of {ys:?}");
            for w in ys.windows(2) {
                assert!((w[1] - w[0] - step).abs() < 1e-9 * step.max(1.0), "{ys:?}");
            }
        }
        // Every point says its exact values on hover.
        let points = svg.matches("<circle").count();
        assert!(points > 0);
        assert_eq!(
            svg.matches("<circle").count(),
            svg.matches("<title>").count()
        );
    }
    // Cost per 1M tokens spans far more than 10x across the study: log scale.
    let cost = svgs
        .iter()
        .find(|s| s.contains("Cost to generate 1M tokens"))
        .unwrap();
    assert!(cost.contains("data-yscale=\"log\""), "cost plot is not log");
    assert!(log_plots >= 1);
}
