//! Printing received messages, shared by `recv`, `create --hold` and
//! `attach --hold`.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use shmhub::Frame;

use super::parse::role_value;
use super::text::shown;
use shmhub::Party;

/// Where and how received messages are written.
pub struct MessagePrinter {
    json: bool,
    output: Option<File>,
    segment: std::path::PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl MessagePrinter {
    /// Prints to stdout (JSON lines when `json`); payload bytes go to
    /// `output` instead, when given (created, or truncated if it exists).
    pub fn new(segment: &Path, json: bool, output: Option<&Path>) -> anyhow::Result<Self> {
        let output = output
            .map(|p| {
                File::create(p).with_context(|| format!("{}: cannot open for writing", shown(&p)))
            })
            .transpose()?;
        Ok(MessagePrinter {
            json,
            output,
            segment: segment.to_path_buf(),
        })
    }

    /// Writes one message. A failed write says which message was lost: it
    /// has already been taken off its ring. (A reader that went away keeps
    /// its broken pipe in the error's chain, so the command ends quietly
    /// with 0, as for every command whose reader leaves.)
    pub fn print(&mut self, from: Party, to: Party, frame: &Frame) -> anyhow::Result<()> {
        self.write(from, to, frame).with_context(|| {
            format!(
                "{}: message id {} ({} bytes) from {from} was received but could not be written out",
                shown(&self.segment),
                frame.desc.id,
                frame.payload().len()
            )
        })
    }

    /// Whether standard output is a pipe or socket whose reader has gone
    /// (`| head` after its lines): then taking another message off its
    /// ring would only lose it, so the caller stops first. A reader that
    /// leaves between this look and the write still costs the message
    /// being written.
    pub fn reader_gone(&self) -> bool {
        let mut out = libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: `out` is one valid pollfd that lives across the call, and
        // a timeout of 0 only asks, without waiting.
        let ready = unsafe { libc::poll(&mut out, 1, 0) };
        ready == 1 && out.revents & libc::POLLERR != 0
    }

    fn write(&mut self, from: Party, to: Party, frame: &Frame) -> anyhow::Result<()> {
        let payload = frame.payload();
        if let Some(file) = &mut self.output {
            file.write_all(payload).context("writing the output file")?;
        }
        let mut out = std::io::stdout().lock();
        if self.json {
            let d = &frame.desc;
            let mut obj = json!({
                "from": role_value(from),
                "to": role_value(to),
                "msg_type": d.msg_type,
                "msg_type_name": shmhub::msg_type::name(d.msg_type),
                "id": d.id,
                "method_id": d.method_id,
                "len": payload.len(),
                "placement": if d.is_slot() { "slot" } else { "inline" },
                "payload_hex": hex(payload),
            });
            if let Ok(text) = std::str::from_utf8(payload) {
                obj["payload_utf8"] = json!(text);
            }
            writeln!(out, "{obj}")?;
        } else if self.output.is_none() {
            out.write_all(payload)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    }
}
