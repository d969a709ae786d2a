//! Live discovery: the `MCPServer` and `MCPServerEntry` objects of the
//! runtime's group become its backends, without a restart.
//!
//! Two watches (one per kind, in the runtime's namespace) keep a local copy
//! of every object; after each change the pure [`backends_of`] turns the
//! members of the group into backend configurations and the result is
//! published on a `watch` channel, which the binary hands to the gateway.
//! Nothing is published until both kinds have been listed once, so the
//! gateway never sees half a group.

use std::collections::BTreeMap;

use futures::StreamExt;
use kube::Api;
use kube::api::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vmcp_config::{BackendConfig, TransportKind};

use crate::resources;

/// What the runtime reads of a group member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Object name: the backend's name.
    pub name: String,
    /// `spec.groupRef`.
    pub group: GroupRef,
    /// Where it is served.
    pub url: Option<String>,
    /// Wire transport as written on the object.
    pub transport: Option<String>,
    /// `status.phase` (MCPServer only).
    pub phase: Option<String>,
}

/// A member's `spec.groupRef`, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRef {
    /// `groupRef: {name: <group>}`, the v1beta1 shape.
    Named(String),
    /// `groupRef: <group>`, a bare name: the shape of vmcp's CRDs before
    /// they followed ToolHive's. No longer read; such a member is reported
    /// so that it can be re-applied in the new shape.
    BareName(String),
    /// No `groupRef`, or one of neither shape.
    Missing,
}

impl GroupRef {
    fn of(spec: Option<&Value>) -> Self {
        match spec.and_then(|s| s.get("groupRef")) {
            Some(Value::Object(reference)) => reference
                .get("name")
                .and_then(Value::as_str)
                .map_or(Self::Missing, |name| Self::Named(name.to_string())),
            Some(Value::String(name)) => Self::BareName(name.clone()),
            _ => Self::Missing,
        }
    }

    /// The group the member is in, if it names one in the current shape.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Named(name) => Some(name),
            Self::BareName(_) | Self::Missing => None,
        }
    }
}

impl Member {
    /// Reads an `MCPServer`: group from `spec.groupRef.name`, URL from
    /// `status.url`, transport from `spec.proxyMode`, else `spec.transport`.
    pub fn of_server(object: &DynamicObject) -> Self {
        let spec = object.data.get("spec");
        let status = object.data.get("status");
        let proxy_mode = string_at(spec, "proxyMode");
        Self {
            name: object.metadata.name.clone().unwrap_or_default(),
            group: GroupRef::of(spec),
            url: string_at(status, "url"),
            transport: proxy_mode.or_else(|| string_at(spec, "transport")),
            phase: string_at(status, "phase"),
        }
    }

    /// Reads an `MCPServerEntry`: group from `spec.groupRef.name`, URL from
    /// `spec.remoteUrl`, transport from `spec.transport`.
    pub fn of_entry(object: &DynamicObject) -> Self {
        let spec = object.data.get("spec");
        Self {
            name: object.metadata.name.clone().unwrap_or_default(),
            group: GroupRef::of(spec),
            url: string_at(spec, "remoteUrl"),
            transport: string_at(spec, "transport"),
            phase: None,
        }
    }
}

fn string_at(parent: Option<&Value>, key: &str) -> Option<String> {
    parent
        .and_then(|p| p.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Why a member of the group is not a backend (logged, never fatal).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    /// An `MCPServer` that has no URL yet, or is stopping.
    #[error("{kind} {name} is not serving yet (phase {phase})")]
    NotServing {
        /// `MCPServer`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its phase.
        phase: String,
    },
    /// The URL is missing or not `http(s)://`.
    #[error("{kind} {name} has no usable URL")]
    BadUrl {
        /// The kind of object.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The transport is not one the gateway can speak over the network.
    #[error(
        "{kind} {name} has unsupported transport {transport:?} (expected streamable-http or sse)"
    )]
    BadTransport {
        /// The kind of object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What it says.
        transport: String,
    },
    /// The member names the group with a bare `groupRef: <name>` (the shape
    /// before v1beta1 objects followed ToolHive's): it must be re-applied
    /// with `groupRef: {name: <name>}`.
    #[error(
        "{kind} {name} names the group as `groupRef: {group}`; re-apply it with `groupRef: {{name: {group}}}`"
    )]
    BareGroupRef {
        /// The kind of object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The group it names.
        group: String,
    },
    /// An `MCPServer` and an `MCPServerEntry` share a name; the server wins.
    #[error("MCPServerEntry {0} has the name of an MCPServer in the group; the MCPServer is used")]
    NameTaken(String),
}

/// The backends for the members of `group`, by name; plus the members that
/// were left out and why.
pub fn backends_of(
    group: &str,
    servers: &[Member],
    entries: &[Member],
) -> (Vec<BackendConfig>, Vec<Skipped>) {
    let mut chosen: BTreeMap<String, BackendConfig> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (kind, members) in [("MCPServer", servers), ("MCPServerEntry", entries)] {
        skipped.extend(members.iter().filter_map(|m| match &m.group {
            GroupRef::BareName(named) if named == group => Some(Skipped::BareGroupRef {
                kind,
                name: m.name.clone(),
                group: named.clone(),
            }),
            _ => None,
        }));
    }
    for server in servers.iter().filter(|m| m.group.name() == Some(group)) {
        if let Some(phase) = server
            .phase
            .as_deref()
            .filter(|p| matches!(*p, "Terminating" | "Stopped"))
        {
            skipped.push(Skipped::NotServing {
                kind: "MCPServer",
                name: server.name.clone(),
                phase: phase.to_string(),
            });
            continue;
        }
        if server.url.is_none() {
            skipped.push(Skipped::NotServing {
                kind: "MCPServer",
                name: server.name.clone(),
                phase: server.phase.clone().unwrap_or_else(|| "unknown".into()),
            });
            continue;
        }
        // A stdio server is proxied by the operator; without a proxyMode it is
        // served as Streamable HTTP.
        let transport = match server.transport.as_deref() {
            None | Some("stdio") => Some(TransportKind::StreamableHttp),
            Some(other) => network_transport(other),
        };
        match backend("MCPServer", server, transport) {
            Ok(config) => {
                chosen.insert(server.name.clone(), config);
            }
            Err(reason) => skipped.push(reason),
        }
    }
    for entry in entries.iter().filter(|m| m.group.name() == Some(group)) {
        if chosen.contains_key(&entry.name) {
            skipped.push(Skipped::NameTaken(entry.name.clone()));
            continue;
        }
        let transport = entry.transport.as_deref().and_then(network_transport);
        match backend("MCPServerEntry", entry, transport) {
            Ok(config) => {
                chosen.insert(entry.name.clone(), config);
            }
            Err(reason) => skipped.push(reason),
        }
    }
    (chosen.into_values().collect(), skipped)
}

fn network_transport(name: &str) -> Option<TransportKind> {
    match name {
        "streamable-http" => Some(TransportKind::StreamableHttp),
        "sse" => Some(TransportKind::Sse),
        _ => None,
    }
}

fn backend(
    kind: &'static str,
    member: &Member,
    transport: Option<TransportKind>,
) -> Result<BackendConfig, Skipped> {
    let Some(transport) = transport else {
        return Err(Skipped::BadTransport {
            kind,
            name: member.name.clone(),
            transport: member.transport.clone().unwrap_or_default(),
        });
    };
    let url = member
        .url
        .clone()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| Skipped::BadUrl {
            kind,
            name: member.name.clone(),
        })?;
    Ok(BackendConfig {
        name: member.name.clone(),
        transport,
        url: Some(url),
        command: None,
        args: Vec::new(),
        env: BTreeMap::new(),
    })
}

/// The backends to run: the configured ones, then the discovered ones whose
/// names are not taken by a configured backend.
pub fn with_static(
    configured: &[BackendConfig],
    discovered: Vec<BackendConfig>,
) -> Vec<BackendConfig> {
    let mut all = configured.to_vec();
    for backend in discovered {
        if all.iter().any(|b| b.name == backend.name) {
            tracing::warn!(backend = %backend.name, "a discovered backend has the name of a configured one; the configured one is used");
        } else {
            all.push(backend);
        }
    }
    all
}

/// Where and what to discover.
#[derive(Clone, Debug)]
pub struct DiscoveryOptions {
    /// Namespace of the runtime (and of its group).
    pub namespace: String,
    /// Name of the `MCPGroup`.
    pub group: String,
}

/// The discovered backends, `None` until the first complete listing.
pub type DiscoveredBackends = watch::Receiver<Option<Vec<BackendConfig>>>;

/// Starts watching the group; the result changes whenever its members do.
/// Watch errors (API down, RBAC) are logged and retried with backoff; the
/// last known members stay in force meanwhile.
pub fn start(
    client: kube::Client,
    options: DiscoveryOptions,
    stop: CancellationToken,
) -> DiscoveredBackends {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(run(client, options, sender, stop));
    receiver
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Server,
    Entry,
}

/// One kind's objects, kept from its watch.
#[derive(Default)]
struct Store {
    members: BTreeMap<String, Member>,
    buffer: Option<BTreeMap<String, Member>>,
    listed: bool,
}

impl Store {
    /// Applies one watch event; true when the members changed.
    fn apply(&mut self, event: Event<DynamicObject>, read: fn(&DynamicObject) -> Member) -> bool {
        match event {
            Event::Init => {
                self.buffer = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                let member = read(&object);
                self.buffer
                    .get_or_insert_with(BTreeMap::new)
                    .insert(member.name.clone(), member);
                false
            }
            Event::InitDone => {
                let fresh = self.buffer.take().unwrap_or_default();
                let changed = !self.listed || fresh != self.members;
                self.members = fresh;
                self.listed = true;
                changed
            }
            Event::Apply(object) => {
                let member = read(&object);
                self.members.insert(member.name.clone(), member.clone()) != Some(member)
            }
            Event::Delete(object) => {
                let name = object.metadata.name.unwrap_or_default();
                self.members.remove(&name).is_some()
            }
        }
    }
}

async fn run(
    client: kube::Client,
    options: DiscoveryOptions,
    sender: watch::Sender<Option<Vec<BackendConfig>>>,
    stop: CancellationToken,
) {
    let servers = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &options.namespace,
        &resources::mcp_server(),
    );
    let entries = Api::<DynamicObject>::namespaced_with(
        client,
        &options.namespace,
        &resources::mcp_server_entry(),
    );
    let config = watcher::Config::default();
    let server_events = watcher::watcher(servers, config.clone())
        .default_backoff()
        .map(|event| (Kind::Server, event));
    let entry_events = watcher::watcher(entries, config)
        .default_backoff()
        .map(|event| (Kind::Entry, event));
    let mut events = std::pin::pin!(futures::stream::select(server_events, entry_events));
    let mut server_store = Store::default();
    let mut entry_store = Store::default();
    let mut last_skipped: Vec<Skipped> = Vec::new();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = events.next() => next,
        };
        let Some((kind, event)) = next else {
            return;
        };
        let event = match event {
            Ok(event) => Some(event),
            Err(error) => {
                let store = match kind {
                    Kind::Server => &mut server_store,
                    Kind::Entry => &mut entry_store,
                };
                // A kind whose CRD is not installed has no members: the other
                // kind's members must not wait for it.
                let missing_crd = matches!(
                    &error,
                    watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404
                );
                if missing_crd && !store.listed {
                    tracing::warn!(kind = ?kind, "its CRD is not installed; treating it as having no members");
                    store.listed = true;
                    store.members.clear();
                } else {
                    tracing::warn!(
                        kind = ?kind,
                        group = %options.group,
                        error = %error,
                        "watching the group's members failed; retrying (the current backends stay)"
                    );
                    continue;
                }
                None
            }
        };
        let changed = match event {
            None => true,
            Some(event) => match kind {
                Kind::Server => server_store.apply(event, Member::of_server),
                Kind::Entry => entry_store.apply(event, Member::of_entry),
            },
        };
        if !(changed && server_store.listed && entry_store.listed) {
            continue;
        }
        let servers: Vec<Member> = server_store.members.values().cloned().collect();
        let entries: Vec<Member> = entry_store.members.values().cloned().collect();
        let (backends, skipped) = backends_of(&options.group, &servers, &entries);
        for reason in skipped.iter().filter(|r| !last_skipped.contains(r)) {
            tracing::warn!(group = %options.group, "{reason}");
        }
        last_skipped = skipped;
        sender.send_if_modified(|current| {
            if current.as_ref() == Some(&backends) {
                false
            } else {
                tracing::info!(
                    group = %options.group,
                    backends = ?backends.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
                    "group members changed"
                );
                *current = Some(backends);
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use kube::core::ApiResource;
    use serde_json::json;

    use super::*;

    fn object(resource: &ApiResource, name: &str, data: Value) -> DynamicObject {
        let mut o = DynamicObject::new(name, resource);
        o.data = data;
        o
    }

    fn member(
        name: &str,
        group: &str,
        url: Option<&str>,
        transport: Option<&str>,
        phase: Option<&str>,
    ) -> Member {
        Member {
            name: name.into(),
            group: GroupRef::Named(group.into()),
            url: url.map(str::to_string),
            transport: transport.map(str::to_string),
            phase: phase.map(str::to_string),
        }
    }

    #[test]
    fn members_of_the_group_become_backends() {
        let servers = [
            member(
                "fetch",
                "g",
                Some("http://fetch:8080/mcp"),
                Some("streamable-http"),
                Some("Ready"),
            ),
            member(
                "legacy",
                "g",
                Some("http://legacy:8080/sse"),
                Some("sse"),
                Some("Ready"),
            ),
            member(
                "stdio-one",
                "g",
                Some("http://s:8080/mcp"),
                Some("stdio"),
                Some("Ready"),
            ),
            member("starting", "g", None, None, Some("Pending")),
            member("stopped", "g", Some("http://x/mcp"), None, Some("Stopped")),
            member(
                "elsewhere",
                "other",
                Some("http://e/mcp"),
                None,
                Some("Ready"),
            ),
        ];
        let entries = [
            member(
                "remote",
                "g",
                Some("https://api.example.com/mcp"),
                Some("streamable-http"),
                None,
            ),
            member("fetch", "g", Some("https://dup/mcp"), Some("sse"), None),
            member("ftp", "g", Some("ftp://nope"), Some("sse"), None),
            member("weird", "g", Some("http://w/mcp"), Some("websocket"), None),
        ];
        let (backends, skipped) = backends_of("g", &servers, &entries);
        let names: Vec<_> = backends
            .iter()
            .map(|b| (b.name.as_str(), b.transport))
            .collect();
        assert_eq!(
            names,
            [
                ("fetch", TransportKind::StreamableHttp),
                ("legacy", TransportKind::Sse),
                ("remote", TransportKind::StreamableHttp),
                ("stdio-one", TransportKind::StreamableHttp),
            ]
        );
        assert_eq!(backends[0].url.as_deref(), Some("http://fetch:8080/mcp"));
        assert_eq!(skipped.len(), 5, "{skipped:?}");
        assert!(skipped.contains(&Skipped::NameTaken("fetch".into())));
        assert!(
            skipped
                .iter()
                .any(|s| matches!(s, Skipped::BadUrl { name, .. } if name == "ftp"))
        );
        assert!(
            skipped
                .iter()
                .any(|s| matches!(s, Skipped::BadTransport { name, .. } if name == "weird"))
        );
    }

    #[test]
    fn group_ref_is_read_from_its_name() {
        let cases = [
            (
                json!({"groupRef": {"name": "g"}}),
                GroupRef::Named("g".into()),
            ),
            (json!({"groupRef": "g"}), GroupRef::BareName("g".into())),
            (json!({"groupRef": {}}), GroupRef::Missing),
            (json!({"groupRef": {"name": 7}}), GroupRef::Missing),
            (json!({"groupRef": 7}), GroupRef::Missing),
            (json!({}), GroupRef::Missing),
        ];
        for (spec, expected) in cases {
            assert_eq!(GroupRef::of(Some(&spec)), expected, "{spec}");
        }
        assert_eq!(GroupRef::of(None), GroupRef::Missing);
        assert_eq!(GroupRef::Named("g".into()).name(), Some("g"));
        assert_eq!(GroupRef::BareName("g".into()).name(), None);
    }

    #[test]
    fn members_are_read_in_the_v1beta1_shapes() {
        let server = object(
            &resources::mcp_server(),
            "fetch",
            json!({
                "spec": {"image": "ghcr.io/x/fetch", "transport": "stdio", "proxyMode": "sse",
                         "proxyPort": 8080, "mcpPort": 9000, "groupRef": {"name": "g"}},
                "status": {"url": "http://fetch.ns.svc:8080/sse", "phase": "Ready"},
            }),
        );
        assert_eq!(
            Member::of_server(&server),
            Member {
                name: "fetch".into(),
                group: GroupRef::Named("g".into()),
                url: Some("http://fetch.ns.svc:8080/sse".into()),
                transport: Some("sse".into()),
                phase: Some("Ready".into()),
            }
        );
        let entry = object(
            &resources::mcp_server_entry(),
            "remote",
            json!({"spec": {"remoteUrl": "https://mcp.example.com/mcp", "transport": "streamable-http",
                            "groupRef": {"name": "g"}}}),
        );
        assert_eq!(
            Member::of_entry(&entry),
            Member {
                name: "remote".into(),
                group: GroupRef::Named("g".into()),
                url: Some("https://mcp.example.com/mcp".into()),
                transport: Some("streamable-http".into()),
                phase: None,
            }
        );
        // The pre-v1beta1-compatible spelling is not read.
        let old = object(
            &resources::mcp_server_entry(),
            "old",
            json!({"spec": {"remoteURL": "https://mcp.example.com/mcp", "transport": "sse", "groupRef": {"name": "g"}}}),
        );
        assert_eq!(Member::of_entry(&old).url, None);
    }

    #[test]
    fn members_with_a_bare_group_name_are_reported_not_served() {
        let mut bare = member("old", "g", Some("http://old/mcp"), Some("sse"), None);
        bare.group = GroupRef::BareName("g".into());
        let mut elsewhere = member("other", "g", Some("http://o/mcp"), Some("sse"), None);
        elsewhere.group = GroupRef::BareName("another".into());
        let mut missing = member("none", "g", Some("http://n/mcp"), Some("sse"), None);
        missing.group = GroupRef::Missing;
        let servers = [bare.clone(), missing.clone()];
        let entries = [bare, elsewhere, missing];
        let (backends, skipped) = backends_of("g", &servers, &entries);
        assert!(backends.is_empty(), "{backends:?}");
        assert_eq!(
            skipped,
            [
                Skipped::BareGroupRef {
                    kind: "MCPServer",
                    name: "old".into(),
                    group: "g".into()
                },
                Skipped::BareGroupRef {
                    kind: "MCPServerEntry",
                    name: "old".into(),
                    group: "g".into()
                },
            ]
        );
        assert_eq!(
            skipped[1].to_string(),
            "MCPServerEntry old names the group as `groupRef: g`; re-apply it with `groupRef: {name: g}`"
        );
    }

    #[test]
    fn configured_backends_keep_their_names() {
        let configured = backends_of(
            "g",
            &[],
            &[member("a", "g", Some("http://a/mcp"), Some("sse"), None)],
        )
        .0;
        let discovered = backends_of(
            "g",
            &[],
            &[
                member(
                    "a",
                    "g",
                    Some("http://other/mcp"),
                    Some("streamable-http"),
                    None,
                ),
                member(
                    "b",
                    "g",
                    Some("http://b/mcp"),
                    Some("streamable-http"),
                    None,
                ),
            ],
        )
        .0;
        let all = with_static(&configured, discovered);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].url.as_deref(), Some("http://a/mcp"));
        assert_eq!(all[1].name, "b");
    }

    #[test]
    fn the_store_publishes_after_its_first_listing() {
        let object = |name: &str| {
            object(
                &resources::mcp_server_entry(),
                name,
                json!({"spec": {"groupRef": {"name": "g"}, "remoteUrl": "http://x/mcp", "transport": "sse"}}),
            )
        };
        let mut store = Store::default();
        assert!(!store.apply(Event::Init, Member::of_entry));
        assert!(!store.apply(Event::InitApply(object("a")), Member::of_entry));
        assert!(!store.listed);
        assert!(store.apply(Event::InitDone, Member::of_entry));
        assert!(
            !store.apply(Event::Apply(object("a")), Member::of_entry),
            "same content"
        );
        assert!(store.apply(Event::Apply(object("b")), Member::of_entry));
        assert!(store.apply(Event::Delete(object("a")), Member::of_entry));
        assert_eq!(store.members.keys().collect::<Vec<_>>(), ["b"]);
    }
}
