//! The backend registry: which backends exist right now, in precedence
//! order, and by name. It is immutable; a change builds a new one and swaps
//! it in (the gateway holds it in an `ArcSwap`), so the request path finds a
//! backend with one atomic load and one hash lookup.
//!
//! How the registry changes is decided by [`plan`], a pure function from the
//! current backends and the desired list to what must be added, removed,
//! replaced or kept, so the rules are tested without I/O:
//!
//! - a desired name that does not exist yet is added;
//! - an existing name that is not desired any more is removed;
//! - an existing name whose settings differ (transport, URL, command, auth,
//!   timeout) is replaced: the old connection closes, a new one opens;
//! - an existing name with the same settings is kept as it is (no reconnect);
//! - a name listed twice keeps its first entry; the others are reported.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::backend::{Backend, BackendId, BackendSpec};

/// The backends that exist now.
#[derive(Debug, Default)]
pub struct Registry {
    backends: Arc<[Arc<Backend>]>,
    by_name: HashMap<Arc<str>, Arc<Backend>>,
}

impl Registry {
    /// A registry of `backends`, in that order (names must be unique).
    pub fn new(backends: Vec<Arc<Backend>>) -> Self {
        let by_name = backends
            .iter()
            .map(|b| (b.name_arc().clone(), b.clone()))
            .collect();
        Self {
            backends: backends.into(),
            by_name,
        }
    }

    /// Every backend, in precedence order.
    pub fn backends(&self) -> &Arc<[Arc<Backend>]> {
        &self.backends
    }

    /// A backend by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Backend>> {
        self.by_name.get(name)
    }

    /// Whether the backend called `name` is this very instance (not one
    /// removed earlier, nor an older instance under the same name).
    pub fn contains(&self, name: &str, id: BackendId) -> bool {
        self.by_name.get(name).is_some_and(|b| b.id() == id)
    }

    /// Number of backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether there is no backend.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

/// What to do with one desired backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// It exists with the same settings: keep its connection.
    Keep,
    /// It is new: start it.
    Add,
    /// It exists with other settings: stop the old one, start this one.
    Replace,
}

/// How to get from the current backends to the desired ones.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The next registry's backends, in the desired order, each with its step.
    pub next: Vec<(BackendSpec, Step)>,
    /// Names that exist now and are not desired any more.
    pub remove: Vec<String>,
    /// Names that were listed more than once (the first entry won).
    pub duplicates: Vec<String>,
}

impl Plan {
    /// Whether the registry stays exactly as it is (same names, settings and order).
    pub fn is_noop(&self, current: &[&BackendSpec]) -> bool {
        self.remove.is_empty()
            && self.next.len() == current.len()
            && self
                .next
                .iter()
                .zip(current)
                .all(|((spec, step), now)| *step == Step::Keep && spec.name == now.name)
    }

    /// Names with `step`, in order.
    pub fn names(&self, step: Step) -> Vec<&str> {
        self.next
            .iter()
            .filter(|(_, s)| *s == step)
            .map(|(spec, _)| spec.name.as_str())
            .collect()
    }
}

/// Compares the current backends with the desired ones.
pub fn plan(current: &[&BackendSpec], desired: Vec<BackendSpec>) -> Plan {
    let now: HashMap<&str, &BackendSpec> = current.iter().map(|s| (s.name.as_str(), *s)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut result = Plan::default();
    for spec in desired {
        if !seen.insert(spec.name.clone()) {
            if !result.duplicates.contains(&spec.name) {
                result.duplicates.push(spec.name);
            }
            continue;
        }
        let step = match now.get(spec.name.as_str()) {
            None => Step::Add,
            Some(existing) if **existing == spec => Step::Keep,
            Some(_) => Step::Replace,
        };
        result.next.push((spec, step));
    }
    result.remove = current
        .iter()
        .filter(|s| !seen.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vmcp_config::TransportKind;

    use super::*;
    use crate::backend::Endpoint;

    fn http(name: &str, url: &str) -> BackendSpec {
        BackendSpec {
            name: name.into(),
            transport: TransportKind::StreamableHttp,
            endpoint: Endpoint::Url(url.into()),
            auth: None,
            call_timeout: Duration::from_secs(30),
            max_in_flight: 16,
        }
    }

    fn steps(plan: &Plan) -> Vec<(&str, Step)> {
        plan.next
            .iter()
            .map(|(s, step)| (s.name.as_str(), *step))
            .collect()
    }

    #[test]
    fn from_nothing_everything_is_added_in_the_desired_order() {
        let plan = plan(&[], vec![http("b", "http://b"), http("a", "http://a")]);
        assert_eq!(steps(&plan), [("b", Step::Add), ("a", Step::Add)]);
        assert!(plan.remove.is_empty());
        assert!(plan.duplicates.is_empty());
        assert!(!plan.is_noop(&[]));
    }

    #[test]
    fn the_same_list_keeps_everything_and_is_a_noop() {
        let a = http("a", "http://a");
        let b = http("b", "http://b");
        let current = [&a, &b];
        let plan = plan(&current, vec![a.clone(), b.clone()]);
        assert_eq!(steps(&plan), [("a", Step::Keep), ("b", Step::Keep)]);
        assert!(plan.remove.is_empty());
        assert!(plan.is_noop(&current));
    }

    #[test]
    fn a_reordered_list_keeps_connections_but_is_a_change() {
        let a = http("a", "http://a");
        let b = http("b", "http://b");
        let current = [&a, &b];
        let plan = plan(&current, vec![b.clone(), a.clone()]);
        assert_eq!(steps(&plan), [("b", Step::Keep), ("a", Step::Keep)]);
        assert!(!plan.is_noop(&current), "precedence order changed");
    }

    #[test]
    fn missing_names_are_removed_and_new_ones_added() {
        let a = http("a", "http://a");
        let b = http("b", "http://b");
        let plan = plan(&[&a, &b], vec![b.clone(), http("c", "http://c")]);
        assert_eq!(steps(&plan), [("b", Step::Keep), ("c", Step::Add)]);
        assert_eq!(plan.remove, ["a"]);
        assert_eq!(plan.names(Step::Add), ["c"]);
        assert_eq!(plan.names(Step::Keep), ["b"]);
    }

    #[test]
    fn an_empty_list_removes_everything() {
        let a = http("a", "http://a");
        let b = http("b", "http://b");
        let plan = plan(&[&a, &b], vec![]);
        assert!(plan.next.is_empty());
        assert_eq!(plan.remove, ["a", "b"]);
    }

    #[test]
    fn changed_settings_replace_the_backend() {
        let a = http("a", "http://a");
        let b = http("b", "http://b");
        let c = http("c", "http://c");
        let d = http("d", "http://d");
        let current = [&a, &b, &c, &d];
        let moved = http("a", "http://a-moved");
        let sse = BackendSpec {
            transport: TransportKind::Sse,
            ..b.clone()
        };
        let stdio = BackendSpec {
            transport: TransportKind::Stdio,
            endpoint: Endpoint::Command {
                program: "server".into(),
                args: vec![],
                env: Default::default(),
            },
            ..c.clone()
        };
        let slower = BackendSpec {
            call_timeout: Duration::from_secs(90),
            ..d.clone()
        };
        let plan = plan(&current, vec![moved, sse, stdio, slower]);
        assert_eq!(
            steps(&plan),
            [
                ("a", Step::Replace),
                ("b", Step::Replace),
                ("c", Step::Replace),
                ("d", Step::Replace)
            ]
        );
        assert!(plan.remove.is_empty());
        assert_eq!(
            plan.next[0].0.endpoint,
            Endpoint::Url("http://a-moved".into())
        );
    }

    #[test]
    fn a_changed_command_argument_replaces_a_stdio_backend() {
        let command = |arg: &str| BackendSpec {
            transport: TransportKind::Stdio,
            endpoint: Endpoint::Command {
                program: "server".into(),
                args: vec![arg.into()],
                env: Default::default(),
            },
            ..http("s", "")
        };
        let old = command("--v1");
        let plan = plan(&[&old], vec![command("--v2")]);
        assert_eq!(steps(&plan), [("s", Step::Replace)]);
        let same = super::plan(&[&old], vec![command("--v1")]);
        assert_eq!(steps(&same), [("s", Step::Keep)]);
    }

    #[test]
    fn duplicate_names_keep_the_first_entry() {
        let a = http("a", "http://a");
        let plan = plan(
            &[&a],
            vec![
                http("a", "http://a"),
                http("b", "http://b1"),
                http("a", "http://other"),
                http("b", "http://b2"),
                http("b", "http://b3"),
            ],
        );
        assert_eq!(steps(&plan), [("a", Step::Keep), ("b", Step::Add)]);
        assert_eq!(plan.next[1].0.endpoint, Endpoint::Url("http://b1".into()));
        assert_eq!(plan.duplicates, ["a", "b"]);
        assert!(plan.remove.is_empty());
    }
}
