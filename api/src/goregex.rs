//! Go-compatible regular expressions for Katib's `metricsFormat` filters.
//!
//! Katib compiles filters with Go's RE2 syntax, which reads a `{` that does not start a
//! valid repetition (`{n}`, `{n,}`, `{n,m}`) as a literal brace. Rust's `regex` rejects
//! it, so Katib's own example filter `{metricName: ([\w|-]+), ...}` would not compile.
//! [`translate`] escapes such braces so every filter Katib accepts means the same here.

/// Rewrites a Go-syntax pattern into an equivalent one for Rust's `regex` crate.
pub fn translate(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            if let Some(&n) = chars.get(i + 1) {
                out.push(n);
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                // A leading `]` (or `^]`) is a literal inside the class.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push(']');
                    i += 1;
                }
            }
            '{' if !is_repetition(&chars[i..]) => out.push_str("\\{"),
            '}' if !closes_repetition(&out) => out.push_str("\\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `s`.
fn is_repetition(s: &[char]) -> bool {
    let Some(end) = s.iter().position(|&c| c == '}') else { return false };
    let body: String = s[1..end].iter().collect();
    let mut parts = body.splitn(2, ',');
    let first = parts.next().unwrap_or_default();
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    match parts.next() {
        None => digits(first),
        Some(second) => digits(first) && (second.is_empty() || digits(second)),
    }
}

/// True when the text so far ends inside an unescaped repetition `{n` / `{n,` / `{n,m`.
fn closes_repetition(out: &str) -> bool {
    let Some(open) = out.rfind('{') else { return false };
    if open > 0 && out[..open].ends_with('\\') {
        return false;
    }
    let body = &out[open + 1..];
    !body.is_empty() && body.chars().all(|c| c.is_ascii_digit() || c == ',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn katib_file_example_filter_compiles_and_matches() {
        let p = translate(r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}");
        let re = regex::Regex::new(&p).unwrap();
        let line = "{metricName: accuracy, metricValue: 0.8123};{metricName: loss, metricValue: 0.4567}";
        let got: Vec<(String, String)> = re.captures_iter(line).map(|c| (c[1].to_string(), c[2].to_string())).collect();
        assert_eq!(got, vec![("accuracy".into(), "0.8123".into()), ("loss".into(), "0.4567".into())]);
    }

    #[test]
    fn real_repetitions_and_classes_are_kept() {
        assert_eq!(translate(r"a{2}b{1,}c{1,3}"), r"a{2}b{1,}c{1,3}");
        assert_eq!(translate(r"[{}]x"), r"[{}]x");
        assert_eq!(translate(r"\{x\}"), r"\{x\}");
        assert_eq!(translate(r"{x}"), r"\{x\}");
        assert!(regex::Regex::new(&translate(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")).is_ok());
    }
}
