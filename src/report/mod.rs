//! Reports: Polars tables and Markdown built from a plan and its stage records (last phase of
//! manifest → plan → train → store → report).
//!
//! Files, all under `results/<experiment>/`, each written atomically:
//! `runs.parquet` + `runs.csv` (one row per stage), `epochs.parquet` (per-epoch history),
//! `summary.csv` + `summary.md` (seed statistics per chain, model, temperature and alpha).

mod markdown;
mod tables;

pub use markdown::to_markdown;
pub use tables::{epochs_frame, runs_frame, summary_frame};

use crate::plan::{Plan, StageId};
use crate::store::{StageRecord, StoreError, write_atomic, write_atomic_with};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of building or writing tables.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReportError {
    /// Polars failed to build or write a frame.
    #[error("cannot build table `{}`", path.display())]
    #[diagnostic(code(kdgrid::report::polars))]
    Polars {
        /// The table file.
        path: PathBuf,
        /// The Polars error.
        #[source]
        source: PolarsError,
    },
    /// Writing a file failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
}

/// The tables of one sweep, in memory.
#[derive(Debug, Clone)]
pub struct Tables {
    /// One row per stage.
    pub runs: DataFrame,
    /// One row per stage and epoch.
    pub epochs: DataFrame,
    /// Seed statistics of test accuracy.
    pub summary: DataFrame,
}

/// Builds every table of `plan` from `records` (stages without a record are left out).
pub fn build(plan: &Plan, records: &BTreeMap<StageId, StageRecord>) -> PolarsResult<Tables> {
    let runs = runs_frame(plan, records)?;
    let summary = summary_frame(&runs)?;
    Ok(Tables {
        epochs: epochs_frame(plan, records)?,
        runs,
        summary,
    })
}

/// Writes the tables into `dir` and returns the paths written.
pub fn write(tables: &Tables, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = Vec::new();
    let mut parquet = |df: &DataFrame, name: &str| -> Result<(), ReportError> {
        let path = dir.join(name);
        let mut df = df.clone();
        let mut result = Ok(());
        write_atomic_with(&path, |f| {
            result = ParquetWriter::new(f).finish(&mut df).map(|_| ());
            Ok(())
        })?;
        result.map_err(|source| ReportError::Polars {
            path: path.clone(),
            source,
        })?;
        written.push(path);
        Ok(())
    };
    parquet(&tables.runs, "runs.parquet")?;
    parquet(&tables.epochs, "epochs.parquet")?;
    for (df, name) in [(&tables.runs, "runs.csv"), (&tables.summary, "summary.csv")] {
        let path = dir.join(name);
        let mut df = df.clone();
        let mut bytes = Vec::new();
        CsvWriter::new(&mut bytes)
            .finish(&mut df)
            .map_err(|source| ReportError::Polars {
                path: path.clone(),
                source,
            })?;
        write_atomic(&path, &bytes)?;
        written.push(path);
    }
    let path = dir.join("summary.md");
    write_atomic(&path, summary_markdown(plan_title(dir), tables).as_bytes())?;
    written.push(path);
    Ok(written)
}

fn plan_title(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// The Markdown report: the summary table under a title.
pub fn summary_markdown(experiment: String, tables: &Tables) -> String {
    format!(
        "# {experiment}\n\nTest accuracy over seeds, per chain, model, temperature and alpha \
         (each run's selected epoch: the last unless the manifest's `select` says otherwise; \
         failed runs excluded).\n\n{}",
        to_markdown(&tables.summary)
    )
}
