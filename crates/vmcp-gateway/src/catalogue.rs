//! The merged catalogue: every backend's tools, prompts, resources and
//! resource templates under the names clients see, with the route back to
//! the owning backend. Built by a pure function from capability snapshots
//! and the `aggregation` settings, so its rules are tested without I/O.
//!
//! Rules:
//! - Tools: `excludeAllTools`, then per-backend `excludeAll` and `filter`
//!   (backend names), then `overrides` (rename, new description), then
//!   conflict resolution on the resulting names.
//! - Prompts follow the same conflict resolution (no filters or overrides).
//! - `prefix`: every name becomes `prefixFormat` (with `{workload}`
//!   replaced) followed by the name.
//! - `priority`: names unchanged; on a clash the backend earliest in
//!   `priorityOrder` (then config order) wins.
//! - `manual`: names unchanged; a clash hides every claimant and is
//!   reported (fix it with `overrides`).
//! - Resources keep their URIs (they are addresses, not names); on a clash
//!   the first backend in priority/config order owns the URI. Resource
//!   templates likewise (first owner of an identical template wins); a read
//!   of a URI that no listed resource has goes to the first backend whose
//!   template matches it (see [`crate::uri_template`]: linear in the URI).
//! - Building is linear in the number of items: every clash check is a
//!   hash lookup.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rmcp::model::{MetaObject, Prompt, Resource, ResourceTemplate, Tool};
use vmcp_config::{Aggregation, ConflictResolution};

use crate::backend::BackendCapabilities;
use crate::uri_template::UriTemplate;

/// Where an exposed name leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The owning backend.
    pub backend: Arc<str>,
    /// The name the backend knows it by.
    pub name: String,
}

/// The merged view of all connected backends.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    /// Exposed tools, in config order.
    pub tools: Vec<Tool>,
    /// Exposed prompts.
    pub prompts: Vec<Prompt>,
    /// Exposed resources.
    pub resources: Vec<Resource>,
    /// Exposed resource templates.
    pub resource_templates: Vec<ResourceTemplate>,
    /// Names hidden by conflict resolution, with the reason (for logs and status).
    pub conflicts: Vec<String>,
    tool_routes: HashMap<String, Route>,
    prompt_routes: HashMap<String, Route>,
    resource_routes: HashMap<String, Arc<str>>,
    /// Compiled templates in precedence order, with their owners.
    template_routes: Vec<(UriTemplate, Arc<str>)>,
    /// Owner of each exact template string (completions, clash checks).
    template_owners: HashMap<String, Arc<str>>,
}

/// Which lists changed between two catalogues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListChanges {
    /// `tools/list` differs.
    pub tools: bool,
    /// `prompts/list` differs.
    pub prompts: bool,
    /// `resources/list` or `resources/templates/list` differs.
    pub resources: bool,
}

impl ListChanges {
    /// Whether anything changed.
    pub fn any(self) -> bool {
        self.tools || self.prompts || self.resources
    }
}

impl Catalogue {
    /// The route of an exposed tool name.
    pub fn route_tool(&self, name: &str) -> Option<&Route> {
        self.tool_routes.get(name)
    }

    /// The route of an exposed prompt name.
    pub fn route_prompt(&self, name: &str) -> Option<&Route> {
        self.prompt_routes.get(name)
    }

    /// The backend that serves `uri`: a listed resource first, then the
    /// first matching template.
    pub fn route_resource(&self, uri: &str) -> Option<&Arc<str>> {
        self.resource_routes.get(uri).or_else(|| {
            self.template_routes
                .iter()
                .find(|(template, _)| template.matches(uri))
                .map(|(_, backend)| backend)
        })
    }

    /// The backend that owns a resource template, for completions.
    pub fn route_template(&self, template: &str) -> Option<&Arc<str>> {
        self.template_owners.get(template)
    }

    /// Which lists differ from `older`.
    pub fn changes_since(&self, older: &Catalogue) -> ListChanges {
        ListChanges {
            tools: self.tools != older.tools,
            prompts: self.prompts != older.prompts,
            resources: self.resources != older.resources
                || self.resource_templates != older.resource_templates,
        }
    }
}

/// Merges the snapshots of connected backends. `backends` is in config
/// order; disconnected backends are simply absent.
pub fn build(
    backends: &[(Arc<str>, Arc<BackendCapabilities>)],
    aggregation: &Aggregation,
) -> Catalogue {
    let ordered = precedence_order(backends, aggregation);
    let mut catalogue = Catalogue::default();

    let tool_candidates = ordered.iter().flat_map(|(backend, caps)| {
        exposed_tools(backend, caps, aggregation)
            .into_iter()
            .map(move |(original, tool)| (backend.clone(), original, tool))
    });
    let tools = resolve_names(
        tool_candidates,
        aggregation,
        |tool: &mut Tool, name| {
            tool.name = name.into();
        },
        |tool| tool.name.to_string(),
        &mut catalogue.conflicts,
    );
    for (route, mut tool) in tools {
        tool.meta = Some(origin_meta(tool.meta.take(), &route));
        catalogue.tool_routes.insert(tool.name.to_string(), route);
        catalogue.tools.push(tool);
    }

    let prompt_candidates = ordered.iter().flat_map(|(backend, caps)| {
        caps.prompts
            .iter()
            .map(move |prompt| (backend.clone(), prompt.name.clone(), prompt.clone()))
    });
    let prompts = resolve_names(
        prompt_candidates,
        aggregation,
        |prompt: &mut Prompt, name| {
            prompt.name = name;
        },
        |prompt| prompt.name.clone(),
        &mut catalogue.conflicts,
    );
    for (route, mut prompt) in prompts {
        prompt.meta = Some(origin_meta(prompt.meta.take(), &route));
        catalogue.prompt_routes.insert(prompt.name.clone(), route);
        catalogue.prompts.push(prompt);
    }

    for (backend, caps) in &ordered {
        for resource in &caps.resources {
            if catalogue.resource_routes.contains_key(&resource.uri) {
                catalogue.conflicts.push(format!(
                    "resource {} of backend {backend} hidden: another backend serves the same URI",
                    resource.uri
                ));
                continue;
            }
            catalogue
                .resource_routes
                .insert(resource.uri.clone(), backend.clone());
            catalogue.resources.push(resource.clone());
        }
        for template in &caps.resource_templates {
            if catalogue.route_template(&template.uri_template).is_some() {
                catalogue.conflicts.push(format!(
                    "resource template {} of backend {backend} hidden: another backend serves the same template",
                    template.uri_template
                ));
                continue;
            }
            catalogue
                .template_owners
                .insert(template.uri_template.clone(), backend.clone());
            catalogue.template_routes.push((
                UriTemplate::compile(&template.uri_template),
                backend.clone(),
            ));
            catalogue.resource_templates.push(template.clone());
        }
    }
    catalogue
}

/// Backends in the order in which they win clashes.
fn precedence_order(
    backends: &[(Arc<str>, Arc<BackendCapabilities>)],
    aggregation: &Aggregation,
) -> Vec<(Arc<str>, Arc<BackendCapabilities>)> {
    let mut ordered = backends.to_vec();
    if aggregation.conflict_resolution == ConflictResolution::Priority {
        let order = &aggregation.conflict_resolution_config.priority_order;
        // A stable sort keeps config order among backends the list does not name.
        ordered.sort_by_key(|(name, _)| {
            order
                .iter()
                .position(|p| p.as_str() == &**name)
                .unwrap_or(usize::MAX)
        });
    }
    ordered
}

/// The tools a backend contributes after filters and overrides, paired with
/// their original names.
fn exposed_tools(
    backend: &str,
    caps: &BackendCapabilities,
    aggregation: &Aggregation,
) -> Vec<(String, Tool)> {
    if aggregation.exclude_all_tools {
        return Vec::new();
    }
    let settings = aggregation.tools.iter().find(|t| t.workload == backend);
    if settings.is_some_and(|s| s.exclude_all) {
        return Vec::new();
    }
    caps.tools
        .iter()
        .filter(|tool| {
            settings.is_none_or(|s| s.filter.is_empty() || s.filter.iter().any(|f| *f == tool.name))
        })
        .map(|tool| {
            let original = tool.name.to_string();
            let mut exposed = tool.clone();
            if let Some(over) = settings.and_then(|s| s.overrides.get(&original)) {
                if let Some(name) = &over.name {
                    exposed.name = name.clone().into();
                }
                if let Some(description) = &over.description {
                    exposed.description = Some(description.clone().into());
                }
            }
            (original, exposed)
        })
        .collect()
}

/// `_meta` key naming the backend a tool or prompt comes from.
pub const META_BACKEND: &str = "vmcp/backend";
/// `_meta` key holding a tool's or prompt's name on its backend.
pub const META_ORIGINAL_NAME: &str = "vmcp/originalName";

/// The item's own `_meta` plus where it comes from, so a client can find the
/// backend's name of a renamed tool or prompt.
fn origin_meta(meta: Option<MetaObject>, route: &Route) -> MetaObject {
    let mut meta = meta.unwrap_or_default();
    meta.0
        .insert(META_BACKEND.into(), route.backend.to_string().into());
    meta.0
        .insert(META_ORIGINAL_NAME.into(), route.name.clone().into());
    meta
}

/// Applies the conflict resolution strategy to candidates given in
/// precedence order: `(backend, backend's own name, item)`.
fn resolve_names<T>(
    candidates: impl Iterator<Item = (Arc<str>, String, T)>,
    aggregation: &Aggregation,
    rename: impl Fn(&mut T, String),
    name_of: impl Fn(&T) -> String,
    conflicts: &mut Vec<String>,
) -> Vec<(Route, T)> {
    let strategy = aggregation.conflict_resolution;
    let prefix_format = aggregation.conflict_resolution_config.prefix_format();
    let mut accepted: Vec<(Route, T)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut clashing: HashSet<String> = HashSet::new();
    for (backend, original, mut item) in candidates {
        if strategy == ConflictResolution::Prefix {
            let exposed = format!(
                "{}{}",
                prefix_format.replace("{workload}", &backend),
                name_of(&item)
            );
            rename(&mut item, exposed);
        }
        let exposed = name_of(&item);
        match index.get(&exposed) {
            None => {
                index.insert(exposed, accepted.len());
                accepted.push((
                    Route {
                        backend,
                        name: original,
                    },
                    item,
                ));
            }
            Some(&winner) => {
                let winner_backend = accepted[winner].0.backend.clone();
                if strategy == ConflictResolution::Manual {
                    clashing.insert(exposed.clone());
                    conflicts.push(format!(
                        "{exposed:?} is offered by backends {winner_backend} and {backend}; both hidden until an override renames one"
                    ));
                } else {
                    conflicts.push(format!(
                        "{exposed:?} of backend {backend} hidden: backend {winner_backend} takes precedence"
                    ));
                }
            }
        }
    }
    if !clashing.is_empty() {
        accepted.retain(|(_, item)| !clashing.contains(&name_of(item)));
    }
    accepted
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use vmcp_config::{ConflictResolutionConfig, ToolOverride, WorkloadTools};

    use super::*;

    fn tool(name: &str) -> Tool {
        serde_json::from_value(json!({"name": name, "description": format!("{name} tool"), "inputSchema": {"type": "object"}}))
            .expect("valid tool")
    }

    fn backend(name: &str, tools: &[&str]) -> (Arc<str>, Arc<BackendCapabilities>) {
        (
            name.into(),
            Arc::new(BackendCapabilities {
                tools: tools.iter().map(|t| tool(t)).collect(),
                prompts: vec![
                    serde_json::from_value(json!({"name": "greet"})).expect("valid prompt"),
                ],
                ..Default::default()
            }),
        )
    }

    fn names(catalogue: &Catalogue) -> Vec<String> {
        catalogue.tools.iter().map(|t| t.name.to_string()).collect()
    }

    #[test]
    fn prefix_is_the_default_and_routes_back_to_the_original_name() {
        let catalogue = build(
            &[
                backend("alpha", &["echo"]),
                backend("beta", &["echo", "add"]),
            ],
            &Aggregation::default(),
        );
        assert_eq!(names(&catalogue), ["alpha_echo", "beta_echo", "beta_add"]);
        let route = catalogue.route_tool("beta_echo").expect("routed");
        assert_eq!((&*route.backend, route.name.as_str()), ("beta", "echo"));
        assert!(catalogue.route_prompt("alpha_greet").is_some());
        assert!(catalogue.route_tool("echo").is_none());
        assert!(catalogue.conflicts.is_empty());
    }

    #[test]
    fn renamed_items_say_where_they_come_from_in_meta() {
        let catalogue = build(&[backend("beta", &["echo"])], &Aggregation::default());
        let meta = catalogue.tools[0].meta.as_ref().expect("tool _meta");
        assert_eq!(meta.0.get(META_BACKEND), Some(&json!("beta")));
        assert_eq!(meta.0.get(META_ORIGINAL_NAME), Some(&json!("echo")));
        let meta = catalogue.prompts[0].meta.as_ref().expect("prompt _meta");
        assert_eq!(meta.0.get(META_ORIGINAL_NAME), Some(&json!("greet")));
    }

    #[test]
    fn custom_prefix_format() {
        let aggregation = Aggregation {
            conflict_resolution_config: ConflictResolutionConfig {
                prefix_format: Some("{workload}.".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let catalogue = build(&[backend("a", &["x"])], &aggregation);
        assert_eq!(names(&catalogue), ["a.x"]);
    }

    #[test]
    fn priority_keeps_names_and_lets_the_preferred_backend_win() {
        let aggregation = Aggregation {
            conflict_resolution: ConflictResolution::Priority,
            conflict_resolution_config: ConflictResolutionConfig {
                priority_order: vec!["beta".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let catalogue = build(
            &[
                backend("alpha", &["echo", "only_a"]),
                backend("beta", &["echo"]),
            ],
            &aggregation,
        );
        assert_eq!(names(&catalogue), ["echo", "only_a"]);
        assert_eq!(
            &*catalogue.route_tool("echo").expect("routed").backend,
            "beta"
        );
        assert_eq!(
            &*catalogue.route_tool("only_a").expect("routed").backend,
            "alpha"
        );
        assert_eq!(
            catalogue.conflicts.len(),
            2,
            "echo and the greet prompt: {:?}",
            catalogue.conflicts
        );
    }

    #[test]
    fn manual_hides_every_claimant_until_an_override_settles_it() {
        let mut aggregation = Aggregation {
            conflict_resolution: ConflictResolution::Manual,
            ..Default::default()
        };
        let backends = [backend("alpha", &["echo", "a"]), backend("beta", &["echo"])];
        let catalogue = build(&backends, &aggregation);
        assert_eq!(names(&catalogue), ["a"]);
        assert!(catalogue.conflicts.iter().any(|c| c.contains("\"echo\"")));

        aggregation.tools.push(WorkloadTools {
            workload: "beta".into(),
            filter: vec![],
            overrides: BTreeMap::from([(
                "echo".to_string(),
                ToolOverride {
                    name: Some("beta_echo".into()),
                    description: Some("Echo via beta".into()),
                },
            )]),
            exclude_all: false,
        });
        let catalogue = build(&backends, &aggregation);
        assert_eq!(names(&catalogue), ["echo", "a", "beta_echo"]);
        let route = catalogue.route_tool("beta_echo").expect("routed");
        assert_eq!((&*route.backend, route.name.as_str()), ("beta", "echo"));
        let renamed = catalogue
            .tools
            .iter()
            .find(|t| t.name == "beta_echo")
            .expect("listed");
        assert_eq!(renamed.description.as_deref(), Some("Echo via beta"));
    }

    #[test]
    fn filters_and_exclusions() {
        let backends = [
            backend("alpha", &["echo", "add", "rm"]),
            backend("beta", &["x"]),
        ];
        let aggregation = Aggregation {
            tools: vec![
                WorkloadTools {
                    workload: "alpha".into(),
                    filter: vec!["echo".into(), "rm".into()],
                    overrides: BTreeMap::new(),
                    exclude_all: false,
                },
                WorkloadTools {
                    workload: "beta".into(),
                    filter: vec![],
                    overrides: BTreeMap::new(),
                    exclude_all: true,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            names(&build(&backends, &aggregation)),
            ["alpha_echo", "alpha_rm"]
        );
        let none = Aggregation {
            exclude_all_tools: true,
            ..Default::default()
        };
        let catalogue = build(&backends, &none);
        assert!(catalogue.tools.is_empty());
        assert_eq!(catalogue.prompts.len(), 2, "prompts are not tools");
    }

    #[test]
    fn resources_keep_uris_and_first_owner_wins() {
        let with_resources =
            |name: &str, uri: &str, template: &str| -> (Arc<str>, Arc<BackendCapabilities>) {
                (
                    name.into(),
                    Arc::new(BackendCapabilities {
                        resources: vec![
                            serde_json::from_value(json!({"uri": uri, "name": "r"}))
                                .expect("valid resource"),
                        ],
                        resource_templates: vec![
                            serde_json::from_value(json!({"uriTemplate": template, "name": "t"}))
                                .expect("valid template"),
                        ],
                        ..Default::default()
                    }),
                )
            };
        let catalogue = build(
            &[
                with_resources("a", "file:///shared", "a://items/{id}"),
                with_resources("b", "file:///shared", "b://{+path}"),
            ],
            &Aggregation::default(),
        );
        assert_eq!(catalogue.resources.len(), 1);
        assert_eq!(
            catalogue.route_resource("file:///shared").map(|b| &**b),
            Some("a")
        );
        assert_eq!(
            catalogue.route_resource("a://items/7").map(|b| &**b),
            Some("a")
        );
        assert_eq!(
            catalogue.route_resource("b://deep/path/x").map(|b| &**b),
            Some("b")
        );
        assert_eq!(catalogue.route_resource("a://items/7/extra"), None);
        assert_eq!(catalogue.route_resource("c://nothing"), None);
    }

    #[test]
    fn change_detection_per_list() {
        let one = build(&[backend("a", &["x"])], &Aggregation::default());
        let two = build(&[backend("a", &["x", "y"])], &Aggregation::default());
        assert_eq!(
            two.changes_since(&one),
            ListChanges {
                tools: true,
                prompts: false,
                resources: false
            }
        );
        assert!(!one.changes_since(&one.clone()).any());
    }
}
