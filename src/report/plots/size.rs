//! `size`: trainable parameters (log scale) against mean test accuracy, by kind of chain.

use super::frame::{Drawn, Plot, color, err, frame, legend};
use super::groups::Groups;
use crate::report::Tables;
use crate::report::columns::{floats, strs};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::HashMap;

/// A group with a known size: params, mean accuracy, its interval, the chain kind (0 no KD,
/// 1 KD, 2 with assistants), and whether the interval was cut at 0 and at 1.
type SizePoint = (f64, f64, Option<(f64, f64)>, usize, (bool, bool));

/// Every group with a known size.
pub(super) struct Sizes(pub(super) Vec<SizePoint>);

impl Sizes {
    /// The groups of `g` whose runs record a parameter count.
    pub(super) fn of(tables: &Tables, g: &Groups) -> Self {
        let r = &tables.runs;
        let chain = strs(r, "chain");
        let params = floats(r, "params");
        // The first run of each chain gives its parameter count.
        let mut first: HashMap<&str, Option<f64>> = HashMap::new();
        for j in 0..r.height() {
            first.entry(chain[j].as_str()).or_insert(params[j]);
        }
        Sizes(
            g.chains
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let p = (*first.get(c.as_str())?)?;
                    let kind = c.matches(" > ").count().min(2);
                    (p > 0.0).then_some((p, g.mean[i], g.ci[i], kind, g.cut[i]))
                })
                .collect(),
        )
    }
}

impl Plot for Sizes {
    fn title(&self) -> String {
        "Model size against test accuracy".into()
    }
    fn size(&self) -> (u32, u32) {
        (800, 520)
    }
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Drawn {
        let (pmin, pmax) = self
            .0
            .iter()
            .fold((f64::INFINITY, 0f64), |(l, h), p| (l.min(p.0), h.max(p.0)));
        let (amin, amax) = self
            .0
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
                let (lo, hi) = p.2.unwrap_or((p.1, p.1));
                (l.min(lo), h.max(hi))
            });
        let pad = ((amax - amin) * 0.1).max(0.005);
        let mut chart = frame(area, "Size vs accuracy (mean, 95% CI)", 20, [44, 64])?
            .margin(14)
            .build_cartesian_2d(
                (pmin / 1.5..pmax * 1.5).log_scale(),
                (amin - pad).max(0.0)..(amax + pad).min(1.0),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("trainable parameters (log scale)")
            .y_desc("test accuracy")
            .x_label_formatter(&|v| format!("{:.0}k", v / 1e3))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        let kinds = [
            "no KD (labels only)",
            "KD (teacher > student)",
            "TA chain (with assistants)",
        ];
        for (k, name) in kinds.iter().enumerate() {
            let pts: Vec<_> = self.0.iter().filter(|p| p.3 == k).collect();
            if pts.is_empty() {
                continue;
            }
            let c = color(k);
            for p in &pts {
                if let Some((lo, hi)) = p.2 {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(p.0, lo), (p.0, hi)],
                            c.stroke_width(2),
                        )))
                        .map_err(err)?;
                    // An end cut at an accuracy bound gets an arrowhead: the interval goes on.
                    let (cut_low, cut_high) = p.4;
                    // Pixel y grows downwards: the top head's arms hang below its tip.
                    let heads = [(lo, cut_low, -1), (hi, cut_high, 1)]
                        .into_iter()
                        .filter(|h| h.1)
                        .map(|(y, _, side)| {
                            EmptyElement::at((p.0, y))
                                + PathElement::new(
                                    vec![(-6, 8 * side), (0, 0), (6, 8 * side)],
                                    c.stroke_width(2),
                                )
                        });
                    chart.draw_series(heads).map_err(err)?;
                }
            }
            let marker =
                move |(x, y): (f64, f64), c: RGBColor| -> DynElement<'static, DB, (f64, f64)> {
                    match k {
                        0 => Circle::new((x, y), 6, c.filled()).into_dyn(),
                        1 => TriangleMarker::new((x, y), 8, c.filled()).into_dyn(),
                        _ => Cross::new((x, y), 6, c.stroke_width(3)).into_dyn(),
                    }
                };
            chart
                .draw_series(pts.iter().map(|p| marker((p.0, p.1), c)))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| match k {
                    0 => Circle::new((x + 8, y), 5, c.filled()).into_dyn(),
                    1 => TriangleMarker::new((x + 8, y), 7, c.filled()).into_dyn(),
                    _ => Cross::new((x + 8, y), 5, c.stroke_width(3)).into_dyn(),
                });
        }
        legend(&mut chart)
    }
}
