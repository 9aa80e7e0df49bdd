//! The LibTorch kernels kdgrid's patched burn-tch calls (`vendor/burn-tch/PATCH.md`) against
//! LibTorch's own ops and autograd, through the same Burn calls the trainer makes: max-pooling
//! must be bit-identical (values and the indices that route gradients, on ties, NaN and
//! infinities, odd sizes and rows longer than one AVX2 block), and the input and weight
//! gradients of a convolution must equal what PyTorch's autograd computes for the same inputs
//! (the bias gradient, a sum oneDNN takes in its own order there, within float rounding).
//! The patched burn-flex's kernels (`vendor/burn-flex/PATCH.md`: convolution and its gradients
//! as im2col + GEMM, fused batch normalization) and the patched burn-tch's batch normalization
//! are checked against PyTorch the same way, within float rounding, and flex's for bit-identical
//! results on any number of threads.
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

/// Max-pooling on LibTorch (the patched burn-tch's kernel) and on flex (the patched burn-flex's
/// 2x2 pass), values, indices and the gradient it routes, against LibTorch's own op and
/// autograd, bit for bit.
#[test]
fn max_pooling_equals_libtorch_bit_for_bit() {
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
        let tx = torch(&v, shape).set_requires_grad(true);
        let (ty, tidx) = tx.max_pool2d_with_indices([2, 2], [2, 2], [0, 0], [1, 1], false);
        let gv = values(ty.numel(), i as u64 + 7, false);
        (&ty * tch::Tensor::from_slice(&gv).view(ty.size().as_slice()))
            .sum(tch::Kind::Float)
            .backward();
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        for (backend, device) in [
            ("tch", Device::libtorch().autodiff()),
            ("flex", Device::flex().autodiff()),
        ] {
            let x =
                Tensor::<4>::from_data(TensorData::new(v.clone(), shape), &device).require_grad();
            let (y, idx) = max_pool2d_with_indices(x.clone(), MaxPoolOptions::new([2, 2]));
            assert_eq!(
                y.dims().map(|d| d as i64).to_vec(),
                ty.size(),
                "{backend}: shape {shape:?}"
            );
            let g = Tensor::<4>::from_data(TensorData::new(gv.clone(), y.dims()), &device);
            let grads = (y.clone() * g).sum().backward();
            assert_eq!(
                bits(y.into_data().to_vec().unwrap()),
                bits(to_vec(&ty)),
                "{backend}: values of {shape:?}"
            );
            let idx: Vec<i64> = idx.into_data().convert::<i64>().to_vec().unwrap();
            let tidx = Vec::<i64>::try_from(tidx.flatten(0, -1)).unwrap();
            assert_eq!(idx, tidx, "{backend}: indices of {shape:?}");
            assert_eq!(
                bits(x.grad(&grads).unwrap().into_data().to_vec().unwrap()),
                bits(to_vec(&tx.grad())),
                "{backend}: gradient of {shape:?}"
            );
        }
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

/// Largest absolute difference between `ours` and `theirs`, relative to the largest magnitude
/// in `theirs` (a wrong index or a missed term shows as O(1); summation order as ~1e-7).
fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len(), "lengths");
    let scale = theirs.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    ours.iter()
        .zip(theirs)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// The flex convolution and its three gradients (kdgrid's burn-flex patch, im2col + GEMM)
/// against LibTorch's convolution and PyTorch's autograd, on padding, stride, dilation, groups
/// and pointwise cases; and bit-identical whatever the number of threads.
#[test]
fn flex_convolution_and_gradients_equal_libtorch() {
    let device = Device::flex().autodiff();
    // (input, weight, padding, stride, dilation, groups)
    type Case = (
        [usize; 4],
        [usize; 4],
        [(usize, usize); 2],
        usize,
        usize,
        usize,
    );
    let cases: [Case; 9] = [
        ([4, 3, 10, 11], [5, 3, 3, 3], [(1, 1), (1, 1)], 1, 1, 1),
        ([4, 3, 10, 11], [5, 3, 3, 3], [(0, 0), (0, 0)], 1, 1, 1),
        ([5, 4, 9, 12], [6, 4, 3, 3], [(1, 1), (1, 1)], 2, 1, 1),
        ([4, 3, 10, 11], [5, 3, 3, 3], [(0, 1), (1, 0)], 1, 1, 1),
        ([3, 4, 12, 10], [6, 2, 3, 2], [(2, 2), (1, 1)], 1, 2, 2),
        ([6, 8, 7, 7], [4, 8, 1, 1], [(0, 0), (0, 0)], 1, 1, 1),
        ([9, 32, 8, 8], [16, 32, 5, 5], [(2, 2), (2, 2)], 1, 1, 1),
        // A 1x1 kernel with end padding is not a pointwise product of the input.
        ([3, 4, 5, 6], [3, 4, 1, 1], [(0, 1), (0, 2)], 1, 1, 1),
        ([4, 3, 11, 10], [5, 3, 3, 3], [(0, 2), (1, 0)], 2, 1, 1),
    ];
    for (case, (xs, ws, padding, stride, dilation, groups)) in cases.into_iter().enumerate() {
        let c_out = ws[0];
        let xv = values(xs.iter().product(), 50 + case as u64, false);
        let wv = values(ws.iter().product(), 60 + case as u64, false);
        let bv = values(c_out, 70 + case as u64, false);
        let options = ConvOptions::new_with_padding([stride; 2], padding, [dilation; 2], groups);
        let run = || {
            let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), xs), &device).require_grad();
            let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), ws), &device).require_grad();
            let b = Tensor::<1>::from_data(TensorData::new(bv.clone(), [c_out]), &device)
                .require_grad();
            let y = conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone());
            let gv = values(y.dims().iter().product(), 80 + case as u64, false);
            let g = Tensor::<4>::from_data(TensorData::new(gv.clone(), y.dims()), &device);
            let grads = (y.clone() * g).sum().backward();
            let v = |t: Tensor<4>| -> Vec<f32> { t.into_data().to_vec().unwrap() };
            (
                y.dims(),
                v(y),
                v(x.grad(&grads).unwrap()),
                v(w.grad(&grads).unwrap()),
                b.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap(),
                gv,
            )
        };
        let (dims, y, dx, dw, db, gv) = run();

        let tx = torch(&xv, xs).set_requires_grad(true);
        let tw = torch(&wv, ws).set_requires_grad(true);
        let tb = tch::Tensor::from_slice(&bv).set_requires_grad(true);
        let [(top, bottom), (left, right)] = padding;
        let padded = tx.constant_pad_nd([left as i64, right as i64, top as i64, bottom as i64]);
        let ty = padded.conv2d(
            &tw,
            Some(&tb),
            [stride as i64; 2],
            [0, 0],
            [dilation as i64; 2],
            groups as i64,
        );
        assert_eq!(
            dims.map(|d| d as i64).to_vec(),
            ty.size(),
            "shape, case {case}"
        );
        let tg = tch::Tensor::from_slice(&gv).view(ty.size().as_slice());
        (&ty * &tg).sum(tch::Kind::Float).backward();
        for (what, ours, theirs) in [
            ("output", &y, to_vec(&ty)),
            ("input gradient", &dx, to_vec(&tx.grad())),
            ("weight gradient", &dw, to_vec(&tw.grad())),
            ("bias gradient", &db, to_vec(&tb.grad())),
        ] {
            let err = relative_error(ours, &theirs);
            assert!(err < 1e-5, "{what}, case {case}: relative error {err}");
        }

        // Bit-identical on one thread and on three.
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let one = pool(1).install(run);
        let three = pool(3).install(run);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (a, b) in [
            (&one.1, &three.1),
            (&one.2, &three.2),
            (&one.3, &three.3),
            (&one.4, &three.4),
        ] {
            assert_eq!(bits(a), bits(b), "threads change the bits, case {case}");
        }
    }
}

/// Batch normalization with batch statistics, forward (output, mean, biased variance) and
/// backward (input, gamma and beta gradients), on flex (kdgrid's fused kernels) and on LibTorch
/// (the patched burn-tch's `native_batch_norm` and its backward) against PyTorch's
/// `batch_norm` in training mode and its autograd.
#[test]
fn batch_norm_equals_pytorch_on_both_backends() {
    use burn::tensor::module::batch_norm_train;
    for (case, shape) in [[8, 3, 5, 5], [16, 4, 4, 4], [5, 6, 1, 7]]
        .into_iter()
        .enumerate()
    {
        let c = shape[1];
        let xv: Vec<f32> = values(shape.iter().product(), 90 + case as u64, false)
            .into_iter()
            .map(|v| 3.0 * v + 1.5)
            .collect();
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.25).collect();
        let beta: Vec<f32> = (0..c).map(|i| i as f32 * 0.1 - 0.2).collect();
        let gv = values(xv.len(), 95 + case as u64, false);
        let eps = 1e-5;

        let tx = torch(&xv, shape).set_requires_grad(true);
        let tgamma = tch::Tensor::from_slice(&gamma).set_requires_grad(true);
        let tbeta = tch::Tensor::from_slice(&beta).set_requires_grad(true);
        let ty = tx.batch_norm(
            Some(&tgamma),
            Some(&tbeta),
            None::<&tch::Tensor>,
            None::<&tch::Tensor>,
            true,
            0.1,
            eps,
            false,
        );
        let tg = torch(&gv, shape);
        (&ty * &tg).sum(tch::Kind::Float).backward();
        let (tvar, tmean) =
            tx.detach()
                .var_mean_correction([0i64, 2, 3].as_slice(), tch::Scalar::int(0), false);
        let reference = [
            to_vec(&ty),
            Vec::<f32>::try_from(tmean).unwrap(),
            Vec::<f32>::try_from(tvar).unwrap(),
            to_vec(&tx.grad()),
            Vec::<f32>::try_from(tgamma.grad()).unwrap(),
            Vec::<f32>::try_from(tbeta.grad()).unwrap(),
        ];

        for (backend, device) in [
            ("flex", Device::flex().autodiff()),
            ("tch", Device::libtorch().autodiff()),
        ] {
            let x =
                Tensor::<4>::from_data(TensorData::new(xv.clone(), shape), &device).require_grad();
            let g =
                Tensor::<1>::from_data(TensorData::new(gamma.clone(), [c]), &device).require_grad();
            let b =
                Tensor::<1>::from_data(TensorData::new(beta.clone(), [c]), &device).require_grad();
            let out = batch_norm_train(x.clone(), g.clone(), b.clone(), eps);
            let dy = Tensor::<4>::from_data(TensorData::new(gv.clone(), shape), &device);
            let grads = (out.output.clone() * dy).sum().backward();
            let v1 = |t: Tensor<1>| -> Vec<f32> { t.into_data().to_vec().unwrap() };
            let ours = [
                out.output.into_data().to_vec::<f32>().unwrap(),
                v1(out.mean),
                v1(out.variance),
                x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap(),
                v1(g.grad(&grads).unwrap()),
                v1(b.grad(&grads).unwrap()),
            ];
            let names = [
                "output",
                "mean",
                "variance",
                "input gradient",
                "gamma gradient",
                "beta gradient",
            ];
            for ((name, ours), theirs) in names.iter().zip(&ours).zip(&reference) {
                let err = relative_error(ours, theirs);
                assert!(
                    err < 2e-6,
                    "{backend} {name}, case {case}: relative error {err}"
                );
            }
            // Evaluation mode: given statistics (here the batch's own).
            let mean = Tensor::<1>::from_data(TensorData::new(reference[1].clone(), [c]), &device);
            let var = Tensor::<1>::from_data(TensorData::new(reference[2].clone(), [c]), &device);
            let eval = burn::tensor::module::batch_norm(
                Tensor::<4>::from_data(TensorData::new(xv.clone(), shape), &device),
                Tensor::<1>::from_data(TensorData::new(gamma.clone(), [c]), &device),
                Tensor::<1>::from_data(TensorData::new(beta.clone(), [c]), &device),
                mean,
                var,
                eps,
            );
            let teval = torch(&xv, shape).batch_norm(
                Some(&tch::Tensor::from_slice(&gamma)),
                Some(&tch::Tensor::from_slice(&beta)),
                Some(&tch::Tensor::from_slice(&reference[1])),
                Some(&tch::Tensor::from_slice(&reference[2])),
                false,
                0.1,
                eps,
                false,
            );
            let err = relative_error(&eval.into_data().to_vec::<f32>().unwrap(), &to_vec(&teval));
            assert!(
                err < 2e-6,
                "{backend} evaluation output, case {case}: relative error {err}"
            );
            if backend == "tch" {
                // The same LibTorch kernel as PyTorch's training forward: bit for bit.
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&ours[0]),
                    bits(&reference[0]),
                    "tch output, case {case}"
                );
            }
        }
    }
}
