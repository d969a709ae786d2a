//! Per-operation authorization (`incomingAuth.authz.type: cedar`) in the
//! MCP handler: calls, prompt gets and resource reads are checked against
//! the policies with the caller the HTTP layer verified, and lists show only
//! what the caller may use. Without policies everything is allowed; with
//! policies, a request without a verified caller is denied.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{ErrorCode, ErrorData, Extensions, Prompt, Resource, ResourceTemplate, Tool};
use vmcp_auth::Principal;
use vmcp_auth::authz::{Operation, Policies, Target};

use crate::audit::{self, RequestNote};
use crate::catalogue::Catalogue;
use crate::server::auth::UNAUTHORIZED;
use crate::server::echo::echoed;

/// The verified caller of the HTTP request behind a handler call.
pub fn caller(extensions: &Extensions) -> Option<Arc<Principal>> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Arc<Principal>>())
        .cloned()
}

/// What one request's caller may do.
pub struct Access {
    policies: Option<Arc<Policies>>,
    caller: Option<Arc<Principal>>,
    /// Where a denial is recorded for the audit log.
    audit: Option<Arc<RequestNote>>,
}

impl Access {
    /// The access of the caller in `extensions` under `policies` (those in
    /// force when the request came: a reload does not change a request
    /// half-way).
    pub fn new(policies: Option<Arc<Policies>>, extensions: &Extensions) -> Self {
        let caller = policies.as_ref().and_then(|_| caller(extensions));
        Self {
            policies,
            caller,
            audit: audit::note::of(extensions).cloned(),
        }
    }

    /// Whether the caller may perform `operation` on `target`.
    pub fn permits(&self, operation: Operation, target: &Target<'_>) -> bool {
        match (self.policies.as_deref(), &self.caller) {
            (None, _) => true,
            (Some(policies), Some(caller)) => policies.allows(caller, operation, target),
            (Some(_), None) => false,
        }
    }

    /// `Ok` when the caller may; otherwise the error the client gets (which
    /// names neither the policy nor why).
    pub fn check(&self, operation: Operation, target: &Target<'_>) -> Result<(), ErrorData> {
        if self.permits(operation, target) {
            return Ok(());
        }
        let what = match operation {
            Operation::CallTool => "call tool",
            Operation::GetPrompt => "get prompt",
            Operation::ReadResource => "read resource",
        };
        tracing::info!(
            caller = self.caller.as_ref().map(|c| &*c.subject),
            backend = target.backend,
            "denied by policy: {what} {}",
            echoed(target.name)
        );
        if let Some(note) = &self.audit {
            note.denied(target.backend);
        }
        Err(ErrorData::new(
            ErrorCode(UNAUTHORIZED),
            format!("not allowed: you may not {what} {}", echoed(target.name)),
            None,
        ))
    }

    /// [`Self::check`] for calling tool `name` of `backend`; the tool's
    /// annotations are looked up only when policies are enforced, and a tool
    /// missing from the list is still checked (fail closed).
    pub fn check_call(
        &self,
        catalogue: &Catalogue,
        name: &str,
        backend: &str,
    ) -> Result<(), ErrorData> {
        if self.policies.is_none() {
            return Ok(());
        }
        let subject = catalogue
            .tools
            .iter()
            .find(|tool| tool.name == name)
            .map_or_else(|| target(name, backend), |tool| tool_target(tool, backend));
        self.check(Operation::CallTool, &subject)
    }

    /// The tools the caller may call.
    pub fn tools<'c>(&self, catalogue: &'c Catalogue) -> Cow<'c, [Tool]> {
        self.filter(&catalogue.tools, |tool| {
            catalogue.route_tool(&tool.name).is_some_and(|route| {
                self.permits(Operation::CallTool, &tool_target(tool, &route.backend))
            })
        })
    }

    /// The prompts the caller may get.
    pub fn prompts<'c>(&self, catalogue: &'c Catalogue) -> Cow<'c, [Prompt]> {
        self.filter(&catalogue.prompts, |prompt| {
            catalogue.route_prompt(&prompt.name).is_some_and(|route| {
                self.permits(Operation::GetPrompt, &target(&prompt.name, &route.backend))
            })
        })
    }

    /// The resources the caller may read.
    pub fn resources<'c>(&self, catalogue: &'c Catalogue) -> Cow<'c, [Resource]> {
        self.filter(&catalogue.resources, |resource| {
            catalogue
                .route_resource(&resource.uri)
                .is_some_and(|owner| {
                    self.permits(Operation::ReadResource, &target(&resource.uri, owner))
                })
        })
    }

    /// The resource templates the caller may read (judged by the template string).
    pub fn templates<'c>(&self, catalogue: &'c Catalogue) -> Cow<'c, [ResourceTemplate]> {
        self.filter(&catalogue.resource_templates, |template| {
            catalogue
                .route_template(&template.uri_template)
                .is_some_and(|owner| {
                    self.permits(
                        Operation::ReadResource,
                        &target(&template.uri_template, owner),
                    )
                })
        })
    }

    fn filter<'c, T: Clone>(&self, items: &'c [T], allowed: impl Fn(&T) -> bool) -> Cow<'c, [T]> {
        if self.policies.is_none() {
            return Cow::Borrowed(items);
        }
        Cow::Owned(items.iter().filter(|item| allowed(item)).cloned().collect())
    }
}

/// A prompt or resource as a policy target.
pub fn target<'t>(name: &'t str, backend: &'t str) -> Target<'t> {
    Target {
        name,
        backend,
        hints: Vec::new(),
    }
}

/// A tool as a policy target, with the annotation hints it sets.
pub fn tool_target<'t>(tool: &'t Tool, backend: &'t str) -> Target<'t> {
    let mut hints = Vec::new();
    if let Some(annotations) = &tool.annotations {
        for (name, value) in [
            ("readOnlyHint", annotations.read_only_hint),
            ("destructiveHint", annotations.destructive_hint),
            ("idempotentHint", annotations.idempotent_hint),
            ("openWorldHint", annotations.open_world_hint),
        ] {
            if let Some(value) = value {
                hints.push((name, value));
            }
        }
    }
    Target {
        name: &tool.name,
        backend,
        hints,
    }
}
