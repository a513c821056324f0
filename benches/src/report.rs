//! `all`: every workload, three runs each, one summary line per result, all
//! of it as JSON, and a chart of time and bytes against N.
//!
//! Why each workload runs as a child process of this same binary, through
//! its public subcommand (`w3 --n 1000 --runs 3`, ...): a workload's runner
//! already makes fresh processes, takes medians and prints a
//! `stat=median` line; `all` only has to collect those lines. A workload
//! that fails is reported and the others still run, so one regression does
//! not hide every other figure.
//!
//! The chart (`bench-results/chart.svg`, plotters' SVG backend, no system
//! fonts) puts wall time and bytes against N on log-log axes, so a line that
//! climbs with N (W1, which must move every document) and one that stays
//! flat (W2, which must cost only what changed) are told apart at a glance.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{ensure, Context};
use plotters::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::RunArgs;

/// The document counts W1, W2 and W3 run at.
const SIZES: [u64; 2] = [1_000, 10_000];
/// The many-technicians shape `all` runs.
const MANY_TECHS: usize = 200;
const MANY_PER_TECH: usize = 50;
/// Longest line read back from a workload.
const LINE_BYTES_MAX: u64 = 64 * 1024;

/// One workload at one size: what its `stat=median` line said.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Outcome {
    pub(crate) workload: String,
    pub(crate) n: u64,
    /// Every `key=value` of the median line, as printed.
    pub(crate) figures: BTreeMap<String, String>,
    pub(crate) command: String,
    pub(crate) error: Option<String>,
}

impl Outcome {
    fn figure(&self, key: &str) -> Option<f64> {
        self.figures.get(key)?.parse().ok()
    }
}

pub(crate) fn all(args: &RunArgs) -> anyhow::Result<ExitCode> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    let (_copy, exe) = private_exe()?;
    let mut jobs: Vec<(String, u64, Vec<String>)> = Vec::new();
    for workload in ["w3", "w1", "w2"] {
        for n in SIZES {
            jobs.push((
                workload.to_uppercase(),
                n,
                vec![workload.into(), format!("--n={n}")],
            ));
        }
    }
    // The gateway's figures (changes feed, REST), at their own sizes.
    for workload in ["feed", "rest"] {
        jobs.push((workload.into(), 0, vec![workload.into()]));
    }
    jobs.push((
        "many".into(),
        (MANY_TECHS * MANY_PER_TECH) as u64,
        vec![
            "many".into(),
            format!("--techs={MANY_TECHS}"),
            format!("--per-tech={MANY_PER_TECH}"),
        ],
    ));
    let mut outcomes = Vec::new();
    for (workload, n, mut command) in jobs {
        command.push(format!("--runs={}", args.runs));
        if let Some(fixture) = &args.once.fixture {
            command.push(format!("--fixture={}", fixture.display()));
        }
        if let Some(dir) = &args.once.dir {
            command.push(format!("--dir={}", dir.display()));
        }
        eprintln!("all: {}", command.join(" "));
        outcomes.extend(run_one(&exe, &workload, n, &command));
    }

    println!("\nsummary (medians of {} runs):", args.runs);
    for outcome in &outcomes {
        println!("{}", summary_line(outcome));
    }
    let dir = crate::results_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let report = json!({
        "runs": args.runs,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "results": outcomes,
    });
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let chart = dir.join("chart.svg");
    draw_chart(&outcomes, &chart)?;
    eprintln!(
        "results written to {} and {}",
        path.display(),
        chart.display()
    );
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    if failed > 0 {
        eprintln!("{failed} workload(s) failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A private copy of this program for the child runs. The target directory
/// is shared: a `cargo build` elsewhere may replace the binary while a long
/// run is under way, and later runs would then start another program (seen:
/// "unrecognized subcommand" in the third many-technicians run).
///
/// `FIELDSYNC_BENCH_NO_COPY=1` runs the children from this program's own
/// path instead: a profiler needs the binary to stay on disk to name
/// functions and unwind stacks (do not rebuild during such a run).
pub(crate) fn private_exe() -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let dir = tempfile::Builder::new()
        .prefix("fieldsync-bench-exe-")
        .tempdir()
        .context("cannot make a temporary directory")?;
    if std::env::var_os("FIELDSYNC_BENCH_NO_COPY").is_some_and(|v| v == "1") {
        return Ok((dir, exe));
    }
    let copy = dir.path().join("fieldsync-bench");
    std::fs::copy(&exe, &copy)
        .with_context(|| format!("cannot copy {} to {}", exe.display(), copy.display()))?;
    Ok((dir, copy))
}

/// Run one workload's subcommand, echo what it prints, and keep each of its
/// median lines (one per result; `n` as the line says, if it says).
fn run_one(exe: &Path, workload: &str, n: u64, command: &[String]) -> Vec<Outcome> {
    let outcome = |figures: BTreeMap<String, String>, error: Option<String>| Outcome {
        workload: figures
            .get("workload")
            .cloned()
            .unwrap_or_else(|| workload.to_string()),
        n: figures.get("n").and_then(|n| n.parse().ok()).unwrap_or(n),
        figures,
        command: format!("fieldsync-bench {}", command.join(" ")),
        error,
    };
    match run_child(exe, command) {
        Ok(lines) => {
            let medians: Vec<Outcome> = lines
                .iter()
                .filter(|line| line.contains("stat=median"))
                .map(|line| outcome(parse_line(line), None))
                .collect();
            if medians.is_empty() {
                vec![outcome(
                    BTreeMap::new(),
                    Some("printed no median line".into()),
                )]
            } else {
                medians
            }
        }
        Err(error) => vec![outcome(BTreeMap::new(), Some(format!("{error:#}")))],
    }
}

fn run_child(exe: &Path, command: &[String]) -> anyhow::Result<Vec<String>> {
    let mut child = Command::new(exe)
        .args(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the workload")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(LINE_BYTES_MAX)
            .read_line(&mut line)
            .context("reading the workload's output")?;
        if read == 0 {
            break;
        }
        print!("{line}");
        lines.push(line.trim_end().to_string());
    }
    let status = child.wait()?;
    ensure!(status.success(), "exited with {status}");
    Ok(lines)
}

/// `key=value` pairs of a result line (`workload=W1 n=1000 wall_s=0.5 ...`).
pub(crate) fn parse_line(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// The uniform summary line: workload, n, wall_s, bytes, rss_mb, and the
/// workload's own extra figures after them.
fn summary_line(outcome: &Outcome) -> String {
    if let Some(error) = &outcome.error {
        return format!(
            "workload={} n={} error={:?}",
            outcome.workload, outcome.n, error
        );
    }
    let get = |key: &str| outcome.figures.get(key).map_or("-", String::as_str);
    let mut line = format!(
        "workload={} n={} wall_s={} bytes={} rss_mb={}",
        outcome.workload,
        outcome.n,
        get("wall_s"),
        get("bytes"),
        get("rss_mb")
    );
    let shown = ["workload", "n", "wall_s", "bytes", "rss_mb", "stat", "runs"];
    for (key, value) in &outcome.figures {
        if !shown.contains(&key.as_str()) {
            line.push_str(&format!(" {key}={value}"));
        }
    }
    line
}

/// A series on the chart: workload name and its (n, value) points.
type Series = (String, Vec<(f64, f64)>);

fn series(outcomes: &[Outcome], workloads: &[&str], key: &str) -> Vec<Series> {
    workloads
        .iter()
        .map(|workload| {
            let points = outcomes
                .iter()
                .filter(|o| o.workload == *workload && o.error.is_none())
                .filter_map(|o| Some((o.n as f64, o.figure(key)?)))
                .filter(|(_, value)| *value > 0.0)
                .collect();
            (label(outcomes, workload), points)
        })
        .collect()
}

/// The series' name; W2 says how many documents changed at each N (the
/// fixture has 1 edit below line 1,000 and 10 in all), since its cost
/// should follow that, not N.
fn label(outcomes: &[Outcome], workload: &str) -> String {
    if workload != "W2" {
        return workload.to_string();
    }
    let changed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.workload == workload && o.error.is_none())
        .filter_map(|o| o.figures.get("docs").map(String::as_str))
        .collect();
    if changed.is_empty() {
        return workload.to_string();
    }
    format!("W2 (docs changed: {})", changed.join(", "))
}

/// Two panels, wall seconds and bytes on the wire, against N, log-log.
pub(crate) fn draw_chart(outcomes: &[Outcome], path: &Path) -> anyhow::Result<()> {
    let time = series(outcomes, &["W1", "W2", "W3"], "wall_s");
    let bytes = series(outcomes, &["W1", "W2"], "bytes");
    let root = SVGBackend::new(path, (960, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let (left, right) = root.split_horizontally(480);
    panel(&left, "wall time (s) vs N", &time)?;
    panel(&right, "bytes on the wire vs N", &bytes)?;
    root.present().map_err(chart_error)?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, v)| *v))
        .collect();
    let (low, high) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (low, high) = if values.is_empty() {
        (0.1, 10.0)
    } else {
        (low / 3.0, high * 3.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((500f64..20_000f64).log_scale(), (low..high).log_scale())
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(4)
        .y_labels(6)
        .x_desc("N (documents)")
        .x_label_formatter(&|n| format!("{n:.0}"))
        .y_label_formatter(&|v| short_number(*v))
        .draw()
        .map_err(chart_error)?;
    let colors = [RED, BLUE, GREEN];
    for ((name, points), color) in series.iter().zip(colors) {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(chart_error)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|point| Circle::new(*point, 4, color.filled())),
            )
            .map_err(chart_error)?;
        chart
            .draw_series(points.iter().map(|(n, v)| {
                Text::new(short_number(*v), (*n, *v), ("sans-serif", 12).into_font())
            }))
            .map_err(chart_error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(chart_error)?;
    Ok(())
}

fn short_number(value: f64) -> String {
    if value >= 1e9 {
        format!("{:.1}G", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn chart_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(workload: &str, n: u64, wall_s: &str, bytes: &str) -> Outcome {
        let line = format!(
            "workload={workload} n={n} stat=median runs=3 wall_s={wall_s} bytes={bytes} rss_mb=A:1.0,B:2.0"
        );
        Outcome {
            workload: workload.into(),
            n,
            figures: parse_line(&line),
            command: String::new(),
            error: None,
        }
    }

    #[test]
    fn parses_key_value_lines() {
        let figures = parse_line("workload=W1 n=1000 stat=median wall_s=0.25 rss_mb=A:1,B:2");
        assert_eq!(figures["workload"], "W1");
        assert_eq!(figures["wall_s"], "0.25");
        assert_eq!(figures["rss_mb"], "A:1,B:2");
        assert!(!figures.contains_key("stat=median"));
    }

    #[test]
    fn summary_lines_lead_with_the_common_figures() {
        let line = summary_line(&outcome("W2", 1000, "0.01", "12000"));
        assert!(
            line.starts_with("workload=W2 n=1000 wall_s=0.01 bytes=12000 rss_mb=A:1.0,B:2.0"),
            "{line}"
        );
    }

    #[test]
    fn chart_is_an_svg_with_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let outcomes = vec![
            outcome("W1", 1_000, "0.4", "1200000"),
            outcome("W1", 10_000, "3.9", "12000000"),
            outcome("W2", 1_000, "0.02", "13000"),
            outcome("W2", 10_000, "0.02", "13100"),
        ];
        draw_chart(&outcomes, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("wall time (s) vs N"));
        assert!(svg.contains("bytes on the wire vs N"));
        assert!(svg.contains("12.0M"), "the W1 bytes label is drawn");
    }
}
