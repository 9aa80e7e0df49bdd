//! Reading a frame's columns back as plain vectors, for Markdown and plots.

use polars::prelude::*;

/// A string column (missing column or nulls as empty strings).
pub fn strs(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .ok()
        .and_then(|c| {
            c.str()
                .ok()
                .map(|s| s.iter().map(|v| v.unwrap_or("").to_string()).collect())
        })
        .unwrap_or_else(|| vec![String::new(); df.height()])
}

/// A numeric column as `f64` (missing column or nulls as `None`).
pub fn floats(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name)
        .ok()
        .and_then(|c| c.cast(&DataType::Float64).ok())
        .map(|c| c.f64().expect("cast to f64").iter().collect())
        .unwrap_or_else(|| vec![None; df.height()])
}
