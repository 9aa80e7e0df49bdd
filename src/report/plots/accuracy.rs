//! `accuracy`: each group's mean test accuracy as a point with its 95% interval as whiskers.

use super::frame::{Drawn, Plot, category_chart, color, err};
use super::groups::Groups;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// Each group's mean as a point with its 95% t interval as whiskers (no bars: the axis is
/// cut to the data, so a bar's length would mean nothing); an interval cut at an accuracy
/// bound ends in an arrowhead there.
pub(super) struct MeanCi<'a>(pub(super) &'a Groups);

impl Plot for MeanCi<'_> {
    fn title(&self) -> String {
        "Mean test accuracy per chain, with 95% confidence intervals".into()
    }
    fn size(&self) -> (u32, u32) {
        (
            self.0.label_width() + 560,
            90 + 42 * self.0.labels.len() as u32,
        )
    }
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Drawn {
        let g = self.0;
        let mut chart = category_chart(area, g, "Test accuracy: mean and 95% CI (t) over seeds")?;
        for (i, ci) in g.ci.iter().enumerate() {
            let Some((l, h)) = *ci else { continue };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![
                        (l, SegmentValue::CenterOf(i)),
                        (h, SegmentValue::CenterOf(i)),
                    ],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
            // End caps, 14 pixels high; an end cut at an accuracy bound (0 or 1) gets an
            // arrowhead instead, so the whisker does not look as if the interval ended there.
            let (cut_low, cut_high) = g.cut[i];
            chart
                .draw_series([(l, cut_low, -1), (h, cut_high, 1)].map(|(x, cut, side)| {
                    let shape = if cut {
                        vec![(-8 * side, -7), (0, 0), (-8 * side, 7)]
                    } else {
                        vec![(0, -7), (0, 7)]
                    };
                    EmptyElement::at((x, SegmentValue::CenterOf(i)))
                        + PathElement::new(shape, BLACK.stroke_width(2))
                }))
                .map_err(err)?;
        }
        chart
            .draw_series(
                g.mean.iter().enumerate().map(|(i, &m)| {
                    Circle::new((m, SegmentValue::CenterOf(i)), 6, color(i).filled())
                }),
            )
            .map_err(err)?;
        Ok(())
    }
}
