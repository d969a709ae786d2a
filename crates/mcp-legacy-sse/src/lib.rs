//! An [rmcp] client transport for MCP's legacy HTTP+SSE transport (protocol revision
//! 2024-11-05), which rmcp itself does not provide.
//!
//! # The protocol
//!
//! 1. The client opens `GET <sse url>` with `Accept: text/event-stream`.
//! 2. The server's first event is `event: endpoint`; its data is the URL (usually a path
//!    with a session id in the query) the client must POST its messages to.
//! 3. Each client message is one `POST` of a JSON-RPC message to that URL; the server
//!    answers 202 (or 200) and the body carries nothing of interest.
//! 4. Every server message (responses, requests, notifications) arrives on the event
//!    stream as `event: message` with the JSON-RPC message as data.
//!
//! The session lives as long as the event stream: when it ends, the session is gone and
//! a new connection (with a new `initialize`) is needed.
//!
//! # Use
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_legacy_sse::{SseClientConfig, connect};
//!
//! let mut config = SseClientConfig::new("http://127.0.0.1:8000/sse".parse()?);
//! config
//!     .headers
//!     .insert(http::header::AUTHORIZATION, "Bearer secret".parse()?);
//! let transport = connect(config, reqwest::Client::new()).await?;
//! let session_end = transport.end_signal();
//!
//! let client = rmcp::serve_client((), transport).await?;
//! let tools = client.list_tools(Default::default()).await?;
//! println!("{} tools", tools.tools.len());
//!
//! // Elsewhere: learn that the server went away.
//! session_end.wait().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//!
//! The `endpoint` event must name a URL on the same origin (scheme, host and port) as the
//! configured SSE URL; otherwise [`connect`] fails with
//! [`SseClientError::CrossOriginEndpoint`], so a server cannot divert messages and the
//! configured headers elsewhere.
#![deny(missing_docs)]

mod endpoint;
mod error;
mod parser;
mod transport;

pub use error::SseClientError;
pub use transport::{SessionEndSignal, SseClientConfig, SseClientTransport, connect};
