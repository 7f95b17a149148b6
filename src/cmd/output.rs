//! Printing received messages, shared by `recv`, `create --hold` and
//! `attach --hold`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use shmhub::Frame;

use super::parse::role_value;
use super::text::{counted, shown};
use shmhub::Party;

/// Where and how received messages are written.
pub struct MessagePrinter {
    json: bool,
    /// The `--output` file, and its path for the errors that name it.
    output: Option<(File, PathBuf)>,
    segment: PathBuf,
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
                File::create(p)
                    .map(|file| (file, p.to_path_buf()))
                    .with_context(|| format!("{}: cannot open for writing", shown(&p)))
            })
            .transpose()?;
        Ok(MessagePrinter {
            json,
            output,
            segment: segment.to_path_buf(),
        })
    }

    /// Writes one message. A failed write says which message was lost (it
    /// has already been taken off its ring), where it was being written,
    /// and the operating system's cause. (A reader that went away keeps
    /// its broken pipe in the error's chain, so the command ends quietly
    /// with 0, as for every command whose reader leaves.)
    pub fn print(&mut self, from: Party, to: Party, frame: &Frame) -> anyhow::Result<()> {
        self.write(from, to, frame).map_err(|(target, cause)| {
            anyhow::Error::new(cause).context(format!(
                "{}: message id {} ({}) from {from} was received but could not be written to {target}",
                shown(&self.segment),
                frame.desc.id,
                counted(frame.payload().len() as u64, "byte", "bytes")
            ))
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

    /// Writes one message; an error says where it was being written (the
    /// `--output` file, or standard output) and why.
    fn write(
        &mut self,
        from: Party,
        to: Party,
        frame: &Frame,
    ) -> Result<(), (String, std::io::Error)> {
        let payload = frame.payload();
        if let Some((file, path)) = &mut self.output {
            file.write_all(payload)
                .map_err(|e| (shown(path).to_string(), e))?;
        }
        let stdout = |e| ("standard output".to_string(), e);
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
            writeln!(out, "{obj}").map_err(stdout)?;
        } else if self.output.is_none() {
            out.write_all(payload).map_err(stdout)?;
            out.write_all(b"\n").map_err(stdout)?;
        }
        out.flush().map_err(stdout)
    }
}
