//! The allocator's control plane as an attacker on the same network would try it, against the
//! real kube-apiserver issuing real tokens: plaintext, no token, bad tokens, the wrong role, the
//! wrong node, passwords, oversized and numerous requests, certificate rotation.

use std::{path::Path, time::Duration};

use base64::Engine as _;
use metallb_process::{AllocatorClientArgs, AllocatorConnector, allocator_client::Client};
use metallb_proto::pb;
use metallb_tests::{
    daemons::Allocator,
    grpcurl::{GrpcTarget, GrpcurlOutput, grpcurl, grpcurl_with},
    kube_control_plane::ControlPlane,
    trust::{
        self, ANNOUNCER_ACCOUNT, AUDIENCE, READER_ACCOUNT, STRANGER_ACCOUNT, Trust, WATCHER_ACCOUNT,
    },
};

/// grpcurl exits with 64 + the gRPC status code when the call fails.
const UNAUTHENTICATED: i32 = 64 + 16;
const PERMISSION_DENIED: i32 = 64 + 7;

/// Calls `method` with the schema from `proto/` rather than by reflection, so that the call
/// itself, not reflection, is what a bad token is refused on.
fn call(target: &GrpcTarget, method: &str, data: &str) -> GrpcurlOutput {
    let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let flags = ["-import-path", protos, "-proto", "metallb/v1/allocator.proto"];
    grpcurl_with(target, &flags, Some(data), &[&format!("metallb.v1.Allocator/{method}")]).unwrap()
}

fn assert_refused(out: &GrpcurlOutput, code: i32, words: &str) {
    assert_eq!(out.code, code, "{out:?}");
    assert!(out.stderr.contains(words), "expected {words:?} in {out:?}");
}

/// A tonic client as our daemons make one, presenting `token_file`.
async fn client(allocator: &Allocator, trust: &Trust, token_file: &Path) -> Client {
    let args = AllocatorClientArgs {
        allocator_endpoint: vec![allocator.grpc_url()],
        allocator_ca_file: trust.ca_file(),
        allocator_server_name: Some(trust::SERVER_NAME.into()),
        allocator_token_file: token_file.to_path_buf(),
        insecure: false,
    };
    AllocatorConnector::new(&args).unwrap().connect(Duration::from_secs(5)).await.unwrap()
}

/// A token with a real token's claims, its times moved by `shift` seconds, signed with
/// `signing_key_pem` (PKCS#8 EC) under the real token's key id.
fn resigned(real: &str, shift: i64, signing_key_pem: &[u8]) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = real.split('.').collect();
    let header: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts[0]).unwrap()).unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    for field in ["iat", "nbf", "exp"] {
        claims[field] = (claims[field].as_i64().unwrap() + shift).into();
    }
    let mut new_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    new_header.kid = header["kid"].as_str().map(String::from);
    let pem = std::str::from_utf8(signing_key_pem).unwrap();
    let pkcs8 = rcgen::KeyPair::from_pem(pem).unwrap().serialize_der();
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pkcs8);
    jsonwebtoken::encode(&new_header, &claims, &key).unwrap()
}

async fn secured(nodes: &[&str]) -> (ControlPlane, Trust, Allocator, tempfile::TempDir) {
    let (control_plane, trust) = trust::standalone(nodes).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    (control_plane, trust, allocator, logs)
}

#[tokio::test]
async fn every_call_needs_tls_and_a_valid_token_of_the_right_role() {
    let (control_plane, mut trust) = trust::standalone(&["node-1"]).await.unwrap();
    // Keys from kube-apiserver's /openid/v1/jwks, as in a cluster.
    trust.use_jwks_url(&control_plane).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    let writer = allocator.target();

    // Plaintext: no gRPC at all, the TLS handshake fails.
    let out = call(&GrpcTarget::plaintext(allocator.grpc_addr()), "ListPools", "{}");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("pools"), "{out:?}");

    // Health is open to anyone, over TLS (grpcurl still needs a reader's token to learn the
    // health service's schema by reflection; the call itself carries none).
    let reader_token = trust.token(READER_ACCOUNT, None, AUDIENCE, "1h").await.unwrap();
    let reflect = format!("authorization: Bearer {reader_token}");
    let health = grpcurl_with(
        &writer.with_token(None),
        &["-reflect-header", &reflect],
        Some("{}"),
        &["grpc.health.v1.Health/Check"],
    )
    .unwrap();
    assert_eq!(health.code, 0, "{health:?}");

    // No token, a token for another audience, an expired one, one signed by another key.
    assert_refused(&call(&writer.with_token(None), "ListPools", "{}"), UNAUTHENTICATED, "no token");
    let other_audience = trust.token(WATCHER_ACCOUNT, None, "someone-else", "1h").await.unwrap();
    let out = call(&writer.with_token(Some(&other_audience)), "ListPools", "{}");
    assert_refused(&out, UNAUTHENTICATED, "audience");
    let real = trust.token(WATCHER_ACCOUNT, None, AUDIENCE, "1h").await.unwrap();
    let cluster_key = std::fs::read(control_plane.dir().join("service-account.key")).unwrap();
    let expired = resigned(&real, -7200, &cluster_key);
    assert_refused(
        &call(&writer.with_token(Some(&expired)), "ListPools", "{}"),
        UNAUTHENTICATED,
        "expired",
    );
    let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let forged = resigned(&real, 0, other_key.as_bytes());
    assert_refused(
        &call(&writer.with_token(Some(&forged)), "ListPools", "{}"),
        UNAUTHENTICATED,
        "signature",
    );
    // The same claims signed with the cluster's key pass: the checks above are the reasons.
    let genuine = resigned(&real, 0, &cluster_key);
    assert_eq!(call(&writer.with_token(Some(&genuine)), "ListPools", "{}").code, 0);

    // A valid token of a ServiceAccount without a role.
    let stranger = trust.token(STRANGER_ACCOUNT, None, AUDIENCE, "1h").await.unwrap();
    let out = call(&writer.with_token(Some(&stranger)), "ListPools", "{}");
    assert_refused(&out, PERMISSION_DENIED, "has no role");

    // The reader reads (reflection included) and cannot write.
    let reader = writer.with_token(Some(&reader_token));
    assert_eq!(call(&reader, "ListPools", "{}").code, 0);
    let listed = grpcurl(&reader, None, &["list"]).unwrap();
    assert!(listed.stdout.contains("metallb.v1.Allocator"), "{listed:?}");
    let out = call(&reader, "ApplyConfig", r#"{"config": {}}"#);
    assert_refused(&out, PERMISSION_DENIED, "may not call");
    assert_refused(&call(&reader, "SyncServices", "{}"), PERMISSION_DENIED, "reader");
    assert_refused(&call(&reader, "UpdateServices", "{}"), PERMISSION_DENIED, "reader");
    // A dry run changes nothing: the reader may ask what a configuration would do.
    let checked = call(&reader, "CheckConfig", r#"{"config": {"pools": [{"name": "p"}]}}"#);
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(checked.stdout.contains("a pool needs at least one"), "{checked:?}");
    assert_refused(
        &call(&writer.with_token(None), "CheckConfig", "{}"),
        UNAUTHENTICATED,
        "no token",
    );

    // The writer writes, and its mutating calls are logged with who made them.
    assert_eq!(call(&writer, "SyncServices", "{}").code, 0);
    assert!(
        allocator.daemon.log().contains("metallb-system/metallb-watcher"),
        "{}",
        allocator.daemon.log()
    );

    // Denials are counted by method and reason.
    let (_, metrics) = allocator.daemon.admin_get("/metrics").await.unwrap();
    for expected in [
        r#"metallb_allocator_grpc_denied_total{method="ListPools",reason="missing_token"} 1"#,
        r#"metallb_allocator_grpc_denied_total{method="ListPools",reason="expired_token"} 1"#,
        r#"metallb_allocator_grpc_denied_total{method="ListPools",reason="bad_signature"} 1"#,
        r#"metallb_allocator_grpc_denied_total{method="ApplyConfig",reason="wrong_role"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected} missing from:\n{metrics}");
    }
}

fn config_with_password() -> String {
    serde_json::json!({"config": {
        "pools": [{"name": "p", "addresses": ["192.0.2.0/28"], "auto_assign": true}],
        "peers": [{"name": "r", "my_asn": 64512, "peer_asn": 64500, "peer_address": "198.51.100.1", "password": "s3cret-md5"}],
        "advertisements": [{"name": "a"}],
    }})
    .to_string()
}

#[tokio::test]
async fn an_announcer_acts_for_its_own_node_and_only_its_stream_carries_the_password() {
    let (_control_plane, trust, allocator, _logs) = secured(&["node-1", "node-2"]).await;
    let writer = allocator.target();
    assert_eq!(call(&writer, "ApplyConfig", &config_with_password()).code, 0);
    for node in ["node-1", "node-2"] {
        let data = format!(r#"{{"node": {{"name": "{node}"}}}}"#);
        assert_eq!(call(&writer, "UpdateNode", &data).code, 0);
    }
    assert_eq!(call(&writer, "SyncServices", "{}").code, 0);

    let node_1 = trust.token_file(ANNOUNCER_ACCOUNT, Some("node-1")).await.unwrap();
    let mut announcer = client(&allocator, &trust, &node_1).await;
    let own = pb::WatchAssignmentsRequest { node_name: "node-1".into() };
    let mut stream = announcer.watch_assignments(own).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let Some(pb::assignment_update::Update::Snapshot(snapshot)) = first.update else {
        panic!("{first:?}")
    };
    assert_eq!(snapshot.peers[0].password, "s3cret-md5");

    // Another node's stream, assignments and reports are denied to node-1's announcer.
    let other = pb::WatchAssignmentsRequest { node_name: "node-2".into() };
    let denied = announcer.watch_assignments(other).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("node-1 only"), "{denied:?}");
    let report = pb::ReportSessionsRequest { node_name: "node-2".into(), sessions: vec![] };
    let denied = announcer.report_sessions(report).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let peek = pb::GetNodeAssignmentsRequest { node_name: "node-2".into() };
    assert_eq!(
        announcer.get_node_assignments(peek).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let report = pb::ReportSessionsRequest { node_name: "node-1".into(), sessions: vec![] };
    announcer.report_sessions(report).await.unwrap();
    // Nor may it write.
    let sync = pb::SyncServicesRequest::default();
    assert_eq!(
        announcer.sync_services(sync).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let batch = pb::UpdateServicesRequest::default();
    assert_eq!(
        announcer.update_services(batch).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let check =
        pb::ApplyConfigRequest { config: Some(pb::Config::default()), ..Default::default() };
    assert_eq!(
        announcer.check_config(check).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );

    // Everywhere else the password is redacted, for the writer and the reader alike.
    let reader_token = trust.token(READER_ACCOUNT, None, AUDIENCE, "1h").await.unwrap();
    for target in [writer.clone(), writer.with_token(Some(&reader_token))] {
        let out = call(&target, "GetNodeAssignments", r#"{"node_name": "node-1"}"#);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(!out.stdout.contains("s3cret-md5") && out.stdout.contains("redacted"), "{out:?}");
    }
    // And no stream of the writer's: WatchAssignments is the announcers' alone.
    let out = call(&writer, "WatchAssignments", r#"{"node_name": "node-1"}"#);
    assert_refused(&out, PERMISSION_DENIED, "may not call");
    assert!(!allocator.daemon.log().contains("s3cret-md5"), "the password reached the log");
}

/// Calls `method` as `call` does, stating replica role `role` in the header the watcher uses.
fn call_as_role(target: &GrpcTarget, role: &str, method: &str, data: &str) -> GrpcurlOutput {
    let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let header = format!("{}: {role}", metallb_proto::REPLICA_ROLE_HEADER);
    let flags = ["-import-path", protos, "-proto", "metallb/v1/allocator.proto", "-H", &header];
    grpcurl_with(target, &flags, Some(data), &[&format!("metallb.v1.Allocator/{method}")]).unwrap()
}

#[tokio::test]
async fn only_the_watcher_makes_a_replica_a_standby_and_a_standby_serves_no_announcer() {
    let (_control_plane, trust, allocator, _logs) = secured(&["node-1"]).await;
    let writer = allocator.target();
    assert_eq!(call(&writer, "ApplyConfig", r#"{"config": {}}"#).code, 0);
    assert_eq!(call(&writer, "UpdateNode", r#"{"node": {"name": "node-1"}}"#).code, 0);
    assert_eq!(call(&writer, "SyncServices", "{}").code, 0);
    let node_1 = trust.token_file(ANNOUNCER_ACCOUNT, Some("node-1")).await.unwrap();
    let mut announcer = client(&allocator, &trust, &node_1).await;
    let watch = || pb::WatchAssignmentsRequest { node_name: "node-1".into() };
    let mut stream = announcer.watch_assignments(watch()).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some(), "the snapshot");

    // A reader saying "standby" is not the watcher: nothing changes.
    let reader_token = trust.token(READER_ACCOUNT, None, AUDIENCE, "1h").await.unwrap();
    let reader = writer.with_token(Some(&reader_token));
    let out = call_as_role(&reader, "standby", "ListSessions", "{}");
    assert_eq!(out.code, 0, "{out:?}");
    let second = announcer.watch_assignments(watch()).await;
    assert!(second.is_ok(), "still serving announcers: {second:?}");

    // The watcher saying so ends the streams and refuses new ones, naming why.
    assert_eq!(call_as_role(&writer, "standby", "ListSessions", "{}").code, 0);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(matches!(ended, Ok(Ok(None)) | Ok(Err(_))), "the stream ended: {ended:?}");
    let refused = announcer.watch_assignments(watch()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("standby"), "{refused:?}");

    // Made primary again, it serves announcers.
    assert_eq!(call_as_role(&writer, "primary", "ListSessions", "{}").code, 0);
    let mut stream = announcer.watch_assignments(watch()).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some(), "the snapshot");
}

// Several threads: the reads are timed while this process also encodes the large requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_with_clear_errors_and_reads_stay_fast() {
    let (_control_plane, trust, allocator, _logs) = secured(&["node-1"]).await;
    let writer_file = trust.token_file(WATCHER_ACCOUNT, None).await.unwrap();
    let mut writer = client(&allocator, &trust, &writer_file).await;
    writer.sync_services(pb::SyncServicesRequest::default()).await.unwrap();

    // Too many pools: refused before validation, with the count and the limit.
    let pools = (0..50_000)
        .map(|n| pb::AddressPool {
            name: format!("pool-{n}"),
            addresses: vec![format!("10.{}.{}.0/24", n / 256, n % 256)],
            auto_assign: true,
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let huge = pb::ApplyConfigRequest {
        config: Some(pb::Config { pools: pools.clone(), ..Default::default() }),
        ..Default::default()
    };
    // Reads keep being answered quickly while oversized requests are refused. The reader has
    // its own connection, as an operator's grpcurl would.
    let mut reader = client(&allocator, &trust, &writer_file).await;
    reader.list_pools(pb::ListPoolsRequest::default()).await.unwrap();
    // The machine's own pace (a loaded CI machine is slow for everyone): the slowest of a few
    // reads with nothing else going on. A read queued behind the writer's work would take many
    // times that; one merely sharing the CPU does not.
    let mut baseline = Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        reader.list_pools(pb::ListPoolsRequest::default()).await.unwrap();
        baseline = baseline.max(started.elapsed());
    }
    let reads = tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        for _ in 0..50 {
            let started = std::time::Instant::now();
            reader.list_pools(pb::ListPoolsRequest::default()).await.unwrap();
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        slowest
    });
    for _ in 0..5 {
        let err = writer.apply_config(huge.clone()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        assert!(err.message().contains("50000") && err.message().contains("1000"), "{err:?}");
    }
    let slowest = reads.await.unwrap();
    let bound = Duration::from_millis(100) + baseline * 5;
    assert!(slowest < bound, "a read took {slowest:?} meanwhile (alone: {baseline:?})");

    // A message over the size limit (4 MiB) is refused by the transport, saying so.
    let mut padded = huge.clone();
    padded.config.as_mut().unwrap().pools.truncate(10);
    padded.config.as_mut().unwrap().pools[0].labels.insert("x".into(), "y".repeat(5 << 20));
    let err = writer.apply_config(padded).await.unwrap_err();
    assert!(err.message().contains("too large") || err.message().contains("limit"), "{err:?}");

    // A 1 MB Service name: refused, and not quoted whole.
    let long = pb::UpsertServiceRequest {
        service: Some(pb::Service {
            key: Some(pb::ServiceKey { namespace: "default".into(), name: "n".repeat(1 << 20) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = writer.upsert_service(long).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("at most 63") && err.message().len() < 300, "{err:?}");
    assert!(allocator.daemon.log().len() < 1 << 20, "the name reached the log");

    // The largest accepted configuration applies, and ListPools stays proportional to pools.
    let mut largest = huge;
    largest.config.as_mut().unwrap().pools.truncate(1_000);
    let response = writer.apply_config(largest).await.unwrap().into_inner();
    assert!(response.accepted, "{response:?}");
    let listed = writer.list_pools(pb::ListPoolsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.pools.len(), 1_000);

    // Streams per announcer identity.
    let node_1 = trust.token_file(ANNOUNCER_ACCOUNT, Some("node-1")).await.unwrap();
    let mut announcer = client(&allocator, &trust, &node_1).await;
    let request = || pb::WatchAssignmentsRequest { node_name: "node-1".into() };
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(announcer.watch_assignments(request()).await.unwrap().into_inner());
    }
    let err = announcer.watch_assignments(request()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at most 4"), "{err:?}");
    // Closing one frees its place.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..50 {
        match announcer.watch_assignments(request()).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(reopened.is_some(), "a closed stream's place was never freed");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_dropping_open_streams() {
    let (_control_plane, trust, allocator, _logs) = secured(&["node-1"]).await;
    let writer = allocator.target();
    assert_eq!(call(&writer, "ApplyConfig", &config_with_password()).code, 0);
    assert_eq!(call(&writer, "UpdateNode", r#"{"node": {"name": "node-1"}}"#).code, 0);
    assert_eq!(call(&writer, "SyncServices", "{}").code, 0);
    let node_1 = trust.token_file(ANNOUNCER_ACCOUNT, Some("node-1")).await.unwrap();
    let mut announcer = client(&allocator, &trust, &node_1).await;
    let request = pb::WatchAssignmentsRequest { node_name: "node-1".into() };
    let mut stream = announcer.watch_assignments(request).await.unwrap().into_inner();
    let snapshot = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    snapshot.expect("a first snapshot").unwrap().unwrap();

    let before = served_certificate(&allocator, &trust).await;
    assert_eq!(before, der_of(&trust.serving_certificate().unwrap()));
    trust.issue_serving_certificate().unwrap();
    let mut after = before.clone();
    for _ in 0..100 {
        after = served_certificate(&allocator, &trust).await;
        if after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(after, before, "the new certificate was never served");
    assert_eq!(after, der_of(&trust.serving_certificate().unwrap()), "serving something else");
    assert!(allocator.daemon.log().contains("serving certificate reloaded"));

    // The stream opened before the rotation still delivers.
    let service = r#"{"service": {"key": {"namespace": "default", "name": "web"}, "ready_endpoint_nodes": ["node-1"]}}"#;
    let upserted = call(&writer, "UpsertService", service);
    assert!(upserted.stdout.contains("192.0.2."), "{upserted:?}");
    let update = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    assert!(matches!(update, Ok(Ok(Some(_)))), "the open stream was dropped: {update:?}");
}

/// The certificate the allocator serves to a new connection (DER), verified against the CA.
async fn served_certificate(allocator: &Allocator, trust: &Trust) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring::default_provider};
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(trust.ca_file()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(default_provider().into())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(allocator.grpc_addr()).await.unwrap();
    let name = ServerName::try_from(trust::SERVER_NAME).unwrap();
    let handshake = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp));
    let tls = handshake.await.expect("a handshake in time").unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

#[tokio::test]
async fn the_announcers_https_metrics_admit_only_allowed_service_accounts() {
    let (_control_plane, trust) = trust::standalone(&["node-1"]).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let metrics_addr = metallb_tests::ports::free_loopback_addr();
    let nobody = metallb_tests::ports::free_loopback_addr();
    let mut args: Vec<String> = [
        "--node-name",
        "node-1",
        "--allocator-endpoint",
        &format!("https://{nobody}"),
        "--metrics-https-addr",
        &metrics_addr.to_string(),
        "--metrics-reader-service-accounts",
        &format!("{}/{READER_ACCOUNT}", trust::NAMESPACE),
        "--metrics-token-audience",
        trust.issuer(),
        "--token-issuer",
        trust.issuer(),
        "--jwks-file",
        &trust.jwks_file().to_string_lossy(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(trust.announcer_args("node-1").await.unwrap());
    let mut announcer =
        metallb_tests::daemons::Daemon::start("metallb-announcer", &args, &[], logs.path())
            .unwrap();
    announcer.wait_live().await.unwrap();

    let scrape = |token: Option<String>| {
        let url = format!("https://{metrics_addr}/metrics");
        let mut command = std::process::Command::new(metallb_tests::tools::system_tool("curl"));
        command.args(["-sk", "-m", "5", "-w", "\n%{http_code}", &url]);
        if let Some(token) = token {
            command.args(["-H", &format!("authorization: Bearer {token}")]);
        }
        let text = String::from_utf8(command.output().unwrap().stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    // Prometheus' token is an ordinary pod token: the API server's audience.
    let token = |account: &'static str| {
        let trust = &trust;
        async move { trust.token(account, None, trust.issuer(), "1h").await.unwrap() }
    };
    let (code, body) = scrape(None);
    assert_eq!(code, "401", "{body}");
    let (code, body) = scrape(Some(token(STRANGER_ACCOUNT).await));
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("may not read metrics"), "{body}");
    let wrong_audience = trust.token(READER_ACCOUNT, None, AUDIENCE, "1h").await.unwrap();
    assert_eq!(scrape(Some(wrong_audience)).0, "401");
    let (code, body) = scrape(Some(token(READER_ACCOUNT).await));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("metallb_bgp_session_up") || body.contains("# EOF"), "{body}");
    // Plain HTTP on that port gets nothing.
    let plain = std::process::Command::new(metallb_tests::tools::system_tool("curl"))
        .args(["-s", "-m", "5", &format!("http://{metrics_addr}/metrics")])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("metallb_"), "{plain:?}");
    announcer.terminate(Duration::from_secs(15)).unwrap();
}
