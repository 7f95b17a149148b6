//! The command as a CI smoke test uses it (issue 32): a shell script, as a
//! user writes one, creates a segment, spawns a shell guest that answers
//! one message, exchanges with it, checks the reply with exit codes and
//! `jq`, and removes the segment, with a `trap` for the cleanup. It must
//! work 20 runs in a row, 4 at a time, and leave no segment behind.

use crate::common::*;

const SCRIPT: &str = r#"#!/usr/bin/env bash
set -euo pipefail
seg="smoke-$1"
cleanup() { shmhub rm "$seg" --force >/dev/null 2>&1 || true; }
trap cleanup EXIT
shmhub create "$seg" --max-guests 2 --slot-size 4KiB --slots 8 >/dev/null
# The plugin: a shell guest that answers one message and leaves.
shmhub spawn "$seg" --json -- sh -c '
  shmhub attach "$SHMHUB_SEGMENT" --peer-id "$SHMHUB_PEER_ID" >/dev/null
  msg=$(shmhub recv "$SHMHUB_SEGMENT" --as "$SHMHUB_PEER_ID" --timeout 20s)
  shmhub send "$SHMHUB_SEGMENT" --as "$SHMHUB_PEER_ID" "echo: $msg"
  shmhub detach "$SHMHUB_SEGMENT" --peer-id "$SHMHUB_PEER_ID"
' > "spawn-$1.json" 2>/dev/null &
spawned=$!
until [ -s "spawn-$1.json" ]; do sleep 0.01; done
id=$(head -1 "spawn-$1.json" | jq -r .peer_id)
shmhub send "$seg" --as host --to "$id" "hello $1"
reply=$(shmhub recv "$seg" --as host --timeout 20s --json | jq -r .payload_utf8)
[ "$reply" = "echo: hello $1" ] || { echo "run $1 got: $reply" >&2; exit 1; }
wait "$spawned"
[ "$(tail -1 "spawn-$1.json" | jq -r '.event + " " + (.exit_code | tostring)')" = "exited 0" ]
shmhub rm "$seg"
rm "spawn-$1.json"
"#;

#[test]
fn a_ci_smoke_script_works_20_runs_4_at_a_time_and_leaves_nothing() {
    let env = Env::new();
    std::fs::write(env.path("smoke.sh"), SCRIPT).unwrap();
    let bin_dir = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let r = env.shell(&format!(
        "PATH='{bin_dir}':\"$PATH\"; seq 20 | xargs -P 4 -I N bash ./smoke.sh N"
    ));
    assert!(
        r.status.success(),
        "exit {:?}\n{}\n{}",
        r.status,
        r.stdout,
        r.stderr
    );
    assert_eq!(env.listing(), ["smoke.sh"], "left behind");
}
