//! The command line's shape: global flags, subcommands and their arguments (clap derives),
//! and the small argument types they share.

use super::Failure;
use super::cluster;
use crate::manifest::{BackendKind, DeviceSpec, Manifest};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
        /// Print the plan as JSON, for scripts (every stage).
        #[arg(long)]
        json: bool,
        /// List every stage; by default a plan of more than 200 stages lists the first 200 and
        /// counts the rest.
        #[arg(long)]
        all: bool,
    },
    /// Train every stage not yet in the results store, then write tables and a summary.
    Run {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// Train up to N independent stages at once (a stage starts once its teacher is done);
        /// results are bit-identical to `--jobs 1`. `auto`: one per core on flex (measured faster
        /// than one stage on all cores for small models; recorded in `timings`), as many as fit
        /// their threads on LibTorch's CPU backend.
        #[arg(long, short, default_value = "1", value_name = "N|auto")]
        jobs: Jobs,
        /// Print only the summary, not per-epoch progress.
        #[arg(long, short)]
        quiet: bool,
        /// Train stages that failed in an earlier run again (by default a failure is kept, so a
        /// diverging setting is not retried on every rerun).
        #[arg(long)]
        retry_failed: bool,
        /// Keep `--jobs` × `--threads` even above the cores (LibTorch on the CPU): by default
        /// kdgrid runs fewer jobs at once, since oversubscribed LibTorch runs ~10x slower
        /// (`--jobs auto` on LibTorch: as many stages as fit their threads).
        #[arg(long)]
        oversubscribe: bool,
        /// Train only shard M of N (0-based): the stages whose id falls in it, waiting for
        /// teachers that other shards train. Run N processes (on one machine or many sharing the
        /// results folder) to train the study; the last to finish writes the tables.
        #[arg(long, value_name = "M/N", conflicts_with_all = ["jobs", "retry_failed", "oversubscribe"])]
        shard: Option<cluster::Shard>,
        /// Write each stage's curves and the HParams grid for TensorBoard into DIR/<study>/ as
        /// the stages train (stages already in the store first); `tensorboard --logdir DIR`.
        /// Default: the manifest's `[tracking] tensorboard`.
        #[arg(long, value_name = "DIR")]
        tensorboard: Option<PathBuf>,
    },
    /// Train one stage of a manifest into a results folder shared with other tasks (what each
    /// Slurm array task runs); its teacher must be in the store or being trained.
    RunStage {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// The stage's id (`kdgrid plan --json` lists them).
        #[arg(long, value_name = "ID")]
        stage: String,
        /// Print only the outcome, not per-epoch progress.
        #[arg(long, short)]
        quiet: bool,
        /// Write the stage's curves for TensorBoard into DIR/<study>/ (see `run`).
        #[arg(long, value_name = "DIR")]
        tensorboard: Option<PathBuf>,
    },
    /// Send a study's stages from the results store to the viewers: TensorBoard event files
    /// (`--tensorboard DIR`) and an MLflow tracking server (`--mlflow URI`: one experiment per
    /// study, one run per stage). Exporting again adds only what is new, never duplicates.
    Export {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// TensorBoard folder (the study's runs go to DIR/<study>/); default: the manifest's
        /// `[tracking] tensorboard`.
        #[arg(long, value_name = "DIR")]
        tensorboard: Option<PathBuf>,
        /// MLflow tracking server (`http://127.0.0.1:5000`); default: the manifest's `[tracking]
        /// mlflow`. A token in `MLFLOW_TRACKING_TOKEN` is sent as a bearer token.
        #[arg(long, value_name = "URI")]
        mlflow: Option<String>,
    },
    /// Remove stage folders under the results folder that no manifest under `experiments/`
    /// references any more (an edited manifest, a new trainer version), listing each with its
    /// size; stages trained with other `--backend`/`--threads` settings count as referenced.
    Gc {
        /// Folder of the manifests that are still in use.
        #[arg(long, default_value = "experiments", value_name = "DIR")]
        experiments: PathBuf,
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Train one stage from scratch and write every step (initial weights, batches, learning
    /// rates, losses, final weights) as JSON, for `scripts/parity/replay.py` to replay in
    /// PyTorch; a distilled stage's teacher must be in the store. Writes nothing to the store.
    Trace {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// The stage's id (`kdgrid plan --json` lists them).
        #[arg(long, value_name = "ID")]
        stage: String,
        /// Where to write the trace.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a trained stage's logits on the first test images as JSON (`labels`, `logits`
    /// row-major `[n, classes]`, `classes`, and with `--inputs` the normalized images the model
    /// saw), e.g. to check an imported teacher against the framework that trained it.
    Predict {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// The stage's id (`kdgrid plan --json` lists them).
        #[arg(long, value_name = "ID")]
        stage: String,
        /// Test images to predict, from the first.
        #[arg(long, default_value_t = 64, value_name = "N")]
        limit: usize,
        /// Include the normalized input images.
        #[arg(long)]
        inputs: bool,
        /// Where to write the JSON.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Compare two samples of a metric (e.g. kdgrid's test accuracies and another framework's):
    /// each sample's mean, spread and interval, the difference of means with Welch and
    /// bootstrap 95% intervals, and P(A > B). A sample is `FILE.csv:COLUMN` or a file of
    /// numbers, one per line.
    Stats {
        /// The first sample.
        a: String,
        /// The second sample.
        b: String,
        /// Names for the two samples, `A,B`.
        #[arg(long, value_name = "A,B")]
        labels: Option<String>,
    },
    /// Run a study on a Slurm cluster: one job array per level of the stage DAG.
    Slurm {
        #[command(subcommand)]
        command: cluster::SlurmCommand,
    },
    /// Show each stage as done, failed (with its error), running (and who runs it) or
    /// pending.
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
    /// Rebuild the tables, `report.md` and the plots from the results store, training nothing.
    /// With `--check`, rebuild them into a scratch folder instead and fail (exit 1) with the
    /// differences if they are not bit-identical to the ones in the results folder.
    Report {
        /// The manifest (TOML).
        manifest: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
        /// Compare instead of writing.
        #[arg(long)]
        check: bool,
    },
    /// Measure training and evaluation throughput on fixed synthetic workloads (what
    /// `make bench` compares with PyTorch); prints one JSON object per workload.
    Bench {
        #[command(flatten)]
        compute: ComputeArgs,
        /// Seconds timed per workload (after a warm-up).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Only workloads whose name contains this text.
        #[arg(long)]
        only: Option<String>,
    },
    /// Compare the result tables of two results folders (`results/default`), or of one folder
    /// with its own tables at a git revision (`--against HEAD`); exit 1 on a difference beyond
    /// the tolerance.
    Diff {
        /// The first folder (A).
        a: PathBuf,
        /// The second folder (B); omit with `--against`.
        b: Option<PathBuf>,
        /// Compare folder A with its committed tables at this git revision (A is then B).
        #[arg(long, value_name = "REV")]
        against: Option<String>,
        /// Numbers closer than this count as equal (e.g. 0.002 across backends or processor
        /// kinds); 0 compares bit for bit, Markdown included.
        #[arg(long, default_value_t = 0.0, value_name = "X")]
        tolerance: f64,
        /// The tolerance to use instead when A and B were computed on different backends or
        /// processor kinds (whose numbers differ in their last bits and drift apart in
        /// training); the same kind is still compared with `--tolerance`.
        #[arg(long, value_name = "X")]
        across: Option<f64>,
    },
}

/// `--jobs N` or `--jobs auto`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Jobs {
    Auto,
    N(usize),
}

impl std::str::FromStr for Jobs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Jobs::Auto),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .map(Jobs::N)
                .ok_or_else(|| {
                    format!("`{n}` is not a number of jobs: write a positive number or `auto`")
                }),
        }
    }
}

impl Jobs {
    /// Stages at once on this machine: `auto` is one per core, as small models leave a core
    /// idle between their ops (docs/performance.md has the timings behind it).
    pub(super) fn resolve(self) -> usize {
        match self {
            Jobs::N(n) => n,
            Jobs::Auto => crate::execute::cores::available(),
        }
    }
}

/// Overrides of the manifest's `[compute]` table.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct ComputeArgs {
    /// Backend: `flex` (pure Rust) or `tch` (LibTorch).
    #[arg(long, value_parser = ["flex", "tch"])]
    pub(super) backend: Option<String>,
    /// Device: `cpu`, `cuda` or `cuda:N` (CUDA needs `--backend tch`).
    #[arg(long)]
    pub(super) device: Option<DeviceSpec>,
    /// Intra-op threads (part of a stage's id on LibTorch CPU, whose results depend on it).
    #[arg(long, value_name = "N")]
    pub(super) threads: Option<usize>,
    /// The numeric class whose flex stages to plan, from a record (never a flag): stages
    /// another processor class trained into a shared store have it in their ids.
    #[arg(skip)]
    pub(super) class: Option<&'static str>,
}

impl ComputeArgs {
    /// Whether any compute flag was given.
    pub(super) fn is_given(&self) -> bool {
        self.backend.is_some() || self.device.is_some() || self.threads.is_some()
    }

    /// Applies the overrides to `m`.
    pub(super) fn apply(&self, m: &mut Manifest) -> Result<(), Failure> {
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
        if self.class.is_some() {
            c.class = self.class;
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
