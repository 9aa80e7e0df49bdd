//! Content digests of the files a dataset reads, for stage ids: a changed image gives new ids,
//! a moved folder does not (paths enter the digest relative to the dataset's folder).
//!
//! Hashing 60,000 images on every `plan` would be slow, so each file's digest is cached by
//! absolute path, size and modification time in `<results>/.cache/data-digests.json`.

use super::{DataError, cifar, folder};
use crate::manifest::{DatasetSpec, FileFormat};
use crate::store::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Digest of a dataset's content: 64 hex digits.
pub type Fingerprint = String;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

/// Per-file digests keyed by absolute path, persisted between runs.
#[derive(Debug, Default)]
pub struct DigestCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
    dirty: bool,
}

impl DigestCache {
    /// The cache kept under a results folder (an unreadable cache is simply rebuilt).
    pub fn open(results: &Path) -> Self {
        let path = results.join(".cache").join("data-digests.json");
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path: Some(path),
            entries,
            dirty: false,
        }
    }

    /// A cache that lives in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    fn digest(&mut self, file: &Path) -> Result<String, DataError> {
        let io = |source| DataError::Io {
            path: file.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::Missing {
                path: file.to_path_buf(),
            },
            _ => io(e),
        })?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = std::path::absolute(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display()
            .to_string();
        if let Some(e) = self.entries.get(&key)
            && e.size == meta.len()
            && e.mtime_ns == mtime_ns
        {
            return Ok(e.sha256.clone());
        }
        let mut f = std::fs::File::open(file).map_err(io)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut f, &mut hasher).map_err(io)?;
        let sha256 = hex::encode(hasher.finalize());
        self.entries.insert(
            key,
            Entry {
                size: meta.len(),
                mtime_ns,
                sha256: sha256.clone(),
            },
        );
        self.dirty = true;
        Ok(sha256)
    }

    /// Writes the cache back if it learned something; a cache that cannot be written only
    /// costs time on the next run.
    pub fn save(&mut self) {
        if let (true, Some(path)) = (self.dirty, &self.path) {
            let bytes = serde_json::to_vec(&self.entries).expect("digests serialize");
            if write_atomic(path, &bytes).is_ok() {
                self.dirty = false;
            }
        }
    }
}

/// The files `spec` reads, each with its path relative to the dataset's folder.
fn files(spec: &DatasetSpec) -> Result<Vec<(String, PathBuf)>, DataError> {
    let DatasetSpec::Files {
        format,
        path,
        train_limit,
        test_limit,
        ..
    } = spec
    else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = match format {
        FileFormat::FashionMnist | FileFormat::Mnist => {
            return [
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            ]
            .iter()
            .map(|name| {
                let plain = path.join(name);
                let gz = path.join(format!("{name}.gz"));
                match (plain.exists(), gz.exists()) {
                    (true, _) => Ok((name.to_string(), plain)),
                    (false, true) => Ok((format!("{name}.gz"), gz)),
                    _ => Err(DataError::Missing { path: plain }),
                }
            })
            .collect();
        }
        FileFormat::Cifar10 | FileFormat::Cifar100 => {
            let release = if *format == FileFormat::Cifar10 {
                cifar::Release::Cifar10
            } else {
                cifar::Release::Cifar100
            };
            release.all_files()
        }
        FileFormat::Text => vec!["train.tsv".into(), "test.tsv".into()],
        FileFormat::ImageFolder => {
            let classes = folder::class_folders(&path.join("train"))?;
            let mut out = Vec::new();
            for (split, limit) in [("train", train_limit), ("test", test_limit)] {
                for (file, _) in folder::list(&path.join(split), &classes, *limit)? {
                    let rel = file.strip_prefix(path).unwrap_or(&file);
                    out.push((rel.to_string_lossy().replace('\\', "/"), file));
                }
            }
            return Ok(out);
        }
    };
    Ok(names
        .into_iter()
        .map(|n| (n.clone(), path.join(n)))
        .collect())
}

/// The content digest of what `spec` reads: for files, their relative paths and bytes; for
/// synthetic data, its parameters (which decide every pixel).
pub fn fingerprint(spec: &DatasetSpec, cache: &mut DigestCache) -> Result<Fingerprint, DataError> {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(spec).expect("specs serialize"));
    for (rel, file) in files(spec)? {
        hasher.update(format!("\n{rel}\t{}", cache.digest(&file)?).as_bytes());
    }
    cache.save();
    Ok(hex::encode(hasher.finalize()))
}
