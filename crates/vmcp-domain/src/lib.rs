//! vmcp's domain rules, free of I/O, Kubernetes and HTTP, so each rule is a
//! plain table test.
//!
//! - [`health`]: a backend's health from probe and call outcomes, with
//!   thresholds and hysteresis.
//! - [`circuit`]: the per-backend circuit breaker on the request path.
//! - [`status`]: the runtime status model shared by every reporter and
//!   `/status`, and the pure function that builds it.

pub mod circuit;
pub mod health;
pub mod status;
