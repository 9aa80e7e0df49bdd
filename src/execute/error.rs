//! What stops a sweep or a stage task (a diverging stage does not: it is recorded), shared by
//! every executor and by the sweep that drives them.

use crate::data::DataError;
use crate::report::ReportError;
use crate::store::StoreError;
use crate::train::TrainError;
use std::path::PathBuf;
use thiserror::Error;

/// Errors that stop a sweep (a diverging stage does not: it is recorded).
#[derive(Debug, Error, miette::Diagnostic)]
pub enum SweepError {
    /// The dataset is missing or corrupt.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Data(#[from] DataError),
    /// The results store failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
    /// Tables could not be written.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Report(#[from] ReportError),
    /// A model file could not be read or written.
    #[error("{0}")]
    Model(TrainError),
    /// A model does not fit the images (known only once an image folder is read).
    #[error("{message}")]
    #[diagnostic(
        code(kdgrid::sweep::shape),
        help("use fewer conv layers or pools, e.g. `pool = [1, 2]`")
    )]
    Shape {
        /// What does not fit.
        message: String,
    },
    /// A stage task found its teacher neither trained nor being trained.
    #[error(
        "stage `{stage}` cannot train: its teacher stage `{teacher}` is not in the store and no task is training it"
    )]
    #[diagnostic(
        code(kdgrid::sweep::teacher_missing),
        help(
            "the teacher's task must have failed: `kdgrid status` shows it; `kdgrid slurm submit` again resubmits what is not done"
        )
    )]
    TeacherMissing {
        /// The stage that was to train.
        stage: String,
        /// Its teacher.
        teacher: String,
    },
    /// Two tasks sharing a store computed different plans (stage ids).
    #[error(
        "this {here} computed another plan than the running {there}: {differences}; stopping, since neither would ever see the other's stages"
    )]
    #[diagnostic(
        code(kdgrid::sweep::plan_mismatch),
        help(
            "start every task with the same manifest, `--profile`, data and compute options (`--backend`, `--device`, `--threads`: LibTorch CPU stage ids name the thread count)"
        )
    )]
    PlanMismatch {
        /// This task.
        here: String,
        /// The other task.
        there: String,
        /// The settings that differ.
        differences: String,
    },
    /// `kdgrid trace` replays the `cnn` families and the encoders only.
    #[error(
        "stage `{stage}` is a `{family}`: only `cnn`, `plain-cnn`, `mlp`, `bert` and `distilbert` stages can be traced"
    )]
    #[diagnostic(code(kdgrid::sweep::not_traceable))]
    NotTraceable {
        /// The stage.
        stage: String,
        /// Its model family.
        family: String,
    },
    /// A stage asked for its outputs has not trained (or failed).
    #[error("stage `{stage}` has no trained weights in the store")]
    #[diagnostic(
        code(kdgrid::sweep::not_trained),
        help("`kdgrid run` trains it; `kdgrid status` shows whether it failed")
    )]
    NotTrained {
        /// The stage.
        stage: String,
    },
    /// A stage named on the command line is not in the plan.
    #[error("stage `{stage}` is not a stage of this plan")]
    #[diagnostic(
        code(kdgrid::sweep::unknown_stage),
        help(
            "the same manifest, `--profile` and compute options give the same stage ids; `kdgrid plan --json` lists them"
        )
    )]
    UnknownStage {
        /// The id given.
        stage: String,
    },
    /// Adaptive seeds decide after each round what to train next, which independent tasks
    /// cannot.
    #[error("adaptive seeds need the local runner (`kdgrid run` without `--shard`)")]
    #[diagnostic(
        code(kdgrid::sweep::adaptive_tasks),
        help("list the seeds (`seed = [0, 1, 2, 3, 4]`) to run the study as independent tasks")
    )]
    AdaptiveTasks,
    /// `report` found none of the plan's stages in the store, whose tables hold rows.
    #[error(
        "no stage of this plan (compute `{compute}`) is in the store; not overwriting `{}` with empty tables",
        runs.display()
    )]
    #[diagnostic(
        code(kdgrid::sweep::nothing_stored),
        help(
            "stage ids include the compute settings: give `report` the `--backend`/`--device`/`--threads` the run used (`kdgrid status` lists what the store holds)"
        )
    )]
    NothingStored {
        /// The tables' `runs.csv`.
        runs: PathBuf,
        /// The plan's compute key.
        compute: String,
    },
    /// Stages left that wait on stages neither pending nor settled (a bug: say so).
    #[error(
        "{waiting} stages cannot start: stage `{stage}` waits for a stage that is neither pending nor in the store"
    )]
    #[diagnostic(
        code(kdgrid::sweep::stuck),
        help(
            "this should not happen: `kdgrid plan --json` and the store's records show the stage's needs; please report it"
        )
    )]
    Stuck {
        /// The first stage that cannot start.
        stage: String,
        /// How many stages were left.
        waiting: usize,
    },
    /// A worker panicked outside training (saving weights, committing a record).
    #[error("stage `{stage}` crashed outside training: {message}")]
    #[diagnostic(
        code(kdgrid::sweep::crashed),
        help(
            "the stages finished before it are kept; `kdgrid run` again resumes, and `kdgrid status` shows what is left"
        )
    )]
    Crashed {
        /// The stage.
        stage: String,
        /// The panic's message.
        message: String,
    },
}
