//! Errors of reading datasets; every variant names the file.

use std::path::PathBuf;
use thiserror::Error;

/// A dataset that is missing or corrupt.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum DataError {
    /// A file the dataset needs does not exist.
    #[error("dataset file `{}` not found (also tried `{}.gz`)", path.display(), path.display())]
    #[diagnostic(
        code(kdgrid::data::missing),
        help(
            "for Fashion-MNIST run `make data`, or point `dataset.path` in the manifest at the folder holding the IDX files"
        )
    )]
    Missing {
        /// The expected path (without `.gz`).
        path: PathBuf,
    },
    /// Reading failed.
    #[error("cannot read `{}`", path.display())]
    #[diagnostic(code(kdgrid::data::io))]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not what its format requires.
    #[error("corrupt dataset file `{}`: {what}", path.display())]
    #[diagnostic(code(kdgrid::data::corrupt))]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A validation split that leaves nothing to train on, or holds out nothing.
    #[error(
        "`training.validation` holds out {held_out} of the {train} training images of `{dataset}`"
    )]
    #[diagnostic(
        code(kdgrid::data::validation),
        help("hold out at least one image and leave at least one to train on")
    )]
    Holdout {
        /// The dataset's name.
        dataset: String,
        /// Images held out.
        held_out: usize,
        /// Training images available.
        train: usize,
    },
}
