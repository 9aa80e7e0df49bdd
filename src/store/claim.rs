//! Per-stage claims: which process trains a stage, kept alive by a heartbeat so that a claim
//! left by a killed task (on any machine sharing the store) is recognized and taken over by
//! exactly one other task. docs/cluster.md states the protocol and what it needs from the file
//! system; in short:
//!
//! - A claim is the file `stages/<id>/claim` holding a token unique to its holder
//!   (`pid N on host [boot B ns P] #R`, `R` random). It is always written whole to a uniquely
//!   named temporary file first: a fresh claim is made by hard-linking that file to `claim`
//!   (which fails if `claim` exists: atomic on local file systems and NFS), a stale one is taken
//!   over by renaming it onto `claim`. Either way the taker then reads `claim` back and holds the
//!   stage only if it finds its own token ([`TAKEOVER_SETTLE`] after a rename, so that a
//!   competing rename has landed by then).
//! - The holder touches the file (its modification time) every [`heartbeat`]. A reader judges a
//!   claim stale when it has watched the file (its modification time, size, inode and text)
//!   stay the same for the whole stale time ([`stale_time`]) on its *own* monotonic clock: no two
//!   machines' clocks are ever compared. A dead pid is only a hint, used where the holder's
//!   boot id and pid namespace are the reader's (the same kernel and container).
//! - A stage is committed only while its claim holds the committer's token ([`Claim::holds`]),
//!   and a holder releases its claim by renaming it aside and deleting it only if it is its own.
//!
//! Long because it is one protocol: making, beating, reading and taking over a claim share
//! their invariants, and splitting them would hide which step relies on which.

use super::{StoreError, hostname, io, write_atomic};
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

/// The default stale time: a claim not touched for this long (as its reader watched it) belongs
/// to a dead or stuck process. `KDGRID_CLAIM_STALE` (seconds) overrides it, for tests.
pub const CLAIM_STALE: Duration = Duration::from_secs(120);

/// The stale time in force: `KDGRID_CLAIM_STALE` (seconds, e.g. `1.5`) or [`CLAIM_STALE`].
pub fn stale_time() -> Duration {
    std::env::var("KDGRID_CLAIM_STALE")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(CLAIM_STALE, Duration::from_secs_f64)
}

/// How often a live claim is touched: six times per stale time.
pub fn heartbeat() -> Duration {
    stale_time() / 6
}

/// How long a taker waits after renaming its claim onto a stale one before reading it back, as
/// a fraction of the stale time: longer than any other taker's gap between its last look at the
/// stale claim and its own rename.
pub const TAKEOVER_SETTLE: u32 = 8;

/// A held claim on a stage; released (its file removed, if still ours) when dropped.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    token: String,
    shared: bool,
    /// The holder this claim was taken over from (a stale claim), if any.
    took_over: Option<String>,
    /// Set by the heartbeat when it finds another token in the file.
    lost: Arc<AtomicBool>,
    /// Stops the heartbeat thread when dropped.
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

/// What a stage's claim file says.
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
    modified: Option<SystemTime>,
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

/// The claim on stage `id` of the experiment folder `root`, if a claim file exists, from one
/// look (for `kdgrid status`, which does not watch): stale when its holder is a dead process here,
/// or when it was not touched for the stale time by this machine's clock (a hint only: takeovers
/// never compare clocks).
pub fn claim_state(root: &Path, id: &crate::plan::StageId) -> Option<ClaimState> {
    let path = root.join("stages").join(id.as_str()).join("claim");
    let look = look(&path).ok()??;
    let age = look
        .modified
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let holder = holder_label(&look.text);
    Some(if dead_here(&look.text) || age > stale_time() {
        ClaimState::Stale(holder)
    } else {
        ClaimState::Live(holder)
    })
}

/// `pid N on host` of a token (what `kdgrid status` shows).
pub(super) fn holder_label(token: &str) -> String {
    token
        .split_once(" [")
        .map_or(token, |(label, _)| label)
        .trim()
        .to_string()
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
fn dead_here(token: &str) -> bool {
    let Some((pid, boot, ns)) = parse(token) else {
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

/// A file in `dir` holding `text`, under a name no other process uses.
fn unique_file(dir: &Path, prefix: &str, text: &str) -> Result<tempfile::TempPath, StoreError> {
    let mut tmp = crate::atomic::as_umask_allows(
        tempfile::Builder::new().prefix(prefix).suffix(".tmp"),
        false,
    )
    .tempfile_in(dir)
    .map_err(io(dir))?;
    tmp.write_all(format!("{text}\n").as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(io(tmp.path()))?;
    Ok(tmp.into_temp_path())
}

/// Reads the token in `path` ("" when there is no file).
fn token_in(path: &Path) -> String {
    look(path)
        .ok()
        .flatten()
        .map(|l| l.text)
        .unwrap_or_default()
}

impl Claim {
    /// Claims `path` for this process. `shared`: other processes may hold it (return `None`
    /// then, and while a stale claim is being watched); otherwise this process holds the whole
    /// store and simply writes the claim. `watch` remembers how long each claim has looked the
    /// same.
    pub(super) fn acquire(
        path: &Path,
        shared: bool,
        watch: &Watch,
    ) -> Result<Option<Self>, StoreError> {
        let token = token();
        if !shared {
            write_atomic(path, format!("{token}\n").as_bytes())?;
            return Ok(Some(Self::held(path, token, false, None)));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mine = unique_file(dir, ".claim-", &token)?;
        // A few rounds: a claim released between our attempt and our look is tried again.
        for _ in 0..3 {
            match std::fs::hard_link(&mine, path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match watch.claim(path)? {
                        None => continue, // released meanwhile: try again
                        Some((ClaimState::Live(_), _)) => return Ok(None),
                        Some((ClaimState::Stale(holder), seen)) => {
                            return Self::take_over(path, token, mine, watch, holder, &seen);
                        }
                    }
                }
                // NFS may answer a retransmitted `link` with an error although the first one
                // succeeded: the read-back below decides.
                Err(e) => {
                    if token_in(path) != token {
                        return Err(io(path)(e));
                    }
                }
            }
            watch.forget(path);
            return Ok((token_in(path) == token).then(|| Self::held(path, token, true, None)));
        }
        Ok(None)
    }

    /// Renames `mine` onto the stale claim at `path` (if it still looks as `seen`), waits for
    /// competing takers' renames to land, and holds the claim if it then holds our token.
    fn take_over(
        path: &Path,
        token: String,
        mine: tempfile::TempPath,
        watch: &Watch,
        holder: String,
        seen: &Look,
    ) -> Result<Option<Self>, StoreError> {
        // Touched or replaced since: not stale after all (or taken by another).
        if look(path).map_err(io(path))?.as_ref() != Some(seen) {
            return Ok(None);
        }
        mine.persist(path)
            .map_err(|e| io(path)(std::io::Error::other(e.to_string())))?;
        watch.forget(path);
        std::thread::sleep(stale_time() / TAKEOVER_SETTLE);
        Ok((token_in(path) == token).then(|| Self::held(path, token, true, Some(holder))))
    }

    fn held(path: &Path, token: String, shared: bool, took_over: Option<String>) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, heartbeat) = if shared {
            let (tx, rx) = mpsc::channel::<()>();
            let (file, mine, lost) = (path.to_path_buf(), token.clone(), Arc::clone(&lost));
            let handle = std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(heartbeat()) {
                    if !touch_if_mine(&file, &mine) {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            });
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        Self {
            path: path.to_path_buf(),
            token,
            shared,
            took_over,
            lost,
            stop,
            heartbeat,
        }
    }

    /// Whether the claim file still holds this claim's token (always, for a store held alone).
    pub fn holds(&self) -> bool {
        !self.shared || (!self.lost.load(Ordering::SeqCst) && token_in(&self.path) == self.token)
    }

    /// Who holds the claim file now (`pid N on host`), or `nobody`.
    pub fn holder_now(&self) -> String {
        match token_in(&self.path) {
            t if t.is_empty() => "nobody".into(),
            t => holder_label(&t),
        }
    }

    /// The holder of the stale claim this one replaced, if it was taken over.
    pub fn took_over_from(&self) -> Option<&str> {
        self.took_over.as_deref()
    }

    /// This claim's token (what `history.log` names it by).
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// Touches `path` if it holds `token`; false when it holds another token or is gone. The file
/// is read and touched through one descriptor, so a claim renamed onto `path` meanwhile is not
/// touched. Other errors (a network file system's hiccup) count as ours: the next beat retries.
fn touch_if_mine(path: &Path, token: &str) -> bool {
    let mut file = match std::fs::File::options().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return true;
    }
    if text.trim() != token {
        return false;
    }
    // A failed touch is retried at the next beat; readers only see a missed beat.
    let _ = file.set_modified(SystemTime::now());
    true
}

impl Drop for Claim {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if !self.shared {
            if token_in(&self.path) == self.token {
                let _ = std::fs::remove_file(&self.path);
            }
            return;
        }
        // Renamed aside first, so that a claim another task renamed onto `claim` after our last
        // look is not deleted: it is put back (only where no claim is now).
        if self.lost.load(Ordering::SeqCst) || token_in(&self.path) != self.token {
            return; // taken over: the claim is another task's
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let aside = dir.join(format!(".claim-released-{:016x}.tmp", random_u64()));
        if std::fs::rename(&self.path, &aside).is_err() {
            return;
        }
        if token_in(&aside) != self.token {
            let _ = std::fs::hard_link(&aside, &self.path);
        }
        let _ = std::fs::remove_file(&aside);
    }
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

    #[test]
    fn a_claim_is_taken_over_only_after_it_looked_the_same_for_the_stale_time() {
        // SAFETY-free: this test alone sets the variable in this binary's store tests.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claim");
        let watch = Watch::default();
        let first = Claim::acquire(&path, true, &watch).unwrap().unwrap();
        assert!(first.holds());
        assert!(Claim::acquire(&path, true, &watch).unwrap().is_none());
        // Another machine's claim, never touched: live at first sight.
        drop(first);
        assert!(!path.exists(), "released");
        std::fs::write(&path, "pid 1 on elsewhere [boot x ns 1] #1\n").unwrap();
        assert!(matches!(
            watch.claim(&path).unwrap(),
            Some((ClaimState::Live(h), _)) if h == "pid 1 on elsewhere"
        ));
        assert!(Claim::acquire(&path, true, &watch).unwrap().is_none());
    }

    #[test]
    fn a_release_puts_back_a_claim_renamed_onto_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claim");
        let watch = Watch::default();
        let claim = Claim::acquire(&path, true, &watch).unwrap().unwrap();
        std::fs::write(
            dir.path().join("other"),
            "pid 2 on elsewhere [boot x ns 1] #2\n",
        )
        .unwrap();
        std::fs::rename(dir.path().join("other"), &path).unwrap();
        assert!(!claim.holds());
        assert_eq!(claim.holder_now(), "pid 2 on elsewhere");
        drop(claim);
        assert_eq!(token_in(&path), "pid 2 on elsewhere [boot x ns 1] #2");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
    }
}
