//! Which processors compute the same bits, and the switches that make them. Below everything:
//! the manifest puts a processor's numeric class into stage ids when it is not the portable
//! one, the trainer records it with every result, and the binary pins the libraries'
//! run-time kernel choices before any of them initializes.
//!
//! flex's floating-point orders are functions of the shapes only on every x86-64 processor
//! with AVX2 and FMA (x86-64-v3, AVX-512 machines included): the patched burn-flex builds
//! macerator without its AVX-512 kernels and the patched gemm-common blocks GEMMs by fixed
//! sizes instead of the cache sizes the processor reports (`vendor/*/PATCH.md`). Other
//! processors run narrower or unfused kernels whose sums round differently; their stages get
//! ids of their own, so a store shared by both never mixes the two. The promise, and the test
//! behind each row, is in `docs/reproducibility.md`.

/// The class whose numbers every x86-64-v3 processor reproduces bit for bit (AVX2 and FMA,
/// with or without AVX-512): the one the committed tables come from.
pub const PORTABLE: &str = "x86_64-v3";

/// What macerator's AVX2 kernels (`V3`) ask of the processor; without one of them it falls
/// back to 128-bit (`V2`) or scalar kernels, and gemm to kernels without FMA.
#[cfg(target_arch = "x86_64")]
fn has_v3() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("sse4.2")
        && has!("popcnt")
        && has!("avx")
        && has!("avx2")
        && has!("bmi1")
        && has!("bmi2")
        && has!("fma")
        && has!("lzcnt")
        && has!("f16c")
}

/// The numeric class of this processor for flex: [`PORTABLE`] on x86-64-v3 and above,
/// `x86_64-v2` (SSE4.2, 128-bit kernels, no FMA) or `x86_64-v1` below it, `aarch64-neon` on
/// 64-bit ARM, the architecture's name elsewhere.
pub fn flex_class() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has_v3() {
            PORTABLE
        } else if has!("sse4.2") && has!("popcnt") {
            X86_64_V2
        } else {
            X86_64_V1
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        AARCH64
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        std::env::consts::ARCH
    }
}

/// What a flex stage id carries of the processor: nothing on the portable class (so its ids
/// are the same on every x86-64-v3 machine), the class otherwise.
pub fn flex_key() -> String {
    flex_key_of(flex_class())
}

/// [`flex_key`] for the stages of numeric class `class`, computed on any processor (what
/// `gc`, `status` and `report` need for stages another class trained into a shared store).
pub fn flex_key_of(class: &str) -> String {
    match class {
        PORTABLE => "flex".to_string(),
        other => format!("flex-{other}"),
    }
}

/// The numeric class a record's `processor` names, if it is one of this version's
/// (records of trainer version 4 and before named processor kinds, `x86_64-avx2`).
pub fn class_named(processor: &str) -> Option<&'static str> {
    CLASSES
        .into_iter()
        .chain([std::env::consts::ARCH])
        .find(|c| *c == processor)
}

/// Every class [`flex_class`] names on x86-64 and ARM (other architectures name themselves).
const CLASSES: [&str; 4] = [PORTABLE, X86_64_V2, X86_64_V1, AARCH64];
const X86_64_V2: &str = "x86_64-v2";
const X86_64_V1: &str = "x86_64-v1";
const AARCH64: &str = "aarch64-neon";

/// The processor kind LibTorch computes on (`x86_64-avx512`, `x86_64-avx2`...): even with its
/// kernels pinned to AVX2 ([`PINNED`]) its results depend on the processor model (oneDNN and
/// MKL choose from the vendor and caches), so rows say which kind computed them.
pub fn cpu_kind() -> String {
    #[cfg(target_arch = "x86_64")]
    let level = {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") {
            "avx512"
        } else if has!("avx2") {
            "avx2"
        } else if has!("sse4.1") {
            "sse4.1"
        } else {
            "sse2"
        }
    };
    #[cfg(target_arch = "aarch64")]
    let level = "neon";
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let level = "base";
    format!("{}-{level}", std::env::consts::ARCH)
}

/// Environment switches read once by the libraries kdgrid links, which would otherwise choose
/// kernels from the processor: tract (ONNX teachers) drops its AVX-512 kernels and uses one
/// cost model and one cache size for its kernel choice whatever the vendor; LibTorch's ATen,
/// oneDNN and MKL stay on AVX2 code. Set on x86-64-v3 processors only; a value the user set is
/// kept (and is theirs to record).
pub const PINNED: [(&str, &str); 6] = [
    ("TRACT_CPU_ISA", "-avx512f,-avx512fp16,-avx512vnni"),
    ("TRACT_X86_KIND", "amd"),
    ("TRACT_LLC_BYTES", "32M"),
    ("ATEN_CPU_CAPABILITY", "avx2"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ("MKL_CBWR", "AVX2"),
];

/// Sets [`PINNED`]'s variables that are unset, on x86-64-v3 processors only (elsewhere the
/// AVX2 kernels they name do not exist: LibTorch would take `ATEN_CPU_CAPABILITY=avx2` at its
/// word and fault).
///
/// # Safety
/// Call it first thing in `main`, before any other thread starts (the environment is not
/// thread-safe) and before tract or LibTorch reads its environment.
pub(crate) unsafe fn pin_libraries() {
    #[cfg(target_arch = "x86_64")]
    if has_v3() {
        for (key, value) in PINNED {
            if std::env::var_os(key).is_none() {
                // SAFETY: the caller guarantees no other thread exists yet.
                unsafe { std::env::set_var(key, value) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_classes_other_than_the_portable_one_are_in_stage_ids() {
        // Stage ids of the class the committed tables come from do not carry the class.
        assert_eq!(flex_key_of("x86_64-v3"), "flex");
        assert_eq!(flex_key_of("aarch64-neon"), "flex-aarch64-neon");
        assert_eq!(flex_key(), flex_key_of(flex_class()));
        assert_eq!(class_named("aarch64-neon"), Some("aarch64-neon"));
        assert_eq!(class_named("x86_64-avx2"), None);
    }
}
