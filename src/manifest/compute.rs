//! `[compute]`: which backend and device train the stages, with how many threads.

use super::error::Problems;
use super::values::Count;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Which Burn backend trains the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// LibTorch (CPU or CUDA), through burn's `tch` feature.
    Tch,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Flex => "flex",
            BackendKind::Tch => "tch",
        })
    }
}

/// Where a backend computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// A CUDA GPU by index (`tch` only).
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device `{s}`: expected `cpu`, `cuda` or `cuda:N`")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Backend, device and intra-op threads of a sweep.
///
/// ```toml
/// [compute]
/// backend = "tch"     # or "flex" (default)
/// device = "cuda:0"   # or "cpu" (default)
/// threads = 2         # intra-op threads; default: all cores
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputeSpec {
    /// Backend.
    pub backend: BackendKind,
    /// Device.
    pub device: DeviceSpec,
    /// Intra-op threads; `None` means all available cores.
    pub threads: Option<usize>,
    /// The numeric class whose flex stages to name (`crate::numerics`); `None`, as every
    /// manifest has it, means this processor's. Set from records, to find stages another
    /// class trained into a shared store.
    pub class: Option<&'static str>,
}

impl Default for ComputeSpec {
    fn default() -> Self {
        Self {
            backend: BackendKind::Flex,
            device: DeviceSpec::Cpu,
            threads: None,
            class: None,
        }
    }
}

impl ComputeSpec {
    /// Threads actually used: the setting, or every available core.
    pub fn resolved_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// What of the compute settings decides a stage's numbers, for stage ids: `flex` is
    /// bit-identical across thread counts and across x86-64-v3 processors (other processors
    /// add their numeric class, [`crate::numerics::flex_key`]), LibTorch on CPU is not
    /// bit-identical across thread counts, and on CUDA the device index does not matter.
    /// LibTorch keys carry [`TCH_KERNELS`].
    pub fn result_key(&self) -> String {
        match (self.backend, self.device) {
            (BackendKind::Flex, _) => match self.class {
                Some(class) => crate::numerics::flex_key_of(class),
                None => crate::numerics::flex_key(),
            },
            (BackendKind::Tch, DeviceSpec::Cpu) => {
                format!("tch{TCH_KERNELS}-cpu-{}threads", self.resolved_threads())
            }
            (BackendKind::Tch, DeviceSpec::Cuda(_)) => format!("tch{TCH_KERNELS}-cuda"),
        }
    }
}

pub use crate::identity::TCH_KERNELS;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawCompute {
    backend: Option<BackendKind>,
    device: Option<Spanned<String>>,
    threads: Option<Count>,
}

pub(crate) fn check_compute(raw: Option<&RawCompute>, problems: &mut Problems) -> ComputeSpec {
    let mut spec = ComputeSpec::default();
    let Some(raw) = raw else { return spec };
    spec.backend = raw.backend.unwrap_or(BackendKind::Flex);
    spec.threads = raw.threads.map(Count::get);
    if let Some(device) = &raw.device {
        match device.get_ref().parse::<DeviceSpec>() {
            Ok(DeviceSpec::Cuda(_)) if spec.backend == BackendKind::Flex => problems.push(
                Some(device.span()),
                "the `flex` backend runs on the CPU only",
                Some("set `backend = \"tch\"` for CUDA".into()),
            ),
            Ok(d) => spec.device = d,
            Err(e) => problems.push(Some(device.span()), e, None),
        }
    }
    spec
}
