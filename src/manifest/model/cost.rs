//! Analytic size and compute of a model, for `kdgrid plan` (no tensors involved).

use super::ModelSpec;
use serde::Serialize;

/// Parameters and forward FLOPs of one model on one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-adds of one forward pass of one image, counted as 2 FLOPs each.
    pub forward_flops: u64,
}

impl Cost {
    /// FLOPs to train on one image: forward plus backward (about twice the forward).
    pub fn train_flops(&self) -> u64 {
        3 * self.forward_flops
    }
}

/// The cost of `spec` on `[channels, height, width]` inputs with `classes` outputs, mirroring
/// the layers `train::Cnn` builds (same- or valid-padded convs, 2x2 pooling where the spec says and the
/// map allows; batch norm adds a scale and a shift per channel).
pub fn cost(spec: &ModelSpec, input: [usize; 3], classes: usize) -> Cost {
    if let Some(e) = &spec.ensemble {
        // Every member runs: an ensemble costs the sum of its members.
        let member = cost(
            &ModelSpec {
                ensemble: None,
                ..spec.clone()
            },
            input,
            classes,
        );
        let n = e.seeds.len() as u64;
        return Cost {
            params: member.params * n,
            forward_flops: member.forward_flops * n,
        };
    }
    if let Some(o) = &spec.onnx {
        // Read from the graph (when the manifest was checked with the dataset's shape known).
        return o.signature.as_ref().map_or(
            Cost {
                params: 0,
                forward_flops: 0,
            },
            |s| Cost {
                params: s.params,
                forward_flops: s.forward_flops,
            },
        );
    }
    if let Some(r) = &spec.resnet {
        return super::resnet::cost(r, input, classes);
    }
    if let Some(b) = &spec.bert {
        return super::bert::cost(b, input[2], classes);
    }
    if let Some(l) = &spec.lstm {
        return super::lstm::cost(spec, l, input[2], classes);
    }
    if spec.mobilenet_v2 {
        return super::mobilenet::cost(input, classes);
    }
    super::cnn::cost(spec, input, classes)
}

/// Adds hidden dense layers of `widths` and a classifier on `d` features.
pub(super) fn dense_cost(cost: &mut Cost, mut d: u64, widths: &[usize], classes: usize) {
    for &width in widths.iter().chain(std::iter::once(&classes)) {
        let width = width as u64;
        cost.params += d * width + width;
        cost.forward_flops += 2 * d * width;
        d = width;
    }
}

/// Parameters and FLOPs of a bias-free conv on an `h x w` input (padding `k / 2`), adding
/// its batch norm; returns the output's size.
pub(super) fn conv_bn(
    cost: &mut Cost,
    [c_in, c_out, k, stride]: [u64; 4],
    size: [u64; 2],
) -> [u64; 2] {
    grouped_conv_bn(cost, [c_in, c_out, k, stride, 1], size)
}

/// [`conv_bn`] for a conv of `groups` groups (depthwise when `groups = c_in`).
pub(super) fn grouped_conv_bn(
    cost: &mut Cost,
    [c_in, c_out, k, stride, groups]: [u64; 5],
    [h, w]: [u64; 2],
) -> [u64; 2] {
    let out = [(h - 1) / stride + 1, (w - 1) / stride + 1];
    cost.params += c_out * c_in / groups * k * k + 2 * c_out;
    cost.forward_flops += 2 * c_out * c_in / groups * k * k * out[0] * out[1];
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ResNetSpec;

    #[test]
    fn counts_match_a_hand_computation() {
        let spec = ModelSpec {
            conv: vec![4],
            dense: vec![8],
            kernel: 3,
            padding: Default::default(),
            pool: None,
            batch_norm: false,
            dropout: None,
            resnet: None,
            lstm: None,
            mobilenet_v2: false,
            weights: None,
            ensemble: None,
            onnx: None,
            bert: None,
            tokenizer: None,
            init_from: None,
            hidden_loss: None,
            view: 0,
            family: "cnn".into(),
        };
        // conv: 4*1*9 + 4 = 40; 28x28 -> 14x14; dense: 4*14*14*8 + 8 = 6280; head: 8*10 + 10 = 90.
        let c = cost(&spec, [1, 28, 28], 10);
        assert_eq!(c.params, 40 + 6280 + 90);
        assert_eq!(
            c.forward_flops,
            2 * 4 * 9 * 28 * 28 + 2 * 784 * 8 + 2 * 8 * 10
        );
    }

    #[test]
    fn plain_cnn_sizes_grow() {
        let params: Vec<u64> = super::super::PLAIN_CNN_SIZES
            .iter()
            .map(|&n| cost(&ModelSpec::plain_cnn(n).unwrap(), [3, 32, 32], 10).params)
            .collect();
        assert!(params.windows(2).all(|w| w[0] < w[1]), "{params:?}");
        // Size 2: conv 3->16 (432 + 16) + BN 32, conv 16->16 (2304 + 16) + BN 32,
        // 32x32 pooled twice to 8x8: head 16*8*8*10 + 10.
        assert_eq!(params[0], 448 + 32 + 2320 + 32 + 10250);
    }

    #[test]
    fn resnet_counts_match_torchvision_and_the_cifar_paper() {
        let resnet = |depth| ModelSpec {
            resnet: ResNetSpec::of_depth(depth),
            ..ModelSpec::plain_cnn(2).unwrap()
        };
        // torchvision.models.resnet18().parameters(): 11,689,512.
        assert_eq!(cost(&resnet(18), [3, 224, 224], 1000).params, 11_689_512);
        // He et al.: ResNet-20 on CIFAR-10 has 0.27M parameters (with 1x1 projection shortcuts
        // at the two stage changes, as this family builds them: 0.272M).
        let p20 = cost(&resnet(20), [3, 32, 32], 10).params;
        assert!((270_000..275_000).contains(&p20), "{p20}");
        // torchvision.models.mobilenet_v2().parameters(): 3,504,872; 300 MMACs at 224x224.
        let mobilenet = ModelSpec {
            mobilenet_v2: true,
            ..ModelSpec::plain_cnn(2).unwrap()
        };
        let m = cost(&mobilenet, [3, 224, 224], 1000);
        assert_eq!(m.params, 3_504_872);
        assert!(
            (5.9e8..6.2e8).contains(&(m.forward_flops as f64)),
            "{}",
            m.forward_flops
        );
        // torchvision's ResNet-18 forward: 1.82 GMACs at 224x224.
        let flops = cost(&resnet(18), [3, 224, 224], 1000).forward_flops;
        assert!((3.6e9..3.7e9).contains(&(flops as f64)), "{flops}");
    }
}
