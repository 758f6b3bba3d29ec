//! Where reading one event list stands between two reads: a read that the
//! page cap cut short and where the next read goes on, whether the list was
//! seen out of order, and what the last reads left pending.
//!
//! A list's floor moves only when a read (or a scan of several reads)
//! reached its settled part; a read cut by the page cap leaves a [`Resume`]
//! and the next read continues below it, so the page cap bounds the work of
//! one sweep, never what is eventually read.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use metal_events::EventId;

/// A new event counts as listed late when the list's last complete read,
/// this long after its creation, did not show it: `created_at` has whole
/// seconds and the API's clock is known to about a second.
pub(crate) const LATE_SLACK: TimeDelta = TimeDelta::seconds(5);

/// One event read, as settling sees it: its time, whether it is settled
/// (delivered, deliberately skipped, or below the settled line), and its id.
pub(crate) type ReadEvent = (Option<DateTime<Utc>>, bool, Option<EventId>);

/// A scan of a list that the page cap cut short: where the next read goes
/// on, and what the scan has read so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resume {
    /// The page (from 1, at the list's page size) the next read starts at:
    /// one before the first unread page, so a page shifted by events listed
    /// meanwhile is read twice rather than skipped.
    pub(crate) page: u32,
    /// The oldest `created_at` the scan reached: the first page of the next
    /// read must reach back to it, or rows above it went away and the read
    /// steps back a page.
    pub(crate) marker: Option<DateTime<Utc>>,
    /// The API's time when the scan's first page was read: the floor the
    /// finished scan settles is reckoned as of then.
    pub(crate) started_at: Option<DateTime<Utc>>,
    /// Every dated event the scan read, with whether it was settled when its
    /// sweep ended: the floor follows from all of them together.
    pub(crate) read: Vec<(DateTime<Utc>, bool)>,
}

/// Where reading one list stands; kept per list by the engine, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// A scan cut by the page cap, continued by the next read.
    pub(crate) resume: Option<Resume>,
    /// The list was last read out of order (not newest first): reading
    /// stops only at a page that lies wholly below the settled line.
    pub(crate) unordered: bool,
    /// The out-of-order warning was logged for this list.
    pub(crate) warned_unordered: bool,
    /// The API's time of the list's last complete read.
    pub(crate) last_complete_at: Option<DateTime<Utc>>,
    /// Events the list's last reads showed new that were not settled by
    /// the end of their sweep (deferred): not listed late when read again.
    pub(crate) pending: HashSet<EventId>,
}

/// How a read of a list ended, as the cursor needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reached {
    /// The read reached the settled part, or the list's end.
    Complete,
    /// The page cap ended the read; the next read continues at `next_page`.
    Capped {
        /// The first page not read.
        next_page: u32,
    },
    /// An error or a shutdown ended it: the next read tries again from
    /// where this one began.
    Stopped,
}

impl Cursor {
    /// Whether a new event read now was listed late: created before the
    /// list's last complete read (by more than [`LATE_SLACK`]) and not left
    /// pending by it. Returns how late, first seen at `read_at`.
    pub(crate) fn listed_late(
        &self,
        id: &EventId,
        created_at: Option<DateTime<Utc>>,
        read_at: Option<DateTime<Utc>>,
    ) -> Option<Duration> {
        let (created_at, last) = created_at.zip(self.last_complete_at)?;
        if created_at + LATE_SLACK >= last || self.pending.contains(id) {
            return None;
        }
        let seen = read_at.unwrap_or(last);
        Some((seen - created_at).to_std().unwrap_or_default())
    }

    /// Takes a read into account: `read` is every event it read with its
    /// state at the sweep's end, `read_at` the API's time of its first page,
    /// `unordered` whether it found the list out of order. Returns the floor
    /// the list may move to, when the read (or the scan it ended) reached
    /// the settled part of the list.
    pub(crate) fn settle(
        &mut self,
        reached: Reached,
        read: Vec<ReadEvent>,
        read_at: DateTime<Utc>,
        unordered: bool,
        overlap: Duration,
    ) -> Option<DateTime<Utc>> {
        let pending = read
            .iter()
            .filter(|(_, settled, _)| !settled)
            .filter_map(|(_, _, id)| id.clone());
        match reached {
            Reached::Complete => {
                let scan = self.resume.take().unwrap_or_default();
                let started_at = scan.started_at.unwrap_or(read_at);
                self.pending = pending.collect();
                self.unordered = unordered;
                // What the top of the list held is known as of the scan's start.
                self.last_complete_at = Some(started_at);
                let earlier = scan
                    .read
                    .into_iter()
                    .map(|(at, settled)| (Some(at), settled));
                let this = read.into_iter().map(|(at, settled, _)| (at, settled));
                event_dedupe::settled_floor(earlier.chain(this), started_at, overlap)
            }
            Reached::Capped { next_page } => {
                let scan = self.resume.get_or_insert_with(|| Resume {
                    started_at: Some(read_at),
                    ..Resume::default()
                });
                scan.page = next_page.saturating_sub(1).max(1);
                let oldest = read.iter().filter_map(|(at, _, _)| *at).min();
                scan.marker = oldest.or(scan.marker);
                scan.read.extend(
                    read.iter()
                        .filter_map(|(at, settled, _)| Some(((*at)?, *settled))),
                );
                self.pending.extend(pending);
                self.unordered |= unordered;
                None
            }
            Reached::Stopped => {
                self.pending.extend(pending);
                self.unordered |= unordered;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const OVERLAP: Duration = Duration::from_secs(600);

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn id(s: &str) -> Option<EventId> {
        Some(EventId::new(s))
    }

    #[test]
    fn a_capped_read_settles_nothing_and_the_scan_settles_as_of_its_start() {
        let mut cursor = Cursor::default();
        // The first read of a long list: the newest events, all delivered,
        // then the cap.
        let first = vec![(Some(t(100)), true, id("a")), (Some(t(90)), true, id("b"))];
        let floor = cursor.settle(
            Reached::Capped { next_page: 3 },
            first,
            t(200),
            false,
            OVERLAP,
        );
        assert_eq!(floor, None, "a read cut by the cap must not move the floor");
        let resume = cursor.resume.clone().unwrap();
        assert_eq!(resume.page, 2, "one page of overlap");
        assert_eq!(resume.marker, Some(t(90)));
        assert_eq!(resume.started_at, Some(t(200)));
        // The next read goes on below and meets the end: one event in it was
        // deferred, so the floor stops below it.
        let second = vec![
            (Some(t(80)), true, id("c")),
            (Some(t(70)), false, id("d")),
            (Some(t(60)), true, id("e")),
        ];
        let floor = cursor.settle(Reached::Complete, second, t(260), false, OVERLAP);
        assert_eq!(floor, Some(t(60)));
        assert!(cursor.resume.is_none());
        assert!(cursor.pending.contains(&EventId::new("d")));
        assert_eq!(
            cursor.last_complete_at,
            Some(t(200)),
            "as of the scan's start"
        );
    }

    #[test]
    fn a_finished_scan_never_settles_past_its_own_start() {
        let mut cursor = Cursor::default();
        cursor.settle(
            Reached::Capped { next_page: 2 },
            vec![(Some(t(-5_000)), true, id("a"))],
            t(0),
            false,
            OVERLAP,
        );
        // Finished an hour later: the floor is reckoned as of the scan's
        // start, so what was listed at the top meanwhile stays new.
        let floor = cursor.settle(
            Reached::Complete,
            vec![(Some(t(-6_000)), true, id("b"))],
            t(3_600),
            false,
            OVERLAP,
        );
        assert_eq!(floor, Some(t(-600)));
    }

    #[test]
    fn an_error_keeps_the_resume_point_and_an_in_order_read_clears_unordered() {
        let mut cursor = Cursor::default();
        cursor.settle(
            Reached::Capped { next_page: 5 },
            vec![(Some(t(10)), true, id("a"))],
            t(20),
            true,
            OVERLAP,
        );
        let before = cursor.resume.clone();
        assert!(cursor.unordered);
        assert_eq!(
            cursor.settle(Reached::Stopped, Vec::new(), t(30), false, OVERLAP),
            None
        );
        assert_eq!(cursor.resume, before);
        assert!(cursor.unordered, "an incomplete read does not prove order");
        cursor.settle(Reached::Complete, Vec::new(), t(40), false, OVERLAP);
        assert!(!cursor.unordered);
    }

    #[test]
    fn late_means_created_before_the_last_complete_read_and_not_pending() {
        let mut cursor = Cursor::default();
        cursor.settle(
            Reached::Complete,
            vec![(Some(t(0)), false, id("deferred"))],
            t(100),
            false,
            OVERLAP,
        );
        let late = cursor.listed_late(&EventId::new("x"), Some(t(40)), Some(t(110)));
        assert_eq!(late, Some(Duration::from_secs(70)));
        assert_eq!(
            cursor.listed_late(&EventId::new("deferred"), Some(t(0)), Some(t(110))),
            None
        );
        assert_eq!(
            cursor.listed_late(&EventId::new("y"), Some(t(97)), Some(t(110))),
            None,
            "within the slack"
        );
        assert_eq!(
            Cursor::default().listed_late(&EventId::new("x"), Some(t(40)), Some(t(110))),
            None
        );
    }
}
