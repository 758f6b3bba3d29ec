//! Sending the events Direktiv refused for good (the dead-letter store)
//! again, through the same target, retries and outcome handling as a sweep.
//! Makes no Metal API request.

use std::collections::HashSet;
use std::fmt;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetters, Entry};
use crate::deliver::{Delivered, Target};
use crate::metrics::Metrics;

/// What one redelivery did. `Display` is the one-line summary
/// (`redelivered 2, still refused 0, left 0`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Redelivery {
    /// Accepted by Direktiv (or already there): removed from the store.
    pub redelivered: usize,
    /// Refused again: kept, with the new answer.
    pub still_refused: usize,
    /// Not tried: the run stopped early (an endpoint-wide refusal, or
    /// Direktiv unreachable after the retries). Kept as they were.
    pub left: usize,
}

impl Redelivery {
    /// Nothing is kept any more: every event was redelivered.
    pub fn is_complete(&self) -> bool {
        self.still_refused == 0 && self.left == 0
    }
}

impl fmt::Display for Redelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "redelivered {}, still refused {}, left {}",
            self.redelivered, self.still_refused, self.left
        )
    }
}

/// Sends every entry of `store` to `target` again, oldest first; removes
/// each one Direktiv accepts or already has, keeps each one refused again
/// with its new answer, and stops at the first event not taken for a reason
/// that is not the event's own. Writes the store once, at the end.
///
/// The caller holds whatever keeps a running receiver from changing the
/// store meanwhile (the binary holds the state file's lock).
///
/// # Errors
///
/// An entry is not a readable CloudEvent, or the store cannot be written.
pub async fn redeliver(
    store: &DeadLetters,
    target: &Target,
    max_retries: u32,
    metrics: &Metrics,
) -> crate::Result<Redelivery> {
    let entries = store.entries().await;
    tracing::info!(count = entries.len(), file = %store.location(), "sending refused events again");
    let stop = CancellationToken::new();
    let mut summary = Redelivery::default();
    let mut resent = HashSet::new();
    let mut refused = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let event = entry
            .cloud_event()
            .map_err(|source| crate::Error::DeadLetterEvent {
                id: entry.id.clone(),
                source,
            })?;
        match target.deliver(&event, max_retries, metrics, &stop).await {
            Delivered::Acknowledged { already } => {
                tracing::info!(id = %entry.id, already, "redelivered");
                resent.insert(entry.id.clone());
                summary.redelivered += 1;
            }
            Delivered::Rejected { reason, answer } => {
                tracing::warn!(id = %entry.id, %reason, "Direktiv refused the event again; kept");
                refused.push(Entry {
                    refused_at: Utc::now(),
                    answer,
                    ..entry.clone()
                });
                summary.still_refused += 1;
            }
            Delivered::Deferred { reason, .. } => {
                summary.left = entries.len() - index;
                tracing::error!(%reason, left = summary.left,
                    "Direktiv did not take the event for a reason that concerns every event; \
                     stopping, the rest stays kept");
                break;
            }
            // Nothing cancels `stop` here; were it cancelled, the rest stays kept.
            Delivered::Cancelled => {
                summary.left = entries.len() - index;
                break;
            }
        }
    }
    store.settle(&resent, refused).await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use cloudevents::EventBuilder as _;
    use wiremock::matchers::{body_string_contains, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::dead_letter::{Answer, Location};

    fn event(id: &str) -> cloudevents::Event {
        cloudevents::EventBuilderV10::new()
            .id(id)
            .source("equinix-metal")
            .ty("com.equinix.metal.test")
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn accepted_events_leave_the_store_refused_ones_stay_and_an_endpoint_refusal_stops() {
        let server = MockServer::start().await;
        for (id, code) in [("e-1", 200), ("e-2", 422), ("e-3", 401)] {
            Mock::given(method("POST"))
                .and(body_string_contains(format!("\"{id}\"")))
                .respond_with(ResponseTemplate::new(code))
                .expect(1)
                .mount(&server)
                .await;
        }
        let base = url::Url::parse(&server.uri()).unwrap();
        let endpoint = direktiv_broadcast::endpoint_v2(&base, "ops").unwrap();
        let sink = direktiv_broadcast::Sink::new(direktiv_broadcast::SinkConfig::new(endpoint));
        let target = Target::Direktiv(sink.unwrap());
        let metrics = Arc::new(Metrics::new(Duration::from_secs(60)));
        let store =
            DeadLetters::open(Location::Memory, 10, Arc::clone(&metrics), Arc::default()).unwrap();
        let before = Answer {
            status: Some(400),
            detail: "bad".to_owned(),
        };
        for id in ["e-1", "e-2", "e-3", "e-4"] {
            let entry = Entry::new(&event(id), before.clone(), Utc::now()).unwrap();
            store.keep(entry).await.unwrap();
        }

        let done = redeliver(&store, &target, 0, &metrics).await.unwrap();

        assert_eq!(done.to_string(), "redelivered 1, still refused 1, left 2");
        assert!(!done.is_complete());
        let kept = store.entries().await;
        let ids: Vec<&str> = kept.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e-2", "e-3", "e-4"]);
        assert_eq!(kept[0].answer.status, Some(422), "the new answer is kept");
        assert_eq!(kept[1].answer, before, "what was not tried is unchanged");
    }

    #[test]
    fn the_summary_says_what_happened_and_is_complete_only_when_nothing_is_kept() {
        let done = Redelivery {
            redelivered: 2,
            ..Redelivery::default()
        };
        assert_eq!(done.to_string(), "redelivered 2, still refused 0, left 0");
        assert!(done.is_complete());
        for kept in [
            Redelivery {
                still_refused: 1,
                ..done
            },
            Redelivery { left: 3, ..done },
        ] {
            assert!(!kept.is_complete(), "{kept:?}");
        }
        assert_eq!(
            Redelivery {
                redelivered: 1,
                still_refused: 2,
                left: 3
            }
            .to_string(),
            "redelivered 1, still refused 2, left 3"
        );
    }
}
