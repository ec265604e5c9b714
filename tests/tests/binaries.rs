//! The three binaries' shared behaviour, as an operator sees it: a --help that explains every
//! flag, exit code 64 with one line on invalid flags, the admin endpoint, and a clean exit on
//! SIGTERM.

use std::{process::Command, time::Duration};

use metallb_tests::{
    daemons::{Allocator, Daemon},
    grpcurl::grpcurl,
    tools::our_binary,
    trust,
};

const COMMON_FLAGS: &[(&str, &str)] = &[
    ("--log-format", "METALLB_LOG_FORMAT"),
    ("--log-filter", "METALLB_LOG_FILTER"),
    ("--admin-addr", "METALLB_ADMIN_ADDR"),
    ("--shutdown-grace-seconds", "METALLB_SHUTDOWN_GRACE_SECONDS"),
];

/// How the watcher and the announcers reach the allocator: TLS trusting a CA bundle, a token.
const ALLOCATOR_CLIENT_FLAGS: &[(&str, &str)] = &[
    ("--allocator-endpoint", "METALLB_ALLOCATOR_ENDPOINT"),
    ("--allocator-ca-file", "METALLB_ALLOCATOR_CA_FILE"),
    ("--allocator-server-name", "METALLB_ALLOCATOR_SERVER_NAME"),
    ("--allocator-token-file", "METALLB_ALLOCATOR_TOKEN_FILE"),
    ("--insecure", "METALLB_INSECURE"),
];

/// The token issuer and its keys (the allocator's callers, the announcer's metrics scrapers).
const ISSUER_FLAGS: &[(&str, &str)] = &[
    ("--token-issuer", "METALLB_TOKEN_ISSUER"),
    ("--jwks-url", "METALLB_JWKS_URL"),
    ("--jwks-ca-file", "METALLB_JWKS_CA_FILE"),
    ("--jwks-token-file", "METALLB_JWKS_TOKEN_FILE"),
    ("--jwks-file", "METALLB_JWKS_FILE"),
    ("--jwks-refresh-seconds", "METALLB_JWKS_REFRESH_SECONDS"),
];

fn flags_of(binary: &str) -> Vec<(&'static str, &'static str)> {
    let own: &[(&str, &str)] = match binary {
        "metallb-allocator" => &[
            ("--grpc-addr", "METALLB_GRPC_ADDR"),
            ("--tls-cert-file", "METALLB_TLS_CERT_FILE"),
            ("--tls-key-file", "METALLB_TLS_KEY_FILE"),
            ("--token-audience", "METALLB_TOKEN_AUDIENCE"),
            ("--writer-service-accounts", "METALLB_WRITER_SERVICE_ACCOUNTS"),
            ("--announcer-service-accounts", "METALLB_ANNOUNCER_SERVICE_ACCOUNTS"),
            ("--reader-service-accounts", "METALLB_READER_SERVICE_ACCOUNTS"),
            ("--max-message-bytes", "METALLB_MAX_MESSAGE_BYTES"),
            ("--max-streams-per-caller", "METALLB_MAX_STREAMS_PER_CALLER"),
            ("--l2-fencing-interval-ms", "METALLB_L2_FENCING_INTERVAL_MS"),
            ("--keepalive-interval-ms", "METALLB_KEEPALIVE_INTERVAL_MS"),
            ("--keepalive-timeout-ms", "METALLB_KEEPALIVE_TIMEOUT_MS"),
            ("--insecure", "METALLB_INSECURE"),
        ],
        "metallb-announcer" => &[
            ("--node-name", "METALLB_NODE_NAME"),
            ("--node-address", "METALLB_NODE_ADDRESS"),
            ("--report-interval-seconds", "METALLB_REPORT_INTERVAL_SECONDS"),
            ("--l2-refresh-interval-ms", "METALLB_L2_REFRESH_INTERVAL_MS"),
            ("--metrics-https-addr", "METALLB_METRICS_HTTPS_ADDR"),
            ("--metrics-reader-service-accounts", "METALLB_METRICS_READER_SERVICE_ACCOUNTS"),
            ("--metrics-token-audience", "METALLB_METRICS_TOKEN_AUDIENCE"),
        ],
        "metallb-watcher" => &[
            ("--kubeconfig", "KUBECONFIG"),
            ("--config-namespace", "METALLB_NAMESPACE"),
            ("--load-balancer-class", "METALLB_LOAD_BALANCER_CLASS"),
            ("--manage-allocator-tls", "METALLB_MANAGE_ALLOCATOR_TLS"),
            ("--allocator-service", "METALLB_ALLOCATOR_SERVICE"),
            ("--allocator-cert-validity-hours", "METALLB_ALLOCATOR_CERT_VALIDITY_HOURS"),
            ("--allocator-tls-check-seconds", "METALLB_ALLOCATOR_TLS_CHECK_SECONDS"),
            ("--leader-election", "METALLB_LEADER_ELECTION"),
            ("--leader-lease-name", "METALLB_LEADER_LEASE_NAME"),
            ("--leader-identity", "METALLB_LEADER_IDENTITY"),
            ("--leader-lease-seconds", "METALLB_LEADER_LEASE_SECONDS"),
            ("--leader-renew-before-seconds", "METALLB_LEADER_RENEW_BEFORE_SECONDS"),
            ("--webhook-addr", "METALLB_WEBHOOK_ADDR"),
            ("--webhook-cert-file", "METALLB_WEBHOOK_CERT_FILE"),
            ("--webhook-key-file", "METALLB_WEBHOOK_KEY_FILE"),
            ("--webhook-service", "METALLB_WEBHOOK_SERVICE"),
            ("--webhook-configuration", "METALLB_WEBHOOK_CONFIGURATION"),
        ],
        other => panic!("unknown binary {other}"),
    };
    let client: &[(&str, &str)] = match binary {
        "metallb-allocator" => &[],
        _ => ALLOCATOR_CLIENT_FLAGS,
    };
    let issuer: &[(&str, &str)] = match binary {
        "metallb-watcher" => &[],
        _ => ISSUER_FLAGS,
    };
    own.iter().chain(client).chain(issuer).chain(COMMON_FLAGS).copied().collect()
}

const BINARIES: [&str; 3] = ["metallb-allocator", "metallb-announcer", "metallb-watcher"];

/// The standalone tools operators run by hand: flags only, no environment variables.
const TOOLS: &[(&str, &[&str])] =
    &[("metallb-l2-announce", &["--ip", "--interface", "--refresh-interval-ms", "--log-filter"])];

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    for binary in BINARIES {
        let output = Command::new(our_binary(binary)).arg("--help").output().unwrap();
        assert!(output.status.success(), "{binary} --help failed: {output:?}");
        let help = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = help.lines().collect();
        for (flag, env) in flags_of(binary) {
            let at = lines
                .iter()
                .position(|line| line.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("{binary} --help lacks {flag}:\n{help}"));
            let explanation = lines.get(at + 1).map(|line| line.trim()).unwrap_or_default();
            assert!(explanation.len() > 10, "{binary} {flag} is not explained:\n{help}");
            let section = lines[at..].iter().take(12).cloned().collect::<Vec<_>>().join("\n");
            assert!(
                section.contains(&format!("[env: {env}")),
                "{binary} {flag} does not name {env}:\n{section}"
            );
        }
        // No flag appears that the test does not know of: a new flag needs its line above.
        let listed = lines.iter().filter(|line| line.trim_start().starts_with("--")).count();
        assert_eq!(listed, flags_of(binary).len(), "{binary}: unexpected flags:\n{help}");
    }
}

#[test]
fn tools_help_explains_every_flag() {
    for (tool, flags) in TOOLS {
        let output = Command::new(our_binary(tool)).arg("--help").output().unwrap();
        assert!(output.status.success(), "{tool} --help failed: {output:?}");
        let help = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = help.lines().collect();
        for flag in *flags {
            let at = lines
                .iter()
                .position(|line| line.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("{tool} --help lacks {flag}:\n{help}"));
            let explanation = lines.get(at + 1).map(|line| line.trim()).unwrap_or_default();
            assert!(explanation.len() > 10, "{tool} {flag} is not explained:\n{help}");
        }
        let listed = lines.iter().filter(|line| line.trim_start().starts_with("--")).count();
        assert_eq!(listed, flags.len(), "{tool}: unexpected flags:\n{help}");
    }
}

#[test]
fn invalid_flags_exit_64_with_one_line() {
    let cases: [(&str, &[&str], &str); 12] = [
        ("metallb-allocator", &["--grpc-addr", "not-an-address"], "--grpc-addr"),
        (
            "metallb-announcer",
            &["--node-name", "", "--allocator-endpoint", "https://127.0.0.1:1"],
            "--node-name",
        ),
        (
            "metallb-announcer",
            &["--node-name", "n1", "--allocator-endpoint", "not a url"],
            "--allocator-endpoint",
        ),
        ("metallb-watcher", &["--log-format", "xml"], "--log-format"),
        // Plaintext only with --insecure, said before anything starts.
        (
            "metallb-announcer",
            &["--node-name", "n1", "--allocator-endpoint", "http://127.0.0.1:1"],
            "--insecure",
        ),
        ("metallb-watcher", &["--allocator-endpoint", "http://127.0.0.1:1"], "--insecure"),
        // Every replica of a list, not only the first.
        (
            "metallb-watcher",
            &["--allocator-endpoint", "https://127.0.0.1:1,http://127.0.0.1:2"],
            "--insecure",
        ),
        (
            "metallb-watcher",
            &["--leader-lease-seconds", "3", "--leader-renew-before-seconds", "3"],
            "--leader-renew-before-seconds",
        ),
        ("metallb-allocator", &["--writer-service-accounts", "no-slash"], "namespace/name"),
        ("metallb-l2-announce", &["--ip", "192.0.2.300"], "--ip"),
        (
            "metallb-l2-announce",
            &["--ip", "192.0.2.1", "--refresh-interval-ms", "5"],
            "--refresh-interval-ms",
        ),
        ("metallb-l2-announce", &["--ip", "192.0.2.1", "--log-filter", "[["], "--log-filter"),
    ];
    for (binary, args, flag) in cases {
        let output = Command::new(our_binary(binary))
            .args(args)
            .env_remove("METALLB_NODE_NAME")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{binary} {args:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{binary} {args:?} printed more than one line:\n{stderr}"
        );
        assert!(stderr.contains(flag), "{binary} {args:?} does not name {flag}: {stderr}");
    }
}

fn sync_services(allocator: &Allocator) {
    let out =
        grpcurl(&allocator.target(), Some("{}"), &["metallb.v1.Allocator/SyncServices"]).unwrap();
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test]
async fn allocator_serves_admin_endpoint_is_ready_after_the_first_sync_and_exits_cleanly_on_sigterm()
 {
    let logs = tempfile::tempdir().unwrap();
    let (_control_plane, trust) = trust::standalone(&[]).await.unwrap();
    let mut allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    let (status, body) = allocator.daemon.admin_get("/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("first full sync"), "{body}");
    assert_eq!(allocator.daemon.admin_get("/healthz").await.unwrap().0, 200);
    sync_services(&allocator);
    allocator.daemon.wait_ready().await.unwrap();
    let (status, metrics) = allocator.daemon.admin_get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("metallb_k8s_client_config_loaded_bool 0"), "{metrics}");
    let daemon = &mut allocator.daemon;
    let exit = daemon.terminate(Duration::from_secs(15)).unwrap();
    assert!(exit.success(), "allocator exited with {exit}; log:\n{}", daemon.log());
    assert!(daemon.log().contains("SIGTERM"), "{}", daemon.log());
}

#[tokio::test]
async fn announcer_is_ready_once_it_has_a_snapshot_and_stops_on_sigterm() {
    let logs = tempfile::tempdir().unwrap();
    let (_control_plane, trust) = trust::standalone(&["node-a"]).await.unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    let mut args = vec![
        "--node-name".into(),
        "node-a".into(),
        "--allocator-endpoint".into(),
        allocator.grpc_url(),
    ];
    args.extend(trust.announcer_args("node-a").await.unwrap());
    let mut announcer = Daemon::start("metallb-announcer", &args, &[], logs.path()).unwrap();
    announcer.wait_live().await.unwrap();
    // No snapshot before the allocator's first sync: the announcer says why it is not ready.
    let (status, body) = announcer.admin_get("/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("waiting for the first assignment snapshot"), "{body}");

    let config = r#"{"config": {"pools": [{"name": "p", "addresses": ["192.0.2.0/28"], "auto_assign": true}]}}"#;
    let out =
        grpcurl(&allocator.target(), Some(config), &["metallb.v1.Allocator/ApplyConfig"]).unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    sync_services(&allocator);
    announcer.wait_ready().await.unwrap();
    assert!(announcer.log().contains("snapshot applied"), "{}", announcer.log());
    let exit = announcer.terminate(Duration::from_secs(15)).unwrap();
    assert!(exit.success(), "announcer exited with {exit}; log:\n{}", announcer.log());
}

#[tokio::test]
async fn announcer_retries_with_backoff_while_the_allocator_is_unreachable() {
    let logs = tempfile::tempdir().unwrap();
    let (_control_plane, trust) = trust::standalone(&["node-a"]).await.unwrap();
    let nobody = metallb_tests::ports::free_loopback_addr();
    let mut args = vec![
        "--node-name".into(),
        "node-a".into(),
        "--allocator-endpoint".into(),
        format!("https://{nobody}"),
    ];
    args.extend(trust.announcer_args("node-a").await.unwrap());
    let mut announcer = Daemon::start("metallb-announcer", &args, &[], logs.path()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while announcer.log().matches("assignment stream unavailable").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "announcer never retried; log:\n{}",
            announcer.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(announcer.admin_get("/readyz").await.unwrap().0, 503);
    let exit = announcer.terminate(Duration::from_secs(15)).unwrap();
    assert!(exit.success(), "{exit}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let logs = tempfile::tempdir().unwrap();
    let (_control_plane, trust) = trust::standalone(&[]).await.unwrap();
    let env = [("METALLB_LOG_FORMAT", "json".to_string())];
    let mut allocator = Allocator::start(&trust, &env, logs.path()).await.unwrap();
    allocator.daemon.terminate(Duration::from_secs(15)).unwrap();
    let log = allocator.daemon.log();
    let mut parsed = 0;
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(value.get("level").is_some() && value.get("message").is_some(), "{line}");
        parsed += 1;
    }
    assert!(parsed >= 2, "expected start and stop lines:\n{log}");
}
