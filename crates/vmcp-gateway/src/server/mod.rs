//! The downstream side: the MCP handler each client session gets, and the
//! HTTP surface (`/mcp`, `/health`, `/readyz`, `/status`).

pub mod envelope;
pub mod handler;
pub mod http;
pub mod pagination;
pub mod session_limits;

pub use handler::GatewayHandler;
pub use http::{HttpOptions, router};
