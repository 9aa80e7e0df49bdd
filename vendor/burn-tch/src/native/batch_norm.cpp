// kdgrid patch: batch normalization's gradient through LibTorch's `native_batch_norm_backward`
// (one pass over the input, as PyTorch's autograd runs it), which the tch crate does not bind.
#include <ATen/ATen.h>

#include <array>
#include <cstring>
#include <exception>

extern "C" {

// Writes the input, weight and bias gradients to `out[0..3]` as heap tensors the caller owns.
// `save_invstd` is 1 / sqrt(var + eps) of the batch statistics. Returns nullptr, or an error
// message the caller frees with free().
char *burn_tch_batch_norm_backward(const at::Tensor *grad_output, const at::Tensor *input,
                                   const at::Tensor *weight, const at::Tensor *save_mean,
                                   const at::Tensor *save_invstd, double eps, at::Tensor **out) {
  try {
    auto grads = at::native_batch_norm_backward(
        *grad_output, *input, *weight, /*running_mean=*/{}, /*running_var=*/{}, *save_mean,
        *save_invstd, /*train=*/true, eps, std::array<bool, 3>{true, true, true});
    out[0] = new at::Tensor(std::get<0>(grads));
    out[1] = new at::Tensor(std::get<1>(grads));
    out[2] = new at::Tensor(std::get<2>(grads));
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}
}
