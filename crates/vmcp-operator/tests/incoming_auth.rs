//! `spec.incomingAuth` rendered into the configuration's `incomingAuth`:
//! what comes from the `MCPOIDCConfig` and the reference, where the client
//! secret goes, and every reason to refuse, as tables.

use serde_json::{Value, json};
use vmcp_crd::{MCPOIDCConfig, VirtualMCPServer};
use vmcp_operator::incoming_auth::{
    CLIENT_SECRET_ENV, Lookups, RenderedIncomingAuth, oidc_config_to_read, render_incoming_auth,
};

fn gateway(incoming_auth: Value, config: Option<Value>) -> VirtualMCPServer {
    let mut spec = json!({ "groupRef": { "name": "tools" }, "incomingAuth": incoming_auth });
    if let Some(config) = config {
        spec["config"] = config;
    }
    serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "VirtualMCPServer",
        "metadata": { "name": "gw", "namespace": "team", "uid": "u", "generation": 1 },
        "spec": spec,
    }))
    .expect("a valid VirtualMCPServer")
}

fn oidc_ref() -> Value {
    json!({ "type": "oidc", "oidcConfigRef": { "name": "sso", "audience": "gw-audience" } })
}

fn oidc_config(spec: Value) -> MCPOIDCConfig {
    serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "MCPOIDCConfig",
        "metadata": { "name": "sso", "namespace": "team" },
        "spec": spec,
    }))
    .expect("a valid MCPOIDCConfig")
}

fn inline(settings: Value) -> MCPOIDCConfig {
    oidc_config(json!({ "type": "inline", "inline": settings }))
}

fn with_secret() -> Lookups {
    Lookups {
        oidc_config: Some(inline(json!({
            "issuer": "https://sso.example.com",
            "clientId": "gw",
            "clientSecretRef": { "name": "sso-client", "key": "secret" },
        }))),
        client_secret_keys: Some(["secret".to_string()].into()),
        ca_bundle: None,
    }
}

fn oidc_section(rendered: &RenderedIncomingAuth) -> Value {
    rendered
        .section
        .as_ref()
        .and_then(|s| s.get("oidc"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn the_reference_and_its_mcpoidcconfig_become_the_oidc_section() {
    let vmcp = gateway(
        json!({ "type": "oidc", "oidcConfigRef": {
            "name": "sso", "audience": "gw-audience", "scopes": ["mcp"],
            "resourceUrl": "https://gw.example.com/mcp" } }),
        None,
    );
    assert_eq!(oidc_config_to_read(&vmcp), Some("sso"));
    let found = Lookups {
        oidc_config: Some(inline(json!({
            "issuer": "https://sso.example.com",
            "jwksUrl": "https://sso.example.com/keys",
            "protectedResourceAllowPrivateIP": true,
            "insecureAllowHTTP": false,
        }))),
        ..Lookups::default()
    };
    let rendered = render_incoming_auth(&vmcp, &found);
    assert!(rendered.issues.is_empty(), "{:?}", rendered.issues);
    assert_eq!(
        rendered.section.as_ref().map(|s| &s["type"]),
        Some(&json!("oidc"))
    );
    assert_eq!(
        oidc_section(&rendered),
        json!({
            "issuer": "https://sso.example.com",
            "audience": "gw-audience",
            "resource": "https://gw.example.com/mcp",
            "jwksUrl": "https://sso.example.com/keys",
            "scopes": ["mcp"],
            // Either private-address switch opens the issuer's requests.
            "jwksAllowPrivateIp": true,
            "protectedResourceAllowPrivateIp": true,
        })
    );
    assert_eq!(
        rendered.pod,
        Default::default(),
        "no secret, no CA: nothing added"
    );
    assert!(rendered.oidc_config_hash.is_some());
    assert!(!rendered.awaiting_reference);
}

#[test]
fn the_client_secret_goes_to_the_env_by_reference_only() {
    let vmcp = gateway(oidc_ref(), None);
    let rendered = render_incoming_auth(&vmcp, &with_secret());
    assert!(rendered.issues.is_empty(), "{:?}", rendered.issues);
    assert_eq!(
        oidc_section(&rendered)["clientSecretEnv"],
        CLIENT_SECRET_ENV
    );
    assert_eq!(oidc_section(&rendered)["clientId"], "gw");
    assert_eq!(
        rendered.pod.env,
        [
            json!({ "name": CLIENT_SECRET_ENV, "valueFrom": { "secretKeyRef": { "name": "sso-client", "key": "secret" } } })
        ]
    );
}

#[test]
fn a_ca_bundle_is_mounted_and_its_content_hashed() {
    let vmcp = gateway(oidc_ref(), None);
    let found = |pem: &str| Lookups {
        oidc_config: Some(inline(json!({
            "issuer": "https://sso.example.com",
            "caBundleRef": { "configMapRef": { "name": "sso-ca", "key": "" } },
        }))),
        client_secret_keys: None,
        ca_bundle: Some([("ca.crt".to_string(), pem.to_string())].into()),
    };
    let one = render_incoming_auth(&vmcp, &found("one"));
    assert!(one.issues.is_empty(), "{:?}", one.issues);
    assert_eq!(
        oidc_section(&one)["caBundlePath"],
        "/etc/vmcp-oidc-ca/ca.crt"
    );
    assert_eq!(
        one.pod.volumes,
        [
            json!({ "name": "oidc-ca-bundle", "configMap": { "name": "sso-ca", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } })
        ]
    );
    assert_eq!(one.pod.volume_mounts[0]["mountPath"], "/etc/vmcp-oidc-ca");
    let two = render_incoming_auth(&vmcp, &found("two"));
    assert_ne!(
        one.mounted_digest, two.mounted_digest,
        "a new CA rolls the pods"
    );
    assert_eq!(
        one.mounted_digest,
        render_incoming_auth(&vmcp, &found("one")).mounted_digest
    );
}

#[test]
fn the_hash_follows_the_mcpoidcconfig_spec() {
    let vmcp = gateway(oidc_ref(), None);
    let hash = |issuer: &str| {
        let found = Lookups {
            oidc_config: Some(inline(json!({ "issuer": issuer }))),
            ..Lookups::default()
        };
        render_incoming_auth(&vmcp, &found).oidc_config_hash
    };
    assert_ne!(hash("https://a.example.com"), hash("https://b.example.com"));
    assert_eq!(hash("https://a.example.com"), hash("https://a.example.com"));
}

#[test]
fn what_cannot_be_rendered_is_refused_with_its_reason() {
    let vmcp = gateway(oidc_ref(), None);
    let missing_key = Lookups {
        client_secret_keys: Some(["other".to_string()].into()),
        ..with_secret()
    };
    let missing_secret = Lookups {
        client_secret_keys: None,
        ..with_secret()
    };
    let ca = |optional: bool| Lookups {
        oidc_config: Some(inline(json!({
            "issuer": "https://sso.example.com",
            "caBundleRef": { "configMapRef": { "name": "sso-ca", "key": "ca.crt", "optional": optional } },
        }))),
        ..Lookups::default()
    };
    // (what was found, a fragment of the one issue, whether it waits for a
    // reference that is not watched)
    let table = [
        (
            Lookups::default(),
            "the MCPOIDCConfig sso does not exist in this namespace",
            false,
        ),
        (
            missing_secret,
            "the Secret \"sso-client\" does not exist",
            true,
        ),
        (
            missing_key,
            "the Secret \"sso-client\" has no key \"secret\"",
            true,
        ),
        (ca(false), "the ConfigMap \"sso-ca\" does not exist", true),
        (
            Lookups {
                oidc_config: Some(oidc_config(json!({
                    "type": "kubernetesServiceAccount",
                    "kubernetesServiceAccount": { "issuer": "https://kubernetes.default.svc" },
                }))),
                ..Lookups::default()
            },
            "type kubernetesServiceAccount is not supported",
            false,
        ),
        (
            Lookups {
                oidc_config: Some(inline(json!({
                    "issuer": "https://sso.example.com",
                    "jwksAuthTokenPath": "/var/run/token",
                }))),
                ..Lookups::default()
            },
            "jwksAuthTokenPath is not supported",
            false,
        ),
    ];
    for (found, fragment, awaiting) in table {
        let rendered = render_incoming_auth(&vmcp, &found);
        assert_eq!(
            rendered.issues.len(),
            1,
            "{fragment}: {:?}",
            rendered.issues
        );
        assert!(
            rendered.issues[0].contains(fragment),
            "{:?}",
            rendered.issues
        );
        assert!(rendered.issues[0].starts_with("spec.incomingAuth.oidcConfigRef"));
        assert_eq!(rendered.awaiting_reference, awaiting, "{fragment}");
        assert_eq!(
            oidc_section(&rendered),
            Value::Null,
            "{fragment}: no partial oidc"
        );
        assert!(rendered.pod.env.is_empty(), "{fragment}");
        assert!(rendered.oidc_config_hash.is_none(), "{fragment}");
    }
    // An optional CA bundle may be absent: the system roots are used.
    let rendered = render_incoming_auth(&vmcp, &ca(true));
    assert!(rendered.issues.is_empty(), "{:?}", rendered.issues);
    assert_eq!(oidc_section(&rendered).get("caBundlePath"), None);
}

#[test]
fn the_authors_oidc_wins_and_the_reference_is_not_read() {
    let vmcp = gateway(
        oidc_ref(),
        Some(
            json!({ "incomingAuth": { "oidc": { "issuer": "https://mine.example.com", "audience": "me" } } }),
        ),
    );
    assert_eq!(oidc_config_to_read(&vmcp), None);
    let rendered = render_incoming_auth(&vmcp, &Lookups::default());
    assert!(rendered.issues.is_empty(), "{:?}", rendered.issues);
    assert_eq!(
        rendered.section.as_ref().map(|s| s.len()),
        Some(1),
        "only type"
    );
    assert!(rendered.pod.env.is_empty());
    assert!(rendered.oidc_config_hash.is_none());
}

#[test]
fn the_author_cannot_turn_an_oidc_object_anonymous() {
    let vmcp = gateway(
        oidc_ref(),
        Some(json!({ "incomingAuth": { "type": "anonymous" } })),
    );
    let rendered = render_incoming_auth(&vmcp, &with_secret());
    assert!(
        rendered.issues.iter().any(|i| i.starts_with(
            "spec.config.incomingAuth.type: anonymous, but spec.incomingAuth.type is oidc"
        )),
        "{:?}",
        rendered.issues
    );
}

#[test]
fn anonymous_renders_nothing() {
    let vmcp = gateway(
        json!({ "type": "anonymous", "oidcConfigRef": { "name": "sso", "audience": "x" } }),
        None,
    );
    assert_eq!(oidc_config_to_read(&vmcp), None);
    assert_eq!(
        render_incoming_auth(&vmcp, &Lookups::default()),
        RenderedIncomingAuth::default()
    );
}

#[test]
fn inline_cedar_policies_become_authz_and_other_sources_are_refused() {
    let policy = "permit(principal, action, resource);";
    let with = |authz: Value| {
        let mut incoming = oidc_ref();
        incoming["authzConfig"] = authz;
        render_incoming_auth(&gateway(incoming, None), &with_secret())
    };
    let rendered =
        with(json!({ "type": "inline", "inline": { "policies": [policy], "entitiesJson": "[]" } }));
    assert!(rendered.issues.is_empty(), "{:?}", rendered.issues);
    assert_eq!(
        rendered.section.as_ref().map(|s| &s["authz"]),
        Some(&json!({ "type": "cedar", "policies": [policy] }))
    );
    let table = [
        (
            json!({ "type": "configMap", "configMap": { "name": "policies" } }),
            "type configMap is not supported",
        ),
        (
            json!({ "inline": { "policies": [policy] } }),
            "type configMap is not supported",
        ),
        (
            json!({ "type": "inline", "inline": {} }),
            "inline.policies: a list of Cedar policies is required",
        ),
        (
            json!({ "type": "inline", "inline": { "policies": [policy], "entitiesJson": "[{\"uid\":1}]" } }),
            "entitiesJson: Cedar entities are not supported",
        ),
        (
            json!({ "type": "opa" }),
            "\"opa\" is not one of inline, configMap",
        ),
    ];
    for (authz, fragment) in table {
        let rendered = with(authz);
        assert_eq!(
            rendered.issues.len(),
            1,
            "{fragment}: {:?}",
            rendered.issues
        );
        assert!(rendered.issues[0].starts_with("spec.incomingAuth.authzConfig"));
        assert!(
            rendered.issues[0].contains(fragment),
            "{:?}",
            rendered.issues
        );
    }
    // A shared MCPAuthzConfig is not implemented: refused, never ignored.
    let mut incoming = oidc_ref();
    incoming["authzConfigRef"] = json!({ "name": "shared" });
    let rendered = render_incoming_auth(&gateway(incoming.clone(), None), &with_secret());
    assert!(
        rendered
            .issues
            .iter()
            .any(|i| i.starts_with("spec.incomingAuth.authzConfigRef"))
    );
    // ... unless the author's spec.config.incomingAuth.authz says what to do.
    let own = json!({ "incomingAuth": { "authz": { "type": "none" } } });
    let rendered = render_incoming_auth(&gateway(incoming, Some(own)), &with_secret());
    assert!(rendered.issues.is_empty(), "{:?}", rendered.issues);
    assert_eq!(rendered.section.as_ref().and_then(|s| s.get("authz")), None);
}
