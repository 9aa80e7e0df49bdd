//! ONNX teachers: `onnx = "teacher.onnx"`, a frozen model exported from any framework, with
//! how it reads images (`input`), which output holds its scores (`output`), what they are
//! (`scores`) and which of them are the dataset's classes (`class-map`). Nothing that changes
//! its numbers is guessed: what is read from the graph is said (`plan`, the stage's record), and
//! what cannot be read must be declared.

use super::ModelSpec;
use super::raw::RawModel;
use crate::manifest::error::Problems;
use crate::manifest::values::{Count, Positive};
use crate::onnx::{Scores, Signature};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// How the graph's input holds an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `[batch, channels, height, width]` (PyTorch's).
    #[default]
    Nchw,
    /// `[batch, height, width, channels]` (TensorFlow's).
    Nhwc,
}

impl Layout {
    /// The manifest's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }
}

/// `input.normalize`: the statistics a graph's images are normalized with when not `mean`
/// and `std`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum NormalizeWith {
    /// The training split's per-channel mean and standard deviation, as kdgrid's own models
    /// read images.
    Dataset,
}

/// `input = { layout = .., size = .., mean = [..], std = [..] | normalize = "dataset" }` of an
/// ONNX model.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInput {
    pub(super) layout: Option<Layout>,
    size: Option<Count>,
    mean: Option<Vec<f64>>,
    std: Option<Vec<Positive>>,
    normalize: Option<NormalizeWith>,
}

/// A file the graph reads tensors from (ONNX external data), beside the `.onnx` file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideFile {
    /// Its path relative to the `.onnx` file's folder, as the graph names it.
    pub location: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Its size.
    #[serde(skip)]
    pub bytes: u64,
}

/// A frozen model in an ONNX file (`[models.<name>]` with `onnx = "..."`). It only runs
/// forward: evaluated as a stage of its own, and teaching from the head of a chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnnxSpec {
    /// The file (resolved against the manifest's folder); its digest, not its path, is part
    /// of stage ids.
    #[serde(skip)]
    pub path: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// The files its tensors are read from, by location (absent from ids when there are none,
    /// so graphs that hold their weights keep their ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub side_files: Vec<SideFile>,
    /// How the graph's input holds an image (declared, or read from the graph's input dims).
    pub layout: Layout,
    /// The square size images are resized to (bilinear) before the graph sees them; `None`:
    /// the graph's own input size, or the dataset's when the export left it open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Per-channel mean and standard deviation (in [0, 1] pixel units) the graph was trained
    /// with; `None`: it reads images normalized as kdgrid's models do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalize: Option<(Vec<f64>, Vec<f64>)>,
    /// For each dataset class, the output index holding its logit; `None`: output `i` is class
    /// `i`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_map: Option<Vec<usize>>,
    /// The graph output read (named only for graphs with several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// What the output holds (declared, or read from its last operator); probabilities are
    /// turned into logits by their log.
    #[serde(skip_serializing_if = "Scores::is_logits")]
    pub scores: Scores,
    /// What was read from the graph rather than declared, in words (for `plan` and the record).
    #[serde(skip)]
    pub read_from_graph: Vec<String>,
    /// The graph as read when the manifest was checked (size and cost for `plan`).
    #[serde(skip)]
    pub signature: Option<Signature>,
    /// How kdgrid runs the graph ([`crate::identity::ONNX_RUNNER`]).
    pub runner: u32,
}

impl OnnxSpec {
    /// The digest of everything that decides the graph's numbers: the `.onnx` file's and its
    /// side files'.
    pub fn digest(&self) -> String {
        let mut digest = self.sha256.clone();
        for f in &self.side_files {
            digest.push_str(&format!(" {}={}", f.location, f.sha256));
        }
        digest
    }

    /// Bytes of the model: the `.onnx` file and its side files.
    pub fn bytes(&self) -> Option<u64> {
        let own = self.path.metadata().ok()?.len();
        Some(own + self.side_files.iter().map(|f| f.bytes).sum::<u64>())
    }

    /// What kdgrid did not read from the manifest, for images of `[channels, height, width]`:
    /// what it read from the graph, and the resizing.
    pub fn assumed(&self, input: [usize; 3]) -> Vec<String> {
        let mut said = self.read_from_graph.clone();
        if self.size.is_none()
            && let Some([h, w]) = self.resize(input)
        {
            said.push(format!(
                "resizes {}x{} images to {h}x{w} (bilinear), the graph's fixed input",
                input[1], input[2]
            ));
        }
        said
    }

    /// Dims of one image as the graph takes it (in its layout), for images of
    /// `[channels, height, width]`: resized to `size`, else to the graph's fixed size.
    pub fn item(&self, input: [usize; 3]) -> [usize; 3] {
        let [c, h, w] = self.hw(input).map_or(input, |[h, w]| [input[0], h, w]);
        match self.layout {
            Layout::Nchw => [c, h, w],
            Layout::Nhwc => [h, w, c],
        }
    }

    /// The `[height, width]` images of `[channels, height, width]` are resized to before the
    /// graph sees them, when it differs from theirs.
    pub fn resize(&self, input: [usize; 3]) -> Option<[usize; 2]> {
        self.hw(input).filter(|hw| *hw != [input[1], input[2]])
    }

    /// `[height, width]` the graph sees: declared, fixed by the export, or the dataset's.
    fn hw(&self, input: [usize; 3]) -> Option<[usize; 2]> {
        if let Some(s) = self.size {
            return Some([s, s]);
        }
        let dims = &self.signature.as_ref()?.input;
        let (h, w) = match self.layout {
            Layout::Nchw => (dims.get(2)?, dims.get(3)?),
            Layout::Nhwc => (dims.get(1)?, dims.get(2)?),
        };
        Some([h.unwrap_or(input[1]), w.unwrap_or(input[2])])
    }
}

/// Resolves an ONNX model: its file, digest and side files, and how it reads images.
pub(super) fn check_onnx(
    name: &str,
    file: &Spanned<String>,
    m: &RawModel,
    base: &Path,
    problems: &mut Problems,
) -> ModelSpec {
    if m.has_architecture_or_training()
        || m.ensemble.is_some()
        || m.seeds.is_some()
        || m.combine.is_some()
        || m.key_map.is_some()
        || m.fine_tune.is_some()
    {
        problems.push(
            Some(file.span()),
            format!("`models.{name}` is an ONNX model: the file sets its architecture, and it is frozen (it only runs forward)"),
            Some("an ONNX model takes `onnx`, `input`, `output`, `scores` and `class-map` only".into()),
        );
    }
    let normalize = check_normalization(name, file, m, problems);
    if let Some(map) = &m.class_map {
        let mut unique = map.get_ref().clone();
        unique.sort_unstable();
        unique.dedup();
        if map.get_ref().is_empty() || unique.len() != map.get_ref().len() {
            problems.push(
                Some(map.span()),
                format!(
                    "`models.{name}.class-map` must list one different output per dataset class"
                ),
                Some(
                    "e.g. `class-map = [404, 948, 951]`: the outputs holding classes 0, 1, 2"
                        .into(),
                ),
            );
        }
    }
    let (path, sha256, side_files) = digests(name, file, base, problems);
    let raw_input = m.input.as_ref().map(Spanned::get_ref);
    let mut spec = ModelSpec::bare("onnx");
    spec.onnx = Some(OnnxSpec {
        path,
        sha256,
        side_files,
        layout: raw_input.and_then(|i| i.layout).unwrap_or_default(),
        size: raw_input.and_then(|i| i.size).map(Count::get),
        normalize,
        class_map: m.class_map.as_ref().map(|c| c.get_ref().clone()),
        output: None,
        scores: m
            .scores
            .as_ref()
            .map_or_else(Scores::default, |s| *s.get_ref()),
        read_from_graph: Vec::new(),
        signature: None,
        runner: crate::identity::ONNX_RUNNER,
    });
    spec
}

/// `input.mean` and `input.std`, or `None` for `input.normalize = "dataset"`; a graph's
/// normalization is never guessed (another one changed a third of a ShuffleNet's predictions).
fn check_normalization(
    name: &str,
    file: &Spanned<String>,
    m: &RawModel,
    problems: &mut Problems,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let input = m.input.as_ref().map(Spanned::get_ref);
    let span = m.input.as_ref().map_or(file.span(), Spanned::span);
    let (mean, std) = input
        .map(|i| (i.mean.clone(), i.std.clone()))
        .unwrap_or_default();
    let with = input.and_then(|i| i.normalize);
    let example = "`input = { mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] }` (ImageNet's, in [0, 1] pixel units), or `input = { normalize = \"dataset\" }` for the training split's per-channel statistics, as kdgrid's own models read images";
    match (mean, std, with) {
        (Some(mean), Some(std), None) if mean.len() == std.len() => {
            Some((mean, std.into_iter().map(Positive::get).collect()))
        }
        (None, None, Some(NormalizeWith::Dataset)) => None,
        (None, None, None) => {
            problems.push(
                Some(span),
                format!("`models.{name}` does not say how the graph's images are normalized: an ONNX file does not record it, and another normalization changes its predictions"),
                Some(example.into()),
            );
            None
        }
        (_, _, Some(_)) => {
            problems.push(
                Some(span),
                format!(
                    "`models.{name}.input` sets `normalize` and `mean`/`std`: one or the other"
                ),
                Some(example.into()),
            );
            None
        }
        _ => {
            problems.push(
                Some(span),
                format!("`models.{name}.input` needs `mean` and `std` together, one value per channel each"),
                Some(example.into()),
            );
            None
        }
    }
}

/// The `.onnx` file of `models.<name>.onnx`, its SHA-256 and its side files' (empty digest
/// when it cannot be read: a problem at the key's line).
fn digests(
    name: &str,
    file: &Spanned<String>,
    base: &Path,
    problems: &mut Problems,
) -> (PathBuf, String, Vec<SideFile>) {
    let path = base.join(file.get_ref());
    let mut problem = |message: String, hint: &str| {
        problems.push(
            Some(file.span()),
            format!("`models.{name}.onnx`: {message}"),
            Some(hint.into()),
        );
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            problem(
                format!("cannot read `{}`: {e}", path.display()),
                "the path is relative to the manifest's folder",
            );
            return (path, String::new(), Vec::new());
        }
    };
    // Read whole: the bytes are scanned for external data too.
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let locations = match crate::onnx::side_files(&bytes) {
        Ok(l) => l,
        Err(e) => {
            problem(
                format!("`{}` {e}", path.display()),
                "the file is damaged or cut short, or not ONNX; export it again",
            );
            return (path, String::new(), Vec::new());
        }
    };
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let locations_count = locations.len();
    let mut side_files = Vec::new();
    for location in locations {
        let side = folder.join(&location);
        match side_file(folder, &side, &location) {
            Ok(f) => side_files.push(f),
            Err(SideProblem::Outside) => problem(
                format!(
                    "`{}` reads tensors from `{location}`, which is not a file in its folder",
                    path.display()
                ),
                "keep the external-data files next to the `.onnx` file (tract reads no other)",
            ),
            Err(SideProblem::Unreadable(e)) => problem(
                format!(
                    "`{}` reads its weights from `{location}`, which cannot be read (`{}`: {e})",
                    path.display(),
                    side.display()
                ),
                "torch.onnx.export writes the weights of a graph to `<file>.data` beside it: copy both files",
            ),
        }
    }
    if side_files.len() < locations_count {
        // Reported: the graph is not read without its weights.
        return (path, String::new(), Vec::new());
    }
    (path, sha256, side_files)
}

/// Why a side file cannot be part of a model.
enum SideProblem {
    /// Its path leaves the graph's folder, or it is not a regular file (a device, a FIFO).
    Outside,
    /// It cannot be read.
    Unreadable(std::io::Error),
}

/// The side file `location` of a graph in `folder` (at `side`), its digest streamed from disk.
/// Its path is checked before it is opened, as tract checks it: relative, inside the folder
/// once links are resolved, and a regular file.
fn side_file(folder: &Path, side: &Path, location: &str) -> Result<SideFile, SideProblem> {
    use std::path::Component;
    let relative = Path::new(location)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let resolved = side.canonicalize().map_err(SideProblem::Unreadable)?;
    let folder = folder.canonicalize().map_err(SideProblem::Unreadable)?;
    if !relative || !resolved.starts_with(&folder) || !resolved.is_file() {
        return Err(SideProblem::Outside);
    }
    let (sha256, bytes) =
        crate::identity::file_sha256(&resolved).map_err(SideProblem::Unreadable)?;
    Ok(SideFile {
        location: location.to_string(),
        sha256,
        bytes,
    })
}
