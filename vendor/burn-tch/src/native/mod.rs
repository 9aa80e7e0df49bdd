//! kdgrid patch: LibTorch's native kernels for gradients Burn otherwise decomposes into several
//! generic ops (see `conv_backward.cpp`).

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
    if !error.is_null() {
        // SAFETY: the shim returns a NUL-terminated string from strdup.
        let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { libc::free(error.cast()) };
        panic!("LibTorch convolution_backward failed: {message}");
    }
    // SAFETY: a non-null pointer from the shim is a heap tensor now owned here.
    let mut grad = unsafe { tch::Tensor::from_ptr(out[which as usize]) };
    if asymmetric && matches!(which, ConvGrad::Input) {
        for (dim, (begin, _)) in pads.iter().enumerate() {
            grad = grad.narrow(dim as i64 + 2, *begin as i64, input_shape[dim + 2]);
        }
    }
    TchTensor::new(grad)
}
