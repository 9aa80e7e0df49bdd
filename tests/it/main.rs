//! One integration-test binary (faster to link than one per file).

mod cli;
mod data;
mod manifests;
mod support;
mod training;
