//! The `lstm` family: a recurrent text classifier over the dataset's token ids.

use super::ModelSpec;
use super::cost::{Cost, dense_cost};
use super::raw::{RawModel, Widths};
use crate::manifest::error::Problems;
use serde::Serialize;
use toml::Spanned;

/// An LSTM text classifier: token embedding, stacked LSTM layers (the last one's final hidden
/// state goes on), then the model's dense layers and classifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LstmSpec {
    /// Embedding width.
    pub embedding: usize,
    /// Hidden width of each LSTM layer.
    pub hidden: Vec<usize>,
    /// Rows of the embedding table (the dataset's vocabulary, padding and unknown), set from
    /// `[dataset]`.
    pub vocab: usize,
}

/// An `lstm` table's architecture: `hidden` widths (required) and `embedding` (64 by default).
pub(super) fn resolve(name: &str, m: &RawModel, problems: &mut Problems) -> ModelSpec {
    let widths = m.hidden.as_ref().map(|h| match h.get_ref() {
        Widths::One(c) => vec![c.get()],
        Widths::Many(w) => w.iter().map(|c| c.get()).collect(),
    });
    let hidden: Vec<usize> = match widths {
        Some(w) if !w.is_empty() => w,
        _ => {
            let h = &m.hidden;
            problems.push(
                h.as_ref()
                    .map(Spanned::span)
                    .or(m.family.as_ref().map(Spanned::span)),
                format!("`models.{name}.hidden` (the LSTM layers' widths) is required for `lstm`"),
                Some("e.g. `hidden = [128]`, or `[128, 128]` for two stacked layers".into()),
            );
            vec![1]
        }
    };
    ModelSpec {
        dense: m.dense.iter().map(|c| c.get()).collect(),
        lstm: Some(LstmSpec {
            embedding: m.embedding.as_ref().map_or(64, |e| e.get_ref().get()),
            hidden,
            vocab: 0,
        }),
        ..ModelSpec::bare("lstm")
    }
}

/// The cost of an LSTM classifier over `length` tokens: the embedding table, four gates of an
/// input and a hidden affine map per layer (two biases each, as PyTorch), and the dense layers.
pub(super) fn cost(spec: &ModelSpec, l: &LstmSpec, length: usize, classes: usize) -> Cost {
    let mut params = (l.vocab * l.embedding) as u64;
    let mut flops = 0u64;
    let mut d = l.embedding as u64;
    for &h in &l.hidden {
        let h = h as u64;
        params += 4 * (d * h + h * h + 2 * h);
        flops += 2 * 4 * (d * h + h * h) * length as u64;
        d = h;
    }
    let mut cost = Cost {
        params,
        forward_flops: flops,
    };
    dense_cost(&mut cost, d, &spec.dense, classes);
    cost
}
