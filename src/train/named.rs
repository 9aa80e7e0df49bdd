//! Tensors of a model under their PyTorch names and layouts: what `kdgrid trace` exports and
//! what an imported teacher's file is read into. Each architecture lists its tensors once, as
//! [`Slots`], and both directions walk that list.

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Embedding, LayerNorm, Linear};
use burn::tensor::{Tensor, TensorData};

/// A tensor of a model under its PyTorch name, in PyTorch's layout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NamedTensor {
    /// `conv.0.weight`, `bn.0.running_var`, `layer1.0.conv1.weight`, `fc.bias`, ...
    pub name: String,
    /// PyTorch's shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// Where one named tensor lives in a Burn module.
pub(crate) enum Slot<'a> {
    Param4(&'a mut Param<Tensor<4>>),
    Param1(&'a mut Param<Tensor<1>>),
    /// A matrix in PyTorch's layout (embedding tables).
    Param2(&'a mut Param<Tensor<2>>),
    /// Burn keeps linear weights as `[in, out]`, PyTorch as `[out, in]`.
    Linear(&'a mut Param<Tensor<2>>),
    /// Batch norm's running statistics: state, not parameters.
    Running(&'a mut RunningState<Tensor<1>>),
}

impl Slot<'_> {
    /// The shape PyTorch gives this tensor.
    pub(crate) fn shape(&self) -> Vec<usize> {
        match self {
            Slot::Param4(p) => p.val().dims().to_vec(),
            Slot::Param1(p) => p.val().dims().to_vec(),
            Slot::Param2(p) => p.val().dims().to_vec(),
            Slot::Linear(p) => {
                let [i, o] = p.val().dims();
                vec![o, i]
            }
            Slot::Running(r) => r.value().dims().to_vec(),
        }
    }

    /// Its values, row-major in PyTorch's layout.
    pub(crate) fn read(&self) -> Vec<f32> {
        let data = match self {
            Slot::Param4(p) => p.val().into_data(),
            Slot::Param1(p) => p.val().into_data(),
            Slot::Param2(p) => p.val().into_data(),
            Slot::Linear(p) => p.val().transpose().into_data(),
            Slot::Running(r) => r.value().into_data(),
        };
        data.iter::<f32>().collect()
    }

    /// Replaces its values with `values`, row-major in PyTorch's layout and of [`Slot::shape`].
    pub(crate) fn write(&mut self, values: Vec<f32>) {
        let shape = self.shape();
        match self {
            Slot::Param4(p) => **p = replaced(p, values, shape),
            Slot::Param1(p) => **p = replaced(p, values, shape),
            Slot::Param2(p) => **p = replaced(p, values, shape),
            Slot::Linear(p) => {
                let device = p.val().device();
                let t: Tensor<2> = Tensor::from_data(TensorData::new(values, shape), &device);
                **p = Param::from_tensor(t.transpose());
            }
            Slot::Running(r) => {
                let device = r.value().device();
                **r = RunningState::new(Tensor::from_data(TensorData::new(values, shape), &device));
            }
        }
    }

    fn trainable(&self) -> bool {
        !matches!(self, Slot::Running(_))
    }
}

fn replaced<const D: usize>(
    p: &Param<Tensor<D>>,
    values: Vec<f32>,
    shape: Vec<usize>,
) -> Param<Tensor<D>> {
    let device = p.val().device();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), &device))
}

/// Every tensor of a model, in module order, under its PyTorch name.
#[derive(Default)]
pub(crate) struct Slots<'a>(pub(crate) Vec<(String, Slot<'a>)>);

impl<'a> Slots<'a> {
    /// `{prefix}.weight` and `{prefix}.bias` (when it has one) of a conv layer.
    pub(crate) fn conv(&mut self, prefix: &str, conv: &'a mut Conv2d) {
        self.0
            .push((format!("{prefix}.weight"), Slot::Param4(&mut conv.weight)));
        if let Some(b) = &mut conv.bias {
            self.0.push((format!("{prefix}.bias"), Slot::Param1(b)));
        }
    }

    /// A batch norm under PyTorch's names (`weight` and `bias` are Burn's gamma and beta).
    pub(crate) fn norm(&mut self, prefix: &str, bn: &'a mut BatchNorm) {
        self.0
            .push((format!("{prefix}.weight"), Slot::Param1(&mut bn.gamma)));
        self.0
            .push((format!("{prefix}.bias"), Slot::Param1(&mut bn.beta)));
        self.0.push((
            format!("{prefix}.running_mean"),
            Slot::Running(&mut bn.running_mean),
        ));
        self.0.push((
            format!("{prefix}.running_var"),
            Slot::Running(&mut bn.running_var),
        ));
    }

    /// An embedding table, `{prefix}.weight` (`[rows, width]` in both).
    pub(crate) fn embedding(&mut self, prefix: &str, e: &'a mut Embedding) {
        self.0
            .push((format!("{prefix}.weight"), Slot::Param2(&mut e.weight)));
    }

    /// A layer norm: `weight` and `bias` are Burn's gamma and beta.
    pub(crate) fn layer_norm(&mut self, prefix: &str, n: &'a mut LayerNorm) {
        self.0
            .push((format!("{prefix}.weight"), Slot::Param1(&mut n.gamma)));
        if let Some(b) = &mut n.beta {
            self.0.push((format!("{prefix}.bias"), Slot::Param1(b)));
        }
    }

    /// A linear layer, its weight transposed to PyTorch's `[out, in]`.
    pub(crate) fn linear(&mut self, prefix: &str, linear: &'a mut Linear) {
        self.0
            .push((format!("{prefix}.weight"), Slot::Linear(&mut linear.weight)));
        if let Some(b) = &mut linear.bias {
            self.0.push((format!("{prefix}.bias"), Slot::Param1(b)));
        }
    }

    /// Trainable parameters (running statistics left out).
    pub(crate) fn trainable(&self) -> usize {
        self.0
            .iter()
            .filter(|(_, s)| s.trainable())
            .map(|(_, s)| s.shape().iter().product::<usize>())
            .sum()
    }

    /// Every tensor, read out.
    pub(crate) fn export(&self) -> Vec<NamedTensor> {
        self.0
            .iter()
            .map(|(name, slot)| NamedTensor {
                name: name.clone(),
                shape: slot.shape(),
                values: slot.read(),
            })
            .collect()
    }
}
