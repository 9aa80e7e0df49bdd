//! A sweep: drives a [`Plan`] through training, the store and the reports.
//!
//! Stages run in plan order (teachers first). A stage already committed to the store is
//! reused; a diverging stage is recorded as failed and its descendants are skipped, while the
//! rest of the grid goes on. Tables are rebuilt from the store at the end, so an interrupted and
//! resumed sweep ends with the same tables as an uninterrupted one.

use crate::data::{self, Dataset};
use crate::execute::{self, agree::Role, tasks::Tally};
use crate::plan::{Cell, Plan, Stage, StageId};
use crate::report::{self, Provenance, ReportError, Tables};
use crate::store::{Lookup, StageRecord, Status, Store};
use crate::train::{self, Backend};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::execute::{Event, SweepError};

/// What a sweep did.
#[derive(Debug)]
pub struct Outcome {
    /// Stages trained in this invocation.
    pub trained: usize,
    /// Stages found finished (`ok`) in the store.
    pub reused: usize,
    /// Stages that diverged (in this or an earlier invocation).
    pub failed: usize,
    /// Stages skipped because their teacher failed.
    pub skipped: usize,
    /// The experiment's results folder.
    pub dir: PathBuf,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The tables.
    pub tables: Tables,
}

/// How a sweep runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Stages trained at once.
    pub jobs: usize,
    /// Train failed stages again instead of reusing their failure.
    pub retry_failed: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            jobs: 1,
            retry_failed: false,
        }
    }
}

/// Runs every stage of `plan` not yet in the store under `results`, up to `options.jobs` at a
/// time, then writes the tables.
pub fn run(
    plan: &Plan,
    results: &Path,
    backend: &Backend,
    options: Options,
    provenance: &Provenance,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, SweepError> {
    let store = Store::open(results, &plan.name)?;
    let mut records = committed(plan, &store, options.retry_failed, on_event)?;
    let reused = records.values().filter(|r| r.status == Status::Ok).count();
    let groups = plan.groups();
    // Without an adaptive rule every group runs all its cells at once.
    let mut counts: Vec<usize> = groups
        .iter()
        .map(|_| plan.adaptive.map_or(usize::MAX, |a| a.min))
        .collect();
    let mut data: Option<Dataset> = None;
    let mut trained = 0;
    loop {
        let cells: Vec<&Cell> = groups
            .iter()
            .zip(&counts)
            .flat_map(|((_, cells), &n)| cells.iter().take(n).copied())
            .collect();
        let pending: Vec<&Stage> = plan
            .stages_of(&cells)
            .into_iter()
            .filter(|s| !records.contains_key(&s.id))
            .collect();
        if !pending.is_empty() {
            if data.is_none() {
                data = Some(load_data(plan)?);
            }
            let data = data.as_ref().expect("loaded");
            on_event(Event::Begin {
                stages: pending.len(),
                steps: pending
                    .iter()
                    .map(|s| {
                        (s.training.epochs * train::steps_per_epoch(s, data.train.len())) as u64
                    })
                    .sum(),
            });
            trained += pending.len();
            execute::local::run(
                &store,
                backend,
                data,
                plan,
                &mut records,
                &pending,
                options.jobs.max(1),
                on_event,
            )?;
        }
        let Some(rule) = plan.adaptive else {
            break;
        };
        let mut grew = false;
        for ((key, cells), n) in groups.iter().zip(counts.iter_mut()) {
            let accuracies: Vec<f64> = cells
                .iter()
                .take(*n)
                .filter_map(|c| records.get(&c.stage))
                .filter(|r| r.status == Status::Ok)
                .filter_map(|r| r.test_accuracy)
                .collect();
            if !narrow_enough(&accuracies, rule.ci_half_width) && *n < cells.len() {
                *n += 1;
                grew = true;
                on_event(Event::Note(format!(
                    "`{key}`: 95% CI half-width {} after {} seeds, adding seed {}",
                    match report::stats::t_half_width(&accuracies) {
                        Some(h) if h > 0.0 => format!("{h:.4}"),
                        Some(_) => "unknown (the accuracies tie)".to_string(),
                        None => "unknown".to_string(),
                    },
                    *n - 1,
                    cells[*n - 1].seed
                )));
            }
        }
        if !grew {
            break;
        }
    }

    let (tables, files) = write_report(plan, &records, provenance, store.root())?;
    let count = |status| records.values().filter(|r| r.status == status).count();
    let skipped = count(Status::Skipped);
    Ok(Outcome {
        trained: trained - skipped,
        reused,
        failed: count(Status::Failed),
        skipped,
        dir: store.root().to_path_buf(),
        files,
        tables,
    })
}

/// Loads the plan's dataset and checks that every model (an imported file, an ONNX graph) fits
/// its images (known only now for image folders).
fn load_data(plan: &Plan) -> Result<Dataset, SweepError> {
    let data = data::load(&plan.dataset, plan.validation)?;
    for s in &plan.stages {
        crate::manifest::feature_map_problem(
            &s.model,
            &s.spec,
            [data.channels, data.height, data.width],
        )
        .map_err(|message| SweepError::Shape { message })?;
    }
    let mut checked = std::collections::BTreeSet::new();
    for s in plan.stages.iter().filter(|s| s.spec.weights.is_some()) {
        if checked.insert(&s.model) {
            train::check_import(&s.spec, &data).map_err(SweepError::Model)?;
        }
    }
    // An ONNX graph is checked against the images as they loaded (an image folder's size and
    // classes are known only now); typed, not optimized: the stage that runs it loads it.
    for s in plan.stages.iter().filter(|s| s.is_onnx()) {
        if checked.insert(&s.model) {
            let o = s.spec.onnx.as_ref().expect("an ONNX stage");
            train::OnnxTeacher::check(&s.model, o, &data).map_err(SweepError::Model)?;
        }
    }
    Ok(data)
}

/// The records committed for `plan`'s stages; corrupt ones are reported and left out (so they
/// train again), and so are failed ones when `retry_failed`.
fn committed(
    plan: &Plan,
    store: &Store,
    retry_failed: bool,
    on_event: &mut dyn FnMut(Event),
) -> Result<BTreeMap<StageId, StageRecord>, SweepError> {
    found(
        &plan.stages,
        |id| store.lookup(id),
        |r| r.status == Status::Failed && retry_failed,
        |id, path, message| {
            format!(
                "stage `{id}` is corrupt (`{}`: {message}); training it again",
                path.display()
            )
        },
        on_event,
    )
}

/// The records `lookup` finds for `stages`, less those `skip` drops; a corrupt one is reported
/// (`corrupt` says what happens to it) and left out.
fn found<'a>(
    stages: impl IntoIterator<Item = &'a Stage>,
    lookup: impl Fn(&StageId) -> Result<Lookup, crate::store::StoreError>,
    skip: impl Fn(&StageRecord) -> bool,
    corrupt: impl Fn(&StageId, &Path, &str) -> String,
    on_event: &mut dyn FnMut(Event),
) -> Result<BTreeMap<StageId, StageRecord>, SweepError> {
    let mut records = BTreeMap::new();
    for stage in stages {
        match lookup(&stage.id)? {
            Lookup::Found(r) if skip(&r) => {}
            Lookup::Found(r) => {
                records.insert(stage.id.clone(), *r);
            }
            Lookup::Missing => {}
            Lookup::Corrupt { path, message } => {
                on_event(Event::Warning(corrupt(&stage.id, &path, &message)))
            }
        }
    }
    Ok(records)
}

fn write_report(
    plan: &Plan,
    records: &BTreeMap<StageId, StageRecord>,
    provenance: &Provenance,
    dir: &Path,
) -> Result<(Tables, Vec<PathBuf>), SweepError> {
    let tables = report::build(plan, records).map_err(|source| ReportError::Polars {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = report::write(&tables, dir, provenance)?;
    Ok((tables, files))
}

/// Rebuilds the tables and the report of `plan` from the store under `results`, training
/// nothing, into the experiment folder (or `into`, e.g. a scratch folder for `--check`).
pub fn report(
    plan: &Plan,
    results: &Path,
    provenance: &Provenance,
    into: Option<&Path>,
    on_event: &mut dyn FnMut(Event),
) -> Result<(Tables, Vec<PathBuf>), SweepError> {
    let store = Store::open(results, &plan.name)?;
    let records = settled(plan, &store, on_event)?;
    // Empty tables over good ones are a loss, not a report: most often the plan's compute
    // settings differ from the run's, so its ids find nothing.
    let runs = store.root().join("runs.csv");
    if records.is_empty()
        && std::fs::read_to_string(&runs).is_ok_and(|t| t.lines().nth(1).is_some())
    {
        return Err(SweepError::NothingStored {
            runs,
            compute: plan.compute.result_key(),
        });
    }
    write_report(plan, &records, provenance, into.unwrap_or(store.root()))
}

/// The committed records of `stages` (of `plan`) in the store under `results`, read without
/// locking it, so that tasks and runs training into it go on (for the viewers: `kdgrid export`,
/// `--tensorboard`). A corrupt record is a warning and is left out.
pub fn stored<'a>(
    plan: &Plan,
    results: &Path,
    stages: impl IntoIterator<Item = &'a Stage>,
    on_event: &mut dyn FnMut(Event),
) -> Result<BTreeMap<StageId, StageRecord>, SweepError> {
    let root = results.join(&plan.name);
    crate::store::check_format(&root)?;
    found(
        stages,
        |id| crate::store::lookup(&root, id),
        |_| false,
        |id, path, message| format!("stage `{id}` is left out: `{}`: {message}", path.display()),
        on_event,
    )
}

/// Every stage of `plan` the store settles: its committed record, or skipped below a failed
/// teacher, as a sweep that ran them all would report it.
fn settled(
    plan: &Plan,
    store: &Store,
    on_event: &mut dyn FnMut(Event),
) -> Result<BTreeMap<StageId, StageRecord>, SweepError> {
    let mut records = committed(plan, store, false, on_event)?;
    execute::stage::settle_skipped(plan, &mut records);
    Ok(records)
}

/// The stage of `plan` with id `id` (as typed on a command line).
pub fn find_stage<'a>(plan: &'a Plan, id: &str) -> Result<&'a Stage, SweepError> {
    plan.stages
        .iter()
        .find(|s| s.id.as_str() == id)
        .ok_or_else(|| SweepError::UnknownStage { stage: id.into() })
}

/// What a batch of stage tasks did, and the tables if they were the last to finish the plan.
#[derive(Debug)]
pub struct TasksOutcome {
    /// Counts of this process's stages.
    pub tally: Tally,
    /// Whether stages of the plan are not settled yet (trained by other tasks).
    pub unsettled: bool,
    /// The tables, when every stage of the plan was settled and `report` was asked.
    pub report: Option<(Tables, Vec<PathBuf>)>,
    /// The experiment's results folder.
    pub dir: PathBuf,
}

/// Trains `stages` of `plan` as tasks sharing the store under `results` with other processes
/// (see [`execute::tasks`]). With `report`, writes the tables once every stage of the plan is
/// settled: the task that finishes the plan writes them, and a task that finds them written
/// from the same records leaves them alone (`report` is then `None`, `unsettled` false).
#[allow(clippy::too_many_arguments)]
pub fn run_tasks(
    plan: &Plan,
    results: &Path,
    backend: &Backend,
    stages: &[&Stage],
    role: Role,
    report: bool,
    provenance: &Provenance,
    on_event: &mut dyn FnMut(Event),
) -> Result<TasksOutcome, SweepError> {
    if plan.adaptive.is_some() {
        return Err(SweepError::AdaptiveTasks);
    }
    let store = Store::open_shared(results, &plan.name)?;
    let tally = execute::tasks::run(
        plan,
        &store,
        backend,
        stages,
        role,
        provenance,
        &mut || load_data(plan),
        on_event,
    )?;
    // Only the task that finds the plan settled reads every record (see `some_unsettled`).
    let (unsettled, report) = if execute::tasks::some_unsettled(plan, &store)? {
        (true, None)
    } else if !report {
        (false, None)
    } else {
        let records = settled(plan, &store, &mut |_| {})?;
        let unsettled = records.len() < plan.stages.len();
        let tables = match unsettled {
            true => None,
            false => {
                // Written once from the same records: tasks that finish over a finished plan
                // (a resubmission, shards started late) leave the tables alone. The note is
                // written after the tables, so a task killed in between leaves it to the next.
                let inputs = tables_inputs(plan, &store, provenance);
                let note = store.root().join(".tables-from");
                if std::fs::read_to_string(&note).is_ok_and(|t| t.trim() == inputs)
                    && store.root().join("report.md").exists()
                {
                    None
                } else {
                    let written = write_report(plan, &records, provenance, store.root())?;
                    crate::store::write_atomic(&note, format!("{inputs}\n").as_bytes())?;
                    Some(written)
                }
            }
        };
        (unsettled, tables)
    };
    Ok(TasksOutcome {
        tally,
        unsettled,
        report,
        dir: store.root().to_path_buf(),
    })
}

/// SHA-256 of what a plan's tables are made of: its stages' records and where the study
/// comes from.
fn tables_inputs(plan: &Plan, store: &Store, provenance: &Provenance) -> String {
    let records = store.records_digest(plan.stages.iter().map(|s| &s.id));
    let what = format!("{provenance:?}\n{}\n{records}", env!("CARGO_PKG_VERSION"));
    hex::encode(sha2::Sha256::digest(what.as_bytes()))
}

/// Trains stage `id` of `plan` from scratch, recording every step (see [`train::trace`]); its
/// teacher comes from the store under `results`. Nothing is written to the store.
pub fn trace(
    plan: &Plan,
    results: &Path,
    backend: &Backend,
    id: &str,
) -> Result<train::trace::Trace, SweepError> {
    let stage = find_stage(plan, id)?;
    if stage.is_frozen()
        || stage.spec.resnet.is_some()
        || stage.spec.lstm.is_some()
        || stage.spec.mobilenet_v2
    {
        return Err(SweepError::NotTraceable {
            stage: id.into(),
            family: stage.spec.family.clone(),
        });
    }
    let store = Store::open_shared(results, &plan.name)?;
    for p in stage.needs() {
        if !matches!(store.lookup(p)?, Lookup::Found(ref r) if r.status == Status::Ok) {
            return Err(SweepError::TeacherMissing {
                stage: id.into(),
                teacher: p.to_string(),
            });
        }
    }
    let data = load_data(plan)?;
    let teacher = execute::stage::load_teacher(plan, &store, &data, backend, stage)?;
    let init = execute::stage::load_init(plan, &store, &data, backend, stage)?;
    train::trace::trace(stage, &data, teacher.as_ref(), init.as_ref(), backend)
        .map_err(SweepError::Model)
}

/// The logits of a trained stage on the first `limit` test images (`kdgrid predict`).
pub fn predict(
    plan: &Plan,
    results: &Path,
    backend: &Backend,
    id: &str,
    limit: usize,
    with_inputs: bool,
) -> Result<train::Predictions, SweepError> {
    let stage = find_stage(plan, id)?;
    let store = Store::open_shared(results, &plan.name)?;
    if !matches!(store.lookup(&stage.id)?, Lookup::Found(ref r) if r.status == Status::Ok) {
        return Err(SweepError::NotTrained {
            stage: stage.id.to_string(),
        });
    }
    let data = load_data(plan)?;
    let model = if stage.is_frozen() {
        execute::stage::load_teacher(plan, &store, &data, backend, stage)?
            .expect("a frozen stage runs a model")
    } else {
        let path = store.model_path(&stage.id);
        let net = train::load_model(stage, &data, backend, &path).map_err(SweepError::Model)?;
        train::Teacher::One(Box::new(net))
    };
    // A graph that fails when it runs (an ONNX teacher's runtime error) unwinds; said as the
    // stage's error, not as a crash.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::predict(&model, &data, limit, with_inputs, backend)
    }))
    .map_err(|panic| {
        SweepError::Model(train::TrainError::Panicked {
            message: execute::stage::panic_message(panic.as_ref()),
        })
    })
}

/// Whether a group's accuracies pin its mean down to `target` (the 95% t interval's
/// half-width). Accuracies that all tie give a half-width of 0, which is no evidence of a
/// narrow spread (on a small test set two seeds tie often), so the group keeps adding seeds.
fn narrow_enough(accuracies: &[f64], target: f64) -> bool {
    report::stats::t_half_width(accuracies).is_some_and(|h| h > 0.0 && h <= target)
}

#[cfg(test)]
mod tests {
    use super::narrow_enough;

    #[test]
    fn tied_accuracies_are_not_a_narrow_interval() {
        assert!(!narrow_enough(&[0.5, 0.5], 0.01));
        assert!(!narrow_enough(&[0.5, 0.5, 0.5], 0.01));
        assert!(!narrow_enough(&[0.5], 0.01));
        assert!(narrow_enough(&[0.5, 0.5001, 0.5002], 0.01));
        assert!(!narrow_enough(&[0.4, 0.6], 0.01));
    }
}
