//! The results store: one folder per experiment, one sub-folder per stage (fourth phase of
//! manifest → plan → train → store → report).
//!
//! ```text
//! results/<experiment>/
//!   .lock                     held while a sweep runs (exclusive), or by stage tasks (shared)
//!   stages/FORMAT             store layout version
//!   stages/<id>/claim         `pid N on host` of the process training the stage (heartbeat: mtime)
//!   stages/<id>/model.bpk     trained weights (written first)
//!   stages/<id>/record.json   metrics; its presence marks the stage done
//! ```
//!
//! Every file is written to a temporary file in the same folder and renamed into place, so a
//! killed sweep leaves either a whole stage or none, and resumes where it stopped.
//!
//! A local sweep holds the store alone. Stage tasks (Slurm array tasks, `run --shard`) share it,
//! possibly from several machines over a network filesystem: each claims a stage by creating its
//! `claim` file (which fails if it exists), keeps the claim alive by touching it, and a claim
//! whose holder is gone (a dead pid on this host, or no heartbeat for [`CLAIM_STALE`]) is taken
//! over. Should two tasks ever train one stage, nothing breaks: training is deterministic and the
//! commit is an atomic rename, so the second commit writes the same bytes.

mod claim;
pub mod gc;
mod record;

pub use claim::{CLAIM_STALE, Claim, ClaimState, claim_state};
pub use record::{StageRecord, Status};

use crate::plan::StageId;
use fs2::FileExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Version of the on-disk layout; a store of another version is refused, not misread.
pub const FORMAT: u32 = 2;

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
    #[error("results folder `{}` is in use by another kdgrid run ({holder})", path.display())]
    #[diagnostic(
        code(kdgrid::store::locked),
        help("wait for it to finish; the lock is released when that process exits")
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as written in the lock file (`pid 123 on host`).
        holder: String,
    },
}

/// An open, locked experiment folder.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    _lock: File,
    shared: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (creating if needed) and locks `results/<experiment>` for this process alone (a
    /// local sweep).
    pub fn open(results: &Path, experiment: &str) -> Result<Self, StoreError> {
        Self::open_with(results, experiment, false)
    }

    /// Opens `results/<experiment>` shared with other stage tasks (Slurm array tasks, `run
    /// --shard`), which coordinate through per-stage claims; refused while a local sweep holds
    /// it.
    pub fn open_shared(results: &Path, experiment: &str) -> Result<Self, StoreError> {
        Self::open_with(results, experiment, true)
    }

    fn open_with(results: &Path, experiment: &str, shared: bool) -> Result<Self, StoreError> {
        let root = results.join(experiment);
        let stages = root.join("stages");
        std::fs::create_dir_all(&stages).map_err(io(&stages))?;
        let lock_path = root.join(".lock");
        // Not `File::create`: truncating would erase the holder's name before it is read.
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let locked = if shared {
            FileExt::try_lock_shared(&lock)
        } else {
            lock.try_lock_exclusive()
        };
        if locked.is_err() {
            let holder = match File::open(&lock_path).map(|f| FileExt::try_lock_shared(&f)) {
                Ok(Ok(())) => "stage tasks (`run-stage`, `run --shard`) share it".to_string(),
                _ => std::fs::read_to_string(&lock_path)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            };
            return Err(StoreError::Locked {
                path: lock_path,
                holder,
            });
        }
        if !shared {
            lock.set_len(0)
                .and_then(|_| writeln!(lock, "pid {} on {}", std::process::id(), hostname()))
                .map_err(io(&lock_path))?;
        }
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
        Ok(Self {
            root,
            _lock: lock,
            shared,
        })
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

    /// The committed record of a stage, checked against its seal and its weights' digest.
    pub fn lookup(&self, id: &StageId) -> Result<Lookup, StoreError> {
        lookup(&self.root, id)
    }

    /// Writes a stage's weights atomically through `save`, which writes to the path it is given,
    /// and returns the file's SHA-256 (kept in the record, checked when the stage is reused).
    pub fn save_model<E>(
        &self,
        id: &StageId,
        save: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Result<String, E>, StoreError> {
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
        crate::fault::check_write(&self.model_path(id)).map_err(io(tmp.path()))?;
        let digest = file_digest(tmp.path())?;
        let target = self.model_path(id);
        tmp.persist(&target).map_err(|e| io(&target)(e.error))?;
        Ok(Ok(digest))
    }

    /// Where a stage's epoch checkpoints live while it trains.
    pub fn checkpoint_dir(&self, id: &StageId) -> PathBuf {
        self.stage_dir(id).join("checkpoints")
    }

    /// Claims a stage for this process to train. A local sweep holds the whole store, so its
    /// claim always succeeds (and only tells `kdgrid status` what runs); a shared store returns
    /// `None` while another live process holds the claim.
    pub fn claim(&self, id: &StageId) -> Result<Option<Claim>, StoreError> {
        let dir = self.stage_dir(id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Claim::acquire(&dir.join("claim"), self.shared)
    }

    /// Commits a stage's record; from now on the stage counts as done.
    pub fn commit(&self, record: &StageRecord) -> Result<(), StoreError> {
        let dir = self.stage_dir(&record.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let sealed = Sealed {
            sha256: seal(record),
            record: record.clone(),
        };
        let json = serde_json::to_vec_pretty(&sealed).expect("records serialize");
        write_atomic(&dir.join("record.json"), &json)?;
        // Released after the record exists, so no task sees the stage unclaimed and undone.
        let _ = std::fs::remove_file(dir.join("claim"));
        // Checkpoints are only for an unfinished stage.
        let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
        Ok(())
    }
}

/// Who holds the store of experiment folder `root` (`pid 123 on host`), if a run does.
pub fn holder(root: &Path) -> Option<String> {
    let path = root.join(".lock");
    let file = File::open(&path).ok()?;
    if file.try_lock_shared().is_ok() {
        return None;
    }
    Some(std::fs::read_to_string(&path).ok()?.trim().to_string())
}

/// This machine's name, for lock and claim files.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

/// What the store holds for a stage.
#[derive(Debug)]
pub enum Lookup {
    /// Nothing committed: the stage has not finished.
    Missing,
    /// A committed record whose seal (and weights, for a trained stage) check out.
    Found(Box<StageRecord>),
    /// A record or model file that does not check out; the stage must train again.
    Corrupt {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// A record as written to disk: the record and the SHA-256 of its canonical JSON.
#[derive(Serialize, Deserialize)]
struct Sealed {
    sha256: String,
    record: StageRecord,
}

fn seal(record: &StageRecord) -> String {
    let bytes = serde_json::to_vec(record).expect("records serialize");
    hex::encode(Sha256::digest(&bytes))
}

/// SHA-256 of a file's bytes.
pub fn file_digest(path: &Path) -> Result<String, StoreError> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Reads and checks stage `id`'s record under the experiment folder `root`, without locking
/// (for `plan` and `status`, which never write).
pub fn lookup(root: &Path, id: &StageId) -> Result<Lookup, StoreError> {
    let dir = root.join("stages").join(id.as_str());
    let path = dir.join("record.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Missing),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Ok(Lookup::Corrupt {
                path,
                message: "not UTF-8 text".into(),
            });
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let corrupt = |path: &Path, message: String| {
        Ok(Lookup::Corrupt {
            path: path.to_path_buf(),
            message,
        })
    };
    let sealed: Sealed = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => return corrupt(&path, format!("unreadable record: {e}")),
    };
    if seal(&sealed.record) != sealed.sha256 {
        return corrupt(&path, "the record does not match its checksum".into());
    }
    let record = sealed.record;
    if &record.id != id {
        return corrupt(&path, format!("holds stage `{}`", record.id));
    }
    if let Some(expected) = &record.model_sha256 {
        let model = dir.join("model.bpk");
        match file_digest(&model) {
            Ok(d) if &d == expected => {}
            Ok(_) => return corrupt(&model, "the weights do not match their checksum".into()),
            Err(_) => return corrupt(&model, "the weights file is missing or unreadable".into()),
        }
    }
    Ok(Lookup::Found(Box::new(record)))
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
        .and_then(|_| crate::fault::check_write(path))
        .and_then(|_| tmp.as_file_mut().sync_all())
        .map_err(io(path))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    Ok(())
}
