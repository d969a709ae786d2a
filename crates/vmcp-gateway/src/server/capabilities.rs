//! What the gateway announces to a client at `initialize`, from what its
//! backends declared (pure, no I/O).
//!
//! Capabilities are fixed for a session, while backends come and go, so:
//!
//! - the lists (tools, prompts, resources) are announced, with
//!   `listChanged`, when any backend offers them or has not been reached yet
//!   (it may offer them once it connects, and `list_changed` then tells the
//!   client), and when there is no backend at all (discovery may add one);
//!   they are left out only when every backend is known and none offers them;
//! - the optional features — `completions`, `logging`, resource
//!   `subscribe` — are announced only when a routable backend offers them
//!   now, so a client never relies on something no backend can do.

use rmcp::model::{
    JsonObject, PromptsCapability, ResourcesCapability, ServerCapabilities, ToolsCapability,
};

/// One backend as the announcement sees it.
#[derive(Clone, Copy, Debug)]
pub struct BackendOffer<'a> {
    /// What it declared, if it has been reached.
    pub declared: Option<&'a ServerCapabilities>,
    /// Whether calls are routed to it now.
    pub routable: bool,
}

/// The capabilities to announce for `backends`.
pub fn announced<'a>(backends: impl IntoIterator<Item = BackendOffer<'a>>) -> ServerCapabilities {
    let (mut tools, mut prompts, mut resources) = (false, false, false);
    let (mut completions, mut logging, mut subscribe) = (false, false, false);
    let mut any = false;
    for backend in backends {
        any = true;
        let Some(declared) = backend.declared else {
            (tools, prompts, resources) = (true, true, true);
            continue;
        };
        tools |= declared.tools.is_some();
        prompts |= declared.prompts.is_some();
        resources |= declared.resources.is_some();
        if backend.routable {
            completions |= declared.completions.is_some();
            logging |= declared.logging.is_some();
            subscribe |= declared
                .resources
                .as_ref()
                .is_some_and(|r| r.subscribe == Some(true));
        }
    }
    if !any {
        (tools, prompts, resources) = (true, true, true);
    }
    let mut announced = ServerCapabilities::default();
    if tools {
        let mut capability = ToolsCapability::default();
        capability.list_changed = Some(true);
        announced.tools = Some(capability);
    }
    if prompts {
        let mut capability = PromptsCapability::default();
        capability.list_changed = Some(true);
        announced.prompts = Some(capability);
    }
    if resources || subscribe {
        let mut capability = ResourcesCapability::default();
        capability.list_changed = Some(true);
        capability.subscribe = subscribe.then_some(true);
        announced.resources = Some(capability);
    }
    announced.completions = completions.then(JsonObject::new);
    announced.logging = logging.then(JsonObject::new);
    announced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(json: serde_json::Value) -> ServerCapabilities {
        serde_json::from_value(json).expect("capabilities")
    }

    fn offer(declared: &ServerCapabilities, routable: bool) -> BackendOffer<'_> {
        BackendOffer {
            declared: Some(declared),
            routable,
        }
    }

    #[test]
    fn lists_follow_what_backends_offer() {
        let tools_only = caps(serde_json::json!({"tools": {}}));
        let got = announced([offer(&tools_only, true)]);
        assert_eq!(got.tools.and_then(|t| t.list_changed), Some(true));
        assert!(got.prompts.is_none());
        assert!(got.resources.is_none());
        assert!(got.completions.is_none());
    }

    #[test]
    fn a_backend_not_reached_yet_may_still_bring_lists_but_no_features() {
        let tools_only = caps(serde_json::json!({"tools": {}}));
        let got = announced([
            offer(&tools_only, true),
            BackendOffer {
                declared: None,
                routable: false,
            },
        ]);
        assert!(got.tools.is_some() && got.prompts.is_some() && got.resources.is_some());
        assert!(got.completions.is_none());
        let logging = got.logging;
        assert!(logging.is_none());
        assert!(got.resources.and_then(|r| r.subscribe).is_none());
    }

    #[test]
    fn features_come_only_from_routable_backends() {
        let rich = caps(serde_json::json!({
            "resources": {"subscribe": true}, "completions": {}, "logging": {}
        }));
        let down = announced([offer(&rich, false)]);
        assert!(down.completions.is_none());
        assert_eq!(down.resources.as_ref().and_then(|r| r.subscribe), None);
        let up = announced([offer(&rich, true)]);
        assert!(up.completions.is_some());
        let logging = up.logging;
        assert!(logging.is_some());
        assert_eq!(up.resources.and_then(|r| r.subscribe), Some(true));
    }

    #[test]
    fn without_backends_the_lists_stay_open_for_discovery() {
        let got = announced([]);
        assert!(got.tools.is_some() && got.prompts.is_some() && got.resources.is_some());
        assert!(got.completions.is_none());
    }
}
