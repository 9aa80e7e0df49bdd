//! Checks that fit models to the rest of the manifest: text models to the dataset (and their
//! tokenizations to its rows), frozen models and hidden-state losses to the chains of the grid.

use super::error::Problems;
use super::model::RawModel;
use super::{DatasetSpec, Grid, ModelSpec};
use std::collections::BTreeMap;
use toml::Spanned;

/// Gives `lstm` models the dataset's vocabulary and every text model its tokenization (the
/// dataset lists the tokenizer files its models read, in the order of the models' names);
/// refuses a text model on images and an image model on text.
pub(super) fn fit_models_to_text(
    raw: &BTreeMap<Spanned<String>, RawModel>,
    models: &mut BTreeMap<String, ModelSpec>,
    dataset: &mut DatasetSpec,
    problems: &mut Problems,
) {
    let mut text = match dataset {
        DatasetSpec::Files { text, .. } => text.as_mut(),
        DatasetSpec::Synthetic(_) => None,
    };
    for name in raw.keys() {
        let Some(spec) = models.get_mut(name.get_ref()) else {
            continue;
        };
        let reads_text = spec.lstm.is_some() || spec.bert.is_some();
        match text.as_deref_mut() {
            Some(t) if reads_text => {
                if let Some(l) = &mut spec.lstm {
                    l.vocab = t.vocab_rows();
                }
                if spec.bert.is_some() && t.max_length < 3 {
                    problems.push(
                        Some(name.span()),
                        format!(
                            "`dataset.max-length = {}` leaves `models.{}` no room for a token between `[CLS]` and `[SEP]`",
                            t.max_length,
                            name.get_ref()
                        ),
                        Some("an encoder reads at least 3 tokens".into()),
                    );
                }
                if let Some(b) = spec.bert.as_ref().filter(|b| t.max_length > b.positions) {
                    problems.push(
                        Some(name.span()),
                        format!(
                            "`dataset.max-length = {}` is longer than `models.{}`'s {} positions",
                            t.max_length,
                            name.get_ref(),
                            b.positions
                        ),
                        Some("lower `max-length`: an encoder reads at most its position table's tokens".into()),
                    );
                }
                if let Some(tok) = &spec.tokenizer {
                    let position = t.tokenizers.iter().position(|k| k.sha256 == tok.sha256);
                    spec.view = 1 + position.unwrap_or_else(|| {
                        t.tokenizers.push(tok.clone());
                        t.tokenizers.len() - 1
                    });
                }
            }
            None if reads_text => problems.push(
                Some(name.span()),
                format!(
                    "`models.{}` is {} `{}`: it reads text (`dataset.kind = \"text\"`)",
                    name.get_ref(),
                    if spec.lstm.is_some() { "an" } else { "a" },
                    spec.family
                ),
                None,
            ),
            // ONNX models say why themselves (text ONNX teachers wait for tokenizers).
            Some(_) if spec.onnx.is_some() => {}
            Some(_) => problems.push(
                Some(name.span()),
                format!(
                    "`models.{}` is a `{}`, but the dataset is text",
                    name.get_ref(),
                    spec.family
                ),
                Some("text datasets take `lstm`, `bert` and `distilbert` models".into()),
            ),
            None => {}
        }
    }
}

/// Refuses an ensemble anywhere but at the head of a chain: it is a teacher, never trained.
/// Ensembles and ONNX models only run forward: they teach from the head of a chain, never
/// learn from a teacher.
pub(super) fn check_frozen_lead(
    grid: &Grid,
    models: &BTreeMap<String, ModelSpec>,
    span: std::ops::Range<usize>,
    problems: &mut Problems,
) {
    let late = grid.cells().into_iter().find_map(|c| {
        c.chain
            .iter()
            .skip(1)
            .find_map(|m| {
                let spec = models.get(m)?;
                if spec.ensemble.is_some() {
                    Some(("ensemble", "an ensemble averages trained stages"))
                } else if spec.onnx.is_some() {
                    Some((
                        "ONNX model",
                        "an ONNX model is frozen (it only runs forward)",
                    ))
                } else {
                    None
                }
                .map(|(kind, why)| (kind, why, m.clone()))
            })
            .map(|(kind, why, m)| (kind, why, m, c.chain.join(" > ")))
    });
    if let Some((kind, why, model, chain)) = late {
        problems.push(
            Some(span),
            format!("{kind} `{model}` is not the first model of chain `{chain}`"),
            Some(format!("{why}: it can only teach, at the head of a chain")),
        );
    }
}

/// Refuses `hidden-loss` on a student whose teacher in some chain is not an encoder of its width
/// reading its tokens: the cosine compares their vectors token by token.
pub(super) fn check_hidden_loss(
    grid: &Grid,
    models: &BTreeMap<String, ModelSpec>,
    span: std::ops::Range<usize>,
    problems: &mut Problems,
) {
    let fits = |student: &ModelSpec, teacher: &ModelSpec| {
        matches!((&student.bert, &teacher.bert), (Some(s), Some(t)) if s.hidden == t.hidden)
            && student.tokenizer == teacher.tokenizer
            && teacher.ensemble.is_none()
    };
    let misfit = grid.cells().into_iter().find_map(|c| {
        c.chain.windows(2).find_map(|pair| {
            let (teacher, student) = (&models[&pair[0]], &models[&pair[1]]);
            (student.hidden_loss.is_some() && !fits(student, teacher))
                .then(|| (pair[1].clone(), pair[0].clone()))
        })
    });
    if let Some((student, teacher)) = misfit {
        problems.push(
            Some(span),
            format!("`models.{student}.hidden-loss` compares its hidden states with `{teacher}`'s, which is not an encoder of its width reading its tokens"),
            Some("hidden-loss needs a `bert`/`distilbert` teacher with the same `hidden` and tokenizer".into()),
        );
    }
}
