//! Model families of `[models.*]`: a general `cnn`, the TAKD paper's `plain-cnn` sizes, and an
//! `mlp`. Every family resolves to one [`ModelSpec`], which is what stage ids see, so two
//! spellings of the same network share their stages.

mod cost;

pub use cost::{Cost, cost};

use super::error::Problems;
use super::values::{Count, Fraction, Positive};
use super::{TrainingOverride, backticked};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
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
    /// How the manifest described it, for tables (`cnn`, `plain-cnn-4`, `mlp`, `resnet-20`).
    #[serde(skip)]
    pub family: String,
}

/// torchvision's MobileNetV2 stages: expansion `t`, output channels `c`, repeats `n`, first
/// stride `s`.
pub const MOBILENET_V2_STAGES: [[usize; 4]; 7] = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
];

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

/// A ResNet of basic blocks (He et al. 2016), as torchvision and the TAKD paper's code build it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResNetSpec {
    /// Basic blocks in each stage.
    pub blocks: Vec<usize>,
    /// Channels of each stage.
    pub widths: Vec<usize>,
    /// The layers before the first stage.
    pub stem: ResNetStem,
}

/// The first layers of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetStem {
    /// A 3x3 conv at full resolution (CIFAR ResNets: depth `6n + 2`).
    Cifar,
    /// A 7x7 stride-2 conv and a 3x3 stride-2 max-pool (ImageNet ResNet-18/34).
    Imagenet,
}

impl ResNetSpec {
    /// ResNet of `depth` layers: `6n + 2` for the CIFAR family (20, 56, 110, ...), 18 or 34
    /// for the ImageNet family.
    pub fn of_depth(depth: usize) -> Option<Self> {
        let (blocks, widths, stem) = match depth {
            18 => (vec![2; 4], vec![64, 128, 256, 512], ResNetStem::Imagenet),
            34 => (
                vec![3, 4, 6, 3],
                vec![64, 128, 256, 512],
                ResNetStem::Imagenet,
            ),
            d if d >= 8 && (d - 2) % 6 == 0 => {
                (vec![(d - 2) / 6; 3], vec![16, 32, 64], ResNetStem::Cifar)
            }
            _ => return None,
        };
        Some(Self {
            blocks,
            widths,
            stem,
        })
    }
}

/// A weights file a model is loaded from (see [`RawModel`]'s `weights`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportedWeights {
    /// The file (resolved against the manifest's folder); its digest, not its path, is part
    /// of stage ids.
    #[serde(skip)]
    pub path: std::path::PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Renames applied to the file's tensor names: (regex, replacement), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_map: Vec<(String, String)>,
    /// Whether the model trains further (`fine-tune`), which lets a classifier of another
    /// class count be replaced; without it the model is used as it is.
    pub fine_tune: bool,
}

impl ModelSpec {
    /// A spec with no conv or dense layers, for families that build their own layers.
    fn bare(family: impl Into<String>) -> Self {
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
            family: family.into(),
        }
    }

    /// Whether a 2x2 max-pool follows 0-based conv layer `i` (given a large enough map).
    pub fn pools_after(&self, i: usize) -> bool {
        self.pool.as_ref().is_none_or(|p| p.contains(&(i + 1)))
    }

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

    /// The TAKD paper's plain CNN of `size` conv layers (2, 4, 6, 8 or 10), with batch norm,
    /// from its CIFAR-10 table.
    pub fn plain_cnn(size: usize) -> Option<Self> {
        Self::plain_cnn_in(size, PlainCnnTable::Cifar10)
    }

    /// The TAKD paper's plain CNN of `size` conv layers from one of its two width tables
    /// (`plane_cifar10_book` and `plane_cifar100_book` in the paper's `model_factory.py`).
    pub fn plain_cnn_in(size: usize, table: PlainCnnTable) -> Option<Self> {
        let (conv, pool, dense): (&[usize], &[usize], &[usize]) = match (table, size) {
            (PlainCnnTable::Cifar10, 2) => (&[16, 16], &[1, 2], &[]),
            (PlainCnnTable::Cifar10, 4) => (&[16, 16, 32, 32], &[2, 4], &[]),
            (PlainCnnTable::Cifar10, 6) => (&[16, 16, 32, 32, 64, 64], &[2, 4, 6], &[]),
            (PlainCnnTable::Cifar10, 8) => {
                (&[16, 16, 32, 32, 64, 64, 128, 128], &[2, 4, 6, 8], &[64])
            }
            (PlainCnnTable::Cifar10, 10) => (
                &[32, 32, 64, 64, 128, 128, 256, 256, 256, 256],
                &[2, 4, 6, 10],
                &[128],
            ),
            (PlainCnnTable::Cifar100, 2) => (&[32, 32], &[1, 2], &[]),
            (PlainCnnTable::Cifar100, 4) => (&[32, 32, 64, 64], &[2, 4], &[]),
            // No pooling after the last pair, as in the paper's code.
            (PlainCnnTable::Cifar100, 6) => (&[32, 32, 64, 64, 128, 128], &[2, 4], &[]),
            (PlainCnnTable::Cifar100, 8) => {
                (&[32, 32, 64, 64, 128, 128, 256, 256], &[2, 4, 6, 8], &[64])
            }
            (PlainCnnTable::Cifar100, 10) => (
                &[32, 32, 64, 64, 128, 128, 256, 256, 256, 256],
                &[2, 4, 6, 10],
                &[512],
            ),
            _ => return None,
        };
        Some(Self {
            conv: conv.to_vec(),
            dense: dense.to_vec(),
            kernel: 3,
            padding: Padding::Same,
            pool: Some(pool.to_vec()),
            batch_norm: true,
            dropout: None,
            resnet: None,
            lstm: None,
            mobilenet_v2: false,
            weights: None,
            ensemble: None,
            family: format!("plain-cnn-{size}"),
        })
    }
}

/// Which of the TAKD paper's plain-CNN width tables a study uses: its code takes the CIFAR-100
/// table (wider layers, FC512 in size 10) for CIFAR-100 and the CIFAR-10 one otherwise, and so
/// does kdgrid, by dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainCnnTable {
    /// `plane_cifar10_book`: every dataset but CIFAR-100.
    Cifar10,
    /// `plane_cifar100_book`: `kind = "cifar100"`.
    Cifar100,
}

/// `[channels, height, width]` after each conv layer.
pub type FeatureMaps = Vec<[usize; 3]>;

/// Sizes of the `plain-cnn` family.
pub const PLAIN_CNN_SIZES: [usize; 5] = [2, 4, 6, 8, 10];

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
        }
    }
}

/// `fine-tune = { epochs = .., lr = .. }` of an imported model.
#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct FineTune {
    epochs: Count,
    lr: Option<Positive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawModel {
    family: Option<Spanned<Family>>,
    size: Option<Spanned<Count>>,
    conv: Option<Spanned<Vec<Count>>>,
    #[serde(default)]
    dense: Vec<Count>,
    kernel: Option<Spanned<Count>>,
    padding: Option<Spanned<Padding>>,
    pool: Option<Spanned<Vec<Count>>>,
    batch_norm: Option<bool>,
    dropout: Option<Spanned<Fraction>>,
    epochs: Option<Count>,
    lr: Option<Positive>,
    batch_size: Option<Count>,
    weight_decay: Option<Fraction>,
    betas: Option<[Fraction; 2]>,
    epsilon: Option<Positive>,
    weights: Option<Spanned<String>>,
    key_map: Option<Spanned<Vec<[String; 2]>>>,
    fine_tune: Option<Spanned<FineTune>>,
    ensemble: Option<Spanned<String>>,
    seeds: Option<Spanned<Vec<u64>>>,
    combine: Option<Combine>,
    embedding: Option<Spanned<Count>>,
    hidden: Option<Spanned<Vec<Count>>>,
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
        }
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

/// Resolves one `[models.<name>]` table to its architecture.
pub(crate) fn check_model(
    name: &str,
    m: &RawModel,
    base: &Path,
    table: PlainCnnTable,
    problems: &mut Problems,
) -> ModelSpec {
    let family = m.family.as_ref().map_or(Family::Cnn, |f| *f.get_ref());
    let family_span = m.family.as_ref().map(Spanned::span);
    let not_for = |key: &str, span: Option<std::ops::Range<usize>>, problems: &mut Problems| {
        if let Some(span) = span {
            let family = family.name();
            problems.push(
                Some(span),
                format!("`models.{name}.{key}` does not apply to `family = \"{family}\"`"),
                None,
            );
        }
    };
    let kernel = m.kernel.as_ref().map_or(3, |k| k.get_ref().get());
    if kernel.is_multiple_of(2) {
        problems.push(
            m.kernel.as_ref().map(Spanned::span),
            format!("`models.{name}.kernel` must be odd, found {kernel}"),
            None,
        );
    }
    let dense: Vec<usize> = m.dense.iter().map(|c| c.get()).collect();
    let dropout = m.dropout.as_ref().map(|d| d.get_ref().get());
    if family != Family::Lstm {
        for (key, span) in [
            ("embedding", m.embedding.as_ref().map(Spanned::span)),
            ("hidden", m.hidden.as_ref().map(Spanned::span)),
        ] {
            not_for(key, span, problems);
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
            not_for(key, span, problems);
        }
    }
    if matches!(family, Family::MobilenetV2 | Family::Lstm) {
        not_for("size", m.size.as_ref().map(Spanned::span), problems);
    }
    if matches!(family, Family::Resnet | Family::MobilenetV2)
        && (!m.dense.is_empty() || m.batch_norm.is_some())
    {
        problems.push(
            family_span.clone(),
            format!(
                "`models.{name}`: `dense` and `batch-norm` do not apply to `family = \"{}\"` (its blocks always use batch norm; its classifier is its only dense layer)",
                family.name()
            ),
            None,
        );
    }
    let mut spec = match family {
        Family::MobilenetV2 => ModelSpec {
            batch_norm: true,
            mobilenet_v2: true,
            ..ModelSpec::bare("mobilenet-v2")
        },
        Family::Lstm => {
            let hidden: Vec<usize> = match &m.hidden {
                Some(h) if !h.get_ref().is_empty() => h.get_ref().iter().map(|c| c.get()).collect(),
                h => {
                    problems.push(
                        h.as_ref().map(Spanned::span).or(family_span.clone()),
                        format!("`models.{name}.hidden` (the LSTM layers' widths) is required for `lstm`"),
                        Some("e.g. `hidden = [128]`, or `[128, 128]` for two stacked layers".into()),
                    );
                    vec![1]
                }
            };
            ModelSpec {
                dense: dense.clone(),
                lstm: Some(LstmSpec {
                    embedding: m.embedding.as_ref().map_or(64, |e| e.get_ref().get()),
                    hidden,
                    vocab: 0,
                }),
                ..ModelSpec::bare("lstm")
            }
        }
        Family::Resnet => {
            let size = m.size.as_ref().map(|s| s.get_ref().get());
            let resnet = size.and_then(ResNetSpec::of_depth);
            if resnet.is_none() {
                problems.push(
                    m.size.as_ref().map(Spanned::span).or(family_span.clone()),
                    match size {
                        Some(s) => format!("`models.{name}.size` = {s} is not a ResNet depth"),
                        None => format!("`models.{name}.size` (the depth) is required for `resnet`"),
                    },
                    Some("CIFAR ResNets have depth 6n + 2 (20, 32, 44, 56, 110); ImageNet ones 18 or 34".into()),
                );
            }
            ModelSpec {
                batch_norm: true,
                resnet: Some(
                    resnet.unwrap_or_else(|| ResNetSpec::of_depth(20).expect("20 = 6 * 3 + 2")),
                ),
                ..ModelSpec::bare(format!("resnet-{}", size.unwrap_or(20)))
            }
        }
        Family::PlainCnn => {
            let size = m.size.as_ref().map(|s| s.get_ref().get());
            let spec = size.and_then(|s| ModelSpec::plain_cnn_in(s, table));
            if spec.is_none() {
                problems.push(
                    m.size.as_ref().map(Spanned::span).or(family_span.clone()),
                    match size {
                        Some(s) => format!("`models.{name}.size` = {s} is not a plain-cnn size"),
                        None => format!("`models.{name}.size` is required for `plain-cnn`"),
                    },
                    Some(format!(
                        "sizes: {}",
                        backticked(&PLAIN_CNN_SIZES.map(|s| s.to_string()))
                    )),
                );
            }
            let mut spec = spec.unwrap_or_else(|| ModelSpec::plain_cnn(2).expect("size 2 exists"));
            if !m.dense.is_empty() {
                spec.dense = dense.clone();
            }
            spec.batch_norm = m.batch_norm.unwrap_or(true);
            spec
        }
        Family::Cnn | Family::Mlp => {
            not_for("size", m.size.as_ref().map(Spanned::span), problems);
            let conv: Vec<usize> = match (family, &m.conv) {
                (Family::Mlp, c) => {
                    not_for("conv", c.as_ref().map(Spanned::span), problems);
                    not_for("pool", m.pool.as_ref().map(Spanned::span), problems);
                    not_for("kernel", m.kernel.as_ref().map(Spanned::span), problems);
                    not_for("padding", m.padding.as_ref().map(Spanned::span), problems);
                    if m.batch_norm == Some(true) {
                        problems.push(
                            family_span.clone(),
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
                        Some(
                            "a CNN needs at least one conv layer; use `family = \"mlp\"` for none"
                                .into(),
                        ),
                    );
                    Vec::new()
                }
                (_, Some(conv)) => conv.get_ref().iter().map(|c| c.get()).collect(),
                (_, None) => {
                    problems.push(
                        None,
                        format!("`models.{name}.conv` is required for a `cnn`"),
                        Some(
                            "e.g. `conv = [32, 64]`, or `family = \"mlp\"` with `dense` widths"
                                .into(),
                        ),
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
                family: if family == Family::Mlp { "mlp" } else { "cnn" }.into(),
                conv,
                dense: dense.clone(),
                kernel,
                padding: m.padding.as_ref().map_or(Padding::Same, |p| *p.get_ref()),
                pool,
                batch_norm: m.batch_norm.unwrap_or(false),
                dropout: None,
                resnet: None,
                lstm: None,
                mobilenet_v2: false,
                weights: None,
                ensemble: None,
            }
        }
    };
    if let Some(d) = &m.dropout
        && spec.dense.is_empty()
        && !spec.mobilenet_v2
    {
        problems.push(
            Some(d.span()),
            format!("`models.{name}.dropout` needs a hidden dense layer to act on"),
            Some("add `dense = [..]` widths, or remove `dropout`".into()),
        );
    }
    spec.dropout = dropout.filter(|&p| p > 0.0);
    spec.weights = check_weights(name, m, base, problems);
    spec
}

/// Resolves `weights`, `key-map` and `fine-tune` of an imported model.
fn check_weights(
    name: &str,
    m: &RawModel,
    base: &Path,
    problems: &mut Problems,
) -> Option<ImportedWeights> {
    let Some(weights) = &m.weights else {
        for (key, span) in [
            ("key-map", m.key_map.as_ref().map(Spanned::span)),
            ("fine-tune", m.fine_tune.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                problems.push(
                    Some(span),
                    format!("`models.{name}.{key}` applies to imported models only"),
                    Some("add `weights = \"path/to/file.safetensors\"`".into()),
                );
            }
        }
        return None;
    };
    if m.family
        .as_ref()
        .is_some_and(|f| *f.get_ref() == Family::Lstm)
    {
        problems.push(
            Some(weights.span()),
            format!("`models.{name}.weights`: `lstm` models cannot be imported (yet)"),
            Some("import image families (`cnn`, `plain-cnn`, `mlp`, `resnet`, `mobilenet-v2`), or train the LSTM here".into()),
        );
        return None;
    }
    if m.epochs.is_some() || m.lr.is_some() {
        problems.push(
            Some(weights.span()),
            format!("`models.{name}` is imported: its `epochs` and `lr` go in `fine-tune`"),
            Some("`fine-tune = { epochs = 2, lr = 0.001 }` trains it further; without it the model is used as it is".into()),
        );
    }
    let key_map: Vec<(String, String)> = m
        .key_map
        .as_ref()
        .map(|k| {
            k.get_ref()
                .iter()
                .map(|[a, b]| (a.clone(), b.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (from, _) in &key_map {
        if let Err(e) = regex::Regex::new(from) {
            problems.push(
                m.key_map.as_ref().map(Spanned::span),
                format!("`models.{name}.key-map`: `{from}` is not a regular expression: {e}"),
                None,
            );
        }
    }
    let path = base.join(weights.get_ref());
    let sha256 = match std::fs::read(&path) {
        Ok(bytes) => hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        Err(e) => {
            problems.push(
                Some(weights.span()),
                format!(
                    "`models.{name}.weights`: cannot read `{}`: {e}",
                    path.display()
                ),
                Some("the path is relative to the manifest's folder".into()),
            );
            String::new()
        }
    };
    Some(ImportedWeights {
        path,
        sha256,
        key_map,
        fine_tune: m.fine_tune.is_some(),
    })
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
        if m.ensemble.is_none() {
            models.insert(
                name.get_ref().clone(),
                check_model(name.get_ref(), m, base, table, problems),
            );
        }
    }
    for (name, m) in raw {
        if let Some(member) = &m.ensemble {
            let spec = check_ensemble(name.get_ref(), member, m, &models, problems);
            models.insert(name.get_ref().clone(), spec);
        }
    }
    models
}

/// Resolves an ensemble model: its members' architecture, seeds and averaging.
fn check_ensemble(
    name: &str,
    member: &Spanned<String>,
    m: &RawModel,
    models: &BTreeMap<String, ModelSpec>,
    problems: &mut Problems,
) -> ModelSpec {
    let other_keys = m.family.is_some()
        || m.embedding.is_some()
        || m.hidden.is_some()
        || m.size.is_some()
        || m.conv.is_some()
        || !m.dense.is_empty()
        || m.kernel.is_some()
        || m.padding.is_some()
        || m.pool.is_some()
        || m.batch_norm.is_some()
        || m.dropout.is_some()
        || m.weights.is_some()
        || m.overrides().is_some();
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
