//! Smoke tests of the Kubernetes control plane harness: the real kube-apiserver stores Services
//! and allocates their ClusterIPs, serves CRDs applied with kubectl, enforces RBAC on users with
//! their own client certificates, and leaves nothing behind when the handle drops.

use std::{path::Path, time::Instant};

use k8s_openapi::api::{
    authentication::v1::SelfSubjectReview,
    core::v1::{Service, ServicePort, ServiceSpec},
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams},
};
use metallb_tests::kube_control_plane::{ControlPlane, client_from_kubeconfig};

const IPADDRESSPOOL_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ipaddresspools.metallb.io
spec:
  group: metallb.io
  scope: Namespaced
  names:
    kind: IPAddressPool
    listKind: IPAddressPoolList
    plural: ipaddresspools
    singular: ipaddresspool
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const POOL: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first
  namespace: default
spec:
  addresses:
  - 192.0.2.0/28
"#;

const SERVICE_READER_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: service-reader
rules:
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: test-user-reads-services
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: service-reader
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: test-user
"#;

async fn start() -> ControlPlane {
    let started = Instant::now();
    let control_plane = ControlPlane::start().await.expect("starting the control plane");
    eprintln!(
        "control plane ready at {} after {:?}",
        control_plane.server_url(),
        started.elapsed()
    );
    control_plane
}

#[tokio::test]
async fn load_balancer_service_gets_a_cluster_ip() {
    let control_plane = start().await;
    let services: Api<Service> = Api::namespaced(control_plane.client().await, "default");

    let service = Service {
        metadata: ObjectMeta { name: Some("web".into()), ..ObjectMeta::default() },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ports: Some(vec![ServicePort { port: 80, ..ServicePort::default() }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    services.create(&PostParams::default(), &service).await.expect("creating the Service");

    let stored = services.get("web").await.expect("reading the Service back");
    let spec = stored.spec.expect("a stored Service has a spec");
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let cluster_ip: std::net::Ipv4Addr =
        spec.cluster_ip.expect("a ClusterIP").parse().expect("the ClusterIP is an IPv4 address");
    // SERVICE_CLUSTER_IP_RANGE is 10.96.0.0/16.
    assert_eq!(cluster_ip.octets()[..2], [10, 96], "{cluster_ip} outside the service range");
    // Nothing but a load-balancer implementation (us, later) may fill this in.
    let ingress = stored.status.and_then(|status| status.load_balancer?.ingress);
    assert!(ingress.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn applied_crd_can_be_used() {
    let control_plane = start().await;
    control_plane.apply_yaml(IPADDRESSPOOL_CRD).await.expect("applying the CRD");
    control_plane.wait_for_crd("ipaddresspools.metallb.io").await.expect("CRD established");
    control_plane.apply_yaml(POOL).await.expect("applying an IPAddressPool");

    let gvk = GroupVersionKind::gvk("metallb.io", "v1beta1", "IPAddressPool");
    let pools: Api<DynamicObject> = Api::namespaced_with(
        control_plane.client().await,
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "ipaddresspools"),
    );
    let pool = pools.get("first").await.expect("reading the IPAddressPool");
    assert_eq!(pool.data["spec"]["addresses"][0], "192.0.2.0/28");

    let listed = control_plane.kubectl(&["get", "ipaddresspools", "-A", "-o", "name"]).await;
    assert_eq!(listed.expect("kubectl get").trim(), "ipaddresspool.metallb.io/first");
}

#[tokio::test]
async fn rbac_applies_to_users_with_their_own_certificates() {
    let control_plane = start().await;
    let kubeconfig = control_plane.kubeconfig_for_user("test-user", &[]).expect("user kubeconfig");
    let services: Api<Service> =
        Api::all(client_from_kubeconfig(&kubeconfig).await.expect("user client"));

    // The apiserver sees the user and groups the certificate names (two groups is the most
    // kubeconfig_for_user can put in one certificate).
    let grouped = control_plane
        .kubeconfig_for_user("grouped-user", &["team-a", "team-b"])
        .expect("kubeconfig with groups");
    let reviews: Api<SelfSubjectReview> =
        Api::all(client_from_kubeconfig(&grouped).await.expect("grouped user client"));
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("asking who the grouped user is");
    let user_info = review.status.and_then(|status| status.user_info).expect("user info");
    assert_eq!(user_info.username.as_deref(), Some("grouped-user"));
    let groups = user_info.groups.unwrap_or_default();
    for group in ["team-a", "team-b", "system:authenticated"] {
        assert!(groups.iter().any(|g| g == group), "{group} missing from {groups:?}");
    }

    match services.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden before the binding, got {other:?}"),
    }

    control_plane.apply_yaml(SERVICE_READER_RBAC).await.expect("applying the role and binding");
    // RBAC reads roles from an informer, so the grant takes effect a moment later.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match services.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 403 && Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(err) => panic!("listing Services after the binding: {err}"),
        }
    }
}

#[tokio::test]
async fn nothing_outlives_a_panicking_test() {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let test = tokio::spawn(async move {
        let control_plane = start().await;
        let _ = sender.send((control_plane.process_ids(), control_plane.dir().to_path_buf()));
        panic!("a test failing while it holds the control plane");
    });
    assert!(test.await.expect_err("the task panicked").is_panic());

    let (pids, dir) = receiver.await.expect("the control plane started");
    for pid in pids {
        // Dropping the handle waits for the processes, so not even a zombie is left.
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still exists");
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
}
