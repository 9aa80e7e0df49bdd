//! The CNN family of the manifest's `[models.*]`, with weights drawn from a per-stage
//! `rand_chacha` stream instead of Burn's process-global RNG (see NOTES: Burn seeding is global).

use super::named::Slots;
use crate::manifest::ModelSpec;
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Conv layers (each followed by batch norm when on, ReLU and, where the spec says and the map
/// is at least 2 pixels wide, a 2x2 max-pool), hidden dense ReLU layers and a linear
/// classifier. With no conv layers it is an MLP.
#[derive(Module, Debug)]
pub struct Cnn {
    convs: Vec<Conv2d>,
    norms: Vec<BatchNorm>,
    dense: Vec<Linear>,
    head: Linear,
    pool: MaxPool2d,
    pools: Vec<bool>,
}

/// Draws tensors in PyTorch's default layout of initial values: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`
/// for weights and biases (Kaiming-uniform with `a = sqrt(5)`), so runs compare with the
/// PyTorch peer. `None` gives zeros, for models about to be loaded from disk.
pub(super) struct Init<'a> {
    pub(super) rng: Option<&'a mut ChaCha8Rng>,
    pub(super) device: &'a Device,
}

impl Init<'_> {
    pub(super) fn uniform<const D: usize>(
        &mut self,
        shape: [usize; D],
        fan_in: usize,
    ) -> Param<Tensor<D>> {
        self.uniform_bound(shape, 1.0 / (fan_in as f32).sqrt())
    }

    /// `U(-bound, bound)` values (zeros without a stream).
    pub(super) fn uniform_bound<const D: usize>(
        &mut self,
        shape: [usize; D],
        bound: f32,
    ) -> Param<Tensor<D>> {
        self.draw(shape, |rng| rng.random_range(-bound..bound))
    }

    /// `N(0, std)` values (zeros without a stream), as Hugging Face initializes transformers.
    pub(super) fn normal<const D: usize>(
        &mut self,
        shape: [usize; D],
        std: f32,
    ) -> Param<Tensor<D>> {
        let normal = rand_distr::Normal::new(0.0, std).expect("a positive deviation");
        self.draw(shape, |rng| rng.sample(normal))
    }

    /// Zeros.
    pub(super) fn zeros<const D: usize>(&mut self, shape: [usize; D]) -> Param<Tensor<D>> {
        self.param(vec![0.0; shape.iter().product()], shape)
    }

    /// One value per element from `value`, in row-major order (zeros without a stream).
    fn draw<const D: usize>(
        &mut self,
        shape: [usize; D],
        mut value: impl FnMut(&mut ChaCha8Rng) -> f32,
    ) -> Param<Tensor<D>> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match self.rng.as_deref_mut() {
            Some(rng) => (0..n).map(|_| value(rng)).collect(),
            None => vec![0.0; n],
        };
        self.param(values, shape)
    }

    fn param<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values, shape),
            self.device,
        ))
    }

    pub(super) fn linear(&mut self, d_in: usize, d_out: usize) -> Linear {
        Linear {
            weight: self.uniform([d_in, d_out], d_in),
            bias: Some(self.uniform([d_out], d_in)),
        }
    }
}

impl Cnn {
    /// Builds the network for inputs of `[channels, height, width]` and `classes` outputs,
    /// drawing initial weights from `rng` (zeros when `None`).
    pub fn new(
        spec: &ModelSpec,
        [channels, height, width]: [usize; 3],
        classes: usize,
        rng: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Self {
        let mut init = Init { rng, device };
        let k = spec.kernel;
        let (mut c, mut h, mut w) = (channels, height, width);
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut pools = Vec::new();
        for (i, &out) in spec.conv.iter().enumerate() {
            let fan_in = c * k * k;
            convs.push(Conv2d {
                weight: init.uniform([out, c, k, k], fan_in),
                bias: Some(init.uniform([out], fan_in)),
                stride: [1, 1],
                kernel_size: [k, k],
                dilation: [1, 1],
                groups: 1,
                padding: {
                    let p = spec.padding.amount(k);
                    PaddingConfig2d::Explicit(p, p, p, p)
                },
            });
            let shrink = k - 1 - 2 * spec.padding.amount(k);
            h -= shrink;
            w -= shrink;
            if spec.batch_norm {
                // Scale 1, shift 0, like PyTorch: nothing random to draw.
                norms.push(BatchNormConfig::new(out).init(init.device));
            }
            let pool = spec.pools_after(i) && h >= 2 && w >= 2;
            if pool {
                h /= 2;
                w /= 2;
            }
            pools.push(pool);
            c = out;
        }
        let mut d = c * h * w;
        let mut dense = Vec::new();
        for &width in &spec.dense {
            dense.push(init.linear(d, width));
            d = width;
        }
        let head = init.linear(d, classes);
        Self {
            convs,
            norms,
            dense,
            head,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            pools,
        }
    }

    /// Trainable parameters, as PyTorch counts them: Burn's count includes batch norm's
    /// running mean and variance, which are state, not parameters.
    pub fn trainable_params(&self) -> usize {
        let running: usize = self.norms.iter().map(|n| 2 * n.gamma.shape()[0]).sum();
        self.num_params() - running
    }

    /// Logits `[batch, classes]` for images `[batch, channels, height, width]`, without
    /// dropout.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with(x, None)
    }

    /// Logits with dropout of probability `p` after each hidden dense layer, masks drawn from
    /// `rng` (the stage's own stream, not Burn's global one).
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        mut dropout: Option<(f64, &mut ChaCha8Rng)>,
    ) -> Tensor<2> {
        let mut x = x;
        for (i, (conv, &pool)) in self.convs.iter().zip(&self.pools).enumerate() {
            x = conv.forward(x);
            if let Some(norm) = self.norms.get(i) {
                x = batch_norm(norm, x);
            }
            x = relu(x);
            if pool {
                x = self.pool.forward(x);
            }
        }
        let mut x: Tensor<2> = x.flatten(1, 3);
        for layer in &self.dense {
            x = relu(layer.forward(x));
            if let Some((p, rng)) = dropout.as_mut() {
                x = drop(x, *p, rng);
            }
        }
        self.head.forward(x)
    }
}

impl Cnn {
    /// Every tensor under its PyTorch name (`conv`, `bn`, `dense` as `nn.ModuleList`s, then
    /// `head`), in PyTorch's layout.
    pub(super) fn slots<'a>(&'a mut self, out: &mut Slots<'a>) {
        for (i, conv) in self.convs.iter_mut().enumerate() {
            out.conv(&format!("conv.{i}"), conv);
        }
        for (i, bn) in self.norms.iter_mut().enumerate() {
            out.norm(&format!("bn.{i}"), bn);
        }
        for (i, layer) in self.dense.iter_mut().enumerate() {
            out.linear(&format!("dense.{i}"), layer);
        }
        out.linear("head", &mut self.head);
    }

    /// Whether a 2x2 max-pool follows each conv layer.
    pub fn pools(&self) -> &[bool] {
        &self.pools
    }
}

/// Burn's batch norm with PyTorch's running variance. In training, Burn folds the batch's
/// biased variance into `running_var`, PyTorch the unbiased one (times `n / (n - 1)`, with `n` =
/// batch x height x width); evaluation-mode outputs would differ by up to `1 / (n - 1)`
/// (0.16% on a batch of 16 4x4 maps). The step's unbiased share is added back from the update
/// Burn made.
pub(super) fn batch_norm(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let [batch, _, height, width] = x.dims();
    let n = batch * height * width;
    if !x.device().is_autodiff() || n < 2 {
        return norm.forward(x);
    }
    let before = norm.running_var.value_sync();
    let y = norm.forward(x);
    let after = norm.running_var.value_sync();
    // after = (1 - m) before + m v  =>  m v / (n - 1) = (after - (1 - m) before) / (n - 1)
    let share = (after.clone() - before.mul_scalar(1.0 - norm.momentum)).div_scalar((n - 1) as f64);
    norm.running_var.update((after + share).detach());
    y
}

/// Inverted dropout: zeroes each value with probability `p` and scales the rest by `1 / (1 - p)`.
pub(super) fn drop<const D: usize>(x: Tensor<D>, p: f64, rng: &mut ChaCha8Rng) -> Tensor<D> {
    let shape = x.dims();
    let keep = (1.0 - p) as f32;
    let mask: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_data(TensorData::new(mask, shape), &x.device());
    x * mask
}
