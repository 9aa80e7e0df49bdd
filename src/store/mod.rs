//! The results store: one folder per experiment, one sub-folder per stage (fourth phase of
//! manifest → plan → train → store → report).
//!
//! ```text
//! results/<experiment>/
//!   .lock                     held while a sweep runs
//!   stages/FORMAT             store layout version
//!   stages/<id>/model.bpk     trained weights (written first)
//!   stages/<id>/record.json   metrics; its presence marks the stage done
//! ```
//!
//! Every file is written to a temporary file in the same folder and renamed into place, so a
//! killed sweep leaves either a whole stage or none, and resumes where it stopped.

mod record;

pub use record::{StageRecord, Status};

use crate::plan::StageId;
use fs2::FileExt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Version of the on-disk layout; a store of another version is refused, not misread.
pub const FORMAT: u32 = 1;

/// Errors of the results store; each names the file.
#[derive(Debug, Error, miette::Diagnostic)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("cannot access `{}`", path.display())]
    #[diagnostic(code(kdgrid::store::io))]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the store does not parse.
    #[error("corrupt results file `{}`: {message}", path.display())]
    #[diagnostic(
        code(kdgrid::store::corrupt),
        help("delete the stage's folder to train it again")
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another process holds the store.
    #[error("results folder `{}` is in use by another kdgrid run", path.display())]
    #[diagnostic(
        code(kdgrid::store::locked),
        help("wait for it to finish; the lock is released when that process exits")
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

/// An open, locked experiment folder.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    _lock: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (creating if needed) and locks `results/<experiment>`.
    pub fn open(results: &Path, experiment: &str) -> Result<Self, StoreError> {
        let root = results.join(experiment);
        let stages = root.join("stages");
        std::fs::create_dir_all(&stages).map_err(io(&stages))?;
        let lock_path = root.join(".lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.try_lock_exclusive()
            .map_err(|_| StoreError::Locked { path: lock_path })?;
        let format_path = stages.join("FORMAT");
        match std::fs::read_to_string(&format_path) {
            Ok(text) if text.trim() == FORMAT.to_string() => {}
            Ok(text) => {
                return Err(StoreError::Corrupt {
                    path: format_path,
                    message: format!(
                        "store format `{}`, this kdgrid reads format `{FORMAT}`",
                        text.trim()
                    ),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&format_path, format!("{FORMAT}\n").as_bytes())?;
            }
            Err(e) => return Err(io(&format_path)(e)),
        }
        Ok(Self { root, _lock: lock })
    }

    /// The experiment folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn stage_dir(&self, id: &StageId) -> PathBuf {
        self.root.join("stages").join(id.as_str())
    }

    /// Where a stage's weights live.
    pub fn model_path(&self, id: &StageId) -> PathBuf {
        self.stage_dir(id).join("model.bpk")
    }

    /// The committed record of a stage, or `None` if it was never completed.
    pub fn record(&self, id: &StageId) -> Result<Option<StageRecord>, StoreError> {
        let path = self.stage_dir(id).join("record.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let record: StageRecord = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if &record.id != id {
            return Err(StoreError::Corrupt {
                path,
                message: format!("holds stage `{}`", record.id),
            });
        }
        Ok(Some(record))
    }

    /// Writes a stage's weights atomically through `save`, which writes to the path it is given.
    pub fn save_model<E>(
        &self,
        id: &StageId,
        save: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Result<(), E>, StoreError> {
        let dir = self.stage_dir(id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".model")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        if let Err(e) = save(tmp.path()) {
            return Ok(Err(e));
        }
        let target = self.model_path(id);
        tmp.persist(&target).map_err(|e| io(&target)(e.error))?;
        Ok(Ok(()))
    }

    /// Commits a stage's record; from now on the stage counts as done.
    pub fn commit(&self, record: &StageRecord) -> Result<(), StoreError> {
        let dir = self.stage_dir(&record.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let json = serde_json::to_vec_pretty(record).expect("records serialize");
        write_atomic(&dir.join("record.json"), &json)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], with a writer callback.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kdgrid")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    write(tmp.as_file_mut())
        .and_then(|_| tmp.as_file_mut().sync_all())
        .map_err(io(path))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    Ok(())
}
