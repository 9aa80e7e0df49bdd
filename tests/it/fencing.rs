//! Tasks sharing a store, paused at chosen instructions (`KDGRID_FAULT=pause:<point>` stops a
//! process there with SIGSTOP, as swap, a stalled network file system or a suspended Slurm job
//! would): each interleaving that once trained a stage twice, overwrote a commit or stopped the
//! other tasks is replayed here, deterministically (docs/cluster.md, "Claims").

use crate::support::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TINY with one seed, and epochs long enough that a stage is still training when looked at.
fn study(epochs: usize) -> Workspace {
    Workspace::new(
        &TINY
            .replace("seed = [0, 1]", "seed = [0]")
            .replace("epochs = 4", &format!("epochs = {epochs}")),
    )
}

/// `kdgrid --results <results> <args> <manifest>` started in the background with `env`.
fn spawn(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("kdgrid"))
        .arg("--results")
        .arg(ws.results())
        .args(args)
        .arg(ws.manifest())
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `cond` holds (at most a minute).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `run-stage --stage id` with `STALE` and a pause injected at `point`, once it has paused there.
fn paused_at(ws: &Workspace, id: &str, point: &str) -> Child {
    let fault = format!("pause:{point}");
    let child = spawn(
        ws,
        &["run-stage", "--stage", id],
        &[STALE, ("KDGRID_FAULT", &fault)],
    );
    wait_for(&format!("the task to pause at `{point}`"), || {
        stopped(child.id())
    });
    child
}

/// Whether process `pid` is stopped (state `T` in /proc).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(") ")?.1.starts_with('T')))
        .unwrap_or(false)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling a child process of this test.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// The child's exit and its stdout + stderr.
fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), flat(&text))
}

/// The first stage of the plan (a model trained from labels alone) and its folder.
fn first_stage(ws: &Workspace) -> (String, PathBuf) {
    let (_, _, id) = plan_stages(ws, &[]).into_iter().next().unwrap();
    let dir = ws.results().join("tiny/stages").join(&id);
    (id, dir)
}

const STALE: (&str, &str) = ("KDGRID_CLAIM_STALE", "1");

/// Case 1: two tasks see one stale claim; the one that pauses before taking it over must not
/// train the stage once it resumes (before generations, its rename replaced the other's claim
/// and both trained).
#[test]
fn of_two_takers_of_one_stale_claim_one_trains() {
    let ws = study(30);
    let (id, dir) = first_stage(&ws);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("claim.1"),
        "pid 4242 on node-17 [boot b ns 1] #1\n",
    )
    .unwrap();
    let late = paused_at(&ws, &id, "claim-takeover");
    let first = spawn(&ws, &["run-stage", "--stage", &id], &[STALE]);
    wait_for("the first taker to hold generation 2", || {
        dir.join("claim.2").exists()
    });
    // The late taker resumes while the first one trains.
    signal(&late, libc::SIGCONT);
    let (ok, out) = finish(first);
    assert!(ok, "{out}");
    let (ok, late_out) = finish(late);
    assert!(ok, "{late_out}");
    let h = history(&dir);
    assert_eq!(h.matches("start").count(), 1, "{h}");
    assert_eq!(h.matches("commit by").count(), 1, "{h}");
    assert!(late_out.contains("already done"), "{late_out}");
}

/// Case 2: a task that checked its claim and then paused past the stale time, right before
/// putting its weights in place, resumes after another task took the stage over and committed
/// it: the commit stands (before, its rename replaced the committed weights).
#[test]
fn a_task_paused_inside_its_commit_leaves_the_other_tasks_commit_as_it_was() {
    let ws = study(4);
    let (id, dir) = first_stage(&ws);
    let paused = paused_at(&ws, &id, "commit");
    let other = spawn(&ws, &["run-stage", "--stage", &id], &[STALE]);
    let (ok, out) = finish(other);
    assert!(ok && out.contains("took over the stale claim"), "{out}");
    let record = std::fs::read(dir.join("record.json")).unwrap();
    signal(&paused, libc::SIGCONT);
    let (ok, paused_out) = finish(paused);
    assert!(ok, "{paused_out}");
    assert_eq!(std::fs::read(dir.join("record.json")).unwrap(), record);
    let status = stdout(&ws.kdgrid(&["status"]).success());
    let line = status.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(line.contains("done"), "{status}");
    let h = history(&dir);
    assert_eq!(h.matches("commit by").count(), 1, "{h}");
    // The paused task finds a newer claim generation than its own and commits nothing.
    assert_eq!(h.matches("lost the claim to pid ").count(), 1, "{h}");
    // The committed weights are the other task's, under both names; none of the paused one's.
    let sealed: serde_json::Value = serde_json::from_slice(&record).unwrap();
    let sha = sealed["record"]["model_sha256"].as_str().unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("model") && n.ends_with(".bpk"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&format!("model-{sha}.bpk")), "{names:?}");
}

/// A holder paused after an epoch, taken over meanwhile, stops at its next check instead of
/// training the stage to its end a second time.
#[test]
fn a_holder_that_lost_its_stage_stops_at_the_next_epoch() {
    let ws = study(6);
    let (id, dir) = first_stage(&ws);
    let paused = paused_at(&ws, &id, "epoch");
    let (ok, out) = finish(spawn(&ws, &["run-stage", "--stage", &id], &[STALE]));
    assert!(ok, "{out}");
    signal(&paused, libc::SIGCONT);
    let (ok, paused_out) = finish(paused);
    assert!(ok, "{paused_out}");
    assert!(
        paused_out.contains("stopped after epoch 1: another task took the stage over"),
        "{paused_out}"
    );
    let h = history(&dir);
    assert_eq!(h.matches("commit by").count(), 1, "{h}");
    assert_eq!(h.matches("lost the claim").count(), 1, "{h}");
}

/// Case 4: the stale time is the store's. A task started with a shorter one does not take over
/// a claim its holder beats to the store's time.
#[test]
fn the_stale_time_is_the_stores_not_the_tasks() {
    let ws = study(4);
    let stages = plan_stages(&ws, &[]);
    // The store is made with the default (120 s) by a first task.
    ws.kdgrid(&["run-stage", "--quiet", "--stage", &stages[0].2])
        .success();
    let claims = std::fs::read_to_string(ws.results().join("tiny/stages/CLAIMS")).unwrap();
    assert!(claims.contains("stale-seconds = 120"), "{claims}");
    // Another machine's claim on a second stage, last touched 3 s ago: live for 120 s.
    let dir = ws.results().join("tiny/stages").join(&stages[1].2);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("claim.1"),
        "pid 4242 on node-17 [boot b ns 1] #1\n",
    )
    .unwrap();
    let eager = spawn(&ws, &["run-stage", "--stage", &stages[1].2], &[STALE]);
    std::thread::sleep(Duration::from_secs(4));
    let took = dir.join("claim.2").exists();
    let mut eager = eager;
    let _ = eager.kill();
    let (_, out) = finish(eager);
    assert!(!took, "a live claim was taken over after 1 s: {out}");
    assert!(
        out.contains("is being trained by pid 4242 on node-17; waiting"),
        "{out}"
    );
}

/// Case 5: a holder whose training is stuck (here: asleep in one thread) while its heartbeat
/// runs stops beating once it made no progress for the stuck time, and its stage is taken over.
#[test]
fn a_holder_stuck_in_training_is_taken_over() {
    let ws = study(4);
    let (id, dir) = first_stage(&ws);
    let times = [STALE, ("KDGRID_CLAIM_STUCK", "1")];
    let stuck = spawn(
        &ws,
        &["run-stage", "--stage", &id],
        &[times[0], times[1], ("KDGRID_FAULT", "stall:epoch")],
    );
    wait_for("the holder to claim the stage", || {
        dir.join("claim.1").exists()
    });
    let started = Instant::now();
    let (ok, out) = finish(spawn(&ws, &["run-stage", "--stage", &id], &times));
    let mut stuck = stuck;
    let _ = stuck.kill();
    let _ = stuck.wait();
    assert!(ok && out.contains("took over the stale claim"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert!(dir.join("record.json").exists());
}

/// Case 6: a shard suspended past the bound while training does not stop the others: they train
/// what they need of its stages, and it goes on with the rest once it resumes.
#[test]
fn a_suspended_shard_delays_the_others_but_stops_none() {
    let ws = Workspace::new(TINY);
    let n = 2;
    let suspended = spawn(
        &ws,
        &["run", "--shard", "0/2"],
        &[STALE, ("KDGRID_FAULT", "pause:epoch")],
    );
    wait_for("shard 0/2 to pause", || stopped(suspended.id()));
    let (ok, out) = finish(spawn(&ws, &["run", "--shard", "1/2"], &[STALE]));
    assert!(ok, "{out}");
    signal(&suspended, libc::SIGCONT);
    let (ok, out) = finish(suspended);
    assert!(ok, "{out}");
    let local = Workspace::new(TINY);
    local.kdgrid(&["run", "--quiet"]).success();
    let diff = assert_cmd::Command::cargo_bin("kdgrid")
        .unwrap()
        .arg("diff")
        .arg(ws.results().join("tiny"))
        .arg(local.results().join("tiny"))
        .assert();
    assert!(diff.get_output().status.success(), "{}", stdout(&diff));
    // Every stage committed once.
    for (_, _, id) in plan_stages(&ws, &[]) {
        let h = history(&ws.results().join("tiny/stages").join(&id));
        assert_eq!(h.matches("commit by").count(), 1, "{id} of {n} shards: {h}");
    }
}

/// A task that sealed its commit (the claim generation after its own says `committing`) and
/// stopped before linking its record: no task can take the stage over any more, and one that
/// finds the seal stale links the record for it; the stopped task, resumed, finds its own
/// record in place. The stage is committed once, by the task that held it.
#[test]
fn a_sealed_commit_is_finished_for_a_stopped_committer() {
    let ws = study(4);
    let (id, dir) = first_stage(&ws);
    let paused = paused_at(&ws, &id, "sealed");
    assert!(!dir.join("record.json").exists());
    let (ok, out) = finish(spawn(&ws, &["run-stage", "--stage", &id], &[STALE]));
    assert!(ok && out.contains("already done"), "{out}");
    assert!(
        dir.join("record.json").exists(),
        "the seal's record was linked"
    );
    signal(&paused, libc::SIGCONT);
    let (ok, paused_out) = finish(paused);
    assert!(ok && paused_out.contains("trained"), "{paused_out}");
    let h = history(&dir);
    assert_eq!(h.matches("commit by").count(), 1, "{h}");
    assert!(
        h.contains("(its sealed record linked by another task)")
            && h.contains("its sealed record found linked by another task by pid"),
        "{h}"
    );
    let status = stdout(&ws.kdgrid(&["status"]).success());
    let line = status.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(line.contains("done"), "{status}");
}

/// A student waiting for a teacher whose commit was sealed and not finished finishes it when
/// the seal goes stale, instead of failing for a missing teacher.
#[test]
fn a_student_finishes_its_teachers_sealed_commit() {
    let ws = study(4);
    let stages = plan_stages(&ws, &[]);
    let id = |of: &str| stages.iter().find(|(c, _, _)| c == of).unwrap().2.clone();
    let (teacher, student) = (id("teacher"), id("teacher > student"));
    let dir = ws.results().join("tiny/stages").join(&teacher);
    let paused = paused_at(&ws, &teacher, "sealed");
    let (ok, out) = finish(spawn(&ws, &["run-stage", "--stage", &student], &[STALE]));
    assert!(
        ok && out.contains(&format!("stage {student}: trained")),
        "{out}"
    );
    assert!(dir.join("record.json").exists());
    signal(&paused, libc::SIGCONT);
    let (ok, paused_out) = finish(paused);
    assert!(ok, "{paused_out}");
    assert_eq!(history(&dir).matches("commit by").count(), 1);
}
