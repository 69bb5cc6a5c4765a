//! `servebench probe`: measures this machine for predictions of local
//! `cpu-N` deployments and prints the `[cpu]` table of hardware.toml.

use std::path::PathBuf;

use anyhow::Context;
use servebench_predict::probe;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also write the table to this file (e.g. to append to a copy of
    /// hardware.toml for `servebench predict --hardware`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Readers for the many-thread memory bandwidth (default: every core),
    /// e.g. the compute threads of a benchmark it bounds.
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    eprintln!("probe: memory bandwidth (1 and all cores) and f32 matmul, a few seconds");
    let p = probe::run(a.threads);
    let date = servebench_study::runner::timestamp();
    let date = format!("{}-{}-{}", &date[0..4], &date[4..6], &date[6..8]);
    let table = p.to_toml(&probe::cpu_name(), probe::memory_gib(), &date);
    print!("{table}");
    if let Some(out) = &a.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
