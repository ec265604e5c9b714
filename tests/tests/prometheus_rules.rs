//! The alerting rules (charts/metallb-rs/files/prometheus-rules.yaml, which the chart and
//! deploy/components/prometheus both carry) pass `promtool check rules`, and
//! `promtool test rules` runs tests/prometheus/rules-test.yaml against them: every alert fires
//! once its condition has held for its `for` and stays quiet in the cases beside it. Needs
//! promtool from tests/scripts/install-tools.sh.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use metallb_tests::{manifests::repo_dir, tools::cached_tool};
use serde_json::Value;

fn rules_file() -> PathBuf {
    repo_dir().join("charts/metallb-rs/files/prometheus-rules.yaml")
}

fn rules_test_file() -> PathBuf {
    repo_dir().join("tests/prometheus/rules-test.yaml")
}

fn yaml(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Runs promtool with `args`; its output, or a panic with everything it printed.
fn promtool(args: &[&str]) -> String {
    let output = Command::new(cached_tool("promtool")).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The alert names of the rules file, in order.
fn alerts() -> Vec<String> {
    let rules = yaml(&rules_file());
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .map(|rule| rule["alert"].as_str().expect("only alerting rules").to_string())
        .collect()
}

#[test]
fn promtool_checks_the_rules() {
    let output = promtool(&["check", "rules", rules_file().to_str().unwrap()]);
    let count = alerts().len();
    assert!(output.contains(&format!("SUCCESS: {count} rules found")), "{output}");
}

#[test]
fn promtool_unit_tests_pass() {
    let output = promtool(&["test", "rules", rules_test_file().to_str().unwrap()]);
    assert!(output.contains("SUCCESS"), "{output}");
}

/// Each alert has a test where it fires and an evaluation where it must not (before its `for`
/// has passed, or for series that must not trigger it).
#[test]
fn every_alert_has_a_firing_and_a_quiet_case() {
    let tests = yaml(&rules_test_file());
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_string();
            match case["exp_alerts"].as_array().is_some_and(|alerts| !alerts.is_empty()) {
                true => fires.insert(name),
                false => quiet.insert(name),
            };
        }
    }
    for alert in alerts() {
        assert!(fires.contains(&alert), "no test where {alert} fires");
        assert!(quiet.contains(&alert), "no test where {alert} stays quiet");
    }
}
