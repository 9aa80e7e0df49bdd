//! Same bits on every x86-64-v3 processor: a small flex study trained natively and under
//! `qemu-x86_64` emulating other processors (another vendor and model, as `cpuid` reports
//! them) must give identical weight digests, processor labels and tables; gemm must add blocks
//! of 512 whatever the cache (qemu-user shows the host's cache sizes, so that is tested
//! directly); no AVX-512 kernel may be compiled in (qemu emulates none); and ONNX teachers,
//! run by tract, give the same logits natively and emulated.
//! docs/reproducibility.md states the promise; `.ci/run` installs Debian's `qemu-user`.
//! `KDGRID_SKIP_QEMU=1` skips the emulated runs on a machine without it, and says so. On a
//! machine of another numeric class (ARM, x86-64 without AVX2) the tests that compare with
//! x86-64-v3 bits say so and stop: the promise is not theirs.

use crate::support::*;
use std::path::Path;
use std::process::Command;

/// Large enough to reach the kernels that differed between processor kinds: 28x28 inputs,
/// a dense layer over 1,568 features (GEMMs deeper than one 512-deep block), batch sums of
/// 64 rows, Adam, and a distilled student (softmax at a temperature).
const STUDY: &str = include_str!("../fixtures/processors/study.toml");

/// qemu CPU models unlike most machines that run the tests in vendor or model: an Intel AVX2
/// part and an AMD one.
const MODELS: [&str; 2] = ["Haswell", "EPYC-Rome"];

/// Whether this machine is x86-64-v3; if not, says why the caller stops.
fn portable() -> bool {
    let class = kdgrid::numerics::flex_class();
    if class != kdgrid::numerics::PORTABLE {
        eprintln!("this machine is {class}, not x86-64-v3: nothing to compare with");
    }
    class == kdgrid::numerics::PORTABLE
}

/// `(processor, weights_sha256, test_accuracy)` of every run, in stage order.
fn runs(results: &Path) -> Vec<(String, String, String)> {
    let runs = read_parquet(&results.join("processors").join("runs.parquet"));
    let ids = strings(&runs, "stage_id");
    let mut rows: Vec<(String, String, String, String)> = ids
        .into_iter()
        .zip(strings(&runs, "processor"))
        .zip(strings(&runs, "weights_sha256"))
        .zip(floats(&runs, "test_accuracy"))
        .map(|(((id, p), w), a)| (id, p, w, format!("{:016x}", a.to_bits())))
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, p, w, a)| (p, w, a)).collect()
}

/// Whether the emulated processors are to be compared: `qemu-x86_64` must be there unless
/// `KDGRID_SKIP_QEMU` says to skip them (said on stderr).
fn emulation() -> bool {
    if std::env::var_os("KDGRID_SKIP_QEMU").is_some() {
        eprintln!("KDGRID_SKIP_QEMU is set: the emulated processors were not compared");
        return false;
    }
    let qemu = Command::new("qemu-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-x86_64 not found: install Debian's qemu-user (.ci/run does), or set \
         KDGRID_SKIP_QEMU=1 to skip this comparison"
    );
    true
}

/// ONNX teachers run by tract (the shipped ResNet-8, and the ConvNeXt with its own input size
/// and normalization) give the same logits, bit for bit, natively and on the emulated
/// processors: tract's kernels are pinned (`numerics::PINNED`) and its batches concrete.
/// 100 test images: chunks of 32 and the power-of-two remainder pieces.
#[test]
fn onnx_teachers_give_the_same_logits_on_other_x86_64_v3_processors() {
    if !portable() {
        return;
    }
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/data");
    let ws = Workspace::new(&format!(
        r#"
name = "onnx-processors"
[dataset]
kind = "image-folder"
path = "{data}/fruit"
[models.resnet8]
onnx = "{data}/fruit-resnet8.onnx"
input = {{ normalize = "dataset" }}
[models.convnext]
onnx = "{data}/fruit-convnext.onnx"
input = {{ size = 32, mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25] }}
[training]
epochs = 1
batch-size = 32
optimizer = "adam"
lr = 0.001
[grid]
seed = [0]
chains = [["resnet8"], ["convnext"]]
"#,
        data = data.display()
    ));
    ws.kdgrid(&["run", "--quiet"]).success();
    if !emulation() {
        return;
    }
    let bin = assert_cmd::cargo::cargo_bin("kdgrid");
    for chain in ["resnet8", "convnext"] {
        let id = stage_id(&ws, &[], chain, 0);
        let predict = |qemu: Option<&str>| {
            let out = ws
                .dir
                .path()
                .join(format!("{chain}-{}.json", qemu.unwrap_or("native")));
            let mut cmd = match qemu {
                Some(model) => {
                    let mut c = Command::new("qemu-x86_64");
                    c.args(["-cpu", model]).arg(&bin);
                    c
                }
                None => Command::new(&bin),
            };
            cmd.arg("--results").arg(ws.results());
            cmd.args(["predict", "--stage", &id, "--limit", "100", "--out"]);
            let run = cmd.arg(&out).arg(ws.manifest()).output().unwrap();
            let err = String::from_utf8_lossy(&run.stderr);
            assert!(run.status.success(), "{chain} on {qemu:?}: {err}");
            std::fs::read(&out).unwrap()
        };
        let native = predict(None);
        for model in MODELS {
            assert!(
                predict(Some(model)) == native,
                "{chain}: {model} gives other logits"
            );
        }
    }
}

#[test]
fn a_flex_study_has_the_same_bits_on_other_x86_64_v3_processors() {
    if !portable() {
        return;
    }
    let ws = Workspace::new(STUDY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let native = runs(&ws.results());
    assert_eq!(native.len(), 3);
    // A real training, not bits of noise: 10 classes, chance is 0.1.
    let accuracy = floats(&ws.parquet("processors", "runs.parquet"), "test_accuracy");
    assert!(accuracy.iter().all(|a| *a > 0.5), "{accuracy:?}");
    assert!(
        native.iter().all(|r| r.0 == kdgrid::numerics::PORTABLE),
        "{native:?}"
    );

    if !emulation() {
        return;
    }
    let bin = assert_cmd::cargo::cargo_bin("kdgrid");
    // Both emulations at once: each takes minutes of one core.
    let children: Vec<_> = MODELS
        .iter()
        .map(|model| {
            let results = ws.dir.path().join(format!("results-{model}"));
            let child = Command::new("qemu-x86_64")
                .args(["-cpu", model])
                .arg(&bin)
                .arg("--results")
                .arg(&results)
                .args(["run", "--quiet"])
                .arg(ws.manifest())
                .env("NO_COLOR", "1")
                // qemu warns of every feature of the model it does not emulate (TSX, PCID...).
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("qemu-x86_64 starts");
            (model, results, child)
        })
        .collect();
    for (model, results, child) in children {
        let out = child.wait_with_output().expect("qemu-x86_64 runs");
        assert!(
            out.status.success(),
            "kdgrid under qemu -cpu {model}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            runs(&results),
            native,
            "qemu -cpu {model} computed other bits than this machine"
        );
        let summary = |dir: &Path| std::fs::read(dir.join("processors").join("summary.csv"));
        assert_eq!(
            summary(&results).unwrap(),
            summary(&ws.results()).unwrap(),
            "summary.csv under qemu -cpu {model}"
        );
    }
}

/// The AVX-512 kernels this machine may lack, and so qemu cannot run, stay out of the build:
/// macerator without `avx512` and gemm without `x86-v4` run their AVX2 kernels on AVX-512
/// processors too (docs/reproducibility.md).
#[test]
fn no_avx512_kernels_are_compiled_in() {
    for (krate, forbidden) in [("macerator", "avx512"), ("gemm-common", "x86-v4")] {
        // The features this test binary was built with (`make test-flex` has no LibTorch).
        let features: &[&str] = if cfg!(feature = "tch") {
            &["--features", "tch"]
        } else {
            &[]
        };
        let out = Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-e", "features", "-i", krate])
            .args(features)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(krate),
            "cargo tree -i {krate}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let feature = format!("{krate} feature \"{forbidden}\"");
        assert!(
            !text.contains(&feature),
            "{feature} is enabled, so AVX-512 machines would compute other bits:\n{text}"
        );
    }
}

/// ARM and x86-64-v2 processors sum in scalar code in the order AVX2's kernel sums in
/// (`vendor/burn-flex/PATCH.md`): on this x86-64-v3 machine both run, and must agree bit for bit
/// on every length around the kernel's blocks of 8 and 64.
#[test]
fn the_reference_sum_adds_in_avx2s_order() {
    use burn_flex::simd::kernels::{sum_f32, sum_f32_reference};
    use rand::{RngExt, SeedableRng};
    if !portable() {
        return;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(32);
    let mut order_mattered = false;
    for len in (0..=300).chain([511, 512, 513, 4095, 4096, 10_007]) {
        // Magnitudes over six decades, both signs: sums that round differently in other orders.
        let xs: Vec<f32> = (0..len)
            .map(|_| {
                let e = rng.random_range(-3..3);
                rng.random_range(-1.0f32..1.0) * 10f32.powi(e)
            })
            .collect();
        let simd = sum_f32(&xs);
        assert_eq!(
            simd.to_bits(),
            sum_f32_reference(&xs).to_bits(),
            "length {len}"
        );
        let sequential: f32 = xs.iter().sum();
        order_mattered |= sequential.to_bits() != simd.to_bits();
    }
    assert!(order_mattered, "the data never made the order matter");
}

/// gemm's depth blocks are 512 deep on every processor (vendor/gemm-common/PATCH.md; upstream
/// took 1024 on 12-way L1 caches and read the sizes from this machine): a product deeper than
/// 512 equals, bit for bit, one FMA chain per block with the blocks added in order. Products of
/// at most 64 rows and columns take blocks of 512 and a remainder; larger ones spread `k`
/// evenly over the blocks, as upstream does.
#[test]
fn gemm_adds_blocks_of_512_whatever_the_cache() {
    use rand::{RngExt, SeedableRng};
    // x86-64 without FMA rounds each product (docs/reproducibility.md); ARM has FMA.
    if cfg!(target_arch = "x86_64") && !portable() {
        return;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(512);
    let mut blocking_mattered = false;
    for (m, n, k) in [(65, 70, 1000), (8, 8, 1000), (80, 66, 576), (70, 9, 1500)] {
        let mut value = || {
            let e = rng.random_range(-2..2);
            rng.random_range(-1.0f32..1.0) * 10f32.powi(e)
        };
        let lhs: Vec<f32> = (0..m * k).map(|_| value()).collect(); // row-major m x k
        let rhs: Vec<f32> = (0..k * n).map(|_| value()).collect(); // row-major k x n
        let mut dst = vec![0.0f32; m * n];
        // SAFETY: every pointer covers its matrix with the strides given.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                lhs.as_ptr(),
                1,
                k as isize,
                rhs.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let blocks: Vec<(usize, usize)> = if m <= 64 && n <= 64 {
            (0..k).step_by(512).map(|s| (s, (s + 512).min(k))).collect()
        } else {
            let iters = k.div_ceil(512);
            let kc = k.div_ceil(iters);
            (0..k).step_by(kc).map(|s| (s, (s + kc).min(k))).collect()
        };
        let chain = |i: usize, j: usize, (from, to): (usize, usize)| {
            (from..to).fold(0.0f32, |acc, p| lhs[i * k + p].mul_add(rhs[p * n + j], acc))
        };
        for i in 0..m {
            for j in 0..n {
                let expected = blocks
                    .iter()
                    .map(|b| chain(i, j, *b))
                    .reduce(|sum, block| sum + block)
                    .unwrap();
                assert_eq!(
                    dst[i * n + j].to_bits(),
                    expected.to_bits(),
                    "{m}x{n}x{k} at ({i}, {j}): {} vs {expected}",
                    dst[i * n + j]
                );
                blocking_mattered |= chain(i, j, (0, k)).to_bits() != expected.to_bits();
            }
        }
    }
    assert!(
        blocking_mattered,
        "one chain of all of k gave the same bits everywhere"
    );
}
