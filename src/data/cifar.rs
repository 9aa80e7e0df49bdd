//! The CIFAR-10 and CIFAR-100 binary releases: fixed-size records of label byte(s) followed by
//! 3072 channel-major pixel bytes (32x32 RGB).

use super::{DataError, Split};
use std::path::Path;

const PIXELS: usize = 3 * 32 * 32;

/// Which release: decides file names, label bytes and class count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// 10 classes; `data_batch_{1..5}.bin`, `test_batch.bin`; one label byte.
    Cifar10,
    /// 100 classes; `train.bin`, `test.bin`; coarse then fine label byte (fine is used).
    Cifar100,
}

impl Release {
    fn label_bytes(self) -> usize {
        match self {
            Release::Cifar10 => 1,
            Release::Cifar100 => 2,
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            Release::Cifar10 => 10,
            Release::Cifar100 => 100,
        }
    }

    /// Every file of the release, training files first.
    pub fn all_files(self) -> Vec<String> {
        let mut f = self.files(true);
        f.extend(self.files(false));
        f
    }

    fn files(self, train: bool) -> Vec<String> {
        match (self, train) {
            (Release::Cifar10, true) => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            (Release::Cifar10, false) => vec!["test_batch.bin".into()],
            (Release::Cifar100, true) => vec!["train.bin".into()],
            (Release::Cifar100, false) => vec!["test.bin".into()],
        }
    }
}

/// Loads the train and test splits of `release` from `dir`.
pub fn load(release: Release, dir: &Path) -> Result<(Split, Split), DataError> {
    Ok((read(release, dir, true)?, read(release, dir, false)?))
}

fn read(release: Release, dir: &Path, train: bool) -> Result<Split, DataError> {
    let mut split = Split {
        images: Vec::new(),
        labels: Vec::new(),
    };
    let record = release.label_bytes() + PIXELS;
    for name in release.files(train) {
        let path = dir.join(&name);
        if !path.exists() {
            return Err(DataError::Missing { path });
        }
        let bytes = std::fs::read(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        let corrupt = |what: String| DataError::Corrupt {
            path: path.clone(),
            what,
        };
        if bytes.is_empty() {
            return Err(corrupt("file is empty".into()));
        }
        if bytes.len() % record != 0 {
            return Err(corrupt(format!(
                "truncated record: {} bytes is not a whole number of {record}-byte records",
                bytes.len()
            )));
        }
        for (i, rec) in bytes.chunks_exact(record).enumerate() {
            let label = rec[release.label_bytes() - 1];
            if label as usize >= release.classes() {
                return Err(corrupt(format!(
                    "record {i} has label {label}, expected below {}",
                    release.classes()
                )));
            }
            split.labels.push(label);
            split
                .images
                .extend_from_slice(&rec[release.label_bytes()..]);
        }
    }
    Ok(split)
}
