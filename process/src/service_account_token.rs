//! Verifying a projected ServiceAccount token offline: signature by one of the issuer's keys,
//! issuer, audience, expiry, and the `kubernetes.io` claims that say which ServiceAccount it
//! belongs to and, for a token bound to a pod, which node that pod runs on.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::Validation;
use serde::Deserialize;

use crate::issuer_keys::{IssuerKeys, KeyError};

/// Clock skew tolerated on `exp` and `nbf`, as the Kubernetes API server tolerates it.
const LEEWAY_SECONDS: u64 = 60;
/// Tokens longer than this are refused before any parsing (Kubernetes tokens are ~1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A verified token is trusted again without checking its signature for this long (or until
/// it expires, if sooner). Clients present the same token for a minute at a time, and a
/// signature check costs more than the call it guards.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Verified tokens remembered at once; a full cache is emptied (callers are few: the watcher
/// and one announcer per node).
const VERIFIED_CAPACITY: usize = 16_384;

/// Who a valid token says the caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIdentity {
    /// `namespace/name` of the ServiceAccount.
    pub service_account: String,
    /// The node of the pod the token is bound to, when it is bound to one.
    pub node: Option<String>,
    /// The pod the token is bound to, for logs.
    pub pod: Option<String>,
}

/// Why a token was refused; each becomes an UNAUTHENTICATED status and a metric reason.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not for this allocator: wrong audience (want {0:?})")]
    WrongAudience(String),
    #[error("the token is from another issuer (want {0:?})")]
    WrongIssuer(String),
    #[error("the token's signature does not verify with the issuer's key")]
    BadSignature,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the token is not a Kubernetes ServiceAccount token (no kubernetes.io claims)")]
    NotServiceAccount,
}

impl TokenError {
    /// A short label for the denial metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_token",
            Self::Expired => "expired_token",
            Self::WrongAudience(_) => "wrong_audience",
            Self::WrongIssuer(_) => "wrong_issuer",
            Self::BadSignature => "bad_signature",
            Self::Key(KeyError::Unavailable(_)) => "keys_unavailable",
            Self::Key(KeyError::Unknown(_)) => "unknown_key",
            Self::NotServiceAccount => "not_service_account",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: NamedObject,
    pod: Option<NamedObject>,
    node: Option<NamedObject>,
}

#[derive(Deserialize)]
struct NamedObject {
    name: String,
}

/// Checks tokens for one issuer and audience.
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    keys: std::sync::Arc<IssuerKeys>,
    verified: Mutex<HashMap<String, (TokenIdentity, Instant)>>,
}

impl TokenVerifier {
    /// A verifier of tokens from `issuer` for `audience`, signed by one of `keys`.
    pub fn new(issuer: String, audience: String, keys: std::sync::Arc<IssuerKeys>) -> Self {
        Self { issuer, audience, keys, verified: Mutex::default() }
    }

    /// Who `token` identifies, if it is valid now.
    pub async fn verify(&self, token: &str) -> Result<TokenIdentity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        if let Some((identity, until)) = self.verified.lock().expect("token cache").get(token)
            && Instant::now() < *until
        {
            return Ok(identity.clone());
        }
        let (identity, expires) = self.verify_signed(token).await?;
        let until = Instant::now() + VERIFIED_TTL.min(expires);
        let mut verified = self.verified.lock().expect("token cache");
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(token.to_string(), (identity.clone(), until));
        Ok(identity)
    }

    /// Checks `token` fully: who it identifies and how long until it expires.
    async fn verify_signed(&self, token: &str) -> Result<(TokenIdentity, Duration), TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| TokenError::Malformed(err.to_string()))?;
        let candidates = self.keys.key_for(header.kid.as_deref()).await?;
        let mut last = TokenError::BadSignature;
        for candidate in candidates {
            if candidate.algorithm != header.alg {
                continue;
            }
            let mut validation = Validation::new(candidate.algorithm);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            validation.set_audience(&[&self.audience]);
            validation.set_issuer(&[&self.issuer]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                    let left = Duration::from_secs(data.claims.exp).saturating_sub(now);
                    return Ok((identity(data.claims)?, left));
                }
                Err(err) => last = self.classify(err),
            }
        }
        Err(last)
    }

    fn classify(&self, err: jsonwebtoken::errors::Error) -> TokenError {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => TokenError::Expired,
            ErrorKind::InvalidAudience => TokenError::WrongAudience(self.audience.clone()),
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer(self.issuer.clone()),
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            _ => TokenError::Malformed(err.to_string()),
        }
    }
}

fn identity(claims: Claims) -> Result<TokenIdentity, TokenError> {
    let kubernetes = claims.kubernetes.ok_or(TokenError::NotServiceAccount)?;
    Ok(TokenIdentity {
        service_account: format!("{}/{}", kubernetes.namespace, kubernetes.serviceaccount.name),
        node: kubernetes.node.map(|node| node.name),
        pod: kubernetes.pod.map(|pod| format!("{}/{}", kubernetes.namespace, pod.name)),
    })
}
