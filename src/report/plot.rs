//! SVG charts for the report (plotters' SVG backend: text as SVG text, no fonts needed).
//!
//! Every chart shares `frame`: the title, the legend in rows between the title and the plot (so
//! it never covers data), the axes, and x tick labels of our own where plotters' would be wrong
//! (file sizes on a log scale, runs by name).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One line of a chart.
#[derive(Default)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// A horizontal limit drawn dashed in the series' colour (e.g. the guest's RAM).
    pub limit: Option<f64>,
    /// Min and max of repeated measurements at an x, `(x, min, max)`: a vertical bar each.
    pub spread: Vec<(f64, f64, f64)>,
}

/// A vertical marker (e.g. the end of the upload).
#[derive(Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// What the x values are.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum XAxis {
    /// Plain numbers from 0 (seconds, MiB of RAM).
    #[default]
    Linear,
    /// File sizes in MiB: a log scale labelled "16M", "1G" when they span orders of magnitude
    /// (see `log_scale`), linear otherwise.
    SizeMib,
    /// Runs by name: x = 1..=n, labelled with these names.
    Runs(Vec<String>),
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_axis: XAxis,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
    pub size: (u32, u32),
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Ctx<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// Sizes that span this factor or more (16M..320M and up) get a log axis: on a linear one the
/// small sizes crowd into the first few pixels.
const LOG_SPAN: f64 = 20.0;

/// Whether x values (all positive) span orders of magnitude.
pub fn log_scale(xs: &[f64]) -> bool {
    let (lo, hi) = xs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    lo > 0.0 && hi / lo >= LOG_SPAN
}

/// A size in MiB as on the command line: "512K", "16M", "1G", "1.5G".
pub fn size_label(mib: f64) -> String {
    let short = |v: f64, unit: &str| if (v - v.round()).abs() < 1e-9 { format!("{}{unit}", v.round()) } else { format!("{v:.1}{unit}") };
    if mib >= 1024.0 {
        short(mib / 1024.0, "G")
    } else if mib >= 1.0 {
        short(mib, "M")
    } else {
        short(mib * 1024.0, "K")
    }
}

/// How x values map to the plot: the drawn range, the transform, and tick labels of our own
/// (None: plotters' numbers).
struct XScale {
    range: (f64, f64),
    log: bool,
    ticks: Option<Vec<(f64, String)>>,
}

impl XScale {
    fn new(axis: &XAxis, xs: &[f64], width: u32) -> XScale {
        // About one label per 80 px (runs: per their longest name) so that labels never touch.
        let room = |label_px: f64| ((width as f64 - 80.0) / label_px).floor().max(2.0) as usize;
        match axis {
            XAxis::SizeMib if log_scale(xs) => {
                let (lo, hi) = xs.iter().filter(|x| **x > 0.0).fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x.log2()), hi.max(x.log2())));
                let (first, last) = (lo.ceil() as i32, hi.floor() as i32);
                // Powers of two, every one if they fit, else every second, fourth, …
                let mut step = 1;
                while ((last - first) / step + 1) as usize > room(70.0) {
                    step *= 2;
                }
                let ticks = (first..=last).step_by(step as usize).map(|e| (e as f64, size_label(2f64.powi(e)))).collect();
                XScale { range: (lo - 0.25, hi + 0.25), log: true, ticks: Some(ticks) }
            }
            XAxis::Runs(names) => {
                let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(1) as f64;
                let every = names.len().div_ceil(room(longest * 6.5 + 14.0)).max(1);
                let ticks = names.iter().enumerate().filter(|(i, _)| i % every == 0).map(|(i, n)| ((i + 1) as f64, n.clone())).collect();
                XScale { range: (0.5, names.len().max(1) as f64 + 0.5), log: false, ticks: Some(ticks) }
            }
            _ => {
                let hi = xs.iter().copied().fold(0.0f64, f64::max);
                XScale { range: (0.0, if hi > 0.0 { hi * 1.05 } else { 1.0 }), log: false, ticks: None }
            }
        }
    }

    fn x(&self, v: f64) -> f64 {
        if self.log { v.log2() } else { v }
    }
}

/// A legend entry: what it looks like in the chart.
#[derive(Clone, Copy)]
enum Glyph {
    Line,
    Dot,
    Band,
    Dashed,
}

struct Key {
    label: String,
    colour: RGBColor,
    glyph: Glyph,
}

const LEGEND_ROW: u32 = 18;
const LEFT: u32 = 12 + 56;

/// Legend entries packed into rows across the chart's width: (row, x offset) of each, and the
/// number of rows. Text width is estimated (about 7 px a character at 12 px).
fn legend_layout(keys: &[Key], width: u32) -> (Vec<(u32, u32)>, u32) {
    let (mut row, mut x, mut at) = (0, LEFT, Vec::new());
    for k in keys {
        let w = 24 + 7 * k.label.chars().count() as u32 + 18;
        if x > LEFT && x + w > width.saturating_sub(12) {
            (row, x) = (row + 1, LEFT);
        }
        at.push((row, x));
        x += w;
    }
    let rows = if keys.is_empty() { 0 } else { row + 1 };
    (at, rows)
}

/// The frame every chart shares (title, legend, axes, mesh, markers), with `body` drawing the
/// data into it; a chart that cannot be drawn says so instead of failing.
#[allow(clippy::too_many_arguments)]
fn frame(
    title: &str,
    x_label: &str,
    y_label: &str,
    size: (u32, u32),
    scale: &XScale,
    y_max: f64,
    markers: &[Marker],
    keys: &[Key],
    body: impl for<'a, 'b> FnOnce(&mut Ctx<'a, 'b>) -> Result<(), Box<dyn std::error::Error>>,
) -> String {
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let below_title = root.titled(title, ("sans-serif", 16)).map_err(|e| e.to_string())?;
            // The legend above the plot, not in it: it cannot cover a point.
            let (at, rows) = legend_layout(keys, size.0);
            let (legend_area, plot_area) = below_title.split_vertically(rows * LEGEND_ROW + if rows > 0 { 6 } else { 0 });
            for (k, &(row, x)) in keys.iter().zip(&at) {
                let (x, y) = (x as i32, (row * LEGEND_ROW) as i32 + 9);
                let c = k.colour;
                match k.glyph {
                    Glyph::Line => legend_area.draw(&PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))),
                    Glyph::Dot => legend_area.draw(&Circle::new((x + 9, y), 4, c.filled())),
                    Glyph::Band => legend_area.draw(&Rectangle::new([(x, y - 5), (x + 18, y + 5)], c.mix(0.55).filled())),
                    Glyph::Dashed => legend_area.draw(&PathElement::new(vec![(x, y), (x + 7, y)], c.mix(0.6)))
                        .and_then(|_| legend_area.draw(&PathElement::new(vec![(x + 11, y), (x + 18, y)], c.mix(0.6)))),
                }
                .map_err(|e| e.to_string())?;
                legend_area.draw(&Text::new(k.label.clone(), (x + 24, y), TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center)))).map_err(|e| e.to_string())?;
            }
            let mut chart = ChartBuilder::on(&plot_area)
                .margin(12)
                .margin_top(4)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(scale.range.0..scale.range.1, 0f64..y_max)
                .map_err(|e| e.to_string())?;
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(x_label).y_desc(y_label).light_line_style(WHITE.mix(0.0));
            if scale.ticks.is_some() {
                // Our own labels below; plotters' would be log2 values or "1.5" runs.
                mesh.x_labels(0).disable_x_mesh();
            }
            mesh.draw().map_err(|e| e.to_string())?;
            for (t, label) in scale.ticks.iter().flatten() {
                chart.draw_series(std::iter::once(PathElement::new(vec![(*t, 0.0), (*t, y_max)], BLACK.mix(0.1)))).map_err(|e| e.to_string())?;
                let (px, py) = chart.backend_coord(&(*t, 0.0));
                root.draw(&PathElement::new(vec![(px, py), (px, py + 5)], BLACK)).map_err(|e| e.to_string())?;
                root.draw(&Text::new(label.clone(), (px, py + 7), TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top)))).map_err(|e| e.to_string())?;
            }
            body(&mut chart)?;
            for m in markers.iter().filter(|m| !scale.log || m.x > 0.0) {
                let x = scale.x(m.x);
                chart.draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, y_max)], BLACK.mix(0.5).stroke_width(1)))).map_err(|e| e.to_string())?;
                chart.draw_series(std::iter::once(Text::new(m.label.clone(), (x, y_max * 0.97), ("sans-serif", 11)))).map_err(|e| e.to_string())?;
            }
            root.present().map_err(|e| e.to_string())?;
            Ok(())
        })();
        if let Err(e) = drawn {
            return format!("<p>chart {title:?} could not be drawn: {e}</p>");
        }
    }
    out
}

/// Render to an SVG document (a string); a chart without points says so instead of failing.
pub fn svg(c: &Chart) -> String {
    let xs: Vec<f64> = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(c.markers.iter().map(|m| m.x)).collect();
    let scale = XScale::new(&c.x_axis, &xs, c.size.0);
    let ys = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1).chain(s.spread.iter().map(|b| b.2)).chain(s.limit));
    let y_max = ys.fold(0.0f64, f64::max);
    let mut keys: Vec<Key> = Vec::new();
    if c.series.len() > 1 || c.series.iter().any(|s| s.limit.is_some()) {
        keys = c.series.iter().enumerate().map(|(i, s)| Key { label: s.label.clone(), colour: COLOURS[i % COLOURS.len()], glyph: Glyph::Line }).collect();
    }
    if c.series.iter().any(|s| s.limit.is_some()) {
        keys.push(Key { label: "guest RAM (dashed)".into(), colour: BLACK, glyph: Glyph::Dashed });
    }
    if c.series.iter().any(|s| !s.spread.is_empty()) {
        keys.push(Key { label: "mean, bar: min–max of the repeats".into(), colour: BLACK, glyph: Glyph::Dot });
    }
    let x_label = if scale.log { format!("{}, log scale", c.x_label) } else { c.x_label.to_string() };
    frame(c.title, &x_label, c.y_label, c.size, &scale, y_max, &c.markers, &keys, |chart| {
        let (x_start, x_end) = (scale.range.0, scale.range.1);
        for (i, s) in c.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (scale.x(x), y)).collect();
            chart.draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2))).map_err(|e| e.to_string())?;
            // Points too: a series of one point (one cell, one run) has no line to show.
            if pts.len() <= 12 {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(|e| e.to_string())?;
            }
            // Each bar one "I"-shaped path: caps 8 px wide at min and max, in pixels from the max.
            let bars: Vec<_> = s
                .spread
                .iter()
                .map(|&(x, lo, hi)| {
                    let (x, dy) = (scale.x(x), chart.backend_coord(&(scale.x(x), lo)).1 - chart.backend_coord(&(scale.x(x), hi)).1);
                    EmptyElement::at((x, hi)) + PathElement::new(vec![(-4, 0), (4, 0), (0, 0), (0, dy), (-4, dy), (4, dy)], colour.stroke_width(1))
                })
                .collect();
            chart.draw_series(bars).map_err(|e| e.to_string())?;
            if let Some(l) = s.limit {
                chart.draw_series(dashes(x_start, x_end, l, colour)).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

/// Points without lines (e.g. a limit search's probes: where each ran and how it ended), each
/// series its own colour and legend entry.
pub fn dots_svg(c: &Chart) -> String {
    let xs: Vec<f64> = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(c.markers.iter().map(|m| m.x)).collect();
    let scale = XScale::new(&c.x_axis, &xs, c.size.0);
    let y_max = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let keys: Vec<Key> = c.series.iter().enumerate().map(|(i, s)| Key { label: s.label.clone(), colour: COLOURS[i % COLOURS.len()], glyph: Glyph::Dot }).collect();
    let x_label = if scale.log { format!("{}, log scale", c.x_label) } else { c.x_label.to_string() };
    frame(c.title, &x_label, c.y_label, c.size, &scale, y_max, &c.markers, &keys, |chart| {
        for (i, s) in c.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart.draw_series(s.points.iter().map(|&(x, y)| Circle::new((scale.x(x), y), 5, colour.filled()))).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// A horizontal dashed line at `y`: short segments across the chart.
fn dashes(x_start: f64, x_end: f64, y: f64, colour: RGBColor) -> impl Iterator<Item = PathElement<(f64, f64)>> {
    let n = 40;
    let at = move |k: usize| x_start + (x_end - x_start) * k as f64 / n as f64;
    (0..n).step_by(2).map(move |k| PathElement::new(vec![(at(k), y), (at(k + 1), y)], colour.mix(0.6).stroke_width(1)))
}

/// A stacked area chart: layers over the same x values, the first at the bottom (e.g. what a
/// cgroup's memory is made of over time).
pub struct Stacked<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x: Vec<f64>,
    /// (label, one value per x), bottom layer first.
    pub layers: Vec<(String, Vec<f64>)>,
    /// A dashed horizontal limit (the guest's RAM).
    pub limit: Option<(String, f64)>,
    pub markers: Vec<Marker>,
    pub size: (u32, u32),
}

pub fn stacked_svg(c: &Stacked) -> String {
    // Running totals: layer i's top edge is the sum of layers 0..=i.
    let mut tops: Vec<Vec<f64>> = Vec::new();
    for (_, v) in &c.layers {
        let below = tops.last().cloned().unwrap_or_else(|| vec![0.0; c.x.len()]);
        tops.push(below.iter().zip(v).map(|(b, y)| b + y).collect());
    }
    let xs: Vec<f64> = c.x.iter().copied().chain(c.markers.iter().map(|m| m.x)).collect();
    let scale = XScale::new(&XAxis::Linear, &xs, c.size.0);
    let y_max = tops.last().into_iter().flatten().copied().chain(c.limit.as_ref().map(|l| l.1)).fold(0.0f64, f64::max);
    let mut keys: Vec<Key> = c.layers.iter().enumerate().map(|(i, (l, _))| Key { label: l.clone(), colour: COLOURS[i % COLOURS.len()], glyph: Glyph::Band }).collect();
    if let Some((label, _)) = &c.limit {
        keys.push(Key { label: label.clone(), colour: BLACK, glyph: Glyph::Dashed });
    }
    frame(c.title, c.x_label, c.y_label, c.size, &scale, y_max, &c.markers, &keys, |chart| {
        for (i, top) in tops.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let bottom = if i == 0 { vec![0.0; c.x.len()] } else { tops[i - 1].clone() };
            // The band between this layer's top and the one below, as one polygon.
            let mut outline: Vec<(f64, f64)> = c.x.iter().copied().zip(top.iter().copied()).collect();
            outline.extend(c.x.iter().copied().zip(bottom).rev());
            chart.draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.55).filled()))).map_err(|e| e.to_string())?;
        }
        if let Some((_, l)) = &c.limit {
            chart.draw_series(dashes(scale.range.0, scale.range.1, *l, BLACK)).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_series_limits_and_markers() {
        let s = svg(&Chart {
            title: "Peak memory",
            x_label: "file size (MiB)",
            y_label: "MiB",
            x_axis: XAxis::SizeMib,
            series: vec![
                Series { label: "256 MiB".into(), points: vec![(100.0, 40.0), (500.0, 200.0)], limit: Some(256.0), ..Default::default() },
                Series { label: "512 MiB".into(), points: vec![(100.0, 45.0)], limit: Some(512.0), ..Default::default() },
            ],
            markers: vec![Marker { x: 300.0, label: "upload end".into() }],
            size: (640, 360),
        });
        assert!(s.starts_with("<svg"), "{}", &s[..80]);
        assert!(s.contains("Peak memory") && s.contains("256 MiB") && s.contains("upload end"));
        assert!(s.matches("<polyline").count() >= 2, "two series lines");
        assert_eq!(s.matches("<circle").count(), 3, "every point marked, also a series of one");
    }

    #[test]
    fn stacked_layers_are_bands_on_top_of_each_other() {
        let s = stacked_svg(&Stacked {
            title: "memory by kind",
            x_label: "seconds",
            y_label: "MiB",
            x: vec![0.0, 1.0, 2.0],
            layers: vec![("anon".into(), vec![1.0, 2.0, 2.0]), ("page cache".into(), vec![0.0, 100.0, 200.0])],
            limit: Some(("guest RAM".into(), 512.0)),
            markers: vec![Marker { x: 2.0, label: "upload end".into() }],
            size: (640, 360),
        });
        assert!(s.starts_with("<svg"), "{}", &s[..80]);
        assert!(s.contains("anon") && s.contains("page cache") && s.contains("guest RAM") && s.contains("upload end"));
        assert!(s.matches("<polygon").count() >= 2, "one band per layer");
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let s = svg(&Chart { title: "t", x_label: "x", y_label: "y", x_axis: XAxis::Linear, series: vec![], markers: vec![], size: (200, 100) });
        assert!(s.starts_with("<svg"));
    }

    /// (content, y) of every text element.
    fn texts(svg: &str) -> Vec<(String, f64)> {
        svg.split("<text").skip(1).map(|t| {
            let y = t.split("y=\"").nth(1).and_then(|v| v.split('"').next()).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            let content = t.split('>').nth(1).and_then(|v| v.split('<').next()).unwrap_or("").trim().to_string();
            (content, y)
        }).collect()
    }

    fn sizes_chart(sizes: &[f64], spread: bool) -> String {
        svg(&Chart {
            title: "throughput",
            x_label: "file size (MiB)",
            y_label: "MiB/s",
            x_axis: XAxis::SizeMib,
            series: vec![
                Series { label: "256 MiB".into(), points: sizes.iter().map(|&x| (x, 50.0)).collect(), spread: if spread { sizes.iter().map(|&x| (x, 45.0, 55.0)).collect() } else { vec![] }, ..Default::default() },
                // The highest point at the right, where a legend in the plot would sit.
                Series { label: "512 MiB".into(), points: sizes.iter().map(|&x| (x, x.sqrt())).collect(), ..Default::default() },
            ],
            markers: vec![],
            size: (640, 360),
        })
    }

    #[test]
    fn log_axis_only_when_sizes_span_orders_of_magnitude() {
        assert!(log_scale(&[16.0, 128.0, 1024.0, 5120.0]));
        assert!(log_scale(&[16.0, 320.0]));
        assert!(!log_scale(&[128.0, 1024.0]), "8×: linear");
        assert!(!log_scale(&[0.0, 1024.0]), "a zero cannot go on a log axis");
        assert!(!log_scale(&[]));
        let wide = sizes_chart(&[16.0, 128.0, 1024.0, 5120.0], false);
        let labels: Vec<String> = texts(&wide).into_iter().map(|t| t.0).collect();
        assert!(wide.contains("log scale"), "{labels:?}");
        for l in ["16M", "64M", "256M", "1G", "4G"] {
            assert!(labels.iter().any(|t| t == l), "tick {l} in {labels:?}");
        }
        let narrow = sizes_chart(&[128.0, 512.0, 1024.0], false);
        assert!(!narrow.contains("log scale") && !texts(&narrow).iter().any(|t| t.0 == "1G"));
        // Linear: the points keep their order and spacing; log: 16M and 128M are as far apart as 128M and 1G.
        let xs = |s: &str| -> Vec<f64> { s.split("<circle cx=\"").skip(1).map(|c| c.split('"').next().unwrap().parse().unwrap()).collect() };
        let w = xs(&wide);
        assert!(((w[1] - w[0]) - (w[2] - w[1])).abs() < 2.0, "{w:?}");
    }

    #[test]
    fn tick_labels_read_like_sizes() {
        assert_eq!([0.5, 1.0, 16.0, 512.0, 1024.0, 1536.0, 4096.0].map(size_label), ["512K", "1M", "16M", "512M", "1G", "1.5G", "4G"]);
        // A narrow chart thins the ticks rather than overlapping them.
        let s = XScale::new(&XAxis::SizeMib, &[1.0, 65536.0], 300);
        assert!(s.ticks.as_ref().unwrap().len() <= 3, "{:?}", s.ticks);
    }

    #[test]
    fn runs_axis_is_labelled_by_name_at_whole_positions() {
        let names = vec!["nightly-1".to_string(), "2026-11-21 00:00".to_string(), "after fix".to_string()];
        let s = svg(&Chart {
            title: "throughput across runs",
            x_label: "run",
            y_label: "MiB/s",
            x_axis: XAxis::Runs(names.clone()),
            series: vec![Series { label: "256-1G".into(), points: vec![(1.0, 50.0), (2.0, 40.0), (3.0, 45.0)], ..Default::default() }],
            markers: vec![],
            size: (900, 300),
        });
        // The x axis's labels: the texts on the row of the first run's; nothing else there (no "1.5").
        let t = texts(&s);
        let row = t.iter().find(|t| t.0 == "nightly-1").expect("first run labelled").1;
        let on_axis: Vec<&str> = t.iter().filter(|t| t.1 == row).map(|t| t.0.as_str()).collect();
        assert_eq!(on_axis, names, "{t:?}");
        let many: Vec<String> = (1..=60).map(|i| format!("run {i}")).collect();
        let t = XScale::new(&XAxis::Runs(many), &[], 900).ticks.unwrap();
        assert!(t.len() < 60 && t.iter().all(|(x, _)| x.fract() == 0.0), "thinned, whole: {t:?}");
    }

    #[test]
    fn repeated_cells_get_one_min_max_bar_each() {
        let sizes = [16.0, 128.0, 1024.0];
        let (with, without) = (sizes_chart(&sizes, true), sizes_chart(&sizes, false));
        assert_eq!(with.matches("<polyline").count() - without.matches("<polyline").count(), sizes.len() + 1, "a bar per size, and the legend's mean dot is no polyline");
        assert!(with.contains("min–max"));
    }

    /// The attribute `name` of every element `tag`.
    fn attr(svg: &str, tag: &str, name: &str) -> Vec<f64> {
        svg.split(&format!("<{tag} ")).skip(1).filter_map(|e| e.split(&format!(" {name}=\"")).nth(1)?.split('"').next()?.parse().ok()).collect()
    }

    #[test]
    fn the_legend_sits_above_the_data() {
        let s = sizes_chart(&[16.0, 128.0, 1024.0, 5120.0], true);
        // Data points have radius 3 (the legend's dot 4).
        let data_top = attr(&s, "circle", "cy").into_iter().zip(attr(&s, "circle", "r")).filter(|(_, r)| *r == 3.0).map(|(y, _)| y).fold(f64::INFINITY, f64::min);
        let t = texts(&s);
        let legend: Vec<&(String, f64)> = t.iter().filter(|t| t.0 == "256 MiB" || t.0 == "512 MiB").collect();
        assert_eq!(legend.len(), 2, "{t:?}");
        assert!(data_top.is_finite());
        assert!(legend.iter().all(|l| l.1 + 8.0 < data_top), "legend {legend:?}, highest point at {data_top}");
    }
}
