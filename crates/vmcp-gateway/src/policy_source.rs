//! Where the Cedar policies come from (`incomingAuth.authz`): the inline
//! `policies` and the `policiesFile`, loaded at start and again whenever the
//! file changes, without dropping a session.
//!
//! The file is polled ([`POLL_INTERVAL`]) by its modification time and size,
//! which also follows a Kubernetes ConfigMap mount (its files are symlinks
//! that are swapped). A new version that does not load is refused as a
//! whole: the policies in force stay, and the log says why (position and
//! problem, never the policy text). After a reload every session is told
//! its lists may have changed.

use std::path::PathBuf;
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use vmcp_auth::authz::Policies;
use vmcp_config::{AuthzType, Config};

use crate::catalogue::ListChanges;
use crate::gateway::Gateway;

/// How often the policies file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The policy texts of the configuration.
#[derive(Clone, Debug)]
pub struct PolicySource {
    inline: Vec<String>,
    file: Option<PathBuf>,
}

/// What identifies a version of the file.
type Stamp = Option<(SystemTime, u64)>;

impl PolicySource {
    /// The source `config` names, when `incomingAuth.authz.type` is `cedar`.
    pub fn from_config(config: &Config) -> Option<Self> {
        let authz = config.incoming_auth.authz.as_ref()?;
        (authz.kind == AuthzType::Cedar).then(|| Self {
            inline: authz.policies.clone(),
            file: authz.policies_file.as_ref().map(PathBuf::from),
        })
    }

    /// Reads and loads every policy.
    pub fn load(&self) -> Result<Policies, String> {
        let mut texts = self.inline.clone();
        if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file)
                .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
            texts.push(text);
        }
        Policies::load(&texts).map_err(|err| err.to_string())
    }

    /// The policies to start with: what loads, or (logged) none permitted.
    pub fn initial(&self) -> Policies {
        self.load().unwrap_or_else(|problem| {
            tracing::error!("{problem}; every request is denied");
            Policies::deny_all()
        })
    }

    fn stamp(&self) -> Stamp {
        let metadata = std::fs::metadata(self.file.as_ref()?).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    }

    /// Polls the file until the gateway is gone, reloading on each change.
    pub async fn watch(self, gateway: Weak<Gateway>) {
        if self.file.is_none() {
            return;
        }
        let mut seen = self.stamp();
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(gateway) = gateway.upgrade() else {
                return;
            };
            let now = self.stamp();
            if now == seen {
                continue;
            }
            seen = now;
            match self.load() {
                Ok(policies) => {
                    gateway.replace_policies(policies);
                    tracing::info!("authorization policies reloaded");
                    gateway.announce_list_changes(ListChanges {
                        tools: true,
                        prompts: true,
                        resources: true,
                    });
                }
                Err(problem) => {
                    tracing::warn!(
                        "authorization policies not reloaded, the previous ones stay: {problem}"
                    );
                }
            }
        }
    }
}
