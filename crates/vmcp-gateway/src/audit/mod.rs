//! The audit log (`audit`): one JSON line per MCP operation the gateway
//! handles — who asked, what for, which backend served it, the outcome and
//! how long it took — in the shape of ToolHive's audit events.
//!
//! The parts, in the order an event passes them:
//!
//! - [`recorder`]: the handler's side. [`Recorder::begin`] takes what the
//!   request says (caller, client address, target, arguments when
//!   configured) and puts a [`RequestNote`] into the request context;
//!   [`Pending::finish`] adds the result and queues the observation. No
//!   I/O, never waits.
//! - [`note`]: what the handler learns while it serves the request (the
//!   backend it chose, a policy denial, why forwarding failed), recorded by
//!   type so outcomes are never guessed from error text.
//! - [`event`]: pure: an [`Observation`] and the settings become an
//!   [`AuditEvent`] (outcome and reason classified, data redacted and cut).
//! - [`redact`]: pure: which JSON fields and values are secrets, and how
//!   data is cut to `maxDataSize`.
//! - [`sink`]: the bounded queue and the writer thread (stdout, or a file
//!   opened for appending with mode 0600). A full queue drops the event and
//!   counts it (`vmcp_audit_events_dropped_total`); a request never waits.

pub mod event;
pub mod note;
pub mod recorder;
pub mod redact;
pub mod sink;

pub use event::{AuditEvent, Observation, Outcome, Reason};
pub use note::RequestNote;
pub use recorder::{Pending, Recorder};
pub use sink::{AuditSink, SinkError};
