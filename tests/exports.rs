//! matrix.csv as a spreadsheet reads it: converted by LibreOffice headless (installed by
//! `scripts/setup.sh --test`) under English, German and French import languages, every cell is
//! checked against the text perfvm wrote. In English every number is a number and every flag a
//! 0/1 number; in any language no cell becomes a date, and no number becomes a different number
//! (German reads `45.632` as 45632: perfvm never writes exactly three decimals).

use perfvm::results::export::csv::{EXTRA_COLUMNS, Row, SEED_COLUMNS, export};
use perfvm::results::model::{CellResult, ExitReason, HostFacts};
use std::process::Command;

fn results() -> Vec<CellResult> {
    let ok: CellResult = serde_json::from_str(include_str!("data/result-sample.json")).unwrap();
    let mut busy = ok.clone();
    busy.ram_mb = 1024;
    busy.cell = "1024-256M".into();
    busy.throughput_mbps = Some(12.125);
    busy.host_facts = Some(HostFacts { other_cpu_percent: Some(41.5), steal_percent: Some(0.0), noisy: Some(true), ..Default::default() });
    let mut failed = ok.clone();
    failed.ram_mb = 256;
    failed.cell = "256-256M".into();
    failed.success = false;
    failed.exit_reason = ExitReason::OomKilled;
    failed.duration_seconds = None;
    failed.throughput_mbps = None;
    failed.error = Some("upload: connection reset, 3/4 sent".into());
    let mut retried = failed.clone();
    retried.attempt = 2;
    vec![ok, busy, failed, retried]
}

/// The cells of the first table of a flat ODS document: (value-type, value or text) per cell.
fn fods_cells(xml: &str) -> Vec<Vec<(String, String)>> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let office = "urn:oasis:names:tc:opendocument:xmlns:office:1.0";
    let table_ns = "urn:oasis:names:tc:opendocument:xmlns:table:1.0";
    let table = doc.descendants().find(|n| n.has_tag_name((table_ns, "table"))).expect("a table");
    let mut rows = Vec::new();
    for row in table.descendants().filter(|n| n.has_tag_name((table_ns, "table-row"))) {
        let mut cells = Vec::new();
        for c in row.children().filter(|n| n.has_tag_name((table_ns, "table-cell"))) {
            let kind = c.attribute((office, "value-type")).unwrap_or("").to_string();
            let value = c
                .attribute((office, "value"))
                .or_else(|| c.attribute((office, "date-value")))
                .map(str::to_string)
                .unwrap_or_else(|| c.children().filter(|p| p.has_tag_name("p")).flat_map(|p| p.descendants().filter(|t| t.is_text())).filter_map(|t| t.text()).collect::<String>());
            let repeat: usize = c.attribute((table_ns, "number-columns-repeated")).and_then(|r| r.parse().ok()).unwrap_or(1);
            // A long run of trailing empty cells is how the table ends.
            if kind.is_empty() && repeat > 64 {
                continue;
            }
            cells.extend(std::iter::repeat_n((kind, value), repeat));
        }
        if cells.iter().any(|(k, _)| !k.is_empty()) {
            rows.push(cells);
        }
    }
    rows
}

fn convert(csv: &std::path::Path, language: u32, dir: &std::path::Path) -> String {
    let out = dir.join(format!("out-{language}"));
    // Separator 44 (,), text delimiter 34 ("), UTF-8 (76), from line 1, default column types.
    let status = Command::new("soffice")
        .arg("--headless")
        .arg("--norestore")
        .arg(format!("-env:UserInstallation=file://{}", dir.join("profile").display()))
        .arg(format!("--infilter=CSV:44,34,76,1,,{language}"))
        .args(["--convert-to", "fods", "--outdir"])
        .arg(&out)
        .arg(csv)
        .status()
        .expect("soffice (LibreOffice, installed by scripts/setup.sh --test)");
    assert!(status.success(), "soffice failed for language {language}");
    std::fs::read_to_string(out.join("matrix.fods")).unwrap()
}

#[test]
#[ignore = "needs LibreOffice (scripts/setup.sh --test): run with --include-ignored (CI does)"]
fn libreoffice_reads_matrix_csv_numbers_as_numbers_and_nothing_as_a_date() {
    let all = results();
    let finals = perfvm::results::export::finals(&all);
    let bytes = export(&all, &Row { run_id: "matrix-20261202-1@42", label: "nightly, rc1", finals: &finals, path_of: &|r| format!("cells/{}/a{}/result.json", r.cell, r.attempt) });
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("matrix.csv");
    std::fs::write(&csv, &bytes).unwrap();
    let written: Vec<Vec<String>> = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&bytes[..])
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    let width = SEED_COLUMNS.len() + EXTRA_COLUMNS.len();
    let header = &written[0];
    let numbers_seen = std::cell::Cell::new(0);

    // 1033 English (USA), 2057 English (UK), 1031 German, 1036 French.
    for language in [1033, 2057, 1031, 1036] {
        let english = language == 1033 || language == 2057;
        let read = fods_cells(&convert(&csv, language, dir.path()));
        assert_eq!(read.len(), written.len(), "language {language}: one row per CSV line");
        numbers_seen.set(0);
        for (r, (got_row, want_row)) in read.iter().zip(&written).enumerate() {
            for (c, want) in want_row.iter().enumerate().take(width) {
                let (kind, value) = got_row.get(c).cloned().unwrap_or_default();
                let at = format!("language {language}, row {r}, column {} = {want:?}: read as {kind} {value:?}", header[c]);
                assert!(!matches!(kind.as_str(), "date" | "time" | "percentage" | "currency"), "{at}");
                if want.is_empty() {
                    continue;
                }
                match want.parse::<f64>() {
                    Ok(n) if r > 0 => {
                        if kind == "float" {
                            let v: f64 = value.parse().unwrap();
                            assert!((v - n).abs() < 1e-9, "a different number: {at}");
                            numbers_seen.set(numbers_seen.get() + 1);
                        } else {
                            assert!(!english, "a number as text: {at}");
                            assert_eq!(kind, "string", "{at}");
                        }
                    }
                    _ => assert_eq!((kind.as_str(), value.as_str()), ("string", want.as_str()), "{at}"),
                }
            }
        }
        if english {
            assert!(numbers_seen.get() > 100, "language {language}: {} numbers", numbers_seen.get());
        }
    }
}
