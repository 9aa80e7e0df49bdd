//! Comparing result folders that different machines computed, for `kdgrid diff`: which
//! promise of docs/reproducibility.md applies to two folders (bit for bit, or a tolerance only),
//! and rows matched by the cell they belong to rather than by stage id, since flex stage ids
//! carry the numeric class of processors other than x86-64-v3.

use super::ReportError;
use super::diff::{cell, read, text};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// What docs/reproducibility.md promises for two folders computed by `a` and `b` (their
/// `backend/processor` pairs): bit for bit for flex on one numeric class (every x86-64-v3
/// processor is one class), and for LibTorch only on one processor kind; within a tolerance
/// otherwise.
pub(super) fn promise(a: &[String], b: &[String]) -> String {
    let all: Vec<&String> = a.iter().chain(b).collect();
    if all.is_empty() {
        return "no runs to say which promise applies".to_string();
    }
    let portable = format!("flex/{}", crate::numerics::PORTABLE);
    if a == b && all.iter().all(|k| **k == portable) {
        format!(
            "both computed by {portable}: bit-identical on every x86-64-v3 processor, AVX-512 \
             included (docs/reproducibility.md)"
        )
    } else if a == b {
        format!(
            "both computed by {}: bit-identical only for reruns on one machine with the same \
             thread settings, within a tolerance across machines (docs/reproducibility.md)",
            a.join(", ")
        )
    } else {
        format!(
            "A computed by {}, B by {}: only agreement within a tolerance is promised \
             (docs/reproducibility.md)",
            if a.is_empty() {
                "nothing".to_string()
            } else {
                a.join(", ")
            },
            if b.is_empty() {
                "nothing".to_string()
            } else {
                b.join(", ")
            }
        )
    }
}

/// A folder's stage ids mapped to what names their cell whatever computed them (chain, model,
/// seeds, temperature, alpha): flex stage ids carry the numeric class of processors other than
/// x86-64-v3, so across classes rows are matched by cell.
pub(super) type Cells = BTreeMap<String, String>;

pub(super) fn cells(dir: &Path) -> Result<Cells, ReportError> {
    let Some(runs) = read(&dir.join("runs.parquet"))? else {
        return Ok(Cells::new());
    };
    const CELL: [&str; 8] = [
        "chain",
        "model",
        "seed",
        "init_seed",
        "order_seed",
        "augment_seed",
        "temperature",
        "alpha",
    ];
    Ok((0..runs.height())
        .map(|i| {
            let id = text(&cell(&runs, "stage_id", i));
            let key: Vec<String> = CELL.iter().map(|c| text(&cell(&runs, c, i))).collect();
            (id, format!("[{}]", key.join(" / ")))
        })
        .collect())
}

/// `df` with its stage-id columns replaced by the cells they name in `cells`.
pub(super) fn by_cell(df: &DataFrame, cells: &Cells) -> DataFrame {
    let mut df = df.clone();
    for name in ["stage_id", "parent_id"] {
        let Ok(col) = df.column(name) else { continue };
        let mapped: Vec<String> = (0..col.len())
            .map(|i| {
                let id = col.get(i).map_or(String::new(), |v| text(&v));
                cells.get(&id).cloned().unwrap_or(id)
            })
            .collect();
        let _ = df.replace(name, Column::new(name.into(), mapped));
    }
    df
}
