//! Workloads beyond one generated file, end to end with real guests: a user's file (`--file`)
//! sent with chunked encoding, and concurrent uploads fetched back (`--concurrency`,
//! `--download`). `#[ignore]`d like the other VM tests; CI runs them.

mod common;

use common::{MIB, cell, perfvm};
use perfvm::results::model::ExitReason;
use perfvm::upload::content::ContentKind;
use perfvm::upload::payload::{Payload, sha256_of};

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn a_users_file_uploads_the_same_bytes_as_the_generated_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = perfvm(&["files", "generate", "24M", "--dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.path().join("random-24M-s1.bin");
    let generated = sha256_of(&Payload::Generated { kind: ContentKind::Random, seed: 1, size: 24 * MIB }).unwrap();
    let sidecar = std::fs::read_to_string(dir.path().join("random-24M-s1.bin.sha256")).unwrap();
    assert!(sidecar.starts_with(&generated), "{sidecar}");
    // Generated again: verified and reused, not rewritten.
    let again = perfvm(&["files", "generate", "24M", "--dir", d]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("reused"));

    let (r, dir_out, code) = cell(&["--ram", "512", "--file", path.to_str().unwrap(), "--chunked", "--boot", "saved"]);
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(code.status.code(), Some(0));
    assert_eq!(r.content_kind, "file");
    assert_eq!(r.file_path.as_deref(), Some(path.to_str().unwrap()));
    assert_eq!(r.transfer, "chunked");
    assert_eq!(r.file_size_bytes, 24 * MIB);
    assert_eq!(r.file_size, "24M");
    // The same bytes as `--file-size 24M` streams: identical sha256, verified in the guest.
    assert_eq!(r.sha256.as_deref(), Some(generated.as_str()));
    assert_eq!(r.verified, Some(true));
    let journal = std::fs::read_to_string(dir_out.join("journal.log")).unwrap();
    assert!(journal.contains("PUT /upload/perfvm-upload.bin"), "{journal}");
}

#[test]
#[ignore = "boots a real guest: run with --include-ignored (CI does)"]
fn three_concurrent_uploads_are_each_verified_and_the_first_is_fetched_back() {
    let (r, dir, out) = cell(&["--ram", "512", "--file-size", "16M", "--concurrency", "3", "--download", "--kind", "text", "--boot", "saved"]);
    assert_eq!(r.exit_reason, ExitReason::Success, "{:?}", r.error);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(r.cell, "512-16M-c3");
    assert_eq!((r.concurrency, r.content_kind.as_str()), (3, "text"));
    assert_eq!(r.uploads.len(), 3);
    let want = sha256_of(&Payload::Generated { kind: ContentKind::Text, seed: 1, size: 16 * MIB }).unwrap();
    for (i, u) in r.uploads.iter().enumerate() {
        assert_eq!(u.name, format!("perfvm-upload-{}.bin", i + 1));
        assert_eq!(u.http_status, Some(201));
        assert_eq!(u.bytes_sent, 16 * MIB);
        assert_eq!(u.verified, Some(true), "{u:?}");
        assert_eq!(u.guest_sha256.as_deref(), Some(want.as_str()), "three verified files in the guest");
        assert!(u.throughput_mbps.unwrap() > 0.0);
    }
    assert_eq!(r.bytes_sent, Some(48 * MIB));
    // The aggregate covers all three: no single upload can be faster than all of them together.
    let agg = r.throughput_mbps.unwrap();
    assert!(r.uploads.iter().all(|u| u.throughput_mbps.unwrap() <= agg * 1.001), "{agg} vs {:?}", r.uploads);

    let d = r.download.clone().expect("download recorded");
    assert_eq!(d.name, "perfvm-upload-1.bin");
    assert_eq!((d.http_status, d.bytes), (Some(200), 16 * MIB));
    assert_eq!(d.sha256.as_deref(), Some(want.as_str()));
    assert_eq!(d.verified, Some(true));
    assert!(d.throughput_mbps.unwrap() > 0.0 && d.peak_memory_bytes.unwrap() > 0);
    assert!(r.phases.download.is_some());
    let rows = common::samples(&dir);
    let header = csv::Reader::from_path(dir.join("samples.csv")).unwrap().headers().unwrap().clone();
    let phase = header.iter().position(|h| h == "phase").unwrap();
    assert!(rows.iter().any(|x| &x[phase] == "upload") && rows.iter().any(|x| &x[phase] == "download"), "both phases sampled");
}
