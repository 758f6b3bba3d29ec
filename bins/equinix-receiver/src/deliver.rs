//! Delivering one CloudEvent: to Direktiv with retries and backoff, or, with
//! `--dry-run`, to stdout as one JSON object per line.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use direktiv_broadcast::{Outcome, Sink};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, ReasonLabel};
use crate::scrub::ScrubbedStdout;

/// The shortest and longest wait between two attempts at one event.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where CloudEvents go.
#[derive(Debug)]
pub(crate) enum Target {
    /// A Direktiv broadcast endpoint.
    Direktiv(Sink),
    /// Standard output, one structured-mode JSON object per line, scrubbed
    /// of the configured secrets.
    Stdout(ScrubbedStdout),
}

/// How delivering one event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Direktiv has it (accepted now, or already had it).
    Acknowledged {
        /// Direktiv said it already had it (409 or history 400).
        already: bool,
    },
    /// Direktiv refused this event and will refuse it again (400, 413, 422
    /// ...): it is skipped so it cannot block the events behind it.
    Rejected {
        /// Why, for the log.
        reason: String,
    },
    /// Not delivered this sweep: retries ran out, or Direktiv refused the
    /// request for a reason that concerns every event (wrong token, wrong
    /// namespace). The event stays new and is tried next sweep.
    Deferred {
        /// Why, for the log.
        reason: String,
        /// The refusal concerns every event (401, 403, 404, 405, 415, a
        /// redirect): stop delivering for this sweep.
        blocks_all: bool,
    },
}

/// Whether a permanent status concerns the endpoint or token rather than the
/// event: sending any other event would fail the same way.
fn is_endpoint_problem(status: u16) -> bool {
    matches!(status, 300..=399 | 401 | 403 | 404 | 405 | 407 | 415)
}

impl Target {
    /// Delivers `event`, retrying retryable failures up to `max_retries` times
    /// with capped exponential backoff and jitter (at least the server's
    /// `Retry-After`). Stops waiting when `stop` is cancelled.
    pub(crate) async fn deliver(
        &self,
        event: &cloudevents::Event,
        max_retries: u32,
        metrics: &Metrics,
        stop: &CancellationToken,
    ) -> Delivered {
        let sink = match self {
            Self::Direktiv(sink) => sink,
            Self::Stdout(stdout) => return print_event(stdout, event),
        };
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(MIN_BACKOFF)
            .with_max_delay(MAX_BACKOFF)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(max_retries as usize)
            .build();
        loop {
            let delivery = sink.send(event).await;
            match delivery.outcome {
                Outcome::Delivered => return Delivered::Acknowledged { already: false },
                Outcome::AlreadyDelivered => return Delivered::Acknowledged { already: true },
                Outcome::Retryable {
                    retry_after,
                    ref detail,
                    ..
                } => {
                    metrics
                        .delivery_failures
                        .get_or_create(&ReasonLabel {
                            reason: "retryable",
                        })
                        .inc();
                    let Some(delay) = backoff.next() else {
                        return Delivered::Deferred {
                            reason: format!("{}; retries ran out", delivery.outcome),
                            blocks_all: false,
                        };
                    };
                    let wait = delay
                        .max(retry_after.unwrap_or_default())
                        .min(MAX_BACKOFF * 4);
                    tracing::debug!(id = event_id(event), %detail, wait_ms = wait.as_millis() as u64,
                        "delivery failed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return Delivered::Deferred {
                            reason: "shutting down".to_owned(),
                            blocks_all: true,
                        },
                        () = tokio::time::sleep(wait) => {}
                    }
                    metrics.delivery_retries.inc();
                }
                Outcome::Permanent { status, .. } => {
                    metrics
                        .delivery_failures
                        .get_or_create(&ReasonLabel {
                            reason: "permanent",
                        })
                        .inc();
                    let reason = delivery.outcome.to_string();
                    return if is_endpoint_problem(status) {
                        Delivered::Deferred {
                            reason,
                            blocks_all: true,
                        }
                    } else {
                        Delivered::Rejected { reason }
                    };
                }
                ref other => {
                    metrics
                        .delivery_failures
                        .get_or_create(&ReasonLabel {
                            reason: "permanent",
                        })
                        .inc();
                    return Delivered::Rejected {
                        reason: other.to_string(),
                    };
                }
            }
        }
    }
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
            return Delivered::Rejected {
                reason: error.to_string(),
            };
        }
    };
    match stdout.write_line(&line) {
        Ok(()) => Delivered::Acknowledged { already: false },
        Err(error) => Delivered::Deferred {
            reason: format!("writing to stdout failed: {error}"),
            blocks_all: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_problems_block_everything_but_event_problems_do_not() {
        for status in [301, 401, 403, 404, 405, 415] {
            assert!(is_endpoint_problem(status), "{status}");
        }
        for status in [400, 413, 422] {
            assert!(!is_endpoint_problem(status), "{status}");
        }
    }
}
