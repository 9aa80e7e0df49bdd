//! The `resnet` family: CIFAR ResNets of depth `6n + 2` and ImageNet's ResNet-18/34.

use super::ModelSpec;
use super::cost::{Cost, conv_bn, dense_cost};
use super::raw::RawModel;
use crate::manifest::error::Problems;
use serde::Serialize;
use toml::Spanned;

/// A ResNet of basic blocks (He et al. 2016), as torchvision and the TAKD paper's code build it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResNetSpec {
    /// Basic blocks in each stage.
    pub blocks: Vec<usize>,
    /// Channels of each stage.
    pub widths: Vec<usize>,
    /// The layers before the first stage.
    pub stem: ResNetStem,
}

/// The first layers of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetStem {
    /// A 3x3 conv at full resolution (CIFAR ResNets: depth `6n + 2`).
    Cifar,
    /// A 7x7 stride-2 conv and a 3x3 stride-2 max-pool (ImageNet ResNet-18/34).
    Imagenet,
}

impl ResNetSpec {
    /// ResNet of `depth` layers: `6n + 2` for the CIFAR family (20, 56, 110, ...), 18 or 34
    /// for the ImageNet family.
    pub fn of_depth(depth: usize) -> Option<Self> {
        let (blocks, widths, stem) = match depth {
            18 => (vec![2; 4], vec![64, 128, 256, 512], ResNetStem::Imagenet),
            34 => (
                vec![3, 4, 6, 3],
                vec![64, 128, 256, 512],
                ResNetStem::Imagenet,
            ),
            d if d >= 8 && (d - 2) % 6 == 0 => {
                (vec![(d - 2) / 6; 3], vec![16, 32, 64], ResNetStem::Cifar)
            }
            _ => return None,
        };
        Some(Self {
            blocks,
            widths,
            stem,
        })
    }
}

/// A `resnet` table's architecture from its `size` (the depth).
pub(super) fn resolve(name: &str, m: &RawModel, problems: &mut Problems) -> ModelSpec {
    let size = m.size.as_ref().map(|s| s.get_ref().get());
    let resnet = size.and_then(ResNetSpec::of_depth);
    if resnet.is_none() {
        problems.push(
            m.size
                .as_ref()
                .map(Spanned::span)
                .or(m.family.as_ref().map(Spanned::span)),
            match size {
                Some(s) => format!("`models.{name}.size` = {s} is not a ResNet depth"),
                None => format!("`models.{name}.size` (the depth) is required for `resnet`"),
            },
            Some(
                "CIFAR ResNets have depth 6n + 2 (20, 32, 44, 56, 110); ImageNet ones 18 or 34"
                    .into(),
            ),
        );
    }
    ModelSpec {
        batch_norm: true,
        resnet: Some(resnet.unwrap_or_else(|| ResNetSpec::of_depth(20).expect("20 = 6 * 3 + 2"))),
        ..ModelSpec::bare(format!("resnet-{}", size.unwrap_or(20)))
    }
}

/// The cost of a ResNet as `train::ResNet` builds it.
pub(super) fn cost(
    spec: &ResNetSpec,
    [channels, height, width]: [usize; 3],
    classes: usize,
) -> Cost {
    let mut cost = Cost {
        params: 0,
        forward_flops: 0,
    };
    let first = spec.widths[0] as u64;
    let mut size = [height as u64, width as u64];
    size = match spec.stem {
        ResNetStem::Cifar => conv_bn(&mut cost, [channels as u64, first, 3, 1], size),
        ResNetStem::Imagenet => {
            let [h, w] = conv_bn(&mut cost, [channels as u64, first, 7, 2], size);
            [(h - 1) / 2 + 1, (w - 1) / 2 + 1]
        }
    };
    let mut c = first;
    for (i, (&n, &width)) in spec.blocks.iter().zip(&spec.widths).enumerate() {
        let width = width as u64;
        for b in 0..n {
            let stride = if i > 0 && b == 0 { 2 } else { 1 };
            if stride != 1 || c != width {
                conv_bn(&mut cost, [c, width, 1, stride], size);
            }
            size = conv_bn(&mut cost, [c, width, 3, stride], size);
            conv_bn(&mut cost, [width, width, 3, 1], size);
            c = width;
        }
    }
    dense_cost(&mut cost, c, &[], classes);
    cost
}
