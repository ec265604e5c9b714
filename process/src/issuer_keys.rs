//! The token issuer's public keys (a JSON Web Key Set), fetched from the issuer's JWKS URL
//! (Kubernetes serves it at `/openid/v1/jwks`) or read from a file, and refreshed: on a timer,
//! and early when a token names a key we do not have (the issuer rotated its keys).
//!
//! Only public keys are handled here; the allocator never talks to the Kubernetes API.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet},
};

/// A refresh triggered by an unknown key id happens at most this often, so that tokens with
/// invented key ids cannot make the allocator hammer the issuer.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// A key set larger than this is refused (Kubernetes publishes a handful of keys).
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// An HTTPS URL, trusting `ca_file` (or the system roots when unset) and presenting the
    /// token in `token_file`, if any (Kubernetes lets every ServiceAccount read its keys).
    Url { url: String, ca_file: Option<PathBuf>, token_file: Option<PathBuf> },
    /// A file holding the JWKS document.
    File(PathBuf),
}

/// A verification key and the one algorithm it may be used with.
#[derive(Clone)]
pub struct VerificationKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Loaded {
    by_id: HashMap<String, VerificationKey>,
    /// Keys without an id, tried for tokens without one.
    anonymous: Vec<VerificationKey>,
    at: Option<Instant>,
    last_error: Option<String>,
}

/// The keys in force and how to refresh them.
pub struct IssuerKeys {
    source: KeySource,
    loaded: RwLock<Loaded>,
    refreshing: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

/// Why no key was found for a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the issuer's keys are not loaded yet ({0})")]
    Unavailable(String),
    #[error("the token is signed by a key the issuer does not publish (kid {0:?})")]
    Unknown(Option<String>),
}

impl IssuerKeys {
    /// Keys from `source`; nothing is loaded until `refresh` runs.
    pub fn new(source: KeySource) -> anyhow::Result<Arc<Self>> {
        let mut http = reqwest::Client::builder().timeout(FETCH_TIMEOUT).use_rustls_tls();
        if let KeySource::Url { ca_file: Some(ca_file), .. } = &source {
            let pem = std::fs::read(ca_file).map_err(|err| {
                anyhow::anyhow!("cannot read the issuer's CA file {}: {err}", ca_file.display())
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                http = http.add_root_certificate(cert);
            }
        }
        Ok(Arc::new(Self {
            source,
            loaded: RwLock::new(Loaded::default()),
            refreshing: tokio::sync::Mutex::new(()),
            http: http.build()?,
        }))
    }

    /// Keeps the keys fresh every `interval` until the last reference is gone.
    pub fn spawn_refresh(self: &Arc<Self>, interval: Duration) {
        let keys = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(keys) = keys.upgrade() else { return };
                let delay = match keys.refresh().await {
                    Ok(()) => interval,
                    // Until the first success, try again soon: nobody can call before it.
                    Err(_) if keys.loaded.read().expect("keys lock").at.is_none() => {
                        Duration::from_secs(2)
                    }
                    Err(_) => MIN_REFRESH_INTERVAL.max(interval / 10),
                };
                drop(keys);
                tokio::time::sleep(delay).await;
            }
        });
    }

    /// Fetches the key set and puts it in force. On failure the previous keys stay.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        match self.fetch().await.and_then(|document| parse(&document)) {
            Ok((by_id, anonymous)) => {
                let count = by_id.len() + anonymous.len();
                *self.loaded.write().expect("keys lock") =
                    Loaded { by_id, anonymous, at: Some(Instant::now()), last_error: None };
                tracing::debug!(keys = count, "issuer keys loaded");
                Ok(())
            }
            Err(err) => {
                let message = format!("{err:#}");
                tracing::warn!(
                    error = message,
                    "cannot load the issuer's keys; the previous ones stay"
                );
                let mut loaded = self.loaded.write().expect("keys lock");
                loaded.last_error = Some(message);
                Err(err)
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<Vec<u8>> {
        match &self.source {
            KeySource::File(path) => std::fs::read(path)
                .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", path.display())),
            KeySource::Url { url, token_file, .. } => {
                let mut request = self.http.get(url);
                if let Some(token_file) = token_file {
                    let token = std::fs::read_to_string(token_file).map_err(|err| {
                        anyhow::anyhow!("cannot read {}: {err}", token_file.display())
                    })?;
                    request = request.bearer_auth(token.trim());
                }
                let response = request.send().await?.error_for_status()?;
                let body = response.bytes().await?;
                anyhow::ensure!(
                    body.len() <= MAX_JWKS_BYTES,
                    "{url}: key set over {MAX_JWKS_BYTES} bytes"
                );
                Ok(body.to_vec())
            }
        }
    }

    /// The key for a token's `kid`. An unknown id triggers a refresh (at most every
    /// `MIN_REFRESH_INTERVAL`) before giving up, so a rotation at the issuer costs no denial.
    pub async fn key_for(&self, kid: Option<&str>) -> Result<Vec<VerificationKey>, KeyError> {
        if let Some(keys) = self.lookup(kid) {
            return Ok(keys);
        }
        let stale = {
            let loaded = self.loaded.read().expect("keys lock");
            loaded.at.is_none_or(|at| at.elapsed() >= MIN_REFRESH_INTERVAL)
        };
        if stale {
            let _ = self.refresh().await;
        }
        if let Some(keys) = self.lookup(kid) {
            return Ok(keys);
        }
        let loaded = self.loaded.read().expect("keys lock");
        match (loaded.at, &loaded.last_error) {
            (None, error) => Err(KeyError::Unavailable(
                error.clone().unwrap_or_else(|| "not fetched yet".into()),
            )),
            _ => Err(KeyError::Unknown(kid.map(String::from))),
        }
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Vec<VerificationKey>> {
        let loaded = self.loaded.read().expect("keys lock");
        match kid {
            Some(kid) => loaded.by_id.get(kid).map(|key| vec![key.clone()]),
            None if !loaded.anonymous.is_empty() => Some(loaded.anonymous.clone()),
            None => None,
        }
    }
}

type ParsedKeys = (HashMap<String, VerificationKey>, Vec<VerificationKey>);

/// Parses a JWKS document; keys of a kind we cannot verify with are skipped.
fn parse(document: &[u8]) -> anyhow::Result<ParsedKeys> {
    let set: JwkSet = serde_json::from_slice(document)
        .map_err(|err| anyhow::anyhow!("not a JSON Web Key Set: {err}"))?;
    let mut by_id = HashMap::new();
    let mut anonymous = Vec::new();
    for jwk in &set.keys {
        let Some(key) = verification_key(jwk) else { continue };
        match &jwk.common.key_id {
            Some(kid) => {
                by_id.insert(kid.clone(), key);
            }
            None => anonymous.push(key),
        }
    }
    anyhow::ensure!(!by_id.is_empty() || !anonymous.is_empty(), "the key set holds no usable key");
    Ok((by_id, anonymous))
}

fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        _ => return None,
    };
    // A key that declares its algorithm is used with that one only; symmetric ones never.
    let algorithm = match jwk.common.key_algorithm {
        Some(declared) => declared.to_string().parse().ok().filter(|a: &Algorithm| {
            !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
        })?,
        None => algorithm,
    };
    Some(VerificationKey { key: DecodingKey::from_jwk(jwk).ok()?, algorithm })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWKS: &str = r#"{"keys":[{"use":"sig","kty":"RSA","kid":"k1","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#;

    #[test]
    fn keys_are_indexed_by_id_with_their_algorithm() {
        let (by_id, anonymous) = parse(RSA_JWKS.as_bytes()).unwrap();
        assert_eq!(by_id["k1"].algorithm, Algorithm::RS256);
        assert!(anonymous.is_empty());
    }

    #[test]
    fn a_document_without_usable_keys_is_refused() {
        assert!(parse(br#"{"keys":[]}"#).unwrap_err().to_string().contains("no usable key"));
        assert!(parse(b"nonsense").unwrap_err().to_string().contains("JSON Web Key Set"));
        let symmetric = r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#;
        assert!(parse(symmetric.as_bytes()).is_err());
    }

    #[tokio::test]
    async fn an_unreadable_source_leaves_keys_unavailable_with_the_reason() {
        let keys = IssuerKeys::new(KeySource::File("/nonexistent/jwks.json".into())).unwrap();
        let err = keys.key_for(Some("k1")).await.err().unwrap();
        assert!(err.to_string().contains("/nonexistent/jwks.json"), "{err}");
    }
}
