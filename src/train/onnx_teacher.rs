//! A frozen ONNX model as a teacher: kdgrid's normalized batches turned into what the graph was
//! trained on (its own normalization, its input size, its layout), run through tract, and its
//! outputs picked for the dataset's classes.

use super::TrainError;
use crate::data::Dataset;
use crate::manifest::{Layout, OnnxSpec};
use crate::onnx::Graph;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor, TensorData};
use std::sync::Arc;

/// An ONNX model ready to give logits for `data`'s images.
#[derive(Debug, Clone)]
pub struct OnnxTeacher {
    graph: Arc<Graph>,
    /// Per channel: the graph's input is `x * scale + shift` of kdgrid's normalized `x`.
    affine: Option<(Vec<f32>, Vec<f32>)>,
    /// `[height, width]` to resize to, when the dataset's differ.
    resize: Option<[usize; 2]>,
    layout: Layout,
    class_map: Option<Vec<usize>>,
    classes: usize,
    /// Floating-point values the graph holds.
    pub params: usize,
}

impl OnnxTeacher {
    /// Checks that model `name`'s graph fits `data`'s images and classes (typing it, without
    /// optimizing it to run); returns the spec with the graph's signature for these images.
    pub fn check(name: &str, spec: &OnnxSpec, data: &Dataset) -> Result<OnnxSpec, TrainError> {
        let fail = |message: String| TrainError::ModelFile {
            path: spec.path.clone(),
            message,
        };
        let input = [data.channels, data.height, data.width];
        let signature = crate::onnx::inspect(&spec.path, Some(spec.item(input)))
            .map_err(|e| fail(e.message))?;
        let checked = OnnxSpec {
            signature: Some(signature),
            ..spec.clone()
        };
        crate::manifest::graph_problem(name, &checked, input, data.classes).map_err(fail)?;
        Ok(checked)
    }

    /// Loads `spec`'s graph for `data`'s images, checking that it fits them first.
    pub fn load(name: &str, spec: &OnnxSpec, data: &Dataset) -> Result<Self, TrainError> {
        let checked = Self::check(name, spec, data)?;
        let input = [data.channels, data.height, data.width];
        let graph =
            Graph::load(&spec.path, spec.item(input)).map_err(|e| TrainError::ModelFile {
                path: spec.path.clone(),
                message: e.message,
            })?;
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
            graph: Arc::new(graph),
            affine,
            resize: checked.resize(input),
            layout: spec.layout,
            class_map: spec.class_map.clone(),
            classes: data.classes,
            params: checked.signature.as_ref().map_or(0, |s| s.params as usize),
        })
    }

    /// The graph's logits for a batch of kdgrid-normalized images `[n, c, h, w]`, one column
    /// per dataset class.
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
        let out = self.graph.run(&pixels, n).unwrap_or_else(|e| panic!("{e}"));
        let k = out.len() / n.max(1);
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
