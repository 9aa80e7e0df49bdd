//! The Polars frames of a sweep.

use crate::plan::{Plan, Stage, StageId};
use crate::store::{StageRecord, Status};
use polars::prelude::*;
use std::collections::BTreeMap;

/// Stages of `plan` that have a record, in plan order, with their record.
fn recorded<'a>(
    plan: &'a Plan,
    records: &'a BTreeMap<StageId, StageRecord>,
) -> impl Iterator<Item = (&'a Stage, &'a StageRecord)> {
    plan.stages
        .iter()
        .filter_map(|s| records.get(&s.id).map(|r| (s, r)))
}

/// One row per stage of `plan` that has a record, in plan order.
pub fn runs_frame(
    plan: &Plan,
    records: &BTreeMap<StageId, StageRecord>,
) -> PolarsResult<DataFrame> {
    let rows: Vec<_> = recorded(plan, records).collect();
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
        "weights_sha256" => rows.iter().map(|(_, r)| r.weights_sha256.as_deref()).collect::<Vec<_>>(),
        "init_sha256" => rows.iter().map(|(_, r)| r.init_sha256.as_deref()).collect::<Vec<_>>(),
        "train_seconds" => rows.iter().map(|(_, r)| r.train_seconds).collect::<Vec<_>>(),
        "backend" => rows.iter().map(|(_, r)| r.backend.as_str()).collect::<Vec<_>>(),
        "device" => rows.iter().map(|(_, r)| r.device.as_str()).collect::<Vec<_>>(),
        "threads" => rows.iter().map(|(_, r)| r.threads as u32).collect::<Vec<_>>(),
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
    ]
}

/// Seed statistics (n, mean, std, min, max of test accuracy) of successful runs, grouped by
/// chain, model, temperature and alpha, in plan order.
pub fn summary_frame(runs: &DataFrame) -> PolarsResult<DataFrame> {
    let acc = || col("test_accuracy");
    runs.clone()
        .lazy()
        .filter(col("status").eq(lit(Status::Ok.as_str())))
        .group_by_stable([col("chain"), col("model"), col("temperature"), col("alpha")])
        .agg([
            acc().count().cast(DataType::UInt32).alias("n"),
            acc().mean().alias("mean"),
            acc().std(1).alias("std"),
            acc().min().alias("min"),
            acc().max().alias("max"),
        ])
        .collect()
}
