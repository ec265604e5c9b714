//! What a MetalLB install can leave behind that gets in the way, said once at start: its
//! ValidatingWebhookConfiguration sends metallb.io changes to MetalLB's controller with
//! `failurePolicy: Fail`, so once that controller is gone every change is refused.

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::{Api, Client};

/// The name MetalLB's manifests and chart give their webhook configuration.
pub const METALLB_WEBHOOK_CONFIGURATION: &str = "metallb-webhook-configuration";

/// Warns about MetalLB's webhook configuration when it is still installed.
pub async fn warn_about_metallb_webhook(client: &Client) {
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    match configurations.get_opt(METALLB_WEBHOOK_CONFIGURATION).await {
        Ok(Some(_)) => tracing::warn!(
            configuration = METALLB_WEBHOOK_CONFIGURATION,
            "MetalLB's ValidatingWebhookConfiguration metallb-webhook-configuration is still installed: it sends metallb.io changes to MetalLB's controller and refuses them when that is gone; delete it (kubectl delete validatingwebhookconfiguration metallb-webhook-configuration), metallb-rs validates with metallb-rs-webhook"
        ),
        Ok(None) => {}
        Err(err) => {
            tracing::debug!(error = %err, "cannot look for MetalLB's webhook configuration")
        }
    }
}
