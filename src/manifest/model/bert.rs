//! The `bert` and `distilbert` families: transformer encoders under Hugging Face's tensor names
//! (`BertForSequenceClassification`, `DistilBertForSequenceClassification`), sized by the
//! manifest or by a checkpoint's `config.json`, reading the ids of their own tokenizer.

use super::cost::{Cost, dense_cost};
use super::raw::{RawModel, Widths};
use super::{Family, ModelSpec, TokenizerRef};
use crate::manifest::error::Problems;
use serde::Serialize;
use std::path::Path;
use toml::Spanned;

/// Which encoder: BERT (token types, pooler) or DistilBERT (neither; a `pre_classifier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoder {
    /// `BertForSequenceClassification`.
    Bert,
    /// `DistilBertForSequenceClassification`.
    Distilbert,
}

/// A transformer encoder's sizes, as `config.json` gives them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BertSpec {
    /// BERT or DistilBERT.
    pub encoder: Encoder,
    /// Encoder layers (`num_hidden_layers`, `n_layers`).
    pub layers: usize,
    /// Width of every token's vector (`hidden_size`, `dim`).
    pub hidden: usize,
    /// Attention heads per layer (`num_attention_heads`, `n_heads`).
    pub heads: usize,
    /// Feed-forward width (`intermediate_size`, `hidden_dim`).
    pub intermediate: usize,
    /// Rows of the word embedding (`vocab_size`).
    pub vocab: usize,
    /// Rows of the position embedding (`max_position_embeddings`).
    pub positions: usize,
    /// Rows of the token-type embedding (`type_vocab_size`; none in DistilBERT).
    pub token_types: usize,
    /// The padding id: its embedding row starts at zero, and attention skips it.
    pub pad_id: usize,
    /// LayerNorm's epsilon (`layer_norm_eps`; DistilBERT's is fixed at 1e-12).
    pub layer_norm_eps: f64,
}

/// Sizes a `config.json` gives, with the key names of its model type.
struct Config {
    layers: usize,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    vocab: usize,
    positions: usize,
    token_types: usize,
    pad_id: usize,
    layer_norm_eps: f64,
}

/// Reads `folder/config.json` of a `family` checkpoint; `Err` says what does not fit.
fn read_config(folder: &Path, family: Family) -> Result<Config, String> {
    let path = folder.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not JSON: {e}", path.display()))?;
    let (model_type, keys, activation) = match family {
        Family::Distilbert => (
            "distilbert",
            ["n_layers", "dim", "n_heads", "hidden_dim"],
            "activation",
        ),
        _ => (
            "bert",
            [
                "num_hidden_layers",
                "hidden_size",
                "num_attention_heads",
                "intermediate_size",
            ],
            "hidden_act",
        ),
    };
    let found = v["model_type"].as_str().unwrap_or("?");
    if found != model_type {
        return Err(format!(
            "`{}` describes a `{found}` model, not `{model_type}`",
            path.display()
        ));
    }
    let int = |key: &str, default: Option<usize>| -> Result<usize, String> {
        match v.get(key).filter(|x| !x.is_null()) {
            Some(x) => x
                .as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| format!("`{key}` in `{}` is not an integer", path.display())),
            None => default.ok_or_else(|| format!("`{}` has no `{key}`", path.display())),
        }
    };
    let act = v.get(activation).and_then(|a| a.as_str()).unwrap_or("gelu");
    if act != "gelu" {
        return Err(format!(
            "`{activation} = \"{act}\"` in `{}`: kdgrid's encoders use `gelu` (erf)",
            path.display()
        ));
    }
    if v.get("position_embedding_type")
        .and_then(|p| p.as_str())
        .is_some_and(|p| p != "absolute")
        || v.get("sinusoidal_pos_embds").and_then(|s| s.as_bool()) == Some(true)
    {
        return Err(format!(
            "`{}`: only learned absolute position embeddings are supported",
            path.display()
        ));
    }
    Ok(Config {
        layers: int(keys[0], None)?,
        hidden: int(keys[1], None)?,
        heads: int(keys[2], None)?,
        intermediate: int(keys[3], None)?,
        vocab: int("vocab_size", None)?,
        positions: int("max_position_embeddings", Some(512))?,
        token_types: match family {
            Family::Distilbert => 0,
            _ => int("type_vocab_size", Some(2))?,
        },
        pad_id: int("pad_token_id", Some(0))?,
        layer_norm_eps: match family {
            Family::Distilbert => 1e-12,
            _ => match v.get("layer_norm_eps").filter(|x| !x.is_null()) {
                Some(x) => x.as_f64().ok_or_else(|| {
                    format!("`layer_norm_eps` in `{}` is not a number", path.display())
                })?,
                None => 1e-12,
            },
        },
    })
}

/// A `bert` or `distilbert` table's encoder: sizes from `config.json` when `weights` names a
/// checkpoint folder (the manifest may repeat them; a disagreement is an error), else from
/// `layers`, `hidden`, `heads` (required) and `intermediate` (4 x hidden). `tokenizer` is the
/// model's, resolved by the caller.
pub(super) fn resolve(
    name: &str,
    family: Family,
    m: &RawModel,
    base: &Path,
    tokenizer: Option<&(TokenizerRef, usize, usize)>,
    problems: &mut Problems,
) -> ModelSpec {
    let at = m.family.as_ref().map(Spanned::span);
    let folder = m
        .weights
        .as_ref()
        .map(|w| (base.join(w.get_ref()), w.span()))
        .filter(|(p, _)| p.is_dir());
    let config = folder
        .as_ref()
        .and_then(|(dir, span)| match read_config(dir, family) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(
                    Some(span.clone()),
                    format!("`models.{name}.weights`: {e}"),
                    None,
                );
                None
            }
        });
    let hidden = match &m.hidden {
        Some(h) => match h.get_ref() {
            Widths::One(c) => Some(c.get()),
            Widths::Many(_) => {
                problems.push(
                    Some(h.span()),
                    format!(
                        "`models.{name}.hidden` is one width for `{}`",
                        family.name()
                    ),
                    Some("e.g. `hidden = 256` (every token's vector)".into()),
                );
                None
            }
        },
        None => None,
    };
    let given = [
        (
            "layers",
            m.layers.as_ref().map(|v| (v.get_ref().get(), v.span())),
        ),
        ("hidden", hidden.zip(m.hidden.as_ref().map(Spanned::span))),
        (
            "heads",
            m.heads.as_ref().map(|v| (v.get_ref().get(), v.span())),
        ),
        (
            "intermediate",
            m.intermediate
                .as_ref()
                .map(|v| (v.get_ref().get(), v.span())),
        ),
    ];
    let mut sizes = [0usize; 4];
    for (i, (key, value)) in given.iter().enumerate() {
        let from_config = config
            .as_ref()
            .map(|c| [c.layers, c.hidden, c.heads, c.intermediate][i]);
        sizes[i] = match (value, from_config) {
            (Some((v, span)), Some(c)) if *v != c => {
                problems.push(
                    Some(span.clone()),
                    format!(
                        "`models.{name}.{key} = {v}`, but the checkpoint's `config.json` says {c}"
                    ),
                    Some("leave the size out: it is read from `config.json`".into()),
                );
                c
            }
            (_, Some(c)) => c,
            (Some((v, _)), None) => *v,
            (None, None) if *key == "intermediate" => 4 * sizes[1],
            (None, None) => {
                if config.is_none() && folder.is_none() {
                    problems.push(
                        at.clone(),
                        format!("`models.{name}.{key}` is required for `{}` (or `weights` = a checkpoint folder with `config.json`)", family.name()),
                        Some("e.g. `layers = 4`, `hidden = 256`, `heads = 4`".into()),
                    );
                }
                1
            }
        };
    }
    let [layers, hidden, heads, intermediate] = sizes;
    if !hidden.is_multiple_of(heads) {
        problems.push(
            m.heads.as_ref().map(Spanned::span).or(at.clone()),
            format!("`models.{name}`: `hidden = {hidden}` is not a multiple of `heads = {heads}`"),
            None,
        );
    }
    let (vocab, pad_id) = match (tokenizer, &config) {
        (Some((_, vocab, pad)), Some(c)) => {
            if *vocab > c.vocab {
                problems.push(
                    m.tokenizer.as_ref().map(Spanned::span).or(at.clone()),
                    format!("`models.{name}`: the tokenizer has {vocab} ids, the checkpoint's embedding {} rows", c.vocab),
                    Some("use the tokenizer the checkpoint was trained with".into()),
                );
            }
            if *pad != c.pad_id {
                problems.push(
                    m.tokenizer.as_ref().map(Spanned::span).or(at.clone()),
                    format!("`models.{name}`: the tokenizer pads with id {pad}, the checkpoint's `pad_token_id` is {}", c.pad_id),
                    None,
                );
            }
            (c.vocab, c.pad_id)
        }
        (Some((_, vocab, pad)), None) => (*vocab, *pad),
        (None, _) => {
            // A tokenizer that failed to load has said so at its own line.
            if m.tokenizer.is_none() && folder.is_none() {
                problems.push(
                at.clone(),
                format!(
                    "`models.{name}` (`{}`) reads subword ids: it needs a tokenizer",
                    family.name()
                ),
                Some("`tokenizer = \"path/to/tokenizer.json\"` (or a checkpoint folder holding one)".into()),
            );
            }
            (1, 0)
        }
    };
    let encoder = if family == Family::Distilbert {
        Encoder::Distilbert
    } else {
        Encoder::Bert
    };
    ModelSpec {
        dense: Vec::new(),
        bert: Some(BertSpec {
            encoder,
            layers,
            hidden,
            heads,
            intermediate,
            vocab,
            positions: config.as_ref().map_or(512, |c| c.positions),
            token_types: config
                .as_ref()
                .map_or(if encoder == Encoder::Bert { 2 } else { 0 }, |c| {
                    c.token_types
                }),
            pad_id,
            layer_norm_eps: config.as_ref().map_or(1e-12, |c| c.layer_norm_eps),
        }),
        ..ModelSpec::bare(family.name())
    }
}

/// Parameters and forward FLOPs of an encoder over `length` tokens, counting what PyTorch's
/// `FlopCounterMode` counts: every matrix product (the four attention projections, scores and
/// context, the feed-forward pair), the pooler or pre-classifier on the first token, and the
/// classifier.
pub(super) fn cost(b: &BertSpec, length: usize, classes: usize) -> Cost {
    let (h, i, l) = (b.hidden as u64, b.intermediate as u64, length as u64);
    let mut params = (b.vocab + b.positions + b.token_types) as u64 * h + 2 * h;
    let per_layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h;
    params += b.layers as u64 * per_layer;
    let flops = b.layers as u64 * (2 * l * 4 * h * h + 2 * 2 * l * l * h + 2 * 2 * l * h * i);
    let mut cost = Cost {
        params,
        forward_flops: flops,
    };
    // The pooler (BERT) or pre-classifier (DistilBERT) on the first token, then the classifier.
    dense_cost(&mut cost, h, &[b.hidden], classes);
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        encoder: Encoder,
        [layers, hidden, heads, intermediate, vocab, positions]: [usize; 6],
    ) -> BertSpec {
        BertSpec {
            encoder,
            layers,
            hidden,
            heads,
            intermediate,
            vocab,
            positions,
            token_types: if encoder == Encoder::Bert { 2 } else { 0 },
            pad_id: 0,
            layer_norm_eps: 1e-12,
        }
    }

    /// Counts from `transformers` 4.57 (`scripts/examples/bert-teacher.py count`: parameters,
    /// and `FlopCounterMode`'s FLOPs of one text with eager attention); `tests/it/bert.rs`
    /// recomputes such counts live.
    #[test]
    fn counts_equal_transformers() {
        let cases = [
            // bert-base-uncased with a 2-class head, 128 tokens.
            (
                spec(Encoder::Bert, [12, 768, 12, 3072, 30522, 512]),
                128,
                2,
                109_483_778,
                22_348_434_432,
            ),
            (
                spec(Encoder::Bert, [2, 64, 4, 128, 400, 512]),
                24,
                2,
                129_858,
                3_449_088,
            ),
            (
                spec(Encoder::Distilbert, [3, 48, 3, 100, 1000, 64]),
                16,
                5,
                111_809,
                1_958_880,
            ),
        ];
        for (b, length, classes, params, flops) in cases {
            let c = cost(&b, length, classes);
            assert_eq!((c.params, c.forward_flops), (params, flops), "{b:?}");
        }
    }
}
