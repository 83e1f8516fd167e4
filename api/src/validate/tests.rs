use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::yaml::parse_experiment;

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn random_example() -> Experiment {
    crate::yaml::load_experiment(&testdata("katib-examples/random.yaml"))
        .unwrap()
        .experiment
}

/// Validates `exp` after defaulting it.
fn check(mut exp: Experiment) -> Vec<FieldError> {
    set_defaults(&mut exp);
    validate(&exp)
}

fn paths(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

/// Asserts exactly one problem, at `path`, whose problem text contains `gist`.
fn assert_one(errors: &[FieldError], path: &str, gist: &str) {
    assert_eq!(paths(errors), [path], "{errors:#?}");
    assert!(
        errors[0].problem.contains(gist),
        "problem {:?} lacks {gist:?}",
        errors[0].problem
    );
    assert!(!errors[0].hint.is_empty(), "no hint: {:?}", errors[0]);
}

// ------------------------------------------------------------------------------------------
// Katib's examples
// ------------------------------------------------------------------------------------------

#[test]
fn katib_examples_load_default_and_validate_cleanly() {
    let files = yaml_files("katib-examples");
    assert!(files.len() >= 5, "{files:?}");
    for path in files {
        match load_and_validate(&path) {
            Ok(exp) => {
                assert!(exp.spec.parallel_trial_count.is_some());
                assert_eq!(exp.spec.resume_policy.as_deref(), Some("Never"));
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

#[test]
fn katib_examples_round_trip_through_json() {
    for path in yaml_files("katib-examples") {
        let name = path.display().to_string();
        let exp = crate::yaml::load_experiment(&path).unwrap().experiment;
        let text = serde_json::to_string(&exp).unwrap();
        let back: Experiment = serde_json::from_str(&text).unwrap();
        assert_eq!(back, exp, "{name}");

        // Also after defaulting (what the controller stores).
        let mut defaulted = exp.clone();
        set_defaults(&mut defaulted);
        let back: Experiment = serde_json::from_str(&serde_json::to_string(&defaulted).unwrap()).unwrap();
        assert_eq!(back, defaulted, "{name}");
    }
}

#[test]
fn katib_examples_lose_no_field() {
    for path in yaml_files("katib-examples") {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let input: Value = serde_saphyr::from_str(&text).unwrap();
        let exp = crate::yaml::load_experiment(&path).unwrap().experiment;
        let output = serde_json::to_value(&exp).unwrap();
        assert_kept(&input, &output, "", &name);

        // Defaulting only adds: every input field is still there, unchanged.
        let mut defaulted = exp;
        set_defaults(&mut defaulted);
        assert_kept(&input, &serde_json::to_value(&defaulted).unwrap(), "", &name);
    }
}

/// Every field of `input` is in `output` with the same value (numbers may have become their
/// decimal text); fields with an empty/default value may be left out.
fn assert_kept(input: &Value, output: &Value, path: &str, file: &str) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let child = crate::yaml::join_key(path, k);
                match b.get(k) {
                    Some(w) => assert_kept(v, w, &child, file),
                    None => assert!(is_empty_value(v), "{file}: {child} = {v} was lost"),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{file}: {path} changed length");
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                assert_kept(v, w, &crate::yaml::join_index(path, i), file);
            }
        }
        (Value::Number(n), Value::String(s)) => {
            assert_eq!(n.to_string(), *s, "{file}: {path}");
        }
        (a, b) => assert_eq!(a, b, "{file}: {path}"),
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

// ------------------------------------------------------------------------------------------
// Malformed variants: one problem each, at the field and line marked `# expect: <path>`.
// ------------------------------------------------------------------------------------------

#[test]
fn malformed_variants_name_the_field_and_line() {
    let files: Vec<PathBuf> = yaml_files("invalid")
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("# expect: "))
        .collect();
    assert!(files.len() >= 10, "{files:?}");
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let (line_no, expected_path) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.split_once("# expect: ").map(|(_, p)| (i + 1, p.trim())))
            .unwrap();
        let err = match load_and_validate(&path) {
            Err(Error::Invalid(e)) => e,
            Err(Error::Load(e)) => panic!("{name}: did not load: {e}"),
            Ok(_) => panic!("{name}: validated"),
        };
        assert_eq!(paths(&err.errors), [expected_path], "{name}:\n{err}");
        let line = u32::try_from(line_no).unwrap();
        assert_eq!(err.line_of(&err.errors[0]), Some(line), "{name}:\n{err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{name}:{line}: {expected_path}: ")),
            "{shown}"
        );
        assert!(shown.contains("; "), "no hint in {shown}");
        assert_eq!(shown.lines().count(), 1, "{shown}");
    }
}

#[test]
fn malformed_variants_keep_katibs_gist() {
    let cases = [
        (
            "max-failed-gt-max",
            "should be less than or equal to spec.maxTrialCount",
        ),
        ("parallel-zero", "must be greater than 0"),
        ("unknown-algorithm", "unknown algorithm \"random-search\""),
        ("objective-minimise", "it must be minimize or maximize"),
        (
            "double-missing-max",
            "feasibleSpace.max or feasibleSpace.min must be specified",
        ),
        ("min-gt-max", "min (0.05) is greater than max (0.01)"),
        ("step-zero", "must be greater than 0"),
        (
            "categorical-with-min",
            "is not supported for parameterType: categorical",
        ),
        ("reference-not-in-parameters", "does not exist in spec.parameters"),
        ("undeclared-placeholder", "${trialParameters.foo}"),
        ("trialspec-metadata-name", "must be omitted"),
        ("bad-metrics-format", "invalid filter"),
        (
            "bad-name",
            "name must consist of lower case alphanumeric characters",
        ),
    ];
    for (file, gist) in cases {
        let path = testdata(&format!("invalid/{file}.yaml"));
        let Err(Error::Invalid(err)) = load_and_validate(&path) else {
            panic!("{file}: expected a validation error");
        };
        assert!(err.errors[0].problem.contains(gist), "{file}: {err}");
    }
    let Err(Error::Invalid(err)) = load_and_validate(&testdata("invalid/objective-minimise.yaml")) else {
        panic!()
    };
    assert!(err.errors[0].hint.contains("did you mean \"minimize\""), "{err}");
}

#[test]
fn load_and_validate_passes_load_errors_through() {
    let err = load_and_validate(&testdata("invalid/syntax-error.yaml")).unwrap_err();
    assert!(matches!(err, Error::Load(LoadError::Parse { .. })), "{err:?}");
    assert!(err.to_string().contains("syntax-error.yaml:11:"), "{err}");
}

// ------------------------------------------------------------------------------------------
// Display
// ------------------------------------------------------------------------------------------

#[test]
fn display_prints_one_line_per_problem_in_file_order_with_parent_lines() {
    let text = "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata:\n  name: x\nspec:\n  \
                parallelTrialCount: 5\n  maxTrialCount: 2\n  parameters:\n    - name: lr\n      \
                parameterType: double\n      feasibleSpace:\n        min: \"1\"\n";
    let loaded = parse_experiment(text, "exp.yaml").unwrap();
    let err = default_and_validate(loaded, "exp.yaml", &Known::BUILTIN).unwrap_err();
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), err.errors.len());
    assert!(
        lines.contains(
            &"exp.yaml:6: spec.parallelTrialCount: 5 should be less than or equal to \
                         spec.maxTrialCount (2); lower spec.parallelTrialCount to at most 2, or \
                         raise spec.maxTrialCount"
        ),
        "{shown}"
    );
    // Missing max: reported at feasibleSpace's line.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("exp.yaml:11: spec.parameters[0].feasibleSpace.max: ")),
        "{shown}"
    );
    // Missing objective: reported at spec's line.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("exp.yaml:5: spec.objective: must be specified"))
    );
    let numbers: Vec<u32> = lines
        .iter()
        .map(|l| l.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(numbers, sorted, "{shown}");
}

#[test]
fn display_omits_unknown_lines() {
    let err = ValidationError {
        file: "exp.yaml".into(),
        errors: vec![FieldError::new("spec.objective", "must be specified", "add it")],
        lines: LineIndex::default(),
    };
    assert_eq!(
        err.to_string(),
        "exp.yaml: spec.objective: must be specified; add it"
    );
}

// ------------------------------------------------------------------------------------------
// Individual rules
// ------------------------------------------------------------------------------------------

#[test]
fn name_is_an_anchored_dns_1035_label_of_at_most_40_characters() {
    for good in ["a", "random", "abc-123", "a1", &"a".repeat(40)] {
        let mut e = random_example();
        e.metadata.name = Some(good.to_owned());
        assert_eq!(check(e), [], "{good}");
    }
    // Katib's unanchored regex lets these through; we do not.
    for bad in ["abc-", "a_b", "abC", "ab.c", "1abc", "-a", "a b"] {
        let mut e = random_example();
        e.metadata.name = Some(bad.to_owned());
        assert_one(&check(e), "metadata.name", "is not valid");
    }
    let mut e = random_example();
    e.metadata.name = Some("a".repeat(41));
    assert_one(&check(e), "metadata.name", "may not be longer than 40 characters");

    let mut e = random_example();
    e.metadata.name = None;
    assert_one(&check(e), "metadata.name", "must be specified");

    let mut e = random_example();
    e.metadata.name = None;
    e.metadata.generate_name = Some("random-".into());
    assert_eq!(check(e), []);
    let mut e = random_example();
    e.metadata.name = None;
    e.metadata.generate_name = Some("Random-".into());
    assert_one(&check(e), "metadata.generateName", "not a valid name prefix");
}

#[test]
fn budget_rules() {
    let mut e = random_example();
    e.spec.max_failed_trial_count = Some(-1);
    assert_one(&check(e), "spec.maxFailedTrialCount", "should not be less than 0");

    let mut e = random_example();
    e.spec.max_trial_count = Some(0);
    e.spec.max_failed_trial_count = None;
    e.spec.parallel_trial_count = None;
    let errors = check(e);
    // maxTrialCount 0, and the defaulted parallelTrialCount (3) exceeds it.
    assert_eq!(paths(&errors), ["spec.maxTrialCount", "spec.parallelTrialCount"]);
    assert!(errors[0].problem.contains("must be greater than 0"));

    // No maxTrialCount: no upper bound to compare with.
    let mut e = random_example();
    e.spec.max_trial_count = None;
    e.spec.max_failed_trial_count = Some(100);
    assert_eq!(check(e), []);
}

#[test]
fn objective_rules() {
    let mut e = random_example();
    e.spec.objective = None;
    assert_one(&check(e), "spec.objective", "must be specified");

    let mut e = random_example();
    e.spec.objective.as_mut().unwrap().objective_metric_name.clear();
    assert_one(
        &check(e),
        "spec.objective.objectiveMetricName",
        "must be specified",
    );

    let mut e = random_example();
    e.spec
        .objective
        .as_mut()
        .unwrap()
        .additional_metric_names
        .push("accuracy".into());
    assert_one(
        &check(e),
        "spec.objective.additionalMetricNames[1]",
        "should not contain spec.objective.objectiveMetricName",
    );

    let mut e = random_example();
    e.spec.objective.as_mut().unwrap().metric_strategies = vec![crate::crd::MetricStrategy {
        name: "loss".into(),
        value: "average".into(),
    }];
    assert_one(
        &check(e),
        "spec.objective.metricStrategies[0].value",
        "not a metric strategy",
    );
}

#[test]
fn algorithm_rules_use_the_known_list() {
    let mut e = random_example();
    e.spec.algorithm = None;
    assert_one(&check(e), "spec.algorithm", "must be specified");

    let mut e = random_example();
    e.spec.algorithm.as_mut().unwrap().algorithm_name.clear();
    assert_one(&check(e), "spec.algorithm.algorithmName", "must be specified");

    for name in BUILTIN_ALGORITHMS {
        let mut e = random_example();
        e.spec.algorithm.as_mut().unwrap().algorithm_name = (*name).to_owned();
        assert_eq!(check(e), [], "{name}");
    }

    let mut e = random_example();
    e.spec.algorithm.as_mut().unwrap().algorithm_name = "TPE".into();
    let errors = check(e);
    assert_one(&errors, "spec.algorithm.algorithmName", "unknown algorithm");
    assert!(errors[0].hint.contains("did you mean \"tpe\""), "{:?}", errors[0]);

    // A custom list, e.g. from a katib-config with the user's own suggestion service.
    let mut e = random_example();
    e.spec.algorithm.as_mut().unwrap().algorithm_name = "my-bohb".into();
    set_defaults(&mut e);
    let known = Known {
        algorithms: &["my-bohb"],
        early_stopping: &[],
    };
    assert_eq!(validate_with(&e, &known), []);
    assert_eq!(paths(&validate(&e)), ["spec.algorithm.algorithmName"]);
}

#[test]
fn early_stopping_rules() {
    let mut e = random_example();
    e.spec.early_stopping = Some(crate::crd::AlgorithmSpec {
        algorithm_name: "medianstop".into(),
        algorithm_settings: vec![],
    });
    assert_eq!(check(e.clone()), []);
    e.spec.early_stopping.as_mut().unwrap().algorithm_name = "median".into();
    let errors = check(e.clone());
    assert_one(&errors, "spec.earlyStopping.algorithmName", "unknown algorithm");
    assert!(errors[0].hint.contains("medianstop"));
    e.spec.early_stopping.as_mut().unwrap().algorithm_name.clear();
    assert_one(&check(e), "spec.earlyStopping.algorithmName", "must be specified");
}

#[test]
fn resume_policy_values() {
    for ok in ["Never", "LongRunning", "FromVolume", ""] {
        let mut e = random_example();
        e.spec.resume_policy = Some(ok.into());
        assert_eq!(check(e), [], "{ok}");
    }
    let mut e = random_example();
    e.spec.resume_policy = Some("Always".into());
    assert_one(&check(e), "spec.resumePolicy", "invalid ResumePolicyType");
}

fn template(e: &mut Experiment) -> &mut TrialTemplate {
    e.spec.trial_template.as_mut().unwrap()
}

#[test]
fn trial_template_required_fields() {
    let mut e = random_example();
    e.spec.trial_template = None;
    assert_one(&check(e), "spec.trialTemplate", "must be specified");

    let mut e = random_example();
    template(&mut e).primary_container_name.clear();
    let errors = check(e);
    assert_one(
        &errors,
        "spec.trialTemplate.primaryContainerName",
        "must be specified",
    );
    assert!(errors[0].hint.contains("training-container"));

    let mut e = random_example();
    template(&mut e).primary_container_name = "trainer".into();
    assert_one(
        &check(e),
        "spec.trialTemplate.primaryContainerName",
        "no container in spec.trialTemplate.trialSpec is named \"trainer\"",
    );

    let mut e = random_example();
    template(&mut e).trial_parameters = None;
    assert_one(
        &check(e),
        "spec.trialTemplate.trialParameters",
        "must be specified",
    );

    // A kind without defaults needs both conditions.
    let mut e = random_example();
    let spec = template(&mut e).trial_spec.as_mut().unwrap();
    spec["apiVersion"] = json!("argoproj.io/v1alpha1");
    spec["kind"] = json!("Workflow");
    let errors = check(e);
    assert_eq!(
        paths(&errors),
        [
            "spec.trialTemplate.successCondition",
            "spec.trialTemplate.failureCondition"
        ]
    );

    let mut e = random_example();
    let spec = template(&mut e).trial_spec.as_mut().unwrap();
    spec.as_object_mut().unwrap().remove("apiVersion");
    assert_one(
        &check(e),
        "spec.trialTemplate.trialSpec.apiVersion",
        "APIVersion and Kind in spec.trialTemplate must be specified",
    );

    let mut e = random_example();
    template(&mut e).trial_spec.as_mut().unwrap()["metadata"] = json!({"namespace": "team-a"});
    assert_one(
        &check(e),
        "spec.trialTemplate.trialSpec.metadata.namespace",
        "must be omitted",
    );

    let mut e = random_example();
    template(&mut e).trial_spec = Some(json!("not an object"));
    let errors = check(e);
    assert!(
        paths(&errors).contains(&"spec.trialTemplate.trialSpec"),
        "{errors:#?}"
    );
}

#[test]
fn trial_template_source_is_exactly_one_of_trial_spec_and_config_map() {
    let cm = crate::crd::ConfigMapSource {
        config_map_name: "trial-templates".into(),
        config_map_namespace: "kubeflow".into(),
        template_path: "defaultTrialTemplate.yaml".into(),
    };
    let mut e = random_example();
    template(&mut e).config_map = Some(cm.clone());
    assert_one(&check(e), "spec.trialTemplate.configMap", "only one of");

    let mut e = random_example();
    let t = template(&mut e);
    t.trial_spec = None;
    t.config_map = Some(cm.clone());
    t.success_condition = "a".into();
    t.failure_condition = "b".into();
    assert_eq!(check(e), []);

    let mut e = random_example();
    let t = template(&mut e);
    t.trial_spec = None;
    t.config_map = Some(crate::crd::ConfigMapSource {
        template_path: String::new(),
        ..cm
    });
    t.success_condition = "a".into();
    t.failure_condition = "b".into();
    assert_one(
        &check(e),
        "spec.trialTemplate.configMap.templatePath",
        "must be specified",
    );

    let mut e = random_example();
    let t = template(&mut e);
    t.trial_spec = None;
    t.success_condition = "a".into();
    t.failure_condition = "b".into();
    assert_one(
        &check(e),
        "spec.trialTemplate",
        "trialSpec or spec.trialTemplate.configMap",
    );
}

#[test]
fn trial_parameter_rules() {
    let tp = |e: &mut Experiment| template(e).trial_parameters.as_mut().unwrap().clone();

    let mut e = random_example();
    let mut params = tp(&mut e);
    params[1].reference.clear();
    template(&mut e).trial_parameters = Some(params);
    assert_one(
        &check(e),
        "spec.trialTemplate.trialParameters[1].reference",
        "name and reference must be specified",
    );

    let mut e = random_example();
    let mut params = tp(&mut e);
    params[0].name = "${trialParameters.learningRate}".into();
    template(&mut e).trial_parameters = Some(params);
    let errors = check(e);
    assert_eq!(paths(&errors)[0], "spec.trialTemplate.trialParameters[0].name");
    assert!(errors[0].problem.contains("must not contain '{' or '}'"));

    // Duplicated name, then duplicated reference.
    let mut e = random_example();
    let mut params = tp(&mut e);
    params[1].name = "learningRate".into();
    template(&mut e).trial_parameters = Some(params);
    let errors = check(e);
    assert_eq!(paths(&errors)[0], "spec.trialTemplate.trialParameters[1].name");
    assert!(errors[0].problem.contains("can't be duplicated"));

    let mut e = random_example();
    let mut params = tp(&mut e);
    params[1].reference = "lr".into();
    template(&mut e).trial_parameters = Some(params);
    let errors = check(e);
    assert_eq!(
        paths(&errors)[0],
        "spec.trialTemplate.trialParameters[1].reference"
    );
    assert!(errors[0].problem.contains("can't be duplicated"));

    // A declared parameter the template does not use.
    let mut e = random_example();
    let mut params = tp(&mut e);
    params.push(crate::crd::TrialParameterSpec {
        name: "trialName".into(),
        description: String::new(),
        reference: "${trialSpec.Name}".into(),
    });
    template(&mut e).trial_parameters = Some(params);
    assert_one(
        &check(e.clone()),
        "spec.trialTemplate.trialParameters[2].name",
        "not found in spec.trialTemplate",
    );
    // Once used, a metadata reference is fine (it needs no spec.parameters entry).
    template(&mut e).trial_spec.as_mut().unwrap()["spec"]["template"]["metadata"] =
        json!({"labels": {"trial": "${trialParameters.trialName}"}});
    assert_eq!(check(e), []);

    // Labels[...] and Annotations[...] are metadata references too; unknown keys are not.
    assert!(is_meta_reference("${trialSpec.Labels[app]}"));
    assert!(is_meta_reference("${trialSpec.Annotations[a/b]}"));
    assert!(is_meta_reference("${trialSpec.APIVersion}"));
    assert!(!is_meta_reference("${trialSpec.Image}"));
    assert!(!is_meta_reference("lr"));

    // Empty trialParameters with a template that uses none is fine (NAS, fixed jobs).
    let mut e = random_example();
    template(&mut e).trial_parameters = Some(vec![]);
    let errors = check(e);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors
            .iter()
            .all(|e| e.problem.contains("not found in spec.trialParameters"))
    );
}

fn param(e: &mut Experiment, i: usize) -> &mut ParameterSpec {
    &mut e.spec.parameters[i]
}

#[test]
fn parameter_type_and_distribution() {
    let mut e = random_example();
    param(&mut e, 0).parameter_type = "float".into();
    let errors = check(e);
    assert_one(
        &errors,
        "spec.parameters[0].parameterType",
        "parameterType: float is not supported",
    );
    assert!(errors[0].hint.contains("did you mean \"double\""));

    let mut e = random_example();
    param(&mut e, 1).feasible_space.distribution = Some("loguniform".into());
    let errors = check(e);
    assert_one(
        &errors,
        "spec.parameters[1].feasibleSpace.distribution",
        "is not supported",
    );
    assert!(errors[0].hint.contains("did you mean \"logUniform\""));

    let mut e = random_example();
    param(&mut e, 1).parameter_type = "unknown".into();
    assert_eq!(check(e), []);
}

#[test]
fn parameter_names_are_required_and_unique() {
    let mut e = random_example();
    param(&mut e, 1).name = "lr".into();
    let errors = check(e);
    assert!(paths(&errors).contains(&"spec.parameters[1].name"), "{errors:#?}");

    let mut e = random_example();
    param(&mut e, 1).name.clear();
    let errors = check(e);
    assert!(paths(&errors).contains(&"spec.parameters[1].name"), "{errors:#?}");
}

#[test]
fn search_space_is_parameters_or_nas_config() {
    let mut e = random_example();
    e.spec.parameters.clear();
    template(&mut e).trial_parameters = Some(vec![]);
    template(&mut e).trial_spec.as_mut().unwrap()["spec"]["template"]["spec"]["containers"][0]["command"] =
        json!(["python3", "/opt/pytorch-mnist/mnist.py"]);
    assert_one(
        &check(e.clone()),
        "spec.parameters",
        "spec.parameters or spec.nasConfig must be specified",
    );

    e.spec.nas_config = Some(crate::crd::NasConfig::default());
    assert_eq!(check(e.clone()), []);

    let mut both = random_example();
    both.spec.nas_config = Some(crate::crd::NasConfig::default());
    assert_one(&check(both), "spec.nasConfig", "only one of");

    // NAS operation parameters get the same checks.
    e.spec.nas_config = Some(crate::crd::NasConfig {
        graph_config: None,
        operations: vec![crate::crd::NasOperation {
            operation_type: "convolution".into(),
            parameters: vec![ParameterSpec {
                name: "filter_size".into(),
                parameter_type: "categorical".into(),
                feasible_space: crate::crd::FeasibleSpace::default(),
            }],
        }],
    });
    assert_one(
        &check(e),
        "spec.nasConfig.operations[0].parameters[0].feasibleSpace",
        "feasibleSpace must be specified",
    );
}

#[test]
fn numeric_range_checks() {
    let fs = |min: Option<&str>, max: Option<&str>, step: Option<&str>| crate::crd::FeasibleSpace {
        min: min.map(str::to_owned),
        max: max.map(str::to_owned),
        step: step.map(str::to_owned),
        ..Default::default()
    };
    let cases: Vec<(&str, crate::crd::FeasibleSpace, Option<&str>, &str)> = vec![
        (
            "double",
            fs(Some("abc"), Some("1"), None),
            Some("min"),
            "\"abc\" is not a number",
        ),
        ("double", fs(Some("0.1"), Some("1e-1"), None), None, ""),
        (
            "double",
            fs(Some("0"), Some("inf"), None),
            Some("max"),
            "is not a number",
        ),
        (
            "double",
            fs(Some("0.1"), Some("0.5"), Some("-0.1")),
            Some("step"),
            "must be greater than 0",
        ),
        (
            "int",
            fs(Some("1"), Some("1.5"), None),
            Some("max"),
            "is not a whole number",
        ),
        (
            "int",
            fs(Some("1"), Some("64"), Some("0.5")),
            Some("step"),
            "is not a whole number",
        ),
        (
            "int",
            fs(Some("64"), Some("1"), None),
            Some("min"),
            "min (64) is greater than max (1)",
        ),
        ("int", fs(Some("-5"), Some("5"), Some("5")), None, ""),
        (
            "double",
            fs(None, Some("1"), None),
            Some("min"),
            "must be specified",
        ),
    ];
    for (ty, space, field, gist) in cases {
        let mut e = random_example();
        let p = param(&mut e, 0);
        p.parameter_type = ty.into();
        p.feasible_space = space.clone();
        let errors = check(e);
        match field {
            None => assert_eq!(errors, [], "{ty} {space:?}"),
            Some(f) => assert_one(&errors, &format!("spec.parameters[0].feasibleSpace.{f}"), gist),
        }
    }
}

#[test]
fn log_distributions_need_a_positive_min() {
    for dist in ["logUniform", "logNormal"] {
        let mut e = random_example();
        let p = param(&mut e, 0);
        p.feasible_space.min = Some("0".into());
        p.feasible_space.distribution = Some(dist.into());
        assert_one(
            &check(e),
            "spec.parameters[0].feasibleSpace.min",
            "must be greater than 0",
        );
    }
    let mut e = random_example();
    param(&mut e, 0).feasible_space.distribution = Some("logUniform".into());
    assert_eq!(check(e), []);
}

#[test]
fn list_rules() {
    let mut e = random_example();
    param(&mut e, 0).feasible_space.list = vec!["0.1".into()];
    assert_one(
        &check(e),
        "spec.parameters[0].feasibleSpace.list",
        "not supported for parameterType: double",
    );

    let mut e = random_example();
    let p = param(&mut e, 0);
    p.parameter_type = "discrete".into();
    p.feasible_space = crate::crd::FeasibleSpace {
        list: vec!["16".into(), "32".into()],
        ..Default::default()
    };
    assert_eq!(check(e.clone()), []);

    let p = param(&mut e, 0);
    p.parameter_type = "categorical".into();
    p.feasible_space = crate::crd::FeasibleSpace {
        distribution: Some("uniform".into()),
        ..Default::default()
    };
    // Only the (defaulted) distribution: the feasible space is empty.
    assert_one(
        &check(e.clone()),
        "spec.parameters[0].feasibleSpace",
        "feasibleSpace must be specified",
    );

    let p = param(&mut e, 0);
    p.feasible_space.list.clear();
    p.feasible_space.step = Some("1".into());
    let errors = check(e);
    assert_eq!(
        paths(&errors),
        [
            "spec.parameters[0].feasibleSpace.step",
            "spec.parameters[0].feasibleSpace.list"
        ]
    );
    assert!(errors[1].problem.contains("at least one value"));
}

fn with_collector(yaml: &str) -> Vec<FieldError> {
    let mut e = random_example();
    let mc: crate::crd::MetricsCollectorSpec = serde_saphyr::from_str(yaml).unwrap();
    e.spec.metrics_collector_spec = Some(mc);
    check(e)
}

#[test]
fn metrics_collector_rules() {
    assert_eq!(with_collector("collector: {kind: StdOut}"), []);
    assert_eq!(with_collector("collector: {kind: Push}"), []);
    assert_eq!(with_collector("collector: {kind: File}"), []);
    assert_eq!(with_collector("collector: {kind: TensorFlowEvent}"), []);
    assert_eq!(with_collector("collector: {kind: PrometheusMetric}"), []);
    assert_eq!(
        with_collector("collector: {kind: Custom, customCollector: {name: c, image: i}}"),
        []
    );

    assert_one(
        &with_collector("collector: {kind: File}\nsource: {fileSystemPath: {path: katib/mnist.log}}"),
        "spec.metricsCollectorSpec.source.fileSystemPath.path",
        "must be an absolute path",
    );
    assert_one(
        &with_collector("collector: {kind: File}\nsource: {fileSystemPath: {format: XML}}"),
        "spec.metricsCollectorSpec.source.fileSystemPath.format",
        "is not a metrics file format",
    );
    assert_one(
        &with_collector("collector: {kind: File}\nsource: {fileSystemPath: {kind: Directory}}"),
        "spec.metricsCollectorSpec.source.fileSystemPath.kind",
        "must be File",
    );
    assert_one(
        &with_collector(
            "collector: {kind: File}\nsource:\n  fileSystemPath: {path: /katib/m.json, format: JSON}\n  \
             filter: {metricsFormat: [\"(a)=(b)\"]}",
        ),
        "spec.metricsCollectorSpec.source.filter",
        "filter must be nil when format of metrics file is json",
    );
    assert_one(
        &with_collector("collector: {kind: TensorFlowEvent}\nsource: {fileSystemPath: {format: TEXT}}"),
        "spec.metricsCollectorSpec.source.fileSystemPath.format",
        "must be empty",
    );
    assert_one(
        &with_collector("collector: {kind: PrometheusMetric}\nsource: {httpGet: {port: -1, path: /m}}"),
        "spec.metricsCollectorSpec.source.httpGet.port",
        "must be a positive integer",
    );
    assert_one(
        &with_collector("collector: {kind: PrometheusMetric}\nsource: {httpGet: {port: 80, path: m}}"),
        "spec.metricsCollectorSpec.source.httpGet.path",
        "is invalid",
    );
    assert_one(
        &with_collector("collector: {kind: Custom}"),
        "spec.metricsCollectorSpec.collector.customCollector",
        "is required",
    );
    let errors = with_collector("collector: {kind: Stdout}");
    assert_one(
        &errors,
        "spec.metricsCollectorSpec.collector.kind",
        "invalid metrics collector kind",
    );
    assert!(errors[0].hint.contains("did you mean \"StdOut\""));
    assert_one(
        &with_collector("collector: {kind: None}"),
        "spec.metricsCollectorSpec.collector.kind",
        "invalid metrics collector kind: None",
    );
}

#[test]
fn metrics_format_must_compile_with_two_groups() {
    assert_eq!(
        with_collector(
            r#"source: {filter: {metricsFormat: ["([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)"]}}"#
        ),
        []
    );
    let errors = with_collector(r#"source: {filter: {metricsFormat: ["(a)=(b)", "loss=(\\d+)"]}}"#);
    assert_one(
        &errors,
        "spec.metricsCollectorSpec.source.filter.metricsFormat[1]",
        "two top subexpressions are required (found 1 capture group(s))",
    );
    let errors = with_collector(r#"source: {filter: {metricsFormat: ["(a"]}}"#);
    assert_one(
        &errors,
        "spec.metricsCollectorSpec.source.filter.metricsFormat[0]",
        "invalid filter",
    );
    assert!(!errors[0].problem.contains('\n'), "{:?}", errors[0].problem);
}

#[test]
fn suggestions() {
    assert_eq!(closest("minimise", &["minimize", "maximize"]), Some("minimize"));
    assert_eq!(closest("Never", &["Never"]), Some("Never"));
    assert_eq!(
        closest("bayesian", BUILTIN_ALGORITHMS),
        Some("bayesianoptimization")
    );
    assert_eq!(
        closest("multivariate_tpe", BUILTIN_ALGORITHMS),
        Some("multivariate-tpe")
    );
    assert_eq!(closest("random-search", BUILTIN_ALGORITHMS), Some("random"));
    assert_eq!(closest("xyz", BUILTIN_ALGORITHMS), None);
    assert_eq!(closest("", BUILTIN_ALGORITHMS), None);
    assert_eq!(suggest_name("My_Experiment.v2"), "my-experiment-v2");
    assert_eq!(suggest_name("__"), "my-experiment");
}

#[test]
fn unknown_fields_are_reported_with_their_line() {
    let path = testdata("katib-examples/random.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    for p in yaml_files("katib-examples") {
        let loaded = crate::yaml::load_experiment(&p).unwrap();
        assert_eq!(loaded.unknown_fields, Vec::<String>::new(), "{}", p.display());
    }

    let typo = text.replace("  maxTrialCount: 12\n", "  maxTrialCont: 12\n");
    let loaded = parse_experiment(&typo, "exp.yaml").unwrap();
    assert_eq!(loaded.unknown_fields, ["spec.maxTrialCont"]);
    let err = default_and_validate(loaded, "exp.yaml", &Known::BUILTIN).unwrap_err();
    assert_one(&err.errors, "spec.maxTrialCont", "unknown field \"maxTrialCont\"");
    assert!(
        err.errors[0].hint.contains("did you mean \"maxTrialCount\""),
        "{err}"
    );
    let line = text.lines().position(|l| l.contains("maxTrialCount")).unwrap() + 1;
    assert!(
        err.to_string()
            .starts_with(&format!("exp.yaml:{line}: spec.maxTrialCont: ")),
        "{err}"
    );

    let nested = text.replace(
        "        min: \"0.5\"\n",
        "        minimum: \"0.5\"\n        min: \"0.5\"\n",
    );
    let loaded = parse_experiment(&nested, "exp.yaml").unwrap();
    assert_eq!(
        loaded.unknown_fields,
        ["spec.parameters[1].feasibleSpace.minimum"]
    );
}

#[test]
fn a_stored_experiment_with_status_has_no_unknown_fields() {
    let text = std::fs::read_to_string(testdata("katib-examples/random.yaml")).unwrap();
    let stored = format!(
        "{text}status:\n  completionTime: null\n  conditions:\n  - lastTransitionTime: \
         \"2024-01-01T00:00:00Z\"\n    lastUpdateTime: \"2024-01-01T00:00:00Z\"\n    message: \
         Experiment is created\n    reason: ExperimentCreated\n    status: \"True\"\n    type: \
         Created\n  currentOptimalTrial:\n    bestTrialName: random-abc\n    observation:\n      \
         metrics:\n      - latest: \"0.9\"\n        max: \"0.9\"\n        min: \"0.8\"\n        \
         name: accuracy\n    parameterAssignments:\n    - name: lr\n      value: \"0.02\"\n  \
         runningTrialList: [random-abc]\n  startTime: \"2024-01-01T00:00:00Z\"\n  trials: 1\n  \
         trialsRunning: 1\n"
    );
    let stored = stored.replace(
        "metadata:\n",
        "metadata:\n  uid: 1234\n  generation: 1\n  managedFields: [{manager: kubectl}]\n",
    );
    let loaded = parse_experiment(&stored, "exp.yaml").unwrap();
    assert_eq!(loaded.unknown_fields, Vec::<String>::new());
    assert!(loaded.experiment.status.is_some());
}
