//! Building the NoCloud seed ISO for one cell.

use super::render::render;
use crate::profile::{DeliveredFile, Secret, TargetSpec};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::Path;

/// The rendered seed documents.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedDocs {
    pub user_data: String,
    pub meta_data: String,
}

/// perfvm's own files in every guest: the in-guest half of the sampler.
pub fn harness_files(probe_binary: std::path::PathBuf) -> Vec<DeliveredFile> {
    vec![DeliveredFile {
        host: probe_binary,
        seed_name: "perfvm-probe".into(),
        guest: crate::sampler::PROBE_BIN.into(),
        mode: 0o755,
    }]
}

/// A public key for `--ssh-key`, checked to be one `type base64 [comment]` line of printable
/// ASCII, so it can be written into user-data quoted.
#[derive(Debug, Clone, PartialEq)]
pub struct SshKey(String);

impl SshKey {
    pub fn parse(text: &str) -> Result<SshKey, String> {
        let line = text.trim();
        if line.is_empty() || line.lines().count() != 1 {
            return Err("must hold exactly one public key line (e.g. ~/.ssh/id_ed25519.pub)".into());
        }
        if !line.chars().all(|c| (' '..='~').contains(&c)) || line.contains(['"', '\\']) {
            return Err("a public key line is printable ASCII without quotes or backslashes".into());
        }
        let mut parts = line.split(' ');
        let kind = parts.next().unwrap_or_default();
        let body = parts.next().unwrap_or_default();
        let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
        if !known || body.len() < 16 || !body.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)) {
            return Err(format!("not an OpenSSH public key (expected `ssh-ed25519 AAAA… comment`, got type {kind:?})"));
        }
        Ok(SshKey(line.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// cloud-init's login settings: root locked and no keys, unless a debugging key was given.
fn access(ssh_key: Option<&SshKey>) -> String {
    match ssh_key {
        None => "disable_root: true".into(),
        // users: [] leaves no default user, so cloud-init gives the key to root.
        Some(k) => format!("disable_root: false\nssh_authorized_keys:\n  - \"{}\"", k.as_str()),
    }
}

/// Runs once in the guest (cloud-init runcmd): install the delivered files from the seed disk,
/// then start the target's unit; with `--ssh-key`, sshd first (the image ships it disabled and
/// without host keys). Pure.
pub fn setup_script(files: &[DeliveredFile], unit: &str, ssh: bool, target_setup: Option<&str>) -> String {
    format!("{}{}", install_script(files, ssh), start_script(unit, target_setup))
}

/// What a guest to be saved runs (`--boot saved`): the files installed, no target started (the
/// unit holds the cell's secret: each restored cell writes its own through the agent). The
/// placeholder unit is removed, never loaded by systemd: a restored cell's unit is then read
/// fresh as it is first asked for, without a reload. Pure.
pub fn saved_setup_script(files: &[DeliveredFile], unit: &str) -> String {
    format!("{}rm -f /etc/systemd/system/{unit}\n", install_script(files, false))
}

/// The target's set-up and start. Pure.
fn start_script(unit: &str, target_setup: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(cmds) = target_setup {
        s.push_str("# the target profile's set-up\n");
        s.push_str(cmds.trim_end());
        s.push('\n');
    }
    s.push_str("systemctl daemon-reload\n");
    s.push_str(&format!("systemctl enable --now {unit}\n"));
    s
}

fn install_script(files: &[DeliveredFile], ssh: bool) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # perfvm cell set-up: files from the seed disk, then the target unit.\n\
         set -eu\n\
         mkdir -p /run/perfvm-seed\n\
         mount -o ro LABEL=cidata /run/perfvm-seed\n",
    );
    for f in files {
        s.push_str(&format!("install -D -m {:o} /run/perfvm-seed/files/{} {}\n", f.mode, f.seed_name, f.guest));
    }
    s.push_str("umount /run/perfvm-seed\n");
    if ssh {
        // ed25519 only: an RSA host key takes seconds to generate under TCG.
        s.push_str("ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key\n");
        s.push_str("systemctl start ssh.service\n");
    }
    s
}

/// The unit file a guest to be saved gets: the path each restored cell writes its own to.
pub const UNIT_WRITTEN_PER_CELL: &str = "# perfvm --boot saved: each restored cell writes this unit through the guest agent.\n";

/// Render user-data and meta-data from the templates. Pure.
pub fn render_docs(
    user_tmpl: &str,
    meta_tmpl: &str,
    target: &TargetSpec,
    files: &[DeliveredFile],
    instance_id: &str,
    ssh_key: Option<&SshKey>,
    secret: Option<&Secret>,
) -> Result<SeedDocs> {
    // No secret: a guest to be saved, whose target each restored cell starts itself.
    let (unit_file, script) = match secret {
        Some(secret) => (target.unit_file(secret), setup_script(files, &target.unit, ssh_key.is_some(), target.setup_commands(secret).as_deref())),
        None => (UNIT_WRITTEN_PER_CELL.to_string(), saved_setup_script(files, &target.unit)),
    };
    let user: BTreeMap<&str, String> = [
        ("access", access(ssh_key)),
        ("unit_name", target.unit.clone()),
        ("unit_file", unit_file),
        ("setup_script", script),
    ]
    .into_iter()
    .collect();
    let meta: BTreeMap<&str, String> =
        [("instance_id", instance_id.to_string()), ("hostname", "perfvm-guest".to_string())].into_iter().collect();
    Ok(SeedDocs {
        user_data: render("user-data.yaml", user_tmpl, &user)?,
        meta_data: render("meta-data.yaml", meta_tmpl, &meta)?,
    })
}

/// Load the templates from `cloud-init/`.
pub fn load_templates(dir: &Path) -> Result<(String, String)> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).with_context(|| format!("cannot read cloud-init template {}", p.display()))
    };
    Ok((read("user-data.yaml")?, read("meta-data.yaml")?))
}

/// Write the seed ISO (`cidata` volume) with the docs and the files to deliver. It holds the
/// cell's secret (in the target's unit): readable by root alone (libvirt hands it to qemu's
/// user when the guest starts), and so is the directory it is staged in.
pub fn write_iso(docs: &SeedDocs, files: &[DeliveredFile], work: &Path, iso: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let stage = work.join("seed");
    std::fs::DirBuilder::new().mode(0o700).create(&stage)?;
    std::fs::create_dir_all(stage.join("files"))?;
    std::fs::write(stage.join("user-data"), &docs.user_data)?;
    std::fs::write(stage.join("meta-data"), &docs.meta_data)?;
    for f in files {
        std::fs::copy(&f.host, stage.join("files").join(&f.seed_name)).with_context(|| {
            format!("cannot copy {} into the seed (was it built? `cargo build --release`)", f.host.display())
        })?;
    }
    let out = std::process::Command::new("genisoimage")
        .args(["-quiet", "-volid", "cidata", "-joliet", "-rock", "-output"])
        .arg(iso)
        .arg(&stage)
        .output()
        .context("cannot run genisoimage (run scripts/setup.sh)")?;
    if !out.status.success() {
        bail!("genisoimage failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    std::fs::set_permissions(iso, std::fs::Permissions::from_mode(0o600))?;
    std::fs::remove_dir_all(&stage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::TargetMode;

    #[test]
    fn the_seed_holding_the_secret_is_for_root_alone() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (u, m) = shipped();
        let t = TargetSpec::reference(TargetMode::Stream, "/bin/true".into());
        let docs = render_docs(&u, &m, &t, &[], "i-1", None, Some(&crate::profile::Secret::generate())).unwrap();
        write_iso(&docs, &[], d.path(), &d.path().join("seed.iso")).expect("genisoimage (scripts/setup.sh installs it)");
        assert_eq!(std::fs::metadata(d.path().join("seed.iso")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!d.path().join("seed").exists(), "the staging directory is gone");
    }

    fn shipped() -> (String, String) {
        load_templates(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cloud-init")).unwrap()
    }

    #[test]
    fn shipped_templates_render_to_valid_cloud_config() {
        let (u, m) = shipped();
        let t = TargetSpec::reference(TargetMode::Stream, "/bin/true".into());
        let files = [harness_files("/bin/true".into()), t.files.clone()].concat();
        let secret = Secret::generate();
        let docs = render_docs(&u, &m, &t, &files, "perfvm-cell-abc123", None, Some(&secret)).unwrap();
        assert!(docs.user_data.starts_with("#cloud-config\n"));
        // Parse back: the unit file and script must survive byte for byte.
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&docs.user_data).unwrap();
        let written = y["write_files"].as_sequence().unwrap();
        assert_eq!(written[0]["path"].as_str().unwrap(), "/etc/systemd/system/perfvm-target.service");
        assert_eq!(written[0]["content"].as_str().unwrap(), t.unit_file(&secret));
        assert_eq!(written[1]["content"].as_str().unwrap(), setup_script(&files, &t.unit, false, None));
        // No way in: no password logins, root disabled, no keys, no sshd started.
        assert_eq!(y["ssh_pwauth"].as_bool(), Some(false));
        assert_eq!(y["disable_root"].as_bool(), Some(true));
        assert!(y.get("ssh_authorized_keys").is_none());
        assert!(!docs.user_data.contains("ssh.service"));
        let meta: serde_yaml_ng::Value = serde_yaml_ng::from_str(&docs.meta_data).unwrap();
        assert_eq!(meta["instance-id"].as_str().unwrap(), "perfvm-cell-abc123");
    }

    #[test]
    fn a_guest_to_be_saved_gets_the_files_but_no_target_and_no_secret() {
        let (u, m) = shipped();
        let t = TargetSpec::reference(TargetMode::Stream, "/bin/true".into());
        let files = [harness_files("/bin/true".into()), t.files.clone()].concat();
        let docs = render_docs(&u, &m, &t, &files, "perfvm-saved-s1-0", None, None).unwrap();
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&docs.user_data).unwrap();
        assert_eq!(y["write_files"][0]["content"].as_str(), Some(UNIT_WRITTEN_PER_CELL));
        let script = y["write_files"][1]["content"].as_str().unwrap();
        assert!(script.contains("install -D -m 755 /run/perfvm-seed/files/perfvm-probe"));
        assert!(!script.contains("systemctl"), "nothing started: {script}");
        assert!(script.trim_end().ends_with("rm -f /etc/systemd/system/perfvm-target.service"));
        assert_eq!(y["disable_root"].as_bool(), Some(true));
    }

    #[test]
    fn hostile_instance_id_is_refused() {
        let (u, m) = shipped();
        let t = TargetSpec::reference(TargetMode::Stream, "/bin/true".into());
        assert!(render_docs(&u, &m, &t, &t.files, "x\nruncmd: [reboot]", None, Some(&Secret::generate())).is_err());
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1yTz0mUQk6bWwq1c3h9m6nq2nHq0hQ0z3s3T8Yx2b me@host";

    #[test]
    fn a_debug_key_reaches_root_and_starts_sshd() {
        let (u, m) = shipped();
        let t = TargetSpec::reference(TargetMode::Stream, "/bin/true".into());
        let key = SshKey::parse(&format!("{KEY}\n")).unwrap();
        let docs = render_docs(&u, &m, &t, &t.files, "perfvm-x", Some(&key), Some(&Secret::generate())).unwrap();
        let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&docs.user_data).unwrap();
        assert_eq!(y["disable_root"].as_bool(), Some(false));
        assert_eq!(y["ssh_pwauth"].as_bool(), Some(false), "keys only, never passwords");
        assert_eq!(y["ssh_authorized_keys"][0].as_str(), Some(KEY));
        let script = y["write_files"][1]["content"].as_str().unwrap();
        assert!(script.find("systemctl start ssh.service").unwrap() < script.find("systemctl enable --now perfvm-target").unwrap());
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in ["", "not a key", "ssh-ed25519", "ssh-ed25519 AAAA\"; reboot", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\nruncmd: [reboot]", "-----BEGIN OPENSSH PRIVATE KEY-----", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ключ"] {
            assert!(SshKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn setup_script_installs_files_then_starts_unit() {
        let t = TargetSpec::reference(TargetMode::Stream, "/x/perfvm-target".into());
        let s = setup_script(&t.files, &t.unit, false, Some("mkdir -p /srv/x\nchown www-data /srv/x"));
        let install = s.find("install -D -m 755 /run/perfvm-seed/files/perfvm-target /usr/local/bin/perfvm-target").unwrap();
        let start = s.find("systemctl enable --now perfvm-target.service").unwrap();
        let setup = s.find("mkdir -p /srv/x\nchown www-data /srv/x\n").unwrap();
        assert!(install < setup && setup < start);
        assert!(s.starts_with("#!/bin/sh\n"));
    }
}
