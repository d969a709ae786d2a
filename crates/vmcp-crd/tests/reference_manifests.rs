//! The manifests in ToolHive's v1beta1 shapes (`tests/fixtures/toolhive-v1beta1/`)
//! read into the typed kinds of this crate and write back unchanged, so the
//! operator, which renders workloads from these types, sees every field a
//! ToolHive user wrote. (That the API server accepts them is checked on the
//! real API server by `tests/e2e/test_kube_crds.py`.)

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vmcp_crd::{
    IncomingAuthType, MCPGroup, MCPOIDCConfig, MCPServer, MCPServerEntry, OidcConfigSourceType,
    Transport, VirtualMCPServer,
};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/toolhive-v1beta1")
}

/// Every document of every fixture file, as `(file:kind/name, JSON)`.
fn fixture_docs() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("fixture reads");
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text).expect("fixture parses");
        for doc in parsed {
            let label = format!(
                "{}:{}/{}",
                file.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                doc["kind"].as_str().unwrap_or("?"),
                doc["metadata"]["name"].as_str().unwrap_or("?"),
            );
            docs.push((label, doc));
        }
    }
    docs
}

/// Reads `doc` as `T` and writes it back: the same JSON, or what differs.
fn round_trip<T: DeserializeOwned + Serialize>(label: &str, doc: &Value) -> Result<T, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| format!("{label}: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("{label}: {e}"))?;
    let mut lost = Vec::new();
    differences(&doc["spec"], &back["spec"], "spec", &mut lost);
    if lost.is_empty() {
        Ok(typed)
    } else {
        Err(format!("{label}: not kept: {lost:?}"))
    }
}

fn differences(sent: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => differences(value, other, &format!("{path}.{key}"), out),
                    None => out.push(format!("{path}.{key}")),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{key} (added)"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(path.to_string()),
    }
}

#[test]
fn every_fixture_reads_into_its_typed_kind_and_writes_back_unchanged() {
    let docs = fixture_docs();
    assert!(docs.len() >= 12, "fixtures missing: {}", docs.len());
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for (label, doc) in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        kinds.insert(kind.to_string());
        // The API server defaults a missing MCPGroup spec to `{}` (its CRD
        // says so); the operator reads what the server returns.
        let mut doc = doc.clone();
        if kind == "MCPGroup" && doc.get("spec").is_none() {
            doc["spec"] = serde_json::json!({});
        }
        let doc = &doc;
        let result = match kind {
            "MCPGroup" => round_trip::<MCPGroup>(label, doc).map(drop),
            "MCPServer" => round_trip::<MCPServer>(label, doc).map(drop),
            "MCPServerEntry" => round_trip::<MCPServerEntry>(label, doc).map(drop),
            "VirtualMCPServer" => round_trip::<VirtualMCPServer>(label, doc).map(drop),
            "MCPOIDCConfig" => round_trip::<MCPOIDCConfig>(label, doc).map(drop),
            other => Err(format!("{label}: unexpected kind {other}")),
        };
        failures.extend(result.err());
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "MCPGroup",
            "MCPOIDCConfig",
            "MCPServer",
            "MCPServerEntry",
            "VirtualMCPServer"
        ]
    );
}

#[test]
fn the_fields_the_operator_acts_on_are_typed() {
    let docs = fixture_docs();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|(_, d)| d["kind"] == kind && d["metadata"]["name"] == name)
            .map(|(label, d)| (label.clone(), d.clone()))
            .expect("fixture present")
    };
    let (label, doc) = find("MCPServer", "github");
    let server: MCPServer = round_trip(&label, &doc).expect("reads");
    let spec = &server.spec;
    assert_eq!(spec.transport, Some(Transport::Stdio));
    assert_eq!(
        spec.group_ref.as_ref().map(|g| g.name.as_str()),
        Some("engineering")
    );
    assert_eq!((spec.proxy_port, spec.mcp_port), (Some(8080), Some(9090)));
    let env = spec.env.as_deref().unwrap_or_default();
    assert_eq!(env[0].name, "GITHUB_HOST");
    let limits = spec.resources.as_ref().and_then(|r| r.limits.as_ref());
    assert_eq!(limits.and_then(|l| l.memory.as_deref()), Some("256Mi"));
    assert_eq!(spec.service_account.as_deref(), Some("github-mcp"));
    assert!(spec.pod_template_spec.is_some());

    let (label, doc) = find("VirtualMCPServer", "engineering-gateway");
    let vmcp: VirtualMCPServer = round_trip(&label, &doc).expect("reads");
    let spec = &vmcp.spec;
    assert_eq!(spec.group_ref.name, "engineering");
    assert_eq!(spec.incoming_auth.type_, IncomingAuthType::Oidc);
    assert_eq!(
        spec.incoming_auth
            .oidc_config_ref
            .as_ref()
            .map(|r| r.audience.as_str()),
        Some("engineering-gateway")
    );
    let backends = spec
        .outgoing_auth
        .as_ref()
        .and_then(|o| o.backends.as_ref())
        .expect("outgoing backends");
    assert!(backends["github"].external_auth_config_ref.is_some());
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.telemetry_config_ref.as_ref().map(|t| t.name.as_str()),
        Some("otel-shared")
    );

    let (label, doc) = find("MCPOIDCConfig", "company-sso");
    let oidc: MCPOIDCConfig = round_trip(&label, &doc).expect("reads");
    assert_eq!(oidc.spec.type_, OidcConfigSourceType::Inline);
    let inline = oidc.spec.inline.as_ref().expect("inline");
    assert_eq!(inline.issuer, "https://sso.example.com/realms/engineering");
    assert_eq!(
        inline.client_secret_ref.as_ref().map(|r| r.key.as_str()),
        Some("client-secret")
    );
    assert_eq!(inline.insecure_allow_http, Some(false));

    let (label, doc) = find("MCPServerEntry", "docs-search");
    let entry: MCPServerEntry = round_trip(&label, &doc).expect("reads");
    assert_eq!(entry.spec.remote_url, "https://docs-mcp.example.com/mcp");
    assert_eq!(entry.spec.group_ref.name, "engineering");
}

#[test]
fn the_round_trip_check_catches_a_dropped_field() {
    let doc = serde_json::json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "MCPServerEntry",
        "metadata": {"name": "x"},
        "spec": {"remoteUrl": "https://x/mcp", "transport": "sse", "groupRef": {"name": "g"},
                 "remoteURL": "https://x/mcp"},
    });
    let error = round_trip::<MCPServerEntry>("x", &doc).expect_err("remoteURL is not a field");
    assert!(error.contains("spec.remoteURL"), "{error}");
}
