//! The per-stage frames of a sweep: `runs` and `epochs` (results, a function of the manifest,
//! the data, the backend and the processor kind) and `timings` (wall-clock measurements, kept
//! apart so result tables are bit-identical on rerun).

use crate::manifest::RoleSeeds;
use crate::plan::{Plan, Stage, StageId};
use crate::store::{StageRecord, Status};
use polars::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Stages of `plan` that have a record, in plan order, with their record.
fn recorded<'a>(
    plan: &'a Plan,
    records: &'a BTreeMap<StageId, StageRecord>,
) -> impl Iterator<Item = (&'a Stage, &'a StageRecord)> {
    plan.stages
        .iter()
        .filter_map(|s| records.get(&s.id).map(|r| (s, r)))
}

/// Test accuracy of a finished stage.
fn accuracy(records: &BTreeMap<StageId, StageRecord>, id: &StageId) -> Option<f64> {
    records
        .get(id)
        .filter(|r| r.status == Status::Ok)
        .and_then(|r| r.test_accuracy)
}

/// The no-KD stage of each model and seeds (the first in plan order).
type Baselines<'a> = HashMap<(&'a str, RoleSeeds), &'a StageId>;

fn baselines(plan: &Plan) -> Baselines<'_> {
    let mut out = HashMap::new();
    for b in plan.stages.iter().filter(|b| b.chain.len() == 1) {
        out.entry((b.chain[0].as_str(), b.seeds)).or_insert(&b.id);
    }
    out
}

/// The fraction of the teacher-student gap a distilled stage closes on its own seed:
/// `(acc_kd - acc_nokd) / (acc_teacher - acc_nokd)`, against the no-KD run of the same model
/// and seeds; empty unless the teacher beat that run (a negative denominator flips the sign).
/// The report's gap closed is the ratio of the mean differences (`comparisons`), not a mean
/// of these.
fn gap_closed(
    baselines: &Baselines,
    records: &BTreeMap<StageId, StageRecord>,
    s: &Stage,
) -> Option<f64> {
    let kd = accuracy(records, &s.id)?;
    let teacher = accuracy(records, s.parent.as_ref()?)?;
    let baseline = baselines.get(&(s.model.as_str(), s.seeds))?;
    let nokd = accuracy(records, baseline)?;
    (teacher > nokd).then(|| (kd - nokd) / (teacher - nokd))
}

/// One row per stage of `plan` that has a record, in plan order.
pub fn runs_frame(
    plan: &Plan,
    records: &BTreeMap<StageId, StageRecord>,
) -> PolarsResult<DataFrame> {
    let rows: Vec<_> = recorded(plan, records).collect();
    let baselines = baselines(plan);
    df![
        "stage_id" => rows.iter().map(|(s, _)| s.id.to_string()).collect::<Vec<_>>(),
        "chain" => rows.iter().map(|(s, _)| s.chain_label()).collect::<Vec<_>>(),
        "role" => rows.iter().map(|(s, _)| s.role.as_str()).collect::<Vec<_>>(),
        "model" => rows.iter().map(|(s, _)| s.model.as_str()).collect::<Vec<_>>(),
        "family" => rows.iter().map(|(s, _)| s.spec.family.as_str()).collect::<Vec<_>>(),
        "params" => rows.iter().map(|(_, r)| r.params as u64).collect::<Vec<_>>(),
        "seed" => rows.iter().map(|(s, _)| s.seed).collect::<Vec<_>>(),
        "init_seed" => rows.iter().map(|(s, _)| s.seeds.init).collect::<Vec<_>>(),
        "order_seed" => rows.iter().map(|(s, _)| s.seeds.order).collect::<Vec<_>>(),
        "augment_seed" => rows.iter().map(|(s, _)| s.seeds.augment).collect::<Vec<_>>(),
        "temperature" => rows.iter().map(|(s, _)| s.kd.map(|k| k.temperature)).collect::<Vec<_>>(),
        "alpha" => rows.iter().map(|(s, _)| s.kd.map(|k| k.alpha)).collect::<Vec<_>>(),
        "teacher" => rows.iter().map(|(s, _)| s.teacher_model()).collect::<Vec<_>>(),
        "parent_id" => rows.iter().map(|(s, _)| s.parent.as_ref().map(|p| p.to_string())).collect::<Vec<_>>(),
        "status" => rows.iter().map(|(_, r)| r.status.as_str()).collect::<Vec<_>>(),
        "epochs" => rows.iter().map(|(_, r)| r.epochs.len() as u32).collect::<Vec<_>>(),
        "selection" => rows.iter().map(|(s, _)| s.training.select.as_str()).collect::<Vec<_>>(),
        "selected_epoch" => rows.iter().map(|(_, r)| r.selected_epoch.or((r.status == Status::Ok).then_some(r.epochs.len())).map(|e| e as u32)).collect::<Vec<_>>(),
        "test_accuracy" => rows.iter().map(|(_, r)| r.test_accuracy).collect::<Vec<_>>(),
        "test_loss" => rows.iter().map(|(_, r)| r.test_loss).collect::<Vec<_>>(),
        "val_accuracy" => rows.iter().map(|(_, r)| r.val_accuracy).collect::<Vec<_>>(),
        "last_test_accuracy" => rows.iter().map(|(_, r)| r.epochs.last().map(|e| e.test_accuracy).filter(|_| r.status == Status::Ok)).collect::<Vec<_>>(),
        "ece" => rows.iter().map(|(_, r)| r.ece).collect::<Vec<_>>(),
        "teacher_accuracy" => rows.iter().map(|(s, _)| s.parent.as_ref().and_then(|p| accuracy(records, p))).collect::<Vec<_>>(),
        "agreement" => rows.iter().map(|(_, r)| r.agreement).collect::<Vec<_>>(),
        "kl_teacher" => rows.iter().map(|(_, r)| r.kl_teacher).collect::<Vec<_>>(),
        "gap_closed" => rows.iter().map(|(s, _)| gap_closed(&baselines, records, s)).collect::<Vec<_>>(),
        "model_bytes" => rows.iter().map(|(_, r)| r.model_bytes).collect::<Vec<_>>(),
        "weights_sha256" => rows.iter().map(|(_, r)| r.weights_sha256.as_deref()).collect::<Vec<_>>(),
        "init_sha256" => rows.iter().map(|(_, r)| r.init_sha256.as_deref()).collect::<Vec<_>>(),
        "backend" => rows.iter().map(|(_, r)| r.backend.as_str()).collect::<Vec<_>>(),
        "device" => rows.iter().map(|(_, r)| r.device.as_str()).collect::<Vec<_>>(),
        "threads" => rows.iter().map(|(_, r)| r.threads as u32).collect::<Vec<_>>(),
        "processor" => rows.iter().map(|(_, r)| r.processor.as_str()).collect::<Vec<_>>(),
        "kdgrid_version" => rows.iter().map(|(_, r)| r.kdgrid_version.as_str()).collect::<Vec<_>>(),
        "error" => rows.iter().map(|(_, r)| r.error.as_deref()).collect::<Vec<_>>(),
    ]
}

/// One row per stage and completed epoch.
pub fn epochs_frame(
    plan: &Plan,
    records: &BTreeMap<StageId, StageRecord>,
) -> PolarsResult<DataFrame> {
    let rows: Vec<_> = recorded(plan, records)
        .flat_map(|(s, r)| r.epochs.iter().map(move |e| (s, e)))
        .collect();
    df![
        "stage_id" => rows.iter().map(|(s, _)| s.id.to_string()).collect::<Vec<_>>(),
        "chain" => rows.iter().map(|(s, _)| s.chain_label()).collect::<Vec<_>>(),
        "model" => rows.iter().map(|(s, _)| s.model.as_str()).collect::<Vec<_>>(),
        "family" => rows.iter().map(|(s, _)| s.spec.family.as_str()).collect::<Vec<_>>(),
        "seed" => rows.iter().map(|(s, _)| s.seed).collect::<Vec<_>>(),
        "temperature" => rows.iter().map(|(s, _)| s.kd.map(|k| k.temperature)).collect::<Vec<_>>(),
        "alpha" => rows.iter().map(|(s, _)| s.kd.map(|k| k.alpha)).collect::<Vec<_>>(),
        "epoch" => rows.iter().map(|(_, e)| e.epoch as u32).collect::<Vec<_>>(),
        "train_loss" => rows.iter().map(|(_, e)| e.train_loss).collect::<Vec<_>>(),
        "test_loss" => rows.iter().map(|(_, e)| e.test_loss).collect::<Vec<_>>(),
        "test_accuracy" => rows.iter().map(|(_, e)| e.test_accuracy).collect::<Vec<_>>(),
        "val_loss" => rows.iter().map(|(_, e)| e.val_loss).collect::<Vec<_>>(),
        "val_accuracy" => rows.iter().map(|(_, e)| e.val_accuracy).collect::<Vec<_>>(),
        "kd_loss" => rows.iter().map(|(_, e)| e.kd_loss).collect::<Vec<_>>(),
        "hidden_loss" => rows.iter().map(|(_, e)| e.hidden_loss).collect::<Vec<_>>(),
    ]
}

/// Wall-clock measurements, one row per stage that trained: training seconds, seconds per
/// epoch, training images per second and inference latency.
pub fn timings_frame(
    plan: &Plan,
    records: &BTreeMap<StageId, StageRecord>,
) -> PolarsResult<DataFrame> {
    let rows: Vec<_> = recorded(plan, records)
        .filter(|(_, r)| r.status != Status::Skipped)
        .collect();
    let train_images = |s: &Stage, r: &StageRecord| {
        plan.dataset
            .shape()
            .map(|shape| (shape.train * r.epochs.len()) as f64 / r.train_seconds.max(1e-9))
            .filter(|_| r.status == Status::Ok && s.training.validation.is_none())
    };
    df![
        "stage_id" => rows.iter().map(|(s, _)| s.id.to_string()).collect::<Vec<_>>(),
        "chain" => rows.iter().map(|(s, _)| s.chain_label()).collect::<Vec<_>>(),
        "model" => rows.iter().map(|(s, _)| s.model.as_str()).collect::<Vec<_>>(),
        "seed" => rows.iter().map(|(s, _)| s.seed).collect::<Vec<_>>(),
        "train_seconds" => rows.iter().map(|(_, r)| r.train_seconds).collect::<Vec<_>>(),
        "epoch_seconds" => rows.iter().map(|(_, r)| (!r.epochs.is_empty()).then(|| r.epochs.iter().map(|e| e.seconds).sum::<f64>() / r.epochs.len() as f64)).collect::<Vec<_>>(),
        "train_images_per_second" => rows.iter().map(|(s, r)| train_images(s, r)).collect::<Vec<_>>(),
        "latency_ms_batch1" => rows.iter().map(|(_, r)| r.latency_ms.map(|l| l[0])).collect::<Vec<_>>(),
        "latency_ms_batch256" => rows.iter().map(|(_, r)| r.latency_ms.map(|l| l[1])).collect::<Vec<_>>(),
        "backend" => rows.iter().map(|(_, r)| r.backend.as_str()).collect::<Vec<_>>(),
        "threads" => rows.iter().map(|(_, r)| r.threads as u32).collect::<Vec<_>>(),
        "jobs" => rows.iter().map(|(_, r)| r.jobs.map(|j| j as u32)).collect::<Vec<_>>(),
        "processor" => rows.iter().map(|(_, r)| r.processor.as_str()).collect::<Vec<_>>(),
    ]
}
