//! A cell's domain, destroyed when the guard goes away: on success, error, timeout, panic or
//! cancellation (a dropped future drops its guard).

use virt::domain::Domain;

pub struct DomainGuard {
    domain: Option<Domain>,
    pub name: String,
    keep: bool,
}

impl DomainGuard {
    pub fn new(domain: Domain, name: String) -> Self {
        DomainGuard { domain: Some(domain), name, keep: false }
    }

    pub fn domain(&self) -> &Domain {
        self.domain.as_ref().expect("domain used after teardown")
    }

    /// The domain is gone by other means (saved by libvirt, which stops it): nothing to destroy.
    pub fn forget(&mut self) {
        self.domain = None;
    }

    /// `--keep-vm`: leave the guest running for inspection.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Destroy it through another connection to the same host, when this one died.
    pub fn destroy_via(&mut self, conn: &virt::connect::Connect) -> Result<(), String> {
        if self.domain.is_none() || self.keep {
            return Ok(());
        }
        match conn.lookup_domain_by_name(&self.name) {
            Ok(d) => d.destroy().map_err(|e| format!("cannot destroy domain {}: {}", self.name, e.message()))?,
            // Gone already (autodestroyed with the dead connection).
            Err(e) if e.code() == virt::enumutil::Enum::Known(virt::error::ErrorNumber::NoDomain) => {}
            Err(e) => return Err(format!("cannot find domain {}: {}", self.name, e.message())),
        }
        self.domain = None;
        Ok(())
    }

    /// Destroy now. Transient domains vanish from libvirt once destroyed.
    pub fn destroy(&mut self) -> Result<(), String> {
        let Some(d) = self.domain.take() else { return Ok(()) };
        if self.keep {
            return Ok(());
        }
        match d.destroy() {
            Ok(()) => Ok(()),
            // Already gone (qemu died, or someone else destroyed it): nothing left to clean.
            // (An error asking is not "gone": the connection may be lost, the guest running.)
            Err(e) if d.is_active().is_ok_and(|a| !a) => {
                tracing::debug!("destroy {}: {}", self.name, e.message());
                Ok(())
            }
            Err(e) => {
                // Keep it so Drop tries once more.
                let msg = format!("cannot destroy domain {}: {}", self.name, e.message());
                self.domain = Some(d);
                Err(msg)
            }
        }
    }
}

impl Drop for DomainGuard {
    fn drop(&mut self) {
        if let Err(e) = self.destroy() {
            eprintln!("perfvm: {e}; `perfvm cleanup` removes it once this process has exited");
            self.domain = None;
        }
    }
}
