//! ONNX teachers: `onnx = "teacher.onnx"`, a frozen model exported from any framework, with
//! how it reads images (`input`) and which of its outputs are the dataset's classes
//! (`class-map`).

use super::ModelSpec;
use super::raw::RawModel;
use crate::manifest::error::Problems;
use crate::manifest::values::{Count, Positive};
use crate::onnx::Signature;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
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

/// `input = { layout = .., size = .., mean = [..], std = [..] }` of an ONNX model.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInput {
    layout: Option<Layout>,
    size: Option<Count>,
    mean: Option<Vec<f64>>,
    std: Option<Vec<Positive>>,
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
    /// How the graph's input holds an image.
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
    /// The graph as read when the manifest was checked (size and cost for `plan`).
    #[serde(skip)]
    pub signature: Option<Signature>,
}

impl OnnxSpec {
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

/// Resolves an ONNX model: its file, digest and graph, and how it reads images.
pub(super) fn check_onnx(
    name: &str,
    file: &Spanned<String>,
    m: &RawModel,
    base: &std::path::Path,
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
            Some("an ONNX model takes `onnx`, `input` and `class-map` only".into()),
        );
    }
    let raw_input = m.input.as_ref().map(|i| i.get_ref().clone());
    let (mean, std) = raw_input
        .as_ref()
        .map(|i| (i.mean.clone(), i.std.clone()))
        .unwrap_or_default();
    let normalize = match (mean, std) {
        (Some(mean), Some(std)) if mean.len() == std.len() => {
            Some((mean, std.into_iter().map(Positive::get).collect()))
        }
        (None, None) => None,
        _ => {
            problems.push(
                m.input.as_ref().map(Spanned::span),
                format!("`models.{name}.input` needs `mean` and `std` together, one value per channel each"),
                Some("e.g. ImageNet's `mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225]`".into()),
            );
            None
        }
    };
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
    let (path, sha256) = super::file_digest(name, "onnx", file, base, problems);
    let mut spec = ModelSpec::bare("onnx");
    spec.onnx = Some(OnnxSpec {
        path,
        sha256,
        layout: raw_input
            .as_ref()
            .and_then(|i| i.layout)
            .unwrap_or_default(),
        size: raw_input.as_ref().and_then(|i| i.size).map(Count::get),
        normalize,
        class_map: m.class_map.as_ref().map(|c| c.get_ref().clone()),
        signature: None,
    });
    spec
}

/// Reads the graph of ONNX model `name` (when the file was read) and checks it against images of
/// `[channels, height, width]` and `classes` classes, when the dataset's shape is known; the
/// graph's signature is kept for `plan`.
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
    let item = shape.map(|(input, _)| o.item(input));
    match crate::onnx::inspect(&o.path, item) {
        Ok(signature) => {
            o.signature = Some(signature);
            if let Some((input, classes)) = shape
                && let Err(message) = graph_problem(name, o, input, classes)
            {
                problems.push(Some(file.span()), message, None);
            }
        }
        Err(e) => problems.push(
            Some(file.span()),
            format!("`models.{name}.onnx`: {e}"),
            Some("export with `torch.onnx.export(model, example, path)` (or Optimum, tf2onnx); docs/manifest.md lists the operators known to work".into()),
        ),
    }
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
    let show = |dims: &[Option<usize>]| {
        let d: Vec<String> = dims
            .iter()
            .map(|d| d.map_or("?".into(), |d| d.to_string()))
            .collect();
        format!("[{}]", d.join(", "))
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
