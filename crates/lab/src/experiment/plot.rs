//! SVG line charts for the experiments (plotters, SVG backend only).

use super::ExperimentError;
use plotters::prelude::*;
use std::path::Path;

/// One named line of (x, y) points.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
    /// Dashed-looking theory line (drawn without markers).
    pub theory: bool,
}

impl Series {
    /// A measured series (line with markers).
    pub fn measured(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points, theory: false }
    }

    /// A reference series from the paper or theory (thin line, no markers).
    pub fn theory(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points, theory: true }
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
];

/// Draws `series` into an SVG file at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), ExperimentError> {
    let err = |e: String| ExperimentError::Write { path: path.to_path_buf(), message: e };
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let (mut y0, mut y1) = (0.0f64, f64::MIN);
    for &(x, y) in pts() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 >= x1 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let y1 = y1 * 1.08;
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(|e| err(e.to_string()))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let width = if s.theory { 1 } else { 2 };
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(width)))
            .map_err(|e| err(e.to_string()))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        if !s.theory {
            chart
                .draw_series(PointSeries::of_element(
                    s.points.iter().copied(),
                    4,
                    color.filled(),
                    &|c, s, st| EmptyElement::at(c) + Circle::new((0, 0), s, st),
                ))
                .map_err(|e| err(e.to_string()))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
