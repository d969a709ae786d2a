//! `vmcp-operator`: provisions each `VirtualMCPServer` and reads the
//! runtime's status, without ever writing the runtime's fields.
//!
//! The domain logic is pure and free of I/O:
//!
//! - [`config`]: the runtime configuration rendered from the object and
//!   validated like `vmcp validate`;
//! - [`incoming_auth`]: `spec.incomingAuth` (an `MCPOIDCConfig`, inline
//!   Cedar policies) rendered into the configuration's `incomingAuth`, and
//!   the env and volumes it needs (the client secret as a `secretKeyRef`);
//! - [`render`]: every child (ServiceAccount, Role, RoleBinding from the
//!   same builders as `deploy/rbac/vmcp-runtime.yaml`; ConfigMap,
//!   Deployment, Service) as the apply configuration the operator sends;
//! - [`conditions`]: the operator's conditions, including
//!   `RuntimeReporting` and kstatus' `Reconciling` / `Stalled`;
//! - [`status`]: the operator's part of the status, the `MCPGroup` status,
//!   and whether either needs a write;
//! - [`merge`]: pod-template merging and the containment check that keeps
//!   an unchanged reconcile write-free;
//!
//! The I/O lives in [`controller`] (kube-rs' `runtime::Controller`,
//! server-side apply) and [`metrics`]; the binary `vmcp-operator` wires
//! them up.

pub mod conditions;
pub mod config;
pub mod controller;
pub mod incoming_auth;
pub mod merge;
pub mod metrics;
pub mod names;
pub mod render;
pub mod settings;
pub mod status;

pub use names::FIELD_MANAGER;
pub use settings::Settings;
