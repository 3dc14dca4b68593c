//! Placeholders in profile strings: `{name}` is replaced, and must be one the field allows, so a
//! typo such as `{nmae}` is an error rather than a literal. Only `{` + lowercase word + `}` is a
//! placeholder; anything else (`${HOME}`, `{ }`, nginx blocks) stays as written.

use std::collections::BTreeMap;

/// The placeholders in `text`, in order (may repeat).
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let word_len = after.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').count();
        if word_len > 0 && after[word_len..].starts_with('}') {
            out.push(&after[..word_len]);
            rest = &after[word_len + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// Check that `text` uses only `allowed` placeholders; the error names the field.
pub fn check(field: &str, text: &str, allowed: &[&str]) -> Result<(), String> {
    for p in placeholders(text) {
        if !allowed.contains(&p) {
            let known = if allowed.is_empty() { "none here".to_string() } else { allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(", ") };
            return Err(format!("{field}: unknown placeholder {{{p}}} (known: {known})"));
        }
    }
    Ok(())
}

/// Replace every known placeholder. Unknown ones were refused by `check`; left as they are.
pub fn fill(text: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let word_len = after.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').count();
        match values.get(&after[..word_len]) {
            Some(v) if word_len > 0 && after[word_len..].starts_with('}') => {
                out.push_str(v);
                rest = &after[word_len + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_lowercase_word_placeholders() {
        assert_eq!(placeholders("/upload/{name}?x={secret}"), ["name", "secret"]);
        assert!(placeholders("echo ${HOME} { } {A} location / { dav_methods PUT; }").is_empty());
        assert_eq!(placeholders("{{name}}"), ["name"]);
    }

    #[test]
    fn check_names_field_and_known_placeholders() {
        assert!(check("upload.url", "/{name}", &["name"]).is_ok());
        let e = check("upload.url", "/{nmae}", &["name"]).unwrap_err();
        assert_eq!(e, "upload.url: unknown placeholder {nmae} (known: {name})");
        assert!(check("health.path", "/{name}", &[]).unwrap_err().contains("none here"));
    }

    #[test]
    fn fill_replaces_known_and_keeps_the_rest() {
        let v: BTreeMap<&str, String> = [("name", "f.bin".to_string()), ("port", "80".to_string())].into_iter().collect();
        assert_eq!(fill("/up/{name} :{port} ${HOME} {x} {", &v), "/up/f.bin :80 ${HOME} {x} {");
        assert_eq!(fill("", &v), "");
    }
}
