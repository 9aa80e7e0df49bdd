//! Task announcements: each stage task sharing a store (a shard, a Slurm array task) keeps a
//! file `tasks/<random>.json` describing itself (the plan it computed, its compute settings),
//! touched every [`BEAT`] (or the claims' heartbeat, when shorter) and removed when it ends.
//! Other tasks read them to check that they computed the same plan, and a shard waiting for a
//! teacher reads them to know whether the teacher's shard is still running. Liveness is judged
//! as for claims: by watching a file change, on the reader's own clock.

use super::times::{heartbeat, stale_time};
use super::watch::{Watch, random_u64};
use super::{StoreError, io, write_atomic};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// How often an announcement is touched at most: a reader sees a running task within seconds.
pub const BEAT: Duration = Duration::from_secs(2);

/// How often an announcement is touched: every 2 s, or every claim heartbeat when shorter.
pub fn presence_beat() -> Duration {
    BEAT.min(heartbeat())
}

/// A task's announcement; removed when dropped.
#[derive(Debug)]
pub struct Presence {
    path: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    beat: Option<std::thread::JoinHandle<()>>,
}

/// Another task's announcement, as this reader has watched it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its announcement's file.
    pub path: PathBuf,
    /// What it announced.
    pub info: serde_json::Value,
    /// Seen to change since this reader first looked: its task is running.
    pub confirmed: bool,
    /// Not seen to change for the stale time: its task is gone.
    pub stale: bool,
}

/// The folder of announcements of the experiment folder `root`.
pub(super) fn dir(root: &Path) -> PathBuf {
    root.join("tasks")
}

impl Presence {
    /// Announces `info` under `root` until dropped.
    pub(super) fn announce(root: &Path, info: &serde_json::Value) -> Result<Self, StoreError> {
        let path = dir(root).join(format!("{:016x}.json", random_u64()));
        let bytes = serde_json::to_vec_pretty(info).expect("values serialize");
        write_atomic(&path, &bytes)?;
        let (tx, rx) = mpsc::channel::<()>();
        let file = path.clone();
        let beat = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(presence_beat()) {
                // Removed by a reader that judged us gone (this process was stopped): put back.
                let touched = std::fs::File::options()
                    .write(true)
                    .open(&file)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                if touched.is_err() {
                    let _ = write_atomic(&file, &bytes);
                }
            }
        });
        Ok(Self {
            path,
            stop: Some(tx),
            beat: Some(beat),
        })
    }

    /// The announcement's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.beat.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The announcements under `root` other than `own`, as `watch` has seen them; those watched
/// unchanged for twice the stale time are deleted (their tasks are gone).
pub(super) fn peers(root: &Path, own: &Path, watch: &Watch) -> Result<Vec<Peer>, StoreError> {
    let dir = dir(root);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut peers = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path == own || path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(seen) = watch.observe(&path)? else {
            continue;
        };
        if seen.unchanged >= stale_time() * 2 {
            let _ = std::fs::remove_file(&path);
            watch.forget(&path);
            continue;
        }
        let Ok(info) = serde_json::from_str(&seen.look.text) else {
            continue;
        };
        peers.push(Peer {
            path,
            info,
            confirmed: seen.changed,
            stale: seen.unchanged >= stale_time(),
        });
    }
    Ok(peers)
}
