//! Go-compatible regular expressions for Katib's `metricsFormat` filters.
//!
//! Katib compiles filters with Go's RE2 syntax, which reads a `{` that does not start a
//! valid repetition (`{n}`, `{n,}`, `{n,m}`) as a literal brace. Rust's `regex` rejects
//! it, so Katib's own example filter `{metricName: ([\w|-]+), ...}` would not compile.
//! [`translate`] escapes such braces so every filter Katib accepts means the same here.

/// Rewrites what Go's RE2 and Rust's `regex` read differently:
/// - outside a class, a `{` that does not start a repetition (`{n}`, `{n,}`, `{n,m}`)
///   and a `}` that does not end one are literals in Go, errors in Rust;
/// - inside a class, `[` (other than `[:alpha:]`) is a literal in Go but opens a nested
///   class in Rust.
///
/// Other RE2 constructs mean the same in both; `\d` and `\w` are Unicode-aware in Rust
/// (ASCII in Go), which only widens what matches.
pub fn translate(filter: &str) -> String {
    let mut out = String::with_capacity(filter.len() + 8);
    let mut in_class = false;
    let mut rest = filter;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                out.push(c);
                if let Some(escaped) = rest.chars().next() {
                    out.push(escaped);
                    rest = &rest[escaped.len_utf8()..];
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // `[^]...]` and `[]...]`: a `]` right after the opening is a literal.
                for lead in ['^', ']'] {
                    if let Some(r) = rest.strip_prefix(lead) {
                        out.push(lead);
                        rest = r;
                    }
                }
            }
            '[' => match rest
                .strip_prefix(':')
                .and_then(|r| r.find(":]").map(|end| end + 3))
            {
                Some(len) => {
                    out.push('[');
                    out.push_str(&rest[..len - 1]);
                    rest = &rest[len - 1..];
                }
                None => out.push_str("\\["),
            },
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '{' if !in_class => match repetition_len(rest) {
                Some(len) => {
                    out.push('{');
                    out.push_str(&rest[..len]);
                    rest = &rest[len..];
                }
                None => out.push_str("\\{"),
            },
            '}' if !in_class => out.push_str("\\}"),
            _ => out.push(c),
        }
    }
    out
}

/// If `rest` (what follows a `{`) is `n}`, `n,}` or `n,m}`, its length.
fn repetition_len(rest: &str) -> Option<usize> {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let min = digits(rest);
    if min == 0 {
        return None;
    }
    let mut len = min;
    if rest[len..].starts_with(',') {
        len += 1 + digits(&rest[len + 1..]);
    }
    rest[len..].starts_with('}').then_some(len + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn katib_file_example_filter_compiles_and_matches() {
        let p = translate(r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}");
        let re = regex::Regex::new(&p).unwrap();
        let line = "{metricName: accuracy, metricValue: 0.8123};{metricName: loss, metricValue: 0.4567}";
        let got: Vec<(String, String)> = re
            .captures_iter(line)
            .map(|c| (c[1].to_string(), c[2].to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("accuracy".into(), "0.8123".into()),
                ("loss".into(), "0.4567".into())
            ]
        );
    }

    #[test]
    fn go_syntax_rewrites_only_what_differs() {
        assert_eq!(
            translate(r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"),
            r"\{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)\}"
        );
        for same in [
            r"(\w+)=(\d{2})",
            r"a{2,}b{1,3}",
            r"\{(\w+)\}",
            r"[]{}a]",
            r"[^]x]",
            r"[[:alpha:]_]+",
        ] {
            assert_eq!(translate(same), same);
        }
        assert_eq!(translate(r"([\w[]+)=(\d+)"), r"([\w\[]+)=(\d+)");
        assert_eq!(translate(r"x{a}{2"), r"x\{a\}\{2");
    }
}
