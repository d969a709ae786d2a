//! Reading a configuration file: YAML with locations, so that one mistake
//! does not hide the next.
//!
//! The file is first parsed into a [`Node`] tree that remembers the line of
//! every value. Each top-level section (and each backend) is then read with
//! [`crate::node_de`]; when a value is wrong, the problem is recorded, the
//! value is left out and the section is read again, so one run finds every
//! problem in it (bounded by [`MAX_ISSUES`]). The cross-field rules of
//! [`crate::validate`] run last on what could be read, except for rules about
//! a mapping one of whose values was left out (they would only repeat the
//! first problem, or judge a default instead of what was written). Every
//! problem becomes a [`ConfigIssue`] with file, line and field path; values
//! of fields that may hold a secret ([`crate::secret`]) are never shown.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::model::Config;
use crate::node_de::{self, Problem, Removed};
use crate::{secret, validate};

/// The most problems reported for one file; reading stops there, so the work
/// stays proportional to the file's size.
pub const MAX_ISSUES: usize = 100;

/// One step of a field path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl From<&str> for Segment {
    fn from(key: &str) -> Self {
        Self::Key(key.to_string())
    }
}

impl From<String> for Segment {
    fn from(key: String) -> Self {
        Self::Key(key)
    }
}

impl From<usize> for Segment {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

/// A path to a field, printed as `backends[1].url`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// This path extended by one segment.
    pub fn join(&self, segment: impl Into<Segment>) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment.into());
        Self(segments)
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The path of the mapping or list holding this value (itself at the top).
    fn parent(&self) -> FieldPath {
        let keep = self.0.len().saturating_sub(1);
        Self(self.0[..keep].to_vec())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Builds a [`FieldPath`] from keys and indexes: `field_path!["backends", 0, "url"]`.
#[macro_export]
macro_rules! field_path {
    ($($segment:expr),* $(,)?) => {
        $crate::load::FieldPath(vec![$($crate::load::Segment::from($segment)),*])
    };
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file (or `<input>` for text).
    pub file: String,
    /// 1-based line of the offending value (0 when unknown).
    pub line: u32,
    /// Where in the document.
    pub path: FieldPath,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.path, self.message
        )
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML.
    #[error("{file}:{line}:{column}: invalid YAML: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The parser's message.
        message: String,
    },
    /// The YAML is well formed but breaks the format's rules.
    #[error("{} problem(s) in {file}:\n{}", issues.len(), render_issues(issues))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found, in document order.
        issues: Vec<ConfigIssue>,
    },
}

fn render_issues(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|issue| format!("  {issue}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and validates the configuration file at `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_text(&text, &path.display().to_string(), true)
}

/// Parses and validates configuration text; `file` names it in errors.
/// Files it names (`incomingAuth.authz.policiesFile`) are not read.
pub fn load_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    load_text(text, file, false)
}

/// [`load_str`], and with `read_files` the files the configuration names
/// are read and checked too.
fn load_text(text: &str, file: &str, read_files: bool) -> Result<Config, ConfigError> {
    let root: Node = serde_saphyr::from_str(text).map_err(|err| {
        let location = err.location();
        ConfigError::Syntax {
            file: file.to_string(),
            line: location.map_or(0, |l| l.line() as u32),
            column: location.map_or(0, |l| l.column() as u32),
            message: err.without_snippet().to_string(),
        }
    })?;
    let mut collector = Collector {
        file,
        root: &root,
        issues: Vec::new(),
        removed: Removed::new(),
        unknown: Removed::new(),
        truncated: false,
    };
    let config = collector.build_config();
    if let Some(config) = &config
        && !collector.truncated
    {
        let known = raw_backend_names(&root);
        let mut problems = validate::validate(config, &known);
        if read_files {
            problems.extend(validate::policy_file_problems(config));
        }
        for (path, message) in problems {
            if !collector.blurred(&path) {
                let line = root.line_of(&path);
                collector.issue(path, line, message);
            }
        }
    }
    let mut issues = collector.issues;
    match config {
        // `build_config` returns None only after recording an issue.
        Some(config) if issues.is_empty() => Ok(config),
        _ => {
            issues.sort_by_key(|issue| issue.line);
            if collector.truncated {
                issues.push(ConfigIssue {
                    file: file.to_string(),
                    line: 0,
                    path: FieldPath::default(),
                    message: format!(
                        "stopped after {MAX_ISSUES} problems; fix these and run again"
                    ),
                });
            }
            Err(ConfigError::Invalid {
                file: file.to_string(),
                issues,
            })
        }
    }
}

/// The names of all backends as written, even those that failed to parse, so
/// that references to them are not reported twice.
fn raw_backend_names(root: &Node) -> BTreeSet<String> {
    let Some(NodeKind::Seq(items)) = root.get("backends").map(|n| &n.kind) else {
        return BTreeSet::new();
    };
    items
        .iter()
        .filter_map(|item| match item.get("name").map(|n| &n.kind) {
            Some(NodeKind::Str(name)) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

const TOP_LEVEL_FIELDS: &[&str] = &[
    "name",
    "groupRef",
    "backends",
    "incomingAuth",
    "outgoingAuth",
    "aggregation",
    "operational",
    "server",
    "audit",
];

struct Collector<'a> {
    file: &'a str,
    root: &'a Node,
    issues: Vec<ConfigIssue>,
    /// Values already reported and left out of reading.
    removed: Removed,
    /// Those of them that are unknown fields: leaving them out changes no
    /// value the cross-field rules read.
    unknown: Removed,
    /// [`MAX_ISSUES`] was reached.
    truncated: bool,
}

impl Collector<'_> {
    fn build_config(&mut self) -> Option<Config> {
        let NodeKind::Map(entries) = &self.root.kind else {
            self.issue(
                FieldPath::default(),
                self.root.line,
                "expected a mapping of configuration fields".into(),
            );
            return None;
        };
        for (key, node) in entries {
            if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
                self.issue(
                    field_path![key.as_str()],
                    node.line,
                    format!(
                        "unknown field, expected one of {}",
                        TOP_LEVEL_FIELDS.join(", ")
                    ),
                );
            }
        }
        let name: Option<String> = match self.root.get("name") {
            Some(node) => self.section(field_path!["name"], node),
            None => {
                self.issue(field_path!["name"], 1, "missing required field".into());
                self.removed.insert(field_path!["name"]);
                None
            }
        };
        let group_ref = self.optional_section("groupRef");
        let mut backends = Vec::new();
        if let Some(node) = self.root.get("backends") {
            match &node.kind {
                NodeKind::Seq(items) => {
                    for (index, item) in items.iter().enumerate() {
                        if let Some(backend) = self.section(field_path!["backends", index], item) {
                            backends.push(backend);
                        }
                    }
                }
                NodeKind::Null => {}
                _ => {
                    self.issue(
                        field_path!["backends"],
                        node.line,
                        "expected a list of backends".into(),
                    );
                    self.removed.insert(field_path!["backends"]);
                }
            }
        }
        let incoming_auth = self.optional_section("incomingAuth");
        let outgoing_auth = self.optional_section("outgoingAuth");
        let aggregation = self.optional_section("aggregation");
        let operational = self.optional_section("operational");
        let server = self.optional_section("server");
        let audit = self.optional_section("audit");
        // A missing or broken name was reported; the rest is still checked.
        Some(Config {
            name: name.unwrap_or_default(),
            group_ref: group_ref.flatten(),
            backends,
            incoming_auth: incoming_auth.flatten().unwrap_or_default(),
            outgoing_auth: outgoing_auth.flatten().unwrap_or_default(),
            aggregation: aggregation.flatten().unwrap_or_default(),
            operational: operational.flatten().unwrap_or_default(),
            server: server.flatten().unwrap_or_default(),
            audit: audit.flatten(),
        })
    }

    /// `Some(None)` when the section is absent, `None` when it is broken.
    fn optional_section<T: DeserializeOwned>(&mut self, key: &str) -> Option<Option<T>> {
        match self.root.get(key) {
            None => Some(None),
            Some(node) if matches!(node.kind, NodeKind::Null) => Some(None),
            Some(node) => self.section(field_path![key], node).map(Some),
        }
    }

    /// Reads `node` (at `at`) as a `T`, recording every problem in it: each
    /// wrong value is reported, left out, and the section read again.
    /// `None` when the section as a whole cannot be read.
    fn section<T: DeserializeOwned>(&mut self, at: FieldPath, node: &Node) -> Option<T> {
        loop {
            if self.issues.len() >= MAX_ISSUES {
                self.truncated = true;
                return None;
            }
            let err = match node_de::from_node::<T>(node, &at, &self.removed) {
                Ok(value) => return Some(value),
                Err(err) => err,
            };
            let path = err.path.unwrap_or_else(|| at.clone());
            // What to leave out next time: the wrong value, or the mapping
            // that lacks a required field.
            let (reported, left_out) = match err.problem {
                Problem::MissingField { field } => (path.join(field), path),
                Problem::UnknownField { .. } => {
                    self.unknown.insert(path.clone());
                    (path.clone(), path)
                }
                _ => (path.clone(), path),
            };
            // A required field that was left out is missing as a consequence.
            if !self.removed.contains(&reported) {
                let line = self.root.line_of(&reported);
                let echo = !secret::may_hold_secret(&reported);
                self.issue(reported, line, err.problem.message(echo));
            }
            let progress = left_out.starts_with(&at) && self.removed.insert(left_out.clone());
            if !progress || left_out == at {
                self.removed.insert(at);
                return None;
            }
        }
    }

    /// Whether a cross-field issue at `path` may only echo a value that was
    /// left out: it is at or inside that value, beside it in the same
    /// mapping (a rule comparing siblings would judge a default instead of
    /// what was written), or at a mapping or list that contains it.
    fn blurred(&self, path: &FieldPath) -> bool {
        let unread = self.removed.difference(&self.unknown);
        unread.into_iter().any(|removed| {
            let scope = match removed.0.last() {
                Some(Segment::Key(_)) if removed.0.len() > 1 => removed.parent(),
                _ => removed.clone(),
            };
            path.starts_with(removed) || scope.starts_with(path) || path.parent() == scope
        })
    }

    fn issue(&mut self, path: FieldPath, line: u32, message: String) {
        self.issues.push(ConfigIssue {
            file: self.file.to_string(),
            line,
            path,
            message,
        });
    }
}

/// A YAML value that remembers the line it was written on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// 1-based line of the value.
    pub line: u32,
    /// The value.
    pub kind: NodeKind,
}

/// The shape of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A floating point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value under `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    /// The line of the deepest node that exists along `path`.
    pub fn line_of(&self, path: &FieldPath) -> u32 {
        let mut node = self;
        for segment in &path.0 {
            let next = match (segment, &node.kind) {
                (Segment::Key(key), NodeKind::Map(_)) => node.get(key),
                (Segment::Index(index), NodeKind::Seq(items)) => items.get(*index),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node.line
    }

    /// The same value as JSON, for typed deserialization.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::UInt(u) => Value::from(*u),
            NodeKind::Float(f) => Value::from(*f),
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<NodeKind>::deserialize(deserializer)?;
        Ok(Node {
            line: spanned.referenced.line() as u32,
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeKindVisitor)
    }
}

struct NodeKindVisitor;

impl<'de> Visitor<'de> for NodeKindVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        NodeKind::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeKind, E> {
        Ok(if v >= 0 {
            NodeKind::UInt(v as u64)
        } else {
            NodeKind::Int(v)
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeKind, E> {
        Ok(NodeKind::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<ScalarKey>()? {
            let value = map.next_value::<Node>()?;
            if entries.iter().any(|(k, _)| *k == key.0) {
                return Err(de::Error::custom(format!("duplicate key `{}`", key.0)));
            }
            entries.push((key.0, value));
        }
        Ok(NodeKind::Map(entries))
    }
}

/// A mapping key; scalars of any type are read as their text.
struct ScalarKey(String);

impl<'de> Deserialize<'de> for ScalarKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = ScalarKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarKey, E> {
                Ok(ScalarKey(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarKey, E> {
                Ok(ScalarKey(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarKey, E> {
                Ok(ScalarKey(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarKey, E> {
                Ok(ScalarKey(v.to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}
