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
