//! The versions that go into a stage id besides the manifest's settings: what decides a stage's
//! numbers in code rather than in the manifest. Kept below `manifest`, `plan` and `train` so
//! that the planner (which computes ids) and the trainer (whose numerics they describe) both
//! read them without importing each other. Dataset readers' versions live with their datasets
//! ([`crate::manifest::DatasetSpec::reader_version`]).

/// Version of the numerics of training: part of every stage id. Bump it in the same commit as
/// any change in `train/` that moves a number (a loss, an initializer, an optimizer default,
/// batch order), so stale stages are never reused; the pinned digests in `tests/it/pinned.rs`
/// fail until it is bumped and they are updated. 4: flex's convolutions, their gradients and
/// batch norm computed by the patched burn-flex (`vendor/burn-flex/PATCH.md`), which sums in
/// other orders than upstream's. 5: the same orders on every x86-64-v3 processor (no AVX-512
/// kernels in macerator, GEMM blocking independent of the cache sizes, `crate::numerics`):
/// stages trained by version 4 on AVX-512 machines hold other numbers under the same ids.
pub const TRAINER_VERSION: u32 = 5;

/// Revision of the LibTorch kernels behind the `tch` backend, part of its stage ids (flex
/// stages are untouched by it, unlike [`TRAINER_VERSION`]). 2: LibTorch's own convolution and
/// ReLU gradients (`vendor/burn-tch`, as PyTorch's autograd computes them) instead of Burn's
/// decompositions, which summed in another order: same model, other bits. 3: batch norm as
/// LibTorch's fused `native_batch_norm` and its backward. 4: ATen, oneDNN and MKL pinned to their
/// AVX2 kernels on every x86-64 processor (`crate::numerics::PINNED`).
pub const TCH_KERNELS: u32 = 4;

/// Revision of how kdgrid runs an ONNX graph, part of ONNX stages' ids (and so of every stage
/// they teach). 2: the batch always concrete, in chunks of `onnx::CHUNK` with the rest in
/// powers of two (1 left an open batch symbolic in tract: slower, unbounded memory, and other
/// bits).
pub const ONNX_RUNNER: u32 = 2;

/// SHA-256 of a file's bytes (hex), streamed from disk (weights files and ONNX side files run to
/// gigabytes), and the bytes it read.
pub fn file_sha256(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let bytes = std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), bytes))
}
