//! Markdown: `summary.md`, `report.md`, and any frame as a GitHub table (rendered by
//! comfy-table, never by hand).

use super::columns::{floats, strs};
use super::plots::Figure;
use super::stats::quantile;
use super::{Provenance, Tables};
use comfy_table::{Table, presets};
use polars::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// A GitHub Markdown table.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN)
        .set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    format!("{t}\n")
}

/// Text of one cell: floats with 4 decimals, settings as written, nulls blank, `|` escaped.
fn cell(value: AnyValue, name: &str) -> String {
    let metric = !matches!(name, "temperature" | "alpha");
    match value {
        AnyValue::Null => String::new(),
        AnyValue::Float64(v) if metric => format!("{v:.4}"),
        AnyValue::Float64(v) => v.to_string(),
        AnyValue::Float32(v) => format!("{v:.4}"),
        AnyValue::String(s) => s.replace('|', "\\|"),
        AnyValue::StringOwned(s) => s.replace('|', "\\|"),
        other => other.to_string(),
    }
}

/// Renders any frame as a Markdown table.
pub fn to_markdown(df: &DataFrame) -> String {
    let header: Vec<&str> = df.columns().iter().map(|c| c.name().as_str()).collect();
    let rows = (0..df.height())
        .map(|i| {
            df.columns()
                .iter()
                .map(|c| cell(c.get(i).unwrap_or(AnyValue::Null), c.name()))
                .collect()
        })
        .collect();
    table(&header, rows)
}

/// `timings.md`: each chain's model, its size and its measured speed (medians over the seeds
/// that trained), so a study's KD and no-KD students compare on accuracy (report.md), size and
/// latency. Measurements: written next to the tables, never checked.
pub fn timings(p: &Provenance, tables: &Tables) -> PolarsResult<String> {
    let t = &tables.timings;
    let (stage, chain, model) = (strs(t, "stage_id"), strs(t, "chain"), strs(t, "model"));
    let speeds =
        ["latency_ms_batch1", "latency_ms_batch256", "train_seconds"].map(|c| floats(t, c));
    let runs = &tables.runs;
    let sizes: HashMap<String, (Option<f64>, Option<f64>)> = strs(runs, "stage_id")
        .into_iter()
        .zip(
            floats(runs, "params")
                .into_iter()
                .zip(floats(runs, "model_bytes")),
        )
        .collect();
    // Groups in order of first appearance, as the tables list stages in plan order.
    let mut groups: Vec<((&str, &str), Vec<usize>)> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for i in 0..t.height() {
        let key = (chain[i].as_str(), model[i].as_str());
        let g = *index.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let size = |rows: &[usize]| sizes.get(&stage[rows[0]]).copied().unwrap_or_default();
    let median = |col: &[Option<f64>], rows: &[usize]| {
        let mut xs: Vec<f64> = rows.iter().filter_map(|&i| col[i]).collect();
        xs.sort_by(f64::total_cmp);
        quantile(&xs, 0.5)
    };
    let df = df![
        "chain" => groups.iter().map(|((c, _), _)| *c).collect::<Vec<_>>(),
        "model" => groups.iter().map(|((_, m), _)| *m).collect::<Vec<_>>(),
        "runs" => groups.iter().map(|(_, r)| r.len() as u32).collect::<Vec<_>>(),
        "params" => groups.iter().map(|(_, r)| size(r).0.map(|v| v as u64)).collect::<Vec<_>>(),
        "weights_kib" => groups.iter().map(|(_, r)| size(r).1.map(|b| b / 1024.0)).collect::<Vec<_>>(),
        "latency_ms_batch1" => groups.iter().map(|(_, r)| median(&speeds[0], r)).collect::<Vec<_>>(),
        "latency_ms_batch256" => groups.iter().map(|(_, r)| median(&speeds[1], r)).collect::<Vec<_>>(),
        "train_seconds" => groups.iter().map(|(_, r)| median(&speeds[2], r)).collect::<Vec<_>>(),
    ]?;
    Ok(format!(
        "# {}: size and speed\n\nPer chain and model, over the runs that trained: parameters, \
         weights file, median inference milliseconds per image at batch 1 and 256, median \
         training seconds. Wall-clock measurements on `{}` (from `timings.csv`): they vary \
         between runs and machines, unlike report.md.\n\n{}",
        p.experiment,
        strs(t, "processor").first().map_or("", String::as_str),
        to_markdown(&df)
    ))
}

fn f4(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.4}"))
}

fn setting(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn interval(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(l), Some(h)) => format!("[{l:.4}, {h:.4}]"),
        _ => String::new(),
    }
}

/// The test-accuracy rows of the summary with their intervals.
pub(super) fn accuracy_table(s: &DataFrame) -> String {
    let metric = strs(s, "metric");
    let (chain, model, source, note) = (
        strs(s, "chain"),
        strs(s, "model"),
        strs(s, "source"),
        strs(s, "note"),
    );
    let [
        t,
        a,
        n,
        failed,
        skipped,
        mean,
        std,
        lo,
        hi,
        blo,
        bhi,
        min,
        max,
    ] = [
        "temperature",
        "alpha",
        "n",
        "failed",
        "skipped",
        "mean",
        "std",
        "ci_low",
        "ci_high",
        "boot_low",
        "boot_high",
        "min",
        "max",
    ]
    .map(|c| floats(s, c));
    let show_source = source.iter().any(|x| x != "all");
    let rows = (0..s.height())
        .filter(|&i| metric[i] == "test_accuracy")
        .map(|i| {
            let mut r = vec![
                chain[i].clone(),
                model[i].clone(),
                setting(t[i]),
                setting(a[i]),
            ];
            if show_source {
                r.push(source[i].clone());
            }
            let others: Vec<String> = [(failed[i], "failed"), (skipped[i], "skipped")]
                .into_iter()
                .filter_map(|(k, what)| k.filter(|k| *k > 0.0).map(|k| format!("+{k} {what}")))
                .collect();
            let n_text = if others.is_empty() {
                format!("{}", n[i].unwrap_or(0.0))
            } else {
                format!("{} ({})", n[i].unwrap_or(0.0), others.join(", "))
            };
            r.extend([
                n_text,
                f4(mean[i]),
                interval(lo[i], hi[i]),
                interval(blo[i], bhi[i]),
                f4(std[i]),
                f4(min[i]),
                f4(max[i]),
                note[i].clone(),
            ]);
            r
        })
        .collect();
    let mut header = vec!["chain", "model", "T", "alpha"];
    if show_source {
        header.push("source");
    }
    header.extend([
        "n",
        "mean",
        "95% CI (t)",
        "95% CI (bootstrap)",
        "std",
        "min",
        "max",
        "note",
    ]);
    table(&header, rows)
}

/// `summary.md`: the accuracy table under a title.
pub fn summary(p: &Provenance, tables: &Tables) -> String {
    format!(
        "# {}\n\nTest accuracy over seeds, per chain, model, temperature and alpha (each run's \
         selected epoch: the last unless the manifest's `select` says otherwise; failed runs \
         excluded and counted). Intervals are 95%: Student t and percentile bootstrap \
         ({} resamples, seeded).\n\n{}",
        p.experiment,
        super::stats::RESAMPLES,
        accuracy_table(&tables.summary)
    )
}

fn variance_table(v: &DataFrame) -> String {
    let (chain, source) = (strs(v, "chain"), strs(v, "source"));
    let [t, a, n, cells, std, lo, hi, range, p1, pairs] = [
        "temperature",
        "alpha",
        "n",
        "cells",
        "std",
        "std_low",
        "std_high",
        "range",
        "p_gap_1_point",
        "pairs_gap_1_point",
    ]
    .map(|c| floats(v, c));
    let pct = |x: Option<f64>| x.map_or_else(String::new, |x| format!("{:.2}", x * 100.0));
    let rows = (0..v.height())
        .map(|i| {
            vec![
                chain[i].clone(),
                setting(t[i]),
                setting(a[i]),
                source[i].clone(),
                match cells[i] {
                    Some(c) if c > 1.0 => format!("{} ({c} cell seeds)", n[i].unwrap_or(0.0)),
                    _ => format!("{}", n[i].unwrap_or(0.0)),
                },
                pct(std[i]),
                match (lo[i], hi[i]) {
                    (Some(l), Some(h)) => format!("[{}, {}]", pct(Some(l)), pct(Some(h))),
                    _ => String::new(),
                },
                pct(range[i]),
                p1[i].map_or_else(String::new, |p| format!("{p:.2}")),
                pairs[i].map_or_else(String::new, |p| format!("{p:.2}")),
            ]
        })
        .collect();
    table(
        &[
            "chain",
            "T",
            "alpha",
            "source",
            "n",
            "std (points)",
            "95% CI of std",
            "max - min (points)",
            "P(two seeds differ >= 1 point)",
            "pairs differing >= 1 point",
        ],
        rows,
    )
}

/// The gap-closed cell of each KD-vs-no-KD comparison, keyed by chain, T and alpha: the ratio
/// of the mean differences, or why there is none.
fn gaps(c: &DataFrame) -> HashMap<(String, String, String), String> {
    let (kind, chain) = (strs(c, "kind"), strs(c, "chain_a"));
    let [t, a, gain, gain_low, closed, lo, hi] = [
        "temperature",
        "alpha",
        "teacher_gain",
        "teacher_gain_low",
        "gap_closed",
        "gap_low",
        "gap_high",
    ]
    .map(|n| floats(c, n));
    let pct = |v: f64| format!("{:+.0}%", v * 100.0);
    (0..c.height())
        .filter(|&i| kind[i] == "kd-vs-nokd")
        .filter_map(|i| {
            let text = match (closed[i], gain[i], gain_low[i]) {
                (Some(g), _, _) => match (lo[i], hi[i]) {
                    (Some(l), Some(h)) => format!("{} [{}, {}]", pct(g), pct(l), pct(h)),
                    _ => pct(g),
                },
                (None, Some(g), _) if g <= 0.0 => "none: teacher not better".to_string(),
                (None, Some(_), None) => "none: teacher's lead has no interval".to_string(),
                (None, Some(_), Some(_)) => "none: teacher's lead within noise".to_string(),
                _ => return None,
            };
            Some(((chain[i].clone(), setting(t[i]), setting(a[i])), text))
        })
        .collect()
}

/// Per group: mean agreement with the teacher, KL to it, calibration, gap closed, size.
fn distillation_table(tables: &Tables) -> String {
    let runs = &tables.runs;
    let gaps = gaps(&tables.comparisons);
    let (chain, model, status) = (
        strs(runs, "chain"),
        strs(runs, "model"),
        strs(runs, "status"),
    );
    let [params, bytes, ece, agree, kl, t, a] = [
        "params",
        "model_bytes",
        "ece",
        "agreement",
        "kl_teacher",
        "temperature",
        "alpha",
    ]
    .map(|c| floats(runs, c));
    // Finished runs by (chain, model, temperature, alpha), keys in order of first appearance.
    type Key = (String, String, String, String);
    let mut keys: Vec<(Key, Vec<usize>)> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    for i in 0..runs.height() {
        if status[i] != "ok" {
            continue;
        }
        let k = (
            chain[i].clone(),
            model[i].clone(),
            setting(t[i]),
            setting(a[i]),
        );
        let g = *index.entry(k.clone()).or_insert_with(|| {
            keys.push((k, Vec::new()));
            keys.len() - 1
        });
        keys[g].1.push(i);
    }
    let rows = keys
        .into_iter()
        .map(|(k, idx)| {
            let mean = |v: &[Option<f64>]| {
                let xs: Vec<f64> = idx.iter().filter_map(|&i| v[i]).collect();
                super::stats::mean(&xs)
            };
            let gap = gaps
                .get(&(k.0.clone(), k.2.clone(), k.3.clone()))
                .cloned()
                .unwrap_or_default();
            vec![
                k.0,
                k.1,
                k.2,
                k.3,
                idx.first()
                    .and_then(|&i| params[i])
                    .map_or_else(String::new, |p| format!("{p:.0}")),
                idx.first()
                    .and_then(|&i| bytes[i])
                    .map_or_else(String::new, |b| format!("{:.0} KiB", b / 1024.0)),
                f4(mean(&ece)),
                f4(mean(&agree)),
                f4(mean(&kl)),
                gap,
            ]
        })
        .collect();
    table(
        &[
            "chain",
            "model",
            "T",
            "alpha",
            "params",
            "weights",
            "ECE",
            "agreement with teacher",
            "KL(teacher ‖ model)",
            "gap closed",
        ],
        rows,
    )
}

/// `report.md`: what the study is, its numbers with intervals, the comparisons in words, the
/// spread per source, the figures and the provenance.
pub fn report(p: &Provenance, tables: &Tables, figures: &[Figure], dir: &Path) -> String {
    let mut out = format!("# {}\n\n", p.experiment);
    if let Some(d) = &p.description {
        out.push_str(&format!("{d}\n\n"));
    }
    let runs = &tables.runs;
    let status = strs(runs, "status");
    let count = |s: &str| status.iter().filter(|x| *x == s).count();
    out.push_str(&format!(
        "{} stages: {} finished, {} failed, {} skipped (teacher failed).\n\n",
        runs.height(),
        count("ok"),
        count("failed"),
        count("skipped")
    ));
    out.push_str("## Test accuracy over seeds\n\n");
    out.push_str(&format!(
        "Each run's selected epoch; 95% intervals of the mean: Student t and percentile \
         bootstrap ({} resamples, seeded). See kdgrid's `docs/statistics.md` for what each \
         number means and when it is valid.\n\n",
        super::stats::RESAMPLES
    ));
    out.push_str(&accuracy_table(&tables.summary));
    if let Some(a) = p.adaptive {
        out.push_str(&format!(
            "\nSeeds were added to each group in order until the 95% t interval of its mean was \
             narrower than ±{} (at least {}, at most {} seeds): `n` is the number of seeds each \
             group needed; a group with n = {} stopped at the maximum, not at the target.\n",
            a.ci_half_width, a.min, a.max, a.max
        ));
    }
    out.push_str("\n## Comparisons\n\n");
    if tables.sentences.is_empty() {
        out.push_str("The study has no distilled chain with a baseline to compare against.\n");
    } else {
        out.push_str(
            "Differences in test accuracy points (a - b) with their 95% t interval; paired by \
             seed where the plan gives both runs the same init and data order.\n\n",
        );
        for (s, power) in tables.sentences.iter().zip(&tables.power_lines) {
            out.push_str(&format!("- {s}\n"));
            if let Some(p) = power {
                out.push_str(&format!("  - {p}\n"));
            }
        }
        out.push_str(
            "\nA difference whose interval contains zero is not evidence of no effect: with few \
             seeds, the interval says how large an effect the study could have missed.\n",
        );
    }
    out.push_str("\n## Where the spread comes from\n\n");
    if tables.variance.height() == 0 {
        out.push_str("No group has two finished seeds: no spread to report.\n");
    } else {
        out.push_str(&variance_table(&tables.variance));
    }
    out.push_str("\n## Models and distillation\n\n");
    out.push_str(&distillation_table(tables));
    out.push_str(
        "\nECE: expected calibration error (15 bins). Agreement and KL are measured on the \
         test split against the stage's own teacher. Gap closed: mean(KD - no-KD) / \
         mean(teacher - no-KD) over the seeds with its 95% Fieller interval; none when the \
         teacher's lead over no-KD is not distinguishable from zero (its 95% interval contains \
         zero), where the ratio could be any number. Inference latency is a measurement: see `timings.csv`.\n",
    );
    if !figures.is_empty() {
        out.push_str("\n## Figures\n\n");
        for f in figures {
            let rel = f.png.strip_prefix(dir).unwrap_or(&f.png);
            out.push_str(&format!(
                "### {}\n\n![{}]({})\n\n",
                f.title,
                f.title,
                rel.display()
            ));
        }
    }
    out.push_str("## Provenance\n\n");
    out.push_str(&table(
        &["key", "value"],
        p.pairs()
            .into_iter()
            .map(|(k, v)| vec![format!("`{k}`"), format!("`{v}`")])
            .collect(),
    ));
    out
}
