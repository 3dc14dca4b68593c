//! `perfvm target list|check`: the servers perfvm can measure.

use crate::profile::REFERENCE_NAME;
use crate::profile::parse as profile;
use crate::setup::target::shipped;
use super::ListFormat;
use anyhow::Result;
use std::path::PathBuf;

/// `perfvm target list`.
pub fn list(format: ListFormat) -> Result<i32> {
    let mut rows = vec![serde_json::json!({
        "name": REFERENCE_NAME, "upload": "PUT", "packages": [], "path": null, "valid": true, "error": null,
        "description": "perfvm's reference upload server (built in; --target-mode stream|drop-cache|memory)",
    })];
    for (path, r) in shipped() {
        rows.push(match r {
            Ok(p) => {
                let t = &p.spec;
                let upload = match &t.upload.shape {
                    crate::profile::Shape::Raw => t.upload.method.as_str().to_string(),
                    crate::profile::Shape::Multipart { .. } => format!("{} form", t.upload.method.as_str()),
                };
                serde_json::json!({"name": t.name, "upload": upload, "packages": t.packages, "path": path, "valid": true, "error": null, "description": p.description})
            }
            Err(e) => serde_json::json!({
                "name": path.file_stem().unwrap_or_default().to_string_lossy(), "upload": null, "packages": [], "path": path,
                "valid": false, "error": e.to_string(), "description": null,
            }),
        });
    }
    let bad = rows.iter().filter(|r| r["valid"] == false).count();
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        ListFormat::Table => {
            println!("{:<16} {:<10} {:<22} DESCRIPTION", "NAME", "UPLOAD", "IMAGE PACKAGES");
            for r in &rows {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                if r["valid"] == false {
                    println!("{:<16} INVALID: {}", s("name"), s("error"));
                    continue;
                }
                let pkgs: Vec<&str> = r["packages"].as_array().map(|a| a.iter().filter_map(|p| p.as_str()).collect()).unwrap_or_default();
                let pkgs = if pkgs.is_empty() { "-".to_string() } else { pkgs.join(",") };
                println!("{:<16} {:<10} {:<22} {}", s("name"), s("upload"), pkgs, s("description"));
            }
            println!("\nProfiles from {}; `--target NAME` or `--target path/to/profile.toml`.", crate::paths::targets_dir().display());
        }
    }
    Ok(if bad == 0 { 0 } else { 1 })
}

/// `perfvm target check FILE...`: exit 0 when all are valid, 2 otherwise.
pub fn check(files: &[PathBuf]) -> Result<i32> {
    let mut ok = true;
    for f in files {
        match profile::load(f) {
            Ok(p) => {
                let t = &p.spec;
                let verify = match &t.stored {
                    Some(s) => format!("sha256 of {s}"),
                    None => "not verifiable (verified: null)".into(),
                };
                let health = match &t.health {
                    crate::profile::Health::Http { path, status } => format!("GET {path} → {status}"),
                    crate::profile::Health::Tcp => format!("TCP port {} listening", t.guest_port),
                };
                let login = match &t.login {
                    Some(l) => format!(", login {} {}{}", l.method.as_str(), l.url, l.expect_cookie.as_ref().map(|c| format!(" (cookie {c})")).unwrap_or_default()),
                    None => String::new(),
                };
                let before = if t.before_upload.is_empty() { String::new() } else { format!(", {} request(s) before each upload", t.before_upload.len()) };
                println!("{}: ok: target {} on port {}, health {health}{login}{before}, upload {} {}, verify {verify}", f.display(), t.name, t.guest_port, t.upload.method.as_str(), t.upload.url);
            }
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    Ok(if ok { 0 } else { crate::exit::BAD_INPUT })
}
