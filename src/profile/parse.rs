//! Target profiles: a TOML file that says how a server gets into the guest, how it runs, and how
//! to upload to it (format in docs/targets.md, shipped ones in `targets/`). Parsing is strict (unknown
//! keys, bad templates and impossible combinations are errors naming the key) and pure; the
//! result is a `TargetSpec`, the one description of a target the pipeline knows.

use super::{Auth, Capture, CaptureFrom, DeliveredFile, Health, Method, Service, Shape, Step, StepBody, TargetSpec, UploadSpec, template};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    #[serde(default)]
    description: String,
    port: u16,
    #[serde(default)]
    image: RawImage,
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    files: Vec<RawFile>,
    service: RawService,
    #[serde(default)]
    health: Option<RawHealth>,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    login: Option<RawStep>,
    #[serde(default)]
    before_upload: Vec<RawStep>,
    upload: RawUpload,
    #[serde(default)]
    download: Option<RawDownload>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    guest_setup: Option<String>,
    guest_teardown: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default = "default_step_method")]
    method: String,
    url: String,
    form: Option<BTreeMap<String, String>>,
    json: Option<BTreeMap<String, String>>,
    /// For `form`: "urlencoded" (default) or "multipart".
    encoding: Option<String>,
    #[serde(default)]
    expect: Vec<u16>,
    expect_cookie: Option<String>,
    #[serde(default)]
    capture: BTreeMap<String, RawCapture>,
}

fn default_step_method() -> String {
    "POST".into()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    json: Option<String>,
    header: Option<String>,
    #[serde(default)]
    url_path: bool,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    #[serde(default)]
    packages: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    prepare: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    host: String,
    guest: String,
    #[serde(default = "default_mode")]
    mode: String,
}

fn default_mode() -> String {
    "644".into()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    exec_start: String,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    working_directory: Option<String>,
    user: Option<String>,
    memory_max: Option<String>,
    setup: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: Option<String>,
    #[serde(default = "default_health_status")]
    status: u16,
}

fn default_health_status() -> u16 {
    200
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpload {
    method: String,
    #[serde(default = "default_shape")]
    shape: String,
    field: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    auth: Option<String>,
    auth_user: Option<String>,
    #[serde(default)]
    success: Vec<u16>,
    stored: Option<String>,
    verify: Option<bool>,
    #[serde(default)]
    capture: BTreeMap<String, RawCapture>,
}

fn default_shape() -> String {
    "raw".into()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownload {
    url: String,
}

/// A profile read from a file, before host paths are resolved.
#[derive(Debug, Clone)]
pub struct Profile {
    pub path: PathBuf,
    pub description: String,
    /// `[host] prepare`: a host command that makes missing `files` (build, download).
    pub prepare: Option<String>,
    /// Files with their host path templates (`{cache}`, `{profile_dir}`, `{perfvm_bin_dir}`).
    pub file_templates: Vec<(String, String, u32)>,
    /// The spec; its files are filled in by `resolve`.
    pub spec: TargetSpec,
}

/// Where host-side placeholders point.
pub struct HostPaths {
    pub cache: PathBuf,
    pub perfvm_bin_dir: PathBuf,
}

const HOST_KEYS: &[&str] = &["cache", "profile_dir", "perfvm_bin_dir"];
const SERVICE_KEYS: &[&str] = &["port", "secret"];

/// Ports a target may not take: sshd for `--ssh-key` (22).
const RESERVED_PORTS: &[(u16, &str)] = &[(22, "sshd, used by --ssh-key")];

fn is_unit_safe(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

pub fn load(path: &Path) -> Result<Profile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parse and check a profile. `path` is where it came from (names the unit's files, resolves
/// `{profile_dir}`).
pub fn parse(text: &str, path: &Path) -> Result<Profile, String> {
    let raw: Raw = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    if raw.name.is_empty() || raw.name.len() > 40 || !raw.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || raw.name.starts_with('-') {
        return Err(format!("name = {:?}: use 1 to 40 letters, digits and '-' (it names the unit and the results)", raw.name));
    }
    if raw.name == super::REFERENCE_NAME {
        return Err(format!("name = {:?} is the built-in reference target's", raw.name));
    }
    if raw.port == 0 {
        return Err("port = 0: give the port the server listens on in the guest".into());
    }
    if let Some((_, what)) = RESERVED_PORTS.iter().find(|(p, _)| *p == raw.port) {
        return Err(format!("port = {}: clashes with {what}", raw.port));
    }
    for p in &raw.image.packages {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || "+-.:".contains(c)) {
            return Err(format!("image.packages: {p:?} is not a Debian package name"));
        }
    }
    if let Some(prep) = &raw.host.prepare {
        template::check("host.prepare", prep, HOST_KEYS)?;
    }
    let mut file_templates = Vec::new();
    for (i, f) in raw.files.iter().enumerate() {
        let key = |k: &str| format!("files[{i}].{k}");
        template::check(&key("host"), &f.host, HOST_KEYS)?;
        if !f.guest.starts_with('/') || f.guest.contains("..") || !f.guest.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c)) {
            return Err(format!("{}: {:?} must be an absolute guest path of plain characters", key("guest"), f.guest));
        }
        let mode = u32::from_str_radix(&f.mode, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| format!("{}: {:?} is not an octal mode like \"755\"", key("mode"), f.mode))?;
        file_templates.push((f.host.clone(), f.guest.clone(), mode));
    }

    let s = &raw.service;
    if s.exec_start.trim().is_empty() {
        return Err("service.exec_start is empty".into());
    }
    template::check("service.exec_start", &s.exec_start, SERVICE_KEYS)?;
    if let Some(setup) = &s.setup {
        template::check("service.setup", setup, SERVICE_KEYS)?;
    }
    let mut environment = Vec::new();
    for (k, v) in &s.environment {
        let valid_key = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(format!("service.environment: {k:?} is not a variable name"));
        }
        template::check(&format!("service.environment.{k}"), v, SERVICE_KEYS)?;
        environment.push((k.clone(), v.clone()));
    }
    for (key, v) in [("service.exec_start", Some(&s.exec_start)), ("service.working_directory", s.working_directory.as_ref()), ("service.user", s.user.as_ref())] {
        if v.is_some_and(|v| !is_unit_safe(v)) {
            return Err(format!("{key}: control characters (line breaks) cannot go into a unit file"));
        }
    }
    if environment.iter().any(|(_, v)| !is_unit_safe(v)) {
        return Err("service.environment: control characters (line breaks) cannot go into a unit file".into());
    }
    let memory_max = match &s.memory_max {
        None => None,
        Some(m) => Some(crate::size::ByteSize::parse(m).map_err(|e| format!("service.memory_max = {m:?}: {e}"))?.bytes()),
    };

    for (k, v) in [("hooks.guest_setup", &raw.hooks.guest_setup), ("hooks.guest_teardown", &raw.hooks.guest_teardown)] {
        if let Some(v) = v {
            if v.trim().is_empty() {
                return Err(format!("{k} is empty"));
            }
            template::check(k, v, &[])?;
        }
    }
    let health = match raw.health {
        None | Some(RawHealth { path: None, .. }) => Health::Tcp,
        Some(RawHealth { path: Some(p), status }) => {
            if !p.starts_with('/') {
                return Err(format!("health.path = {p:?}: must start with /"));
            }
            template::check("health.path", &p, &[])?;
            Health::Http { path: p, status }
        }
    };

    // What each template may use: the login's captures everywhere after it, before_upload's
    // in the upload, the upload's in `stored` and the download.
    let mut known: Vec<String> = vec!["secret".into()];
    let login = match &raw.login {
        Some(l) => {
            let step = parse_step("login", l, &known)?;
            known.extend(step.capture.iter().map(|c| c.var.clone()));
            Some(step)
        }
        None => None,
    };
    known.push("name".into());
    let mut before_upload = Vec::new();
    for (i, b) in raw.before_upload.iter().enumerate() {
        let step = parse_step(&format!("before_upload[{i}]"), b, &known)?;
        known.extend(step.capture.iter().map(|c| c.var.clone()));
        before_upload.push(step);
    }
    let upload_capture = parse_captures("upload", &raw.upload.capture)?;
    let names_only: Vec<&str> = known.iter().map(String::as_str).filter(|k| *k != "secret").collect();
    let with_secret: Vec<&str> = known.iter().map(String::as_str).collect();
    let after_upload: Vec<&str> = names_only.iter().copied().chain(upload_capture.iter().map(|c| c.var.as_str())).collect();

    let u = &raw.upload;
    let method = match u.method.to_ascii_uppercase().as_str() {
        "PUT" => Method::Put,
        "POST" => Method::Post,
        other => return Err(format!("upload.method = {other:?}: use PUT or POST")),
    };
    let shape = match (u.shape.as_str(), &u.field) {
        ("raw", None) => Shape::Raw,
        ("raw", Some(_)) => return Err("upload.field is for shape = \"multipart\"".into()),
        ("multipart", Some(f)) if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c)) => Shape::Multipart { field: f.clone() },
        ("multipart", Some(f)) => return Err(format!("upload.field = {f:?}: use letters, digits and _-.[]")),
        ("multipart", None) => return Err("upload.shape = \"multipart\" needs upload.field (the form field of the file)".into()),
        (other, _) => return Err(format!("upload.shape = {other:?}: use \"raw\" (the body is the file) or \"multipart\" (a form field)")),
    };
    if shape != Shape::Raw && method != Method::Post {
        return Err("upload.shape = \"multipart\" goes with method = \"POST\"".into());
    }
    if !u.url.starts_with('/') {
        return Err(format!("upload.url = {:?}: a path starting with / (perfvm adds the forwarded address)", u.url));
    }
    template::check("upload.url", &u.url, &names_only)?;
    let url_vars = template::placeholders(&u.url);
    if shape == Shape::Raw && !url_vars.iter().any(|v| *v != "secret") {
        return Err("upload.url: a raw upload names its file in the URL: add {name} (or a value captured before the upload)".into());
    }
    let mut headers = Vec::new();
    for (k, v) in &u.headers {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("upload.headers: {k:?} is not a header name"));
        }
        if k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("content-length") {
            return Err(format!("upload.headers.{k}: set by perfvm (use upload.auth for credentials)"));
        }
        template::check(&format!("upload.headers.{k}"), v, &with_secret)?;
        headers.push((k.clone(), v.clone()));
    }
    let auth = match (u.auth.as_deref(), &u.auth_user) {
        (None, None) => None,
        (None, Some(_)) => return Err("upload.auth_user needs upload.auth = \"basic\"".into()),
        (Some("basic"), user) => Some(Auth::Basic { user: user.clone().unwrap_or_else(|| "perfvm".into()) }),
        (Some("bearer"), None) => Some(Auth::Bearer),
        (Some("bearer"), Some(_)) => return Err("upload.auth_user is for basic auth".into()),
        (Some(other), _) => return Err(format!("upload.auth = {other:?}: use \"basic\" or \"bearer\" (the password or token is a secret made per cell, {{secret}})")),
    };
    if let Some(Auth::Basic { user }) = &auth
        && (user.is_empty() || user.contains(':') || !is_unit_safe(user)) {
            return Err(format!("upload.auth_user = {user:?}: not empty, no ':'"));
        }
    if let Some(bad) = u.success.iter().find(|s| !(100..=599).contains(*s)) {
        return Err(format!("upload.success: {bad} is not an HTTP status"));
    }
    let stored = match (&u.stored, u.verify) {
        (Some(_), Some(false)) => return Err("upload.stored and verify = false contradict each other".into()),
        (Some(p), _) => {
            template::check("upload.stored", p, &after_upload)?;
            // Absolute, or a captured value that is (the target's own answer, `{path}`).
            let absolute = p.starts_with('/') || (p.starts_with('{') && !p.starts_with("{name}"));
            if !absolute || template::placeholders(p).is_empty() {
                return Err(format!("upload.stored = {p:?}: an absolute guest path with {{name}} or a captured value"));
            }
            Some(p.clone())
        }
        (None, Some(false)) => None,
        (None, _) => return Err("upload.stored is missing: say where the file lands in the guest (e.g. \"/srv/files/{name}\") so its sha256 can be verified, or set verify = false".into()),
    };
    let download = match raw.download {
        None => None,
        Some(d) => {
            if !d.url.starts_with('/') {
                return Err(format!("download.url = {:?}: a path starting with /", d.url));
            }
            template::check("download.url", &d.url, &names_only)?;
            Some(d.url)
        }
    };

    let spec = TargetSpec {
        name: raw.name.clone(),
        mode: "profile".into(),
        profile_sha256: Some(hex::encode(Sha256::digest(text.as_bytes()))),
        profile_path: Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())),
        unit: format!("perfvm-{}.service", raw.name),
        guest_port: raw.port,
        health,
        service: Service {
            exec_start: s.exec_start.clone(),
            environment,
            working_directory: s.working_directory.clone(),
            user: s.user.clone(),
            memory_max,
            setup: s.setup.clone(),
        },
        files: Vec::new(),
        packages: raw.image.packages.clone(),
        upload: UploadSpec { method, shape, url: u.url.clone(), headers, auth, success: u.success.clone() },
        stored,
        download,
        login,
        before_upload,
        upload_capture,
        guest_setup: raw.hooks.guest_setup.clone(),
        guest_teardown: raw.hooks.guest_teardown.clone(),
    };
    Ok(Profile {
        path: path.to_path_buf(),
        description: raw.description,
        prepare: raw.host.prepare,
        file_templates,
        spec,
    })
}

/// Placeholders a profile may not capture into: they mean something already.
const RESERVED_VARS: &[&str] = &["name", "secret", "port", "cache", "profile_dir", "perfvm_bin_dir"];

fn parse_captures(key: &str, raw: &BTreeMap<String, RawCapture>) -> Result<Vec<Capture>, String> {
    let mut out = Vec::new();
    for (var, c) in raw {
        let k = format!("{key}.capture.{var}");
        if var.is_empty() || !var.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_') {
            return Err(format!("{k}: a capture name is lowercase letters and _ (it is used as {{{var}}})"));
        }
        if RESERVED_VARS.contains(&var.as_str()) {
            return Err(format!("{k}: {{{var}}} is reserved"));
        }
        let from = match (&c.json, &c.header) {
            (Some(p), None) if p.is_empty() || p.starts_with('/') => CaptureFrom::Json(p.clone()),
            (Some(p), None) => return Err(format!("{k}.json = {p:?}: a JSON pointer starts with / (e.g. \"/fileurl\")")),
            (None, Some(h)) if !h.is_empty() && h.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') => CaptureFrom::Header(h.clone()),
            (None, Some(h)) => return Err(format!("{k}.header = {h:?} is not a header name")),
            _ => return Err(format!("{k}: give exactly one of json = \"/pointer\" or header = \"Name\"")),
        };
        out.push(Capture { var: var.clone(), from, url_path: c.url_path });
    }
    Ok(out)
}

/// One login or before_upload step; `known` are the placeholders it may use. Returns the step
/// and the names it captures.
fn parse_step(label: &str, raw: &RawStep, known: &[String]) -> Result<Step, String> {
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let method = match raw.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        other => return Err(format!("{label}.method = {other:?}: use GET, POST or PUT")),
    };
    if !raw.url.starts_with('/') {
        return Err(format!("{label}.url = {:?}: a path starting with /", raw.url));
    }
    template::check(&format!("{label}.url"), &raw.url, &known)?;
    let fields = |m: &BTreeMap<String, String>, what: &str| -> Result<Vec<(String, String)>, String> {
        m.iter()
            .map(|(k, v)| {
                template::check(&format!("{label}.{what}.{k}"), v, &known)?;
                Ok((k.clone(), v.clone()))
            })
            .collect()
    };
    let body = match (&raw.form, &raw.json, raw.encoding.as_deref()) {
        (Some(_), Some(_), _) => return Err(format!("{label}: give form or json, not both")),
        (None, None, None) => StepBody::None,
        (None, _, Some(_)) => return Err(format!("{label}.encoding is for form")),
        (Some(f), None, enc) => StepBody::Form {
            fields: fields(f, "form")?,
            multipart: match enc {
                None | Some("urlencoded") => false,
                Some("multipart") => true,
                Some(other) => return Err(format!("{label}.encoding = {other:?}: use \"urlencoded\" or \"multipart\"")),
            },
        },
        (None, Some(j), None) => StepBody::Json(fields(j, "json")?),
    };
    if body != StepBody::None && method == Method::Get {
        return Err(format!("{label}: a GET has no body"));
    }
    if let Some(bad) = raw.expect.iter().find(|s| !(100..=599).contains(*s)) {
        return Err(format!("{label}.expect: {bad} is not an HTTP status"));
    }
    if let Some(c) = &raw.expect_cookie
        && (c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch))) {
            return Err(format!("{label}.expect_cookie = {c:?} is not a cookie name"));
        }
    Ok(Step {
        label: label.to_string(),
        method,
        url: raw.url.clone(),
        body,
        expect: raw.expect.clone(),
        expect_cookie: raw.expect_cookie.clone(),
        capture: parse_captures(label, &raw.capture)?,
    })
}

impl Profile {
    fn host_values(&self, host: &HostPaths) -> BTreeMap<&'static str, String> {
        let dir = self.path.parent().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())).unwrap_or_default();
        [
            ("cache", host.cache.display().to_string()),
            ("profile_dir", dir.display().to_string()),
            ("perfvm_bin_dir", host.perfvm_bin_dir.display().to_string()),
        ]
        .into_iter()
        .collect()
    }

    /// The prepare command with host paths filled in.
    pub fn prepare_command(&self, host: &HostPaths) -> Option<String> {
        self.prepare.as_ref().map(|p| template::fill(p, &self.host_values(host)))
    }

    /// The spec with host paths of its files filled in.
    pub fn resolve(&self, host: &HostPaths) -> TargetSpec {
        let v = self.host_values(host);
        let mut spec = self.spec.clone();
        spec.files = self
            .file_templates
            .iter()
            .enumerate()
            .map(|(i, (h, guest, mode))| DeliveredFile {
                host: PathBuf::from(template::fill(h, &v)),
                // Numbered: two files with the same base name must not collide on the seed.
                seed_name: format!("target-{i}-{}", guest.rsplit('/').next().unwrap_or("file")),
                guest: guest.clone(),
                mode: *mode,
            })
            .collect();
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "demo"
description = "a demo"
port = 9000

[image]
packages = ["nginx-light"]

[host]
prepare = "make -C {profile_dir} out={cache}/demo"

[[files]]
host = "{cache}/demo/server"
guest = "/usr/local/bin/demo"
mode = "755"

[service]
exec_start = "/usr/local/bin/demo --port {port} --token {secret}"
environment = { DEMO_HOME = "/var/lib/demo" }
user = "nobody"
memory_max = "256M"
setup = "mkdir -p /var/lib/demo"

[health]
path = "/ping"

[upload]
method = "post"
shape = "multipart"
field = "file"
url = "/api/upload"
auth = "bearer"
success = [201]
stored = "/var/lib/demo/{name}"

[download]
url = "/files/{name}"
"#;

    fn p(text: &str) -> Result<Profile, String> {
        parse(text, Path::new("/profiles/demo.toml"))
    }

    #[test]
    fn a_complete_profile_becomes_a_spec() {
        let prof = p(GOOD).unwrap();
        let host = HostPaths { cache: "/var/cache/perfvm".into(), perfvm_bin_dir: "/bin".into() };
        let t = prof.resolve(&host);
        assert_eq!(t.unit, "perfvm-demo.service");
        assert_eq!(t.mode, "profile");
        assert_eq!(t.packages, ["nginx-light"]);
        assert_eq!(t.health, Health::Http { path: "/ping".into(), status: 200 });
        assert_eq!(t.upload.method, Method::Post);
        assert_eq!(t.upload.shape, Shape::Multipart { field: "file".into() });
        let v = crate::profile::name_vars("x.bin");
        assert_eq!(t.upload_path_with(&v), "/api/upload");
        assert_eq!(t.stored_path_with(&v).unwrap(), "/var/lib/demo/x.bin");
        assert_eq!(t.download_path_with(&v).unwrap(), "/files/x.bin");
        assert_eq!(t.files[0].host, PathBuf::from("/var/cache/perfvm/demo/server"));
        assert_eq!(t.files[0].mode, 0o755);
        assert_eq!(prof.prepare_command(&host).unwrap(), "make -C /profiles out=/var/cache/perfvm/demo");
        assert!(t.accepts(Some(201)) && !t.accepts(Some(200)));
        let secret = crate::profile::Secret::generate();
        let unit = t.unit_file(&secret);
        assert!(unit.contains(&format!("ExecStart=/usr/local/bin/demo --port 9000 --token {}\n", secret.expose())));
        assert!(unit.contains("User=nobody\n") && unit.contains("MemoryMax=268435456\n") && unit.contains("Environment=\"DEMO_HOME=/var/lib/demo\"\n"));
        assert_eq!(prof.spec.profile_sha256.as_ref().map(String::len), Some(64));
    }

    #[test]
    fn defaults_are_tcp_health_raw_put_and_any_2xx() {
        let t = p("name = \"m\"\nport = 80\n[service]\nexec_start = \"/x\"\n[upload]\nmethod = \"PUT\"\nurl = \"/{name}\"\nverify = false\n").unwrap().spec;
        assert_eq!(t.health, Health::Tcp);
        assert_eq!(t.upload.shape, Shape::Raw);
        assert!(t.stored.is_none() && t.download.is_none() && t.upload.auth.is_none());
        assert!(t.accepts(Some(204)));
    }

    /// Each broken profile gets an error naming what is wrong.
    #[test]
    fn bad_profiles_are_refused_with_the_key_named() {
        let cases: &[(&str, &str, &str)] = &[
            ("port = 9000\n", "", "missing field `port`"),
            ("port = 9000\n", "port = 0\n", "port = 0"),
            ("port = 9000\n", "port = 22\n", "clashes with sshd"),
            ("port = 9000\n", "port = 70000\n", "port"),
            ("description = \"a demo\"\n", "descripton = \"typo\"\n", "unknown field `descripton`"),
            ("shape = \"multipart\"", "shape = \"form\"", "upload.shape = \"form\""),
            ("method = \"post\"", "method = \"PATCH\"", "upload.method = \"PATCH\""),
            ("method = \"post\"", "method = \"PUT\"", "goes with method = \"POST\""),
            ("field = \"file\"\n", "", "needs upload.field"),
            ("url = \"/api/upload\"", "url = \"/api/{nmae}\"", "upload.url: unknown placeholder {nmae}"),
            ("url = \"/api/upload\"", "url = \"api\"", "starting with /"),
            ("stored = \"/var/lib/demo/{name}\"\n", "", "upload.stored is missing"),
            ("stored = \"/var/lib/demo/{name}\"", "stored = \"/var/lib/demo/f\"", "with {name}"),
            ("auth = \"bearer\"", "auth = \"digest\"", "upload.auth = \"digest\""),
            ("success = [201]", "success = [42]", "42 is not an HTTP status"),
            ("--token {secret}", "--token {secrte}", "service.exec_start: unknown placeholder {secrte}"),
            ("memory_max = \"256M\"", "memory_max = \"lots\"", "service.memory_max"),
            ("packages = [\"nginx-light\"]", "packages = [\"nginx; reboot\"]", "not a Debian package name"),
            ("guest = \"/usr/local/bin/demo\"", "guest = \"../etc/passwd\"", "absolute guest path"),
            ("mode = \"755\"", "mode = \"rwx\"", "octal mode"),
            ("host = \"{cache}/demo/server\"", "host = \"{home}/server\"", "files[0].host: unknown placeholder {home}"),
            ("path = \"/ping\"", "path = \"ping\"", "health.path"),
            ("name = \"demo\"", "name = \"perfvm-target\"", "built-in"),
            ("name = \"demo\"", "name = \"de mo\"", "name = \"de mo\""),
            ("DEMO_HOME = \"/var/lib/demo\"", "\"1X\" = \"v\"", "not a variable name"),
            ("exec_start = \"/usr/local/bin/demo --port {port} --token {secret}\"", "exec_start = \"/x\\nExecStartPre=/bin/evil\"", "control characters"),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "case {from:?} does not apply");
            let text = GOOD.replacen(from, to, 1);
            let e = p(&text).err().unwrap_or_else(|| panic!("{from:?} -> {to:?} was accepted"));
            assert!(e.contains(want), "{from:?} -> {to:?}: {e}");
        }
    }

    const FLOW: &str = r#"
name = "flow"
port = 9000
[service]
exec_start = "/x --password {secret}"
[login]
url = "/api/login"
json = { user = "perfvm", password = "{secret}" }
expect_cookie = "sid"
capture = { csrf = { header = "X-Csrf" } }
[[before_upload]]
url = "/api/slots"
form = { file = "{name}", token = "{csrf}" }
expect = [201]
capture = { slot = { json = "/id" } }
[upload]
method = "PUT"
url = "/api/slots/{slot}"
headers = { X-Csrf = "{csrf}" }
stored = "{where}"
[upload.capture.where]
json = "/stored/path"
"#;

    #[test]
    fn login_steps_and_captures_flow_into_later_templates() {
        let t = p(FLOW).unwrap().spec;
        let login = t.login.as_ref().unwrap();
        assert_eq!(login.method, Method::Post, "POST by default");
        assert_eq!(login.body, StepBody::Json(vec![("password".into(), "{secret}".into()), ("user".into(), "perfvm".into())]));
        assert_eq!(login.expect_cookie.as_deref(), Some("sid"));
        assert_eq!(login.capture, vec![Capture { var: "csrf".into(), from: CaptureFrom::Header("X-Csrf".into()), url_path: false }]);
        let b = &t.before_upload[0];
        assert_eq!(b.label, "before_upload[0]");
        assert!(matches!(&b.body, StepBody::Form { multipart: false, .. }));
        assert_eq!(t.upload_capture[0].from, CaptureFrom::Json("/stored/path".into()));
        let mut vars = crate::profile::name_vars("f.bin");
        vars.insert("slot".into(), "42".into());
        vars.insert("csrf".into(), "c".into());
        assert_eq!(t.upload_path_with(&vars), "/api/slots/42");
        vars.insert("where".into(), "/srv/42.bin".into());
        assert_eq!(t.stored_path_with(&vars).unwrap(), "/srv/42.bin");
    }

    #[test]
    fn bad_steps_are_refused_with_the_key_named() {
        let cases: &[(&str, &str, &str)] = &[
            ("url = \"/api/slots/{slot}\"", "url = \"/api/slots/{where}\"", "upload.url: unknown placeholder {where}"),
            ("token = \"{csrf}\"", "token = \"{slot}\"", "before_upload[0].form.token: unknown placeholder {slot}"),
            ("password = \"{secret}\"", "password = \"{name}\"", "login.json.password: unknown placeholder {name}"),
            ("capture = { slot = { json = \"/id\" } }", "capture = { name = { json = \"/id\" } }", "{name} is reserved"),
            ("capture = { slot = { json = \"/id\" } }", "capture = { slot = { json = \"id\" } }", "a JSON pointer starts with /"),
            ("capture = { slot = { json = \"/id\" } }", "capture = { slot = { json = \"/id\", header = \"X\" } }", "exactly one of"),
            ("expect = [201]", "expect = [201]\nencoding = \"xml\"", "encoding = \"xml\""),
            ("url = \"/api/login\"", "url = \"/api/login\"\nmethod = \"GET\"", "a GET has no body"),
            ("expect_cookie = \"sid\"", "expect_cookie = \"s id\"", "not a cookie name"),
            ("expect_cookie = \"sid\"", "expect_cookie = \"sid\"\nretries = 3", "unknown field `retries`"),
            ("stored = \"{where}\"", "stored = \"where\"", "upload.stored"),
        ];
        for (from, to, want) in cases {
            assert!(FLOW.contains(from), "case {from:?} does not apply");
            let e = p(&FLOW.replacen(from, to, 1)).err().unwrap_or_else(|| panic!("{from:?} -> {to:?} was accepted"));
            assert!(e.contains(want), "{from:?} -> {to:?}: {e}");
        }
    }

    #[test]
    fn shipped_profiles_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("targets");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let prof = load(&path).unwrap();
                assert_eq!(Some(prof.spec.name.as_str()), path.file_stem().and_then(|s| s.to_str()), "file name = profile name");
                n += 1;
            }
        }
        assert!(n >= 4, "the three real servers and the login one are shipped");
    }
}
