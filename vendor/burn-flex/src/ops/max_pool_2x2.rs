//! 2x2/stride-2 max-pooling and its gradient as single passes over f32 NCHW planes (kdgrid
//! patch).
//!
//! Upstream runs every 2-D max-pool as a 3-D one whose inner loop recomputes each window's valid
//! range with integer divisions per output value, and its gradient through the same 3-D view.
//! The 2x2 window with stride 2 and no padding, the pooling of nearly every small CNN, is four
//! loads and three comparisons per output. Values and indices are upstream's exactly: the first
//! maximum in the window's row-major order wins ties, a NaN wins over any number (the last NaN
//! in the window is reported), indices are flat positions within the input plane.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{DType, TensorData};
use burn_std::Shape;

use crate::FlexTensor;

/// Whether [`forward`] computes this pooling: a 2x2 window, stride 2, no padding or dilation,
/// floor mode, on an f32 `[N, C, H, W]` tensor of at least 2x2.
pub fn applies(
    x: &FlexTensor,
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> bool {
    let shape = x.layout().shape();
    kernel_size == [2, 2]
        && stride == [2, 2]
        && padding == [0, 0]
        && dilation == [1, 1]
        && !ceil_mode
        && x.dtype() == DType::F32
        && shape.num_dims() == 4
        && shape[2] >= 2
        && shape[3] >= 2
}

/// The maximum of a window's values in row-major order, and the position of the one reported.
#[inline(always)]
fn window(values: [(f32, usize); 4]) -> (f32, usize) {
    let mut best = values[0];
    for v in &values[1..] {
        if v.0 > best.0 || v.0.is_nan() {
            best = *v;
        }
    }
    best
}

/// Pools `x` (see [`applies`]); returns the values and the int64 indices.
pub fn forward(x: FlexTensor) -> (FlexTensor, FlexTensor) {
    let x = x.to_contiguous();
    let s = x.layout().shape().clone();
    let (planes, h, w) = (s[0] * s[1], s[2], s[3]);
    let (oh, ow) = (h / 2, w / 2);
    let data: &[f32] = x.storage();
    let mut out = vec![0.0f32; planes * oh * ow];
    let mut idx = vec![0i64; planes * oh * ow];
    let plane = |p: usize, out: &mut [f32], idx: &mut [i64]| {
        let src = &data[p * h * w..(p + 1) * h * w];
        for y in 0..oh {
            let (top, bottom) = (2 * y * w, (2 * y + 1) * w);
            for x in 0..ow {
                let (a, b) = (top + 2 * x, bottom + 2 * x);
                let (v, i) = window([
                    (src[a], a),
                    (src[a + 1], a + 1),
                    (src[b], b),
                    (src[b + 1], b + 1),
                ]);
                out[y * ow + x] = v;
                idx[y * ow + x] = i as i64;
            }
        }
    };
    if oh * ow > 0 {
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            out.par_chunks_mut(oh * ow)
                .zip(idx.par_chunks_mut(oh * ow))
                .enumerate()
                .for_each(|(p, (o, i))| plane(p, o, i));
        }
        #[cfg(not(feature = "rayon"))]
        out.chunks_mut(oh * ow)
            .zip(idx.chunks_mut(oh * ow))
            .enumerate()
            .for_each(|(p, (o, i))| plane(p, o, i));
    }
    let shape = Shape::new([s[0], s[1], oh, ow]);
    (
        FlexTensor::from_data(TensorData::new(out, shape.clone())),
        FlexTensor::from_data(TensorData::new(idx, shape)),
    )
}

/// Whether [`backward`] takes this gradient: f32 values routed by int64 indices of a pooling
/// [`applies`] accepted.
pub fn backward_applies(x: &FlexTensor, grad: &FlexTensor, indices: &FlexTensor) -> bool {
    let (xs, gs) = (x.layout().shape(), grad.layout().shape());
    grad.dtype() == DType::F32
        && indices.dtype() == DType::I64
        && xs.num_dims() == 4
        && gs.num_dims() == 4
        && gs[2] == xs[2] / 2
        && gs[3] == xs[3] / 2
}

/// The input gradient: each output's gradient added at the position its index names (windows do
/// not overlap, so each input position receives at most one).
pub fn backward(x_shape: Shape, grad: FlexTensor, indices: FlexTensor) -> FlexTensor {
    let (grad, indices) = (grad.to_contiguous(), indices.to_contiguous());
    let (planes, plane_in) = (x_shape[0] * x_shape[1], x_shape[2] * x_shape[3]);
    let gs = grad.layout().shape();
    let plane_out = gs[2] * gs[3];
    let (g, idx): (&[f32], &[i64]) = (grad.storage(), indices.storage());
    let mut dx: Vec<f32> = vec![0.0; planes * plane_in];
    let plane = |p: usize, dst: &mut [f32]| {
        let (g, idx) = (
            &g[p * plane_out..(p + 1) * plane_out],
            &idx[p * plane_out..(p + 1) * plane_out],
        );
        for (v, &i) in g.iter().zip(idx) {
            if i >= 0 {
                // As upstream: added onto zero (so a -0.0 gradient lands as +0.0).
                dst[i as usize] += *v;
            }
        }
    };
    if plane_in > 0 {
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            dx.par_chunks_mut(plane_in)
                .enumerate()
                .for_each(|(p, d)| plane(p, d));
        }
        #[cfg(not(feature = "rayon"))]
        dx.chunks_mut(plane_in)
            .enumerate()
            .for_each(|(p, d)| plane(p, d));
    }
    FlexTensor::from_data(TensorData::new(dx, x_shape))
}
