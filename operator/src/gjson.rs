//! The subset of GJSON path syntax that Katib's `successCondition`/`failureCondition` use.
//!
//! Katib evaluates these paths on the job object's JSON and treats the condition as met
//! when the result is an object or a non-empty array. Katib's defaults and published
//! examples use only:
//! - plain keys separated by `.` (`status.conditions`);
//! - queries `#(key=="value")#` (every match, as an array) and `#(key=="value")` (the first
//!   match), with `==` or `!=` and a quoted string, number, `true`, `false` or `null`;
//! - `|`, which applies the rest of the path to the whole result so far (after a `#(..)#`,
//!   a `.` applies the next key to each element instead, as in GJSON);
//! - `@this` and `[@this]` (the current value; wrapped in an array), used by the Argo example
//!   `status.[@this].#(phase=="Succeeded")#`.
//!
//! Anything else (wildcards, modifiers, escapes, other operators) is rejected with
//! [`PathError`] naming the unsupported piece, so a Trial fails with a clear message rather
//! than never completing.

use serde_json::Value;

/// A path this evaluator does not support, or a malformed one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported condition path {path:?} at {piece:?}: {problem}; katib-rs supports keys, \
     #(key==\"value\")#, #(key==\"value\"), `|`, @this and [@this] (Katib's defaults and examples)"
)]
pub struct PathError {
    pub path: String,
    pub piece: String,
    pub problem: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    This,
    WrapThis,
    Query {
        key: String,
        negate: bool,
        value: Value,
        all: bool,
    },
}

/// A parsed path: a list of pipe-separated segments, each a list of dot-separated steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    segments: Vec<Vec<Step>>,
}

impl Path {
    /// Parses `path`; an empty path is an error (Katib requires both conditions).
    pub fn parse(path: &str) -> Result<Path, PathError> {
        let err = |piece: &str, problem: &str| PathError {
            path: path.to_string(),
            piece: piece.to_string(),
            problem: problem.to_string(),
        };
        if path.trim().is_empty() {
            return Err(err("", "the path is empty"));
        }
        let mut segments = Vec::new();
        for seg in split_outside_parens(path, '|') {
            let mut steps = Vec::new();
            for piece in split_outside_parens(&seg, '.') {
                steps.push(parse_step(&piece).map_err(|p| err(&piece, &p))?);
            }
            segments.push(steps);
        }
        Ok(Path { segments })
    }

    /// Evaluates the path on `doc`; `None` when it does not exist.
    pub fn eval(&self, doc: &Value) -> Option<Value> {
        let mut cur = doc.clone();
        for seg in &self.segments {
            // After a `#(..)#` query, a `.` maps the following steps over the elements.
            let mut mapped = false;
            for step in seg {
                cur = if mapped {
                    let Value::Array(items) = cur else { return None };
                    let out: Vec<Value> = items.iter().filter_map(|v| apply(step, v)).collect();
                    Value::Array(out)
                } else {
                    apply(step, &cur)?
                };
                if matches!(step, Step::Query { all: true, .. }) {
                    mapped = true;
                }
            }
        }
        Some(cur)
    }

    /// Katib's test: the condition holds when the result is an object or a non-empty array.
    /// Returns the first matching object (for its `reason`/`message`) when it holds.
    pub fn matches(&self, doc: &Value) -> Option<Value> {
        match self.eval(doc)? {
            Value::Object(o) => Some(Value::Object(o)),
            Value::Array(a) if !a.is_empty() => Some(a[0].clone()),
            _ => None,
        }
    }
}

fn apply(step: &Step, v: &Value) -> Option<Value> {
    match step {
        Step::Key(k) => match v {
            Value::Object(o) => o.get(k).cloned(),
            Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i).cloned()),
            _ => None,
        },
        Step::This => Some(v.clone()),
        Step::WrapThis => Some(Value::Array(vec![v.clone()])),
        Step::Query {
            key,
            negate,
            value,
            all,
        } => {
            let Value::Array(items) = v else {
                return None;
            };
            let hit = |item: &&Value| {
                let field = item.get(key.as_str());
                let eq = field.is_some_and(|f| loose_eq(f, value));
                if *negate { field.is_some() && !eq } else { eq }
            };
            if *all {
                Some(Value::Array(items.iter().filter(hit).cloned().collect()))
            } else {
                items.iter().find(hit).cloned()
            }
        }
    }
}

/// Numbers compare by value (`1` equals `1.0`), everything else structurally.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn split_outside_parens(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '"' => in_str = !in_str,
            '(' | '[' if !in_str => depth += 1,
            ')' | ']' if !in_str => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 && !in_str {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn parse_step(piece: &str) -> Result<Step, String> {
    if piece.is_empty() {
        return Err("empty path component".into());
    }
    if piece == "@this" {
        return Ok(Step::This);
    }
    if piece == "[@this]" {
        return Ok(Step::WrapThis);
    }
    if let Some(rest) = piece.strip_prefix("#(") {
        let (body, all) = if let Some(b) = rest.strip_suffix(")#") {
            (b, true)
        } else if let Some(b) = rest.strip_suffix(')') {
            (b, false)
        } else {
            return Err("a query must end with `)` or `)#`".into());
        };
        let (key, negate, value) = if let Some((k, v)) = body.split_once("!=") {
            (k, true, v)
        } else if let Some((k, v)) = body.split_once("==") {
            (k, false, v)
        } else {
            return Err("only == and != queries are supported".into());
        };
        let key = key.trim();
        if key.is_empty() || key.contains(['.', '*', '?', '@', '#']) {
            return Err("the query key must be a plain field name".into());
        }
        let value: Value = serde_json::from_str(value.trim()).map_err(|_| {
            "the query value must be a quoted string, a number, true, false or null".to_string()
        })?;
        if value.is_array() || value.is_object() {
            return Err("the query value must be a scalar".into());
        }
        return Ok(Step::Query {
            key: key.to_string(),
            negate,
            value,
            all,
        });
    }
    if piece == "#" {
        return Err("`#` (array length) is not supported".into());
    }
    if piece.contains(['*', '?', '\\', '@', '#', '(', ')', '[', ']', '{', '}', '!', '=']) {
        return Err("wildcards, modifiers, escapes and multipaths are not supported".into());
    }
    Ok(Step::Key(piece.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JOB_SUCCESS: &str = r#"status.conditions.#(type=="Complete")#|#(status=="True")#"#;
    const JOB_FAILURE: &str = r#"status.conditions.#(type=="Failed")#|#(status=="True")#"#;
    const TF_SUCCESS: &str = r#"status.conditions.#(type=="Succeeded")#|#(status=="True")#"#;

    fn job(conds: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": conds}})
    }

    #[test]
    fn katib_job_defaults() {
        let s = Path::parse(JOB_SUCCESS).unwrap();
        let f = Path::parse(JOB_FAILURE).unwrap();
        let done = job(json!([
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True", "reason": "Done"}
        ]));
        assert_eq!(s.matches(&done).unwrap()["reason"], "Done");
        assert!(f.matches(&done).is_none());
        let failed = job(
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "m"}]),
        );
        assert_eq!(f.matches(&failed).unwrap()["reason"], "BackoffLimitExceeded");
        assert!(s.matches(&failed).is_none());
        // A condition present but False does not count.
        assert!(
            s.matches(&job(json!([{"type": "Complete", "status": "False"}])))
                .is_none()
        );
        // No status at all: nothing matches, no error.
        assert!(s.matches(&json!({"kind": "Job"})).is_none());
    }

    #[test]
    fn tfjob_default() {
        let s = Path::parse(TF_SUCCESS).unwrap();
        let ok = job(json!([
            {"type": "Created", "status": "True"},
            {"type": "Running", "status": "False"},
            {"type": "Succeeded", "status": "True"}
        ]));
        assert!(s.matches(&ok).is_some());
        assert!(
            s.matches(&job(json!([{"type": "Running", "status": "True"}])))
                .is_none()
        );
    }

    #[test]
    fn argo_example_and_first_match() {
        let p = Path::parse(r#"status.[@this].#(phase=="Succeeded")#"#).unwrap();
        assert!(p.matches(&json!({"status": {"phase": "Succeeded"}})).is_some());
        assert!(p.matches(&json!({"status": {"phase": "Running"}})).is_none());
        let first = Path::parse(r#"status.conditions.#(type=="Complete")"#).unwrap();
        assert!(
            first
                .matches(&job(json!([{"type": "Complete", "status": "True"}])))
                .is_some()
        );
    }

    #[test]
    fn dot_after_all_query_maps_elements() {
        let p = Path::parse(r#"status.conditions.#(status=="True")#.type"#).unwrap();
        let v = p.eval(&job(
            json!([{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]),
        ));
        assert_eq!(v, Some(json!(["A"])));
    }

    #[test]
    fn unsupported_paths_are_clear_errors() {
        for bad in [
            "",
            "status.*",
            r#"status.conditions.#(type%"C*")#"#,
            "status.conditions.#",
            "a|@reverse",
        ] {
            let e = Path::parse(bad).unwrap_err();
            assert!(e.to_string().contains("supports keys"), "{bad}: {e}");
        }
    }
}
