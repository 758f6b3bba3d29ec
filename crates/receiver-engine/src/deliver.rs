//! Delivering one CloudEvent: to Direktiv with retries and backoff, or, with
//! `--dry-run`, to stdout as one JSON object per line.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use direktiv_broadcast::{AuthHeader, Outcome, Sink};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::Answer;
use crate::metrics::{FailureReason, HttpCode, Metrics, unix_now};
use crate::scrub::ScrubbedStdout;

/// The shortest and longest wait between two attempts at one event.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Asked right before each send: `false` holds the send back. A replica
/// that leads (high availability) closes it when it may have lost its lease
/// without knowing yet, such as right after the process was paused.
pub type SendGate = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// Sends one CloudEvent somewhere and says how it went, as a Direktiv
/// [`Sink`] does (which implements it): the seam for a stand-in of Direktiv,
/// such as the simulation's in memory. Retries, backoff and what each
/// [`Outcome`] means stay the engine's ([`Target::deliver`]).
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Sends `event` once.
    fn send<'a>(&'a self, event: &'a cloudevents::Event) -> BoxFuture<'a, Outcome>;
}

impl EventSink for Sink {
    fn send<'a>(&'a self, event: &'a cloudevents::Event) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { Sink::send(self, event).await.outcome })
    }
}

/// Where CloudEvents go.
#[derive(Debug)]
pub enum Target {
    /// A Direktiv broadcast endpoint.
    Direktiv(Sink),
    /// Any [`EventSink`], with the same retries and answers as
    /// [`Target::Direktiv`].
    Sink(Arc<dyn EventSink>),
    /// Standard output, one structured-mode JSON object per line, scrubbed
    /// of the configured secrets.
    Stdout(ScrubbedStdout),
}

/// How delivering one event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Direktiv has it (accepted now, or already had it).
    Acknowledged {
        /// Direktiv said it already had it (409 or history 400).
        already: bool,
    },
    /// Direktiv refused this event and will refuse it again (400, 413, 422
    /// ...): it goes to the dead-letter store so it cannot block the events
    /// behind it.
    Rejected {
        /// Why, for the log.
        reason: String,
        /// Direktiv's answer, for the dead-letter store.
        answer: Answer,
    },
    /// Not delivered this sweep: retries ran out, or Direktiv refused the
    /// request for a reason that concerns every event (wrong token, wrong
    /// namespace). The event stays new and is tried next sweep.
    Deferred {
        /// Why, for the log.
        reason: String,
        /// Direktiv's HTTP status, when it answered.
        status: Option<u16>,
        /// The refusal concerns every event
        /// ([`Outcome::is_endpoint_refusal`]), or stdout cannot be written:
        /// stop delivering for this sweep.
        blocks_all: bool,
        /// The answer came from something in front of Direktiv
        /// ([`Outcome::NotDirektiv`]): an error event sent there would be
        /// swallowed the same way.
        not_direktiv: bool,
    },
    /// Not delivered because the receiver is shutting down: the wait before
    /// a retry was cut short. The event stays new; this is not a problem to
    /// report.
    Cancelled,
}

impl Delivered {
    /// What a cancelled delivery says in a log line.
    pub const CANCELLED_REASON: &str = "shutting down";
}

impl Target {
    /// Delivers `event`, retrying retryable failures up to `max_retries` times
    /// with capped exponential backoff and jitter (at least the server's
    /// `Retry-After`). Stops waiting when `stop` is cancelled.
    pub async fn deliver(
        &self,
        event: &cloudevents::Event,
        max_retries: u32,
        metrics: &Metrics,
        stop: &CancellationToken,
    ) -> Delivered {
        self.deliver_gated(event, max_retries, metrics, stop, None)
            .await
    }

    /// [`Target::deliver`], asking `gate` before every attempt: when it says
    /// no, nothing is sent and the delivery ends as
    /// [`Delivered::Cancelled`] (the event stays new).
    pub async fn deliver_gated(
        &self,
        event: &cloudevents::Event,
        max_retries: u32,
        metrics: &Metrics,
        stop: &CancellationToken,
        gate: Option<&SendGate>,
    ) -> Delivered {
        if let Self::Stdout(stdout) = self {
            return print_event(stdout, event);
        }
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(MIN_BACKOFF)
            .with_max_delay(MAX_BACKOFF)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(max_retries as usize)
            .build();
        loop {
            if stop.is_cancelled() || gate.is_some_and(|gate| !gate()) {
                return Delivered::Cancelled;
            }
            let (outcome, status) = match self {
                Self::Direktiv(sink) => {
                    let delivery = sink.send(event).await;
                    (delivery.outcome, delivery.status)
                }
                Self::Sink(sink) => {
                    let outcome = sink.send(event).await;
                    let status = status_of(&outcome);
                    (outcome, status)
                }
                Self::Stdout(_) => unreachable!("answered above"),
            };
            let delivery = Answered { outcome, status };
            let code = HttpCode(delivery.status);
            if delivery.outcome.is_acknowledged() {
                metrics.last_successful_delivery.set(unix_now());
            }
            match delivery.outcome {
                Outcome::Delivered => return Delivered::Acknowledged { already: false },
                Outcome::AlreadyDelivered => return Delivered::Acknowledged { already: true },
                Outcome::Retryable {
                    retry_after,
                    ref detail,
                    ..
                } => {
                    metrics.delivery_failure(FailureReason::Retryable, code);
                    let Some(delay) = backoff.next() else {
                        return Delivered::Deferred {
                            reason: format!("{}; retries ran out", delivery.outcome),
                            status: delivery.status,
                            blocks_all: false,
                            not_direktiv: false,
                        };
                    };
                    let wait = delay
                        .max(retry_after.unwrap_or_default())
                        .min(MAX_BACKOFF * 4);
                    tracing::debug!(id = event_id(event), %detail, wait_ms = wait.as_millis() as u64,
                        "delivery failed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return Delivered::Cancelled,
                        () = tokio::time::sleep(wait) => {}
                    }
                    metrics.delivery_retries.inc();
                }
                Outcome::Permanent { .. } => {
                    metrics.delivery_failure(FailureReason::Permanent, code);
                    let reason = if let Self::Direktiv(sink) = self
                        && delivery.outcome.is_auth_refusal()
                    {
                        format!("{}; {}", delivery.outcome, auth_hint(sink.auth_headers()))
                    } else {
                        delivery.outcome.to_string()
                    };
                    return if delivery.outcome.is_endpoint_refusal() {
                        Delivered::Deferred {
                            reason,
                            status: delivery.status,
                            blocks_all: true,
                            not_direktiv: false,
                        }
                    } else {
                        Delivered::Rejected {
                            reason,
                            answer: Answer::from_outcome(&delivery.outcome),
                        }
                    };
                }
                Outcome::NotDirektiv { .. } => {
                    // Not an answer from Direktiv: the event is not at
                    // fault, and every other event would meet the same
                    // proxy. Stop the sweep; the event stays pending.
                    metrics.delivery_failure(FailureReason::Permanent, code);
                    return Delivered::Deferred {
                        reason: delivery.outcome.to_string(),
                        status: delivery.status,
                        blocks_all: true,
                        not_direktiv: true,
                    };
                }
                ref other => {
                    metrics.delivery_failure(FailureReason::Permanent, code);
                    return Delivered::Rejected {
                        reason: other.to_string(),
                        answer: Answer::from_outcome(other),
                    };
                }
            }
        }
    }
}

/// One send's answer, from either kind of sink.
struct Answered {
    outcome: Outcome,
    status: Option<u16>,
}

/// The HTTP status an [`Outcome`] names, when it names one.
fn status_of(outcome: &Outcome) -> Option<u16> {
    match outcome {
        Outcome::Retryable { status, .. } => *status,
        Outcome::Permanent { status, .. } => Some(*status),
        _ => None,
    }
}

/// What to check when Direktiv refuses the token (401, 403): the headers it
/// was sent in (never the token) and the keys that change them.
fn auth_hint(headers: &[AuthHeader]) -> String {
    if headers.is_empty() {
        return "no token was sent: set direktiv.token, direktiv.tokenFile or DIREKTIV_TOKEN"
            .to_owned();
    }
    format!(
        "the token was sent in {}: check that it is a valid token of this namespace \
         (direktiv.token, direktiv.tokenFile or DIREKTIV_TOKEN), and set direktiv.authHeader \
         to the one header your Direktiv reads (Direktiv-Api-Key from 2025, Direktiv-Token \
         before, apikey in the oldest releases, Authorization behind a proxy)",
        direktiv_broadcast::header_names(headers)
    )
}

/// The event's id, for logs.
fn event_id(event: &cloudevents::Event) -> &str {
    use cloudevents::AttributesReader;
    event.id()
}

fn print_event(stdout: &ScrubbedStdout, event: &cloudevents::Event) -> Delivered {
    let line = match metal_cloudevents::to_json_value(event) {
        Ok(value) => value.to_string(),
        Err(error) => {
            let outcome = Outcome::Unsendable {
                reason: error.to_string(),
            };
            return Delivered::Rejected {
                reason: outcome.to_string(),
                answer: Answer::from_outcome(&outcome),
            };
        }
    };
    match stdout.write_line(&line) {
        Ok(()) => Delivered::Acknowledged { already: false },
        Err(error) => Delivered::Deferred {
            reason: format!("writing to stdout failed: {error}"),
            status: None,
            blocks_all: true,
            not_direktiv: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn direktiv_answering(code: u16) -> (wiremock::MockServer, Target) {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(wiremock::ResponseTemplate::new(code))
            .mount(&server)
            .await;
        let base = url::Url::parse(&server.uri()).unwrap();
        let endpoint = direktiv_broadcast::endpoint_v2(&base, "ops").unwrap();
        let sink = Sink::new(direktiv_broadcast::SinkConfig::new(endpoint)).unwrap();
        (server, Target::Direktiv(sink))
    }

    fn event() -> cloudevents::Event {
        use cloudevents::EventBuilder;
        cloudevents::EventBuilderV10::new()
            .id("e-1")
            .source("equinix-metal")
            .ty("com.equinix.metal.test")
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_shutdown_during_a_retry_wait_cancels_without_a_problem() {
        let (_server, target) = direktiv_answering(503).await;
        let metrics = Metrics::new(Duration::from_secs(60));
        // Cancelled before the wait that follows the first 503.
        let stop = CancellationToken::new();
        stop.cancel();
        let outcome = target.deliver(&event(), 100, &metrics, &stop).await;
        assert_eq!(outcome, Delivered::Cancelled);
    }

    #[tokio::test]
    async fn a_closed_gate_sends_nothing_and_an_open_one_sends() {
        let (server, target) = direktiv_answering(200).await;
        let metrics = Metrics::new(Duration::from_secs(60));
        let stop = CancellationToken::new();
        let closed: SendGate = std::sync::Arc::new(|| false);
        let outcome = target
            .deliver_gated(&event(), 3, &metrics, &stop, Some(&closed))
            .await;
        assert_eq!(outcome, Delivered::Cancelled);
        assert!(server.received_requests().await.unwrap().is_empty());
        let open: SendGate = std::sync::Arc::new(|| true);
        let outcome = target
            .deliver_gated(&event(), 3, &metrics, &stop, Some(&open))
            .await;
        assert_eq!(outcome, Delivered::Acknowledged { already: false });
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_endpoint_refusal_blocks_every_event_and_an_event_refusal_only_one() {
        let metrics = Metrics::new(Duration::from_secs(60));
        let stop = CancellationToken::new();
        for code in [302, 404, 407, 415] {
            let (_server, target) = direktiv_answering(code).await;
            let outcome = target.deliver(&event(), 0, &metrics, &stop).await;
            assert!(
                matches!(
                    outcome,
                    Delivered::Deferred {
                        blocks_all: true,
                        not_direktiv: false,
                        ..
                    }
                ),
                "{code}: {outcome:?}"
            );
        }
        // A 204 is not what Direktiv answers: a proxy swallowed the event.
        let (_server, target) = direktiv_answering(204).await;
        let outcome = target.deliver(&event(), 0, &metrics, &stop).await;
        assert!(
            matches!(
                outcome,
                Delivered::Deferred {
                    blocks_all: true,
                    not_direktiv: true,
                    status: Some(204),
                    ..
                }
            ),
            "204: {outcome:?}"
        );
        for code in [400, 413, 422] {
            let (_server, target) = direktiv_answering(code).await;
            let outcome = target.deliver(&event(), 0, &metrics, &stop).await;
            assert!(
                matches!(outcome, Delivered::Rejected { .. }),
                "{code}: {outcome:?}"
            );
        }
    }

    /// Answers each send with the next status of its list (the last one
    /// again once the list runs out), counting the sends.
    #[derive(Debug)]
    struct Scripted {
        statuses: Vec<u16>,
        sent: std::sync::atomic::AtomicUsize,
    }

    impl EventSink for Scripted {
        fn send<'a>(&'a self, _event: &'a cloudevents::Event) -> BoxFuture<'a, Outcome> {
            let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = self.statuses[n.min(self.statuses.len() - 1)];
            Box::pin(async move { Outcome::of_answer(status, "", None) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_sink_of_its_own_gets_the_engine_s_retries_and_answers() {
        let metrics = Metrics::new(Duration::from_secs(60));
        let stop = CancellationToken::new();
        let sink = Arc::new(Scripted {
            statuses: vec![503, 503, 200],
            sent: 0.into(),
        });
        let target = Target::Sink(sink.clone());
        let outcome = target.deliver(&event(), 5, &metrics, &stop).await;
        assert_eq!(outcome, Delivered::Acknowledged { already: false });
        assert_eq!(sink.sent.load(std::sync::atomic::Ordering::SeqCst), 3);

        let refused = Target::Sink(Arc::new(Scripted {
            statuses: vec![400],
            sent: 0.into(),
        }));
        let outcome = refused.deliver(&event(), 5, &metrics, &stop).await;
        assert!(matches!(outcome, Delivered::Rejected { .. }), "{outcome:?}");
        let down = Target::Sink(Arc::new(Scripted {
            statuses: vec![503],
            sent: 0.into(),
        }));
        let outcome = down.deliver(&event(), 2, &metrics, &stop).await;
        assert!(
            matches!(
                outcome,
                Delivered::Deferred {
                    status: Some(503),
                    blocks_all: false,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_refused_token_names_its_headers_and_the_key_that_changes_them() {
        let both = auth_hint(&direktiv_broadcast::Auth::DEFAULT_HEADERS);
        assert!(
            both.starts_with("the token was sent in Direktiv-Token and Direktiv-Api-Key:"),
            "{both}"
        );
        assert!(both.contains("direktiv.authHeader"), "{both}");
        let one = auth_hint(&[AuthHeader::Bearer]);
        assert!(
            one.starts_with("the token was sent in Authorization: Bearer:"),
            "{one}"
        );
        assert!(auth_hint(&[]).starts_with("no token was sent"));
    }
}
