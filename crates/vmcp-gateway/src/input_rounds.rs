//! Multi round-trip requests (protocol 2026-07-28, SEP-2322) in front of
//! backends that ask their questions mid-call.
//!
//! A 2026-07-28 client cannot be sent a request: a server that needs input
//! (sampling, elicitation, roots) answers the call with an
//! `InputRequiredResult` and the client retries the same call with its
//! answers and the opaque `requestState` it was given. A backend on an
//! older revision instead sends `sampling/createMessage` (etc.) while the
//! call runs, and waits for the answer.
//!
//! The bridge keeps the upstream call running. When the backend asks, the
//! question is collected here, the call is *parked* under a fresh random
//! `requestState`, and the client gets the question as `inputRequests`.
//! The client's retry finds the parked call, its answers go to the waiting
//! backend, and the bridge waits again: for the result, or the next
//! question (another round).
//!
//! Bounds: at most [`MAX_PARKED`] calls wait for input at once (beyond that
//! the backend's question is refused), at most [`MAX_QUESTIONS_PER_ROUND`]
//! questions go out in one round, and a parked call is dropped — and its
//! upstream call cancelled — when the client has not come back within the
//! backend's call timeout. `requestState` is 128 random bits: it cannot be
//! guessed, and it names a call for one operation only (the same method
//! and tool, prompt or URI).
#![expect(
    deprecated,
    reason = "sampling and roots are deprecated by SEP-2577 but still relayed"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rmcp::model::{
    ClientResult, CreateMessageResult, ElicitResult, ErrorData, InputRequest, InputRequiredResult,
    InputResponses, ListRootsResult, ProgressToken, ServerRequest, ServerResult,
};
use rmcp::service::{Peer, RoleServer};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// At most this many calls wait for their client's input at once.
pub const MAX_PARKED: usize = 1024;

/// At most this many of a backend's questions go out in one round; more
/// wait for the next round.
pub const MAX_QUESTIONS_PER_ROUND: usize = 16;

/// Marks a `requestState` issued by the gateway (any other is the backend's own).
const STATE_PREFIX: &str = "vmcp1.";

/// A backend's question to the client of a call in rounds, and where its
/// answer goes.
pub struct Question {
    /// The backend's request (sampling, elicitation or roots).
    pub request: ServerRequest,
    /// Receives the client's answer, or why there is none.
    pub answer: oneshot::Sender<Result<ClientResult, ErrorData>>,
}

/// Where the relay puts a backend's questions for a call in rounds.
pub type Questions = mpsc::Sender<Question>;

/// The client exchange a call in rounds is currently part of: each retry
/// is a new request, on which the call's progress continues.
pub struct Exchange {
    /// The exchange's peer (its response stream); `None` when there is
    /// nowhere to send progress.
    pub peer: Option<Peer<RoleServer>>,
    /// The progress token the client chose for this exchange, if any.
    pub progress_token: Option<ProgressToken>,
}

/// What the forwarding side of a call in rounds holds: where questions go,
/// and the exchange to send progress to.
#[derive(Clone)]
pub struct RoundLink {
    /// Where the backend's questions go.
    pub questions: Questions,
    /// The exchange the call is part of now.
    pub exchange: Arc<ArcSwap<Exchange>>,
}

/// The operation a `requestState` belongs to: a retry must repeat it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// `tools/call`, `prompts/get` or `resources/read`.
    pub method: &'static str,
    /// The tool or prompt name, or the resource URI, as the client sent it.
    pub target: String,
}

/// Why a retry could not be resumed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// No call waits under this `requestState` (never issued, already
    /// used, or expired).
    #[error("requestState is unknown or has expired; send the request again without it")]
    Unknown,
    /// The `requestState` belongs to a different operation.
    #[error("requestState was issued for a different request")]
    WrongOperation,
}

impl From<ResumeError> for ErrorData {
    fn from(err: ResumeError) -> Self {
        ErrorData::invalid_params(err.to_string(), None)
    }
}

/// The upstream call and what it asked, while the client answers.
struct Parked {
    operation: Operation,
    call: JoinHandle<Result<ServerResult, ErrorData>>,
    questions: mpsc::Receiver<Question>,
    asked: BTreeMap<String, Question>,
    exchange: Arc<ArcSwap<Exchange>>,
    /// Drops this entry when the client does not come back in time.
    expiry: Option<tokio::task::AbortHandle>,
    /// Cancels the upstream call when the parked call is dropped unanswered.
    _cancel: DropGuard,
}

/// The calls in rounds, by `requestState`.
#[derive(Default)]
pub struct InputRounds {
    parked: Mutex<HashMap<String, Parked>>,
}

/// Whether `state` is one the gateway issued (the others are passed to the backend).
pub fn is_ours(state: &str) -> bool {
    state.starts_with(STATE_PREFIX)
}

impl InputRounds {
    /// Runs a call for a client that answers in rounds. `start` sends the
    /// call upstream with the given question channel and cancellation
    /// token, on a task of its own (the call outlives this exchange when it
    /// is parked). Returns the call's result, or an `InputRequiredResult`
    /// when the backend asked something. `client_ct` is this exchange's
    /// cancellation; `timeout` bounds how long a parked call waits for the
    /// client.
    pub async fn start(
        self: &Arc<Self>,
        operation: Operation,
        exchange: Exchange,
        client_ct: &CancellationToken,
        timeout: Duration,
        start: impl FnOnce(RoundLink, CancellationToken) -> JoinHandle<Result<ServerResult, ErrorData>>,
    ) -> Result<ServerResult, ErrorData> {
        let (questions_tx, questions) = mpsc::channel(MAX_QUESTIONS_PER_ROUND);
        let exchange = Arc::new(ArcSwap::from_pointee(exchange));
        let cancel = CancellationToken::new();
        let link = RoundLink {
            questions: questions_tx,
            exchange: Arc::clone(&exchange),
        };
        let call = start(link, cancel.clone());
        let parked = Parked {
            operation,
            call,
            questions,
            asked: BTreeMap::new(),
            exchange,
            expiry: None,
            _cancel: cancel.drop_guard(),
        };
        self.wait(parked, client_ct, timeout).await
    }

    /// Resumes the call parked under `state` with the client's answers.
    pub async fn resume(
        self: &Arc<Self>,
        state: &str,
        operation: &Operation,
        exchange: Exchange,
        answers: Option<InputResponses>,
        client_ct: &CancellationToken,
        timeout: Duration,
    ) -> Result<ServerResult, ErrorData> {
        let mut parked = {
            let mut table = self.lock();
            match table.get(state) {
                None => return Err(ResumeError::Unknown.into()),
                Some(parked) if parked.operation != *operation => {
                    return Err(ResumeError::WrongOperation.into());
                }
                Some(_) => table.remove(state).ok_or(ResumeError::Unknown)?,
            }
        };
        // Back in time: its expiry timer goes (a new round sets a new one).
        if let Some(expiry) = parked.expiry.take() {
            expiry.abort();
        }
        // Progress from here on belongs to this exchange.
        parked.exchange.store(Arc::new(exchange));
        let mut answers = answers.unwrap_or_default();
        for (key, question) in std::mem::take(&mut parked.asked) {
            let answer = match answers.remove(&key) {
                Some(value) => answer_from(&question.request, value),
                None => Err(ErrorData::internal_error(
                    "the client did not answer this request",
                    None,
                )),
            };
            let _ = question.answer.send(answer);
        }
        self.wait(parked, client_ct, timeout).await
    }

    /// Number of calls waiting for their client.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no call waits for its client.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn wait(
        self: &Arc<Self>,
        mut parked: Parked,
        client_ct: &CancellationToken,
        timeout: Duration,
    ) -> Result<ServerResult, ErrorData> {
        let first = tokio::select! {
            biased;
            done = &mut parked.call => return done.unwrap_or_else(|err| {
                Err(ErrorData::internal_error(format!("the forwarded call failed: {err}"), None))
            }),
            question = parked.questions.recv() => question,
            // Dropping `parked` cancels the upstream call.
            () = client_ct.cancelled() => {
                return Err(ErrorData::internal_error("request cancelled by the client", None));
            }
        };
        let Some(first) = first else {
            // No question can come any more: the call is ending.
            return (&mut parked.call).await.unwrap_or_else(|err| {
                Err(ErrorData::internal_error(
                    format!("the forwarded call failed: {err}"),
                    None,
                ))
            });
        };
        let mut round = vec![first];
        while round.len() < MAX_QUESTIONS_PER_ROUND {
            match parked.questions.try_recv() {
                Ok(question) => round.push(question),
                Err(_) => break,
            }
        }
        let mut requests = BTreeMap::new();
        for (n, question) in round.into_iter().enumerate() {
            let key = format!("vmcp-{}", n + 1);
            match input_request(&question.request) {
                Some(request) => {
                    requests.insert(key.clone(), request);
                    parked.asked.insert(key, question);
                }
                None => {
                    let _ = question.answer.send(Err(ErrorData::internal_error(
                        "this request cannot be relayed to a 2026-07-28 client",
                        None,
                    )));
                }
            }
        }
        let state = new_state();
        let refused = {
            let mut table = self.lock();
            if table.len() >= MAX_PARKED {
                Some(parked)
            } else {
                table.insert(state.clone(), parked);
                None
            }
        };
        if let Some(mut parked) = refused {
            tracing::warn!(
                limit = MAX_PARKED,
                "too many calls wait for their clients' input; a backend's question is refused"
            );
            for (_, question) in std::mem::take(&mut parked.asked) {
                let _ = question.answer.send(Err(ErrorData::internal_error(
                    "the gateway has too many calls waiting for client input",
                    None,
                )));
            }
            return Box::pin(self.wait(parked, client_ct, timeout)).await;
        }
        let rounds = Arc::downgrade(self);
        let expiring = state.clone();
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(rounds) = rounds.upgrade() {
                // Dropping it cancels the upstream call.
                let expired = rounds.lock().remove(&expiring);
                if expired.is_some() {
                    tracing::debug!(
                        "a call waited longer than its timeout for client input; dropped"
                    );
                }
            }
        });
        if let Some(parked) = self.lock().get_mut(&state) {
            parked.expiry = Some(expiry.abort_handle());
        }
        Ok(ServerResult::InputRequiredResult(InputRequiredResult::new(
            Some(requests),
            Some(state),
        )))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        // Every operation leaves the map consistent; a poisoned lock is usable.
        self.parked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A backend's request as the 2026-07-28 `inputRequests` entry it becomes.
pub fn input_request(request: &ServerRequest) -> Option<InputRequest> {
    match request {
        ServerRequest::CreateMessageRequest(r) => Some(InputRequest::CreateMessage(r.clone())),
        ServerRequest::ElicitRequest(r) => Some(InputRequest::Elicitation(r.clone())),
        ServerRequest::ListRootsRequest(r) => Some(InputRequest::ListRoots(r.clone())),
        _ => None,
    }
}

/// A 2026-07-28 `inputRequests` entry as the request a backend on an older
/// revision would have sent.
pub fn server_request(request: InputRequest) -> Option<ServerRequest> {
    match request {
        InputRequest::CreateMessage(r) => Some(ServerRequest::CreateMessageRequest(r)),
        InputRequest::Elicitation(r) => Some(ServerRequest::ElicitRequest(r)),
        InputRequest::ListRoots(r) => Some(ServerRequest::ListRootsRequest(r)),
        _ => None,
    }
}

/// The client's answer (an `inputResponses` value) to `request`, typed.
pub fn answer_from(request: &ServerRequest, value: Value) -> Result<ClientResult, ErrorData> {
    let malformed = |what: &str, err: serde_json::Error| {
        ErrorData::invalid_params(
            format!("the client's answer to {what} is malformed: {err}"),
            None,
        )
    };
    match request {
        ServerRequest::CreateMessageRequest(_) => {
            serde_json::from_value::<CreateMessageResult>(value)
                .map(|r| ClientResult::CreateMessageResult(Box::new(r)))
                .map_err(|err| malformed("sampling/createMessage", err))
        }
        ServerRequest::ElicitRequest(_) => serde_json::from_value::<ElicitResult>(value)
            .map(ClientResult::ElicitResult)
            .map_err(|err| malformed("elicitation/create", err)),
        ServerRequest::ListRootsRequest(_) => serde_json::from_value::<ListRootsResult>(value)
            .map(ClientResult::ListRootsResult)
            .map_err(|err| malformed("roots/list", err)),
        _ => Err(ErrorData::internal_error("unexpected request kind", None)),
    }
}

/// The client's answer to a question, as the `inputResponses` value a
/// 2026-07-28 backend expects.
pub fn response_value(answer: &ClientResult) -> Value {
    match answer {
        ClientResult::CreateMessageResult(r) => serde_json::to_value(r),
        ClientResult::ElicitResult(r) => serde_json::to_value(r),
        ClientResult::ListRootsResult(r) => serde_json::to_value(r),
        ClientResult::EmptyResult(r) => serde_json::to_value(r),
        ClientResult::CustomResult(r) => serde_json::to_value(r),
        _ => Ok(Value::Null),
    }
    .unwrap_or(Value::Null)
}

/// A fresh, unguessable `requestState`.
fn new_state() -> String {
    let mut bytes = [0u8; 16];
    // The OS's generator; without it there is no safe token to issue.
    getrandom::fill(&mut bytes).expect("the operating system's random generator is available");
    let mut state = String::with_capacity(STATE_PREFIX.len() + 32);
    state.push_str(STATE_PREFIX);
    for byte in bytes {
        state.push_str(&format!("{byte:02x}"));
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{
        CallToolResult, ContentBlock, CreateMessageRequest, CreateMessageRequestParams,
        SamplingMessage,
    };

    fn operation(target: &str) -> Operation {
        Operation {
            method: "tools/call",
            target: target.to_string(),
        }
    }

    fn nowhere() -> Exchange {
        Exchange {
            peer: None,
            progress_token: None,
        }
    }

    fn sampling() -> ServerRequest {
        ServerRequest::CreateMessageRequest(CreateMessageRequest::new(
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text("hi")], 10),
        ))
    }

    fn answer(model: &str) -> Value {
        serde_json::json!({"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": model})
    }

    /// Asks the client a sampling question, as the relay does; returns where the answer arrives.
    async fn put_sampling_question(
        link: &RoundLink,
    ) -> oneshot::Receiver<Result<ClientResult, ErrorData>> {
        let (answer, answered) = oneshot::channel();
        link.questions
            .send(Question {
                request: sampling(),
                answer,
            })
            .await
            .expect("bridge listens");
        answered
    }

    /// A call that asks one question, then returns the answer's model name.
    fn asking_call(
        link: RoundLink,
        cancel: CancellationToken,
    ) -> JoinHandle<Result<ServerResult, ErrorData>> {
        tokio::spawn(async move {
            let rx = put_sampling_question(&link).await;
            let answer = tokio::select! {
                answer = rx => answer.expect("answered"),
                () = cancel.cancelled() => return Err(ErrorData::internal_error("cancelled", None)),
            };
            let text = match answer {
                Ok(ClientResult::CreateMessageResult(r)) => r.model.clone(),
                Ok(_) => "wrong kind".to_string(),
                Err(err) => format!("error: {}", err.message),
            };
            Ok(ServerResult::CallToolResult(CallToolResult::success(vec![
                ContentBlock::text(text),
            ])))
        })
    }

    fn text_of(result: &ServerResult) -> String {
        match result {
            ServerResult::CallToolResult(r) => r.content[0].as_text().expect("text").text.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Starts `asking_call` for operation "ask": its first round.
    async fn ask(rounds: &Arc<InputRounds>, ct: &CancellationToken) -> InputRequiredResult {
        let first = rounds
            .start(operation("ask"), nowhere(), ct, TIMEOUT, asking_call)
            .await
            .expect("first round");
        input_required(first)
    }

    /// Retries operation `target` under `state` with `answers`.
    async fn retry(
        rounds: &Arc<InputRounds>,
        state: &str,
        target: &str,
        answers: Option<InputResponses>,
        ct: &CancellationToken,
    ) -> Result<ServerResult, ErrorData> {
        rounds
            .resume(state, &operation(target), nowhere(), answers, ct, TIMEOUT)
            .await
    }

    fn input_required(result: ServerResult) -> InputRequiredResult {
        match result {
            ServerResult::InputRequiredResult(r) => r,
            other => panic!("expected InputRequiredResult, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_question_parks_the_call_and_the_retry_completes_it() {
        let rounds = Arc::new(InputRounds::default());
        let ct = CancellationToken::new();
        let first = ask(&rounds, &ct).await;
        let state = first.request_state.clone().expect("state");
        assert!(is_ours(&state) && state.len() == STATE_PREFIX.len() + 32);
        let requests = first.input_requests.expect("requests");
        assert_eq!(requests.keys().collect::<Vec<_>>(), ["vmcp-1"]);
        assert!(matches!(requests["vmcp-1"], InputRequest::CreateMessage(_)));
        assert_eq!(rounds.len(), 1);

        let answers = BTreeMap::from([("vmcp-1".to_string(), answer("model-x"))]);
        let done = retry(&rounds, &state, "ask", Some(answers), &ct)
            .await
            .expect("second round");
        assert_eq!(text_of(&done), "model-x");
        assert!(rounds.is_empty());
        // A state is good for one retry only.
        let again = retry(&rounds, &state, "ask", None, &ct).await;
        assert_eq!(
            again.expect_err("used state").message,
            ResumeError::Unknown.to_string()
        );
    }

    #[tokio::test]
    async fn a_state_cannot_resume_another_operation_and_stays_usable() {
        let rounds = Arc::new(InputRounds::default());
        let ct = CancellationToken::new();
        let first = ask(&rounds, &ct).await;
        let state = first.request_state.expect("state");
        let wrong = retry(&rounds, &state, "other", None, &ct).await;
        assert_eq!(
            wrong.expect_err("other operation").message,
            ResumeError::WrongOperation.to_string()
        );
        assert_eq!(rounds.len(), 1);
    }

    #[tokio::test]
    async fn a_missing_or_malformed_answer_reaches_the_backend_as_an_error() {
        let rounds = Arc::new(InputRounds::default());
        let ct = CancellationToken::new();
        for (answers, expected) in [
            (None, "error: the client did not answer this request"),
            (
                Some(BTreeMap::from([(
                    "vmcp-1".to_string(),
                    serde_json::json!({"role": 3}),
                )])),
                "error: the client's answer to sampling/createMessage is malformed",
            ),
        ] {
            let state = ask(&rounds, &ct).await.request_state.expect("state");
            let done = retry(&rounds, &state, "ask", answers, &ct)
                .await
                .expect("completes");
            assert!(text_of(&done).starts_with(expected), "{}", text_of(&done));
        }
    }

    #[tokio::test]
    async fn a_call_without_questions_completes_in_one_exchange() {
        let rounds = Arc::new(InputRounds::default());
        let ct = CancellationToken::new();
        let done = rounds
            .start(
                operation("echo"),
                nowhere(),
                &ct,
                TIMEOUT,
                |_questions, _| {
                    tokio::spawn(async {
                        Ok(ServerResult::CallToolResult(CallToolResult::success(vec![
                            ContentBlock::text("plain"),
                        ])))
                    })
                },
            )
            .await
            .expect("done");
        assert_eq!(text_of(&done), "plain");
        assert!(rounds.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_comes_back_is_forgotten_and_the_call_cancelled() {
        let rounds = Arc::new(InputRounds::default());
        let ct = CancellationToken::new();
        let (cancelled_tx, cancelled_rx) = oneshot::channel();
        let result = rounds
            .start(operation("ask"), nowhere(), &ct, TIMEOUT, |link, cancel| {
                tokio::spawn(async move {
                    let _unanswered = put_sampling_question(&link).await;
                    cancel.cancelled().await;
                    let _ = cancelled_tx.send(());
                    Err(ErrorData::internal_error("cancelled", None))
                })
            })
            .await
            .expect("first round");
        input_required(result);
        assert_eq!(rounds.len(), 1);
        tokio::time::timeout(Duration::from_secs(6), cancelled_rx)
            .await
            .expect("cancelled within the timeout")
            .expect("signalled");
        assert!(rounds.is_empty());
    }

    #[test]
    fn answers_are_typed_by_the_question_and_round_trip() {
        let typed = answer_from(&sampling(), answer("m")).expect("typed");
        assert!(matches!(&typed, ClientResult::CreateMessageResult(r) if r.model == "m"));
        assert_eq!(response_value(&typed)["model"], "m");
        let roots = answer_from(
            &ServerRequest::ListRootsRequest(Default::default()),
            serde_json::json!({"roots": [{"uri": "file:///tmp"}]}),
        )
        .expect("roots");
        assert!(matches!(roots, ClientResult::ListRootsResult(r) if r.roots.len() == 1));
    }

    #[test]
    fn states_are_distinct() {
        let a = new_state();
        let b = new_state();
        assert_ne!(a, b);
        assert!(is_ours(&a) && !is_ours("backend-state"));
    }
}
