//! The trainer: trains one [`Stage`] on a [`Dataset`] with Burn (third phase of
//! manifest → plan → train → store → report).
//!
//! Every random choice comes from the stage's own `rand_chacha` streams ([`Stage::init_stream`],
//! [`Stage::order_stream`]) and batches are built here, in order, so a stage's result does not
//! depend on what else runs in the process. Burn types stay inside this module.

mod loss;
mod model;

pub use model::Cnn;

use crate::data::{Augment, Dataset, Split};
use crate::manifest::{BackendKind, ComputeSpec, DeviceSpec, KlReduction, Optimizer, Selection};
use crate::plan::Stage;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::time::Instant;
use thiserror::Error;

/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 500;

/// Metrics after one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Mean cross-entropy on the test split.
    pub test_loss: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// Mean cross-entropy on the validation split, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Accuracy on the validation split, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Wall seconds of the epoch (training and evaluation).
    pub seconds: f64,
}

/// SHA-256 of every parameter's `f32` bits, in module order: equal digests mean bit-identical
/// weights, whatever the file encoding.
pub fn weights_digest(model: &Cnn) -> String {
    struct Digest(Sha256);
    impl ModuleVisitor for Digest {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data();
            for v in data.iter::<f32>() {
                self.0.update(v.to_bits().to_le_bytes());
            }
        }
    }
    let mut d = Digest(Sha256::new());
    model.visit(&mut d);
    hex::encode(d.0.finalize())
}

/// A trained stage.
#[derive(Debug)]
pub struct Trained {
    /// The model in evaluation mode.
    pub model: Cnn,
    /// Per-epoch history.
    pub epochs: Vec<EpochMetrics>,
    /// 1-based epoch whose weights `model` holds (see [`crate::manifest::Selection`]).
    pub selected_epoch: usize,
    /// Trainable parameters.
    pub params: usize,
    /// [`weights_digest`] of the initial weights.
    pub initial_digest: String,
    /// Wall seconds spent training and evaluating.
    pub seconds: f64,
}

/// A stage that could not be trained.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The loss became NaN or infinite.
    #[error("loss diverged to {loss} at epoch {epoch}, step {step}")]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// The non-finite loss.
        loss: f32,
        /// History of the epochs completed before divergence.
        epochs: Vec<EpochMetrics>,
    },
    /// A teacher's weights could not be read or a model could not be written.
    #[error("model file `{}`: {message}", path.display())]
    ModelFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A backend that is not available in this build or on this machine.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum BackendError {
    /// The binary was built without the `tch` feature.
    #[error("this kdgrid was built without the `tch` (LibTorch) backend")]
    #[diagnostic(
        code(kdgrid::backend::not_built),
        help(
            "run `make build-tch` (installs torch 2.9.0 into ~/.cache/kdgrid once) and use `target/release/kdgrid`, or choose `backend = \"flex\"`"
        )
    )]
    NotBuilt,
    /// CUDA was asked for but LibTorch sees no such GPU.
    #[error("CUDA device {index} is not available ({count} CUDA devices found)")]
    #[diagnostic(code(kdgrid::backend::no_cuda))]
    NoCuda {
        /// The requested index.
        index: usize,
        /// Devices found.
        count: usize,
    },
}

/// The compute device of a sweep, set up from a [`ComputeSpec`].
#[derive(Debug, Clone)]
pub struct Backend {
    device: Device,
    spec: ComputeSpec,
    threads: usize,
}

impl Backend {
    /// Sets up the backend `spec` names, including its intra-op thread count.
    pub fn new(spec: ComputeSpec) -> Result<Self, BackendError> {
        let threads = spec.resolved_threads();
        let device = match spec.backend {
            BackendKind::Flex => {
                // Fails only when the global pool already exists; flex's results do not
                // depend on the thread count, and the count actually used is recorded.
                let _ = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build_global();
                Device::flex()
            }
            BackendKind::Tch => tch_device(spec.device, threads)?,
        };
        let threads = match spec.backend {
            BackendKind::Flex => rayon::current_num_threads(),
            BackendKind::Tch => threads,
        };
        Ok(Self {
            device,
            spec,
            threads,
        })
    }

    /// The pure-Rust `flex` CPU backend with default threads.
    pub fn flex() -> Self {
        Self::new(ComputeSpec::default()).expect("flex is always built")
    }

    /// Backend name recorded with results (`flex`, `tch`).
    pub fn name(&self) -> &'static str {
        match self.spec.backend {
            BackendKind::Flex => "flex",
            BackendKind::Tch => "tch",
        }
    }

    /// Device recorded with results (`cpu`, `cuda:0`).
    pub fn device_label(&self) -> String {
        self.spec.device.to_string()
    }

    /// Intra-op threads.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn marks tch deprecated, yet it is the way to NVIDIA GPUs through libtorch
fn tch_device(device: DeviceSpec, threads: usize) -> Result<Device, BackendError> {
    tch::set_num_threads(threads as i32);
    match device {
        DeviceSpec::Cpu => Ok(Device::libtorch()),
        DeviceSpec::Cuda(index) => {
            let count = tch::Cuda::device_count().max(0) as usize;
            if index >= count {
                return Err(BackendError::NoCuda { index, count });
            }
            Ok(Device::libtorch_cuda(index))
        }
    }
}

#[cfg(not(feature = "tch"))]
fn tch_device(_: DeviceSpec, _: usize) -> Result<Device, BackendError> {
    Err(BackendError::NotBuilt)
}

/// Builds an untrained model of `stage`'s architecture for `data` (zeros, ready to load).
fn blank(stage: &Stage, data: &Dataset, backend: &Backend) -> Cnn {
    Cnn::new(
        &stage.spec,
        [data.channels, data.height, data.width],
        data.classes,
        None,
        &backend.device,
    )
}

/// Loads a trained model of `stage` from `path`.
pub fn load_model(
    stage: &Stage,
    data: &Dataset,
    backend: &Backend,
    path: &Path,
) -> Result<Cnn, TrainError> {
    blank(stage, data, backend)
        .try_load_file(path)
        .map_err(|e| TrainError::ModelFile {
            path: path.to_path_buf(),
            message: format!("{e:?}"),
        })
}

/// Saves `model` to `path` (the caller makes the write atomic).
pub fn save_model(model: &Cnn, path: &Path) -> Result<(), TrainError> {
    model
        .clone()
        .save_file(path)
        .map_err(|e| TrainError::ModelFile {
            path: path.to_path_buf(),
            message: format!("{e:?}"),
        })
}

/// Trains `stage` on `data`, distilling from `teacher` when the stage has one.
/// `on_epoch` sees each epoch's metrics as they come.
pub fn train(
    stage: &Stage,
    data: &Dataset,
    teacher: Option<&Cnn>,
    backend: &Backend,
    on_epoch: &mut dyn FnMut(&EpochMetrics),
) -> Result<Trained, TrainError> {
    let start = Instant::now();
    let plain = backend.device.clone();
    let device = plain.clone().autodiff();
    let mut init_rng = ChaCha8Rng::from_seed(stage.init_stream());
    let mut order_rng = ChaCha8Rng::from_seed(stage.order_stream());
    let mut augment_rng = ChaCha8Rng::from_seed(stage.augment_stream());
    let mut dropout_rng = ChaCha8Rng::from_seed(stage.dropout_stream());
    let (train_split, val_split) = match stage.training.validation {
        Some(h) => {
            let (train, val) = data.holdout(h.count(data.train.len()));
            (std::borrow::Cow::Owned(train), Some(val))
        }
        None => (std::borrow::Cow::Borrowed(&data.train), None),
    };
    let train_split: &Split = &train_split;
    let augment = stage.training.augment.map(|a| Augment {
        crop_padding: a.crop_padding,
        flip: a.flip,
    });
    let mut model = Cnn::new(
        &stage.spec,
        [data.channels, data.height, data.width],
        data.classes,
        Some(&mut init_rng),
        &device,
    );
    let params = model.trainable_params();
    let initial_digest = weights_digest(&model);
    let mut optim = optimizer(stage);
    let batch_size = stage.training.batch_size;
    let [c, h, w] = [data.channels, data.height, data.width];

    let mut order: Vec<usize> = (0..train_split.len()).collect();
    // Without augmentation the teacher sees the same images every epoch: run it once.
    let cached_teacher = match (teacher, augment) {
        (Some(t), None) if stage.training.epochs > 1 => Some(logits(t, data, train_split, &plain)),
        _ => None,
    };
    let mut pixels = Vec::new();
    let mut epochs: Vec<EpochMetrics> = Vec::new();
    let mut best: Option<(usize, f64, Cnn)> = None;
    for epoch in 1..=stage.training.epochs {
        let epoch_start = Instant::now();
        let lr = stage
            .training
            .schedule
            .lr(stage.training.lr, epoch - 1, stage.training.epochs);
        order.shuffle(&mut order_rng);
        let (mut loss_sum, mut steps) = (0f64, 0usize);
        for (step, batch) in order.chunks(batch_size).enumerate() {
            pixels.clear();
            match augment {
                Some(a) => {
                    data.gather_augmented(train_split, batch, a, &mut augment_rng, &mut pixels)
                }
                None => data.gather(train_split, batch, &mut pixels),
            }
            let images = Tensor::<4>::from_data(
                TensorData::new(std::mem::take(&mut pixels), [batch.len(), c, h, w]),
                &plain,
            );
            let labels = labels_tensor(train_split, batch, &plain);
            let dropout = stage.spec.dropout.map(|p| (p, &mut dropout_rng));
            let logits = model.forward_with(images.clone().autodiff(), dropout);
            let loss = match (teacher, stage.kd) {
                (Some(teacher), Some(kd)) => loss::distillation(
                    logits,
                    match &cached_teacher {
                        Some(all) => rows(all, batch, data.classes, &plain),
                        None => teacher.forward(images),
                    }
                    .autodiff(),
                    labels.autodiff(),
                    kd.temperature,
                    kd.alpha,
                    match kd.reduction {
                        KlReduction::PerSample => 1.0,
                        KlReduction::ElementMean => 1.0 / data.classes as f64,
                    },
                ),
                _ => loss::cross_entropy(logits, labels.autodiff()),
            };
            let value = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step: step + 1,
                    loss: value,
                    epochs,
                });
            }
            loss_sum += value as f64;
            steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        let current = model.valid();
        let (test_loss, test_accuracy) = evaluate(&current, data, &data.test, &plain);
        let val = val_split
            .as_ref()
            .map(|v| evaluate(&current, data, v, &plain));
        let metrics = EpochMetrics {
            epoch,
            train_loss: loss_sum / steps.max(1) as f64,
            test_loss,
            test_accuracy,
            val_loss: val.map(|v| v.0),
            val_accuracy: val.map(|v| v.1),
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        on_epoch(&metrics);
        let score = match stage.training.select {
            Selection::Last => epoch as f64,
            Selection::BestVal => metrics.val_accuracy.unwrap_or(f64::NEG_INFINITY),
            Selection::BestTest => metrics.test_accuracy,
        };
        // Strictly better only: ties keep the earlier epoch.
        if best.as_ref().is_none_or(|b| score > b.1) {
            best = Some((epoch, score, current));
        }
        epochs.push(metrics);
    }
    let (selected_epoch, _, model) = best.unwrap_or_else(|| (0, 0.0, model.valid()));
    Ok(Trained {
        model,
        selected_epoch,
        epochs,
        params,
        initial_digest,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn optimizer(stage: &Stage) -> ModuleOptimizer {
    let t = &stage.training;
    let decay = t.weight_decay.map(|penalty| WeightDecayConfig {
        penalty: penalty as f32,
    });
    match t.optimizer {
        Optimizer::Adam => AdamConfig::new().with_weight_decay(decay).init(),
        Optimizer::Adamw => AdamWConfig::new()
            .with_weight_decay(t.weight_decay.unwrap_or(1e-4) as f32)
            .init(),
        Optimizer::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum(t.momentum.map(|momentum| MomentumConfig {
                momentum,
                dampening: 0.0,
                nesterov: t.nesterov,
            }))
            .init(),
    }
}

fn labels_tensor(split: &Split, indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = indices.iter().map(|&i| split.labels[i] as i64).collect();
    Tensor::from_data(TensorData::new(labels, [indices.len()]), device)
}

/// Runs `f` on every image of `split`, in order, in tensors of at most [`EVAL_BATCH`] images.
fn for_each_batch(
    data: &Dataset,
    split: &Split,
    device: &Device,
    mut f: impl FnMut(&[usize], Tensor<4>),
) {
    let indices: Vec<usize> = (0..split.len()).collect();
    for batch in indices.chunks(EVAL_BATCH) {
        let mut pixels = Vec::new();
        data.gather(split, batch, &mut pixels);
        let shape = [batch.len(), data.channels, data.height, data.width];
        f(
            batch,
            Tensor::from_data(TensorData::new(pixels, shape), device),
        );
    }
}

/// `model`'s logits for every image of `split`, row-major `[len, classes]`.
fn logits(model: &Cnn, data: &Dataset, split: &Split, device: &Device) -> Vec<f32> {
    let mut out = Vec::with_capacity(split.len() * data.classes);
    for_each_batch(data, split, device, |_, images| {
        out.extend(model.forward(images).into_data().iter::<f32>());
    });
    out
}

/// The rows `indices` of a row-major `[n, classes]` matrix, as a tensor.
fn rows(all: &[f32], indices: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    let mut v = Vec::with_capacity(indices.len() * classes);
    for &i in indices {
        v.extend_from_slice(&all[i * classes..(i + 1) * classes]);
    }
    Tensor::from_data(TensorData::new(v, [indices.len(), classes]), device)
}

/// Mean cross-entropy and accuracy of `model` on `split`.
fn evaluate(model: &Cnn, data: &Dataset, split: &Split, device: &Device) -> (f64, f64) {
    let (mut loss_sum, mut correct) = (0f64, 0usize);
    for_each_batch(data, split, device, |batch, images| {
        let labels = labels_tensor(split, batch, device);
        let logits = model.forward(images);
        let loss = loss::cross_entropy(logits.clone(), labels.clone()).into_scalar::<f32>();
        loss_sum += loss as f64 * batch.len() as f64;
        correct += loss::correct(logits, labels);
    });
    let n = split.len().max(1) as f64;
    (loss_sum / n, correct as f64 / n)
}
