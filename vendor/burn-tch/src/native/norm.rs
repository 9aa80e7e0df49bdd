//! kdgrid patch: batch normalization as LibTorch's fused kernels (`native_batch_norm` and, through
//! `batch_norm.cpp`, `native_batch_norm_backward`), instead of Burn's composition of about ten
//! tensor operations each way.

use super::check;
use crate::TchTensor;
use std::ffi::c_char;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn burn_tch_batch_norm_backward(
        grad_output: *const C_tensor,
        input: *const C_tensor,
        weight: *const C_tensor,
        save_mean: *const C_tensor,
        save_invstd: *const C_tensor,
        eps: f64,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
}

/// Normalizes with given statistics (`native_batch_norm` in evaluation mode).
pub fn batch_norm(
    x: &TchTensor,
    gamma: &TchTensor,
    beta: &TchTensor,
    mean: &TchTensor,
    var: &TchTensor,
    eps: f64,
) -> TchTensor {
    let (out, _, _) = x.tensor.native_batch_norm(
        Some(&gamma.tensor),
        Some(&beta.tensor),
        Some(&mean.tensor),
        Some(&var.tensor),
        false,
        0.0,
        eps,
    );
    TchTensor::new(out)
}

/// Normalizes with the batch's own statistics, as PyTorch's training forward does; returns the
/// output, the mean and the biased variance. LibTorch keeps `1 / sqrt(var + eps)`, so the
/// variance is recovered from it in double precision (exact to float rounding of `var + eps`,
/// which is all evaluation reads of it).
pub fn batch_norm_train(
    x: &TchTensor,
    gamma: &TchTensor,
    beta: &TchTensor,
    eps: f64,
) -> (TchTensor, TchTensor, TchTensor) {
    let (out, mean, invstd) = x.tensor.native_batch_norm(
        Some(&gamma.tensor),
        Some(&beta.tensor),
        None::<&tch::Tensor>,
        None::<&tch::Tensor>,
        true,
        0.0,
        eps,
    );
    let kind = invstd.kind();
    let var = (invstd.to_kind(tch::Kind::Double).pow_tensor_scalar(-2) - eps)
        .clamp_min(0.0)
        .to_kind(kind);
    (
        TchTensor::new(out),
        TchTensor::new(mean),
        TchTensor::new(var),
    )
}

/// Input, gamma and beta gradients of [`batch_norm_train`] (`native_batch_norm_backward`).
pub fn batch_norm_train_backward(
    x: &TchTensor,
    gamma: &TchTensor,
    mean: &TchTensor,
    var: &TchTensor,
    eps: f64,
    output_grad: &TchTensor,
) -> (TchTensor, TchTensor, TchTensor) {
    let kind = var.tensor.kind();
    let invstd = (var.tensor.to_kind(tch::Kind::Double) + eps)
        .rsqrt()
        .to_kind(kind);
    let mut out = [std::ptr::null_mut(); 3];
    // SAFETY: the tensors outlive the call; the shim writes three owned tensors on success.
    let error = unsafe {
        burn_tch_batch_norm_backward(
            output_grad.tensor.as_ptr(),
            x.tensor.as_ptr(),
            gamma.tensor.as_ptr(),
            mean.tensor.as_ptr(),
            invstd.as_ptr(),
            eps,
            out.as_mut_ptr(),
        )
    };
    check(error, "native_batch_norm_backward");
    // SAFETY: non-null heap tensors from the shim, now owned here.
    let [dx, dgamma, dbeta] = out.map(|p| TchTensor::new(unsafe { tch::Tensor::from_ptr(p) }));
    (dx, dgamma, dbeta)
}
