//! Evaluation: loss and accuracy on a split, logits, predictions, latency, and an ensemble
//! measured as a model of its own.

use super::batches::{for_each_batch, for_each_batch_of_first, labels_tensor};
use super::{Backend, EpochMetrics, Net, Quality, Teacher, loss, quality};
use crate::data::{Dataset, Split};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;
use std::time::Instant;

/// A frozen stage's measurements (an ensemble averaged as it says, an ONNX graph), at
/// T = 1, on the test (and validation) split.
#[derive(Debug)]
pub struct FrozenMetrics {
    /// Test (and validation) loss and accuracy, as epoch 0.
    pub metrics: EpochMetrics,
    /// Calibration on the test split.
    pub quality: Quality,
    /// Median inference milliseconds per image at batch 1 and 256 (every member runs).
    pub latency_ms: [f64; 2],
    /// Parameters of all members.
    pub params: usize,
}

/// Evaluates a frozen teacher (an ensemble, an ONNX graph) as a model of its own.
pub fn evaluate_frozen(model: &Teacher, data: &Dataset, backend: &Backend) -> FrozenMetrics {
    let start = Instant::now();
    let device = &backend.device;
    let forward = |x| model.logits(x, 1.0);
    let (train_loss, _) = evaluate_with(&forward, data, &data.train, device);
    let metrics = measure(&forward, data, device, 0, train_loss, start);
    let test_logits = logits(&forward, data, &data.test, device);
    FrozenMetrics {
        quality: quality::quality(&test_logits, None, &data.test.labels, data.classes),
        latency_ms: latency_of(&forward, data, device),
        params: model.params(),
        metrics,
    }
}

/// Epoch `epoch`'s metrics for the logits `forward` gives: test (and validation) loss and
/// accuracy, next to `train_loss`, timed from `start`.
pub(super) fn measure(
    forward: &dyn Fn(Tensor<4>) -> Tensor<2>,
    data: &Dataset,
    device: &Device,
    epoch: usize,
    train_loss: f64,
    start: Instant,
) -> EpochMetrics {
    let (test_loss, test_accuracy) = evaluate_with(forward, data, &data.test, device);
    let val = data
        .val
        .as_ref()
        .map(|v| evaluate_with(forward, data, v, device));
    EpochMetrics {
        epoch,
        train_loss,
        test_loss,
        test_accuracy,
        val_loss: val.map(|v| v.0),
        val_accuracy: val.map(|v| v.1),
        seconds: start.elapsed().as_secs_f64(),
        kd_loss: None,
        hidden_loss: None,
    }
}

/// A model's (`forward`'s) logits for every image of `split`, row-major `[len, classes]`.
pub(super) fn logits(
    forward: &dyn Fn(Tensor<4>) -> Tensor<2>,
    data: &Dataset,
    split: &Split,
    device: &Device,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(split.len() * data.classes);
    for_each_batch(data, split, device, |_, images| {
        out.extend(forward(images).into_data().iter::<f32>());
    });
    out
}

/// What a trained model outputs on the first `limit` test images of `data`.
#[derive(Debug, Clone, Serialize)]
pub struct Predictions {
    /// Images `[n, channels, height, width]`, normalized as the model saw them (when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<f32>>,
    /// The per-channel mean and standard deviation that normalized them (in [0, 1] pixel
    /// units), so a checker can recover the pixels (when inputs are asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalization: Option<(Vec<f32>, Vec<f32>)>,
    /// Their labels.
    pub labels: Vec<u8>,
    /// Logits, row-major `[n, classes]`.
    pub logits: Vec<f32>,
    /// Classes per row.
    pub classes: usize,
}

/// `model`'s logits (an ensemble's combined ones, at T = 1) on the first `limit` test images,
/// in evaluation mode.
pub fn predict(
    model: &Teacher,
    data: &Dataset,
    limit: usize,
    with_inputs: bool,
    backend: &Backend,
) -> Predictions {
    let n = limit.min(data.test.len());
    let (mut logits, mut inputs) = (Vec::with_capacity(n * data.classes), Vec::new());
    // Batch by batch, so memory stays bounded however many images are asked for.
    for_each_batch_of_first(data, &data.test, n, &backend.device, |batch, images| {
        logits.extend(model.logits(images, 1.0).into_data().iter::<f32>());
        if with_inputs {
            data.gather(&data.test, batch, &mut inputs);
        }
    });
    Predictions {
        logits,
        labels: data.test.labels[..n].to_vec(),
        inputs: with_inputs.then_some(inputs),
        normalization: with_inputs.then(|| (data.mean.clone(), data.std.clone())),
        classes: data.classes,
    }
}

/// Median milliseconds per image of inference at batch 1 and batch 256 (test images, after a
/// warm-up; the output is copied to the host so asynchronous devices are timed too).
pub(super) fn latency(model: &Net, data: &Dataset, device: &Device) -> [f64; 2] {
    latency_of(&|x| model.forward(x), data, device)
}

/// [`latency`] of the logits `forward` gives.
pub(super) fn latency_of(
    forward: &dyn Fn(Tensor<4>) -> Tensor<2>,
    data: &Dataset,
    device: &Device,
) -> [f64; 2] {
    [(1, 30), (256, 5)].map(|(batch, repeats)| {
        let n = batch.min(data.test.len()).max(1);
        let indices: Vec<usize> = (0..n).map(|i| i % data.test.len().max(1)).collect();
        let mut pixels = Vec::new();
        data.gather(&data.test, &indices, &mut pixels);
        let shape = [n, data.channels, data.height, data.width];
        let input = Tensor::<4>::from_data(TensorData::new(pixels, shape), device);
        let _ = forward(input.clone()).into_data();
        let mut times: Vec<f64> = (0..repeats)
            .map(|_| {
                let t = Instant::now();
                let _ = forward(input.clone()).into_data();
                t.elapsed().as_secs_f64() * 1e3 / n as f64
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[repeats / 2]
    })
}

/// Mean cross-entropy and accuracy of `model` on `split`.
pub(super) fn evaluate(model: &Net, data: &Dataset, split: &Split, device: &Device) -> (f64, f64) {
    evaluate_with(&|x| model.forward(x), data, split, device)
}

/// Mean cross-entropy and accuracy of the logits `forward` gives on `split`.
pub(super) fn evaluate_with(
    forward: &dyn Fn(Tensor<4>) -> Tensor<2>,
    data: &Dataset,
    split: &Split,
    device: &Device,
) -> (f64, f64) {
    let (mut loss_sum, mut correct) = (0f64, 0usize);
    for_each_batch(data, split, device, |batch, images| {
        let labels = labels_tensor(split, batch, device);
        let logits = forward(images);
        let loss = loss::cross_entropy(logits.clone(), labels.clone()).into_scalar::<f32>();
        loss_sum += loss as f64 * batch.len() as f64;
        correct += loss::correct(logits, labels);
    });
    let n = split.len().max(1) as f64;
    (loss_sum / n, correct as f64 / n)
}
