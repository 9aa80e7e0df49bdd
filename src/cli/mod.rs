//! The command line: parses arguments, runs a phase, renders errors for people and maps them to
//! exit codes.
//!
//! Exit codes: `0` success; `1` a runtime failure (I/O, results store, model files);
//! `2` invalid input (manifest, missing or corrupt dataset, bad arguments).

mod cluster;
mod gc;
mod plan_view;
mod progress;
mod stats_view;
mod status_view;
mod stored_compute;

use crate::data;
use crate::manifest::{self, BackendKind, DeviceSpec, Manifest, ManifestError};
use crate::plan::{self, Plan};
use crate::report::{self, Provenance};
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
        /// results are bit-identical to `--jobs 1`. `auto`: one per core (measured faster than
        /// one stage on all cores for small models; recorded in `timings`).
        #[arg(long, short, default_value = "1", value_name = "N|auto")]
        jobs: Jobs,
        /// Print only the summary, not per-epoch progress.
        #[arg(long, short)]
        quiet: bool,
        /// Train stages that failed in an earlier run again (by default a failure is kept, so a
        /// diverging setting is not retried on every rerun).
        #[arg(long)]
        retry_failed: bool,
        /// Train only shard M of N (0-based): the stages whose id falls in it, waiting for
        /// teachers that other shards train. Run N processes (on one machine or many sharing the
        /// results folder) to train the study; the last to finish writes the tables.
        #[arg(long, value_name = "M/N", conflicts_with_all = ["jobs", "retry_failed"])]
        shard: Option<cluster::Shard>,
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
enum Jobs {
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
    fn resolve(self) -> usize {
        match self {
            Jobs::N(n) => n,
            Jobs::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Overrides of the manifest's `[compute]` table.
#[derive(Debug, Clone, clap::Args)]
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
    /// Whether any compute flag was given.
    fn is_given(&self) -> bool {
        self.backend.is_some() || self.device.is_some() || self.threads.is_some()
    }

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

/// Keeps freed blocks of up to 16 MiB in the process's heap for reuse. By default glibc hands
/// blocks above a (slowly adapting) threshold back to the kernel on free, so every training
/// step's activations and gradients came back as fresh pages, zeroed by the kernel on first
/// touch: `perf` showed page faults at ~16% of a LibTorch training step; reusing the memory
/// gave +15% images/s on LibTorch and +30% on flex (docs/performance.md). Numbers do not change.
/// Larger thresholds were no faster and kept dataset-sized buffers around (peak memory of a
/// CIFAR-10-sized sweep with `--jobs 2`: 960 MiB here, 989 MiB with glibc's defaults, 1,096 MiB
/// at 256 MiB). A user's own `GLIBC_TUNABLES` malloc settings win.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc")) {
        // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
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
    keep_freed_memory();
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
        let code = if matches!(
            e,
            SweepError::Data(_)
                | SweepError::Shape { .. }
                | SweepError::UnknownStage { .. }
                | SweepError::AdaptiveTasks
        ) {
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
                // Counting needs no data: the content digest only names stages.
                let plan = plan::expand(m, "");
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
            all,
        } => {
            let (plan, _) = load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
            plan_view::print_plan(&plan, &cli.results, *json, *all)?;
            Ok(())
        }
        Command::Status { manifest, compute } => {
            let (plan, _) = stored_compute::load_plan_from_store(
                manifest,
                cli.profile.as_deref(),
                compute,
                &cli.results,
            )?;
            status_view::print_status(&plan, &cli.results, None)
        }
        Command::Report {
            manifest,
            compute,
            check,
        } => {
            let (plan, provenance) = stored_compute::load_plan_from_store(
                manifest,
                cli.profile.as_deref(),
                compute,
                &cli.results,
            )?;
            report_command(&plan, &cli.results, &provenance, *check)
        }
        Command::Diff {
            a,
            b,
            against,
            tolerance,
            across,
        } => diff_command(a, b.as_deref(), against.as_deref(), *tolerance, *across),
        Command::Bench {
            compute,
            seconds,
            only,
        } => bench_command(compute, *seconds, only.as_deref()),
        Command::RunStage {
            manifest,
            compute,
            stage,
            quiet,
        } => cluster::run_stage(cli, manifest, compute, stage, *quiet),
        Command::Slurm { command } => cluster::slurm(cli, command),
        Command::Stats { a, b, labels } => stats_view::stats(a, b, labels.as_deref()),
        Command::Trace {
            manifest,
            compute,
            stage,
            out,
        } => {
            let (plan, backend) = plan_and_backend(cli, manifest, compute)?;
            let trace = sweep::trace(&plan, &cli.results, &backend, stage)?;
            let json = serde_json::to_vec(&trace).expect("traces serialize");
            crate::store::write_atomic(out, &json)?;
            println!(
                "{} steps of stage {stage} traced into {}",
                trace.steps.len(),
                out.display()
            );
            Ok(())
        }
        Command::Predict {
            manifest,
            compute,
            stage,
            limit,
            inputs,
            out,
        } => {
            let (plan, backend) = plan_and_backend(cli, manifest, compute)?;
            let predictions =
                sweep::predict(&plan, &cli.results, &backend, stage, *limit, *inputs)?;
            let json = serde_json::to_vec(&predictions).expect("predictions serialize");
            crate::store::write_atomic(out, &json)?;
            println!(
                "logits of stage {stage} on {} test images written to {}",
                predictions.labels.len(),
                out.display()
            );
            Ok(())
        }
        Command::Gc {
            experiments,
            dry_run,
        } => gc::gc(&cli.results, experiments, *dry_run),
        Command::Run {
            manifest,
            compute,
            shard: Some(shard),
            quiet,
            ..
        } => cluster::run_shard(cli, manifest, compute, *shard, *quiet),
        Command::Run {
            manifest,
            compute,
            jobs,
            quiet,
            retry_failed,
            shard: None,
        } => {
            let (plan, provenance) =
                load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
            let backend = Backend::new(plan.compute).map_err(|e| Failure {
                report: e.into(),
                code: 2,
            })?;
            let options = sweep::Options {
                jobs: jobs.resolve(),
                retry_failed: *retry_failed,
            };
            let mut display = progress::Display::new(*quiet);
            if matches!(jobs, Jobs::Auto) && !*quiet {
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

/// The plan of `manifest` and the backend it computes on (an unavailable backend is bad input).
fn plan_and_backend(
    cli: &Cli,
    manifest: &Path,
    compute: &ComputeArgs,
) -> Result<(Plan, Backend), Failure> {
    let (plan, _) = load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
    let backend = Backend::new(plan.compute).map_err(|e| Failure {
        report: e.into(),
        code: 2,
    })?;
    Ok((plan, backend))
}

/// Reads and validates `manifest`, applies the command-line compute overrides, and expands it
/// with the content digest of its data (cached under `results`); also says where its numbers
/// come from.
fn load_plan(
    manifest: &Path,
    profile: Option<&str>,
    compute: &ComputeArgs,
    results: &Path,
) -> Result<(Plan, Provenance), Failure> {
    load_plan_with(manifest, profile, compute, results, false)
}

/// [`load_plan`]; with `data_optional`, a dataset that cannot be read gives a warning and
/// provisional stage ids instead of an error (for `slurm submit --dry-run` away from the data).
fn load_plan_with(
    manifest: &Path,
    profile: Option<&str>,
    compute: &ComputeArgs,
    results: &Path,
    data_optional: bool,
) -> Result<(Plan, Provenance), Failure> {
    let mut m = load_manifest(manifest, profile)?;
    compute.apply(&mut m)?;
    let data = match data::fingerprint(&m.dataset, &mut data::DigestCache::open(results)) {
        Ok(d) => d,
        Err(e) if data_optional => {
            eprintln!(
                "warning: {e}; stage ids below are provisional (they name the data by content)"
            );
            String::new()
        }
        Err(e) => {
            return Err(Failure {
                report: e.into(),
                code: 2,
            });
        }
    };
    let plan = plan::expand(&m, &data);
    let provenance = Provenance {
        experiment: plan.name.clone(),
        description: m.description.clone(),
        manifest: manifest_label(manifest),
        manifest_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(m.text.as_bytes())),
        profile: m.profile.clone(),
        git_revision: git_revision(manifest),
        data_sha256: data,
        compute: format!("{} on {}", plan.compute.result_key(), plan.compute.device),
        adaptive: plan.adaptive,
    };
    Ok((plan, provenance))
}

/// How provenance names the manifest: its path within its git checkout (`experiments/default.toml`),
/// or its file name, so the label is the same on every clone and machine.
fn manifest_label(file: &Path) -> String {
    let name = || {
        file.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let Ok(abs) = std::path::absolute(file) else {
        return name();
    };
    let dir = abs.parent().unwrap_or(Path::new("/"));
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let top = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            let top = top.canonicalize().unwrap_or(top);
            let abs = abs.canonicalize().ok()?;
            Some(abs.strip_prefix(top).ok()?.display().to_string())
        })
        .unwrap_or_else(name)
}

/// The last commit that changed `file`, when it is tracked by git.
fn git_revision(file: &Path) -> Option<String> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%H", "--"])
        .arg(file.file_name()?)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let rev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !rev.is_empty()).then_some(rev)
}

fn report_command(
    plan: &Plan,
    results: &Path,
    provenance: &Provenance,
    check: bool,
) -> Result<(), Failure> {
    let mut display = progress::Display::new(true);
    let warn = &mut |e: Event| display.event(e);
    if !check {
        let (tables, files) = sweep::report(plan, results, provenance, None, warn)?;
        println!("{}", report::summary_table(&tables));
        for f in files {
            println!("  {}", f.display());
        }
        return Ok(());
    }
    let dir = results.join(&plan.name);
    let scratch = tempfile::tempdir().map_err(|e| Failure {
        report: miette::miette!("cannot create a scratch folder: {e}"),
        code: 1,
    })?;
    sweep::report(plan, results, provenance, Some(scratch.path()), warn)?;
    let diff = report::diff::compare(&dir, scratch.path(), 0.0, None).map_err(|e| Failure {
        report: e.into(),
        code: 1,
    })?;
    print!("{}", diff.text);
    if diff.differences > 0 {
        return Err(Failure {
            report: miette::miette!(
                help = format!(
                    "if the change is meant, `kdgrid report {}` rewrites them; review `git diff`",
                    provenance.manifest
                ),
                "the committed tables in `{}` differ from the ones regenerated from the store ({} differences)",
                dir.display(),
                diff.differences
            ),
            code: 1,
        });
    }
    println!("tables in {} are up to date", dir.display());
    Ok(())
}

fn bench_command(compute: &ComputeArgs, seconds: f64, only: Option<&str>) -> Result<(), Failure> {
    let mut spec = manifest::ComputeSpec::default();
    if compute.backend.as_deref() == Some("tch") {
        spec.backend = BackendKind::Tch;
    }
    if let Some(d) = compute.device {
        spec.device = d;
    }
    spec.threads = compute.threads.or(Some(2));
    let backend = Backend::new(spec).map_err(|e| Failure {
        report: e.into(),
        code: 2,
    })?;
    for w in crate::train::bench::WORKLOADS {
        if only.is_some_and(|o| !w.contains(o)) {
            continue;
        }
        let ips = crate::train::bench::images_per_second(w, &backend, seconds);
        println!(
            "{}",
            serde_json::json!({
                "system": format!("kdgrid-{}", backend.name()),
                "workload": w,
                "threads": backend.threads(),
                "images_per_second": ips,
            })
        );
    }
    Ok(())
}

fn diff_command(
    a: &Path,
    b: Option<&Path>,
    against: Option<&str>,
    tolerance: f64,
    across: Option<f64>,
) -> Result<(), Failure> {
    let fail = |message: String| Failure {
        report: miette::miette!("{message}"),
        code: 2,
    };
    let scratch = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let (left, right): (PathBuf, PathBuf) = match (b, against) {
        (Some(b), None) => (a.to_path_buf(), b.to_path_buf()),
        (None, Some(rev)) => {
            let n = report::diff::checkout(a, rev, scratch.path()).map_err(fail)?;
            if n == 0 {
                return Err(fail(format!(
                    "`{}` has no result tables at `{rev}`",
                    a.display()
                )));
            }
            (scratch.path().to_path_buf(), a.to_path_buf())
        }
        _ => {
            return Err(fail(
                "give two folders, or one folder and `--against REV`".into(),
            ));
        }
    };
    for dir in [&left, &right] {
        if !dir.is_dir() {
            return Err(fail(format!("`{}` is not a results folder", dir.display())));
        }
    }
    let diff = report::diff::compare(&left, &right, tolerance, across).map_err(|e| Failure {
        report: e.into(),
        code: 2,
    })?;
    print!("{}", diff.text);
    if diff.differences > 0 {
        return Err(Failure {
            report: miette::miette!(
                "{} differences beyond tolerance {tolerance}",
                diff.differences
            ),
            code: 1,
        });
    }
    println!("no differences beyond tolerance {tolerance}");
    Ok(())
}

fn kd_text(stage: &plan::Stage) -> String {
    stage.kd.map_or_else(
        || "labels only".into(),
        |kd| format!("T={} alpha={}", kd.temperature, kd.alpha),
    )
}
