//! The configurations users already have are accepted by the allocator's validation once read:
//! MetalLB's documented examples of the ConfigMap (v0.1 and later) and of the metallb.io
//! resources, and the examples deploy/ ships.

use std::collections::BTreeMap;

use metallb_allocator::config::validate;
use metallb_config_formats::{
    configmap,
    resources::{Resources, SecretReference},
};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config-formats/tests/examples");

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{EXAMPLES}/{name}")).unwrap()
}

#[test]
fn configmaps_of_every_format_validate() {
    for name in ["v0.1-tutorial.yaml", "configmap-0.13.yaml"] {
        let config = configmap::parse(name, &example(name)).unwrap();
        let validated = validate(&config).unwrap_or_else(|errors| panic!("{name}: {errors:?}"));
        assert!(!validated.pools.is_empty() && !validated.advertisements.is_empty(), "{name}");
    }
}

#[test]
fn documented_resources_validate_with_aliases_and_selectors_resolved() {
    let secrets = BTreeMap::from([(
        SecretReference { name: "secretname".into(), namespace: "metallb-system".into() },
        "s3cret".to_string(),
    )]);
    let mut config =
        Resources::from_yaml(&example("metallb-io.yaml")).unwrap().to_config(&secrets).unwrap();
    // MetalLB's example asks for BFD echo, which this speaker refuses by name (asynchronous
    // mode only); everything else in it is accepted.
    let refused = validate(&config).unwrap_err();
    let fields: Vec<&str> = refused.iter().map(|error| error.field.as_str()).collect();
    assert_eq!(fields, ["echoMode"], "{refused:?}");
    config.bfd_profiles.iter_mut().for_each(|profile| profile.echo_mode = false);
    let validated = validate(&config).unwrap_or_else(|errors| panic!("{errors:?}"));
    let by_label = validated.advertisements.iter().find(|ad| ad.name == "by-label").unwrap();
    assert_eq!(by_label.pools, ["first-pool"]);
    let local = validated.advertisements.iter().find(|ad| ad.name == "local").unwrap();
    assert_eq!(local.communities.len(), 2);
}

#[test]
fn the_deploy_examples_validate() {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples");
    let read = |name: &str| std::fs::read_to_string(format!("{deploy}/{name}")).unwrap();
    let manifest: serde_json::Value = serde_saphyr::from_str(&read("configmap-v0.1.yaml")).unwrap();
    let text = manifest["data"]["config"].as_str().expect("the ConfigMap's data.config");
    let from_configmap = configmap::parse("configmap-v0.1.yaml", text).unwrap();
    let from_resources =
        Resources::from_yaml(&read("resources.yaml")).unwrap().to_config(&BTreeMap::new()).unwrap();
    for (name, config) in
        [("configmap-v0.1.yaml", from_configmap), ("resources.yaml", from_resources)]
    {
        let validated = validate(&config).unwrap_or_else(|errors| panic!("{name}: {errors:?}"));
        assert_eq!(validated.advertisements.len(), 1, "{name}");
        let advertisement = &validated.advertisements[0];
        assert_eq!(advertisement.pools, ["production"], "{name}");
        let communities: Vec<String> =
            advertisement.communities.iter().map(ToString::to_string).collect();
        assert_eq!(communities, ["65535:65281"], "{name}: the alias resolves");
    }
}
