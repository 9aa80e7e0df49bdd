//! The manifest: one TOML file declaring a whole study (first phase of
//! manifest → plan → train → store → report).
//!
//! [`load`] reads the file into serde "wire" shapes (`Raw*`, with spans), checks every
//! cross-field rule, reports all problems at once with file, line and column, and returns a
//! validated [`Manifest`]. Nothing here touches tensors or the results folder.

mod error;
mod values;

pub use error::{ManifestError, Problem};
pub use values::{Alpha, Count, Fraction, Positive, Temperature};

use error::Problems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where the manifest was read from.
    pub path: PathBuf,
    /// Experiment name; results go to `results/<name>/`.
    pub name: String,
    /// Free text shown by `kdgrid plan`.
    pub description: Option<String>,
    /// The dataset every stage trains and tests on.
    pub dataset: DatasetSpec,
    /// Named model architectures.
    pub models: BTreeMap<String, ModelSpec>,
    /// Training settings shared by every stage.
    pub training: TrainingSpec,
    /// Grid axes and distillation chains.
    pub grid: Grid,
}

/// Which data a study uses. Relative paths are resolved against the manifest's folder.
///
/// ```toml
/// [dataset]
/// kind = "fashion-mnist"
/// path = "../data/fashion-mnist"
/// train-limit = 20000
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DatasetSpec {
    /// IDX files (`train-images-idx3-ubyte[.gz]`, ...) such as Fashion-MNIST or MNIST.
    Idx {
        /// Dataset name (`fashion-mnist`, `mnist`), part of stage ids.
        name: String,
        /// Folder with the IDX files; not part of stage ids, so data may move.
        #[serde(skip)]
        path: PathBuf,
        /// Use only the first N training images.
        train_limit: Option<usize>,
        /// Use only the first N test images.
        test_limit: Option<usize>,
    },
    /// Seeded synthetic images: noisy class prototypes, for tests and demos.
    Synthetic(SyntheticSpec),
}

/// Parameters of the synthetic dataset.
///
/// ```toml
/// [dataset]
/// kind = "synthetic"
/// seed = 7
/// classes = 4
/// train-size = 512
/// test-size = 256
/// image-size = 12
/// noise = 0.6
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyntheticSpec {
    /// Seed of the generator.
    pub seed: u64,
    /// Number of classes.
    pub classes: usize,
    /// Training images.
    pub train_size: usize,
    /// Test images.
    pub test_size: usize,
    /// Square image side in pixels.
    pub image_size: usize,
    /// Channels per image.
    pub channels: usize,
    /// Pixel noise relative to the prototype contrast, in [0, 1).
    pub noise: f64,
}

/// A CNN architecture: 3x3 conv + ReLU + 2x2 max-pool per entry of `conv`, then dense ReLU
/// layers of `dense` widths, then a linear classifier.
///
/// ```toml
/// [models.student]
/// conv = [32, 64]
/// dense = [64]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSpec {
    /// Output channels of each conv layer.
    pub conv: Vec<usize>,
    /// Widths of hidden dense layers.
    pub dense: Vec<usize>,
    /// Square conv kernel size (odd; padding keeps the spatial size).
    pub kernel: usize,
}

/// Optimizer choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam (Kingma & Ba).
    Adam,
    /// Stochastic gradient descent, optionally with momentum.
    Sgd,
}

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
    /// L2 weight decay.
    pub weight_decay: Option<f64>,
}

/// Grid axes and chain templates.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Seeds; each drives weight init and data order of every stage of a cell.
    pub seeds: Vec<u64>,
    /// Distillation temperatures (only for stages with a teacher).
    pub temperatures: Vec<f64>,
    /// Distillation weights (only for stages with a teacher).
    pub alphas: Vec<f64>,
    /// Values of the role axes `@teacher`, `@assistant`, `@student`.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Chains of model names or `@role` placeholders, teacher first, student last.
    pub chains: Vec<Vec<String>>,
}

/// Role axes that chains may refer to as `@name`.
pub const ROLE_AXES: [&str; 3] = ["teacher", "assistant", "student"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    name: Spanned<String>,
    description: Option<String>,
    dataset: Spanned<RawDataset>,
    models: Spanned<BTreeMap<Spanned<String>, RawModel>>,
    training: RawTraining,
    grid: Spanned<RawGrid>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum DatasetKind {
    FashionMnist,
    Mnist,
    Synthetic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDataset {
    kind: Spanned<DatasetKind>,
    path: Option<Spanned<String>>,
    train_limit: Option<Count>,
    test_limit: Option<Count>,
    seed: Option<Spanned<u64>>,
    classes: Option<Spanned<Count>>,
    train_size: Option<Spanned<Count>>,
    test_size: Option<Spanned<Count>>,
    image_size: Option<Spanned<Count>>,
    channels: Option<Spanned<Count>>,
    noise: Option<Spanned<Fraction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawModel {
    conv: Spanned<Vec<Count>>,
    #[serde(default)]
    dense: Vec<Count>,
    kernel: Option<Spanned<Count>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTraining {
    epochs: Count,
    batch_size: Count,
    optimizer: Optimizer,
    lr: Positive,
    momentum: Option<Fraction>,
    weight_decay: Option<Fraction>,
}

type Names = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGrid {
    seed: Spanned<Vec<u64>>,
    #[serde(default)]
    temperature: Option<Spanned<Vec<Temperature>>>,
    #[serde(default)]
    alpha: Option<Spanned<Vec<Alpha>>>,
    teacher: Option<Names>,
    assistant: Option<Names>,
    student: Option<Names>,
    chains: Spanned<Vec<Names>>,
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validates manifest `text`; `path` names it in messages and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let mut problems = Problems::new(path, text);
    let raw: RawManifest = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let message = e.message().trim().to_string();
            let help = did_you_mean(&message);
            problems.push(e.span(), message, help);
            return Err(problems.finish().unwrap_err());
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let manifest = check(raw, path, base, &mut problems);
    problems.finish()?;
    Ok(manifest.expect("no problems means a manifest was built"))
}

fn check(raw: RawManifest, path: &Path, base: &Path, problems: &mut Problems) -> Option<Manifest> {
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        problems.push(
            Some(raw.name.span()),
            "`name` must be a non-empty folder name of letters, digits, `-`, `_` or `.`",
            None,
        );
    }
    let dataset = check_dataset(&raw.dataset, base, problems);
    let models = check_models(&raw.models, problems);
    let training = TrainingSpec {
        epochs: raw.training.epochs.get(),
        batch_size: raw.training.batch_size.get(),
        optimizer: raw.training.optimizer,
        lr: raw.training.lr.get(),
        momentum: raw.training.momentum.map(Fraction::get),
        weight_decay: raw.training.weight_decay.map(Fraction::get),
    };
    let grid = check_grid(&raw.grid, &models, problems);
    if !problems.is_empty() {
        return None;
    }
    Some(Manifest {
        path: path.to_path_buf(),
        name,
        description: raw.description,
        dataset: dataset?,
        models,
        training,
        grid: grid?,
    })
}

fn check_dataset(
    raw: &Spanned<RawDataset>,
    base: &Path,
    problems: &mut Problems,
) -> Option<DatasetSpec> {
    let d = raw.get_ref();
    let synthetic_keys: [(&str, Option<Range<usize>>); 7] = [
        ("seed", d.seed.as_ref().map(Spanned::span)),
        ("classes", d.classes.as_ref().map(Spanned::span)),
        ("train-size", d.train_size.as_ref().map(Spanned::span)),
        ("test-size", d.test_size.as_ref().map(Spanned::span)),
        ("image-size", d.image_size.as_ref().map(Spanned::span)),
        ("channels", d.channels.as_ref().map(Spanned::span)),
        ("noise", d.noise.as_ref().map(Spanned::span)),
    ];
    match d.kind.get_ref() {
        kind @ (DatasetKind::FashionMnist | DatasetKind::Mnist) => {
            for (key, span) in synthetic_keys {
                if let Some(span) = span {
                    problems.push(
                        Some(span),
                        format!("`dataset.{key}` applies only to `kind = \"synthetic\"`"),
                        None,
                    );
                }
            }
            let Some(path) = &d.path else {
                problems.push(
                    Some(raw.span()),
                    "`dataset.path` is required for IDX datasets",
                    Some("point it at the folder holding `train-images-idx3-ubyte.gz` and friends, relative to the manifest".into()),
                );
                return None;
            };
            Some(DatasetSpec::Idx {
                name: if *kind == DatasetKind::Mnist {
                    "mnist"
                } else {
                    "fashion-mnist"
                }
                .into(),
                path: base.join(path.get_ref()),
                train_limit: d.train_limit.map(Count::get),
                test_limit: d.test_limit.map(Count::get),
            })
        }
        DatasetKind::Synthetic => {
            if let Some(path) = &d.path {
                problems.push(
                    Some(path.span()),
                    "`dataset.path` does not apply to `kind = \"synthetic\"`",
                    None,
                );
            }
            let count = |v: &Option<Spanned<Count>>, default: usize| {
                v.as_ref().map_or(default, |c| c.get_ref().get())
            };
            let image_size = count(&d.image_size, 12);
            if image_size < 4 {
                problems.push(
                    d.image_size.as_ref().map(Spanned::span),
                    "`dataset.image-size` must be at least 4",
                    None,
                );
            }
            let classes = count(&d.classes, 4);
            if !(2..=256).contains(&classes) {
                problems.push(
                    d.classes.as_ref().map(Spanned::span),
                    "`dataset.classes` must be within [2, 256]",
                    None,
                );
            }
            Some(DatasetSpec::Synthetic(SyntheticSpec {
                seed: d.seed.as_ref().map_or(0, |s| *s.get_ref()),
                classes,
                train_size: count(&d.train_size, 512),
                test_size: count(&d.test_size, 256),
                image_size,
                channels: count(&d.channels, 1),
                noise: d.noise.as_ref().map_or(0.5, |n| n.get_ref().get()),
            }))
        }
    }
}

fn check_models(
    raw: &Spanned<BTreeMap<Spanned<String>, RawModel>>,
    problems: &mut Problems,
) -> BTreeMap<String, ModelSpec> {
    if raw.get_ref().is_empty() {
        problems.push(
            Some(raw.span()),
            "`models` is empty",
            Some(
                "declare at least one model, e.g. `[models.student]` with `conv = [32, 64]`".into(),
            ),
        );
    }
    let mut models = BTreeMap::new();
    for (name, m) in raw.get_ref() {
        if name.get_ref().starts_with('@') {
            problems.push(
                Some(name.span()),
                format!("model name `{}` must not start with `@`", name.get_ref()),
                Some("`@` marks role placeholders in chains".into()),
            );
        }
        if m.conv.get_ref().is_empty() {
            problems.push(
                Some(m.conv.span()),
                format!("`models.{}.conv` is empty", name.get_ref()),
                Some("a CNN needs at least one conv layer".into()),
            );
        }
        let kernel = m.kernel.as_ref().map_or(3, |k| k.get_ref().get());
        if kernel % 2 == 0 {
            problems.push(
                m.kernel.as_ref().map(Spanned::span),
                format!(
                    "`models.{}.kernel` must be odd, found {kernel}",
                    name.get_ref()
                ),
                None,
            );
        }
        models.insert(
            name.get_ref().clone(),
            ModelSpec {
                conv: m.conv.get_ref().iter().map(|c| c.get()).collect(),
                dense: m.dense.iter().map(|c| c.get()).collect(),
                kernel,
            },
        );
    }
    models
}

fn check_grid(
    raw: &Spanned<RawGrid>,
    models: &BTreeMap<String, ModelSpec>,
    problems: &mut Problems,
) -> Option<Grid> {
    let g = raw.get_ref();
    if g.seed.get_ref().is_empty() {
        problems.push(Some(g.seed.span()), "`grid.seed` is empty", None);
    }
    let mut seeds = g.seed.get_ref().clone();
    seeds.sort_unstable();
    seeds.dedup();

    let model_names: Vec<&str> = models.keys().map(String::as_str).collect();
    let check_name = |name: &Spanned<String>, problems: &mut Problems| {
        if !models.contains_key(name.get_ref()) {
            problems.push(
                Some(name.span()),
                format!("undefined model `{}`", name.get_ref()),
                suggest(name.get_ref(), &model_names)
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some(format!("defined models: {}", backticked(&model_names)))),
            );
        }
    };

    let mut roles = BTreeMap::new();
    for (role, axis) in [
        ("teacher", &g.teacher),
        ("assistant", &g.assistant),
        ("student", &g.student),
    ] {
        if let Some(axis) = axis {
            if axis.get_ref().is_empty() {
                problems.push(Some(axis.span()), format!("`grid.{role}` is empty"), None);
            }
            for name in axis.get_ref() {
                check_name(name, problems);
            }
            roles.insert(
                role.to_string(),
                axis.get_ref().iter().map(|n| n.get_ref().clone()).collect(),
            );
        }
    }

    if g.chains.get_ref().is_empty() {
        problems.push(
            Some(g.chains.span()),
            "`grid.chains` is empty",
            Some("e.g. `chains = [[\"student\"], [\"teacher\", \"student\"]]`".into()),
        );
    }
    let mut any_kd = false;
    let mut chains = Vec::new();
    for chain in g.chains.get_ref() {
        if chain.get_ref().is_empty() {
            problems.push(Some(chain.span()), "a chain needs at least one model", None);
        }
        any_kd |= chain.get_ref().len() > 1;
        for item in chain.get_ref() {
            match item.get_ref().strip_prefix('@') {
                Some(role) if !ROLE_AXES.contains(&role) => problems.push(
                    Some(item.span()),
                    format!("unknown role placeholder `{}`", item.get_ref()),
                    Some(format!(
                        "placeholders are {}",
                        backticked(&ROLE_AXES.map(|r| format!("@{r}")))
                    )),
                ),
                Some(role) if !roles.contains_key(role) => problems.push(
                    Some(item.span()),
                    format!("chain uses `@{role}` but `grid.{role}` is not set"),
                    Some(format!("add `{role} = [\"...\"]` to `[grid]`")),
                ),
                Some(_) => {}
                None => check_name(item, problems),
            }
        }
        chains.push(
            chain
                .get_ref()
                .iter()
                .map(|n| n.get_ref().clone())
                .collect(),
        );
    }

    let axis = |v: &Option<Spanned<Vec<f64>>>, key: &str, problems: &mut Problems| -> Vec<f64> {
        match v {
            Some(v) if v.get_ref().is_empty() => {
                problems.push(Some(v.span()), format!("`grid.{key}` is empty"), None);
                Vec::new()
            }
            Some(v) => v.get_ref().clone(),
            None if any_kd => {
                problems.push(
                    Some(raw.span()),
                    format!("`grid.{key}` is required when a chain distills"),
                    None,
                );
                Vec::new()
            }
            None => Vec::new(),
        }
    };
    let temps = g
        .temperature
        .as_ref()
        .map(|t| Spanned::new(t.span(), t.get_ref().iter().map(|x| x.get()).collect()));
    let alphas = g
        .alpha
        .as_ref()
        .map(|a| Spanned::new(a.span(), a.get_ref().iter().map(|x| x.get()).collect()));
    let temperatures = axis(&temps, "temperature", problems);
    let alphas = axis(&alphas, "alpha", problems);

    Some(Grid {
        seeds,
        temperatures: sorted_unique(temperatures),
        alphas: sorted_unique(alphas),
        roles,
        chains,
    })
}

fn sorted_unique(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn backticked<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate closest to `word`, if close enough to be a likely typo.
fn suggest<'a, S: AsRef<str>>(word: &str, candidates: &'a [S]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c.as_ref()), c.as_ref()))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A did-you-mean for serde's "unknown field `x`, expected one of `a`, `b`" messages.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (word, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    suggest(word, &expected).map(|s| format!("did you mean `{s}`?"))
}

#[cfg(test)]
mod tests;
