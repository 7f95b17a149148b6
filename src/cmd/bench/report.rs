//! Printing a run: two tables for people, or one JSON document for
//! scripts. Only this file (and the progress bar) writes while `bench` runs.

use comfy_table::{Cell, CellAlignment};
use serde_json::json;

use super::judge::Target;
use super::measurement::{Kind, Measurement, Transport, find, floor_of};
use super::plan::Plan;
use crate::cmd::table;
use crate::cmd::text::{human_bytes, print_line};

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
/// size, the transport most programs would use instead (nothing for the
/// socket's own lines, which are what the others are compared with).
fn versus_socket(m: &Measurement, results: &[Measurement]) -> String {
    if m.transport == Transport::UnixSocket {
        return "baseline".into();
    }
    versus(m, find(results, m.kind, Transport::UnixSocket, m.size))
}

/// How a line compares with the floor under it (see `floor_of`): "floor"
/// on the floors' own lines, "-" where there is none.
fn versus_floor(m: &Measurement, results: &[Measurement]) -> String {
    if m.transport.is_floor() {
        return "floor".into();
    }
    let floor = floor_of(m.kind, m.transport, m.size)
        .and_then(|(transport, size)| find(results, m.kind, transport, size));
    versus(m, floor)
}

/// How a line compares with `base`, in words: latency for round trips,
/// rate for streams, nothing for the rest (nor without a `base`).
fn versus(m: &Measurement, base: Option<&Measurement>) -> String {
    match (m.kind, base) {
        // A round trip is faster when it takes less time than the base's.
        (Kind::RoundTrip, Some(b)) => match (b.p50_ns(), m.p50_ns()) {
            (Some(base_ns), Some(ns)) => speed(base_ns, ns),
            _ => "-".into(),
        },
        // A stream is faster when it moves more messages per second.
        (Kind::Stream, Some(b)) => speed(m.msgs_per_s, b.msgs_per_s),
        _ => "-".into(),
    }
}

/// `ratio` = `better / worse` in words: "2.5x faster", "1.6x slower" (the
/// number always at least 1), or "same" when it rounds to 1.0x either way.
fn speed(better: f64, worse: f64) -> String {
    if !(better > 0.0 && worse > 0.0 && better.is_finite() && worse.is_finite()) {
        return "-".into();
    }
    let ratio = better / worse;
    if ratio >= 1.0 {
        let text = format!("{ratio:.1}");
        if text == "1.0" {
            "same".into()
        } else {
            format!("{text}x faster")
        }
    } else {
        let text = format!("{:.1}", 1.0 / ratio);
        if text == "1.0" {
            "same".into()
        } else {
            format!("{text}x slower")
        }
    }
}

/// What a line of many guests measured beside its rate: the host's share
/// of a CPU, and how fairly the guests were served; `None` for a line
/// that measured neither.
fn crowd_note(m: &Measurement) -> Option<String> {
    let cpu = m
        .host_cpu
        .map(|share| format!("host on a CPU {:.0}% of the time", share * 100.0));
    let fair = m
        .least_served
        .map(|least| format!("least-served guest at half-time {least:.2} of the mean"));
    match (cpu, fair) {
        (Some(cpu), Some(fair)) => Some(format!("{cpu}; {fair}")),
        (one, other) => one.or(other),
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
    let mut results_table = table::new([
        "kind",
        "transport",
        "size",
        "p50",
        "p99",
        "p99.9",
        "msgs/s",
        "bytes/s",
        "vs socket",
        "vs floor",
    ]);
    for m in results {
        let row = vec![
            Cell::new(m.kind),
            Cell::new(m.transport),
            Cell::new(match m.kind {
                Kind::List => format!("{} segments", m.size),
                _ => human_bytes(m.size),
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(ns(m.latency.map(|l| l.p50_ns))).set_alignment(CellAlignment::Right),
            Cell::new(ns(m.latency.map(|l| l.p99_ns))).set_alignment(CellAlignment::Right),
            Cell::new(ns(m.latency.map(|l| l.p999_ns))).set_alignment(CellAlignment::Right),
            Cell::new(rate_text(m.msgs_per_s)).set_alignment(CellAlignment::Right),
            // Creating a segment moves no bytes: its size is not a payload.
            Cell::new(match m.kind {
                Kind::Create | Kind::List => "-".to_string(),
                _ => format!("{}/s", human_bytes(m.bytes_per_s as u64)),
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(versus_socket(m, results)).set_alignment(CellAlignment::Right),
            Cell::new(versus_floor(m, results)).set_alignment(CellAlignment::Right),
        ];
        results_table.add_row(row);
    }
    table::print(results_table)?;
    for m in results {
        if let Some(note) = crowd_note(m) {
            print_line(format_args!("{}: {note}", m.transport))?;
        }
    }
    let rows = targets.iter().map(|target| {
        [
            target.name.to_string(),
            format!("{:.2}", target.ratio),
            target.needed.to_string(),
            if target.met { "yes" } else { "no" }.to_string(),
        ]
    });
    table::print(table::of(["target", "ratio", "needed", "met"], rows))?;
    for target in targets {
        if let Some(note) = &target.note {
            print_line(format_args!("{}: {note}", target.name))?;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::speed;

    #[test]
    fn speed_says_faster_or_slower_with_a_ratio_of_at_least_one() {
        assert_eq!(speed(10.0, 4.0), "2.5x faster");
        assert_eq!(speed(4.0, 10.0), "2.5x slower");
        assert_eq!(speed(0.8, 1.0), "1.2x slower");
        assert_eq!(speed(1.0, 1.0), "same");
        assert_eq!(speed(1.02, 1.0), "same");
        assert_eq!(speed(1.0, 1.04), "same");
        assert_eq!(speed(0.0, 1.0), "-");
        assert_eq!(speed(1.0, 0.0), "-");
    }
}
