//! The LibTorch kernels kdgrid's patched burn-tch calls (`vendor/burn-tch/PATCH.md`) against
//! LibTorch's own ops and autograd, through the same Burn calls the trainer makes: max-pooling
//! must be bit-identical (values and the indices that route gradients, on ties, NaN and
//! infinities, odd sizes and rows longer than one AVX2 block), and the input and weight
//! gradients of a convolution must equal what PyTorch's autograd computes for the same inputs
//! (the bias gradient, a sum oneDNN takes in its own order there, within float rounding).
#![allow(deprecated)] // burn marks tch deprecated

use burn::tensor::module::{conv2d, max_pool2d_with_indices};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

/// Deterministic values from a few levels (many ties), with NaN and infinities sprinkled in.
fn values(n: usize, salt: u64, special: bool) -> Vec<f32> {
    let mut state = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 23 {
                0 if special => f32::NAN,
                1 if special => f32::NEG_INFINITY,
                2 if special => f32::INFINITY,
                r => {
                    (r % 5) as f32 - 2.0
                        + if special {
                            0.0
                        } else {
                            (state % 97) as f32 / 97.0
                        }
                }
            }
        })
        .collect()
}

fn torch(v: &[f32], shape: [usize; 4]) -> tch::Tensor {
    tch::Tensor::from_slice(v).view(shape.map(|d| d as i64))
}

fn to_vec(t: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).expect("float tensor")
}

#[test]
fn max_pooling_equals_libtorch_bit_for_bit() {
    let device = Device::libtorch();
    for (i, shape) in [
        [2, 3, 8, 8],
        [3, 5, 9, 13],
        [2, 3, 16, 34],
        [1, 2, 2, 2],
        [4, 1, 7, 40],
    ]
    .into_iter()
    .enumerate()
    {
        let v = values(shape.iter().product(), i as u64 + 1, true);
        let x = Tensor::<4>::from_data(TensorData::new(v.clone(), shape), &device);
        let (y, idx) = max_pool2d_with_indices(x, MaxPoolOptions::new([2, 2]));
        let (ty, tidx) =
            torch(&v, shape).max_pool2d_with_indices([2, 2], [2, 2], [0, 0], [1, 1], false);
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(
            y.dims().map(|d| d as i64).to_vec(),
            ty.size(),
            "shape {shape:?}"
        );
        assert_eq!(
            bits(y.into_data().to_vec().unwrap()),
            bits(to_vec(&ty)),
            "values of {shape:?}"
        );
        let idx: Vec<i64> = idx.into_data().convert::<i64>().to_vec().unwrap();
        let tidx = Vec::<i64>::try_from(tidx.flatten(0, -1)).unwrap();
        assert_eq!(idx, tidx, "indices of {shape:?}");
    }
}

#[test]
fn convolution_gradients_equal_pytorch_autograd() {
    let device = Device::libtorch().autodiff();
    // Same padding, valid padding, stride 2, and asymmetric padding (applied to the input).
    for (case, (padding, stride)) in [
        ([(1, 1), (1, 1)], 1),
        ([(0, 0), (0, 0)], 1),
        ([(1, 1), (1, 1)], 2),
        ([(0, 1), (1, 0)], 1),
    ]
    .into_iter()
    .enumerate()
    {
        let (xs, ws, c_out) = ([4, 3, 10, 11], [5, 3, 3, 3], 5);
        let xv = values(xs.iter().product(), 10 + case as u64, false);
        let wv = values(ws.iter().product(), 20 + case as u64, false);
        let bv = values(c_out, 30 + case as u64, false);
        let options = ConvOptions::new_with_padding([stride; 2], padding, [1, 1], 1);
        let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), xs), &device).require_grad();
        let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), ws), &device).require_grad();
        let b =
            Tensor::<1>::from_data(TensorData::new(bv.clone(), [c_out]), &device).require_grad();
        let y = conv2d(x.clone(), w.clone(), Some(b.clone()), options);
        let gv = values(y.dims().iter().product(), 40 + case as u64, false);
        let g = Tensor::<4>::from_data(TensorData::new(gv.clone(), y.dims()), &device);
        let grads = (y * g).sum().backward();
        let grad = |t: Option<Tensor<4>>| -> Vec<f32> { t.unwrap().into_data().to_vec().unwrap() };

        // PyTorch: pad explicitly where the padding is asymmetric, as F.pad + conv2d would.
        let tx = torch(&xv, xs).set_requires_grad(true);
        let tw = torch(&wv, ws).set_requires_grad(true);
        let tb = tch::Tensor::from_slice(&bv).set_requires_grad(true);
        let [(top, bottom), (left, right)] = padding;
        let padded = tx.constant_pad_nd([left as i64, right as i64, top as i64, bottom as i64]);
        let ty = padded.conv2d(&tw, Some(&tb), [stride as i64; 2], [0, 0], [1, 1], 1);
        let tg = tch::Tensor::from_slice(&gv).view(ty.size().as_slice());
        (&ty * &tg).sum(tch::Kind::Float).backward();
        assert_eq!(
            grad(x.grad(&grads)),
            to_vec(&tx.grad()),
            "input gradient, case {case}"
        );
        assert_eq!(
            grad(w.grad(&grads)),
            to_vec(&tw.grad()),
            "weight gradient, case {case}"
        );
        let gb: Vec<f32> = b.grad(&grads).unwrap().into_data().to_vec().unwrap();
        for (ours, theirs) in gb.iter().zip(to_vec(&tb.grad())) {
            assert!(
                (ours - theirs).abs() <= 1e-6 * theirs.abs(),
                "bias gradient, case {case}: {ours} vs {theirs}"
            );
        }
    }
}
