//! What a backend sends towards clients, relayed to the right ones:
//!
//! - server-to-client requests (`sampling/createMessage`, `elicitation/create`,
//!   `roots/list`) go to the client whose call the backend is serving
//!   ([`crate::routes`]), on that call's response stream, and only when the
//!   client declared the capability; its answer, error or the backend's
//!   cancellation travel back, within the backend's call timeout;
//! - log messages (`notifications/message`) go to the sessions that set a
//!   level (`logging/setLevel`) at or below the message's, with the backend's
//!   name in `logger`;
//! - `notifications/resources/updated` goes to the sessions subscribed to
//!   the URI, `notifications/elicitation/complete` to the session the URL
//!   elicitation went to;
//! - after a reconnect, the backend is subscribed again to what sessions
//!   still want and told the log level in force.
#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 but still served"
)]

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientResult, CustomNotification, ElicitRequestParams, ErrorCode,
    ErrorData, GetExtensions, GetMeta, LoggingMessageNotificationParam,
    ResourceUpdatedNotification, ResourceUpdatedNotificationParam, ServerNotification,
    ServerRequest, SetLevelRequestParams, SubscribeRequestParams,
};
use rmcp::service::{
    OriginatingRequestId, Peer, PeerRequestOptions, RequestContext, RoleClient, ServiceError,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use crate::input_rounds::{Question, Questions};
use crate::routes::{CallRoutes, Origin};
use crate::sessions::Sessions;

/// How long a backend's request waits for the forwarding side to record the
/// call it belongs to (the backend can be quicker than the bookkeeping).
const REGISTRATION_GRACE: Duration = Duration::from_secs(1);

/// At most this many notifications (log messages, resource updates) are
/// on their way to clients at once; beyond it new ones are dropped (and
/// counted in the log) rather than queued without bound behind slow clients.
pub const MAX_NOTIFICATIONS_IN_FLIGHT: usize = 4096;

/// The downstream side as the backend connections see it.
#[derive(Clone)]
pub struct Downstream {
    /// Forwarded requests in flight.
    pub routes: Arc<CallRoutes>,
    /// Connected sessions and what they asked for.
    pub sessions: Arc<Sessions>,
    /// Bounds the notifications in flight ([`MAX_NOTIFICATIONS_IN_FLIGHT`]).
    pub notifications: Arc<Semaphore>,
}

/// The client capability a server-to-client request needs, if the client
/// lacks it.
fn missing_capability(
    capabilities: &ClientCapabilities,
    request: &ServerRequest,
) -> Option<&'static str> {
    match request {
        ServerRequest::CreateMessageRequest(_) => {
            capabilities.sampling.is_none().then_some("sampling")
        }
        ServerRequest::ListRootsRequest(_) => capabilities.roots.is_none().then_some("roots"),
        ServerRequest::ElicitRequest(request) => {
            let Some(elicitation) = &capabilities.elicitation else {
                return Some("elicitation");
            };
            match &request.params {
                ElicitRequestParams::UrlElicitationParams { .. } => elicitation
                    .url
                    .is_none()
                    .then_some("elicitation (url mode)"),
                // An empty `elicitation: {}` means form mode (2025-06-18 clients).
                _ => (elicitation.form.is_none() && elicitation.url.is_some())
                    .then_some("elicitation (form mode)"),
            }
        }
        _ => None,
    }
}

/// Puts a backend's question to a 2026-07-28 client, which answers it in
/// the next round of its call ([`crate::input_rounds`]).
async fn ask_in_rounds(
    questions: &Questions,
    method: &'static str,
    request: ServerRequest,
    deadline: Instant,
    timeout: Duration,
    context: &RequestContext<RoleClient>,
) -> Result<ClientResult, ErrorData> {
    let (answer, answered) = oneshot::channel();
    let asked = tokio::select! {
        asked = tokio::time::timeout_at(deadline, questions.send(Question { request, answer })) => asked,
        () = context.ct.cancelled() => return Err(cancelled()),
    };
    match asked {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(call_ended()),
        Err(_) => return Err(timed_out(method, timeout)),
    }
    let answer = tokio::select! {
        answer = tokio::time::timeout_at(deadline, answered) => answer,
        () = context.ct.cancelled() => return Err(cancelled()),
    };
    match answer {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(call_ended()),
        Err(_) => Err(timed_out(method, timeout)),
    }
}

fn call_ended() -> ErrorData {
    ErrorData::internal_error("the client's request ended before it answered", None)
}

fn method_of(request: &ServerRequest) -> &'static str {
    match request {
        ServerRequest::CreateMessageRequest(_) => "sampling/createMessage",
        ServerRequest::ListRootsRequest(_) => "roots/list",
        ServerRequest::ElicitRequest(_) => "elicitation/create",
        _ => "request",
    }
}

impl Downstream {
    /// Relays `request` from `backend` to the client whose call it belongs
    /// to, and returns the client's answer.
    pub async fn request(
        &self,
        backend: &Arc<str>,
        timeout: Duration,
        mut request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let method = method_of(&request);
        let origin = Origin::of(context.extensions.get());
        let caller = self
            .routes
            .wait_caller(backend, &origin, Instant::now() + REGISTRATION_GRACE)
            .await
            .map_err(|why| {
                tracing::debug!(backend = %backend, method, reason = %why, "backend request not relayed");
                ErrorData::new(
                    ErrorCode::INTERNAL_ERROR,
                    format!("vmcp cannot relay {method} to a client: {why}"),
                    None,
                )
            })?;
        if let Some(missing) = missing_capability(&caller.capabilities(), &request) {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("the client of this request does not support {missing}"),
                None,
            ));
        }
        if let (ServerRequest::ElicitRequest(elicit), Some(session)) = (&request, &caller.session)
            && let ElicitRequestParams::UrlElicitationParams { elicitation_id, .. } = &elicit.params
            && !elicitation_id.is_empty()
        {
            self.sessions
                .url_elicitation_sent(session, backend, elicitation_id);
        }
        let mut meta = context.meta.clone();
        meta.0.0.remove("progressToken");
        request.get_meta_mut().extend(meta);
        let deadline = Instant::now() + timeout;
        if let Some(link) = &caller.rounds {
            return ask_in_rounds(&link.questions, method, request, deadline, timeout, context)
                .await;
        }
        // Ride the client call's own response stream (SEP-2260).
        request
            .extensions_mut()
            .insert(OriginatingRequestId(caller.request_id.clone()));
        let sent = tokio::select! {
            sent = tokio::time::timeout_at(deadline, caller.peer.send_request_with_option(request, PeerRequestOptions::no_options())) => sent,
            () = context.ct.cancelled() => return Err(cancelled()),
        };
        let mut handle = match sent {
            Ok(Ok(handle)) => handle,
            Ok(Err(err)) => return Err(client_failed(method, &err)),
            Err(_) => return Err(timed_out(method, timeout)),
        };
        let answer = tokio::select! {
            answer = tokio::time::timeout_at(deadline, &mut handle.rx) => answer,
            () = context.ct.cancelled() => {
                tokio::spawn(async move {
                    let _ = handle.cancel(Some("cancelled by the backend".to_string())).await;
                });
                return Err(cancelled());
            }
        };
        let result = match answer {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(ServiceError::McpError(error)))) => return Err(error),
            Ok(Ok(Err(err))) => return Err(client_failed(method, &err)),
            Ok(Err(_)) => {
                return Err(ErrorData::internal_error(
                    "the client's session ended before it answered",
                    None,
                ));
            }
            Err(_) => {
                tokio::spawn(async move {
                    let _ = handle
                        .cancel(Some("timed out at the gateway".to_string()))
                        .await;
                });
                return Err(timed_out(method, timeout));
            }
        };
        if matches!(result, ClientResult::ListRootsResult(_))
            && let Some(session) = &caller.session
        {
            self.sessions.roots_asked(session, backend);
        }
        Ok(result)
    }

    /// Relays a log message from `backend` to the sessions that want its level.
    pub fn log(&self, backend: &str, mut params: LoggingMessageNotificationParam) {
        let receivers = self.sessions.log_receivers(params.level);
        if receivers.is_empty() {
            return;
        }
        params.logger = Some(match params.logger.take() {
            Some(logger) => format!("{backend}/{logger}"),
            None => backend.to_string(),
        });
        for peer in receivers {
            let Some(permit) = self.permit(backend, "log message") else {
                return;
            };
            let params = params.clone();
            // A slow client never delays the backend connection or the others.
            tokio::spawn(async move {
                let _ = peer.notify_logging_message(params).await;
                drop(permit);
            });
        }
    }

    fn permit(&self, backend: &str, what: &'static str) -> Option<OwnedSemaphorePermit> {
        let permit = self.notifications.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::debug!(
                backend,
                what,
                "too many notifications on their way to clients; dropped"
            );
        }
        permit
    }

    /// Relays `notifications/elicitation/complete` to the session the URL
    /// elicitation went to (`false` when none is known).
    pub fn elicitation_complete(
        &self,
        backend: &Arc<str>,
        notification: CustomNotification,
    ) -> bool {
        let Some(id) = notification
            .params
            .as_ref()
            .and_then(|p| p.get("elicitationId"))
            .and_then(|id| id.as_str())
        else {
            return false;
        };
        let Some(peer) = self.sessions.url_elicitation_done(backend, id) else {
            return false;
        };
        let Some(permit) = self.permit(backend, "elicitation complete") else {
            return false;
        };
        tokio::spawn(async move {
            let notification = CustomNotification::new(notification.method, notification.params);
            let _ = peer
                .send_notification(ServerNotification::CustomNotification(notification))
                .await;
            drop(permit);
        });
        true
    }

    /// Relays `notifications/resources/updated` to the subscribed sessions.
    pub fn resource_updated(&self, backend: &str, params: ResourceUpdatedNotificationParam) {
        for (peer, listen) in self.sessions.subscribers(backend, &params.uri) {
            let Some(permit) = self.permit(backend, "resource update") else {
                return;
            };
            let mut update = ServerNotification::ResourceUpdatedNotification(
                ResourceUpdatedNotification::new(params.clone()),
            );
            if let Some(stream) = listen {
                // A listen stream's frames carry its id (2026-07-28).
                update.get_meta_mut().set_subscription_id(stream);
            }
            tokio::spawn(async move {
                let _ = peer.send_notification(update).await;
                drop(permit);
            });
        }
    }

    /// Brings a freshly connected backend up to date: subscribed again to
    /// what sessions still want, and logging at the level in force; each
    /// request bounded by the backend's call `timeout`.
    pub async fn restore(&self, backend: &str, peer: &Peer<RoleClient>, timeout: Duration) {
        let declared = peer
            .peer_info()
            .map(|info| info.capabilities.clone())
            .unwrap_or_default();
        let subscribes = declared
            .resources
            .as_ref()
            .is_some_and(|r| r.subscribe == Some(true));
        if subscribes {
            for uri in self.sessions.subscribed_uris(backend) {
                let sent = bounded(timeout, peer.subscribe(SubscribeRequestParams::new(uri))).await;
                if let Err(err) = sent {
                    tracing::warn!(backend, error = %err, "could not subscribe again after reconnecting");
                }
            }
        }
        if declared.logging.is_some()
            && let Some(level) = self.sessions.upstream_log_level()
            && let Err(err) =
                bounded(timeout, peer.set_level(SetLevelRequestParams::new(level))).await
        {
            tracing::debug!(backend, error = %err, "could not set the log level after reconnecting");
        }
    }
}

/// A request to a backend made outside any client call (restoring
/// subscriptions, setting the log level, releasing a subscription): it gets
/// the backend's call timeout like every other, never waits forever.
pub async fn bounded<T>(
    timeout: Duration,
    request: impl Future<Output = Result<T, ServiceError>>,
) -> Result<T, ServiceError> {
    tokio::time::timeout(timeout, request)
        .await
        .unwrap_or(Err(ServiceError::Timeout { timeout }))
}

fn cancelled() -> ErrorData {
    ErrorData::new(ErrorCode::INTERNAL_ERROR, "cancelled by the backend", None)
}

fn timed_out(method: &str, timeout: Duration) -> ErrorData {
    ErrorData::new(
        crate::forward::REQUEST_TIMEOUT,
        format!(
            "the client did not answer {method} within {} ms",
            timeout.as_millis()
        ),
        None,
    )
}

fn client_failed(method: &str, err: &ServiceError) -> ErrorData {
    tracing::debug!(method, error = %err, "relaying to the client failed");
    ErrorData::internal_error(format!("{method} could not be relayed to the client"), None)
}

#[cfg(test)]
mod tests {
    use rmcp::model::{
        CreateMessageRequest, CreateMessageRequestParams, ElicitRequest, ElicitationCapability,
        FormElicitationCapability, ListRootsRequest, RootsCapabilities, SamplingCapability,
        UrlElicitationCapability,
    };

    use super::*;

    fn sampling() -> ServerRequest {
        ServerRequest::CreateMessageRequest(CreateMessageRequest::new(
            CreateMessageRequestParams::new(Vec::new(), 10),
        ))
    }

    fn elicit(url: bool) -> ServerRequest {
        let params: ElicitRequestParams = serde_json::from_value(if url {
            serde_json::json!({"mode": "url", "message": "m", "url": "https://example.com/x", "elicitationId": "e1"})
        } else {
            serde_json::json!({"mode": "form", "message": "m", "requestedSchema": {"type": "object", "properties": {}}})
        })
        .expect("valid params");
        ServerRequest::ElicitRequest(ElicitRequest::new(params))
    }

    #[test]
    fn a_request_needs_the_matching_client_capability() {
        let none = ClientCapabilities::default();
        assert_eq!(missing_capability(&none, &sampling()), Some("sampling"));
        assert_eq!(
            missing_capability(
                &none,
                &ServerRequest::ListRootsRequest(ListRootsRequest::default())
            ),
            Some("roots")
        );
        assert_eq!(
            missing_capability(&none, &elicit(false)),
            Some("elicitation")
        );

        let mut all = ClientCapabilities::default();
        all.sampling = Some(SamplingCapability::default());
        all.roots = Some(RootsCapabilities::default());
        all.elicitation = Some(
            ElicitationCapability::new()
                .with_form(FormElicitationCapability::new())
                .with_url(UrlElicitationCapability::new()),
        );
        assert_eq!(missing_capability(&all, &sampling()), None);
        assert_eq!(missing_capability(&all, &elicit(false)), None);
        assert_eq!(missing_capability(&all, &elicit(true)), None);
    }

    #[test]
    fn elicitation_modes_are_told_apart() {
        let mut bare = ClientCapabilities::default();
        bare.elicitation = Some(ElicitationCapability::new());
        // `elicitation: {}` is form mode only.
        assert_eq!(missing_capability(&bare, &elicit(false)), None);
        assert_eq!(
            missing_capability(&bare, &elicit(true)),
            Some("elicitation (url mode)")
        );
        let mut url_only = ClientCapabilities::default();
        url_only.elicitation =
            Some(ElicitationCapability::new().with_url(UrlElicitationCapability::new()));
        assert_eq!(
            missing_capability(&url_only, &elicit(false)),
            Some("elicitation (form mode)")
        );
    }
}
