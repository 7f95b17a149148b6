//! `shmhub reclaim`: reclaim the entries of guests whose process died, and
//! say why every other entry was left alone.

use serde_json::json;
use shmhub::PeerId;
use shmhub::admin::{SkipReason, Skipped};

use super::error::OnSegment;
use super::exit::Outcome;
use super::segment::SegmentArgs;
use super::text::{print_line, shown};

const EXAMPLES: &str = "\
Examples:
  shmhub reclaim demo          # prints the reclaimed peer ids, one per line;
                               # on stderr, each entry left alone and why
  shmhub reclaim demo --json";

/// Arguments of `shmhub reclaim`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, mut_arg("json", |json| json.help(JSON)))]
pub struct Args {
    /// The segment, whom to trust, and `--json`.
    #[command(flatten)]
    pub segment: SegmentArgs,
}

/// What `--json` prints.
const JSON: &str =
    r#"Print JSON: {"reclaimed":[ids],"skipped":[{"peer","holder","reason","code"}]}"#;

/// Runs `shmhub reclaim`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let (segment, mut host) = args.segment.open_host()?;
    let path = &segment.path;
    let report = host.reclaim_dead_report().on_segment(path)?;
    if args.segment.json {
        let skipped: Vec<_> = report.skipped.iter().map(skipped_json).collect();
        print_line(json!({ "reclaimed": report.reclaimed, "skipped": skipped }))?;
    } else {
        // Standard output stays the reclaimed ids alone, for scripts.
        for s in &report.skipped {
            eprintln!("{}: skipped peer {}: {s}", shown(&path), s.peer);
        }
        let scripted: Vec<PeerId> = report
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::Scripted)
            .map(|s| s.peer)
            .collect();
        if let Some(hint) = scripted_hint(&segment.name, &scripted) {
            eprintln!("{}: {hint}", shown(&path));
        }
        for p in report.reclaimed {
            print_line(p)?;
        }
    }
    Ok(Outcome::Done)
}

/// One skipped entry: why in words, and as a stable code.
fn skipped_json(s: &Skipped) -> serde_json::Value {
    json!({
        "peer": s.peer,
        "holder": s.holder,
        "reason": s.to_string(),
        "code": s.reason,
    })
}

/// How to free the scripted claims `ids` of `segment` (as the user named
/// it), if there are any, such as: free the scripted claim with
/// `shmhub detach SEGMENT --peer-id 1`.
pub fn scripted_hint(segment: &str, ids: &[PeerId]) -> Option<String> {
    let detach = format!("shmhub detach {} --peer-id", shell_word(segment));
    match ids {
        [] => None,
        [one] => Some(format!("free the scripted claim with `{detach} {one}`")),
        many => {
            let ids: Vec<String> = many.iter().map(PeerId::to_string).collect();
            Some(format!(
                "free a scripted claim with `{detach} N` (N = {})",
                ids.join(", ")
            ))
        }
    }
}

/// `word` as one shell word: as it is when it needs no quoting, between
/// `$'` and `'` when it has characters [`shown`] escapes (which bash reads
/// back), else between single quotes.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./+:@,=%".contains(c));
    let escaped = shown(word).to_string();
    if plain {
        word.to_string()
    } else if escaped != word {
        format!("$'{}'", escaped.replace('\'', "\\'"))
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_read_back_as_the_name() {
        for (name, word) in [
            ("demo", "demo"),
            ("my seg", "'my seg'"),
            ("it's", "'it'\\''s'"),
            ("esc\x1b[1m it's", "$'esc\\e[1m it\\'s'"),
        ] {
            assert_eq!(shell_word(name), word);
        }
    }
}
