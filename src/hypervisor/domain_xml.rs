//! Domain XML for one cell. Pure: spec in, XML string out.

use crate::accel::Accel;
use crate::image::Boot;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct DomainSpec {
    pub name: String,
    /// Fixed for a guest that is saved (a saved state restores only under its UUID); else libvirt picks one.
    pub uuid: Option<String>,
    pub accel: Accel,
    pub ram_mib: u64,
    pub cpus: u32,
    pub boot: Boot,
    pub disk: PathBuf,
    pub seed: PathBuf,
    pub console_log: PathBuf,
    pub host_port: u16,
    pub guest_port: u16,
    /// `--ssh-key`: a second loopback forward to the guest's sshd.
    pub ssh_port: Option<u16>,
    /// Owner facts in `<metadata>`, so leftovers of dead processes can be found and removed:
    /// the pid and the machine it belongs to (a pid means nothing on another machine).
    pub owner_pid: u32,
    pub owner_machine: String,
    /// The owner id of the perfvm that made it (`owner`): its leftovers are found by it.
    pub owner_id: String,
    pub run_id: String,
    pub work_dir: PathBuf,
    /// `--keep-vm`: the guest outlives its perfvm process and is not an orphan.
    pub keep: bool,
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

fn p(path: &std::path::Path) -> String {
    escape(&path.to_string_lossy())
}

/// The user-mode network's qemu argument: on qemu's command line, not in libvirt's devices, so
/// that a restored guest can be given another port forward. restrict=on: the guest reaches
/// nothing outside; only the loopback port forward gets in.
pub fn netdev(s: &DomainSpec) -> String {
    let mut netdev = format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:{}", s.host_port, s.guest_port);
    if let Some(p) = s.ssh_port {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{p}-:22"));
    }
    netdev
}

/// The content of `<metadata>`: the owner facts.
pub fn metadata(s: &DomainSpec) -> String {
    format!(
        r#"
    <perfvm:cell xmlns:perfvm='{ns}'>
      <pid>{pid}</pid>
      <machine>{machine}</machine>
      <owner>{owner}</owner>
      <run>{run}</run>
      <workdir>{workdir}</workdir>
      <keep>{keep}</keep>
    </perfvm:cell>
  "#,
        ns = super::METADATA_NS,
        pid = s.owner_pid,
        machine = escape(&s.owner_machine),
        owner = escape(&s.owner_id),
        run = escape(&s.run_id),
        workdir = p(&s.work_dir),
        keep = s.keep,
    )
}

pub fn render(s: &DomainSpec) -> String {
    // KVM gets the host CPU; TCG's default model is the one that boots reliably.
    let cpu = match s.accel {
        Accel::Kvm => "  <cpu mode='host-passthrough'/>\n",
        Accel::Tcg => "",
    };
    format!(
        r#"<domain type='{dtype}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
{uuid}  <metadata>{metadata}</metadata>
  <memory unit='MiB'>{ram}</memory>
  <currentMemory unit='MiB'>{ram}</currentMemory>
  <vcpu placement='static'>{cpus}</vcpu>
{cpu}  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
{boot}  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{seed}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='virtio'>
      <stats period='1'/>
    </memballoon>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='{netdev}'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=n0,bus=pcie.0,addr=0x10'/>
  </qemu:commandline>
</domain>
"#,
        dtype = s.accel.domain_type(),
        name = escape(&s.name),
        uuid = s.uuid.as_ref().map(|u| format!("  <uuid>{}</uuid>\n", escape(u))).unwrap_or_default(),
        metadata = metadata(s),
        ram = s.ram_mib,
        cpus = s.cpus,
        boot = match &s.boot {
            Boot::Direct { kernel, initrd, cmdline } => format!(
                "    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>{}</cmdline>\n",
                p(kernel),
                p(initrd),
                escape(cmdline)
            ),
            Boot::Firmware => "    <boot dev='hd'/>\n".to_string(),
        },
        disk = p(&s.disk),
        seed = p(&s.seed),
        console = p(&s.console_log),
        netdev = escape(&netdev(s)),
    )
}

/// Owner facts read back from a domain's metadata XML (the `<perfvm:cell>` element).
#[derive(Debug, Clone, PartialEq)]
pub struct CellOwner {
    pub pid: u32,
    /// None in metadata written before machines were recorded (then: this machine's).
    pub machine: Option<String>,
    /// The owner id (`crate::owner`); None in metadata of an older perfvm.
    pub owner: Option<String>,
    pub run_id: String,
    pub work_dir: PathBuf,
    pub keep: bool,
}

pub fn parse_owner(metadata: &str) -> Option<CellOwner> {
    fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
        let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
        let end = xml[start..].find(&format!("</{name}>"))? + start;
        Some(&xml[start..end])
    }
    let unescape = |s: &str| {
        s.replace("&lt;", "<").replace("&gt;", ">").replace("&apos;", "'").replace("&quot;", "\"").replace("&amp;", "&")
    };
    Some(CellOwner {
        pid: tag(metadata, "pid")?.trim().parse().ok()?,
        machine: tag(metadata, "machine").map(|m| unescape(m.trim())),
        owner: tag(metadata, "owner").map(|m| unescape(m.trim())),
        run_id: unescape(tag(metadata, "run")?),
        work_dir: PathBuf::from(unescape(tag(metadata, "workdir")?)),
        keep: tag(metadata, "keep").is_some_and(|k| k.trim() == "true"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(accel: Accel) -> DomainSpec {
        DomainSpec {
            uuid: None,
            name: "perfvm-r1-512-1G".into(),
            accel,
            ram_mib: 512,
            cpus: 2,
            boot: Boot::Direct { kernel: "/c/img/vmlinuz".into(), initrd: "/c/img/initrd.img".into(), cmdline: "root=/dev/vda rw console=ttyS0".into() },
            disk: "/c/cells/x/overlay.qcow2".into(),
            seed: "/c/cells/x/seed.iso".into(),
            console_log: "/c/cells/x/console.log".into(),
            host_port: 40123,
            guest_port: 8080,
            ssh_port: None,
            owner_pid: 4242,
            owner_machine: "m1".into(),
            owner_id: "0123456789abcdef".into(),
            run_id: "run<&>".into(),
            work_dir: "/c/cells/x".into(),
            keep: false,
        }
    }

    #[test]
    fn tcg_domain_has_exact_ram_and_loopback_forward() {
        let x = render(&spec(Accel::Tcg));
        assert!(x.starts_with("<domain type='qemu'"));
        assert!(x.contains("<memory unit='MiB'>512</memory>"));
        assert!(x.contains("<currentMemory unit='MiB'>512</currentMemory>"));
        assert!(x.contains("<vcpu placement='static'>2</vcpu>"));
        assert!(x.contains("hostfwd=tcp:127.0.0.1:40123-:8080"));
        assert!(x.contains("restrict=on"));
        assert!(!x.contains("<cpu"));
        assert!(x.contains("<run>run&lt;&amp;&gt;</run>"));
        // Every forward binds loopback only; no ssh forward unless asked.
        assert_eq!(x.matches("hostfwd=").count(), 1);
        let mut s = spec(Accel::Tcg);
        s.ssh_port = Some(40124);
        let x = render(&s);
        assert_eq!(x.matches("hostfwd=tcp:127.0.0.1:").count(), 2);
        assert!(x.contains(",hostfwd=tcp:127.0.0.1:40124-:22"));
    }

    #[test]
    fn direct_boot_names_kernel_and_firmware_boot_the_disk() {
        let x = render(&spec(Accel::Tcg));
        assert!(x.contains("<kernel>/c/img/vmlinuz</kernel>\n    <initrd>/c/img/initrd.img</initrd>\n    <cmdline>root=/dev/vda rw console=ttyS0</cmdline>\n  </os>"));
        assert!(!x.contains("<boot dev"));
        let mut s = spec(Accel::Tcg);
        s.boot = Boot::Firmware;
        let x = render(&s);
        assert!(x.contains("<boot dev='hd'/>\n  </os>") && !x.contains("<kernel>"));
        // The XML stays well-formed either way.
        assert_eq!(x.matches("<os>").count(), 1);
    }

    #[test]
    fn kvm_domain_uses_host_cpu() {
        let x = render(&spec(Accel::Kvm));
        assert!(x.starts_with("<domain type='kvm'"));
        assert!(x.contains("<cpu mode='host-passthrough'/>"));
    }

    #[test]
    fn owner_round_trips_through_metadata() {
        let x = render(&spec(Accel::Tcg));
        let start = x.find("<perfvm:cell").unwrap();
        let end = x.find("</perfvm:cell>").unwrap();
        let owner = parse_owner(&x[start..end]).unwrap();
        assert_eq!(owner, CellOwner { pid: 4242, machine: Some("m1".into()), owner: Some("0123456789abcdef".into()), run_id: "run<&>".into(), work_dir: "/c/cells/x".into(), keep: false });
        let mut kept = spec(Accel::Tcg);
        kept.keep = true;
        assert!(parse_owner(&render(&kept)).unwrap().keep);
        assert_eq!(parse_owner("<cell/>"), None);
    }
}
