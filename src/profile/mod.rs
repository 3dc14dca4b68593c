//! The target: the server a cell measures, described as data so the pipeline never special-cases
//! one. The reference upload server ships with perfvm (`src/bin/perfvm-target.rs`); any other
//! server comes from a profile file (`targets/*.toml`, see `parse.rs`).

pub mod parse;
pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TargetMode {
    /// Write the body to its file as it arrives, plainly, like most servers: small anon memory,
    /// the file's page cache growing with it.
    Stream,
    /// Write as it arrives and drop the file's page cache every 8 MiB (fdatasync +
    /// POSIX_FADV_DONTNEED): everything stays small. Unusual in real servers.
    DropCache,
    /// Buffer the whole body in memory before writing, like many web apps.
    Memory,
}

impl TargetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetMode::Stream => "stream",
            TargetMode::DropCache => "drop-cache",
            TargetMode::Memory => "memory",
        }
    }

    pub fn parse(s: &str) -> Option<TargetMode> {
        [TargetMode::Stream, TargetMode::DropCache, TargetMode::Memory].into_iter().find(|m| m.as_str() == s)
    }
}

/// A file copied from the host into the guest through the seed disk.
#[derive(Debug, Clone)]
pub struct DeliveredFile {
    pub host: PathBuf,
    /// File name inside the seed's `files/` directory.
    pub seed_name: String,
    pub guest: String,
    pub mode: u32,
}

/// How perfvm knows the target is up.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// GET this path through the forward until it answers `status`.
    Http { path: String, status: u16 },
    /// The guest has a socket listening on the port (read from /proc/net/tcp through the agent;
    /// a connect through the forward alone proves nothing, since qemu accepts it either way).
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
        }
    }
}

/// A request before the uploads: the login, or a per-file set-up (`before_upload`). Its
/// strings may hold `{secret}`, `{name}` (before_upload) and values captured by earlier steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `login` or `before_upload[i]`: named in errors.
    pub label: String,
    pub method: Method,
    pub url: String,
    pub body: StepBody,
    /// Statuses that mean the step worked; empty: any 2xx.
    pub expect: Vec<u16>,
    /// A cookie the step must leave set (a login that fails often still answers 200).
    pub expect_cookie: Option<String>,
    pub capture: Vec<Capture>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepBody {
    None,
    /// Form fields, `application/x-www-form-urlencoded` or (`multipart`) `multipart/form-data`.
    Form { fields: Vec<(String, String)>, multipart: bool },
    /// A JSON object of string values.
    Json(Vec<(String, String)>),
}

/// A value taken from a response, usable as `{var}` in later templates.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub var: String,
    pub from: CaptureFrom,
    /// The value is a URL: keep its path, percent-decoded (`http://h/a%20b` → `/a b`).
    pub url_path: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CaptureFrom {
    /// A JSON pointer into the response body (`/fileurl`).
    Json(String),
    Header(String),
}

/// The body of the upload request.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// The file's bytes are the body.
    Raw,
    /// multipart/form-data with the file in this field (its filename is the upload's name).
    Multipart { field: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// HTTP basic with this user and the cell's secret as password.
    Basic { user: String },
    /// `Authorization: Bearer <secret>`.
    Bearer,
}

/// How to upload one file. Strings may hold `{name}` (the file name) and `{secret}`.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadSpec {
    pub method: Method,
    pub shape: Shape,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub auth: Option<Auth>,
    /// Statuses that mean "stored"; empty: any 2xx.
    pub success: Vec<u16>,
}

/// The systemd service. `exec_start`, `environment` and `setup` may hold `{port}` and `{secret}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Service {
    pub exec_start: String,
    pub environment: Vec<(String, String)>,
    pub working_directory: Option<String>,
    pub user: Option<String>,
    /// A cgroup limit below the guest's RAM (bytes).
    pub memory_max: Option<u64>,
    /// Shell commands run once as root before the unit starts (after files are installed).
    pub setup: Option<String>,
}

/// A per-cell secret for targets with auth: random, handed to the target through its unit, and
/// never written into results.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn generate() -> Secret {
        use std::io::Read;
        let mut raw = [0u8; 24];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut raw)).expect("read /dev/urandom");
        // 56 unambiguous characters; the modulo's bias is irrelevant for a one-cell password.
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        Secret(raw.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Replace the secret in text that is about to be saved (journal, errors).
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "<secret>")
    }
}

/// Takes a cell's secret out of text about to be saved, in every form perfvm itself sends it:
/// as it is (unit environment, forms, JSON, bearer tokens, URLs: its alphabet needs no
/// escaping) and inside a basic-auth token (base64 of `user:secret`), which a server that logs
/// its requests' headers would print.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<(String, &'static str)>,
}

impl Redactor {
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (n, with) in &self.needles {
            out = out.replace(n.as_str(), with);
        }
        out
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(<hidden>)")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub name: String,
    /// `stream`/`memory` for the reference target, `profile` for one from a file.
    pub mode: String,
    /// sha256 of the profile file (part of a matrix's run key), None for the reference target.
    pub profile_sha256: Option<String>,
    /// The profile file, for snapshots (`perfvm snapshot` packs its directory).
    pub profile_path: Option<PathBuf>,
    /// systemd unit name, with `.service`.
    pub unit: String,
    pub guest_port: u16,
    pub health: Health,
    pub service: Service,
    pub files: Vec<DeliveredFile>,
    /// Debian packages the image needs beyond the base recipe (an image variant).
    pub packages: Vec<String>,
    pub upload: UploadSpec,
    /// Where the target stores `{name}` in the guest; None: it cannot be verified.
    pub stored: Option<String>,
    /// URL path to fetch `{name}` back (`--download`).
    pub download: Option<String>,
    /// Run once per cell before the uploads; its cookies go with every later request.
    pub login: Option<Step>,
    /// Run for each file before its upload (an upload slot, a token).
    pub before_upload: Vec<Step>,
    /// Values from each upload's response (where the file was stored), usable in `stored`.
    pub upload_capture: Vec<Capture>,
    /// Shell commands run in the guest through the agent: after the target is healthy (and
    /// logged in to), before the upload; and after collection.
    pub guest_setup: Option<String>,
    pub guest_teardown: Option<String>,
}

pub const REFERENCE_NAME: &str = "perfvm-target";

/// A 2xx answer: the target took the request.
pub fn is_2xx(status: Option<u16>) -> bool {
    matches!(status, Some(200..=299))
}

/// Fill a template from owned variables (`{name}`, `{secret}`, captured values).
pub fn fill_vars(text: &str, vars: &BTreeMap<String, String>) -> String {
    let v: BTreeMap<&str, String> = vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    template::fill(text, &v)
}

/// `{name}` alone.
pub fn name_vars(name: &str) -> BTreeMap<String, String> {
    [("name".to_string(), name.to_string())].into_iter().collect()
}

impl TargetSpec {
    pub fn reference(mode: TargetMode, binary: PathBuf) -> TargetSpec {
        let store_dir = "/var/lib/perfvm-target/files";
        TargetSpec {
            name: REFERENCE_NAME.into(),
            mode: mode.as_str().into(),
            profile_sha256: None,
            profile_path: None,
            unit: "perfvm-target.service".into(),
            guest_port: 8080,
            health: Health::Http { path: "/health".into(), status: 200 },
            service: Service {
                exec_start: format!("/usr/local/bin/perfvm-target --listen 0.0.0.0:{{port}} --dir {store_dir} --mode {}", mode.as_str()),
                ..Service::default()
            },
            files: vec![DeliveredFile {
                host: binary,
                seed_name: "perfvm-target".into(),
                guest: "/usr/local/bin/perfvm-target".into(),
                mode: 0o755,
            }],
            packages: Vec::new(),
            upload: UploadSpec { method: Method::Put, shape: Shape::Raw, url: "/upload/{name}".into(), headers: Vec::new(), auth: None, success: Vec::new() },
            stored: Some(format!("{store_dir}/{{name}}")),
            download: Some("/files/{name}".into()),
            login: None,
            before_upload: Vec::new(),
            upload_capture: Vec::new(),
            guest_setup: None,
            guest_teardown: None,
        }
    }

    /// The upload's URL path with `{name}` and captured values filled in.
    pub fn upload_path_with(&self, vars: &BTreeMap<String, String>) -> String {
        fill_vars(&self.upload.url, vars)
    }

    /// Where the target stored the file, from `{name}` and captured values.
    pub fn stored_path_with(&self, vars: &BTreeMap<String, String>) -> Option<String> {
        self.stored.as_ref().map(|s| fill_vars(s, vars))
    }

    pub fn download_path_with(&self, vars: &BTreeMap<String, String>) -> Option<String> {
        self.download.as_ref().map(|d| fill_vars(d, vars))
    }

    /// Whether an answer means the target stored the file.
    pub fn accepts(&self, status: Option<u16>) -> bool {
        match status {
            Some(s) if !self.upload.success.is_empty() => self.upload.success.contains(&s),
            s => is_2xx(s),
        }
    }

    /// The request headers of one upload, auth included. `vars` has `{name}` and captured values.
    pub fn upload_headers(&self, vars: &BTreeMap<String, String>, secret: &Secret) -> Vec<(String, String)> {
        let mut v = vars.clone();
        v.insert("secret".into(), secret.expose().to_string());
        let mut h: Vec<(String, String)> = self.upload.headers.iter().map(|(k, val)| (k.clone(), fill_vars(val, &v))).collect();
        h.extend(self.auth_headers(secret));
        h
    }

    /// The Authorization header, if the target wants one (uploads and the download).
    pub fn auth_headers(&self, secret: &Secret) -> Vec<(String, String)> {
        match &self.upload.auth {
            Some(Auth::Basic { user }) => {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", secret.expose()));
                vec![("Authorization".into(), format!("Basic {token}"))]
            }
            Some(Auth::Bearer) => vec![("Authorization".into(), format!("Bearer {}", secret.expose()))],
            None => Vec::new(),
        }
    }

    /// What takes this target's cell secret out of saved text.
    pub fn redactor(&self, secret: &Secret) -> Redactor {
        let mut needles: Vec<(String, &'static str)> = Vec::new();
        if let Some(Auth::Basic { user }) = &self.upload.auth {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", secret.expose()));
            // The token first: the secret alone never appears inside it as text.
            needles.push((token, "<basic-auth-token>"));
        }
        needles.push((secret.expose().to_string(), "<secret>"));
        Redactor { needles }
    }

    /// The unit's cgroup v2 directory inside the guest.
    pub fn cgroup_dir(&self) -> String {
        format!("/sys/fs/cgroup/system.slice/{}", self.unit)
    }

    fn service_values(&self, secret: &Secret) -> BTreeMap<&'static str, String> {
        [("port", self.guest_port.to_string()), ("secret", secret.expose().to_string())].into_iter().collect()
    }

    /// The set-up commands with placeholders filled.
    pub fn setup_commands(&self, secret: &Secret) -> Option<String> {
        self.service.setup.as_ref().map(|s| template::fill(s, &self.service_values(secret)))
    }

    /// The systemd unit. Restart=on-failure lets a crashed or OOM-killed target come back (and
    /// be counted); accounting makes memory.current/peak and friends exist for the unit.
    pub fn unit_file(&self, secret: &Secret) -> String {
        let v = self.service_values(secret);
        // `%` starts a systemd specifier; a profile means a literal one.
        let esc = |s: &str| template::fill(s, &v).replace('%', "%%");
        let mut service = String::new();
        for (k, val) in &self.service.environment {
            service.push_str(&format!("Environment=\"{k}={}\"\n", esc(val).replace('\\', "\\\\").replace('"', "\\\"")));
        }
        if let Some(d) = &self.service.working_directory {
            service.push_str(&format!("WorkingDirectory={d}\n"));
        }
        if let Some(u) = &self.service.user {
            service.push_str(&format!("User={u}\n"));
        }
        if let Some(m) = self.service.memory_max {
            service.push_str(&format!("MemoryMax={m}\n"));
        }
        format!(
            "[Unit]\n\
             Description=perfvm target {name} ({mode})\n\
             After=network.target\n\
             \n\
             [Service]\n\
             ExecStart={exec}\n\
             {service}\
             Restart=on-failure\n\
             RestartSec=1\n\
             MemoryAccounting=yes\n\
             CPUAccounting=yes\n\
             IOAccounting=yes\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            name = self.name,
            mode = self.mode,
            exec = esc(&self.service.exec_start),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_unit_runs_the_chosen_mode() {
        let t = TargetSpec::reference(TargetMode::Memory, "/x/perfvm-target".into());
        let unit = t.unit_file(&Secret::generate());
        assert!(unit.contains("ExecStart=/usr/local/bin/perfvm-target --listen 0.0.0.0:8080 "));
        assert!(unit.contains("--mode memory"));
        assert!(unit.contains("Restart=on-failure"));
        assert!(unit.contains("MemoryAccounting=yes"));
        assert!(!unit.contains("Environment=") && !unit.contains("MemoryMax"));
        let v = name_vars("f.bin");
        assert_eq!(t.stored_path_with(&v).unwrap(), "/var/lib/perfvm-target/files/f.bin");
        assert_eq!(t.upload_path_with(&v), "/upload/f.bin");
        assert_eq!(t.download_path_with(&v).unwrap(), "/files/f.bin");
        assert_eq!(t.cgroup_dir(), "/sys/fs/cgroup/system.slice/perfvm-target.service");
        assert!(t.accepts(Some(201)) && t.accepts(Some(204)) && !t.accepts(Some(413)) && !t.accepts(None));
    }

    #[test]
    fn secret_fills_the_unit_and_auth_but_never_debug() {
        let mut t = TargetSpec::reference(TargetMode::Stream, "/x".into());
        t.service.environment = vec![("TOKEN".into(), "{secret}".into()), ("Q".into(), "a\"b%c".into())];
        t.service.memory_max = Some(268435456);
        t.upload.auth = Some(Auth::Basic { user: "perfvm".into() });
        t.upload.success = vec![201];
        let s = Secret::generate();
        assert_eq!(s.expose().len(), 24);
        assert_ne!(s, Secret::generate());
        let unit = t.unit_file(&s);
        assert!(unit.contains(&format!("Environment=\"TOKEN={}\"\n", s.expose())), "{unit}");
        assert!(unit.contains("Environment=\"Q=a\\\"b%%c\"\n"), "{unit}");
        assert!(unit.contains("MemoryMax=268435456\n"));
        let h = t.upload_headers(&name_vars("f"), &s);
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(h[0].1.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), format!("perfvm:{}", s.expose()));
        assert!(!format!("{s:?}").contains(s.expose()));
        assert_eq!(s.redact(&format!("x {} y", s.expose())), "x <secret> y");
        // A server that logs the Authorization header prints the token, not the secret.
        let r = t.redactor(&s);
        let logged = format!("GET /f Authorization: {}; env PASSWORD={}", h[0].1, s.expose());
        let saved = r.redact(&logged);
        assert_eq!(saved, "GET /f Authorization: Basic <basic-auth-token>; env PASSWORD=<secret>");
        assert!(!format!("{r:?}").contains(s.expose()));
        assert!(t.accepts(Some(201)) && !t.accepts(Some(200)));
    }
}
