//! One integration-test binary (faster to link than one per file).

mod bert;
mod chaos;
mod cli;
mod cluster;
mod data;
mod faults;
mod fencing;
mod fuzz;
mod gc;
mod house;
mod imported;
#[cfg(feature = "tch")]
mod kernels;
mod manifests;
mod onnx;
#[cfg(feature = "tch")]
mod parity;
mod pinned;
mod processors;
mod report;
mod support;
mod text;
mod tracking;
mod training;
