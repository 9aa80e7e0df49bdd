//! `kdgrid run` on this machine: trains what the store lacks with a progress display, then
//! prints the summary table, the study's sentences and where the tables are.

use super::tracking::Live;
use super::{Cli, ComputeArgs, Failure, Jobs, load_plan, progress};
use crate::execute::cores;
use crate::manifest::{BackendKind, DeviceSpec};
use crate::report;
use crate::sweep;
use crate::train::Backend;
use std::path::Path;

/// How `kdgrid run` behaves.
pub(super) struct Flags<'a> {
    /// Only the summary, no per-epoch progress.
    pub(super) quiet: bool,
    /// Train failed stages again.
    pub(super) retry_failed: bool,
    /// Keep jobs × threads above the cores.
    pub(super) oversubscribe: bool,
    /// TensorBoard folder (`--tensorboard`).
    pub(super) tensorboard: Option<&'a Path>,
}

/// Runs the sweep of `manifest` with `jobs` stages at once.
pub(super) fn run(
    cli: &Cli,
    manifest: &Path,
    compute: &ComputeArgs,
    jobs: Jobs,
    flags: Flags<'_>,
) -> Result<(), Failure> {
    let (plan, provenance) = load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
    let mut jobs_now = jobs.resolve();
    let cores = cores::available();
    let c = plan.compute;
    if c.backend == BackendKind::Tch && c.device == DeviceSpec::Cpu {
        if matches!(jobs, Jobs::Auto) {
            jobs_now = cores::fitting(c.resolved_threads(), cores);
        }
        let split = cores::split(
            jobs_now,
            c.resolved_threads(),
            c.threads.is_some(),
            cores,
            flags.oversubscribe,
        );
        if let Some(w) = &split.warning {
            eprintln!("warning: {w}");
        }
        jobs_now = split.jobs;
    }
    let backend = Backend::new(plan.compute).map_err(|e| Failure {
        report: e.into(),
        code: 2,
    })?;
    let options = sweep::Options {
        jobs: jobs_now,
        retry_failed: flags.retry_failed,
    };
    let quiet = flags.quiet;
    let mut live = Live::start(flags.tensorboard, &plan, &cli.results, None);
    let mut display = progress::Display::new(quiet);
    if (matches!(jobs, Jobs::Auto) || jobs_now > 1) && !quiet {
        println!(
            "up to {} stages at once ({} threads each, {} cores)",
            options.jobs,
            backend.threads(),
            cores
        );
    }
    let outcome = sweep::run(
        &plan,
        &cli.results,
        &backend,
        options,
        &provenance,
        &mut |e| {
            live.event(&e);
            display.event(e)
        },
    );
    display.finish();
    let outcome = outcome?;
    println!("\n{}", report::summary_table(&outcome.tables));
    for (s, power) in outcome
        .tables
        .sentences
        .iter()
        .zip(&outcome.tables.power_lines)
    {
        println!("{s}");
        if let Some(p) = power {
            println!("  {p}");
        }
    }
    println!(
        "{} trained, {} reused, {} failed, {} skipped",
        outcome.trained, outcome.reused, outcome.failed, outcome.skipped
    );
    println!("results in {}:", outcome.dir.display());
    for f in &outcome.files {
        println!("  {}", f.display());
    }
    Ok(())
}
