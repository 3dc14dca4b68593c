//! An ssh tunnel from a loopback port here to a guest's forwarded port on a remote host's
//! loopback: OpenSSH's client with the user's own keys and config, killed when dropped.

use super::spec::SshTarget;
use std::path::Path;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Tunnel {
    child: Child,
    pub local_port: u16,
}

impl Tunnel {
    /// Start `ssh -N -L` and wait until it listens here. Its messages go to `log`.
    pub fn open(ssh: &SshTarget, remote_port: u16, log: &Path, wait: Duration) -> Result<Tunnel, String> {
        let local_port = crate::proc::free_loopback_port().map_err(|e| format!("no free loopback port: {e}"))?;
        let err = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("ssh")
            .args(ssh.tunnel_args(local_port, remote_port))
            // Held open by perfvm for the tunnel's life (see tunnel_args).
            .stdin(Stdio::piped())
            // Its own process group: Ctrl-C on the terminal is perfvm's to handle; the tunnel
            // must outlive it until the cell is torn down.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        let mut t = Tunnel { child, local_port };
        let until = Instant::now() + wait;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", local_port)).is_ok() {
                return Ok(t);
            }
            if let Ok(Some(status)) = t.child.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("ssh to {} exited ({status}): {}", ssh.host, text.trim()));
            }
            if Instant::now() > until {
                return Err(format!("ssh to {} did not open the tunnel within {} s", ssh.host, wait.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether ssh still runs (it exits when the host goes away).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
