//! `kdgrid plan`: the stages of a manifest, which are done, failed or pending, model sizes,
//! FLOPs and an estimated wall time.

use super::{Failure, kd_text};
use crate::manifest::BackendKind;
use crate::plan::{Plan, Role};
use crate::store::{self, Lookup, Status};
use std::path::Path;

/// Default training throughput (GFLOP/s) per backend when no stage has been timed yet:
/// measured on a 2-core AVX-512 machine with the default experiment (see README).
fn default_gflops(backend: BackendKind) -> f64 {
    match backend {
        BackendKind::Flex => 20.0,
        BackendKind::Tch => 35.0,
    }
}

/// Stage rows `plan` and `status` list without `--all`.
pub(super) const ROWS_SHOWN: usize = 200;

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
    /// An ensemble's member stages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    members: Vec<&'a str>,
    /// The stage whose weights it starts from (`init-from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<&'a str>,
    done: bool,
    /// `done`, `failed`, `corrupt` or `pending`.
    status: &'static str,
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
    failed: usize,
    to_train: usize,
    /// Trainings saved by merging equal stages: stages named by all cells minus unique ones.
    saved_by_reuse: usize,
    pending_tflops: Option<f64>,
    throughput_gflops: f64,
    throughput_measured: bool,
    /// Seconds each stage costs besides its training and evaluation (saving its weights and
    /// what `train_seconds` leaves out), added per stage to train.
    stage_overhead_seconds: f64,
    overhead_measured: bool,
    estimated_seconds: Option<f64>,
}

/// A stage's overhead when the store has no measurement: `make bench-scale` measured 4-6 ms of
/// `run` wall time per stage of a few optimizer steps (docs/performance.md), and stages that
/// evaluate real test splits and save larger weights cost more; 20 ms is the goal's ceiling.
const DEFAULT_STAGE_OVERHEAD_S: f64 = 0.02;

/// Prints the stages of `plan`, marking those already done in the store (read without locking:
/// `plan` never writes), with model sizes, FLOPs and an estimated wall time.
pub(super) fn print_plan(
    plan: &Plan,
    results: &Path,
    json: bool,
    all: bool,
) -> Result<(), Failure> {
    let root = results.join(&plan.name);
    store::check_format(&root)?;
    let lookups = plan
        .stages
        .iter()
        .map(|s| store::lookup(&root, &s.id))
        .collect::<Result<Vec<_>, _>>()?;
    for (s, l) in plan.stages.iter().zip(&lookups) {
        if let Lookup::Corrupt { path, message } = l {
            eprintln!(
                "warning: stage `{}` is corrupt (`{}`: {message}); `run` will train it again",
                s.id,
                path.display()
            );
        }
    }
    let records: Vec<_> = lookups
        .iter()
        .map(|l| match l {
            Lookup::Found(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
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
    // Overhead measured on the finished stages that record their wall time (a failed stage's
    // `train_seconds` is 0: its whole run would count as overhead).
    let overheads: Vec<f64> = records
        .iter()
        .flatten()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| Some((r.wall_seconds? - r.train_seconds).max(0.0)))
        .collect();
    let overhead_measured = !overheads.is_empty();
    let overhead = if overhead_measured {
        overheads.iter().sum::<f64>() / overheads.len() as f64
    } else {
        DEFAULT_STAGE_OVERHEAD_S
    };
    let gflops = if measured {
        flops / secs / 1e9
    } else {
        default_gflops(plan.compute.backend)
    };
    let stages: Vec<PlanStage> = plan
        .stages
        .iter()
        .zip(records.iter().zip(&lookups))
        .map(|(s, (r, l))| PlanStage {
            id: s.id.as_str(),
            role: s.role.as_str(),
            chain: s.chain_label(),
            model: &s.model,
            seed: s.seed,
            temperature: s.kd.map(|k| k.temperature),
            alpha: s.kd.map(|k| k.alpha),
            parent: s.parent.as_ref().map(|p| p.as_str()),
            members: s.members.iter().map(|m| m.as_str()).collect(),
            init: s.init.as_ref().map(|i| i.as_str()),
            done: r.is_some_and(|r| r.status == Status::Ok),
            status: match (l, r) {
                (Lookup::Corrupt { .. }, _) => "corrupt",
                (_, Some(r)) if r.status == Status::Ok => "done",
                (_, Some(_)) => "failed",
                _ => "pending",
            },
            gflops: plan.stage_flops(s).map(|f| f as f64 / 1e9),
        })
        .collect();
    let pending: Option<f64> = stages
        .iter()
        .filter(|s| !s.done && s.status != "failed")
        .map(|s| s.gflops)
        .sum::<Option<f64>>()
        .map(|g| g / 1e3);
    let mut models: Vec<PlanModel> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in &plan.stages {
        if seen.insert(&s.model) {
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
    let failed = stages.iter().filter(|s| s.status == "failed").count();
    let to_train = stages.len() - done - failed;
    let report = PlanReport {
        experiment: &plan.name,
        backend: format!("{} on {}", plan.compute.result_key(), plan.compute.device),
        cells: plan.cells.len(),
        teachers: n(Role::Teacher),
        assistants: n(Role::Assistant),
        students: n(Role::Student),
        done,
        failed,
        to_train,
        // Each cell on its own would train every stage it needs (an ensemble's members too).
        saved_by_reuse: plan
            .stages_without_reuse()
            .saturating_sub(plan.stages.len()),
        pending_tflops: pending,
        throughput_gflops: gflops,
        throughput_measured: measured,
        stage_overhead_seconds: overhead,
        overhead_measured,
        estimated_seconds: pending.map(|t| t * 1e3 / gflops + to_train as f64 * overhead),
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
    // A grid of 100,000 stages is read in its summary; `--all` and `--json` list everything.
    let shown = if all { usize::MAX } else { ROWS_SHOWN };
    for (st, s) in report.stages.iter().zip(&plan.stages).take(shown) {
        println!(
            "{:<16}  {:<9}  {:>4}  {:<22}  {:<7}  {}",
            st.id,
            st.role,
            st.seed,
            kd_text(s),
            st.status,
            st.chain
        );
    }
    if report.stages.len() > shown {
        println!(
            "... and {} more stages (`kdgrid plan --all` lists them, `--json` for scripts)",
            report.stages.len() - shown
        );
    }
    for s in plan.stages.iter().filter(|s| s.is_onnx()) {
        let o = s.spec.onnx.as_ref().expect("an ONNX stage");
        // What was read from the graph rather than declared; the resizing once the images'
        // size is known (an image folder's only when it loads).
        let assumed = match plan.dataset.shape() {
            Some(d) => o.assumed(d.input),
            None => o.read_from_graph.clone(),
        };
        let files = o
            .side_files
            .iter()
            .map(|f| format!(" + `{}`", f.location))
            .collect::<String>();
        println!(
            "onnx {} ({}): runs `{}`{files} (frozen: evaluated once, serves every seed)",
            s.id,
            s.model,
            o.path.display()
        );
        for a in assumed {
            println!("  read from the graph: {a}");
        }
    }
    for s in plan.stages.iter().filter(|s| s.is_ensemble()) {
        let members: Vec<&str> = s.members.iter().map(|m| m.as_str()).collect();
        println!(
            "ensemble {} ({}): averages stages {}, each trained once and shared with the grid",
            s.id,
            s.model,
            members.join(", ")
        );
    }
    println!(
        "{} unique stages ({} teacher, {} assistant, {} student): {} done, {} to train{}",
        report.stages.len(),
        report.teachers,
        report.assistants,
        report.students,
        report.done,
        report.to_train,
        if report.failed > 0 {
            format!(
                ", {} failed (kept; `run --retry-failed` trains them again)",
                report.failed
            )
        } else {
            String::new()
        }
    );
    println!(
        "{} trainings saved by sharing equal stages across cells",
        report.saved_by_reuse
    );
    if let Some(a) = plan.adaptive {
        let groups = plan.groups();
        let first: Vec<_> = groups
            .iter()
            .flat_map(|(_, c)| c.iter().take(a.min).copied())
            .collect();
        println!(
            "adaptive seeds: {} to {} stages ({} to {} seeds per group, until the 95% CI \
             half-width of mean test accuracy is below {})",
            plan.stages_of(&first).len(),
            plan.stages.len(),
            a.min,
            a.max,
            a.ci_half_width
        );
    }
    match (report.pending_tflops, report.estimated_seconds) {
        _ if report.to_train == 0 => println!("nothing to train"),
        (Some(t), Some(secs)) => println!(
            "to train: {t:.1} TFLOP, about {} at {:.0} GFLOP/s ({}) plus {:.0} ms per stage ({})",
            human_duration(secs),
            report.throughput_gflops,
            if report.throughput_measured {
                "measured on this experiment's finished stages"
            } else {
                "default for this backend"
            },
            report.stage_overhead_seconds * 1e3,
            if report.overhead_measured {
                "measured"
            } else {
                "default"
            }
        ),
        _ => println!("to train: cost unknown until the dataset is read (image folders, text)"),
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
