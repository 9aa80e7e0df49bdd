//! A graph's forward pass over batches of images, always at a concrete batch size.
//!
//! A batch dim the export left open stays symbolic in tract if kdgrid leaves it so, and a
//! symbolic graph runs 2–7x slower and holds every intermediate of the whole call at once
//! (a MobileNetV2 took 4.45 GB for 1,000 images). So images go through in chunks of [`CHUNK`],
//! each size optimized once: the remainder of a call runs as power-of-two pieces, so a process
//! compiles at most a handful of sizes, and the same call always cuts the same way (the logits
//! of a batch are a function of its size, never of what ran before).

use super::memo::Memo;
use super::{OnnxError, Parsed, fail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

/// Images per call of a graph whose batch the export left open: large enough for tract's
/// matrix kernels to run at full width, small enough that a call's intermediates stay in tens
/// of megabytes (docs/performance.md has the measurement).
pub const CHUNK: usize = 32;

/// A graph ready to run on batches of images of one shape.
#[derive(Debug)]
pub struct Graph {
    /// The parsed graph with only the chosen output.
    model: InferenceModel,
    /// The batch size the export fixed, if it did (batches are then cut or padded to it).
    fixed_batch: Option<usize>,
    /// Dims of one image as the graph takes it.
    item: [usize; 3],
    path: PathBuf,
    /// Optimized plans by batch size.
    plans: Mutex<BTreeMap<usize, Arc<TypedRunnableModel>>>,
}

type Key = (PathBuf, String, [usize; 3], Option<String>);

/// One piece's output, or why it failed.
type Piece = Result<Vec<f32>, OnnxError>;

/// Graphs loaded in this process: a teacher's graph is optimized once, however many stages it
/// teaches.
static LOADED: Memo<Key, Arc<Graph>> = Memo::new();

impl Graph {
    /// Loads `path` (content digest `digest`) for images of dims `item` (in the graph's
    /// layout), reading its output `output` (its only one when `None`), and optimizes it for
    /// the batch size its calls mostly have, so a graph that tract cannot run fails here,
    /// before anything trains. Loaded once per process.
    pub fn load(
        path: &Path,
        digest: &str,
        item: [usize; 3],
        output: Option<&str>,
    ) -> Result<Arc<Self>, OnnxError> {
        let key = (
            path.to_path_buf(),
            digest.to_string(),
            item,
            output.map(str::to_string),
        );
        LOADED.get_or_try(key, || {
            let parsed: Parsed = super::parse(path, digest)?;
            let (names, index) = super::choose_output(path, &parsed, output)?;
            let index = index.ok_or_else(|| OnnxError {
                path: path.to_path_buf(),
                message: format!(
                    "the graph gives {} outputs ({}); `output = \"..\"` names the logits",
                    names.len(),
                    super::quoted(&names)
                ),
                kind: super::ErrorKind::Other,
            })?;
            let model = super::with_output(path, &parsed, index)?;
            let declared = super::input_dims(path, digest)?.first().copied().flatten();
            let mut graph = Self {
                model,
                fixed_batch: declared,
                item,
                path: path.to_path_buf(),
                plans: Mutex::default(),
            };
            if let Err(open) = graph.plan(graph.fixed_batch.unwrap_or(CHUNK)) {
                // An input declared open over a graph that holds batch 1 inside (torch.export
                // specializes an example batch of 1: a reshape to `[1, 1280]`) runs one image
                // at a time, as the export really took them.
                graph.fixed_batch = Some(1);
                if declared.is_some() || graph.plan(1).is_err() {
                    return Err(open);
                }
            }
            Ok(Arc::new(graph))
        })
    }

    /// The plan for batches of exactly `batch` images, optimized on first use.
    fn plan(&self, batch: usize) -> Result<Arc<TypedRunnableModel>, OnnxError> {
        if let Some(plan) = self.plans.lock().expect("not poisoned").get(&batch) {
            return Ok(plan.clone());
        }
        let [a, b, c] = self.item;
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact([batch, a, b, c]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(fail(&self.path))?;
        self.plans
            .lock()
            .expect("not poisoned")
            .insert(batch, plan.clone());
        Ok(plan)
    }

    /// The sizes `n` images run in: whole chunks, then the rest (padded to the fixed batch,
    /// or cut into powers of two).
    fn pieces(&self, n: usize) -> Vec<usize> {
        let chunk = self.fixed_batch.unwrap_or(CHUNK);
        let mut pieces = vec![chunk; n / chunk];
        let rest = n % chunk;
        if self.fixed_batch.is_some() {
            pieces.extend((rest > 0).then_some(rest));
        } else {
            pieces.extend(
                (0..usize::BITS)
                    .rev()
                    .map(|b| 1 << b)
                    .filter(|p| rest & p != 0),
            );
        }
        pieces
    }

    /// The chosen output for `n` images (`pixels`, row-major `[n, item...]`), flattened per
    /// image: `n` rows of equal length. The pieces a call cuts into run on up to `threads`
    /// threads; each piece's logits depend only on its images and size, never on the thread
    /// that ran it, so every thread count gives the same bits.
    pub fn run(&self, pixels: &[f32], n: usize, threads: usize) -> Result<Vec<f32>, OnnxError> {
        let per_image: usize = self.item.iter().product();
        let mut pieces = Vec::new();
        let mut start = 0;
        for rows in self.pieces(n) {
            pieces.push((start, rows));
            start += rows;
        }
        let run_group = |group: &[(usize, usize)]| -> Piece {
            let mut out = Vec::new();
            for &(start, rows) in group {
                let images = &pixels[start * per_image..(start + rows) * per_image];
                out.extend(self.run_piece(images, rows)?);
            }
            Ok(out)
        };
        // Consecutive pieces per thread, about n / threads images each.
        let target = n.div_ceil(threads.max(1)).max(1);
        let mut groups: Vec<&[(usize, usize)]> = Vec::new();
        let (mut first, mut images) = (0, 0);
        for (i, &(_, rows)) in pieces.iter().enumerate() {
            images += rows;
            if images >= target || i + 1 == pieces.len() {
                groups.push(&pieces[first..=i]);
                (first, images) = (i + 1, 0);
            }
        }
        let outputs: Vec<Piece> = match groups.as_slice() {
            [] => Vec::new(),
            [one] => vec![run_group(one)],
            _ => std::thread::scope(|scope| {
                let handles: Vec<_> = groups
                    .iter()
                    .map(|group| scope.spawn(|| run_group(group)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            }),
        };
        Ok(outputs.into_iter().collect::<Result<Vec<_>, _>>()?.concat())
    }

    /// The output for `rows` images, one call of the graph.
    fn run_piece(&self, images: &[f32], rows: usize) -> Piece {
        // A fixed batch larger than what is left runs on zero images after them.
        let batch = self.fixed_batch.unwrap_or(rows);
        let [a, b, c] = self.item;
        let shape = [batch, a, b, c];
        let input = if batch == rows {
            Tensor::from_shape(&shape, images)
        } else {
            let mut padded = images.to_vec();
            padded.resize(batch * a * b * c, 0.0);
            Tensor::from_shape(&shape, &padded)
        }
        .map_err(fail(&self.path))?;
        let result = self
            .plan(batch)?
            .run(tvec!(input.into_tvalue()))
            .map_err(fail(&self.path))?;
        let mut values = result[0]
            .cast_to::<f32>()
            .and_then(|t| {
                Ok(t.to_plain_array_view::<f32>()?
                    .iter()
                    .copied()
                    .collect::<Vec<_>>())
            })
            .map_err(fail(&self.path))?;
        values.truncate(values.len() / batch * rows);
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::resnet8;
    use super::*;

    #[test]
    fn batches_of_any_size_give_each_image_its_own_logits() {
        let graph = Graph::load(&resnet8(), "shipped", [3, 40, 40], None).unwrap();
        assert_eq!(graph.pieces(3), [2, 1]);
        assert_eq!(graph.pieces(2 * CHUNK + 5), [CHUNK, CHUNK, 4, 1]);
        let per_image = 3 * 40 * 40;
        let n = CHUNK + 3;
        let pixels: Vec<f32> = (0..n * per_image)
            .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
            .collect();
        let all = graph.run(&pixels, n, 1).unwrap();
        // Pieces run on several threads give the same bits.
        assert_eq!(graph.run(&pixels, n, 3).unwrap(), all);
        assert_eq!(graph.run(&pixels, n, 64).unwrap(), all);
        assert_eq!(all.len(), n * 5);
        for i in [0, 1, CHUNK, n - 1] {
            let one = graph
                .run(&pixels[i * per_image..(i + 1) * per_image], 1, 2)
                .unwrap();
            for (a, b) in one.iter().zip(&all[i * 5..(i + 1) * 5]) {
                assert!((a - b).abs() < 1e-5, "image {i}: {a} vs {b}");
            }
        }
        assert_ne!(all[..5], all[5..10]);
        // Loaded once: a second load is the same graph, its plans already optimized.
        let again = Graph::load(&resnet8(), "shipped", [3, 40, 40], None).unwrap();
        assert!(Arc::ptr_eq(&graph, &again));
    }
}
