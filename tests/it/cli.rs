//! The binary end to end on tiny synthetic grids.

use crate::support::*;

#[test]
fn tiny_grid_trains_reuses_teachers_and_reruns_identically() {
    let ws = Workspace::new(TINY);

    let plan = ws.kdgrid(&["plan"]).success();
    let out = stdout(&plan);
    assert!(
        out.contains("10 unique stages (2 teacher, 2 assistant, 6 student): 0 done, 10 to train"),
        "{out}"
    );
    assert!(!ws.results().exists(), "`plan` must not write");

    let run = ws.kdgrid(&["run"]).success();
    let out = stdout(&run);
    assert!(
        out.contains("10 trained, 0 reused, 0 failed, 0 skipped"),
        "{out}"
    );
    assert!(out.contains("95% CI (t)") && out.contains("mean"), "{out}");
    // The comparisons, in words.
    assert!(
        out.contains("teacher > student vs student (T=4, alpha=0.5): ")
            && out.contains("KD better on "),
        "{out}"
    );

    let runs = ws.parquet("tiny", "runs.parquet");
    assert_eq!(runs.height(), 10);
    let roles = strings(&runs, "role");
    let chains = strings(&runs, "chain");
    // The teacher is trained once per seed and shared by the KD student and the TA chain.
    assert_eq!(roles.iter().filter(|r| *r == "teacher").count(), 2);
    assert_eq!(
        chains.iter().filter(|c| c.starts_with("teacher")).count(),
        8
    );
    assert!(chains.contains(&"teacher > assistant > student".to_string()));
    assert!(strings(&runs, "status").iter().all(|s| s == "ok"));
    let acc = floats(&runs, "test_accuracy");
    assert!(
        acc.iter().all(|&a| a > 0.6),
        "accuracy should be well above chance (0.25): {acc:?}"
    );

    let epochs = ws.parquet("tiny", "epochs.parquet");
    assert_eq!(epochs.height(), 10 * 4);

    let dir = ws.results().join("tiny");
    let summary_csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(summary_csv.lines().count(), 1 + 5, "{summary_csv}");
    assert!(summary_csv.starts_with(
        "chain,model,temperature,alpha,source,metric,n,failed,skipped,mean,std,sem,ci_low,ci_high"
    ));
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    let cells = |l: &str| {
        l.split('|')
            .map(str::trim)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(
        md.lines().map(cells).any(|c| c.len() > 6
            && c[1..6] == ["teacher > assistant > student", "student", "4", "0.5", "2"]),
        "{md}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("runs.csv"))
            .unwrap()
            .lines()
            .count(),
        11
    );

    // Rerun: nothing is trained and the tables are the same.
    let before_csv = std::fs::read_to_string(dir.join("runs.csv")).unwrap();
    let again = ws.kdgrid(&["run", "--quiet"]).success();
    assert!(
        stdout(&again).contains("0 trained, 10 reused"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("runs.csv")).unwrap(),
        before_csv
    );
    assert!(stdout(&ws.kdgrid(&["plan"]).success()).contains("10 done, 0 to train"));

    // From scratch in another folder: bit-identical accuracies and losses.
    let fresh = Workspace::new(TINY);
    fresh.kdgrid(&["run", "--quiet"]).success();
    let runs2 = fresh.parquet("tiny", "runs.parquet");
    for col in ["stage_id", "chain", "role"] {
        assert_eq!(strings(&runs, col), strings(&runs2, col));
    }
    for col in ["test_accuracy", "test_loss"] {
        let (a, b) = (floats(&runs, col), floats(&runs2, col));
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{col}: {a:?} vs {b:?}"
        );
    }
}

#[test]
fn a_grown_grid_trains_only_its_new_stages_and_ends_with_the_same_tables() {
    // Kills are in `faults.rs`; here a grid gains a seed after a first run.
    let one_seed = TINY.replace("seed = [0, 1]", "seed = [0]");
    let ws = Workspace::new(&one_seed);
    ws.kdgrid(&["run", "--quiet"]).success();
    std::fs::write(ws.manifest(), TINY).unwrap();
    let out = stdout(&ws.kdgrid(&["run", "--quiet"]).success());
    assert!(out.contains("5 trained, 5 reused"), "{out}");

    let straight = Workspace::new(TINY);
    straight.kdgrid(&["run", "--quiet"]).success();
    let (a, b) = (
        ws.parquet("tiny", "runs.parquet"),
        straight.parquet("tiny", "runs.parquet"),
    );
    assert_eq!(strings(&a, "stage_id"), strings(&b, "stage_id"));
    assert_eq!(floats(&a, "test_accuracy"), floats(&b, "test_accuracy"));
}

#[test]
fn a_diverging_stage_is_recorded_and_the_sweep_goes_on() {
    let text = TINY
        .replace(
            "optimizer = \"adam\"\nlr = 0.01",
            "optimizer = \"sgd\"\nlr = 1e12",
        )
        .replace("seed = [0, 1]", "seed = [0]");
    let ws = Workspace::new(&text);
    let out = stdout(&ws.kdgrid(&["run", "--quiet"]).success());
    let runs = ws.parquet("tiny", "runs.parquet");
    let status = strings(&runs, "status");
    assert_eq!(status.len(), 5, "{out}");
    assert!(status.iter().any(|s| s == "failed"), "{status:?}");
    let errors = strings(&runs, "error");
    assert!(
        errors.iter().any(|e| e.contains("loss diverged")),
        "{errors:?}"
    );
    // Failures are stored: a rerun does not retry them.
    let again = stdout(&ws.kdgrid(&["run", "--quiet"]).success());
    assert!(again.contains("0 trained"), "{again}");
}

#[test]
fn an_invalid_manifest_fails_with_a_location_and_writes_nothing() {
    let ws = Workspace::new(&TINY.replace("alpha = [0.5]", "alpha = [0.5, 2.0]"));
    for cmd in ["validate", "plan", "run"] {
        let a = ws.kdgrid(&[cmd]).code(2);
        let err = stderr(&a);
        assert!(
            err.contains("alpha must be within [0, 1], found 2"),
            "{err}"
        );
        assert!(err.contains("m.toml:33:9"), "{err}");
    }
    assert!(!ws.results().exists());
}

#[test]
fn a_missing_dataset_names_the_file() {
    let text = TINY.replace(
        "kind = \"synthetic\"\nseed = 11\nclasses = 4\ntrain-size = 1024\ntest-size = 256\nimage-size = 10\nnoise = 0.5",
        "kind = \"fashion-mnist\"\npath = \"nowhere\"",
    );
    let ws = Workspace::new(&text);
    let a = ws.kdgrid(&["run"]).code(2);
    let err = stderr(&a);
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn help_explains_the_commands() {
    let a = assert_cmd::Command::cargo_bin("kdgrid")
        .unwrap()
        .arg("--help")
        .assert()
        .success();
    let out = stdout(&a);
    for word in ["plan", "run", "validate", "--results"] {
        assert!(out.contains(word), "{out}");
    }
}

#[test]
fn parallel_jobs_give_bit_identical_weights() {
    let one = Workspace::new(TINY);
    one.kdgrid(&["run", "--quiet", "--jobs", "1"]).success();
    let four = Workspace::new(TINY);
    four.kdgrid(&["run", "--quiet", "--jobs", "4"]).success();
    let (a, b) = (
        one.parquet("tiny", "runs.parquet"),
        four.parquet("tiny", "runs.parquet"),
    );
    let digests = strings(&a, "weights_sha256");
    assert_eq!(digests.len(), 10);
    assert!(digests.iter().all(|d| d.len() == 64));
    assert_eq!(digests, strings(&b, "weights_sha256"));
    assert_eq!(strings(&a, "backend"), vec!["flex"; 10]);
    // How many ran at once is a measurement: in `timings`, never in the results.
    let jobs = |ws: &Workspace| floats(&ws.parquet("tiny", "timings.parquet"), "jobs");
    assert_eq!(jobs(&one), vec![1.0; 10]);
    assert_eq!(jobs(&four), vec![4.0; 10]);

    // `auto`: one stage per core, said and recorded; the same weights.
    let auto = Workspace::new(TINY);
    let out = stdout(&auto.kdgrid(&["run", "--jobs", "auto"]).success());
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(
        out.contains(&format!("up to {cores} stages at once")),
        "{out}"
    );
    assert_eq!(jobs(&auto), vec![cores as f64; 10]);
    assert_eq!(
        strings(&auto.parquet("tiny", "runs.parquet"), "weights_sha256"),
        digests
    );
    let bad = one.kdgrid(&["run", "--jobs", "0"]).code(2);
    assert!(
        stderr(&bad).contains("write a positive number or `auto`"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn augmentation_changes_results_reproducibly() {
    let text = TINY.replace(
        "lr = 0.01",
        "lr = 0.01\naugment = { crop-padding = 1, flip = true }",
    );
    let a = Workspace::new(&text);
    a.kdgrid(&["run", "--quiet"]).success();
    let b = Workspace::new(&text);
    b.kdgrid(&["run", "--quiet"]).success();
    let plain = Workspace::new(TINY);
    plain.kdgrid(&["run", "--quiet"]).success();
    let (ra, rb, rp) = (
        a.parquet("tiny", "runs.parquet"),
        b.parquet("tiny", "runs.parquet"),
        plain.parquet("tiny", "runs.parquet"),
    );
    assert_eq!(
        strings(&ra, "weights_sha256"),
        strings(&rb, "weights_sha256")
    );
    assert_ne!(
        strings(&ra, "weights_sha256"),
        strings(&rp, "weights_sha256")
    );
    assert!(floats(&ra, "test_accuracy").iter().all(|&x| x > 0.5));
}

#[test]
fn flex_cannot_run_on_cuda_and_tch_needs_its_feature() {
    let ws = Workspace::new(TINY);
    let err = stderr(&ws.kdgrid(&["run", "--device", "cuda:0"]).code(2));
    assert!(
        err.contains("the `flex` backend runs on the CPU only"),
        "{err}"
    );
    if !cfg!(feature = "tch") {
        let err = stderr(&ws.kdgrid(&["run", "--backend", "tch"]).code(2));
        assert!(err.contains("built without the `tch`"), "{err}");
        assert!(err.contains("make build-tch"), "{err}");
    }
}

/// `--jobs` × `--threads` above the cores (here at most 2, as a Slurm task would be given) runs
/// fewer jobs and says so, keeping the stage ids `--jobs 1` gives.
#[cfg(feature = "tch")]
#[test]
fn tch_never_runs_more_threads_than_cores_without_saying_so() {
    let text = TINY.replace(
        "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
        "chains = [[\"student\"]]",
    );
    let two_cores = [("SLURM_CPUS_PER_TASK", "2")];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    let ws = Workspace::new(&text);
    let out = ws
        .kdgrid_env(
            &["run", "--backend", "tch", "--jobs", "2", "--threads", "2"],
            &two_cores,
        )
        .success();
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: 2 jobs × 2 threads = 4 LibTorch threads on {cores} cores"
        )) && err.contains("running 1 job at a time instead (--oversubscribe keeps 2)"),
        "{err}"
    );
    let jobs = |ws: &Workspace| floats(&ws.parquet("tiny", "timings.parquet"), "jobs");
    assert_eq!(jobs(&ws), vec![1.0, 1.0], "one stage at a time");
    let runs = ws.parquet("tiny", "runs.parquet");
    assert!(floats(&runs, "threads").iter().all(|t| *t == 2.0), "{runs}");
    // Threads left unset (every core): the same cut, and the ids of `--jobs 1`.
    let ws2 = Workspace::new(&text);
    let out = ws2
        .kdgrid_env(&["run", "--backend", "tch", "--jobs", "2"], &two_cores)
        .success();
    assert!(
        stderr(&out).contains("running 1 job at a time"),
        "{}",
        stderr(&out)
    );
    let ws1 = Workspace::new(&text);
    ws1.kdgrid_env(&["run", "--quiet", "--backend", "tch"], &two_cores)
        .success();
    let ids = |ws: &Workspace| strings(&ws.parquet("tiny", "runs.parquet"), "stage_id");
    assert_eq!(ids(&ws2), ids(&ws1));
    // Asked for, kept.
    let ws3 = Workspace::new(&text);
    let out = ws3
        .kdgrid_env(
            &[
                "run",
                "--backend",
                "tch",
                "--jobs",
                "2",
                "--threads",
                "2",
                "--oversubscribe",
            ],
            &two_cores,
        )
        .success();
    assert!(
        stderr(&out).contains("running so anyway"),
        "{}",
        stderr(&out)
    );
    assert_eq!(jobs(&ws3), vec![2.0, 2.0]);
}

/// The same tiny grid on LibTorch lands within seed noise of flex.
#[cfg(feature = "tch")]
#[test]
fn tch_matches_flex_within_seed_noise() {
    let flex = Workspace::new(TINY);
    flex.kdgrid(&["run", "--quiet"]).success();
    let tch = Workspace::new(TINY);
    tch.kdgrid(&["run", "--quiet", "--backend", "tch", "--threads", "2"])
        .success();
    let (f, t) = (
        flex.parquet("tiny", "runs.parquet"),
        tch.parquet("tiny", "runs.parquet"),
    );
    assert_eq!(strings(&t, "backend"), vec!["tch"; 10]);
    assert_ne!(
        strings(&f, "stage_id"),
        strings(&t, "stage_id"),
        "backends never share stages"
    );
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let (mf, mt) = (
        mean(floats(&f, "test_accuracy")),
        mean(floats(&t, "test_accuracy")),
    );
    assert!(mt > 0.6, "tch accuracy {mt}");
    assert!((mf - mt).abs() < 0.05, "flex {mf} vs tch {mt}");
    // Reruns on tch with the same thread count are bit-identical.
    let again = Workspace::new(TINY);
    again
        .kdgrid(&["run", "--quiet", "--backend", "tch", "--threads", "2"])
        .success();
    assert_eq!(
        strings(&t, "weights_sha256"),
        strings(&again.parquet("tiny", "runs.parquet"), "weights_sha256")
    );
}

#[test]
fn varying_only_the_order_seed_keeps_initial_weights() {
    let text = TINY
        .replace("seed = [0, 1]", "seed = [0]\norder-seed = [0, 1]")
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
            "chains = [[\"student\"]]",
        );
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("tiny", "runs.parquet");
    let init = strings(&runs, "init_sha256");
    let last = strings(&runs, "weights_sha256");
    assert_eq!(init.len(), 2);
    assert_eq!(init[0], init[1], "same init seed, same initial weights");
    assert_ne!(last[0], last[1], "another data order, other final weights");

    let ws = Workspace::new(&text.replace("order-seed", "init-seed"));
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("tiny", "runs.parquet");
    let init = strings(&runs, "init_sha256");
    assert_ne!(init[0], init[1], "another init seed, other initial weights");
}

#[test]
fn plan_reports_sizes_costs_and_json_matching_the_trained_models() {
    let ws = Workspace::new(TINY);
    let out = stdout(&ws.kdgrid(&["plan"]).success());
    assert!(out.contains("MFLOP/image"), "{out}");
    assert!(
        out.contains("2 trainings saved by sharing equal stages"),
        "{out}"
    );
    assert!(out.contains("to train: "), "{out}");
    assert!(out.contains("plus 20 ms per stage (default)"), "{out}");
    let json = stdout(&ws.kdgrid(&["plan", "--json"]).success());
    let before: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The estimate is the arithmetic at the default throughput plus the default overhead.
    let arithmetic = before["pending_tflops"].as_f64().unwrap() * 1e3
        / before["throughput_gflops"].as_f64().unwrap();
    let estimate = before["estimated_seconds"].as_f64().unwrap();
    assert!(
        (estimate - arithmetic - 10.0 * 0.02).abs() < 1e-9,
        "{estimate} vs {arithmetic}"
    );
    ws.kdgrid(&["run", "--quiet"]).success();

    let json = stdout(&ws.kdgrid(&["plan", "--json"]).success());
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(plan["done"], 10);
    assert_eq!(plan["to_train"], 0);
    assert_eq!(plan["throughput_measured"], true);
    // Every trained stage recorded its wall time: the overhead is measured, not the default.
    assert_eq!(plan["overhead_measured"], true);
    let overhead = plan["stage_overhead_seconds"].as_f64().unwrap();
    assert!(overhead > 0.0 && overhead < 5.0, "{overhead}");
    assert_plan_params_match(&ws, "tiny");
}

#[test]
fn adamw_with_a_cosine_schedule_learns() {
    let text = TINY
        .replace(
            "optimizer = \"adam\"",
            "optimizer = \"adamw\"\nschedule = { kind = \"cosine\" }",
        )
        .replace("seed = [0, 1]", "seed = [0]");
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("tiny", "runs.parquet");
    let acc = floats(&runs, "test_accuracy");
    assert!(acc.iter().all(|&a| a > 0.6), "{acc:?}");
}

#[test]
fn pools_that_empty_the_map_and_a_whole_validation_split_are_refused() {
    let text = TINY
        .replace(
            "[models.student]\nconv = [4]",
            "[models.student]\nconv = [8, 8, 8, 8, 8, 8]",
        )
        .replace("lr = 0.01", "lr = 0.01\nvalidation = 1.0");
    let ws = Workspace::new(&text);
    let err = stderr(&ws.kdgrid(&["validate"]).code(2));
    // miette wraps long lines: look for the parts.
    for part in [
        "`models.student`: conv layer 4 would max-pool a 1x1 feature map",
        "(10x10 -> 5x5 -> 2x2 -> 1x1)",
        "m.toml:22:8",
        "`training.validation` is a whole number of images or a fraction in (0, 1),",
        "found 1.0",
        "m.toml:29:14",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // Pools only where asked are fine.
    let ok = TINY.replace(
        "[models.student]\nconv = [4]",
        "[models.student]\nconv = [8, 8, 8, 8, 8, 8]\npool = [1, 2]",
    );
    Workspace::new(&ok).kdgrid(&["validate"]).success();
}

#[test]
fn valid_padding_shrinks_the_map_trains_and_is_refused_where_the_kernel_does_not_fit() {
    // 10x10 -> conv 3x3 valid 8x8 -> pool 4x4 -> conv 2x2 -> pool 1x1.
    let valid = TINY.replace(
        "[models.student]\nconv = [4]",
        "[models.student]\nconv = [4, 4]\npadding = \"valid\"",
    );
    let ws = Workspace::new(&valid.replace("seed = [0, 1]", "seed = [0]"));
    let plan: serde_json::Value =
        serde_json::from_str(&stdout(&ws.kdgrid(&["plan", "--json"]).success())).unwrap();
    let student = plan["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "student")
        .unwrap();
    // Two valid 3x3 convs (4*1*9+4, 4*4*9+4) and a head on a 1x1x4 map: 4*4+4.
    assert_eq!(student["params"], 40 + 148 + 20, "{student}");
    ws.kdgrid(&["run", "--quiet"]).success();
    assert_plan_params_match(&ws, "tiny");
    let runs = ws.parquet("tiny", "runs.parquet");
    let acc = floats(&runs, "test_accuracy");
    assert!(acc.iter().all(|&a| a > 0.5), "{acc:?}");

    let too_deep = TINY.replace(
        "[models.student]\nconv = [4]",
        "[models.student]\nconv = [4, 4, 4]\npadding = \"valid\"",
    );
    let err = stderr(&Workspace::new(&too_deep).kdgrid(&["validate"]).code(2));
    for part in [
        "conv layer 3's 3x3 kernel does not fit a 1x1 feature map",
        "(10x10 -> 4x4 -> 1x1)",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // A padding on a family without conv layers is named.
    let mlp = TINY.replace(
        "[models.student]\nconv = [4]",
        "[models.student]\nfamily = \"mlp\"\ndense = [8]\npadding = \"valid\"",
    );
    let err = stderr(&Workspace::new(&mlp).kdgrid(&["validate"]).code(2));
    assert!(
        err.contains("`models.student.padding` does not apply"),
        "{err}"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in walkdir::WalkDir::new(from)
        .into_iter()
        .filter_map(Result::ok)
    {
        let target = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn kdgrid_diff(args: &[&str]) -> assert_cmd::assert::Assert {
    assert_cmd::Command::cargo_bin("kdgrid")
        .unwrap()
        .arg("diff")
        .args(args)
        .env("NO_COLOR", "1")
        .assert()
}

#[test]
fn diff_names_the_changed_row_and_column_and_report_check_catches_an_edit() {
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let dir = ws.results().join("tiny");
    // Regenerated from the store, the tables are bit-identical.
    let ok = stdout(&ws.kdgrid(&["report", "--check"]).success());
    assert!(ok.contains("up to date"), "{ok}");

    let copy = ws.dir.path().join("copy");
    copy_dir(&dir, &copy);
    kdgrid_diff(&[dir.to_str().unwrap(), copy.to_str().unwrap()]).success();

    // Edit one committed number.
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let line = summary.lines().nth(1).unwrap().to_string();
    let mut cells: Vec<String> = line.split(',').map(String::from).collect();
    let mean: f64 = cells[9].parse().unwrap();
    cells[9] = format!("{}", mean - 0.01);
    std::fs::write(
        dir.join("summary.csv"),
        summary.replace(&line, &cells.join(",")),
    )
    .unwrap();
    let out = stdout(&kdgrid_diff(&[copy.to_str().unwrap(), dir.to_str().unwrap()]).code(1));
    assert!(out.contains("summary.csv: 1 changed"), "{out}");
    assert!(out.contains("~ student | student"), "{out}");
    assert!(out.contains(&format!("mean: {mean} -> ")), "{out}");
    let check = ws.kdgrid(&["report", "--check"]).code(1);
    assert!(
        stdout(&check).contains("summary.csv: 1 changed"),
        "{}",
        stdout(&check)
    );
    assert!(
        stderr(&check).contains("differ from the"),
        "{}",
        stderr(&check)
    );
    // Rewriting them from the store is the fix.
    ws.kdgrid(&["report"]).success();
    ws.kdgrid(&["report", "--check"]).success();
}

#[test]
fn a_duplicated_missing_or_extra_row_and_an_edited_report_fail_diff_and_check() {
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let dir = ws.results().join("tiny");
    let pristine = ws.dir.path().join("pristine");
    copy_dir(&dir, &pristine);
    let runs = std::fs::read_to_string(dir.join("runs.csv")).unwrap();
    let lines: Vec<&str> = runs.lines().collect();
    let (header, first, second) = (lines[0], lines[1], lines[2]);
    let stage = first.split(',').next().unwrap();
    // A duplicated row with the same stage id and another accuracy: keyed in a map, it used to
    // hide behind the original.
    let mut fake: Vec<String> = first.split(',').map(String::from).collect();
    let col = header
        .split(',')
        .position(|c| c == "test_accuracy")
        .unwrap();
    fake[col] = "0.99".into();
    // What `diff edited pristine` says; `report --check` compares the same way (the committed,
    // edited folder as A, the regeneration as B).
    let edits = [
        (
            "duplicated",
            format!("{runs}{}\n", fake.join(",")),
            "1 duplicated keys",
        ),
        (
            "missing",
            runs.replace(&format!("{second}\n"), ""),
            "1 new, 0 missing",
        ),
        (
            "extra",
            format!("{runs}{}\n", first.replacen(stage, "0123456789abcdef", 1)),
            "0 new, 1 missing",
        ),
    ];
    for (what, text, says) in edits {
        std::fs::write(dir.join("runs.csv"), &text).unwrap();
        let out =
            stdout(&kdgrid_diff(&[dir.to_str().unwrap(), pristine.to_str().unwrap()]).code(1));
        assert!(out.contains(says), "{what}: {out}");
        if what == "duplicated" {
            assert!(
                out.contains(&format!("! 2 rows in A share the key {stage}")),
                "{out}"
            );
        }
        let check = ws.kdgrid(&["report", "--check"]).code(1);
        assert!(stdout(&check).contains(says), "{what}: {}", stdout(&check));
    }
    std::fs::write(dir.join("runs.csv"), &runs).unwrap();
    ws.kdgrid(&["report", "--check"]).success();
    // One edited word of report.md.
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    std::fs::write(
        dir.join("report.md"),
        report.replacen("stages", "Stages", 1),
    )
    .unwrap();
    let out = stdout(&kdgrid_diff(&[pristine.to_str().unwrap(), dir.to_str().unwrap()]).code(1));
    assert!(out.contains("report.md: differs"), "{out}");
    let check = ws.kdgrid(&["report", "--check"]).code(1);
    assert!(
        stdout(&check).contains("report.md: differs"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn diff_across_processor_kinds_uses_the_tolerance_and_says_why() {
    use polars::prelude::*;
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    ws.kdgrid(&["run", "--quiet"]).success();
    let dir = ws.results().join("tiny");
    let other = ws.dir.path().join("other");
    copy_dir(&dir, &other);
    // The same study from another machine: another processor, accuracies off in the 4th digit.
    let mut runs = read_parquet(&other.join("runs.parquet"));
    let n = runs.height();
    runs.replace(
        "processor",
        Column::new("processor".into(), vec!["x86_64-other"; n]),
    )
    .unwrap();
    let acc: Vec<f64> = floats(&runs, "test_accuracy")
        .iter()
        .map(|a| a + 0.0007)
        .collect();
    runs.replace("test_accuracy", Column::new("test_accuracy".into(), acc))
        .unwrap();
    let digests = vec!["0".repeat(64); n];
    runs.replace(
        "weights_sha256",
        Column::new("weights_sha256".into(), digests),
    )
    .unwrap();
    // Another numeric class has it in its flex stage ids: rows are matched by cell instead.
    let other_class = |df: &mut DataFrame| {
        for name in ["stage_id", "parent_id"] {
            if df.column(name).is_err() {
                continue;
            }
            let ids: Vec<Option<String>> = strings(df, name)
                .into_iter()
                .map(|id| (!id.is_empty() && id != "null").then(|| format!("{id}-class")))
                .collect();
            df.replace(name, Column::new(name.into(), ids)).unwrap();
        }
    };
    other_class(&mut runs);
    let mut epochs = read_parquet(&other.join("epochs.parquet"));
    other_class(&mut epochs);
    let file = std::fs::File::create(other.join("epochs.parquet")).unwrap();
    ParquetWriter::new(file).finish(&mut epochs).unwrap();
    let file = std::fs::File::create(other.join("runs.parquet")).unwrap();
    ParquetWriter::new(file).finish(&mut runs).unwrap();
    // Its runs.csv is written from the same frame.
    let file = std::fs::File::create(other.join("runs.csv")).unwrap();
    CsvWriter::new(file).finish(&mut runs).unwrap();

    let (a, b) = (dir.to_str().unwrap(), other.to_str().unwrap());
    let strict = stdout(&kdgrid_diff(&[a, b]).code(1));
    assert!(strict.contains("x86_64-other"), "{strict}");
    assert!(strict.contains("test_accuracy"), "{strict}");
    // A processor kind outside the portable class: only a tolerance is promised.
    assert!(
        strict.contains("only agreement within a tolerance is promised"),
        "{strict}"
    );
    let loose = stdout(&kdgrid_diff(&[a, b, "--across", "0.002"]).success());
    assert!(loose.contains("computed on flex/"), "{loose}");
    assert!(loose.contains("differ within the tolerance"), "{loose}");
    // The last line names the tolerance that was applied, not the default 0.
    assert!(
        loose.contains("no differences beyond tolerance 0.002"),
        "{loose}"
    );
    // The same kind is still compared bit for bit.
    let same = ws.dir.path().join("same");
    copy_dir(&dir, &same);
    let summary = std::fs::read_to_string(same.join("summary.csv")).unwrap();
    let line = summary.lines().nth(1).unwrap().to_string();
    let mut cells: Vec<String> = line.split(',').map(String::from).collect();
    cells[9] = format!("{}", cells[9].parse::<f64>().unwrap() + 0.0001);
    std::fs::write(
        same.join("summary.csv"),
        summary.replace(&line, &cells.join(",")),
    )
    .unwrap();
    let edited = stdout(&kdgrid_diff(&[a, same.to_str().unwrap(), "--across", "0.002"]).code(1));
    // Both folders come from flex on this machine's class: every x86-64-v3 processor promises
    // the same bits, so no tolerance applies.
    if kdgrid::numerics::flex_class() == kdgrid::numerics::PORTABLE {
        assert!(
            edited.contains("both computed by flex/x86_64-v3: bit-identical on every x86-64-v3"),
            "{edited}"
        );
    } else {
        assert!(edited.contains("bit-identical only for reruns"), "{edited}");
    }
}

#[test]
fn report_and_status_read_the_compute_settings_the_run_used_and_never_empty_good_tables() {
    // The manifest asks for LibTorch; the run used flex.
    let text = TINY
        .replace("seed = [0, 1]", "seed = [0]")
        .replace("epochs = 4", "epochs = 1")
        + "\n[compute]\nbackend = \"tch\"\nthreads = 2\n";
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet", "--backend", "flex"])
        .success();
    let runs = ws.results().join("tiny/runs.csv");
    let before = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(before.lines().count(), 6, "{before}");

    // Without flags: the records say which settings computed them.
    let report = ws.kdgrid(&["report"]).success();
    assert!(
        stderr(&report).contains("showing the 5 stages computed with `flex`"),
        "{}",
        stderr(&report)
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), before);
    let status = stdout(&ws.kdgrid(&["status"]).success());
    assert!(status.contains("5 done"), "{status}");

    // Explicit settings that find nothing are refused rather than writing empty tables.
    let err = stderr(
        &ws.kdgrid(&["report", "--backend", "tch", "--threads", "3"])
            .failure(),
    );
    assert!(
        err.contains("no stage of this plan (compute `tch4-cpu-3threads`) is in the store"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), before);
}

/// Adds `delta` to column `column` of the first data row of CSV file `path`.
fn edit_csv(path: &std::path::Path, column: &str, delta: f64) -> f64 {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let at = lines[0].split(',').position(|c| c == column).unwrap();
    let mut cells: Vec<String> = lines[1].split(',').map(String::from).collect();
    let old: f64 = cells[at].parse().unwrap();
    cells[at] = format!("{}", old + delta);
    lines[1] = cells.join(",");
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    old
}

#[test]
fn diff_compares_the_csv_tables_people_read_and_each_with_its_parquet_twin() {
    use polars::prelude::*;
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    ws.kdgrid(&["run", "--quiet"]).success();
    let dir = ws.results().join("tiny");
    let edited = ws.dir.path().join("edited");
    copy_dir(&dir, &edited);
    // One accuracy of the committed runs.csv, 0.01 higher; runs.parquet untouched.
    let old = edit_csv(&edited.join("runs.csv"), "test_accuracy", 0.01);
    let (a, b) = (dir.to_str().unwrap(), edited.to_str().unwrap());
    let out = stdout(&kdgrid_diff(&[a, b]).code(1));
    assert!(out.contains("runs.csv: 1 changed"), "{out}");
    assert!(out.contains(&format!("test_accuracy: {old} -> ")), "{out}");
    assert!(out.contains("runs.parquet: "), "{out}");
    // Within the folder, the CSV no longer matches its Parquet twin: caught at any tolerance.
    assert!(
        out.contains("runs.csv vs runs.parquet in B: 1 changed"),
        "{out}"
    );
    let out = stdout(&kdgrid_diff(&[a, b, "--tolerance", "0.05"]).code(1));
    assert!(
        out.contains("runs.csv vs runs.parquet in B: 1 changed"),
        "{out}"
    );

    // An edited comparisons.csv cell, likewise.
    let edited = ws.dir.path().join("edited-comparisons");
    copy_dir(&dir, &edited);
    edit_csv(&edited.join("comparisons.csv"), "n_a", 1.0);
    let out = stdout(&kdgrid_diff(&[a, edited.to_str().unwrap()]).code(1));
    assert!(out.contains("comparisons.csv: 1 changed"), "{out}");
    assert!(
        out.contains("comparisons.csv vs comparisons.parquet in B: 1 changed"),
        "{out}"
    );

    // A folder written before a column existed: the column is named once, not every row.
    let old_folder = ws.dir.path().join("old");
    copy_dir(&dir, &old_folder);
    let path = old_folder.join("variance.csv");
    let mut v = CsvReader::new(std::fs::File::open(&path).unwrap())
        .finish()
        .unwrap()
        .drop("pairs_gap_1_point")
        .unwrap();
    CsvWriter::new(std::fs::File::create(&path).unwrap())
        .finish(&mut v)
        .unwrap();
    let out = stdout(&kdgrid_diff(&[old_folder.to_str().unwrap(), a]).code(1));
    assert!(
        out.contains("variance.csv: 0 changed, 0 new, 0 missing, 1 columns in one only"),
        "{out}"
    );
    assert!(
        out.contains("column `pairs_gap_1_point` only in B"),
        "{out}"
    );
}

#[test]
fn status_of_a_big_study_lists_what_is_not_done_up_to_200_rows_and_all_with_a_flag() {
    let seeds: Vec<String> = (0..50).map(|s| s.to_string()).collect();
    let text = TINY.replace("seed = [0, 1]", &format!("seed = [{}]", seeds.join(", ")));
    let ws = Workspace::new(&text);
    let rows = |out: &str| out.lines().filter(|l| l.contains("  pending  ")).count();
    let out = stdout(&ws.kdgrid(&["status"]).success());
    assert_eq!(rows(&out), 200, "{out}");
    assert!(
        out.contains("... 50 more stages not listed (0 of them done); `--all` lists every stage"),
        "{out}"
    );
    assert!(out.contains("250 stages: 0 done, 0 failed, 0 corrupt, 0 running, 250 pending"));
    let all = stdout(&ws.kdgrid(&["status", "--all"]).success());
    assert_eq!(rows(&all), 250);
}

#[test]
fn read_only_commands_refuse_a_store_written_by_a_newer_kdgrid() {
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    ws.kdgrid(&["run", "--quiet"]).success();
    let format = ws.results().join("tiny/stages/FORMAT");
    let ours: u32 = std::fs::read_to_string(&format)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::write(&format, format!("{}\n", ours + 1)).unwrap();
    let tb = ws.dir.path().join("tb");
    for args in [
        vec!["status"],
        vec!["plan"],
        vec!["report"],
        vec!["export", "--tensorboard", tb.to_str().unwrap()],
    ] {
        let err = stderr(&ws.kdgrid(&args).failure());
        assert!(
            err.contains(&format!("has format {}", ours + 1)) && err.contains("newer kdgrid"),
            "{args:?}: {err}"
        );
    }
    // Nothing was written under a store this kdgrid cannot read.
    assert!(!tb.exists());
    assert_eq!(
        std::fs::read_to_string(&format).unwrap(),
        format!("{}\n", ours + 1)
    );
}

/// `status` and `report` read the plan's own stages by name: a store that also holds other
/// stages (here one whose record would block any reader: a named pipe) is not listed.
#[test]
fn status_and_report_read_only_the_plans_stages() {
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0]"));
    ws.kdgrid(&["run", "--quiet"]).success();
    let other = ws.results().join("tiny/stages/0123456789abcdef");
    std::fs::create_dir_all(&other).unwrap();
    let fifo = std::ffi::CString::new(other.join("record.json").to_str().unwrap()).unwrap();
    // SAFETY: a path made above; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    for command in ["status", "report"] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kdgrid"))
            .arg("--results")
            .arg(ws.results())
            .arg(command)
            .arg(ws.manifest())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "`{command}` read a stage folder outside its plan: {status:?}"
        );
    }
}
