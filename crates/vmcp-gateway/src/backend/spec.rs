//! A backend's resolved settings: the config entry plus its auth and timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use vmcp_config::{AuthType, BackendAuth, BackendConfig, Config, TransportKind};

/// Everything needed to connect to one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendSpec {
    /// Unique name.
    pub name: String,
    /// Wire transport.
    pub transport: TransportKind,
    /// Where it is.
    pub endpoint: Endpoint,
    /// Outgoing authentication.
    pub auth: Option<BackendAuth>,
    /// Timeout of one call (and of connecting).
    pub call_timeout: Duration,
    /// Most requests the gateway sends this backend at once. Set to the
    /// client connection limit (`server.connections.max`): clients can have
    /// no more requests open than connections (HTTP/1.1), so the gateway adds
    /// no queue of its own below their concurrency, and the bound still holds.
    pub max_in_flight: usize,
}

/// How to reach a backend.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    /// An HTTP URL (Streamable HTTP or legacy SSE).
    Url(String),
    /// A child process.
    Command {
        /// Program.
        program: String,
        /// Arguments.
        args: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
    },
}

impl BackendSpec {
    /// Resolves the settings of `backend` within `config`.
    pub fn from_config(backend: &BackendConfig, config: &Config) -> Self {
        let endpoint = match backend.transport {
            TransportKind::Stdio => Endpoint::Command {
                program: backend.command.clone().unwrap_or_default(),
                args: backend.args.clone(),
                env: backend.env.clone(),
            },
            TransportKind::StreamableHttp | TransportKind::Sse => {
                Endpoint::Url(backend.url.clone().unwrap_or_default())
            }
        };
        Self {
            name: backend.name.clone(),
            transport: backend.transport,
            endpoint,
            auth: config.outgoing_auth.for_backend(&backend.name).cloned(),
            call_timeout: config.operational.timeouts.for_backend(&backend.name),
            max_in_flight: usize::try_from(config.server.connections.max).unwrap_or(usize::MAX),
        }
    }

    /// The auth strategy's name, for status.
    pub fn auth_type(&self) -> &'static str {
        self.auth
            .as_ref()
            .map_or(AuthType::Unauthenticated.as_str(), |a| a.kind.as_str())
    }

    /// The endpoint as it may be shown in status: URLs without credentials,
    /// query or fragment; commands by program name only.
    pub fn display_endpoint(&self) -> String {
        match &self.endpoint {
            Endpoint::Url(text) => match url::Url::parse(text) {
                Ok(mut url) => {
                    let _ = url.set_username("");
                    let _ = url.set_password(None);
                    url.set_query(None);
                    url.set_fragment(None);
                    url.to_string()
                }
                Err(_) => "(invalid url)".to_string(),
            },
            Endpoint::Command { program, .. } => {
                let name = std::path::Path::new(program)
                    .file_name()
                    .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned());
                format!("stdio:{name}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_url(url: &str) -> BackendSpec {
        BackendSpec {
            name: "b".into(),
            transport: TransportKind::StreamableHttp,
            endpoint: Endpoint::Url(url.into()),
            auth: None,
            call_timeout: Duration::from_secs(1),
            max_in_flight: 16,
        }
    }

    #[test]
    fn displayed_urls_carry_no_credentials_or_query() {
        let spec = spec_with_url("https://user:secret@mcp.example.com/mcp?token=abc#x");
        assert_eq!(spec.display_endpoint(), "https://mcp.example.com/mcp");
    }

    #[test]
    fn displayed_commands_show_only_the_program_name() {
        let spec = BackendSpec {
            endpoint: Endpoint::Command {
                program: "/opt/secret/path/server".into(),
                args: vec!["--token".into(), "abc".into()],
                env: BTreeMap::new(),
            },
            ..spec_with_url("http://x")
        };
        assert_eq!(spec.display_endpoint(), "stdio:server");
    }
}
