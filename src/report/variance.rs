//! The `variance` table: how much accuracy moves with each source of randomness, per group —
//! the standard deviation with its interval, the max-min spread over seeds (the "70% vs 74%"
//! view), and the chance that two seeds differ by at least 0.5 and 1 point.

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
    /// Standard deviation of test accuracy.
    pub std: f64,
    /// Its chi-square interval.
    pub std_ci: Option<stats::Interval>,
    /// Max minus min.
    pub range: f64,
    /// Normal-model chance that two seeds differ by >= 0.5 and >= 1 point.
    pub p_gap: [Option<f64>; 2],
    /// Fraction of pairs of these runs that differ by >= 1 point.
    pub pairs_gap_1pt: f64,
}

/// Rows for every group and source with at least two finished runs.
pub fn rows(groups: &[Group]) -> Vec<Row> {
    let mut out = Vec::new();
    for g in groups {
        for (source, runs) in samples(g) {
            let acc: Vec<f64> = runs.iter().filter_map(|r| r.accuracy()).collect();
            let Some(std) = stats::std(&acc) else {
                continue;
            };
            let (min, max) = acc
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &a| {
                    (lo.min(a), hi.max(a))
                });
            let mut pairs = (0usize, 0usize);
            for i in 0..acc.len() {
                for j in i + 1..acc.len() {
                    pairs.0 += ((acc[i] - acc[j]).abs() >= 0.01 - 1e-12) as usize;
                    pairs.1 += 1;
                }
            }
            out.push(Row {
                key: g.row_key(source.as_str()),
                n: acc.len(),
                std,
                std_ci: stats::std_interval(std, acc.len()),
                range: max - min,
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
