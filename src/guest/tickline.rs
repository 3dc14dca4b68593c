//! One probe tick as a JSON line, written into a reused buffer: `{"t":…,"cpu_s":…,"files":{…}}`.
//! By hand rather than through serde_json's value tree because the probe runs ten times a
//! second inside an emulated guest, where every allocation and every page touched costs; the
//! host parses the line with serde_json (tested below). Shared with src/bin/perfvm-probe.rs.

use std::io::Write;

/// Append `s` as a JSON string body (without quotes).
fn escape(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                let _ = write!(out, "\\u{:04x}", b);
            }
            _ => out.push(b),
        }
    }
}

/// Replace `out` with the tick's line (newline-terminated). File contents must be UTF-8 (the
/// kernel's text files are ASCII); invalid bytes are replaced so the line stays valid JSON.
pub fn write_tick(out: &mut Vec<u8>, t: f64, cpu_s: Option<f64>, files: &[(&str, &[u8])]) {
    out.clear();
    let _ = write!(out, "{{\"t\":{t},\"cpu_s\":");
    match cpu_s {
        Some(c) if c.is_finite() => {
            let _ = write!(out, "{c}");
        }
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"files\":{");
    for (i, (name, text)) in files.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        escape(out, name.as_bytes());
        out.extend_from_slice(b"\":\"");
        match std::str::from_utf8(text) {
            Ok(_) => escape(out, text),
            Err(_) => escape(out, String::from_utf8_lossy(text).as_bytes()),
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"}}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_back_as_json_with_the_same_text() {
        let mut buf = Vec::new();
        let weird = "a\"b\\c\nd\te\u{1}f é";
        write_tick(&mut buf, 1.5, Some(0.25), &[("memory.current", b"1048576\n"), ("x", weird.as_bytes()), ("bad", b"\xff\xfe")]);
        assert_eq!(buf.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["t"], 1.5);
        assert_eq!(v["cpu_s"], 0.25);
        assert_eq!(v["files"]["memory.current"], "1048576\n");
        assert_eq!(v["files"]["x"], weird);
        assert_eq!(v["files"]["bad"], "\u{fffd}\u{fffd}");
        write_tick(&mut buf, 2.0, None, &[]);
        assert_eq!(std::str::from_utf8(&buf).unwrap(), "{\"t\":2,\"cpu_s\":null,\"files\":{}}\n");
    }
}
