//! Printing a run: two tables for people, or one JSON document for
//! scripts. Only this file (and the progress bar) writes while `bench` runs.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};
use serde_json::json;

use super::judge::Target;
use super::measurement::{Kind, Measurement, Transport, find};
use super::plan::Plan;
use crate::cmd::common::{human_bytes, print_line};

/// A time in the unit that keeps it readable; `-` where a line has none.
fn ns(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.2} µs", v / 1e3),
        Some(v) => format!("{v:.0} ns"),
    }
}

/// A per-second rate, in thousands or millions.
fn rate_text(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.1} k/s", per_s / 1e3)
    }
}

/// How a line compares with the Unix socket's line of the same kind and
/// size, the transport most programs would use instead: latency for round
/// trips, rate for streams, nothing for the rest.
fn versus_socket(m: &Measurement, results: &[Measurement]) -> String {
    let socket = find(results, m.kind, Transport::UnixSocket, m.size);
    match (m.kind, socket) {
        (Kind::RoundTrip, Some(s)) => match (s.p50_ns, m.p50_ns) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x faster", a / b),
            _ => "-".into(),
        },
        (Kind::Stream, Some(s)) if s.msgs_per_s > 0.0 => {
            format!("{:.1}x", m.msgs_per_s / s.msgs_per_s)
        }
        _ => "-".into(),
    }
}

/// Prints the results table and the targets table.
pub fn print_tables(
    results: &[Measurement],
    targets: &[Target],
    plan: &Plan,
) -> anyhow::Result<()> {
    print_line(format_args!(
        "shmhub bench: {} CPUs{}",
        plan.cpus,
        if plan.pinned {
            ", processes pinned to CPUs 0 and 1"
        } else {
            ""
        }
    ))?;
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "kind",
            "transport",
            "size",
            "p50",
            "p99",
            "p99.9",
            "msgs/s",
            "bytes/s",
            "vs socket",
        ]);
    for m in results {
        let row = vec![
            Cell::new(m.kind),
            Cell::new(m.transport),
            Cell::new(human_bytes(m.size)).set_alignment(CellAlignment::Right),
            Cell::new(ns(m.p50_ns)).set_alignment(CellAlignment::Right),
            Cell::new(ns(m.p99_ns)).set_alignment(CellAlignment::Right),
            Cell::new(ns(m.p999_ns)).set_alignment(CellAlignment::Right),
            Cell::new(rate_text(m.msgs_per_s)).set_alignment(CellAlignment::Right),
            // Creating a segment moves no bytes: its size is not a payload.
            Cell::new(match m.kind {
                Kind::Create => "-".to_string(),
                _ => format!("{}/s", human_bytes(m.bytes_per_s as u64)),
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(versus_socket(m, results)).set_alignment(CellAlignment::Right),
        ];
        table.add_row(row);
    }
    print_line(table)?;
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_header(vec!["target", "ratio", "needed", "met"]);
    for target in targets {
        t.add_row(vec![
            target.name.to_string(),
            format!("{:.2}", target.ratio),
            target.needed.to_string(),
            if target.met {
                "yes".into()
            } else {
                "no".into()
            },
        ]);
    }
    print_line(t)?;
    Ok(())
}

/// Prints the run as one line of JSON, with the machine it ran on, since
/// numbers from different machines do not compare.
pub fn print_json(results: &[Measurement], targets: &[Target], plan: &Plan) -> anyhow::Result<()> {
    let doc = json!({
        "machine": { "cpus": plan.cpus, "pinned": plan.pinned, "os": std::env::consts::OS, "arch": std::env::consts::ARCH },
        "quick": plan.quick,
        "results": results,
        "targets": targets,
    });
    print_line(doc)
}
