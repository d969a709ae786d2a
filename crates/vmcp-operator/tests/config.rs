//! The rendered runtime configuration and its validation, as tables.

use serde_json::{Value, json};
use vmcp_operator::config::{ConfigInputs, render_config, service_hosts};

fn render(config: Option<Value>) -> vmcp_operator::config::RenderedConfig {
    render_config(&ConfigInputs {
        name: "demo",
        namespace: "team",
        group: "tools",
        config: config.as_ref(),
        cluster_domain: "cluster.local",
        cluster_ip: Some("10.0.0.7"),
        requires_oidc: false,
    })
}

#[test]
fn the_object_decides_name_group_and_hosts() {
    let rendered = render(None);
    let config = rendered.parsed.expect("valid");
    assert_eq!(config.name, "demo");
    assert_eq!(config.group_ref.as_deref(), Some("tools"));
    let mut want = service_hosts("demo", "team", "cluster.local");
    want.push("10.0.0.7".into());
    assert_eq!(config.server.allowed_hosts, want);
}

#[test]
fn the_config_keeps_what_the_author_wrote() {
    let rendered = render(Some(json!({
        "name": "shown-name",
        "groupRef": "ignored",
        "server": { "allowedHosts": ["gw.example.com", "vmcp-demo"] },
        "operational": { "failureHandling": { "statusReportingInterval": "10s" } },
    })));
    let config = rendered.parsed.clone().expect("valid");
    assert_eq!(
        config.name, "shown-name",
        "spec.config.name wins over the object's name"
    );
    assert_eq!(
        config.group_ref.as_deref(),
        Some("tools"),
        "spec.groupRef always wins"
    );
    assert_eq!(config.server.allowed_hosts[0], "gw.example.com");
    assert_eq!(
        config
            .server
            .allowed_hosts
            .iter()
            .filter(|h| *h == "vmcp-demo")
            .count(),
        1,
        "no duplicate host"
    );
    assert_eq!(
        rendered.status_reporting_interval(),
        std::time::Duration::from_secs(10)
    );
}

#[test]
fn invalid_configs_name_their_field_paths() {
    // (spec.config, a fragment every message list must contain)
    let table = [
        (json!({ "unknownField": 1 }), "spec.config"),
        (
            json!({ "operational": { "failureHandling": { "healthCheckInterval": "5s", "healthCheckTimeout": "10s" } } }),
            "spec.config.operational.failureHandling",
        ),
        (
            json!({ "aggregation": { "conflictResolution": "sometimes" } }),
            "spec.config.aggregation.conflictResolution",
        ),
        (json!({ "server": "not-an-object" }), "spec.config.server"),
        (json!([1, 2]), "spec.config: must be an object"),
    ];
    for (config, fragment) in table {
        let rendered = render(Some(config.clone()));
        assert!(!rendered.is_valid(), "{config} should be invalid");
        assert!(rendered.parsed.is_none());
        assert!(
            rendered.issues.iter().any(|i| i.contains(fragment)),
            "{config}: {:?} lacks {fragment}",
            rendered.issues
        );
    }
}

#[test]
fn an_invalid_config_falls_back_to_the_default_heartbeat() {
    let rendered = render(Some(json!({ "unknownField": 1 })));
    assert_eq!(
        rendered.status_reporting_interval(),
        std::time::Duration::from_secs(30)
    );
}

#[test]
fn an_object_asking_for_oidc_is_never_served_anonymously() {
    fn inputs(config: Option<&Value>) -> ConfigInputs<'_> {
        ConfigInputs {
            name: "demo",
            namespace: "team",
            group: "tools",
            config,
            cluster_domain: "cluster.local",
            cluster_ip: None,
            requires_oidc: true,
        }
    }
    let rendered = render_config(&inputs(None));
    assert!(!rendered.is_valid());
    assert!(
        rendered
            .issues
            .iter()
            .any(|issue| issue.starts_with("spec.incomingAuth: type oidc")),
        "{:?}",
        rendered.issues
    );
    let inline = json!({"incomingAuth": {"type": "oidc", "oidc": {
        "issuer": "https://idp.example/realms/r", "audience": "vmcp"}}});
    let rendered = render_config(&inputs(Some(&inline)));
    assert!(rendered.is_valid(), "{:?}", rendered.issues);
}
