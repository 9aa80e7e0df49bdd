//! What a student encoder takes from its teacher besides soft labels: `init-from` (its first
//! weights: embeddings and chosen layers of another model's stage, as DistilBERT starts from
//! one BERT layer in two) and `hidden-loss` (DistilBERT's cosine on the last hidden states).

use super::ModelSpec;
use super::raw::RawModel;
use crate::manifest::error::Problems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where an encoder's first weights come from: another model's trained stage (its embeddings
/// and the encoder layers `layers`, in order), as DistilBERT starts from one BERT layer in two.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitFrom {
    /// The model whose stage gives the weights (trained under the teacher-seed policy).
    pub model: String,
    /// The source's 0-based layers, one per layer of this model.
    pub layers: Vec<usize>,
}

/// The loss between a student's and its teacher's last hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HiddenLossKind {
    /// DistilBERT's `1 - cos(h_student, h_teacher)`, averaged over the tokens that are not
    /// padding.
    Cosine,
}

/// `hidden-loss`: added to the stage's loss with `weight` when it distils.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HiddenLoss {
    /// Which loss.
    pub kind: HiddenLossKind,
    /// Its weight in the total loss.
    pub weight: f64,
}

/// Resolves `init-from` and `hidden-loss` of every encoder once all models are known: the
/// source must be an encoder of the same widths, heads, vocabulary and tokenizer, not itself
/// initialized from another, with a layer for each of this model's; `hidden-loss` needs an
/// encoder and the student's width.
pub(super) fn check_links(
    raw: &BTreeMap<toml::Spanned<String>, RawModel>,
    models: &mut BTreeMap<String, ModelSpec>,
    problems: &mut Problems,
) {
    for (name, m) in raw {
        let name = name.get_ref();
        let Some(spec) = models.get(name).cloned() else {
            continue;
        };
        if let Some(h) = &m.hidden_loss {
            if spec.bert.is_none() {
                problems.push(
                    Some(h.span()),
                    format!(
                        "`models.{name}.hidden-loss` applies to `bert` and `distilbert` students"
                    ),
                    None,
                );
            } else {
                let h = *h.get_ref();
                let loss = HiddenLoss {
                    kind: h.kind,
                    weight: h.weight.get(),
                };
                models.get_mut(name).expect("present").hidden_loss = Some(loss);
            }
        }
        let Some(f) = &m.init_from else {
            continue;
        };
        let at = Some(f.span());
        let Some(b) = &spec.bert else {
            problems.push(
                at,
                format!("`models.{name}.init-from` applies to `bert` and `distilbert` models"),
                None,
            );
            continue;
        };
        if spec.weights.is_some() {
            problems.push(
                at,
                format!("`models.{name}` is imported: it cannot also start from `init-from`"),
                None,
            );
            continue;
        }
        let source_name = &f.get_ref().model;
        let Some(source) = models.get(source_name) else {
            problems.push(
                at,
                format!("`models.{name}.init-from`: no model `{source_name}`"),
                None,
            );
            continue;
        };
        // The raw table says whether the source starts from another model: its resolved spec
        // may not be filled in yet.
        let chained = source_name == name
            || raw
                .iter()
                .any(|(n, r)| n.get_ref() == source_name && r.init_from.is_some());
        let Some(sb) = source.bert.as_ref().filter(|_| !chained) else {
            problems.push(
                at,
                format!("`models.{name}.init-from`: `{source_name}` is not a `bert` or `distilbert` model of its own weights (another one's, or this one)"),
                Some("the source gives embeddings and encoder layers: an encoder trained here or imported".into()),
            );
            continue;
        };
        let mut differ = Vec::new();
        for (what, a, s) in [
            ("hidden", b.hidden, sb.hidden),
            ("heads", b.heads, sb.heads),
            ("intermediate", b.intermediate, sb.intermediate),
            ("vocabulary", b.vocab, sb.vocab),
            ("positions", b.positions, sb.positions),
        ] {
            if a != s {
                differ.push(format!("{what} {a} vs {s}"));
            }
        }
        if spec.tokenizer.as_ref().map(|t| &t.sha256)
            != source.tokenizer.as_ref().map(|t| &t.sha256)
        {
            differ.push("another tokenizer".into());
        }
        if !differ.is_empty() {
            problems.push(
                at,
                format!("`models.{name}.init-from`: `{source_name}`'s layers do not fit: {}", differ.join(", ")),
                Some("a student starts from its teacher's layers when its widths, heads and tokenizer are the teacher's".into()),
            );
            continue;
        }
        let every = (sb.layers / b.layers).max(1);
        let layers = f.get_ref().layers.clone().unwrap_or_else(|| {
            (0..b.layers)
                .map(|i| (i * every).min(sb.layers - 1))
                .collect()
        });
        if layers.len() != b.layers || layers.iter().any(|&l| l >= sb.layers) {
            problems.push(
                at,
                format!(
                    "`models.{name}.init-from.layers` = {layers:?}: one layer of `{source_name}` (0 to {}) for each of the {} layers",
                    sb.layers - 1,
                    b.layers
                ),
                None,
            );
            continue;
        }
        models.get_mut(name).expect("present").init_from = Some(InitFrom {
            model: source_name.clone(),
            layers,
        });
    }
}
