//! The QEMU guest agent over libvirt's `qemu_agent_command`. Every call is blocking (libvirt);
//! async callers go through `tokio::task::spawn_blocking`.

use base64::Engine;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use virt::domain::Domain;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("guest agent: {0}")]
    Call(String),
    #[error("guest agent: no such file {0}")]
    NotFound(String),
    #[error("guest agent: unexpected reply {0}")]
    Reply(String),
    #[error("guest command {cmd} did not finish within {secs} s")]
    ExecTimeout { cmd: String, secs: u64 },
}

#[derive(Clone)]
pub struct Agent {
    dom: Domain,
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Agent {
    pub fn new(dom: Domain) -> Agent {
        Agent { dom }
    }

    fn call(&self, cmd: Value, timeout_secs: i32) -> Result<Value, AgentError> {
        let text = self
            .dom
            .qemu_agent_command(&cmd.to_string(), timeout_secs, 0)
            .map_err(|e| classify(e.message()))?;
        let v: Value = serde_json::from_str(&text).map_err(|_| AgentError::Reply(text.clone()))?;
        Ok(v.get("return").cloned().unwrap_or(Value::Null))
    }

    pub fn ping(&self, timeout_secs: i32) -> Result<(), AgentError> {
        self.call(json!({"execute": "guest-ping"}), timeout_secs).map(|_| ())
    }

    /// Read a whole (small) guest file: /proc, /sys, logs. Large files are not meant for this.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, AgentError> {
        let handle = self.open(path, "r")?;
        let mut data = Vec::new();
        let res = loop {
            match self.read_chunk(handle) {
                Ok((chunk, eof)) => {
                    data.extend(chunk);
                    if eof {
                        break Ok(data);
                    }
                    if data.len() > 64 << 20 {
                        break Err(AgentError::Reply(format!("{path} is larger than 64 MiB")));
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.close(handle);
        res
    }

    pub fn read_string(&self, path: &str) -> Result<String, AgentError> {
        Ok(String::from_utf8_lossy(&self.read_file(path)?).into_owned())
    }

    pub fn file_exists(&self, path: &str) -> Result<bool, AgentError> {
        match self.open(path, "r") {
            Ok(h) => {
                self.close(h);
                Ok(true)
            }
            Err(AgentError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Open a guest file and keep the handle (for reading a growing file tick by tick).
    pub fn open(&self, path: &str, mode: &str) -> Result<i64, AgentError> {
        let h = self.call(json!({"execute": "guest-file-open", "arguments": {"path": path, "mode": mode}}), 5)?;
        h.as_i64().ok_or_else(|| AgentError::Reply(h.to_string()))
    }

    /// One `guest-file-read` of up to 64 KiB: the bytes, and whether the end was reached.
    fn read_chunk(&self, handle: i64) -> Result<(Vec<u8>, bool), AgentError> {
        const CHUNK: usize = 65536;
        let r = self.call(json!({"execute": "guest-file-read", "arguments": {"handle": handle, "count": CHUNK}}), 5)?;
        let chunk = base64::engine::general_purpose::STANDARD
            .decode(r["buf-b64"].as_str().unwrap_or(""))
            .map_err(|e| AgentError::Reply(e.to_string()))?;
        let eof = r["eof"].as_bool().unwrap_or(true) || chunk.len() < CHUNK;
        Ok((chunk, eof))
    }

    /// Read everything new in an open file. Bytes already read are returned even if a later
    /// read fails: the guest has moved past them.
    pub fn read_new(&self, handle: i64) -> Vec<u8> {
        let mut data = Vec::new();
        while let Ok((chunk, eof)) = self.read_chunk(handle) {
            data.extend(chunk);
            if eof {
                break;
            }
        }
        data
    }

    pub fn close(&self, handle: i64) {
        let _ = self.call(json!({"execute": "guest-file-close", "arguments": {"handle": handle}}), 5);
    }

    /// Write a (small) guest file whole, created or truncated.
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), AgentError> {
        let h = self.open(path, "w")?;
        for chunk in data.chunks(48 * 1024) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(chunk);
            if let Err(e) = self.call(json!({"execute": "guest-file-write", "arguments": {"handle": h, "buf-b64": b64}}), 10) {
                self.close(h);
                return Err(e);
            }
        }
        self.close(h);
        Ok(())
    }

    /// Create (or truncate) an empty file.
    pub fn touch(&self, path: &str) -> Result<(), AgentError> {
        let h = self.open(path, "w")?;
        self.close(h);
        Ok(())
    }

    /// Start a program in the guest without waiting for it; returns its pid.
    pub fn spawn(&self, path: &str, args: &[&str]) -> Result<i64, AgentError> {
        let r = self.call(json!({"execute": "guest-exec", "arguments": {"path": path, "arg": args, "capture-output": false}}), 10)?;
        r["pid"].as_i64().ok_or_else(|| AgentError::Reply(r.to_string()))
    }

    /// Freeze the guest's filesystems: everything written is on the disk, the ext4 journal
    /// checkpointed, and nothing more is written until `thaw`. Writing out a large dirty page
    /// cache takes a while under emulation, hence the generous timeout.
    pub fn freeze(&self) -> Result<u64, AgentError> {
        let r = self.call(json!({"execute": "guest-fsfreeze-freeze"}), 300)?;
        r.as_u64().ok_or_else(|| AgentError::Reply(r.to_string()))
    }

    pub fn thaw(&self) -> Result<(), AgentError> {
        self.call(json!({"execute": "guest-fsfreeze-thaw"}), 60).map(|_| ())
    }

    /// CPU seconds the guest agent itself has used: it opens /proc/self/stat, so "self" is it.
    pub fn own_cpu_seconds(&self) -> Option<f64> {
        crate::guest::pidstat::cpu_seconds(&self.read_string("/proc/self/stat").ok()?)
    }

    /// Run a program in the guest and wait for it (polling `guest-exec-status`).
    pub fn exec(&self, path: &str, args: &[&str], timeout: Duration) -> Result<ExecOutput, AgentError> {
        let cmd_text = format!("{path} {}", args.join(" "));
        let r = self.call(
            json!({"execute": "guest-exec", "arguments": {"path": path, "arg": args, "capture-output": true}}),
            10,
        )?;
        let pid = r["pid"].as_i64().ok_or_else(|| AgentError::Reply(r.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let s = self.call(json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}), 10)?;
            if s["exited"].as_bool() == Some(true) {
                let dec = |k: &str| {
                    s[k].as_str()
                        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default())
                        .unwrap_or_default()
                };
                // A signal-killed command has no exitcode; report it as 128+signal like a shell.
                let exit_code = s["exitcode"].as_i64().or_else(|| s["signal"].as_i64().map(|n| 128 + n)).unwrap_or(-1);
                return Ok(ExecOutput { exit_code, stdout: dec("out-data"), stderr: dec("err-data") });
            }
            if Instant::now() >= deadline {
                return Err(AgentError::ExecTimeout { cmd: cmd_text, secs: timeout.as_secs() });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

fn classify(message: &str) -> AgentError {
    if message.contains("No such file or directory") {
        AgentError::NotFound(message.to_string())
    } else {
        AgentError::Call(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_told_apart() {
        assert!(matches!(
            classify("internal error: unable to execute QEMU agent command 'guest-file-open': failed to open file '/x': No such file or directory"),
            AgentError::NotFound(_)
        ));
        assert!(matches!(classify("Guest agent is not responding"), AgentError::Call(_)));
    }
}
