//! Fault injection for the reliability tests (`tests/it/faults.rs`), read from the
//! `KDGRID_FAULT` environment variable; unset, nothing here does anything.
//!
//! - `KDGRID_FAULT=panic:<model>`: the worker training a stage of model `<model>` panics, as a
//!   shape error or a CUDA out-of-memory would.
//! - `KDGRID_FAULT=panic-save:<model>`: the worker panics after training, while saving the
//!   stage's weights (outside the guarded training call).
//! - `KDGRID_FAULT=panic-ensemble:<model>`: evaluating an ensemble stage of model `<model>`
//!   panics.
//! - `KDGRID_FAULT=write:<file name>`: every atomic write of a file with that name fails after
//!   its bytes are written and before the rename, as a full disk would.
//! - `KDGRID_FAULT=pause:<point>`: the process stops itself (SIGSTOP) the first time it reaches
//!   `<point>`, as swapping, a stalled network file system or a suspended job would stop it
//!   there; the test continues it (SIGCONT) when it has arranged what happens meanwhile. Points:
//!   `claim-takeover` (a stale claim seen, its successor not yet created), `commit` (the claim
//!   checked, the weights not yet in place), `aside` (a damaged record judged, not yet moved
//!   aside), `sealed` (a commit sealed, its record not yet linked), `epoch` (an epoch trained,
//!   the claim not yet checked).
//! - `KDGRID_FAULT=stall:<point>`: the thread reaching `<point>` sleeps for an hour, as a
//!   deadlock, a stalled read or a hung GPU call would, while the process's other threads
//!   (the claim's heartbeat) run on. Point: `epoch`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

fn fault() -> Option<(String, String)> {
    let v = std::env::var("KDGRID_FAULT").ok()?;
    let (kind, arg) = v.split_once(':')?;
    Some((kind.to_string(), arg.to_string()))
}

/// Panics when a panic is injected for `model` at `point` (`panic`, `panic-save`,
/// `panic-ensemble`).
pub fn check_panic(point: &str, model: &str) {
    if let Some((kind, arg)) = fault()
        && kind == point
        && arg == model
    {
        panic!("injected fault: {point} in `{model}` (KDGRID_FAULT)");
    }
}

/// Fails when a write failure is injected for `path`'s file name.
pub fn check_write(path: &Path) -> std::io::Result<()> {
    match fault() {
        Some((kind, arg))
            if kind == "write" && path.file_name().is_some_and(|n| n.to_string_lossy() == arg) =>
        {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "injected write failure (KDGRID_FAULT)",
            ))
        }
        _ => Ok(()),
    }
}

/// Sleeps for an hour when a stall is injected at `point`.
pub fn stall(point: &str) {
    if let Some((kind, arg)) = fault()
        && kind == "stall"
        && arg == point
    {
        eprintln!("kdgrid: stalling at `{point}` (KDGRID_FAULT)");
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Stops this process (SIGSTOP) the first time it reaches `point`, when a pause is injected
/// there.
pub fn pause(point: &str) {
    static PAUSED: AtomicBool = AtomicBool::new(false);
    if let Some((kind, arg)) = fault()
        && kind == "pause"
        && arg == point
        && !PAUSED.swap(true, Ordering::SeqCst)
    {
        eprintln!("kdgrid: pausing at `{point}` (KDGRID_FAULT)");
        // SAFETY: raising a signal at this process has no memory effects.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}
