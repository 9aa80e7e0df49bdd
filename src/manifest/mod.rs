//! The manifest: one TOML file declaring a whole study (first phase of
//! manifest → plan → train → store → report).
//!
//! [`load`] reads the file into serde "wire" shapes (`Raw*`, with spans), checks every
//! cross-field rule, reports all problems at once with file, line and column, and returns a
//! validated [`Manifest`]. Nothing here touches tensors or the results folder.

mod axis;
mod compute;
mod dataset;
mod document;
mod error;
mod fit;
mod grid;
mod model;
mod tracking;
mod training;
mod values;

pub use compute::{BackendKind, ComputeSpec, DeviceSpec, TCH_KERNELS};
pub use tracking::Tracking;

pub use dataset::{DataShape, DatasetSpec, FileFormat, Normalize, SyntheticSpec, TextSpec};
pub use error::{ManifestError, ManifestWarnings, Problem, Warning};
pub use grid::{
    Adaptive, AxisName, CellSpec, Field, Grid, Include, Predicate, RoleSeedAxes, RoleSeeds,
    TeacherSeed, Test, Value,
};
pub use model::{
    BertSpec, Combine, Cost, Encoder, EnsembleSpec, FeatureMaps, HiddenLoss, HiddenLossKind,
    ImportedWeights, InitFrom, Layout, LstmSpec, MOBILENET_V2_STAGES, ModelSpec, OnnxSpec,
    PLAIN_CNN_SIZES, Padding, PlainCnnTable, ResNetSpec, ResNetStem, TokenizerRef, cost,
    feature_map_problem, graph_problem,
};
pub use training::{
    AugmentSpec, DEFAULT_ADAMW_DECAY, DEFAULT_BETAS, DEFAULT_EPSILON, Holdout, KlReduction,
    Optimizer, Schedule, Selection, TrainingOverride, TrainingSpec,
};
pub use values::{Alpha, Count, Fraction, Positive, Temperature};

use compute::{RawCompute, check_compute};
use dataset::{RawDataset, check_dataset};
use error::Problems;
use fit::{check_frozen_lead, check_hidden_loss, fit_models_to_text};
use grid::RawGrid;
use model::RawModel;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;
use tracking::{RawTracking, check_tracking};
use training::{RawTraining, check_training};

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
    /// Where runs are tracked besides the tables (`[tracking]`).
    pub tracking: Tracking,
    /// The profile applied, if any (`--profile`).
    pub profile: Option<String>,
    /// Every profile the manifest defines.
    pub profiles: Vec<String>,
    /// Things worth a look that do not stop a run (e.g. an assistant larger than its teacher).
    pub warnings: Vec<Problem>,
    /// The manifest text, to render warnings against.
    pub text: String,
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
            t.betas = o.betas.unwrap_or(t.betas);
            t.epsilon = o.epsilon.unwrap_or(t.epsilon);
        }
        t
    }
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
    tracking: Option<RawTracking>,
}

/// Top-level keys of a manifest.
const SECTIONS: [&str; 9] = [
    "name",
    "description",
    "dataset",
    "models",
    "training",
    "grid",
    "compute",
    "tracking",
    "profiles",
];

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
    warnings.profile = problems.profile.clone();
    let Some(mut doc) = document::parse(text, &mut problems) else {
        return Err(problems.finish().unwrap_err());
    };
    let profiles = document::apply_profile(&mut doc, profile, &mut problems);
    let raw = sections(&doc, &mut problems);
    let base = path.parent().unwrap_or(Path::new("."));
    let manifest = check(raw, path, base, &mut problems, &mut warnings);
    problems.finish()?;
    let mut manifest = manifest.expect("no problems means a manifest was built");
    manifest.profile = profile.map(str::to_string);
    manifest.profiles = profiles;
    manifest.warnings = warnings.into_list();
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
    let tracking = doc
        .get("tracking")
        .and_then(|v| document::section(v, problems));
    RawManifest {
        name,
        description,
        dataset,
        models,
        training,
        grid,
        compute,
        tracking,
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
    let mut dataset = raw
        .dataset
        .as_ref()
        .and_then(|d| check_dataset(d, base, problems));
    let shape = dataset.as_ref().and_then(DatasetSpec::shape);
    let training = raw
        .training
        .as_ref()
        .map(|t| check_training(t, shape, problems));
    if let (Some(t), Some(raw_t), Some(DatasetSpec::Files { text: Some(_), .. })) =
        (&training, &raw.training, &dataset)
        && t.augment.is_some()
    {
        problems.push(
            Some(raw_t.span()),
            "`training.augment` crops and flips images; it does not apply to `kind = \"text\"`",
            None,
        );
    }
    let mut models = raw
        .models
        .as_ref()
        .map(|m| {
            let table = match &dataset {
                Some(DatasetSpec::Files {
                    format: FileFormat::Cifar100,
                    ..
                }) => PlainCnnTable::Cifar100,
                _ => PlainCnnTable::Cifar10,
            };
            model::check_models(m.get_ref(), base, table, problems)
        })
        .unwrap_or_default();
    if let (Some(raw_models), Some(d)) = (&raw.models, &mut dataset) {
        fit_models_to_text(raw_models.get_ref(), &mut models, d, problems);
    }
    if let (Some(raw_models), Some(shape)) = (&raw.models, shape) {
        model::check_feature_maps(raw_models.get_ref(), &models, shape.input, problems);
    }
    if let Some(raw_models) = &raw.models {
        let text = matches!(&dataset, Some(DatasetSpec::Files { text: Some(_), .. }));
        for (name, m) in raw_models.get_ref() {
            let Some(spec) = models.get_mut(name.get_ref()) else {
                continue;
            };
            if text && let Some(file) = &m.onnx {
                problems.push(
                    Some(file.span()),
                    format!("`models.{}`: ONNX teachers read images; this dataset holds text", name.get_ref()),
                    Some("text teachers as ONNX wait for per-model tokenizers (input ids and attention masks)".into()),
                );
                continue;
            }
            model::check_graph(
                name.get_ref(),
                m,
                spec,
                shape.map(|s| (s.input, s.classes)),
                problems,
            );
        }
    }
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
    // Expanding cells needs a grid without problems.
    if let (Some(g), Some(raw_grid)) = (&grid, &raw.grid)
        && problems.is_empty()
        && models
            .values()
            .any(|m| m.ensemble.is_some() || m.onnx.is_some())
    {
        check_frozen_lead(g, &models, raw_grid.span(), problems);
    }
    if let (Some(g), Some(raw_grid)) = (&grid, &raw.grid)
        && problems.is_empty()
        && models.values().any(|m| m.hidden_loss.is_some())
    {
        check_hidden_loss(g, &models, raw_grid.span(), problems);
    }
    let compute = check_compute(raw.compute.as_ref(), problems);
    let tracking = check_tracking(raw.tracking.as_ref(), base, problems);
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
        tracking,
        profile: None,
        profiles: Vec::new(),
        warnings: Vec::new(),
        text: String::new(),
    })
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
