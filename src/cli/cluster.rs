//! Commands that run a study as independent tasks sharing a results folder: `run --shard M/N`,
//! `run-stage` (one Slurm array task), and `slurm submit` / `slurm status`.

use super::tracking::Live;
use super::{
    ComputeArgs, Failure, kd_text, load_manifest, load_plan, load_plan_with, progress, status_view,
};
use crate::execute::agree::Role;
use crate::execute::slurm::{self, Invocation, Resources};
use crate::plan::{Plan, Stage};
use crate::report::{self, Provenance};
use crate::store::{self, Lookup};
use crate::sweep::{self, SweepError};
use crate::train::Backend;
use clap::Subcommand;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Shard `index` of `count` (`M/N` on the command line).
#[derive(Debug, Clone, Copy)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: write M/N with 0 <= M < N, e.g. `0/4`");
        let (m, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            m.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum SlurmCommand {
    /// Submit the stages not yet done as job arrays, one per level of the DAG (teachers first),
    /// each level after the previous one, and a last job writing the tables and the report.
    Submit {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// `sbatch --partition`.
        #[arg(long)]
        partition: Option<String>,
        /// `sbatch --time` per task (e.g. `4:00:00`).
        #[arg(long)]
        time: Option<String>,
        /// `sbatch --cpus-per-task`; also each task's `--threads` unless given.
        #[arg(long, value_name = "N")]
        cpus_per_task: Option<usize>,
        /// `sbatch --mem` (e.g. `8G`).
        #[arg(long)]
        mem: Option<String>,
        /// `sbatch --gres` (e.g. `gpu:1`, with `--backend tch --device cuda`).
        #[arg(long)]
        gres: Option<String>,
        /// `sbatch --account`.
        #[arg(long)]
        account: Option<String>,
        /// Any other `sbatch` option, as one word (`--sbatch-arg=--qos=long`); repeatable.
        #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
        sbatch_args: Vec<String>,
        /// Print the job structure and the scripts; submit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Each stage's state in the store joined with its Slurm job (queued, running on which
    /// node, or how it ended, and its log).
    Status {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// List every stage; by default a study of more than 200 stages lists the stages not
        /// done (up to 200) and counts the rest.
        #[arg(long)]
        all: bool,
    },
}

/// `kdgrid run-stage`: trains one stage in a shared store.
pub(super) fn run_stage(
    cli: &super::Cli,
    manifest: &Path,
    compute: &ComputeArgs,
    id: &str,
    output: Output,
) -> Result<(), Failure> {
    let (plan, provenance) = load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
    let stage = sweep::find_stage(&plan, id)?;
    let outcome = run_tasks(
        cli,
        &plan,
        &provenance,
        &[stage],
        Role::Stage,
        false,
        output,
    )?;
    let t = &outcome.tally;
    println!(
        "stage {id}: {}",
        if t.trained > 0 {
            "trained"
        } else if t.reused > 0 {
            "already done"
        } else if t.failed > 0 {
            "failed (recorded)"
        } else {
            "skipped: its teacher failed"
        }
    );
    Ok(())
}

/// What a task shows and writes beside its stages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Output<'a> {
    /// Only the outcome, no per-epoch progress.
    pub(super) quiet: bool,
    /// TensorBoard folder (`--tensorboard`).
    pub(super) tensorboard: Option<&'a Path>,
}

/// `kdgrid run --shard M/N`.
pub(super) fn run_shard(
    cli: &super::Cli,
    manifest: &Path,
    compute: &ComputeArgs,
    shard: Shard,
    output: Output,
) -> Result<(), Failure> {
    let (plan, provenance) = load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
    let mine: Vec<&Stage> = plan
        .stages
        .iter()
        .filter(|s| s.id.shard(shard.count) == shard.index)
        .collect();
    println!(
        "shard {}/{}: {} of {} stages",
        shard.index,
        shard.count,
        mine.len(),
        plan.stages.len()
    );
    let role = Role::Shard {
        index: shard.index,
        count: shard.count,
    };
    let outcome = run_tasks(cli, &plan, &provenance, &mine, role, true, output)?;
    let t = &outcome.tally;
    println!(
        "{} trained, {} reused, {} failed, {} skipped",
        t.trained, t.reused, t.failed, t.skipped
    );
    match &outcome.report {
        Some((tables, files)) => {
            println!("\n{}", report::summary_table(tables));
            println!("results in {}:", outcome.dir.display());
            for f in files {
                println!("  {}", f.display());
            }
        }
        None if outcome.unsettled => println!(
            "stages of other tasks are not done yet; the last task to finish writes the tables (or `kdgrid report`)"
        ),
        None => println!(
            "every stage is settled, and the tables in {} were written from these records (`kdgrid report` writes them again)",
            outcome.dir.display()
        ),
    }
    Ok(())
}

fn run_tasks(
    cli: &super::Cli,
    plan: &Plan,
    provenance: &Provenance,
    stages: &[&Stage],
    role: Role,
    write_report: bool,
    output: Output,
) -> Result<sweep::TasksOutcome, Failure> {
    let backend = Backend::new(plan.compute).map_err(|e| Failure {
        report: e.into(),
        code: 2,
    })?;
    // One task trains one stage at a time: only a stage wider than its cores can oversubscribe
    // (threads are part of a LibTorch stage's id, so they are the user's to change).
    let cores = crate::execute::cores::available();
    if plan.compute.backend == crate::manifest::BackendKind::Tch
        && plan.compute.device == crate::manifest::DeviceSpec::Cpu
        && backend.threads() > cores
    {
        eprintln!(
            "warning: {} LibTorch threads on the {cores} cores this task may use: with more \
             threads than free cores LibTorch runs about 10x slower (give the task {} cores, or \
             plan with --threads {cores})",
            backend.threads(),
            backend.threads()
        );
    }
    let mut live = Live::start(output.tensorboard, plan, &cli.results, Some(stages));
    let mut display = progress::Display::new(output.quiet);
    let outcome = sweep::run_tasks(
        plan,
        &cli.results,
        &backend,
        stages,
        role,
        write_report,
        provenance,
        &mut |e| {
            live.event(&e);
            display.event(e)
        },
    );
    display.finish();
    Ok(outcome?)
}

/// `kdgrid slurm ...`.
pub(super) fn slurm(cli: &super::Cli, command: &SlurmCommand) -> Result<(), Failure> {
    match command {
        SlurmCommand::Status {
            manifest,
            compute,
            all,
        } => {
            let (plan, _) = load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
            let jobs = slurm::status(&absolute(&cli.results).join(&plan.name));
            status_view::print_status(&plan, &cli.results, Some(&jobs), *all)
        }
        SlurmCommand::Submit {
            manifest,
            compute,
            partition,
            time,
            cpus_per_task,
            mem,
            gres,
            account,
            sbatch_args,
            dry_run,
        } => {
            // Tasks must expand the same plan wherever they land, and the same one a local run
            // of the manifest does: pin their thread count, the manifest's when it sets one.
            let manifest_threads = load_manifest(manifest, cli.profile.as_deref())?
                .compute
                .threads;
            let threads = compute
                .threads
                .or(manifest_threads)
                .or(*cpus_per_task)
                .unwrap_or(1);
            let compute = ComputeArgs {
                threads: Some(threads),
                ..compute.clone()
            };
            let resources = Resources {
                partition: partition.clone(),
                time: time.clone(),
                cpus_per_task: cpus_per_task.unwrap_or(threads),
                mem: mem.clone(),
                gres: gres.clone(),
                account: account.clone(),
                extra: sbatch_args.clone(),
            };
            let (plan, _) = load_plan_with(
                manifest,
                cli.profile.as_deref(),
                &compute,
                &cli.results,
                *dry_run,
            )?;
            if plan.adaptive.is_some() {
                return Err(SweepError::AdaptiveTasks.into());
            }
            submit(cli, &plan, manifest, &resources, *dry_run)
        }
    }
}

fn submit(
    cli: &super::Cli,
    plan: &Plan,
    manifest: &Path,
    resources: &Resources,
    dry_run: bool,
) -> Result<(), Failure> {
    let results = absolute(&cli.results);
    let experiment_dir = results.join(&plan.name);
    crate::store::check_format(&experiment_dir)?;
    // Settled: committed (ok or failed), or below a failed teacher, where nothing can train
    // until that teacher is retried; resubmitting those would never reach "nothing to submit".
    let mut settled = BTreeMap::new();
    for s in &plan.stages {
        if let Ok(Lookup::Found(r)) = store::lookup(&experiment_dir, &s.id) {
            settled.insert(s.id.clone(), *r);
        }
    }
    let committed = settled.len();
    crate::execute::stage::settle_skipped(plan, &mut settled);
    let levels = slurm::levels(plan, &|id| settled.contains_key(id));
    let pending: usize = levels.iter().map(Vec::len).sum();
    println!(
        "{}: {} stages, {committed} done, {} skipped below a failed teacher, {pending} to submit",
        plan.name,
        plan.stages.len(),
        settled.len() - committed
    );
    if levels.is_empty() {
        println!(
            "nothing to submit: every stage is in {}; `kdgrid report` rewrites the tables",
            experiment_dir.display()
        );
        return Ok(());
    }
    let mut global = vec!["--results".to_string(), results.display().to_string()];
    if let Some(p) = &cli.profile {
        global.extend(["--profile".to_string(), p.clone()]);
    }
    let c = &plan.compute;
    let call = Invocation {
        kdgrid: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kdgrid")),
        workdir: absolute(Path::new(".")),
        global,
        manifest: absolute(manifest),
        compute: vec![
            "--backend".into(),
            c.backend.to_string(),
            "--device".into(),
            c.device.to_string(),
            "--threads".into(),
            c.resolved_threads().to_string(),
        ],
    };
    let dir = slurm::next_dir(&experiment_dir);
    let scripts = slurm::scripts(&plan.name, &experiment_dir, &dir, &levels, &call, resources);
    print_levels(&levels);
    if dry_run {
        for (name, text) in &scripts {
            println!("\n--- {} ---\n{text}", dir.join(name).display());
        }
        println!("would submit, in order:");
        for (k, (name, _)) in scripts.iter().enumerate() {
            let after = if k == 0 {
                String::new()
            } else {
                format!("--dependency=afterany:$JOB{} ", k - 1)
            };
            println!(
                "  JOB{k}=$(sbatch --parsable {after}{})",
                dir.join(name).display()
            );
        }
        return Ok(());
    }
    let submission = slurm::submit(&dir, &levels, &scripts).map_err(|e| Failure {
        report: e.into(),
        code: 1,
    })?;
    let mut ids = Vec::new();
    for (k, level) in submission.levels.iter().enumerate() {
        let job = level.job.clone().unwrap_or_default();
        println!("level {k}: job {job} ({} tasks)", level.stages.len());
        ids.push(job);
    }
    if let Some(job) = &submission.report {
        println!("report: job {job}");
        ids.push(job.clone());
    }
    println!("scripts and job ids in {}", submission.dir.display());
    let profile = cli
        .profile
        .as_ref()
        .map(|p| format!(" --profile {p}"))
        .unwrap_or_default();
    println!(
        "follow with `squeue -j {}` or `kdgrid --results {}{profile} slurm status {}`",
        ids.join(","),
        cli.results.display(),
        manifest.display()
    );
    Ok(())
}

fn print_levels(levels: &[Vec<&Stage>]) {
    for (k, stages) in levels.iter().enumerate() {
        let after = if k == 0 {
            "first".to_string()
        } else {
            format!("after level {} (afterany)", k - 1)
        };
        println!(
            "level {k}: {} stages, job array 0-{}, {after}",
            stages.len(),
            stages.len() - 1
        );
        for s in stages {
            println!(
                "  {}  {:<9}  seed {:>3}  {:<22}  {}",
                s.id,
                s.role.as_str(),
                s.seed,
                kd_text(s),
                s.chain_label()
            );
        }
    }
    println!("report: after level {} (afterany)", levels.len() - 1);
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
