//! What `kdgrid gc` looks at: the stage folders of every experiment under a results folder, their
//! sizes, and the compute settings that trained them (whose stage ids a manifest's own
//! `[compute]` table does not give).

use super::{Lookup, StageRecord, lookup};
use crate::plan::StageId;
use std::path::{Path, PathBuf};

/// A stage folder of an experiment.
#[derive(Debug)]
pub struct StageDir {
    /// The stage's id (the folder's name).
    pub id: StageId,
    /// The folder.
    pub path: PathBuf,
    /// Bytes of every file in it.
    pub bytes: u64,
    /// Its committed record, when it has one that checks out.
    pub record: Option<StageRecord>,
    /// Whether it has a `record.json` (checked or not): an unfinished stage has none.
    pub finished: bool,
}

/// Experiment folders (those with a `stages/` folder) under `results`, by name.
pub fn experiments(results: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(results)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("stages").is_dir())
        .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
        .collect();
    found.sort();
    found
}

/// The stage folders of the experiment folder `root`, by id.
pub fn stage_dirs(root: &Path) -> Vec<StageDir> {
    let mut dirs: Vec<StageDir> = std::fs::read_dir(root.join("stages"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            // Stage ids are 16 hex digits; anything else is not a stage.
            if name.len() != 16 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            let id: StageId = serde_json::from_value(serde_json::Value::String(name)).ok()?;
            let record = match lookup(root, &id) {
                Ok(Lookup::Found(r)) => Some(*r),
                _ => None,
            };
            Some(StageDir {
                finished: e.path().join("record.json").exists(),
                bytes: bytes(&e.path()),
                path: e.path(),
                id,
                record,
            })
        })
        .collect();
    dirs.sort_by(|a, b| a.id.cmp(&b.id));
    dirs
}

/// Bytes of the files under `path`, each file once however many names it has (`model.bpk` is
/// a second name of a stage's weights).
pub fn bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))))
        .map(|m| m.len())
        .sum()
}

/// Removes a stage folder: the record first, so that a removal cut short leaves a stage that
/// reads as not trained rather than a record without its weights.
pub fn remove(dir: &StageDir) -> std::io::Result<()> {
    match std::fs::remove_file(dir.path.join("record.json")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::remove_dir_all(&dir.path)
}

/// Links the records of commits sealed by tasks that died before linking them, in the
/// experiment folder `root`, for a process that holds the store alone (every seal is then a
/// dead task's): their records are whole, and would otherwise be removed as leftovers.
pub fn finish_sealed_commits(root: &Path) {
    // Only unfinished folders matter, and no record needs reading (or weights hashing) for that.
    let unfinished = std::fs::read_dir(root.join("stages"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.join("record.json").exists());
    for dir in unfinished {
        let Ok(g) = super::claim::newest(&dir) else {
            continue;
        };
        let text = std::fs::read_to_string(dir.join(format!("claim.{g}"))).unwrap_or_default();
        super::claim::finish_commit(&dir, g, text.trim());
    }
}

/// What killed tasks leave in the experiment folder `root`, for a process that holds the store
/// alone (no task runs, so every claim and temporary file is a dead process's): temporary files
/// (`.*.tmp`) and checkpoints half written, claims and task announcements, and in finished
/// stages their checkpoints and weights their record does not name. Records and weights moved
/// aside as corrupt are kept, for whoever wants to look.
pub fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("tasks"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let listing = |dir: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect()
    };
    found.extend(
        listing(&root.join("stages"))
            .into_iter()
            .filter(|(name, _)| name.starts_with('.') && name.ends_with(".tmp"))
            .map(|(_, p)| p),
    );
    for dir in stage_dirs(root) {
        let named = dir.record.as_ref().and_then(|r| r.model_file.clone());
        for (name, path) in listing(&dir.path) {
            let temporary = name.starts_with('.') && name.ends_with(".tmp");
            let claim = name == "claim" || name.starts_with("claim.");
            let unnamed_weights = dir.record.is_some()
                && name.starts_with("model-")
                && name.ends_with(".bpk")
                && named.as_deref() != Some(name.as_str());
            let spent_checkpoints = dir.finished && name == "checkpoints";
            if temporary || claim || unnamed_weights || spent_checkpoints {
                found.push(path);
            }
        }
        if !dir.finished {
            found.extend(
                listing(&dir.path.join("checkpoints"))
                    .into_iter()
                    .filter(|(name, _)| name.starts_with(".tmp-"))
                    .map(|(_, p)| p),
            );
        }
    }
    found.sort();
    found
}
