//! The general `cnn` family (conv layers with optional batch norm and pools, then dense layers)
//! and the `mlp` (dense layers only); the feature-map check that refuses a stack which pools
//! its input to nothing.

use super::cost::{Cost, dense_cost};
use super::raw::RawModel;
use super::{Family, ModelSpec, not_for};
use crate::manifest::error::Problems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

/// How a conv layer pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// `k / 2` zeros on each side: the map keeps its size (PyTorch `padding=k//2`, Keras
    /// `"same"`).
    #[default]
    Same,
    /// No padding: a `k x k` kernel shrinks the map by `k - 1` (PyTorch `padding=0`, Keras
    /// `"valid"`).
    Valid,
}

impl Padding {
    /// Whether this is the default (`same`), which stage ids leave out.
    pub fn is_same(&self) -> bool {
        *self == Padding::Same
    }

    /// Zeros added on each side for a `kernel`-wide kernel.
    pub fn amount(self, kernel: usize) -> usize {
        match self {
            Padding::Same => kernel / 2,
            Padding::Valid => 0,
        }
    }
}

/// `[channels, height, width]` after each conv layer.
pub type FeatureMaps = Vec<[usize; 3]>;

impl ModelSpec {
    /// The feature maps after each conv layer (and its pool) for `[channels, height, width]`
    /// inputs; `Err` names the 1-based conv layer whose kernel (valid padding) or pool finds a
    /// map too small, with the maps up to it.
    pub fn feature_maps(
        &self,
        [_, height, width]: [usize; 3],
    ) -> Result<FeatureMaps, (usize, FeatureMaps)> {
        let (mut h, mut w) = (height, width);
        let mut maps = Vec::new();
        let shrink = self.kernel - 1 - 2 * self.padding.amount(self.kernel);
        for (i, &out) in self.conv.iter().enumerate() {
            if h <= shrink || w <= shrink {
                return Err((i + 1, maps));
            }
            h -= shrink;
            w -= shrink;
            if self.pools_after(i) {
                if h < 2 || w < 2 {
                    return Err((i + 1, maps));
                }
                h /= 2;
                w /= 2;
            }
            maps.push([out, h, w]);
        }
        Ok(maps)
    }
}

/// A `cnn` or `mlp` table's architecture.
pub(super) fn resolve(
    name: &str,
    family: Family,
    m: &RawModel,
    problems: &mut Problems,
) -> ModelSpec {
    let not_for =
        |key: &str, span, problems: &mut Problems| not_for(name, family, key, span, problems);
    not_for("size", m.size.as_ref().map(Spanned::span), problems);
    let conv: Vec<usize> = match (family, &m.conv) {
        (Family::Mlp, c) => {
            not_for("conv", c.as_ref().map(Spanned::span), problems);
            not_for("pool", m.pool.as_ref().map(Spanned::span), problems);
            not_for("kernel", m.kernel.as_ref().map(Spanned::span), problems);
            not_for("padding", m.padding.as_ref().map(Spanned::span), problems);
            if m.batch_norm == Some(true) {
                problems.push(
                    m.family.as_ref().map(Spanned::span),
                    format!("`models.{name}.batch-norm` applies to conv layers; an `mlp` has none"),
                    None,
                );
            }
            Vec::new()
        }
        (_, Some(conv)) if conv.get_ref().is_empty() => {
            problems.push(
                Some(conv.span()),
                format!("`models.{name}.conv` is empty"),
                Some("a CNN needs at least one conv layer; use `family = \"mlp\"` for none".into()),
            );
            Vec::new()
        }
        (_, Some(conv)) => conv.get_ref().iter().map(|c| c.get()).collect(),
        (_, None) => {
            problems.push(
                None,
                format!("`models.{name}.conv` is required for a `cnn`"),
                Some("e.g. `conv = [32, 64]`, or `family = \"mlp\"` with `dense` widths".into()),
            );
            Vec::new()
        }
    };
    let pool = m.pool.as_ref().map(|p| {
        let positions: Vec<usize> = p.get_ref().iter().map(|c| c.get()).collect();
        if let Some(bad) = positions.iter().find(|&&i| i > conv.len()) {
            problems.push(
                Some(p.span()),
                format!(
                    "`models.{name}.pool` names conv layer {bad}, but the model has {}",
                    conv.len()
                ),
                Some("`pool` lists 1-based conv layers followed by a 2x2 max-pool".into()),
            );
        }
        positions
    });
    ModelSpec {
        conv,
        dense: m.dense.iter().map(|c| c.get()).collect(),
        kernel: m.kernel.as_ref().map_or(3, |k| k.get_ref().get()),
        padding: m.padding.as_ref().map_or(Padding::Same, |p| *p.get_ref()),
        pool,
        batch_norm: m.batch_norm.unwrap_or(false),
        ..ModelSpec::bare(if family == Family::Mlp { "mlp" } else { "cnn" })
    }
}

/// The conv stack's cost (see [`super::cost`]).
pub(super) fn cost(spec: &ModelSpec, input: [usize; 3], classes: usize) -> Cost {
    let [channels, height, width] = input;
    let (mut c, mut h, mut w) = (channels as u64, height as u64, width as u64);
    let k = spec.kernel as u64;
    let (mut params, mut flops) = (0u64, 0u64);
    let shrink = k - 1 - 2 * spec.padding.amount(spec.kernel) as u64;
    for (i, &out) in spec.conv.iter().enumerate() {
        let out = out as u64;
        h = h.saturating_sub(shrink);
        w = w.saturating_sub(shrink);
        params += out * c * k * k + out;
        flops += 2 * out * c * k * k * h * w;
        if spec.batch_norm {
            params += 2 * out;
        }
        if spec.pools_after(i) && h >= 2 && w >= 2 {
            h /= 2;
            w /= 2;
        }
        c = out;
    }
    let mut cost = Cost {
        params,
        forward_flops: flops,
    };
    dense_cost(&mut cost, c * h * w, &spec.dense, classes);
    cost
}

/// Refuses models whose pools shrink the input to nothing (a layer asked to pool a map smaller
/// than 2x2): such a network trains silently at chance.
pub(crate) fn check_feature_maps(
    raw: &BTreeMap<Spanned<String>, RawModel>,
    models: &BTreeMap<String, ModelSpec>,
    input: [usize; 3],
    problems: &mut Problems,
) {
    for (name, m) in raw {
        let Some(spec) = models.get(name.get_ref()).filter(|s| s.ensemble.is_none()) else {
            continue;
        };
        if let Err(message) = feature_map_problem(name.get_ref(), spec, input) {
            let span = m
                .pool
                .as_ref()
                .or(m.conv.as_ref())
                .map(Spanned::span)
                .or(m.size.as_ref().map(Spanned::span))
                .unwrap_or(name.span());
            problems.push(
                Some(span),
                message,
                Some("use fewer conv layers or pools, e.g. `pool = [1, 2]` lists the conv layers followed by a pool".into()),
            );
        }
    }
}

/// The message for a model whose pools empty an input of `[channels, height, width]`.
pub fn feature_map_problem(name: &str, spec: &ModelSpec, input: [usize; 3]) -> Result<(), String> {
    let Err((layer, maps)) = spec.feature_maps(input) else {
        return Ok(());
    };
    let path: Vec<String> = std::iter::once(format!("{}x{}", input[1], input[2]))
        .chain(maps.iter().map(|m| format!("{}x{}", m[1], m[2])))
        .collect();
    let last = path.last().expect("the input is first");
    Err(
        if spec.padding == Padding::Valid && maps.len() + 1 == layer && {
            let [h, w] = [
                maps.last().map_or(input[1], |m| m[1]),
                maps.last().map_or(input[2], |m| m[2]),
            ];
            h < spec.kernel || w < spec.kernel
        } {
            format!(
                "`models.{name}`: conv layer {layer}'s {k}x{k} kernel does not fit a {last} feature map without padding ({})",
                path.join(" -> "),
                k = spec.kernel
            )
        } else {
            format!(
                "`models.{name}`: conv layer {layer} would max-pool a {last} feature map to nothing ({})",
                path.join(" -> ")
            )
        },
    )
}
