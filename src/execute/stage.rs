//! Training one stage against the store: what every executor does per stage.

use super::SweepError;
use crate::data::Dataset;
use crate::plan::{Plan, Stage, StageId};
use crate::store::{Claim, StageRecord, Status, Store};
use crate::train::{self, Backend, Net, Progress, Teacher, TrainError, Trained};
use std::collections::BTreeMap;
use std::time::Instant;

/// A stage trained (or failed) and committed.
pub struct Finished {
    /// The committed record.
    pub record: StageRecord,
    /// The trained weights, for children trained next in this process.
    pub model: Option<Net>,
    /// The epoch a checkpoint resumed the stage from.
    pub resumed_from: Option<usize>,
    /// False when another task had committed the stage first (a shared store keeps its record).
    pub committed: bool,
}

/// Trains `stage` (a panic in training fails the stage rather than the process), saves its
/// weights and commits its record while `claim` holds the stage, noting that `jobs` stages
/// trained at once. A diverged or crashed stage is committed as failed.
#[allow(clippy::too_many_arguments)]
pub fn train_and_commit(
    store: &Store,
    claim: &Claim,
    stage: &Stage,
    data: &Dataset,
    teacher: Option<&Teacher>,
    init: Option<&train::Net>,
    backend: &Backend,
    jobs: usize,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Finished, SweepError> {
    let start = Instant::now();
    // Loading the data and the teachers counts as progress too.
    claim.progressed();
    if stage.is_frozen() {
        let model = teacher.expect("a frozen stage's model is loaded for it");
        return commit_frozen(store, claim, stage, data, model, backend, jobs);
    }
    let checkpoints = store.checkpoint_dir(&stage.id);
    // Training goes on while the claim holds and no other task committed the stage (a record
    // there from the start is a corrupt one, trained over).
    let recorded = store.record_inode(&stage.id);
    let keep = || claim.holds() && store.record_inode(&stage.id) == recorded;
    let on_progress = &mut |p: Progress| {
        claim.progressed();
        on_progress(p);
    };
    // A panicking worker (a shape error, an out-of-memory) fails its stage; it must still
    // report, or a sweep waiting for it would wait forever.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::train(
            stage,
            data,
            teacher,
            init,
            backend,
            // On a shared store the last epoch is kept too: a task that takes the stage over
            // from a holder stopped or killed after its last epoch evaluates and commits
            // rather than training the stage again.
            Some((
                &checkpoints,
                stage.training.checkpoint_every,
                store.is_shared(),
            )),
            &keep,
            on_progress,
        )
    }))
    .unwrap_or_else(|panic| {
        Err(TrainError::Panicked {
            message: panic_message(panic.as_ref()),
        })
    });
    // The final evaluation done: saving and committing follow.
    claim.progressed();
    commit(store, claim, stage, backend, jobs, result, start)
}

/// Evaluates a frozen stage (an ensemble from its members, an ONNX model) and commits its
/// record; it has no weights of its own (students load the members, or the ONNX file).
fn commit_frozen(
    store: &Store,
    claim: &Claim,
    stage: &Stage,
    data: &Dataset,
    model: &Teacher,
    backend: &Backend,
    jobs: usize,
) -> Result<Finished, SweepError> {
    let start = Instant::now();
    // As for training: a panic (an out-of-memory while evaluating, an operator the ONNX
    // runtime fails on) fails the stage, and the sweep goes on.
    let e = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::fault::check_panic("panic-ensemble", &stage.model);
        train::evaluate_frozen(model, data, backend)
    })) {
        Ok(e) => e,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            return commit(
                store,
                claim,
                stage,
                backend,
                jobs,
                Err(TrainError::Panicked { message }),
                start,
            );
        }
    };
    let m = &e.metrics;
    let record = StageRecord {
        status: Status::Ok,
        error: None,
        params: e.params,
        test_accuracy: Some(m.test_accuracy),
        test_loss: Some(m.test_loss),
        selected_epoch: Some(0),
        val_accuracy: m.val_accuracy,
        ece: Some(e.quality.ece),
        latency_ms: Some(e.latency_ms),
        train_seconds: m.seconds,
        epochs: vec![e.metrics.clone()],
        jobs: Some(jobs),
        wall_seconds: Some(start.elapsed().as_secs_f64()),
        // An ONNX model's size is its files' (whose digests are in the stage id; the store holds
        // no weights of it to check).
        model_bytes: stage.spec.onnx.as_ref().and_then(|o| o.bytes()),
        assumed: stage.spec.onnx.as_ref().map_or_else(Vec::new, |o| {
            o.assumed([data.channels, data.height, data.width])
        }),
        ..base_record(stage, backend)
    };
    let committed = store.commit(&record, None, claim)?;
    Ok(Finished {
        record,
        model: None,
        resumed_from: None,
        committed,
    })
}

/// Saves a finished stage's weights and commits its record.
fn commit(
    store: &Store,
    claim: &Claim,
    stage: &Stage,
    backend: &Backend,
    jobs: usize,
    result: Result<Trained, TrainError>,
    start: Instant,
) -> Result<Finished, SweepError> {
    let mut staged = None;
    let finished = match result {
        Ok(t) => {
            crate::fault::check_panic("panic-save", &stage.model);
            let model = store
                .save_model(&stage.id, |path| train::save_model(&t.model, path))?
                .map_err(SweepError::Model)?;
            // The record names the digest of exactly the file it commits.
            let (model_sha256, model_bytes) = (model.sha256.clone(), model.bytes);
            staged = Some(model);
            let selected = t.epochs.iter().find(|e| e.epoch == t.selected_epoch);
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
                model_bytes: Some(model_bytes),
                model_sha256: Some(model_sha256),
                ece: Some(t.quality.ece),
                agreement: t.quality.agreement,
                kl_teacher: t.quality.kl_teacher,
                latency_ms: Some(t.latency_ms),
                train_seconds: t.seconds,
                epochs: t.epochs,
                jobs: Some(jobs),
                ..base_record(stage, backend)
            };
            Finished {
                record,
                model: Some(t.model),
                resumed_from: t.resumed_from,
                committed: false,
            }
        }
        Err(e @ (TrainError::Diverged { .. } | TrainError::Panicked { .. })) => {
            let message = e.to_string();
            let epochs = match e {
                TrainError::Diverged { epochs, .. } => epochs,
                _ => Vec::new(),
            };
            Finished {
                record: StageRecord {
                    error: Some(message),
                    epochs,
                    status: Status::Failed,
                    jobs: Some(jobs),
                    ..base_record(stage, backend)
                },
                model: None,
                resumed_from: None,
                committed: false,
            }
        }
        Err(e) => return Err(SweepError::Model(e)),
    };
    let mut finished = finished;
    finished.record.wall_seconds = Some(start.elapsed().as_secs_f64());
    let committed = store.commit(&finished.record, staged, claim)?;
    Ok(Finished {
        committed,
        ..finished
    })
}

/// Loads what `stage` learns from out of the store: its teacher (an ensemble teacher's
/// members, an ONNX teacher's graph), or, for a frozen stage, what it runs itself.
pub fn load_teacher(
    plan: &Plan,
    store: &Store,
    data: &Dataset,
    backend: &Backend,
    stage: &Stage,
) -> Result<Option<Teacher>, SweepError> {
    let source = match &stage.parent {
        _ if stage.is_frozen() => stage,
        Some(p) => plan.stage(p).expect("parents are in the plan"),
        None => return Ok(None),
    };
    let load = |s: &Stage| {
        train::load_model(s, data, backend, &store.model_path(&s.id)).map_err(SweepError::Model)
    };
    if let Some(o) = &source.spec.onnx {
        return train::OnnxTeacher::load(&source.model, o, data, backend.threads())
            .map(|t| Some(Teacher::Onnx(t)))
            .map_err(SweepError::Model);
    }
    Ok(Some(match &source.spec.ensemble {
        Some(e) => Teacher::Ensemble(
            source
                .members
                .iter()
                .map(|m| load(plan.stage(m).expect("members are in the plan")))
                .collect::<Result<_, _>>()?,
            e.combine,
        ),
        None => Teacher::One(Box::new(load(source)?)),
    }))
}

/// The trained model `stage` starts from (`init-from`), out of the store.
pub fn load_init(
    plan: &Plan,
    store: &Store,
    data: &Dataset,
    backend: &Backend,
    stage: &Stage,
) -> Result<Option<train::Net>, SweepError> {
    let Some(id) = &stage.init else {
        return Ok(None);
    };
    let source = plan.stage(id).expect("init stages are in the plan");
    train::load_model(source, data, backend, &store.model_path(id))
        .map(Some)
        .map_err(SweepError::Model)
}

/// The record of a stage that was not trained because its teacher (`parent`) did not train;
/// it runs where its teacher ran. Such records are reported, never stored: they follow from the
/// teacher's.
pub fn skipped_record(stage: &Stage, parent: &StageRecord) -> StageRecord {
    StageRecord {
        id: stage.id.clone(),
        backend: parent.backend.clone(),
        device: parent.device.clone(),
        threads: parent.threads,
        processor: parent.processor.clone(),
        kdgrid_version: parent.kdgrid_version.clone(),
        // The stage it starts from, when that is not also its teacher, says so.
        error: (stage.init.as_ref() == Some(&parent.id)
            && stage.parent.as_ref() != Some(&parent.id))
        .then(|| "the stage it starts from (`init-from`) did not train".to_string())
        .or_else(|| empty_record(stage).error),
        ..empty_record(stage)
    }
}

/// Adds the skipped record of every stage of `plan` below a failed (or skipped) stage that has
/// no record of its own, as a sweep that ran them all would have.
pub fn settle_skipped(plan: &Plan, records: &mut BTreeMap<StageId, StageRecord>) {
    // Plan order puts what a stage needs first, so a chain of skips settles in one pass.
    for stage in &plan.stages {
        if records.contains_key(&stage.id) {
            continue;
        }
        if let Some(failed) = failed_need(stage, records) {
            let record = skipped_record(stage, failed);
            records.insert(stage.id.clone(), record);
        }
    }
}

/// The record of a stage `stage` needs (its teacher, an ensemble's member) that did not train.
pub fn failed_need<'a>(
    stage: &Stage,
    records: &'a BTreeMap<StageId, StageRecord>,
) -> Option<&'a StageRecord> {
    stage
        .needs()
        .filter_map(|n| records.get(n))
        .find(|r| r.status != Status::Ok)
}

/// A record of `stage` on `backend`, before anything is measured.
fn base_record(stage: &Stage, backend: &Backend) -> StageRecord {
    StageRecord {
        backend: backend.name().into(),
        device: backend.device_label(),
        threads: backend.threads(),
        processor: backend.processor(),
        ..empty_record(stage)
    }
}

fn empty_record(stage: &Stage) -> StageRecord {
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
        model_file: None,
        ece: None,
        agreement: None,
        kl_teacher: None,
        model_bytes: None,
        latency_ms: None,
        train_seconds: 0.0,
        epochs: Vec::new(),
        backend: String::new(),
        device: String::new(),
        threads: 0,
        processor: String::new(),
        kdgrid_version: env!("CARGO_PKG_VERSION").into(),
        jobs: None,
        wall_seconds: None,
        assumed: Vec::new(),
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
