//! SVG plots of a [`Comparison`]: latency percentiles per mode (one panel
//! per case) and requests/s against payload size (one panel per series of
//! cases that differ only in size). SVG only: text is emitted as SVG text,
//! so no font library is needed to build or run.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::{
    compare::{Comparison, PCTS, Pair, Side},
    size_label,
};

const BASE: RGBColor = RGBColor(200, 60, 50);
const ACCEL: RGBColor = RGBColor(40, 100, 200);
const PANEL_W: u32 = 420;
const PANEL_H: u32 = 300;

fn grid(n: usize) -> (usize, usize) {
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    (n.div_ceil(cols).max(1), cols)
}

fn fmt_axis(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

fn modes(p: &Pair) -> [(&'static str, RGBColor, Option<&Side>); 2] {
    [
        ("baseline", BASE, p.base.as_ref()),
        ("accelerated", ACCEL, p.accel.as_ref()),
    ]
}

/// A named, coloured line of points.
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

/// The lines (with a dot on every point) and their legend.
fn draw_lines<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    lines: &[Line],
    legend: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate<From = (f64, f64)>,
{
    for (name, color, pts) in lines {
        if pts.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        chart
            .draw_series(pts.iter().map(|&pt| Circle::new(pt, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// One panel per case: p50/p90/p99/p99.9 (µs, log scale) of both modes.
pub fn latency_svg(cmp: &Comparison, path: &Path) -> Result<()> {
    let pairs: Vec<&Pair> = cmp.pairs.iter().collect();
    let (rows, cols) = grid(pairs.len());
    let root =
        SVGBackend::new(path, (PANEL_W * cols as u32, PANEL_H * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for (area, p) in root.split_evenly((rows, cols)).iter().zip(&pairs) {
        let vals: Vec<f64> = modes(p)
            .iter()
            .filter_map(|(_, _, s)| *s)
            .flat_map(|s| s.pct_us.iter().map(|a| a.median))
            .collect();
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min).max(0.01) / 1.5;
        let hi = vals.iter().cloned().fold(0.0, f64::max).max(lo * 2.0) * 1.5;
        let mut chart = ChartBuilder::on(area)
            .caption(p.name(), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.3f64..3.3f64, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.01 && (0.0..4.0).contains(&i) {
                    PCTS[i as usize].1.to_string()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| fmt_axis(*v))
            .y_desc("µs")
            .draw()
            .map_err(err)?;
        let lines: Vec<Line> = modes(p)
            .into_iter()
            .filter_map(|(name, color, side)| {
                let pts = side?
                    .pct_us
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (i as f64, a.median))
                    .collect();
                Some((name, color, pts))
            })
            .collect();
        draw_lines(&mut chart, &lines, SeriesLabelPosition::UpperLeft)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// One panel per series (cases equal but for the size): requests/s
/// against payload size (log2 axis) for both modes.
pub fn throughput_svg(cmp: &Comparison, path: &Path) -> Result<()> {
    let mut series: Vec<(String, Vec<&Pair>)> = Vec::new();
    for p in cmp.pairs.iter().filter(|p| p.size.is_some()) {
        let name = p.series();
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(p),
            None => series.push((name, vec![p])),
        }
    }
    let (rows, cols) = grid(series.len());
    let root =
        SVGBackend::new(path, (PANEL_W * cols as u32, PANEL_H * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for (area, (name, pairs)) in root.split_evenly((rows, cols)).iter().zip(&series) {
        let sizes: Vec<f64> = pairs
            .iter()
            .filter_map(|p| p.size)
            .map(|s| (s.max(1) as f64).log2())
            .collect();
        let (xmin, xmax) = (
            sizes.iter().cloned().fold(f64::INFINITY, f64::min),
            sizes.iter().cloned().fold(0.0, f64::max),
        );
        let ymax = pairs
            .iter()
            .flat_map(|p| modes(p).map(|(_, _, s)| s.map_or(0.0, |s| s.qps.median)))
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(name.as_str(), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(56)
            .build_cartesian_2d((xmin - 0.5)..(xmax + 0.5), 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(((xmax - xmin) as usize + 2).min(12))
            .x_label_formatter(&|x| {
                let r = x.round();
                if (x - r).abs() < 0.01 && r >= 0.0 {
                    size_label(2f64.powf(r) as usize)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| fmt_axis(*v))
            .y_desc("requests/s")
            .draw()
            .map_err(err)?;
        let lines: Vec<Line> = [("baseline", BASE, false), ("accelerated", ACCEL, true)]
            .into_iter()
            .map(|(label, color, accel)| {
                let pts = pairs
                    .iter()
                    .filter_map(|p| {
                        let s = if accel { &p.accel } else { &p.base };
                        Some(((p.size?.max(1) as f64).log2(), s.as_ref()?.qps.median))
                    })
                    .collect();
                (label, color, pts)
            })
            .collect();
        draw_lines(&mut chart, &lines, SeriesLabelPosition::UpperRight)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
