//! MobileNetV2 (Sandler et al. 2018), laid out as torchvision's `mobilenet_v2` (width 1.0) so
//! its `state_dict` loads as it is.

use super::model::{Init, batch_norm, drop};
use super::named::Slots;
use crate::manifest::MOBILENET_V2_STAGES;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

/// Channels of the stem.
pub const STEM: usize = 32;
/// Channels of the last 1x1 conv.
pub const LAST: usize = 1280;

/// A bias-free conv followed by batch norm (and ReLU6 unless it is a block's projection).
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
    relu6: bool,
}

impl ConvBn {
    fn new(init: &mut Init, [c_in, c_out, k, stride, groups]: [usize; 5], relu6: bool) -> Self {
        let p = k / 2;
        Self {
            conv: Conv2d {
                weight: init.uniform([c_out, c_in / groups, k, k], c_in / groups * k * k),
                bias: None,
                stride: [stride, stride],
                kernel_size: [k, k],
                dilation: [1, 1],
                groups,
                padding: PaddingConfig2d::Explicit(p, p, p, p),
            },
            bn: BatchNormConfig::new(c_out).init(init.device),
            relu6,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = batch_norm(&self.bn, self.conv.forward(x));
        if self.relu6 { y.clamp(0.0, 6.0) } else { y }
    }

    /// torchvision's `Conv2dNormActivation` names its conv `.0` and its norm `.1`; a block's
    /// projection conv and its norm are two entries of the block's sequence instead.
    fn slots<'a>(&'a mut self, out: &mut Slots<'a>, conv: &str, bn: &str) {
        out.conv(conv, &mut self.conv);
        out.norm(bn, &mut self.bn);
    }
}

/// An inverted residual block: 1x1 expansion (unless `t = 1`), 3x3 depthwise conv, linear 1x1
/// projection, plus the input when the shape is kept.
#[derive(Module, Debug)]
pub struct Block {
    layers: Vec<ConvBn>,
    residual: bool,
}

/// MobileNetV2: stem, 17 inverted residual blocks, a 1x1 conv to 1280 channels, global
/// average pool, dropout (the model's, if any) and the classifier `classifier.1`.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    stem: ConvBn,
    blocks: Vec<Block>,
    last: ConvBn,
    classifier: Linear,
}

impl MobileNetV2 {
    /// Builds the network for `channels`-channel inputs and `classes` outputs, drawing initial
    /// weights from `rng` (zeros when `None`).
    pub fn new(
        channels: usize,
        classes: usize,
        rng: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Self {
        let mut init = Init { rng, device };
        let stem = ConvBn::new(&mut init, [channels, STEM, 3, 2, 1], true);
        let mut c = STEM;
        let mut blocks = Vec::new();
        for [t, out, n, s] in MOBILENET_V2_STAGES {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let hidden = c * t;
                let mut layers = Vec::new();
                if t != 1 {
                    layers.push(ConvBn::new(&mut init, [c, hidden, 1, 1, 1], true));
                }
                layers.push(ConvBn::new(
                    &mut init,
                    [hidden, hidden, 3, stride, hidden],
                    true,
                ));
                layers.push(ConvBn::new(&mut init, [hidden, out, 1, 1, 1], false));
                blocks.push(Block {
                    layers,
                    residual: stride == 1 && c == out,
                });
                c = out;
            }
        }
        let last = ConvBn::new(&mut init, [c, LAST, 1, 1, 1], true);
        Self {
            stem,
            blocks,
            last,
            classifier: init.linear(LAST, classes),
        }
    }

    /// Logits for images `[batch, channels, height, width]`, with dropout before the
    /// classifier when given.
    pub fn forward_with(&self, x: Tensor<4>, dropout: Option<(f64, &mut ChaCha8Rng)>) -> Tensor<2> {
        let mut x = self.stem.forward(x);
        for block in &self.blocks {
            let y = block.layers.iter().fold(x.clone(), |y, l| l.forward(y));
            x = if block.residual { x + y } else { y };
        }
        let x = self.last.forward(x);
        let [batch, c, h, w] = x.dims();
        let mut x: Tensor<2> = x.reshape([batch, c, h * w]).mean_dim(2).reshape([batch, c]);
        if let Some((p, rng)) = dropout {
            x = drop(x, p, rng);
        }
        self.classifier.forward(x)
    }

    /// Every tensor under its torchvision name (`features.0.0.weight`,
    /// `features.2.conv.1.1.running_var`, `features.18.1.bias`, `classifier.1.weight`).
    pub(super) fn slots<'a>(&'a mut self, out: &mut Slots<'a>) {
        let last = self.blocks.len() + 1;
        self.stem.slots(out, "features.0.0", "features.0.1");
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let n = block.layers.len();
            for (j, layer) in block.layers.iter_mut().enumerate() {
                let p = format!("features.{}.conv", i + 1);
                if j + 1 == n {
                    layer.slots(out, &format!("{p}.{j}"), &format!("{p}.{}", j + 1));
                } else {
                    layer.slots(out, &format!("{p}.{j}.0"), &format!("{p}.{j}.1"));
                }
            }
        }
        self.last.slots(
            out,
            &format!("features.{last}.0"),
            &format!("features.{last}.1"),
        );
        out.linear("classifier.1", &mut self.classifier);
    }
}
