//! Reading Experiment files: YAML in, [`Experiment`] plus a map from field paths to lines out.
//!
//! [`load_experiment`] reads a file and [`parse_experiment`] parses text that is already in
//! memory. Both return a [`LoadedExperiment`]: the typed object and a [`LineIndex`] that maps a
//! field path such as `spec.parameters[2].feasibleSpace.min` to the 1-based line where that
//! field is written, so that later checks ([`crate::validate`]) can point at the line of a
//! problem. The index is built from the event stream of `granit-parser` (the YAML parser under
//! serde-saphyr, re-exported by it), so block and flow collections, `- name: x` items, quoted
//! keys, comments and multi-line scalars all map to the right line.
//!
//! ## Field paths
//! A path is the keys from the top of the document joined with `.`, with `[i]` for the i-th
//! (0-based) item of a list: `metadata.name`, `spec.trialTemplate.trialParameters[0].reference`.
//! A key that is empty or holds `.`, `[`, `]`, `"` or white space is written as a quoted
//! index: `spec.trialTemplate.primaryPodLabels["training.kubeflow.org/job-role"]`. Use
//! [`join_key`] and [`join_index`] to build paths and [`parent_path`] to walk up.
//!
//! ## Documents
//! A file may hold several YAML documents separated by `---`. The first document whose `kind`
//! is `Experiment` is read; the others are ignored (so a file may also carry, say, the
//! Namespace it needs). A YAML syntax error anywhere in the file is still reported.
//!
//! ## Errors
//! Every [`LoadError`] displays as one user-facing paragraph that starts with the place,
//! `experiment.yaml:14:7: ...`, says what is wrong and ends with how to fix it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde_saphyr::{MessageFormatter as _, UserMessageFormatter};

use crate::crd::{API_VERSION, Experiment};

/// An Experiment read from YAML, with the lines where its fields are written.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedExperiment {
    /// The parsed object, exactly as written (no defaults applied).
    pub experiment: Experiment,
    /// Field path to line, for the document the experiment came from.
    pub lines: LineIndex,
    /// Paths of fields in the file that Katib's Experiment does not have (typos such as
    /// `spec.parallelTrailCount`); they are dropped from [`Self::experiment`]. kubectl's strict
    /// field validation rejects them, and [`crate::validate::default_and_validate`] reports them.
    pub unknown_fields: Vec<String>,
}

/// Why an Experiment file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (missing, a directory, no permission, not UTF-8).
    #[error("{file}: cannot read the experiment file; check the path and that the file is readable")]
    Read {
        /// The path as given.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax error, or a value of the wrong type for its field.
    #[error("{file}:{line}:{column}: {}{message}; {hint}", path_prefix(.path))]
    Parse {
        /// The file name used in messages.
        file: String,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The field at that position, when known.
        path: Option<String>,
        /// What the parser reported.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// The file holds no YAML document, or only empty ones.
    #[error(
        "{file}: the file holds no Experiment (it is empty or only comments); write an object \
         with apiVersion: kubeflow.org/v1beta1, kind: Experiment, metadata.name and spec"
    )]
    Empty {
        /// The file name used in messages.
        file: String,
    },
    /// The document is a list or a plain value instead of an object.
    #[error(
        "{file}:{line}: the document is {found}, not an Experiment object; write a single \
         mapping with apiVersion, kind, metadata and spec at the top level (no leading '- ')"
    )]
    NotAnObject {
        /// The file name used in messages.
        file: String,
        /// Line where the document starts.
        line: u32,
        /// `a list` or `a plain value`.
        found: &'static str,
    },
    /// No document has `kind: Experiment`.
    #[error(
        "{file}:{line}: {}; katib reads Katib Experiments: set kind: Experiment (a file with \
         several documents separated by --- may hold other objects too)",
        kind_problem(.kind)
    )]
    WrongKind {
        /// The file name used in messages.
        file: String,
        /// Line of the `kind` field, or of the document when it has none.
        line: u32,
        /// The kind found (empty when missing).
        kind: String,
    },
    /// The Experiment's `apiVersion` is not `kubeflow.org/v1beta1`.
    #[error(
        "{file}:{line}: {}; set apiVersion: kubeflow.org/v1beta1 (katib-rs implements Katib's \
         v1beta1 API)",
        api_version_problem(.api_version)
    )]
    WrongApiVersion {
        /// The file name used in messages.
        file: String,
        /// Line of the `apiVersion` field, or of the document when it has none.
        line: u32,
        /// The apiVersion found (empty when missing).
        api_version: String,
    },
}

fn path_prefix(path: &Option<String>) -> String {
    match path {
        Some(p) if !p.is_empty() => format!("{p}: "),
        _ => String::new(),
    }
}

fn kind_problem(kind: &str) -> String {
    if kind.is_empty() {
        "the document has no kind".to_owned()
    } else {
        format!("kind is {kind:?}, not Experiment")
    }
}

fn api_version_problem(api_version: &str) -> String {
    if api_version.is_empty() {
        "the Experiment has no apiVersion".to_owned()
    } else {
        format!("apiVersion is {api_version:?}, expected {API_VERSION}")
    }
}

/// Reads and parses the Experiment file at `path` (see the module docs for multi-document files).
pub fn load_experiment(path: &Path) -> Result<LoadedExperiment, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        file: file.clone(),
        source,
    })?;
    parse_experiment(&text, &file)
}

/// Parses Experiment YAML held in memory; `file` names it in error messages.
pub fn parse_experiment(text: &str, file: &str) -> Result<LoadedExperiment, LoadError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let docs = scan_documents(text).map_err(|failed| {
        let (err, partial) = *failed;
        let line = to_u32(err.marker().line()).max(1);
        let column = to_u32(err.marker().col() + 1);
        LoadError::Parse {
            file: file.to_owned(),
            line,
            column,
            path: partial.path_at(line, column).map(str::to_owned),
            message: sanitize(&err.info()),
            hint: SYNTAX_HINT.to_owned(),
        }
    })?;

    let non_empty: Vec<&Document> = docs.iter().filter(|d| d.root != Root::Null).collect();
    let Some(first) = non_empty.first() else {
        return Err(LoadError::Empty {
            file: file.to_owned(),
        });
    };
    let chosen = non_empty
        .iter()
        .find(|d| d.root == Root::Map && d.kind.as_ref().is_some_and(|(k, _)| k == "Experiment"));
    let Some(doc) = chosen else {
        return Err(match first.root {
            Root::Seq => LoadError::NotAnObject {
                file: file.to_owned(),
                line: first.root_pos.0,
                found: "a list",
            },
            Root::Scalar => LoadError::NotAnObject {
                file: file.to_owned(),
                line: first.root_pos.0,
                found: "a plain value",
            },
            Root::Map | Root::Null => {
                // Name the first mapping document's kind: that is what the user meant to load.
                let map = non_empty.iter().find(|d| d.root == Root::Map).unwrap_or(first);
                let (kind, line) = match &map.kind {
                    Some((k, pos)) => (k.clone(), pos.0),
                    None => (String::new(), map.root_pos.0),
                };
                LoadError::WrongKind {
                    file: file.to_owned(),
                    line,
                    kind,
                }
            }
        });
    };
    match &doc.api_version {
        Some((v, _)) if v == API_VERSION => {}
        other => {
            let (api_version, line) = match other {
                Some((v, pos)) => (v.clone(), pos.0),
                None => (String::new(), doc.root_pos.0),
            };
            return Err(LoadError::WrongApiVersion {
                file: file.to_owned(),
                line,
                api_version,
            });
        }
    }

    let doc_text = document_text(text, doc);
    let experiment: Experiment = serde_saphyr::from_str(&doc_text).map_err(|err| {
        let err = err.without_snippet();
        let (line, column) = match err.location() {
            Some(loc) if loc.line() > 0 => (
                u32::try_from(loc.line()).unwrap_or(u32::MAX),
                u32::try_from(loc.column()).unwrap_or(0).max(1),
            ),
            _ => (doc.root_pos.0, doc.root_pos.1),
        };
        LoadError::Parse {
            file: file.to_owned(),
            line,
            column,
            path: doc.lines.path_at(line, column).map(str::to_owned),
            message: friendly(&UserMessageFormatter.format_message(err)),
            hint: type_hint(&UserMessageFormatter.format_message(err)),
        }
    })?;
    let unknown_fields = match serde_saphyr::from_str::<serde_json::Value>(&doc_text) {
        Ok(input) => {
            let output = serde_json::to_value(&experiment).unwrap_or_default();
            let mut found = Vec::new();
            dropped_fields(&input, &output, "", &mut found);
            found
        }
        Err(_) => Vec::new(),
    };
    Ok(LoadedExperiment {
        experiment,
        lines: doc.lines.clone(),
        unknown_fields,
    })
}

/// Paths of non-empty fields of `input` that `output` (the typed object, serialized) lacks.
fn dropped_fields(input: &serde_json::Value, output: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let child = join_key(path, k);
                match b.get(k) {
                    Some(w) => dropped_fields(v, w, &child, out),
                    None if is_empty_value(v) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                dropped_fields(v, w, &join_index(path, i), out);
            }
        }
        _ => {}
    }
}

/// Values a field may hold and still be left out when serialized (Go's `omitempty`).
fn is_empty_value(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

const SYNTAX_HINT: &str = "fix the YAML syntax near this position: indent nested fields with \
                           spaces (not tabs), keep the items of one list at the same indentation, \
                           and quote values that contain ': ' or ' #' or start with '{', '[', \
                           '*', '&' or '!'";

const TYPE_HINT: &str = "write the value with the type this field has in Katib's v1beta1 \
                         Experiment (for example a whole number for spec.maxTrialCount, a list \
                         of mappings for spec.parameters, text for spec.algorithm.algorithmName)";

/// serde-saphyr's message in the words of a YAML author rather than of Rust types.
fn friendly(message: &str) -> String {
    let m = sanitize(message);
    let plain = match m.as_str() {
        "invalid i32" | "invalid i64" | "invalid u32" | "invalid u64" => "expected a whole number",
        "invalid floating point" | "invalid f64" => "expected a number",
        "invalid boolean" => "expected true or false",
        "expected mapping start" => "expected a mapping (indented `key: value` lines)",
        "expected sequence start" => "expected a list (lines starting with `- `)",
        "expected string scalar" => "expected text, not a list or mapping",
        _ => return m,
    };
    plain.to_owned()
}

fn type_hint(message: &str) -> String {
    if message.contains("duplicate") {
        "remove one of the two entries with this key".to_owned()
    } else if message.contains("missing field") {
        "add the missing field to this entry".to_owned()
    } else {
        TYPE_HINT.to_owned()
    }
}

fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.trim().chars() {
        if c.is_control() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The text of one document with every line before it emptied (so line numbers stay those of
/// the file) and everything from the next document on cut off.
fn document_text(text: &str, doc: &Document) -> String {
    let end = doc.end_byte.unwrap_or(text.len()).min(text.len());
    let mut out = String::with_capacity(end);
    let mut line = 1u32;
    for (i, c) in text[..end].char_indices() {
        if line >= doc.start_line {
            out.push_str(&text[i..end]);
            break;
        }
        if c == '\n' {
            out.push('\n');
            line += 1;
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Paths
// ------------------------------------------------------------------------------------------

/// `parent.key`, or `parent["key"]` when the key cannot be written bare (see the module docs).
pub fn join_key(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && !key
            .chars()
            .any(|c| matches!(c, '.' | '[' | ']' | '"') || c.is_whitespace() || c.is_control());
    let mut out = String::with_capacity(parent.len() + key.len() + 5);
    out.push_str(parent);
    if bare {
        if !parent.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push('[');
        // A JSON string literal: quotes and backslashes escaped.
        out.push_str(&serde_json::Value::String(key.to_owned()).to_string());
        out.push(']');
    }
    out
}

/// `parent[index]`.
pub fn join_index(parent: &str, index: usize) -> String {
    let mut out = String::with_capacity(parent.len() + 4);
    out.push_str(parent);
    let _ = write!(out, "[{index}]");
    out
}

/// The path one level up (`a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``); `None` for the root.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    // Quoted key: find the `["` that opens it (an escaped quote is `\"`, never `["`).
    if let Some(head) = path.strip_suffix("\"]")
        && let Some(i) = head.rfind("[\"")
    {
        return Some(&path[..i]);
    }
    if path.ends_with(']')
        && let Some(i) = path.rfind('[')
    {
        return Some(&path[..i]);
    }
    Some(path.rfind('.').map_or("", |i| &path[..i]))
}

// ------------------------------------------------------------------------------------------
// LineIndex
// ------------------------------------------------------------------------------------------

/// Where each field of a YAML document is written: field path to 1-based line and column.
///
/// A mapping entry is placed at its key; a list item at the start of the item (for
/// `- name: x` that is the `name` key's position); the document itself at path ``.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineIndex {
    positions: BTreeMap<String, (u32, u32)>,
    /// Where each path's value node starts (for mapping entries this differs from the key).
    value_starts: BTreeMap<(u32, u32), String>,
}

impl LineIndex {
    /// The line where `path` is written, if it is present in the file.
    pub fn line(&self, path: &str) -> Option<u32> {
        self.positions.get(path).map(|p| p.0)
    }

    /// The line and column where `path` is written, if it is present in the file.
    pub fn position(&self, path: &str) -> Option<(u32, u32)> {
        self.positions.get(path).copied()
    }

    /// The line of `path`, or of its nearest ancestor present in the file (for a field that is
    /// missing, or was filled in by defaulting).
    pub fn nearest_line(&self, path: &str) -> Option<u32> {
        let mut p = path;
        loop {
            if let Some(line) = self.line(p) {
                return Some(line);
            }
            p = parent_path(p)?;
        }
    }

    /// The field at `line`:`column`: the one whose value starts exactly there, else the one
    /// written on that line closest before the column (deepest on ties).
    pub fn path_at(&self, line: u32, column: u32) -> Option<&str> {
        if let Some(path) = self.value_starts.get(&(line, column)) {
            return Some(path);
        }
        self.positions
            .iter()
            .filter(|(_, (l, c))| *l == line && *c <= column.max(1))
            .max_by_key(|(path, (_, c))| (*c, path.len()))
            .map(|(path, _)| path.as_str())
    }

    /// Number of recorded paths.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Every recorded path with its line, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.positions.iter().map(|(p, (l, _))| (p.as_str(), *l))
    }

    /// Records `path` at `line`:`column` unless it is already present (first wins).
    pub fn insert(&mut self, path: String, line: u32, column: u32) {
        self.positions.entry(path).or_insert((line, column));
    }
}

// ------------------------------------------------------------------------------------------
// Event scan
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    Null,
    Scalar,
    Seq,
    Map,
}

#[derive(Debug)]
struct Document {
    root: Root,
    /// Position of the root node.
    root_pos: (u32, u32),
    /// Line where the document starts (its `---`, or its first node).
    start_line: u32,
    /// Byte offset where the next document starts.
    end_byte: Option<usize>,
    kind: Option<(String, (u32, u32))>,
    api_version: Option<(String, (u32, u32))>,
    lines: LineIndex,
}

enum Frame {
    Map {
        /// `None` inside a subtree that has no path (a complex key and its value).
        path: Option<String>,
        expect_key: bool,
        key: Option<(String, (u32, u32))>,
    },
    Seq {
        path: Option<String>,
        next: usize,
    },
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Scalar(&'a str, bool),
    Alias,
    Seq,
    Map,
}

#[derive(Default)]
struct Scan {
    docs: Vec<Document>,
    current: Option<Document>,
    stack: Vec<Frame>,
}

fn pos(span: &Span) -> (u32, u32) {
    (to_u32(span.start.line()), to_u32(span.start.col() + 1))
}

/// Splits `text` into documents and indexes every field. On a syntax error returns it with
/// the index of the document being read (to name the field at the error).
fn scan_documents(text: &str) -> Result<Vec<Document>, Box<(ScanError, LineIndex)>> {
    let mut scan = Scan::default();
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(ok) => ok,
            Err(err) => {
                let partial = scan.current.map(|d| d.lines).unwrap_or_default();
                return Err(Box::new((err, partial)));
            }
        };
        match event {
            Event::DocumentStart(..) => {
                if let Some(prev) = scan.docs.last_mut()
                    && prev.end_byte.is_none()
                {
                    prev.end_byte = span.start.byte_offset();
                }
                scan.stack.clear();
                scan.current = Some(Document {
                    root: Root::Null,
                    root_pos: pos(&span),
                    start_line: to_u32(span.start.line()),
                    end_byte: None,
                    kind: None,
                    api_version: None,
                    lines: LineIndex::default(),
                });
            }
            Event::DocumentEnd => {
                if let Some(doc) = scan.current.take() {
                    scan.docs.push(doc);
                }
            }
            Event::Scalar(value, style, ..) => {
                let plain = style == ScalarStyle::Plain;
                scan.node(Node::Scalar(&value, plain), pos(&span));
            }
            Event::Alias(..) => scan.node(Node::Alias, pos(&span)),
            Event::SequenceStart(..) => scan.node(Node::Seq, pos(&span)),
            Event::MappingStart(..) => scan.node(Node::Map, pos(&span)),
            Event::SequenceEnd | Event::MappingEnd => {
                scan.stack.pop();
            }
            _ => {}
        }
    }
    if let Some(doc) = scan.current.take() {
        scan.docs.push(doc);
    }
    Ok(scan.docs)
}

impl Scan {
    fn node(&mut self, node: Node<'_>, at: (u32, u32)) {
        let Some(doc) = self.current.as_mut() else {
            return;
        };
        // Work out this node's path (None: not addressable), and where to record it.
        let (path, record_at) = match self.stack.last_mut() {
            None => {
                doc.root = match node {
                    Node::Scalar(v, plain) if plain && is_null(v) => Root::Null,
                    Node::Scalar(..) | Node::Alias => Root::Scalar,
                    Node::Seq => Root::Seq,
                    Node::Map => Root::Map,
                };
                doc.root_pos = at;
                (Some(String::new()), at)
            }
            Some(Frame::Map {
                path,
                expect_key,
                key,
            }) => {
                if *expect_key {
                    *expect_key = false;
                    match node {
                        Node::Scalar(k, _) => {
                            *key = Some((k.to_owned(), at));
                            return;
                        }
                        Node::Alias => {
                            *key = None;
                            return;
                        }
                        // A complex key: walk it without recording; its value gets no path.
                        Node::Seq | Node::Map => {
                            *key = None;
                            (None, at)
                        }
                    }
                } else {
                    *expect_key = true;
                    match (path.as_deref(), key.take()) {
                        (Some(parent), Some((k, key_at))) => (Some(join_key(parent, &k)), key_at),
                        _ => (None, at),
                    }
                }
            }
            Some(Frame::Seq { path, next }) => {
                let child = path.as_deref().map(|p| join_index(p, *next));
                *next += 1;
                (child, at)
            }
        };
        if let Some(p) = &path {
            doc.lines.insert(p.clone(), record_at.0, record_at.1);
            doc.lines.value_starts.entry(at).or_insert_with(|| p.clone());
            if let Node::Scalar(v, _) = node {
                match p.as_str() {
                    "kind" => doc.kind = Some((v.to_owned(), record_at)),
                    "apiVersion" => doc.api_version = Some((v.to_owned(), record_at)),
                    _ => {}
                }
            }
        }
        match node {
            Node::Seq => self.stack.push(Frame::Seq { path, next: 0 }),
            Node::Map => self.stack.push(Frame::Map {
                path,
                expect_key: true,
                key: None,
            }),
            Node::Scalar(..) | Node::Alias => {}
        }
    }
}

fn is_null(v: &str) -> bool {
    matches!(v, "" | "~" | "null" | "Null" | "NULL")
}

#[cfg(test)]
mod tests;
