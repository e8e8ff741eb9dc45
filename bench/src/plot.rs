//! The PNG plot: for each scheme, physical limit ÷ median time across file sizes (1.0 = at
//! the physical limit; higher is better). Text uses a system TrueType font when one is
//! found (DejaVu/Liberation); without one the plot is drawn without text.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report::{physical_limit, size_label, Row};

const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
];

fn load_font() -> bool {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            // The font must live as long as plotters' registry: for the whole process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

pub fn write(rows: &[Row], out: &Path) -> Result<()> {
    let mut sizes: Vec<u64> = rows.iter().map(|r| r.size_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut labels: Vec<String> = Vec::new();
    for r in rows
        .iter()
        // A warm reload does no I/O: not a point on a scale of the physical limit; nor is
        // one core's SHA-256 rate.
        .filter(|r| {
            !matches!(
                r.scheme.as_str(),
                "alloc_floor" | "direct_floor" | "dmaload_warm" | "sha256_floor"
            )
        })
    {
        if !labels.contains(&r.label()) {
            labels.push(r.label());
        }
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = labels
        .iter()
        .map(|label| {
            let points = sizes
                .iter()
                .enumerate()
                .filter_map(|(i, &size)| {
                    let limit = physical_limit(rows, size)?;
                    let r = rows
                        .iter()
                        .find(|r| r.size_bytes == size && r.label() == *label)?;
                    Some((i as f64, limit as f64 / r.median_ns as f64))
                })
                .collect();
            (label.clone(), points)
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(1.1f64, f64::max)
        * 1.1;
    let text = load_font();
    let root = BitMapBackend::new(out, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(
                "physical limit ÷ time (1.0 = at the limit; higher is better)",
                ("sans-serif", 24),
            )
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let x_max = (sizes.len().max(1) as f64) - 0.5;
    let mut chart = builder
        .build_cartesian_2d(-0.5f64..x_max, 0f64..top)
        .map_err(|e| anyhow!("{e}"))?;
    if text {
        let size_names: Vec<String> = sizes.iter().map(|&s| size_label(s)).collect();
        chart
            .configure_mesh()
            .x_labels(sizes.len().max(1))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.01 && i >= 0.0 {
                    size_names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("limit ÷ time")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    let reference = [(-0.5, 1.0), (x_max, 1.0)];
    chart
        .draw_series(LineSeries::new(reference, BLACK.stroke_width(1)))
        .map_err(|e| anyhow!("{e}"))?;
    let target = [(-0.5, 0.9), (x_max, 0.9)];
    chart
        .draw_series(LineSeries::new(
            target,
            RGBColor(160, 160, 160).stroke_width(1),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    for (index, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let width = if label.starts_with("dmaload") { 4 } else { 2 };
        let drawn = chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))
            .map_err(|e| anyhow!("{e}"))?;
        if text {
            drawn.label(label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
        }
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
