//! The command line: parses arguments, runs a phase, renders errors for people and maps them to
//! exit codes.
//!
//! Exit codes: `0` success; `1` a runtime failure (I/O, results store, model files);
//! `2` invalid input (manifest, missing or corrupt dataset, bad arguments).

use crate::manifest::{self, BackendKind, DeviceSpec, Manifest, ManifestError};
use crate::plan::{self, Plan, Role};
use crate::report;
use crate::store::Status;
use crate::sweep::{self, Event, SweepError};
use crate::train::Backend;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// kdgrid runs knowledge-distillation and seed-variance grids declared in one TOML manifest.
///
/// A manifest names a dataset, model sizes, training settings and grid axes (seeds,
/// temperatures, alphas, teacher/assistant/student chains). kdgrid expands it into a DAG of
/// content-addressed training stages, trains each stage once (a teacher is shared by every
/// student, temperature and alpha below it), and writes Polars tables under
/// `results/<experiment>/`. Rerunning a manifest trains only what is missing.
#[derive(Debug, Parser)]
#[command(name = "kdgrid", version, about, long_about)]
pub struct Cli {
    /// Folder holding one results folder per experiment.
    #[arg(long, global = true, default_value = "results", value_name = "DIR")]
    pub results: PathBuf,
    /// Apply the manifest's `[profiles.NAME]` (e.g. `ci`: less data, fewer epochs); results go
    /// to `results/<name>-NAME/` unless the profile sets its own `name`.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a manifest (and, without `--profile`, each of its profiles) and report every
    /// problem with file, line and column; trains and writes nothing.
    Validate {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Print the stages a manifest expands to, which are already done, which will train, the
    /// models' sizes and FLOPs, and an estimated wall time.
    Plan {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// Print the plan as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Train every stage not yet in the results store, then write tables and a summary.
    Run {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// Train up to N independent stages at once (a stage starts once its teacher is done);
        /// results are bit-identical to `--jobs 1`.
        #[arg(long, short, default_value_t = 1, value_name = "N")]
        jobs: usize,
        /// Print only the summary, not per-epoch progress.
        #[arg(long, short)]
        quiet: bool,
    },
}

/// Overrides of the manifest's `[compute]` table.
#[derive(Debug, clap::Args)]
struct ComputeArgs {
    /// Backend: `flex` (pure Rust) or `tch` (LibTorch).
    #[arg(long, value_parser = ["flex", "tch"])]
    backend: Option<String>,
    /// Device: `cpu`, `cuda` or `cuda:N` (CUDA needs `--backend tch`).
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// Intra-op threads (part of a stage's id on LibTorch CPU, whose results depend on it).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

impl ComputeArgs {
    /// Applies the overrides to `m`.
    fn apply(&self, m: &mut Manifest) -> Result<(), Failure> {
        let c = &mut m.compute;
        if let Some(b) = &self.backend {
            c.backend = if b == "tch" {
                BackendKind::Tch
            } else {
                BackendKind::Flex
            };
        }
        if let Some(d) = self.device {
            c.device = d;
        }
        if let Some(t) = self.threads {
            c.threads = Some(t.max(1));
        }
        if c.backend == BackendKind::Flex && c.device != DeviceSpec::Cpu {
            return Err(Failure {
                report: miette::miette!(
                    help = "add `--backend tch`",
                    "the `flex` backend runs on the CPU only, not on `{}`",
                    c.device
                ),
                code: 2,
            });
        }
        Ok(())
    }
}

/// Entry point of the `kdgrid` binary.
pub fn main() -> ExitCode {
    // Die quietly when stdout is closed early (`kdgrid plan m.toml | head`), like other Unix
    // tools, instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default action of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match dispatch(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{:?}", failure.report);
            ExitCode::from(failure.code)
        }
    }
}

struct Failure {
    report: miette::Report,
    code: u8,
}

impl From<ManifestError> for Failure {
    fn from(e: ManifestError) -> Self {
        Self {
            report: e.into(),
            code: 2,
        }
    }
}

impl From<SweepError> for Failure {
    fn from(e: SweepError) -> Self {
        let code = if matches!(e, SweepError::Data(_)) {
            2
        } else {
            1
        };
        Self {
            report: e.into(),
            code,
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Self {
            report: e.into(),
            code: 1,
        }
    }
}

fn dispatch(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Validate { manifest } => {
            let m = load_manifest(manifest, cli.profile.as_deref())?;
            let profiles = match cli.profile {
                Some(_) => Vec::new(),
                None => m.profiles.clone(),
            };
            let show = |m: &Manifest| {
                let plan = plan::expand(m);
                println!(
                    "{}{} is valid: {} cells, {} stages",
                    manifest.display(),
                    m.profile
                        .as_ref()
                        .map(|p| format!(" with profile `{p}`"))
                        .unwrap_or_default(),
                    plan.cells.len(),
                    plan.stages.len()
                );
            };
            show(&m);
            // Every profile is checked, and each invalid one reported, before failing.
            let mut last_failure = None;
            for p in profiles {
                match load_manifest(manifest, Some(&p)) {
                    Ok(m) => show(&m),
                    Err(failure) => {
                        if let Some(previous) = last_failure.replace(failure) {
                            eprintln!("{:?}", previous.report);
                        }
                    }
                }
            }
            last_failure.map_or(Ok(()), Err)
        }
        Command::Plan {
            manifest,
            compute,
            json,
        } => {
            let plan = load_plan(manifest, cli.profile.as_deref(), compute)?;
            print_plan(&plan, &cli.results, *json)?;
            Ok(())
        }
        Command::Run {
            manifest,
            compute,
            jobs,
            quiet,
        } => {
            let plan = load_plan(manifest, cli.profile.as_deref(), compute)?;
            let backend = Backend::new(plan.compute).map_err(|e| Failure {
                report: e.into(),
                code: 2,
            })?;
            let quiet = *quiet;
            let outcome = sweep::run(&plan, &cli.results, &backend, *jobs, &mut |e| {
                if !quiet {
                    print_event(e)
                }
            })?;
            println!("\n{}", report::to_markdown(&outcome.tables.summary));
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
    }
}

/// Reads and validates `manifest` with `profile`, printing its warnings to stderr.
fn load_manifest(manifest: &Path, profile: Option<&str>) -> Result<Manifest, Failure> {
    let m = manifest::load_profile(manifest, profile)?;
    if !m.warnings.is_empty() {
        let warnings = manifest::ManifestWarnings {
            path: m.path.clone(),
            profile: m.profile.clone(),
            src: miette::NamedSource::new(m.path.display().to_string(), m.text.clone()),
            warnings: m.warnings.iter().cloned().map(manifest::Warning).collect(),
        };
        eprintln!("{:?}", miette::Report::new(warnings));
    }
    Ok(m)
}

/// Reads and validates `manifest`, applies the command-line compute overrides, expands it.
fn load_plan(
    manifest: &Path,
    profile: Option<&str>,
    compute: &ComputeArgs,
) -> Result<Plan, Failure> {
    let mut m = load_manifest(manifest, profile)?;
    compute.apply(&mut m)?;
    Ok(plan::expand(&m))
}

fn kd_text(stage: &plan::Stage) -> String {
    stage.kd.map_or_else(
        || "labels only".into(),
        |kd| format!("T={} alpha={}", kd.temperature, kd.alpha),
    )
}

fn print_event(event: Event) {
    match event {
        Event::Start(stage, i, n) => eprintln!(
            "[{i}/{n}] {} {} (seed {}, {})",
            stage.role.as_str(),
            stage.chain_label(),
            stage.seed,
            kd_text(stage)
        ),
        Event::Epoch(stage, m) => eprintln!(
            "    epoch {}/{}: train loss {:.4}, test loss {:.4}, test accuracy {:.4} ({:.1}s)",
            m.epoch, stage.training.epochs, m.train_loss, m.test_loss, m.test_accuracy, m.seconds
        ),
        Event::Done(stage, record) if record.status != Status::Ok => eprintln!(
            "    {} {}: {}",
            stage.chain_label(),
            record.status.as_str(),
            record.error.as_deref().unwrap_or("")
        ),
        Event::Done(..) => {}
    }
}

/// Default training throughput (GFLOP/s) per backend when no stage has been timed yet:
/// measured on a 2-core AVX-512 machine with the default experiment (see README).
fn default_gflops(backend: BackendKind) -> f64 {
    match backend {
        BackendKind::Flex => 20.0,
        BackendKind::Tch => 35.0,
    }
}

#[derive(serde::Serialize)]
struct PlanStage<'a> {
    id: &'a str,
    role: &'static str,
    chain: String,
    model: &'a str,
    seed: u64,
    temperature: Option<f64>,
    alpha: Option<f64>,
    parent: Option<&'a str>,
    done: bool,
    gflops: Option<f64>,
}

#[derive(serde::Serialize)]
struct PlanModel<'a> {
    name: &'a str,
    family: &'a str,
    params: Option<u64>,
    forward_mflops: Option<f64>,
}

#[derive(serde::Serialize)]
struct PlanReport<'a> {
    experiment: &'a str,
    backend: String,
    cells: usize,
    stages: Vec<PlanStage<'a>>,
    models: Vec<PlanModel<'a>>,
    teachers: usize,
    assistants: usize,
    students: usize,
    done: usize,
    to_train: usize,
    /// Trainings saved by merging equal stages: stages named by all cells minus unique ones.
    saved_by_reuse: usize,
    pending_tflops: Option<f64>,
    throughput_gflops: f64,
    throughput_measured: bool,
    estimated_seconds: Option<f64>,
}

/// Prints the stages of `plan`, marking those already done in the store (read without locking:
/// `plan` never writes), with model sizes, FLOPs and an estimated wall time.
fn print_plan(plan: &Plan, results: &Path, json: bool) -> Result<(), Failure> {
    let store = results.join(&plan.name).join("stages");
    let record = |id: &plan::StageId| -> Option<crate::store::StageRecord> {
        let text = std::fs::read_to_string(store.join(id.as_str()).join("record.json")).ok()?;
        serde_json::from_str(&text).ok()
    };
    let records: Vec<_> = plan.stages.iter().map(|s| record(&s.id)).collect();
    // Throughput measured on this store's finished stages, when there are any.
    let (mut flops, mut secs) = (0f64, 0f64);
    for (s, r) in plan.stages.iter().zip(&records) {
        if let (Some(r), Some(f)) = (r, plan.stage_flops(s))
            && r.status == Status::Ok
            && r.train_seconds > 0.0
        {
            flops += f as f64;
            secs += r.train_seconds;
        }
    }
    let measured = secs > 0.0 && flops > 0.0;
    let gflops = if measured {
        flops / secs / 1e9
    } else {
        default_gflops(plan.compute.backend)
    };
    let stages: Vec<PlanStage> = plan
        .stages
        .iter()
        .zip(&records)
        .map(|(s, r)| PlanStage {
            id: s.id.as_str(),
            role: s.role.as_str(),
            chain: s.chain_label(),
            model: &s.model,
            seed: s.seed,
            temperature: s.kd.map(|k| k.temperature),
            alpha: s.kd.map(|k| k.alpha),
            parent: s.parent.as_ref().map(|p| p.as_str()),
            done: r.is_some(),
            gflops: plan.stage_flops(s).map(|f| f as f64 / 1e9),
        })
        .collect();
    let pending: Option<f64> = stages
        .iter()
        .filter(|s| !s.done)
        .map(|s| s.gflops)
        .sum::<Option<f64>>()
        .map(|g| g / 1e3);
    let mut models: Vec<PlanModel> = Vec::new();
    for s in &plan.stages {
        if !models.iter().any(|m| m.name == s.model) {
            let c = plan.model_cost(s);
            models.push(PlanModel {
                name: &s.model,
                family: &s.spec.family,
                params: c.map(|c| c.params),
                forward_mflops: c.map(|c| c.forward_flops as f64 / 1e6),
            });
        }
    }
    let by_role = plan.count_by_role();
    let n = |r| by_role.get(&r).copied().unwrap_or(0);
    let done = stages.iter().filter(|s| s.done).count();
    let report = PlanReport {
        experiment: &plan.name,
        backend: format!("{} on {}", plan.compute.result_key(), plan.compute.device),
        cells: plan.cells.len(),
        teachers: n(Role::Teacher),
        assistants: n(Role::Assistant),
        students: n(Role::Student),
        done,
        to_train: stages.len() - done,
        saved_by_reuse: plan
            .cells
            .iter()
            .map(|c| c.chain.len())
            .sum::<usize>()
            .saturating_sub(plan.stages.len()),
        pending_tflops: pending,
        throughput_gflops: gflops,
        throughput_measured: measured,
        estimated_seconds: pending.map(|t| t * 1e3 / gflops),
        stages,
        models,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plans serialize")
        );
        return Ok(());
    }
    println!(
        "experiment `{}`: {} cells on {}",
        report.experiment, report.cells, report.backend
    );
    println!(
        "{:<12} {:<12} {:>10} {:>14}",
        "model", "family", "params", "MFLOP/image"
    );
    for m in &report.models {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        println!(
            "{:<12} {:<12} {:>10} {:>14}",
            m.name,
            m.family,
            opt(m.params.map(|p| p.to_string())),
            opt(m.forward_mflops.map(|f| format!("{f:.2}")))
        );
    }
    println!();
    println!(
        "{:<16}  {:<9}  {:>4}  {:<22}  {:<7}  chain",
        "stage", "role", "seed", "distillation", "status"
    );
    for (st, s) in report.stages.iter().zip(&plan.stages) {
        println!(
            "{:<16}  {:<9}  {:>4}  {:<22}  {:<7}  {}",
            st.id,
            st.role,
            st.seed,
            kd_text(s),
            if st.done { "done" } else { "pending" },
            st.chain
        );
    }
    println!(
        "{} unique stages ({} teacher, {} assistant, {} student): {} done, {} to train",
        report.stages.len(),
        report.teachers,
        report.assistants,
        report.students,
        report.done,
        report.to_train
    );
    println!(
        "{} trainings saved by sharing equal stages across cells",
        report.saved_by_reuse
    );
    match (report.pending_tflops, report.estimated_seconds) {
        _ if report.to_train == 0 => println!("nothing to train"),
        (Some(t), Some(secs)) => println!(
            "to train: {t:.1} TFLOP, about {} at {:.0} GFLOP/s ({})",
            human_duration(secs),
            report.throughput_gflops,
            if report.throughput_measured {
                "measured on this experiment's finished stages"
            } else {
                "default for this backend"
            }
        ),
        _ => println!("to train: cost unknown until the dataset is read (image folders)"),
    }
    Ok(())
}

fn human_duration(secs: f64) -> String {
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 5400.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}
