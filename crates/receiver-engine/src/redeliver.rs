//! Sending the events Direktiv refused for good (the dead-letter store)
//! again, through the same target, retries and outcome handling as a sweep.
//! Makes no Metal API request.

use std::collections::HashSet;
use std::fmt;

use anyhow::Context as _;
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
) -> anyhow::Result<Redelivery> {
    let entries = store.entries().await;
    tracing::info!(count = entries.len(), file = %store.location(), "sending refused events again");
    let stop = CancellationToken::new();
    let mut summary = Redelivery::default();
    let mut resent = HashSet::new();
    let mut refused = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let event = entry
            .cloud_event()
            .with_context(|| format!("reading the refused event {}", entry.id))?;
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
    use super::*;

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
