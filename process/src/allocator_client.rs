//! How the watcher and the announcers reach the allocator: over TLS, trusting the CA bundle in
//! a file, and presenting a ServiceAccount token read from a file on every call.
//!
//! Both files are mounted by the kubelet and change under a running process: the CA bundle
//! when the watcher rotates the allocator's certificate authority, the projected token every
//! hour or so. So the bundle is read again on every (re)connection and the token again when
//! the copy in memory is older than `TOKEN_REREAD_AFTER`.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use metallb_proto::pb::allocator_client::AllocatorClient;
use tonic::{
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::propagation;

/// The kubelet refreshes projected tokens long before they expire (at 80% of their life), so
/// reading the file once a minute always presents a valid token.
const TOKEN_REREAD_AFTER: Duration = Duration::from_secs(60);

/// The longest a call may take (headers of a stream, the whole answer of a unary call): a full
/// sync of tens of thousands of Services takes seconds, a frozen allocator forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of a process that calls the allocator.
#[derive(Args, Clone, Debug)]
pub struct AllocatorClientArgs {
    /// The allocator's gRPC endpoint, as a URL (https://, or http:// with --insecure). Several,
    /// comma-separated, name the replicas one by one: the watcher feeds them all, an announcer
    /// follows whichever answers.
    #[arg(
        long,
        env = "METALLB_ALLOCATOR_ENDPOINT",
        default_value = "https://metallb-allocator.metallb-system.svc:50051",
        value_parser = endpoint_url,
        value_delimiter = ','
    )]
    pub allocator_endpoint: Vec<String>,

    /// PEM bundle of the certificate authorities the allocator's certificate must chain to
    /// (the ConfigMap metallb-allocator-ca, mounted). Read again on every connection.
    #[arg(
        long,
        env = "METALLB_ALLOCATOR_CA_FILE",
        default_value = "/etc/metallb/allocator-ca/ca.crt"
    )]
    pub allocator_ca_file: PathBuf,

    /// The name the allocator's certificate must carry. Unset: the endpoint's host name.
    #[arg(long, env = "METALLB_ALLOCATOR_SERVER_NAME")]
    pub allocator_server_name: Option<String>,

    /// ServiceAccount token presented to the allocator (a projected token whose audience is
    /// the allocator's). Read again every minute, as the kubelet rotates it.
    #[arg(
        long,
        env = "METALLB_ALLOCATOR_TOKEN_FILE",
        default_value = "/var/run/secrets/metallb/allocator/token"
    )]
    pub allocator_token_file: PathBuf,

    /// Local debugging only: plaintext and no token, for an allocator started with --insecure.
    #[arg(long, env = "METALLB_INSECURE")]
    pub insecure: bool,
}

impl AllocatorClientArgs {
    /// Checks the flags together: an `http://` endpoint needs `--insecure`. For `main`, so that
    /// a misconfiguration exits with the usage code before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.allocator_endpoint.is_empty() {
            return Err("--allocator-endpoint names no endpoint".into());
        }
        for endpoint in &self.allocator_endpoint {
            if !self.insecure && !endpoint.starts_with("https://") {
                return Err(format!(
                    "--allocator-endpoint {endpoint} is not https://; plaintext is for --insecure debugging only"
                ));
            }
        }
        Ok(())
    }

    /// The endpoints, comma-separated, for logs.
    pub fn endpoints_text(&self) -> String {
        self.allocator_endpoint.join(",")
    }
}

fn endpoint_url(value: &str) -> Result<String, String> {
    Endpoint::from_shared(value.to_string())
        .map(|_| value.to_string())
        .map_err(|err| format!("not a valid URL such as https://host:50051 ({err})"))
}

/// An allocator client whose every call carries the caller's token and trace context.
pub type Client = AllocatorClient<InterceptedService<Channel, CallCredentials>>;

/// Opens connections to the allocator as the flags say. With several endpoints, `connect`
/// starts from the one that worked last (shared by clones) and `move_on` makes the next one
/// first.
#[derive(Clone, Debug)]
pub struct AllocatorConnector {
    args: AllocatorClientArgs,
    credentials: CallCredentials,
    preferred: Arc<AtomicUsize>,
}

impl AllocatorConnector {
    /// A connector for `args`. With `--insecure`, says loudly that nothing is protected.
    pub fn new(args: &AllocatorClientArgs) -> anyhow::Result<Self> {
        args.validate().map_err(|message| anyhow::anyhow!(message))?;
        if args.insecure {
            tracing::warn!(
                endpoint = args.endpoints_text(),
                "INSECURE: talking to the allocator in plaintext without a token; anyone on the \
                 network can read and forge this traffic. For local debugging only."
            );
        }
        let token = (!args.insecure).then(|| Arc::new(TokenFile::new(&args.allocator_token_file)));
        Ok(Self {
            args: args.clone(),
            credentials: CallCredentials { token },
            preferred: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// One connector per endpoint, sharing the credentials: the replicas, each on its own.
    pub fn replicas(&self) -> Vec<AllocatorConnector> {
        self.args
            .allocator_endpoint
            .iter()
            .map(|endpoint| Self {
                args: AllocatorClientArgs {
                    allocator_endpoint: vec![endpoint.clone()],
                    ..self.args.clone()
                },
                credentials: self.credentials.clone(),
                preferred: Arc::new(AtomicUsize::new(0)),
            })
            .collect()
    }

    /// The endpoints this connector tries, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.args.allocator_endpoint
    }

    /// The endpoint `connect` tries first.
    pub fn preferred(&self) -> &str {
        let endpoints = self.endpoints();
        &endpoints[self.preferred.load(Ordering::Relaxed) % endpoints.len()]
    }

    /// Makes the endpoint after the preferred one first: the preferred one let the caller down
    /// (a broken stream, a replica that is not ready).
    pub fn move_on(&self) {
        let next = (self.preferred.load(Ordering::Relaxed) + 1) % self.endpoints().len();
        self.preferred.store(next, Ordering::Relaxed);
    }

    /// The preferred endpoint with TLS set up from the CA bundle as it is now on disk.
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        self.endpoint_for(self.preferred())
    }

    fn endpoint_for(&self, url: &str) -> anyhow::Result<Endpoint> {
        let endpoint = Endpoint::from_shared(url.to_string())?;
        if self.args.insecure {
            return Ok(endpoint);
        }
        let bundle = std::fs::read(&self.args.allocator_ca_file).map_err(|err| {
            anyhow::anyhow!(
                "cannot read the allocator's CA bundle {}: {err}",
                self.args.allocator_ca_file.display()
            )
        })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(bundle));
        if let Some(name) = &self.args.allocator_server_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(endpoint.tls_config(tls)?)
    }

    /// Connects now, each endpoint within `timeout`, from the preferred one on; the first that
    /// accepts becomes the preferred one. Calls on the client fail after `CALL_TIMEOUT`, so a
    /// frozen allocator is noticed rather than waited for.
    pub async fn connect(&self, timeout: Duration) -> anyhow::Result<Client> {
        let count = self.endpoints().len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for offset in 0..count {
            let index = (start + offset) % count;
            let url = &self.endpoints()[index];
            let attempt = async {
                let endpoint =
                    self.endpoint_for(url)?.connect_timeout(timeout).timeout(CALL_TIMEOUT);
                anyhow::Ok(endpoint.connect().await?)
            };
            match attempt.await {
                Ok(channel) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(self.client(channel));
                }
                Err(err) => failures.push(format!("connecting to {url}: {err:?}")),
            }
        }
        anyhow::bail!("{}", failures.join("; "))
    }

    /// A client that connects on first use (and reconnects when the connection breaks), each
    /// call bounded by `timeout`.
    pub fn connect_lazy(&self, timeout: Duration) -> anyhow::Result<Client> {
        let channel = self.endpoint()?.connect_timeout(timeout).timeout(timeout).connect_lazy();
        Ok(self.client(channel))
    }

    fn client(&self, channel: Channel) -> Client {
        AllocatorClient::with_interceptor(channel, self.credentials.clone())
    }
}

/// Adds the caller's token (`authorization: Bearer ...`) and the current trace context to
/// every request.
#[derive(Clone, Debug)]
pub struct CallCredentials {
    token: Option<Arc<TokenFile>>,
}

impl Interceptor for CallCredentials {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut request = propagation::inject_current_context(request)?;
        if let Some(token) = &self.token {
            let value =
                MetadataValue::try_from(format!("Bearer {}", token.current()?)).map_err(|_| {
                    tonic::Status::unauthenticated("the token file holds invalid characters")
                })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// A token file and the last copy read from it.
#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(String, Instant)>>,
}

impl TokenFile {
    fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), cached: Mutex::new(None) }
    }

    /// The token, read again when the copy is old. A failed re-read keeps the old copy (the
    /// kubelet swaps the file atomically, so a failure is transient); with no copy at all the
    /// call fails locally, saying which file is missing.
    fn current(&self) -> Result<String, tonic::Status> {
        let mut cached = self.cached.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((token, read_at)) = cached.as_ref()
            && read_at.elapsed() < TOKEN_REREAD_AFTER
        {
            return Ok(token.clone());
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) if !text.trim().is_empty() => {
                let token = text.trim().to_string();
                *cached = Some((token.clone(), Instant::now()));
                Ok(token)
            }
            outcome => {
                let reason = match outcome {
                    Ok(_) => "it is empty".to_string(),
                    Err(err) => err.to_string(),
                };
                match cached.as_ref() {
                    Some((token, _)) => {
                        tracing::warn!(path = %self.path.display(), reason, "cannot re-read the token file; using the previous token");
                        Ok(token.clone())
                    }
                    None => Err(tonic::Status::unauthenticated(format!(
                        "no token to present: cannot read {}: {reason}",
                        self.path.display()
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(endpoint: &str, insecure: bool) -> AllocatorClientArgs {
        AllocatorClientArgs {
            allocator_endpoint: vec![endpoint.into()],
            allocator_ca_file: "/nonexistent/ca.crt".into(),
            allocator_server_name: None,
            allocator_token_file: "/nonexistent/token".into(),
            insecure,
        }
    }

    #[test]
    fn plaintext_endpoint_is_refused_unless_insecure() {
        let err = AllocatorConnector::new(&args("http://a:1", false)).unwrap_err();
        assert!(err.to_string().contains("--insecure"), "{err}");
        assert!(AllocatorConnector::new(&args("http://a:1", true)).is_ok());
    }

    #[test]
    fn missing_ca_bundle_is_named() {
        let connector = AllocatorConnector::new(&args("https://a:1", false)).unwrap();
        let err = connector.endpoint().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }

    #[test]
    fn token_is_sent_and_reread_only_when_old() {
        let dir = std::env::temp_dir().join(format!("mlbrs-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let file = TokenFile::new(&path);
        assert_eq!(file.current().unwrap(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(file.current().unwrap(), "first", "cached within the re-read interval");
        file.cached.lock().unwrap().as_mut().unwrap().1 -= TOKEN_REREAD_AFTER;
        assert_eq!(file.current().unwrap(), "second");
        std::fs::remove_file(&path).unwrap();
        file.cached.lock().unwrap().as_mut().unwrap().1 -= TOKEN_REREAD_AFTER;
        assert_eq!(file.current().unwrap(), "second", "a vanished file keeps the last token");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_token_at_all_fails_the_call_naming_the_file() {
        let status = TokenFile::new(Path::new("/nonexistent/token")).current().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("/nonexistent/token"), "{}", status.message());
    }
}
