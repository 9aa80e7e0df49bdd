//! A sweep: drives a [`Plan`] through training, the store and the reports.
//!
//! Stages run in plan order (teachers first). A stage already committed to the store is
//! reused; a diverging stage is recorded as failed and its descendants are skipped, while the
//! rest of the grid goes on. Tables are rebuilt from the store at the end, so an interrupted and
//! resumed sweep ends with the same tables as an uninterrupted one.

use crate::data::{self, DataError, Dataset};
use crate::plan::{Cell, Plan, Stage, StageId};
use crate::report::{self, Provenance, ReportError, Tables};
use crate::store::{Lookup, StageRecord, Status, Store, StoreError};
use crate::train::{self, Backend, Cnn, EpochMetrics, Progress, TrainError, Trained};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors that stop a sweep (a diverging stage does not: it is recorded).
#[derive(Debug, Error, miette::Diagnostic)]
pub enum SweepError {
    /// The dataset is missing or corrupt.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Data(#[from] DataError),
    /// The results store failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
    /// Tables could not be written.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Report(#[from] ReportError),
    /// A model file could not be read or written.
    #[error("{0}")]
    Model(TrainError),
    /// A model does not fit the images (known only once an image folder is read).
    #[error("{message}")]
    #[diagnostic(
        code(kdgrid::sweep::shape),
        help("use fewer conv layers or pools, e.g. `pool = [1, 2]`")
    )]
    Shape {
        /// What does not fit.
        message: String,
    },
}

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

/// Progress events, for the CLI to print.
pub enum Event<'a> {
    /// Training begins: stages to train and their optimizer steps in all.
    Begin {
        /// Stages to train.
        stages: usize,
        /// Optimizer steps of all of them.
        steps: u64,
    },
    /// A stage starts training: its 1-based position among the stages to train, and their count.
    Start(&'a Stage, usize, usize),
    /// An optimizer step ended: epoch, step and steps per epoch.
    Step(&'a Stage, usize, usize, usize),
    /// An epoch ended.
    Epoch(&'a Stage, &'a EpochMetrics),
    /// A stage ended.
    Done(&'a Stage, &'a StageRecord),
    /// Something worth a look that does not stop the sweep (a corrupt stage retrained).
    Warning(String),
    /// Something the user may want to know (a stage resumed from a checkpoint).
    Note(String),
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

/// Messages from training workers to the sweep's thread.
enum Msg {
    Step(usize, usize, usize, usize),
    Epoch(usize, EpochMetrics),
    Done(usize, Box<Result<Trained, TrainError>>),
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
            Scheduler {
                store: &store,
                backend,
                data,
                plan,
                records: &mut records,
                models: HashMap::new(),
                waiting: HashMap::new(),
                notes: Vec::new(),
            }
            .run(&pending, options.jobs.max(1), on_event)?;
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
            let wide =
                report::stats::t_half_width(&accuracies).is_none_or(|h| h > rule.ci_half_width);
            if wide && *n < cells.len() {
                *n += 1;
                grew = true;
                on_event(Event::Note(format!(
                    "`{key}`: 95% CI half-width {} after {} seeds, adding seed {}",
                    report::stats::t_half_width(&accuracies)
                        .map_or_else(|| "unknown".to_string(), |h| format!("{h:.4}")),
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

/// Loads the plan's dataset and checks that every model fits its images (known only now for
/// image folders).
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
    let mut records = BTreeMap::new();
    for stage in &plan.stages {
        match store.lookup(&stage.id)? {
            Lookup::Found(r) if r.status == Status::Failed && retry_failed => {}
            Lookup::Found(r) => {
                records.insert(stage.id.clone(), *r);
            }
            Lookup::Missing => {}
            Lookup::Corrupt { path, message } => on_event(Event::Warning(format!(
                "stage `{}` is corrupt (`{}`: {message}); training it again",
                stage.id,
                path.display()
            ))),
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
    let records = committed(plan, &store, false, on_event)?;
    write_report(plan, &records, provenance, into.unwrap_or(store.root()))
}

/// Runs pending stages on worker threads in dependency order.
struct Scheduler<'a> {
    store: &'a Store,
    backend: &'a Backend,
    data: &'a Dataset,
    plan: &'a Plan,
    records: &'a mut BTreeMap<StageId, StageRecord>,
    /// Trained weights still needed by a pending child.
    models: HashMap<StageId, Cnn>,
    /// Pending children per teacher.
    waiting: HashMap<StageId, usize>,
    /// Things to tell the user once a stage is done.
    notes: Vec<String>,
}

impl Scheduler<'_> {
    fn run(
        mut self,
        pending: &[&Stage],
        jobs: usize,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<(), SweepError> {
        for s in pending {
            if let Some(p) = &s.parent {
                *self.waiting.entry(p.clone()).or_insert(0) += 1;
            }
        }
        let mut todo: Vec<usize> = (0..pending.len()).collect();
        let mut running = 0;
        let mut started = 0;
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        std::thread::scope(|scope| -> Result<(), SweepError> {
            loop {
                // Start every stage whose teacher is settled, in plan order, while slots are free.
                let mut i = 0;
                while i < todo.len() && running < jobs {
                    let stage = pending[todo[i]];
                    let parent = stage.parent.as_ref().map(|p| self.records.get(p));
                    match parent {
                        Some(None) => i += 1, // teacher still training
                        Some(Some(r)) if r.status != Status::Ok => {
                            let record = base_record(stage, self.backend);
                            self.release_parent(stage);
                            on_event(Event::Done(stage, &record));
                            self.records.insert(stage.id.clone(), record);
                            todo.remove(i);
                        }
                        _ => {
                            let teacher = self.teacher(stage)?;
                            self.store.claim(&stage.id)?;
                            let idx = todo.remove(i);
                            started += 1;
                            running += 1;
                            on_event(Event::Start(stage, started, pending.len()));
                            let tx = tx.clone();
                            let (data, backend) = (self.data, self.backend);
                            let checkpoints = self.store.checkpoint_dir(&stage.id);
                            scope.spawn(move || {
                                // A panicking worker (a shape error, an out-of-memory) fails its
                                // stage; it must still report, or the sweep would wait forever.
                                let result =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        train::train(
                                            stage,
                                            data,
                                            teacher.as_ref(),
                                            backend,
                                            Some((&checkpoints, stage.training.checkpoint_every)),
                                            &mut |p| {
                                                let _ = tx.send(match p {
                                                    Progress::Step { epoch, step, steps } => {
                                                        Msg::Step(idx, epoch, step, steps)
                                                    }
                                                    Progress::Epoch(m) => {
                                                        Msg::Epoch(idx, m.clone())
                                                    }
                                                });
                                            },
                                        )
                                    }))
                                    .unwrap_or_else(
                                        |panic| {
                                            Err(TrainError::Panicked {
                                                message: panic_message(panic.as_ref()),
                                            })
                                        },
                                    );
                                let _ = tx.send(Msg::Done(idx, Box::new(result)));
                            });
                        }
                    }
                }
                if running == 0 {
                    if todo.is_empty() {
                        return Ok(());
                    }
                    continue; // skipped stages may have unblocked others
                }
                match rx.recv().expect("workers hold a sender while running") {
                    Msg::Step(idx, e, s, n) => on_event(Event::Step(pending[idx], e, s, n)),
                    Msg::Epoch(idx, m) => on_event(Event::Epoch(pending[idx], &m)),
                    Msg::Done(idx, result) => {
                        running -= 1;
                        let stage = pending[idx];
                        self.release_parent(stage);
                        let record = self.finish(stage, *result)?;
                        for note in self.notes.drain(..) {
                            on_event(Event::Note(note));
                        }
                        on_event(Event::Done(stage, &record));
                        self.records.insert(stage.id.clone(), record);
                    }
                }
            }
        })
    }

    /// The weights of `stage`'s teacher, from memory or from the store.
    fn teacher(&mut self, stage: &Stage) -> Result<Option<Cnn>, SweepError> {
        let Some(p) = &stage.parent else {
            return Ok(None);
        };
        if !self.models.contains_key(p) {
            let parent = self.plan.stage(p).expect("parents are in the plan");
            let model =
                train::load_model(parent, self.data, self.backend, &self.store.model_path(p))
                    .map_err(SweepError::Model)?;
            self.models.insert(p.clone(), model);
        }
        Ok(self.models.get(p).cloned())
    }

    /// One fewer child waits for `stage`'s teacher; drop its weights after the last.
    fn release_parent(&mut self, stage: &Stage) {
        if let Some(p) = &stage.parent {
            let left = self.waiting.get_mut(p).expect("counted");
            *left -= 1;
            if *left == 0 {
                self.models.remove(p);
            }
        }
    }

    /// Saves a finished stage's weights and commits its record.
    fn finish(
        &mut self,
        stage: &Stage,
        result: Result<Trained, TrainError>,
    ) -> Result<StageRecord, SweepError> {
        let record = match result {
            Ok(t) => {
                if let Some(epoch) = t.resumed_from {
                    self.notes.push(format!(
                        "stage `{}` resumed from its epoch-{epoch} checkpoint",
                        stage.id
                    ));
                }
                let model_sha256 = self
                    .store
                    .save_model(&stage.id, |path| train::save_model(&t.model, path))?
                    .map_err(SweepError::Model)?;
                let selected = t.epochs.get(t.selected_epoch.wrapping_sub(1));
                let record = StageRecord {
                    status: Status::Ok,
                    error: None,
                    params: t.params,
                    test_accuracy: selected.map(|e| e.test_accuracy),
                    test_loss: selected.map(|e| e.test_loss),
                    selected_epoch: selected.map(|e| e.epoch),
                    val_accuracy: selected.and_then(|e| e.val_accuracy),
                    weights_sha256: Some(train::weights_digest(&t.model)),
                    init_sha256: Some(t.initial_digest),
                    model_bytes: std::fs::metadata(self.store.model_path(&stage.id))
                        .ok()
                        .map(|m| m.len()),
                    model_sha256: Some(model_sha256),
                    ece: Some(t.quality.ece),
                    agreement: t.quality.agreement,
                    kl_teacher: t.quality.kl_teacher,
                    latency_ms: Some(t.latency_ms),
                    train_seconds: t.seconds,
                    epochs: t.epochs,
                    ..base_record(stage, self.backend)
                };
                if self.waiting.get(&stage.id).is_some_and(|&n| n > 0) {
                    self.models.insert(stage.id.clone(), t.model);
                }
                record
            }
            Err(e @ (TrainError::Diverged { .. } | TrainError::Panicked { .. })) => {
                let message = e.to_string();
                let epochs = match e {
                    TrainError::Diverged { epochs, .. } => epochs,
                    _ => Vec::new(),
                };
                StageRecord {
                    error: Some(message),
                    epochs,
                    status: Status::Failed,
                    ..base_record(stage, self.backend)
                }
            }
            Err(e) => return Err(SweepError::Model(e)),
        };
        self.store.commit(&record)?;
        Ok(record)
    }
}

/// The record of a stage that was not trained because its teacher did not train; trained and
/// failed records start from it and fill in what they measured.
fn base_record(stage: &Stage, backend: &Backend) -> StageRecord {
    StageRecord {
        id: stage.id.clone(),
        status: Status::Skipped,
        error: Some("teacher stage did not train".into()),
        params: 0,
        test_accuracy: None,
        test_loss: None,
        selected_epoch: None,
        val_accuracy: None,
        weights_sha256: None,
        init_sha256: None,
        model_sha256: None,
        ece: None,
        agreement: None,
        kl_teacher: None,
        model_bytes: None,
        latency_ms: None,
        train_seconds: 0.0,
        epochs: Vec::new(),
        backend: backend.name().into(),
        device: backend.device_label(),
        threads: backend.threads(),
        processor: backend.processor(),
        kdgrid_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
