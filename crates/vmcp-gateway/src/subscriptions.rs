//! Which client sessions are subscribed to which resources (pure bookkeeping,
//! no I/O).
//!
//! The gateway holds one upstream connection per backend, so a resource is
//! subscribed upstream once, when its first session subscribes, and
//! unsubscribed when its last one leaves (by `resources/unsubscribe` or by
//! ending). `notifications/resources/updated` from the backend then goes
//! to the subscribed sessions only, and a backend that reconnects is
//! subscribed again to everything its sessions still want.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// At most this many subscriptions per session: a client cannot grow the
/// table (and the upstream subscriptions) without bound.
pub const MAX_PER_SESSION: usize = 1024;

/// Why a subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The session already holds [`MAX_PER_SESSION`] subscriptions.
    #[error("this session already holds the maximum of {MAX_PER_SESSION} resource subscriptions")]
    TooMany,
}

/// What the upstream side must do after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// Nothing: other sessions already hold (or still hold) the subscription.
    Nothing,
    /// Send `resources/subscribe` for the URI to this backend, then report
    /// the outcome ([`Subscriptions::confirm`] or [`Subscriptions::unsubscribe`]).
    Subscribe(Arc<str>),
    /// Another session's upstream subscribe for the URI is under way: ask
    /// again once it settled (nothing was recorded for this session).
    Pending,
    /// Send `resources/unsubscribe` for the URI to this backend.
    Unsubscribe(Arc<str>),
}

struct Subscribed {
    backend: Arc<str>,
    sessions: HashSet<Arc<str>>,
    /// The backend accepted the subscription (until then, later sessions wait).
    confirmed: bool,
}

/// The subscription table.
#[derive(Default)]
pub struct Subscriptions {
    by_uri: HashMap<String, Subscribed>,
    by_session: HashMap<Arc<str>, HashSet<String>>,
}

impl Subscriptions {
    /// `session` subscribes to `uri`, owned by `backend`.
    pub fn subscribe(
        &mut self,
        session: &Arc<str>,
        uri: &str,
        backend: &Arc<str>,
    ) -> Result<Upstream, SubscribeError> {
        let held = self.by_session.entry(session.clone()).or_default();
        if held.contains(uri) {
            return Ok(Upstream::Nothing);
        }
        if held.len() >= MAX_PER_SESSION {
            return Err(SubscribeError::TooMany);
        }
        if self.by_uri.get(uri).is_some_and(|entry| !entry.confirmed) {
            return Ok(Upstream::Pending);
        }
        held.insert(uri.to_string());
        let entry = self
            .by_uri
            .entry(uri.to_string())
            .or_insert_with(|| Subscribed {
                backend: backend.clone(),
                sessions: HashSet::new(),
                confirmed: false,
            });
        let first = entry.sessions.is_empty();
        entry.sessions.insert(session.clone());
        Ok(if first {
            Upstream::Subscribe(entry.backend.clone())
        } else {
            Upstream::Nothing
        })
    }

    /// The backend accepted the subscription to `uri`: later sessions join it.
    /// (When it refused, the first session unsubscribes, which drops the entry.)
    pub fn confirm(&mut self, uri: &str) {
        if let Some(entry) = self.by_uri.get_mut(uri) {
            entry.confirmed = true;
        }
    }

    /// `session` unsubscribes from `uri` (a no-op when it was not subscribed).
    pub fn unsubscribe(&mut self, session: &Arc<str>, uri: &str) -> Upstream {
        if let Some(held) = self.by_session.get_mut(session) {
            held.remove(uri);
            if held.is_empty() {
                self.by_session.remove(session);
            }
        }
        let Some(entry) = self.by_uri.get_mut(uri) else {
            return Upstream::Nothing;
        };
        if !entry.sessions.remove(session) || !entry.sessions.is_empty() {
            return Upstream::Nothing;
        }
        let backend = entry.backend.clone();
        self.by_uri.remove(uri);
        Upstream::Unsubscribe(backend)
    }

    /// Drops everything `session` held; returns the (backend, URI) pairs to
    /// unsubscribe upstream.
    pub fn drop_session(&mut self, session: &Arc<str>) -> Vec<(Arc<str>, String)> {
        let Some(held) = self.by_session.remove(session) else {
            return Vec::new();
        };
        let mut upstream = Vec::new();
        for uri in held {
            if let Some(entry) = self.by_uri.get_mut(&uri) {
                entry.sessions.remove(session);
                if entry.sessions.is_empty() {
                    let backend = entry.backend.clone();
                    self.by_uri.remove(&uri);
                    upstream.push((backend, uri));
                }
            }
        }
        upstream
    }

    /// The sessions subscribed to `uri` of `backend`.
    pub fn subscribers(&self, backend: &str, uri: &str) -> Vec<Arc<str>> {
        match self.by_uri.get(uri) {
            Some(entry) if &*entry.backend == backend => entry.sessions.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Every URI of `backend` some session is subscribed to.
    pub fn uris_of(&self, backend: &str) -> Vec<String> {
        self.by_uri
            .iter()
            .filter(|(_, entry)| &*entry.backend == backend)
            .map(|(uri, _)| uri.clone())
            .collect()
    }

    /// Number of subscribed URIs.
    pub fn len(&self) -> usize {
        self.by_uri.len()
    }

    /// Whether nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.by_uri.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn first_subscriber_subscribes_upstream_and_last_one_unsubscribes() {
        let mut subs = Subscriptions::default();
        let (a, b, be) = (s("a"), s("b"), s("be"));
        assert_eq!(
            subs.subscribe(&a, "x://1", &be),
            Ok(Upstream::Subscribe(be.clone()))
        );
        subs.confirm("x://1");
        assert_eq!(subs.subscribe(&b, "x://1", &be), Ok(Upstream::Nothing));
        assert_eq!(subs.subscribe(&a, "x://1", &be), Ok(Upstream::Nothing));
        let mut who = subs.subscribers("be", "x://1");
        who.sort();
        assert_eq!(who, vec![a.clone(), b.clone()]);
        assert_eq!(subs.unsubscribe(&a, "x://1"), Upstream::Nothing);
        assert_eq!(subs.subscribers("be", "x://1"), vec![b.clone()]);
        assert_eq!(subs.unsubscribe(&b, "x://1"), Upstream::Unsubscribe(be));
        assert!(subs.is_empty());
        assert_eq!(subs.unsubscribe(&b, "x://1"), Upstream::Nothing);
    }

    #[test]
    fn an_ending_session_releases_only_what_nobody_else_holds() {
        let mut subs = Subscriptions::default();
        let (a, b, be) = (s("a"), s("b"), s("be"));
        subs.subscribe(&a, "x://1", &be).expect("subscribed");
        subs.subscribe(&a, "x://2", &be).expect("subscribed");
        subs.confirm("x://2");
        subs.subscribe(&b, "x://2", &be).expect("subscribed");
        assert_eq!(
            subs.drop_session(&a),
            vec![(be.clone(), "x://1".to_string())]
        );
        assert_eq!(subs.uris_of("be"), vec!["x://2".to_string()]);
        assert!(subs.drop_session(&a).is_empty());
        assert_eq!(subs.drop_session(&b), vec![(be, "x://2".to_string())]);
        assert!(subs.is_empty());
    }

    #[test]
    fn while_the_first_subscribe_is_under_way_others_wait_and_take_over_if_it_fails() {
        let mut subs = Subscriptions::default();
        let (a, b, be) = (s("a"), s("b"), s("be"));
        assert_eq!(
            subs.subscribe(&a, "x://1", &be),
            Ok(Upstream::Subscribe(be.clone()))
        );
        assert_eq!(subs.subscribe(&b, "x://1", &be), Ok(Upstream::Pending));
        assert_eq!(subs.subscribers("be", "x://1"), vec![a.clone()]);
        // The backend refused a's subscribe: the entry goes, and b is the first now.
        subs.unsubscribe(&a, "x://1");
        assert_eq!(
            subs.subscribe(&b, "x://1", &be),
            Ok(Upstream::Subscribe(be.clone()))
        );
        subs.confirm("x://1");
        assert_eq!(subs.subscribe(&a, "x://1", &be), Ok(Upstream::Nothing));
        let mut who = subs.subscribers("be", "x://1");
        who.sort();
        assert_eq!(who, vec![a, b]);
    }

    #[test]
    fn updates_of_another_backend_reach_nobody() {
        let mut subs = Subscriptions::default();
        subs.subscribe(&s("a"), "x://1", &s("one"))
            .expect("subscribed");
        assert!(subs.subscribers("two", "x://1").is_empty());
        assert!(subs.uris_of("two").is_empty());
    }

    #[test]
    fn a_session_cannot_hold_more_than_the_cap() {
        let mut subs = Subscriptions::default();
        let (a, be) = (s("a"), s("be"));
        for i in 0..MAX_PER_SESSION {
            subs.subscribe(&a, &format!("x://{i}"), &be)
                .expect("subscribed");
            subs.confirm(&format!("x://{i}"));
        }
        assert_eq!(
            subs.subscribe(&a, "x://one-more", &be),
            Err(SubscribeError::TooMany)
        );
        // Re-subscribing to something held is still fine.
        assert_eq!(subs.subscribe(&a, "x://0", &be), Ok(Upstream::Nothing));
        assert_eq!(subs.len(), MAX_PER_SESSION);
    }
}
