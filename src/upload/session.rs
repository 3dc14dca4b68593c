//! A target's session: the requests a profile makes before the uploads (a login that sets a
//! cookie, a per-file upload slot), and values captured from responses. Cookies live in one jar
//! shared by every later request of the cell; nothing of it is ever saved.

use crate::profile::{Capture, CaptureFrom, Secret, Step, StepBody, TargetSpec, fill_vars, name_vars};
use reqwest::cookie::CookieStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The cell's HTTP client (with its cookies) and, per upload, the values its templates use.
pub struct Session {
    pub client: reqwest::Client,
    pub vars: Vec<BTreeMap<String, String>>,
}

/// A client that keeps cookies and never goes through a proxy (targets are on loopback).
pub fn client_with_cookies() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = super::client::builder().cookie_provider(jar.clone()).build().expect("reqwest client");
    (client, jar)
}

/// Log in (if the profile says so) and run the before_upload steps for each of `names`.
/// An error names the step: it ends the cell as an HTTP error of the target.
pub async fn open(t: &TargetSpec, base: &str, names: &[String], secret: &Secret, limit: Duration) -> Result<Session, String> {
    let (client, jar) = client_with_cookies();
    let mut shared: BTreeMap<String, String> = BTreeMap::new();
    shared.insert("secret".into(), secret.expose().to_string());
    if let Some(login) = &t.login {
        run_step(&client, &jar, base, login, &mut shared, limit).await?;
    }
    let mut vars = Vec::new();
    for name in names {
        let mut v = shared.clone();
        v.extend(name_vars(name));
        for step in &t.before_upload {
            run_step(&client, &jar, base, step, &mut v, limit).await.map_err(|e| format!("{e} (for {name})"))?;
        }
        // The secret stays out of the values handed on: only auth headers and steps use it.
        v.remove("secret");
        vars.push(v);
    }
    Ok(Session { client, vars })
}

async fn run_step(client: &reqwest::Client, jar: &reqwest::cookie::Jar, base: &str, step: &Step, vars: &mut BTreeMap<String, String>, limit: Duration) -> Result<(), String> {
    let url = format!("{base}{}", fill_vars(&step.url, vars));
    let method = match step.method {
        crate::profile::Method::Get => reqwest::Method::GET,
        crate::profile::Method::Put => reqwest::Method::PUT,
        crate::profile::Method::Post => reqwest::Method::POST,
    };
    let mut req = client.request(method, &url).timeout(limit);
    let fill = |fields: &[(String, String)]| -> Vec<(String, String)> { fields.iter().map(|(k, v)| (k.clone(), fill_vars(v, vars))).collect() };
    req = match &step.body {
        StepBody::None => req,
        StepBody::Form { fields, multipart: false } => {
            req.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(urlencoded(&fill(fields)))
        }
        StepBody::Form { fields, multipart: true } => {
            let boundary = "perfvm-step-boundary-7f3a9c";
            req.header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}")).body(multipart_fields(&fill(fields), boundary))
        }
        StepBody::Json(fields) => {
            let obj: serde_json::Map<String, serde_json::Value> = fill(fields).into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            req.header(reqwest::header::CONTENT_TYPE, "application/json").body(serde_json::Value::Object(obj).to_string())
        }
    };
    let resp = req.send().await.map_err(|e| format!("{}: {} {}: {e}", step.label, step.method.as_str(), step.url))?;
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    let body = super::client::bounded_text(resp).await;
    let ok = if step.expect.is_empty() { (200..300).contains(&status) } else { step.expect.contains(&status) };
    if !ok {
        let snippet: String = body.trim().chars().take(200).collect();
        return Err(format!("{}: {} {} answered HTTP {status}: {snippet}", step.label, step.method.as_str(), step.url));
    }
    if let Some(name) = &step.expect_cookie {
        let parsed = reqwest::Url::parse(&url).map_err(|e| e.to_string())?;
        let has = jar.cookies(&parsed).is_some_and(|h| cookie_names(h.to_str().unwrap_or("")).any(|n| n == name));
        if !has {
            return Err(format!("{}: HTTP {status} but no {name} cookie was set (wrong credentials?)", step.label));
        }
    }
    for c in &step.capture {
        let v = capture(c, &headers, &body).map_err(|e| format!("{}: {e}", step.label))?;
        vars.insert(c.var.clone(), v);
    }
    Ok(())
}

/// Names in a Cookie header value (`a=1; b=2`). Pure.
fn cookie_names(header: &str) -> impl Iterator<Item = &str> {
    header.split(';').filter_map(|kv| kv.split('=').next()).map(str::trim).filter(|n| !n.is_empty())
}

/// A captured value from a response's headers or JSON body. Pure.
pub fn capture(c: &Capture, headers: &[(String, String)], body: &str) -> Result<String, String> {
    let raw = match &c.from {
        CaptureFrom::Header(h) => headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(h))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("capture {}: no {h} header in the response", c.var))?,
        CaptureFrom::Json(p) => {
            let v: serde_json::Value = serde_json::from_str(body).map_err(|_| format!("capture {}: the response is not JSON", c.var))?;
            match v.pointer(p) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(other) => return Err(format!("capture {}: {p} is {other}, not a string or number", c.var)),
                None => return Err(format!("capture {}: {p} is not in the response", c.var)),
            }
        }
    };
    if !c.url_path {
        return Ok(raw);
    }
    let path = match reqwest::Url::parse(&raw) {
        Ok(u) => u.path().to_string(),
        Err(_) if raw.starts_with('/') => raw.split(['?', '#']).next().unwrap_or("").to_string(),
        Err(_) => return Err(format!("capture {}: {raw:?} is not a URL", c.var)),
    };
    percent_decode(&path).ok_or_else(|| format!("capture {}: {path:?} is not valid percent-encoded UTF-8", c.var))
}

/// `%XX` escapes decoded; None for a bad escape or bytes that are not UTF-8. Pure.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `application/x-www-form-urlencoded`. Pure.
pub fn urlencoded(fields: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => (b as char).to_string(),
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// A `multipart/form-data` body of text fields. Pure.
pub fn multipart_fields(fields: &[(String, String)], boundary: &str) -> String {
    let mut s = String::new();
    for (k, v) in fields {
        s.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
    }
    s.push_str(&format!("--{boundary}--\r\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(from: CaptureFrom, url_path: bool) -> Capture {
        Capture { var: "v".into(), from, url_path }
    }

    #[test]
    fn captures_from_json_and_headers() {
        let body = r#"{"fileurl": "http://127.0.0.1:3923/up/a%20b.bin", "n": 7, "o": {}}"#;
        let h = vec![("location".to_string(), "/files/x.bin?k=1".to_string())];
        assert_eq!(capture(&cap(CaptureFrom::Json("/fileurl".into()), false), &h, body).unwrap(), "http://127.0.0.1:3923/up/a%20b.bin");
        assert_eq!(capture(&cap(CaptureFrom::Json("/fileurl".into()), true), &h, body).unwrap(), "/up/a b.bin");
        assert_eq!(capture(&cap(CaptureFrom::Json("/n".into()), false), &h, body).unwrap(), "7");
        assert_eq!(capture(&cap(CaptureFrom::Header("Location".into()), true), &h, body).unwrap(), "/files/x.bin");
        assert!(capture(&cap(CaptureFrom::Json("/nope".into()), false), &h, body).unwrap_err().contains("/nope is not in the response"));
        assert!(capture(&cap(CaptureFrom::Json("/o".into()), false), &h, body).unwrap_err().contains("not a string"));
        assert!(capture(&cap(CaptureFrom::Json("/x".into()), false), &h, "<html>").unwrap_err().contains("not JSON"));
        assert!(capture(&cap(CaptureFrom::Header("X-Y".into()), false), &h, body).unwrap_err().contains("no X-Y header"));
    }

    /// A one-shot HTTP server on loopback: answers the first request with `response`, and says
    /// whether it got one at all (through the returned flag, once it has).
    async fn serve_once(response: Vec<u8>) -> (u16, tokio::task::JoinHandle<bool>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let Ok(Ok((mut c, _))) = tokio::time::timeout(Duration::from_secs(2), l.accept()).await else { return false };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf).await;
            let _ = c.write_all(&response).await;
            let _ = c.shutdown().await;
            true
        });
        (port, h)
    }

    #[tokio::test]
    async fn a_redirect_is_never_followed_with_the_secret() {
        // Elsewhere: another place on this host the redirect points to.
        let (elsewhere, reached) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let redirect = format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/steal\r\ncontent-length: 0\r\n\r\n");
        let (target, _) = serve_once(redirect.into_bytes()).await;
        let mut t = crate::profile::TargetSpec::reference(crate::profile::TargetMode::Stream, "/x".into());
        t.login = Some(Step { label: "login".into(), method: crate::profile::Method::Post, url: "/login".into(), body: StepBody::Form { fields: vec![("password".into(), "{secret}".into())], multipart: false }, expect: vec![], expect_cookie: None, capture: vec![] });
        let e = open(&t, &format!("http://127.0.0.1:{target}"), &["f".into()], &Secret::generate(), Duration::from_secs(5)).await.err().unwrap();
        assert!(e.contains("answered HTTP 307"), "{e}");
        assert!(!reached.await.unwrap(), "the redirect was followed");
    }

    #[tokio::test]
    async fn an_endless_answer_is_read_only_so_far() {
        let mut resp = b"HTTP/1.1 200 OK\r\ncontent-length: 3145728\r\n\r\n".to_vec();
        resp.extend(std::iter::repeat_n(b'x', 3 << 20));
        let (port, _) = serve_once(resp).await;
        let r = crate::upload::client::http_client().get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
        assert_eq!(crate::upload::client::bounded_text(r).await.len(), crate::upload::client::BODY_LIMIT);
    }

    #[test]
    fn form_bodies_are_encoded() {
        let f = vec![("act".to_string(), "login".to_string()), ("pw".to_string(), "a b&c=d/é".to_string())];
        assert_eq!(urlencoded(&f), "act=login&pw=a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            multipart_fields(&f[..1], "B"),
            "--B\r\nContent-Disposition: form-data; name=\"act\"\r\n\r\nlogin\r\n--B--\r\n"
        );
        assert_eq!(cookie_names("a=1; cppwd=x;b=").collect::<Vec<_>>(), ["a", "cppwd", "b"]);
    }
}
