//! The vmcp configuration file.
//!
//! The format follows ToolHive vMCP's field names (see `docs/config.md`):
//! unknown fields are rejected, and every problem in a file is reported at
//! once with its file, line and field path.
//!
//! - [`model`]: the typed configuration and its defaults.
//! - [`audit`]: the audit log settings.
//! - [`incoming_auth`]: client authentication (OIDC) and authorization settings.
//! - [`duration`]: human durations such as `30s` or `1m30s`.
//! - [`load`]: YAML parsing with locations, every problem collected.
//! - [`node_de`]: typed reading of the located YAML, errors classified by kind.
//! - [`secret`]: which fields may hold a secret, so errors never show their values.
//! - [`validate`]: the cross-field rules that serde alone cannot express.
//! - [`schema`]: the JSON Schema generated from the types.

pub mod audit;
pub mod duration;
pub mod incoming_auth;
pub mod load;
pub mod model;
pub mod node_de;
pub mod schema;
pub mod secret;
pub mod validate;

pub use audit::{AuditConfig, AuditEventType};
pub use duration::HumanDuration;
pub use incoming_auth::{AuthzConfig, AuthzType, IncomingAuth, IncomingAuthType, OidcConfig};
pub use load::{ConfigError, ConfigIssue, load_file, load_str};
pub use model::*;
