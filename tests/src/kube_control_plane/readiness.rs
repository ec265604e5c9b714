//! When the control plane, and a CRD in it, can be used: the conditions the waits poll for.

use anyhow::Context as _;
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::Api;

/// Ready means more than `/readyz`: the `default` namespace, which most tests use, is created
/// by a controller inside the apiserver shortly after readiness is reported.
pub(super) async fn apiserver_ready(client: &kube::Client) -> anyhow::Result<()> {
    let request = http::Request::get("/readyz").body(Vec::new())?;
    client.request_text(request).await.context("/readyz")?;
    Api::<Namespace>::all(client.clone()).get("default").await.context("namespace default")?;
    Ok(())
}

/// The CRD `name` is established and its resource is listed in discovery for every served
/// version (kubectl and discovery-based clients need the latter).
pub(super) async fn crd_usable(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let crd = Api::<CustomResourceDefinition>::all(client.clone()).get(name).await?;
    let established =
        crd.status.as_ref().and_then(|status| status.conditions.as_ref()).is_some_and(
            |conditions| conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"),
        );
    anyhow::ensure!(established, "not established yet");
    let plural = &crd.spec.names.plural;
    for version in crd.spec.versions.iter().filter(|version| version.served) {
        let api_version = format!("{}/{}", crd.spec.group, version.name);
        let served = client.list_api_group_resources(&api_version).await?;
        anyhow::ensure!(
            served.resources.iter().any(|resource| &resource.name == plural),
            "{plural} not yet served in {api_version}"
        );
    }
    Ok(())
}
