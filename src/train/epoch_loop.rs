//! The epoch loop: a stage's optimizer steps over batches in its own seeded order (with
//! augmentation and distillation), evaluation after each epoch, divergence checks, epoch
//! selection, and checkpoints to resume from.

use super::batches::{labels_tensor, rows};
use super::digest::weights_digest;
use super::evaluate::{evaluate, latency, logits, measure};
use super::optimizer::optimizer;
use super::{
    Backend, EpochMetrics, Net, Teacher, TrainError, Trained, checkpoint, import_into, loss,
    quality, trace,
};
use crate::data::{Augment, Dataset};
use crate::manifest::{KlReduction, Selection};
use crate::plan::Stage;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::time::Instant;

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

/// Trains `stage` on `data`, distilling from `teacher` when the stage has one and starting
/// from `init`'s layers when it says so (`init-from`). `on_progress` sees each step and each
/// epoch's metrics as they come. With `checkpoints` (`dir`, `every`, `last`), the run resumes
/// from the last epoch committed there and commits every `every`-th epoch, and the last one
/// too when `last` (see `checkpoint.rs`); the result is bit-identical to an uninterrupted run. After each epoch,
/// `keep` says whether this process still holds the stage: if not, training stops at once
/// ([`TrainError::Abandoned`]).
#[allow(clippy::too_many_arguments)]
pub fn train(
    stage: &Stage,
    data: &Dataset,
    teacher: Option<&Teacher>,
    init: Option<&Net>,
    backend: &Backend,
    checkpoints: Option<(&Path, usize, bool)>,
    keep: &dyn Fn() -> bool,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Trained, TrainError> {
    crate::fault::check_panic("panic", &stage.model);
    let start = Instant::now();
    let mut run = StageRun::new(stage, data, teacher, init, backend)?;
    if stage.training.epochs == 0 {
        let metrics = run.evaluate_as_is()?;
        on_progress(Progress::Epoch(&metrics));
    }
    // A checkpoint that cannot be read costs time, not results: the stage starts over.
    let resumed_from =
        checkpoints.and_then(|(dir, ..)| checkpoint::resume(dir, &mut run).ok().flatten());
    let first = resumed_from.map_or(1, |e| e + 1);
    for epoch in first..=stage.training.epochs {
        let metrics = run.epoch(epoch, on_progress)?;
        crate::fault::pause("epoch");
        crate::fault::stall("epoch");
        if !keep() {
            return Err(TrainError::Abandoned { epoch });
        }
        if let Some((dir, every, last)) = checkpoints
            && (epoch < stage.training.epochs && epoch % every.max(1) == 0
                || last && epoch == stage.training.epochs)
        {
            checkpoint::save(dir, epoch, &run)?;
        }
        // Checked before the checkpoint, and again before the epoch is reported: an epoch
        // reported was trained by the holder, and a holder that lost the stage while saving
        // leaves at most a checkpoint (the same bits the new holder computes).
        if !keep() {
            return Err(TrainError::Abandoned { epoch });
        }
        on_progress(Progress::Epoch(&metrics));
    }
    let mut trained = run.finish(start.elapsed().as_secs_f64());
    trained.resumed_from = resumed_from;
    Ok(trained)
}

/// The distillation terms of a batch's loss, each as it enters the total.
pub(super) struct Terms {
    /// The soft-target term (`alpha * T^2 * KL`).
    soft: Option<Tensor<1>>,
    /// The weighted hidden-state loss.
    hidden: Option<Tensor<1>>,
}

/// What an epoch's optimizer steps add up to.
pub(super) struct EpochLoss {
    /// Sum of the batches' losses.
    pub(super) sum: f64,
    /// Optimizer steps.
    pub(super) steps: usize,
    /// Mean soft-target and hidden-state terms, for distilled stages.
    pub(super) terms: [Option<f64>; 2],
}

/// The state of one stage's training between steps.
pub(crate) struct StageRun<'a> {
    pub(super) stage: &'a Stage,
    pub(super) data: &'a Dataset,
    pub(super) teacher: Option<&'a Teacher>,
    pub(super) plain: Device,
    /// The model being trained (taken out only during an optimizer step).
    pub(super) model: Option<Net>,
    pub(super) optim: ModuleOptimizer,
    pub(super) order: Vec<usize>,
    pub(super) order_rng: ChaCha8Rng,
    pub(super) augment_rng: ChaCha8Rng,
    pub(super) dropout_rng: ChaCha8Rng,
    /// The teacher's logits of every training image, when they do not change between epochs.
    pub(super) cached_teacher: Option<Vec<f32>>,
    pub(super) epochs: Vec<EpochMetrics>,
    /// Selected epoch so far, its score and weights.
    pub(super) best: Option<(usize, f64, Net)>,
    pub(super) params: usize,
    pub(super) initial_digest: String,
    /// Every step's inputs and loss, when tracing for a parity check (see [`trace`]).
    pub(super) trace: Option<Vec<trace::Step>>,
    /// The teacher logits of the last batch, kept while tracing.
    pub(super) traced_teacher: Option<Vec<f32>>,
    /// The teacher's last hidden states of the last batch, kept while tracing a stage with a
    /// hidden loss.
    pub(super) traced_hidden: Option<Vec<f32>>,
}

impl<'a> StageRun<'a> {
    pub(super) fn new(
        stage: &'a Stage,
        data: &'a Dataset,
        teacher: Option<&'a Teacher>,
        init: Option<&Net>,
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
        if let Some(f) = &stage.spec.init_from {
            let source = init.ok_or_else(|| TrainError::Panicked {
                message: format!("`init-from` stage of `{}` not loaded", f.model),
            })?;
            model
                .init_from(source, &f.layers)
                .map_err(|message| TrainError::Panicked { message })?;
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
            traced_hidden: None,
        })
    }

    /// Evaluates the model before any training, as epoch 0 (an imported model used as it is);
    /// its training loss is measured on the training split.
    pub(super) fn evaluate_as_is(&mut self) -> Result<EpochMetrics, TrainError> {
        let start = Instant::now();
        let model = self.model().valid();
        let (train_loss, _) = evaluate(&model, self.data, &self.data.train, &self.plain);
        let loss = EpochLoss {
            sum: train_loss,
            steps: 0,
            terms: [None; 2],
        };
        self.evaluate_epoch(0, start, &loss)
    }

    pub(super) fn model(&self) -> &Net {
        self.model.as_ref().expect("present between steps")
    }

    /// The loss of one batch of training images, and the distillation terms in it.
    pub(super) fn loss(&mut self, batch: &[usize], pixels: Vec<f32>) -> (Tensor<1>, Terms) {
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
        let hidden_loss = self
            .stage
            .spec
            .hidden_loss
            .filter(|_| self.stage.kd.is_some());
        let (logits, hidden) = match hidden_loss {
            Some(_) => model.forward_hidden(images.clone().autodiff(), dropout),
            None => (model.forward_with(images.clone().autodiff(), dropout), None),
        };
        // DistilBERT's cosine loss on the last hidden states, next to the logits' loss.
        let hidden_term = match (hidden_loss, hidden, self.teacher) {
            (Some(h), Some((student, mask)), Some(teacher)) => {
                teacher.hidden(images.clone()).map(|t| {
                    if self.trace.is_some() {
                        self.traced_hidden = Some(t.clone().into_data().iter::<f32>().collect());
                    }
                    loss::hidden_cosine(student, t.autodiff(), mask).mul_scalar(h.weight)
                })
            }
            _ => None,
        };
        let hidden = hidden_term.clone();
        let total = |(l, soft): (Tensor<1>, Option<Tensor<1>>)| {
            let terms = Terms { soft, hidden };
            match hidden_term {
                Some(h) => (l + h, terms),
                None => (l, terms),
            }
        };
        total(match (self.teacher, self.stage.kd) {
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
            _ => (loss::cross_entropy(logits, labels), None),
        })
    }

    /// Trains and evaluates epoch `epoch` (1-based).
    pub(super) fn epoch(
        &mut self,
        epoch: usize,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<EpochMetrics, TrainError> {
        let start = Instant::now();
        let loss = self.train_epoch(epoch, on_progress)?;
        self.evaluate_epoch(epoch, start, &loss)
    }

    /// The optimizer steps of epoch `epoch`: the sum of their losses, their count, and the
    /// mean distillation terms.
    pub(super) fn train_epoch(
        &mut self,
        epoch: usize,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<EpochLoss, TrainError> {
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
        let mut terms_sum = [None::<f64>; 2];
        for (step, batch) in order.chunks(t.batch_size).enumerate() {
            let mut pixels = Vec::with_capacity(batch.len() * data.image_len());
            match augment {
                Some(a) => {
                    data.gather_augmented(&data.train, batch, a, &mut self.augment_rng, &mut pixels)
                }
                None => data.gather(&data.train, batch, &mut pixels),
            }
            let traced = self.trace.is_some().then(|| pixels.clone());
            let (loss, terms) = self.loss(batch, pixels);
            let value = loss.clone().into_scalar::<f32>();
            let term_values = [terms.soft, terms.hidden].map(|t| t.map(|t| t.into_scalar::<f32>()));
            for (sum, term) in terms_sum.iter_mut().zip(term_values) {
                if let Some(t) = term {
                    *sum.get_or_insert(0.0) += t as f64;
                }
            }
            if let (Some(inputs), Some(steps)) = (traced, self.trace.as_mut()) {
                steps.push(trace::Step {
                    epoch,
                    lr,
                    labels: batch.iter().map(|&i| data.train.labels[i] as i64).collect(),
                    indices: batch.to_vec(),
                    inputs,
                    teacher_logits: self.traced_teacher.take(),
                    teacher_hidden: self.traced_hidden.take(),
                    loss: value,
                    kd_term: term_values[0],
                    hidden_term: term_values[1],
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
        Ok(EpochLoss {
            sum: loss_sum,
            steps,
            terms: terms_sum.map(|s| s.map(|s| s / steps.max(1) as f64)),
        })
    }

    /// Evaluates the model after epoch `epoch`'s steps and records the epoch.
    pub(super) fn evaluate_epoch(
        &mut self,
        epoch: usize,
        start: Instant,
        loss: &EpochLoss,
    ) -> Result<EpochMetrics, TrainError> {
        let steps = loss.steps;
        let train_loss = loss.sum / steps.max(1) as f64;
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
        let metrics = EpochMetrics {
            kd_loss: loss.terms[0],
            hidden_loss: loss.terms[1],
            ..metrics
        };
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
    pub(super) fn finish(self, seconds: f64) -> Trained {
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
