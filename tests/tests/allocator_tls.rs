//! The allocator's TLS material as the watcher bootstraps and rotates it
//! (watcher/src/allocator_tls.rs), against a real kube-apiserver and served by the real
//! allocator: the Secrets and the bundle ConfigMap appear once and stay put while current; the
//! issued certificate works with grpcurl; a renewed serving certificate is served without
//! dropping an open assignment stream; a new CA reaches the bundle before it signs anything, so
//! clients never meet a certificate they cannot verify; and the watcher does all this by
//! itself with the RBAC from deploy/.
//!
//! Time: `ensure` takes the time it judges by, but grpcurl and rustls verify certificates by
//! the real clock. So each test starts its story in the past and ends it now, so that every
//! certificate a client is shown is valid when it is shown.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Secret},
};
use kube::{Api, Client, api::PostParams};
use metallb_process::{AllocatorClientArgs, AllocatorConnector, allocator_client};
use metallb_proto::pb;
use metallb_tests::{
    daemons::{Allocator, Daemon},
    grpcurl::{GrpcTarget, GrpcurlOutput, grpcurl_with},
    ports::free_loopback_addr,
    stack::wait::eventually,
    trust::{self, ANNOUNCER_ACCOUNT, AUDIENCE, NAMESPACE, SERVER_NAME, Trust, WATCHER_ACCOUNT},
};
use metallb_watcher::{
    allocator_tls::{
        BUNDLE_CONFIG_MAP, BUNDLE_PROPAGATION, CA_SECRET, Rotation, TLS_SECRET, TlsSettings, ensure,
    },
    pki,
};
use time::OffsetDateTime;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const HOUR: Duration = Duration::from_secs(3600);
const YEAR: Duration = Duration::from_secs(365 * 86_400);
/// A short serving validity, so that renewal (at a third left) is an hour's story.
const SERVING_VALIDITY: Duration = Duration::from_secs(3 * 3600);
/// Bound on waiting for the allocator to pick up new files (it checks every 2 s) and on a
/// stream message.
const WAIT: Duration = Duration::from_secs(20);

/// The settings the watcher uses for the allocator in metallb-system, with a short validity.
fn settings() -> TlsSettings {
    TlsSettings {
        namespace: NAMESPACE.into(),
        service: "metallb-allocator".into(),
        serving_validity: SERVING_VALIDITY,
    }
}

/// What the three objects hold, with their resource versions (equal versions: not written).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Material {
    ca_cert: String,
    previous_ca_cert: Option<String>,
    serving_cert: String,
    serving_key: String,
    bundle: String,
    versions: [String; 3],
}

impl Material {
    async fn read(client: &Client) -> Self {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
        let ca = secrets.get(CA_SECRET).await.unwrap();
        let tls = secrets.get(TLS_SECRET).await.unwrap();
        let bundle = config_maps.get(BUNDLE_CONFIG_MAP).await.unwrap();
        assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
        let version = |meta: &kube::api::ObjectMeta| meta.resource_version.clone().unwrap();
        Self {
            ca_cert: secret_text(&ca, "ca.crt").unwrap(),
            previous_ca_cert: secret_text(&ca, "previous.crt"),
            serving_cert: secret_text(&tls, "tls.crt").unwrap(),
            serving_key: secret_text(&tls, "tls.key").unwrap(),
            bundle: bundle.data.as_ref().and_then(|data| data.get("ca.crt")).cloned().unwrap(),
            versions: [version(&ca.metadata), version(&tls.metadata), version(&bundle.metadata)],
        }
    }
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(key)?;
    Some(String::from_utf8(value.0.clone()).unwrap())
}

fn certificates_in(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

/// Stands in for the kubelet: writes `files` into `dir` as it updates a mounted Secret or
/// ConfigMap, all keys at once. The keys are symlinks through `..data`, a symlink to a fresh
/// directory swapped by an atomic rename, so a reader never sees a mix of old and new keys.
fn project(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let stamp = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let generation = format!("..{stamp}");
    std::fs::create_dir(dir.join(&generation)).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(&generation).join(name), text).unwrap();
    }
    let previous = std::fs::read_link(dir.join("..data")).ok();
    let staging = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&generation, &staging).unwrap();
    std::fs::rename(&staging, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    if let Some(previous) = previous {
        std::fs::remove_dir_all(dir.join(previous)).unwrap();
    }
}

/// Where the kubelet would mount the serving Secret and the bundle ConfigMap.
struct Mounts {
    dir: tempfile::TempDir,
}

impl Mounts {
    fn new() -> Self {
        Self { dir: tempfile::Builder::new().prefix("metallb-mounts-").tempdir().unwrap() }
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("allocator-tls")
    }

    fn cert(&self) -> PathBuf {
        self.tls_dir().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.tls_dir().join("tls.key")
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("allocator-ca").join("ca.crt")
    }

    /// Updates both mounts from `material`, as the kubelet does after the watcher writes.
    fn update(&self, material: &Material) {
        let serving = [("tls.crt", &*material.serving_cert), ("tls.key", &*material.serving_key)];
        project(&self.tls_dir(), &serving);
        project(&self.dir.path().join("allocator-ca"), &[("ca.crt", &material.bundle)]);
    }

    /// A single PEM file of its own (a CA alone, for checks of who signed what).
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Starts the allocator serving the mounted certificate, with the Trust's token flags.
async fn allocator_on(trust: &mut Trust, mounts: &Mounts, logs: &Path) -> Allocator {
    trust.use_serving_files(&mounts.cert(), &mounts.key());
    Allocator::start(trust, &[], logs).await.unwrap()
}

/// Calls `method` as the writer, trusting `ca_file`, with the schema from `proto/`.
fn call(
    allocator: &Allocator,
    ca_file: &Path,
    token: &str,
    method: &str,
    data: &str,
) -> GrpcurlOutput {
    let target = GrpcTarget::secure(allocator.grpc_addr(), ca_file, Some(token));
    let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let flags = ["-import-path", protos, "-proto", "metallb/v1/allocator.proto"];
    grpcurl_with(&target, &flags, Some(data), &[&format!("metallb.v1.Allocator/{method}")]).unwrap()
}

/// The certificate the allocator serves to a new connection (DER), verified against `ca_file`
/// as SERVER_NAME; an error if the handshake fails.
async fn served_certificate(allocator: &Allocator, ca_file: &Path) -> anyhow::Result<Vec<u8>> {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring::default_provider};
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)? {
        roots.add(cert?)?;
    }
    let config = ClientConfig::builder_with_provider(default_provider().into())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(allocator.grpc_addr()).await?;
    let name = ServerName::try_from(SERVER_NAME)?;
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await??;
    Ok(tls.get_ref().1.peer_certificates().unwrap_or_default()[0].to_vec())
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
}

/// Waits until a new connection, verified with `ca_file`, is served `pem`.
async fn wait_until_served(allocator: &Allocator, ca_file: &Path, pem: &str) {
    let expected = der_of(pem);
    let served = eventually("serving the new certificate", WAIT, || async {
        let served = served_certificate(allocator, ca_file).await.ok()?;
        (served == expected).then_some(())
    })
    .await;
    served.unwrap_or_else(|err| panic!("{err}; allocator log:\n{}", allocator.daemon.log()));
}

/// A tonic client as the announcer on `node` makes one, trusting `ca_file`.
async fn announcer_client(
    allocator: &Allocator,
    trust: &Trust,
    ca_file: &Path,
    node: &str,
) -> allocator_client::Client {
    let args = AllocatorClientArgs {
        allocator_endpoint: vec![allocator.grpc_url()],
        allocator_ca_file: ca_file.to_path_buf(),
        allocator_server_name: Some(SERVER_NAME.into()),
        allocator_token_file: trust.token_file(ANNOUNCER_ACCOUNT, Some(node)).await.unwrap(),
        insecure: false,
    };
    AllocatorConnector::new(&args).unwrap().connect(Duration::from_secs(5)).await.unwrap()
}

#[tokio::test]
async fn issued_material_is_served_and_a_renewed_certificate_keeps_open_streams() {
    let (control_plane, mut trust) = trust::standalone(&["node-1"]).await.unwrap();
    let client = control_plane.client().await;
    let settings = settings();
    let now = OffsetDateTime::now_utc();
    // Issued 2.5 h ago: by now, past two thirds of its 3 h, due for renewal.
    let issued_at = now - (SERVING_VALIDITY * 5 / 6);

    // The first check creates all three objects; a second at the same time changes nothing.
    let first = ensure(&client, &settings, issued_at).await.unwrap();
    let all = Rotation { new_authority: true, bundle_written: true, serving_issued: true };
    assert_eq!(first, all);
    let material = Material::read(&client).await;
    assert_eq!(material.bundle, material.ca_cert, "the bundle is the one CA");
    assert_eq!(certificates_in(&material.bundle), 1);
    assert_eq!(material.previous_ca_cert, None);
    assert_eq!(ensure(&client, &settings, issued_at).await.unwrap(), Rotation::default());
    assert_eq!(Material::read(&client).await, material, "a current check wrote something");

    // The allocator serves the Secret as mounted; grpcurl trusting the bundle calls it.
    let logs = tempfile::tempdir().unwrap();
    let mounts = Mounts::new();
    mounts.update(&material);
    let allocator = allocator_on(&mut trust, &mounts, logs.path()).await;
    let writer = trust.token(WATCHER_ACCOUNT, None, AUDIENCE, "1h").await.unwrap();
    let listed = call(&allocator, &mounts.bundle(), &writer, "ListPools", "{}");
    assert_eq!(listed.code, 0, "{listed:?}");
    let served = served_certificate(&allocator, &mounts.bundle()).await.unwrap();
    assert_eq!(served, der_of(&material.serving_cert), "not the watcher's certificate");

    // An announcer's stream, open and past its first snapshot.
    let config = r#"{"config": {"pools": [{"name": "p", "addresses": ["192.0.2.0/28"], "auto_assign": true}], "peers": [{"name": "r", "my_asn": 64512, "peer_asn": 64500, "peer_address": "198.51.100.1"}], "advertisements": [{"name": "a"}]}}"#;
    for (method, data) in [
        ("ApplyConfig", config),
        ("UpdateNode", r#"{"node": {"name": "node-1"}}"#),
        ("SyncServices", "{}"),
    ] {
        let out = call(&allocator, &mounts.bundle(), &writer, method, data);
        assert_eq!(out.code, 0, "{method}: {out:?}");
    }
    let mut announcer = announcer_client(&allocator, &trust, &mounts.bundle(), "node-1").await;
    let request = pb::WatchAssignmentsRequest { node_name: "node-1".into() };
    let mut stream = announcer.watch_assignments(request).await.unwrap().into_inner();
    let snapshot = tokio::time::timeout(WAIT, stream.message()).await;
    let snapshot = snapshot.expect("a first snapshot in time").unwrap().unwrap();
    assert!(
        matches!(snapshot.update, Some(pb::assignment_update::Update::Snapshot(_))),
        "{snapshot:?}"
    );

    // Now: a new serving certificate from the same CA; the bundle stays.
    let renewal = ensure(&client, &settings, now).await.unwrap();
    assert_eq!(renewal, Rotation { serving_issued: true, ..Rotation::default() });
    let renewed = Material::read(&client).await;
    assert_ne!(renewed.serving_cert, material.serving_cert);
    assert_eq!(
        (&renewed.ca_cert, &renewed.bundle, &renewed.versions[0], &renewed.versions[2]),
        (&material.ca_cert, &material.bundle, &material.versions[0], &material.versions[2]),
        "the CA or the bundle changed"
    );
    assert_eq!(ensure(&client, &settings, now).await.unwrap(), Rotation::default());

    // The kubelet updates the mount; the allocator serves the new certificate to new clients.
    mounts.update(&renewed);
    wait_until_served(&allocator, &mounts.bundle(), &renewed.serving_cert).await;
    let log = allocator.daemon.log();
    assert!(log.contains("serving certificate reloaded"), "{log}");
    assert!(!log.contains("new serving certificate rejected"), "{log}");
    let listed = call(&allocator, &mounts.bundle(), &writer, "ListPools", "{}");
    assert_eq!(listed.code, 0, "{listed:?}");

    // The stream opened before still delivers.
    let service = r#"{"service": {"key": {"namespace": "default", "name": "web"}, "ready_endpoint_nodes": ["node-1"]}}"#;
    let upserted = call(&allocator, &mounts.bundle(), &writer, "UpsertService", service);
    assert!(upserted.stdout.contains("192.0.2."), "{upserted:?}");
    // Heartbeats flow regardless; the change itself must come through.
    let update = tokio::time::timeout(WAIT, async {
        loop {
            match stream.message().await {
                Ok(Some(message))
                    if matches!(
                        message.update,
                        Some(pb::assignment_update::Update::Heartbeat(_))
                    ) => {}
                other => return other,
            }
        }
    })
    .await;
    let delivered = matches!(&update, Ok(Ok(Some(message)))
        if matches!(message.update, Some(pb::assignment_update::Update::Delta(_))));
    assert!(delivered, "the open stream did not deliver the change: {update:?}");
}

#[tokio::test]
async fn a_new_ca_is_in_the_bundle_before_it_signs_the_serving_certificate() {
    let (control_plane, mut trust) = trust::standalone(&[]).await.unwrap();
    let client = control_plane.client().await;
    let settings = settings();
    let now = OffsetDateTime::now_utc();
    // The story: the CA was made nine years and an hour ago (it is renewed once less than a
    // year of its ten is left, i.e. an hour ago); the serving certificate was last renewed
    // just before that, the new CA comes `BUNDLE_PROPAGATION` and a second before now, and the
    // serving certificate is re-signed now.
    let renewal = now - (BUNDLE_PROPAGATION + Duration::from_secs(1));
    let settled = renewal + BUNDLE_PROPAGATION + Duration::from_secs(1);
    let ca_made = now - (9 * YEAR + HOUR);
    let last_serving = now - (HOUR + Duration::from_secs(100));
    assert_eq!(
        ensure(&client, &settings, ca_made).await.unwrap(),
        Rotation { new_authority: true, bundle_written: true, serving_issued: true }
    );
    // The first serving certificate expired long ago; the CA is not due yet.
    assert_eq!(
        ensure(&client, &settings, last_serving).await.unwrap(),
        Rotation { serving_issued: true, ..Rotation::default() }
    );
    let old = Material::read(&client).await;
    let logs = tempfile::tempdir().unwrap();
    let mounts = Mounts::new();
    mounts.update(&old);
    let allocator = allocator_on(&mut trust, &mounts, logs.path()).await;
    let writer = trust.token(WATCHER_ACCOUNT, None, AUDIENCE, "1h").await.unwrap();
    let listed = call(&allocator, &mounts.bundle(), &writer, "ListPools", "{}");
    assert_eq!(listed.code, 0, "{listed:?}");

    // Within a year of its end the CA is replaced; the bundle holds both, the serving
    // certificate is not touched: clients first need to trust the new CA.
    let rotation = ensure(&client, &settings, renewal).await.unwrap();
    assert_eq!(
        rotation,
        Rotation { new_authority: true, bundle_written: true, serving_issued: false }
    );
    let rotated = Material::read(&client).await;
    assert_ne!(rotated.ca_cert, old.ca_cert);
    assert_eq!(rotated.previous_ca_cert.as_ref(), Some(&old.ca_cert));
    assert_eq!(certificates_in(&rotated.bundle), 2, "{}", rotated.bundle);
    assert_eq!(rotated.bundle, format!("{}{}", rotated.ca_cert, old.ca_cert));
    assert_eq!(
        (&rotated.serving_cert, &rotated.versions[1]),
        (&old.serving_cert, &old.versions[1]),
        "the serving certificate was re-signed before clients trust the new CA"
    );
    // Still not a second before the bundle has had time to reach every client.
    let almost = renewal + BUNDLE_PROPAGATION - Duration::from_secs(1);
    assert_eq!(ensure(&client, &settings, almost).await.unwrap(), Rotation::default());

    // Clients get the new bundle; the allocator still serves the old CA's certificate, which
    // the bundle still verifies.
    mounts.update(&rotated);
    let listed = call(&allocator, &mounts.bundle(), &writer, "ListPools", "{}");
    assert_eq!(listed.code, 0, "{listed:?}");

    // Once the bundle has settled, the serving certificate is re-signed by the new CA.
    let resigning = ensure(&client, &settings, settled).await.unwrap();
    assert_eq!(resigning, Rotation { serving_issued: true, ..Rotation::default() });
    let resigned = Material::read(&client).await;
    assert_ne!(resigned.serving_cert, old.serving_cert);
    assert_eq!((&resigned.bundle, &resigned.ca_cert), (&rotated.bundle, &rotated.ca_cert));
    assert_eq!(ensure(&client, &settings, settled).await.unwrap(), Rotation::default());

    mounts.update(&resigned);
    // Served, and verified by the new CA alone: it signed it.
    let new_ca_only = mounts.file("new-ca.crt", &rotated.ca_cert);
    wait_until_served(&allocator, &new_ca_only, &resigned.serving_cert).await;
    let listed = call(&allocator, &mounts.bundle(), &writer, "ListPools", "{}");
    assert_eq!(listed.code, 0, "{listed:?}");
    // A client that never got the new bundle would now fail: why the re-signing waits.
    let old_ca_only = mounts.file("old-ca.crt", &old.ca_cert);
    let stale = call(&allocator, &old_ca_only, &writer, "ListPools", "{}");
    assert_ne!(stale.code, 0, "{stale:?}");
}

/// Every watcher replica checks the material, so two that start together both bootstrap: each
/// makes a CA (same name, same second, so the same notAfter), and the last write of each object
/// wins. Found on a real node: the CA and bundle of one, the serving certificate of the other,
/// which no client accepts. The next check (seconds later) puts them back in agreement.
#[tokio::test]
async fn two_watchers_bootstrapping_at_once_agree_at_the_next_check() {
    let (control_plane, _trust) = trust::standalone(&[]).await.unwrap();
    let client = control_plane.client().await;
    let settings = settings();
    let now = OffsetDateTime::now_utc();
    ensure(&client, &settings, now).await.unwrap();
    let first = Material::read(&client).await;
    let server_name = &settings.dns_names()[0];
    assert!(pki::bundle_accepts(&first.bundle, &first.serving_cert, server_name, now));

    // The other watcher's CA and bundle land last; its serving certificate did not.
    let twin = pki::new_authority("metallb-allocator-ca", now, 10 * YEAR).unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let mut ca = secrets.get(CA_SECRET).await.unwrap();
    let data = ca.data.get_or_insert_default();
    data.insert("ca.crt".into(), ByteString(twin.cert.clone().into_bytes()));
    data.insert("ca.key".into(), ByteString(twin.key.clone().into_bytes()));
    secrets.replace(CA_SECRET, &PostParams::default(), &ca).await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let mut bundle = config_maps.get(BUNDLE_CONFIG_MAP).await.unwrap();
    bundle.data.get_or_insert_default().insert("ca.crt".into(), twin.cert.clone());
    config_maps.replace(BUNDLE_CONFIG_MAP, &PostParams::default(), &bundle).await.unwrap();
    let mixed = Material::read(&client).await;
    assert!(!pki::bundle_accepts(&mixed.bundle, &mixed.serving_cert, server_name, now));

    // Although the bundle is brand new, a certificate nobody accepts is replaced at once.
    let rotation = ensure(&client, &settings, now).await.unwrap();
    assert_eq!(rotation, Rotation { serving_issued: true, ..Rotation::default() });
    let agreed = Material::read(&client).await;
    assert_eq!(agreed.ca_cert, twin.cert);
    assert!(pki::bundle_accepts(&agreed.bundle, &agreed.serving_cert, server_name, now));
    assert_eq!(ensure(&client, &settings, now).await.unwrap(), Rotation::default());
}

#[tokio::test]
async fn the_watcher_issues_the_material_itself_with_the_rbac_from_deploy() {
    let (control_plane, trust) = trust::standalone(&[]).await.unwrap();
    // MetalLB's CRDs are served, but the watcher may not list them yet either.
    control_plane.apply_file(&Path::new(REPO).join("deploy/crds.yaml")).await.unwrap();
    control_plane.wait_for_crd("ipaddresspools.metallb.io").await.unwrap();
    let kubeconfig = control_plane
        .kubeconfig_for_user(
            "system:serviceaccount:metallb-system:metallb-watcher",
            &["system:serviceaccounts", "system:serviceaccounts:metallb-system"],
        )
        .unwrap();
    // No allocator listens there: issuing the allocator's TLS does not need one.
    let allocator_url = format!("https://{}", free_loopback_addr());
    let mut args: Vec<String> =
        ["--kubeconfig", &kubeconfig.to_string_lossy(), "--allocator-endpoint", &allocator_url]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
    args.extend(trust.watcher_args().await.unwrap());
    let logs = tempfile::tempdir().unwrap();
    let watcher = Daemon::start("metallb-watcher", &args, &[], logs.path()).unwrap();

    // Started before its RBAC is in place (`kubectl apply` makes no promise of order), the
    // watcher is refused, and tries again soon rather than at the next hourly check.
    let refused = eventually("the watcher refused before its RBAC", WAIT, || async {
        let log = watcher.log();
        let tls_refused = log.contains("cannot check the allocator's TLS material");
        let list_refused = log.contains("cannot list metallb.io resource yet");
        (tls_refused && list_refused).then_some(())
    })
    .await;
    refused.unwrap_or_else(|err| panic!("{err}; watcher log:\n{}", watcher.log()));
    let rbac = Path::new(REPO).join("deploy/rbac-watcher.yaml");
    control_plane.apply_file(&rbac).await.unwrap();

    // With deploy/'s RBAC and nothing more, it creates all three objects.
    let client = control_plane.client().await;
    wait_for_material(&client, &watcher).await;
    let material = Material::read(&client).await;
    assert_eq!(material.bundle, material.ca_cert);
    assert_eq!(certificates_in(&material.serving_cert), 1);
    let log = watcher.log();
    assert!(log.contains("allocator TLS material updated"), "{log}");
    // The metallb.io kinds it could not list at first are watched all the same, not dropped.
    assert!(log.contains("cannot list metallb.io resource yet"), "{log}");
    assert!(!log.contains("not served; not watching it"), "{log}");
    // What the watcher made is current by the watcher's own defaults (90 days).
    let defaults = TlsSettings { serving_validity: 2160 * HOUR, ..settings() };
    let now = OffsetDateTime::now_utc();
    assert_eq!(ensure(&client, &defaults, now).await.unwrap(), Rotation::default());
    assert_eq!(Material::read(&client).await, material);
}

/// Waits for the watcher to create the CA Secret, the serving Secret and the bundle.
async fn wait_for_material(client: &Client, watcher: &Daemon) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let all_there = eventually("the watcher's TLS material in metallb-system", WAIT, || async {
        secrets.get_opt(CA_SECRET).await.ok()??;
        secrets.get_opt(TLS_SECRET).await.ok()??;
        config_maps.get_opt(BUNDLE_CONFIG_MAP).await.ok()??;
        Some(())
    })
    .await;
    all_there.unwrap_or_else(|err| {
        let log = watcher.log();
        // Server-side apply of an object that does not exist yet is authorized as `create`
        // too (of that name), not only as `patch`.
        let hint = match log.contains("cannot create resource") {
            true => "; deploy/rbac-watcher.yaml must grant `create` on these names",
            false => "",
        };
        panic!("{err}{hint}; watcher log:\n{log}")
    });
}
