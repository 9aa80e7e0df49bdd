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
    layout: Option<Layout>,
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
    let sha = |bytes: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
    let sha256 = sha(&bytes);
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
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut side_files = Vec::new();
    for location in locations {
        let inside = Path::new(&location)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        let side = folder.join(&location);
        match std::fs::read(&side) {
            Ok(bytes) if inside => side_files.push(SideFile {
                location,
                sha256: sha(&bytes),
                bytes: bytes.len() as u64,
            }),
            Ok(_) => problem(
                format!(
                    "`{}` reads tensors from `{location}`, outside its folder",
                    path.display()
                ),
                "keep the external-data files next to the `.onnx` file (tract reads no other)",
            ),
            Err(e) => problem(
                format!(
                    "`{}` reads its weights from `{location}`, which cannot be read (`{}`: {e})",
                    path.display(),
                    side.display()
                ),
                "torch.onnx.export writes the weights of a graph to `<file>.data` beside it: copy both files",
            ),
        }
    }
    (path, sha256, side_files)
}

/// The layout of a graph whose input dims are `dims` (`[batch, a, b, c]`), read from where its
/// channels are for images of `channels` channels (when known): the one of `a` and `c` that is
/// fixed, or that equals `channels`, or the smaller.
fn read_layout(dims: &[Option<usize>], channels: Option<usize>) -> Option<Layout> {
    let [_, a, _, c] = dims else {
        return None;
    };
    let is = |d: &Option<usize>| channels.is_some() && *d == channels;
    match (a, c) {
        _ if is(a) && !is(c) => Some(Layout::Nchw),
        _ if is(c) && !is(a) => Some(Layout::Nhwc),
        (Some(_), None) => Some(Layout::Nchw),
        (None, Some(_)) => Some(Layout::Nhwc),
        (Some(a), Some(c)) if a < c => Some(Layout::Nchw),
        (Some(a), Some(c)) if c < a => Some(Layout::Nhwc),
        _ => None,
    }
}

/// Reads the graph of ONNX model `name` (when the file was read) and checks it against images of
/// `[channels, height, width]` and `classes` classes, when the dataset's shape is known: its
/// layout, output and scores, when not declared, are read from it (and said), or refused
/// when they cannot be. The graph's signature is kept for `plan`.
pub(crate) fn check_graph(
    name: &str,
    m: &RawModel,
    spec: &mut ModelSpec,
    shape: Option<([usize; 3], usize)>,
    problems: &mut Problems,
) {
    let (Some(o), Some(file)) = (spec.onnx.as_mut(), m.onnx.as_ref()) else {
        return;
    };
    if o.sha256.is_empty() {
        return;
    }
    let chosen = m.output.as_ref().map(|o| o.get_ref().as_str());
    let span = |key: Option<std::ops::Range<usize>>| Some(key.unwrap_or(file.span()));
    // The layout first: which dims are the image's depends on it.
    let declared = m.input.as_ref().and_then(|i| i.get_ref().layout);
    if declared.is_none() {
        match crate::onnx::inspect(&o.path, &o.digest(), None, chosen) {
            Ok(s) => match read_layout(&s.input, shape.map(|(i, _)| i[0])) {
                Some(layout) => {
                    o.layout = layout;
                    o.read_from_graph.push(format!(
                        "layout {} from its input {}",
                        layout.name(),
                        show(&s.input)
                    ));
                }
                None => problems.push(
                    span(m.input.as_ref().map(Spanned::span)),
                    format!(
                        "`models.{name}`: `{}` takes input {}, which does not show where its channels are",
                        o.path.display(),
                        show(&s.input)
                    ),
                    Some("say it: `input = { layout = \"nchw\" }` (PyTorch's) or `\"nhwc\"` (TensorFlow's)".into()),
                ),
            },
            Err(e) => return graph_unreadable(name, file, &e, problems),
        }
    }
    let item = shape.map(|(input, _)| o.item(input));
    let signature = match crate::onnx::inspect(&o.path, &o.digest(), item, chosen) {
        Ok(s) => s,
        Err(e) if e.message.contains("has no output") => {
            let key = m.output.as_ref().map(Spanned::span);
            return problems.push(span(key), format!("`models.{name}.output`: {e}"), None);
        }
        Err(e) => return graph_unreadable(name, file, &e, problems),
    };
    if signature.outputs.len() > 1 {
        match chosen {
            Some(c) => o.output = Some(c.to_string()),
            None => problems.push(
                span(None),
                format!(
                    "`models.{name}`: `{}` gives {} outputs ({}); kdgrid does not guess which holds the classes' scores",
                    o.path.display(),
                    signature.outputs.len(),
                    crate::onnx::quoted(&signature.outputs)
                ),
                Some(format!("name it: `output = \"{}\"`", signature.outputs[0])),
            ),
        }
    }
    match m.scores.as_ref() {
        None if signature.ends_in != Scores::Logits => {
            o.scores = signature.ends_in;
            o.read_from_graph.push(format!(
                "{} from its last operator ({}){}",
                o.scores.name(),
                match o.scores {
                    Scores::Probabilities => "Softmax",
                    _ => "LogSoftmax",
                },
                match o.scores {
                    Scores::Probabilities => ": their log is the teacher's logits",
                    _ => "",
                },
            ));
        }
        Some(s) if *s.get_ref() == Scores::Logits && signature.ends_in != Scores::Logits => {
            problems.push(
                Some(s.span()),
                format!(
                    "`models.{name}.scores` says logits, but the graph's output comes from a {}: its values are {}",
                    if signature.ends_in == Scores::Probabilities { "Softmax" } else { "LogSoftmax" },
                    signature.ends_in.name()
                ),
                Some(format!("`scores = \"{}\"` (or leave `scores` out: it is read from the graph)", signature.ends_in.name())),
            );
        }
        _ => {}
    }
    o.signature = Some(signature);
    let Some((input, classes)) = shape else {
        return;
    };
    if let Err(message) = graph_problem(name, o, input, classes) {
        return problems.push(Some(file.span()), message, None);
    }
    // Optimized for the images too (once per process), so a graph that types but cannot run
    // is refused here, not after training starts.
    let output = o.output.as_deref();
    if let Err(e) = crate::onnx::Graph::load(&o.path, &o.digest(), o.item(input), output) {
        graph_unreadable(name, file, &e, problems);
    }
}

fn graph_unreadable(
    name: &str,
    file: &Spanned<String>,
    e: &crate::onnx::OnnxError,
    problems: &mut Problems,
) {
    let hint = if e.message.contains("damaged") {
        "export it again, or copy it again from where it was made"
    } else {
        "export with `torch.onnx.export(model, example, path)` (or Optimum, tf2onnx); docs/manifest.md lists the operators known to work"
    };
    problems.push(
        Some(file.span()),
        format!("`models.{name}.onnx`: {e}"),
        Some(hint.into()),
    );
}

/// Dims as `[?, 3, 32, 32]`.
fn show(dims: &[Option<usize>]) -> String {
    let d: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |d| d.to_string()))
        .collect();
    format!("[{}]", d.join(", "))
}

/// The message for an ONNX model whose graph does not fit images of `[channels, height,
/// width]` with `classes` classes: its input's rank, channels or fixed size, its output's
/// class count, or its normalization's channels.
pub fn graph_problem(
    name: &str,
    spec: &OnnxSpec,
    input: [usize; 3],
    classes: usize,
) -> Result<(), String> {
    let file = spec.path.display();
    let Some(sig) = &spec.signature else {
        return Ok(());
    };
    let [c, h, w] = input;
    let images = format!("[{c}, {h}, {w}] (channels, height, width)");
    if sig.input.len() != 4 {
        return Err(format!(
            "`models.{name}`: `{file}` takes a rank-{} input {}; an image teacher takes [batch, channels, height, width] (`layout = \"nchw\"`) or [batch, height, width, channels] (`\"nhwc\"`)",
            sig.input.len(),
            show(&sig.input)
        ));
    }
    let item = spec.item(input);
    let want = std::iter::once(None)
        .chain(item.iter().map(|&d| Some(d)))
        .collect::<Vec<_>>();
    let fits = sig
        .input
        .iter()
        .zip(&want)
        .skip(1)
        .all(|(g, w)| g.is_none() || g == w);
    if !fits {
        return Err(format!(
            "`models.{name}`: `{file}` takes input {} (`layout = \"{}\"`), the dataset gives images of {images}{}",
            show(&sig.input),
            spec.layout.name(),
            match spec.size {
                Some(s) => format!(" resized to {s}x{s} by `input.size`"),
                None => String::new(),
            }
        ));
    }
    if let Some((mean, _)) = &spec.normalize
        && mean.len() != c
    {
        return Err(format!(
            "`models.{name}.input`: `mean` and `std` hold {} values, the dataset's images have {c} channels",
            mean.len()
        ));
    }
    let outputs: Option<usize> = sig.output.iter().skip(1).copied().product();
    let Some(outputs) = outputs.filter(|_| !sig.output.is_empty()) else {
        return Ok(());
    };
    match &spec.class_map {
        None if outputs != classes => Err(format!(
            "`models.{name}`: `{file}` gives {outputs} outputs per image (output {}), the dataset has {classes} classes",
            show(&sig.output)
        ) + "; `class-map = [..]` picks the output of each class"),
        Some(map) if map.len() != classes => Err(format!(
            "`models.{name}.class-map` lists {} outputs, the dataset has {classes} classes",
            map.len()
        )),
        Some(map) if map.iter().any(|&i| i >= outputs) => Err(format!(
            "`models.{name}.class-map` names output {}, `{file}` gives {outputs} per image",
            map.iter().max().expect("not empty")
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Layout, read_layout};

    #[test]
    fn the_layout_is_read_only_where_the_input_shows_it() {
        let (s, n) = (Some, None);
        // The images' channels decide, when one of dims 1 and 3 is them.
        assert_eq!(
            read_layout(&[n, s(3), s(32), s(32)], Some(3)),
            Some(Layout::Nchw)
        );
        assert_eq!(
            read_layout(&[n, s(32), s(32), s(3)], Some(3)),
            Some(Layout::Nhwc)
        );
        // Else the fixed one, or the smaller.
        assert_eq!(read_layout(&[n, s(3), n, n], None), Some(Layout::Nchw));
        assert_eq!(read_layout(&[n, n, n, s(1)], None), Some(Layout::Nhwc));
        assert_eq!(
            read_layout(&[n, s(3), s(40), s(40)], None),
            Some(Layout::Nchw)
        );
        // Nothing shows where the channels are.
        assert_eq!(read_layout(&[n, n, n, n], Some(3)), None);
        assert_eq!(read_layout(&[n, s(32), n, s(32)], None), None);
        assert_eq!(read_layout(&[n, s(3), s(3), s(3)], Some(3)), None);
        assert_eq!(read_layout(&[n, s(3), s(8)], Some(3)), None);
    }
}
