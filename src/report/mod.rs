//! Reports: tables, Markdown and plots built from a plan and its stage records (last phase of
//! manifest → plan → train → store → report).
//!
//! Results — bit-identical on rerun, committed and checked by `kdgrid report --check`:
//! `runs` (one row per stage), `epochs` (per-epoch history), `summary` (seed statistics),
//! `comparisons` (KD vs no-KD, TA vs KD), `variance` (spread per source of randomness), as
//! Parquet and/or CSV, `report.md`, `summary.md` and the plots under `plots/`.
//! Measurements — wall-clock, never compared: `timings.csv` / `timings.parquet`.
//! Every file is written atomically; Parquet files carry the provenance as key-value metadata.

mod across;
mod columns;
mod compare;
pub mod diff;
mod gap;
mod markdown;
mod plots;
pub mod stats;
mod study;
mod summary;
mod tables;

pub use compare::{Comparison, Kind};
pub use markdown::to_markdown;

/// The summary's test-accuracy table as Markdown, for the terminal.
pub fn summary_table(tables: &Tables) -> String {
    markdown::accuracy_table(&tables.summary)
}
pub use tables::{epochs_frame, runs_frame, timings_frame};

use crate::plan::{Plan, StageId};
use crate::store::{StageRecord, StoreError, write_atomic, write_atomic_with};
use polars::io::parquet::write::KeyValueMetadata;
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
    /// A plot could not be drawn.
    #[error("cannot draw plot `{}`: {message}", path.display())]
    #[diagnostic(code(kdgrid::report::plot))]
    Plot {
        /// The plot file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Writing a file failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
}

/// Where a study's numbers come from, written into every Parquet file and `report.md`.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Experiment name.
    pub experiment: String,
    /// The manifest's description.
    pub description: Option<String>,
    /// The manifest file, as given.
    pub manifest: String,
    /// SHA-256 of the manifest's text.
    pub manifest_sha256: String,
    /// The profile applied.
    pub profile: Option<String>,
    /// The last git commit that changed the manifest, when it lives in a git checkout (the
    /// revision of the study, stable across later commits that do not touch it).
    pub git_revision: Option<String>,
    /// Content digest of the dataset.
    pub data_sha256: String,
    /// Backend, device and threads of the plan.
    pub compute: String,
    /// The adaptive seed rule, when the study has one.
    pub adaptive: Option<crate::manifest::Adaptive>,
}

impl Provenance {
    /// Key-value pairs, in a fixed order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("kdgrid.experiment", self.experiment.clone()),
            ("kdgrid.manifest", self.manifest.clone()),
            ("kdgrid.manifest_sha256", self.manifest_sha256.clone()),
            ("kdgrid.version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "kdgrid.trainer_version",
                crate::identity::TRAINER_VERSION.to_string(),
            ),
            ("kdgrid.data_sha256", self.data_sha256.clone()),
            ("kdgrid.compute", self.compute.clone()),
        ];
        if let Some(p) = &self.profile {
            v.push(("kdgrid.profile", p.clone()));
        }
        if let Some(g) = &self.git_revision {
            v.push(("kdgrid.manifest_git_revision", g.clone()));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// The tables of one sweep, in memory.
#[derive(Debug, Clone)]
pub struct Tables {
    /// One row per stage.
    pub runs: DataFrame,
    /// One row per stage and epoch.
    pub epochs: DataFrame,
    /// Seed statistics per group, source and metric.
    pub summary: DataFrame,
    /// Paired (or unpaired) comparisons of chains.
    pub comparisons: DataFrame,
    /// Spread of accuracy per source of randomness.
    pub variance: DataFrame,
    /// Wall-clock measurements (not results).
    pub timings: DataFrame,
    /// The comparisons in words, in table order.
    pub sentences: Vec<String>,
    /// Per comparison, what the study could have seen (smallest possible p, seeds needed).
    pub power_lines: Vec<Option<String>>,
}

/// Builds every table of `plan` from `records` (stages without a record are left out).
pub fn build(plan: &Plan, records: &BTreeMap<StageId, StageRecord>) -> PolarsResult<Tables> {
    let groups = study::groups(plan, records);
    let comparisons = compare::comparisons(plan, &groups);
    Ok(Tables {
        runs: runs_frame(plan, records)?,
        epochs: epochs_frame(plan, records)?,
        summary: summary::frame(&summary::rows(&groups))?,
        comparisons: compare::frame(&comparisons)?,
        variance: variance::frame(&variance::rows(&groups))?,
        timings: timings_frame(plan, records)?,
        sentences: comparisons.iter().map(Comparison::sentence).collect(),
        power_lines: comparisons.iter().map(Comparison::power_line).collect(),
    })
}

mod variance;

fn polars_error(path: &Path) -> impl FnOnce(PolarsError) -> ReportError + '_ {
    move |source| ReportError::Polars {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `df` as Parquet with the provenance as key-value metadata.
fn write_parquet(df: &DataFrame, path: &Path, provenance: &Provenance) -> Result<(), ReportError> {
    let mut df = df.clone();
    // A writer error must fail the callback, or the partial file would replace a good one.
    write_atomic_with(path, |f| {
        ParquetWriter::new(f)
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(provenance.pairs())))
            .finish(&mut df)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })?;
    Ok(())
}

/// Writes `df` as CSV.
fn write_csv(df: &DataFrame, path: &Path) -> Result<(), ReportError> {
    let mut df = df.clone();
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes)
        .finish(&mut df)
        .map_err(polars_error(path))?;
    write_atomic(path, &bytes)?;
    Ok(())
}

/// Writes the tables, `report.md` and the plots into `dir` and returns the paths written.
pub fn write(
    tables: &Tables,
    dir: &Path,
    provenance: &Provenance,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = Vec::new();
    let parquet = [
        (&tables.runs, "runs.parquet"),
        (&tables.epochs, "epochs.parquet"),
        (&tables.comparisons, "comparisons.parquet"),
        (&tables.timings, "timings.parquet"),
    ];
    for (df, name) in parquet {
        let path = dir.join(name);
        write_parquet(df, &path, provenance)?;
        written.push(path);
    }
    let csv = [
        (&tables.runs, "runs.csv"),
        (&tables.summary, "summary.csv"),
        (&tables.comparisons, "comparisons.csv"),
        (&tables.variance, "variance.csv"),
        (&tables.timings, "timings.csv"),
    ];
    for (df, name) in csv {
        let path = dir.join(name);
        write_csv(df, &path)?;
        written.push(path);
    }
    let figures = plots::draw(tables, &dir.join("plots"))?;
    written.extend(figures.iter().flat_map(|f| f.files.clone()));
    for (name, text) in [
        ("summary.md", markdown::summary(provenance, tables)),
        (
            "report.md",
            markdown::report(provenance, tables, &figures, dir),
        ),
    ] {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    let path = dir.join("timings.md");
    let text = markdown::timings(provenance, tables).map_err(|source| ReportError::Polars {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, text.as_bytes())?;
    written.push(path);
    Ok(written)
}
