//! What every figure shares: the bundled font, the [`Plot`] trait, writing SVG and PNG, colors,
//! and the frame (white background, caption, axes, legend) each chart is drawn in.

use super::Figure;
use super::groups::Groups;
use crate::report::ReportError;
use crate::store::write_atomic;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

/// The font of every figure (Bitstream Vera license, see `assets/fonts/DejaVuSans-LICENSE`).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// Registers the bundled font under `sans-serif`, once per process.
pub(super) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the bundled font parses"));
    });
}

/// What drawing a figure gives: `Err` holds plotters' message.
pub(super) type Drawn = Result<(), String>;

/// A figure that can draw itself on any backend.
pub(super) trait Plot {
    /// The figure's title, as in the report.
    fn title(&self) -> String;
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the figure on `area`.
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Drawn;
}

/// Plotters' errors as text.
pub(super) fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Writes `plot` as `<name>.svg` and `<name>.png` in `dir`, atomically.
pub(super) fn save(plot: &impl Plot, dir: &Path, name: &str) -> Result<Figure, ReportError> {
    let (w, h) = plot.size();
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |message| ReportError::Plot { path, message }
    };
    let svg_path = dir.join(format!("{name}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        plot.draw(&root)
            .and_then(|_| root.present().map_err(err))
            .map_err(failed(&svg_path))?;
    }
    write_atomic(&svg_path, svg.as_bytes())?;
    let png_path = dir.join(format!("{name}.png"));
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        plot.draw(&root)
            .and_then(|_| root.present().map_err(err))
            .map_err(failed(&png_path))?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &pixels,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| failed(&png_path)(err(e)))?;
    write_atomic(&png_path, &png)?;
    Ok(Figure {
        title: plot.title(),
        png: png_path.clone(),
        files: vec![svg_path, png_path],
    })
}

/// The `i`-th color of the palette.
pub(super) fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// A white `area` with `caption` at `caption_size` points, and axis label areas of `x_label`
/// and `y_label` pixels: every chart's frame.
pub(super) fn frame<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    caption_size: u32,
    labels: [u32; 2],
) -> Result<ChartBuilder<'a, 'b, DB>, String> {
    area.fill(&WHITE).map_err(err)?;
    Ok(panel(area, caption, caption_size, labels))
}

/// [`frame`] on a part of an area that is already white (one panel of several).
pub(super) fn panel<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    caption_size: u32,
    [x_label, y_label]: [u32; 2],
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", caption_size))
        .margin(12)
        .x_label_area_size(x_label)
        .y_label_area_size(y_label);
    builder
}

/// Draws the series labels of `chart` as a legend in its lower right corner.
pub(super) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)
}

/// The category at the center of a unit cell, for axis labels.
pub(super) fn label_at(names: &[String], v: f64) -> String {
    let i = v.floor();
    if (v - i - 0.5).abs() < 1e-6 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Horizontal category chart shared by the interval and dot figures.
pub(super) fn category_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    g: &'a Groups,
    caption: &str,
) -> Result<
    ChartContext<
        'a,
        DB,
        Cartesian2d<
            plotters::coord::types::RangedCoordf64,
            plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize>,
        >,
    >,
    String,
> {
    let (lo, hi) = g.range();
    let n = g.labels.len();
    let mut chart = frame(area, caption, 20, [40, g.label_width()])?
        .margin_right(30)
        .build_cartesian_2d(lo..hi, (0..n.saturating_sub(1)).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("test accuracy")
        .x_label_formatter(&|v| format!("{v:.3}"))
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => g.labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    Ok(chart)
}
