//! Reading a stage back: its sealed record (both seals, so records of the previous and the next
//! version read) and the digest of its weights.

use super::{StageRecord, StoreError, io};
use crate::plan::StageId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// A record as stored, with two seals. `sha256` covers the record as this version's struct
/// serializes it (what versions before the canonical seal check, so they keep reading records
/// written now). `canonical_sha256` covers the record as a JSON value with sorted keys, so it
/// also covers fields this version does not know: a record written by a newer kdgrid with an
/// added field verifies here and is read (the unknown field ignored) instead of being called
/// corrupt and trained over.
#[derive(Serialize, Deserialize)]
pub(super) struct Sealed {
    pub(super) sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) canonical_sha256: Option<String>,
    pub(super) record: serde_json::Value,
}

/// SHA-256 of `record` as this version serializes it (the seal older versions check).
pub(super) fn seal(record: &StageRecord) -> String {
    let bytes = serde_json::to_vec(record).expect("records serialize");
    hex::encode(Sha256::digest(&bytes))
}

/// SHA-256 of `record`'s canonical JSON: serde_json's value maps keep their keys sorted, and
/// numbers print in shortest round-trip form, so writer and reader compute the same bytes.
pub(super) fn canonical_seal(record: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(record).expect("values serialize");
    hex::encode(Sha256::digest(&bytes))
}

/// SHA-256 of a file's bytes.
pub fn file_digest(path: &Path) -> Result<String, StoreError> {
    let (digest, _) = crate::identity::file_sha256(path).map_err(io(path))?;
    Ok(digest)
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
    let canonical_ok = sealed
        .canonical_sha256
        .as_ref()
        .map(|c| *c == canonical_seal(&sealed.record));
    let version = sealed.record.get("kdgrid_version").cloned();
    let record: StageRecord = match serde_json::from_value(sealed.record) {
        Ok(r) => r,
        // Sealed, so written whole by a kdgrid that knew what it wrote: a newer one.
        Err(e) if canonical_ok == Some(true) => {
            return Err(StoreError::NewerRecord {
                path,
                version: version
                    .as_ref()
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_string(),
                message: e.to_string(),
            });
        }
        Err(e) => return corrupt(&path, format!("unreadable record: {e}")),
    };
    // Records written before the canonical seal carry only the struct one.
    if !canonical_ok.unwrap_or_else(|| seal(&record) == sealed.sha256) {
        return corrupt(&path, "the record does not match its checksum".into());
    }
    if &record.id != id {
        return corrupt(&path, format!("holds stage `{}`", record.id));
    }
    if let Some(expected) = &record.model_sha256 {
        let name = record.model_file.as_deref().unwrap_or("model.bpk");
        if !plain_name(name) {
            return corrupt(
                &path,
                format!("names the weights file `{name}` outside its folder"),
            );
        }
        let model = dir.join(name);
        match cached_digest(&model) {
            Ok(d) if &d == expected => {}
            Ok(_) => return corrupt(&model, "the weights do not match their checksum".into()),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return corrupt(&model, "the weights file is missing".into());
            }
            // Unreadable is not corrupt: a permission or a network file system's error is
            // reported, never trained over.
            Err(e) => return Err(e),
        }
    }
    Ok(Lookup::Found(Box::new(record)))
}

/// A file name alone, with nothing that leaves the folder.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// The weights file of the committed stage in folder `dir`: the one its record names, else
/// `model.bpk`.
pub(super) fn weights_path(dir: &Path) -> PathBuf {
    let named = std::fs::read(dir.join("record.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["record"]["model_file"].as_str().map(str::to_string))
        .filter(|n| plain_name(n));
    dir.join(named.as_deref().unwrap_or("model.bpk"))
}

/// What identifies a file's bytes without reading them: size, modification time, inode and
/// status-change time. A file replaced or rewritten changes at least one of them (no user can
/// set the change time back).
type Key = (u64, i64, i64, u64, i64, i64);

fn key_of(path: &Path) -> Result<Key, StoreError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    Ok((
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec(),
    ))
}

/// A weights file's digest as last checked, beside it (`<file>.checked`), so that a new
/// process (every `slurm status`, each finishing task) does not read every weights file again.
#[derive(Serialize, Deserialize)]
struct Checked {
    key: Key,
    sha256: String,
}

fn checked_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".checked");
    PathBuf::from(p)
}

/// Notes that the file at `path`, as it is now, has digest `sha256` (best effort: a store
/// this process may only read keeps no note).
pub(super) fn remember_digest(path: &Path, sha256: &str) {
    if let Ok(key) = key_of(path) {
        let checked = Checked {
            key,
            sha256: sha256.to_string(),
        };
        let bytes = serde_json::to_vec(&checked).expect("notes serialize");
        // Not synced: a note lost in a crash costs one more read of the weights, and a torn
        // one does not parse.
        let dir = path.parent().unwrap_or(Path::new("."));
        let _ = crate::atomic::as_umask_allows(
            tempfile::Builder::new().prefix(".checked").suffix(".tmp"),
            false,
        )
        .tempfile_in(dir)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &bytes)?;
            f.persist(checked_path(path)).map_err(|e| e.error)
        });
    }
}

/// [`file_digest`], remembered by the file's [`Key`]: for the process, and across processes in
/// the note beside the file. A waiting task looks its teacher up every half second, and a
/// status pass looks each stage up more than once.
fn cached_digest(path: &Path) -> Result<String, StoreError> {
    static CACHE: Mutex<Option<HashMap<PathBuf, (Key, String)>>> = Mutex::new(None);
    let key = key_of(path)?;
    if let Some((k, digest)) = CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref()?.get(path).cloned())
        && k == key
    {
        return Ok(digest);
    }
    let noted = std::fs::read(checked_path(path))
        .ok()
        .and_then(|b| serde_json::from_slice::<Checked>(&b).ok())
        .filter(|c| c.key == key);
    let digest = match noted {
        Some(c) => c.sha256,
        None => {
            let digest = file_digest(path)?;
            remember_digest(path, &digest);
            digest
        }
    };
    if let Ok(mut cache) = CACHE.lock() {
        cache
            .get_or_insert_with(HashMap::new)
            .insert(path.to_path_buf(), (key, digest.clone()));
    }
    Ok(digest)
}
