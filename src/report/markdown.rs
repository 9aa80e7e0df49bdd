//! Markdown rendering of a frame (GitHub table syntax).

use polars::prelude::*;

/// Renders `df` as a Markdown table; floats get 4 decimals, nulls are blank.
pub fn to_markdown(df: &DataFrame) -> String {
    let columns = df.columns();
    let mut out = String::new();
    let header: Vec<&str> = columns.iter().map(|c| c.name().as_str()).collect();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!(
        "|{}\n",
        columns
            .iter()
            .map(|c| if c.dtype().is_primitive_numeric() {
                "---:|"
            } else {
                "---|"
            })
            .collect::<String>()
    ));
    for row in 0..df.height() {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| cell(c.get(row).unwrap_or(AnyValue::Null), is_metric(c.name())))
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Measured values get fixed decimals; settings such as temperature print as written.
fn is_metric(name: &str) -> bool {
    matches!(name, "mean" | "std" | "min" | "max")
        || name.starts_with("test_")
        || name.ends_with("_loss")
}

fn cell(value: AnyValue, metric: bool) -> String {
    match value {
        AnyValue::Null => String::new(),
        AnyValue::Float64(v) if metric => format!("{v:.4}"),
        AnyValue::Float64(v) => v.to_string(),
        AnyValue::Float32(v) if metric => format!("{v:.4}"),
        AnyValue::String(s) => s.replace('|', "\\|"),
        other => other.to_string(),
    }
}
