//! Batch normalization forward and backward as single passes per channel (kdgrid patch).
//!
//! Burn's default `batch_norm_train` computes the statistics and the normalization as about ten
//! separate tensor operations (swaps, reshapes, means, broadcasts), and its backward as as many
//! again. Here each is one kernel, with PyTorch's CPU formulas:
//!
//! - statistics: `mean = Σx / M`, `var = Σ(x - mean)² / M` (biased; `M` = batch × positions),
//!   summed in f64;
//! - output: `y = x · a + b` with `a = γ / √(var + ε)` and `b = β - mean · a`;
//! - backward: `dβ = Σdy`, `dγ = Σ dy (x - mean) / √(var + ε)`,
//!   `dx = (dy - Σdy / M - (x - mean) · Σ dy (x - mean) / (M (var + ε))) · γ / √(var + ε)`.
//!
//! Channels (for the sums) and `(sample, channel)` planes (for the elementwise passes) run in
//! parallel; every sum has an order fixed by the shape, so results do not depend on threads.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{DType, TensorData};
use burn_std::Shape;
use num_traits::{Float, NumCast};

use crate::FlexTensor;
use crate::ops::module::{narrow_half, widen_half};

/// `[N, C, S]` view of a `[N, C, ...]` tensor.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Dims {
    fn of(shape: &Shape) -> Self {
        let batch = shape[0];
        let channels = shape[1];
        let plane = (2..shape.num_dims()).map(|d| shape[d]).product();
        Self {
            batch,
            channels,
            plane,
        }
    }
    fn count(&self) -> usize {
        self.batch * self.plane
    }
}

fn to_f64<T: Float>(v: T) -> f64 {
    <f64 as NumCast>::from(v).unwrap_or(f64::NAN)
}

fn from_f64<T: Float>(v: f64) -> T {
    <T as NumCast>::from(v).unwrap_or_else(T::nan)
}

/// Sums `f(i)` over the flat indices `i` of channel `c`'s values, in f64, with four interleaved
/// partial sums.
fn channel_sum(d: Dims, c: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut lanes = [0.0f64; 4];
    for n in 0..d.batch {
        let base = (n * d.channels + c) * d.plane;
        let mut i = 0;
        while i + 4 <= d.plane {
            for (l, lane) in lanes.iter_mut().enumerate() {
                *lane += f(base + i + l);
            }
            i += 4;
        }
        for (l, j) in (i..d.plane).enumerate() {
            lanes[l] += f(base + j);
        }
    }
    (lanes[0] + lanes[2]) + (lanes[1] + lanes[3])
}

fn per_channel<R: Send>(channels: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    (0..channels).map(f).collect()
}

fn per_plane<T: Send>(out: &mut [T], plane: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if plane == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
    #[cfg(not(feature = "rayon"))]
    out.chunks_mut(plane).enumerate().for_each(|(i, c)| f(i, c));
}

/// `y = x · a[c] + b[c]` for every value of channel `c`.
fn affine<T: Float + Send + Sync>(x: &[T], d: Dims, a: &[T], b: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    per_plane(&mut out, d.plane, |i, y| {
        let c = i % d.channels;
        let src = &x[i * d.plane..(i + 1) * d.plane];
        for (y, &v) in y.iter_mut().zip(src) {
            *y = v * a[c] + b[c];
        }
    });
    out
}

/// Per-channel scale and shift of the normalization: `a = γ / √(var + ε)`, `b = β - mean · a`.
fn scale_shift<T: Float>(
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    var: &[T],
    eps: f64,
) -> (Vec<T>, Vec<T>) {
    let a: Vec<T> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g * from_f64::<T>(1.0 / (to_f64(v) + eps).sqrt()))
        .collect();
    let b = beta
        .iter()
        .zip(mean)
        .zip(&a)
        .map(|((&b, &m), &a)| b - m * a)
        .collect();
    (a, b)
}

fn inference<T: Float + Send + Sync>(
    x: &[T],
    d: Dims,
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    var: &[T],
    eps: f64,
) -> Vec<T> {
    let (a, b) = scale_shift(gamma, beta, mean, var, eps);
    affine(x, d, &a, &b)
}

/// Output, batch mean and biased batch variance.
fn train<T: Float + Send + Sync>(
    x: &[T],
    d: Dims,
    gamma: &[T],
    beta: &[T],
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let m = d.count() as f64;
    let stats = per_channel(d.channels, |c| {
        let mean = channel_sum(d, c, |i| to_f64(x[i])) / m;
        let var = channel_sum(d, c, |i| {
            let v = to_f64(x[i]) - mean;
            v * v
        }) / m;
        (from_f64::<T>(mean), from_f64::<T>(var))
    });
    let (mean, var): (Vec<T>, Vec<T>) = stats.into_iter().unzip();
    let (a, b) = scale_shift(gamma, beta, &mean, &var, eps);
    (affine(x, d, &a, &b), mean, var)
}

/// Input, γ and β gradients.
#[allow(clippy::too_many_arguments)]
fn backward<T: Float + Send + Sync>(
    x: &[T],
    d: Dims,
    gamma: &[T],
    mean: &[T],
    var: &[T],
    eps: f64,
    dy: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let m = d.count() as f64;
    let sums = per_channel(d.channels, |c| {
        let mu = to_f64(mean[c]);
        let sum_dy = channel_sum(d, c, |i| to_f64(dy[i]));
        let dot = channel_sum(d, c, |i| to_f64(dy[i]) * (to_f64(x[i]) - mu));
        (sum_dy, dot)
    });
    let inv_std: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (to_f64(v) + eps).sqrt())
        .collect();
    let beta_grad = sums.iter().map(|&(s, _)| from_f64::<T>(s)).collect();
    let gamma_grad = sums
        .iter()
        .zip(&inv_std)
        .map(|(&(_, dot), &is)| from_f64::<T>(dot * is))
        .collect();
    // dx = dy * a - (x - mean) * k - g, per channel a = γ/σ, k = a · dot / (M σ²), g = a · Σdy / M.
    let coef: Vec<(T, T, T, T)> = (0..d.channels)
        .map(|c| {
            let a = to_f64(gamma[c]) * inv_std[c];
            let (sum_dy, dot) = sums[c];
            let k = a * dot * inv_std[c] * inv_std[c] / m;
            let g = a * sum_dy / m;
            (from_f64(a), from_f64(k), from_f64(g), mean[c])
        })
        .collect();
    let mut dx = vec![T::zero(); x.len()];
    per_plane(&mut dx, d.plane, |i, out| {
        let (a, k, g, mu) = coef[i % d.channels];
        let base = i * d.plane;
        for (j, o) in out.iter_mut().enumerate() {
            *o = dy[base + j] * a - (x[base + j] - mu) * k - g;
        }
    });
    (dx, gamma_grad, beta_grad)
}

/// Runs `f32_op` or `f64_op` on the tensors' values in their float type (f16/bf16 through
/// f32) and returns its outputs, each with the shape given beside it.
fn with_floats<const K: usize>(
    inputs: &[&FlexTensor],
    shapes: [Shape; K],
    f32_op: impl FnOnce(&[&[f32]]) -> [Vec<f32>; K],
    f64_op: impl FnOnce(&[&[f64]]) -> [Vec<f64>; K],
) -> [FlexTensor; K] {
    let inputs: Vec<FlexTensor> = inputs.iter().map(|t| t.to_contiguous()).collect();
    let dtype = inputs[0].dtype();
    let mut shapes = shapes.into_iter();
    match dtype {
        DType::F32 => {
            let views: Vec<&[f32]> = inputs.iter().map(|t| t.storage::<f32>()).collect();
            f32_op(&views)
                .map(|v| FlexTensor::from_data(TensorData::new(v, shapes.next().unwrap())))
        }
        DType::F64 => {
            let views: Vec<&[f64]> = inputs.iter().map(|t| t.storage::<f64>()).collect();
            f64_op(&views)
                .map(|v| FlexTensor::from_data(TensorData::new(v, shapes.next().unwrap())))
        }
        DType::F16 | DType::BF16 => {
            let wide: Vec<FlexTensor> = inputs.iter().map(widen_half).collect();
            let wide: Vec<&FlexTensor> = wide.iter().collect();
            let shapes: [Shape; K] = core::array::from_fn(|_| shapes.next().unwrap());
            with_floats(&wide, shapes, f32_op, f64_op).map(|t| narrow_half(t, dtype))
        }
        dtype => panic!("batch_norm: unsupported dtype {dtype:?}"),
    }
}

/// Normalizes `x` `[N, C, ...]` with the given per-channel statistics.
pub fn batch_norm(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    eps: f64,
) -> FlexTensor {
    let shape = x.layout().shape().clone();
    let d = Dims::of(&shape);
    let [out] = with_floats(
        &[&x, &gamma, &beta, &mean, &var],
        [shape],
        |v| [inference(v[0], d, v[1], v[2], v[3], v[4], eps)],
        |v| [inference(v[0], d, v[1], v[2], v[3], v[4], eps)],
    );
    out
}

/// Normalizes `x` with its own batch statistics; returns the output, mean and biased variance.
pub fn batch_norm_train(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    eps: f64,
) -> [FlexTensor; 3] {
    let shape = x.layout().shape().clone();
    let d = Dims::of(&shape);
    let per = Shape::new([d.channels]);
    with_floats(
        &[&x, &gamma, &beta],
        [shape, per.clone(), per],
        |v| {
            let (y, m, s) = train(v[0], d, v[1], v[2], eps);
            [y, m, s]
        },
        |v| {
            let (y, m, s) = train(v[0], d, v[1], v[2], eps);
            [y, m, s]
        },
    )
}

/// Input, γ and β gradients of [`batch_norm_train`].
pub fn batch_norm_train_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    eps: f64,
    output_grad: FlexTensor,
) -> [FlexTensor; 3] {
    let shape = x.layout().shape().clone();
    let d = Dims::of(&shape);
    let per = Shape::new([d.channels]);
    with_floats(
        &[&x, &gamma, &mean, &var, &output_grad],
        [shape, per.clone(), per],
        |v| {
            let (dx, dg, db) = backward(v[0], d, v[1], v[2], v[3], eps, v[4]);
            [dx, dg, db]
        },
        |v| {
            let (dx, dg, db) = backward(v[0], d, v[1], v[2], v[3], eps, v[4]);
            [dx, dg, db]
        },
    )
}
