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

/// Render to an SVG document (a string); a chart without points says so instead of failing.
pub fn svg(c: &Chart) -> String {
    let mut out = String::new();
    let pts = || c.series.iter().flat_map(|s| s.points.iter());
    let limits = c.series.iter().filter_map(|s| s.limit);
    let x_max = pts().map(|p| p.0).chain(c.markers.iter().map(|m| m.x)).fold(0.0f64, f64::max);
    let y_max = pts().map(|p| p.1).chain(limits).fold(0.0f64, f64::max);
    let (x_max, y_max) = (if x_max > 0.0 { x_max * 1.05 } else { 1.0 }, if y_max > 0.0 { y_max * 1.1 } else { 1.0 });
    {
        let root = SVGBackend::with_string(&mut out, c.size).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(c.title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
            chart.configure_mesh().x_desc(c.x_label).y_desc(c.y_label).light_line_style(WHITE.mix(0.0)).draw()?;
            for (i, s) in c.series.iter().enumerate() {
                let colour = COLOURS[i % COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), colour.stroke_width(2)))?
                    .label(s.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2)));
                // Points too: a series of one point (one cell, one run) has no line to show.
                if s.points.len() <= 12 {
                    chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
                }
                if let Some(l) = s.limit {
                    // Dashes: short segments along the limit.
                    let n = 40;
                    let segs = (0..n).step_by(2).map(|k| {
                        let (a, b) = (x_max * k as f64 / n as f64, x_max * (k + 1) as f64 / n as f64);
                        PathElement::new(vec![(a, l), (b, l)], colour.mix(0.6).stroke_width(1))
                    });
                    chart.draw_series(segs)?;
                }
            }
            for m in &c.markers {
                chart.draw_series(std::iter::once(PathElement::new(vec![(m.x, 0.0), (m.x, y_max)], BLACK.mix(0.5).stroke_width(1))))?;
                chart.draw_series(std::iter::once(Text::new(m.label.clone(), (m.x, y_max * 0.97), ("sans-serif", 11))))?;
            }
            if c.series.len() > 1 || c.series.iter().any(|s| s.limit.is_some()) {
                chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK.mix(0.3)).draw()?;
            }
            root.present()?;
            Ok(())
        })();
        if let Err(e) = drawn {
            return format!("<p>chart {:?} could not be drawn: {e}</p>", c.title);
        }
    }
    out
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
    fn an_empty_chart_still_renders() {
        let s = svg(&Chart { title: "t", x_label: "x", y_label: "y", series: vec![], markers: vec![], size: (200, 100) });
        assert!(s.starts_with("<svg"));
    }
}
