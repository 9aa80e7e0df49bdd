//! The wire shape of a `[models.<name>]` table, as serde reads it (with spans for errors), and
//! the training keys a model may override.

use super::Family;
use super::cnn::Padding;
use super::ensemble::Combine;
use super::onnx::RawInput;
use crate::manifest::TrainingOverride;
use crate::manifest::values::{Count, Fraction, Positive};
use serde::Deserialize;
use toml::Spanned;

/// `fine-tune = { epochs = .., lr = .. }` of an imported model.
#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct FineTune {
    pub(super) epochs: Count,
    pub(super) lr: Option<Positive>,
}

/// `init-from = { model = "teacher", layers = [0, 2] }` of an encoder.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInitFrom {
    pub(super) model: String,
    pub(super) layers: Option<Vec<usize>>,
}

/// `hidden-loss = { kind = "cosine", weight = 1.0 }` of an encoder.
#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHiddenLoss {
    pub(super) kind: super::distil::HiddenLossKind,
    pub(super) weight: Positive,
}

/// `hidden`: the LSTM layers' widths (`[64, 64]`), or an encoder's one width (`256`).
#[derive(Deserialize, Clone)]
#[serde(untagged, expecting = "a positive integer or a list of them")]
pub(crate) enum Widths {
    One(Count),
    Many(Vec<Count>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawModel {
    pub(super) family: Option<Spanned<Family>>,
    pub(super) size: Option<Spanned<Count>>,
    pub(super) conv: Option<Spanned<Vec<Count>>>,
    #[serde(default)]
    pub(super) dense: Vec<Count>,
    pub(super) kernel: Option<Spanned<Count>>,
    pub(super) padding: Option<Spanned<Padding>>,
    pub(super) pool: Option<Spanned<Vec<Count>>>,
    pub(super) batch_norm: Option<bool>,
    pub(super) dropout: Option<Spanned<Fraction>>,
    pub(super) epochs: Option<Count>,
    pub(super) lr: Option<Positive>,
    pub(super) batch_size: Option<Count>,
    pub(super) weight_decay: Option<Fraction>,
    pub(super) betas: Option<[Fraction; 2]>,
    pub(super) epsilon: Option<Positive>,
    pub(super) weights: Option<Spanned<String>>,
    pub(super) key_map: Option<Spanned<Vec<[String; 2]>>>,
    pub(super) fine_tune: Option<Spanned<FineTune>>,
    pub(super) ensemble: Option<Spanned<String>>,
    pub(super) seeds: Option<Spanned<Vec<u64>>>,
    pub(super) combine: Option<Combine>,
    pub(super) embedding: Option<Spanned<Count>>,
    pub(super) hidden: Option<Spanned<Widths>>,
    pub(super) layers: Option<Spanned<Count>>,
    pub(super) heads: Option<Spanned<Count>>,
    pub(super) intermediate: Option<Spanned<Count>>,
    pub(super) tokenizer: Option<Spanned<String>>,
    pub(super) init_from: Option<Spanned<RawInitFrom>>,
    pub(super) hidden_loss: Option<Spanned<RawHiddenLoss>>,
    pub(crate) onnx: Option<Spanned<String>>,
    pub(super) input: Option<Spanned<RawInput>>,
    pub(super) class_map: Option<Spanned<Vec<usize>>>,
    pub(super) output: Option<Spanned<String>>,
    pub(super) scores: Option<Spanned<crate::onnx::Scores>>,
}

impl RawModel {
    /// Stands in for a model whose table failed to deserialize.
    pub(crate) fn placeholder() -> Self {
        Self {
            family: None,
            size: None,
            conv: Some(Spanned::new(0..0, vec![Count::try_from(1).expect("1 > 0")])),
            dense: Vec::new(),
            kernel: None,
            padding: None,
            pool: None,
            batch_norm: None,
            dropout: None,
            epochs: None,
            lr: None,
            batch_size: None,
            weight_decay: None,
            betas: None,
            epsilon: None,
            weights: None,
            key_map: None,
            fine_tune: None,
            ensemble: None,
            seeds: None,
            combine: None,
            embedding: None,
            hidden: None,
            layers: None,
            heads: None,
            intermediate: None,
            tokenizer: None,
            init_from: None,
            hidden_loss: None,
            onnx: None,
            input: None,
            class_map: None,
            output: None,
            scores: None,
        }
    }

    /// Whether the table sets an architecture, imported weights or training settings: keys a
    /// model made of something else (an ensemble's members, an ONNX file) refuses.
    pub(super) fn has_architecture_or_training(&self) -> bool {
        self.family.is_some()
            || self.embedding.is_some()
            || self.hidden.is_some()
            || self.layers.is_some()
            || self.heads.is_some()
            || self.intermediate.is_some()
            || self.tokenizer.is_some()
            || self.init_from.is_some()
            || self.hidden_loss.is_some()
            || self.size.is_some()
            || self.conv.is_some()
            || !self.dense.is_empty()
            || self.kernel.is_some()
            || self.padding.is_some()
            || self.pool.is_some()
            || self.batch_norm.is_some()
            || self.dropout.is_some()
            || self.weights.is_some()
            || self.overrides().is_some()
    }

    pub(crate) fn overrides(&self) -> Option<TrainingOverride> {
        // An imported model trains only when fine-tuned; its own `epochs`/`lr` are refused.
        let fine_tune = self.fine_tune.as_ref().map(|f| *f.get_ref());
        let imported = self.weights.is_some();
        let o = TrainingOverride {
            epochs: match fine_tune {
                Some(f) if imported => Some(f.epochs.get()),
                _ if imported => Some(0),
                _ => self.epochs.map(Count::get),
            },
            lr: fine_tune.and_then(|f| f.lr).or(self.lr).map(Positive::get),
            batch_size: self.batch_size.map(Count::get),
            weight_decay: self.weight_decay.map(Fraction::get),
            betas: self.betas.map(|b| b.map(Fraction::get)),
            epsilon: self.epsilon.map(Positive::get),
        };
        (o != TrainingOverride::default()).then_some(o)
    }
}
