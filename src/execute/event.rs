//! Progress events every executor reports, for the command line to print.

use crate::plan::Stage;
use crate::store::StageRecord;
use crate::train::EpochMetrics;

/// Progress events, for the CLI to print.
pub enum Event<'a> {
    /// Training begins: stages to train and their optimizer steps in all.
    Begin {
        /// Stages to train.
        stages: usize,
        /// Optimizer steps of all of them.
        steps: u64,
    },
    /// A stage starts training: its 1-based position among the stages to train, and their count.
    Start(&'a Stage, usize, usize),
    /// An optimizer step ended: epoch, step and steps per epoch.
    Step(&'a Stage, usize, usize, usize),
    /// An epoch ended.
    Epoch(&'a Stage, &'a EpochMetrics),
    /// A stage ended.
    Done(&'a Stage, &'a StageRecord),
    /// Something worth a look that does not stop the sweep (a corrupt stage retrained).
    Warning(String),
    /// Something the user may want to know (a stage resumed from a checkpoint).
    Note(String),
}
