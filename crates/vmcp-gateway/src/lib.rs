//! vmcp's runtime: one MCP endpoint in front of many backend MCP servers.
//!
//! Data flows one way (see `docs/architecture.md`):
//!
//! ```text
//! config / discovery ─► backend registry (set_backends reconciles by name)
//!              │
//!              ▼
//!           backend supervisors (one per backend: connect, watch, reconnect)
//!              │ capability snapshots
//!              ▼
//!           catalogue (pure merge + conflict resolution) ─► sessions get list_changed
//!              │ routes
//!              ▼
//!           MCP server (/mcp) ─► forwarding (timeouts, cancellation) ◄─ relay (progress, logs, sampling…)
//! ```
//!
//! - [`audit`]: the audit log, one event per MCP operation (off the request path).
//! - [`backend`]: clients for each upstream transport and their supervisors.
//! - [`registry`]: which backends exist now, and how a new list is reconciled.
//! - [`catalogue`]: the merged, conflict-resolved view of all backends (no I/O).
//! - [`forward`]: sending one downstream request to its backend.
//! - [`routes`], [`relay`]: what a backend sends back (progress, log messages,
//!   resource updates, sampling/elicitation/roots) reaches the right client.
//! - [`input_rounds`]: 2026-07-28 clients answer a backend's questions in
//!   rounds (`InputRequiredResult`), while the backend's call keeps running.
//! - [`sessions`], [`subscriptions`]: the client sessions and what each asked for.
//! - [`uri_template`]: linear-time matching of resource URIs to templates.
//! - [`server`]: the downstream MCP handler and the HTTP surface.
//! - [`policy_source`]: the Cedar policies, reloaded when their file changes.
//! - [`gateway`]: wires the parts together and owns their lifecycle.

pub mod audit;
pub mod backend;
pub mod catalogue;
pub mod forward;
pub mod gateway;
pub mod input_rounds;
pub mod log_limit;
pub mod policy_source;
pub mod registry;
pub mod relay;
pub mod routes;
pub mod server;
pub mod sessions;
pub mod spare_capacity;
pub mod subscriptions;
pub mod uri_template;

pub use gateway::{Gateway, GatewayOptions, RegistryChanges};
