//! A stage's training, step by step, for replay in PyTorch (`kdgrid trace`,
//! `scripts/parity/replay.py`): the initial weights, each step's batch (indices, the augmented
//! and normalized inputs, labels, the teacher's logits), learning rate and loss, the final
//! weights and batch-norm statistics, and the final model's logits on test images in evaluation
//! mode. A replay that starts from the same weights and sees the same batches must reproduce the
//! losses and the weights within floating-point tolerance.

use super::named::NamedTensor;
use super::{Backend, StageRun, TrainError};
use crate::data::Dataset;
use crate::plan::{Kd, Stage};
use burn::module::Module;
use serde::Serialize;

/// Test images whose logits the trace keeps.
const EVAL_IMAGES: usize = 64;

/// One optimizer step.
#[derive(Debug, Serialize)]
pub struct Step {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Training-split indices of the batch, in order.
    pub indices: Vec<usize>,
    /// The batch as the model saw it, `[batch, channels, height, width]` row-major.
    pub inputs: Vec<f32>,
    /// Class labels.
    pub labels: Vec<i64>,
    /// The teacher's logits `[batch, classes]`, for a distilled stage.
    pub teacher_logits: Option<Vec<f32>>,
    /// The teacher's last hidden states `[batch, length, width]`, for a stage with a
    /// `hidden-loss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_hidden: Option<Vec<f32>>,
    /// The loss kdgrid computed.
    pub loss: f32,
    /// Its soft-target term (`alpha * T^2 * KL`), for a distilled stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kd_term: Option<f32>,
    /// Its weighted hidden-state term, for a stage with a `hidden-loss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_term: Option<f32>,
}

/// A traced training run.
#[derive(Debug, Serialize)]
pub struct Trace {
    /// The stage (id, model, training settings, distillation).
    pub stage: String,
    /// The architecture: conv widths, kernel, whether each conv is pooled, batch norm, dense
    /// widths, dropout; for encoders their sizes (`bert`), token row (`view`) and hidden loss.
    pub model: serde_json::Value,
    /// Training settings as the manifest resolved them.
    pub training: serde_json::Value,
    /// Distillation settings.
    pub kd: Option<Kd>,
    /// `[channels, height, width]`.
    pub input: [usize; 3],
    /// Classes.
    pub classes: usize,
    /// Backend that computed it.
    pub backend: String,
    /// Weights before the first step.
    pub initial: Vec<NamedTensor>,
    /// Every step.
    pub steps: Vec<Step>,
    /// Weights and batch-norm statistics after the last step.
    pub last: Vec<NamedTensor>,
    /// The first test images `[n, channels, height, width]`.
    pub eval_inputs: Vec<f32>,
    /// The last model's logits on them, in evaluation mode.
    pub eval_logits: Vec<f32>,
}

/// Trains `stage` from scratch as [`super::train`] does, recording every step.
pub fn trace(
    stage: &Stage,
    data: &Dataset,
    teacher: Option<&super::Teacher>,
    init: Option<&super::Net>,
    backend: &Backend,
) -> Result<Trace, TrainError> {
    let mut run = StageRun::new(stage, data, teacher, init, backend)?;
    run.trace = Some(Vec::new());
    let initial = run.model().export();
    for epoch in 1..=stage.training.epochs {
        run.epoch(epoch, &mut |_| {})?;
    }
    let model = run.model().valid();
    let pools = model.pools().to_vec();
    let n = data.test.len().min(EVAL_IMAGES);
    let indices: Vec<usize> = (0..n).collect();
    let mut eval_inputs = Vec::new();
    data.gather(&data.test, &indices, &mut eval_inputs);
    let images = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(
            eval_inputs.clone(),
            [n, data.channels, data.height, data.width],
        ),
        &run.plain,
    );
    let eval_logits = model.forward(images).into_data().iter::<f32>().collect();
    let spec = &stage.spec;
    Ok(Trace {
        stage: stage.id.to_string(),
        model: serde_json::json!({
            "conv": spec.conv,
            "kernel": spec.kernel,
            "padding": spec.padding,
            "pooled": pools,
            "batch_norm": spec.batch_norm,
            "dense": spec.dense,
            "dropout": spec.dropout,
            "bert": spec.bert,
            "view": spec.view,
            "hidden_loss": spec.hidden_loss,
        }),
        training: serde_json::to_value(&stage.training).expect("settings serialize"),
        kd: stage.kd,
        input: [data.channels, data.height, data.width],
        classes: data.classes,
        backend: backend.name().into(),
        initial,
        steps: run.trace.take().unwrap_or_default(),
        last: model.export(),
        eval_inputs,
        eval_logits,
    })
}
