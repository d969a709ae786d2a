//! The CRD's status matches the runtime's status model
//! (`vmcp_domain::status::Status`) exactly: a status the runtime builds
//! survives a round trip through [`VirtualMCPServerStatus`] without losing a
//! field, and every field it sends is declared in the generated
//! `openAPIV3Schema` (the API server prunes undeclared fields silently).

use std::collections::BTreeSet;

use kube::CustomResourceExt;
use serde_json::{Value, json};
use vmcp_crd::{VirtualMCPServer, VirtualMCPServerStatus};
use vmcp_domain::health::HealthState;
use vmcp_domain::status::{
    BackendSnapshot, CircuitState, HealthSnapshot, MAX_REPORTED_BACKENDS, Status, Timestamp,
    build_status,
};

/// A time with sub-second digits, as `Timestamp::now()` produces.
fn ts(secs: i64) -> Timestamp {
    Timestamp::new(1_800_000_000 + secs, 123_456_789).expect("valid timestamp")
}

fn backend(name: &str, health: HealthState) -> BackendSnapshot {
    BackendSnapshot {
        name: name.to_string(),
        url: format!("http://{name}.team.svc:8080/mcp"),
        auth_type: Some("unauthenticated".into()),
        auth_config_ref: None,
        health,
        last_health_check: Some(ts(100)),
        message: (!health.is_routable()).then(|| "health check timed out".to_string()),
        circuit: CircuitState::Closed,
        circuit_last_changed: None,
        consecutive_failures: 0,
    }
}

/// A degraded gateway with every kind of backend and every optional field
/// set somewhere, built over a previous status so transition times differ.
fn realistic_status() -> Status {
    let mut open = backend("payments", HealthState::Unhealthy);
    open.circuit = CircuitState::Open;
    open.circuit_last_changed = Some(ts(90));
    open.consecutive_failures = 7;
    let mut half_open = backend("search", HealthState::Healthy);
    half_open.circuit = CircuitState::HalfOpen;
    half_open.circuit_last_changed = Some(ts(95));
    let mut secured = backend("github", HealthState::Unauthenticated);
    secured.auth_type = Some("header_injection".into());
    secured.auth_config_ref = Some("github-token".into());
    secured.message = Some("backend rejected credentials".into());
    let mut slow = backend("wiki", HealthState::Degraded);
    slow.message = Some("health check slow".into());
    slow.consecutive_failures = 1;
    let mut fresh = backend("new-one", HealthState::Unknown);
    fresh.last_health_check = None;
    let all_up = HealthSnapshot {
        backends: vec![backend("docs", HealthState::Healthy)],
        discovery_complete: true,
        runtime_error: None,
    };
    let previous = build_status(&all_up, Some(6), None, ts(0));
    let snapshot = HealthSnapshot {
        backends: vec![
            backend("docs", HealthState::Healthy),
            open,
            half_open,
            secured,
            slow,
            fresh,
        ],
        discovery_complete: true,
        runtime_error: None,
    };
    build_status(&snapshot, Some(7), Some(&previous), ts(120))
}

/// Statuses of every phase, and one over the listing cap.
fn fixtures() -> Vec<(&'static str, Status)> {
    let pending = build_status(
        &HealthSnapshot {
            backends: vec![backend("a", HealthState::Healthy)],
            discovery_complete: false,
            runtime_error: None,
        },
        None,
        None,
        ts(0),
    );
    let broken = build_status(
        &HealthSnapshot {
            backends: vec![],
            discovery_complete: true,
            runtime_error: Some("configuration could not be loaded".into()),
        },
        Some(3),
        None,
        ts(0),
    );
    let empty = build_status(&HealthSnapshot::default(), Some(1), None, ts(0));
    let many = build_status(
        &HealthSnapshot {
            backends: (0..MAX_REPORTED_BACKENDS + 5)
                .map(|i| backend(&format!("b{i:03}"), HealthState::Healthy))
                .collect(),
            discovery_complete: true,
            runtime_error: None,
        },
        Some(2),
        None,
        ts(0),
    );
    vec![
        ("degraded, every backend kind", realistic_status()),
        ("pending", pending),
        ("runtime error", broken),
        ("no backends", empty),
        ("over the listing cap", many),
    ]
}

/// Decodes `wire` into the CRD's status type and encodes it again; `Err`
/// names what changed. serde ignores unknown fields, so a field the CRD type
/// lacks shows up here as a difference (the check `deny_unknown_fields`
/// would make, without making the type reject newer objects).
fn round_trip(wire: &Value) -> Result<(), String> {
    let typed: VirtualMCPServerStatus =
        serde_json::from_value(wire.clone()).map_err(|e| format!("does not decode: {e}"))?;
    let again = serde_json::to_value(&typed).map_err(|e| format!("does not encode: {e}"))?;
    if &again == wire {
        Ok(())
    } else {
        Err(format!(
            "changed in the round trip\n sent: {wire}\n back: {again}"
        ))
    }
}

#[test]
fn runtime_status_round_trips_through_the_crd_type() {
    for (name, status) in fixtures() {
        let wire = serde_json::to_value(&status).expect("status encodes");
        if let Err(problem) = round_trip(&wire) {
            panic!("{name}: {problem}");
        }
    }
}

#[test]
fn the_round_trip_check_catches_unknown_and_mistyped_fields() {
    let wire = serde_json::to_value(realistic_status()).expect("status encodes");
    let mut extra_top = wire.clone();
    extra_top["newField"] = json!("x");
    let mut extra_backend = wire.clone();
    extra_backend["discoveredBackends"][0]["newField"] = json!(1);
    let mut extra_condition = wire.clone();
    extra_condition["conditions"][0]["newField"] = json!(true);
    let mut bad_enum = wire.clone();
    bad_enum["discoveredBackends"][0]["status"] = json!("sleeping");
    for (name, value) in [
        ("top level", extra_top),
        ("backend", extra_backend),
        ("condition", extra_condition),
        ("enum", bad_enum),
    ] {
        assert!(round_trip(&value).is_err(), "{name}: not caught");
    }
}

fn status_schema() -> Value {
    let crd = serde_json::to_value(VirtualMCPServer::crd()).expect("CRD encodes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"].clone()
}

/// Checks `value` against a structural `schema` the way the API server does
/// for what matters here: undeclared fields (pruned), required fields,
/// types, enums, formats, bounds. Records every field path seen.
fn validate(
    value: &Value,
    schema: &Value,
    path: &str,
    seen: &mut BTreeSet<String>,
    errors: &mut Vec<String>,
) {
    seen.insert(path.to_string());
    let ty = schema["type"].as_str().unwrap_or_default();
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        errors.push(format!("{path}: {value} not in {options:?}"));
    }
    match value {
        Value::Object(fields) => {
            if ty != "object" {
                errors.push(format!("{path}: object where the schema says {ty:?}"));
                return;
            }
            if schema["x-kubernetes-preserve-unknown-fields"] == json!(true) {
                return;
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap_or_default();
                if !fields.contains_key(key) {
                    errors.push(format!("{path}.{key}: required but missing"));
                }
            }
            for (key, field) in fields {
                let child = format!("{path}.{key}");
                match schema["properties"].get(key) {
                    Some(sub) => validate(field, sub, &child, seen, errors),
                    None => errors.push(format!("{child}: not in the schema (would be pruned)")),
                }
            }
        }
        Value::Array(items) => {
            if ty != "array" {
                errors.push(format!("{path}: array where the schema says {ty:?}"));
                return;
            }
            for item in items {
                validate(item, &schema["items"], &format!("{path}[]"), seen, errors);
            }
        }
        Value::String(text) => {
            if ty != "string" {
                errors.push(format!("{path}: string where the schema says {ty:?}"));
            }
            if schema["format"] == json!("date-time") && text.parse::<Timestamp>().is_err() {
                errors.push(format!("{path}: {text:?} is not a date-time"));
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && text.chars().count() as u64 > max
            {
                errors.push(format!("{path}: longer than {max}"));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && (text.chars().count() as u64) < min
            {
                errors.push(format!("{path}: shorter than {min}"));
            }
        }
        Value::Number(number) => {
            if ty != "integer" || !(number.is_i64() || number.is_u64()) {
                errors.push(format!("{path}: {number} where the schema says {ty:?}"));
            }
            if schema["format"] == json!("int32")
                && number
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .is_none()
            {
                errors.push(format!("{path}: {number} is not an int32"));
            }
            if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), number.as_f64())
                && n < min
            {
                errors.push(format!("{path}: {n} below {min}"));
            }
        }
        Value::Bool(_) => {
            if ty != "boolean" {
                errors.push(format!("{path}: boolean where the schema says {ty:?}"));
            }
        }
        Value::Null => {
            if schema["nullable"] != json!(true) {
                errors.push(format!("{path}: null but not nullable"));
            }
        }
    }
}

/// Every property path the schema declares.
fn schema_paths(schema: &Value, path: &str, out: &mut BTreeSet<String>) {
    out.insert(path.to_string());
    if let Some(properties) = schema["properties"].as_object() {
        for (key, sub) in properties {
            schema_paths(sub, &format!("{path}.{key}"), out);
        }
    }
    if schema["items"].is_object() {
        schema_paths(&schema["items"], &format!("{path}[]"), out);
    }
}

#[test]
fn every_status_field_the_runtime_sends_is_in_the_crd_schema() {
    let schema = status_schema();
    let mut seen = BTreeSet::new();
    for (name, status) in fixtures() {
        let wire = serde_json::to_value(&status).expect("status encodes");
        let mut errors = Vec::new();
        validate(&wire, &schema, "status", &mut seen, &mut errors);
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
    // And the other way round: the schema declares nothing the runtime
    // spells differently. Only the operator's `url` and its hashes of the
    // referenced configuration objects are not the runtime's.
    let mut declared = BTreeSet::new();
    schema_paths(&schema, "status", &mut declared);
    let not_sent: Vec<&String> = declared.difference(&seen).collect();
    assert_eq!(
        not_sent,
        [
            "status.authzConfigHash",
            "status.oidcConfigHash",
            "status.telemetryConfigHash",
            "status.url"
        ],
        "declared but never sent"
    );
}

#[test]
fn list_keys_match_the_runtime_model() {
    let schema = status_schema();
    let conditions = &schema["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    let backends = &schema["properties"]["discoveredBackends"];
    assert_eq!(backends["x-kubernetes-list-type"], "map");
    assert_eq!(backends["x-kubernetes-list-map-keys"], json!(["name"]));
    // The list keys must be required for server-side apply to merge by them.
    assert!(
        conditions["items"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("type")))
    );
    assert!(
        backends["items"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("name")))
    );
}
