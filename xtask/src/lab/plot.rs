//! The timeline PNG: events per bucket over time, with the run's transitions as labelled
//! vertical lines. Drawn with plotters' bitmap backend; labels use a TTF font read at
//! run time (DejaVu Sans, installed by `cargo xtask setup`) through `ab_glyph`, so no
//! fontconfig or freetype is involved.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};
use plotters::prelude::*;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// Register a sans-serif font once; the error names the package to install.
fn font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for path in FONTS {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!("no TTF font found for the PNG labels (looked for {}); apt-get install fonts-dejavu-core", FONTS.join(", ")))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// A labelled vertical line.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Seconds on the x axis.
    pub t: f64,
    pub label: String,
    pub color: RGBColor,
}

impl Marker {
    pub fn new(t: f64, label: impl Into<String>, color: RGBColor) -> Self {
        Self {
            t,
            label: label.into(),
            color,
        }
    }
}

/// One chart: a title and the x range it shows.
pub struct Panel {
    pub title: String,
    pub x: Range<f64>,
}

impl Panel {
    pub fn new(title: impl Into<String>, x: Range<f64>) -> Self {
        Self {
            title: title.into(),
            x,
        }
    }
}

pub const RED: RGBColor = RGBColor(200, 30, 30);
pub const GREEN: RGBColor = RGBColor(20, 140, 40);
pub const ORANGE: RGBColor = RGBColor(230, 120, 0);
pub const GREY: RGBColor = RGBColor(110, 110, 110);
const BARS: RGBColor = RGBColor(40, 90, 180);

/// What to draw.
pub struct Timeline<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// Width of one bucket, in seconds.
    pub bucket_s: f64,
    /// (start second of each bucket, count).
    pub buckets: &'a [(f64, u64)],
    pub markers: &'a [Marker],
    /// The first across the top, the others side by side below it.
    pub panels: &'a [Panel],
}

/// Draw `t` into the PNG file `path`.
pub fn timeline_png(path: &Path, t: &Timeline<'_>) -> anyhow::Result<()> {
    font()?;
    let Timeline {
        title,
        x_desc,
        y_desc,
        bucket_s,
        buckets,
        markers,
        panels,
    } = *t;
    let root = BitMapBackend::new(path, (1600, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root
        .titled(title, ("sans-serif", 26))
        .map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(520);
    let Some((first, rest)) = panels.split_first() else {
        return Ok(());
    };
    draw_panel(&top, first, y_desc, x_desc, bucket_s, buckets, markers)?;
    if !rest.is_empty() {
        let areas = bottom.split_evenly((1, rest.len()));
        for (area, panel) in areas.iter().zip(rest) {
            draw_panel(area, panel, y_desc, x_desc, bucket_s, buckets, markers)?;
        }
    }
    root.present()
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    y_desc: &str,
    x_desc: &str,
    bucket_s: f64,
    buckets: &[(f64, u64)],
    markers: &[Marker],
) -> anyhow::Result<()> {
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing the timeline: {e}");
    let shown: Vec<(f64, u64)> = buckets
        .iter()
        .copied()
        .filter(|(t, _)| *t + bucket_s > panel.x.start && *t < panel.x.end)
        .collect();
    let y_max = shown.iter().map(|&(_, c)| c).max().unwrap_or(1).max(1) as f64 * 1.25;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(panel.x.clone(), 0f64..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(shown.iter().map(|&(t, c)| {
            Rectangle::new(
                [
                    (t.max(panel.x.start), 0.0),
                    ((t + bucket_s).min(panel.x.end), c as f64),
                ],
                BARS.filled(),
            )
        }))
        .map_err(e)?;
    let visible: Vec<&Marker> = markers.iter().filter(|m| panel.x.contains(&m.t)).collect();
    for (i, m) in visible.iter().enumerate() {
        chart
            .draw_series(LineSeries::new(
                [(m.t, 0.0), (m.t, y_max)],
                m.color.stroke_width(2),
            ))
            .map_err(e)?;
        // Stagger the labels so that close transitions stay readable.
        let y = y_max * (0.97 - 0.065 * (i % 4) as f64);
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" {}", m.label),
                (m.t, y),
                ("sans-serif", 15).into_font().color(&m.color),
            )))
            .map_err(e)?;
    }
    Ok(())
}
