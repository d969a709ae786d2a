//! Authorization of MCP operations with Cedar policies
//! (`incomingAuth.authz.type: cedar`), with the reference gateway's entity
//! model so its policies carry over:
//!
//! - principal `Client::"<sub>"`, a member of `THVGroup::"<group>"` for each
//!   of its groups, with each scalar claim as attribute `claim_<name>` (and
//!   string lists as sets);
//! - actions `Action::"call_tool"`, `"get_prompt"`, `"read_resource"`;
//! - resources `Tool::"<name>"`, `Prompt::"<name>"`, `Resource::"<uri>"`
//!   (the names clients see), each in `MCP::"<backend>"`, with attributes
//!   `name` and `backend` (and, for tools, the annotation hints that are set).
//!
//! Lists are filtered with the same decision: what a caller may not call,
//! get or read is not listed. Anything not permitted is denied, and an
//! evaluation error denies.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression,
};
use serde_json::Value;

use crate::principal::Principal;

/// The MCP operations policies decide on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `tools/call` (and listing the tool).
    CallTool,
    /// `prompts/get` (and listing the prompt).
    GetPrompt,
    /// `resources/read` (and listing the resource or template).
    ReadResource,
}

impl Operation {
    fn action(self) -> &'static str {
        match self {
            Self::CallTool => "call_tool",
            Self::GetPrompt => "get_prompt",
            Self::ReadResource => "read_resource",
        }
    }

    fn resource_type(self) -> &'static str {
        match self {
            Self::CallTool => "Tool",
            Self::GetPrompt => "Prompt",
            Self::ReadResource => "Resource",
        }
    }
}

/// What an operation is on.
#[derive(Clone, Debug, Default)]
pub struct Target<'a> {
    /// The tool or prompt name, or the resource URI, as clients see it.
    pub name: &'a str,
    /// The backend serving it.
    pub backend: &'a str,
    /// Boolean annotation hints (`readOnlyHint`, `destructiveHint`, …) that are set.
    pub hints: Vec<(&'static str, bool)>,
}

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("incomingAuth.authz.policies: {0} problem(s), first: {1}")]
pub struct PolicyError(usize, String);

/// The loaded policies.
pub struct Policies {
    set: PolicySet,
    authorizer: Authorizer,
}

impl Policies {
    /// Loads `texts` (each checked as `vmcp validate` does first).
    pub fn load(texts: &[String]) -> Result<Self, PolicyError> {
        let problems = vmcp_config::validate::check_cedar_policies(texts);
        if let Some((_, first)) = problems.first() {
            return Err(PolicyError(problems.len(), first.clone()));
        }
        let set = PolicySet::from_str(&texts.join("\n"))
            .map_err(|err| PolicyError(1, err.to_string()))?;
        Ok(Self {
            set,
            authorizer: Authorizer::new(),
        })
    }

    /// Policies that permit nothing.
    pub fn deny_all() -> Self {
        Self {
            set: PolicySet::new(),
            authorizer: Authorizer::new(),
        }
    }

    /// Whether `principal` may perform `operation` on `target`.
    pub fn allows(&self, principal: &Principal, operation: Operation, target: &Target<'_>) -> bool {
        match self.request(principal, operation, target) {
            Some((request, entities)) => {
                self.authorizer
                    .is_authorized(&request, &self.set, &entities)
                    .decision()
                    == Decision::Allow
            }
            None => false,
        }
    }

    fn request(
        &self,
        principal: &Principal,
        operation: Operation,
        target: &Target<'_>,
    ) -> Option<(Request, Entities)> {
        let (client, caller) = principal.cedar.get(principal)?;
        let server = uid("MCP", target.backend)?;
        let resource = uid(operation.resource_type(), target.name)?;
        let mut attributes = HashMap::from([
            (
                "name".to_owned(),
                RestrictedExpression::new_string(target.name.to_owned()),
            ),
            (
                "backend".to_owned(),
                RestrictedExpression::new_string(target.backend.to_owned()),
            ),
        ]);
        for (hint, value) in &target.hints {
            attributes.insert((*hint).to_owned(), RestrictedExpression::new_bool(*value));
        }
        let object = Entity::new(resource.clone(), attributes, HashSet::from([server])).ok()?;
        let action = uid("Action", operation.action())?;
        let entities = caller.clone().add_entities([object], None).ok()?;
        let request =
            Request::new(client.clone(), action, resource, Context::empty(), None).ok()?;
        Some((request, entities))
    }
}

/// A principal as Cedar sees it (its `Client` entity, in its groups, with
/// its claims), built the first time a policy decides on it: a principal
/// lives as long as its token is cached, so a session's decisions share it.
#[derive(Clone, Default)]
pub struct CallerEntity(OnceLock<Option<(EntityUid, Entities)>>);

impl CallerEntity {
    fn get(&self, principal: &Principal) -> Option<&(EntityUid, Entities)> {
        self.0.get_or_init(|| caller_entity(principal)).as_ref()
    }
}

/// Derived from the principal's claims, so it never makes two principals differ.
impl PartialEq for CallerEntity {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for CallerEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallerEntity")
    }
}

fn caller_entity(principal: &Principal) -> Option<(EntityUid, Entities)> {
    let client = uid("Client", &principal.subject)?;
    let groups: HashSet<EntityUid> = principal
        .groups
        .iter()
        .filter_map(|group| uid("THVGroup", group))
        .collect();
    let caller = Entity::new(client.clone(), claim_attributes(principal), groups).ok()?;
    let entities = Entities::from_entities([caller], None).ok()?;
    Some((client, entities))
}

fn uid(kind: &str, id: &str) -> Option<EntityUid> {
    Some(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(kind).ok()?,
        EntityId::new(id),
    ))
}

/// Scalar claims as `claim_<name>`; lists of strings as sets.
fn claim_attributes(principal: &Principal) -> HashMap<String, RestrictedExpression> {
    principal
        .claims
        .iter()
        .filter_map(|(name, value)| {
            let expression = match value {
                Value::String(text) => RestrictedExpression::new_string(text.clone()),
                Value::Bool(flag) => RestrictedExpression::new_bool(*flag),
                Value::Number(number) => RestrictedExpression::new_long(number.as_i64()?),
                Value::Array(items) if items.iter().all(Value::is_string) => {
                    RestrictedExpression::new_set(
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|s| RestrictedExpression::new_string(s.to_owned())),
                    )
                }
                _ => return None,
            };
            Some((format!("claim_{name}"), expression))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(sub: &str, groups: &[&str]) -> Principal {
        Principal::from_claims(
            json!({"sub": sub, "groups": groups, "email": format!("{sub}@example.com"), "exp": 9})
                .as_object()
                .expect("object")
                .clone(),
        )
        .expect("sub")
    }

    fn tool<'a>(name: &'a str, backend: &'a str) -> Target<'a> {
        Target {
            name,
            backend,
            hints: vec![("readOnlyHint", name.starts_with("get"))],
        }
    }

    #[test]
    fn groups_claims_backends_and_hints_decide() {
        let policies = Policies::load(&[
            r#"permit(principal in THVGroup::"engineering", action == Action::"call_tool", resource in MCP::"github");"#.into(),
            r#"permit(principal, action == Action::"call_tool", resource) when { resource.readOnlyHint };"#.into(),
            r#"permit(principal, action == Action::"get_prompt", resource == Prompt::"greeting") when { principal.claim_email like "*@example.com" };"#.into(),
            r#"forbid(principal == Client::"mallory", action, resource);"#.into(),
        ])
        .expect("valid policies");
        let alice = principal("alice", &["engineering"]);
        let bob = principal("bob", &["sales"]);
        let mallory = principal("mallory", &["engineering"]);
        assert!(policies.allows(&alice, Operation::CallTool, &tool("merge_pr", "github")));
        assert!(!policies.allows(&bob, Operation::CallTool, &tool("merge_pr", "github")));
        assert!(policies.allows(&bob, Operation::CallTool, &tool("get_issue", "jira")));
        assert!(!policies.allows(&alice, Operation::CallTool, &tool("create_issue", "jira")));
        assert!(
            !policies.allows(&mallory, Operation::CallTool, &tool("get_issue", "jira")),
            "forbid wins"
        );
        let greeting = Target {
            name: "greeting",
            backend: "x",
            hints: vec![],
        };
        assert!(policies.allows(&bob, Operation::GetPrompt, &greeting));
        assert!(
            !policies.allows(&bob, Operation::ReadResource, &greeting),
            "nothing permits reads"
        );
    }

    #[test]
    fn broken_policies_do_not_load() {
        assert!(Policies::load(&["nonsense".into()]).is_err());
        assert!(
            Policies::load(&["permit(principal, action, resource);".into(), " ".into()]).is_err()
        );
    }
}
