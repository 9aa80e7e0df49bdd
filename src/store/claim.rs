//! Per-stage claims: which process trains a stage, fenced by generations that only grow, so that
//! a claim left by a killed or stopped task (on any machine sharing the store) is taken over by
//! exactly one other task, and a holder that was paused past the stale time learns it lost the
//! stage at its next epoch. docs/cluster.md states the protocol and what it needs from the file
//! system; in short:
//!
//! - A stage's claims are the files `stages/<id>/claim.<g>`, `g` = 1, 2, ...; the newest
//!   generation is the claim in force. Each holds a token unique to its holder (`pid N on host
//!   [boot B ns P] #R`, `R` random), or `released by <token>`. A file is always written whole
//!   under a unique name and hard-linked to its generation's name, which fails if the name
//!   exists: of any number of takers of generation `g + 1`, exactly one creates it, whatever
//!   their timing.
//! - The holder of generation `g` holds the stage while `claim.<g+1>` does not exist; it
//!   touches its file every [`heartbeat`] while its training makes progress (see
//!   [`super::times`]). A reader judges a claim stale once it has watched it unchanged for the
//!   stale time ([`super::watch`]), and takes it over by creating the next generation.
//! - A stage is committed while its claim holds: the holder seals its commit by creating the
//!   next generation as `committing <record file> by <token>` ([`Claim::seal`]) and then links
//!   its record; a task that finds a seal stale links that record for its writer.
//! - A holder that is done with a stage, committed
//!   or not, creates the next generation as `released`, so the stage is free at once (to train
//!   again, should its record ever read as damaged) and no older holder can read its own
//!   generation as the newest again. Claim files are never removed while tasks may run: only
//!   `kdgrid gc`, holding the store alone, removes those of finished stages.

use super::times::{heartbeat, stale_time, stuck_time};
use super::watch::{ClaimState, Look, Watch, dead_here, holder_label, look, token};
use super::{StoreError, io};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Instant, SystemTime};

/// What a released generation's file starts with.
const RELEASED: &str = "released";

/// What a generation sealing a commit starts with: `committing <record file> by <token>`.
const COMMITTING: &str = "committing";

/// A held claim on a stage; released when dropped (the next generation written as released).
#[derive(Debug)]
pub struct Claim {
    dir: PathBuf,
    generation: u64,
    token: String,
    shared: bool,
    /// The holder of the stale claim this one replaced, if it was taken over.
    took_over: Option<String>,
    /// Set by the heartbeat when it finds a newer generation.
    lost: Arc<AtomicBool>,
    /// Set when this claim sealed a commit (the next generation says `committing`): the holder
    /// then holds the stage through the seal, and beats it.
    sealed: Arc<AtomicBool>,
    /// Milliseconds since `born` of the last training progress.
    progress: Arc<AtomicU64>,
    born: Instant,
    /// Stops the heartbeat thread when dropped.
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

/// The file of generation `g` of the claims in the stage folder `dir`.
fn generation_path(dir: &Path, g: u64) -> PathBuf {
    dir.join(format!("claim.{g}"))
}

/// Whether `path` exists (asked by name: on NFS a lookup goes to the server, where a folder
/// listing may come from a cache). An error other than "not found" counts as existing: the
/// caller then acts as if it lost, which costs time, never results.
fn exists(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// The newest claim generation in the stage folder `dir` (0 when there is none): the highest
/// listed, then probed upward by name.
pub(super) fn newest(dir: &Path) -> Result<u64, StoreError> {
    let listed = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("claim.")?.parse().ok())
            .max()
            .unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(dir)(e)),
    };
    let mut g = listed;
    while std::fs::symlink_metadata(generation_path(dir, g + 1)).is_ok() {
        g += 1;
    }
    Ok(g)
}

/// The claim in force in the stage folder `dir`, as `watch` has seen it: `None` when there is
/// none or it was released.
pub(super) fn seen(
    dir: &Path,
    watch: &Watch,
) -> Result<Option<(u64, ClaimState, Look)>, StoreError> {
    let g = newest(dir)?;
    if g == 0 {
        return Ok(None);
    }
    Ok(match watch.claim(&generation_path(dir, g))? {
        Some((_, look)) if look.text.starts_with(RELEASED) => None,
        Some((state, look)) => Some((g, state, look)),
        None => None,
    })
}

/// The claim on stage `id` of the experiment folder `root`, from one look (for `kdgrid
/// status`, which does not watch): stale when its holder is a dead process here, or when it was
/// not touched for the stale time by this machine's clock (a hint only: takeovers never compare
/// clocks).
pub fn claim_state(root: &Path, id: &crate::plan::StageId) -> Option<ClaimState> {
    let dir = root.join("stages").join(id.as_str());
    let look = look(&generation_path(&dir, newest(&dir).ok()?)).ok()??;
    if look.text.starts_with(RELEASED) {
        return None;
    }
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

/// A file in `dir` holding `text`, under a name no other process uses.
pub(super) fn unique_file(
    dir: &Path,
    prefix: &str,
    text: &str,
) -> Result<tempfile::TempPath, StoreError> {
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

/// Creates generation `g` in `dir` from the file `from`: true if this call created it, false
/// if it existed. NFS may answer a retransmitted `link` with an error although the first one
/// succeeded: the file's text then decides.
fn create(from: &Path, dir: &Path, g: u64, text: &str) -> Result<bool, StoreError> {
    let path = generation_path(dir, g);
    match std::fs::hard_link(from, &path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => match look(&path) {
            Ok(Some(l)) if l.text == text => Ok(true),
            Ok(Some(_)) => Ok(false),
            _ => Err(io(&path)(e)),
        },
    }
}

/// Links the record a sealed commit names (`committing <file> by <token>`, generation `g`) to
/// `record.json`, unless a record is there or the file is gone (its commit was finished, or
/// `gc` found no seal to finish); a link made here is written in the seal's history in the
/// sealer's name, as its commit.
pub(super) fn finish_commit(dir: &Path, g: u64, seal: &str) -> bool {
    let Some((name, sealer)) = seal
        .strip_prefix(COMMITTING)
        .and_then(|rest| rest.trim_start().split_once(" by "))
    else {
        return false;
    };
    if !name.starts_with(".record") || name.contains('/') {
        return false;
    }
    let linked = std::fs::hard_link(dir.join(name), dir.join("record.json")).is_ok();
    if linked {
        super::append_history(
            dir,
            g,
            &format!("commit by {sealer} (its sealed record linked by another task)"),
        );
    }
    linked
}

impl Claim {
    /// Claims the stage whose folder is `dir` for this process. `shared`: other processes may
    /// hold it (return `None` while a live one does); otherwise this process holds the whole
    /// store and takes over whatever claim it finds. `watch` remembers how long each claim has
    /// looked the same.
    pub(super) fn acquire(
        dir: &Path,
        shared: bool,
        watch: &Watch,
    ) -> Result<Option<Self>, StoreError> {
        let token = token();
        let mine = unique_file(dir, ".claim-", &token)?;
        // A few rounds: a claim released between two looks is tried again (a store held alone
        // keeps trying: only a process on another machine of a `nolock` mount can compete).
        for _ in 0..if shared { 3 } else { 100 } {
            let g = newest(dir)?;
            let mut took_over = None;
            if g > 0 {
                let path = generation_path(dir, g);
                match watch.claim(&path)? {
                    None => continue,
                    Some((_, l)) if l.text.starts_with(RELEASED) => {}
                    Some((ClaimState::Live(_), _)) if shared => return Ok(None),
                    // A holder that sealed its commit and stopped before linking the record:
                    // the record it wrote is linked for it (the stage is then done, and the
                    // caller finds it committed).
                    Some((_, l)) if l.text.starts_with(COMMITTING) => {
                        if !finish_commit(dir, g, &l.text) && !dir.join("record.json").exists() {
                            took_over = Some(holder_label(&l.text));
                        }
                    }
                    Some((ClaimState::Live(h) | ClaimState::Stale(h), _)) => took_over = Some(h),
                }
                crate::fault::pause("claim-takeover");
                watch.forget(&path);
            }
            if !create(&mine, dir, g + 1, &token)? {
                // Another task made that generation first: it holds the stage (or released it
                // a moment ago: look again).
                if shared {
                    return Ok(None);
                }
                continue;
            }
            return Ok(Some(Self::held(dir, g + 1, token, shared, took_over)));
        }
        Ok(None)
    }

    fn held(
        dir: &Path,
        generation: u64,
        token: String,
        shared: bool,
        took_over: Option<String>,
    ) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let sealed = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let born = Instant::now();
        let (stop, heartbeat) = if shared {
            let (tx, rx) = mpsc::channel::<()>();
            let (dir, lost, progress, seal) = (
                dir.to_path_buf(),
                Arc::clone(&lost),
                Arc::clone(&progress),
                Arc::clone(&sealed),
            );
            let handle = std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(heartbeat()) {
                    // Once sealed, the seal is the holder's newest generation.
                    let mine = generation + u64::from(seal.load(Ordering::SeqCst));
                    let (own, next) =
                        (generation_path(&dir, mine), generation_path(&dir, mine + 1));
                    if exists(&next) {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    // Liveness is progress: a holder stuck in one step stops beating, and its
                    // claim goes stale for the others.
                    let idle = (born.elapsed().as_millis() as u64)
                        .saturating_sub(progress.load(Ordering::SeqCst));
                    if idle as f64 / 1000.0 > stuck_time().as_secs_f64() {
                        continue;
                    }
                    // A failed touch is retried at the next beat; readers only see a missed beat.
                    let _ = std::fs::File::options()
                        .write(true)
                        .open(&own)
                        .and_then(|f| f.set_modified(SystemTime::now()));
                }
            });
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        Self {
            dir: dir.to_path_buf(),
            generation,
            token,
            shared,
            took_over,
            lost,
            sealed,
            progress,
            born,
            stop,
            heartbeat,
        }
    }

    /// Whether no newer generation replaced this claim (always, for a store held alone).
    pub fn holds(&self) -> bool {
        let mine = self.generation + u64::from(self.sealed.load(Ordering::SeqCst));
        !self.shared
            || (!self.lost.load(Ordering::SeqCst) && !exists(&generation_path(&self.dir, mine + 1)))
    }

    /// Notes that the training of the stage made progress (a step, an evaluation).
    pub fn progressed(&self) {
        self.progress
            .store(self.born.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    /// Seals the commit of the record written to `record` (a file in the stage's folder): the
    /// next generation, `committing <file> by <token>`, which only one task can create. After
    /// it no task can take the stage over, and one that finds the seal stale links the record
    /// for its writer. False when another task made that generation first: the claim was lost
    /// and this task must not commit. A store held alone needs no seal.
    pub(super) fn seal(&self, record: &Path) -> Result<bool, StoreError> {
        if !self.shared {
            return Ok(true);
        }
        let name = record.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let text = format!("{COMMITTING} {name} by {}", self.token);
        let file = unique_file(&self.dir, ".claim-", &text)?;
        // Set first, so that the heartbeat never takes our own seal for a taker's.
        self.sealed.store(true, Ordering::SeqCst);
        let sealed = create(&file, &self.dir, self.generation + 1, &text);
        if !matches!(sealed, Ok(true)) {
            self.sealed.store(false, Ordering::SeqCst);
        }
        sealed
    }

    /// Who holds the stage now (`pid N on host`), who held it last (`pid N on host, done with
    /// it`), or `nobody`.
    pub fn holder_now(&self) -> String {
        let text = newest(&self.dir)
            .ok()
            .and_then(|g| look(&generation_path(&self.dir, g)).ok().flatten())
            .map(|l| l.text)
            .unwrap_or_default();
        match text.strip_prefix(RELEASED) {
            _ if text.is_empty() => "nobody".into(),
            Some(by) => format!(
                "{}, done with it",
                holder_label(by.trim_start_matches(" by "))
            ),
            None => holder_label(&text),
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

    /// This claim's generation: the fencing token of `history.log` and of the commit.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if !self.shared {
            // The store is held alone: every claim on the stage is this process's or a dead
            // one's, and none needs fencing.
            for g in 1..=self.generation {
                let _ = std::fs::remove_file(generation_path(&self.dir, g));
            }
            return;
        }
        if !self.holds() {
            return; // taken over: the stage is another task's
        }
        // After a sealed commit the seal is the newest generation: released after it.
        let next = self.generation + 1 + u64::from(self.sealed.load(Ordering::SeqCst));
        let text = format!("{RELEASED} by {}", self.token);
        if let Ok(file) = unique_file(&self.dir, ".claim-", &text) {
            let _ = create(&file, &self.dir, next, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_claim_is_taken_over_only_after_it_looked_the_same_for_the_stale_time() {
        let dir = tempfile::tempdir().unwrap();
        let watch = Watch::default();
        let first = Claim::acquire(dir.path(), true, &watch).unwrap().unwrap();
        assert!(first.holds());
        assert_eq!(first.generation(), 1);
        assert!(Claim::acquire(dir.path(), true, &watch).unwrap().is_none());
        drop(first);
        // Released: the next generation says so, and the stage is free at once.
        assert_eq!(file_names(dir.path()), ["claim.1", "claim.2"]);
        assert!(
            std::fs::read_to_string(dir.path().join("claim.2"))
                .unwrap()
                .starts_with("released by pid ")
        );
        let second = Claim::acquire(dir.path(), true, &watch).unwrap().unwrap();
        assert_eq!(second.generation(), 3);
        drop(second);
        assert_eq!(newest(dir.path()).unwrap(), 4);
        // Another machine's claim, never touched: live at first sight.
        std::fs::write(
            dir.path().join("claim.5"),
            "pid 1 on elsewhere [boot x ns 1] #1\n",
        )
        .unwrap();
        assert!(matches!(
            seen(dir.path(), &watch).unwrap(),
            Some((5, ClaimState::Live(h), _)) if h == "pid 1 on elsewhere"
        ));
        assert!(Claim::acquire(dir.path(), true, &watch).unwrap().is_none());
    }

    #[test]
    fn a_holder_loses_the_stage_to_the_next_generation_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let watch = Watch::default();
        let claim = Claim::acquire(dir.path(), true, &watch).unwrap().unwrap();
        // A taker made generation 2 while this holder was stopped.
        std::fs::write(
            dir.path().join("claim.2"),
            "pid 2 on elsewhere [boot x ns 1] #2\n",
        )
        .unwrap();
        assert!(!claim.holds());
        assert_eq!(claim.holder_now(), "pid 2 on elsewhere");
        drop(claim);
        assert_eq!(
            file_names(dir.path()),
            ["claim.1", "claim.2"],
            "nothing released over it"
        );
        // Of two takers of one generation, one creates it.
        let a = unique_file(dir.path(), ".claim-", "a").unwrap();
        let b = unique_file(dir.path(), ".claim-", "b").unwrap();
        assert!(create(&a, dir.path(), 3, "a").unwrap());
        assert!(!create(&b, dir.path(), 3, "b").unwrap());
        assert_eq!(newest(dir.path()).unwrap(), 3);
    }

    #[test]
    fn a_store_held_alone_takes_over_any_claim() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("claim.4"),
            "pid 1 on elsewhere [boot x ns 1] #1\n",
        )
        .unwrap();
        let claim = Claim::acquire(dir.path(), false, &Watch::default())
            .unwrap()
            .unwrap();
        assert_eq!(claim.generation(), 5);
        assert_eq!(claim.took_over_from(), Some("pid 1 on elsewhere"));
        assert!(claim.holds());
    }
}
