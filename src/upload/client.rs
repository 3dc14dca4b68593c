//! Streaming the payload to the target with reqwest.

use super::payload::Payload;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct UploadOutcome {
    pub status: Option<u16>,
    pub response_body: String,
    /// Bytes handed to the HTTP client.
    pub bytes_sent: u64,
    pub duration: Duration,
    /// Transport error (connection reset, refused, …), if the request did not complete.
    pub error: Option<String>,
    pub timed_out: bool,
    /// sha256 of the payload, known once all of it was produced.
    pub sha256: Option<String>,
    /// The status is one the target's profile counts as stored.
    pub accepted: bool,
    /// The answer's headers (a profile may read where the file was stored from them).
    pub response_headers: Vec<(String, String)>,
}

impl UploadOutcome {
    /// The target answered a success status: it says it stored the file.
    pub fn accepted(&self) -> bool {
        self.accepted
    }
}

/// One upload request: where, how, and which answers mean "stored".
#[derive(Debug, Clone)]
pub struct Request {
    pub method: crate::profile::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// multipart/form-data with the file in (field, filename); None: the body is the file.
    pub multipart: Option<(String, String)>,
    /// Statuses that mean stored; empty: any 2xx.
    pub success: Vec<u16>,
    /// The cell's client (its cookies from a login); None: a plain one.
    pub client: Option<reqwest::Client>,
}

impl Request {
    /// A plain PUT of the bytes, 2xx meaning stored.
    pub fn put(url: &str) -> Request {
        Request { method: crate::profile::Method::Put, url: url.to_string(), headers: Vec::new(), multipart: None, success: Vec::new(), client: None }
    }
}

/// The multipart framing around the file: (content type, before, after). Pure.
pub fn multipart_frame(field: &str, filename: &str, boundary: &str) -> (String, Vec<u8>, Vec<u8>) {
    let before = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let after = format!("\r\n--{boundary}--\r\n");
    (format!("multipart/form-data; boundary={boundary}"), before.into_bytes(), after.into_bytes())
}

/// A client that never goes through a proxy and never follows a redirect: targets are always
/// on the cell's own loopback forward, and a redirect (of a login POST carrying the secret, of
/// an upload) could send perfvm anywhere this host reaches, out of the guest's sandbox. A
/// redirect is an answer like any other (a 3xx the profile did not expect).
pub fn http_client() -> reqwest::Client {
    builder().build().expect("reqwest client")
}

/// The settings every client of perfvm's shares.
pub fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy().connect_timeout(Duration::from_secs(5)).redirect(reqwest::redirect::Policy::none())
}

/// The most of a response body perfvm reads (an upload's or a login's answer): enough for any
/// JSON it captures from, bounded against a target that answers forever.
pub const BODY_LIMIT: usize = 1 << 20;

/// A response's body as text, at most `BODY_LIMIT` bytes of it.
pub async fn bounded_text(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = BODY_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= BODY_LIMIT {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// How the body length is told: a Content-Length header, or chunked transfer encoding (some
/// servers buffer one and stream the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    ContentLength,
    Chunked,
}

impl Transfer {
    pub fn as_str(self) -> &'static str {
        match self {
            Transfer::ContentLength => "content-length",
            Transfer::Chunked => "chunked",
        }
    }
}

/// PUT the payload to `url` (2xx: stored).
pub async fn put(url: &str, payload: &Payload, transfer: Transfer, sent: Arc<AtomicU64>, limit: Duration) -> UploadOutcome {
    send(&Request::put(url), payload, transfer, sent, limit).await
}

/// Send the payload as `req` says, counting its bytes into `sent`. Gives up after `limit`.
pub async fn send(r: &Request, payload: &Payload, transfer: Transfer, sent: Arc<AtomicU64>, limit: Duration) -> UploadOutcome {
    let size = payload.size();
    let (rx, producer) = super::payload::spawn(payload);
    // `sent` may be shared by concurrent uploads (progress); `mine` is this request's own count.
    let mine = Arc::new(AtomicU64::new(0));
    let counters = (sent.clone(), mine.clone());
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let (total, mine) = counters.clone();
        async move {
            let chunk = rx.recv().await?;
            total.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            mine.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Some((Ok::<_, std::io::Error>(chunk), rx))
        }
    });
    let method = match r.method {
        crate::profile::Method::Get => reqwest::Method::GET,
        crate::profile::Method::Put => reqwest::Method::PUT,
        crate::profile::Method::Post => reqwest::Method::POST,
    };
    let mut req = r.client.clone().unwrap_or_else(http_client).request(method, &r.url);
    for (k, v) in &r.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match &r.multipart {
        None => {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
            if transfer == Transfer::ContentLength {
                req = req.header(reqwest::header::CONTENT_LENGTH, size);
            }
            req.body(reqwest::Body::wrap_stream(stream))
        }
        Some((field, filename)) => {
            let boundary = format!("perfvm-{:016x}", size ^ (std::process::id() as u64) << 32);
            let (ctype, before, after) = multipart_frame(field, filename, &boundary);
            if transfer == Transfer::ContentLength {
                req = req.header(reqwest::header::CONTENT_LENGTH, before.len() as u64 + size + after.len() as u64);
            }
            use futures_util::StreamExt;
            let framed = futures_util::stream::once(async move { Ok(bytes::Bytes::from(before)) })
                .chain(stream)
                .chain(futures_util::stream::once(async move { Ok(bytes::Bytes::from(after)) }));
            req.header(reqwest::header::CONTENT_TYPE, ctype).body(reqwest::Body::wrap_stream(framed))
        }
    };

    let started = Instant::now();
    let result = tokio::time::timeout(limit, async {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
        let body = bounded_text(resp).await;
        Ok::<_, reqwest::Error>((status, body, headers))
    })
    .await;
    let duration = started.elapsed();
    let mut out = UploadOutcome {
        status: None,
        response_body: String::new(),
        bytes_sent: mine.load(Ordering::Relaxed),
        duration,
        error: None,
        timed_out: false,
        sha256: None,
        accepted: false,
        response_headers: Vec::new(),
    };
    match result {
        Ok(Ok((status, body, headers))) => {
            out.response_headers = headers;
            out.status = Some(status);
            out.accepted = if r.success.is_empty() { crate::profile::is_2xx(Some(status)) } else { r.success.contains(&status) };
            out.response_body = body.chars().take(4096).collect();
        }
        Ok(Err(e)) => out.error = Some(error_chain(&e)),
        Err(_) => {
            out.timed_out = true;
            out.error = Some(format!("upload did not finish within {} s", limit.as_secs()));
        }
    }
    // The producer thread ends once the body stream (and so its receiver) is dropped.
    match tokio::task::spawn_blocking(move || producer.join()).await {
        Ok(Ok(Ok(sha))) => out.sha256 = Some(sha),
        // A read error of the user's file is the cause of the failure: say so.
        Ok(Ok(Err(e))) if !e.starts_with("the upload stopped") => out.error = Some(format!("payload: {e}")),
        _ => {}
    }
    out
}

#[derive(Debug, Clone)]
pub struct DownloadOutcome {
    pub status: Option<u16>,
    pub bytes: u64,
    pub duration: Duration,
    pub sha256: Option<String>,
    pub error: Option<String>,
    pub timed_out: bool,
}

impl DownloadOutcome {
    pub fn ok(&self) -> bool {
        crate::profile::is_2xx(self.status)
    }
}

/// GET `url`, hashing the body as it streams in (nothing is kept), counting into `received`.
pub async fn download(client: &reqwest::Client, url: &str, headers: &[(String, String)], received: Arc<AtomicU64>, limit: Duration) -> DownloadOutcome {
    use sha2::{Digest, Sha256};
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let result = tokio::time::timeout(limit, async {
        let mut req = client.get(url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.send().await?;
        let status = resp.status().as_u16();
        while let Some(chunk) = resp.chunk().await? {
            hasher.update(&chunk);
            received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        Ok::<_, reqwest::Error>(status)
    })
    .await;
    let mut out = DownloadOutcome {
        status: None,
        bytes: received.load(Ordering::Relaxed),
        duration: started.elapsed(),
        sha256: None,
        error: None,
        timed_out: false,
    };
    match result {
        Ok(Ok(status)) => {
            out.status = Some(status);
            out.sha256 = Some(hex::encode(hasher.finalize()));
        }
        Ok(Err(e)) => out.error = Some(error_chain(&e)),
        Err(_) => {
            out.timed_out = true;
            out.error = Some(format!("download did not finish within {} s", limit.as_secs()));
        }
    }
    out
}

/// One health check: a GET of `url` that must answer `expect`; the error says what came instead.
pub async fn health_once(client: &reqwest::Client, url: &str, expect: u16) -> Result<(), String> {
    match client.get(url).timeout(Duration::from_secs(5)).send().await {
        Ok(r) if r.status().as_u16() == expect => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(error_chain(&e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_frame_wraps_the_file_in_one_field() {
        let (ctype, before, after) = multipart_frame("files", "perfvm-upload.bin", "B0UND");
        assert_eq!(ctype, "multipart/form-data; boundary=B0UND");
        let body = [before.as_slice(), b"DATA", after.as_slice()].concat();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--B0UND\r\nContent-Disposition: form-data; name=\"files\"; filename=\"perfvm-upload.bin\"\r\nContent-Type: application/octet-stream\r\n\r\nDATA\r\n--B0UND--\r\n"
        );
    }

    #[test]
    fn a_plain_put_counts_any_2xx() {
        let r = Request::put("http://127.0.0.1:1/x");
        assert_eq!(r.method, crate::profile::Method::Put);
        assert!(r.success.is_empty() && r.multipart.is_none() && r.headers.is_empty());
    }
}
