//! Residual networks of basic blocks, laid out as torchvision's `ResNet` (and the CIFAR ResNets
//! of the TAKD paper's code), so that their `state_dict` names load as they are.

use super::model::{Init, batch_norm};
use super::named::Slots;
use crate::manifest::{ResNetSpec, ResNetStem};
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

/// 3x3 conv, batch norm, ReLU, 3x3 conv, batch norm, plus the input (through a strided 1x1
/// conv and batch norm when the shape changes), ReLU.
#[derive(Module, Debug)]
pub struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<Downsample>,
}

/// The shortcut of a block that changes width or resolution (torchvision's `downsample.0/1`).
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

/// One stage of blocks at one width.
#[derive(Module, Debug)]
pub struct Layer {
    blocks: Vec<Block>,
}

/// A ResNet: stem (3x3 conv for CIFAR sizes; 7x7 stride-2 conv and 3x3 stride-2 max-pool for
/// ImageNet sizes), stages of basic blocks (the first block of every stage after the first
/// halves the resolution), global average pool and a linear classifier `fc`.
#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    stem_pool: Option<MaxPool2d>,
    layers: Vec<Layer>,
    fc: Linear,
}

/// A bias-free square conv, as every conv of a ResNet is (batch norm follows).
fn conv(init: &mut Init, c_in: usize, c_out: usize, k: usize, stride: usize) -> Conv2d {
    let p = k / 2;
    Conv2d {
        weight: init.uniform([c_out, c_in, k, k], c_in * k * k),
        bias: None,
        stride: [stride, stride],
        kernel_size: [k, k],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(p, p, p, p),
    }
}

fn norm(init: &Init, c: usize) -> BatchNorm {
    BatchNormConfig::new(c).init(init.device)
}

impl ResNet {
    /// Builds the network for `channels`-channel inputs and `classes` outputs, drawing initial
    /// weights from `rng` (zeros when `None`).
    pub fn new(
        spec: &ResNetSpec,
        channels: usize,
        classes: usize,
        rng: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Self {
        let mut init = Init { rng, device };
        let first = spec.widths[0];
        let (conv1, stem_pool) = match spec.stem {
            ResNetStem::Cifar => (conv(&mut init, channels, first, 3, 1), None),
            ResNetStem::Imagenet => (
                conv(&mut init, channels, first, 7, 2),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
        };
        let bn1 = norm(&init, first);
        let mut c = first;
        let mut layers = Vec::new();
        for (i, (&n, &width)) in spec.blocks.iter().zip(&spec.widths).enumerate() {
            let mut blocks = Vec::new();
            for b in 0..n {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                let conv1 = conv(&mut init, c, width, 3, stride);
                let bn1 = norm(&init, width);
                let conv2 = conv(&mut init, width, width, 3, 1);
                let bn2 = norm(&init, width);
                let downsample = (stride != 1 || c != width).then(|| Downsample {
                    conv: conv(&mut init, c, width, 1, stride),
                    bn: norm(&init, width),
                });
                blocks.push(Block {
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    downsample,
                });
                c = width;
            }
            layers.push(Layer { blocks });
        }
        Self {
            conv1,
            bn1,
            stem_pool,
            layers,
            fc: init.linear(c, classes),
        }
    }

    /// Logits `[batch, classes]` for images `[batch, channels, height, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = relu(batch_norm(&self.bn1, self.conv1.forward(x)));
        if let Some(pool) = &self.stem_pool {
            x = pool.forward(x);
        }
        for block in self.layers.iter().flat_map(|l| &l.blocks) {
            let shortcut = match &block.downsample {
                Some(d) => batch_norm(&d.bn, d.conv.forward(x.clone())),
                None => x.clone(),
            };
            let y = relu(batch_norm(&block.bn1, block.conv1.forward(x)));
            let y = batch_norm(&block.bn2, block.conv2.forward(y));
            x = relu(y + shortcut);
        }
        let [batch, c, h, w] = x.dims();
        let pooled: Tensor<2> = x.reshape([batch, c, h * w]).mean_dim(2).reshape([batch, c]);
        self.fc.forward(pooled)
    }

    /// Every tensor under its torchvision name (`conv1.weight`, `layer1.0.bn2.running_var`,
    /// `layer2.0.downsample.0.weight`, `fc.bias`).
    pub(super) fn slots<'a>(&'a mut self, out: &mut Slots<'a>) {
        out.conv("conv1", &mut self.conv1);
        out.norm("bn1", &mut self.bn1);
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (b, block) in layer.blocks.iter_mut().enumerate() {
                let p = format!("layer{}.{b}", i + 1);
                out.conv(&format!("{p}.conv1"), &mut block.conv1);
                out.norm(&format!("{p}.bn1"), &mut block.bn1);
                out.conv(&format!("{p}.conv2"), &mut block.conv2);
                out.norm(&format!("{p}.bn2"), &mut block.bn2);
                if let Some(d) = &mut block.downsample {
                    out.conv(&format!("{p}.downsample.0"), &mut d.conv);
                    out.norm(&format!("{p}.downsample.1"), &mut d.bn);
                }
            }
        }
        out.linear("fc", &mut self.fc);
    }
}
