//! JUnit XML for CI systems (`perfvm matrix --junit FILE`): one test suite, a test case per cell
//! (its final attempt), the failure's reason as its message. Pure.

use super::json::RunMetadata;
use crate::results::model::CellResult;

fn esc(s: &str) -> String {
    // XML 1.0 has no place for most control characters, even escaped.
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(meta: &RunMetadata, finals: &[&CellResult], planned: usize) -> String {
    let failures = finals.iter().filter(|r| !r.success).count();
    let skipped = planned.saturating_sub(finals.len());
    let time: f64 = finals.iter().filter_map(|r| r.duration_seconds).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"perfvm\" tests=\"{planned}\" failures=\"{failures}\" skipped=\"{skipped}\">\n  <testsuite name=\"{}\" tests=\"{planned}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\" timestamp=\"{}\">\n",
        esc(&meta.run_key),
        meta.started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    for r in finals {
        let name = r.key().id();
        let classname = format!("{}.{}", esc(&r.target.name), esc(&r.target.mode));
        let t = r.phases.upload.unwrap_or(0.0);
        if r.success {
            out.push_str(&format!("    <testcase name=\"{name}\" classname=\"{classname}\" time=\"{t:.3}\"/>\n"));
        } else {
            let msg = r.exit_reason.as_str();
            let text = r.error.as_deref().unwrap_or("");
            out.push_str(&format!(
                "    <testcase name=\"{name}\" classname=\"{classname}\" time=\"{t:.3}\">\n      <failure message=\"{msg}\" type=\"{msg}\">{}</failure>\n    </testcase>\n",
                esc(text)
            ));
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::model::ExitReason;

    #[test]
    fn a_case_per_cell_and_the_reason_as_the_failures_message() {
        let ok: CellResult = serde_json::from_str(include_str!("../../../tests/data/result-sample.json")).unwrap();
        let mut oom = ok.clone();
        (oom.ram_mb, oom.success, oom.exit_reason) = (256, false, ExitReason::OomKilled);
        oom.error = Some("upload: reset <by> \"peer\"\u{1}".into());
        let meta: RunMetadata = serde_json::from_value(serde_json::json!({
            "run_key": "matrix-x", "perfvm_version": "0", "git_rev": null, "host": "h", "kernel": "k",
            "libvirt_version": null, "qemu_version": null, "accel": "tcg", "image_id": "i", "target": "t",
            "target_mode": "stream", "jobs": 1, "started": "2026-11-30T00:00:00Z", "finished": null,
            "definition": { "ram_mib": [256], "file_sizes": ["1M"], "repeat": 1, "target": "t", "target_mode": "stream",
              "image_id": "i", "accel": "tcg", "cpus": 2, "timeout_s": 600, "seed": 1, "sample_interval_ms": 100 }
        }))
        .unwrap();
        let xml = render(&meta, &[&oom, &ok], 3);
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
        assert_eq!((suite.attribute("tests"), suite.attribute("failures"), suite.attribute("skipped")), (Some("3"), Some("1"), Some("1")));
        let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(cases.iter().map(|c| c.attribute("name").unwrap()).collect::<Vec<_>>(), ["256-256M-r1", "512-256M-r1"]);
        let f = cases[0].children().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(f.attribute("message"), Some("oom_killed"));
        assert_eq!(f.text(), Some("upload: reset <by> \"peer\""));
        assert!(cases[1].children().all(|n| !n.has_tag_name("failure")));
    }
}
