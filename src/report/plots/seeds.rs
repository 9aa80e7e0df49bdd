//! `seeds`: every seed's test accuracy as a dot, with a bar at each group's mean.

use super::frame::{Drawn, Plot, category_chart, color, err};
use super::groups::Groups;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// One row per group: every seed's accuracy and the mean.
pub(super) struct Seeds<'a>(pub(super) &'a Groups);

impl Plot for Seeds<'_> {
    fn title(&self) -> String {
        "Every seed's test accuracy".into()
    }
    fn size(&self) -> (u32, u32) {
        (
            self.0.label_width() + 560,
            90 + 36 * self.0.labels.len() as u32,
        )
    }
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Drawn {
        let g = self.0;
        let mut chart = category_chart(area, g, "Seed spread: one dot per seed, bar at the mean")?;
        for (i, seeds) in g.seeds.iter().enumerate() {
            chart
                .draw_series(seeds.iter().map(|&a| {
                    Circle::new(
                        (a, SegmentValue::CenterOf(i)),
                        5,
                        color(i).mix(0.7).filled(),
                    )
                }))
                .map_err(err)?;
            let m = g.mean[i];
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m, SegmentValue::Exact(i)), (m, SegmentValue::Exact(i + 1))],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
        }
        Ok(())
    }
}
