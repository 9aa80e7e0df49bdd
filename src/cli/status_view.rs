//! `kdgrid status`: each stage of a manifest as done, failed (with its error), running (and
//! who runs it) or pending, and the totals.

use super::plan_view::ROWS_SHOWN;
use super::{Failure, kd_text};
use crate::execute::slurm::StageJob;
use crate::plan::{Plan, StageId};
use crate::store::{self, ClaimState, Lookup, Status};
use std::collections::HashMap;
use std::path::Path;

/// Prints the state of every stage of `plan` in the store under `results`; with `jobs` (from
/// `kdgrid slurm status`), each unfinished stage's Slurm job too.
pub(super) fn print_status(
    plan: &Plan,
    results: &Path,
    jobs: Option<&HashMap<StageId, StageJob>>,
    all: bool,
) -> Result<(), Failure> {
    let root = results.join(&plan.name);
    store::check_format(&root)?;
    let holder = store::holder(&root);
    let mut counts = [0usize; 5]; // done, failed, corrupt, running, pending
    println!(
        "{:<16}  {:<9}  {:>4}  {:<22}  {:<8}  detail",
        "stage", "role", "seed", "distillation", "state"
    );
    // Rows with their state's index (0: done); a big study lists what is not done first.
    let mut rows: Vec<(usize, String)> = Vec::with_capacity(plan.stages.len());
    for s in &plan.stages {
        let (state, detail, i) = match store::lookup(&root, &s.id)? {
            Lookup::Found(r) if r.status == Status::Ok => (
                "done",
                format!(
                    "test accuracy {:.4}, {}",
                    r.test_accuracy.unwrap_or(f64::NAN),
                    s.chain_label()
                ),
                0,
            ),
            Lookup::Found(r) => ("failed", r.error.unwrap_or_default(), 1),
            Lookup::Corrupt { path, message } => {
                ("corrupt", format!("`{}`: {message}", path.display()), 2)
            }
            // A claim counts while a sweep holds the store, or while its holder is alive.
            Lookup::Missing => match (&holder, store::claim_state(&root, &s.id)) {
                (_, Some(ClaimState::Live(who))) | (Some(_), Some(ClaimState::Stale(who))) => {
                    ("running", who, 3)
                }
                _ => ("pending", s.chain_label(), 4),
            },
        };
        counts[i] += 1;
        let detail = match jobs.and_then(|j| j.get(&s.id)) {
            Some(job) if i != 0 => format!("{detail}; {}", job_text(job)),
            _ => detail,
        };
        rows.push((
            i,
            format!(
                "{:<16}  {:<9}  {:>4}  {:<22}  {:<8}  {detail}",
                s.id,
                s.role.as_str(),
                s.seed,
                kd_text(s),
                state
            ),
        ));
    }
    if all || rows.len() <= ROWS_SHOWN {
        rows.iter().for_each(|(_, line)| println!("{line}"));
    } else {
        let open: Vec<&String> = rows.iter().filter(|r| r.0 != 0).map(|r| &r.1).collect();
        open.iter()
            .take(ROWS_SHOWN)
            .for_each(|line| println!("{line}"));
        println!(
            "... {} more stages not listed ({} of them done); `--all` lists every stage",
            rows.len() - open.len().min(ROWS_SHOWN),
            counts[0]
        );
    }
    println!(
        "{} stages: {} done, {} failed, {} corrupt, {} running, {} pending",
        plan.stages.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4]
    );
    match holder {
        Some(h) => println!("a run holds the store: {h}"),
        None if counts[3] + counts[4] + counts[2] + counts[1] > 0 => {
            println!("no run holds the store: `kdgrid run` trains what is pending")
        }
        None => {}
    }
    Ok(())
}

/// A stage's Slurm job as `status` shows it: id, state, where or why, and the log.
fn job_text(job: &StageJob) -> String {
    let state = job.state.as_deref().unwrap_or("unknown to Slurm now");
    let detail = job
        .detail
        .as_deref()
        .map(|d| format!(" {d}"))
        .unwrap_or_default();
    format!("job {} {state}{detail}, log {}", job.job, job.log.display())
}
