//! Executors: how a plan's stages get trained, between the planner and the store.
//!
//! Every executor trains a stage the same way ([`stage`]: train, save the weights, commit the
//! record); they differ in who decides what runs where:
//! - [`local`]: one process, stages on worker threads as their teachers finish (`kdgrid run`);
//! - [`tasks`]: one process among several sharing a store, training the stages it is given and
//!   waiting on teachers trained by others (`kdgrid run-stage`, `kdgrid run --shard M/N`), after
//!   checking with the others that they computed the same plan ([`agree`]);
//! - [`slurm`]: hands the plan to Slurm as job arrays of `run-stage` tasks, one per DAG level.

pub mod agree;
pub mod cores;
mod error;
mod event;
pub mod local;
pub mod slurm;
pub mod stage;
pub mod tasks;

pub use error::SweepError;
pub use event::Event;
