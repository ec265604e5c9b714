//! The validating admission webhook, called by the real kube-apiserver: an object that would
//! make the configuration invalid is refused at `kubectl apply` time, with the message the
//! ConfigurationState shows when the same object gets in without the webhook; a valid one is
//! admitted; one that would take a Service's IP is admitted with a warning naming the Service.

use std::time::{Duration, Instant};

use base64::Engine;
use metallb_tests::{
    configuration::{
        CONFIG_NAMESPACE as NS, configuration_state, control_plane_with_crds, start_watcher,
        wait_for_error_summary,
    },
    daemons::Allocator,
    ports::free_loopback_addr,
    tools::cached_tool,
    trust::Trust,
};
use metallb_watcher::pki;

fn pool(name: &str, address: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  addresses: [\"{address}\"]\n"
    )
}

/// The webhook configuration the test registers: every metallb.io object, `Fail` so that a
/// webhook that is not called or does not answer shows as a failure here.
fn webhook_configuration(url: &str, ca_bundle: &str) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: metallb-rs-webhook-test}}
webhooks:
- name: validate.metallb.io
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig: {{url: "{url}", caBundle: "{ca_bundle}"}}
  rules:
  - apiGroups: ["metallb.io"]
    apiVersions: ["*"]
    resources: ["ipaddresspools", "bgppeers", "bgpadvertisements", "l2advertisements", "communities", "bfdprofiles"]
    operations: ["CREATE", "UPDATE", "DELETE"]
    scope: Namespaced
"#
    )
}

#[tokio::test]
async fn kubectl_apply_of_an_invalid_object_is_refused_with_the_configuration_states_message() {
    let logs = tempfile::tempdir().unwrap();
    let control_plane = control_plane_with_crds().await.unwrap();
    control_plane.wait_for_crd("l2advertisements.metallb.io").await.unwrap();
    control_plane.apply_yaml(&pool("first", "192.0.2.0/24")).await.unwrap();

    // The webhook's certificate, for the address the API server calls.
    let now = time::OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);
    let authority = pki::new_authority("webhook test CA", now, day).unwrap();
    let address = free_loopback_addr();
    let serving = pki::issue_serving(&authority, &[], &[address.ip()], now, day).unwrap();
    let (cert, key) = (logs.path().join("webhook.crt"), logs.path().join("webhook.key"));
    std::fs::write(&cert, &serving.cert).unwrap();
    std::fs::write(&key, &serving.key).unwrap();

    let trust = Trust::new(&control_plane, &[]).await.unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    let extra = [
        "--manage-allocator-tls=false",
        "--webhook-addr",
        &address.to_string(),
        "--webhook-cert-file",
        &cert.to_string_lossy(),
        "--webhook-key-file",
        &key.to_string_lossy(),
    ];
    let kubeconfig = control_plane.kubeconfig_path();
    let watcher = start_watcher(kubeconfig, &allocator, &trust, &extra, logs.path()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !watcher.log().contains("serving the admission webhook")
        || configuration_state(&control_plane, "{.status.result}").await != "Valid"
    {
        assert!(Instant::now() < deadline, "watcher not ready:\n{}", watcher.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bundle = base64::engine::general_purpose::STANDARD.encode(&authority.cert);
    let url = format!("https://{address}/validate");
    control_plane.apply_yaml(&webhook_configuration(&url, &bundle)).await.unwrap();

    // A valid pool is admitted (retried briefly: the API server reads the new webhook
    // configuration a moment after it is created).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match control_plane.apply_yaml(&pool("second", "198.51.100.0/24")).await {
            Ok(()) => break,
            Err(err) => {
                assert!(Instant::now() < deadline, "{err}\nwatcher:\n{}", watcher.log());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // One overlapping the first is refused by the API server, naming the object and field.
    let overlapping = pool("overlapping", "192.0.2.128/25");
    let refused = control_plane.apply_yaml(&overlapping).await.unwrap_err().to_string();
    assert!(refused.contains("denied the request"), "{refused}");
    let expected = "IPAddressPool/overlapping addresses[0]: 192.0.2.128/25 overlaps pool \"first\" (192.0.2.0/24)";
    assert!(refused.contains(expected), "{refused}");
    let pools =
        control_plane.kubectl(&["get", "ipaddresspools", "-n", NS, "-o", "name"]).await.unwrap();
    assert!(!pools.contains("overlapping"), "{pools}");
    // An unreadable object is refused with the reader's reason.
    let unreadable = pool("bad-cidr", "192.0.2.0/33");
    let refused = control_plane.apply_yaml(&unreadable).await.unwrap_err().to_string();
    assert!(refused.contains("prefix length 33 is longer than 32"), "{refused}");
    // A field metallb-rs does not implement is refused at admission, naming it and why.
    let in_vrf = format!(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: in-vrf, namespace: {NS}}}\nspec:\n  myASN: 64512\n  peerASN: 64512\n  peerAddress: 172.30.0.3\n  vrf: red\n"
    );
    let refused = control_plane.apply_yaml(&in_vrf).await.unwrap_err().to_string();
    assert!(
        refused.contains("spec.vrf is not supported: sessions run in the node's default VRF"),
        "{refused}"
    );
    // L2Advertisements are checked as the other kinds: a valid one is admitted, one naming a
    // pool twice is refused with the allocator's reason, one with serviceSelectors with the
    // reader's.
    let l2 = |name: &str, spec: &str| {
        format!(
            "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{spec}"
        )
    };
    control_plane
        .apply_yaml(&l2("on-eth0", "  ipAddressPools: [first]\n  interfaces: [eth0]\n"))
        .await
        .unwrap();
    let twice = l2("twice", "  ipAddressPools: [first, second, first]\n");
    let refused = control_plane.apply_yaml(&twice).await.unwrap_err().to_string();
    assert!(refused.contains("denied the request"), "{refused}");
    assert!(
        refused.contains(
            "L2Advertisement/twice ipAddressPools[2]: \"first\" is listed twice (first at ipAddressPools[0])"
        ),
        "{refused}"
    );
    // A selector that cannot be read is refused with the allocator's words.
    let selected = l2(
        "frontend",
        "  serviceSelectors:\n  - matchExpressions: [{key: tier, operator: Sometimes}]\n",
    );
    let refused = control_plane.apply_yaml(&selected).await.unwrap_err().to_string();
    assert!(refused.contains("L2Advertisement/frontend serviceSelectors"), "{refused}");
    let l2s =
        control_plane.kubectl(&["get", "l2advertisements", "-n", NS, "-o", "name"]).await.unwrap();
    assert_eq!(l2s.trim(), "l2advertisement.metallb.io/on-eth0");

    // The endpoint itself, called directly: garbage is refused, an oversized body is refused
    // before it is read whole, and an object of another namespace is admitted unexamined.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(authority.cert.as_bytes()).unwrap())
        // A connection the server closed after a refusal is not reused.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let garbage = http.post(&url).body("not json").send().await.unwrap();
    assert_eq!(garbage.status(), 400, "{:?}", garbage.text().await);
    // Refused as too large (413), or cut off while still sending: never read and judged.
    match http.post(&url).body(vec![b' '; 2 * 1024 * 1024]).send().await {
        Ok(huge) => assert_eq!(huge.status(), 413),
        Err(err) => assert!(err.is_request(), "{err:?}"),
    }
    let elsewhere = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "1",
            "kind": {"group": "metallb.io", "version": "v1beta1", "kind": "IPAddressPool"},
            "resource": {"group": "metallb.io", "version": "v1beta1", "resource": "ipaddresspools"},
            "name": "x",
            "namespace": "somewhere-else",
            "operation": "CREATE",
            "userInfo": {},
            "object": {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                       "metadata": {"name": "x", "namespace": "somewhere-else"},
                       "spec": {"addresses": ["192.0.2.0/33"]}},
        },
    });
    let answer: serde_json::Value =
        http.post(&url).json(&elsewhere).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    // Without the webhook the same object gets in, and the ConfigurationState says the same.
    control_plane
        .kubectl(&["delete", "validatingwebhookconfiguration", "metallb-rs-webhook-test"])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while control_plane.apply_yaml(&overlapping).await.is_err() {
        assert!(Instant::now() < deadline, "still refused without the webhook");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_error_summary(&control_plane, expected, &watcher).await;
}

#[tokio::test]
async fn the_watcher_signs_the_webhooks_certificate_and_keeps_the_ca_bundle_current() {
    let logs = tempfile::tempdir().unwrap();
    let control_plane = control_plane_with_crds().await.unwrap();
    control_plane.apply_yaml(&pool("first", "192.0.2.0/24")).await.unwrap();
    // Registered with no caBundle at all: the watcher fills it in.
    let address = free_loopback_addr();
    let url = format!("https://{address}/validate");
    let registered = webhook_configuration(&url, "").replace(", caBundle: \"\"", "");
    control_plane.apply_yaml(&registered).await.unwrap();

    let trust = Trust::new(&control_plane, &[]).await.unwrap();
    let allocator = Allocator::start(&trust, &[], logs.path()).await.unwrap();
    let extra = [
        "--webhook-addr",
        &address.to_string(),
        "--webhook-configuration",
        "metallb-rs-webhook-test",
    ];
    let kubeconfig = control_plane.kubeconfig_path();
    let watcher = start_watcher(kubeconfig, &allocator, &trust, &extra, logs.path()).await.unwrap();

    // Until the bundle is in and the certificate issued, the webhook fails (Fail policy here);
    // then the overlapping pool is refused by the webhook's verdict.
    let overlapping = pool("overlapping", "192.0.2.128/25");
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let err = control_plane.apply_yaml(&overlapping).await.expect_err("never admitted");
        let err = err.to_string();
        if err.contains("denied the request") {
            break err;
        }
        assert!(Instant::now() < deadline, "{err}\nwatcher:\n{}", watcher.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(refused.contains("IPAddressPool/overlapping addresses[0]"), "{refused}");
    let bundle = control_plane
        .kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            "metallb-rs-webhook-test",
            "-o",
            "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ])
        .await
        .unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.decode(bundle.trim()).unwrap();
    assert!(String::from_utf8_lossy(&bundle).contains("BEGIN CERTIFICATE"));

    // A change that would take a Service's IP is valid: admitted, with a warning naming it.
    control_plane
        .apply_yaml("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ip = control_plane
            .kubectl(&[
                "get",
                "service",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ])
            .await
            .unwrap();
        if ip == "192.0.2.0" {
            break;
        }
        assert!(Instant::now() < deadline, "no IP for web ({ip:?}):\n{}", watcher.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = logs.path().join("moved-pool.yaml");
    std::fs::write(&moved, pool("first", "203.0.113.0/24")).unwrap();
    let applied = std::process::Command::new(cached_tool("kubectl"))
        .arg("--kubeconfig")
        .arg(control_plane.kubeconfig_path())
        .args(["apply", "-f"])
        .arg(&moved)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert!(applied.status.success(), "refused: {stderr}");
    assert!(stderr.contains("Warning") && stderr.contains("default/web"), "{stderr}");
}
