//! Running a study as independent tasks sharing a results folder: `run --shard M/N` processes,
//! `run-stage`, and `slurm submit` against a stand-in `sbatch` (tests/fixtures/fake-slurm) that
//! runs each array task in turn. Every way must end with the tables of one local `kdgrid run`,
//! bit for bit. (`make test-slurm` does the same against a real slurmctld.)

use crate::support::*;
use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn kdgrid_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("kdgrid")
}

/// Asserts that two experiment folders hold the same tables (`kdgrid diff`, tolerance 0).
fn assert_same_tables(a: &Path, b: &Path) {
    let out = Command::new(kdgrid_bin())
        .arg("diff")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// TINY where every teacher diverges: students below them are skipped, in every executor.
fn with_failing_teachers() -> String {
    TINY.replace("[models.teacher]\n", "[models.teacher]\nlr = 1e30\n")
}

/// `kdgrid` with the stand-in `sbatch` first on PATH, logging its calls to `log`.
fn with_fake_slurm(ws: &Workspace, log: &Path, args: &[&str]) -> Command {
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-slurm");
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let mut cmd = Command::cargo_bin("kdgrid").unwrap();
    cmd.current_dir(ws.dir.path())
        .arg("--results")
        .arg(ws.results())
        .args(args)
        .arg(ws.manifest())
        .env("PATH", path)
        .env("FAKE_SLURM_LOG", log)
        .env("NO_COLOR", "1");
    cmd
}

/// Runs `run --shard 0/2` and `1/2` on `ws` at once; each one's output, after asserting both
/// succeeded.
fn two_shards(ws: &Workspace) -> Vec<String> {
    let shards: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|s| {
            std::process::Command::new(kdgrid_bin())
                .arg("--results")
                .arg(ws.results())
                .args(["run", "--quiet", "--shard", s])
                .arg(ws.manifest())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    shards
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{text}");
            text
        })
        .collect()
}

#[test]
fn two_shards_at_once_end_with_the_tables_of_one_run() {
    for text in [TINY.to_string(), with_failing_teachers()] {
        let local = Workspace::new(&text);
        local.kdgrid(&["run", "--quiet"]).success();
        let ws = Workspace::new(&text);
        let outputs = two_shards(&ws);
        // Each shard trains its own stages: together all 10, none twice.
        let trained: usize = outputs
            .iter()
            .map(|o| {
                let line = o.lines().find(|l| l.contains(" trained, ")).unwrap();
                line.split(' ').next().unwrap().parse::<usize>().unwrap()
            })
            .sum();
        let failing = text != TINY;
        assert_eq!(trained, if failing { 2 } else { 10 }, "{outputs:?}");
        assert_same_tables(&local.results().join("tiny"), &ws.results().join("tiny"));
        let runs = ws.parquet("tiny", "runs.parquet");
        let skipped = strings(&runs, "status")
            .iter()
            .filter(|s| *s == "skipped")
            .count();
        assert_eq!(skipped, if failing { 6 } else { 0 }, "{runs}");
    }
}

#[test]
fn run_stage_trains_one_stage_and_refuses_what_it_cannot_train() {
    let ws = Workspace::new(TINY);
    let (teacher, student) = (
        stage_id(&ws, &[], "teacher", 0),
        stage_id(&ws, &[], "teacher > student", 0),
    );

    let unknown = ws
        .kdgrid(&["run-stage", "--stage", "0123456789abcdef"])
        .code(2);
    assert!(
        stderr(&unknown).contains("not a stage of this plan"),
        "{}",
        stderr(&unknown)
    );

    // A student before its teacher: named after twice the stale time, nothing written for it.
    let early = ws
        .kdgrid_env(
            &["run-stage", "--quiet", "--stage", &student],
            &[("KDGRID_CLAIM_STALE", "0.5")],
        )
        .code(1);
    let err = stderr(&early);
    assert!(
        err.contains(&teacher) && err.contains("no task is training it"),
        "{err}"
    );
    assert!(
        !ws.results()
            .join("tiny/stages")
            .join(&student)
            .join("record.json")
            .exists()
    );

    let out = stdout(
        &ws.kdgrid(&["run-stage", "--quiet", "--stage", &teacher])
            .success(),
    );
    assert!(out.contains("trained"), "{out}");
    let out = stdout(
        &ws.kdgrid(&["run-stage", "--quiet", "--stage", &student])
            .success(),
    );
    assert!(out.contains("trained"), "{out}");
    let again = stdout(
        &ws.kdgrid(&["run-stage", "--quiet", "--stage", &student])
            .success(),
    );
    assert!(again.contains("already done"), "{again}");
    // The local runner reuses what the tasks trained.
    let run = stdout(&ws.kdgrid(&["run", "--quiet"]).success());
    assert!(run.contains("8 trained, 2 reused"), "{run}");
}

#[test]
fn a_claim_left_by_a_dead_task_is_taken_over_and_a_live_one_is_shown() {
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    let ids: Vec<String> = plan_stages(&ws, &[])
        .into_iter()
        .map(|(_, _, id)| id)
        .collect();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let ns = ns.to_string_lossy();
    let ns = ns.trim_start_matches("pid:[").trim_end_matches(']');
    let stages = ws.results().join("tiny/stages");
    // A dead pid of this kernel and pid namespace: stale at once.
    std::fs::create_dir_all(stages.join(&ids[0])).unwrap();
    std::fs::write(
        stages.join(&ids[0]).join("claim.1"),
        format!(
            "pid 999999999 on {} [boot {} ns {ns}] #1",
            host.trim(),
            boot.trim()
        ),
    )
    .unwrap();
    // Another machine's task, heard from just now: live.
    std::fs::create_dir_all(stages.join(&ids[1])).unwrap();
    std::fs::write(
        stages.join(&ids[1]).join("claim.1"),
        "pid 4242 on node-17 [boot b ns 1] #2",
    )
    .unwrap();
    let status = stdout(&ws.kdgrid(&["status"]).success());
    let line = |id: &str| {
        status
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_string()
    };
    assert!(
        line(&ids[1]).contains("running") && line(&ids[1]).contains("node-17"),
        "{status}"
    );
    assert!(line(&ids[0]).contains("pending"), "{status}");
    // The first task to open the store sets its stale time for every later one: 1 s here.
    let out = stdout(
        &ws.kdgrid_env(
            &["run-stage", "--quiet", "--stage", &ids[0]],
            &[("KDGRID_CLAIM_STALE", "1")],
        )
        .success(),
    );
    assert!(out.contains("trained"), "{out}");
    // Taken over as generation 2, its commit sealed as 3, released as 4.
    let claim = |g: u32| std::fs::read_to_string(stages.join(&ids[0]).join(format!("claim.{g}")));
    assert!(claim(3).unwrap().starts_with("committing .record"));
    assert!(claim(4).unwrap().starts_with("released by pid "));
    // node-17 is never heard from again: once this reader has watched its claim unchanged for
    // the stale time (1 s here), the claim is taken over and the stage trained.
    let out = stderr(
        &ws.kdgrid_env(&["run", "--shard", "0/1"], &[("KDGRID_CLAIM_STALE", "1")])
            .success(),
    );
    assert!(
        out.contains("took over the stale claim of pid 4242 on node-17"),
        "{out}"
    );
    let history = history(&stages.join(&ids[1]));
    let lines: Vec<&str> = history.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("start, claim 2 (took over from pid 4242 on node-17) by pid ")
            && lines[1].starts_with("commit by pid "),
        "{history}"
    );
}

/// A shard's stages that wait for a teacher of another shard, as (stage, teacher) ids, for the
/// first shard count from 2 up that has one.
fn cross_shard_student(ws: &Workspace) -> (usize, String, String) {
    let stages = plan_stages(ws, &[]);
    let shard = |id: &str, n: u64| u64::from_str_radix(id, 16).unwrap() % n;
    for n in 2..8u64 {
        for (chain, seed, id) in &stages {
            let Some((parent, _)) = chain.rsplit_once(" > ") else {
                continue;
            };
            let teacher = &stages
                .iter()
                .find(|(c, s, _)| c == parent && s == seed)
                .unwrap()
                .2;
            if shard(id, n) != shard(teacher, n) {
                return (n as usize, id.clone(), teacher.clone());
            }
        }
    }
    panic!("every student shares its teacher's shard: {stages:?}")
}

#[test]
fn a_shard_trains_the_teacher_of_a_missing_shard_after_the_bounded_wait() {
    let ws = Workspace::new(TINY);
    let (n, student, teacher) = cross_shard_student(&ws);
    let m = u64::from_str_radix(&student, 16).unwrap() % n as u64;
    let k = u64::from_str_radix(&teacher, 16).unwrap() % n as u64;
    let started = std::time::Instant::now();
    let out = ws
        .kdgrid_env(
            &["run", "--shard", &format!("{m}/{n}")],
            &[("KDGRID_CLAIM_STALE", "1")],
        )
        .success();
    let err = flat(&stderr(&out));
    assert!(
        err.contains(&format!("stage `{student}` waited"))
            && err.contains(&format!("teacher `{teacher}`"))
            && err.contains(&format!(
                "shard {k}/{n} is not running: training the teacher here"
            )),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    let stages = ws.results().join("tiny/stages");
    for id in [&student, &teacher] {
        assert!(stages.join(id).join("record.json").exists(), "{id}");
    }
    // Every shard afterwards finds the adopted teacher done, and the tables are a local run's.
    for s in 0..n {
        ws.kdgrid_env(
            &["run", "--quiet", "--shard", &format!("{s}/{n}")],
            &[("KDGRID_CLAIM_STALE", "1")],
        )
        .success();
    }
    let history = history(&stages.join(&teacher));
    assert_eq!(history.matches("commit by").count(), 1, "{history}");
    // A shard over the finished plan leaves the tables the last one wrote as they are.
    let report = ws.results().join("tiny/report.md");
    let written = std::fs::metadata(&report).unwrap().modified().unwrap();
    let again = stdout(&ws.kdgrid(&["run", "--shard", "0/2"]).success());
    assert!(again.contains("were written from these records"), "{again}");
    assert_eq!(
        std::fs::metadata(&report).unwrap().modified().unwrap(),
        written
    );
    let local = Workspace::new(TINY);
    local.kdgrid(&["run", "--quiet"]).success();
    assert_same_tables(&ws.results().join("tiny"), &local.results().join("tiny"));
}

/// Starts `run --shard 0/2` of `first` (with `first_args`), then `run --shard 1/2` of `second`
/// (with `second_args`) on the same results folder: the second must stop within seconds with
/// `expected` in its message.
fn assert_plans_differ(
    first: &Workspace,
    first_args: &[&str],
    second: &Workspace,
    second_args: &[&str],
    expected: &str,
) {
    let running = std::process::Command::new(kdgrid_bin())
        .arg("--results")
        .arg(first.results())
        .args(["run", "--quiet", "--shard", "0/2"])
        .args(first_args)
        .arg(first.manifest())
        .env("KDGRID_CLAIM_STALE", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tasks = first.results().join("tiny/tasks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_dir(&tasks).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            std::time::Instant::now() < deadline,
            "shard 0/2 never announced itself"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = std::time::Instant::now();
    let out = Command::cargo_bin("kdgrid")
        .unwrap()
        .arg("--results")
        .arg(first.results())
        .args(["run", "--quiet", "--shard", "1/2"])
        .args(second_args)
        .arg(second.manifest())
        .env("KDGRID_CLAIM_STALE", "2")
        .env("NO_COLOR", "1")
        .assert()
        .code(1);
    let err = flat(&stderr(&out));
    assert!(
        err.contains("computed another plan than the running shard 0/2") && err.contains(expected),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    // The newcomer was refused; the running shard (still training: see `busy`) goes on, its
    // peer's other plan notwithstanding.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut running = running;
    let exited = running.try_wait().unwrap();
    let _ = running.kill();
    let out = running.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        exited.is_none() && !err.contains("another plan"),
        "{exited:?}: {err}"
    );
}

/// TINY with stages long enough that the first shard is still training when the second
/// starts, however loaded the machine: a shard that has finished has no plan to compare with.
fn busy() -> String {
    TINY.replace("epochs = 4", "epochs = 40")
}

#[test]
fn a_shard_that_computed_another_plan_stops_within_seconds_naming_the_setting() {
    let ws = Workspace::new(&busy());
    // Another dataset under the same study name, in the same results folder: other stage ids.
    let other = Workspace::new(&busy().replace("seed = 11", "seed = 12"));
    assert_plans_differ(&ws, &[], &other, &[], "`dataset`: sha256 ");
}

/// LibTorch CPU stage ids name the thread count: a shard started with other `--threads`.
#[cfg(feature = "tch")]
#[test]
fn a_libtorch_shard_with_other_threads_stops_naming_the_thread_count() {
    let ws = Workspace::new(&busy());
    assert_plans_differ(
        &ws,
        &["--backend", "tch", "--threads", "1"],
        &ws,
        &["--backend", "tch", "--threads", "2"],
        "`threads`: 2 here, 1 there",
    );
}

#[test]
fn slurm_submit_runs_the_levels_in_dag_order_and_ends_with_the_local_tables() {
    let local = Workspace::new(TINY);
    local.kdgrid(&["run", "--quiet"]).success();
    let ws = Workspace::new(TINY);
    let log = ws.dir.path().join("sbatch.log");
    let out = stdout(
        &with_fake_slurm(
            &ws,
            &log,
            &[
                "slurm",
                "submit",
                "--cpus-per-task",
                "1",
                "--partition",
                "cpu",
            ],
        )
        .assert()
        .success(),
    );
    assert!(
        out.contains("level 2: job 1003 (2 tasks)") && out.contains("report: job 1004"),
        "{out}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let dir = ws.results().join("tiny/slurm/1");
    let expected = format!(
        "sbatch --parsable {d}/level-0.sh\nsbatch --parsable --dependency=afterany:1001 {d}/level-1.sh\n\
         sbatch --parsable --dependency=afterany:1002 {d}/level-2.sh\nsbatch --parsable --dependency=afterany:1003 {d}/report.sh\n",
        d = dir.display()
    );
    assert_eq!(calls, expected, "every task succeeded and the jobs chain");
    let level0 = std::fs::read_to_string(dir.join("level-0.sh")).unwrap();
    assert!(
        level0.contains("#SBATCH --array=0-3") && level0.contains("#SBATCH --partition=cpu"),
        "{level0}"
    );
    // The tables the report job wrote equal a local run's (threads are recorded: 1 each).
    let runs = ws.parquet("tiny", "runs.parquet");
    assert_eq!(floats(&runs, "threads"), vec![1.0; 10]);
    let local_one = Workspace::new(TINY);
    local_one
        .kdgrid(&["run", "--quiet", "--threads", "1"])
        .success();
    assert_same_tables(
        &local_one.results().join("tiny"),
        &ws.results().join("tiny"),
    );
    // Each task logged under its stage folder; status joins the jobs.
    let logs = walkdir::WalkDir::new(ws.results().join("tiny/stages"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-100"))
        .count();
    assert_eq!(logs, 10);
    // Nothing left: a second submit submits nothing.
    let again = stdout(
        &with_fake_slurm(&ws, &log, &["slurm", "submit"])
            .assert()
            .success(),
    );
    assert!(again.contains("nothing to submit"), "{again}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), expected);
    drop(local);
}

#[test]
fn slurm_submit_leaves_out_done_stages_and_names_a_refusing_sbatch() {
    let ws = Workspace::new(TINY);
    let log = ws.dir.path().join("sbatch.log");
    // Train the seed-0 teacher first: its students move up to level 0.
    let teacher = stage_id(&ws, &["--threads", "1"], "teacher", 0);
    ws.kdgrid(&[
        "run-stage",
        "--quiet",
        "--threads",
        "1",
        "--stage",
        &teacher,
    ])
    .success();
    let dry = stdout(
        &with_fake_slurm(&ws, &log, &["slurm", "submit", "--dry-run"])
            .assert()
            .success(),
    );
    assert!(
        dry.contains("1 done, 0 skipped below a failed teacher, 9 to submit"),
        "{dry}"
    );
    let level0: Vec<&str> = dry
        .split("level 1:")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  "))
        .collect();
    assert_eq!(
        level0.len(),
        5,
        "3 roots left + 2 students of the done teacher: {dry}"
    );
    assert!(!log.exists(), "a dry run submits nothing");
    assert!(
        !ws.results().join("tiny/slurm/1").exists(),
        "a dry run writes nothing"
    );

    let refused = with_fake_slurm(&ws, &log, &["slurm", "submit"])
        .env("FAKE_SLURM_FAIL", "2")
        .assert()
        .code(1);
    let err = stderr(&refused);
    assert!(
        err.contains("level-1.sh") && err.contains("Invalid partition"),
        "{err}"
    );
    let jobs = std::fs::read_to_string(ws.results().join("tiny/slurm/1/jobs.json")).unwrap();
    assert!(
        jobs.contains("\"job\": \"1001\""),
        "what was submitted is on record: {jobs}"
    );
}

#[test]
fn slurm_dry_run_of_the_takd_study_puts_each_stage_after_its_teacher() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/takd-cifar10.toml");
    let results = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("kdgrid")
        .unwrap()
        .arg("--results")
        .arg(results.path())
        .args(["slurm", "submit", "--dry-run"])
        .arg(&manifest)
        .assert()
        .success();
    let text = stdout(&out);
    // The chain of each line, by level.
    let mut level = 0;
    let mut levels: Vec<(usize, String)> = Vec::new();
    // The structure comes before the scripts (`--- path ---`).
    for line in text.lines().take_while(|l| !l.starts_with("--- ")) {
        if let Some(rest) = line.strip_prefix("level ") {
            level = rest.split(':').next().unwrap().parse().unwrap();
        } else if line.starts_with("  ") && line.len() > 20 {
            levels.push((level, line.split("  ").last().unwrap().trim().to_string()));
        }
    }
    assert!(!levels.is_empty(), "{text}");
    for (level, chain) in &levels {
        let depth = chain.split(" > ").count() - 1;
        assert_eq!(*level, depth, "`{chain}` in level {level}:\n{text}");
    }
    assert!(levels.iter().any(|(l, c)| *l == 0 && c == "t10"), "{text}");
    assert!(
        levels.iter().any(|(l, c)| *l == 1 && c == "t10 > ta4"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("provisional"),
        "no CIFAR-10 here: ids are provisional"
    );
}

#[test]
fn shards_wait_for_an_ensembles_members_and_skip_it_when_one_fails() {
    let plain = crate::imported::ENSEMBLE.replace("COMBINE", "");
    let failing = plain.replace("[models.teacher]\n", "[models.teacher]\nlr = 1e30\n");
    for text in [plain, failing] {
        let local = Workspace::new(&text);
        local.kdgrid(&["run", "--quiet"]).success();
        let ws = Workspace::new(&text);
        two_shards(&ws);
        ws.kdgrid(&["report"]).success();
        assert_same_tables(
            &local.results().join("ensemble"),
            &ws.results().join("ensemble"),
        );
    }
}

#[test]
fn slurm_submit_settles_stages_below_a_failed_teacher_and_pins_the_manifests_threads() {
    // The assistant fails: its students cannot train until it is retried, so a submit after
    // the run has nothing left to do.
    let ws = Workspace::new(TINY);
    let log = ws.dir.path().join("sbatch.log");
    let run = Command::cargo_bin("kdgrid")
        .unwrap()
        .arg("--results")
        .arg(ws.results())
        .args(["run", "--quiet", "--threads", "1"])
        .arg(ws.manifest())
        .env("KDGRID_FAULT", "panic:assistant")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dry = stdout(
        &with_fake_slurm(&ws, &log, &["slurm", "submit", "--dry-run"])
            .assert()
            .success(),
    );
    assert!(
        dry.contains("8 done, 2 skipped below a failed teacher, 0 to submit")
            && dry.contains("nothing to submit"),
        "{dry}"
    );

    // `[compute] threads = 2` is what a local run uses, so the tasks use it too.
    let pinned = Workspace::new(&format!("{TINY}\n[compute]\nthreads = 2\n"));
    let dry = stdout(
        &with_fake_slurm(&pinned, &log, &["slurm", "submit", "--dry-run"])
            .assert()
            .success(),
    );
    assert!(
        dry.contains("--threads 2") && dry.contains("#SBATCH --cpus-per-task=2"),
        "{dry}"
    );
}

/// A store a team shares: every file and folder kdgrid writes (records, weights, claims'
/// leftovers, checkpoints, tables) gets the mode the umask allows, not tempfile's private 0600.
#[test]
fn a_store_is_as_readable_as_the_umask_allows() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 027 && exec \"$0\" \"$@\"")
        .arg(kdgrid_bin())
        .arg("--results")
        .arg(ws.results())
        .args(["run", "--quiet"])
        .arg(ws.manifest())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut seen = 0;
    for entry in walkdir::WalkDir::new(ws.results()).min_depth(1) {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let want = if entry.file_type().is_dir() {
            0o750
        } else {
            0o640
        };
        assert_eq!(mode, want, "{}: {mode:o}", entry.path().display());
        seen += 1;
    }
    assert!(seen > 10, "{seen} entries");
}
