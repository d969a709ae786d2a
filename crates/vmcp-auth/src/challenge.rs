//! What a client reads to find out how to authenticate: the
//! `WWW-Authenticate` challenge (RFC 6750 §3, with RFC 9728's
//! `resource_metadata`) and the protected resource metadata document
//! (RFC 9728) naming the authorization server and scopes.

use serde_json::{Value, json};

use crate::rejection::Rejection;

/// The well-known path of the protected resource metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The metadata URL of `resource` (RFC 9728 §3.1: the well-known path goes
/// between the host and the resource's path).
pub fn metadata_url(resource: &url::Url) -> String {
    let path = resource.path().trim_end_matches('/');
    format!(
        "{}{METADATA_PATH}{path}",
        resource.origin().ascii_serialization()
    )
}

/// The `WWW-Authenticate` value of a response refusing the request.
pub fn www_authenticate(metadata_url: &str, rejection: &Rejection, scopes: &[String]) -> String {
    let mut value = format!("Bearer resource_metadata=\"{metadata_url}\"");
    if let Some(code) = rejection.error_code() {
        value.push_str(&format!(
            ", error=\"{code}\", error_description=\"{rejection}\""
        ));
    }
    let scopes = match rejection {
        Rejection::InsufficientScope { required } => required.as_slice(),
        _ => scopes,
    };
    if !scopes.is_empty() {
        value.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
    }
    value
}

/// The protected resource metadata document.
pub fn resource_metadata(resource: &str, issuer: &str, scopes: &[String], name: &str) -> Value {
    let mut document = json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": name,
    });
    if !scopes.is_empty() {
        document["scopes_supported"] = json!(scopes);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_url_keeps_the_resource_path_after_the_well_known_part() {
        let url = |s: &str| url::Url::parse(s).expect("test url");
        assert_eq!(
            metadata_url(&url("https://gw.example/mcp")),
            "https://gw.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url(&url("http://127.0.0.1:4483/")),
            "http://127.0.0.1:4483/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn challenges_say_what_went_wrong_and_what_is_needed() {
        let at = "https://gw.example/.well-known/oauth-protected-resource/mcp";
        let scopes = vec!["openid".to_owned(), "mcp:tools".to_owned()];
        assert_eq!(
            www_authenticate(at, &Rejection::Missing, &scopes),
            format!("Bearer resource_metadata=\"{at}\", scope=\"openid mcp:tools\"")
        );
        assert_eq!(
            www_authenticate(at, &Rejection::Expired, &[]),
            format!(
                "Bearer resource_metadata=\"{at}\", error=\"invalid_token\", error_description=\"the token has expired\""
            )
        );
        let scope = Rejection::InsufficientScope {
            required: vec!["mcp:tools".into()],
        };
        assert!(www_authenticate(at, &scope, &scopes).ends_with(
            "error=\"insufficient_scope\", error_description=\"the token lacks required scopes\", scope=\"mcp:tools\""
        ));
    }
}
