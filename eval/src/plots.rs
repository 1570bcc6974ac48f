//! PNG plots of a report: accuracy against mean latency per mode, the per-problem latency
//! distribution (empirical CDF per mode), and the replay's accuracy-latency frontier of selection
//! settings. Drawn with plotters' bitmap backend and a TrueType file
//! registered through ab_glyph, so no fontconfig/freetype is needed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plotters::prelude::*;
use plotters::style::FontStyle;
use scot_client::Mode;

use crate::error::EvalError;
use crate::mode_stats::ModeStats;
use crate::results::ModeGroups;

/// Debian fonts-dejavu-core.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FAMILY: &str = "sans-serif";

/// Fonts registered so far (plotters keeps a process-wide registry).
static REGISTERED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn register_font(path: &Path) -> Result<(), EvalError> {
    let mut registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if registered.iter().any(|p| p == path) {
        return Ok(());
    }
    let font_err = |message: String| EvalError::Font {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| font_err(e.to_string()))?;
    // plotters wants 'static font data; a report registers one small font per process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| font_err("not a TrueType/OpenType font".into()))?;
    registered.push(path.to_path_buf());
    Ok(())
}

/// A mode's colour in every plot (a result line's mode is [`Mode::name`]; grey for unknown names).
fn mode_color(mode: &str) -> RGBColor {
    match Mode::from_name(mode) {
        Some(Mode::Scot) => RGBColor(0x1f, 0x77, 0xb4),
        Some(Mode::TargetOnly) => RGBColor(0xd6, 0x27, 0x28),
        Some(Mode::DraftOnly) => RGBColor(0x2c, 0xa0, 0x2c),
        None => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Draws both plots for every data set; returns the PNG paths.
pub fn draw_all(
    stats: &[ModeStats],
    groups: &ModeGroups,
    out_dir: &Path,
    font: &Path,
) -> Result<Vec<PathBuf>, EvalError> {
    register_font(font)?;
    let mut datasets: Vec<&str> = stats.iter().map(|s| s.dataset.as_str()).collect();
    datasets.dedup();
    let mut written = Vec::new();
    for dataset in datasets {
        let rows: Vec<&ModeStats> = stats.iter().filter(|s| s.dataset == dataset).collect();
        let path = out_dir.join(format!("{dataset}-accuracy-latency.png"));
        accuracy_vs_latency(dataset, &rows, &path).map_err(|message| EvalError::Plot {
            path: path.clone(),
            message,
        })?;
        written.push(path);
        let series: Vec<(&str, Vec<f64>)> = groups
            .iter()
            .filter(|((d, _), _)| d == dataset)
            .map(|((_, mode), lines)| {
                let mut v: Vec<f64> = lines.iter().map(|l| l.total_ms / 1e3).collect();
                v.sort_by(f64::total_cmp);
                (mode.as_str(), v)
            })
            .collect();
        let path = out_dir.join(format!("{dataset}-latency-cdf.png"));
        latency_cdf(dataset, &series, &path).map_err(|message| EvalError::Plot {
            path: path.clone(),
            message,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn accuracy_vs_latency(dataset: &str, rows: &[&ModeStats], path: &Path) -> Result<(), String> {
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    // Room on the right for the legend (lower right), so it never covers a point.
    let max_s = rows
        .iter()
        .map(|r| r.mean_ms / 1e3)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.6;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{dataset}: accuracy vs mean latency"), (FAMILY, 28))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_s, 0.0..100.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("mean end-to-end latency per problem (s)")
        .y_desc("accuracy (%)")
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| e.to_string())?;
    for row in rows {
        let color = mode_color(&row.mode);
        let point = (row.mean_ms / 1e3, 100.0 * row.accuracy);
        let label = format!(
            "{} ({:.1}%, {:.1} s, n={})",
            row.mode, point.1, point.0, row.problems
        );
        chart
            .draw_series(std::iter::once(Circle::new(point, 8, color.filled())))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 10, y), 6, color.filled()));
        // Label offset up-right of the dot so it does not cover it.
        let label = EmptyElement::at(point)
            + Text::new(
                row.mode.clone(),
                (10, -24),
                (FAMILY, 16).into_font().color(&BLACK),
            );
        chart
            .draw_series(std::iter::once(label))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// The replay's accuracy against predicted latency (or acceptance, without costs) per setting, the
/// settings on the accuracy-latency frontier joined and named, and target-only on the same problems
/// (its accuracy as a line, and as a point where its latency is predicted).
pub fn replay_frontier(
    dataset: &str,
    points: &[(String, f64, f64)],
    target: Option<(f64, Option<f64>)>,
    x_is_latency: bool,
    path: &Path,
    font: &Path,
) -> Result<(), EvalError> {
    register_font(font)?;
    draw_frontier(dataset, points, target, x_is_latency, path).map_err(|message| EvalError::Plot {
        path: path.to_path_buf(),
        message,
    })
}

fn draw_frontier(
    dataset: &str,
    points: &[(String, f64, f64)],
    target: Option<(f64, Option<f64>)>,
    x_is_latency: bool,
    path: &Path,
) -> Result<(), String> {
    let root = BitMapBackend::new(path, (1000, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let target_x = target.and_then(|t| t.1).filter(|_| x_is_latency);
    let max_x = points
        .iter()
        .map(|p| p.2)
        .chain(target_x)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.15;
    let x_desc = if x_is_latency {
        "predicted mean end-to-end latency per problem (s, cost model)"
    } else {
        "draft acceptance (%)"
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{dataset}: selection settings, accuracy vs cost"),
            (FAMILY, 26),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..100.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("accuracy (%)")
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| e.to_string())?;
    let gray = RGBColor(0x9a, 0x9a, 0x9a);
    chart
        .draw_series(
            points
                .iter()
                .map(|(_, acc, x)| Circle::new((*x, *acc), 5, gray.filled())),
        )
        .map_err(|e| e.to_string())?
        .label("setting")
        .legend(move |(x, y)| Circle::new((x + 10, y), 5, gray.filled()));
    // Frontier: cheapest first, keep a point when it beats every cheaper one on accuracy.
    let mut sorted: Vec<&(String, f64, f64)> = points.iter().collect();
    sorted.sort_by(|a, b| a.2.total_cmp(&b.2).then(b.1.total_cmp(&a.1)));
    let mut frontier: Vec<&(String, f64, f64)> = Vec::new();
    for p in sorted {
        if frontier.last().is_none_or(|best| p.1 > best.1) {
            frontier.push(p);
        }
    }
    let blue = mode_color(Mode::Scot.name());
    chart
        .draw_series(LineSeries::new(
            frontier.iter().map(|(_, acc, x)| (*x, *acc)),
            blue.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label("frontier")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
    for (label, acc, x) in &frontier {
        chart
            .draw_series(std::iter::once(Circle::new((*x, *acc), 6, blue.filled())))
            .map_err(|e| e.to_string())?;
        let text = EmptyElement::at((*x, *acc))
            + Text::new(
                label.clone(),
                (8, -18),
                (FAMILY, 13).into_font().color(&BLACK),
            );
        chart
            .draw_series(std::iter::once(text))
            .map_err(|e| e.to_string())?;
    }
    if let Some((target, latency)) = target {
        let red = mode_color(Mode::TargetOnly.name());
        if let Some(x) = latency.filter(|_| x_is_latency) {
            chart
                .draw_series(std::iter::once(Circle::new((x, target), 8, red.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(
                [(0.0, target), (max_x, target)],
                red.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("target-only accuracy ({target:.1}%)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn latency_cdf(dataset: &str, series: &[(&str, Vec<f64>)], path: &Path) -> Result<(), String> {
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_s = series
        .iter()
        .flat_map(|(_, v)| v.last().copied())
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{dataset}: per-problem latency distribution"),
            (FAMILY, 28),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_s, 0.0..100.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("end-to-end latency (s)")
        .y_desc("problems answered within (%)")
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| e.to_string())?;
    for (mode, values) in series {
        let color = mode_color(mode);
        let n = values.len().max(1) as f64;
        // Step function: 0% before the fastest problem, 100% at the slowest.
        let mut points = vec![(0.0, 0.0)];
        for (i, v) in values.iter().enumerate() {
            points.push((*v, 100.0 * i as f64 / n));
            points.push((*v, 100.0 * (i + 1) as f64 / n));
        }
        points.push((max_s, 100.0));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(3)))
            .map_err(|e| e.to_string())?
            .label(format!("{mode} (n={})", values.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_font_is_a_clear_error() {
        let err = register_font(Path::new("/nonexistent/font.ttf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fonts-dejavu-core"), "{err}");
    }
}
