//! A frozen ONNX model as a teacher: kdgrid's normalized batches turned into what the graph was
//! trained on (its own normalization, its input size, its layout), run through tract, and its
//! outputs picked for the dataset's classes.

use super::TrainError;
use crate::data::Dataset;
use crate::manifest::{Layout, OnnxSpec};
use crate::onnx::{Graph, Scores};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor, TensorData};
use std::sync::Arc;

/// An ONNX model ready to give logits for `data`'s images.
#[derive(Debug, Clone)]
pub struct OnnxTeacher {
    graph: Arc<Graph>,
    path: std::path::PathBuf,
    /// Per channel: the graph's input is `x * scale + shift` of kdgrid's normalized `x`.
    affine: Option<(Vec<f32>, Vec<f32>)>,
    /// `[height, width]` to resize to, when the dataset's differ.
    resize: Option<[usize; 2]>,
    layout: Layout,
    class_map: Option<Vec<usize>>,
    scores: Scores,
    threads: usize,
    classes: usize,
    /// Floating-point values the graph holds.
    pub params: usize,
}

impl OnnxTeacher {
    /// Checks that model `name`'s graph fits `data`'s images and classes, and that tract can
    /// run it; returns the spec with the graph's signature for these images.
    pub fn check(name: &str, spec: &OnnxSpec, data: &Dataset) -> Result<OnnxSpec, TrainError> {
        Ok(Self::checked(name, spec, data)?.0)
    }

    /// [`OnnxTeacher::check`], and the graph optimized for `data`'s images (once per process:
    /// the sweep's check optimizes it before anything trains, the stages that run it reuse it).
    fn checked(
        name: &str,
        spec: &OnnxSpec,
        data: &Dataset,
    ) -> Result<(OnnxSpec, Arc<Graph>), TrainError> {
        let fail = |message: String| TrainError::ModelFile {
            path: spec.path.clone(),
            message,
        };
        let input = [data.channels, data.height, data.width];
        let item = spec.item(input);
        let output = spec.output.as_deref();
        let signature = crate::onnx::inspect(&spec.path, &spec.digest(), Some(item), output)
            .map_err(|e| fail(e.message))?;
        let checked = OnnxSpec {
            signature: Some(signature),
            ..spec.clone()
        };
        crate::manifest::graph_problem(name, &checked, input, data.classes).map_err(fail)?;
        let graph =
            Graph::load(&spec.path, &spec.digest(), item, output).map_err(|e| fail(e.message))?;
        Ok((checked, graph))
    }

    /// Loads `spec`'s graph for `data`'s images, checking that it fits them first; a batch
    /// runs on up to `threads` threads.
    pub fn load(
        name: &str,
        spec: &OnnxSpec,
        data: &Dataset,
        threads: usize,
    ) -> Result<Self, TrainError> {
        let (checked, graph) = Self::checked(name, spec, data)?;
        let input = [data.channels, data.height, data.width];
        // x_graph = (x_raw - mean_g) / std_g with x_raw = x * std_d + mean_d.
        let affine = spec.normalize.as_ref().map(|(mean, std)| {
            (0..data.channels)
                .map(|c| {
                    let scale = data.std[c] as f64 / std[c];
                    let shift = (data.mean[c] as f64 - mean[c]) / std[c];
                    (scale as f32, shift as f32)
                })
                .unzip()
        });
        Ok(Self {
            graph,
            path: spec.path.clone(),
            affine,
            resize: checked.resize(input),
            layout: spec.layout,
            class_map: spec.class_map.clone(),
            scores: spec.scores,
            threads,
            classes: data.classes,
            params: checked.signature.as_ref().map_or(0, |s| s.params as usize),
        })
    }

    /// The graph's logits for a batch of kdgrid-normalized images `[n, c, h, w]`, one column
    /// per dataset class (the log of its probabilities, for a graph that gives those).
    ///
    /// A graph that fails to run, or whose "logits" are probabilities, fails the stage that
    /// runs it: the error unwinds to the stage (without the panic hook's backtrace), which
    /// records it as failed, naming the file.
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let device = x.device();
        let [n, c, _, _] = x.dims();
        if n == 0 {
            return Tensor::<2>::zeros([0, self.classes], &device);
        }
        let mut x = x;
        if let Some((scale, shift)) = &self.affine {
            let column = |v: &[f32]| {
                Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, c, 1, 1]), &device)
            };
            x = x * column(scale) + column(shift);
        }
        if let Some(size) = self.resize {
            // PyTorch's `F.interpolate(x, size, mode="bilinear", align_corners=False)`.
            let mut options = InterpolateOptions::new(InterpolateMode::Bilinear);
            options.align_corners = false;
            options.output_size = Some(size);
            x = interpolate(x, options);
        }
        if self.layout == Layout::Nhwc {
            x = x.permute([0, 2, 3, 1]);
        }
        let pixels: Vec<f32> = x.into_data().iter::<f32>().collect();
        let mut out = self
            .graph
            .run(&pixels, n, self.threads)
            .unwrap_or_else(|e| std::panic::resume_unwind(Box::new(e.to_string())));
        let k = out.len() / n.max(1);
        match self.scores {
            Scores::Probabilities if !look_like_probabilities(&out, k) => {
                std::panic::resume_unwind(Box::new(format!(
                    "ONNX model `{}`: `scores = \"probabilities\"`, but its outputs are not probabilities (a row is negative, NaN, or does not sum to 1)",
                    self.path.display()
                )))
            }
            Scores::Probabilities => {
                // ln of a probability of 0 would be -inf: clamp at the smallest normal f32, as
                // ensembles averaging probabilities do.
                out.iter_mut()
                    .for_each(|p| *p = p.max(f32::MIN_POSITIVE).ln());
            }
            Scores::Logits if n >= 2 && look_like_probabilities(&out, k) => {
                std::panic::resume_unwind(Box::new(format!(
                    "ONNX model `{}`: its outputs are probabilities (every row is non-negative and sums to 1), not logits; set `scores = \"probabilities\"` and kdgrid takes their log",
                    self.path.display()
                )))
            }
            _ => {}
        }
        let logits = Tensor::<2>::from_data(TensorData::new(out, [n, k]), &device);
        match &self.class_map {
            Some(map) => {
                let ids: Vec<i64> = map.iter().map(|&i| i as i64).collect();
                let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [map.len()]), &device);
                logits.select(1, ids)
            }
            None => logits,
        }
    }
}

/// Whether rows of `k` values are all probability distributions (within f32 rounding).
fn look_like_probabilities(out: &[f32], k: usize) -> bool {
    k > 1
        && out.chunks(k).all(|row| {
            let sum: f64 = row.iter().map(|&p| p as f64).sum();
            row.iter().all(|&p| p >= 0.0) && (sum - 1.0).abs() < 1e-4
        })
}

#[cfg(test)]
mod tests {
    use super::look_like_probabilities;

    #[test]
    fn probabilities_are_told_from_logits() {
        assert!(look_like_probabilities(&[0.2, 0.8, 1.0, 0.0], 2));
        assert!(!look_like_probabilities(&[0.2, 0.8, 1.5, -0.5], 2));
        assert!(!look_like_probabilities(&[0.2, 0.8, 0.5, 0.6], 2));
        assert!(!look_like_probabilities(&[1.0, 1.0], 1));
    }
}
