//! The verdict of a cell that got as far as uploading: from what the uploads, the download and
//! the collection observed, each upload's record, whether the bytes are verified, the exit
//! reason and the notes that explain a failure. Pure: no guest, no clock, no I/O.

use super::collect::Collected;
use crate::results::model::{self, DownloadRecord, ExitReason, Observed, UploadRecord, mib, round3};
use crate::upload::client::{DownloadOutcome, UploadOutcome};

/// What the cell observed after its uploads.
pub struct Facts<'a> {
    /// Each upload's file name, outcome and where the target stored it (None: not stored, or
    /// the profile cannot say).
    pub names: &'a [String],
    pub outcomes: &'a [UploadOutcome],
    pub stored_paths: &'a [Option<String>],
    /// The size of each upload.
    pub size: u64,
    pub collected: &'a Collected,
    /// The unit's restarts before its health check passed (not held against the upload).
    pub restarts_before: Option<u64>,
    pub download: Option<(&'a DownloadOutcome, &'a DownloadRecord)>,
    /// The profile says where files land (false: `verified` is null by design).
    pub verify_possible: bool,
    /// The domain still ran after the upload.
    pub guest_alive: bool,
    pub samples_error: Option<&'a str>,
    /// Values a profile wanted from an upload's answer and did not find.
    pub capture_notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub uploads: Vec<UploadRecord>,
    /// All uploads verified (true), one differs or is missing (false), or not known (null).
    pub verified: Option<bool>,
    /// Restarts during the upload.
    pub restarts: Option<u64>,
    pub exit_reason: ExitReason,
    pub notes: Vec<String>,
}

pub fn judge(f: &Facts) -> Verdict {
    let c = f.collected;
    let outs = f.outcomes;
    let completed = outs.iter().all(UploadOutcome::accepted);
    // Per upload: verified when its stored file hashes to what was sent.
    let mut hashes = c.guest_sha256.iter().zip(&c.stored_file_exists);
    let uploads: Vec<UploadRecord> = f
        .names
        .iter()
        .zip(outs)
        .zip(f.stored_paths)
        .map(|((name, o), path)| {
            let ok = o.accepted();
            let (guest, exists) = if path.is_some() { hashes.next().map(|(h, e)| (h.clone(), *e)).unwrap_or((None, None)) } else { (None, None) };
            let verified = match (&o.sha256, &guest, exists) {
                _ if !ok => None,
                (Some(want), Some(got), _) => Some(want == got),
                (_, _, Some(false)) => Some(false),
                _ => None,
            };
            let d = o.duration.as_secs_f64();
            UploadRecord {
                name: name.clone(),
                http_status: o.status,
                bytes_sent: o.bytes_sent,
                duration_seconds: ok.then(|| round3(d)),
                throughput_mbps: ok.then(|| round3(mib(f.size) / d)),
                guest_sha256: guest,
                verified,
                error: o.error.clone(),
            }
        })
        .collect();
    let verified = if !completed {
        None
    } else if uploads.iter().any(|u| u.verified == Some(false)) {
        Some(false)
    } else if uploads.iter().all(|u| u.verified == Some(true)) {
        Some(true)
    } else {
        None
    };
    // Restarts during the upload: the count when collected, less those before the health check.
    let restarts = match (c.restarts, f.restarts_before) {
        (Some(n), Some(before)) => Some(n.saturating_sub(before)),
        (n, _) => n,
    };
    let dl = f.download.map(|(d, _)| d);
    let observed = Observed {
        http_ok: completed && dl.is_none_or(|d| d.ok()),
        transport_error: outs.iter().any(|o| o.error.is_some() && !o.timed_out) || dl.is_some_and(|d| d.error.is_some() && !d.timed_out),
        timed_out: outs.iter().any(|o| o.timed_out) || dl.is_some_and(|d| d.timed_out),
        oom_kills: c.oom_kills(),
        restarts,
        verified: match (verified, f.download.map(|(_, r)| r.verified)) {
            (Some(true), Some(dv)) => dv,
            (v, _) => v,
        },
        verify_possible: f.verify_possible,
        guest_alive: f.guest_alive,
    };
    let exit_reason = model::classify(&observed);
    let sent = outs.iter().find_map(|o| o.sha256.as_deref()).unwrap_or("?");
    let mut notes: Vec<String> = Vec::new();
    for (name, o) in f.names.iter().zip(outs) {
        if let Some(e) = &o.error {
            notes.push(if f.names.len() > 1 { format!("upload {name}: {e}") } else { format!("upload: {e}") });
        }
    }
    if let Some(e) = dl.and_then(|d| d.error.as_ref()) {
        notes.push(format!("download: {e}"));
    }
    if let Some(e) = f.samples_error {
        notes.push(format!("sampler: {e}"));
    }
    if !f.guest_alive {
        notes.push("the guest stopped during the upload (qemu exited); see console.log".into());
    }
    if exit_reason != ExitReason::Success {
        for o in outs.iter().filter(|o| o.error.is_none() && !o.accepted()) {
            notes.push(format!("HTTP {}: {}", o.status.unwrap_or(0), o.response_body.trim()));
        }
        if let Some(d) = dl.filter(|d| d.error.is_none() && !d.ok()) {
            notes.push(format!("download: HTTP {}", d.status.unwrap_or(0)));
        }
        for u in uploads.iter().filter(|u| u.verified == Some(false)) {
            notes.push(format!("sha256 mismatch for {}: sent {sent}, stored {}", u.name, u.guest_sha256.as_deref().unwrap_or("(no file)")));
        }
        if let Some((_, r)) = f.download.filter(|(_, r)| r.verified == Some(false)) {
            notes.push(format!("download sha256 mismatch: sent {sent}, got back {}", r.sha256.as_deref().unwrap_or("?")));
        }
        notes.extend(c.notes.iter().cloned());
    }
    notes.extend(f.capture_notes.iter().cloned());
    Verdict { uploads, verified, restarts, exit_reason, notes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sent(status: u16) -> UploadOutcome {
        UploadOutcome {
            status: Some(status),
            response_body: if status >= 300 { "disk full\n".into() } else { String::new() },
            bytes_sent: 1 << 20,
            duration: Duration::from_secs(2),
            error: None,
            timed_out: false,
            sha256: Some("a".repeat(64)),
            accepted: (200..300).contains(&status),
            response_headers: Vec::new(),
        }
    }

    fn stored(hashes: &[Option<&str>]) -> Collected {
        Collected {
            guest_sha256: hashes.iter().map(|h| h.map(str::to_string)).collect(),
            stored_file_exists: hashes.iter().map(|h| Some(h.is_some())).collect(),
            restarts: Some(0),
            kernel_oom_kills: Some(0),
            ..Default::default()
        }
    }

    fn facts<'a>(names: &'a [String], outs: &'a [UploadOutcome], paths: &'a [Option<String>], c: &'a Collected) -> Facts<'a> {
        Facts { names, outcomes: outs, stored_paths: paths, size: 1 << 20, collected: c, restarts_before: Some(0), download: None, verify_possible: true, guest_alive: true, samples_error: None, capture_notes: Vec::new() }
    }

    #[test]
    fn verified_uploads_pass_and_a_mismatch_is_named() {
        let names = vec!["a.bin".to_string(), "b.bin".to_string()];
        let paths = vec![Some("/d/a.bin".to_string()), Some("/d/b.bin".to_string())];
        let outs = vec![sent(201), sent(201)];
        let good = "a".repeat(64);
        let c = stored(&[Some(&good), Some(&good)]);
        let v = judge(&facts(&names, &outs, &paths, &c));
        assert_eq!((v.exit_reason, v.verified), (ExitReason::Success, Some(true)));
        assert_eq!(v.uploads[1].throughput_mbps, Some(0.5));
        assert!(v.notes.is_empty(), "{:?}", v.notes);
        let c = stored(&[Some(&good), None]);
        let v = judge(&facts(&names, &outs, &paths, &c));
        assert_eq!((v.exit_reason, v.verified), (ExitReason::VerifyFailed, Some(false)));
        assert!(v.notes.iter().any(|n| n.contains("sha256 mismatch for b.bin") && n.contains("(no file)")), "{:?}", v.notes);
    }

    #[test]
    fn restarts_before_the_upload_are_not_held_against_it() {
        let names = vec!["a.bin".to_string()];
        let paths = vec![Some("/d/a.bin".to_string())];
        let outs = vec![sent(201)];
        let good = "a".repeat(64);
        let mut c = stored(&[Some(&good)]);
        c.restarts = Some(2);
        let mut f = facts(&names, &outs, &paths, &c);
        f.restarts_before = Some(2);
        let v = judge(&f);
        assert_eq!((v.exit_reason, v.restarts), (ExitReason::Success, Some(0)));
        f.restarts_before = Some(1);
        assert_eq!(judge(&f).exit_reason, ExitReason::TargetCrashed, "one restart happened during the upload");
    }

    #[test]
    fn a_refused_upload_says_what_the_target_answered_and_a_dead_guest_is_the_harnesss() {
        let names = vec!["a.bin".to_string()];
        let paths = vec![None];
        let outs = vec![sent(507)];
        let c = stored(&[]);
        let v = judge(&facts(&names, &outs, &paths, &c));
        assert_eq!((v.exit_reason, v.verified), (ExitReason::HttpError, None));
        assert!(v.notes.contains(&"HTTP 507: disk full".to_string()), "{:?}", v.notes);
        let mut f = facts(&names, &outs, &paths, &c);
        f.guest_alive = false;
        let v = judge(&f);
        assert_eq!(v.exit_reason, ExitReason::HarnessError);
        assert!(v.notes.iter().any(|n| n.contains("qemu exited")));
    }
}
