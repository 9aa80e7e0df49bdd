//! The trainer: trains one [`Stage`] on a [`Dataset`] with Burn (third phase of
//! manifest → plan → train → store → report).
//!
//! Every random choice comes from the stage's own `rand_chacha` streams ([`Stage::init_stream`],
//! [`Stage::order_stream`]) and batches are built here, in order, so a stage's result does not
//! depend on what else runs in the process. Burn types stay inside this module.
//!
//! Rooms: `epoch_loop` (steps, epochs, selection), `batches`, `evaluate` (loss, accuracy,
//! logits, latency), `optimizer`, `digest`, `backend`, `checkpoint` and `trace`; the networks
//! in `net` (`model` for the conv stack, `resnet`, `mobilenet`, `lstm`, `bert`), their losses in
//! `loss`, imported weights in `import` and `named`; `teacher` is what a student learns from,
//! `onnx_teacher` a frozen ONNX graph among those.

mod backend;
mod batches;
pub mod bench;
mod bert;
mod checkpoint;
mod digest;
mod epoch_loop;
mod evaluate;
mod import;
mod loss;
mod lstm;
mod mobilenet;
mod model;
mod named;
mod net;
mod onnx_teacher;
mod optimizer;
mod quality;
mod resnet;
mod teacher;
pub mod trace;

pub use backend::{Backend, BackendError};
pub use digest::weights_digest;
pub(crate) use epoch_loop::StageRun;
pub use epoch_loop::{Progress, steps_per_epoch, train};
pub use evaluate::{FrozenMetrics, Predictions, evaluate_frozen, predict};
pub use named::NamedTensor;
pub use net::Net;
pub use onnx_teacher::OnnxTeacher;
pub use quality::{ECE_BINS, Quality};
pub use teacher::Teacher;

use crate::data::Dataset;
use crate::manifest::{ImportedWeights, ModelSpec};
use crate::plan::Stage;
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

pub use crate::identity::TRAINER_VERSION;

/// Metrics after one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Mean cross-entropy on the test split.
    pub test_loss: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// Mean cross-entropy on the validation split, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Accuracy on the validation split, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Wall seconds of the epoch (training and evaluation).
    pub seconds: f64,
    /// Mean over the epoch's batches of the soft-target term of the loss, as it enters the
    /// total (`alpha * T^2 * KL`), for distilled stages (absent in records before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kd_loss: Option<f64>,
    /// Mean over the epoch's batches of the weighted hidden-state loss, for stages with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_loss: Option<f64>,
}

/// A trained stage.
#[derive(Debug)]
pub struct Trained {
    /// The model in evaluation mode.
    pub model: Net,
    /// Per-epoch history.
    pub epochs: Vec<EpochMetrics>,
    /// 1-based epoch whose weights `model` holds (see [`crate::manifest::Selection`]).
    pub selected_epoch: usize,
    /// Trainable parameters.
    pub params: usize,
    /// [`weights_digest`] of the initial weights.
    pub initial_digest: String,
    /// Wall seconds spent training and evaluating (in this process, when resumed).
    pub seconds: f64,
    /// The epoch a checkpoint resumed it from.
    pub resumed_from: Option<usize>,
    /// Calibration and agreement with the teacher on the test split.
    pub quality: Quality,
    /// Median inference milliseconds per image at batch 1 and at batch 256 (a measurement).
    pub latency_ms: [f64; 2],
}

/// A stage that could not be trained.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The loss became NaN or infinite.
    #[error("loss diverged to {loss} at epoch {epoch}, step {step}")]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// The non-finite loss.
        loss: f32,
        /// History of the epochs completed before divergence.
        epochs: Vec<EpochMetrics>,
    },
    /// The worker training the stage panicked.
    #[error("training crashed: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// Another process took the stage over while this one trained it (this one was stopped
    /// past the claims' stale time): training stopped after `epoch`.
    #[error("stopped after epoch {epoch}: another task took the stage over")]
    Abandoned {
        /// The last epoch trained here.
        epoch: usize,
    },
    /// A teacher's weights could not be read or a model could not be written.
    #[error("model file `{}`: {message}", path.display())]
    ModelFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Loads an imported model's file into `model`.
pub(super) fn import_into(model: &mut Net, w: &ImportedWeights) -> Result<(), TrainError> {
    let weights = import::read(&w.path, &w.key_map)?;
    model
        .import(&weights, w.fine_tune)
        .map_err(|message| TrainError::ModelFile {
            path: w.path.clone(),
            message,
        })
}

/// Checks that an imported model's file loads into its architecture on `data`'s images and
/// classes, so a mismatch stops a sweep before anything trains.
pub fn check_import(spec: &ModelSpec, data: &Dataset) -> Result<(), TrainError> {
    let Some(w) = &spec.weights else {
        return Ok(());
    };
    let input = [data.channels, data.height, data.width];
    let mut model = Net::new(spec, input, data.classes, None, &Backend::flex().device);
    import_into(&mut model, w)
}

/// Builds an untrained model of `stage`'s architecture for `data` (zeros, ready to load).
fn blank(stage: &Stage, data: &Dataset, backend: &Backend) -> Net {
    Net::new(
        &stage.spec,
        [data.channels, data.height, data.width],
        data.classes,
        None,
        &backend.device,
    )
}

/// Loads a trained model of `stage` from `path`.
pub fn load_model(
    stage: &Stage,
    data: &Dataset,
    backend: &Backend,
    path: &Path,
) -> Result<Net, TrainError> {
    blank(stage, data, backend).load(path)
}

/// Saves `model` to `path` (the caller makes the write atomic).
pub fn save_model(model: &Net, path: &Path) -> Result<(), TrainError> {
    model.save(path)
}
