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

    // An unreachable target: every group runs `max` seeds, unless its runs agree exactly.
    let tight = Workspace::new(&adaptive("min = 2, max = 5, ci-half-width = 0.000001"));
    tight.kdgrid(&["run", "--quiet"]).success();
    let runs = tight.parquet("tiny", "runs.parquet");
    let summary = tight.parquet_csv("tiny", "summary.csv");
    let n = floats(&summary, "n");
    let std = floats(&summary, "std");
    assert!(n.contains(&5.0), "{summary}");
    for (n, s) in n.iter().zip(&std) {
        assert!(
            *n == 5.0 || *s == 0.0,
            "stopped early at n = {n} with std {s}"
        );
    }
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
