//! `[tracking]`: where a study's runs go besides the tables. Never part of a stage id.
//!
//! ```toml
//! [tracking]
//! tensorboard = "../tb"                  # relative to the manifest; `kdgrid run` writes there
//! mlflow = "http://127.0.0.1:5000"       # `kdgrid export` sends the study there
//! ```

use super::error::Problems;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Where runs are tracked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracking {
    /// TensorBoard folder (`run` writes each stage's curves there as it trains).
    pub tensorboard: Option<PathBuf>,
    /// MLflow tracking server (`export` sends the study there).
    pub mlflow: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawTracking {
    tensorboard: Option<Spanned<String>>,
    mlflow: Option<Spanned<String>>,
}

pub(crate) fn check_tracking(
    raw: Option<&RawTracking>,
    base: &Path,
    problems: &mut Problems,
) -> Tracking {
    let Some(raw) = raw else {
        return Tracking::default();
    };
    let mut tracking = Tracking::default();
    if let Some(dir) = &raw.tensorboard {
        if dir.get_ref().trim().is_empty() {
            problems.push(
                Some(dir.span()),
                "`tensorboard` is an empty path",
                Some("a folder such as `tensorboard = \"../tb\"` (relative to this file)".into()),
            );
        } else {
            tracking.tensorboard = Some(base.join(dir.get_ref()));
        }
    }
    if let Some(uri) = &raw.mlflow {
        let u = uri.get_ref().trim();
        if u.starts_with("http://") || u.starts_with("https://") {
            tracking.mlflow = Some(u.to_string());
        } else {
            problems.push(
                Some(uri.span()),
                format!("`mlflow = \"{u}\"` is not an http(s) address"),
                Some(
                    "the tracking server's address, e.g. `mlflow = \"http://127.0.0.1:5000\"`"
                        .into(),
                ),
            );
        }
    }
    tracking
}
