//! The command line: parses arguments, runs a phase, renders errors for people and maps them to
//! exit codes.
//!
//! Exit codes: `0` success; `1` a runtime failure (I/O, results store, model files);
//! `2` invalid input (manifest, missing or corrupt dataset, bad arguments).
//!
//! `args` holds what clap parses, `failure` how errors become exit codes, `load` the way from a
//! manifest path to a plan; each command longer than a screen has its own file (`*_cmd`,
//! `*_view`, `cluster` for Slurm and `run-stage`, `gc`).

mod args;
mod cluster;
mod diff_cmd;
mod export_cmd;
mod failure;
mod gc;
mod load;
mod plan_view;
mod progress;
mod report_cmd;
mod run_cmd;
mod stats_view;
mod status_view;
mod stored_compute;
mod tracking;
mod validate_cmd;

pub use args::Cli;

use args::{Command, ComputeArgs, Jobs};
use failure::Failure;
use load::{load_manifest, load_plan, load_plan_with, plan_and_backend};

use crate::manifest::{self, BackendKind};
use crate::plan;
use crate::sweep;
use crate::train::Backend;
use clap::Parser;
use std::process::ExitCode;

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
    // SAFETY: the first statement of `main`, before any thread starts and before tract or
    // LibTorch reads its environment.
    unsafe { crate::numerics::pin_libraries() };
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

fn dispatch(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Validate { manifest } => validate_cmd::validate(cli, manifest),
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
        Command::Status {
            manifest,
            compute,
            all,
        } => {
            let (plan, _) = stored_compute::load_plan_from_store(
                manifest,
                cli.profile.as_deref(),
                compute,
                &cli.results,
            )?;
            status_view::print_status(&plan, &cli.results, None, *all)
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
            report_cmd::report_command(&plan, &cli.results, &provenance, *check)
        }
        Command::Diff {
            a,
            b,
            against,
            tolerance,
            across,
        } => diff_cmd::diff_command(a, b.as_deref(), against.as_deref(), *tolerance, *across),
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
            tensorboard,
        } => cluster::run_stage(
            cli,
            manifest,
            compute,
            stage,
            cluster::Output {
                quiet: *quiet,
                tensorboard: tensorboard.as_deref(),
            },
        ),
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
        Command::Export {
            manifest,
            compute,
            tensorboard,
            mlflow,
        } => export_cmd::export(
            cli,
            manifest,
            compute,
            tensorboard.as_deref(),
            mlflow.as_deref(),
        ),
        Command::Gc {
            experiments,
            dry_run,
        } => gc::gc(&cli.results, experiments, *dry_run),
        Command::Run {
            manifest,
            compute,
            shard: Some(shard),
            quiet,
            tensorboard,
            ..
        } => cluster::run_shard(
            cli,
            manifest,
            compute,
            *shard,
            cluster::Output {
                quiet: *quiet,
                tensorboard: tensorboard.as_deref(),
            },
        ),
        Command::Run {
            manifest,
            compute,
            jobs,
            quiet,
            retry_failed,
            oversubscribe,
            shard: None,
            tensorboard,
        } => run_cmd::run(
            cli,
            manifest,
            compute,
            *jobs,
            run_cmd::Flags {
                quiet: *quiet,
                retry_failed: *retry_failed,
                oversubscribe: *oversubscribe,
                tensorboard: tensorboard.as_deref(),
            },
        ),
    }
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

fn kd_text(stage: &plan::Stage) -> String {
    match stage.kd {
        Some(kd) => format!("T={} alpha={}", kd.temperature, kd.alpha),
        // Evaluated, never trained: neither on labels nor from a teacher.
        None if stage.is_onnx() => "frozen (onnx)".into(),
        None if stage.is_frozen() => "frozen (ensemble)".into(),
        None => "labels only".into(),
    }
}
