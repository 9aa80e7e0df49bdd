// kdgrid patch: the gradient of a convolution through LibTorch's own `convolution_backward`
// (oneDNN on CPU, cuDNN on CUDA), which PyTorch's autograd calls, instead of Burn's generic
// decomposition into a transposed convolution and a convolution over swapped axes.
#include <ATen/ATen.h>

#include <array>
#include <cstring>
#include <exception>
#include <vector>

extern "C" {

// Writes the requested gradients (input, weight, bias: `mask[i] != 0`) to `out[i]` as heap
// tensors the caller owns (nullptr when not requested). Returns nullptr, or an error message
// the caller frees with free().
char *burn_tch_convolution_backward(const at::Tensor *grad_output, const at::Tensor *input,
                                    const at::Tensor *weight, const int64_t *stride,
                                    const int64_t *padding, const int64_t *dilation, int dims,
                                    int64_t groups, const int *mask, at::Tensor **out) {
  try {
    std::array<bool, 3> output_mask{mask[0] != 0, mask[1] != 0, mask[2] != 0};
    std::vector<int64_t> output_padding(dims, 0);
    std::vector<int64_t> bias_sizes{weight->size(0)};
    auto grads = at::convolution_backward(
        *grad_output, *input, *weight, at::IntArrayRef(bias_sizes),
        at::IntArrayRef(stride, dims), at::IntArrayRef(padding, dims),
        at::IntArrayRef(dilation, dims), /*transposed=*/false, at::IntArrayRef(output_padding),
        groups, output_mask);
    out[0] = output_mask[0] ? new at::Tensor(std::get<0>(grads)) : nullptr;
    out[1] = output_mask[1] ? new at::Tensor(std::get<1>(grads)) : nullptr;
    out[2] = output_mask[2] ? new at::Tensor(std::get<2>(grads)) : nullptr;
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}
}
