//! The `summary` table: seed statistics per group, source of randomness and metric.

use super::stats::{self, Describe};
use super::study::{Group, RowKey, Run, samples, with_key_columns};
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
    /// Runs that did not finish.
    pub failed: u32,
    /// The statistics, when a run finished.
    pub stats: Option<Describe>,
    /// What could not be computed, and why.
    pub note: Option<String>,
}

/// Every summary row of `groups`.
pub fn rows(groups: &[Group]) -> Vec<Row> {
    let mut out = Vec::new();
    for g in groups {
        for (source, runs) in samples(g) {
            for metric in metrics(g) {
                let values: Vec<f64> = runs.iter().filter_map(|r| metric.of(r)).collect();
                let failed = runs.iter().filter(|r| !r.ok()).count() as u32;
                let label = format!("{} {} {}", g.key(), source.as_str(), metric.as_str());
                let stats = stats::describe(&values, &label);
                let note = match values.len() {
                    0 => Some("no finished run".to_string()),
                    1 => Some("one seed: no spread or interval".to_string()),
                    n if stats::bootstrap_unreliable(n) => Some(format!(
                        "bootstrap CI unreliable below {} seeds",
                        stats::BOOTSTRAP_MIN_N
                    )),
                    _ => None,
                };
                out.push(Row {
                    key: g.row_key(source.as_str()),
                    metric: metric.as_str(),
                    failed,
                    stats,
                    note,
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
