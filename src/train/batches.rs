//! Batches as tensors: evaluation passes over a split in fixed-size chunks, labels and cached
//! teacher rows. (Training batches are gathered in the epoch loop from the stage's order.)

use crate::data::{Dataset, Split};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Images per forward pass when evaluating.
pub(super) const EVAL_BATCH: usize = 500;

/// The labels of `indices` in `split`, as a tensor.
pub(super) fn labels_tensor(split: &Split, indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = indices.iter().map(|&i| split.labels[i] as i64).collect();
    Tensor::from_data(TensorData::new(labels, [indices.len()]), device)
}

/// Runs `f` on every image of `split`, in order, in tensors of at most [`EVAL_BATCH`] images.
pub(super) fn for_each_batch(
    data: &Dataset,
    split: &Split,
    device: &Device,
    f: impl FnMut(&[usize], Tensor<4>),
) {
    for_each_batch_of_first(data, split, split.len(), device, f)
}

/// [`for_each_batch`] over the first `n` images of `split` only.
pub(super) fn for_each_batch_of_first(
    data: &Dataset,
    split: &Split,
    n: usize,
    device: &Device,
    mut f: impl FnMut(&[usize], Tensor<4>),
) {
    let indices: Vec<usize> = (0..n.min(split.len())).collect();
    for batch in indices.chunks(EVAL_BATCH) {
        let mut pixels = Vec::new();
        data.gather(split, batch, &mut pixels);
        let shape = [batch.len(), data.channels, data.height, data.width];
        f(
            batch,
            Tensor::from_data(TensorData::new(pixels, shape), device),
        );
    }
}

/// The rows `indices` of a row-major `[n, classes]` matrix, as a tensor.
pub(super) fn rows(all: &[f32], indices: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    let mut v = Vec::with_capacity(indices.len() * classes);
    for &i in indices {
        v.extend_from_slice(&all[i * classes..(i + 1) * classes]);
    }
    Tensor::from_data(TensorData::new(v, [indices.len(), classes]), device)
}
