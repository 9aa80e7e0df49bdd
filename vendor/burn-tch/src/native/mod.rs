//! kdgrid patch: LibTorch's native kernels for gradients Burn otherwise decomposes into several
//! generic ops (see `conv_backward.cpp`).

mod norm;

pub use norm::{batch_norm, batch_norm_train, batch_norm_train_backward};

use crate::{LibTorch, TchTensor};
use burn_backend::ops::{ConvOptions, conv::pad_asymmetric_conv_input};
use std::ffi::{CStr, c_char, c_int};
use torch_sys::C_tensor;

unsafe extern "C" {
    fn burn_tch_convolution_backward(
        grad_output: *const C_tensor,
        input: *const C_tensor,
        weight: *const C_tensor,
        stride: *const i64,
        padding: *const i64,
        dilation: *const i64,
        dims: c_int,
        groups: i64,
        mask: *const c_int,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;

    fn burn_tch_max_pool2d_2x2(
        input: *const C_tensor,
        with_indices: c_int,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
}

/// Panics with the shim's error message, if any.
pub(crate) fn check(error: *mut c_char, op: &str) {
    if !error.is_null() {
        // SAFETY: the shim returns a NUL-terminated string from strdup.
        let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { libc::free(error.cast()) };
        panic!("LibTorch {op} failed: {message}");
    }
}

/// Which gradient of a convolution to compute.
#[derive(Clone, Copy)]
pub enum ConvGrad {
    /// With respect to the input.
    Input = 0,
    /// With respect to the weight.
    Weight = 1,
}

/// One gradient of `conv{N}d(x, weight)` given the output's gradient, by LibTorch's
/// `convolution_backward`. Asymmetric padding is applied to `x` explicitly (as the forward pass
/// does) and cropped from the input's gradient.
pub fn conv_backward<const N: usize>(
    x: TchTensor,
    weight: &TchTensor,
    output_grad: &TchTensor,
    options: ConvOptions<N>,
    which: ConvGrad,
) -> TchTensor {
    let asymmetric = options.is_asymmetric();
    let input_shape = x.tensor.size();
    let pads = options.padding;
    let (x, options) = pad_asymmetric_conv_input::<LibTorch, N>(x, options);
    let stride = options.stride.map(|v| v as i64);
    let padding = options.padding_begin().map(|v| v as i64);
    let dilation = options.dilation.map(|v| v as i64);
    let mut mask = [0 as c_int; 3];
    mask[which as usize] = 1;
    let mut out = [std::ptr::null_mut(); 3];
    // SAFETY: the tensors outlive the call; the shim writes owned tensors only where asked.
    let error = unsafe {
        burn_tch_convolution_backward(
            output_grad.tensor.as_ptr(),
            x.tensor.as_ptr(),
            weight.tensor.as_ptr(),
            stride.as_ptr(),
            padding.as_ptr(),
            dilation.as_ptr(),
            N as c_int,
            options.groups as i64,
            mask.as_ptr(),
            out.as_mut_ptr(),
        )
    };
    check(error, "convolution_backward");
    // SAFETY: a non-null pointer from the shim is a heap tensor now owned here.
    let mut grad = unsafe { tch::Tensor::from_ptr(out[which as usize]) };
    if asymmetric && matches!(which, ConvGrad::Input) {
        for (dim, (begin, _)) in pads.iter().enumerate() {
            grad = grad.narrow(dim as i64 + 2, *begin as i64, input_shape[dim + 2]);
        }
    }
    TchTensor::new(grad)
}

/// Whether [`max_pool2d_2x2`] computes this pooling: a 2x2 window with stride 2, no padding or
/// dilation, floor mode, on a float32 CPU tensor of at least 2x2.
pub fn is_max_pool_2x2(
    x: &TchTensor,
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> bool {
    kernel_size == [2, 2]
        && stride == [2, 2]
        && padding == [0, 0]
        && dilation == [1, 1]
        && !ceil_mode
        && x.tensor.kind() == tch::Kind::Float
        && x.tensor.device() == tch::Device::Cpu
        && x.tensor.dim() == 4
        // Smaller maps are LibTorch's to refuse.
        && x.tensor.size()[2..].iter().all(|&d| d >= 2)
}

/// 2x2/stride-2 max-pooling: the values, and their flat indices within each plane (int64) when
/// asked; bit-identical to LibTorch's `max_pool2d_with_indices`, several times faster on NCHW
/// (see `max_pool.cpp`).
pub fn max_pool2d_2x2(x: &TchTensor, with_indices: bool) -> (TchTensor, Option<TchTensor>) {
    let mut out = [std::ptr::null_mut(); 2];
    // SAFETY: `x` outlives the call; the shim writes owned tensors where documented.
    let error =
        unsafe { burn_tch_max_pool2d_2x2(x.tensor.as_ptr(), c_int::from(with_indices), out.as_mut_ptr()) };
    check(error, "max_pool2d");
    // SAFETY: non-null pointers from the shim are heap tensors now owned here.
    let values = TchTensor::new(unsafe { tch::Tensor::from_ptr(out[0]) });
    let indices = with_indices.then(|| TchTensor::new(unsafe { tch::Tensor::from_ptr(out[1]) }));
    (values, indices)
}
