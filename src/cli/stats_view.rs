//! `kdgrid stats A B`: two samples of a metric (kdgrid's accuracies and another framework's, two
//! results folders, a paper's reported runs) described and compared with the report layer's
//! statistics.

use super::Failure;
use crate::report::stats;
use polars::prelude::*;
use std::path::Path;

/// Reads a sample: `FILE.csv:COLUMN` (a column of a CSV table, e.g. `runs.csv:test_accuracy`)
/// or a file of numbers, one per line.
fn sample(spec: &str) -> Result<Vec<f64>, Failure> {
    let fail = |message: String| Failure {
        report: miette::miette!("{message}"),
        code: 2,
    };
    if let Some((file, column)) = spec.rsplit_once(':').filter(|(f, _)| f.ends_with(".csv")) {
        let df = std::fs::File::open(file)
            .map_err(|e| e.to_string())
            .and_then(|f| CsvReader::new(f).finish().map_err(|e| e.to_string()))
            .map_err(|e| fail(format!("cannot read `{file}`: {e}")))?;
        let values = df
            .column(column)
            .map_err(|_| {
                fail(format!(
                    "`{file}` has no column `{column}`; it has {:?}",
                    df.get_column_names()
                ))
            })?
            .cast(&DataType::Float64)
            .map_err(|e| fail(format!("`{file}`:`{column}` is not numeric: {e}")))?;
        return Ok(values.f64().expect("cast").into_no_null_iter().collect());
    }
    let text = std::fs::read_to_string(Path::new(spec))
        .map_err(|e| fail(format!("cannot read `{spec}`: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim().parse::<f64>().map_err(|_| {
                fail(format!(
                    "`{spec}` line {}: `{}` is not a number",
                    i + 1,
                    l.trim()
                ))
            })
        })
        .collect()
}

/// Prints both samples' statistics and their unpaired comparison.
pub(super) fn stats(a: &str, b: &str, labels: Option<&str>) -> Result<(), Failure> {
    let (xa, xb) = (sample(a)?, sample(b)?);
    let (la, lb) = labels
        .and_then(|l| l.split_once(','))
        .map_or((a.to_string(), b.to_string()), |(x, y)| {
            (x.to_string(), y.to_string())
        });
    let interval = |i: Option<stats::Interval>| {
        i.map_or_else(|| "-".to_string(), |(lo, hi)| format!("[{lo:.4}, {hi:.4}]"))
    };
    for (label, xs) in [(&la, &xa), (&lb, &xb)] {
        let Some(d) = stats::describe(xs, label) else {
            return Err(Failure {
                report: miette::miette!("`{label}` has no values"),
                code: 2,
            });
        };
        println!(
            "{label}: n {}, mean {:.4}, std {}, 95% CI (t) {}, min {:.4}, max {:.4}",
            d.n,
            d.mean,
            d.std.map_or_else(|| "-".into(), |s| format!("{s:.4}")),
            interval(d.ci_t),
            d.min,
            d.max
        );
    }
    let u = stats::unpaired(&xa, &xb, &format!("{la} vs {lb}")).expect("both non-empty");
    println!(
        "{la} - {lb}: {:+.4}, 95% CI (Welch t) {}, 95% CI (bootstrap) {}, p (Welch) {}",
        u.mean,
        interval(u.ci_t),
        interval(u.ci_boot),
        u.p_welch.map_or_else(|| "-".into(), |p| format!("{p:.3}"))
    );
    println!(
        "P({la} > {lb}) = {:.2}, 95% CI {}",
        u.p_improve,
        interval(u.p_improve_ci)
    );
    let verdict = match u.ci_t {
        Some((lo, hi)) if lo <= 0.0 && 0.0 <= hi => {
            "the interval contains 0: no difference detected at this sample size"
        }
        Some(_) => "the interval excludes 0: the means differ",
        None => "too few values for an interval",
    };
    println!("{verdict}");
    Ok(())
}
