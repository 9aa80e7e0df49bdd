//! Per-stage claims: which process trains a stage, kept alive by a heartbeat so that a claim
//! left by a killed task (on any machine sharing the store) is recognized and taken over.
//!
//! A claim is a file created with `O_EXCL` (atomic on local filesystems and NFSv3+), holding
//! `pid N on host`; its modification time is the heartbeat. `flock` is not relied on here, as it
//! may be local to one machine on a network filesystem.

use super::{StoreError, hostname, io, write_atomic};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// A claim whose file was not touched for this long belongs to a dead process.
pub const CLAIM_STALE: Duration = Duration::from_secs(120);

/// How often a live claim is touched.
const HEARTBEAT: Duration = Duration::from_secs(20);

/// A held claim on a stage; released (its file removed, if still ours) when dropped.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    text: String,
    /// Stops the heartbeat thread when dropped.
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

/// What a stage's claim file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimState {
    /// A process holds it and is alive (or was heard from recently).
    Live(String),
    /// Its holder is gone: a dead pid on this host, or no heartbeat for [`CLAIM_STALE`].
    Stale(String),
}

/// The claim on stage `id` of the experiment folder `root`, if a claim file exists.
pub fn claim_state(root: &Path, id: &crate::plan::StageId) -> Option<ClaimState> {
    state(&root.join("stages").join(id.as_str()).join("claim"))
}

fn state(path: &Path) -> Option<ClaimState> {
    let text = std::fs::read_to_string(path).ok()?.trim().to_string();
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let dead = match parse(&text) {
        Some((pid, host)) if host == hostname() => !alive(pid),
        _ => false,
    };
    Some(if dead || age > CLAIM_STALE {
        ClaimState::Stale(text)
    } else {
        ClaimState::Live(text)
    })
}

/// `pid N on host` → (N, host).
fn parse(text: &str) -> Option<(i32, &str)> {
    let rest = text.strip_prefix("pid ")?;
    let (pid, host) = rest.split_once(" on ")?;
    Some((pid.trim().parse().ok()?, host.trim()))
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 checks for existence and permission only; nothing is delivered.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Claim {
    /// Claims `path` for this process. `shared`: other processes may hold it (return `None`
    /// then); otherwise this process holds the whole store and simply writes the claim.
    pub(super) fn acquire(path: &Path, shared: bool) -> Result<Option<Self>, StoreError> {
        let text = format!("pid {} on {}", std::process::id(), hostname());
        if !shared {
            write_atomic(path, format!("{text}\n").as_bytes())?;
            return Ok(Some(Self::held(path, text, false)));
        }
        // Two rounds: the second after removing a stale claim.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut file) => {
                    file.write_all(format!("{text}\n").as_bytes())
                        .and_then(|_| file.sync_all())
                        .map_err(io(path))?;
                    return Ok(Some(Self::held(path, text, true)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match state(path) {
                    Some(ClaimState::Live(_)) => return Ok(None),
                    // Gone between the create and the read, or stale: (re)try to create it.
                    None => {}
                    Some(ClaimState::Stale(_)) => {
                        let _ = std::fs::remove_file(path);
                    }
                },
                Err(e) => return Err(io(path)(e)),
            }
        }
        Ok(None)
    }

    fn held(path: &Path, text: String, heartbeat: bool) -> Self {
        let (stop, heartbeat) = if heartbeat {
            let (tx, rx) = mpsc::channel::<()>();
            let file = path.to_path_buf();
            let handle = std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HEARTBEAT) {
                    let _ = std::fs::File::options()
                        .append(true)
                        .open(&file)
                        .and_then(|f| f.set_modified(SystemTime::now()));
                }
            });
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        Self {
            path: path.to_path_buf(),
            text,
            stop,
            heartbeat,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        // Not ours any more if a task took it over while this one looked dead.
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.text) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
