//! `kdgrid diff` and `report --check`: compares the result tables of two folders row by row,
//! joined on their keys (stage id for `runs`, stage and epoch for `epochs`, the group for the
//! statistics), and says what is new, missing or changed, by how much, and whether a change
//! comes with a different backend or processor kind rather than being a regression.

use super::across::{Cells, by_cell, cells, promise};
use super::{ReportError, polars_error};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The result tables compared, with their key columns: every committed table, CSV and
/// Parquet alike (the CSV files are the ones people read and copy). Markdown reports are
/// compared as text.
const TABLES: [(&str, &[&str]); 7] = [
    ("runs.parquet", &["stage_id"]),
    ("runs.csv", &["stage_id"]),
    ("epochs.parquet", &["stage_id", "epoch"]),
    (
        "summary.csv",
        &["chain", "model", "temperature", "alpha", "source", "metric"],
    ),
    (
        "comparisons.parquet",
        &["kind", "chain_a", "chain_b", "temperature", "alpha"],
    ),
    (
        "comparisons.csv",
        &["kind", "chain_a", "chain_b", "temperature", "alpha"],
    ),
    (
        "variance.csv",
        &["chain", "model", "temperature", "alpha", "source"],
    ),
];
const TEXTS: [&str; 2] = ["summary.md", "report.md"];
/// Tables of statistics derived from the runs.
const DERIVED: [&str; 3] = ["comparisons.parquet", "comparisons.csv", "variance.csv"];
/// Tables written twice from one frame: within a folder the CSV must equal its Parquet twin
/// bit for bit, on any processor kind (an edited CSV cell fails even where the runs are only
/// compared within a tolerance).
const TWINS: [(&str, &str); 2] = [
    ("runs.csv", "runs.parquet"),
    ("comparisons.csv", "comparisons.parquet"),
];

/// What a comparison found.
#[derive(Debug, Default)]
pub struct Diff {
    /// Human-readable lines, table by table.
    pub text: String,
    /// Differences beyond the tolerance.
    pub differences: usize,
    /// Numeric differences within the tolerance (reported as equal).
    pub within_tolerance: usize,
    /// The tolerance applied.
    pub tolerance: f64,
}

pub(super) fn read(path: &Path) -> Result<Option<DataFrame>, ReportError> {
    if !path.exists() {
        return Ok(None);
    }
    let file = std::fs::File::open(path).map_err(|source| {
        ReportError::Store(crate::store::StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    })?;
    let df = if path.extension().is_some_and(|e| e == "parquet") {
        ParquetReader::new(file).finish()
    } else {
        // Ids and digests are text even when all their hex digits happen to be decimal.
        let ids = Schema::from_iter(
            ["stage_id", "parent_id", "weights_sha256", "init_sha256"]
                .map(|c| Field::new(c.into(), DataType::String)),
        );
        CsvReadOptions::default()
            .with_schema_overwrite(Some(Arc::new(ids)))
            .into_reader_with_file_handle(file)
            .finish()
    }
    .map_err(polars_error(path))?;
    Ok(Some(df))
}

pub(super) fn text(v: &AnyValue) -> String {
    match v {
        AnyValue::Null => "null".into(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn number(v: &AnyValue) -> Option<f64> {
    v.extract::<f64>().filter(|_| v.is_primitive_numeric())
}

/// Rows of `df` keyed by their key columns' text, and the keys that more than one row holds
/// (with their row count): a duplicated row must not hide behind its key.
fn rows(df: &DataFrame, keys: &[&str]) -> (BTreeMap<String, usize>, Vec<(String, usize)>) {
    let mut out = BTreeMap::new();
    let mut repeated: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..df.height() {
        let k: Vec<String> = keys
            .iter()
            .map(|k| {
                df.column(k)
                    .ok()
                    .and_then(|c| c.get(i).ok())
                    .map_or("?".into(), |v| text(&v))
            })
            .collect();
        let k = k.join(" | ");
        if out.insert(k.clone(), i).is_some() {
            *repeated.entry(k).or_insert(1) += 1;
        }
    }
    (out, repeated.into_iter().collect())
}

pub(super) fn cell<'a>(df: &'a DataFrame, col: &str, i: usize) -> AnyValue<'a> {
    df.column(col)
        .ok()
        .and_then(|c| c.get(i).ok())
        .unwrap_or(AnyValue::Null)
}

/// Columns that differ by construction when two folders were computed differently (other
/// backend or processor kind): digests of final weights, and the labels themselves.
const COMPUTED_BY: [&str; 4] = ["weights_sha256", "processor", "backend", "device"];

/// The distinct `backend/processor` pairs of a folder's runs.
fn computed_by(dir: &Path) -> Result<Vec<String>, ReportError> {
    let Some(runs) = read(&dir.join("runs.parquet"))? else {
        return Ok(Vec::new());
    };
    let col = |c: &str| -> Vec<String> {
        (0..runs.height())
            .map(|i| text(&cell(&runs, c, i)))
            .collect()
    };
    let mut kinds: Vec<String> = col("backend")
        .into_iter()
        .zip(col("processor"))
        .map(|(b, p)| format!("{b}/{p}"))
        .collect();
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

/// How two frames are compared.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Numbers within it count as equal.
    tolerance: f64,
    /// Folders computed on different backends or processors: leave out the columns naming how.
    cross: bool,
    /// A CSV against its Parquet twin: an empty string and a missing value are the same cell.
    twin: bool,
}

/// Compares table `name` of folders `a` and `b`.
fn compare_table(
    name: &str,
    keys: &[&str],
    (a, b): (&Path, &Path),
    mode: Mode,
    cross_cells: Option<&(Cells, Cells)>,
    out: &mut Diff,
) -> Result<(), ReportError> {
    let (ta, tb) = (read(&a.join(name))?, read(&b.join(name))?);
    let (ta, tb) = match (ta, tb) {
        (None, None) => return Ok(()),
        (Some(_), None) | (None, Some(_)) => {
            out.differences += 1;
            let _ = writeln!(
                out.text,
                "{name}: only in {}",
                if read(&a.join(name))?.is_some() {
                    "A"
                } else {
                    "B"
                }
            );
            return Ok(());
        }
        (Some(x), Some(y)) => (x, y),
    };
    let (ta, tb) = match cross_cells {
        Some((ca, cb)) => (by_cell(&ta, ca), by_cell(&tb, cb)),
        None => (ta, tb),
    };
    compare_frames(name, keys, (&ta, &tb), mode, out);
    Ok(())
}

/// Compares a folder's CSV tables with their Parquet twins, bit for bit.
fn compare_twins(dir: &Path, side: &str, out: &mut Diff) -> Result<(), ReportError> {
    for (csv, parquet) in TWINS {
        let (Some(c), Some(p)) = (read(&dir.join(csv))?, read(&dir.join(parquet))?) else {
            continue;
        };
        let keys = TABLES.iter().find(|t| t.0 == csv).map_or(&[][..], |t| t.1);
        let mode = Mode {
            tolerance: 0.0,
            cross: false,
            twin: true,
        };
        compare_frames(
            &format!("{csv} vs {parquet} in {side}"),
            keys,
            (&p, &c),
            mode,
            out,
        );
    }
    Ok(())
}

/// Compares frames `ta` and `tb` row by row, joined on `keys`; columns only one side has are
/// named once.
fn compare_frames(
    name: &str,
    keys: &[&str],
    (ta, tb): (&DataFrame, &DataFrame),
    mode: Mode,
    out: &mut Diff,
) {
    let Mode {
        tolerance,
        cross,
        twin,
    } = mode;
    let ((ra, dup_a), (rb, dup_b)) = (rows(ta, keys), rows(tb, keys));
    let mut lines = Vec::new();
    for (dups, side) in [(&dup_a, "A"), (&dup_b, "B")] {
        for (key, count) in dups {
            lines.push(format!("  ! {count} rows in {side} share the key {key}"));
        }
    }
    let duplicates = dup_a.len() + dup_b.len();
    let mut changed_rows = 0;
    let names = |df: &DataFrame| -> Vec<String> {
        df.get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect()
    };
    let (ca, cb) = (names(ta), names(tb));
    let mut schema = 0;
    for (only, side, other) in [(&ca, "A", &cb), (&cb, "B", &ca)] {
        for c in only.iter().filter(|c| !other.contains(c)) {
            schema += 1;
            lines.push(format!("  column `{c}` only in {side}"));
        }
    }
    for key in ra.keys().filter(|k| !rb.contains_key(*k)) {
        lines.push(format!("  - missing in B: {key}"));
    }
    for key in rb.keys().filter(|k| !ra.contains_key(*k)) {
        lines.push(format!("  + new in B: {key}"));
    }
    let columns: Vec<String> = ta
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .filter(|c| !keys.contains(&c.as_str()) && cb.contains(c))
        .filter(|c| !(cross && COMPUTED_BY.contains(&c.as_str())))
        .collect();
    for (key, &i) in &ra {
        let Some(&j) = rb.get(key) else { continue };
        let mut changes = Vec::new();
        for c in &columns {
            let (va, vb) = (cell(ta, c, i), cell(tb, c, j));
            match (number(&va), number(&vb)) {
                (Some(x), Some(y)) if x.to_bits() != y.to_bits() => {
                    if (x - y).abs() <= tolerance {
                        out.within_tolerance += 1;
                    } else {
                        changes.push(format!("{c}: {x} -> {y} ({:+.6})", y - x));
                    }
                }
                (Some(_), Some(_)) => {}
                _ => {
                    let (x, y) = (text(&va), text(&vb));
                    let empty = |v: &str| v == "null" || v.is_empty();
                    if x != y && !(twin && empty(&x) && empty(&y)) {
                        changes.push(format!("{c}: {x} -> {y}"));
                    }
                }
            }
        }
        if !changes.is_empty() {
            changed_rows += 1;
            let why = ["backend", "processor", "device", "threads"]
                .iter()
                .filter(|c| ta.column(c).is_ok() && text(&cell(ta, c, i)) != text(&cell(tb, c, j)))
                .map(|c| format!("{c} {} vs {}", text(&cell(ta, c, i)), text(&cell(tb, c, j))))
                .collect::<Vec<_>>();
            let note = if why.is_empty() {
                String::new()
            } else {
                format!(
                    " [computed differently: {}; not necessarily a regression]",
                    why.join(", ")
                )
            };
            lines.push(format!("  ~ {key}{note}"));
            lines.extend(changes.into_iter().map(|c| format!("      {c}")));
        }
    }
    let missing = ra.keys().filter(|k| !rb.contains_key(*k)).count();
    let new = rb.keys().filter(|k| !ra.contains_key(*k)).count();
    out.differences += changed_rows + missing + new + schema + duplicates;
    if lines.is_empty() {
        let _ = writeln!(out.text, "{name}: {} rows equal", ra.len());
    } else {
        let columns = if schema > 0 {
            format!(", {schema} columns in one only")
        } else {
            String::new()
        };
        let dups = if duplicates > 0 {
            format!(", {duplicates} duplicated keys")
        } else {
            String::new()
        };
        let _ = writeln!(
            out.text,
            "{name}: {changed_rows} changed, {new} new, {missing} missing{columns}{dups}"
        );
        for l in lines {
            let _ = writeln!(out.text, "{l}");
        }
    }
}

fn compare_text(name: &str, a: &Path, b: &Path, out: &mut Diff) {
    let (ta, tb) = (
        std::fs::read_to_string(a.join(name)).ok(),
        std::fs::read_to_string(b.join(name)).ok(),
    );
    match (ta, tb) {
        (None, None) => {}
        (Some(x), Some(y)) if x == y => {
            let _ = writeln!(out.text, "{name}: equal");
        }
        (Some(x), Some(y)) => {
            out.differences += 1;
            let _ = writeln!(out.text, "{name}: differs");
            for (la, lb) in x.lines().zip(y.lines()).filter(|(p, q)| p != q).take(5) {
                let _ = writeln!(out.text, "  - {la}\n  + {lb}");
            }
        }
        (x, _) => {
            out.differences += 1;
            let _ = writeln!(
                out.text,
                "{name}: only in {}",
                if x.is_some() { "A" } else { "B" }
            );
        }
    }
}

/// Compares the result tables of folders `a` and `b`; numbers within `tolerance` count as
/// equal (0: bit for bit), or within `across` when the folders were computed on different
/// backends or processor kinds.
pub fn compare(
    a: &Path,
    b: &Path,
    tolerance: f64,
    across: Option<f64>,
) -> Result<Diff, ReportError> {
    let mut out = Diff::default();
    let (ka, kb) = (computed_by(a)?, computed_by(b)?);
    let cross = !ka.is_empty() && !kb.is_empty() && ka != kb;
    let tolerance = match across {
        Some(t) if cross => t,
        _ => tolerance,
    };
    out.tolerance = tolerance;
    let _ = writeln!(out.text, "{}", promise(&ka, &kb));
    if cross {
        let _ = writeln!(
            out.text,
            "A was computed on {}, B on {}: numbers differ in their last bits and drift apart in \
             training without a regression; compared with tolerance {tolerance}; weight digests \
             are not compared",
            ka.join(", "),
            kb.join(", ")
        );
    }
    let cross_cells = if cross {
        Some((cells(a)?, cells(b)?))
    } else {
        None
    };
    for (name, keys) in TABLES {
        // Statistics derived from few runs (p-values, spreads) amplify last-bit differences:
        // across processor kinds the runs, epochs and seed summaries carry the comparison.
        if cross && DERIVED.contains(&name) {
            let _ = writeln!(out.text, "{name}: not compared across processor kinds");
            continue;
        }
        let mode = Mode {
            tolerance,
            cross,
            twin: false,
        };
        compare_table(name, keys, (a, b), mode, cross_cells.as_ref(), &mut out)?;
    }
    compare_twins(a, "A", &mut out)?;
    compare_twins(b, "B", &mut out)?;
    if tolerance == 0.0 && !cross {
        for name in TEXTS {
            compare_text(name, a, b, &mut out);
        }
    }
    if out.within_tolerance > 0 {
        let _ = writeln!(
            out.text,
            "{} numbers differ within the tolerance {tolerance} and count as equal",
            out.within_tolerance
        );
    }
    Ok(out)
}

/// Copies the result files of `folder` at git revision `rev` into `into`; returns how many
/// existed at that revision.
pub fn checkout(folder: &Path, rev: &str, into: &Path) -> Result<usize, String> {
    let abs = std::path::absolute(folder).map_err(|e| e.to_string())?;
    let top = std::process::Command::new("git")
        .arg("-C")
        .arg(&abs)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !top.status.success() {
        return Err(format!("`{}` is not in a git checkout", folder.display()));
    }
    let top = std::path::PathBuf::from(String::from_utf8_lossy(&top.stdout).trim());
    let rel = abs
        .strip_prefix(&top)
        .map_err(|_| "folder outside the checkout".to_string())?;
    let mut found = 0;
    for name in TABLES.iter().map(|t| t.0).chain(TEXTS) {
        let spec = format!("{rev}:{}", rel.join(name).display());
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&top)
            .args(["show", &spec])
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if out.status.success() {
            std::fs::write(into.join(name), out.stdout).map_err(|e| e.to_string())?;
            found += 1;
        }
    }
    Ok(found)
}
