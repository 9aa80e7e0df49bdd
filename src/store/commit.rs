//! Committing a stage: the one step after which it counts as done, built so that it succeeds
//! only for the task holding the stage's current claim and, whatever the timing of any number
//! of paused and resumed tasks, never overwrites a commit.
//!
//! 1. The weights are hard-linked under their digest's name, `model-<sha256>.bpk`: a file of
//!    that name holds those bytes whoever wrote it, so linking never replaces anything.
//! 2. The record, naming that file and its digest, is written under a unique name, and the
//!    commit is sealed: the claim's next generation is created as `committing <file> by
//!    <token>` ([`Claim::seal`]), which fails if the stage was taken over; once it exists no
//!    task can take the stage over, and one that finds it stale links the record for its writer.
//! 3. The record is hard-linked to `record.json`, which fails if a record exists: the first
//!    commit stands. A record already there that checks out is another task's commit (ours is
//!    dropped); one that does not is moved aside (`record.json.corrupt-<hex>`) and ours linked
//!    in its place.
//! 4. Only then is `model.bpk` made a second name of the weights, for older kdgrid versions; a
//!    different `model.bpk` there (weights of a corrupt commit) is moved aside first.

use super::lookup::{Sealed, canonical_seal, seal};
use super::watch::random_u64;
use super::{Claim, Lookup, StageRecord, StagedModel, Status, Store, StoreError, io};
use std::io::Write;
use std::path::Path;

/// The name of weights with digest `sha256`.
pub(super) fn weights_name(sha256: &str) -> String {
    format!("model-{sha256}.bpk")
}

impl Store {
    /// Commits a stage's weights (`model`, from [`Store::save_model`]) and record while `claim`
    /// holds the stage; from then on the stage counts as done. On a shared store a valid record
    /// already there is kept (another task committed the stage): `Ok(false)` says so. A store
    /// held alone replaces a failed stage's record (`run --retry-failed` trains them again).
    pub fn commit(
        &self,
        record: &StageRecord,
        model: Option<StagedModel>,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        let dir = self.stage_dir(&record.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lost = || StoreError::ClaimLost {
            path: dir.join(format!("claim.{}", claim.generation() + 1)),
            holder: claim.holder_now(),
        };
        let refused = |store: &Self| {
            store.log(&record.id, claim, "commit refused: already committed");
            Ok(false)
        };
        if self.shared && matches!(self.lookup(&record.id)?, Lookup::Found(_)) {
            return refused(self);
        }
        if !claim.holds() {
            return Err(lost());
        }
        crate::fault::pause("commit");
        let mut record = record.clone();
        let weights = match model {
            Some(m) => Some(place_weights(&dir, m)?),
            None => None,
        };
        record.model_file = weights.as_ref().map(|w| w.name.clone());
        let value = serde_json::to_value(&record).expect("records serialize");
        let sealed = Sealed {
            sha256: seal(&record),
            canonical_sha256: Some(canonical_seal(&value)),
            record: value,
        };
        let json = serde_json::to_vec_pretty(&sealed).expect("records serialize");
        let path = dir.join("record.json");
        let tmp = crate::atomic::as_umask_allows(
            tempfile::Builder::new().prefix(".record").suffix(".tmp"),
            false,
        )
        .tempfile_in(&dir)
        .map_err(io(&dir))?;
        tmp.as_file()
            .write_all(&json)
            .and_then(|_| crate::fault::check_write(&path))
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(io(&path))?;
        // Weights this commit placed stay when it fails: another task may have placed (or may
        // name) the same bytes under the same name; `kdgrid gc` removes weights no record names.
        // The seal makes the commit this claim's alone: it fails if the stage was taken over.
        if !claim.holds() || !claim.seal(tmp.path())? {
            return Err(lost());
        }
        crate::fault::pause("sealed");
        let mut line = "commit";
        loop {
            match std::fs::hard_link(tmp.path(), &path) {
                Ok(()) => break,
                // Linked for this task by one that found the seal stale (and wrote the commit
                // in this task's name).
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && std::fs::read(&path).ok().as_deref() == Some(&json[..]) =>
                {
                    line = "its sealed record found linked by another task";
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match self.lookup(&record.id)? {
                        // A failed stage trained again (`run --retry-failed`, a store held alone)
                        // replaces its record; a stage that trained is never replaced (on a
                        // `nolock` mount a local run may meet a task of another machine).
                        Lookup::Found(r) if !self.shared && r.status == Status::Failed => {
                            tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
                            break;
                        }
                        Lookup::Found(_) => return refused(self),
                        // Kept beside the stage trained again, for whoever wants to look.
                        _ => aside_if_same(&path, "corrupt")?,
                    }
                }
                // NFS may answer a retransmitted `link` with an error although the first one
                // succeeded: the file then holds our bytes.
                Err(e) => {
                    if std::fs::read(&path).ok().as_deref() != Some(&json[..]) {
                        return Err(io(&path)(e));
                    }
                    break;
                }
            }
        }
        if let Some(w) = &weights {
            // Best effort: the stage is committed, and this version reads the named file.
            let _ = legacy_name(&dir, &w.name, &w.sha256);
            // Noted after the last link (a link changes the file's status-change time).
            super::lookup::remember_digest(&dir.join(&w.name), &w.sha256);
        }
        self.log(&record.id, claim, line);
        // Checkpoints are only for an unfinished stage.
        let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
        Ok(true)
    }
}

/// Weights linked under their digest's name.
struct Placed {
    name: String,
    sha256: String,
}

/// Links the weights under their digest's name. A file already there is another commit's of
/// the same bytes, unless it was damaged since (the reason the stage is trained again): then it
/// is moved aside first, so that the record never names damaged bytes twice.
fn place_weights(dir: &Path, model: StagedModel) -> Result<Placed, StoreError> {
    let name = weights_name(&model.sha256);
    let path = dir.join(&name);
    for _ in 0..3 {
        match std::fs::hard_link(&model.file, &path) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if super::file_digest(&path)? == model.sha256 {
                    break;
                }
                aside_if_same(&path, "corrupt")?;
            }
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(Placed {
        name,
        sha256: model.sha256,
    })
}

/// Moves the file at `path` aside as `<name>.<why>-<hex>`, if it is still the file judged
/// just before (its inode): a task that paused between judging and moving may find another
/// task's good file there by then, which it puts back.
fn aside_if_same(path: &Path, why: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let judged = match std::fs::symlink_metadata(path) {
        Ok(m) => m.ino(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    crate::fault::pause("aside");
    let mut target = path.as_os_str().to_owned();
    target.push(format!(".{why}-{:016x}", random_u64()));
    match std::fs::rename(path, &target) {
        Ok(()) => {}
        // Moved by another task meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    }
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.ino() != judged) {
        // Not the file judged: put back (unless yet another is there), and look again.
        let _ = std::fs::hard_link(&target, path);
        let _ = std::fs::remove_file(&target);
    }
    Ok(())
}

/// Makes `model.bpk` a second name of the committed weights `name`, for kdgrid versions that
/// read only that name; a `model.bpk` with other bytes is moved aside first.
fn legacy_name(dir: &Path, name: &str, sha256: &str) -> Result<(), StoreError> {
    let legacy = dir.join("model.bpk");
    if legacy.exists() {
        if super::file_digest(&legacy).is_ok_and(|d| d == sha256) {
            return Ok(());
        }
        aside_if_same(&legacy, "replaced")?;
    }
    let tmp = dir.join(format!(".model-link-{:016x}.tmp", random_u64()));
    std::fs::hard_link(dir.join(name), &tmp)
        .and_then(|_| std::fs::rename(&tmp, &legacy))
        .map_err(io(&legacy))
}
