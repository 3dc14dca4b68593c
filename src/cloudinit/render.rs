//! Template rendering, pure. A placeholder alone on its line is a *block*: every line of the value
//! is indented like the placeholder, so any text (a unit file, a script) lands inside a YAML
//! literal block without escaping. An inline placeholder accepts only a conservative identifier
//! alphabet, so nothing can break out of the YAML structure.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    #[error("template {template}: placeholder {{{{{name}}}}} has no value")]
    Missing { template: String, name: String },
    #[error("template {template}: value for inline {{{{{name}}}}} must match [A-Za-z0-9._@:-]+, start with a letter or digit and not end with ':', got {value:?}")]
    UnsafeInline { template: String, name: String, value: String },
    #[error("template {template}: unterminated placeholder")]
    Unterminated { template: String },
    #[error("template {template}: value {name} was given but never used")]
    Unused { template: String, name: String },
    #[error("template {template}: value for block {{{{{name}}}}} cannot be carried in a YAML literal block: {why}")]
    UnsafeBlock { template: String, name: String, why: String },
}

/// Inline values: a conservative alphabet, starting with a letter or digit (YAML indicators such
/// as `@`, `-`, `:` may not start a plain scalar) and not ending with `:` (before a line break it
/// makes the value a mapping key).
pub fn is_safe_inline(v: &str) -> bool {
    v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "._@:-".contains(c))
        && !v.ends_with(':')
}

/// Why a block value cannot go into a literal block unchanged, if it cannot: YAML has no escapes
/// there, so characters it does not allow or reads as line breaks would change the content, and
/// a first line starting with whitespace would change the block's indentation.
pub fn block_problem(v: &str) -> Option<String> {
    for c in v.chars() {
        let printable = matches!(c, '\t' | '\n' | ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..);
        if !printable || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' {
            return Some(format!("character {:?} (U+{:04X}) is not allowed", c, c as u32));
        }
    }
    if let Some(first) = v.lines().find(|l| !l.is_empty())
        && first.starts_with([' ', '\t']) {
            return Some("its first line starts with whitespace".into());
        }
    None
}

pub fn render(template_name: &str, template: &str, values: &BTreeMap<&str, String>) -> Result<String, RenderError> {
    let mut used = std::collections::BTreeSet::new();
    let mut out = String::with_capacity(template.len());
    for line in template.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let trimmed = body.trim_start();
        let indent = &body[..body.len() - trimmed.len()];
        if let Some(name) = trimmed.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
            && !name.contains('{') && !name.contains('}') {
                let value = values.get(name).ok_or_else(|| RenderError::Missing {
                    template: template_name.into(),
                    name: name.into(),
                })?;
                if let Some(why) = block_problem(value) {
                    return Err(RenderError::UnsafeBlock { template: template_name.into(), name: name.into(), why });
                }
                used.insert(name.to_string());
                for l in value.lines() {
                    if l.is_empty() {
                        out.push('\n');
                    } else {
                        out.push_str(indent);
                        out.push_str(l);
                        out.push('\n');
                    }
                }
                continue;
            }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| RenderError::Unterminated { template: template_name.into() })?;
            let name = &after[..end];
            let value = values.get(name).ok_or_else(|| RenderError::Missing {
                template: template_name.into(),
                name: name.into(),
            })?;
            if !is_safe_inline(value) {
                return Err(RenderError::UnsafeInline {
                    template: template_name.into(),
                    name: name.into(),
                    value: value.clone(),
                });
            }
            used.insert(name.to_string());
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
    }
    if let Some(unused) = values.keys().find(|k| !used.contains(**k)) {
        return Err(RenderError::Unused { template: template_name.into(), name: unused.to_string() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn block_values_take_the_placeholder_indent() {
        let t = "a:\n  content: |\n    {{body}}\nb: 1\n";
        let out = render("t", t, &vals(&[("body", "line1\n\n  line3: x\n")])).unwrap();
        assert_eq!(out, "a:\n  content: |\n    line1\n\n      line3: x\nb: 1\n");
    }

    #[test]
    fn inline_values_are_restricted() {
        let t = "id: {{id}}\n";
        assert_eq!(render("t", t, &vals(&[("id", "perfvm-abc.1")])).unwrap(), "id: perfvm-abc.1\n");
        for bad in ["a b", "x\ny: 1", "'q'", "a#b", "{x}", "", "@x", "-x", ":x", "A:"] {
            let e = render("t", t, &vals(&[("id", bad)])).unwrap_err();
            assert!(matches!(e, RenderError::UnsafeInline { .. }), "{bad:?} -> {e:?}");
        }
    }

    #[test]
    fn missing_unused_and_unterminated_are_errors() {
        assert!(matches!(render("t", "{{a}}\n", &vals(&[])), Err(RenderError::Missing { .. })));
        assert!(matches!(render("t", "x {{a\n", &vals(&[("a", "1")])), Err(RenderError::Unterminated { .. })));
        assert!(matches!(render("t", "x\n", &vals(&[("a", "1")])), Err(RenderError::Unused { .. })));
    }

    #[test]
    fn block_values_that_yaml_would_change_are_refused() {
        let t = "a: |\n  {{b}}\n";
        for (bad, why) in [("x\ry", "not allowed"), ("x\u{2028}y", "not allowed"), ("\u{7}", "not allowed"), ("  x", "first line")] {
            let e = render("t", t, &vals(&[("b", bad)])).unwrap_err();
            assert!(matches!(&e, RenderError::UnsafeBlock { why: w, .. } if w.contains(why)), "{bad:?} -> {e:?}");
        }
    }

    /// What a literal block with default chomping gives back: the lines, one final newline.
    fn literal_block_value(v: &str) -> String {
        let lines: Vec<&str> = v.lines().collect();
        let n = lines.iter().rposition(|l| !l.is_empty()).map(|i| i + 1).unwrap_or(0);
        if n == 0 { String::new() } else { lines[..n].join("\n") + "\n" }
    }

    fn yaml(text: &str) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{text}"))
    }

    const DOC: &str = "write_files:\n  - path: /etc/{{name}}\n    content: |\n      {{body}}\n  - path: /after\n    content: end\n";

    fn yaml_breakers() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            "[ -~\t\n]{0,120}",
            "[a-z:#'\"{}\\[\\]&*!|>%@`,? -]{0,60}(\n[ a-z:#'\"|>-]{0,40}){0,4}\n{0,3}",
            "(---|\\.\\.\\.|- |key: |# |\\$\\(|`|;|&&|\\|)[ -~]{0,30}",
        ]
    }

    proptest::proptest! {
        /// Any text either renders into YAML that parses back to the same text (and leaves the
        /// document's structure alone) or is refused with a reason; never a broken document.
        #[test]
        fn block_values_round_trip_or_are_refused(body in yaml_breakers()) {
            let values = vals(&[("name", "unit.service"), ("body", &body)]);
            match render("t", DOC, &values) {
                Ok(out) => {
                    let doc = yaml(&out);
                    let files = doc["write_files"].as_sequence().expect("write_files list");
                    proptest::prop_assert_eq!(files.len(), 2, "{}", out);
                    proptest::prop_assert_eq!(files[0]["content"].as_str().unwrap_or(""), literal_block_value(&body));
                    proptest::prop_assert_eq!(files[1]["content"].as_str(), Some("end"));
                }
                Err(RenderError::UnsafeBlock { .. }) => proptest::prop_assert!(block_problem(&body).is_some()),
                Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
            }
        }

        /// Inline values render only from the safe alphabet and then read back as themselves.
        #[test]
        fn inline_values_read_back_or_are_refused(v in yaml_breakers()) {
            let t = "path: /etc/{{v}}\nid: x{{v}}\n";
            match render("t", t, &vals(&[("v", &v)])) {
                Ok(out) => {
                    proptest::prop_assert!(is_safe_inline(&v));
                    let doc = yaml(&out);
                    proptest::prop_assert_eq!(doc["path"].as_str().map(str::to_string), Some(format!("/etc/{v}")));
                    proptest::prop_assert_eq!(doc["id"].as_str().map(str::to_string), Some(format!("x{v}")));
                }
                Err(RenderError::UnsafeInline { .. }) => proptest::prop_assert!(!is_safe_inline(&v)),
                Err(e) => proptest::prop_assert!(false, "unexpected {e:?}"),
            }
        }
    }
}
