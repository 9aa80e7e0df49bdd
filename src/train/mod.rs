//! The trainer: trains one [`Stage`] on a [`Dataset`] with Burn (third phase of
//! manifest → plan → train → store → report).
//!
//! Every random choice comes from the stage's own `rand_chacha` streams ([`Stage::init_stream`],
//! [`Stage::order_stream`]) and batches are built here, in order, so a stage's result does not
//! depend on what else runs in the process. Burn types stay inside this module.

pub mod bench;
mod checkpoint;
mod import;
mod loss;
mod lstm;
mod mobilenet;
mod model;
mod named;
mod net;
mod quality;
mod resnet;
mod teacher;
pub mod trace;

pub use named::NamedTensor;
pub use net::Net;
pub use quality::{ECE_BINS, Quality};
pub use teacher::Teacher;

use crate::data::{Augment, Dataset, Split};
use crate::manifest::{
    BackendKind, ComputeSpec, DEFAULT_ADAMW_DECAY, DeviceSpec, ImportedWeights, KlReduction,
    ModelSpec, Optimizer, Selection,
};
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

pub use crate::identity::TRAINER_VERSION;

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
pub fn weights_digest(model: &Net) -> String {
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
    pub model: Net,
    /// Per-epoch history.
    pub epochs: Vec<EpochMetrics>,
    /// 1-based epoch whose weights `model` holds (see [`crate::manifest::Selection`]).
    pub selected_epoch: usize,
    /// Trainable parameters.
    pub params: usize,
    /// [`weights_digest`] of the initial weights.
    pub initial_digest: String,
    /// Wall seconds spent training and evaluating (in this process, when resumed).
    pub seconds: f64,
    /// The epoch a checkpoint resumed it from.
    pub resumed_from: Option<usize>,
    /// Calibration and agreement with the teacher on the test split.
    pub quality: Quality,
    /// Median inference milliseconds per image at batch 1 and at batch 256 (a measurement).
    pub latency_ms: [f64; 2],
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
    /// The worker training the stage panicked.
    #[error("training crashed: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
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

    /// The kind of processor that computes: the CPU architecture and the widest SIMD level the
    /// kernels can use (results may differ in the last bits across kinds), or the device for
    /// CUDA.
    pub fn processor(&self) -> String {
        match self.spec.device {
            DeviceSpec::Cuda(i) => format!("cuda:{i}"),
            DeviceSpec::Cpu => cpu_kind(),
        }
    }
}

/// `x86_64-avx512`, `x86_64-avx2`, `aarch64-neon`...
fn cpu_kind() -> String {
    #[cfg(target_arch = "x86_64")]
    let level = {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512"
        } else if std::arch::is_x86_feature_detected!("avx2") {
            "avx2"
        } else if std::arch::is_x86_feature_detected!("sse4.1") {
            "sse4.1"
        } else {
            "sse2"
        }
    };
    #[cfg(target_arch = "aarch64")]
    let level = "neon";
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let level = "base";
    format!("{}-{level}", std::env::consts::ARCH)
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

/// Loads an imported model's file into `model`.
fn import_into(model: &mut Net, w: &ImportedWeights) -> Result<(), TrainError> {
    let weights = import::read(&w.path, &w.key_map)?;
    model
        .import(&weights, w.fine_tune)
        .map_err(|message| TrainError::ModelFile {
            path: w.path.clone(),
            message,
        })
}

/// Checks that an imported model's file loads into its architecture on `data`'s images and
/// classes, so a mismatch stops a sweep before anything trains.
pub fn check_import(spec: &ModelSpec, data: &Dataset) -> Result<(), TrainError> {
    let Some(w) = &spec.weights else {
        return Ok(());
    };
    let input = [data.channels, data.height, data.width];
    let mut model = Net::new(spec, input, data.classes, None, &Backend::flex().device);
    import_into(&mut model, w)
}

/// Builds an untrained model of `stage`'s architecture for `data` (zeros, ready to load).
fn blank(stage: &Stage, data: &Dataset, backend: &Backend) -> Net {
    Net::new(
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
) -> Result<Net, TrainError> {
    blank(stage, data, backend).load(path)
}

/// Saves `model` to `path` (the caller makes the write atomic).
pub fn save_model(model: &Net, path: &Path) -> Result<(), TrainError> {
    model.save(path)
}

/// What a training stage reports while it runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// An optimizer step finished (1-based `step` of `steps` in 1-based `epoch`).
    Step {
        /// Epoch.
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// Steps per epoch.
        steps: usize,
    },
    /// An epoch finished and was evaluated.
    Epoch(&'a EpochMetrics),
}

/// Optimizer steps per epoch of `stage` on a training split of `train` images.
pub fn steps_per_epoch(stage: &Stage, train: usize) -> usize {
    train.div_ceil(stage.training.batch_size)
}

/// Trains `stage` on `data`, distilling from `teacher` when the stage has one.
/// `on_progress` sees each step and each epoch's metrics as they come. With `checkpoints`, the
/// run resumes from the last epoch committed there and commits every `every`-th epoch (see
/// [`checkpoint`]); the result is bit-identical to an uninterrupted run.
pub fn train(
    stage: &Stage,
    data: &Dataset,
    teacher: Option<&Teacher>,
    backend: &Backend,
    checkpoints: Option<(&Path, usize)>,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Trained, TrainError> {
    crate::fault::check_panic("panic", &stage.model);
    let start = Instant::now();
    let mut run = StageRun::new(stage, data, teacher, backend)?;
    if stage.training.epochs == 0 {
        let metrics = run.evaluate_as_is()?;
        on_progress(Progress::Epoch(&metrics));
    }
    // A checkpoint that cannot be read costs time, not results: the stage starts over.
    let resumed_from =
        checkpoints.and_then(|(dir, _)| checkpoint::resume(dir, &mut run).ok().flatten());
    let first = resumed_from.map_or(1, |e| e + 1);
    for epoch in first..=stage.training.epochs {
        let metrics = run.epoch(epoch, on_progress)?;
        on_progress(Progress::Epoch(&metrics));
        if let Some((dir, every)) = checkpoints
            && epoch < stage.training.epochs
            && epoch % every.max(1) == 0
        {
            checkpoint::save(dir, epoch, &run)?;
        }
    }
    let mut trained = run.finish(start.elapsed().as_secs_f64());
    trained.resumed_from = resumed_from;
    Ok(trained)
}

/// An ensemble stage's measurements: its members averaged as `stage`'s ensemble says, at
/// T = 1, on the test (and validation) split.
#[derive(Debug)]
pub struct EnsembleMetrics {
    /// Test (and validation) loss and accuracy, as epoch 0.
    pub metrics: EpochMetrics,
    /// Calibration on the test split.
    pub quality: Quality,
    /// Median inference milliseconds per image at batch 1 and 256 (every member runs).
    pub latency_ms: [f64; 2],
    /// Parameters of all members.
    pub params: usize,
}

/// Evaluates an ensemble (`members`, from [`Teacher::Ensemble`]) as a model of its own.
pub fn evaluate_ensemble(members: &Teacher, data: &Dataset, backend: &Backend) -> EnsembleMetrics {
    let start = Instant::now();
    let device = &backend.device;
    let forward = |x| members.logits(x, 1.0);
    let (train_loss, _) = evaluate_with(&forward, data, &data.train, device);
    let metrics = measure(&forward, data, device, 0, train_loss, start);
    let test_logits = logits(&forward, data, &data.test, device);
    EnsembleMetrics {
        quality: quality::quality(&test_logits, None, &data.test.labels, data.classes),
        latency_ms: latency_of(&forward, data, device),
        params: members.params(),
        metrics,
    }
}

/// Epoch `epoch`'s metrics for the logits `forward` gives: test (and validation) loss and
/// accuracy, next to `train_loss`, timed from `start`.
fn measure(
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
    }
}

/// The state of one stage's training between steps.
pub(crate) struct StageRun<'a> {
    stage: &'a Stage,
    data: &'a Dataset,
    teacher: Option<&'a Teacher>,
    plain: Device,
    /// The model being trained (taken out only during an optimizer step).
    model: Option<Net>,
    optim: ModuleOptimizer,
    order: Vec<usize>,
    order_rng: ChaCha8Rng,
    augment_rng: ChaCha8Rng,
    dropout_rng: ChaCha8Rng,
    /// The teacher's logits of every training image, when they do not change between epochs.
    cached_teacher: Option<Vec<f32>>,
    epochs: Vec<EpochMetrics>,
    /// Selected epoch so far, its score and weights.
    best: Option<(usize, f64, Net)>,
    params: usize,
    initial_digest: String,
    /// Every step's inputs and loss, when tracing for a parity check (see [`trace`]).
    trace: Option<Vec<trace::Step>>,
    /// The teacher logits of the last batch, kept while tracing.
    traced_teacher: Option<Vec<f32>>,
}

impl<'a> StageRun<'a> {
    fn new(
        stage: &'a Stage,
        data: &'a Dataset,
        teacher: Option<&'a Teacher>,
        backend: &Backend,
    ) -> Result<Self, TrainError> {
        let plain = backend.device.clone();
        let mut init_rng = ChaCha8Rng::from_seed(stage.init_stream());
        let mut model = Net::new(
            &stage.spec,
            [data.channels, data.height, data.width],
            data.classes,
            Some(&mut init_rng),
            &plain.clone().autodiff(),
        );
        if let Some(w) = &stage.spec.weights {
            import_into(&mut model, w)?;
        }
        // Without augmentation the teacher sees the same images every epoch: run it once.
        let temperature = stage.kd.map_or(1.0, |k| k.temperature);
        let cached_teacher = match (teacher, stage.training.augment) {
            (Some(t), None) if stage.training.epochs > 1 => Some(logits(
                &|x| t.logits(x, temperature),
                data,
                &data.train,
                &plain,
            )),
            _ => None,
        };
        Ok(Self {
            stage,
            data,
            teacher,
            params: model.trainable_params(),
            initial_digest: weights_digest(&model),
            model: Some(model),
            optim: optimizer(stage),
            order: (0..data.train.len()).collect(),
            order_rng: ChaCha8Rng::from_seed(stage.order_stream()),
            augment_rng: ChaCha8Rng::from_seed(stage.augment_stream()),
            dropout_rng: ChaCha8Rng::from_seed(stage.dropout_stream()),
            cached_teacher,
            epochs: Vec::new(),
            best: None,
            plain,
            trace: None,
            traced_teacher: None,
        })
    }

    /// Evaluates the model before any training, as epoch 0 (an imported model used as it is);
    /// its training loss is measured on the training split.
    fn evaluate_as_is(&mut self) -> Result<EpochMetrics, TrainError> {
        let start = Instant::now();
        let model = self.model().valid();
        let (train_loss, _) = evaluate(&model, self.data, &self.data.train, &self.plain);
        self.evaluate_epoch(0, start, train_loss, 0)
    }

    fn model(&self) -> &Net {
        self.model.as_ref().expect("present between steps")
    }

    /// The loss of one batch of training images.
    fn loss(&mut self, batch: &[usize], pixels: Vec<f32>) -> Tensor<1> {
        let (data, plain) = (self.data, &self.plain);
        let images = Tensor::<4>::from_data(
            TensorData::new(
                pixels,
                [batch.len(), data.channels, data.height, data.width],
            ),
            plain,
        );
        let labels = labels_tensor(&data.train, batch, plain).autodiff();
        let dropout = self.stage.spec.dropout.map(|p| (p, &mut self.dropout_rng));
        let model = self.model.as_ref().expect("present between steps");
        let logits = model.forward_with(images.clone().autodiff(), dropout);
        match (self.teacher, self.stage.kd) {
            (Some(teacher), Some(kd)) => {
                let teacher_logits = match &self.cached_teacher {
                    Some(all) => rows(all, batch, data.classes, plain),
                    None => teacher.logits(images, kd.temperature),
                };
                if self.trace.is_some() {
                    self.traced_teacher =
                        Some(teacher_logits.clone().into_data().iter::<f32>().collect());
                }
                loss::distillation(
                    logits,
                    teacher_logits.autodiff(),
                    labels,
                    kd.temperature,
                    kd.alpha,
                    match kd.reduction {
                        KlReduction::PerSample => 1.0,
                        KlReduction::ElementMean => 1.0 / data.classes as f64,
                    },
                )
            }
            _ => loss::cross_entropy(logits, labels),
        }
    }

    /// Trains and evaluates epoch `epoch` (1-based).
    fn epoch(
        &mut self,
        epoch: usize,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<EpochMetrics, TrainError> {
        let start = Instant::now();
        let (loss_sum, steps) = self.train_epoch(epoch, on_progress)?;
        self.evaluate_epoch(epoch, start, loss_sum / steps.max(1) as f64, steps)
    }

    /// The optimizer steps of epoch `epoch`: the sum of their losses and their count.
    fn train_epoch(
        &mut self,
        epoch: usize,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<(f64, usize), TrainError> {
        let (stage, data) = (self.stage, self.data);
        let t = &stage.training;
        let lr = t.schedule.lr(t.lr, epoch - 1, t.epochs);
        let augment = t.augment.map(|a| Augment {
            crop_padding: a.crop_padding,
            flip: a.flip,
        });
        self.order.shuffle(&mut self.order_rng);
        let order = std::mem::take(&mut self.order);
        let steps = steps_per_epoch(stage, data.train.len());
        let mut loss_sum = 0f64;
        for (step, batch) in order.chunks(t.batch_size).enumerate() {
            let mut pixels = Vec::with_capacity(batch.len() * data.image_len());
            match augment {
                Some(a) => {
                    data.gather_augmented(&data.train, batch, a, &mut self.augment_rng, &mut pixels)
                }
                None => data.gather(&data.train, batch, &mut pixels),
            }
            let traced = self.trace.is_some().then(|| pixels.clone());
            let loss = self.loss(batch, pixels);
            let value = loss.clone().into_scalar::<f32>();
            if let (Some(inputs), Some(steps)) = (traced, self.trace.as_mut()) {
                steps.push(trace::Step {
                    epoch,
                    lr,
                    labels: batch.iter().map(|&i| data.train.labels[i] as i64).collect(),
                    indices: batch.to_vec(),
                    inputs,
                    teacher_logits: self.traced_teacher.take(),
                    loss: value,
                });
            }
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step: step + 1,
                    loss: value,
                    epochs: std::mem::take(&mut self.epochs),
                });
            }
            loss_sum += value as f64;
            let model = self.model.take().expect("present between steps");
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            self.model = Some(self.optim.step(lr, model, grads));
            on_progress(Progress::Step {
                epoch,
                step: step + 1,
                steps,
            });
        }
        self.order = order;
        Ok((loss_sum, steps))
    }

    /// Evaluates the model after epoch `epoch`'s steps and records the epoch.
    fn evaluate_epoch(
        &mut self,
        epoch: usize,
        start: Instant,
        train_loss: f64,
        steps: usize,
    ) -> Result<EpochMetrics, TrainError> {
        let (stage, data) = (self.stage, self.data);
        let t = &stage.training;
        let current = self.model().valid();
        let metrics = measure(
            &|x| current.forward(x),
            data,
            &self.plain,
            epoch,
            train_loss,
            start,
        );
        // The epoch's last step can break the weights after its own loss was finite.
        if let Some(loss) = [Some(metrics.test_loss), metrics.val_loss]
            .into_iter()
            .flatten()
            .find(|l| !l.is_finite())
        {
            return Err(TrainError::Diverged {
                epoch,
                step: steps,
                loss: loss as f32,
                epochs: std::mem::take(&mut self.epochs),
            });
        }
        let score = match t.select {
            Selection::Last => epoch as f64,
            Selection::BestVal => metrics.val_accuracy.unwrap_or(f64::NEG_INFINITY),
            Selection::BestTest => metrics.test_accuracy,
        };
        // Strictly better only: ties keep the earlier epoch.
        if self.best.as_ref().is_none_or(|b| score > b.1) {
            self.best = Some((epoch, score, current));
        }
        self.epochs.push(metrics.clone());
        Ok(metrics)
    }

    /// The selected model with its metrics and measurements.
    fn finish(self, seconds: f64) -> Trained {
        let (data, plain) = (self.data, &self.plain);
        let last = self.model().valid();
        let (selected_epoch, _, model) = self.best.unwrap_or((0, 0.0, last));
        let quality = quality::quality(
            &logits(&|x| model.forward(x), data, &data.test, plain),
            self.teacher
                .map(|t| logits(&|x| t.logits(x, 1.0), data, &data.test, plain))
                .as_deref(),
            &data.test.labels,
            data.classes,
        );
        Trained {
            latency_ms: latency(&model, data, plain),
            model,
            selected_epoch,
            epochs: self.epochs,
            params: self.params,
            initial_digest: self.initial_digest,
            seconds,
            resumed_from: None,
            quality,
        }
    }
}

/// The optimizer of `stage`, with PyTorch's defaults where the manifest is silent.
fn optimizer(stage: &Stage) -> ModuleOptimizer {
    let t = &stage.training;
    let decay = t.weight_decay.map(|penalty| WeightDecayConfig {
        penalty: penalty as f32,
    });
    let [beta_1, beta_2] = t.betas.map(|b| b as f32);
    match t.optimizer {
        Optimizer::Adam => AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(t.epsilon as f32)
            .with_weight_decay(decay)
            .init(),
        Optimizer::Adamw => AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(t.epsilon as f32)
            .with_weight_decay(t.weight_decay.unwrap_or(DEFAULT_ADAMW_DECAY) as f32)
            .init(),
        Optimizer::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum(t.momentum.map(|momentum| MomentumConfig {
                momentum,
                dampening: t.dampening,
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

/// A model's (`forward`'s) logits for every image of `split`, row-major `[len, classes]`.
fn logits(
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
    let indices: Vec<usize> = (0..n).collect();
    let mut inputs = Vec::new();
    data.gather(&data.test, &indices, &mut inputs);
    let images = Tensor::<4>::from_data(
        TensorData::new(inputs.clone(), [n, data.channels, data.height, data.width]),
        &backend.device,
    );
    Predictions {
        logits: model
            .logits(images, 1.0)
            .into_data()
            .iter::<f32>()
            .collect(),
        labels: data.test.labels[..n].to_vec(),
        inputs: with_inputs.then_some(inputs),
        classes: data.classes,
    }
}

/// The rows `indices` of a row-major `[n, classes]` matrix, as a tensor.
fn rows(all: &[f32], indices: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    let mut v = Vec::with_capacity(indices.len() * classes);
    for &i in indices {
        v.extend_from_slice(&all[i * classes..(i + 1) * classes]);
    }
    Tensor::from_data(TensorData::new(v, [indices.len(), classes]), device)
}

/// Median milliseconds per image of inference at batch 1 and batch 256 (test images, after a
/// warm-up; the output is copied to the host so asynchronous devices are timed too).
fn latency(model: &Net, data: &Dataset, device: &Device) -> [f64; 2] {
    latency_of(&|x| model.forward(x), data, device)
}

fn latency_of(
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
fn evaluate(model: &Net, data: &Dataset, split: &Split, device: &Device) -> (f64, f64) {
    evaluate_with(&|x| model.forward(x), data, split, device)
}

/// Mean cross-entropy and accuracy of the logits `forward` gives on `split`.
fn evaluate_with(
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
