//! The rendered runtime configuration and its validation, as tables.

use serde_json::{Value, json};
use vmcp_operator::config::{ConfigInputs, render_config, service_hosts};
use vmcp_operator::incoming_auth::RenderedIncomingAuth;

fn render(config: Option<Value>) -> vmcp_operator::config::RenderedConfig {
    render_config(&ConfigInputs {
        name: "demo",
        namespace: "team",
        group: "tools",
        config: config.as_ref(),
        cluster_domain: "cluster.local",
        cluster_ip: Some("10.0.0.7"),
        requires_oidc: false,
        incoming_auth: None,
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
    fn inputs<'a>(
        config: Option<&'a Value>,
        rendered: &'a RenderedIncomingAuth,
    ) -> ConfigInputs<'a> {
        ConfigInputs {
            name: "demo",
            namespace: "team",
            group: "tools",
            config,
            cluster_domain: "cluster.local",
            cluster_ip: None,
            requires_oidc: true,
            incoming_auth: Some(rendered),
        }
    }
    // Nothing could be rendered (the MCPOIDCConfig is missing): the issue
    // is the renderer's, and the config is invalid.
    let missing = RenderedIncomingAuth {
        section: Some(json!({ "type": "oidc" }).as_object().cloned().expect("object")),
        issues: vec!["spec.incomingAuth.oidcConfigRef: the MCPOIDCConfig sso does not exist in this namespace".into()],
        ..RenderedIncomingAuth::default()
    };
    let rendered = render_config(&inputs(None, &missing));
    assert!(!rendered.is_valid());
    assert_eq!(rendered.issues, missing.issues);
    assert!(rendered.parsed.is_none());

    let oidc = RenderedIncomingAuth {
        section: Some(
            json!({ "type": "oidc", "oidc": { "issuer": "https://idp.example/realms/r", "audience": "vmcp" } })
                .as_object()
                .cloned()
                .expect("object"),
        ),
        ..RenderedIncomingAuth::default()
    };
    // Rendered as it is, it loads as OIDC.
    let rendered = render_config(&inputs(None, &oidc));
    assert!(rendered.is_valid(), "{:?}", rendered.issues);
    let config = rendered.parsed.expect("valid");
    assert_eq!(
        config.incoming_auth.kind,
        vmcp_config::IncomingAuthType::Oidc
    );
    assert_eq!(
        config.incoming_auth.oidc.map(|o| o.audience).as_deref(),
        Some("vmcp")
    );

    // The author's own oidc replaces the rendered one as a whole.
    let inline = json!({"incomingAuth": {"oidc": {
        "issuer": "https://other.example/realms/r", "audience": "mine"}}});
    let rendered = render_config(&inputs(Some(&inline), &oidc));
    let config = rendered.parsed.expect("valid");
    let written = config.incoming_auth.oidc.expect("oidc");
    assert_eq!(
        (written.issuer.as_str(), written.audience.as_str()),
        ("https://other.example/realms/r", "mine")
    );

    // The safety net: whatever was rendered, a configuration that loads
    // without OIDC is refused for an object that asks for it.
    let rendered = render_config(&ConfigInputs {
        incoming_auth: None,
        ..inputs(None, &oidc)
    });
    assert!(!rendered.is_valid());
    assert!(
        rendered
            .issues
            .iter()
            .any(|issue| issue.starts_with("spec.incomingAuth: type oidc, but the rendered configuration's incomingAuth.type is anonymous")),
        "{:?}",
        rendered.issues
    );
}
