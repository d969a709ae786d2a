//! The controllers: kube-rs' `runtime::Controller` for `VirtualMCPServer`
//! (owning its children, watching the `MCPGroup`s and `MCPOIDCConfig`s
//! mapped to the gateways that reference them) and for `MCPGroup`
//! (watching its members).
//!
//! Every write is a server-side apply under [`FIELD_MANAGER`] that sends
//! only the operator's fields, and happens only when the current object
//! does not already hold them ([`crate::merge::contains`] plus the
//! applied-hash annotation for fields the operator stops sending;
//! [`OperatorStatus::is_held_by`] for the status). A reconcile that finds
//! everything in place, such as the one after each runtime heartbeat,
//! makes no write.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use tracing::{Instrument, debug, info, info_span, warn};
use vmcp_crd::{MCPGroup, MCPOIDCConfig, VirtualMCPServer};
use vmcp_kube::api_error::Failure;

use crate::conditions::{
    self, DeploymentView, GroupState, Observations, RbacState, RuntimeReport, ServiceState,
};
use crate::config::{ConfigInputs, render_config};
use crate::incoming_auth::{self, Lookups, RenderedIncomingAuth};
use crate::merge::contains;
use crate::metrics::Metrics;
use crate::names::{CONTAINER, FIELD_MANAGER};
use crate::render::{self, Child, ChildKind, Owner, RenderError};
use crate::settings::Settings;
use crate::status::{OperatorStatus, group_status, group_status_held};

/// Longest time between two reconciles of an unchanged object (a
/// write-free resync).
pub const RESYNC: Duration = Duration::from_secs(300);
/// Delay before the first retry of a reconcile that failed transiently.
pub const RETRY: Duration = Duration::from_secs(5);
/// Reconciles of one kind running at once: bounds the memory a burst
/// (1,000 new objects, a resync) holds at a time; kube-rs' default is
/// unbounded.
pub const CONCURRENCY: u16 = 8;
/// How soon a gateway whose `MCPOIDCConfig` names a missing Secret or
/// ConfigMap (or key) is looked at again: those kinds are not watched
/// (that would need `list` and `watch` of every Secret).
pub const REFERENCE_RECHECK: Duration = Duration::from_secs(10);
/// Longest delay between retries of an object that keeps failing.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// Objects whose consecutive failures are counted at most (the bound of
/// the backoff table).
const MAX_TRACKED_FAILURES: usize = 4096;

/// The delay before retry number `failures` (1 for the first) of one
/// object: [`RETRY`] doubled at each failure, at most [`RETRY_MAX`], so a
/// lasting failure (an exhausted Service IP range, an API server under
/// load) is not retried every few seconds for every object.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY.saturating_mul(1 << doublings).min(RETRY_MAX)
}

const VMCP_KIND: &str = "VirtualMCPServer";
const GROUP_KIND: &str = "MCPGroup";

/// Why a reconcile failed (it is retried after [`RETRY`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed transiently.
    #[error("{action}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The object cannot be rendered.
    #[error("cannot render the children")]
    Render(#[source] RenderError),
}

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// What the controllers share.
pub struct Context {
    client: Client,
    settings: Settings,
    metrics: Metrics,
    recorder: Recorder,
    /// Consecutive failed reconciles per object (`kind/namespace/name`).
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Context {
    /// A context for `client`; Events are reported as `vmcp-operator`
    /// from `instance` (the pod name).
    pub fn new(client: Client, settings: Settings, metrics: Metrics, instance: String) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_string(),
                instance: Some(instance),
            },
        );
        Self {
            client,
            settings,
            metrics,
            recorder,
            failures: std::sync::Mutex::default(),
        }
    }

    /// Counts a failure of `key`; the delay before its retry.
    fn failed(&self, key: String) -> Duration {
        let count = self.failures.lock().map_or(1, |mut map| {
            // An object deleted while failing never succeeds, so its entry
            // would stay: past the bound, one entry makes room (that object
            // merely restarts its backoff).
            if map.len() >= MAX_TRACKED_FAILURES
                && !map.contains_key(&key)
                && let Some(evicted) = map.keys().next().cloned()
            {
                map.remove(&evicted);
            }
            let count = map.entry(key).or_insert(0);
            *count = count.saturating_add(1);
            *count
        });
        retry_delay(count)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    fn succeeded(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

fn failure_key(kind: &str, object: &impl ResourceExt) -> String {
    format!(
        "{kind}/{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

fn api_resource(kind: ChildKind) -> ApiResource {
    let (group, version) = kind
        .api_version()
        .split_once('/')
        .unwrap_or(("", kind.api_version()));
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.kind()),
        kind.plural(),
    )
}

fn member_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(vmcp_crd::GROUP, vmcp_crd::VERSION, kind),
        plural,
    )
}

/// Runs both controllers until `shutdown` completes; in one namespace or,
/// with `None`, in all.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let ns = namespace.as_deref();
    let client = &ctx.client;
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));

    let vmcp_controller = Controller::new(
        scoped::<VirtualMCPServer>(client, ns),
        watcher::Config::default(),
    )
    .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY));
    let store = vmcp_controller.store();
    let oidc_store = store.clone();
    let gateways = vmcp_controller
        .owns(scoped::<ServiceAccount>(client, ns), owned.clone())
        .owns(scoped::<Role>(client, ns), owned.clone())
        .owns(scoped::<RoleBinding>(client, ns), owned.clone())
        .owns(scoped::<Service>(client, ns), owned.clone())
        .owns(scoped::<ConfigMap>(client, ns), owned.clone())
        .owns(scoped::<Deployment>(client, ns), owned)
        .watches(
            scoped::<MCPGroup>(client, ns),
            watcher::Config::default(),
            move |group: MCPGroup| {
                let name = group.name_any();
                referencing(&store, &group, |spec| spec.group_ref.name == name)
            },
        )
        .watches(
            scoped::<MCPOIDCConfig>(client, ns),
            watcher::Config::default(),
            move |config: MCPOIDCConfig| {
                let name = config.name_any();
                referencing(&oidc_store, &config, |spec| {
                    spec.incoming_auth
                        .oidc_config_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
                })
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_gateway, error_policy_gateway, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(error = %error, "gateway controller");
            }
        });

    let servers = member_resource("MCPServer", "mcpservers");
    let entries = member_resource("MCPServerEntry", "mcpserverentries");
    let dynamic = |resource: &ApiResource| -> Api<DynamicObject> {
        match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
            None => Api::all_with(client.clone(), resource),
        }
    };
    let groups = Controller::new(scoped::<MCPGroup>(client, ns), watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .watches_with(
            dynamic(&servers),
            servers.clone(),
            watcher::Config::default(),
            member_group,
        )
        .watches_with(
            dynamic(&entries),
            entries.clone(),
            watcher::Config::default(),
            member_group,
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_group, error_policy_group, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(error = %error, "group controller");
            }
        });

    futures::join!(gateways, groups);
}

/// The gateways in the namespace of `object` whose spec refers to it
/// (`refers`): what a watch of a referenced kind maps an event to.
fn referencing(
    store: &kube::runtime::reflector::Store<VirtualMCPServer>,
    object: &impl ResourceExt,
    refers: impl Fn(&vmcp_crd::VirtualMCPServerSpec) -> bool,
) -> Vec<ObjectRef<VirtualMCPServer>> {
    let namespace = object.namespace();
    store
        .state()
        .into_iter()
        .filter(|v| v.namespace() == namespace && refers(&v.spec))
        .map(|v| ObjectRef::from_obj(&*v))
        .collect()
}

/// The group a member names in `spec.groupRef.name`.
fn member_group(member: DynamicObject) -> Option<ObjectRef<MCPGroup>> {
    let group = member.data["spec"]["groupRef"]["name"].as_str()?;
    let namespace = member.namespace()?;
    Some(ObjectRef::new(group).within(&namespace))
}

fn error_policy_gateway(vmcp: Arc<VirtualMCPServer>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(VMCP_KIND);
    let delay = ctx.failed(failure_key(VMCP_KIND, vmcp.as_ref()));
    warn!(error = %error, cause = ?std::error::Error::source(error).map(ToString::to_string), "reconcile failed; retrying");
    Action::requeue(delay)
}

fn error_policy_group(group: Arc<MCPGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(GROUP_KIND);
    let delay = ctx.failed(failure_key(GROUP_KIND, group.as_ref()));
    warn!(error = %error, cause = ?std::error::Error::source(error).map(ToString::to_string), "group reconcile failed; retrying");
    Action::requeue(delay)
}

async fn reconcile_gateway(
    vmcp: Arc<VirtualMCPServer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        kind = VMCP_KIND,
        namespace = vmcp.namespace().unwrap_or_default(),
        name = vmcp.name_any()
    );
    let _guard = ctx.metrics.start(VMCP_KIND);
    let action = Gateway::new(&vmcp, &ctx)?
        .reconcile()
        .instrument(span)
        .await?;
    ctx.succeeded(&failure_key(VMCP_KIND, vmcp.as_ref()));
    Ok(action)
}

/// What a child's apply achieved.
enum Ensured {
    /// The object as it is now.
    Current(Value),
    /// A permanent failure (RBAC, invalid object), sanitised.
    Failed(String),
}

/// One reconcile of one `VirtualMCPServer`.
struct Gateway<'a> {
    vmcp: &'a VirtualMCPServer,
    ctx: &'a Context,
    owner: Owner,
}

impl<'a> Gateway<'a> {
    fn new(vmcp: &'a VirtualMCPServer, ctx: &'a Context) -> Result<Self, Error> {
        Ok(Self {
            vmcp,
            ctx,
            owner: Owner::of(vmcp).map_err(Error::Render)?,
        })
    }

    fn dynamic(&self, kind: ChildKind) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.ctx.client.clone(),
            &self.owner.namespace,
            &api_resource(kind),
        )
    }

    async fn current(&self, kind: ChildKind, name: &str) -> Result<Option<Value>, Error> {
        let found = self
            .dynamic(kind)
            .get_opt(name)
            .await
            .map_err(kube_error(format!("get {} {name}", kind.kind())))?;
        Ok(found.and_then(|object| serde_json::to_value(object).ok()))
    }

    /// Applies `child` unless the current object already holds it.
    async fn ensure(&self, child: &Child) -> Result<Ensured, Error> {
        if let Some(current) = self.current(child.kind, &child.name).await?
            && contains(&current, &child.body)
        {
            return Ok(Ensured::Current(current));
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = self
            .dynamic(child.kind)
            .patch(&child.name, &params, &Patch::Apply(&child.body))
            .await;
        self.ctx.metrics.write(child.kind.kind());
        match applied {
            Ok(object) => {
                info!(child = child.kind.kind(), child_name = %child.name, "applied");
                Ok(Ensured::Current(
                    serde_json::to_value(object).unwrap_or(Value::Null),
                ))
            }
            Err(error) => {
                let failure = Failure::of(&error);
                if failure.is_transient() {
                    return Err(kube_error(format!(
                        "apply {} {}",
                        child.kind.kind(),
                        child.name
                    ))(error));
                }
                warn!(child = child.kind.kind(), child_name = %child.name, error = %error, "apply failed");
                Ok(Ensured::Failed(format!(
                    "{} {}: {}",
                    child.kind.kind(),
                    child.name,
                    apply_hint(failure)
                )))
            }
        }
    }

    async fn group_state(&self) -> Result<GroupState, Error> {
        let groups: Api<MCPGroup> = Api::namespaced(self.ctx.client.clone(), &self.owner.namespace);
        let name = &self.vmcp.spec.group_ref.name;
        let found = groups
            .get_opt(name)
            .await
            .map_err(kube_error(format!("get MCPGroup {name}")))?;
        Ok(if found.is_some() {
            GroupState::Found
        } else {
            GroupState::Missing
        })
    }

    /// Reads what `spec.incomingAuth` references (the `MCPOIDCConfig`, the
    /// keys of its client Secret, its CA bundle ConfigMap) and renders it.
    async fn incoming_auth(&self) -> Result<RenderedIncomingAuth, Error> {
        let mut found = Lookups::default();
        if let Some(name) = incoming_auth::oidc_config_to_read(self.vmcp) {
            let configs: Api<MCPOIDCConfig> =
                Api::namespaced(self.ctx.client.clone(), &self.owner.namespace);
            found.oidc_config = configs
                .get_opt(name)
                .await
                .map_err(kube_error(format!("get MCPOIDCConfig {name}")))?;
        }
        let inline = found
            .oidc_config
            .as_ref()
            .and_then(|c| c.spec.inline.as_ref());
        let secret = inline
            .and_then(|i| i.client_secret_ref.as_ref())
            .map(|r| r.name.clone());
        let ca = inline
            .and_then(|i| i.ca_bundle_ref.as_ref())
            .and_then(|c| c.config_map_ref.as_ref())
            .map(|r| r.name.clone());
        // An empty name cannot exist (and is not a valid request path).
        if let Some(name) = secret.filter(|n| !n.is_empty()) {
            let secrets: Api<Secret> =
                Api::namespaced(self.ctx.client.clone(), &self.owner.namespace);
            found.client_secret_keys = secrets
                .get_opt(&name)
                .await
                .map_err(kube_error(format!("get Secret {name}")))?
                .map(|s| {
                    let data = s.data.unwrap_or_default().into_keys();
                    data.chain(s.string_data.unwrap_or_default().into_keys())
                        .collect()
                });
        }
        if let Some(name) = ca.filter(|n| !n.is_empty()) {
            let maps: Api<ConfigMap> =
                Api::namespaced(self.ctx.client.clone(), &self.owner.namespace);
            found.ca_bundle = maps
                .get_opt(&name)
                .await
                .map_err(kube_error(format!("get ConfigMap {name}")))?
                .map(|m| m.data.unwrap_or_default());
        }
        Ok(incoming_auth::render_incoming_auth(self.vmcp, &found))
    }

    async fn secrets_digest(
        &self,
        names: &std::collections::BTreeSet<String>,
    ) -> Result<String, Error> {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.owner.namespace);
        let mut found: Vec<(String, Option<render::SecretData>)> = Vec::new();
        for name in names {
            let secret = secrets
                .get_opt(name)
                .await
                .map_err(kube_error(format!("get Secret {name}")))?;
            let data = secret.map(|s| {
                let mut data: render::SecretData = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (key, value) in s.string_data.unwrap_or_default() {
                    data.insert(key, value.into_bytes());
                }
                data
            });
            found.push((name.clone(), data));
        }
        Ok(render::secrets_digest(
            found
                .iter()
                .map(|(name, data)| (name.as_str(), data.as_ref())),
        ))
    }

    async fn reconcile(self) -> Result<Action, Error> {
        if self.vmcp.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let settings = &self.ctx.settings;
        let group = self.group_state().await?;
        let mut rbac = RbacState::Blocked;
        let mut apply_failure: Option<String> = None;
        let mut service: Option<Value> = None;
        let mut deployment: Option<Value> = None;
        let mut cluster_ip: Option<String> = None;

        if group == GroupState::Found {
            rbac = match &self.vmcp.spec.service_account {
                Some(account) => RbacState::Provided(account.clone()),
                None => {
                    let mut state = RbacState::Applied;
                    for child in render::rbac(&self.owner, &self.vmcp.spec.group_ref.name) {
                        if let Ensured::Failed(cause) = self.ensure(&child).await? {
                            state = RbacState::Failed(cause);
                            break;
                        }
                    }
                    state
                }
            };
            match self
                .ensure(&render::service(&self.owner, self.vmcp))
                .await?
            {
                Ensured::Current(current) => {
                    cluster_ip = current["spec"]["clusterIP"]
                        .as_str()
                        .filter(|ip| !ip.is_empty() && *ip != "None")
                        .map(str::to_string);
                    service = Some(current);
                }
                Ensured::Failed(cause) => apply_failure = Some(cause),
            }
        }

        let incoming = self.incoming_auth().await?;
        let config = render_config(&ConfigInputs {
            name: &self.owner.name,
            namespace: &self.owner.namespace,
            group: &self.vmcp.spec.group_ref.name,
            config: self.vmcp.spec.config.as_ref(),
            cluster_domain: &settings.cluster_domain,
            cluster_ip: cluster_ip.as_deref(),
            requires_oidc: self.vmcp.spec.incoming_auth.type_ == vmcp_crd::IncomingAuthType::Oidc,
            incoming_auth: Some(&incoming),
        });

        if group == GroupState::Found && config.is_valid() && apply_failure.is_none() {
            match self
                .ensure(&render::config_map(&self.owner, &config))
                .await?
            {
                Ensured::Current(_) => {
                    let extra = &incoming.pod;
                    let template = render::pod_template(&self.owner, self.vmcp, settings, extra);
                    let secrets = render::referenced_secrets(self.vmcp, &template);
                    let digest = self.secrets_digest(&secrets).await?;
                    let hash =
                        render::config_hash(&config, &digest, incoming.mounted_digest.as_deref());
                    let child = render::deployment(&self.owner, self.vmcp, settings, extra, &hash);
                    match self.ensure(&child).await? {
                        Ensured::Current(current) => deployment = Some(current),
                        Ensured::Failed(cause) => apply_failure = Some(cause),
                    }
                }
                Ensured::Failed(cause) => apply_failure = Some(cause),
            }
        } else {
            deployment = self
                .current(
                    ChildKind::Deployment,
                    &crate::names::deployment_name(&self.owner.name),
                )
                .await?;
            if service.is_none() {
                service = self
                    .current(
                        ChildKind::Service,
                        &crate::names::service_name(&self.owner.name),
                    )
                    .await?;
            }
        }

        let now = Timestamp::now();
        let status = self.vmcp.status.as_ref();
        let observations = Observations {
            generation: self.owner.generation,
            group,
            config_issues: config.issues.clone(),
            rbac,
            apply_failure,
            deployment: deployment.as_ref().map(deployment_view),
            service: service
                .as_ref()
                .map_or(ServiceState::Missing, service_state),
            runtime: RuntimeReport {
                timestamp: status
                    .and_then(|s| s.timestamp.as_deref())
                    .and_then(|t| t.parse().ok()),
                observed_generation: status.and_then(|s| s.observed_generation),
            },
            heartbeat: config.status_reporting_interval(),
            now,
        };
        let computed = conditions::compute(&observations);
        let previous = status
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let settled = conditions::settle(&previous, &computed, self.owner.generation, now);
        let desired = OperatorStatus {
            url: render::url(&self.owner, settings),
            oidc_config_hash: incoming.oidc_config_hash.clone(),
            conditions: settled,
        };
        if !desired.is_held_by(status) {
            let api: Api<VirtualMCPServer> =
                Api::namespaced(self.ctx.client.clone(), &self.owner.namespace);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let body = desired.apply_body(&self.owner.name, &self.owner.namespace);
            self.ctx.metrics.write("status");
            api.patch_status(&self.owner.name, &params, &Patch::Apply(&body))
                .await
                .map_err(kube_error("apply status"))?;
            debug!("status applied");
            self.record_failures(&previous, &desired.conditions).await;
        }
        let mut next = conditions::next_check(&observations).map_or(RESYNC, |d| d.min(RESYNC));
        if incoming.awaiting_reference {
            next = next.min(REFERENCE_RECHECK);
        }
        Ok(Action::requeue(next))
    }

    /// A Warning Event for each condition that just turned bad, so
    /// `kubectl describe vmcp` shows provisioning failures.
    async fn record_failures(
        &self,
        previous: &[vmcp_crd::Condition],
        desired: &[vmcp_crd::Condition],
    ) {
        let reference = self.vmcp.object_ref(&());
        for condition in conditions::new_failures(previous, desired) {
            let event = Event {
                type_: EventType::Warning,
                reason: condition.reason.clone(),
                note: Some(truncate(&condition.message, 1000)),
                action: "Reconcile".to_string(),
                secondary: None,
            };
            self.ctx.metrics.write("Event");
            if let Err(error) = self.ctx.recorder.publish(&event, &reference).await {
                warn!(error = %error, reason = %condition.reason, "cannot record an Event");
            }
        }
    }
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What an apply failure means for the user, without the server's text.
fn apply_hint(failure: Failure) -> &'static str {
    match failure {
        Failure::Forbidden => {
            "forbidden: the operator's ClusterRole lacks a permission (deploy/operator/rbac.yaml)"
        }
        Failure::Unauthorized => "the operator's credentials were not accepted",
        Failure::Invalid => {
            "the API server rejected the object (an invalid spec.podTemplateSpec or serviceAccount?)"
        }
        Failure::NotFound => "the namespace does not exist",
        Failure::Transient => "the API server is unreachable or busy",
    }
}

fn deployment_view(current: &Value) -> DeploymentView {
    let parsed: Option<Deployment> = serde_json::from_value(current.clone()).ok();
    let config_generation = current["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == CONTAINER)
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == "VMCP_CONFIG_GENERATION")
        .and_then(|e| e["value"].as_str().and_then(|v| v.parse().ok()));
    DeploymentView {
        generation: parsed
            .as_ref()
            .and_then(|d| d.metadata.generation)
            .unwrap_or(0),
        desired_replicas: parsed.as_ref().and_then(|d| d.spec.replicas).unwrap_or(1),
        status: parsed.and_then(|d| d.status),
        config_generation,
    }
}

fn service_state(current: &Value) -> ServiceState {
    let load_balancer = current["spec"]["type"] == "LoadBalancer";
    let has_ingress = current["status"]["loadBalancer"]["ingress"]
        .as_array()
        .is_some_and(|i| !i.is_empty());
    if load_balancer && !has_ingress {
        ServiceState::AwaitingLoadBalancer
    } else {
        ServiceState::Ready
    }
}

async fn reconcile_group(group: Arc<MCPGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let name = group.name_any();
    let span = info_span!("reconcile", kind = GROUP_KIND, namespace = %namespace, name = %name);
    let _guard = ctx.metrics.start(GROUP_KIND);
    async move {
        let members = |kind: &str, plural: &str| {
            Api::<DynamicObject>::namespaced_with(
                ctx.client.clone(),
                &namespace,
                &member_resource(kind, plural),
            )
        };
        let mut names: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for (slot, (kind, plural)) in [
            ("MCPServer", "mcpservers"),
            ("MCPServerEntry", "mcpserverentries"),
        ]
        .into_iter()
        .enumerate()
        {
            let list = members(kind, plural)
                .list(&ListParams::default())
                .await
                .map_err(kube_error(format!("list {plural}")))?;
            names[slot] = list
                .items
                .into_iter()
                .filter(|m| m.data["spec"]["groupRef"]["name"].as_str() == Some(name.as_str()))
                .map(|m| m.name_any())
                .collect();
        }
        let [servers, entries] = names;
        let generation = group.metadata.generation.unwrap_or(0);
        let desired = group_status(
            servers,
            entries,
            generation,
            group.status.as_ref(),
            Timestamp::now(),
        );
        if !group_status_held(group.status.as_ref(), &desired) {
            let body = serde_json::json!({
                "apiVersion": vmcp_crd::API_VERSION,
                "kind": GROUP_KIND,
                "metadata": { "name": name, "namespace": namespace },
                "status": desired,
            });
            let api: Api<MCPGroup> = Api::namespaced(ctx.client.clone(), &namespace);
            ctx.metrics.write("MCPGroup/status");
            api.patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(kube_error("apply MCPGroup status"))?;
            debug!("group status applied");
        }
        ctx.succeeded(&failure_key(GROUP_KIND, group.as_ref()));
        Ok(Action::requeue(RESYNC))
    }
    .instrument(span)
    .await
}
