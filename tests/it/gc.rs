//! `kdgrid gc`: removes only stage folders no manifest references, under any compute setting
//! the store holds, and nothing under a running sweep or next to an invalid manifest.

use crate::support::*;
use assert_cmd::Command;
use std::path::Path;

/// `kdgrid --results <ws>/results <args>` run in the workspace, whose manifests are in
/// `experiments/`.
fn kdgrid(ws: &Workspace, args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("kdgrid")
        .unwrap()
        .current_dir(ws.dir.path())
        .arg("--results")
        .arg(ws.results())
        .args(args)
        .env("NO_COLOR", "1")
        .assert()
}

fn stage_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("stages"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .count()
}

#[test]
fn gc_removes_the_stages_an_edited_manifest_left_behind_and_keeps_the_rest() {
    let ws = Workspace::new("");
    let experiments = ws.dir.path().join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let manifest = experiments.join("tiny.toml");
    let small = TINY.replace("seed = [0, 1]", "seed = [0]");
    std::fs::write(&manifest, &small).unwrap();
    let m = manifest.to_str().unwrap();
    kdgrid(&ws, &["run", "--quiet", m]).success();
    // Another experiment, whose manifest is gone.
    let orphan = ws.dir.path().join("orphan.toml");
    std::fs::write(
        &orphan,
        small.replace("name = \"tiny\"", "name = \"orphan\""),
    )
    .unwrap();
    kdgrid(&ws, &["run", "--quiet", orphan.to_str().unwrap()]).success();
    // Edit the manifest: every stage gets a new id.
    std::fs::write(&manifest, small.replace("epochs = 4", "epochs = 3")).unwrap();
    kdgrid(&ws, &["run", "--quiet", m]).success();
    let tiny = ws.results().join("tiny");
    assert_eq!(stage_count(&tiny), 10);

    let dry = stdout(&kdgrid(&ws, &["gc", "--dry-run"]).success());
    assert!(
        dry.contains("10 stage folders") && dry.contains("would be removed"),
        "{dry}"
    );
    assert!(
        dry.contains("no manifest under experiments writes `orphan`"),
        "{dry}"
    );
    assert!(
        dry.contains("not a stage of its manifest any more"),
        "{dry}"
    );
    assert_eq!(stage_count(&tiny), 10, "a dry run removes nothing");

    // An invalid manifest under experiments/ stops gc before anything is removed.
    std::fs::write(experiments.join("broken.toml"), "name = [").unwrap();
    let refused = kdgrid(&ws, &["gc"]).code(2);
    assert!(
        stderr(&refused).contains("broken.toml"),
        "{}",
        stderr(&refused)
    );
    std::fs::remove_file(experiments.join("broken.toml")).unwrap();
    assert_eq!(stage_count(&tiny), 10);

    let done = stdout(&kdgrid(&ws, &["gc"]).success());
    assert!(
        done.contains("10 stage folders") && done.contains("removed"),
        "{done}"
    );
    assert_eq!(stage_count(&tiny), 5);
    assert_eq!(stage_count(&ws.results().join("orphan")), 0);
    // What is left is the current study, whole.
    let again = stdout(&kdgrid(&ws, &["run", "--quiet", m]).success());
    assert!(again.contains("0 trained, 5 reused"), "{again}");
    let none = stdout(&kdgrid(&ws, &["gc", "--dry-run"]).success());
    assert!(none.contains("every stage folder"), "{none}");
}

#[cfg(feature = "tch")]
#[test]
fn gc_keeps_stages_trained_with_other_compute_settings() {
    let ws = Workspace::new("");
    let experiments = ws.dir.path().join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let manifest = experiments.join("tiny.toml");
    std::fs::write(
        &manifest,
        TINY.replace("seed = [0, 1]", "seed = [0]")
            .replace("epochs = 4", "epochs = 1"),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    kdgrid(&ws, &["run", "--quiet", m]).success();
    kdgrid(
        &ws,
        &["run", "--quiet", "--backend", "tch", "--threads", "1", m],
    )
    .success();
    let tiny = ws.results().join("tiny");
    assert_eq!(
        stage_count(&tiny),
        10,
        "tch on 1 thread has its own stage ids"
    );
    let out = stdout(&kdgrid(&ws, &["gc"]).success());
    assert!(out.contains("every stage folder"), "{out}");
    assert_eq!(stage_count(&tiny), 10);
}

/// A workspace whose `experiments/tiny.toml` (TINY, one seed) was run, and that manifest.
fn finished_study() -> (Workspace, std::path::PathBuf) {
    let ws = Workspace::new("");
    let experiments = ws.dir.path().join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let manifest = experiments.join("tiny.toml");
    std::fs::write(&manifest, TINY.replace("seed = [0, 1]", "seed = [0]")).unwrap();
    kdgrid(&ws, &["run", "--quiet", manifest.to_str().unwrap()]).success();
    (ws, manifest)
}

/// A finished stage folder of `stages`.
fn a_finished_stage(stages: &Path) -> std::path::PathBuf {
    std::fs::read_dir(stages)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("record.json").exists())
        .unwrap()
}

/// What killed tasks leave (temporary files, claims, announcements, a finished stage's
/// checkpoints and weights its record does not name) is removed; records, weights, an
/// unfinished stage's checkpoints and files kept aside as corrupt stay.
#[test]
fn gc_removes_what_killed_tasks_left() {
    let (ws, manifest) = finished_study();
    let m = manifest.to_str().unwrap();
    let root = ws.results().join("tiny");
    let stages = root.join("stages");
    let done = a_finished_stage(&stages);
    let unfinished = stages.join("00000000000000ff");
    let write = |p: &Path| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"left behind").unwrap();
    };
    let gone = [
        done.join(".model1234.tmp"),
        done.join("claim.3"),
        done.join("checkpoints/epoch-1/model.bpk"),
        done.join(format!("model-{}.bpk", "0".repeat(64))),
        stages.join(".claims-1.tmp"),
        root.join("tasks/0123456789abcdef.json"),
        unfinished.join("claim.1"),
        unfinished.join("checkpoints/.tmp-epoch-2-x/model.bpk"),
    ];
    let kept = [
        unfinished.join("checkpoints/epoch-1/model.bpk"),
        done.join("record.json.corrupt-0000000000000001"),
    ];
    for p in gone.iter().chain(&kept) {
        write(p);
    }
    let out = stdout(&kdgrid(&ws, &["gc", "--dry-run"]).success());
    assert!(
        out.contains("tiny: 8 files left by killed tasks") && out.contains("would be removed"),
        "{out}"
    );
    assert!(gone.iter().all(|p| p.exists()), "a dry run removes nothing");
    let out = stdout(&kdgrid(&ws, &["gc"]).success());
    assert!(out.contains("removed"), "{out}");
    for p in &gone {
        assert!(!p.exists(), "{} is left", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} was removed", p.display());
    }
    assert!(!done.join("checkpoints").exists());
    let out = stdout(&kdgrid(&ws, &["run", m]).success());
    assert!(out.contains("0 trained"), "{out}");
}

/// A commit sealed by a task that died before linking its record is finished by gc (the record
/// is whole), not removed with the other leftovers.
#[test]
fn gc_finishes_a_sealed_commit_of_a_dead_task() {
    let (ws, manifest) = finished_study();
    let m = manifest.to_str().unwrap();
    let stages = ws.results().join("tiny/stages");
    let done = a_finished_stage(&stages);
    // As a task leaves it when killed between its seal and its record's link.
    std::fs::rename(done.join("record.json"), done.join(".record-dead.tmp")).unwrap();
    std::fs::write(
        done.join("claim.1"),
        "committing .record-dead.tmp by pid 1 on elsewhere [boot x ns 1] #1\n",
    )
    .unwrap();
    kdgrid(&ws, &["gc"]).success();
    assert!(done.join("record.json").exists());
    assert!(
        !done.join(".record-dead.tmp").exists(),
        "the temporary name is gone"
    );
    let out = stdout(&kdgrid(&ws, &["run", m]).success());
    assert!(out.contains("0 trained"), "{out}");
}
