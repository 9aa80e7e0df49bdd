//! Runs in the viewers people already open: TensorBoard event files written while a study
//! trains (or from the store), and an MLflow tracking server fed from the store. Tracking
//! reads what training produced and never changes it: no stage id, record or table depends on
//! it, and a viewer that fails is reported without failing a run.

pub mod mlflow;
pub mod proto;
pub mod runs;
pub mod tensorboard;
pub mod tfrecord;

pub use tensorboard::TensorBoard;

use std::path::PathBuf;

/// Why tracking failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TrackError {
    /// A file of the TensorBoard folder could not be read or written.
    #[error("cannot write TensorBoard file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The MLflow server refused a request or could not be reached.
    #[error("MLflow at {uri}: {what}")]
    Mlflow {
        /// The tracking URI.
        uri: String,
        /// What failed.
        what: String,
    },
}
