//! `kd-gain-N`: the KD gain over no-KD of every teacher x student pair at one setting.

use super::frame::{Drawn, Plot, err, frame, label_at};
use super::groups::group_label;
use crate::report::Tables;
use crate::report::columns::{floats, strs};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::HashMap;

/// The KD gain over no-KD of every teacher x student pair at one temperature and alpha, with
/// its interval: drawn when a grid has two or more teachers or students.
pub(super) struct Heatmap {
    setting: String,
    teachers: Vec<String>,
    students: Vec<String>,
    cells: Vec<HeatCell>,
}

/// Teacher index, student index, gain in points and its interval.
type HeatCell = (usize, usize, f64, Option<(f64, f64)>);

impl Heatmap {
    /// One map per setting with two or more teachers or students.
    pub(super) fn of(tables: &Tables) -> Vec<Heatmap> {
        let c = &tables.comparisons;
        let (kind, chain) = (strs(c, "kind"), strs(c, "chain_a"));
        let [t, a, mean, lo, hi] =
            ["temperature", "alpha", "mean_diff", "ci_low", "ci_high"].map(|n| floats(c, n));
        let mut maps: Vec<Heatmap> = Vec::new();
        let mut by_setting: HashMap<String, usize> = HashMap::new();
        for i in 0..c.height() {
            let models: Vec<&str> = chain[i].split(" > ").collect();
            let (true, [teacher, student], Some(m)) =
                (kind[i] == "kd-vs-nokd", models.as_slice(), mean[i])
            else {
                continue;
            };
            let setting = group_label("", t[i], a[i]).trim().to_string();
            let pos = *by_setting.entry(setting.clone()).or_insert_with(|| {
                maps.push(Heatmap {
                    setting,
                    teachers: Vec::new(),
                    students: Vec::new(),
                    cells: Vec::new(),
                });
                maps.len() - 1
            });
            let h = &mut maps[pos];
            let index = |v: &mut Vec<String>, x: &str| {
                v.iter().position(|y| y == x).unwrap_or_else(|| {
                    v.push(x.to_string());
                    v.len() - 1
                })
            };
            let (ti, si) = (
                index(&mut h.teachers, teacher),
                index(&mut h.students, student),
            );
            h.cells.push((
                ti,
                si,
                m * 100.0,
                lo[i].zip(hi[i]).map(|(l, h)| (l * 100.0, h * 100.0)),
            ));
        }
        maps.retain(|h| h.teachers.len() >= 2 || h.students.len() >= 2);
        maps
    }
}

impl Plot for Heatmap {
    fn title(&self) -> String {
        format!("KD gain over no-KD, teacher x student {}", self.setting)
    }
    fn size(&self) -> (u32, u32) {
        (
            220 + 170 * self.students.len() as u32,
            140 + 90 * self.teachers.len() as u32,
        )
    }
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Drawn {
        let (nt, ns) = (self.teachers.len(), self.students.len());
        let caption = format!("KD gain in points, 95% CI {}", self.setting);
        let mut chart = frame(area, &caption, 18, [40, 120])?
            .build_cartesian_2d(0f64..ns as f64, 0f64..nt as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("student")
            .y_desc("teacher")
            .x_labels(ns * 2 + 1)
            .y_labels(nt * 2 + 1)
            .x_label_formatter(&|x| label_at(&self.students, *x))
            .y_label_formatter(&|y| label_at(&self.teachers, *y))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let scale = self.cells.iter().map(|c| c.2.abs()).fold(0.5, f64::max);
        for &(t, s, gain, ci) in &self.cells {
            let v = (gain / scale).clamp(-1.0, 1.0);
            let shade = |x: f64| (255.0 * (1.0 - x.abs() * 0.6)) as u8;
            let fill = if v >= 0.0 {
                RGBColor(shade(v), 255, shade(v))
            } else {
                RGBColor(255, shade(v), shade(v))
            };
            let (x, y) = (s as f64, t as f64);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    fill.filled(),
                )))
                .map_err(err)?;
            let text = |s: String, dy: f64| {
                Text::new(
                    s,
                    (x + 0.5, y + 0.5 + dy),
                    ("sans-serif", 14).into_font().color(&BLACK).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    ),
                )
            };
            chart
                .draw_series([
                    text(format!("{gain:+.2}"), 0.12),
                    text(
                        ci.map_or_else(
                            || "no interval".into(),
                            |(l, h)| format!("[{l:+.2}, {h:+.2}]"),
                        ),
                        -0.15,
                    ),
                ])
                .map_err(err)?;
        }
        Ok(())
    }
}
