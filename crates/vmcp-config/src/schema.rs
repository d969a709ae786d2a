//! The JSON Schema of the configuration file, generated from the types.
//!
//! The committed copy lives at `schema/vmcp-config.schema.json`; a test fails
//! when it is stale (regenerate with `VMCP_UPDATE_SCHEMA=1 cargo test -p vmcp-config`).

use crate::model::Config;

/// The schema as pretty-printed JSON, ending in a newline.
pub fn config_schema_json() -> String {
    let schema = schemars::schema_for!(Config);
    // Serializing a `serde_json::Value`-backed schema cannot fail.
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
