//! The `variance` table: how much accuracy moves with each source of randomness, per group —
//! the standard deviation with its interval, the max-min spread over seeds (the "70% vs 74%"
//! view), and the chance that two seeds differ by at least 0.5 and 1 point. A source's runs are
//! compared within their cell seed only (see [`super::study::samples`]): the deviation is
//! pooled over cells, so runs that also differ in another source never inflate it.

use super::stats;
use super::study::{Group, RowKey, samples, with_key_columns};
use polars::prelude::*;

/// One row: one group and one source.
#[derive(Debug, Clone)]
pub struct Row {
    /// Group and source of randomness.
    pub key: RowKey,
    /// Finished runs.
    pub n: usize,
    /// Cells (cell seeds) with 2 finished runs or more that the deviation pools.
    pub cells: usize,
    /// Pooled within-cell standard deviation of test accuracy (`n - cells` degrees of freedom).
    pub std: f64,
    /// Its chi-square interval (`None` when every cell's runs tie).
    pub std_ci: Option<stats::Interval>,
    /// The largest max minus min within a cell.
    pub range: f64,
    /// Normal-model chance that two seeds differ by >= 0.5 and >= 1 point.
    pub p_gap: [Option<f64>; 2],
    /// Fraction of pairs of runs within a cell that differ by >= 1 point.
    pub pairs_gap_1pt: f64,
}

/// Rows for every group and source with a cell of at least two finished runs.
pub fn rows(groups: &[Group]) -> Vec<Row> {
    let mut out = Vec::new();
    for g in groups {
        for sample in samples(g) {
            let cells: Vec<Vec<f64>> = sample
                .cells
                .iter()
                .map(|c| c.iter().filter_map(|r| r.accuracy()).collect::<Vec<_>>())
                .filter(|acc| acc.len() >= 2)
                .collect();
            if cells.is_empty() {
                continue;
            }
            let n: usize = cells.iter().map(Vec::len).sum();
            let df = n - cells.len();
            let squares: f64 = cells
                .iter()
                .map(|acc| {
                    if stats::ties(acc) {
                        return 0.0;
                    }
                    let m = stats::mean(acc).expect("2 values or more");
                    acc.iter().map(|x| (x - m).powi(2)).sum::<f64>()
                })
                .sum();
            let std = (squares / df as f64).sqrt();
            let mut range = 0f64;
            let mut pairs = (0usize, 0usize);
            for acc in &cells {
                let (min, max) = acc
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &a| {
                        (lo.min(a), hi.max(a))
                    });
                range = range.max(max - min);
                for i in 0..acc.len() {
                    for j in i + 1..acc.len() {
                        pairs.0 += ((acc[i] - acc[j]).abs() >= 0.01 - 1e-12) as usize;
                        pairs.1 += 1;
                    }
                }
            }
            out.push(Row {
                key: g.row_key(sample.source.as_str()),
                n,
                cells: cells.len(),
                std,
                std_ci: stats::std_interval(std, df),
                range,
                p_gap: [0.005, 0.01].map(|d| stats::chance_of_gap(std, d)),
                pairs_gap_1pt: pairs.0 as f64 / pairs.1 as f64,
            });
        }
    }
    out
}

/// The rows as a frame.
pub fn frame(rows: &[Row]) -> PolarsResult<DataFrame> {
    let keys: Vec<&RowKey> = rows.iter().map(|r| &r.key).collect();
    let rest = df![
        "n" => rows.iter().map(|r| r.n as u32).collect::<Vec<_>>(),
        "cells" => rows.iter().map(|r| r.cells as u32).collect::<Vec<_>>(),
        "std" => rows.iter().map(|r| r.std).collect::<Vec<_>>(),
        "std_low" => rows.iter().map(|r| r.std_ci.map(|c| c.0)).collect::<Vec<_>>(),
        "std_high" => rows.iter().map(|r| r.std_ci.map(|c| c.1)).collect::<Vec<_>>(),
        "range" => rows.iter().map(|r| r.range).collect::<Vec<_>>(),
        "p_gap_half_point" => rows.iter().map(|r| r.p_gap[0]).collect::<Vec<_>>(),
        "p_gap_1_point" => rows.iter().map(|r| r.p_gap[1]).collect::<Vec<_>>(),
        "pairs_gap_1_point" => rows.iter().map(|r| r.pairs_gap_1pt).collect::<Vec<_>>(),
    ]?;
    with_key_columns(&keys, rest)
}
