//! The compute device a sweep trains on: flex or LibTorch (CPU or CUDA), its intra-op threads,
//! and the processor kind recorded with results.

use crate::manifest::{BackendKind, ComputeSpec, DeviceSpec};
use burn::tensor::Device;
use thiserror::Error;

/// A backend that is not available in this build or on this machine.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum BackendError {
    /// The binary was built without the `tch` feature.
    #[error("this kdgrid was built without the `tch` (LibTorch) backend")]
    #[diagnostic(
        code(kdgrid::backend::not_built),
        help(
            "run `make build-tch` (installs torch 2.9.0 into ~/.cache/kdgrid once) and use `target/release/kdgrid`, or choose `backend = \"flex\"`"
        )
    )]
    NotBuilt,
    /// CUDA was asked for but LibTorch sees no such GPU.
    #[error("CUDA device {index} is not available ({count} CUDA devices found)")]
    #[diagnostic(code(kdgrid::backend::no_cuda))]
    NoCuda {
        /// The requested index.
        index: usize,
        /// Devices found.
        count: usize,
    },
}

/// The compute device of a sweep, set up from a [`ComputeSpec`].
#[derive(Debug, Clone)]
pub struct Backend {
    pub(super) device: Device,
    spec: ComputeSpec,
    threads: usize,
}

impl Backend {
    /// Sets up the backend `spec` names, including its intra-op thread count.
    pub fn new(spec: ComputeSpec) -> Result<Self, BackendError> {
        let threads = spec.resolved_threads();
        let device = match spec.backend {
            BackendKind::Flex => {
                // Fails only when the global pool already exists; flex's results do not
                // depend on the thread count, and the count actually used is recorded.
                let _ = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build_global();
                Device::flex()
            }
            BackendKind::Tch => tch_device(spec.device, threads)?,
        };
        let threads = match spec.backend {
            BackendKind::Flex => rayon::current_num_threads(),
            BackendKind::Tch => threads,
        };
        Ok(Self {
            device,
            spec,
            threads,
        })
    }

    /// The pure-Rust `flex` CPU backend with default threads.
    pub fn flex() -> Self {
        Self::new(ComputeSpec::default()).expect("flex is always built")
    }

    /// Backend name recorded with results (`flex`, `tch`).
    pub fn name(&self) -> &'static str {
        match self.spec.backend {
            BackendKind::Flex => "flex",
            BackendKind::Tch => "tch",
        }
    }

    /// Device recorded with results (`cpu`, `cuda:0`).
    pub fn device_label(&self) -> String {
        self.spec.device.to_string()
    }

    /// Intra-op threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Binds the calling thread to this backend's thread count before it trains. OpenMP's
    /// count is a per-thread setting; ATen 2.9 applies its process-wide count to each new
    /// thread lazily (measured: a fresh thread reports the count set at setup), and binding
    /// makes a stage's worker thread not depend on that. flex's rayon pool is global.
    pub fn bind_thread(&self) {
        #[cfg(feature = "tch")]
        if self.spec.backend == BackendKind::Tch && self.spec.device == DeviceSpec::Cpu {
            tch::set_num_threads(self.threads as i32);
        }
    }

    /// The kind of processor that computes, as far as it decides the numbers: flex's numeric
    /// class (`x86_64-v3` on every AVX2/FMA machine, AVX-512 ones included), the CPU kind for
    /// LibTorch (`x86_64-avx512`: its kernels agree across kinds only within a tolerance), or
    /// the device for CUDA.
    pub fn processor(&self) -> String {
        match (self.spec.backend, self.spec.device) {
            (_, DeviceSpec::Cuda(i)) => format!("cuda:{i}"),
            (BackendKind::Flex, DeviceSpec::Cpu) => crate::numerics::flex_class().to_string(),
            (BackendKind::Tch, DeviceSpec::Cpu) => crate::numerics::cpu_kind(),
        }
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn marks tch deprecated, yet it is the way to NVIDIA GPUs through libtorch
fn tch_device(device: DeviceSpec, threads: usize) -> Result<Device, BackendError> {
    tch::set_num_threads(threads as i32);
    match device {
        DeviceSpec::Cpu => Ok(Device::libtorch()),
        DeviceSpec::Cuda(index) => {
            let count = tch::Cuda::device_count().max(0) as usize;
            if index >= count {
                return Err(BackendError::NoCuda { index, count });
            }
            Ok(Device::libtorch_cuda(index))
        }
    }
}

#[cfg(not(feature = "tch"))]
fn tch_device(_: DeviceSpec, _: usize) -> Result<Device, BackendError> {
    Err(BackendError::NotBuilt)
}

#[cfg(all(test, feature = "tch"))]
mod tests {
    use super::*;

    #[test]
    fn a_worker_thread_runs_libtorch_with_the_stage_threads() {
        let spec = ComputeSpec {
            backend: BackendKind::Tch,
            threads: Some(1),
            ..ComputeSpec::default()
        };
        let backend = Backend::new(spec).unwrap();
        assert_eq!(tch::get_num_threads(), 1, "the thread that set it up");
        // Something else in the process asks for another count (a library, another backend):
        // a fresh thread follows it, a bound one keeps the stage's.
        tch::set_num_threads(3);
        let unbound = std::thread::spawn(tch::get_num_threads).join().unwrap();
        let bound = std::thread::spawn(move || {
            backend.bind_thread();
            tch::get_num_threads()
        })
        .join()
        .unwrap();
        assert_eq!((unbound, bound), (3, 1));
    }
}
