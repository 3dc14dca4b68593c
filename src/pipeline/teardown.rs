//! What a cell holds, and giving it back: the domain first (nothing may still write into the
//! files), then the cell's files on its host and the tunnel to it, then the work directory here.
//! `teardown` does it in that order and reports what failed; dropping `Resources` without it
//! (an error, a timeout, a panic, a dropped future) does the same through the guards, since
//! fields drop in the order they are declared.

use crate::guest::agent::Agent;
use crate::hosts::{Host, Placed};
use crate::hypervisor::guard::DomainGuard;
use crate::profile::Redactor;

use super::prepare::WorkDir;

#[derive(Default)]
pub struct Resources {
    pub domain: Option<DomainGuard>,
    pub placed: Option<Placed>,
    pub work: Option<WorkDir>,
    /// The guest agent, once it answered (for the journal of a failed cell).
    pub agent: Option<Agent>,
    /// Takes the cell's secret out of what is saved.
    pub redactor: Redactor,
}

impl Resources {
    /// Text about to be saved, without the cell's secret.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// `--keep-vm`: leave the guest and its files for inspection.
    pub fn keep(&mut self) {
        if let Some(d) = self.domain.as_mut() {
            d.keep();
        }
        if let Some(w) = self.work.as_mut() {
            w.keep();
        }
    }

    /// Give everything back, in order. A remote host's connection can have died under the cell
    /// (Ctrl-C on a terminal kills the ssh libvirt runs for it): then through a new one
    /// (`Host::reconnect`).
    /// Blocking (libvirt destroy, removing a multi-GiB overlay). Returns what could not be done.
    pub fn teardown(&mut self, host: &Host) -> Vec<String> {
        let mut errors = Vec::new();
        let mut fresh: Option<Option<Result<virt::connect::Connect, String>>> = None;
        let mut reconnect = || fresh.get_or_insert_with(|| host.reconnect()).clone();
        let t = std::time::Instant::now();
        if let Some(mut d) = self.domain.take()
            && let Err(e) = d.destroy()
        {
            match reconnect() {
                Some(c) => {
                    if let Err(again) = c.and_then(|c| d.destroy_via(&c)) {
                        errors.push(format!("{e}; {again}"));
                    }
                }
                None => errors.push(e),
            }
        }
        tracing::debug!("teardown: domain gone after {:.3} s", t.elapsed().as_secs_f64());
        if let Some(p) = self.placed.take()
            && let Err(e) = p.remove(&mut reconnect)
        {
            errors.push(e);
        }
        tracing::debug!("teardown: host's files gone after {:.3} s", t.elapsed().as_secs_f64());
        if let Some(mut w) = self.work.take()
            && let Err(e) = w.remove()
        {
            errors.push(format!("cannot remove {}: {e}", w.path.display()));
        }
        tracing::debug!("teardown: work directory gone after {:.3} s", t.elapsed().as_secs_f64());
        errors
    }
}
