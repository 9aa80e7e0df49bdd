//! The fault harness: kills at random moments, crashing workers, failing writes, corrupt files
//! and concurrent runs. Each must end with the tables an uninterrupted run gives, or with a
//! named error and nothing half-written. Random choices are seeded, so a failure replays.

use crate::support::*;
use rand::{RngExt, SeedableRng};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kdgrid_bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("kdgrid")
}

/// `kdgrid run --quiet` on `ws`, in the background, output discarded.
fn spawn_run(ws: &Workspace) -> std::process::Child {
    Command::new(kdgrid_bin())
        .arg("--results")
        .arg(ws.results())
        .args(["run", "--quiet"])
        .arg(ws.manifest())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Temporary files left in `dir` (recursively): none may survive a finished run.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".tmp"))
        .collect()
}

#[test]
fn sweeps_killed_at_random_moments_resume_to_the_same_tables() {
    // Four seeds and 8 epochs: long enough for a dozen kills at 40-400 ms after each start,
    // even on a machine a few times faster than the 2-core one this was tuned on.
    let text = TINY
        .replace("seed = [0, 1]", "seed = [0, 1, 2, 3]")
        .replace("epochs = 4", "epochs = 8");
    let straight = Workspace::new(&text);
    straight.kdgrid(&["run", "--quiet"]).success();

    let ws = Workspace::new(&text);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261129);
    let (mut kills, mut mid_stage) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    let stages = ws.results().join("tiny/stages");
    // A stage folder without a record is a stage killed while training or saving.
    let training = || {
        std::fs::read_dir(&stages).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().is_dir() && !e.path().join("record.json").exists())
        })
    };
    loop {
        let mut child = spawn_run(&ws);
        // Every other kill waits for a stage to be training first, so some land mid-stage
        // however slow the machine is at starting up; the others land anywhere.
        if kills % 2 == 1 {
            let until = Instant::now() + Duration::from_secs(10);
            while !training() && Instant::now() < until && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let wait = Duration::from_millis(rng.random_range(40..400));
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_some() || kills >= 12 {
            assert!(child.wait().unwrap().success());
            break;
        }
        child.kill().unwrap(); // SIGKILL: no cleanup runs
        child.wait().unwrap();
        kills += 1;
        if training() {
            mid_stage += 1;
        }
        assert!(Instant::now() < deadline, "the sweep never finished");
    }
    // Whatever was left, one more run completes it.
    ws.kdgrid(&["run", "--quiet"]).success();
    assert!(kills >= 10, "only {kills} kills landed");
    assert!(mid_stage >= 1, "no kill landed while a stage was training");
    let a = straight.results().join("tiny");
    let b = ws.results().join("tiny");
    let diff = Command::new(kdgrid_bin())
        .arg("diff")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{kills} kills ({mid_stage} mid-stage): {}",
        String::from_utf8_lossy(&diff.stdout)
    );
    assert!(
        leftovers(&b).iter().all(|p| p.contains("/stages/")),
        "{:?}",
        leftovers(&b)
    );
}

#[test]
fn a_panicking_worker_fails_its_stage_and_the_sweep_ends() {
    let ws = Workspace::new(TINY);
    let out = run_with_fault(&ws, "panic:assistant", &["--jobs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = ws.parquet("tiny", "runs.parquet");
    let (models, status, errors) = (
        strings(&runs, "model"),
        strings(&runs, "status"),
        strings(&runs, "error"),
    );
    for i in 0..runs.height() {
        let chain_has_assistant = strings(&runs, "chain")[i].contains("assistant");
        let expected = match (models[i].as_str(), chain_has_assistant) {
            ("assistant", _) => "failed",
            (_, true) => "skipped",
            _ => "ok",
        };
        assert_eq!(status[i], expected, "{runs}");
        if expected == "failed" {
            assert!(
                errors[i].contains("training crashed: injected fault"),
                "{}",
                errors[i]
            );
        }
    }
    // The failure is kept, and retried on request.
    let plan = stdout(&ws.kdgrid(&["plan"]).success());
    assert!(
        plan.contains("2 failed (kept; `run --retry-failed`"),
        "{plan}"
    );
    let again = stdout(&ws.kdgrid(&["run", "--quiet", "--retry-failed"]).success());
    assert!(again.contains("4 trained, 6 reused, 0 failed"), "{again}");
}

#[test]
fn a_failed_table_write_names_the_file_and_keeps_the_previous_one() {
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let dir = ws.results().join("tiny");
    let before = std::fs::read(dir.join("runs.parquet")).unwrap();
    std::fs::remove_file(dir.join("summary.csv")).unwrap();
    let out = run_with_fault(&ws, "write:runs.parquet", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runs.parquet") && err.contains("injected write failure"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("runs.parquet")).unwrap(), before);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    // Without the fault the tables come back.
    ws.kdgrid(&["run", "--quiet"]).success();
    assert!(dir.join("summary.csv").exists());
}

#[test]
fn a_failed_model_write_fails_the_run_and_leaves_no_partial_stage() {
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    let out = run_with_fault(&ws, "write:model.bpk", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("injected write failure"), "{err}");
    let stages = ws.results().join("tiny/stages");
    // Epoch checkpoints may remain (a rerun resumes from them); no committed file may.
    let records = walkdir::WalkDir::new(&stages)
        .max_depth(2)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == "record.json" || e.file_name() == "model.bpk")
        .count();
    assert_eq!(
        records, 0,
        "nothing is committed for a stage whose weights were not saved"
    );
    assert!(leftovers(&stages).is_empty(), "{:?}", leftovers(&stages));
}

#[test]
fn corrupt_weights_and_records_are_detected_and_retrained() {
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let dir = ws.results().join("tiny");
    let before = std::fs::read(dir.join("runs.parquet")).unwrap();
    let runs = ws.parquet("tiny", "runs.parquet");
    let ids = strings(&runs, "stage_id");
    // Truncate one model, and alter one number in another stage's record.
    let model = dir.join("stages").join(&ids[0]).join("model.bpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let record = dir.join("stages").join(&ids[1]).join("record.json");
    let text = std::fs::read_to_string(&record).unwrap();
    let altered = text.replacen("\"test_accuracy\": 0.", "\"test_accuracy\": 1.", 1);
    assert_ne!(text, altered);
    std::fs::write(&record, altered).unwrap();

    let plan = stderr(&ws.kdgrid(&["plan"]).success());
    assert!(plan.contains("corrupt"), "{plan}");
    let run = ws.kdgrid(&["run", "--quiet"]).success();
    let err = stderr(&run);
    assert!(
        err.contains(&format!("stage `{}` is corrupt", ids[0])),
        "{err}"
    );
    assert!(err.contains("weights do not match their checksum"), "{err}");
    assert!(
        err.contains(&format!("stage `{}` is corrupt", ids[1])),
        "{err}"
    );
    assert!(err.contains("record does not match its checksum"), "{err}");
    assert!(
        stdout(&run).contains("2 trained, 8 reused"),
        "{}",
        stdout(&run)
    );
    assert_eq!(std::fs::read(dir.join("runs.parquet")).unwrap(), before);
}

#[test]
fn a_second_run_on_the_same_store_is_refused_with_the_holder_named() {
    let ws = Workspace::new(TINY);
    let mut first = spawn_run(&ws);
    let lock = ws.results().join("tiny/.lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("pid")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first run never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = ws.kdgrid(&["run", "--quiet"]).code(1);
    let err = stderr(&second);
    assert!(err.contains("is in use by another"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(first.wait().unwrap().success());
    // The store is whole: a rerun trains nothing.
    assert!(stdout(&ws.kdgrid(&["run", "--quiet"]).success()).contains("0 trained, 10 reused"));
}

#[test]
fn a_nan_from_the_last_step_fails_the_stage() {
    // One step per epoch with an absurd learning rate: the step's own loss is finite, the
    // weights after it are not.
    let text = TINY
        .replace("train-size = 1024", "train-size = 32")
        .replace("optimizer = \"adam\"\nlr = 0.01", "optimizer = \"sgd\"\nlr = 1e38")
        .replace("epochs = 4", "epochs = 1")
        .replace("seed = [0, 1]", "seed = [0]")
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
            "chains = [[\"teacher\"]]",
        );
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("tiny", "runs.parquet");
    assert_eq!(strings(&runs, "status"), vec!["failed"], "{runs}");
    assert!(strings(&runs, "error")[0].contains("diverged"), "{runs}");
    assert!(
        floats(&runs, "test_loss")[0].is_nan(),
        "no loss is reported for a failed stage"
    );
}

#[test]
fn a_teacher_killed_mid_training_resumes_from_its_last_epoch_bit_identically() {
    use std::io::BufRead;
    let text = TINY
        .replace("epochs = 4", "epochs = 8")
        .replace("seed = [0, 1]", "seed = [0]")
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
            "chains = [[\"teacher\"]]",
        );
    let straight = Workspace::new(&text);
    straight.kdgrid(&["run", "--quiet"]).success();

    let ws = Workspace::new(&text);
    let mut child = Command::new(kdgrid_bin())
        .arg("--results")
        .arg(ws.results())
        .arg("run")
        .arg(ws.manifest())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once epoch 3's line shows, epoch 3 is evaluated and its checkpoint is being written;
    // killing right after leaves epoch 3's checkpoint or, if the write was cut, epoch 2's.
    let lines = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in lines.lines() {
        if line.unwrap().contains("epoch 3/8") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = ws.kdgrid(&["run"]).success();
    let err = stderr(&resumed);
    let epoch: usize = err
        .split("resumed from its epoch-")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume in: {err}"));
    assert!(epoch >= 2, "resumed from epoch {epoch}: {err}");
    assert!(
        !err.contains("epoch 1/8"),
        "epochs before the checkpoint are not trained again: {err}"
    );
    let (a, b) = (
        straight.parquet("tiny", "runs.parquet"),
        ws.parquet("tiny", "runs.parquet"),
    );
    assert_eq!(strings(&a, "weights_sha256"), strings(&b, "weights_sha256"));
    let (ea, eb) = (
        straight.parquet("tiny", "epochs.parquet"),
        ws.parquet("tiny", "epochs.parquet"),
    );
    assert_eq!(floats(&ea, "train_loss"), floats(&eb, "train_loss"));
    // The checkpoints are gone once the stage is committed.
    let id = &strings(&b, "stage_id")[0];
    assert!(
        !ws.results()
            .join("tiny/stages")
            .join(id)
            .join("checkpoints")
            .exists()
    );
}

/// `kdgrid run --quiet` on `ws` with fault `fault` injected, to completion; killed after two
/// minutes, so a sweep that waits forever fails the test.
fn run_with_fault(ws: &Workspace, fault: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(kdgrid_bin())
        .arg("--results")
        .arg(ws.results())
        .args(["run", "--quiet"])
        .args(args)
        .arg(ws.manifest())
        .env("KDGRID_FAULT", fault)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("`kdgrid run` with KDGRID_FAULT={fault} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_panic_outside_training_ends_the_sweep_instead_of_hanging() {
    let ws = Workspace::new(TINY);
    let out = run_with_fault(&ws, "panic-save:assistant", &["--jobs", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("crashed outside training") && err.contains("injected fault"),
        "{err}"
    );
    // What finished is kept: a rerun without the fault trains only what is left.
    let again = stdout(&ws.kdgrid(&["run", "--quiet"]).success());
    assert!(again.contains("0 failed"), "{again}");
}

#[test]
fn a_panicking_ensemble_evaluation_fails_its_stage_and_the_sweep_goes_on() {
    let ws = Workspace::new(&crate::imported::ENSEMBLE.replace("COMBINE", ""));
    let out = run_with_fault(&ws, "panic-ensemble:trio", &["--jobs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = ws.parquet("ensemble", "runs.parquet");
    let (chains, status, errors) = (
        strings(&runs, "chain"),
        strings(&runs, "status"),
        strings(&runs, "error"),
    );
    for i in 0..runs.height() {
        let expected = match chains[i].as_str() {
            "trio" => "failed",
            c if c.starts_with("trio") => "skipped",
            _ => "ok",
        };
        assert_eq!(status[i], expected, "{}: {runs}", chains[i]);
        if expected == "failed" {
            assert!(errors[i].contains("injected fault"), "{}", errors[i]);
        }
    }
}
