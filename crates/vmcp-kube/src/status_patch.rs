//! The body of the runtime's server-side apply to `VirtualMCPServer/status`.
//!
//! With server-side apply, the fields a manager sends are the fields it
//! owns. The runtime sends exactly the fields it is responsible for (see
//! `docs/status.md`, "Who writes what"), so the operator's `url` and its own
//! conditions are never touched, and a runtime condition that disappears
//! from the status is removed from the object.

use serde_json::{Map, Value, json};
use vmcp_domain::status::Status;

use crate::resources::API_VERSION;

/// The field manager of the runtime's status writes.
pub const FIELD_MANAGER: &str = "vmcp-runtime";

/// The `status` fields the runtime owns, in the order they are written.
pub const RUNTIME_STATUS_FIELDS: [&str; 7] = [
    "phase",
    "message",
    "conditions",
    "discoveredBackends",
    "backendCount",
    "observedGeneration",
    "timestamp",
];

/// The apply configuration for `status` of the `VirtualMCPServer`
/// `namespace/name`: type metadata, the name, and the runtime's fields of
/// `status` only.
pub fn apply_body(
    name: &str,
    namespace: &str,
    status: &Status,
) -> Result<Value, serde_json::Error> {
    let full = serde_json::to_value(status)?;
    let mut owned = Map::new();
    if let Value::Object(fields) = full {
        for (key, value) in fields {
            if RUNTIME_STATUS_FIELDS.contains(&key.as_str()) {
                owned.insert(key, value);
            }
        }
    }
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "VirtualMCPServer",
        "metadata": { "name": name, "namespace": namespace },
        "status": Value::Object(owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmcp_domain::status::{HealthSnapshot, Timestamp, build_status};

    #[test]
    fn only_runtime_fields_are_sent() {
        let status = build_status(&HealthSnapshot::default(), Some(4), None, Timestamp::now());
        let body = apply_body("demo", "team", &status).expect("a status always encodes");
        assert_eq!(body["metadata"]["name"], "demo");
        assert_eq!(body["metadata"]["namespace"], "team");
        assert_eq!(body["kind"], "VirtualMCPServer");
        let sent: Vec<&str> = body["status"]
            .as_object()
            .expect("status is an object")
            .keys()
            .map(String::as_str)
            .collect();
        for key in &sent {
            assert!(
                RUNTIME_STATUS_FIELDS.contains(key),
                "{key} is not the runtime's"
            );
        }
        assert!(!sent.contains(&"url"), "url belongs to the operator");
        assert_eq!(body["status"]["observedGeneration"], 4);
        assert!(sent.contains(&"phase") && sent.contains(&"conditions"));
    }
}
