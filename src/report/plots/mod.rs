//! Figures drawn from the tables with plotters, each as SVG and PNG under `plots/`: mean
//! accuracy as points with 95% interval whiskers, every seed as a dot, learning curves with min-max bands, and
//! model size against accuracy. Text uses DejaVu Sans compiled into the binary, so PNGs have
//! text on machines without fonts.

use super::columns::{floats, strs};
use super::{ReportError, Tables};
use crate::store::write_atomic;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};

/// The font of every figure (Bitstream Vera license, see `assets/fonts/DejaVuSans-LICENSE`).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

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

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the bundled font parses"));
    });
}

type Drawn = Result<(), String>;

/// A figure that can draw itself on any backend.
trait Plot {
    fn title(&self) -> String;
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Drawn;
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn save(plot: &impl Plot, dir: &Path, name: &str) -> Result<Figure, ReportError> {
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

/// Draws every figure the tables allow into `dir`.
pub fn draw(tables: &Tables, dir: &Path) -> Result<Vec<Figure>, ReportError> {
    register_font();
    let groups = Groups::of(tables);
    if groups.labels.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![
        save(&MeanCi(&groups), dir, "accuracy")?,
        save(&Seeds(&groups), dir, "seeds")?,
    ];
    let curves = Curves::of(tables);
    if !curves.0.is_empty() {
        out.push(save(&curves, dir, "curves")?);
    }
    let sizes = Sizes::of(tables, &groups);
    if sizes.0.len() >= 2 {
        out.push(save(&sizes, dir, "size")?);
    }
    for (i, map) in Heatmap::of(tables).iter().enumerate() {
        out.push(save(map, dir, &format!("kd-gain-{}", i + 1))?);
    }
    Ok(out)
}

/// The KD gain over no-KD of every teacher x student pair at one temperature and alpha, with
/// its interval: drawn when a grid has two or more teachers or students.
struct Heatmap {
    setting: String,
    teachers: Vec<String>,
    students: Vec<String>,
    cells: Vec<HeatCell>,
}

/// Teacher index, student index, gain in points and its interval.
type HeatCell = (usize, usize, f64, Option<(f64, f64)>);

impl Heatmap {
    fn of(tables: &Tables) -> Vec<Heatmap> {
        let c = &tables.comparisons;
        let (kind, chain) = (strs(c, "kind"), strs(c, "chain_a"));
        let [t, a, mean, lo, hi] =
            ["temperature", "alpha", "mean_diff", "ci_low", "ci_high"].map(|n| floats(c, n));
        let mut maps: Vec<Heatmap> = Vec::new();
        for i in 0..c.height() {
            let models: Vec<&str> = chain[i].split(" > ").collect();
            let (true, [teacher, student], Some(m)) =
                (kind[i] == "kd-vs-nokd", models.as_slice(), mean[i])
            else {
                continue;
            };
            let setting = group_label("", t[i], a[i]).trim().to_string();
            let pos = match maps.iter().position(|h| h.setting == setting) {
                Some(p) => p,
                None => {
                    maps.push(Heatmap {
                        setting,
                        teachers: Vec::new(),
                        students: Vec::new(),
                        cells: Vec::new(),
                    });
                    maps.len() - 1
                }
            };
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
        area.fill(&WHITE).map_err(err)?;
        let (nt, ns) = (self.teachers.len(), self.students.len());
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("KD gain in points, 95% CI {}", self.setting),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(120)
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

/// The category at the center of a unit cell, for axis labels.
fn label_at(names: &[String], v: f64) -> String {
    let i = v.floor();
    if (v - i - 0.5).abs() < 1e-6 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// One entry per group of finished runs: label, mean and interval, every seed's accuracy.
struct Groups {
    labels: Vec<String>,
    chains: Vec<String>,
    mean: Vec<f64>,
    ci: Vec<Option<(f64, f64)>>,
    seeds: Vec<Vec<f64>>,
}

fn group_label(chain: &str, t: Option<f64>, a: Option<f64>) -> String {
    match (t, a) {
        (Some(t), Some(a)) => format!("{chain} (T={t}, a={a})"),
        _ => chain.to_string(),
    }
}

impl Groups {
    fn of(tables: &Tables) -> Self {
        let s = &tables.summary;
        let (chain, source, metric) = (strs(s, "chain"), strs(s, "source"), strs(s, "metric"));
        let [t, a, mean, lo, hi] =
            ["temperature", "alpha", "mean", "ci_low", "ci_high"].map(|c| floats(s, c));
        let r = &tables.runs;
        let (rchain, status) = (strs(r, "chain"), strs(r, "status"));
        let [rt, ra, acc] = ["temperature", "alpha", "test_accuracy"].map(|c| floats(r, c));
        let mut g = Groups {
            labels: Vec::new(),
            chains: Vec::new(),
            mean: Vec::new(),
            ci: Vec::new(),
            seeds: Vec::new(),
        };
        for i in 0..s.height() {
            let label = group_label(&chain[i], t[i], a[i]);
            if metric[i] != "test_accuracy" || g.labels.contains(&label) || mean[i].is_none() {
                continue;
            }
            let _ = &source[i];
            g.seeds.push(
                (0..r.height())
                    .filter(|&j| {
                        status[j] == "ok" && rchain[j] == chain[i] && rt[j] == t[i] && ra[j] == a[i]
                    })
                    .filter_map(|j| acc[j])
                    .collect(),
            );
            g.labels.push(label);
            g.chains.push(chain[i].clone());
            g.mean.push(mean[i].unwrap_or(0.0));
            g.ci.push(lo[i].zip(hi[i]));
        }
        g
    }

    fn range(&self) -> (f64, f64) {
        let all = self
            .seeds
            .iter()
            .flatten()
            .copied()
            .chain(self.ci.iter().flatten().flat_map(|c| [c.0, c.1]));
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        let pad = ((hi - lo) * 0.1).max(0.005);
        ((lo - pad).max(0.0), (hi + pad).min(1.0))
    }

    fn label_width(&self) -> u32 {
        self.labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(10) as u32
            * 8
            + 20
    }
}

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// Horizontal category chart shared by the interval and dot figures.
fn category_chart<'a, DB: DrawingBackend>(
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
    area.fill(&WHITE).map_err(err)?;
    let (lo, hi) = g.range();
    let n = g.labels.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(g.label_width())
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

/// Each group's mean as a point with its 95% t interval as whiskers (no bars: the axis is
/// cut to the data, so a bar's length would mean nothing).
struct MeanCi<'a>(&'a Groups);

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
            // End caps, 14 pixels high.
            chart
                .draw_series([l, h].map(|x| {
                    EmptyElement::at((x, SegmentValue::CenterOf(i)))
                        + PathElement::new(vec![(0, -7), (0, 7)], BLACK.stroke_width(2))
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

struct Seeds<'a>(&'a Groups);

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

/// An epoch, and `[mean, min, max]` over seeds of train loss and of test accuracy.
type CurvePoint = (f64, [f64; 3], [f64; 3]);
/// An epoch and every seed's train loss and test accuracy.
type EpochValues = (f64, Vec<f64>, Vec<f64>);

/// Per group: its label and points.
struct Curves(Vec<(String, Vec<CurvePoint>)>);

impl Curves {
    fn of(tables: &Tables) -> Self {
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
        for i in 0..e.height() {
            let (Some(ep), Some(l), Some(ac)) = (epoch[i], loss[i], acc[i]) else {
                continue;
            };
            let label = group_label(&chain[i], t[i], a[i]);
            let pos = match groups.iter().position(|g| g.0 == label) {
                Some(p) => p,
                None => {
                    groups.push((label, Vec::new()));
                    groups.len() - 1
                }
            };
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
        for (panel, which, name) in [(&left, 0, "train loss"), (&right, 1, "test accuracy")] {
            let pick = |p: &CurvePoint| if which == 0 { p.1 } else { p.2 };
            let (lo, hi) = self
                .0
                .iter()
                .flat_map(|g| g.1.iter().map(pick))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                    (l.min(v[1]), h.max(v[2]))
                });
            let pad = ((hi - lo) * 0.08).max(1e-3);
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{name} per epoch"), ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
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
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 12))
                    .draw()
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// A group with a known size: params, mean accuracy, its interval, and the chain kind (0 no KD,
/// 1 KD, 2 with assistants).
type SizePoint = (f64, f64, Option<(f64, f64)>, usize);

/// Every group with a known size.
struct Sizes(Vec<SizePoint>);

impl Sizes {
    fn of(tables: &Tables, g: &Groups) -> Self {
        let r = &tables.runs;
        let chain = strs(r, "chain");
        let params = floats(r, "params");
        Sizes(
            g.chains
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let p = (0..r.height())
                        .find(|&j| &chain[j] == c)
                        .and_then(|j| params[j])?;
                    let kind = c.matches(" > ").count().min(2);
                    (p > 0.0).then_some((p, g.mean[i], g.ci[i], kind))
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
        area.fill(&WHITE).map_err(err)?;
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
        let mut chart = ChartBuilder::on(area)
            .caption("Size vs accuracy (mean, 95% CI)", ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
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
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        Ok(())
    }
}
