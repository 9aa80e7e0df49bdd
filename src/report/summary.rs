//! The `summary` table: seed statistics per group, source of randomness and metric.

use super::stats::{self, Describe};
use super::study::{Group, RowKey, Run, samples, with_key_columns};
use crate::store::Status;
use polars::prelude::*;

/// A metric the summary describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Test accuracy at the selected epoch.
    Test,
    /// Test accuracy at the last epoch (when selection picked another).
    LastTest,
    /// Validation accuracy at the selected epoch.
    Val,
}

impl Metric {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Test => "test_accuracy",
            Metric::LastTest => "last_test_accuracy",
            Metric::Val => "val_accuracy",
        }
    }

    /// The run's value.
    pub fn of(self, r: &Run) -> Option<f64> {
        match self {
            Metric::Test => r.accuracy(),
            Metric::LastTest => r.last_accuracy(),
            Metric::Val => r.val_accuracy(),
        }
    }
}

/// The metrics worth a row for `group`: the last epoch only when selection kept another one
/// (not for an imported model or an ensemble, whose one evaluation is epoch 0), validation
/// only when there is a split.
fn metrics(group: &Group) -> Vec<Metric> {
    let mut m = vec![Metric::Test];
    if group.runs.iter().any(|r| {
        let last = r.record.epochs.last().map(|e| e.epoch);
        r.record
            .selected_epoch
            .is_some_and(|e| last.is_some_and(|l| l > 0 && l != e))
    }) {
        m.push(Metric::LastTest);
    }
    if group.runs.iter().any(|r| r.val_accuracy().is_some()) {
        m.push(Metric::Val);
    }
    m
}

/// One row of the summary.
#[derive(Debug, Clone)]
pub struct Row {
    /// Group and source of randomness.
    pub key: RowKey,
    /// Metric.
    pub metric: &'static str,
    /// Runs that failed.
    pub failed: u32,
    /// Runs skipped because their teacher failed.
    pub skipped: u32,
    /// The statistics, when a run finished; the t interval cut to [0, 1].
    pub stats: Option<Describe>,
    /// What could not be computed, what was cut, and why.
    pub note: Option<String>,
}

/// Cuts the t interval of an accuracy to [0, 1], saying where it was cut: a bound beyond
/// would read as a reachable accuracy.
fn bounded(stats: &mut Describe) -> Vec<&'static str> {
    let mut cut = Vec::new();
    if let Some((lo, hi)) = &mut stats.ci_t {
        if *lo < 0.0 {
            *lo = 0.0;
            cut.push("t interval cut at 0");
        }
        if *hi > 1.0 {
            *hi = 1.0;
            cut.push("t interval cut at 1");
        }
    }
    cut
}

/// Every summary row of `groups`.
pub fn rows(groups: &[Group]) -> Vec<Row> {
    let mut out = Vec::new();
    for g in groups {
        for sample in samples(g) {
            let runs: Vec<&Run> = sample.runs().collect();
            let source = sample.source.as_str();
            let count = |s: Status| runs.iter().filter(|r| r.record.status == s).count() as u32;
            for metric in metrics(g) {
                let values: Vec<f64> = runs.iter().filter_map(|r| metric.of(r)).collect();
                let label = format!("{} {} {}", g.key(), source, metric.as_str());
                let mut stats = stats::describe(&values, &label);
                let mut notes = vec![match values.len() {
                    0 => Some("no finished run".to_string()),
                    1 => Some("one seed: no spread or interval".to_string()),
                    n if stats.as_ref().is_some_and(Describe::ties) => {
                        Some(format!("the {n} values tie: no interval estimable"))
                    }
                    n if stats::bootstrap_unreliable(n) => Some(format!(
                        "bootstrap CI unreliable below {} seeds",
                        stats::BOOTSTRAP_MIN_N
                    )),
                    _ => None,
                }];
                if let Some(s) = &mut stats {
                    notes.extend(bounded(s).into_iter().map(|c| Some(c.to_string())));
                }
                let notes: Vec<String> = notes.into_iter().flatten().collect();
                out.push(Row {
                    key: g.row_key(source),
                    metric: metric.as_str(),
                    failed: count(Status::Failed),
                    skipped: count(Status::Skipped),
                    stats,
                    note: (!notes.is_empty()).then(|| notes.join("; ")),
                });
            }
        }
    }
    out
}

/// The summary as a frame.
pub fn frame(rows: &[Row]) -> PolarsResult<DataFrame> {
    let s = |f: fn(&Describe) -> Option<f64>| -> Vec<Option<f64>> {
        rows.iter().map(|r| r.stats.as_ref().and_then(f)).collect()
    };
    let keys: Vec<&RowKey> = rows.iter().map(|r| &r.key).collect();
    let rest = df![
        "metric" => rows.iter().map(|r| r.metric).collect::<Vec<_>>(),
        "n" => rows.iter().map(|r| r.stats.as_ref().map_or(0, |s| s.n as u32)).collect::<Vec<_>>(),
        "failed" => rows.iter().map(|r| r.failed).collect::<Vec<_>>(),
        "skipped" => rows.iter().map(|r| r.skipped).collect::<Vec<_>>(),
        "mean" => s(|d| Some(d.mean)),
        "std" => s(|d| d.std),
        "sem" => s(|d| d.sem),
        "ci_low" => s(|d| d.ci_t.map(|c| c.0)),
        "ci_high" => s(|d| d.ci_t.map(|c| c.1)),
        "boot_low" => s(|d| d.ci_boot.map(|c| c.0)),
        "boot_high" => s(|d| d.ci_boot.map(|c| c.1)),
        "median" => s(|d| Some(d.median)),
        "min" => s(|d| Some(d.min)),
        "max" => s(|d| Some(d.max)),
        "range" => s(|d| Some(d.max - d.min)),
        "note" => rows.iter().map(|r| r.note.as_deref()).collect::<Vec<_>>(),
    ]?;
    with_key_columns(&keys, rest)
}
