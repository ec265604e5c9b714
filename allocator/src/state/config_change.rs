//! Applying a configuration: validated, checked against the leases it would break, then put
//! in force with every service re-evaluated; or kept waiting until the services holding the
//! IPs it would take let go.

use std::{collections::BTreeMap, time::SystemTime};

use metallb_proto::pb;

use super::{AllocatorState, PendingConfig, outcome_to_pb};
use crate::{
    address::Address,
    allocate::home_for,
    config::{Config, local_pref_conflicts, validate},
    leases::Lease,
    service_spec::ServiceKey,
};

impl AllocatorState {
    /// Validates and applies `config`, or explains why not.
    pub fn apply_config(
        &mut self,
        config: &pb::Config,
        source: &str,
        now: SystemTime,
    ) -> pb::ApplyConfigResponse {
        self.apply_validated(validate(config), source, now)
    }

    /// Applies a configuration validated beforehand (outside the state's lock, so that
    /// validating a large one does not hold up reads), or explains why not.
    pub fn apply_validated(
        &mut self,
        validated: Result<Config, Vec<crate::config::ConfigError>>,
        source: &str,
        now: SystemTime,
    ) -> pb::ApplyConfigResponse {
        match self.judge(validated) {
            Verdict::Invalid(errors) => {
                // A newer configuration supersedes one that was waiting.
                self.pending = None;
                self.last_config_rejected = true;
                invalid_response(errors)
            }
            Verdict::Waits(config, blocking) => {
                self.pending = Some(PendingConfig { config, source: source.to_string() });
                self.last_config_rejected = true;
                waiting_response(&blocking)
            }
            Verdict::Ready(config) => {
                let changed = self.install(config, now);
                pb::ApplyConfigResponse { accepted: true, changed, ..Default::default() }
            }
        }
    }

    /// What `apply_validated` would answer, changing nothing (a dry run: for admission
    /// webhooks, and for operators before they apply).
    pub fn check_validated(
        &self,
        validated: Result<Config, Vec<crate::config::ConfigError>>,
    ) -> pb::ApplyConfigResponse {
        match self.judge(validated) {
            Verdict::Invalid(errors) => invalid_response(errors),
            Verdict::Waits(_, blocking) => waiting_response(&blocking),
            Verdict::Ready(_) => pb::ApplyConfigResponse { accepted: true, ..Default::default() },
        }
    }

    fn judge(&self, validated: Result<Config, Vec<crate::config::ConfigError>>) -> Verdict {
        // MetalLB's LOCAL_PREF rule depends on which nodes the advertisements cover.
        let validated = validated.and_then(|config| {
            let conflicts = local_pref_conflicts(&config, self.nodes.values());
            if conflicts.is_empty() { Ok(config) } else { Err(conflicts) }
        });
        match validated {
            Err(errors) => Verdict::Invalid(errors),
            Ok(config) => {
                let blocking = self.blocking(&config);
                if blocking.is_empty() {
                    Verdict::Ready(config)
                } else {
                    Verdict::Waits(config, blocking)
                }
            }
        }
    }

    /// Puts the waiting configuration in force if nothing blocks it any more.
    pub(super) fn retry_pending(&mut self, now: SystemTime) -> Option<pb::DeferredConfig> {
        let pending = self.pending.as_ref()?;
        if !self.blocking(&pending.config).is_empty() {
            return None;
        }
        let pending = self.pending.take()?;
        tracing::info!(
            source = pending.source,
            "a waiting configuration is no longer blocked and takes effect"
        );
        let changed = self.install(pending.config, now);
        Some(pb::DeferredConfig { source: pending.source, changed })
    }

    /// Services holding IPs that `config` would take away, each with the error to report.
    fn blocking(&self, config: &Config) -> Vec<(ServiceKey, pb::ConfigError)> {
        let mut blocking = Vec::new();
        for lease in self.leases.iter() {
            if self.new_home(config, lease).is_some() {
                // A renamed or split pool still offers the IPs to this Service.
                continue;
            }
            let pool = config.pools.get(&lease.pool);
            let lost: Vec<String> = lease
                .ips
                .iter()
                .filter(|ip| !pool.is_some_and(|pool| pool.offers(Address::from_ip(**ip))))
                .map(|ip| ip.to_string())
                .collect();
            if lost.is_empty() {
                continue;
            }
            let message = match pool {
                None => format!(
                    "pool {:?} would be removed, but service {} holds {} from it",
                    lease.pool,
                    lease.service,
                    lost.join(", ")
                ),
                Some(_) => format!(
                    "service {} holds {}, which pool {:?} would no longer offer",
                    lease.service,
                    lost.join(", "),
                    lease.pool
                ),
            };
            let error = pb::ConfigError {
                object: format!("IPAddressPool/{}", lease.pool),
                field: "addresses".into(),
                message,
            };
            blocking.push((lease.service.clone(), error));
        }
        blocking
    }

    /// Puts `config` in force and re-evaluates every service; returns those whose outcome
    /// changed.
    fn install(&mut self, config: Config, now: SystemTime) -> Vec<pb::ServiceOutcome> {
        // Leases whose pool was renamed or split move to the pool that offers their IPs now,
        // so that re-evaluating them keeps the IPs.
        let moved: Vec<Lease> = self
            .leases
            .iter()
            .filter_map(|lease| {
                let home = self.new_home(&config, lease)?;
                (home.name != lease.pool)
                    .then(|| Lease { pool: home.name.clone(), ..lease.clone() })
            })
            .collect();
        for lease in moved {
            self.leases.insert(lease);
        }
        self.config = Some(config);
        self.affected.everything = true;
        self.pending = None;
        self.last_config_rejected = false;
        let before: BTreeMap<ServiceKey, super::Outcome> =
            self.services.keys().map(|key| (key.clone(), self.current_outcome(key))).collect();
        // Services holding leases first, so that keeping them comes before handing out more.
        let mut specs: Vec<_> = self.services.values().cloned().collect();
        specs.sort_by_key(|spec| self.leases.get(&spec.key).is_none());
        let mut changed = Vec::new();
        for spec in specs {
            let key = spec.key.clone();
            let outcome = self.evaluate(spec, now);
            if before.get(&key) != Some(&outcome) {
                changed.push(outcome_to_pb(&key, &outcome));
            }
        }
        changed
    }

    /// The pool of `config` that keeps `lease`'s IPs for its Service: its own pool if it still
    /// offers them, else a pool that now does (renamed or split), as `home_for` decides.
    fn new_home<'a>(&self, config: &'a Config, lease: &Lease) -> Option<&'a crate::config::Pool> {
        let offers_all = |pool: &crate::config::Pool| {
            lease.ips.iter().all(|ip| pool.offers(Address::from_ip(*ip)))
        };
        if let Some(own) = config.pools.get(&lease.pool).filter(|pool| offers_all(pool)) {
            return Some(own);
        }
        let spec = self.services.get(&lease.service)?;
        home_for(config, spec, &lease.ips)
    }

    fn current_outcome(&self, key: &ServiceKey) -> super::Outcome {
        match (self.leases.get(key), self.failures.get(key)) {
            (Some(lease), _) => Ok(lease.clone()),
            (None, Some(failure)) => Err(failure.clone()),
            (None, None) => Err(crate::allocate::Failure {
                reason: pb::FailureReason::Unspecified,
                message: String::new(),
            }),
        }
    }
}

/// What a configuration would do if applied now.
enum Verdict {
    /// Refused, with every reason.
    Invalid(Vec<crate::config::ConfigError>),
    /// Valid, but it would take IPs these Services hold: it waits for them.
    Waits(Config, Vec<(ServiceKey, pb::ConfigError)>),
    /// Takes effect at once.
    Ready(Config),
}

fn invalid_response(errors: Vec<crate::config::ConfigError>) -> pb::ApplyConfigResponse {
    pb::ApplyConfigResponse {
        accepted: false,
        errors: errors.into_iter().map(Into::into).collect(),
        ..Default::default()
    }
}

fn waiting_response(blocking: &[(ServiceKey, pb::ConfigError)]) -> pb::ApplyConfigResponse {
    pb::ApplyConfigResponse {
        accepted: false,
        errors: blocking.iter().map(|(_, error)| error.clone()).collect(),
        blocking_services: blocking.iter().map(|(key, _)| key.to_pb()).collect(),
        changed: Vec::new(),
    }
}
