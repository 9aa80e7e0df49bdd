//! `[training]`: optimizer, schedule, distillation loss, augmentation, validation split and
//! model selection, shared by every stage unless a model overrides them.

use super::DataShape;
use super::error::Problems;
use super::values::{Count, Fraction, Positive};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Training settings a model may override in its `[models.*]` table.
///
/// ```toml
/// [models.teacher]
/// conv = [64, 128]
/// epochs = 4        # teachers train longer than students
/// lr = 0.0005
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrainingOverride {
    /// Epochs for this model.
    pub epochs: Option<usize>,
    /// Learning rate for this model.
    pub lr: Option<f64>,
    /// Batch size for this model.
    pub batch_size: Option<usize>,
    /// Weight decay for this model.
    pub weight_decay: Option<f64>,
    /// Adam/AdamW `betas` for this model.
    pub betas: Option<[f64; 2]>,
    /// Adam/AdamW `epsilon` for this model.
    pub epsilon: Option<f64>,
}

/// Optimizer choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam (Kingma & Ba); `weight-decay` is an L2 penalty.
    Adam,
    /// AdamW: Adam with decoupled weight decay (`weight-decay`, default 0.01 as in PyTorch).
    Adamw,
    /// Stochastic gradient descent, optionally with momentum.
    Sgd,
}

impl Optimizer {
    /// Name as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Adam => "adam",
            Optimizer::Adamw => "adamw",
            Optimizer::Sgd => "sgd",
        }
    }
}

/// PyTorch's default Adam/AdamW `betas`.
pub const DEFAULT_BETAS: [f64; 2] = [0.9, 0.999];
/// PyTorch's default Adam/AdamW `eps`.
pub const DEFAULT_EPSILON: f64 = 1e-8;
/// PyTorch's default AdamW `weight_decay`.
pub const DEFAULT_ADAMW_DECAY: f64 = 0.01;

/// Training settings shared by every stage.
///
/// ```toml
/// [training]
/// epochs = 3
/// batch-size = 64
/// optimizer = "adam"
/// lr = 0.001
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingSpec {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Learning rate (constant).
    pub lr: f64,
    /// SGD momentum.
    pub momentum: Option<f64>,
    /// SGD dampening of the momentum buffer (PyTorch's `dampening`, default 0).
    pub dampening: f64,
    /// L2 weight decay (decoupled for AdamW, default 0.01 there).
    pub weight_decay: Option<f64>,
    /// Adam/AdamW coefficients of the running averages (PyTorch's `betas`, default
    /// `[0.9, 0.999]`).
    pub betas: [f64; 2],
    /// Adam/AdamW term added to the denominator (PyTorch's `eps`, default 1e-8).
    pub epsilon: f64,
    /// Learning-rate schedule over epochs.
    #[serde(skip_serializing_if = "Schedule::is_constant")]
    pub schedule: Schedule,
    /// Nesterov momentum for SGD.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nesterov: bool,
    /// How the distillation KL is reduced; part of a distilled stage's [`crate::plan::Kd`]
    /// rather than of every stage's id, so teachers are shared across reductions.
    #[serde(skip)]
    pub kl_reduction: KlReduction,
    /// Data augmentation of training batches (absent: none; absent settings leave ids as
    /// they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentSpec>,
    /// Images held out of the training split for validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Holdout>,
    /// Which epoch's weights a stage keeps.
    #[serde(skip_serializing_if = "Selection::is_last")]
    pub select: Selection,
    /// Commit a checkpoint every N epochs, so a killed stage resumes there (default 1); not
    /// part of stage ids: it does not change results.
    ///
    /// ```toml
    /// [training]
    /// checkpoint-every = 5
    /// ```
    #[serde(skip)]
    pub checkpoint_every: usize,
}

/// A validation split carved from the training split: the same images for every stage of a
/// study (a fixed shuffle of the training indices), so teachers and students select alike.
///
/// ```toml
/// [training]
/// validation = 5000   # images; or a fraction such as 0.1
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Holdout {
    /// A number of images.
    Count(usize),
    /// A fraction of the training split, in (0, 1).
    Fraction(f64),
}

impl Holdout {
    /// Images held out of a training split of `train` images.
    pub fn count(self, train: usize) -> usize {
        match self {
            Holdout::Count(n) => n,
            Holdout::Fraction(f) => (f * train as f64).round() as usize,
        }
    }

    /// Whether the split holds out at least one image and leaves at least one to train on.
    pub fn fits(self, train: usize) -> bool {
        (1..train).contains(&self.count(train))
    }
}

/// Which weights a stage keeps and reports.
///
/// ```toml
/// [training]
/// select = "best-val"   # needs `validation`
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The last epoch's.
    #[default]
    Last,
    /// The epoch with the best validation accuracy (earliest on ties).
    BestVal,
    /// The epoch with the best test accuracy: optimistic, as in papers that report the best
    /// test epoch; refused unless `allow-test-selection = true`.
    BestTest,
}

impl Selection {
    fn is_last(&self) -> bool {
        *self == Selection::Last
    }

    /// Name as written in manifests and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::Last => "last",
            Selection::BestVal => "best-val",
            Selection::BestTest => "best-test",
        }
    }
}

/// Learning-rate schedule, applied per epoch.
///
/// ```toml
/// [training]
/// schedule = { kind = "cosine" }                          # lr * (1 + cos(pi * e / E)) / 2
/// schedule = { kind = "step", every = 30, gamma = 0.1 }   # lr * gamma^(e / every)
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// The same learning rate every epoch.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: Count,
        /// Decay factor.
        gamma: Positive,
    },
    /// Cosine annealing from `lr` towards 0 over the stage's epochs.
    Cosine,
}

impl Schedule {
    fn is_constant(&self) -> bool {
        *self == Schedule::Constant
    }

    /// The learning rate of 0-based `epoch` out of `epochs`, starting from `lr`.
    pub fn lr(&self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Step { every, gamma } => lr * gamma.get().powi((epoch / every.get()) as i32),
            Schedule::Cosine => {
                lr * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos())
            }
        }
    }
}

/// Reduction of the distillation KL term.
///
/// ```toml
/// [training]
/// kl-reduction = "element-mean"   # as PyTorch's KLDivLoss default in the TAKD code
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlReduction {
    /// Sum over classes, mean over the batch (Hinton et al.).
    #[default]
    PerSample,
    /// Mean over batch and classes: the per-sample KL divided by the class count.
    ElementMean,
}

impl KlReduction {
    /// Whether this is the default (per-sample), which stage ids leave out.
    pub fn is_default(&self) -> bool {
        *self == KlReduction::PerSample
    }
}

/// Training-batch augmentation, drawn from the stage's augment stream.
///
/// ```toml
/// [training]
/// augment = { crop-padding = 4, flip = true }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AugmentSpec {
    /// Zero padding before a random crop back to the original size (0: no crop).
    #[serde(default)]
    pub crop_padding: usize,
    /// Random horizontal flips.
    #[serde(default)]
    pub flip: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawTraining {
    epochs: Count,
    batch_size: Count,
    optimizer: Optimizer,
    lr: Positive,
    momentum: Option<Spanned<Fraction>>,
    dampening: Option<Spanned<Fraction>>,
    weight_decay: Option<Fraction>,
    betas: Option<Spanned<[Fraction; 2]>>,
    epsilon: Option<Spanned<Positive>>,
    #[serde(default)]
    schedule: Schedule,
    nesterov: Option<Spanned<bool>>,
    #[serde(default)]
    kl_reduction: KlReduction,
    augment: Option<AugmentSpec>,
    validation: Option<Spanned<HoldoutValue>>,
    select: Option<Spanned<Selection>>,
    allow_test_selection: Option<bool>,
    checkpoint_every: Option<Count>,
}

/// `validation` as written: an integer is a count of images, a float a fraction.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum HoldoutValue {
    Count(i64),
    Fraction(f64),
}

pub(crate) fn check_training(
    raw: &Spanned<RawTraining>,
    shape: Option<DataShape>,
    problems: &mut Problems,
) -> TrainingSpec {
    let t = raw.get_ref();
    if let Some(nesterov) = &t.nesterov
        && *nesterov.get_ref()
        && (t.optimizer != Optimizer::Sgd || t.momentum.is_none())
    {
        problems.push(
            Some(nesterov.span()),
            "`training.nesterov` needs `optimizer = \"sgd\"` and a `momentum`",
            None,
        );
    }
    // Settings the chosen optimizer has no use for are refused, not silently ignored.
    let sgd = t.optimizer == Optimizer::Sgd;
    for (key, span, for_sgd) in [
        ("momentum", t.momentum.as_ref().map(Spanned::span), true),
        ("dampening", t.dampening.as_ref().map(Spanned::span), true),
        ("betas", t.betas.as_ref().map(Spanned::span), false),
        ("epsilon", t.epsilon.as_ref().map(Spanned::span), false),
    ] {
        if let Some(span) = span.filter(|_| sgd != for_sgd) {
            problems.push(
                Some(span),
                format!(
                    "`training.{key}` applies to {}, not `optimizer = \"{}\"`",
                    if for_sgd {
                        "`optimizer = \"sgd\"`"
                    } else {
                        "`optimizer = \"adam\"` and `\"adamw\"`"
                    },
                    t.optimizer.name()
                ),
                None,
            );
        }
    }
    let validation = t.validation.as_ref().and_then(|v| {
        // `1.0` is refused rather than read as "one image" or "everything".
        let holdout = match *v.get_ref() {
            HoldoutValue::Fraction(x) if x > 0.0 && x < 1.0 => Holdout::Fraction(x),
            HoldoutValue::Count(n) if n >= 1 => Holdout::Count(n as usize),
            bad => {
                let found = match bad {
                    HoldoutValue::Count(n) => n.to_string(),
                    HoldoutValue::Fraction(x) => format!("{x:?}"),
                };
                problems.push(
                    Some(v.span()),
                    format!(
                        "`training.validation` is a whole number of images or a fraction in (0, 1), found {found}"
                    ),
                    Some("e.g. `validation = 5000` (images) or `validation = 0.1`".into()),
                );
                return None;
            }
        };
        if let Some(shape) = shape
            && !holdout.fits(shape.train)
        {
            problems.push(
                Some(v.span()),
                format!(
                    "`training.validation` holds out {} images of a {}-image training split",
                    holdout.count(shape.train),
                    shape.train
                ),
                Some("hold out at least one image and leave some to train on".into()),
            );
        }
        Some(holdout)
    });
    let select = t.select.as_ref().map_or(Selection::Last, |s| *s.get_ref());
    if let Some(s) = &t.select {
        match s.get_ref() {
            Selection::BestVal if validation.is_none() => problems.push(
                Some(s.span()),
                "`select = \"best-val\"` needs a validation split",
                Some("add `validation = 5000` (images) or `validation = 0.1` to `[training]`".into()),
            ),
            Selection::BestTest if t.allow_test_selection != Some(true) => problems.push(
                Some(s.span()),
                "selecting epochs on the test set makes the reported accuracy optimistic",
                Some("use `select = \"best-val\"` with a `validation` split, or set `allow-test-selection = true` to reproduce a paper that did this".into()),
            ),
            _ => {}
        }
    }
    TrainingSpec {
        epochs: t.epochs.get(),
        batch_size: t.batch_size.get(),
        optimizer: t.optimizer,
        lr: t.lr.get(),
        momentum: t.momentum.as_ref().map(|m| m.get_ref().get()),
        dampening: t.dampening.as_ref().map_or(0.0, |d| d.get_ref().get()),
        weight_decay: t.weight_decay.map(Fraction::get),
        betas: t
            .betas
            .as_ref()
            .map_or(DEFAULT_BETAS, |b| b.get_ref().map(Fraction::get)),
        epsilon: t
            .epsilon
            .as_ref()
            .map_or(DEFAULT_EPSILON, |e| e.get_ref().get()),
        nesterov: t.nesterov.as_ref().is_some_and(|n| *n.get_ref()),
        schedule: t.schedule,
        kl_reduction: t.kl_reduction,
        augment: t.augment.filter(|a| a.crop_padding > 0 || a.flip),
        validation,
        select,
        checkpoint_every: t.checkpoint_every.map_or(1, Count::get),
    }
}
