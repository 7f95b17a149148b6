//! Printing received messages, shared by `recv`, `create --hold` and
//! `attach --hold`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// Whether messages go to standard output and it is a pipe: then the
    /// next message is taken only once its reader has read the last one
    /// (see [`MessagePrinter::reader`]).
    waits_for_reader: bool,
}

/// Where the reader of standard output is, before a message is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// It has read everything written to it (or standard output is not a
    /// pipe, whose reader cannot be waited for).
    CaughtUp,
    /// It has not read it all yet, after the wait allowed.
    Behind,
    /// It went away (`| head` after its lines).
    Gone,
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
        let to_stdout = json || output.is_none();
        let pipe = rustix::fs::fstat(std::io::stdout())
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_fifo());
        Ok(MessagePrinter {
            json,
            output,
            segment: segment.to_path_buf(),
            waits_for_reader: to_stdout && pipe,
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

    /// Where the reader of standard output is, waiting up to `wait` for it
    /// to read what was written: the caller takes another message off its
    /// ring only once it has ([`Reader::CaughtUp`]). A message written
    /// into a pipe and not yet read is lost with the pipe when its reader
    /// leaves (`| head -2` stops reading at its second line), so, on a
    /// pipe, no more than the one message written after the reader's last
    /// read is ever at stake; the rest stays queued. [`Reader::Gone`]: the
    /// reader left, and taking another message would only lose it.
    pub fn reader(&self, wait: Duration) -> Reader {
        let start = Instant::now();
        // Most readers read at once: look again soon, then less often.
        let mut pause = Duration::from_micros(20);
        loop {
            if self.reader_gone() {
                return Reader::Gone;
            }
            let unread = || rustix::io::ioctl_fionread(std::io::stdout()).unwrap_or(0);
            if !self.waits_for_reader || unread() == 0 {
                return Reader::CaughtUp;
            }
            let left = wait.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Reader::Behind;
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Whether standard output is a pipe or socket whose reader has gone.
    fn reader_gone(&self) -> bool {
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
