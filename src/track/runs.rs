//! A stage as the viewers show it, whatever the viewer: its run name (the grid cell as a path,
//! `teacher>student/T=4,alpha=0.3/seed=2`), its hyperparameters, and its scalars per epoch and
//! at the end. TensorBoard and MLflow write the same names and values.

use crate::plan::{Plan, Stage, StageId};
use crate::store::StageRecord;
use crate::train::EpochMetrics;
use std::collections::HashMap;

/// A hyperparameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A name (chain, model, backend).
    Text(String),
    /// A number (temperature, alpha, seeds).
    Number(f64),
}

impl Value {
    /// As MLflow stores a parameter, and as a run name shows it.
    pub fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Number(x) => format!("{x}"),
        }
    }
}

/// One scalar of a run at one step (the 1-based epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scalar {
    /// Tag, `group/name` (`loss/train`, `final/test_accuracy`).
    pub tag: &'static str,
    /// Step: the epoch it belongs to.
    pub step: u64,
    /// Value.
    pub value: f64,
}

/// Tags of the scalars of each epoch ([`epoch_scalars`]), at most one value each.
pub const EPOCH_TAGS: [&str; 10] = [
    "loss/train",
    "loss/test",
    "loss/validation",
    "accuracy/test",
    "accuracy/validation",
    "loss/kd",
    "loss/hidden",
    "optimizer/lr",
    "time/epoch_seconds",
    "time/train_images_per_second",
];

/// Tags of the scalars written at the end of a stage (at its last epoch's step), which the
/// HParams table shows as metrics.
pub const FINAL_TAGS: [&str; 6] = [
    "final/test_accuracy",
    "final/test_loss",
    "final/val_accuracy",
    "final/ece",
    "final/agreement",
    "final/kl_teacher",
];

/// Each stage's run name: its chain, its distillation settings when distilled, and its seeds.
/// Stages the grid does not tell apart by those (other training overrides, another teacher
/// seed) get their stage id appended, so no two stages share a run.
pub fn run_names(plan: &Plan) -> HashMap<StageId, String> {
    let mut names: HashMap<StageId, String> = plan
        .stages
        .iter()
        .map(|s| (s.id.clone(), grid_name(s)))
        .collect();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for name in names.values() {
        *uses.entry(name.as_str()).or_default() += 1;
    }
    let shared: std::collections::HashSet<String> = uses
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(name, _)| name.to_string())
        .collect();
    for (id, name) in &mut names {
        if shared.contains(name.as_str()) {
            name.push_str(&format!(",id={id}"));
        }
    }
    names
}

fn grid_name(stage: &Stage) -> String {
    let mut name = stage.chain.join(">");
    if let Some(kd) = &stage.kd {
        name.push_str(&format!("/T={},alpha={}", kd.temperature, kd.alpha));
    }
    name.push_str(&format!("/seed={}", stage.seed));
    let s = stage.seeds;
    for (role, seed) in [("init", s.init), ("order", s.order), ("augment", s.augment)] {
        if seed != stage.seed {
            name.push_str(&format!(",{role}={seed}"));
        }
    }
    name
}

/// Whether any stage of `plan` draws a source of randomness from a seed other than its cell
/// seed (role-seed axes): only then do the viewers show the role seeds.
pub fn role_seeds_vary(plan: &Plan) -> bool {
    plan.stages.iter().any(|s| {
        let r = s.seeds;
        [r.init, r.order, r.augment] != [s.seed; 3]
    })
}

/// The stage's hyperparameters: its place in the grid and what computed it; distillation
/// settings only for distilled stages, role seeds only when `role_seeds` ([`role_seeds_vary`]).
pub fn hparams(plan: &Plan, stage: &Stage, role_seeds: bool) -> Vec<(&'static str, Value)> {
    let mut h = vec![
        ("chain", Value::Text(stage.chain_label())),
        ("role", Value::Text(stage.role.as_str().into())),
        ("model", Value::Text(stage.model.clone())),
        (
            "teacher",
            Value::Text(stage.teacher_model().unwrap_or("").into()),
        ),
        ("seed", Value::Number(stage.seed as f64)),
        ("epochs", Value::Number(stage.training.epochs as f64)),
        ("lr", Value::Number(stage.training.lr)),
        ("backend", Value::Text(plan.compute.backend.to_string())),
    ];
    if role_seeds {
        let r = stage.seeds;
        h.push(("init_seed", Value::Number(r.init as f64)));
        h.push(("order_seed", Value::Number(r.order as f64)));
        h.push(("augment_seed", Value::Number(r.augment as f64)));
    }
    if let Some(kd) = &stage.kd {
        h.push(("temperature", Value::Number(kd.temperature)));
        h.push(("alpha", Value::Number(kd.alpha)));
    }
    h
}

/// The scalars of one epoch: losses, accuracies, the learning rate it trained with, and its
/// speed (training images per second of the epoch's wall time, training and evaluation, when
/// the dataset's size is known and no validation split takes from the training set).
pub fn epoch_scalars(plan: &Plan, stage: &Stage, m: &EpochMetrics) -> Vec<Scalar> {
    let step = m.epoch as u64;
    let t = &stage.training;
    let lr = t.schedule.lr(t.lr, m.epoch.saturating_sub(1), t.epochs);
    let images = plan
        .dataset
        .shape()
        .filter(|_| t.validation.is_none() && m.seconds > 0.0)
        .map(|shape| shape.train as f64 / m.seconds);
    let values = [
        Some(m.train_loss),
        Some(m.test_loss),
        m.val_loss,
        Some(m.test_accuracy),
        m.val_accuracy,
        m.kd_loss,
        m.hidden_loss,
        Some(lr),
        Some(m.seconds),
        images,
    ];
    EPOCH_TAGS
        .into_iter()
        .zip(values)
        .filter_map(|(tag, v)| v.map(|value| Scalar { tag, step, value }))
        .collect()
}

/// The scalars a finished stage ends with (tags [`FINAL_TAGS`]), at its last epoch's step: the
/// numbers of `runs.csv` (the selected epoch's accuracy and loss, calibration, agreement).
pub fn final_scalars(record: &StageRecord) -> Vec<Scalar> {
    let step = record.epochs.len() as u64;
    let values = [
        record.test_accuracy,
        record.test_loss,
        record.val_accuracy,
        record.ece,
        record.agreement,
        record.kl_teacher,
    ];
    FINAL_TAGS
        .into_iter()
        .zip(values)
        .filter_map(|(tag, v)| v.map(|value| Scalar { tag, step, value }))
        .collect()
}
