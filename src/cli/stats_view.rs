//! `kdgrid stats A B`: two samples of a metric (kdgrid's accuracies and another framework's, two
//! results folders, a paper's reported runs) described and compared with the report layer's
//! statistics.

use super::Failure;
use crate::report::stats;
use polars::prelude::*;
use std::path::Path;

fn fail(message: String) -> Failure {
    Failure {
        report: miette::miette!("{message}"),
        code: 2,
    }
}

/// A cell's text as a finite number; `where_` names it in the error.
fn finite(text: &str, where_: impl Fn() -> String) -> Result<f64, Failure> {
    let v = text
        .trim()
        .parse::<f64>()
        .map_err(|_| fail(format!("{}: `{}` is not a number", where_(), text.trim())))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(fail(format!(
            "{}: `{}` is not a finite number",
            where_(),
            text.trim()
        )))
    }
}

/// Reads column `column` of CSV table `file`: rows whose `status` (when the table has one) is
/// not `ok` and empty cells are left out and listed in the returned note; a cell that is not a
/// finite number is an error naming its row.
fn csv_sample(file: &str, column: &str) -> Result<(Vec<f64>, Option<String>), Failure> {
    let df = std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            let text = without_bom(&bytes).to_vec();
            CsvReader::new(std::io::Cursor::new(text))
                .finish()
                .map_err(|e| e.to_string())
        })
        .map_err(|e| fail(format!("cannot read `{file}`: {e}")))?;
    let col = df.column(column).map_err(|_| {
        fail(format!(
            "`{file}` has no column `{column}`; it has {:?}",
            df.get_column_names()
        ))
    })?;
    // Every cell as text (numbers print back exactly), so one path checks them all.
    let cells = col
        .cast(&DataType::String)
        .map_err(|e| fail(format!("`{file}`:`{column}` is not numeric: {e}")))?;
    let cells = cells.str().expect("cast to string");
    let status = df.column("status").ok().and_then(|c| c.str().ok().cloned());
    let (mut values, mut left_out) = (Vec::new(), Vec::new());
    for (i, cell) in cells.iter().enumerate() {
        let row = || format!("`{file}`:`{column}` row {} (line {})", i + 1, i + 2);
        match status.as_ref().and_then(|s| s.get(i)) {
            Some(st) if st != "ok" => left_out.push(format!("row {}: status `{st}`", i + 1)),
            _ => match cell.map(str::trim).filter(|c| !c.is_empty()) {
                None => left_out.push(format!("row {}: empty", i + 1)),
                Some(c) => values.push(finite(c, row)?),
            },
        }
    }
    let note = (!left_out.is_empty()).then(|| {
        const SHOWN: usize = 10;
        let more = left_out.len().saturating_sub(SHOWN);
        format!(
            "`{file}`:`{column}`: skipped {} of {} rows ({}{})",
            left_out.len(),
            df.height(),
            left_out[..left_out.len().min(SHOWN)].join("; "),
            if more > 0 {
                format!("; {more} more")
            } else {
                String::new()
            }
        )
    });
    Ok((values, note))
}

/// `bytes` without a leading UTF-8 byte order mark (spreadsheet exports write one; it would
/// otherwise read as an invisible character in the first number or column name).
fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes)
}

/// Reads a sample: `FILE.csv:COLUMN` (a column of a CSV table, e.g. `runs.csv:test_accuracy`)
/// or a file of numbers, one per line; with a note on what was left out.
fn sample(spec: &str) -> Result<(Vec<f64>, Option<String>), Failure> {
    if let Some((file, column)) = spec.rsplit_once(':').filter(|(f, _)| f.ends_with(".csv")) {
        return csv_sample(file, column);
    }
    let text = std::fs::read_to_string(Path::new(spec))
        .map_err(|e| fail(format!("cannot read `{spec}`: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let values = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| finite(l, || format!("`{spec}` line {}", i + 1)))
        .collect::<Result<_, _>>()?;
    Ok((values, None))
}

/// Prints both samples' statistics and their unpaired comparison.
pub(super) fn stats(a: &str, b: &str, labels: Option<&str>) -> Result<(), Failure> {
    let ((xa, note_a), (xb, note_b)) = (sample(a)?, sample(b)?);
    for note in [note_a, note_b].into_iter().flatten() {
        println!("{note}");
    }
    let (la, lb) = labels
        .and_then(|l| l.split_once(','))
        .map_or((a.to_string(), b.to_string()), |(x, y)| {
            (x.to_string(), y.to_string())
        });
    let interval = |i: Option<stats::Interval>| {
        i.map_or_else(|| "-".to_string(), |(lo, hi)| format!("[{lo:.4}, {hi:.4}]"))
    };
    // Resamples are seeded by the values, not by names: the same data gives the same bounds
    // whatever the files or `--labels` are called.
    for (label, xs) in [(&la, &xa), (&lb, &xb)] {
        let Some(d) = stats::describe(xs, &stats::data_label(&[xs])) else {
            return Err(Failure {
                report: miette::miette!("`{label}` has no values"),
                code: 2,
            });
        };
        let tie = if d.ties() {
            format!(" (the {} values tie: no interval estimable)", d.n)
        } else {
            String::new()
        };
        println!(
            "{label}: n {}, mean {:.4}, std {}, 95% CI (t) {}, min {:.4}, max {:.4}{tie}",
            d.n,
            d.mean,
            d.std.map_or_else(|| "-".into(), |s| format!("{s:.4}")),
            interval(d.ci_t),
            d.min,
            d.max
        );
    }
    let u = stats::unpaired(&xa, &xb, &stats::data_label(&[&xa, &xb])).expect("both non-empty");
    let unreliable = if u.ci_boot.is_some() && stats::bootstrap_unreliable(xa.len().min(xb.len())) {
        format!(
            " (unreliable below {} values per side)",
            stats::BOOTSTRAP_MIN_N
        )
    } else {
        String::new()
    };
    println!(
        "{la} - {lb}: {:+.4}, 95% CI (Welch t) {}, 95% CI (bootstrap) {}{unreliable}, {} (Welch)",
        u.mean,
        interval(u.ci_t),
        interval(u.ci_boot),
        u.p_welch.map_or_else(|| "p -".into(), stats::format_p)
    );
    let unreliable_p = if u.p_improve_ci.is_some() {
        unreliable.as_str()
    } else {
        ""
    };
    println!(
        "P({la} > {lb}) = {:.2}, 95% CI (bootstrap) {}{unreliable_p}",
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
