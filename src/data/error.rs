//! Errors of reading datasets; every variant names the file.

use std::path::{Path, PathBuf};
use thiserror::Error;

/// A dataset that is missing or corrupt.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum DataError {
    /// A file the dataset needs does not exist.
    #[error("dataset file `{}` not found{}", path.display(), gz_note(path))]
    #[diagnostic(code(kdgrid::data::missing), help("{}", missing_help(path)))]
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

fn is_idx(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains("-ubyte"))
}

/// IDX files are read plain or gzipped.
fn gz_note(path: &Path) -> String {
    if is_idx(path) {
        format!(" (also tried `{}.gz`)", path.display())
    } else {
        String::new()
    }
}

/// What to do about a missing file, by the kind of dataset its name says it belongs to.
fn missing_help(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if is_idx(path) {
        "for Fashion-MNIST run `make data`; otherwise point `dataset.path` in the manifest at the folder holding the IDX files"
    } else if ext == "bin" {
        "kdgrid never downloads CIFAR: point `dataset.path` at the extracted binary release (`cifar-10-batches-bin/` or `cifar-100-binary/`)"
    } else if ext == "tsv" {
        "a `text` dataset is a folder with `train.tsv` and `test.tsv`, one `label<TAB>text` per line; `scripts/examples/make-reviews.py` writes a sample"
    } else {
        "an `image-folder` dataset needs `train/<class>/` and `test/<class>/` folders of images; point `dataset.path` at the folder holding `train/` and `test/`"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::Diagnostic;

    #[test]
    fn a_missing_file_gets_the_help_of_its_dataset_kind() {
        let help = |p: &str| {
            let e = DataError::Missing { path: p.into() };
            (e.to_string(), e.help().unwrap().to_string())
        };
        let (msg, h) = help("d/train-images-idx3-ubyte");
        assert!(msg.contains(".gz") && h.contains("make data"), "{msg} {h}");
        let (msg, h) = help("d/data_batch_1.bin");
        assert!(!msg.contains(".gz") && h.contains("CIFAR"), "{msg} {h}");
        let (_, h) = help("d/train.tsv");
        assert!(h.contains("train.tsv") && !h.contains("Fashion"), "{h}");
        let (_, h) = help("d/train");
        assert!(h.contains("image-folder"), "{h}");
    }
}
