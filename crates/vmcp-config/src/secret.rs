//! Which configuration fields may hold a secret, decided per field.
//!
//! Error messages never show the value of such a field, whatever went wrong
//! with it (the file, line and field path are enough to find it):
//!
//! - everything under `outgoingAuth`: header values are credentials, and a
//!   token pasted into `headerName` or `headerValueEnv` by mistake is one too;
//! - everything under `incomingAuth.oidc`: URLs may carry credentials, and a
//!   client secret may be pasted into `clientSecretEnv`;
//! - `backends[].env`: the environment of a stdio server is where API keys go;
//! - `backends[].args`: command lines carry `--token=…` flags;
//! - `backends[].url`: a URL may carry `user:password@` or a `?token=` query.
//!
//! Other values (names, durations, enum choices, log levels) are shown when
//! that helps to spot a typo.

use crate::load::{FieldPath, Segment};

/// Whether the value at `path` may be a secret and must not be echoed.
pub fn may_hold_secret(path: &FieldPath) -> bool {
    match path.0.as_slice() {
        [Segment::Key(section), ..] if section == "outgoingAuth" => true,
        // URLs may carry credentials; a secret may be pasted into clientSecretEnv.
        [Segment::Key(section), Segment::Key(part), ..]
            if section == "incomingAuth" && part == "oidc" =>
        {
            true
        }
        [
            Segment::Key(section),
            Segment::Index(_),
            Segment::Key(field),
            ..,
        ] if section == "backends" => {
            matches!(field.as_str(), "env" | "args" | "url")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field_path;

    #[test]
    fn secret_bearing_fields_are_named_by_path() {
        let cases = [
            (
                field_path!["outgoingAuth", "default", "headerInjection", "headerValue"],
                true,
            ),
            (
                field_path![
                    "outgoingAuth",
                    "backends",
                    "a",
                    "headerInjection",
                    "headerName"
                ],
                true,
            ),
            (field_path!["backends", 0, "env", "API_KEY"], true),
            (field_path!["backends", 2, "args", 1], true),
            (field_path!["backends", 1, "url"], true),
            (field_path!["backends", 1, "name"], false),
            (field_path!["backends", 1, "transport"], false),
            (field_path!["operational", "timeouts", "default"], false),
            (field_path!["name"], false),
        ];
        for (path, want) in cases {
            assert_eq!(may_hold_secret(&path), want, "{path}");
        }
    }
}
