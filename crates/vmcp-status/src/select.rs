//! Which reporters a runtime uses ([`select`]).
//!
//! | explicit choice | `VMCP_NAME` and `VMCP_NAMESPACE` | reporters |
//! |---|---|---|
//! | given | any | the explicit ones (`none` alone: none) |
//! | none | both set | Kubernetes |
//! | none | otherwise | file and log |
//!
//! Metrics are not part of the selection: the runtime always keeps them.
//! The Kubernetes reporter lives in its own crate; the selection names the
//! object it should write, and the binary builds it.

use std::fmt;
use std::str::FromStr;

use crate::env::Env;

/// Names the `VirtualMCPServer` the runtime reports to (Kubernetes mode).
pub const NAME_ENV: &str = "VMCP_NAME";
/// Namespace of that `VirtualMCPServer`.
pub const NAMESPACE_ENV: &str = "VMCP_NAMESPACE";

/// A kind of status reporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReporterKind {
    /// The `status` of the `VirtualMCPServer` (server-side apply).
    Kubernetes,
    /// The local state file read by `vmcp status`.
    File,
    /// Log lines.
    Log,
    /// No reporter (metrics stay on).
    None,
}

impl ReporterKind {
    /// Every kind, in the order of [`as_str`](Self::as_str) values.
    pub const ALL: [Self; 4] = [Self::Kubernetes, Self::File, Self::Log, Self::None];

    /// The name accepted on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::File => "file",
            Self::Log => "log",
            Self::None => "none",
        }
    }
}

impl fmt::Display for ReporterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown reporter name.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The name is not one of `kubernetes`, `file`, `log`, `none`.
    #[error("unknown status reporter {0:?} (expected kubernetes, file, log or none)")]
    UnknownKind(String),
}

impl FromStr for ReporterKind {
    type Err = SelectError;

    /// Case-insensitive; `k8s` is accepted for `kubernetes`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "kubernetes" | "k8s" => Ok(Self::Kubernetes),
            "file" => Ok(Self::File),
            "log" => Ok(Self::Log),
            "none" | "noop" => Ok(Self::None),
            _ => Err(SelectError::UnknownKind(name.to_string())),
        }
    }
}

/// The `VirtualMCPServer` a Kubernetes reporter writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesTarget {
    /// Its name (`VMCP_NAME`).
    pub name: String,
    /// Its namespace (`VMCP_NAMESPACE`).
    pub namespace: String,
}

/// Why these reporters were chosen (for the startup log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionSource {
    /// The operator or user chose them.
    Explicit,
    /// `VMCP_NAME` and `VMCP_NAMESPACE` are set.
    KubernetesEnvironment,
    /// Neither: CLI mode.
    Default,
}

/// The reporters to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Kinds to build, without duplicates and without
    /// [`ReporterKind::None`]; may be empty.
    pub kinds: Vec<ReporterKind>,
    /// The object to report to, when `VMCP_NAME` and `VMCP_NAMESPACE` are
    /// both set. A selection with [`ReporterKind::Kubernetes`] but no
    /// target (explicit choice outside Kubernetes) cannot be built: the
    /// binary should refuse to start.
    pub kubernetes: Option<KubernetesTarget>,
    /// Why.
    pub source: SelectionSource,
}

impl Selection {
    /// Whether `kind` is selected.
    pub fn contains(&self, kind: ReporterKind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// Chooses the reporters: an explicit choice wins (`none` counts only
/// alone); otherwise Kubernetes when `VMCP_NAME` and `VMCP_NAMESPACE` are
/// both set; otherwise file and log.
pub fn select(env: &dyn Env, explicit: &[ReporterKind]) -> Selection {
    let kubernetes = env
        .non_empty(NAME_ENV)
        .zip(env.non_empty(NAMESPACE_ENV))
        .map(|(name, namespace)| KubernetesTarget { name, namespace });
    let (kinds, source) = if explicit.is_empty() {
        if kubernetes.is_some() {
            (
                vec![ReporterKind::Kubernetes],
                SelectionSource::KubernetesEnvironment,
            )
        } else {
            (
                vec![ReporterKind::File, ReporterKind::Log],
                SelectionSource::Default,
            )
        }
    } else {
        let mut kinds = Vec::new();
        for kind in explicit {
            if *kind != ReporterKind::None && !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        (kinds, SelectionSource::Explicit)
    };
    Selection {
        kinds,
        kubernetes,
        source,
    }
}
