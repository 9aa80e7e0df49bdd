//! The viewers: TensorBoard event files read back through a real `tensorboard` server and
//! MLflow runs read back with MLflow's client from a real `mlflow server`, against the tables
//! (scripts/check-tensorboard.py, scripts/check-mlflow.py).

use crate::support::{TINY, Workspace, stderr, stdout};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Python with `tensorboard` and `mlflow`: `KDGRID_TORCH_PYTHON` (`make test` installs
/// both into the torch venv), else `python3` if it has them; `None` (the test says it skipped)
/// otherwise.
fn viewers_python() -> Option<String> {
    if let Ok(p) = std::env::var("KDGRID_TORCH_PYTHON") {
        return Some(p);
    }
    let has = Command::new("python3")
        .args(["-c", "import tensorboard, mlflow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!("skipped: no python3 with tensorboard and mlflow (`make test` installs them)");
    }
    has.then(|| "python3".to_string())
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// Every event file under `dir`, by path, with its bytes.
fn event_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().contains("tfevents"))
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Requires `checker` (run with `args`) to pass, showing what it printed otherwise.
fn checker_agrees(python: &str, checker: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(python)
        .arg(script(checker))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Requires TensorBoard's reading of `logdir` to equal the tables of `ws`'s `tiny` study.
fn tensorboard_agrees(python: &str, logdir: &Path, ws: &Workspace, stages: usize) {
    let results = ws.results().join("tiny");
    let stages = stages.to_string();
    let args = [
        logdir.as_os_str(),
        results.as_os_str(),
        "--expect-stages".as_ref(),
        stages.as_ref(),
    ];
    checker_agrees(python, "check-tensorboard.py", &args);
}

/// Requires MLflow's client to find `ws`'s `tiny` study at `uri` equal to its tables.
fn mlflow_agrees(python: &str, uri: &str, ws: &Workspace) {
    let results = ws.results().join("tiny");
    let args = [uri.as_ref(), results.as_os_str(), "tiny".as_ref()];
    checker_agrees(python, "check-mlflow.py", &args);
}

#[test]
fn tensorboard_runs_follow_the_grid_and_a_rerun_or_export_adds_nothing() {
    let ws = Workspace::new(TINY);
    let tb = ws.dir.path().join("tb");
    let tb_arg = tb.to_str().unwrap();
    ws.kdgrid(&["run", "--quiet", "--tensorboard", tb_arg])
        .success();
    let files = event_files(&tb);
    // 10 stages and the study's HParams experiment.
    assert_eq!(files.len(), 11, "{:?}", files.keys());
    let runs: Vec<String> = files
        .keys()
        .map(|p| {
            p.parent()
                .unwrap()
                .strip_prefix(&tb)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for run in [
        "tiny",
        "tiny/teacher/seed=0",
        "tiny/student/seed=1",
        "tiny/teacher>student/T=4,alpha=0.5/seed=0",
        "tiny/teacher>assistant/T=4,alpha=0.5/seed=1",
        "tiny/teacher>assistant>student/T=4,alpha=0.5/seed=1",
    ] {
        assert!(runs.contains(&run.to_string()), "{run} not in {runs:?}");
    }
    if let Some(python) = viewers_python() {
        tensorboard_agrees(&python, &tb, &ws, 10);
    }

    // Reused stages, an export of the same store: not one byte more.
    ws.kdgrid(&["run", "--quiet", "--tensorboard", tb_arg])
        .success();
    assert_eq!(event_files(&tb), files, "a rerun wrote events again");
    ws.kdgrid(&["export", "--tensorboard", tb_arg]).success();
    assert_eq!(event_files(&tb), files, "an export wrote events again");

    // A writer killed mid-record leaves a torn tail: cut off, and nothing repeated.
    let (torn, bytes) = files
        .iter()
        .find(|(p, _)| p.to_string_lossy().contains("teacher>student/"))
        .unwrap();
    let mut cut = bytes.clone();
    cut.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    std::fs::write(torn, &cut).unwrap();
    // A stage's file deleted: written again whole.
    let (lost, _) = files
        .iter()
        .find(|(p, _)| p.to_string_lossy().contains("student/seed=1"))
        .unwrap();
    std::fs::remove_file(lost).unwrap();
    ws.kdgrid(&["export", "--tensorboard", tb_arg]).success();
    let again = event_files(&tb);
    assert_eq!(again[torn], files[torn], "the torn tail was not cut off");
    assert!(again.contains_key(lost));
    if let Some(python) = viewers_python() {
        tensorboard_agrees(&python, &tb, &ws, 10);
    }
}

#[test]
fn a_stage_resumed_after_a_kill_continues_its_curve_without_repeating_steps() {
    let text = TINY
        .replace("epochs = 4", "epochs = 8")
        .replace("train-size = 1024", "train-size = 4096")
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
            "chains = [[\"teacher\"]]",
        )
        .replace("seed = [0, 1]", "seed = [0]");
    let ws = Workspace::new(&text);
    let tb = ws.dir.path().join("tb");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("kdgrid"))
        .arg("--results")
        .arg(ws.results())
        .args(["run", "--tensorboard"])
        .arg(&tb)
        .arg(ws.manifest())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap());
    for line in lines.lines() {
        if line.unwrap().contains("epoch 3/8") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Written while it trained: the killed run's file already holds its first epochs.
    let live = event_files(&tb);
    let (_, bytes) = live
        .iter()
        .find(|(p, _)| p.to_string_lossy().contains("teacher/seed=0"))
        .expect("the stage's event file exists before the stage ends");
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"accuracy/test"), "no epoch written while training");
    assert!(!has(b"final/test_accuracy"), "the stage had not ended");
    let err = stderr(
        &ws.kdgrid(&["run", "--tensorboard", tb.to_str().unwrap()])
            .success(),
    );
    assert!(err.contains("resumed from its epoch-"), "{err}");
    if let Some(python) = viewers_python() {
        // Every epoch's scalar once, at its step (the checker fails on a repeated step).
        tensorboard_agrees(&python, &tb, &ws, 1);
    }
}

#[test]
fn a_tensorboard_folder_that_cannot_be_written_warns_and_the_run_goes_on() {
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    let blocked = ws.dir.path().join("a-file");
    std::fs::write(&blocked, "not a folder").unwrap();
    let tb = blocked.join("tb");
    let run = ws
        .kdgrid(&["run", "--quiet", "--tensorboard", tb.to_str().unwrap()])
        .success();
    let err = stderr(&run);
    assert!(
        err.contains("warning: cannot write TensorBoard file") && err.contains("a-file"),
        "{err}"
    );
    assert!(ws.results().join("tiny/runs.csv").exists());
}

/// A `mlflow server` on a free port of 127.0.0.1 with a scratch SQLite store, stopped on drop.
struct MlflowServer {
    child: std::process::Child,
    uri: String,
    _dir: tempfile::TempDir,
}

impl MlflowServer {
    fn start(python: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mlflow = Path::new(python).with_file_name("mlflow");
        let program = if mlflow.exists() {
            mlflow.into_os_string()
        } else {
            "mlflow".into()
        };
        let child = Command::new(program)
            .args(["server", "--host", "127.0.0.1", "--workers", "1", "--port"])
            .arg(port.to_string())
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .arg("--default-artifact-root")
            .arg(dir.path().join("artifacts"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: `mlflow server` starts uvicorn and job consumers that
            // outlive it unless the whole group is stopped.
            .process_group(0)
            .spawn()
            .expect("mlflow server starts");
        let uri = format!("http://127.0.0.1:{port}");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed().as_secs() < 300,
                "mlflow server did not listen within 5 minutes"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        Self {
            child,
            uri,
            _dir: dir,
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // SAFETY: a signal to the process group this test started (its leader's pid).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
fn mlflow_export_twice_gives_one_run_per_stage_equal_to_the_tables() {
    let Some(python) = viewers_python() else {
        return;
    };
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let server = MlflowServer::start(&python);
    let first = stdout(&ws.kdgrid(&["export", "--mlflow", &server.uri]).success());
    assert!(
        first.contains("10 runs created, 0 updated, 0 unchanged"),
        "{first}"
    );
    let second = stdout(&ws.kdgrid(&["export", "--mlflow", &server.uri]).success());
    assert!(
        second.contains("0 runs created, 0 updated, 10 unchanged"),
        "{second}"
    );
    mlflow_agrees(&python, &server.uri, &ws);
}

#[test]
fn an_mlflow_server_that_is_down_fails_the_export_naming_it_and_leaves_the_tables() {
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = std::fs::read(ws.results().join("tiny/runs.csv")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("http://127.0.0.1:{port}");
    let err = stderr(&ws.kdgrid(&["export", "--mlflow", &uri]).code(1));
    assert!(err.contains(&uri), "{err}");
    assert_eq!(
        std::fs::read(ws.results().join("tiny/runs.csv")).unwrap(),
        runs
    );
}

#[test]
fn the_manifests_tracking_table_names_the_folder_and_bad_addresses_are_located() {
    let one_seed = TINY.replace("seed = [0, 1]", "seed = [0]");
    let ws = Workspace::new(&format!("{one_seed}\n[tracking]\ntensorboard = \"tb\"\n"));
    let run = stdout(&ws.kdgrid(&["run", "--quiet"]).success());
    // Relative to the manifest, like the dataset's path.
    let folder = ws.dir.path().join("tb/tiny");
    assert!(run.contains(&folder.display().to_string()), "{run}");
    assert_eq!(event_files(&folder).len(), 6, "5 stages and the experiment");
    // Nowhere to export to: the command says how to name one.
    let bare = Workspace::new(&one_seed);
    bare.kdgrid(&["run", "--quiet"]).success();
    let err = stderr(&bare.kdgrid(&["export"]).code(2));
    assert!(
        err.contains("nowhere to export") && err.contains("[tracking]"),
        "{err}"
    );

    let bad = Workspace::new(&format!(
        "{one_seed}\n[tracking]\nmlflow = \"localhost:5000\"\n"
    ));
    let err = stderr(&bad.kdgrid(&["validate"]).code(2));
    assert!(
        err.contains("is not an http(s) address") && err.contains("m.toml:"),
        "{err}"
    );
}

#[test]
fn shards_training_into_one_store_each_write_their_stages_runs() {
    let ws = Workspace::new(TINY);
    let tb = ws.dir.path().join("tb");
    let shard = |m: usize| {
        Command::new(assert_cmd::cargo::cargo_bin("kdgrid"))
            .arg("--results")
            .arg(ws.results())
            .args([
                "run",
                "--quiet",
                "--shard",
                &format!("{m}/2"),
                "--tensorboard",
            ])
            .arg(&tb)
            .arg(ws.manifest())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Side by side: reading the store for TensorBoard must not lock out the other shard.
    let shards = [shard(0), shard(1)];
    for child in shards {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("warning"), "{err}");
    }
    // 10 stages and the study's HParams experiment.
    assert_eq!(event_files(&tb).len(), 11);
    if let Some(python) = viewers_python() {
        tensorboard_agrees(&python, &tb, &ws, 10);
    }
}

#[test]
fn the_distillation_term_is_the_whole_train_loss_at_alpha_one_and_part_of_it_below() {
    let one_seed = TINY.replace("seed = [0, 1]", "seed = [0]");
    let ws = Workspace::new(&one_seed.replace("alpha = [0.5]", "alpha = [1.0, 0.5]"));
    ws.kdgrid(&["run", "--quiet"]).success();
    let epochs = ws.parquet("tiny", "epochs.parquet");
    let (alpha, train, kd) = (
        crate::support::floats(&epochs, "alpha"),
        crate::support::floats(&epochs, "train_loss"),
        crate::support::floats(&epochs, "kd_loss"),
    );
    let mut checked = [0, 0, 0];
    for ((a, t), k) in alpha.iter().zip(&train).zip(&kd) {
        if a.is_nan() {
            // Trained on labels only: no soft-target term.
            assert!(k.is_nan(), "a no-KD stage has kd_loss {k}");
            checked[0] += 1;
        } else if *a == 1.0 {
            // alpha * T^2 * KL + (1 - alpha) * CE with alpha = 1 is the soft term alone.
            assert_eq!(k, t, "alpha = 1: the train loss is the soft-target term");
            checked[1] += 1;
        } else {
            assert!(
                *k > 0.0 && k < t,
                "alpha = 0.5: 0 < kd_loss {k} < train_loss {t}"
            );
            checked[2] += 1;
        }
    }
    assert!(checked.iter().all(|&n| n > 0), "{checked:?}");
}

#[test]
fn mlflow_export_updates_the_runs_of_stages_retrained_after_a_failure() {
    let Some(python) = viewers_python() else {
        return;
    };
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    // The assistant fails: it and the student below it are recorded failed and skipped.
    ws.kdgrid_env(&["run", "--quiet"], &[("KDGRID_FAULT", "panic:assistant")])
        .success();
    let server = MlflowServer::start(&python);
    let first = stdout(&ws.kdgrid(&["export", "--mlflow", &server.uri]).success());
    assert!(
        first.contains("4 runs created, 0 updated, 0 unchanged"),
        "{first}"
    );
    // Retrained: the failed run gets its epochs, final numbers and FINISHED; the skipped
    // student gets a run of its own.
    ws.kdgrid(&["run", "--quiet", "--retry-failed"]).success();
    let second = stdout(&ws.kdgrid(&["export", "--mlflow", &server.uri]).success());
    assert!(
        second.contains("1 runs created, 1 updated, 3 unchanged"),
        "{second}"
    );
    mlflow_agrees(&python, &server.uri, &ws);
}
