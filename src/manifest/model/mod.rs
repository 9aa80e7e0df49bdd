//! Model families of `[models.*]`. Every family resolves to one [`ModelSpec`], which is what
//! stage ids see, so two spellings of the same network share their stages.
//!
//! One file per family holds its keys' checks, its resolution and its analytic cost (`cnn` and
//! `mlp`, `plain-cnn`, `resnet`, `mobilenet`, `lstm`, `bert` for `bert` and `distilbert`);
//! `tokenizer` says how a text model reads its text and `distil` what a student encoder takes
//! from its teacher; `ensemble` and `weights` are the two
//! ways a model is made of other trained things, and `onnx` a frozen model from a file; `raw` is
//! the table as serde reads it. A new
//! family is a new file plus a [`Family`] variant and a line in [`check_model`].

mod bert;
mod cnn;
mod cost;
mod distil;
mod ensemble;
mod lstm;
mod mobilenet;
mod onnx;
mod onnx_graph;
mod plain_cnn;
mod raw;
mod resnet;
mod tokenizer;
mod weights;

pub use bert::{BertSpec, Encoder};
pub use cnn::{FeatureMaps, Padding, feature_map_problem};
pub use cost::{Cost, cost};
pub use distil::{HiddenLoss, HiddenLossKind, InitFrom};
pub use ensemble::{Combine, EnsembleSpec};
pub use lstm::LstmSpec;
pub use mobilenet::MOBILENET_V2_STAGES;
pub use onnx::{Layout, OnnxSpec};
pub use onnx_graph::graph_problem;
pub use plain_cnn::{PLAIN_CNN_SIZES, PlainCnnTable};
pub(crate) use raw::RawModel;
pub use resnet::{ResNetSpec, ResNetStem};
pub use tokenizer::TokenizerRef;
pub use weights::ImportedWeights;

pub(crate) use cnn::check_feature_maps;
pub(crate) use onnx_graph::check_graph;

use super::error::Problems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// A network architecture. Conv layers (3x3 by default, same padding) are each followed by
/// batch norm (when on), ReLU, and a 2x2 max-pool where `pool` says; then hidden dense ReLU
/// layers (with dropout after each, when set) and a linear classifier. No conv layers makes an
/// MLP on the flattened image.
///
/// ```toml
/// [models.student]
/// conv = [32, 64]
/// dense = [64]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    /// Output channels of each conv layer.
    pub conv: Vec<usize>,
    /// Widths of hidden dense layers.
    pub dense: Vec<usize>,
    /// Square conv kernel size (odd).
    pub kernel: usize,
    /// Conv padding: `same` (default) keeps the map's size, `valid` shrinks it by `kernel - 1`.
    #[serde(default, skip_serializing_if = "Padding::is_same")]
    pub padding: Padding,
    /// 1-based conv layers followed by a 2x2 max-pool; `None`: every conv layer. A pool that
    /// would find a map smaller than 2x2 is refused when the manifest is checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<Vec<usize>>,
    /// Batch norm after each conv layer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub batch_norm: bool,
    /// Dropout probability after each hidden dense layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// A residual network instead of the conv/dense stack above (which is then empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resnet: Option<ResNetSpec>,
    /// Weights trained elsewhere that the model starts from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<ImportedWeights>,
    /// torchvision's MobileNetV2 (width 1.0) instead of the conv stack.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mobilenet_v2: bool,
    /// A recurrent text classifier instead of the conv stack (`dense` and `dropout` still apply
    /// after it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lstm: Option<LstmSpec>,
    /// An ensemble of this architecture's stages (the fields above are its members').
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleSpec>,
    /// A frozen model in an ONNX file instead of any of the above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onnx: Option<OnnxSpec>,
    /// A transformer encoder (`bert`, `distilbert`) instead of the conv stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bert: Option<BertSpec>,
    /// The Hugging Face tokenizer a text model reads its ids from; `None`: the dataset's word
    /// vocabulary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerRef>,
    /// Weights an encoder starts from: another model's stage's embeddings and layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<InitFrom>,
    /// A loss between the encoder's and its teacher's last hidden states, when distilled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_loss: Option<HiddenLoss>,
    /// Which of a text dataset's tokenizations the model reads (0: words; `n`: the dataset's
    /// `n`-th tokenizer file), set from `[dataset]`; the tokenizer's digest is in the id.
    #[serde(skip)]
    pub view: usize,
    /// How the manifest described it, for tables (`cnn`, `plain-cnn-4`, `mlp`, `resnet-20`).
    #[serde(skip)]
    pub family: String,
}

impl ModelSpec {
    /// A spec with no conv or dense layers, for families that build their own layers.
    pub(super) fn bare(family: impl Into<String>) -> Self {
        Self {
            conv: Vec::new(),
            dense: Vec::new(),
            kernel: 3,
            padding: Padding::Same,
            pool: None,
            batch_norm: false,
            dropout: None,
            resnet: None,
            mobilenet_v2: false,
            lstm: None,
            weights: None,
            ensemble: None,
            onnx: None,
            bert: None,
            tokenizer: None,
            init_from: None,
            hidden_loss: None,
            view: 0,
            family: family.into(),
        }
    }

    /// Whether a 2x2 max-pool follows 0-based conv layer `i` (given a large enough map).
    pub fn pools_after(&self, i: usize) -> bool {
        self.pool.as_ref().is_none_or(|p| p.contains(&(i + 1)))
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
enum Family {
    #[default]
    Cnn,
    PlainCnn,
    Mlp,
    Resnet,
    MobilenetV2,
    Lstm,
    Bert,
    Distilbert,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Cnn => "cnn",
            Family::PlainCnn => "plain-cnn",
            Family::Mlp => "mlp",
            Family::Resnet => "resnet",
            Family::MobilenetV2 => "mobilenet-v2",
            Family::Lstm => "lstm",
            Family::Bert => "bert",
            Family::Distilbert => "distilbert",
        }
    }

    /// A transformer encoder family.
    fn is_encoder(self) -> bool {
        matches!(self, Family::Bert | Family::Distilbert)
    }
}

/// Reports `models.<name>.<key>` (when the table sets it, at `span`) as foreign to `family`.
fn not_for(
    name: &str,
    family: Family,
    key: &str,
    span: Option<Range<usize>>,
    problems: &mut Problems,
) {
    if let Some(span) = span {
        let family = family.name();
        problems.push(
            Some(span),
            format!("`models.{name}.{key}` does not apply to `family = \"{family}\"`"),
            None,
        );
    }
}

/// The file `models.<name>.<key>` names (against the manifest's folder `base`) and the SHA-256
/// of its bytes, which stage ids hold instead of its path; empty when it cannot be read (a
/// problem at the key's line).
fn file_digest(
    name: &str,
    key: &str,
    file: &Spanned<String>,
    base: &Path,
    problems: &mut Problems,
) -> (std::path::PathBuf, String) {
    let path = base.join(file.get_ref());
    let sha256 = match crate::identity::file_sha256(&path) {
        Ok((digest, _)) => digest,
        Err(e) => {
            problems.push(
                Some(file.span()),
                format!(
                    "`models.{name}.{key}`: cannot read `{}`: {e}",
                    path.display()
                ),
                Some("the path is relative to the manifest's folder".into()),
            );
            String::new()
        }
    };
    (path, sha256)
}

/// Resolves one `[models.<name>]` table to its architecture: the checks every family shares,
/// then the family's own.
pub(crate) fn check_model(
    name: &str,
    m: &RawModel,
    base: &Path,
    table: PlainCnnTable,
    problems: &mut Problems,
) -> ModelSpec {
    let family = m.family.as_ref().map_or(Family::Cnn, |f| *f.get_ref());
    let kernel = m.kernel.as_ref().map_or(3, |k| k.get_ref().get());
    if kernel.is_multiple_of(2) {
        problems.push(
            m.kernel.as_ref().map(Spanned::span),
            format!("`models.{name}.kernel` must be odd, found {kernel}"),
            None,
        );
    }
    if family != Family::Lstm {
        not_for(
            name,
            family,
            "embedding",
            m.embedding.as_ref().map(Spanned::span),
            problems,
        );
    }
    if family != Family::Lstm && !family.is_encoder() {
        not_for(
            name,
            family,
            "hidden",
            m.hidden.as_ref().map(Spanned::span),
            problems,
        );
    }
    if !family.is_encoder() {
        for (key, span) in [
            ("layers", m.layers.as_ref().map(Spanned::span)),
            ("heads", m.heads.as_ref().map(Spanned::span)),
            ("intermediate", m.intermediate.as_ref().map(Spanned::span)),
        ] {
            not_for(name, family, key, span, problems);
        }
    }
    // Families that build their own layers take none of the conv stack's keys.
    if family != Family::Cnn && family != Family::Mlp {
        for (key, span) in [
            ("conv", m.conv.as_ref().map(Spanned::span)),
            ("pool", m.pool.as_ref().map(Spanned::span)),
            ("kernel", m.kernel.as_ref().map(Spanned::span)),
            ("padding", m.padding.as_ref().map(Spanned::span)),
        ] {
            not_for(name, family, key, span, problems);
        }
    }
    if matches!(family, Family::MobilenetV2 | Family::Lstm) || family.is_encoder() {
        not_for(
            name,
            family,
            "size",
            m.size.as_ref().map(Spanned::span),
            problems,
        );
    }
    if (matches!(family, Family::Resnet | Family::MobilenetV2) || family.is_encoder())
        && (!m.dense.is_empty() || m.batch_norm.is_some())
    {
        problems.push(
            m.family.as_ref().map(Spanned::span),
            format!(
                "`models.{name}`: `dense` and `batch-norm` do not apply to `family = \"{}\"` ({})",
                family.name(),
                if family.is_encoder() {
                    "its layers normalize themselves; its head is fixed by its Hugging Face class"
                } else {
                    "its blocks always use batch norm; its classifier is its only dense layer"
                }
            ),
            None,
        );
    }
    let tokenizer = tokenizer::check_tokenizer(name, family, m, base, problems);
    let mut spec = match family {
        Family::Bert | Family::Distilbert => {
            bert::resolve(name, family, m, base, tokenizer.as_ref(), problems)
        }
        Family::MobilenetV2 => mobilenet::resolve(),
        Family::Lstm => lstm::resolve(name, m, problems),
        Family::Resnet => resnet::resolve(name, m, problems),
        Family::PlainCnn => plain_cnn::resolve(name, m, table, problems),
        Family::Cnn | Family::Mlp => cnn::resolve(name, family, m, problems),
    };
    if let Some(d) = &m.dropout
        && spec.dense.is_empty()
        && !spec.mobilenet_v2
        && spec.bert.is_none()
    {
        problems.push(
            Some(d.span()),
            format!("`models.{name}.dropout` needs a hidden dense layer to act on"),
            Some("add `dense = [..]` widths, or remove `dropout`".into()),
        );
    }
    spec.dropout = m
        .dropout
        .as_ref()
        .map(|d| d.get_ref().get())
        .filter(|&p| p > 0.0);
    spec.weights = weights::check_weights(name, m, base, problems);
    spec.tokenizer = tokenizer.map(|(t, _, _)| t);
    spec
}

/// Checks every `[models.*]` table.
pub(crate) fn check_models(
    raw: &BTreeMap<Spanned<String>, RawModel>,
    base: &Path,
    table: PlainCnnTable,
    problems: &mut Problems,
) -> BTreeMap<String, ModelSpec> {
    let mut models = BTreeMap::new();
    for (name, m) in raw {
        if let Some(c) = name.get_ref().chars().find(|c| c.is_control() || *c == '>') {
            problems.push(
                Some(name.span()),
                format!(
                    "model name {:?} holds {c:?}; names may not hold control characters or `>`",
                    name.get_ref()
                ),
                Some("`>` separates the models of a chain in tables and reports".into()),
            );
        }
        if name.get_ref().starts_with('@') {
            problems.push(
                Some(name.span()),
                format!("model name `{}` must not start with `@`", name.get_ref()),
                Some("`@` marks role placeholders in chains".into()),
            );
        }
        if let Some(file) = &m.onnx {
            let spec = onnx::check_onnx(name.get_ref(), file, m, base, problems);
            models.insert(name.get_ref().clone(), spec);
        } else if m.ensemble.is_none() {
            for (key, span) in [
                ("input", m.input.as_ref().map(Spanned::span)),
                ("class-map", m.class_map.as_ref().map(Spanned::span)),
                ("output", m.output.as_ref().map(Spanned::span)),
                ("scores", m.scores.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    problems.push(
                        Some(span),
                        format!(
                            "`models.{name}.{key}` applies to ONNX models only",
                            name = name.get_ref()
                        ),
                        Some("add `onnx = \"path/to/model.onnx\"`".into()),
                    );
                }
            }
            models.insert(
                name.get_ref().clone(),
                check_model(name.get_ref(), m, base, table, problems),
            );
        }
    }
    for (name, m) in raw {
        if let Some(member) = m.ensemble.as_ref().filter(|_| m.onnx.is_none()) {
            let spec = ensemble::check_ensemble(name.get_ref(), member, m, &models, problems);
            models.insert(name.get_ref().clone(), spec);
        }
    }
    distil::check_links(raw, &mut models, problems);
    models
}
