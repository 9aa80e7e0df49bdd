//! The results store: one folder per experiment, one sub-folder per stage (fourth phase of
//! manifest → plan → train → store → report).
//!
//! ```text
//! results/<experiment>/
//!   .lock                     held while a sweep runs (exclusive), or by stage tasks (shared)
//!   tasks/<random>.json       one per running stage task: its plan digest and compute settings
//!   stages/FORMAT             store layout version
//!   stages/CLAIMS             the claims' stale and stuck times, agreed by every task
//!   stages/<id>/claim.<g>     generation g of the stage's claim: its holder's token (heartbeat:
//!                             mtime), or `released`; the newest is in force
//!   stages/<id>/checkpoints/  epoch checkpoints of an unfinished stage
//!   stages/<id>/history/<g>.log  what the holder of claim generation g did (started, took over,
//!                             lost, committed the stage), one line each
//!   stages/<id>/model-<sha256>.bpk  trained weights, named by their digest (linked first)
//!   stages/<id>/model.bpk     the same file, for older kdgrid versions (linked after the record)
//!   stages/<id>/record.json   metrics and the weights' file and digest; its presence marks the
//!                             stage done (linked, never replaced while it checks out)
//! ```
//!
//! Every file is written to a temporary file in the same folder and renamed or linked into
//! place, so a killed sweep leaves either a whole stage or none, and resumes where it stopped.
//!
//! A local sweep holds the store alone. Stage tasks (Slurm array tasks, `run --shard`) share it,
//! possibly from several machines over a network filesystem: each claims a stage ([`Claim`]: the
//! next generation of its claim files, created by a hard link that only one taker can make),
//! keeps the claim alive by touching it while its training progresses, and a claim its readers
//! watched unchanged for the stale time is taken over by creating the next generation. A holder
//! checks its generation at each epoch and before committing, and the commit itself cannot
//! overwrite anything: weights go under their digest's name and the record is linked, so a task
//! stopped at any instruction and resumed after another task committed the stage leaves that
//! commit as it was ([`Store::commit`]).

mod claim;
mod commit;
pub mod gc;
mod lookup;
mod presence;
mod record;
mod times;
mod watch;

pub use claim::{Claim, claim_state};
pub use lookup::{Lookup, file_digest, lookup};
pub use presence::{Peer, Presence, presence_beat};
pub use record::{StageRecord, Status};
pub use times::{CLAIM_STALE, CLAIM_STUCK, Times, heartbeat, stale_time, stuck_time};
pub use watch::ClaimState;

use crate::plan::StageId;
use fs2::FileExt;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Version of the on-disk layout. A store of a newer format is refused with both versions
/// named; an older one is read as it is (formats only add). Records stay readable both ways
/// within a format: each record carries a seal that also covers fields a reader does not know.
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
    /// The store was written by a newer kdgrid, in a layout this one does not know.
    #[error(
        "results store `{}` has format {found}, written by a newer kdgrid; this kdgrid ({}) reads formats up to {FORMAT}",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    #[diagnostic(
        code(kdgrid::store::newer),
        help("use the newer kdgrid for this results folder, or point `--results` elsewhere")
    )]
    Newer {
        /// The store's `FORMAT` file.
        path: PathBuf,
        /// The format it names.
        found: String,
    },
    /// The file system cannot lock the store's lock file.
    #[error("cannot lock `{}`: the file system refused the lock", path.display())]
    #[diagnostic(
        code(kdgrid::store::lock_unsupported),
        help(
            "network file systems need their lock service (NFS: `lockd`/`rpc.statd`, not mounted with `nolock`); docs/cluster.md says what the store needs"
        )
    )]
    LockUnsupported {
        /// The lock file.
        path: PathBuf,
        /// The error the file system gave.
        #[source]
        source: std::io::Error,
    },
    /// A stage task's claim was taken over by another task before it could commit.
    #[error(
        "the claim `{}` was taken over by {holder} while this task trained the stage; not committing",
        path.display()
    )]
    #[diagnostic(
        code(kdgrid::store::claim_lost),
        help(
            "this task was stopped or cut off for longer than the stale time; the other task commits the stage"
        )
    )]
    ClaimLost {
        /// The claim file.
        path: PathBuf,
        /// Who holds it now.
        holder: String,
    },
    /// A record that checks out against its seal but that this version cannot read: a newer
    /// kdgrid wrote it (a new status, a changed field). Never trained over.
    #[error(
        "stage record `{}` was written by kdgrid {version}, newer than this one ({}): {message}",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    #[diagnostic(
        code(kdgrid::store::newer_record),
        help(
            "use that kdgrid (or a newer one) for this results folder; this one does not train over a record it cannot read"
        )
    )]
    NewerRecord {
        /// The record.
        path: PathBuf,
        /// The version the record names.
        version: String,
        /// What this version could not read.
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
    /// How long each claim and announcement looked the same, to this process.
    watch: watch::Watch,
}

/// A stage's weights, written under a name of this process's own and not yet in place: the
/// commit renames them to `model.bpk` while it holds the stage's claim.
#[derive(Debug)]
pub struct StagedModel {
    file: tempfile::TempPath,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
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
        if let Err(e) = locked {
            if !contended(&e) {
                // Not held by anyone: the file system refused the lock itself (`ENOLCK` on an
                // NFS mount without a lock daemon, `ENOSYS`...).
                return Err(StoreError::LockUnsupported {
                    path: lock_path,
                    source: e,
                });
            }
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
        if !check_format(&root)? {
            write_atomic(&stages.join("FORMAT"), format!("{FORMAT}\n").as_bytes())?;
        }
        times::agree(&root)?;
        Ok(Self {
            root,
            _lock: lock,
            shared,
            watch: watch::Watch::default(),
        })
    }

    /// SHA-256 of the committed record files of stages `ids`, in that order (a missing one
    /// counts as empty): equal exactly when those records are.
    pub fn records_digest<'i>(&self, ids: impl Iterator<Item = &'i StageId>) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for id in ids {
            h.update(id.as_str());
            h.update(Sha256::digest(
                std::fs::read(self.stage_dir(id).join("record.json")).unwrap_or_default(),
            ));
        }
        hex::encode(h.finalize())
    }

    /// The inode of stage `id`'s record file, if it has one: a record replaced or committed
    /// by another task changes it.
    pub fn record_inode(&self, id: &StageId) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(self.stage_dir(id).join("record.json"))
            .ok()
            .map(|m| m.ino())
    }

    /// Whether other processes may share the store (stage tasks).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The experiment folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether stage `id` has a committed record file (not read: see [`Store::lookup`]).
    pub fn has_record(&self, id: &StageId) -> bool {
        self.stage_dir(id).join("record.json").exists()
    }

    fn stage_dir(&self, id: &StageId) -> PathBuf {
        self.root.join("stages").join(id.as_str())
    }

    /// Where a committed stage's weights live: the file its record names (`model.bpk` for
    /// records that predate named weights, or when there is no readable record).
    pub fn model_path(&self, id: &StageId) -> PathBuf {
        lookup::weights_path(&self.stage_dir(id))
    }

    /// The committed record of a stage, checked against its seal and its weights' digest.
    pub fn lookup(&self, id: &StageId) -> Result<Lookup, StoreError> {
        lookup(&self.root, id)
    }

    /// Writes a stage's weights through `save`, which writes to the path it is given, to a file
    /// of this process's own in the stage's folder; [`Store::commit`] puts it in place. Its
    /// SHA-256 goes in the record and is checked when the stage is reused.
    pub fn save_model<E>(
        &self,
        id: &StageId,
        save: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Result<StagedModel, E>, StoreError> {
        let dir = self.stage_dir(id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = crate::atomic::as_umask_allows(
            tempfile::Builder::new().prefix(".model").suffix(".tmp"),
            false,
        )
        .tempfile_in(&dir)
        .map_err(io(&dir))?
        .into_temp_path();
        if let Err(e) = save(&tmp) {
            return Ok(Err(e));
        }
        crate::fault::check_write(&self.stage_dir(id).join("model.bpk")).map_err(io(&tmp))?;
        let sha256 = file_digest(&tmp)?;
        let bytes = std::fs::metadata(&tmp).map_err(io(&tmp))?.len();
        Ok(Ok(StagedModel {
            file: tmp,
            sha256,
            bytes,
        }))
    }

    /// Where a stage's epoch checkpoints live while it trains.
    pub fn checkpoint_dir(&self, id: &StageId) -> PathBuf {
        self.stage_dir(id).join("checkpoints")
    }

    /// Claims a stage for this process to train. A local sweep holds the whole store, so its
    /// claim always succeeds (and only tells `kdgrid status` what runs); a shared store returns
    /// `None` while another process holds the claim, and takes over a claim this process has
    /// watched unchanged for the stale time.
    pub fn claim(&self, id: &StageId) -> Result<Option<Claim>, StoreError> {
        let dir = self.stage_dir(id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Claim::acquire(&dir, self.shared, &self.watch)
    }

    /// The claim on stage `id` as this process has watched it: live until it looked the same
    /// for the stale time (call it at each poll; the first look counts as live).
    pub fn claim_seen(&self, id: &StageId) -> Result<Option<ClaimState>, StoreError> {
        let dir = self.stage_dir(id);
        Ok(match claim::seen(&dir, &self.watch)? {
            // A stale seal is a commit its writer did not finish: finished here, so that a
            // task waiting for the stage (a student for its teacher) finds it done.
            Some((g, ClaimState::Stale(_), look)) if claim::finish_commit(&dir, g, &look.text) => {
                None
            }
            other => other.map(|(_, state, _)| state),
        })
    }

    /// Announces this stage task (`info`: its plan and compute settings) until the returned
    /// guard is dropped.
    pub fn announce(&self, info: &serde_json::Value) -> Result<Presence, StoreError> {
        Presence::announce(&self.root, info)
    }

    /// The other tasks' announcements, as this process has watched them.
    pub fn peers(&self, own: &Presence) -> Result<Vec<Peer>, StoreError> {
        presence::peers(&self.root, own.path(), &self.watch)
    }

    /// Appends `line` to stage `id`'s history (who started, took over, committed it), with
    /// `claim`'s token, in the file of `claim`'s generation (`history/<g>.log`). Best
    /// effort: a history that cannot be written loses a line, not a result.
    pub fn log(&self, id: &StageId, claim: &Claim, line: &str) {
        append_history(
            &self.stage_dir(id),
            claim.generation(),
            &format!("{line} by {}", claim.token()),
        );
    }
}

/// Appends `line` to the history of claim generation `g` in the stage folder `dir`,
/// `history/<g>.log`: each file has one writer, the generation's holder (or the one task that
/// finishes its sealed commit), so no line relies on `O_APPEND` between machines (not atomic
/// over NFS).
pub(super) fn append_history(dir: &Path, g: u64, line: &str) {
    let folder = dir.join("history");
    let path = folder.join(format!("{g}.log"));
    let _ = std::fs::create_dir_all(&folder).and_then(|_| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
    });
}

/// Checks the `FORMAT` file of the store in the experiment folder `root` without writing
/// anything (read-only commands call it before reading records): whether there is one, or an
/// error if a newer kdgrid wrote the store or the file is not a number.
pub fn check_format(root: &Path) -> Result<bool, StoreError> {
    let path = root.join("stages").join("FORMAT");
    match std::fs::read_to_string(&path) {
        // Older layouts are read as they are: every later format only adds to them.
        Ok(text) if text.trim().parse::<u32>().is_ok_and(|f| f <= FORMAT) => Ok(true),
        Ok(text) if text.trim().parse::<u32>().is_ok() => Err(StoreError::Newer {
            path,
            found: text.trim().to_string(),
        }),
        Ok(text) => Err(StoreError::Corrupt {
            message: format!(
                "store format `{}` is not a number; this kdgrid writes format `{FORMAT}`",
                text.trim()
            ),
            path,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(&path)(e)),
    }
    .and_then(|known| {
        // The claims' timing too, so that `status` judges claims as the tasks do.
        times::read(root)?;
        Ok(known)
    })
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

/// Whether a failed `try_lock` means another process holds the lock (rather than a file system
/// that cannot lock).
fn contended(e: &std::io::Error) -> bool {
    e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
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
    crate::atomic::write_with(path, write).map_err(io(path))
}

#[cfg(test)]
mod tests;
