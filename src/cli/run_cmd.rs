//! `kdgrid run` on this machine: trains what the store lacks with a progress display, then
//! prints the summary table, the study's sentences and where the tables are.

use super::{Cli, ComputeArgs, Failure, Jobs, load_plan, progress};
use crate::report;
use crate::sweep;
use crate::train::Backend;
use std::path::Path;

/// Runs the sweep of `manifest` with `jobs` stages at once.
pub(super) fn run(
    cli: &Cli,
    manifest: &Path,
    compute: &ComputeArgs,
    jobs: Jobs,
    quiet: bool,
    retry_failed: bool,
) -> Result<(), Failure> {
    let (plan, provenance) = load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
    let backend = Backend::new(plan.compute).map_err(|e| Failure {
        report: e.into(),
        code: 2,
    })?;
    let options = sweep::Options {
        jobs: jobs.resolve(),
        retry_failed,
    };
    let mut display = progress::Display::new(quiet);
    if matches!(jobs, Jobs::Auto) && !quiet {
        println!(
            "--jobs auto: up to {} stages at once ({} threads each)",
            options.jobs,
            backend.threads()
        );
    }
    let outcome = sweep::run(
        &plan,
        &cli.results,
        &backend,
        options,
        &provenance,
        &mut |e| display.event(e),
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
