//! The claim timing every task on a store agrees on: the stale time (a claim unchanged this
//! long, as its reader watched it, belongs to a dead process) and the stuck time (a holder whose
//! training made no step this long stops beating, so its claim goes stale). Both live in the
//! store's `stages/CLAIMS`, written once by the first process that opens the store and read by
//! every later one: a task started with another `KDGRID_CLAIM_STALE` uses the store's value, so
//! no task judges a live claim by a shorter time than its holder beats to.

use super::{StoreError, io};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

/// The default stale time.
pub const CLAIM_STALE: Duration = Duration::from_secs(120);

/// The default stuck time: longer than any one optimizer step, evaluation or data load.
pub const CLAIM_STUCK: Duration = Duration::from_secs(3600);

/// The claim timing of a store.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Times {
    /// Seconds a claim may look unchanged before its readers take it over.
    pub stale_seconds: f64,
    /// Seconds a holder may make no training step before it stops beating.
    pub stuck_seconds: f64,
}

/// The timing of the store this process works on, once it opened one.
static AGREED: RwLock<Option<Times>> = RwLock::new(None);

fn seconds(var: &str) -> Option<f64> {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
}

impl Times {
    /// What this process asks for when it creates a store: `KDGRID_CLAIM_STALE` and
    /// `KDGRID_CLAIM_STUCK` (seconds, e.g. `1.5`) or the defaults.
    pub fn requested() -> Self {
        Self {
            stale_seconds: seconds("KDGRID_CLAIM_STALE").unwrap_or(CLAIM_STALE.as_secs_f64()),
            stuck_seconds: seconds("KDGRID_CLAIM_STUCK").unwrap_or(CLAIM_STUCK.as_secs_f64()),
        }
    }

    fn valid(&self) -> bool {
        [self.stale_seconds, self.stuck_seconds]
            .iter()
            .all(|s| s.is_finite() && *s > 0.0)
    }
}

fn current() -> Times {
    AGREED
        .read()
        .ok()
        .and_then(|t| *t)
        .unwrap_or_else(Times::requested)
}

/// The stale time in force: the store's, once one is open, else this process's request.
pub fn stale_time() -> Duration {
    Duration::from_secs_f64(current().stale_seconds)
}

/// The stuck time in force (see [`stale_time`]).
pub fn stuck_time() -> Duration {
    Duration::from_secs_f64(current().stuck_seconds)
}

/// How often a live claim is touched: six times per stale time.
pub fn heartbeat() -> Duration {
    stale_time() / 6
}

/// Reads the timing of the experiment folder `root` (`None` for a store that has none yet)
/// and puts it in force for this process; writes nothing.
pub fn read(root: &Path) -> Result<Option<Times>, StoreError> {
    let path = root.join("stages").join("CLAIMS");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let times: Times = toml::from_str(&text)
        .ok()
        .filter(Times::valid)
        .ok_or_else(|| StoreError::Corrupt {
            path: path.clone(),
            message: "expected `stale-seconds` and `stuck-seconds`, positive numbers".into(),
        })?;
    if let Ok(mut agreed) = AGREED.write() {
        *agreed = Some(times);
    }
    Ok(Some(times))
}

/// The timing of the store at `root`, writing this process's request when the store has none
/// yet (hard-linked into place: of two first openers, one writes it and both read it).
pub fn agree(root: &Path) -> Result<Times, StoreError> {
    if let Some(t) = read(root)? {
        return Ok(t);
    }
    let path = root.join("stages").join("CLAIMS");
    let dir = root.join("stages");
    let text = format!(
        "# Claim timing every task on this store uses; docs/cluster.md says what each means.\n{}",
        toml::to_string(&Times::requested()).expect("times serialize")
    );
    let tmp = super::claim::unique_file(&dir, ".claims-", &text)?;
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&path)(e)),
    }
    read(root)?.ok_or_else(|| StoreError::Corrupt {
        path,
        message: "written but not found".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_opener_sets_the_timing_and_later_ones_read_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("stages")).unwrap();
        std::fs::write(
            dir.path().join("stages/CLAIMS"),
            "stale-seconds = 120.0\nstuck-seconds = 7.5\n",
        )
        .unwrap();
        let t = agree(dir.path()).unwrap();
        assert_eq!((t.stale_seconds, t.stuck_seconds), (120.0, 7.5));
        assert_eq!(stale_time(), Duration::from_secs(120));
        std::fs::write(dir.path().join("stages/CLAIMS"), "stale-seconds = -1\n").unwrap();
        assert!(matches!(read(dir.path()), Err(StoreError::Corrupt { .. })));
        let fresh = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(fresh.path().join("stages")).unwrap();
        assert_eq!(agree(fresh.path()).unwrap(), Times::requested());
        let written = std::fs::read_to_string(fresh.path().join("stages/CLAIMS")).unwrap();
        assert!(written.contains("stale-seconds = "), "{written}");
    }
}
