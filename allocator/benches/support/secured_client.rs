//! What the secured figures need without a cluster: a CA and serving certificate, an issuer
//! key published as a JWKS file, and tokens shaped like Kubernetes' projected ServiceAccount
//! tokens signed with it. Verification costs the same as with kube-apiserver's keys.

use std::{path::Path, sync::Arc, time::Duration};

use base64::Engine as _;
use metallb_allocator::{
    auth::{
        AuthMetrics, Authenticator, RoleBindings,
        keys::{IssuerKeys, KeySource},
        token::TokenVerifier,
    },
    limits::{DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_STREAMS_PER_CALLER},
    server::{Security, Transport},
    tls::{CertificateFiles, ReloadingCertificate},
};
use metallb_process::{AllocatorClientArgs, AllocatorConnector};
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

pub const ISSUER: &str = "https://issuer.bench";
pub const AUDIENCE: &str = "metallb-allocator";
pub const SERVER_NAME: &str = "metallb-allocator.metallb-system.svc";

/// Files and keys of one secured setup.
pub struct Secured {
    pub dir: tempfile::TempDir,
    signing_key: Vec<u8>,
}

impl Secured {
    pub fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let serving_key = KeyPair::generate().unwrap();
        let serving = CertificateParams::new(vec![SERVER_NAME.to_string()])
            .unwrap()
            .signed_by(&serving_key, &issuer)
            .unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.crt"), serving.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), serving_key.serialize_pem()).unwrap();

        let token_key = KeyPair::generate().unwrap();
        let point = token_key.public_key_raw();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "bench",
            "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
        }]});
        std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
        Self { dir, signing_key: token_key.serialize_der() }
    }

    /// The server side: TLS from the files, tokens checked against the JWKS file.
    pub async fn security(&self) -> Security {
        let keys = IssuerKeys::new(KeySource::File(self.dir.path().join("jwks.json"))).unwrap();
        keys.refresh().await.unwrap();
        let verifier = TokenVerifier::new(ISSUER.into(), AUDIENCE.into(), keys);
        let bindings = RoleBindings::new(
            &["metallb-system/metallb-watcher".into()],
            &["metallb-system/metallb-announcer".into()],
            &[],
        )
        .unwrap();
        let metrics = AuthMetrics::register(&mut Registry::default());
        let files = CertificateFiles {
            cert: self.dir.path().join("tls.crt"),
            key: self.dir.path().join("tls.key"),
        };
        Security {
            transport: Transport::Tls(ReloadingCertificate::load(files).await.unwrap()),
            authenticator: Arc::new(Authenticator::Enforcing { verifier, bindings, metrics }),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_streams_per_caller: DEFAULT_MAX_STREAMS_PER_CALLER,
            keepalive: Default::default(),
        }
    }

    /// A token file for ServiceAccount `account`, bound to a pod on `node` if given.
    pub fn token_file(&self, account: &str, node: Option<&str>) -> std::path::PathBuf {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let now = now.as_secs() as i64;
        let mut kubernetes = serde_json::json!({
            "namespace": "metallb-system",
            "serviceaccount": {"name": account, "uid": "0"},
        });
        if let Some(node) = node {
            kubernetes["pod"] = serde_json::json!({"name": format!("pod-{node}"), "uid": "1"});
            kubernetes["node"] = serde_json::json!({"name": node, "uid": "2"});
        }
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": [AUDIENCE], "sub": format!("system:serviceaccount:metallb-system:{account}"),
            "iat": now, "nbf": now, "exp": now + 3600, "kubernetes.io": kubernetes,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("bench".into());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.signing_key);
        let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let path = self.dir.path().join(format!("token-{account}-{}", node.unwrap_or("any")));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// A connector as the watcher or an announcer makes one.
    pub fn connector(&self, endpoint: &str, token_file: &Path) -> AllocatorConnector {
        AllocatorConnector::new(&AllocatorClientArgs {
            allocator_endpoint: vec![endpoint.to_string()],
            allocator_ca_file: self.dir.path().join("ca.crt"),
            allocator_server_name: Some(SERVER_NAME.into()),
            allocator_token_file: token_file.to_path_buf(),
            insecure: false,
        })
        .unwrap()
    }
}

/// How long connecting takes, bounded.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
