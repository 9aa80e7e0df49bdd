//! The Slurm executor: hands a plan to Slurm as one job array per level of its DAG.
//!
//! Level 0 holds the pending stages whose teachers are done (or that have none); level k+1 the
//! stages whose teacher is in level k. Each array task runs `kdgrid run-stage` for one stage
//! against the shared results folder; level k+1 starts after level k with `afterany`, so one
//! crashed task does not hold back unrelated stages (its children fail fast, naming the missing
//! teacher, and `submit` again resubmits what is not done). A last job writes the tables.
//! Every submission is kept under `results/<experiment>/slurm/<n>/`: the scripts and `jobs.json`
//! (which `kdgrid slurm status` reads).

mod status;

pub use status::{StageJob, status};

use crate::plan::{Plan, Stage, StageId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

/// Errors of submitting to Slurm.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum SlurmError {
    /// `sbatch` (or `squeue`) could not be started.
    #[error("cannot run `{program}`: {source}")]
    #[diagnostic(
        code(kdgrid::slurm::missing),
        help("run on a Slurm login node, or see `--dry-run` for the scripts")
    )]
    Missing {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `sbatch` refused a script.
    #[error("`sbatch` refused `{}`: {message}", script.display())]
    #[diagnostic(code(kdgrid::slurm::sbatch))]
    Refused {
        /// The script.
        script: PathBuf,
        /// What sbatch said.
        message: String,
    },
    /// A submission folder could not be written or read.
    #[error("cannot access `{}`: {message}", path.display())]
    #[diagnostic(code(kdgrid::slurm::io))]
    Io {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The `sbatch` settings of every job of a submission.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (e.g. `4:00:00`).
    pub time: Option<String>,
    /// `--cpus-per-task` (also the tasks' `--threads`).
    pub cpus_per_task: usize,
    /// `--mem` (e.g. `8G`).
    pub mem: Option<String>,
    /// `--gres` (e.g. `gpu:1`).
    pub gres: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// Further `sbatch` options, passed as given (e.g. `--qos=long`).
    pub extra: Vec<String>,
}

/// How the jobs call kdgrid: the same binary, manifest, results folder, profile and compute
/// options as the submitting command, so they expand the same plan with the same stage ids.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The kdgrid binary.
    pub kdgrid: PathBuf,
    /// Folder the jobs run in.
    pub workdir: PathBuf,
    /// Global options (`--results DIR`, `--profile P`).
    pub global: Vec<String>,
    /// The manifest.
    pub manifest: PathBuf,
    /// Compute options (`--backend`, `--device`, `--threads`).
    pub compute: Vec<String>,
}

/// One job array: the stages of one level of the DAG.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Level {
    /// Stage ids, indexed by array task.
    pub stages: Vec<StageId>,
    /// The script's file name in the submission folder.
    pub script: String,
    /// Slurm's job id, once submitted.
    pub job: Option<String>,
}

/// A submission: its levels, the report job, and where it is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// `results/<experiment>/slurm/<n>`.
    pub dir: PathBuf,
    /// Job arrays, in dependency order.
    pub levels: Vec<Level>,
    /// The job that writes the tables and the report.
    pub report: Option<String>,
}

/// The pending stages of `plan` (those for which `done` is false) by level of the DAG.
pub fn levels<'a>(plan: &'a Plan, done: &dyn Fn(&StageId) -> bool) -> Vec<Vec<&'a Stage>> {
    let mut level_of: HashMap<&StageId, usize> = HashMap::new();
    let mut levels: Vec<Vec<&Stage>> = Vec::new();
    // Plan order puts teachers first.
    for stage in plan.stages.iter().filter(|s| !done(&s.id)) {
        let level = stage
            .needs()
            .filter_map(|p| level_of.get(p))
            .max()
            .map_or(0, |l| l + 1);
        level_of.insert(&stage.id, level);
        if levels.len() <= level {
            levels.resize_with(level + 1, Vec::new);
        }
        levels[level].push(stage);
    }
    levels
}

/// The next free submission folder under `experiment_dir/slurm/`.
pub fn next_dir(experiment_dir: &Path) -> PathBuf {
    let root = experiment_dir.join("slurm");
    let n = (1..)
        .find(|n| !root.join(n.to_string()).exists())
        .expect("a free number");
    root.join(n.to_string())
}

/// The scripts of a submission of `levels` into `dir` (file name, text), the report job's last.
pub fn scripts(
    experiment: &str,
    experiment_dir: &Path,
    dir: &Path,
    levels: &[Vec<&Stage>],
    call: &Invocation,
    resources: &Resources,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, stages) in levels.iter().enumerate() {
        let name = format!("level-{k}.sh");
        let mut text = header(
            &format!("kdgrid-{experiment}-L{k}"),
            &format!("{}/level-{k}-%A_%a.out", slurm_pattern(dir)),
            call,
            resources,
            resources.cpus_per_task,
        );
        text.push_str(&format!("#SBATCH --array=0-{}\n", stages.len() - 1));
        text.push_str(&format!(
            "\n# level {k} of `{experiment}`: {} stage(s), one per array task\nset -euo pipefail\nstages=(\n",
            stages.len()
        ));
        for s in stages {
            // The comment is for people; nothing in it may end the line (manifests refuse
            // control characters in model names, this holds whatever the plan says).
            let label: String = s
                .chain_label()
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            text.push_str(&format!("  {}  # {label}, seed {}\n", s.id, s.seed));
        }
        text.push_str(")\nstage=\"${stages[$SLURM_ARRAY_TASK_ID]}\"\n");
        text.push_str(&format!(
            "log={}/stages/\"$stage\"/slurm-\"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\".log\n",
            quote(&experiment_dir.display().to_string())
        ));
        text.push_str("mkdir -p \"$(dirname \"$log\")\"\n");
        text.push_str("echo \"stage $stage on $(hostname): log in $log\"\n");
        text.push_str(&format!(
            "exec {} run-stage {} --stage \"$stage\"{} >\"$log\" 2>&1\n",
            command_head(call),
            quote(&call.manifest.display().to_string()),
            compute_tail(call)
        ));
        out.push((name, text));
    }
    let mut text = header(
        &format!("kdgrid-{experiment}-report"),
        &format!("{}/report-%j.out", slurm_pattern(dir)),
        call,
        resources,
        1,
    );
    text.push_str(&format!(
        "\n# the tables and report of `{experiment}` from the store\nset -euo pipefail\nexec {} report {}{}\n",
        command_head(call),
        quote(&call.manifest.display().to_string()),
        compute_tail(call)
    ));
    out.push(("report.sh".into(), text));
    out
}

fn header(
    name: &str,
    output: &str,
    call: &Invocation,
    resources: &Resources,
    cpus: usize,
) -> String {
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        "# written by `kdgrid slurm submit`".to_string(),
        format!("#SBATCH --job-name={}", directive_word(name)),
        format!("#SBATCH --output={}", directive_word(output)),
        format!(
            "#SBATCH --chdir={}",
            directive_word(&call.workdir.display().to_string())
        ),
        format!("#SBATCH --cpus-per-task={cpus}"),
    ];
    let options = [
        ("partition", &resources.partition),
        ("time", &resources.time),
        ("mem", &resources.mem),
        ("gres", &resources.gres),
        ("account", &resources.account),
    ];
    for (key, value) in options {
        if let Some(v) = value {
            lines.push(format!("#SBATCH --{key}={v}"));
        }
    }
    lines.extend(resources.extra.iter().map(|a| format!("#SBATCH {a}")));
    lines.join("\n") + "\n"
}

/// A folder in a Slurm file-name pattern: `%` starts a replacement symbol there, so a literal
/// one is written `%%`.
fn slurm_pattern(dir: &Path) -> String {
    dir.display().to_string().replace('%', "%%")
}

/// A value of an `#SBATCH` line, double-quoted: sbatch reads these lines as words (a space
/// would end the value), with a backslash escaping the next character even inside quotes, so
/// backslashes and `"` are escaped. Control characters cannot be written there and become
/// `?`, which names a path that does not exist, so sbatch refuses it rather than running
/// somewhere else.
fn directive_word(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn command_head(call: &Invocation) -> String {
    std::iter::once(call.kdgrid.display().to_string())
        .chain(call.global.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn compute_tail(call: &Invocation) -> String {
    call.compute
        .iter()
        .map(|a| format!(" {}", quote(a)))
        .collect()
}

fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| word.to_string(), |q| q.into_owned())
}

/// Writes the scripts into `dir` and submits them in order, each level after the previous one
/// and the report after the last; `jobs.json` records the job ids.
pub fn submit(
    dir: &Path,
    levels: &[Vec<&Stage>],
    scripts: &[(String, String)],
) -> Result<Submission, SlurmError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    for (name, text) in scripts {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    let mut submission = Submission {
        dir: dir.to_path_buf(),
        levels: Vec::new(),
        report: None,
    };
    let mut after: Option<String> = None;
    for (stages, (name, _)) in levels.iter().zip(scripts) {
        let job = sbatch(&dir.join(name), after.as_deref())?;
        submission.levels.push(Level {
            stages: stages.iter().map(|s| s.id.clone()).collect(),
            script: name.clone(),
            job: Some(job.clone()),
        });
        // Written after every job, so a failure half-way leaves a record of what was submitted.
        save(&submission)?;
        after = Some(job);
    }
    let (name, _) = scripts.last().expect("the report script");
    submission.report = Some(sbatch(&dir.join(name), after.as_deref())?);
    save(&submission)?;
    Ok(submission)
}

/// `sbatch --parsable [--dependency=afterany:<after>] <script>` → the job id.
fn sbatch(script: &Path, after: Option<&str>) -> Result<String, SlurmError> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(job) = after {
        cmd.arg(format!("--dependency=afterany:{job}"));
    }
    let out = cmd
        .arg(script)
        .output()
        .map_err(|source| SlurmError::Missing {
            program: "sbatch".into(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    let job = stdout.trim().split(';').next().unwrap_or("").to_string();
    if !out.status.success() || job.is_empty() {
        return Err(SlurmError::Refused {
            script: script.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(job)
}

fn save(submission: &Submission) -> Result<(), SlurmError> {
    let path = submission.dir.join("jobs.json");
    let json = serde_json::to_vec_pretty(submission).expect("submissions serialize");
    crate::store::write_atomic(&path, &json).map_err(|e| SlurmError::Io {
        path: path.clone(),
        message: e.to_string(),
    })
}

fn io(path: &Path, e: std::io::Error) -> SlurmError {
    SlurmError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Every submission recorded under `experiment_dir/slurm/`, oldest first.
pub fn submissions(experiment_dir: &Path) -> Vec<Submission> {
    let mut found: Vec<(u64, Submission)> = std::fs::read_dir(experiment_dir.join("slurm"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n: u64 = e.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(e.path().join("jobs.json")).ok()?;
            Some((n, serde_json::from_str(&text).ok()?))
        })
        .collect();
    found.sort_by_key(|(n, _)| *n);
    found.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_sbatch_lines_are_quoted_and_percent_signs_kept_literal() {
        let dir = Path::new("/scratch/my results/100%/slurm/1");
        assert_eq!(
            directive_word(&format!("{}/report-%j.out", slurm_pattern(dir))),
            "\"/scratch/my results/100%%/slurm/1/report-%j.out\""
        );
        assert_eq!(directive_word("a\nb\"c\\d"), "\"a?b\\\"c\\\\d\"");
    }
}
