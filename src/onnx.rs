//! ONNX graphs run through tract (pure Rust, built from crates like the rest): what a graph
//! takes and gives ([`Signature`]), and its forward pass over batches of `f32` images
//! ([`Graph`]). Frozen teachers use it; what they feed it (normalization, resizing, layout) and
//! take from it (a class map) is theirs.

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
}

/// What a graph takes and gives, read from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// Dims of its one input (`None`: left open by the export, e.g. a dynamic batch).
    pub input: Vec<Option<usize>>,
    /// Dims of its first output for one image (batch dim 1; `None` where they depend on open
    /// input dims).
    pub output: Vec<Option<usize>>,
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
    }
}

/// The dims of a fact, `None` where not concrete.
fn dims(shape: &ShapeFactoid) -> Vec<Option<usize>> {
    shape
        .dims()
        .map(|d| d.concretize().and_then(|d| d.to_usize().ok()))
        .collect()
}

fn load(path: &Path) -> Result<InferenceModel, OnnxError> {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(fail(path))?;
    let (inputs, outputs) = (model.inputs.len(), model.outputs.len());
    if inputs != 1 || outputs == 0 {
        return Err(OnnxError {
            path: path.to_path_buf(),
            message: format!(
                "the graph takes {inputs} inputs and gives {outputs} outputs; an image teacher takes one input (the images) and gives logits"
            ),
        });
    }
    Ok(model)
}

/// Reads the graph of `path`: its input's dims, its output's dims for one image, its size and
/// cost. `item` stands in for input dims after the batch that the export left open.
pub fn inspect(path: &Path, item: Option<[usize; 3]>) -> Result<Signature, OnnxError> {
    let model = load(path)?;
    let input = dims(&model.input_fact(0).map_err(fail(path))?.shape);
    let params = model
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<Const>())
        .filter(|k| k.val().datum_type().is_float())
        .map(|k| k.val().len() as u64)
        .sum();
    // At the batch the export fixed, if it did: graphs with a fixed batch often hold it in
    // folded constants (a reshape to `[8, ...]`).
    let batch = input.first().copied().flatten().unwrap_or(1);
    let mut concrete = vec![batch];
    for (i, d) in input.iter().enumerate().skip(1) {
        match (d, item) {
            (Some(d), _) => concrete.push(*d),
            (None, Some(item)) if i <= 3 => concrete.push(item[i - 1]),
            (None, _) => {
                return Ok(Signature {
                    output: Vec::new(),
                    input,
                    params,
                    forward_flops: 0,
                });
            }
        }
    }
    let typed = model
        .with_input_fact(0, f32::fact(&concrete).into())
        .and_then(|m| m.into_typed())
        .map_err(fail(path))?;
    // Dims for one image: the batch dim read as 1.
    let output = typed
        .output_fact(0)
        .map_err(fail(path))?
        .shape
        .iter()
        .enumerate()
        .map(|(i, d)| if i == 0 { Some(1) } else { d.to_usize().ok() })
        .collect();
    Ok(Signature {
        input,
        output,
        params,
        forward_flops: 2 * multiply_adds(&typed).map_err(fail(path))? / batch as u64,
    })
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

/// A graph ready to run on batches of images of one shape.
#[derive(Debug, Clone)]
pub struct Graph {
    plan: Arc<TypedRunnableModel>,
    /// The batch size the export fixed, if it did (batches are then cut or padded to it).
    fixed_batch: Option<usize>,
    /// Dims of one image as the graph takes it.
    item: [usize; 3],
    path: PathBuf,
}

impl Graph {
    /// Loads and optimizes `path` for images of dims `item` (in the graph's layout); a batch
    /// dim left open by the export stays open, so any batch runs in one call.
    pub fn load(path: &Path, item: [usize; 3]) -> Result<Self, OnnxError> {
        let model = load(path)?;
        let declared = dims(&model.input_fact(0).map_err(fail(path))?.shape);
        let fixed_batch = declared.first().copied().flatten();
        let batch = match fixed_batch {
            Some(b) => b.to_dim(),
            None => model.sym("N").to_dim(),
        };
        let shape = [batch, item[0].to_dim(), item[1].to_dim(), item[2].to_dim()];
        let plan = model
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(fail(path))?;
        Ok(Self {
            plan,
            fixed_batch,
            item,
            path: path.to_path_buf(),
        })
    }

    /// The first output for `n` images (`pixels`, row-major `[n, item...]`), flattened per
    /// image: `n` rows of equal length.
    pub fn run(&self, pixels: &[f32], n: usize) -> Result<Vec<f32>, OnnxError> {
        let per_image: usize = self.item.iter().product();
        let chunk = self.fixed_batch.unwrap_or(n.max(1));
        let mut out = Vec::new();
        for images in pixels.chunks(chunk * per_image) {
            let rows = images.len() / per_image;
            // A fixed batch larger than what is left runs on zero images after them.
            let mut padded = images.to_vec();
            padded.resize(chunk * per_image, 0.0);
            let shape = [chunk, self.item[0], self.item[1], self.item[2]];
            let input = Tensor::from_shape(&shape, &padded).map_err(fail(&self.path))?;
            let result = self
                .plan
                .run(tvec!(input.into_tvalue()))
                .map_err(fail(&self.path))?;
            let logits: Vec<f32> = result[0]
                .cast_to::<f32>()
                .and_then(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect()))
                .map_err(fail(&self.path))?;
            out.extend_from_slice(&logits[..logits.len() / chunk * rows]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet8() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/data/fruit-resnet8.onnx")
    }

    #[test]
    fn a_graph_says_what_it_takes_and_gives() {
        let s = inspect(&resnet8(), None).unwrap();
        assert_eq!(s.input, [None, Some(3), Some(40), Some(40)]);
        assert_eq!(s.output, [Some(1), Some(5)]);
        // The initializers' values, as the `onnx` package counts them.
        assert_eq!(s.params, 77_381);
        assert!(s.forward_flops > 2 * 77_381, "{}", s.forward_flops);
    }

    #[test]
    fn batches_of_any_size_give_each_image_its_own_logits() {
        let graph = Graph::load(&resnet8(), [3, 40, 40]).unwrap();
        let per_image = 3 * 40 * 40;
        let pixels: Vec<f32> = (0..3 * per_image)
            .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
            .collect();
        let all = graph.run(&pixels, 3).unwrap();
        assert_eq!(all.len(), 15);
        for i in 0..3 {
            let one = graph
                .run(&pixels[i * per_image..(i + 1) * per_image], 1)
                .unwrap();
            for (a, b) in one.iter().zip(&all[i * 5..(i + 1) * 5]) {
                assert!((a - b).abs() < 1e-5, "image {i}: {a} vs {b}");
            }
        }
        assert_ne!(all[..5], all[5..10]);
    }
}
