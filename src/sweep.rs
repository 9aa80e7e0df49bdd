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
use crate::train::{self, Backend, Cnn, EpochMetrics, TrainError};
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

/// Runs every stage of `plan` not yet in the store under `results`, then writes the tables.
pub fn run(
    plan: &Plan,
    results: &Path,
    backend: &Backend,
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

    // Children still to train, per teacher: a teacher's weights leave memory after its last child.
    let mut waiting: HashMap<StageId, usize> = HashMap::new();
    for s in &pending {
        if let Some(p) = &s.parent {
            *waiting.entry(p.clone()).or_insert(0) += 1;
        }
    }
    let mut models: HashMap<StageId, Cnn> = HashMap::new();
    let mut dataset: Option<Dataset> = None;
    let mut trained = 0;
    for (i, stage) in pending.iter().enumerate() {
        let parent_record = stage.parent.as_ref().map(|p| &records[p]);
        if parent_record.is_some_and(|r| r.status != Status::Ok) {
            let record = skipped(stage, backend);
            on_event(Event::Done(stage, &record));
            records.insert(stage.id.clone(), record);
            continue;
        }
        let data = match &mut dataset {
            Some(d) => &*d,
            None => dataset.insert(data::load(&plan.dataset)?),
        };
        let teacher = match &stage.parent {
            None => None,
            Some(p) => {
                if !models.contains_key(p) {
                    let parent = plan.stage(p).expect("parents are in the plan");
                    let model = train::load_model(parent, data, backend, &store.model_path(p))
                        .map_err(SweepError::Model)?;
                    models.insert(p.clone(), model);
                }
                models.get(p)
            }
        };
        on_event(Event::Start(stage, i + 1, pending.len()));
        let result = train::train(stage, data, teacher, backend, &mut |m| {
            on_event(Event::Epoch(stage, m))
        });
        if let Some(p) = &stage.parent {
            let left = waiting.get_mut(p).expect("counted above");
            *left -= 1;
            if *left == 0 {
                models.remove(p);
            }
        }
        let record = match result {
            Ok(t) => {
                store
                    .save_model(&stage.id, |path| train::save_model(&t.model, path))?
                    .map_err(SweepError::Model)?;
                if waiting.get(&stage.id).is_some_and(|&n| n > 0) {
                    models.insert(stage.id.clone(), t.model);
                }
                let last = t.epochs.last();
                StageRecord {
                    id: stage.id.clone(),
                    status: Status::Ok,
                    error: None,
                    params: t.params,
                    test_accuracy: last.map(|e| e.test_accuracy),
                    test_loss: last.map(|e| e.test_loss),
                    train_seconds: t.seconds,
                    epochs: t.epochs,
                    backend: backend.name().into(),
                    kdgrid_version: env!("CARGO_PKG_VERSION").into(),
                }
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
                    ..skipped(stage, backend)
                }
            }
            Err(e) => return Err(SweepError::Model(e)),
        };
        store.commit(&record)?;
        trained += 1;
        on_event(Event::Done(stage, &record));
        records.insert(stage.id.clone(), record);
    }

    let tables = report::build(plan, &records).map_err(|source| ReportError::Polars {
        path: store.root().to_path_buf(),
        source,
    })?;
    let files = report::write(&tables, store.root())?;
    let count = |status| records.values().filter(|r| r.status == status).count();
    Ok(Outcome {
        trained,
        reused,
        failed: count(Status::Failed),
        skipped: count(Status::Skipped),
        dir: store.root().to_path_buf(),
        files,
        tables,
    })
}

fn skipped(stage: &Stage, backend: &Backend) -> StageRecord {
    StageRecord {
        id: stage.id.clone(),
        status: Status::Skipped,
        error: Some("teacher stage did not train".into()),
        params: 0,
        test_accuracy: None,
        test_loss: None,
        train_seconds: 0.0,
        epochs: Vec::new(),
        backend: backend.name().into(),
        kdgrid_version: env!("CARGO_PKG_VERSION").into(),
    }
}
