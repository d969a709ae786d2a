//! Hand-written schema fragments for fields schemars cannot describe in a
//! Kubernetes "structural" way.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A free-form object kept as sent (`x-kubernetes-preserve-unknown-fields`),
/// e.g. the embedded vmcp configuration.
pub(crate) fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of `Condition`s that server-side apply merges per `type`, so each
/// writer owns its own entries.
pub(crate) fn conditions(generator: &mut SchemaGenerator) -> Schema {
    keyed_list::<crate::condition::Condition>(generator, "type")
}

/// A list of backends that server-side apply merges per `name`.
pub(crate) fn backends(generator: &mut SchemaGenerator) -> Schema {
    keyed_list::<crate::virtual_mcp_server::DiscoveredBackend>(generator, "name")
}

/// Environment variables, merged per `name`.
pub(crate) fn env_vars(generator: &mut SchemaGenerator) -> Schema {
    keyed_list::<crate::workload::EnvVar>(generator, "name")
}

/// An MCPServer's host-path volumes, merged per `name`.
pub(crate) fn volumes(generator: &mut SchemaGenerator) -> Schema {
    keyed_list::<crate::mcp_server::Volume>(generator, "name")
}

/// An MCPServer's secrets, merged per `name`.
pub(crate) fn secrets(generator: &mut SchemaGenerator) -> Schema {
    keyed_list::<crate::mcp_server::SecretRef>(generator, "name")
}

/// Headers taken from Secrets, merged per `headerName`.
pub(crate) fn header_secrets(generator: &mut SchemaGenerator) -> Schema {
    keyed_list::<crate::mcp_server_entry::HeaderFromSecret>(generator, "headerName")
}

/// The workloads referencing an `MCPOIDCConfig`, merged per `name`.
pub(crate) fn workload_references(generator: &mut SchemaGenerator) -> Schema {
    keyed_list::<crate::mcp_oidc_config::WorkloadReference>(generator, "name")
}

/// The schema of an optional list of `T`, marked as a map keyed by `key`.
fn keyed_list<T: schemars::JsonSchema>(generator: &mut SchemaGenerator, key: &str) -> Schema {
    let mut schema = generator.subschema_for::<Option<Vec<T>>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!([key]),
    );
    schema
}
