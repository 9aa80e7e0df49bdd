//! Watching files other processes keep alive (claims, task announcements) on the reader's own
//! clock, and the tokens that name their holders.
//!
//! A reader calls a file stale once it has itself watched the file's modification time, size,
//! inode and text stay the same for the stale time, measured on its own monotonic clock: the
//! writer's and the reader's clocks are never compared. A dead pid is only a hint, used where
//! the token's boot id and pid namespace are the reader's (the same kernel and container).

use super::times::stale_time;
use super::{StoreError, hostname, io};
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// What a claim file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimState {
    /// A process holds it and is alive (or was heard from recently): its holder.
    Live(String),
    /// Its holder is gone: its holder.
    Stale(String),
}

/// One look at a file: what changes when its holder touches or replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Look {
    pub(super) text: String,
    pub(super) modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

/// Reads `path` and its attributes through one open file (on NFS, the open revalidates the
/// attributes with the server: close-to-open consistency); `None` when there is no file.
pub(super) fn look(path: &Path) -> std::io::Result<Option<Look>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let mut text = String::new();
    // A file that is not text is nobody's token: it reads as empty, and stales like any other.
    let _ = file.read_to_string(&mut text);
    Ok(Some(Look {
        text: text.trim().to_string(),
        modified: meta.modified().ok(),
        len: meta.len(),
        ino: std::os::unix::fs::MetadataExt::ino(&meta),
    }))
}

/// A reader's memory of files it watches (claims, task announcements): the last look at each
/// and when, on this process's monotonic clock, it last changed.
#[derive(Debug, Default)]
pub struct Watch {
    seen: Mutex<HashMap<PathBuf, Seen>>,
}

#[derive(Debug)]
struct Seen {
    look: Look,
    since: Instant,
    /// Whether the file was seen to change at least once (its writer is known to be alive).
    changed: bool,
}

/// What a watched file looked like, and for how long it has not changed.
#[derive(Debug, Clone)]
pub(super) struct Observed {
    pub(super) look: Look,
    /// Unchanged for this long, as far as this reader knows.
    pub(super) unchanged: Duration,
    /// Seen to change (touched or replaced) since this reader first looked.
    pub(super) changed: bool,
}

impl Watch {
    /// Looks at `path` and remembers it; `None` when there is no file.
    pub(super) fn observe(&self, path: &Path) -> Result<Option<Observed>, StoreError> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some(look) = look(path).map_err(io(path))? else {
            seen.remove(path);
            return Ok(None);
        };
        let entry = seen.entry(path.to_path_buf()).or_insert_with(|| Seen {
            look: look.clone(),
            since: now,
            changed: false,
        });
        if entry.look != look {
            *entry = Seen {
                look: look.clone(),
                since: now,
                changed: true,
            };
        }
        Ok(Some(Observed {
            look,
            unchanged: now - entry.since,
            changed: entry.changed,
        }))
    }

    /// Forgets `path`.
    pub(super) fn forget(&self, path: &Path) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(path);
    }

    /// The state of the claim at `path` as this reader has watched it: stale once unchanged for
    /// the stale time, or at once when its holder is a dead process of this kernel and pid
    /// namespace.
    pub(super) fn claim(&self, path: &Path) -> Result<Option<(ClaimState, Look)>, StoreError> {
        let Some(o) = self.observe(path)? else {
            return Ok(None);
        };
        let holder = holder_label(&o.look.text);
        let stale = o.unchanged >= stale_time() || dead_here(&o.look.text);
        Ok(Some((
            if stale {
                ClaimState::Stale(holder)
            } else {
                ClaimState::Live(holder)
            },
            o.look,
        )))
    }
}

/// `pid N on host` of a token (what `kdgrid status` shows).
pub(super) fn holder_label(token: &str) -> String {
    let token = token_of(token);
    token
        .split_once(" [")
        .map_or(token, |(label, _)| label)
        .trim()
        .to_string()
}

/// The token in a claim file's text: the text itself, or what follows ` by ` in a generation
/// that seals a commit or releases a stage (`committing <file> by <token>`).
fn token_of(text: &str) -> &str {
    match text.split_once(" by ") {
        Some((what, token)) if !what.starts_with("pid ") => token,
        _ => text,
    }
}

/// This process's token: who it is, where (the kernel's boot id and the pid namespace, which
/// together say whether a pid can be checked from here), and a random part no other process
/// shares.
pub(crate) fn token() -> String {
    let (boot, ns) = place();
    format!(
        "pid {} on {} [boot {boot} ns {ns}] #{:016x}",
        std::process::id(),
        hostname(),
        random_u64()
    )
}

/// A random number, seeded from the time, the pid and a per-process counter.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).random()
}

/// This kernel's boot id and this process's pid namespace.
fn place() -> (String, String) {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|p| {
            let p = p.to_string_lossy().into_owned();
            Some(p.strip_prefix("pid:[")?.strip_suffix(']')?.to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    (boot, ns)
}

/// Whether `token` names a process of this kernel and pid namespace that no longer exists.
pub(super) fn dead_here(token: &str) -> bool {
    let Some((pid, boot, ns)) = parse(token_of(token)) else {
        return false;
    };
    let (my_boot, my_ns) = place();
    if boot != my_boot || ns != my_ns || my_boot == "unknown" || my_ns == "unknown" {
        return false;
    }
    // SAFETY: signal 0 checks for existence and permission only; nothing is delivered.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// `pid N on host [boot B ns P] #R` → (N, B, P).
fn parse(token: &str) -> Option<(i32, &str, &str)> {
    let rest = token.strip_prefix("pid ")?;
    let (pid, rest) = rest.split_once(" on ")?;
    let (_, place) = rest.split_once(" [boot ")?;
    let (boot, rest) = place.split_once(" ns ")?;
    let (ns, _) = rest.split_once(']')?;
    Some((pid.trim().parse().ok()?, boot, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_label() {
        let t = token();
        let (pid, boot, ns) = parse(&t).unwrap();
        assert_eq!(pid as u32, std::process::id());
        assert_eq!((boot.to_string(), ns.to_string()), place());
        assert!(holder_label(&t).starts_with("pid ") && !holder_label(&t).contains('['));
        assert_ne!(t, token(), "each claim has its own token");
        assert!(!dead_here(&t));
        let dead = t.replacen(&format!("pid {pid} "), "pid 999999999 ", 1);
        assert!(dead_here(&dead));
        // Another kernel's (or namespace's) pid is not checked from here.
        let elsewhere = dead.replace(&format!(" ns {ns}]"), " ns 1]");
        assert!(!dead_here(&elsewhere));
        assert!(!dead_here("pid 999999999 on old-host"));
    }
}
