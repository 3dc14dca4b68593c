//! Choosing hardware acceleration honestly. `/dev/kvm` existing, or libvirt advertising domain
//! type `kvm`, proves nothing: on these build machines the module is `kvm_pvm`, under which
//! unmodified guest kernels crash. KVM counts as usable only with kvm_intel or kvm_amd loaded
//! and /dev/kvm openable.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM where a vendor module (kvm_intel/kvm_amd) is loaded, else TCG.
    Auto,
    /// Hardware virtualization; refused where it cannot run.
    Kvm,
    /// Software emulation: slow, but works everywhere.
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// libvirt domain type.
    pub fn domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the host offers, read from sysfs and /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmProbe {
    pub vendor_module: Option<&'static str>,
    pub other_module: Option<String>,
    pub dev_kvm_usable: bool,
}

impl KvmProbe {
    pub fn read() -> KvmProbe {
        let sys = Path::new("/sys/module");
        let vendor_module = ["kvm_intel", "kvm_amd"].into_iter().find(|m| sys.join(m).exists());
        let other_module = ["kvm_pvm"].into_iter().find(|m| sys.join(m).exists()).map(str::to_string);
        let dev_kvm_usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        KvmProbe { vendor_module, other_module, dev_kvm_usable }
    }

    /// Why KVM cannot be used here, or None if it can.
    pub fn kvm_unusable_reason(&self) -> Option<String> {
        match (self.vendor_module, self.dev_kvm_usable) {
            (Some(_), true) => None,
            (Some(m), false) => Some(format!("{m} is loaded but /dev/kvm cannot be opened read-write (run scripts/setup.sh)")),
            (None, _) => Some(match &self.other_module {
                Some(m) => format!("the loaded KVM module is {m}, not kvm_intel/kvm_amd; unmodified guest kernels crash under it"),
                None => "no kvm_intel or kvm_amd module is loaded".to_string(),
            }),
        }
    }
}

/// Resolve the user's choice against the host.
pub fn resolve(choice: AccelChoice, probe: &KvmProbe) -> Result<Accel, String> {
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Auto => Ok(if probe.kvm_unusable_reason().is_none() { Accel::Kvm } else { Accel::Tcg }),
        AccelChoice::Kvm => match probe.kvm_unusable_reason() {
            None => Ok(Accel::Kvm),
            Some(why) => Err(format!("--accel kvm cannot run here: {why}; use --accel tcg or auto")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(vendor: Option<&'static str>, other: Option<&str>, dev: bool) -> KvmProbe {
        KvmProbe { vendor_module: vendor, other_module: other.map(str::to_string), dev_kvm_usable: dev }
    }

    #[test]
    fn auto_picks_kvm_only_with_vendor_module_and_device() {
        assert_eq!(resolve(AccelChoice::Auto, &probe(Some("kvm_intel"), None, true)), Ok(Accel::Kvm));
        assert_eq!(resolve(AccelChoice::Auto, &probe(Some("kvm_amd"), None, false)), Ok(Accel::Tcg));
        assert_eq!(resolve(AccelChoice::Auto, &probe(None, Some("kvm_pvm"), true)), Ok(Accel::Tcg));
        assert_eq!(resolve(AccelChoice::Auto, &probe(None, None, false)), Ok(Accel::Tcg));
    }

    #[test]
    fn explicit_kvm_is_refused_with_reason() {
        let err = resolve(AccelChoice::Kvm, &probe(None, Some("kvm_pvm"), true)).unwrap_err();
        assert!(err.contains("kvm_pvm"), "{err}");
        assert_eq!(resolve(AccelChoice::Tcg, &probe(Some("kvm_intel"), None, true)), Ok(Accel::Tcg));
    }

    #[test]
    fn domain_types() {
        assert_eq!(Accel::Kvm.domain_type(), "kvm");
        assert_eq!(Accel::Tcg.domain_type(), "qemu");
    }
}
