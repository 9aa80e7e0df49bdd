//! Figures drawn from the tables with plotters, each as SVG and PNG under `plots/`: mean
//! accuracy as points with 95% interval whiskers, every seed as a dot, learning curves with min-max bands, and
//! model size against accuracy. Text uses DejaVu Sans compiled into the binary, so PNGs have
//! text on machines without fonts.
//!
//! One file per figure (`accuracy`, `seeds`, `curves`, `size`, `heatmap`) over `frame` (font,
//! SVG/PNG writing, the chart frame and legend) and `groups` (the runs the first three share).

mod accuracy;
mod curves;
mod frame;
mod groups;
mod heatmap;
mod seeds;
mod size;

use super::{ReportError, Tables};
use frame::save;
use std::path::{Path, PathBuf};

/// A drawn figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Title, as in the report.
    pub title: String,
    /// The PNG file.
    pub png: PathBuf,
    /// Every file written (SVG and PNG).
    pub files: Vec<PathBuf>,
}

/// Draws every figure the tables allow into `dir`.
pub fn draw(tables: &Tables, dir: &Path) -> Result<Vec<Figure>, ReportError> {
    frame::register_font();
    let groups = groups::Groups::of(tables);
    if groups.labels.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![
        save(&accuracy::MeanCi(&groups), dir, "accuracy")?,
        save(&seeds::Seeds(&groups), dir, "seeds")?,
    ];
    let curves = curves::Curves::of(tables);
    if !curves.0.is_empty() {
        out.push(save(&curves, dir, "curves")?);
    }
    let sizes = size::Sizes::of(tables, &groups);
    if sizes.0.len() >= 2 {
        out.push(save(&sizes, dir, "size")?);
    }
    for (i, map) in heatmap::Heatmap::of(tables).iter().enumerate() {
        out.push(save(map, dir, &format!("kd-gain-{}", i + 1))?);
    }
    Ok(out)
}
