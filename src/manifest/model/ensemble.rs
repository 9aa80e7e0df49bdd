//! Ensemble teachers: the average of several trained stages of one model.

use super::ModelSpec;
use super::raw::RawModel;
use crate::manifest::backticked;
use crate::manifest::error::Problems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

/// A teacher that is the average of several trained stages of one model (`[models.<name>]`
/// with `ensemble = "<member model>"` and `seeds`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnsembleSpec {
    /// The members' model.
    pub model: String,
    /// The seeds its members are trained with, one member each.
    pub seeds: Vec<u64>,
    /// How members' outputs are averaged.
    pub combine: Combine,
}

/// How an ensemble averages its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Combine {
    /// The mean of the members' logits (a student at temperature T sees softmax(mean / T)).
    #[default]
    MeanLogits,
    /// The mean of the members' probabilities at the distillation temperature (and at T = 1 for
    /// the ensemble's own accuracy).
    MeanProbabilities,
}

/// Resolves an ensemble model: its members' architecture, seeds and averaging.
pub(super) fn check_ensemble(
    name: &str,
    member: &Spanned<String>,
    m: &RawModel,
    models: &BTreeMap<String, ModelSpec>,
    problems: &mut Problems,
) -> ModelSpec {
    let other_keys = m.has_architecture_or_training() || m.input.is_some() || m.class_map.is_some();
    if other_keys {
        problems.push(
            Some(member.span()),
            format!("`models.{name}` is an ensemble: its members' model `{}` sets the architecture and training", member.get_ref()),
            Some("an ensemble takes `ensemble`, `seeds` and `combine` only".into()),
        );
    }
    let seeds: Vec<u64> = m
        .seeds
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_default();
    let mut unique = seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    if seeds.len() < 2 || unique.len() != seeds.len() {
        problems.push(
            m.seeds.as_ref().map(Spanned::span).or(Some(member.span())),
            format!("`models.{name}.seeds` must list at least two different seeds, one per member"),
            Some("e.g. `seeds = [0, 1, 2]`".into()),
        );
    }
    let spec = match models.get(member.get_ref()) {
        Some(spec) if spec.onnx.is_some() || spec.ensemble.is_some() => {
            problems.push(
                Some(member.span()),
                format!(
                    "`models.{name}.ensemble` names `{}`, which is not trained (an ONNX model or an ensemble): its stages would all be one",
                    member.get_ref()
                ),
                Some("members are trained stages of a model kdgrid trains".into()),
            );
            spec.clone()
        }
        Some(spec) => spec.clone(),
        None => {
            let names: Vec<&str> = models.keys().map(String::as_str).collect();
            problems.push(
                Some(member.span()),
                format!(
                    "`models.{name}.ensemble` names `{}`, which is not a model",
                    member.get_ref()
                ),
                Some(format!(
                    "members are stages of one of: {}",
                    backticked(&names)
                )),
            );
            ModelSpec::plain_cnn(2).expect("size 2 exists")
        }
    };
    ModelSpec {
        family: format!("ensemble of {} {}", seeds.len(), spec.family),
        ensemble: Some(EnsembleSpec {
            model: member.get_ref().clone(),
            seeds,
            combine: m.combine.unwrap_or_default(),
        }),
        ..spec
    }
}
