//! Content digests of the files a dataset reads, for stage ids: a changed image gives new ids,
//! a moved folder does not (paths enter the digest relative to the dataset's folder).
//!
//! Hashing 60,000 images on every `plan` would be slow, so each file's digest is cached by
//! absolute path, size, modification time, inode and status-change time in
//! `<results>/.cache/data-digests.json`. Size and mtime alone are not enough: a file rewritten
//! at the same size with its mtime restored (`cp -p`, `tar x`; IDX label files have a fixed
//! size) would keep its old digest, and old results would be reused for new data. The ctime
//! cannot be set by a user and a replaced file gets a new inode.

use super::{DataError, cifar, folder};
use crate::manifest::{DatasetSpec, FileFormat};
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
    /// Absent in caches written before they were recorded: such entries are rehashed once.
    #[serde(default)]
    inode: u64,
    #[serde(default)]
    ctime_ns: i128,
    sha256: String,
}

/// `(inode, ctime in ns)` of a file, where the platform has them.
fn identity(meta: &std::fs::Metadata) -> (u64, i128) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (
            meta.ino(),
            i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        )
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
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
        let (inode, ctime_ns) = identity(&meta);
        if let Some(e) = self.entries.get(&key)
            && e.size == meta.len()
            && e.mtime_ns == mtime_ns
            && e.inode == inode
            && e.ctime_ns == ctime_ns
            && (inode, ctime_ns) != (0, 0)
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
                inode,
                ctime_ns,
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
            if crate::atomic::write(path, &bytes).is_ok() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_file_rewritten_at_the_same_size_and_mtime_gets_a_new_digest() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("fmnist");
        std::fs::create_dir(&data).unwrap();
        for name in [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ] {
            std::fs::write(data.join(name), [0u8, 0, 8, 1, 0, 0, 0, 2, 3, 4]).unwrap();
        }
        let spec = DatasetSpec::Files {
            format: FileFormat::FashionMnist,
            path: data.clone(),
            train_limit: None,
            test_limit: None,
            normalize: None,
            resize: None,
            text: None,
        };
        let mut cache = DigestCache::open(dir.path());
        let before = fingerprint(&spec, &mut cache).unwrap();
        // Two labels swapped in place, the modification time put back (as `cp -p` or `tar x`
        // would leave it); a fresh cache read from disk, as the next `kdgrid plan` has.
        let labels = data.join("train-labels-idx1-ubyte");
        let mtime = std::fs::metadata(&labels).unwrap().modified().unwrap();
        // File times tick at the kernel's clock granularity (a few ms).
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(&labels, [0u8, 0, 8, 1, 0, 0, 0, 2, 4, 3]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&labels)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(
            std::fs::metadata(&labels).unwrap().modified().unwrap(),
            mtime
        );
        let after = fingerprint(&spec, &mut DigestCache::open(dir.path())).unwrap();
        assert_ne!(before, after);
        // Untouched, the cache answers.
        assert_eq!(
            after,
            fingerprint(&spec, &mut DigestCache::open(dir.path())).unwrap()
        );
    }
}
