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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a manifest and report every problem with file, line and column; trains nothing.
    Validate {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Print the stages a manifest expands to, which are already done, and which will train.
    Plan {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
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
            let m = manifest::load(manifest)?;
            let plan = plan::expand(&m);
            println!(
                "{} is valid: {} cells, {} stages",
                manifest.display(),
                plan.cells.len(),
                plan.stages.len()
            );
            Ok(())
        }
        Command::Plan { manifest, compute } => {
            let mut m = manifest::load(manifest)?;
            compute.apply(&mut m)?;
            let plan = plan::expand(&m);
            print_plan(&plan, &cli.results)?;
            Ok(())
        }
        Command::Run {
            manifest,
            compute,
            jobs,
            quiet,
        } => {
            let mut m = manifest::load(manifest)?;
            compute.apply(&mut m)?;
            let plan = plan::expand(&m);
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

/// Prints the stages of `plan`, marking those already done in the store (read without locking:
/// `plan` never writes).
fn print_plan(plan: &Plan, results: &Path) -> Result<(), Failure> {
    let done = |id: &plan::StageId| -> bool {
        results
            .join(&plan.name)
            .join("stages")
            .join(id.as_str())
            .join("record.json")
            .exists()
    };
    println!("experiment `{}`: {} cells", plan.name, plan.cells.len());
    println!(
        "{:<16}  {:<9}  {:>4}  {:<22}  {:<7}  chain",
        "stage", "role", "seed", "distillation", "status"
    );
    for s in &plan.stages {
        println!(
            "{:<16}  {:<9}  {:>4}  {:<22}  {:<7}  {}",
            s.id,
            s.role.as_str(),
            s.seed,
            kd_text(s),
            if done(&s.id) { "done" } else { "pending" },
            s.chain_label()
        );
    }
    let by_role = plan.count_by_role();
    let n = |r| by_role.get(&r).copied().unwrap_or(0);
    let done_count = plan.stages.iter().filter(|s| done(&s.id)).count();
    println!(
        "{} unique stages ({} teacher, {} assistant, {} student): {} done, {} to train",
        plan.stages.len(),
        n(Role::Teacher),
        n(Role::Assistant),
        n(Role::Student),
        done_count,
        plan.stages.len() - done_count
    );
    Ok(())
}
