use std::path::PathBuf;

use super::*;

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
}

/// Line (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> u32 {
    let i = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    u32::try_from(i + 1).unwrap()
}

const HEADER: &str = "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\n";

fn parse(text: &str) -> LoadedExperiment {
    parse_experiment(text, "exp.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> LoadError {
    match parse_experiment(text, "exp.yaml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn index_block_mappings_and_dash_items() {
    let text = format!(
        "# leading comment\n{HEADER}metadata:\n  name: x\nspec:\n  parameters:\n    - name: lr\n      \
         parameterType: double\n      feasibleSpace:\n        min: \"0.01\"\n\n        # comment\n        \
         max: \"0.05\"\n    -\n      name: momentum\n  maxTrialCount: 3\n"
    );
    let l = parse(&text).lines;
    assert_eq!(l.line(""), Some(2));
    assert_eq!(l.line("apiVersion"), Some(2));
    assert_eq!(l.line("kind"), Some(3));
    assert_eq!(l.line("metadata.name"), Some(5));
    assert_eq!(l.line("spec.parameters"), Some(7));
    assert_eq!(l.line("spec.parameters[0]"), Some(8));
    assert_eq!(l.line("spec.parameters[0].name"), Some(8));
    assert_eq!(l.line("spec.parameters[0].parameterType"), Some(9));
    assert_eq!(l.line("spec.parameters[0].feasibleSpace.min"), Some(11));
    assert_eq!(l.line("spec.parameters[0].feasibleSpace.max"), Some(14));
    // `-` alone on its line: the item is placed where its content starts.
    assert_eq!(l.line("spec.parameters[1].name"), Some(16));
    assert_eq!(l.line("spec.maxTrialCount"), Some(17));
    assert_eq!(l.position("spec.maxTrialCount"), Some((17, 3)));
    assert_eq!(l.line("spec.parameters[2]"), None);
}

#[test]
fn index_flow_collections_block_scalars_and_odd_keys() {
    let text = format!(
        "{HEADER}spec:\n  trialTemplate:\n    primaryPodLabels:\n      \
         training.kubeflow.org/job-role: master\n      \"a b\": c\n    trialSpec:\n      \
         command: [python3, \"--lr=1\", {{k: v}}]\n      script: |\n        line one\n        \
         line two\n      after: 1\n"
    );
    let l = parse(&text).lines;
    assert_eq!(
        l.line("spec.trialTemplate.primaryPodLabels[\"training.kubeflow.org/job-role\"]"),
        Some(6)
    );
    assert_eq!(l.line("spec.trialTemplate.primaryPodLabels[\"a b\"]"), Some(7));
    assert_eq!(l.line("spec.trialTemplate.trialSpec.command[1]"), Some(9));
    assert_eq!(l.line("spec.trialTemplate.trialSpec.command[2].k"), Some(9));
    assert_eq!(l.line("spec.trialTemplate.trialSpec.script"), Some(10));
    assert_eq!(l.line("spec.trialTemplate.trialSpec.after"), Some(13));
    let (_, c1) = l.position("spec.trialTemplate.trialSpec.command[1]").unwrap();
    let (_, c2) = l.position("spec.trialTemplate.trialSpec.command[2]").unwrap();
    assert!(c1 < c2);
}

#[test]
fn nearest_line_walks_up_to_a_present_parent() {
    let text =
        format!("{HEADER}spec:\n  parameters:\n    - name: lr\n      feasibleSpace:\n        min: \"1\"\n");
    let l = parse(&text).lines;
    assert_eq!(l.nearest_line("spec.parameters[0].feasibleSpace.max"), Some(6));
    assert_eq!(l.nearest_line("spec.parameters[3].name"), Some(4));
    assert_eq!(l.nearest_line("spec.objective.type"), Some(3));
    assert_eq!(l.nearest_line("status.trials"), Some(1));
}

#[test]
fn path_helpers() {
    assert_eq!(join_key("", "spec"), "spec");
    assert_eq!(join_key("spec", "maxTrialCount"), "spec.maxTrialCount");
    assert_eq!(join_key("a", "x.y/z"), "a[\"x.y/z\"]");
    assert_eq!(join_key("a", "say \"hi\""), r#"a["say \"hi\""]"#);
    assert_eq!(join_key("a", ""), "a[\"\"]");
    assert_eq!(join_index("spec.parameters", 2), "spec.parameters[2]");
    assert_eq!(
        parent_path("spec.parameters[2].feasibleSpace"),
        Some("spec.parameters[2]")
    );
    assert_eq!(parent_path("spec.parameters[2]"), Some("spec.parameters"));
    assert_eq!(parent_path("spec"), Some(""));
    assert_eq!(parent_path(""), None);
    assert_eq!(parent_path("a[\"x.y[0]\"]"), Some("a"));
    assert_eq!(parent_path("a[\"x.y\"].b"), Some("a[\"x.y\"]"));
}

#[test]
fn katib_example_loads_with_its_lines() {
    let path = testdata("katib-examples/random.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let loaded = load_experiment(&path).unwrap();
    let exp = &loaded.experiment;
    assert_eq!(exp.metadata.name.as_deref(), Some("random"));
    assert_eq!(exp.spec.parameters.len(), 2);
    assert_eq!(exp.spec.parameters[1].feasible_space.max.as_deref(), Some("0.9"));
    assert_eq!(
        loaded.lines.line("spec.parameters[1].feasibleSpace.max"),
        Some(line_of(&text, "max: \"0.9\""))
    );
    assert_eq!(
        loaded
            .lines
            .line("spec.trialTemplate.trialSpec.spec.template.spec.containers[0].command[4]"),
        Some(line_of(&text, "--lr=${trialParameters.learningRate}"))
    );
}

#[test]
fn numbers_where_strings_are_expected_are_kept_as_text() {
    let text = format!(
        "{HEADER}spec:\n  parameters:\n    - name: lr\n      parameterType: double\n      \
         feasibleSpace: {{min: 0.01, max: 5, step: 1}}\n"
    );
    let fs = &parse(&text).experiment.spec.parameters[0].feasible_space;
    assert_eq!(fs.min.as_deref(), Some("0.01"));
    assert_eq!(fs.max.as_deref(), Some("5"));
    assert_eq!(fs.step.as_deref(), Some("1"));
}

#[test]
fn multi_document_file_takes_the_first_experiment() {
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeflow\n---\n{HEADER}metadata:\n  \
         name: first\nspec:\n  maxTrialCount: 4\n---\n{HEADER}metadata:\n  name: second\n"
    );
    let loaded = parse(&text);
    assert_eq!(loaded.experiment.metadata.name.as_deref(), Some("first"));
    assert_eq!(loaded.lines.line("metadata.name"), Some(9));
    assert_eq!(loaded.lines.line("spec.maxTrialCount"), Some(11));
    assert_eq!(loaded.lines.line("kind"), Some(7));

    // A type error inside the second document is reported at its line in the file.
    let bad = format!("apiVersion: v1\nkind: Namespace\n---\n{HEADER}spec:\n  maxTrialCount: many\n");
    match parse_err(&bad) {
        LoadError::Parse { line, path, .. } => {
            assert_eq!(line, 7);
            assert_eq!(path.as_deref(), Some("spec.maxTrialCount"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn syntax_error_reports_its_line() {
    let path = testdata("invalid/syntax-error.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let err = load_experiment(&path).unwrap_err();
    let LoadError::Parse { line, column, .. } = &err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*line, line_of(&text, "# expect-syntax"));
    assert!(*column > 0);
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:{line}:{column}: ", path.display())),
        "{shown}"
    );
    assert!(shown.contains("indent"), "{shown}");
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn unterminated_quote_reports_its_line() {
    let text = format!("{HEADER}metadata:\n  name: \"random\nspec: {{}}\n");
    let LoadError::Parse { line, .. } = parse_err(&text) else {
        panic!("expected a parse error");
    };
    assert!((4..=5).contains(&line), "line {line}");
}

#[test]
fn type_error_names_the_field_and_line() {
    let path = testdata("invalid/wrong-type.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let err = load_experiment(&path).unwrap_err();
    let LoadError::Parse {
        line, path: field, ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*line, line_of(&text, "# expect-type"));
    assert_eq!(field.as_deref(), Some("spec.maxTrialCount"));
    let shown = err.to_string();
    assert!(shown.contains(": spec.maxTrialCount: "), "{shown}");
    assert!(shown.contains("twelve") || shown.contains("invalid"), "{shown}");
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn empty_documents_are_reported() {
    for text in ["", "\n\n", "# only a comment\n", "---\n", "---\n...\n", "~\n"] {
        match parse_err(text) {
            LoadError::Empty { file } => assert_eq!(file, "exp.yaml"),
            other => panic!("{text:?}: unexpected {other:?}"),
        }
    }
    let shown = parse_err("").to_string();
    assert!(shown.starts_with("exp.yaml: "), "{shown}");
    assert!(shown.contains("kind: Experiment"), "{shown}");
}

#[test]
fn a_list_document_is_reported() {
    let text = "# c\n- apiVersion: kubeflow.org/v1beta1\n  kind: Experiment\n";
    match parse_err(text) {
        LoadError::NotAnObject { line, found, .. } => {
            assert_eq!(line, 2);
            assert_eq!(found, "a list");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(parse_err("hello\n").to_string().contains("a plain value"));
    let shown = parse_err(text).to_string();
    assert!(shown.starts_with("exp.yaml:2: the document is a list"), "{shown}");
}

#[test]
fn wrong_or_missing_kind_is_reported() {
    let text = "apiVersion: kubeflow.org/v1beta1\nkind: Trial\nmetadata:\n  name: t\n";
    match parse_err(text) {
        LoadError::WrongKind { line, kind, .. } => {
            assert_eq!(line, 2);
            assert_eq!(kind, "Trial");
        }
        other => panic!("unexpected {other:?}"),
    }
    let shown = parse_err(text).to_string();
    assert!(
        shown.starts_with("exp.yaml:2: kind is \"Trial\", not Experiment"),
        "{shown}"
    );

    let text = "apiVersion: kubeflow.org/v1beta1\nmetadata:\n  name: t\n";
    match parse_err(text) {
        LoadError::WrongKind { line, kind, .. } => {
            assert_eq!(line, 1);
            assert_eq!(kind, "");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(parse_err(text).to_string().contains("has no kind"));
}

#[test]
fn wrong_or_missing_api_version_is_reported() {
    let text = "kind: Experiment\napiVersion: kubeflow.org/v1alpha3\n";
    match parse_err(text) {
        LoadError::WrongApiVersion {
            line, api_version, ..
        } => {
            assert_eq!(line, 2);
            assert_eq!(api_version, "kubeflow.org/v1alpha3");
        }
        other => panic!("unexpected {other:?}"),
    }
    let shown = parse_err(text).to_string();
    assert!(shown.contains("expected kubeflow.org/v1beta1"), "{shown}");
    assert!(
        parse_err("kind: Experiment\n")
            .to_string()
            .contains("has no apiVersion")
    );
}

#[test]
fn unreadable_file_is_reported_with_a_hint() {
    let path = testdata("does-not-exist.yaml");
    let err = load_experiment(&path).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }));
    let shown = err.to_string();
    assert!(shown.contains("does-not-exist.yaml"), "{shown}");
    assert!(shown.contains("check the path"), "{shown}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn byte_order_mark_is_ignored() {
    let text = format!("\u{FEFF}{HEADER}metadata:\n  name: bom\n");
    let loaded = parse(&text);
    assert_eq!(loaded.experiment.metadata.name.as_deref(), Some("bom"));
    assert_eq!(loaded.lines.line("metadata.name"), Some(4));
}
