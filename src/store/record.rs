//! What the store keeps of a finished stage.

use crate::plan::StageId;
use crate::train::EpochMetrics;
use serde::{Deserialize, Serialize};

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Trained to the last epoch.
    Ok,
    /// Diverged (non-finite loss) or crashed (a panic in its worker); recorded so the sweep
    /// goes on; `run --retry-failed` trains it again.
    Failed,
    /// Not trained because its teacher failed (never stored, only reported).
    Skipped,
}

impl Status {
    /// Lowercase name, as in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// A finished stage's outcome and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage id.
    pub id: StageId,
    /// Outcome.
    pub status: Status,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Trainable parameters.
    pub params: usize,
    /// Test accuracy of the selected epoch (the last, unless the manifest selects otherwise).
    pub test_accuracy: Option<f64>,
    /// Test cross-entropy of the selected epoch.
    pub test_loss: Option<f64>,
    /// 1-based epoch whose weights were kept (absent in records that predate selection: the
    /// last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_epoch: Option<usize>,
    /// Validation accuracy of the selected epoch, when there is a validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Wall seconds of training and evaluation (a measurement: reported in `timings`, never in
    /// the result tables).
    pub train_seconds: f64,
    /// Per-epoch history.
    pub epochs: Vec<EpochMetrics>,
    /// Expected calibration error on the test split (15 bins).
    #[serde(default)]
    pub ece: Option<f64>,
    /// Top-1 agreement with the teacher on the test split (distilled stages).
    #[serde(default)]
    pub agreement: Option<f64>,
    /// Mean KL(teacher || model) at T = 1 on the test split, in nats (distilled stages).
    #[serde(default)]
    pub kl_teacher: Option<f64>,
    /// Bytes of the saved weights file.
    #[serde(default)]
    pub model_bytes: Option<u64>,
    /// Median inference milliseconds per image at batch 1 and 256 (a measurement: reported in
    /// `timings`).
    #[serde(default)]
    pub latency_ms: Option<[f64; 2]>,
    /// SHA-256 of the final weights' bits (see `train::weights_digest`).
    #[serde(default)]
    pub weights_sha256: Option<String>,
    /// SHA-256 of the saved weights file, checked whenever the stage is reused.
    #[serde(default)]
    pub model_sha256: Option<String>,
    /// The weights file in the stage's folder, named by its digest (`model-<sha256>.bpk`);
    /// absent in records that predate it, whose weights are `model.bpk`. `model.bpk` is kept as
    /// a second name of the same file, for older kdgrid versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_file: Option<String>,
    /// SHA-256 of the initial weights' bits: equal for stages that share an init seed and
    /// architecture.
    #[serde(default)]
    pub init_sha256: Option<String>,
    /// Backend that trained it.
    pub backend: String,
    /// Device that trained it (`cpu`, `cuda:0`).
    #[serde(default)]
    pub device: String,
    /// Intra-op threads of the backend.
    #[serde(default)]
    pub threads: usize,
    /// Processor kind that computed it (`x86_64-avx512`, `cuda:0`), see
    /// `train::Backend::processor`.
    #[serde(default)]
    pub processor: String,
    /// kdgrid version that trained it.
    pub kdgrid_version: String,
    /// Wall seconds from the stage's start in the process that trained it to its record's
    /// commit (training, evaluation, saving and digesting the weights; loading the data and the
    /// teacher happen before, writing the record after; a measurement). What exceeds
    /// `train_seconds` is the overhead `plan`'s estimate adds per stage to train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    /// What kdgrid read from a model's file rather than from the manifest (an ONNX graph's
    /// layout, what its output holds, the resizing to its input), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assumed: Vec<String>,
    /// Stages the run that trained it trained at once (`--jobs`; a measurement, in `timings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<usize>,
}
