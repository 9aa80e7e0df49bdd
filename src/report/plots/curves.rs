//! `curves`: train loss and test accuracy per epoch, the mean over seeds with a min-max band.

use super::frame::{Drawn, Plot, color, err, legend, panel};
use super::groups::group_label;
use crate::report::Tables;
use crate::report::columns::{floats, strs};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::HashMap;

/// An epoch, and `[mean, min, max]` over seeds of train loss and of test accuracy.
type CurvePoint = (f64, [f64; 3], [f64; 3]);
/// An epoch and every seed's train loss and test accuracy.
type EpochValues = (f64, Vec<f64>, Vec<f64>);

/// Per group: its label and points.
pub(super) struct Curves(pub(super) Vec<(String, Vec<CurvePoint>)>);

impl Curves {
    /// Every group's points from the epochs table.
    pub(super) fn of(tables: &Tables) -> Self {
        let e = &tables.epochs;
        let chain = strs(e, "chain");
        let [t, a, epoch, loss, acc] = [
            "temperature",
            "alpha",
            "epoch",
            "train_loss",
            "test_accuracy",
        ]
        .map(|c| floats(e, c));
        let mut groups: Vec<(String, Vec<EpochValues>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for i in 0..e.height() {
            let (Some(ep), Some(l), Some(ac)) = (epoch[i], loss[i], acc[i]) else {
                continue;
            };
            let label = group_label(&chain[i], t[i], a[i]);
            let pos = *index.entry(label.clone()).or_insert_with(|| {
                groups.push((label, Vec::new()));
                groups.len() - 1
            });
            let points = &mut groups[pos].1;
            match points.iter_mut().find(|p| p.0 == ep) {
                Some(p) => {
                    p.1.push(l);
                    p.2.push(ac);
                }
                None => points.push((ep, vec![l], vec![ac])),
            }
        }
        let stats = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            [m, lo, hi]
        };
        Curves(
            groups
                .into_iter()
                .map(|(label, mut pts)| {
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    (
                        label,
                        pts.iter()
                            .map(|(e, l, a)| (*e, stats(l), stats(a)))
                            .collect(),
                    )
                })
                .collect(),
        )
    }
}

impl Plot for Curves {
    fn title(&self) -> String {
        "Learning curves: mean over seeds with the min-max band".into()
    }
    fn size(&self) -> (u32, u32) {
        (1200, 480)
    }
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Drawn {
        area.fill(&WHITE).map_err(err)?;
        let (left, right) = area.split_horizontally(600);
        let max_epoch = self
            .0
            .iter()
            .flat_map(|g| g.1.iter().map(|p| p.0))
            .fold(1.0, f64::max);
        for (half, which, name) in [(&left, 0, "train loss"), (&right, 1, "test accuracy")] {
            let pick = |p: &CurvePoint| if which == 0 { p.1 } else { p.2 };
            let (lo, hi) = self
                .0
                .iter()
                .flat_map(|g| g.1.iter().map(pick))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                    (l.min(v[1]), h.max(v[2]))
                });
            let pad = ((hi - lo) * 0.08).max(1e-3);
            let mut chart = panel(half, &format!("{name} per epoch"), 18, [40, 60])
                .build_cartesian_2d(0.5..max_epoch + 0.5, lo - pad..hi + pad)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(name)
                .x_labels(max_epoch as usize + 1)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(err)?;
            for (i, (label, pts)) in self.0.iter().enumerate() {
                let c = color(i);
                let band: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|p| (p.0, pick(p)[2]))
                    .chain(pts.iter().rev().map(|p| (p.0, pick(p)[1])))
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled())))
                    .map_err(err)?;
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().map(|p| (p.0, pick(p)[0])),
                        c.stroke_width(2),
                    ))
                    .map_err(err)?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                    });
            }
            if which == 1 {
                legend(&mut chart)?;
            }
        }
        Ok(())
    }
}
