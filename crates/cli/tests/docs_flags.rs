//! The docs say what the binary does: for every subcommand, the flags its
//! `--help` lists are exactly the flags of the "`servebench CMD` flags"
//! table on its page under `docs/`, and no page documents a flag that does
//! not exist.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_servebench"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// `-x` and `--long` names on clap's option lines (indented by 2 or 6
/// spaces; descriptions are indented by 10).
fn accepted(cmd: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in help(&[cmd]).lines() {
        let spec = l.trim_start();
        if !spec.starts_with('-') || l.len() - spec.len() > 6 {
            continue;
        }
        let spec = spec.split("  ").next().unwrap_or("");
        for part in spec.split(", ") {
            let name = part.split([' ', '=', '<', '[']).next().unwrap_or("");
            if name.starts_with('-') && name != "-h" && name != "--help" && name != "-V" {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// Every docs page with its text.
fn pages() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("docs/") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            out.push((name, std::fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

/// The flag names in the first cell of each row of the section headed
/// "`servebench CMD` flags", and the page it is on.
fn documented(cmd: &str) -> (String, BTreeSet<String>) {
    let heading = format!("`servebench {cmd}` flags");
    let found: Vec<(String, String)> = pages()
        .into_iter()
        .filter(|(_, t)| {
            t.lines()
                .any(|l| l.starts_with('#') && l.contains(&heading))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one docs page must have a section headed {heading}"
    );
    let (page, text) = &found[0];
    let mut names = BTreeSet::new();
    let mut inside = false;
    for l in text.lines() {
        if l.starts_with('#') {
            inside = l.contains(&heading);
            continue;
        }
        if !inside || !l.starts_with("| `") {
            continue;
        }
        let cell = l.split('|').nth(1).unwrap_or("");
        for (i, span) in cell.split('`').enumerate() {
            let name = span.split_whitespace().next().unwrap_or("");
            if i % 2 == 1 && name.starts_with('-') {
                names.insert(name.to_string());
            }
        }
    }
    (page.clone(), names)
}

#[test]
fn every_subcommand_flag_is_documented_and_nothing_else() {
    let cmds = support::subcommands();
    assert!(cmds.len() >= 9, "{cmds:?}");
    for cmd in cmds {
        let (page, docs) = documented(&cmd);
        let real = accepted(&cmd);
        let missing: Vec<_> = real.difference(&docs).collect();
        let extra: Vec<_> = docs.difference(&real).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "servebench {cmd} vs docs/{page}: undocumented {missing:?}, documented but not accepted {extra:?}"
        );
    }
}
