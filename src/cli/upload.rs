//! `perfvm upload`: one upload with perfvm's uploader to any URL, outside a cell. For checking a
//! target by hand, and for comparing the uploader with curl on the same target
//! (`bench/uploader-vs-curl.sh`).

use super::UploadArgs;
use crate::error::InputError;
use crate::upload::client::{self, Transfer};
use crate::upload::payload::Payload;
use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub async fn run(args: UploadArgs) -> Result<i32> {
    if !(args.url.starts_with("http://127.") || args.url.starts_with("http://localhost") || args.url.starts_with("http://[::1]")) {
        return Err(InputError(format!("--url {}: perfvm only uploads to loopback (http://127.0.0.1:PORT/…)", args.url)).into());
    }
    let payload = match (&args.file, args.file_size) {
        (Some(p), _) => {
            let size = std::fs::metadata(p).map_err(|e| InputError(format!("--file {}: {e}", p.display())))?.len();
            Payload::File { path: p.clone(), size }
        }
        (None, Some(s)) => Payload::Generated { kind: args.kind, seed: args.seed, size: s.bytes() },
        (None, None) => return Err(InputError("give --file-size SIZE or --file PATH".into()).into()),
    };
    let transfer = if args.chunked { Transfer::Chunked } else { Transfer::ContentLength };
    let o = client::put(&args.url, &payload, transfer, Arc::new(AtomicU64::new(0)), Duration::from_secs(args.timeout)).await;
    let secs = o.duration.as_secs_f64();
    println!(
        "HTTP {}  {} bytes in {secs:.3} s = {:.1} MiB/s  sha256 {}{}",
        o.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        o.bytes_sent,
        o.bytes_sent as f64 / (1u64 << 20) as f64 / secs.max(1e-9),
        o.sha256.as_deref().unwrap_or("-"),
        o.error.as_ref().map(|e| format!("  error: {e}")).unwrap_or_default()
    );
    Ok(if o.accepted() { 0 } else { 1 })
}
