//! Parsers for argument values, and the roles they name.

use shmhub::{Party, PeerId};
use std::time::Duration;

/// Parses a byte size: a whole number, optionally followed by a unit.
/// Units are binary and case-insensitive: `k`, `kb` and `kib` all mean
/// 1024 bytes, and likewise `m`, `g` and `t`; `b` (or nothing) means bytes.
/// So `4096`, `4k`, `4KiB` and `4KB` are the same size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!("{text:?} is not a size (try 4096, 4KiB, 1MiB)"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown size unit {:?} in {text:?} (use B, KiB, MiB, GiB or TiB; K, KB and KiB all mean 1024 bytes)",
                unit
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a size that must fit in a `u32`.
pub fn parse_size_u32(text: &str) -> Result<u32, String> {
    let n = parse_size(text)?;
    u32::try_from(n).map_err(|_| format!("{text:?} is too large (at most 4GiB - 1)"))
}

/// Parses a duration: `0`, `250ms`, `5s`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 500ms, 5s, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1000.0,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (use ms, s, m, h)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a message type: a name (`data`, `request`, ...) or a number.
pub fn parse_msg_type(text: &str) -> Result<u16, String> {
    if let Some((_, v)) = shmhub::msg_type::NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(text))
    {
        return Ok(*v);
    }
    text.parse().map_err(|_| {
        let names: Vec<&str> = shmhub::msg_type::NAMES.iter().map(|(n, _)| *n).collect();
        format!(
            "{text:?} is not a message type (a number 0..=65535 or one of {})",
            names.join(", ")
        )
    })
}

/// Parses a wait strategy name.
pub fn parse_strategy(text: &str) -> Result<shmhub::WaitStrategy, String> {
    text.parse()
}

/// A role as JSON: `"host"` or the peer id.
pub fn role_value(role: Party) -> serde_json::Value {
    match role {
        Party::Host => serde_json::json!("host"),
        Party::Guest(n) => serde_json::json!(n),
    }
}

/// Parses `--as`: `host` or a peer id.
pub fn parse_role(text: &str) -> Result<Party, String> {
    if text.eq_ignore_ascii_case("host") {
        return Ok(Party::Host);
    }
    match text.parse::<PeerId>() {
        Ok(n) => Ok(Party::Guest(n)),
        Err(_) => Err(format!(
            "{text:?} is not a role: use 'host' or a peer id 1..=255"
        )),
    }
}

/// Parses a peer id `1..=255`: 0 names no guest, and is refused as any
/// other number out of range is.
pub fn parse_peer_id(text: &str) -> Result<PeerId, String> {
    text.parse::<PeerId>()
        .map_err(|_| format!("{text:?} is not a peer id (1..=255)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        for same in ["4096", "4k", "4K", "4kb", "4KB", "4kib", "4KiB", "4 KiB"] {
            assert_eq!(parse_size(same), Ok(4096), "{same}");
        }
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert_eq!(parse_size("3MB"), Ok(3 << 20));
        assert!(parse_size("abc").is_err());
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size_u32("4GiB").is_err());
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        for (text, duration) in [
            ("0", ms(0)),
            ("250ms", ms(250)),
            ("2m", ms(120_000)),
            ("1.5", ms(1500)),
        ] {
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
        for wrong in ["-1s", "soon"] {
            assert!(parse_duration(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn roles_and_types() {
        assert_eq!(parse_role("host"), Ok(Party::Host));
        assert_eq!(parse_role("3"), Ok(Party::Guest(PeerId::new(3).unwrap())));
        assert!(parse_role("0").is_err());
        assert!(parse_role("256").is_err());
        assert_eq!(parse_peer_id("255"), Ok(PeerId::new(255).unwrap()));
        for wrong in ["0", "256", "-1", "x"] {
            assert_eq!(
                parse_peer_id(wrong),
                Err(format!("{wrong:?} is not a peer id (1..=255)"))
            );
        }
        assert_eq!(parse_msg_type("request"), Ok(2));
        assert_eq!(parse_msg_type("700"), Ok(700));
        assert!(parse_msg_type("nope").is_err());
    }
}
