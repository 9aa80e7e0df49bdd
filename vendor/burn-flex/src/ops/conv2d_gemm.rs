//! 2-D convolution and its three gradients as per-sample im2col + GEMM (kdgrid patch).
//!
//! Upstream burn-flex runs a 2-D convolution as a 3-D one and leaves the gradients to Burn's
//! generic code: the input gradient as a transposed convolution (again 3-D), the weight gradient
//! as a convolution over batch/channel-swapped copies of the input and the output gradient. Here
//! each sample is unfolded once into a `[C/groups * KH * KW, OH * OW]` column matrix (which fits
//! in cache for the small models this serves) and multiplied in place:
//!
//! - forward: `y[n] = W · col(x[n]) + b`
//! - input gradient: `dx[n] = col2im(Wᵀ · dy[n])`
//! - weight gradient: `dW = Σ_n dy[n] · col(x[n])ᵀ`
//! - bias gradient: `db[o] = Σ_{n,p} dy[n, o, p]`
//!
//! Samples run in parallel; every sum runs in an order fixed by the shapes alone (the weight
//! gradient sums fixed chunks of [`WEIGHT_GRAD_CHUNK`] samples, then the chunks in order), so
//! results are bit-identical whatever the thread count.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{DType, TensorData};
use burn_std::Shape;
use num_traits::Float;

use crate::FlexTensor;
use crate::ops::module::{narrow_half, widen_half};
use burn_backend::ops::ConvOptions;

/// Samples whose weight-gradient contributions one task sums before the chunks are added in
/// order. Fixed, so the summation order does not depend on the number of threads.
pub const WEIGHT_GRAD_CHUNK: usize = 4;

/// Shapes of one convolution, derived from its input, weight and output shapes.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel: [usize; 2],
    out_height: usize,
    out_width: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Geometry {
    /// Panics, as Burn's shape checks would, when the shapes do not form a convolution: the GEMMs
    /// read through raw pointers and must never see inconsistent sizes.
    fn new(x: &Shape, weight: &Shape, out: [usize; 2], options: &ConvOptions<2>) -> Self {
        let groups = options.groups;
        assert!(
            x.num_dims() == 4 && weight.num_dims() == 4,
            "conv2d: input and weight must be 4-D"
        );
        assert!(
            x[1] % groups == 0 && weight[0] % groups == 0 && weight[1] * groups == x[1],
            "conv2d: {} input channels, weight {:?} and {groups} groups do not match",
            x[1],
            weight
        );
        for axis in 0..2 {
            let (begin, end) = options.padding[axis];
            let span = options.dilation[axis] * (weight[2 + axis] - 1) + 1;
            assert!(
                x[2 + axis] + begin + end >= span,
                "conv2d: kernel {:?} larger than the padded input {:?}",
                weight,
                x
            );
            let expected = (x[2 + axis] + begin + end - span) / options.stride[axis] + 1;
            assert_eq!(out[axis], expected, "conv2d: output size along axis {axis}");
        }
        Self {
            batch: x[0],
            channels: x[1],
            height: x[2],
            width: x[3],
            out_channels: weight[0],
            kernel: [weight[2], weight[3]],
            out_height: out[0],
            out_width: out[1],
            stride: options.stride,
            padding: options.padding_begin(),
            dilation: options.dilation,
            groups: options.groups,
        }
    }

    fn group_in(&self) -> usize {
        self.channels / self.groups
    }
    fn group_out(&self) -> usize {
        self.out_channels / self.groups
    }
    /// Rows of one group's column matrix.
    fn rows(&self) -> usize {
        self.group_in() * self.kernel[0] * self.kernel[1]
    }
    /// Columns of the column matrix: output positions.
    fn positions(&self) -> usize {
        self.out_height * self.out_width
    }
    fn in_sample(&self) -> usize {
        self.channels * self.height * self.width
    }
    fn out_sample(&self) -> usize {
        self.out_channels * self.positions()
    }
    /// A 1x1 convolution with unit stride and no padding reads its input as the column matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding == [0, 0]
            && [self.out_height, self.out_width] == [self.height, self.width]
    }
    /// Scratch for one sample's column matrix; none for a pointwise convolution, which reads its
    /// input (and writes its input gradient) in place.
    fn column_buffer<T: Float>(&self) -> Vec<T> {
        if self.is_pointwise() {
            Vec::new()
        } else {
            vec![T::zero(); self.rows() * self.positions()]
        }
    }
    /// For kernel offset `k` along `axis`, the output range whose input index is inside the
    /// image, and the input index of its first element.
    fn valid(&self, axis: usize, k: usize, out_len: usize, in_len: usize) -> (usize, usize, isize) {
        let offset = (k * self.dilation[axis]) as isize - self.padding[axis] as isize;
        let stride = self.stride[axis] as isize;
        // First output o with o * stride + offset >= 0.
        let lo = if offset >= 0 {
            0
        } else {
            ((-offset) + stride - 1) / stride
        } as usize;
        // Last output o with o * stride + offset < in_len, exclusive.
        let hi = if (in_len as isize) <= offset {
            0
        } else {
            ((in_len as isize - offset - 1) / stride + 1) as usize
        };
        let hi = hi.min(out_len);
        (lo.min(hi), hi, offset)
    }
}

/// Unfolds one sample's group `[Cg, H, W]` into `col` `[Cg * KH * KW, OH * OW]`.
fn im2col<T: Float>(x: &[T], g: &Geometry, col: &mut [T]) {
    let (h, w, oh, ow) = (g.height, g.width, g.out_height, g.out_width);
    let p = g.positions();
    let [kh, kw] = g.kernel;
    for ci in 0..g.group_in() {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            let (y_lo, y_hi, y_off) = g.valid(0, ky, oh, h);
            for kx in 0..kw {
                let (x_lo, x_hi, x_off) = g.valid(1, kx, ow, w);
                let row = &mut col[((ci * kh + ky) * kw + kx) * p..][..p];
                for oy in 0..oh {
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    if oy < y_lo || oy >= y_hi {
                        dst.fill(T::zero());
                        continue;
                    }
                    let iy = (oy as isize * g.stride[0] as isize + y_off) as usize;
                    let src = &plane[iy * w..(iy + 1) * w];
                    dst[..x_lo].fill(T::zero());
                    dst[x_hi..].fill(T::zero());
                    if g.stride[1] == 1 {
                        let start = (x_lo as isize + x_off) as usize;
                        dst[x_lo..x_hi].copy_from_slice(&src[start..start + (x_hi - x_lo)]);
                    } else {
                        for (ox, d) in dst.iter_mut().enumerate().take(x_hi).skip(x_lo) {
                            *d = src[(ox as isize * g.stride[1] as isize + x_off) as usize];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `col` `[Cg * KH * KW, OH * OW]` back onto one sample's group
/// `[Cg, H, W]` (the transpose of [`im2col`]).
fn col2im<T: Float>(col: &[T], g: &Geometry, dx: &mut [T]) {
    let (h, w, oh, ow) = (g.height, g.width, g.out_height, g.out_width);
    let p = g.positions();
    let [kh, kw] = g.kernel;
    for ci in 0..g.group_in() {
        let plane = &mut dx[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            let (y_lo, y_hi, y_off) = g.valid(0, ky, oh, h);
            for kx in 0..kw {
                let (x_lo, x_hi, x_off) = g.valid(1, kx, ow, w);
                let row = &col[((ci * kh + ky) * kw + kx) * p..][..p];
                for oy in y_lo..y_hi {
                    let src = &row[oy * ow..(oy + 1) * ow];
                    let iy = (oy as isize * g.stride[0] as isize + y_off) as usize;
                    let dst = &mut plane[iy * w..(iy + 1) * w];
                    if g.stride[1] == 1 {
                        let start = (x_lo as isize + x_off) as usize;
                        for (d, s) in dst[start..start + (x_hi - x_lo)]
                            .iter_mut()
                            .zip(&src[x_lo..x_hi])
                        {
                            *d = *d + *s;
                        }
                    } else {
                        for (ox, s) in src.iter().enumerate().take(x_hi).skip(x_lo) {
                            let ix = (ox as isize * g.stride[1] as isize + x_off) as usize;
                            dst[ix] = dst[ix] + *s;
                        }
                    }
                }
            }
        }
    }
}

/// `dst[m, n] = (accumulate ? dst : 0) + lhs[m, k] · rhs[k, n]`, single-threaded (the callers
/// parallelize over samples); strides are (row, column) in elements.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into<T: 'static + Float>(
    [m, n, k]: [usize; 3],
    dst: *mut T,
    dst_strides: [usize; 2],
    accumulate: bool,
    lhs: *const T,
    lhs_strides: [usize; 2],
    rhs: *const T,
    rhs_strides: [usize; 2],
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_strides[1] as isize,
            dst_strides[0] as isize,
            accumulate,
            lhs,
            lhs_strides[1] as isize,
            lhs_strides[0] as isize,
            rhs,
            rhs_strides[1] as isize,
            rhs_strides[0] as isize,
            if accumulate { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Runs `f(state, i, chunk)` over consecutive `chunk`-sized pieces of `out`, in parallel with
/// rayon; `init` makes a scratch state once per rayon job rather than once per piece.
fn for_each_chunk<T: Send, S>(
    out: &mut [T],
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each_init(init, |s, (i, c)| f(s, i, c));
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut s = init();
        out.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(&mut s, i, c));
    }
}

/// Forward convolution of contiguous `x` `[N, C, H, W]`, `weight` `[O, C/groups, KH, KW]`.
fn forward<T: 'static + Float + Send + Sync>(
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    g: &Geometry,
) -> Vec<T> {
    let mut out = vec![T::zero(); g.batch * g.out_sample()];
    if out.is_empty() {
        return out;
    }
    let (rows, p, og) = (g.rows(), g.positions(), g.group_out());
    let cg_len = g.group_in() * g.height * g.width;
    for_each_chunk(
        &mut out,
        g.out_sample(),
        || g.column_buffer(),
        |col, n, y| {
            for group in 0..g.groups {
                let xg = &x[n * g.in_sample() + group * cg_len..][..cg_len];
                let col: &[T] = if g.is_pointwise() {
                    xg
                } else {
                    im2col(xg, g, col);
                    &col
                };
                let yg = &mut y[group * og * p..(group + 1) * og * p];
                if let Some(bias) = bias {
                    for (o, row) in yg.chunks_mut(p).enumerate() {
                        row.fill(bias[group * og + o]);
                    }
                }
                unsafe {
                    gemm_into(
                        [og, p, rows],
                        yg.as_mut_ptr(),
                        [p, 1],
                        bias.is_some(),
                        weight[group * og * rows..].as_ptr(),
                        [rows, 1],
                        col.as_ptr(),
                        [p, 1],
                    );
                }
            }
        },
    );
    out
}

/// Gradient of the input: per sample, `Wᵀ · dy[n]` folded back with [`col2im`].
fn input_grad<T: 'static + Float + Send + Sync>(weight: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    let mut dx = vec![T::zero(); g.batch * g.in_sample()];
    if dx.is_empty() || g.out_sample() == 0 {
        return dx;
    }
    let (rows, p, og) = (g.rows(), g.positions(), g.group_out());
    let cg_len = g.group_in() * g.height * g.width;
    for_each_chunk(
        &mut dx,
        g.in_sample(),
        || g.column_buffer(),
        |col, n, dxn| {
            for group in 0..g.groups {
                let dyg = &dy[n * g.out_sample() + group * og * p..][..og * p];
                let dxg = &mut dxn[group * cg_len..(group + 1) * cg_len];
                let target = if g.is_pointwise() {
                    dxg.as_mut_ptr()
                } else {
                    col.as_mut_ptr()
                };
                unsafe {
                    gemm_into(
                        [rows, p, og],
                        target,
                        [p, 1],
                        false,
                        weight[group * og * rows..].as_ptr(),
                        [1, rows],
                        dyg.as_ptr(),
                        [p, 1],
                    );
                }
                if !g.is_pointwise() {
                    col2im(&col, g, dxg);
                }
            }
        },
    );
    dx
}

/// Gradient of the weight: `Σ_n dy[n] · col(x[n])ᵀ`, summed per chunk of samples and then over
/// the chunks in order.
fn weight_grad<T: 'static + Float + Send + Sync>(x: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    let (rows, p, og) = (g.rows(), g.positions(), g.group_out());
    let w_len = g.out_channels * rows;
    let chunks = g.batch.div_ceil(WEIGHT_GRAD_CHUNK);
    if chunks == 0 || p == 0 || w_len == 0 {
        return vec![T::zero(); w_len];
    }
    let cg_len = g.group_in() * g.height * g.width;
    let mut partial = vec![T::zero(); chunks * w_len];
    for_each_chunk(
        &mut partial,
        w_len,
        || g.column_buffer(),
        |col, chunk, dw| {
            let first = chunk * WEIGHT_GRAD_CHUNK;
            for n in first..(first + WEIGHT_GRAD_CHUNK).min(g.batch) {
                for group in 0..g.groups {
                    let xg = &x[n * g.in_sample() + group * cg_len..][..cg_len];
                    let col: &[T] = if g.is_pointwise() {
                        xg
                    } else {
                        im2col(xg, g, col);
                        &col
                    };
                    let dyg = &dy[n * g.out_sample() + group * og * p..][..og * p];
                    unsafe {
                        gemm_into(
                            [og, rows, p],
                            dw[group * og * rows..].as_mut_ptr(),
                            [rows, 1],
                            n != first,
                            dyg.as_ptr(),
                            [p, 1],
                            col.as_ptr(),
                            [1, p],
                        );
                    }
                }
            }
        },
    );
    let (total, rest) = partial.split_at_mut(w_len);
    for chunk in rest.chunks(w_len) {
        for (t, c) in total.iter_mut().zip(chunk) {
            *t = *t + *c;
        }
    }
    partial.truncate(w_len);
    partial
}

/// Gradient of the bias: per output channel, the sum of `dy` over samples and positions, in
/// eight interleaved partial sums per row (fixed order) so the adds pipeline.
fn bias_grad<T: Float + Send + Sync>(dy: &[T], batch: usize, channels: usize, p: usize) -> Vec<T> {
    let mut out = vec![T::zero(); channels];
    for_each_chunk(
        &mut out,
        1,
        || (),
        |_, o, slot| {
            let mut lanes = [T::zero(); 8];
            for n in 0..batch {
                let row = &dy[(n * channels + o) * p..][..p];
                let mut pieces = row.chunks_exact(8);
                for piece in &mut pieces {
                    for (l, v) in lanes.iter_mut().zip(piece) {
                        *l = *l + *v;
                    }
                }
                for (l, v) in lanes.iter_mut().zip(pieces.remainder()) {
                    *l = *l + *v;
                }
            }
            slot[0] = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        },
    );
    out
}

/// Which computation of [`conv2d`], for its dtype dispatch.
enum Op {
    Forward,
    InputGrad,
    WeightGrad,
}

/// Runs `op` on `a`, `b` (and the forward's `bias`) in their float type: f32 and f64 natively,
/// f16/bf16 through f32.
fn dispatch(
    a: &FlexTensor,
    b: &FlexTensor,
    bias: Option<&FlexTensor>,
    op: Op,
    g: &Geometry,
    shape: Shape,
) -> FlexTensor {
    fn run<T: 'static + Float + Send + Sync + burn_backend::Element + bytemuck::Pod>(
        a: &FlexTensor,
        b: &FlexTensor,
        bias: Option<&FlexTensor>,
        op: Op,
        g: &Geometry,
        shape: Shape,
    ) -> FlexTensor {
        let (a, b) = (a.to_contiguous(), b.to_contiguous());
        let bias = bias.map(|t| t.to_contiguous());
        let (a, b, bias) = (a.storage(), b.storage(), bias.as_ref().map(|t| t.storage()));
        let out = match op {
            Op::Forward => forward::<T>(a, b, bias, g),
            Op::InputGrad => input_grad::<T>(a, b, g),
            Op::WeightGrad => weight_grad::<T>(a, b, g),
        };
        FlexTensor::from_data(TensorData::new(out, shape))
    }
    match a.dtype() {
        DType::F32 => run::<f32>(a, b, bias, op, g, shape),
        DType::F64 => run::<f64>(a, b, bias, op, g, shape),
        dtype @ (DType::F16 | DType::BF16) => {
            let bias = bias.map(widen_half);
            let out = run::<f32>(&widen_half(a), &widen_half(b), bias.as_ref(), op, g, shape);
            narrow_half(out, dtype)
        }
        dtype => panic!("conv2d: unsupported dtype {dtype:?}"),
    }
}

/// Output size along one axis, as every convolution computes it.
fn out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: (usize, usize),
    dilation: usize,
) -> usize {
    let span = dilation * (kernel - 1) + 1;
    (input + padding.0 + padding.1).saturating_sub(span) / stride + 1
}

/// `conv2d` of `x` `[N, C, H, W]` and `weight` `[O, C/groups, KH, KW]`.
pub fn conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let xs = x.layout().shape().clone();
    let ws = weight.layout().shape().clone();
    let out = [
        out_len(
            xs[2],
            ws[2],
            options.stride[0],
            options.padding[0],
            options.dilation[0],
        ),
        out_len(
            xs[3],
            ws[3],
            options.stride[1],
            options.padding[1],
            options.dilation[1],
        ),
    ];
    let g = Geometry::new(&xs, &ws, out, options);
    let shape = Shape::new([g.batch, g.out_channels, out[0], out[1]]);
    dispatch(&x, &weight, bias.as_ref(), Op::Forward, &g, shape)
}

/// The geometry of a convolution from its input, weight and output gradient, which must have
/// the output's shape.
fn grad_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Geometry {
    let (xs, ws, os) = (
        x.layout().shape(),
        weight.layout().shape(),
        output_grad.layout().shape(),
    );
    assert!(
        os.num_dims() == 4 && os[0] == xs[0] && os[1] == ws[0],
        "conv2d backward: output gradient {os:?} does not fit input {xs:?} and weight {ws:?}"
    );
    Geometry::new(xs, ws, [os[2], os[3]], options)
}

/// Gradient of `conv2d` with respect to `x`, given the gradient of its output.
pub fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = grad_geometry(&x, &weight, &output_grad, options);
    dispatch(
        &weight,
        &output_grad,
        None,
        Op::InputGrad,
        &g,
        x.layout().shape().clone(),
    )
}

/// Gradient of `conv2d` with respect to `weight`, given the gradient of its output.
pub fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = grad_geometry(&x, &weight, &output_grad, options);
    dispatch(
        &x,
        &output_grad,
        None,
        Op::WeightGrad,
        &g,
        weight.layout().shape().clone(),
    )
}

/// Gradient of `conv2d` with respect to its bias: `output_grad` summed over batch and positions.
pub fn conv2d_bias_backward(output_grad: FlexTensor, bias_shape: Shape) -> FlexTensor {
    let os = output_grad.layout().shape().clone();
    let (batch, channels, p) = (os[0], os[1], os[2] * os[3]);
    let dy = output_grad.to_contiguous();
    match dy.dtype() {
        DType::F32 => FlexTensor::from_data(TensorData::new(
            bias_grad::<f32>(dy.storage(), batch, channels, p),
            bias_shape,
        )),
        DType::F64 => FlexTensor::from_data(TensorData::new(
            bias_grad::<f64>(dy.storage(), batch, channels, p),
            bias_shape,
        )),
        dtype @ (DType::F16 | DType::BF16) => {
            narrow_half(conv2d_bias_backward(widen_half(&dy), bias_shape), dtype)
        }
        dtype => panic!("conv2d_bias_backward: unsupported dtype {dtype:?}"),
    }
}
