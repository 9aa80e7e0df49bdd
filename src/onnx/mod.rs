//! ONNX graphs run through tract (pure Rust, built from crates like the rest): what a graph
//! takes and gives ([`Signature`]), the files its weights live in ([`side_files`]), and its
//! forward pass over batches of `f32` images ([`Graph`]). Frozen teachers use it; what they feed
//! it (normalization, resizing, layout) and take from it (a class map) is theirs.
//!
//! A graph is parsed once per process (a 400 MB file took seconds and gigabytes each time): the
//! parsed model is kept, keyed by its path and digest, for every later look and load.

mod graph;
mod memo;
mod side_files;

pub use graph::{CHUNK, Graph};
pub use side_files::side_files;

use memo::Memo;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_core::ops::{Cost, konst::Const};
use tract_onnx::tract_hir::infer::{Factoid, ShapeFactoid};

/// A graph that cannot be read or run, with tract's reason.
#[derive(Debug, thiserror::Error)]
#[error("ONNX model `{path}`: {message}")]
pub struct OnnxError {
    /// The `.onnx` file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
    /// What kind of failure, for callers that answer them differently.
    pub kind: ErrorKind,
}

/// What kind of failure an [`OnnxError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file is not a whole ONNX graph.
    Damaged,
    /// The output the manifest names is not one of the graph's.
    NoSuchOutput,
    /// Anything else tract refused (an operator, a shape).
    Other,
}

/// What a graph's output holds per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scores {
    /// Logits (what a classifier's last linear layer gives).
    #[default]
    Logits,
    /// Probabilities (the graph ends in a softmax): their log is the teacher's logits.
    Probabilities,
    /// Log-probabilities (the graph ends in a log-softmax): logits as they are.
    LogProbabilities,
}

impl Scores {
    /// The manifest's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Scores::Logits => "logits",
            Scores::Probabilities => "probabilities",
            Scores::LogProbabilities => "log-probabilities",
        }
    }

    /// Whether these are logits (the default, left out of stage ids).
    pub fn is_logits(&self) -> bool {
        *self == Scores::Logits
    }
}

/// What a graph takes and gives, read from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// Dims of its one input (`None`: left open by the export, e.g. a dynamic batch).
    pub input: Vec<Option<usize>>,
    /// The names of its outputs, in the graph's order.
    pub outputs: Vec<String>,
    /// Dims of the chosen output for one image (batch dim 1; `None` where they depend on open
    /// input dims; empty when the graph has several outputs and none was chosen).
    pub output: Vec<Option<usize>>,
    /// What the chosen output holds, as its last operator says (`Softmax`, `LogSoftmax`, or
    /// anything else: logits).
    pub ends_in: Scores,
    /// Floating-point values the graph holds (its initializers: weights, and batch-norm
    /// statistics unless the export folded them).
    pub params: u64,
    /// Multiply-adds of one forward pass of one image, counted as 2 FLOPs each (0 when the
    /// input's dims are open).
    pub forward_flops: u64,
}

fn fail(path: &Path) -> impl Fn(TractError) -> OnnxError + '_ {
    move |e| OnnxError {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
        kind: ErrorKind::Other,
    }
}

/// The dims of a fact, `None` where not concrete.
fn dims(shape: &ShapeFactoid) -> Vec<Option<usize>> {
    shape
        .dims()
        .map(|d| d.concretize().and_then(|d| d.to_usize().ok()))
        .collect()
}

type Parsed = Arc<InferenceModel>;

/// Graphs parsed in this process, by path and digest.
static PARSED: Memo<(PathBuf, String), Parsed> = Memo::new();

/// The graph of `path` (whose content has digest `digest`), parsed once per process.
///
/// The shapes the exporter annotated inside the graph (`value_info`) are not read: kdgrid sets
/// the input's shape itself, and torch 2.9's exporter names the batch with symbols of its own
/// that cannot be unified with a concrete one; tract infers every shape from the input.
fn parse(path: &Path, digest: &str) -> Result<Parsed, OnnxError> {
    PARSED.get_or_try((path.to_path_buf(), digest.to_string()), || {
        let model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .model_for_path(path)
            .map_err(|e| damaged(path, e))?;
        let (inputs, outputs) = (model.inputs.len(), model.outputs.len());
        if inputs != 1 || outputs == 0 {
            return Err(OnnxError {
                path: path.to_path_buf(),
                message: format!(
                    "the graph takes {inputs} inputs and gives {outputs} outputs; an image teacher takes one input (the images) and gives logits"
                ),
                kind: ErrorKind::Other,
            });
        }
        Ok(Arc::new(model))
    })
}

/// Dims of the graph's one input (`None`: left open by the export), without typing the graph.
pub fn input_dims(path: &Path, digest: &str) -> Result<Vec<Option<usize>>, OnnxError> {
    Ok(dims(
        &parse(path, digest)?
            .input_fact(0)
            .map_err(fail(path))?
            .shape,
    ))
}

/// tract's reason a file did not parse, said as what it means for a user: a file cut short or
/// not an ONNX graph is damaged, whatever exporter wrote it.
fn damaged(path: &Path, e: TractError) -> OnnxError {
    let text = format!("{e:#}");
    let protobuf = e
        .chain()
        .any(|c| c.downcast_ref::<prost::DecodeError>().is_some());
    let (message, kind) = if protobuf {
        let bytes = path.metadata().map_or(0, |m| m.len());
        let said = format!(
            "the file ({bytes} bytes) is not a whole ONNX graph: it is damaged or cut short (a copy or download that stopped?), or not ONNX at all ({text})"
        );
        (said, ErrorKind::Damaged)
    } else {
        (text, ErrorKind::Other)
    };
    OnnxError {
        path: path.to_path_buf(),
        message,
        kind,
    }
}

/// The graph's output names, and the index of `chosen` among them (`None` when none was chosen
/// and there are several).
fn choose_output(
    path: &Path,
    model: &InferenceModel,
    chosen: Option<&str>,
) -> Result<(Vec<String>, Option<usize>), OnnxError> {
    let names: Vec<String> = model
        .output_outlets()
        .map_err(fail(path))?
        .iter()
        .enumerate()
        .map(|(i, o)| {
            model
                .outlet_label(*o)
                .map_or_else(|| format!("#{i}"), str::to_string)
        })
        .collect();
    let index = match chosen {
        Some(name) => Some(
            names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| OnnxError {
                    path: path.to_path_buf(),
                    message: format!(
                        "the graph has no output `{name}`; its outputs are {}",
                        quoted(&names)
                    ),
                    kind: ErrorKind::NoSuchOutput,
                })?,
        ),
        None if names.len() == 1 => Some(0),
        None => None,
    };
    Ok((names, index))
}

/// `a`, `b` and `c`, in backticks.
pub fn quoted(names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    names.join(", ")
}

/// `model` with output `index` as its only output (other heads are not computed).
fn with_output(
    path: &Path,
    model: &InferenceModel,
    index: usize,
) -> Result<InferenceModel, OnnxError> {
    let mut model = model.clone();
    let outlet = model.output_outlets().map_err(fail(path))?[index];
    model.select_output_outlets(&[outlet]).map_err(fail(path))?;
    Ok(model)
}

/// What the output at `outlet` holds, from the operator that computes it, looking through
/// operators that only reshape.
fn ends_in(model: &InferenceModel, outlet: OutletId) -> Scores {
    let mut node = model.node(outlet.node);
    loop {
        // tract's names: opset 13's `Softmax`, the older opsets' `LayerSoftmax`, every opset's
        // `LogSoftmax` as `LayerLogSoftmax`; `Squeeze13`/`Unsqueeze13` from opset 13.
        match node.op.name().as_ref() {
            "Softmax" | "LayerSoftmax" => return Scores::Probabilities,
            "LogSoftmax" | "LayerLogSoftmax" => return Scores::LogProbabilities,
            "Reshape" | "Flatten" | "Squeeze" | "Squeeze13" | "Unsqueeze" | "Unsqueeze13"
            | "Identity" | "Cast"
                if !node.inputs.is_empty() =>
            {
                node = model.node(node.inputs[0].node);
            }
            _ => return Scores::Logits,
        }
    }
}

/// Reads the graph of `path` (content digest `digest`): its input's dims, its outputs, the
/// chosen one's dims for one image and what it holds, its size and cost. `item` stands in for
/// input dims after the batch that the export left open; `output` names the output to read
/// (needed only when there are several).
pub fn inspect(
    path: &Path,
    digest: &str,
    item: Option<[usize; 3]>,
    output: Option<&str>,
) -> Result<Signature, OnnxError> {
    // Typed once per process for each question: the manifest check, the sweep's check and
    // every stage a teacher teaches ask the same one.
    type Question = (PathBuf, String, Option<[usize; 3]>, Option<String>);
    static SIGNATURES: Memo<Question, Signature> = Memo::new();
    let key = (
        path.to_path_buf(),
        digest.to_string(),
        item,
        output.map(str::to_string),
    );
    SIGNATURES.get_or_try(key, || read_signature(path, digest, item, output))
}

fn read_signature(
    path: &Path,
    digest: &str,
    item: Option<[usize; 3]>,
    output: Option<&str>,
) -> Result<Signature, OnnxError> {
    let parsed = parse(path, digest)?;
    let input = input_dims(path, digest)?;
    let params = parsed
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<Const>())
        .filter(|k| k.val().datum_type().is_float())
        .map(|k| k.val().len() as u64)
        .sum();
    let (outputs, index) = choose_output(path, &parsed, output)?;
    let mut signature = Signature {
        input,
        outputs,
        output: Vec::new(),
        ends_in: Scores::Logits,
        params,
        forward_flops: 0,
    };
    let Some(index) = index else {
        return Ok(signature);
    };
    let model = with_output(path, &parsed, index)?;
    signature.ends_in = ends_in(&model, model.output_outlets().map_err(fail(path))?[0]);
    // At the batch the export fixed, if it did: graphs with a fixed batch often hold it in
    // folded constants (a reshape to `[8, ...]`).
    let input = &signature.input;
    let batch = input.first().copied().flatten().unwrap_or(1);
    let mut concrete = vec![batch];
    for (i, d) in input.iter().enumerate().skip(1) {
        match (d, item) {
            (Some(d), _) => concrete.push(*d),
            (None, Some(item)) if i <= 3 => concrete.push(item[i - 1]),
            (None, _) => return Ok(signature),
        }
    }
    let typed = model
        .with_input_fact(0, f32::fact(&concrete).into())
        .and_then(|m| m.into_typed())
        .map_err(fail(path))?;
    // Dims for one image: the batch dim read as 1.
    signature.output = typed
        .output_fact(0)
        .map_err(fail(path))?
        .shape
        .iter()
        .enumerate()
        .map(|(i, d)| if i == 0 { Some(1) } else { d.to_usize().ok() })
        .collect();
    signature.forward_flops = 2 * multiply_adds(&typed).map_err(fail(path))? / batch as u64;
    Ok(signature)
}

/// Multiply-adds of every node of `model` (all shapes concrete).
fn multiply_adds(model: &TypedModel) -> TractResult<u64> {
    let mut total = 0;
    for node in model.nodes() {
        let facts = model.node_input_facts(node.id)?;
        for (cost, count) in node.op.cost(&facts)? {
            if matches!(cost, Cost::FMA(_)) {
                total += count.to_usize().unwrap_or(0) as u64;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn resnet8() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/data/fruit-resnet8.onnx")
    }

    #[test]
    fn a_graph_says_what_it_takes_and_gives() {
        let s = inspect(&resnet8(), "shipped", None, None).unwrap();
        assert_eq!(s.input, [None, Some(3), Some(40), Some(40)]);
        assert_eq!(s.output, [Some(1), Some(5)]);
        assert_eq!(s.outputs, ["logits"]);
        assert_eq!(s.ends_in, Scores::Logits);
        // The initializers' values, as the `onnx` package counts them.
        assert_eq!(s.params, 77_381);
        assert!(s.forward_flops > 2 * 77_381, "{}", s.forward_flops);
        let err = inspect(&resnet8(), "shipped", None, Some("probs")).unwrap_err();
        assert!(
            err.message.contains("no output `probs`") && err.message.contains("`logits`"),
            "{err}"
        );
    }

    #[test]
    fn a_file_cut_short_is_called_damaged() {
        let bytes = std::fs::read(resnet8()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.onnx");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = inspect(&cut, "cut", None, None).unwrap_err();
        assert!(err.message.contains("damaged or cut short"), "{err}");
    }
}
