//! SVG line charts for the report (plotters' SVG backend: text as SVG text, no fonts needed).

use plotters::prelude::*;

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// A horizontal limit drawn dashed in the series' colour (e.g. the guest's RAM).
    pub limit: Option<f64>,
}

/// A vertical marker (e.g. the end of the upload).
#[derive(Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
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

/// The frame every chart shares (title, axes, mesh, markers, legend), with `body` drawing the
/// data into it; a chart that cannot be drawn says so instead of failing.
#[allow(clippy::too_many_arguments)]
fn frame(
    title: &str,
    x_label: &str,
    y_label: &str,
    size: (u32, u32),
    (x_max, y_max): (f64, f64),
    markers: &[Marker],
    legend: bool,
    body: impl for<'a, 'b> FnOnce(&mut Ctx<'a, 'b>) -> Result<(), Box<dyn std::error::Error>>,
) -> String {
    let (x_max, y_max) = (if x_max > 0.0 { x_max * 1.05 } else { 1.0 }, if y_max > 0.0 { y_max * 1.1 } else { 1.0 });
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().x_desc(x_label).y_desc(y_label).light_line_style(WHITE.mix(0.0)).draw().map_err(|e| e.to_string())?;
            body(&mut chart)?;
            for m in markers {
                chart.draw_series(std::iter::once(PathElement::new(vec![(m.x, 0.0), (m.x, y_max)], BLACK.mix(0.5).stroke_width(1)))).map_err(|e| e.to_string())?;
                chart.draw_series(std::iter::once(Text::new(m.label.clone(), (m.x, y_max * 0.97), ("sans-serif", 11)))).map_err(|e| e.to_string())?;
            }
            if legend {
                chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK.mix(0.3)).draw().map_err(|e| e.to_string())?;
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
    let pts = || c.series.iter().flat_map(|s| s.points.iter());
    let limits = c.series.iter().filter_map(|s| s.limit);
    let x_max = pts().map(|p| p.0).chain(c.markers.iter().map(|m| m.x)).fold(0.0f64, f64::max);
    let y_max = pts().map(|p| p.1).chain(limits).fold(0.0f64, f64::max);
    let legend = c.series.len() > 1 || c.series.iter().any(|s| s.limit.is_some());
    frame(c.title, c.x_label, c.y_label, c.size, (x_max, y_max), &c.markers, legend, |chart| {
        let x_end = chart.x_range().end;
        for (i, s) in c.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2)));
            // Points too: a series of one point (one cell, one run) has no line to show.
            if s.points.len() <= 12 {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(|e| e.to_string())?;
            }
            if let Some(l) = s.limit {
                chart.draw_series(dashes(x_end, l, colour)).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

/// Points without lines (e.g. a limit search's probes: where each ran and how it ended), each
/// series its own colour and legend entry.
pub fn dots_svg(c: &Chart) -> String {
    let pts = || c.series.iter().flat_map(|s| s.points.iter());
    let x_max = pts().map(|p| p.0).chain(c.markers.iter().map(|m| m.x)).fold(0.0f64, f64::max);
    let y_max = pts().map(|p| p.1).fold(0.0f64, f64::max);
    frame(c.title, c.x_label, c.y_label, c.size, (x_max, y_max), &c.markers, true, |chart| {
        for (i, s) in c.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 5, colour.filled())))
                .map_err(|e| e.to_string())?
                .label(s.label.clone())
                .legend(move |(x, y)| Circle::new((x + 7, y), 4, colour.filled()));
        }
        Ok(())
    })
}

/// A horizontal dashed line at `y`: short segments across the chart.
fn dashes(x_end: f64, y: f64, colour: RGBColor) -> impl Iterator<Item = PathElement<(f64, f64)>> {
    let n = 40;
    (0..n).step_by(2).map(move |k| {
        let (a, b) = (x_end * k as f64 / n as f64, x_end * (k + 1) as f64 / n as f64);
        PathElement::new(vec![(a, y), (b, y)], colour.mix(0.6).stroke_width(1))
    })
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
    let x_max = c.x.iter().copied().chain(c.markers.iter().map(|m| m.x)).fold(0.0f64, f64::max);
    let y_max = tops.last().into_iter().flatten().copied().chain(c.limit.as_ref().map(|l| l.1)).fold(0.0f64, f64::max);
    frame(c.title, c.x_label, c.y_label, c.size, (x_max, y_max), &c.markers, true, |chart| {
        let x_end = chart.x_range().end;
        for (i, ((label, _), top)) in c.layers.iter().zip(&tops).enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let bottom = if i == 0 { vec![0.0; c.x.len()] } else { tops[i - 1].clone() };
            // The band between this layer's top and the one below, as one polygon.
            let mut outline: Vec<(f64, f64)> = c.x.iter().copied().zip(top.iter().copied()).collect();
            outline.extend(c.x.iter().copied().zip(bottom).rev());
            chart
                .draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.55).filled())))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.55).filled()));
        }
        if let Some((label, l)) = &c.limit {
            chart.draw_series(dashes(x_end, *l, BLACK)).map_err(|e| e.to_string())?.label(label.clone()).legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.mix(0.6)));
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
            series: vec![
                Series { label: "256 MiB".into(), points: vec![(100.0, 40.0), (500.0, 200.0)], limit: Some(256.0) },
                Series { label: "512 MiB".into(), points: vec![(100.0, 45.0)], limit: Some(512.0) },
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
        let s = svg(&Chart { title: "t", x_label: "x", y_label: "y", series: vec![], markers: vec![], size: (200, 100) });
        assert!(s.starts_with("<svg"));
    }
}
