//! kdgrid: a declarative experiment runner for knowledge-distillation and seed-variance studies.
//!
//! The data flow is visible in the module layout:
//! [`manifest`] (TOML → validated settings) → [`plan`] (grid → DAG of content-addressed
//! stages) → [`train`] (Burn training of one stage) → [`store`] (atomic per-stage records) →
//! [`report`] (Polars tables and Markdown), [`track`] (the same runs in TensorBoard and MLflow). [`execute`] holds the ways stages get trained (local threads, tasks sharing a store, Slurm
//! job arrays); [`sweep`] drives a plan through the other phases and
//! [`cli`] is the command-line edge that renders errors for people.

pub mod atomic;
pub mod cli;
pub mod data;
pub mod execute;
pub mod fault;
pub mod identity;
pub mod manifest;
pub mod numerics;
pub mod onnx;
pub mod plan;
pub mod report;
pub mod store;
pub mod sweep;
pub mod tokenizer;
pub mod track;
pub mod train;
