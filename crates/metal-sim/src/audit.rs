//! [`Audit`]: the end-to-end check of a receiver run between the two
//! simulators, from the simulators alone: every event the Metal side holds
//! since a baseline must have reached Direktiv exactly once, or be provably
//! still pending.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::{DirektivSimHandle, EventRecord, EventScope, MetalSimHandle};

/// The events a receiver polling every level (device, project and
/// organization lists) must deliver: those of `metal`'s organization created
/// at or after `baseline`.
pub fn expected_events(metal: &MetalSimHandle, baseline: DateTime<Utc>) -> Vec<EventRecord> {
    let org = metal.org_id();
    metal
        .events()
        .into_iter()
        .filter(|e| e.organization_id == org && e.created_at >= baseline)
        .filter(|e| {
            matches!(
                e.scope,
                EventScope::Device | EventScope::Project | EventScope::Organization
            )
        })
        .collect()
}

/// What reached Direktiv of what the Metal side holds since a baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Audit {
    /// Events the receiver had to deliver ([`expected_events`]).
    pub expected: usize,
    /// ... of which from the history the simulator started with.
    pub recent: usize,
    /// ... of which generated while the run went on.
    pub generated: usize,
    /// Expected events Direktiv accepted.
    pub accepted: usize,
    /// Ids Direktiv accepted more than once.
    pub duplicates: usize,
    /// Accepted events that were not expected (before the baseline, or of
    /// another organization).
    pub unexpected: usize,
    /// Expected events not accepted that appeared after the last clean sweep
    /// began: the next successful sweep sends them.
    pub pending: usize,
    /// Expected events not accepted although a clean sweep began after they
    /// appeared.
    pub lost: Vec<String>,
}

impl Audit {
    /// Compares `metal` with `direktiv`. `last_clean_sweep` is when the newest
    /// sweep that read every list and delivered everything it found began:
    /// every event visible before then must be in Direktiv. Without one,
    /// nothing can be called lost.
    pub fn compute(
        metal: &MetalSimHandle,
        direktiv: &DirektivSimHandle,
        baseline: DateTime<Utc>,
        last_clean_sweep: Option<SystemTime>,
    ) -> Self {
        let expected = expected_events(metal, baseline);
        let generated: HashSet<String> = metal.new_events().into_iter().map(|e| e.id).collect();
        let mut accepted: HashMap<String, usize> = HashMap::new();
        for id in direktiv.accepted_ids() {
            *accepted.entry(id).or_default() += 1;
        }
        let mut audit = Self {
            expected: expected.len(),
            generated: expected
                .iter()
                .filter(|e| generated.contains(&e.id))
                .count(),
            duplicates: accepted.values().filter(|n| **n > 1).count(),
            ..Self::default()
        };
        audit.recent = audit.expected - audit.generated;
        let expected_ids: HashSet<&str> = expected.iter().map(|e| e.id.as_str()).collect();
        audit.unexpected = accepted
            .keys()
            .filter(|id| !expected_ids.contains(id.as_str()))
            .count();
        for event in &expected {
            if accepted.contains_key(&event.id) {
                audit.accepted += 1;
            } else if last_clean_sweep.is_some_and(|clean| event.visible_at < clean) {
                audit.lost.push(event.id.clone());
            } else {
                audit.pending += 1;
            }
        }
        audit
    }

    /// Nothing lost, nothing twice, nothing unexpected.
    pub fn is_sound(&self) -> bool {
        self.lost.is_empty() && self.duplicates == 0 && self.unexpected == 0
    }

    /// The audit as lines a person reads (two-space indented), with the
    /// simulators' request and fault counts.
    pub fn lines(&self, metal: &MetalSimHandle, direktiv: &DirektivSimHandle) -> Vec<String> {
        let (metal_stats, direktiv_stats) = (metal.stats(), direktiv.stats());
        let mut lines = vec![
            format!(
                "  events the simulated Metal API holds since the baseline: {} ({} from the \
                 recent history, {} generated while the demo ran)",
                self.expected, self.recent, self.generated
            ),
            format!(
                "  {:<56}{}",
                "accepted by the simulated Direktiv:", self.accepted
            ),
        ];
        if self.pending > 0 {
            lines.push(format!(
                "  {:<56}{} (they appeared after the start of the last sweep that delivered \
                 everything it found; the Metal API still lists them, so the next successful \
                 sweep sends them)",
                "still pending:", self.pending
            ));
        } else {
            lines.push(format!("  {:<56}0", "still pending:"));
        }
        lines.push(format!(
            "  duplicates: {} (each id reached Direktiv once; {} resends were recognised as \
             already delivered)",
            self.duplicates, direktiv_stats.duplicates_rejected
        ));
        if self.unexpected > 0 {
            lines.push(format!(
                "  UNEXPECTED: {} accepted events were not expected (before the baseline or \
                 of another organization)",
                self.unexpected
            ));
        }
        lines.push(format!("  lost: {}", self.lost.len()));
        for id in self.lost.iter().take(10) {
            lines.push(format!("    LOST {id}"));
        }
        lines.push(format!(
            "  Metal API: {} requests, {} faults injected; Direktiv: {} requests, {} refused \
             while down or faulty",
            metal_stats.requests_total,
            metal_stats.faults.values().sum::<u64>(),
            direktiv_stats.requests_total,
            direktiv_stats.faults.values().sum::<u64>()
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{SubsecRound as _, TimeDelta};

    use super::*;
    use crate::{DirektivSim, DirektivSimConfig, MetalSim, MetalSimConfig};

    #[tokio::test]
    async fn an_event_is_lost_only_when_a_clean_sweep_should_have_sent_it() {
        let metal = MetalSim::start(MetalSimConfig::default()).await.unwrap();
        let direktiv = DirektivSim::start(DirektivSimConfig::default())
            .await
            .unwrap();
        let back = TimeDelta::minutes(10);
        let baseline = (Utc::now() - back).trunc_subsecs(0);
        let recent = expected_events(&metal, baseline).len();
        metal.emit_events(3);
        let old_only = Audit::compute(&metal, &direktiv, Utc::now() + back, None);
        assert_eq!(
            (old_only.expected, old_only.pending),
            (0, 0),
            "{old_only:?}"
        );

        // No clean sweep yet: nothing Direktiv lacks can be called lost.
        let early = Audit::compute(&metal, &direktiv, baseline, None);
        assert_eq!(
            (early.expected, early.generated, early.recent),
            (recent + 3, 3, recent)
        );
        assert_eq!((early.accepted, early.pending), (0, recent + 3));
        assert!(early.lost.is_empty() && early.is_sound(), "{early:?}");

        // A clean sweep began after every event appeared: each one is lost.
        let clean = SystemTime::now() + Duration::from_secs(1);
        let late = Audit::compute(&metal, &direktiv, baseline, Some(clean));
        assert_eq!((late.pending, late.lost.len()), (0, recent + 3));
        assert!(!late.is_sound());
        metal.shutdown().await;
        direktiv.shutdown().await;
    }
}
