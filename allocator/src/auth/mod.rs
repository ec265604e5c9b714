//! Authentication and authorization of every gRPC call: callers present a projected
//! ServiceAccount token, verified offline against the issuer's public keys; the token's
//! ServiceAccount gives the role and a pod binding gives the node; each RPC is allowed to some
//! roles only (`policy`). Applied to the whole server as a tower layer (`layer`).

pub mod layer;
pub mod policy;

// Token verification is shared with the announcer's metrics endpoint.
pub use metallb_process::{issuer_keys as keys, service_account_token as token};

use std::{collections::HashMap, net::SocketAddr};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

pub use self::policy::{Access, Role};
use self::token::{TokenError, TokenVerifier};

/// A caller the layer let through, in the request's extensions for the RPC to see.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `namespace/name` of its ServiceAccount, or "anonymous".
    pub subject: String,
    /// Its role; `None` when authentication is off (`--insecure`), which allows everything.
    pub role: Option<Role>,
    /// The node its token is bound to.
    pub node: Option<String>,
    /// Where the call came from.
    pub address: Option<SocketAddr>,
}

impl Caller {
    /// Whether this caller may act for `node` in a call needing `access`.
    pub fn may_act_for(&self, node: &str, access: Access) -> bool {
        match (self.role, access) {
            (None, _) => true,
            (Some(Role::Announcer), _) => self.node.as_deref() == Some(node),
            (Some(_), Access::OwnNode) => false,
            (Some(_), _) => true,
        }
    }
}

/// Why a call was refused.
#[derive(Debug)]
pub struct Denial {
    /// UNAUTHENTICATED or PERMISSION_DENIED, with what was missing.
    pub status: tonic::Status,
    /// Label of the denial metric.
    pub reason: &'static str,
}

impl Denial {
    fn unauthenticated(reason: &'static str, message: String) -> Self {
        Self { status: tonic::Status::unauthenticated(message), reason }
    }

    /// A PERMISSION_DENIED denial.
    pub fn permission(reason: &'static str, message: String) -> Self {
        Self { status: tonic::Status::permission_denied(message), reason }
    }
}

impl From<TokenError> for Denial {
    fn from(err: TokenError) -> Self {
        Self::unauthenticated(err.reason(), err.to_string())
    }
}

/// Which ServiceAccounts have which role.
#[derive(Clone, Debug, Default)]
pub struct RoleBindings {
    roles: HashMap<String, Role>,
}

impl RoleBindings {
    /// Bindings from lists of `namespace/name`. A ServiceAccount in two lists is an error.
    pub fn new(
        writers: &[String],
        announcers: &[String],
        readers: &[String],
    ) -> anyhow::Result<Self> {
        let mut roles = HashMap::new();
        for (accounts, role) in
            [(writers, Role::Writer), (announcers, Role::Announcer), (readers, Role::Reader)]
        {
            for account in accounts {
                let (namespace, name) = account.split_once('/').unwrap_or_default();
                anyhow::ensure!(
                    !namespace.is_empty() && !name.is_empty() && !name.contains('/'),
                    "{account:?} is not a ServiceAccount as namespace/name"
                );
                if let Some(other) = roles.insert(account.clone(), role)
                    && other != role
                {
                    anyhow::bail!(
                        "{account} is given two roles: {} and {}",
                        other.as_str(),
                        role.as_str()
                    );
                }
            }
        }
        Ok(Self { roles })
    }

    fn role_of(&self, service_account: &str) -> Option<Role> {
        self.roles.get(service_account).copied()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    method: String,
    reason: String,
}

/// Counts denials by method and reason.
#[derive(Clone, Debug, Default)]
pub struct AuthMetrics {
    denied: Family<DenialLabels, Counter>,
}

impl AuthMetrics {
    /// Creates the metric and registers it.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "metallb_allocator_grpc_denied",
            "gRPC calls refused, by method and reason",
            metrics.denied.clone(),
        );
        metrics
    }

    /// Counts one denial of `path`.
    pub fn count(&self, path: &str, reason: &str) {
        let method = path.rsplit('/').next().unwrap_or(path).to_string();
        self.denied.get_or_create(&DenialLabels { method, reason: reason.to_string() }).inc();
    }
}

/// Decides, for each call, who the caller is and whether it may make the call.
pub enum Authenticator {
    /// Tokens are verified and roles enforced.
    Enforcing { verifier: TokenVerifier, bindings: RoleBindings, metrics: AuthMetrics },
    /// `--insecure`: everyone may do everything (local debugging only).
    Off,
}

impl Authenticator {
    /// The caller of a call to `path` carrying `authorization`, if it may make it.
    pub async fn admit(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        address: Option<SocketAddr>,
    ) -> Result<Caller, Denial> {
        let Self::Enforcing { verifier, bindings, metrics } = self else {
            return Ok(Caller { subject: "anonymous".into(), role: None, node: None, address });
        };
        let outcome = admit(verifier, bindings, path, authorization, address).await;
        if let Err(denial) = &outcome {
            metrics.count(path, denial.reason);
            // Debug, not info: whoever reaches the port could otherwise flood the log; the
            // metric counts every denial.
            tracing::debug!(
                path,
                ?address,
                reason = denial.reason,
                message = denial.status.message(),
                "call denied"
            );
        }
        outcome
    }

    /// Counts a denial decided by an RPC itself (wrong node).
    pub fn count_denial(&self, path: &str, reason: &str) {
        if let Self::Enforcing { metrics, .. } = self {
            metrics.count(path, reason);
        }
    }
}

async fn admit(
    verifier: &TokenVerifier,
    bindings: &RoleBindings,
    path: &str,
    authorization: Option<&[u8]>,
    address: Option<SocketAddr>,
) -> Result<Caller, Denial> {
    let access = policy::access(path)
        .ok_or_else(|| Denial::permission("unknown_method", format!("no role may call {path}")))?;
    if access == Access::Public {
        return Ok(Caller { subject: "anonymous".into(), role: None, node: None, address });
    }
    let token = bearer_token(authorization)?;
    let identity = verifier.verify(token).await?;
    let role = bindings.role_of(&identity.service_account).ok_or_else(|| {
        Denial::permission(
            "no_role",
            format!("ServiceAccount {} has no role on the allocator", identity.service_account),
        )
    })?;
    if !policy::allows(role, access) {
        return Err(Denial::permission(
            "wrong_role",
            format!("{} ({}) may not call {path}", identity.service_account, role.as_str()),
        ));
    }
    if role == Role::Announcer && identity.node.is_none() {
        return Err(Denial::permission(
            "no_node_binding",
            format!(
                "{}'s token is not bound to a pod on a node; an announcer needs one (a projected token of its pod)",
                identity.service_account
            ),
        ));
    }
    let caller = Caller {
        subject: identity.service_account,
        role: Some(role),
        node: identity.node,
        address,
    };
    if policy::is_mutating(access) {
        tracing::info!(caller = caller.subject, ?address, path, "mutating call");
    }
    Ok(caller)
}

fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, Denial> {
    let value = authorization.ok_or_else(|| {
        Denial::unauthenticated(
            "missing_token",
            "no token: send a ServiceAccount token as 'authorization: Bearer <token>'".into(),
        )
    })?;
    let value = std::str::from_utf8(value).map_err(|_| {
        Denial::unauthenticated("malformed_token", "authorization is not text".into())
    })?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            Denial::unauthenticated(
                "malformed_token",
                "authorization is not 'Bearer <token>'".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_refuse_malformed_and_doubled_accounts() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(RoleBindings::new(&s(&["ns"]), &[], &[]).is_err());
        assert!(RoleBindings::new(&s(&["ns/a/b"]), &[], &[]).is_err());
        let err = RoleBindings::new(&s(&["ns/a"]), &[], &s(&["ns/a"])).unwrap_err();
        assert!(err.to_string().contains("two roles"), "{err}");
        let bindings = RoleBindings::new(&s(&["ns/w"]), &s(&["ns/a"]), &s(&["ops/r"])).unwrap();
        assert_eq!(bindings.role_of("ops/r"), Some(Role::Reader));
        assert_eq!(bindings.role_of("ops/x"), None);
    }

    #[test]
    fn an_announcer_acts_for_its_own_node_only() {
        let announcer = Caller {
            subject: "s/a".into(),
            role: Some(Role::Announcer),
            node: Some("node-1".into()),
            address: None,
        };
        assert!(announcer.may_act_for("node-1", Access::OwnNode));
        assert!(!announcer.may_act_for("node-2", Access::OwnNode));
        assert!(!announcer.may_act_for("node-2", Access::NodeRead));
        let reader = Caller { role: Some(Role::Reader), node: None, ..announcer };
        assert!(reader.may_act_for("node-2", Access::NodeRead));
        assert!(!reader.may_act_for("node-2", Access::OwnNode));
    }

    #[test]
    fn authorization_header_must_be_a_bearer_token() {
        assert_eq!(bearer_token(None).unwrap_err().reason, "missing_token");
        assert_eq!(bearer_token(Some(b"Basic x")).unwrap_err().reason, "malformed_token");
        assert_eq!(bearer_token(Some(b"Bearer ")).unwrap_err().reason, "malformed_token");
        assert_eq!(bearer_token(Some(b"Bearer abc")).unwrap(), "abc");
    }
}
