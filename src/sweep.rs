//! A sweep: drives a [`Plan`] through training, the store and the reports.
//!
//! Stages run in plan order (teachers first). A stage already committed to the store is
//! reused; a diverging stage is recorded as failed and its descendants are skipped, while the
//! rest of the grid goes on. Tables are rebuilt from the store at the end, so an interrupted and
//! resumed sweep ends with the same tables as an uninterrupted one.

use crate::data::{self, DataError, Dataset};
use crate::plan::{Plan, Stage, StageId};
use crate::report::{self, ReportError, Tables};
use crate::store::{StageRecord, Status, Store, StoreError};
use crate::train::{self, Backend, Cnn, EpochMetrics, TrainError, Trained};
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
}

/// What a sweep did.
#[derive(Debug)]
pub struct Outcome {
    /// Stages trained in this invocation.
    pub trained: usize,
    /// Stages found done in the store.
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
    /// A stage starts training: its 1-based position among the stages to train, and their count.
    Start(&'a Stage, usize, usize),
    /// An epoch ended.
    Epoch(&'a Stage, &'a EpochMetrics),
    /// A stage ended.
    Done(&'a Stage, &'a StageRecord),
}

/// Messages from training workers to the sweep's thread.
enum Msg {
    Epoch(usize, EpochMetrics),
    Done(usize, Box<Result<Trained, TrainError>>),
}

/// Runs every stage of `plan` not yet in the store under `results`, up to `jobs` at a time,
/// then writes the tables.
pub fn run(
    plan: &Plan,
    results: &Path,
    backend: &Backend,
    jobs: usize,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, SweepError> {
    let store = Store::open(results, &plan.name)?;
    let mut records: BTreeMap<StageId, StageRecord> = BTreeMap::new();
    for stage in &plan.stages {
        if let Some(record) = store.record(&stage.id)? {
            records.insert(stage.id.clone(), record);
        }
    }
    let reused = records.len();
    let pending: Vec<&Stage> = plan
        .stages
        .iter()
        .filter(|s| !records.contains_key(&s.id))
        .collect();
    let trained = pending.len();
    if !pending.is_empty() {
        let data = data::load(&plan.dataset)?;
        // Image folders' sizes are known only now; a fractional split can also round to 0.
        for s in &pending {
            if let Some(h) = s.training.validation
                && !h.fits(data.train.len())
            {
                return Err(data::DataError::Holdout {
                    dataset: data.name.clone(),
                    held_out: h.count(data.train.len()),
                    train: data.train.len(),
                }
                .into());
            }
        }
        Scheduler {
            store: &store,
            backend,
            data: &data,
            plan,
            records: &mut records,
            models: HashMap::new(),
            waiting: HashMap::new(),
        }
        .run(&pending, jobs.max(1), on_event)?;
    }

    let tables = report::build(plan, &records).map_err(|source| ReportError::Polars {
        path: store.root().to_path_buf(),
        source,
    })?;
    let files = report::write(&tables, store.root())?;
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
                            let idx = todo.remove(i);
                            started += 1;
                            running += 1;
                            on_event(Event::Start(stage, started, pending.len()));
                            let tx = tx.clone();
                            let (data, backend) = (self.data, self.backend);
                            scope.spawn(move || {
                                let result = train::train(
                                    stage,
                                    data,
                                    teacher.as_ref(),
                                    backend,
                                    &mut |m| {
                                        let _ = tx.send(Msg::Epoch(idx, m.clone()));
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
                    Msg::Epoch(idx, m) => on_event(Event::Epoch(pending[idx], &m)),
                    Msg::Done(idx, result) => {
                        running -= 1;
                        let stage = pending[idx];
                        self.release_parent(stage);
                        let record = self.finish(stage, *result)?;
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
                self.store
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
                    train_seconds: t.seconds,
                    epochs: t.epochs,
                    ..base_record(stage, self.backend)
                };
                if self.waiting.get(&stage.id).is_some_and(|&n| n > 0) {
                    self.models.insert(stage.id.clone(), t.model);
                }
                record
            }
            Err(e @ TrainError::Diverged { .. }) => {
                let message = e.to_string();
                let TrainError::Diverged { epochs, .. } = e else {
                    unreachable!()
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
        train_seconds: 0.0,
        epochs: Vec::new(),
        backend: backend.name().into(),
        device: backend.device_label(),
        threads: backend.threads(),
        kdgrid_version: env!("CARGO_PKG_VERSION").into(),
    }
}
