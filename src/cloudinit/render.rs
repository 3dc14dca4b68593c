//! Template rendering, pure. A placeholder alone on its line is a *block*: every line of the value
//! is indented like the placeholder, so any text (a unit file, a script) lands inside a YAML
//! literal block without escaping. An inline placeholder accepts only a conservative identifier
//! alphabet, so nothing can break out of the YAML structure.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    #[error("template {template}: placeholder {{{{{name}}}}} has no value")]
    Missing { template: String, name: String },
    #[error("template {template}: value for inline {{{{{name}}}}} must match [A-Za-z0-9._@:-]+, got {value:?}")]
    UnsafeInline { template: String, name: String, value: String },
    #[error("template {template}: unterminated placeholder")]
    Unterminated { template: String },
    #[error("template {template}: value {name} was given but never used")]
    Unused { template: String, name: String },
}

pub fn is_safe_inline(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "._@:-".contains(c))
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
        for bad in ["a b", "x\ny: 1", "'q'", "a#b", "{x}", ""] {
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
}
