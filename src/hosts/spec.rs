//! Which libvirt hosts a matrix may use, and how perfvm reaches each one. Pure: `--connect` URIs
//! or a hosts.toml in, host specs out.

use serde::Deserialize;
use std::path::Path;

/// Where remote hosts keep perfvm's volumes unless hosts.toml says otherwise.
pub const DEFAULT_POOL_PATH: &str = "/var/lib/libvirt/images/perfvm";

/// One host as the user described it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSpec {
    pub name: String,
    pub uri: String,
    pub access: Access,
    /// Memory budget for cells (guest RAM + qemu overhead); None: from what the host reports.
    pub memory_mib: Option<u64>,
    /// Cells at once on this host; None: from its memory and cores.
    pub jobs: Option<usize>,
    /// Directory of the storage pool perfvm defines on a remote host.
    pub pool_path: String,
}

/// How the controller reaches a host's files and its guests' forwarded ports.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// libvirtd on this machine: files are passed by path, ports are on this loopback.
    Local,
    /// libvirtd on another machine over qemu+ssh: files go through a storage pool, ports
    /// through an ssh tunnel made with the same user, host, port and key as the URI.
    Ssh(SshTarget),
}

impl Access {
    pub fn as_str(&self) -> &'static str {
        match self {
            Access::Local => "local",
            Access::Ssh(_) => "ssh-tunnel",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The URI's `keyfile=`.
    pub keyfile: Option<String>,
    /// The URI's `no_verify=1`: libvirt skips the host key check, so the tunnel does too.
    pub no_verify: bool,
}

impl SshTarget {
    /// Arguments of `ssh` for a tunnel from 127.0.0.1:`local` here to 127.0.0.1:`remote` on the
    /// host. BatchMode: never a password prompt in an unattended run. The remote command reads
    /// ssh's stdin, a pipe from perfvm: if perfvm dies, even by SIGKILL, the pipe closes, the
    /// command ends and so does ssh (with -N it would run on forever).
    pub fn tunnel_args(&self, local: u16, remote: u16) -> Vec<String> {
        let mut a: Vec<String> = ["-T", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(p) = self.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        if let Some(u) = &self.user {
            a.extend(["-l".into(), u.clone()]);
        }
        if let Some(k) = &self.keyfile {
            a.extend(["-i".into(), k.clone()]);
        }
        if self.no_verify {
            a.extend(["-o".into(), "StrictHostKeyChecking=no".into(), "-o".into(), "UserKnownHostsFile=/dev/null".into()]);
        }
        a.extend(["-L".into(), format!("127.0.0.1:{local}:127.0.0.1:{remote}"), "--".into(), self.host.clone(), "cat >/dev/null".into()]);
        a
    }
}

/// How a URI is reached. A URI without a host name is this machine's libvirtd (any socket);
/// a remote one must be qemu+ssh, since the guests' ports are reached through ssh.
pub fn access_of(uri: &str) -> Result<Access, String> {
    let u = url::Url::parse(uri).map_err(|e| format!("{uri}: not a libvirt URI ({e})"))?;
    let host = u.host_str().unwrap_or("");
    if host.is_empty() {
        return Ok(Access::Local);
    }
    match u.scheme() {
        "qemu+ssh" => {
            let q = |k: &str| u.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
            Ok(Access::Ssh(SshTarget {
                user: Some(u.username()).filter(|s| !s.is_empty()).map(|s| crate::upload::session::percent_decode(s).unwrap_or_else(|| s.to_string())),
                host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
                port: u.port(),
                keyfile: q("keyfile"),
                no_verify: q("no_verify").is_some_and(|v| v == "1"),
            }))
        }
        s => Err(format!(
            "{uri}: perfvm reaches remote guests' ports through ssh, so a remote host needs a qemu+ssh:// URI (not {s}://)"
        )),
    }
}

/// A short name for a host given by `--connect` only.
fn default_name(uri: &str, access: &Access) -> String {
    match access {
        Access::Local if uri == crate::hypervisor::conn::DEFAULT_URI => "local".into(),
        Access::Local => {
            // A second local daemon: name it by its socket.
            let u = url::Url::parse(uri).ok();
            u.and_then(|u| u.query_pairs().find(|(k, _)| k == "socket").map(|(_, v)| v.into_owned())).map(|s| format!("local:{s}")).unwrap_or_else(|| uri.to_string())
        }
        Access::Ssh(t) => match t.port {
            Some(p) => format!("{}:{p}", t.host),
            None => t.host.clone(),
        },
    }
}

/// Hosts from `--connect` (each may be given several times).
pub fn from_uris(uris: &[String]) -> Result<Vec<HostSpec>, String> {
    let mut out = Vec::new();
    for uri in uris {
        let access = access_of(uri)?;
        out.push(HostSpec { name: default_name(uri, &access), uri: uri.clone(), access, memory_mib: None, jobs: None, pool_path: DEFAULT_POOL_PATH.into() });
    }
    check_unique(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    host: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    uri: String,
    name: Option<String>,
    memory_mib: Option<u64>,
    jobs: Option<usize>,
    pool_path: Option<String>,
}

/// Hosts from a hosts.toml: `[[host]]` tables with `uri` and optionally `name`, `memory_mib`,
/// `jobs`, `pool_path`.
pub fn parse_file(text: &str, path: &Path) -> Result<Vec<HostSpec>, String> {
    let f: File = toml::from_str(text).map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))?;
    let mut out = Vec::new();
    for e in f.host {
        let access = access_of(&e.uri).map_err(|m| format!("{}: {m}", path.display()))?;
        if e.jobs == Some(0) {
            return Err(format!("{}: host {}: jobs = 0; use 1 or more (or leave it out)", path.display(), e.uri));
        }
        if let Some(p) = &e.pool_path
            && !p.starts_with('/') {
                return Err(format!("{}: host {}: pool_path {p:?} must be absolute", path.display(), e.uri));
            }
        let name = e.name.unwrap_or_else(|| default_name(&e.uri, &access));
        out.push(HostSpec { name, uri: e.uri, access, memory_mib: e.memory_mib, jobs: e.jobs, pool_path: e.pool_path.unwrap_or_else(|| DEFAULT_POOL_PATH.into()) });
    }
    if out.is_empty() {
        return Err(format!("{}: no [[host]] listed", path.display()));
    }
    check_unique(out).map_err(|e| format!("{}: {e}", path.display()))
}

fn check_unique(hosts: Vec<HostSpec>) -> Result<Vec<HostSpec>, String> {
    for (i, h) in hosts.iter().enumerate() {
        if let Some(o) = hosts[..i].iter().find(|o| o.uri == h.uri || o.name == h.name) {
            return Err(format!("host {} ({}) is listed twice (as {} too)", h.name, h.uri, o.uri));
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_uris_need_no_tunnel() {
        assert_eq!(access_of("qemu:///system").unwrap(), Access::Local);
        assert_eq!(access_of("qemu+unix:///system?socket=/tmp/h2/libvirt-sock").unwrap(), Access::Local);
        let h = from_uris(&["qemu:///system".into(), "qemu+unix:///system?socket=/tmp/s".into()]).unwrap();
        assert_eq!(h[0].name, "local");
        assert_eq!(h[1].name, "local:/tmp/s");
    }

    #[test]
    fn ssh_uri_gives_the_same_ssh_for_the_tunnel() {
        let a = access_of("qemu+ssh://root@127.0.0.1:2299/system?keyfile=/k/id&no_verify=1").unwrap();
        let Access::Ssh(t) = &a else { panic!("{a:?}") };
        assert_eq!(t, &SshTarget { user: Some("root".into()), host: "127.0.0.1".into(), port: Some(2299), keyfile: Some("/k/id".into()), no_verify: true });
        let args = t.tunnel_args(40000, 21000).join(" ");
        assert!(args.contains("-p 2299 -l root -i /k/id"), "{args}");
        assert!(args.contains("StrictHostKeyChecking=no"));
        assert!(args.ends_with("-L 127.0.0.1:40000:127.0.0.1:21000 -- 127.0.0.1 cat >/dev/null"), "{args}");
        assert!(args.contains("BatchMode=yes") && args.contains("ExitOnForwardFailure=yes"));
        // Plain: the user's own ssh config decides user, port and key.
        let Access::Ssh(t) = access_of("qemu+ssh://ops%2Bci@hv2.lab/system").unwrap() else { panic!() };
        assert_eq!(t.user.as_deref(), Some("ops+ci"));
        let Access::Ssh(t) = access_of("qemu+ssh://hv2.lab/system").unwrap() else { panic!() };
        let args = t.tunnel_args(1, 2).join(" ");
        assert!(!args.contains("-p ") && !args.contains("-l ") && !args.contains("-i ") && !args.contains("StrictHostKeyChecking"), "{args}");
        assert_eq!(from_uris(&["qemu+ssh://hv2.lab/system".into()]).unwrap()[0].name, "hv2.lab");
    }

    #[test]
    fn unusable_uris_are_refused_with_the_reason() {
        assert!(access_of("qemu+tls://hv2/system").unwrap_err().contains("qemu+ssh"));
        assert!(access_of("qemu://hv2/system").unwrap_err().contains("qemu+ssh"));
        assert!(access_of("not a uri").unwrap_err().contains("not a libvirt URI"));
        let e = from_uris(&["qemu:///system".into(), "qemu:///system".into()]).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn hosts_file() {
        let p = Path::new("hosts.toml");
        let h = parse_file(
            "[[host]]\nuri = \"qemu:///system\"\nmemory_mib = 8000\njobs = 1\n\n[[host]]\nname = \"hv2\"\nuri = \"qemu+ssh://root@hv2/system\"\npool_path = \"/srv/perfvm\"\n",
            p,
        )
        .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].name.as_str(), h[0].memory_mib, h[0].jobs), ("local", Some(8000), Some(1)));
        assert_eq!((h[1].name.as_str(), h[1].pool_path.as_str()), ("hv2", "/srv/perfvm"));
        assert_eq!(h[1].access.as_str(), "ssh-tunnel");
        for (text, want) in [
            ("[[host]]\nuri = \"qemu:///system\"\nmemroy_mib = 1\n", "unknown field"),
            ("[[host]]\nname = \"x\"\n", "missing field"),
            ("[[host]]\nuri = \"qemu:///system\"\njobs = 0\n", "jobs = 0"),
            ("[[host]]\nuri = \"qemu+ssh://a/system\"\npool_path = \"rel\"\n", "absolute"),
            ("host = []\n", "no [[host]]"),
            ("[[host]]\nuri = \"qemu+tcp://a/system\"\n", "qemu+ssh"),
            ("[[host]]\nuri = \"qemu:///system\"\n[[host]]\nname = \"local\"\nuri = \"qemu+ssh://b/system\"\n", "twice"),
        ] {
            let e = parse_file(text, p).unwrap_err();
            assert!(e.contains(want) && e.starts_with("hosts.toml"), "{text}: {e}");
        }
    }
}
