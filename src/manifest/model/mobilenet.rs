//! The `mobilenet-v2` family: torchvision's MobileNetV2 at width 1.0.

use super::ModelSpec;
use super::cost::{Cost, conv_bn, dense_cost, grouped_conv_bn};

/// torchvision's MobileNetV2 stages: expansion `t`, output channels `c`, repeats `n`, first
/// stride `s`.
pub const MOBILENET_V2_STAGES: [[usize; 4]; 7] = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
];

/// A `mobilenet-v2` table's architecture (it has no keys of its own).
pub(super) fn resolve() -> ModelSpec {
    ModelSpec {
        batch_norm: true,
        mobilenet_v2: true,
        ..ModelSpec::bare("mobilenet-v2")
    }
}

/// The cost of torchvision's MobileNetV2 (width 1.0) as `train::MobileNetV2` builds it.
pub(super) fn cost([channels, height, width]: [usize; 3], classes: usize) -> Cost {
    let mut cost = Cost {
        params: 0,
        forward_flops: 0,
    };
    let mut size = conv_bn(
        &mut cost,
        [channels as u64, 32, 3, 2],
        [height as u64, width as u64],
    );
    let mut c = 32;
    for [t, out, n, s] in MOBILENET_V2_STAGES.map(|r| r.map(|v| v as u64)) {
        for i in 0..n {
            let hidden = c * t;
            if t != 1 {
                conv_bn(&mut cost, [c, hidden, 1, 1], size);
            }
            size = grouped_conv_bn(
                &mut cost,
                [hidden, hidden, 3, if i == 0 { s } else { 1 }, hidden],
                size,
            );
            conv_bn(&mut cost, [hidden, out, 1, 1], size);
            c = out;
        }
    }
    conv_bn(&mut cost, [c, 1280, 1, 1], size);
    dense_cost(&mut cost, 1280, &[], classes);
    cost
}
