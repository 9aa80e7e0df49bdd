//! The report: comparisons paired or not, plots, and what it says when it cannot compute.

use crate::support::*;

#[test]
fn kd_comparisons_pair_by_seed_and_fall_back_to_unpaired_with_independent_teachers() {
    let paired = Workspace::new(&TINY.replace(
        "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
        "chains = [[\"student\"], [\"teacher\", \"student\"]]",
    ));
    paired.kdgrid(&["run", "--quiet"]).success();
    let c = paired.parquet("tiny", "comparisons.parquet");
    assert_eq!(strings(&c, "kind"), vec!["kd-vs-nokd"], "{c}");
    assert_eq!(strings(&c, "method"), vec!["paired"], "{c}");
    assert!(
        !floats(&c, "p_t")[0].is_nan() && !floats(&c, "p_wilcoxon")[0].is_nan(),
        "{c}"
    );

    let text = TINY
        .replace("seed = [0, 1]", "seed = [0, 1]\nteacher-seed = \"independent\"")
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
            "chains = [[\"student\"], [\"teacher\", \"student\"]]",
        );
    let ws = Workspace::new(&text);
    let out = stdout(&ws.kdgrid(&["run", "--quiet"]).success());
    let c = ws.parquet("tiny", "comparisons.parquet");
    assert_eq!(strings(&c, "method"), vec!["unpaired"], "{c}");
    let p = floats(&c, "p_improve")[0];
    assert!((0.0..=1.0).contains(&p), "{c}");
    assert!(
        floats(&c, "p_t")[0].is_nan(),
        "no paired test for unpaired runs: {c}"
    );
    assert!(
        out.contains("(unpaired, Welch)") && out.contains("P(KD better) ="),
        "{out}"
    );
    // scipy recomputes the unpaired statistics, the gap's variances included.
    scipy_agrees(&ws.results().join("tiny"));
}

#[test]
fn every_plot_is_a_valid_svg_and_png_with_rendered_text() {
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let plots = ws.results().join("tiny/plots");
    for name in ["accuracy", "seeds", "curves", "size"] {
        let svg = std::fs::read_to_string(plots.join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{name}.svg"
        );
        assert!(
            svg.contains("<text") && svg.contains("accuracy"),
            "{name}.svg has no text"
        );
        let png = image::open(plots.join(format!("{name}.png")))
            .unwrap()
            .to_luma8();
        let (w, h) = png.dimensions();
        assert!(w >= 400 && h >= 150, "{name}.png is {w}x{h}");
        // The caption band: glyphs leave dark and anti-aliased grey pixels, in many columns.
        let band: Vec<(u32, u8)> = (0..w)
            .flat_map(|x| (0..30.min(h)).map(move |y| (x, y)))
            .map(|(x, y)| (x, png.get_pixel(x, y).0[0]))
            .collect();
        let dark: std::collections::BTreeSet<u32> =
            band.iter().filter(|p| p.1 < 100).map(|p| p.0).collect();
        let grey = band.iter().filter(|p| p.1 > 60 && p.1 < 200).count();
        assert!(
            dark.len() > 50,
            "{name}.png: caption text not rendered ({} columns)",
            dark.len()
        );
        assert!(grey > 20, "{name}.png: no anti-aliased glyph edges");
    }
    // Accuracy is drawn as a point per chain with whiskers: no bar on the cut axis (the only
    // rectangles are the white backgrounds).
    let svg = std::fs::read_to_string(plots.join("accuracy.svg")).unwrap();
    let summary = ws.parquet_csv("tiny", "summary.csv");
    assert_eq!(svg.matches("<circle").count(), summary.height(), "{svg}");
    for rect in svg.split("<rect").skip(1) {
        assert!(rect.contains("fill=\"#FFFFFF\""), "a bar: <rect{rect}");
    }
    let report = std::fs::read_to_string(ws.results().join("tiny/report.md")).unwrap();
    assert!(
        report.contains("![Mean test accuracy per chain"),
        "{report}"
    );
    assert!(report.contains("(plots/accuracy.png)"), "{report}");
}

#[test]
fn the_report_says_what_it_cannot_compute() {
    // Nothing trained yet: an empty report, and a success.
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["report"]).success();
    let report = std::fs::read_to_string(ws.results().join("tiny/report.md")).unwrap();
    assert!(report.contains("0 stages"), "{report}");
    assert!(report.contains("no distilled chain"), "{report}");

    // One seed, and teachers that diverge: notes instead of NaN.
    let text = TINY.replace("seed = [0, 1]", "seed = [0]").replace(
        "[models.teacher]\nconv = [8, 16]\ndense = [32]",
        "[models.teacher]\nconv = [8, 16]\ndense = [32]\nlr = 1e12",
    );
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let summary = std::fs::read_to_string(ws.results().join("tiny/summary.csv")).unwrap();
    assert!(!summary.contains("NaN"), "{summary}");
    assert!(
        summary.contains("one seed: no spread or interval"),
        "{summary}"
    );
    assert!(summary.contains("no finished run"), "{summary}");
    let c = std::fs::read_to_string(ws.results().join("tiny/comparisons.csv")).unwrap();
    assert!(!c.contains("NaN"), "{c}");
    assert!(c.contains("no finished run on one side"), "{c}");
    let runs = ws.parquet("tiny", "runs.parquet");
    assert!(
        strings(&runs, "status").contains(&"failed".to_string()),
        "{runs}"
    );
}

fn adaptive(rule: &str) -> String {
    TINY.replace("seed = [0, 1]", &format!("seed = {{ adaptive = {{ {rule} }} }}"))
        .replace("epochs = 4", "epochs = 1")
        .replace("noise = 0.5", "noise = 0.9")
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
            "chains = [[\"student\"], [\"teacher\"]]",
        )
}

#[test]
fn adaptive_seeds_stop_at_the_target_or_at_max_with_the_ids_of_listed_seeds() {
    // A loose target: every group stops at `min`.
    let loose = Workspace::new(&adaptive("min = 2, max = 5, ci-half-width = 0.5"));
    let plan = stdout(&loose.kdgrid(&["plan"]).success());
    assert!(plan.contains("adaptive seeds: 4 to 10 stages"), "{plan}");
    loose.kdgrid(&["run", "--quiet"]).success();
    let runs = loose.parquet("tiny", "runs.parquet");
    assert_eq!(runs.height(), 4, "{runs}");

    // An unreachable target: every group runs `max` seeds, even one whose runs tie (a spread
    // of 0 from a few seeds is no evidence of a narrow interval).
    let tight = Workspace::new(&adaptive("min = 2, max = 5, ci-half-width = 0.000001"));
    tight.kdgrid(&["run", "--quiet"]).success();
    let runs = tight.parquet("tiny", "runs.parquet");
    let summary = tight.parquet_csv("tiny", "summary.csv");
    let n = floats(&summary, "n");
    assert!(!n.is_empty() && n.iter().all(|&n| n == 5.0), "{summary}");
    let report = std::fs::read_to_string(tight.results().join("tiny/report.md")).unwrap();
    assert!(
        report.contains("Seeds were added to each group"),
        "{report}"
    );

    // The same seeds listed give the same stage ids.
    let listed = Workspace::new(&adaptive("min = 2, max = 5, ci-half-width = 0.5").replace(
        "seed = { adaptive = { min = 2, max = 5, ci-half-width = 0.5 } }",
        "seed = [0, 1, 2, 3, 4]",
    ));
    let ids = |ws: &Workspace| -> Vec<String> {
        let json: serde_json::Value =
            serde_json::from_str(&stdout(&ws.kdgrid(&["plan", "--json"]).success())).unwrap();
        json["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = ids(&listed);
    for id in strings(&runs, "stage_id") {
        assert!(all.contains(&id), "{id} is not a listed seed's stage");
    }
    assert_eq!(ids(&tight).len(), all.len());
}

#[test]
fn stats_compares_two_samples_from_a_table_and_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("runs.csv");
    std::fs::write(&csv, "seed,test_accuracy\n0,0.70\n1,0.72\n2,0.71\n3,0.69\n").unwrap();
    let list = dir.path().join("peer.txt");
    std::fs::write(&list, "0.60\n0.62\n\n0.61\n").unwrap();
    let kdgrid = || assert_cmd::Command::cargo_bin("kdgrid").unwrap();
    let out = kdgrid()
        .arg("stats")
        .arg(format!("{}:test_accuracy", csv.display()))
        .arg(&list)
        .args(["--labels", "kdgrid,peer"])
        .assert()
        .success();
    let text = stdout(&out);
    assert!(text.contains("kdgrid: n 4, mean 0.7050"), "{text}");
    assert!(text.contains("peer: n 3, mean 0.6100"), "{text}");
    assert!(text.contains("kdgrid - peer: +0.0950"), "{text}");
    assert!(text.contains("P(kdgrid > peer) = 1.00"), "{text}");
    assert!(text.contains("the interval excludes 0"), "{text}");
    // Bad input is named.
    let err = stderr(
        &kdgrid()
            .arg("stats")
            .arg(format!("{}:accuracy", csv.display()))
            .arg(&list)
            .assert()
            .code(2),
    );
    assert!(err.contains("no column `accuracy`"), "{err}");
    std::fs::write(&list, "0.6\nabc\n").unwrap();
    let err = stderr(&kdgrid().arg("stats").arg(&list).arg(&list).assert().code(2));
    assert!(err.contains("line 2: `abc` is not a number"), "{err}");
}

#[test]
fn timings_md_gives_each_chain_its_runs_size_and_median_speed() {
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let md = std::fs::read_to_string(ws.results().join("tiny/timings.md")).unwrap();
    let runs = ws.parquet("tiny", "runs.parquet");
    let timings = ws.parquet("tiny", "timings.parquet");
    let rows: Vec<Vec<String>> = md
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|-"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0],
        [
            "chain",
            "model",
            "runs",
            "params",
            "weights_kib",
            "latency_ms_batch1",
            "latency_ms_batch256",
            "train_seconds"
        ],
        "{md}"
    );
    // One row per (chain, model), in plan order, each over both seeds.
    let mut chains: Vec<String> = Vec::new();
    for c in strings(&timings, "chain") {
        if !chains.contains(&c) {
            chains.push(c);
        }
    }
    let listed: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(listed, chains, "{md}");
    let (ids, params, bytes) = (
        strings(&runs, "stage_id"),
        floats(&runs, "params"),
        floats(&runs, "model_bytes"),
    );
    let (stage, chain) = (strings(&timings, "stage_id"), strings(&timings, "chain"));
    let seconds = floats(&timings, "train_seconds");
    for row in &rows[1..] {
        let mine: Vec<usize> = (0..stage.len()).filter(|&i| chain[i] == row[0]).collect();
        assert_eq!(row[2], mine.len().to_string(), "{md}");
        let run = ids.iter().position(|id| *id == stage[mine[0]]).unwrap();
        assert_eq!(row[3], (params[run] as u64).to_string(), "{md}");
        assert_eq!(row[4], format!("{:.4}", bytes[run] / 1024.0), "{md}");
        let mut s: Vec<f64> = mine.iter().map(|&i| seconds[i]).collect();
        s.sort_by(f64::total_cmp);
        let median = (s[(s.len() - 1) / 2] + s[s.len() / 2]) / 2.0;
        assert_eq!(row[7], format!("{median:.4}"), "{md}");
        assert!(row[5].parse::<f64>().unwrap() > 0.0, "{md}");
    }
}

/// The row of `df` whose `column` is `value`.
fn row(df: &polars::prelude::DataFrame, column: &str, value: &str) -> usize {
    strings(df, column)
        .iter()
        .position(|v| v == value)
        .unwrap_or_else(|| panic!("no `{value}` in `{column}`: {df}"))
}

#[test]
fn gap_closed_is_the_ratio_of_mean_differences_and_empty_when_the_teacher_is_no_better() {
    // A student held back by a small learning rate: the teacher's lead is far beyond seed noise.
    let ws = Workspace::new(&TINY.replace("seed = [0, 1]", "seed = [0, 1, 2]").replace(
        "[models.student]\nconv = [4]",
        "[models.student]\nconv = [4]\nlr = 0.0003",
    ));
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("tiny", "runs.parquet");
    let c = ws.parquet_csv("tiny", "comparisons.csv");
    let (chain, acc) = (strings(&runs, "chain"), floats(&runs, "test_accuracy"));
    let teacher_acc = floats(&runs, "teacher_accuracy");
    let of = |name: &str, v: &[f64]| -> f64 {
        let xs: Vec<f64> = (0..chain.len())
            .filter(|&i| chain[i] == name)
            .map(|i| v[i])
            .collect();
        xs.iter().sum::<f64>() / xs.len() as f64
    };
    let i = row(&c, "chain_a", "teacher > student");
    let gain = of("teacher > student", &teacher_acc) - of("student", &acc);
    let diff = of("teacher > student", &acc) - of("student", &acc);
    assert!(gain > 0.0, "the tiny teacher beats the student: {runs}");
    assert!((floats(&c, "teacher_gain")[i] - gain).abs() < 1e-12, "{c}");
    // The gap has its Fieller interval.
    let (lead_low, closed) = (
        floats(&c, "teacher_gain_low")[i],
        floats(&c, "gap_closed")[i],
    );
    assert!(lead_low > 0.0 && lead_low < gain, "{c}");
    assert!((closed - diff / gain).abs() < 1e-9, "{c}");
    let (lo, hi) = (floats(&c, "gap_low")[i], floats(&c, "gap_high")[i]);
    assert!(lo < closed && closed < hi, "{c}");
    let report = std::fs::read_to_string(ws.results().join("tiny/report.md")).unwrap();
    let pct = |v: f64| format!("{:+.0}%", v * 100.0);
    assert!(
        report.contains(&format!("{} [{}, {}]", pct(closed), pct(lo), pct(hi))),
        "{report}"
    );
    // The teacher's interval reaches past 100% accuracy: cut at 1 in the table, and drawn with
    // an arrowhead (three points, the tip 8 pixels out) instead of an end cap in the figure.
    let summary = ws.parquet_csv("tiny", "summary.csv");
    let (metric, notes) = (strings(&summary, "metric"), strings(&summary, "note"));
    let cuts: usize = (0..notes.len())
        .filter(|&k| metric[k] == "test_accuracy")
        .map(|k| notes[k].matches("t interval cut at").count())
        .sum();
    assert!(cuts >= 1, "{summary}");
    assert!(
        floats(&summary, "ci_high")
            .iter()
            .all(|h| h.is_nan() || *h <= 1.0)
    );
    let svg = std::fs::read_to_string(ws.results().join("tiny/plots/accuracy.svg")).unwrap();
    let arrowheads = svg
        .split("points=\"")
        .skip(1)
        .filter(|rest| {
            let pts: Vec<(f64, f64)> = rest
                .split('"')
                .next()
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            pts.len() == 3
                && pts[0].0 == pts[2].0
                && ((pts[1].0 - pts[0].0).abs() - 8.0).abs() < 1e-9
                && pts[0].1 != pts[2].1
        })
        .count();
    assert_eq!(arrowheads, cuts, "{summary}");
    // scipy recomputes the gap's Fieller interval and the teacher's lead from runs.csv.
    scipy_agrees(&ws.results().join("tiny"));

    // A teacher that learns nothing (tiny learning rate) is worse than no-KD: no gap closed,
    // neither per seed nor for the chain, and the report says why.
    let weak = Workspace::new(&TINY.replace(
        "[models.teacher]\nconv = [8, 16]\ndense = [32]",
        "[models.teacher]\nconv = [8, 16]\ndense = [32]\nlr = 1e-7",
    ));
    weak.kdgrid(&["run", "--quiet"]).success();
    let runs = weak.parquet("tiny", "runs.parquet");
    let c = weak.parquet_csv("tiny", "comparisons.csv");
    let i = row(&c, "chain_a", "teacher > student");
    assert!(floats(&c, "teacher_gain")[i] < 0.0, "{c}");
    assert!(floats(&c, "gap_closed")[i].is_nan(), "{c}");
    assert!(
        strings(&c, "note")[i].contains("teacher not better than no-KD on average"),
        "{c}"
    );
    let (chain, gap) = (strings(&runs, "chain"), floats(&runs, "gap_closed"));
    for (k, ch) in chain.iter().enumerate() {
        if ch == "teacher > student" {
            assert!(gap[k].is_nan(), "per-seed gap with a worse teacher: {runs}");
        }
    }
    let report = std::fs::read_to_string(weak.results().join("tiny/report.md")).unwrap();
    let models = report.split("## Models and distillation").nth(1).unwrap();
    let line = models
        .lines()
        .find(|l| l.starts_with("| teacher > student "))
        .unwrap();
    assert!(line.contains("none: teacher not better"), "{report}");
}

#[test]
fn the_report_says_what_few_seeds_cannot_show_and_how_many_would() {
    let ws = Workspace::new(TINY);
    let out = stdout(&ws.kdgrid(&["run", "--quiet"]).success());
    let c = ws.parquet_csv("tiny", "comparisons.csv");
    let report = std::fs::read_to_string(ws.results().join("tiny/report.md")).unwrap();
    // Two seeds: the Wilcoxon test cannot go below p = 0.5, and the report says so.
    let i = row(&c, "chain_a", "teacher > student");
    assert_eq!(floats(&c, "min_p_wilcoxon")[i], 0.5, "{c}");
    let words = "with 2 pairs the smallest possible Wilcoxon p is 0.5";
    assert!(strings(&c, "note")[i].contains(words), "{c}");
    assert!(report.contains(words), "{report}");
    assert!(out.contains(words), "{out}");
    // Bootstrap intervals of 2 values are flagged in the summary, and 2 values that tie get no
    // interval at all.
    let summary = ws.parquet_csv("tiny", "summary.csv");
    let (notes, low) = (strings(&summary, "note"), floats(&summary, "ci_low"));
    for (note, low) in notes.iter().zip(low) {
        if note.contains("the 2 values tie: no interval estimable") {
            assert!(low.is_nan(), "{summary}");
        } else {
            assert!(
                note.contains("bootstrap CI unreliable below 5 seeds"),
                "{summary}"
            );
        }
    }
    assert!(
        strings(&c, "note")[i].contains("bootstrap CI unreliable below 5 pairs"),
        "{c}"
    );
    // A power line per comparison with spread: the seeds a 1-point effect needs.
    let seeds = floats(&c, "seeds_for_1_point")[i];
    assert!(seeds >= 2.0, "{c}");
    // ... and what it needs if the spread, estimated from 2 pairs, is at the top of its
    // interval, flagged as a rough guide.
    let high = floats(&c, "seeds_for_1_point_high")[i];
    assert!(high > seeds, "{c}");
    assert!(
        report.contains("to see a 1-point effect at this spread (std of differences")
            && report.contains(&format!(
                "use ≥ {seeds} seeds, or ≥ {high} if the spread is at the top of its 95% interval \
                 (paired t-test, 80% power"
            ))
            && report.contains("the spread rests on 2 pairs: a rough guide"),
        "{report}"
    );
    // Every comparison names its setting.
    assert!(
        report.contains("- teacher > student vs student (T=4, alpha=0.5): "),
        "{report}"
    );
}

#[test]
fn seed_roles_compare_each_source_within_its_cell_seed() {
    // Two cell seeds, three init seeds each, data order and augmentation at the cell seed: the
    // init row pools the spread within each cell seed; no order or augment row, since the grid
    // never varies them alone.
    let text = TINY
        .replace("seed = [0, 1]", "seed = [0, 1]\ninit-seed = { range = [0, 3] }")
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
            "chains = [[\"student\"]]",
        )
        .replace("epochs = 4", "epochs = 2");
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let v = ws.parquet_csv("tiny", "variance.csv");
    assert_eq!(strings(&v, "source"), vec!["all", "init"], "{v}");
    assert_eq!(floats(&v, "n"), vec![2.0, 6.0], "{v}");
    assert_eq!(floats(&v, "cells"), vec![1.0, 2.0], "{v}");
    let summary = ws.parquet_csv("tiny", "summary.csv");
    let sources: std::collections::BTreeSet<String> =
        strings(&summary, "source").into_iter().collect();
    assert_eq!(
        sources,
        ["all", "init"].map(String::from).into(),
        "{summary}"
    );
    // The init row's std from its definition: squared deviations from each cell seed's own
    // mean, over n - cells = 4 degrees of freedom.
    let runs = ws.parquet("tiny", "runs.parquet");
    let (seed, acc) = (floats(&runs, "seed"), floats(&runs, "test_accuracy"));
    let mut squares = 0.0;
    for cell in [0.0, 1.0] {
        let xs: Vec<f64> = (0..acc.len())
            .filter(|&i| seed[i] == cell)
            .map(|i| acc[i])
            .collect();
        assert_eq!(xs.len(), 3, "{runs}");
        let m = xs.iter().sum::<f64>() / 3.0;
        squares += xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
    }
    let pooled = (squares / 4.0).sqrt();
    assert!(
        (floats(&v, "std")[1] - pooled).abs() < 1e-12,
        "{pooled} vs {v}"
    );
    // scipy recomputes the cells, the pooled spread and its chi-square interval.
    scipy_agrees(&ws.results().join("tiny"));
}

#[test]
fn stats_skips_failed_and_empty_cells_and_refuses_nan_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let kdgrid = || assert_cmd::Command::cargo_bin("kdgrid").unwrap();
    let runs = dir.path().join("runs.csv");
    std::fs::write(
        &runs,
        "stage_id,status,test_accuracy\na,ok,0.70\nb,failed,\nc,ok,0.72\nd,skipped,\ne,ok,\n\
         f,ok,0.71\n",
    )
    .unwrap();
    let peer = dir.path().join("peer.txt");
    std::fs::write(&peer, "0.60\n0.62\n0.61\n").unwrap();
    let spec = format!("{}:test_accuracy", runs.display());
    let out = stdout(
        &kdgrid()
            .arg("stats")
            .arg(&spec)
            .arg(&peer)
            .assert()
            .success(),
    );
    // The failed and skipped runs are not accuracies of 0.
    assert!(out.contains(": n 3, mean 0.7100"), "{out}");
    assert!(
        out.contains(
            "skipped 3 of 6 rows (row 2: status `failed`; row 4: status `skipped`; row 5: empty)"
        ),
        "{out}"
    );

    for (text, bad) in [
        ("seed,test_accuracy\n0,0.70\n1,nan\n2,0.71\n", "nan"),
        ("seed,test_accuracy\n0,0.70\n1,inf\n2,0.71\n", "inf"),
    ] {
        std::fs::write(&runs, text).unwrap();
        let err = flat(&stderr(
            &kdgrid().arg("stats").arg(&spec).arg(&peer).assert().code(2),
        ));
        assert!(
            err.contains(&format!(
                "`{}`:`test_accuracy` row 2 (line 3)",
                runs.display()
            )),
            "{bad}: {err}"
        );
        assert!(err.contains("is not a finite number"), "{bad}: {err}");
    }
    std::fs::write(&peer, "0.6\nnan\n").unwrap();
    let err = flat(&stderr(
        &kdgrid().arg("stats").arg(&peer).arg(&peer).assert().code(2),
    ));
    assert!(
        err.contains("line 2: `nan` is not a finite number"),
        "{err}"
    );
}

/// The Python that has scipy: `KDGRID_TORCH_PYTHON` (`make test` sets it to the torch venv's),
/// else `python3` if it can import scipy; `None` (the test says it skipped) otherwise.
fn scipy_python() -> Option<String> {
    if let Ok(p) = std::env::var("KDGRID_TORCH_PYTHON") {
        return Some(p);
    }
    let has = std::process::Command::new("python3")
        .args(["-c", "import scipy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!("skipped: no python3 with scipy (`make test` runs this with the torch venv's)");
    }
    has.then(|| "python3".to_string())
}

/// Requires scipy's recomputation of the tables in `dir` to agree (when scipy is at hand).
fn scipy_agrees(dir: &std::path::Path) {
    if let Some(python) = scipy_python() {
        let out = reference(&python, &[dir.to_path_buf()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Runs `scripts/statistics-reference.py` over `folders`.
fn reference(python: &str, folders: &[std::path::PathBuf]) -> std::process::Output {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/statistics-reference.py");
    std::process::Command::new(python)
        .arg(script)
        .args(folders)
        .output()
        .expect("python runs")
}

#[test]
fn every_committed_study_agrees_with_scipy() {
    let Some(python) = scipy_python() else { return };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let mut folders: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("runs.csv").exists())
        .collect();
    folders.sort();
    assert!(folders.len() >= 2, "{folders:?}");
    let out = reference(&python, &folders);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_scipy_reference_catches_an_edited_cell() {
    let Some(python) = scipy_python() else { return };
    let ws = Workspace::new(TINY);
    ws.kdgrid(&["run", "--quiet"]).success();
    let dir = ws.results().join("tiny");
    let out = reference(&python, std::slice::from_ref(&dir));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("agree with scipy"), "{text}");
    // One mean of summary.csv, 0.01 off.
    let path = dir.join("summary.csv");
    let summary = std::fs::read_to_string(&path).unwrap();
    let line = summary.lines().nth(1).unwrap().to_string();
    let mut cells: Vec<String> = line.split(',').map(String::from).collect();
    cells[9] = format!("{}", cells[9].parse::<f64>().unwrap() + 0.01);
    std::fs::write(&path, summary.replace(&line, &cells.join(","))).unwrap();
    let out = reference(&python, std::slice::from_ref(&dir));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "summary.csv row 1 (student | student |  |  | all | test_accuracy) column `mean`"
        ),
        "{text}"
    );
}

#[test]
fn the_power_rule_reaches_its_power_in_a_simulation() {
    // The upper-bound recommendation must reach 80% power in >= 95% of simulated pilot studies;
    // the script prints how rarely the point estimate does.
    let Some(python) = scipy_python() else { return };
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/statistics-reference.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg("--simulate-power")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines between `<!-- quote: FILE -->` and `<!-- /quote -->` in `doc`, by quoted file.
fn quotes(doc: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut open = false;
    for line in doc.lines() {
        let t = line.trim();
        if let Some(file) = t
            .strip_prefix("<!-- quote:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            out.push((file.trim().to_string(), Vec::new()));
            open = true;
        } else if t == "<!-- /quote -->" {
            open = false;
        } else if open && !t.is_empty() {
            out.last_mut().unwrap().1.push(line.to_string());
        }
    }
    assert!(!open, "a quote block is not closed");
    out
}

#[test]
fn readme_and_docs_quote_the_committed_reports_verbatim() {
    // Numbers in prose drift from the tables at the next regeneration: every quoted line must
    // be a line of the committed file it names.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    docs.extend(
        std::fs::read_dir(root.join("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut stale = Vec::new();
    let mut readme_quotes_default = false;
    for doc in &docs {
        for (file, lines) in quotes(&std::fs::read_to_string(doc).unwrap()) {
            let source = std::fs::read_to_string(root.join(&file))
                .unwrap_or_else(|e| panic!("{}: quotes {file}: {e}", doc.display()));
            let have: std::collections::HashSet<&str> = source.lines().collect();
            readme_quotes_default |=
                doc.ends_with("README.md") && file == "results/default/report.md";
            assert!(
                !lines.is_empty(),
                "{}: empty quote of {file}",
                doc.display()
            );
            for l in lines.iter().filter(|l| !have.contains(l.as_str())) {
                stale.push(format!("{}: not in {file}: {l}", doc.display()));
            }
        }
    }
    assert!(
        readme_quotes_default,
        "README.md quotes results/default/report.md"
    );
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

#[test]
fn stats_seeds_its_bootstrap_from_the_data_and_reads_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    let a: Vec<String> = (0..4).map(|i| format!("0.8{i}")).collect();
    let b = ["0.79", "0.815", "0.80"];
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // A spreadsheet export: a byte order mark before the first number.
    let pa = write("a.txt", format!("\u{feff}{}\n", a.join("\n")));
    let pa2 = write("renamed.txt", a.join("\n"));
    let pb = write("b.txt", b.join("\n"));
    let run = |x: &std::path::Path, labels: &str| {
        stdout(
            &assert_cmd::Command::cargo_bin("kdgrid")
                .unwrap()
                .arg("stats")
                .arg(x)
                .arg(&pb)
                .args(["--labels", labels])
                .assert()
                .success(),
        )
    };
    let (one, two) = (run(&pa, "left,right"), run(&pa2, "left,right"));
    assert_eq!(one, two, "same data, other file name and BOM");
    let other = run(&pa, "kdgrid,paper");
    assert_eq!(
        one.replace("left", "kdgrid").replace("right", "paper"),
        other,
        "same data under other labels"
    );
    // 4 and 3 values: the bootstrap intervals are flagged.
    assert_eq!(
        one.matches("(unreliable below 5 values per side)").count(),
        2,
        "{one}"
    );
    // A CSV export with a byte order mark before its header names the same column.
    let rows: Vec<String> = a
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{i},{v}\n"))
        .collect();
    let csv = write(
        "runs.csv",
        format!("\u{feff}seed,test_accuracy\n{}", rows.concat()),
    );
    let spec = format!("{}:test_accuracy", csv.display());
    let from_csv = run(std::path::Path::new(&spec), "left,right");
    assert_eq!(from_csv, one, "the same values from a table");
}
