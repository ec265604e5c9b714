//! TLS for the gRPC port: a serving certificate read from files and reloaded when they change
//! (the kubelet swaps a mounted Secret in place when the watcher rotates it), and the stream
//! of accepted TLS connections tonic serves.
//!
//! A rotation affects only new handshakes: connections already open keep their session, so an
//! announcer's assignment stream is not dropped by it.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        server::{ClientHello, ResolvesServerCert},
        sign::CertifiedKey,
    },
    server::TlsStream,
};
use tokio_stream::wrappers::ReceiverStream;

/// How often the certificate files are checked for a new version.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long a client may take to finish its handshake; a slow or silent one is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; further connections wait in the kernel's backlog.
const MAX_PENDING_HANDSHAKES: usize = 256;

/// Where the serving certificate and its key are.
#[derive(Clone, Debug)]
pub struct CertificateFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The serving certificate in force; swapped when the files change.
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: CertificateFiles,
    current: RwLock<(PemPair, Arc<CertifiedKey>)>,
}

impl ReloadingCertificate {
    /// Loads the certificate, waiting for the files while they are absent (a Secret mounted
    /// with `optional: true` appears once the watcher has issued it). Invalid files are an
    /// error: they will not fix themselves.
    pub async fn load(files: CertificateFiles) -> anyhow::Result<Arc<Self>> {
        let mut waited = false;
        let (bytes, key) = loop {
            match read_pair(&files) {
                Ok(pair) => {
                    let key = certified_key(&pair, &files)?;
                    break (pair, key);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    if !waited {
                        tracing::warn!(cert = %files.cert.display(), "waiting for the serving certificate to appear");
                        waited = true;
                    }
                    tokio::time::sleep(RELOAD_CHECK_INTERVAL).await;
                }
                Err(err) => anyhow::bail!("cannot read {}: {err}", files.cert.display()),
            }
        };
        let certificate = Arc::new(Self { files, current: RwLock::new((bytes, key)) });
        tokio::spawn(watch_files(Arc::downgrade(&certificate)));
        Ok(certificate)
    }

    /// Reloads if the files changed. A pair that does not parse (caught mid-rotation, or
    /// broken) is logged and the certificate in force stays.
    pub fn reload_if_changed(&self) -> bool {
        let Ok(bytes) = read_pair(&self.files) else { return false };
        if self.current.read().expect("certificate lock").0 == bytes {
            return false;
        }
        match certified_key(&bytes, &self.files) {
            Ok(key) => {
                *self.current.write().expect("certificate lock") = (bytes, key);
                tracing::info!(cert = %self.files.cert.display(), "serving certificate reloaded");
                true
            }
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "new serving certificate rejected; the previous one stays in force"
                );
                false
            }
        }
    }

    /// A TLS acceptor that serves whatever certificate is in force, speaking HTTP/2 only.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").1.clone())
    }
}

async fn watch_files(certificate: std::sync::Weak<ReloadingCertificate>) {
    loop {
        tokio::time::sleep(RELOAD_CHECK_INTERVAL).await;
        let Some(certificate) = certificate.upgrade() else { return };
        certificate.reload_if_changed();
    }
}

/// The contents of both files, compared as a whole so that a change to either is seen.
type PemPair = (Vec<u8>, Vec<u8>);

fn read_pair(files: &CertificateFiles) -> std::io::Result<PemPair> {
    Ok((std::fs::read(&files.cert)?, std::fs::read(&files.key)?))
}

fn certified_key(
    (cert_pem, key_pem): &PemPair,
    files: &CertificateFiles,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| anyhow::anyhow!("{}: {err}", files.cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", files.cert.display());
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|err| anyhow::anyhow!("{}: {err}", files.key.display()))?;
    let provider = tokio_rustls::rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|err| {
        anyhow::anyhow!("{} and {} do not match: {err}", files.cert.display(), files.key.display())
    })?;
    Ok(Arc::new(key))
}

/// Connections accepted on `listener` that completed a TLS handshake, for tonic. Each
/// handshake runs in its own task, so a client that never finishes one holds up nobody;
/// failures (a plaintext client, a client that does not trust the CA) are logged at debug.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<std::io::Result<TlsStream<tokio::net::TcpStream>>> {
    let (sender, receiver) = mpsc::channel(16);
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = pending.clone().acquire_owned().await else { return };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "accepting a gRPC connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = sender.closed() => return,
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}
