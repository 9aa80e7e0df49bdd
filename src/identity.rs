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
/// other orders than upstream's.
pub const TRAINER_VERSION: u32 = 4;

/// Revision of the LibTorch kernels behind the `tch` backend, part of its stage ids (flex
/// stages are untouched by it, unlike [`TRAINER_VERSION`]). 2: LibTorch's own convolution and
/// ReLU gradients (`vendor/burn-tch`, as PyTorch's autograd computes them) instead of Burn's
/// decompositions, which summed in another order: same model, other bits. 3: batch norm as
/// LibTorch's fused `native_batch_norm` and its backward.
pub const TCH_KERNELS: u32 = 3;
