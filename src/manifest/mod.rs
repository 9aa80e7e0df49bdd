//! The manifest: one TOML file declaring a whole study (first phase of
//! manifest → plan → train → store → report).
//!
//! [`load`] reads the file into serde "wire" shapes (`Raw*`, with spans), checks every
//! cross-field rule, reports all problems at once with file, line and column, and returns a
//! validated [`Manifest`]. Nothing here touches tensors or the results folder.

mod axis;
mod cost;
mod document;
mod error;
mod grid;
mod model;
mod values;

pub use cost::{Cost, cost};
pub use error::{ManifestError, ManifestWarnings, Problem, Warning};
pub use grid::{
    AxisName, CellSpec, Field, Grid, Include, Predicate, RoleSeedAxes, RoleSeeds, TeacherSeed,
    Test, Value,
};
pub use model::{ModelSpec, PLAIN_CNN_SIZES};
pub use values::{Alpha, Count, Fraction, Positive, Temperature};

use error::Problems;
use grid::RawGrid;
use model::RawModel;
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
    /// Per-model overrides of `training` (e.g. teachers train longer).
    pub overrides: BTreeMap<String, TrainingOverride>,
    /// Grid axes and distillation chains.
    pub grid: Grid,
    /// Backend, device and threads.
    pub compute: ComputeSpec,
    /// The profile applied, if any (`--profile`).
    pub profile: Option<String>,
    /// Every profile the manifest defines.
    pub profiles: Vec<String>,
    /// Things worth a look that do not stop a run (e.g. an assistant larger than its teacher).
    pub warnings: Vec<Problem>,
    /// The manifest text, to render warnings against.
    pub text: String,
}

/// Which Burn backend trains the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// LibTorch (CPU or CUDA), through burn's `tch` feature.
    Tch,
}

/// Where a backend computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// A CUDA GPU by index (`tch` only).
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device `{s}`: expected `cpu`, `cuda` or `cuda:N`")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Backend, device and intra-op threads of a sweep.
///
/// ```toml
/// [compute]
/// backend = "tch"     # or "flex" (default)
/// device = "cuda:0"   # or "cpu" (default)
/// threads = 2         # intra-op threads; default: all cores
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputeSpec {
    /// Backend.
    pub backend: BackendKind,
    /// Device.
    pub device: DeviceSpec,
    /// Intra-op threads; `None` means all available cores.
    pub threads: Option<usize>,
}

impl Default for ComputeSpec {
    fn default() -> Self {
        Self {
            backend: BackendKind::Flex,
            device: DeviceSpec::Cpu,
            threads: None,
        }
    }
}

impl ComputeSpec {
    /// Threads actually used: the setting, or every available core.
    pub fn resolved_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// What of the compute settings decides a stage's numbers, for stage ids: `flex` is
    /// bit-identical across thread counts, LibTorch on CPU is not, and on CUDA the device index
    /// does not matter.
    pub fn result_key(&self) -> String {
        match (self.backend, self.device) {
            (BackendKind::Flex, _) => "flex".into(),
            (BackendKind::Tch, DeviceSpec::Cpu) => {
                format!("tch-cpu-{}threads", self.resolved_threads())
            }
            (BackendKind::Tch, DeviceSpec::Cuda(_)) => "tch-cuda".into(),
        }
    }
}

/// Which data a study uses. Relative paths are resolved against the manifest's folder.
///
/// ```toml
/// [dataset]
/// kind = "fashion-mnist"   # or "mnist", "cifar10", "cifar100", "image-folder", "synthetic"
/// path = "../data/fashion-mnist"
/// train-limit = 20000
/// mean = [0.286]           # optional per-channel normalization; computed from the
/// std = [0.353]            # training split when absent
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DatasetSpec {
    /// A dataset read from files on disk.
    Files {
        /// On-disk format, part of stage ids.
        format: FileFormat,
        /// Folder with the files; not part of stage ids, so data may move.
        #[serde(skip)]
        path: PathBuf,
        /// Use only the first N training images.
        train_limit: Option<usize>,
        /// Use only the first N test images.
        test_limit: Option<usize>,
        /// Per-channel mean and std in [0, 1] pixel units; computed from the training split
        /// when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        normalize: Option<Normalize>,
    },
    /// Seeded synthetic images: noisy class prototypes, for tests and demos.
    Synthetic(SyntheticSpec),
}

/// What a dataset looks like, as far as it is known from the manifest alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    /// `[channels, height, width]`.
    pub input: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// Training images used.
    pub train: usize,
    /// Test images used.
    pub test: usize,
}

impl DatasetSpec {
    /// The shape of the data, for formats whose shape is fixed (not image folders).
    pub fn shape(&self) -> Option<DataShape> {
        match self {
            DatasetSpec::Synthetic(s) => Some(DataShape {
                input: [s.channels, s.image_size, s.image_size],
                classes: s.classes,
                train: s.train_size,
                test: s.test_size,
            }),
            DatasetSpec::Files {
                format,
                train_limit,
                test_limit,
                ..
            } => {
                let (input, classes, train) = match format {
                    FileFormat::FashionMnist | FileFormat::Mnist => ([1, 28, 28], 10, 60_000),
                    FileFormat::Cifar10 => ([3, 32, 32], 10, 50_000),
                    FileFormat::Cifar100 => ([3, 32, 32], 100, 50_000),
                    FileFormat::ImageFolder => return None,
                };
                Some(DataShape {
                    input,
                    classes,
                    train: train_limit.map_or(train, |l| l.min(train)),
                    test: test_limit.map_or(10_000, |l| l.min(10_000)),
                })
            }
        }
    }
}

/// File formats kdgrid reads (never downloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// Fashion-MNIST in IDX files (`train-images-idx3-ubyte[.gz]`, `t10k-*`).
    FashionMnist,
    /// MNIST in IDX files.
    Mnist,
    /// The CIFAR-10 binary release (`data_batch_{1..5}.bin`, `test_batch.bin`).
    Cifar10,
    /// The CIFAR-100 binary release (`train.bin`, `test.bin`; fine labels).
    Cifar100,
    /// `train/<class>/*.png|jpg` and `test/<class>/*` (ImageFolder layout), read as RGB.
    ImageFolder,
}

impl FileFormat {
    /// Name as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::FashionMnist => "fashion-mnist",
            FileFormat::Mnist => "mnist",
            FileFormat::Cifar10 => "cifar10",
            FileFormat::Cifar100 => "cifar100",
            FileFormat::ImageFolder => "image-folder",
        }
    }

    /// Channels of the images as loaded.
    pub fn channels(self) -> usize {
        match self {
            FileFormat::FashionMnist | FileFormat::Mnist => 1,
            _ => 3,
        }
    }
}

/// Given per-channel normalization.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalize {
    /// Mean per channel, in [0, 1] pixel units.
    pub mean: Vec<f64>,
    /// Standard deviation per channel, in [0, 1] pixel units.
    pub std: Vec<f64>,
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

/// Training settings a model may override in its `[models.*]` table.
///
/// ```toml
/// [models.teacher]
/// conv = [64, 128]
/// epochs = 4        # teachers train longer than students
/// lr = 0.0005
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrainingOverride {
    /// Epochs for this model.
    pub epochs: Option<usize>,
    /// Learning rate for this model.
    pub lr: Option<f64>,
    /// Batch size for this model.
    pub batch_size: Option<usize>,
    /// Weight decay for this model.
    pub weight_decay: Option<f64>,
}

impl Manifest {
    /// The training settings of `model`: the shared ones with the model's overrides applied.
    pub fn training_for(&self, model: &str) -> TrainingSpec {
        let mut t = self.training.clone();
        if let Some(o) = self.overrides.get(model) {
            t.epochs = o.epochs.unwrap_or(t.epochs);
            t.lr = o.lr.unwrap_or(t.lr);
            t.batch_size = o.batch_size.unwrap_or(t.batch_size);
            t.weight_decay = o.weight_decay.or(t.weight_decay);
        }
        t
    }
}

/// Optimizer choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam (Kingma & Ba); `weight-decay` is an L2 penalty.
    Adam,
    /// AdamW: Adam with decoupled weight decay (`weight-decay`, default 1e-4).
    Adamw,
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
    /// Learning-rate schedule over epochs.
    #[serde(skip_serializing_if = "Schedule::is_constant")]
    pub schedule: Schedule,
    /// Nesterov momentum for SGD.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nesterov: bool,
    /// How the distillation KL is reduced; part of a distilled stage's [`crate::plan::Kd`]
    /// rather than of every stage's id, so teachers are shared across reductions.
    #[serde(skip)]
    pub kl_reduction: KlReduction,
    /// Data augmentation of training batches (absent: none; absent settings leave ids as
    /// they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentSpec>,
    /// Images held out of the training split for validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Holdout>,
    /// Which epoch's weights a stage keeps.
    #[serde(skip_serializing_if = "Selection::is_last")]
    pub select: Selection,
}

/// A validation split carved from the training split: the same images for every stage of a
/// study (a fixed shuffle of the training indices), so teachers and students select alike.
///
/// ```toml
/// [training]
/// validation = 5000   # images; or a fraction such as 0.1
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Holdout {
    /// A number of images.
    Count(usize),
    /// A fraction of the training split, in (0, 1).
    Fraction(f64),
}

impl Holdout {
    /// Images held out of a training split of `train` images.
    pub fn count(self, train: usize) -> usize {
        match self {
            Holdout::Count(n) => n,
            Holdout::Fraction(f) => (f * train as f64).round() as usize,
        }
    }
}

/// Which weights a stage keeps and reports.
///
/// ```toml
/// [training]
/// select = "best-val"   # needs `validation`
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The last epoch's.
    #[default]
    Last,
    /// The epoch with the best validation accuracy (earliest on ties).
    BestVal,
    /// The epoch with the best test accuracy: optimistic, as in papers that report the best
    /// test epoch; refused unless `allow-test-selection = true`.
    BestTest,
}

impl Selection {
    fn is_last(&self) -> bool {
        *self == Selection::Last
    }

    /// Name as written in manifests and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::Last => "last",
            Selection::BestVal => "best-val",
            Selection::BestTest => "best-test",
        }
    }
}

/// Learning-rate schedule, applied per epoch.
///
/// ```toml
/// [training]
/// schedule = { kind = "cosine" }                          # lr * (1 + cos(pi * e / E)) / 2
/// schedule = { kind = "step", every = 30, gamma = 0.1 }   # lr * gamma^(e / every)
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// The same learning rate every epoch.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: Count,
        /// Decay factor.
        gamma: Positive,
    },
    /// Cosine annealing from `lr` towards 0 over the stage's epochs.
    Cosine,
}

impl Schedule {
    fn is_constant(&self) -> bool {
        *self == Schedule::Constant
    }

    /// The learning rate of 0-based `epoch` out of `epochs`, starting from `lr`.
    pub fn lr(&self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Step { every, gamma } => lr * gamma.get().powi((epoch / every.get()) as i32),
            Schedule::Cosine => {
                lr * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos())
            }
        }
    }
}

/// Reduction of the distillation KL term.
///
/// ```toml
/// [training]
/// kl-reduction = "element-mean"   # as PyTorch's KLDivLoss default in the TAKD code
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlReduction {
    /// Sum over classes, mean over the batch (Hinton et al.).
    #[default]
    PerSample,
    /// Mean over batch and classes: the per-sample KL divided by the class count.
    ElementMean,
}

impl KlReduction {
    /// Whether this is the default (per-sample), which stage ids leave out.
    pub fn is_default(&self) -> bool {
        *self == KlReduction::PerSample
    }
}

/// Training-batch augmentation, drawn from the stage's augment stream.
///
/// ```toml
/// [training]
/// augment = { crop-padding = 4, flip = true }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AugmentSpec {
    /// Zero padding before a random crop back to the original size (0: no crop).
    #[serde(default)]
    pub crop_padding: usize,
    /// Random horizontal flips.
    #[serde(default)]
    pub flip: bool,
}

/// Cells a grid may have unless `grid.max-cells` says otherwise: a guard against typos such as
/// `seed = { range = [0, 100000] }`.
pub const DEFAULT_MAX_CELLS: usize = 10_000;

/// Role axes that chains may refer to as `@name`.
pub const ROLE_AXES: [&str; 3] = ["teacher", "assistant", "student"];

/// The sections of a manifest, each deserialized on its own so that all report problems.
struct RawManifest {
    name: Option<Spanned<String>>,
    description: Option<String>,
    dataset: Option<Spanned<RawDataset>>,
    models: Option<Spanned<BTreeMap<Spanned<String>, RawModel>>>,
    training: Option<Spanned<RawTraining>>,
    grid: Option<Spanned<RawGrid>>,
    compute: Option<RawCompute>,
}

/// Top-level keys of a manifest.
const SECTIONS: [&str; 8] = [
    "name",
    "description",
    "dataset",
    "models",
    "training",
    "grid",
    "compute",
    "profiles",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCompute {
    backend: Option<BackendKind>,
    device: Option<Spanned<String>>,
    threads: Option<Count>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum DatasetKind {
    FashionMnist,
    Mnist,
    Cifar10,
    Cifar100,
    ImageFolder,
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
    mean: Option<Spanned<Vec<f64>>>,
    std: Option<Spanned<Vec<f64>>>,
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
    #[serde(default)]
    schedule: Schedule,
    nesterov: Option<Spanned<bool>>,
    #[serde(default)]
    kl_reduction: KlReduction,
    augment: Option<AugmentSpec>,
    validation: Option<Spanned<f64>>,
    select: Option<Spanned<Selection>>,
    allow_test_selection: Option<bool>,
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    load_profile(path, None)
}

/// Reads the manifest at `path` and validates it with profile `profile` applied.
pub fn load_profile(path: &Path, profile: Option<&str>) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_profile(path, &text, profile)
}

/// Validates manifest `text`; `path` names it in messages and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    parse_profile(path, text, None)
}

/// Validates manifest `text` with profile `profile` (a `[profiles.<name>]` table) merged over
/// it. Every problem is reported, each with its file, line and column.
pub fn parse_profile(
    path: &Path,
    text: &str,
    profile: Option<&str>,
) -> Result<Manifest, ManifestError> {
    let mut problems = Problems::new(path, text);
    problems.profile = profile.map(str::to_string);
    let mut warnings = Problems::new(path, text);
    let Some(mut doc) = document::parse(text, &mut problems) else {
        return Err(problems.finish().unwrap_err());
    };
    let renames = profile.is_some_and(|p| {
        doc.get("profiles")
            .and_then(|ps| ps.get_ref().get(p))
            .is_some_and(|p| p.get_ref().get("name").is_some())
    });
    let profiles = document::apply_profile(&mut doc, profile, &mut problems);
    let raw = sections(&doc, &mut problems);
    let base = path.parent().unwrap_or(Path::new("."));
    let manifest = check(raw, path, base, &mut problems, &mut warnings);
    problems.finish()?;
    let mut manifest = manifest.expect("no problems means a manifest was built");
    if let Some(p) = profile {
        if !renames {
            manifest.name = format!("{}-{p}", manifest.name);
        }
        manifest.profile = Some(p.to_string());
    }
    manifest.profiles = profiles;
    manifest.warnings = warnings.into_list();
    if profile.is_some() {
        // Profiles shrink grids on purpose; an exclude entry they leave idle is expected.
        manifest
            .warnings
            .retain(|w| w.message != grid::EXCLUDE_MATCHES_NOTHING);
    }
    manifest.text = text.to_string();
    Ok(manifest)
}

/// Deserializes each top-level section on its own, so that problems in one do not hide
/// problems in another.
fn sections(doc: &document::Doc<'_>, problems: &mut Problems) -> RawManifest {
    for (key, _) in doc.iter() {
        if !SECTIONS.contains(&key.get_ref().as_ref()) {
            problems.push(
                Some(key.span()),
                format!("unknown key `{}`", key.get_ref()),
                suggest(key.get_ref(), &SECTIONS)
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some(format!("top-level keys: {}", backticked(&SECTIONS)))),
            );
        }
    }
    let required = |key: &str, example: &str, problems: &mut Problems| {
        let value = doc.get(key);
        if value.is_none() {
            problems.push(
                None,
                format!("missing `{key}`"),
                Some(format!("add {example}")),
            );
        }
        value
    };
    let name = required("name", "`name = \"my-study\"`", problems)
        .and_then(|v| document::section(v, problems));
    let dataset = required("dataset", "a `[dataset]` table", problems)
        .and_then(|v| document::section(v, problems));
    let training = required("training", "a `[training]` table", problems)
        .and_then(|v| document::section(v, problems));
    let grid =
        required("grid", "a `[grid]` table", problems).and_then(|v| document::section(v, problems));
    let models = required("models", "a `[models.<name>]` table", problems).and_then(|v| {
        let toml::de::DeValue::Table(table) = v.get_ref() else {
            problems.push(Some(v.span()), "`models` must be a table of models", None);
            return None;
        };
        if table.is_empty() {
            problems.push(
                Some(v.span()),
                "`models` is empty",
                Some(
                    "declare at least one model, e.g. `[models.student]` with `conv = [32, 64]`"
                        .into(),
                ),
            );
        }
        let mut models = BTreeMap::new();
        for (name, m) in table.iter() {
            let name = Spanned::new(name.span(), name.get_ref().to_string());
            // A model that fails still counts as defined, so chains naming it raise nothing more.
            let m = document::section(m, problems).unwrap_or_else(RawModel::placeholder);
            models.insert(name, m);
        }
        Some(Spanned::new(v.span(), models))
    });
    let description = doc
        .get("description")
        .and_then(|v| document::section(v, problems));
    let compute = doc
        .get("compute")
        .and_then(|v| document::section(v, problems));
    RawManifest {
        name,
        description,
        dataset,
        models,
        training,
        grid,
        compute,
    }
}

fn check(
    raw: RawManifest,
    path: &Path,
    base: &Path,
    problems: &mut Problems,
    warnings: &mut Problems,
) -> Option<Manifest> {
    if let Some(name) = &raw.name {
        let n = name.get_ref().trim();
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || n.starts_with('.')
        {
            problems.push(
                Some(name.span()),
                "`name` must be a non-empty folder name of letters, digits, `-`, `_` or `.`",
                None,
            );
        }
    }
    let dataset = raw
        .dataset
        .as_ref()
        .and_then(|d| check_dataset(d, base, problems));
    let shape = dataset.as_ref().and_then(DatasetSpec::shape);
    let training = raw
        .training
        .as_ref()
        .map(|t| check_training(t, shape, problems));
    let models = raw
        .models
        .as_ref()
        .map(|m| model::check_models(m.get_ref(), problems))
        .unwrap_or_default();
    let overrides = raw
        .models
        .iter()
        .flat_map(|m| m.get_ref())
        .filter_map(|(name, m)| Some((name.get_ref().clone(), m.overrides()?)))
        .collect();
    let grid = raw.grid.as_ref().map(|g| {
        grid::check_grid(
            g.get_ref(),
            g.span(),
            &models,
            shape.map(|s| (s.input, s.classes)),
            problems,
            warnings,
        )
    });
    let compute = check_compute(raw.compute.as_ref(), problems);
    if !problems.is_empty() {
        return None;
    }
    Some(Manifest {
        path: path.to_path_buf(),
        name: raw.name?.into_inner().trim().to_string(),
        description: raw.description,
        dataset: dataset?,
        models,
        training: training?,
        overrides,
        grid: grid?,
        compute,
        profile: None,
        profiles: Vec::new(),
        warnings: Vec::new(),
        text: String::new(),
    })
}

fn check_training(
    raw: &Spanned<RawTraining>,
    shape: Option<DataShape>,
    problems: &mut Problems,
) -> TrainingSpec {
    let t = raw.get_ref();
    if let Some(nesterov) = &t.nesterov
        && *nesterov.get_ref()
        && (t.optimizer != Optimizer::Sgd || t.momentum.is_none())
    {
        problems.push(
            Some(nesterov.span()),
            "`training.nesterov` needs `optimizer = \"sgd\"` and a `momentum`",
            None,
        );
    }
    let validation = t.validation.as_ref().and_then(|v| {
        let x = *v.get_ref();
        let holdout = if x > 0.0 && x < 1.0 {
            Holdout::Fraction(x)
        } else if x >= 1.0 && x.fract() == 0.0 {
            Holdout::Count(x as usize)
        } else {
            problems.push(
                Some(v.span()),
                format!(
                    "`training.validation` is a number of images or a fraction in (0, 1), found {x}"
                ),
                None,
            );
            return None;
        };
        if let Some(shape) = shape
            && !(1..shape.train).contains(&holdout.count(shape.train))
        {
            problems.push(
                Some(v.span()),
                format!(
                    "`training.validation` holds out {} images of a {}-image training split",
                    holdout.count(shape.train),
                    shape.train
                ),
                Some("hold out at least one image and leave some to train on".into()),
            );
        }
        Some(holdout)
    });
    let select = t.select.as_ref().map_or(Selection::Last, |s| *s.get_ref());
    if let Some(s) = &t.select {
        match s.get_ref() {
            Selection::BestVal if validation.is_none() => problems.push(
                Some(s.span()),
                "`select = \"best-val\"` needs a validation split",
                Some("add `validation = 5000` (images) or `validation = 0.1` to `[training]`".into()),
            ),
            Selection::BestTest if t.allow_test_selection != Some(true) => problems.push(
                Some(s.span()),
                "selecting epochs on the test set makes the reported accuracy optimistic",
                Some("use `select = \"best-val\"` with a `validation` split, or set `allow-test-selection = true` to reproduce a paper that did this".into()),
            ),
            _ => {}
        }
    }
    TrainingSpec {
        epochs: t.epochs.get(),
        batch_size: t.batch_size.get(),
        optimizer: t.optimizer,
        lr: t.lr.get(),
        momentum: t.momentum.map(Fraction::get),
        weight_decay: t.weight_decay.map(Fraction::get),
        nesterov: t.nesterov.as_ref().is_some_and(|n| *n.get_ref()),
        schedule: t.schedule,
        kl_reduction: t.kl_reduction,
        augment: t.augment.filter(|a| a.crop_padding > 0 || a.flip),
        validation,
        select,
    }
}

fn check_compute(raw: Option<&RawCompute>, problems: &mut Problems) -> ComputeSpec {
    let mut spec = ComputeSpec::default();
    let Some(raw) = raw else { return spec };
    spec.backend = raw.backend.unwrap_or(BackendKind::Flex);
    spec.threads = raw.threads.map(Count::get);
    if let Some(device) = &raw.device {
        match device.get_ref().parse::<DeviceSpec>() {
            Ok(DeviceSpec::Cuda(_)) if spec.backend == BackendKind::Flex => problems.push(
                Some(device.span()),
                "the `flex` backend runs on the CPU only",
                Some("set `backend = \"tch\"` for CUDA".into()),
            ),
            Ok(d) => spec.device = d,
            Err(e) => problems.push(Some(device.span()), e, None),
        }
    }
    spec
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
    let format = match d.kind.get_ref() {
        DatasetKind::FashionMnist => Some(FileFormat::FashionMnist),
        DatasetKind::Mnist => Some(FileFormat::Mnist),
        DatasetKind::Cifar10 => Some(FileFormat::Cifar10),
        DatasetKind::Cifar100 => Some(FileFormat::Cifar100),
        DatasetKind::ImageFolder => Some(FileFormat::ImageFolder),
        DatasetKind::Synthetic => None,
    };
    let channels = format.map_or_else(
        || d.channels.as_ref().map_or(1, |c| c.get_ref().get()),
        FileFormat::channels,
    );
    let normalize = check_normalize(d, channels, problems);
    match format {
        Some(format) => {
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
                    format!("`dataset.path` is required for `kind = \"{}\"`", format.name()),
                    Some("point it at the folder holding the dataset's files, relative to the manifest".into()),
                );
                return None;
            };
            Some(DatasetSpec::Files {
                format,
                path: base.join(path.get_ref()),
                train_limit: d.train_limit.map(Count::get),
                test_limit: d.test_limit.map(Count::get),
                normalize,
            })
        }
        None => {
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
            if let Some(mean) = d.mean.as_ref().filter(|_| normalize.is_some()) {
                problems.push(
                    Some(mean.span()),
                    "`dataset.mean` and `dataset.std` apply to file datasets; synthetic data is normalized from its training split",
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

fn check_normalize(d: &RawDataset, channels: usize, problems: &mut Problems) -> Option<Normalize> {
    match (&d.mean, &d.std) {
        (None, None) => None,
        (Some(mean), Some(std)) => {
            let mut ok = true;
            for (key, v) in [("mean", mean), ("std", std)] {
                if v.get_ref().len() != channels {
                    ok = false;
                    problems.push(
                        Some(v.span()),
                        format!(
                            "`dataset.{key}` has {} values; the images have {channels} channel{}",
                            v.get_ref().len(),
                            if channels == 1 { "" } else { "s" }
                        ),
                        None,
                    );
                }
            }
            if std.get_ref().iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                ok = false;
                problems.push(Some(std.span()), "`dataset.std` values must be > 0", None);
            }
            ok.then(|| Normalize {
                mean: mean.get_ref().clone(),
                std: std.get_ref().clone(),
            })
        }
        (Some(v), None) | (None, Some(v)) => {
            problems.push(
                Some(v.span()),
                "`dataset.mean` and `dataset.std` go together",
                None,
            );
            None
        }
    }
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
