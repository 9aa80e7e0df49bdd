//! `kdgrid slurm status`: the job of each stage of a plan (from the recorded submissions) joined
//! with what Slurm says of it (`squeue` for live jobs, `sacct` for ended ones where accounting
//! is on).

use super::submissions;
use crate::plan::StageId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A stage's latest Slurm job.
#[derive(Debug, Clone)]
pub struct StageJob {
    /// `jobid_task` of its array task.
    pub job: String,
    /// Slurm's state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, ...), when Slurm still knows
    /// the job.
    pub state: Option<String>,
    /// The node running it, or why it waits, or how it ended.
    pub detail: Option<String>,
    /// The task's log.
    pub log: PathBuf,
}

/// The latest job of each stage submitted from `experiment_dir`, with Slurm's view of it.
pub fn status(experiment_dir: &Path) -> HashMap<StageId, StageJob> {
    let mut jobs: HashMap<StageId, StageJob> = HashMap::new();
    let mut ids = Vec::new();
    for s in submissions(experiment_dir) {
        for level in &s.levels {
            let Some(job) = &level.job else { continue };
            ids.push(job.clone());
            for (task, stage) in level.stages.iter().enumerate() {
                let job = format!("{job}_{task}");
                let log = experiment_dir
                    .join("stages")
                    .join(stage.as_str())
                    .join(format!("slurm-{job}.log"));
                jobs.insert(
                    stage.clone(),
                    StageJob {
                        job,
                        state: None,
                        detail: None,
                        log,
                    },
                );
            }
        }
    }
    if ids.is_empty() {
        return jobs;
    }
    let list = ids.join(",");
    let mut known = query(
        "sacct",
        &[
            "-n",
            "-P",
            "-X",
            "-o",
            "JobID,State,ExitCode,NodeList",
            "-j",
            &list,
        ],
        |f| format!("exit {} on {}", f[2], f[3]),
    );
    // Live jobs: squeue is the authority while a job is queued or running.
    known.extend(query(
        "squeue",
        &["-h", "-r", "-o", "%i|%T|%N|%r", "-j", &list],
        |f| {
            if f[2].is_empty() {
                format!("waiting: {}", f[3])
            } else {
                format!("on {}", f[2])
            }
        },
    ));
    for job in jobs.values_mut() {
        if let Some((state, detail)) = known.get(&job.job) {
            job.state = Some(state.clone());
            job.detail = Some(detail.clone());
        }
    }
    jobs
}

/// Runs a Slurm query printing `|`-separated fields (id, state, ...) per line; nothing if the
/// program is missing or fails (e.g. `sacct` without accounting).
fn query(
    program: &str,
    args: &[&str],
    detail: impl Fn(&[&str]) -> String,
) -> HashMap<String, (String, String)> {
    let Ok(out) = Command::new(program).args(args).output() else {
        return HashMap::new();
    };
    if !out.status.success() {
        return HashMap::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            (f.len() >= 4).then(|| (f[0].to_string(), (f[1].to_string(), detail(&f))))
        })
        .collect()
}
