//! The downstream side: the MCP handler each client session gets, and the
//! HTTP surface (`/mcp`, `/health`, `/readyz`, `/status`), served by our own
//! accept loop (`listener`: connection cap, header/body/idle deadlines).

pub mod activity;
pub mod auth;
pub mod authorization;
pub mod capabilities;
pub mod echo;
pub mod envelope;
pub mod handler;
pub mod http;
pub mod limits;
pub mod listener;
pub mod origin;
pub mod pagination;
pub mod request_body;
pub mod session_delete;
pub mod session_limits;

pub use handler::GatewayHandler;
pub use http::{HttpOptions, router};
