//! `direktiv.event-on-error`: operational errors sent to Direktiv as
//! `equinix.receiver.error` CloudEvents, at most one per kind and target per
//! `direktiv.errorEventInterval`, each saying how often the error happened
//! since the last report.
//!
//! The id is deterministic: `equinix-receiver-error:<kind>:<target>:<window>`,
//! where the window is the wall-clock time of the report divided by the
//! interval. Two reports of one key are at least an interval apart, so they
//! always fall in different windows; a receiver that restarts (even in a crash
//! loop) and reports the same error again within one window sends the same id,
//! which Direktiv refuses as a duplicate. The rate limit therefore holds
//! across restarts too.
//!
//! Messages come from the receiver's error `Display`s, which may quote an
//! upstream's error body: every occurrence is scrubbed of the configured
//! secrets when it is noted (so a body echoing a token sends `[REDACTED]`),
//! and only then capped in length, so a cut never leaves part of a secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use metal_cloudevents::{Context, MapOptions, OrganizationRef};
use serde_json::json;
use tokio::time::Instant;

use crate::inventory::Inventory;
use crate::scrub::Scrubber;
use crate::source_key::SourceKey;
use crate::sweep::{DeliveryProblemKind, SweepReport};

/// The CloudEvent type of an error event.
pub(crate) const ERROR_EVENT_TYPE: &str = "equinix.receiver.error";

/// The longest message an error event carries.
const MAX_MESSAGE: usize = 500;

/// What kind of operational error happened (the `kind` in the event data and
/// the label of `equinix_receiver_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ErrorKind {
    /// The Metal API failed (5xx, timeouts, bad answers).
    EquinixApi,
    /// The Metal API refused the token (401 or 403).
    Auth,
    /// The Metal API kept answering 429.
    RateLimited,
    /// Direktiv refused an event, or every event, for good.
    DeliveryPermanent,
    /// The state file could not be written.
    State,
}

impl ErrorKind {
    /// Every kind, for creating the metric's labels at 0.
    pub(crate) const ALL: [Self; 5] = [
        Self::EquinixApi,
        Self::Auth,
        Self::RateLimited,
        Self::DeliveryPermanent,
        Self::State,
    ];

    /// The name in the event data and in metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::EquinixApi => "equinix_api",
            Self::Auth => "auth",
            Self::RateLimited => "rate_limited",
            Self::DeliveryPermanent => "delivery_permanent",
            Self::State => "state",
        }
    }

    /// The kind of a Metal API failure from its status.
    pub(crate) fn of_api_status(status: Option<u16>) -> Self {
        match status {
            Some(401 | 403) => Self::Auth,
            Some(429) => Self::RateLimited,
            _ => Self::EquinixApi,
        }
    }
}

/// One occurrence of an operational error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Occurrence {
    /// What kind.
    pub kind: ErrorKind,
    /// What it concerns, for the rate limit: `equinix`, `inventory`,
    /// `device:<id>`, `project:<id>`, `organization:<id>`, `direktiv`, `state`.
    pub target: String,
    /// A human message (an error's `Display`).
    pub message: String,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The project involved, when known.
    pub project: Option<String>,
    /// The device involved, when known.
    pub device: Option<String>,
}

/// Occurrences of one kind and target not yet reported.
#[derive(Debug)]
struct Bucket {
    /// Occurrences since the last report.
    count: u64,
    /// When the first of them happened.
    since: DateTime<Utc>,
    /// The latest occurrence (its message is reported).
    latest: Occurrence,
    /// When the last report of this key went out.
    last_sent: Option<Instant>,
}

/// A report ready to send; hand it back with [`ErrorEvents::requeue`] when
/// sending failed.
#[derive(Debug)]
pub(crate) struct Report {
    key: (ErrorKind, String),
    count: u64,
    since: DateTime<Utc>,
    /// The CloudEvent to send.
    pub event: cloudevents::Event,
}

/// The rate limiter and builder of error events. Owned by the main loop.
#[derive(Debug)]
pub(crate) struct ErrorEvents {
    interval: Duration,
    buckets: BTreeMap<(ErrorKind, String), Bucket>,
    scrubber: Arc<Scrubber>,
}

impl ErrorEvents {
    /// At most one report per kind and target per `interval`; every text
    /// scrubbed by `scrubber`.
    pub(crate) fn new(interval: Duration, scrubber: Arc<Scrubber>) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            buckets: BTreeMap::new(),
            scrubber,
        }
    }

    /// Counts one occurrence, its texts scrubbed of every secret.
    pub(crate) fn note(&mut self, occurrence: Occurrence, now: DateTime<Utc>) {
        let scrub = |text: String| match self.scrubber.scrub(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(scrubbed) => scrubbed,
        };
        let occurrence = Occurrence {
            target: scrub(occurrence.target),
            message: scrub(occurrence.message),
            project: occurrence.project.map(scrub),
            device: occurrence.device.map(scrub),
            ..occurrence
        };
        let key = (occurrence.kind, occurrence.target.clone());
        let bucket = self.buckets.entry(key).or_insert_with(|| Bucket {
            count: 0,
            since: now,
            latest: occurrence.clone(),
            last_sent: None,
        });
        if bucket.count == 0 {
            bucket.since = now;
        }
        bucket.count += 1;
        bucket.latest = occurrence;
    }

    /// The reports due now: every key with occurrences whose last report is
    /// at least an interval old (or that was never reported). Their counts
    /// start again from zero.
    pub(crate) fn due(&mut self, now: Instant, wall: DateTime<Utc>, source: &str) -> Vec<Report> {
        let interval = self.interval;
        let mut reports = Vec::new();
        for (key, bucket) in &mut self.buckets {
            let quiet = bucket
                .last_sent
                .is_none_or(|at| now.duration_since(at) >= interval);
            if bucket.count == 0 || !quiet {
                continue;
            }
            let event = build_event(
                &bucket.latest,
                bucket.count,
                bucket.since,
                wall,
                source,
                interval,
            );
            reports.push(Report {
                key: key.clone(),
                count: bucket.count,
                since: bucket.since,
                event,
            });
            bucket.count = 0;
            bucket.last_sent = Some(now);
        }
        reports
    }

    /// Puts back the occurrences of a report that could not be sent, so the
    /// next report of its key counts them.
    pub(crate) fn requeue(&mut self, report: Report) {
        if let Some(bucket) = self.buckets.get_mut(&report.key) {
            if bucket.count == 0 || report.since < bucket.since {
                bucket.since = report.since;
            }
            bucket.count += report.count;
        }
    }

    /// Forgets keys that have been quiet for a long time, so the map stays
    /// small when devices come and go.
    pub(crate) fn prune(&mut self, now: Instant) {
        let keep = self.interval.saturating_mul(10);
        self.buckets.retain(|_, b| {
            b.count > 0 || b.last_sent.is_none_or(|at| now.duration_since(at) < keep)
        });
    }
}

/// The error event's `source`: the receiver's prefix and the organization's
/// name (its id until the name is known).
pub(crate) fn source(org_id: &str, org_name: Option<&str>, options: &MapOptions) -> String {
    let name = org_name.filter(|n| !n.is_empty()).unwrap_or(org_id);
    metal_cloudevents::source(
        &Context::new(OrganizationRef::new(org_id.to_owned(), name.to_owned())),
        options,
    )
}

fn build_event(
    occurrence: &Occurrence,
    count: u64,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    source: &str,
    interval: Duration,
) -> cloudevents::Event {
    let interval_ms = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let window = now.timestamp_millis().div_euclid(interval_ms);
    let id = format!(
        "equinix-receiver-error:{}:{}:{window}",
        occurrence.kind.as_str(),
        occurrence.target
    );
    let data = json!({
        "kind": occurrence.kind.as_str(),
        "message": cap(&occurrence.message),
        "status": occurrence.status,
        "project": occurrence.project,
        "device": occurrence.device,
        "count": count,
        "since": since.to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    EventBuilderV10::new()
        .id(id)
        .ty(ERROR_EVENT_TYPE)
        .source(source)
        .time(now)
        .data("application/json", data)
        .build()
        .expect("every required attribute is set")
}

/// The message, at most [`MAX_MESSAGE`] characters.
fn cap(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message.to_owned(),
    }
}

/// The operational errors a sweep ran into. Retryable delivery failures are
/// Direktiv's own trouble and are not reported to Direktiv.
pub(crate) fn from_sweep(report: &SweepReport, inventory: &Inventory) -> Vec<Occurrence> {
    let mut found = Vec::new();
    if let Some(problem) = &report.first_list_error {
        let status = problem.status;
        // A 404 means the inventory is stale (a device went away): not an error.
        if status != Some(404) {
            let kind = if report.auth_failed {
                ErrorKind::Auth
            } else {
                ErrorKind::of_api_status(status)
            };
            let (project, device) = involved(problem.source.as_ref(), inventory);
            // A refused token concerns every list: one target for all of them.
            let target = match &problem.source {
                Some(source) if kind != ErrorKind::Auth => source.to_string(),
                _ => "equinix".to_owned(),
            };
            found.push(Occurrence {
                kind,
                target,
                message: problem.message.clone(),
                status,
                project,
                device,
            });
        }
    }
    // A proxy answering in Direktiv's place would swallow the error event
    // too: the ERROR log line and the metrics report it instead.
    if let Some(problem) = &report.first_delivery_problem
        && problem.is_permanent()
        && problem.kind != DeliveryProblemKind::NotDirektiv
    {
        found.push(Occurrence {
            kind: ErrorKind::DeliveryPermanent,
            target: "direktiv".to_owned(),
            message: problem.message.clone(),
            status: problem.status,
            project: None,
            device: None,
        });
    }
    if let Some(message) = &report.persist_error {
        found.push(Occurrence {
            kind: ErrorKind::State,
            target: "state".to_owned(),
            message: message.clone(),
            status: None,
            project: None,
            device: None,
        });
    }
    found
}

/// The project and device a tracker source names.
fn involved(key: Option<&SourceKey>, inventory: &Inventory) -> (Option<String>, Option<String>) {
    match key {
        Some(SourceKey::Device(id)) => {
            let project = inventory
                .devices
                .get(id)
                .map(|info| info.project.to_string());
            (project, Some(id.to_string()))
        }
        Some(SourceKey::Project(id)) => (Some(id.to_string()), None),
        Some(SourceKey::Organization(_)) | None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use cloudevents::AttributesReader;
    use metal_events::{DeviceId, ProjectId};

    use super::*;
    use crate::sweep::{DeliveryProblem, ListProblem};

    fn occurrence(kind: ErrorKind, target: &str) -> Occurrence {
        Occurrence {
            kind,
            target: target.to_owned(),
            message: "GET /devices/d1/events answered 503 Service Unavailable".to_owned(),
            status: Some(503),
            project: Some("p1".to_owned()),
            device: Some("d1".to_owned()),
        }
    }

    fn data(event: &cloudevents::Event) -> serde_json::Value {
        match event.data() {
            Some(cloudevents::Data::Json(value)) => value.clone(),
            other => panic!("not JSON data: {other:?}"),
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn one_report_per_key_and_interval_counting_what_happened_between() {
        let mut errors = ErrorEvents::new(MINUTE, Arc::default());
        let wall = Utc::now();
        errors.note(occurrence(ErrorKind::EquinixApi, "device:d1"), wall);
        let first = errors.due(Instant::now(), wall, "src");
        assert_eq!(first.len(), 1, "the first occurrence is reported at once");
        assert_eq!(data(&first[0].event)["count"], 1);

        // Three more within the interval: held back.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(10)).await;
            errors.note(occurrence(ErrorKind::EquinixApi, "device:d1"), wall);
            assert!(errors.due(Instant::now(), wall, "src").is_empty());
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        let second = errors.due(Instant::now(), wall + chrono::Duration::seconds(60), "src");
        assert_eq!(second.len(), 1);
        assert_eq!(data(&second[0].event)["count"], 3);
        assert_ne!(
            first[0].event.id(),
            second[0].event.id(),
            "new window, new id"
        );
        // Nothing more happened: nothing more is sent.
        tokio::time::advance(MINUTE * 5).await;
        assert!(errors.due(Instant::now(), wall, "src").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_and_targets_are_limited_separately() {
        let mut errors = ErrorEvents::new(MINUTE, Arc::default());
        let wall = Utc::now();
        errors.note(occurrence(ErrorKind::EquinixApi, "device:d1"), wall);
        errors.note(occurrence(ErrorKind::EquinixApi, "device:d2"), wall);
        errors.note(occurrence(ErrorKind::State, "state"), wall);
        assert_eq!(errors.due(Instant::now(), wall, "src").len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_report_is_counted_in_the_next_one() {
        let mut errors = ErrorEvents::new(MINUTE, Arc::default());
        let wall = Utc::now();
        errors.note(occurrence(ErrorKind::Auth, "equinix"), wall);
        let report = errors.due(Instant::now(), wall, "src").pop().unwrap();
        errors.requeue(report);
        errors.note(occurrence(ErrorKind::Auth, "equinix"), wall);
        tokio::time::advance(MINUTE).await;
        let next = errors.due(Instant::now(), wall, "src");
        assert_eq!(data(&next[0].event)["count"], 2);
    }

    #[test]
    fn the_event_has_the_documented_shape() {
        let at = DateTime::parse_from_rfc3339("2025-03-01T12:00:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = build_event(
            &occurrence(ErrorKind::RateLimited, "device:d1"),
            4,
            at - chrono::Duration::seconds(30),
            at,
            "direktiv/listener/equinix/ACME",
            Duration::from_secs(300),
        );
        assert_eq!(event.ty(), ERROR_EVENT_TYPE);
        assert_eq!(event.source().to_string(), "direktiv/listener/equinix/ACME");
        assert_eq!(event.datacontenttype(), Some("application/json"));
        assert_eq!(event.time(), Some(&at));
        // 2025-03-01T12:00:30Z is in the 5-minute window 5_802_768 (1_740_830_430 s / 300).
        assert_eq!(
            event.id(),
            "equinix-receiver-error:rate_limited:device:d1:5802768"
        );
        assert_eq!(
            data(&event),
            json!({
                "kind": "rate_limited",
                "message": "GET /devices/d1/events answered 503 Service Unavailable",
                "status": 503,
                "project": "p1",
                "device": "d1",
                "count": 4,
                "since": "2025-03-01T12:00:00.000Z",
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn secrets_in_messages_are_scrubbed_before_the_message_is_capped() {
        let secret = secrecy::SecretString::from("direktiv-s3cr3t-token");
        let mut errors = ErrorEvents::new(MINUTE, Arc::new(Scrubber::new([&secret])));
        let wall = Utc::now();
        let mut noted = occurrence(ErrorKind::DeliveryPermanent, "direktiv");
        // The secret straddles the cap: capping first would leave its start.
        noted.message = format!("{}direktiv-s3cr3t-token", "x".repeat(MAX_MESSAGE - 8));
        errors.note(noted, wall);
        let report = errors.due(Instant::now(), wall, "src").pop().unwrap();
        let message = data(&report.event)["message"].as_str().unwrap().to_owned();
        assert!(!message.contains("direktiv-s3"), "{message}");
        assert!(message.ends_with("[REDACTE…"), "{message}");
    }

    #[test]
    fn the_source_uses_the_org_name_or_else_its_id() {
        let options = MapOptions::default();
        assert_eq!(
            source("org-1", Some("ACME Ops"), &options),
            "direktiv/listener/equinix/ACME%20Ops"
        );
        assert_eq!(
            source("org-1", None, &options),
            "direktiv/listener/equinix/org-1"
        );
    }

    #[test]
    fn long_messages_are_capped() {
        let long = "x".repeat(2000);
        assert_eq!(cap(&long).chars().count(), MAX_MESSAGE + 1);
        assert_eq!(cap("short"), "short");
    }

    #[test]
    fn a_delivery_problem_reports_the_status_direktiv_gave_not_digits_in_its_text() {
        let inventory = Inventory {
            org_id: metal_events::OrganizationId::new("org-1".to_owned()),
            org_name: "ACME".to_owned(),
            projects: Vec::new(),
            devices: std::collections::HashMap::new(),
        };
        // Never sent: no status, whatever numbers the reason holds.
        let unsent = SweepReport {
            first_delivery_problem: Some(DeliveryProblem::new(
                DeliveryProblemKind::Refused,
                None,
                "could not be sent: key must be a string at line 404 column 2".to_owned(),
            )),
            ..SweepReport::default()
        };
        let found = from_sweep(&unsent, &inventory);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].status, None);
        assert_eq!(
            found[0].message,
            "could not be sent: key must be a string at line 404 column 2"
        );
        // The status comes from the answer, not the text.
        let refused = SweepReport {
            first_delivery_problem: Some(DeliveryProblem::new(
                DeliveryProblemKind::EndpointRefused,
                Some(401),
                "Direktiv answered 401 Unauthorized; the token was sent in 120 headers".to_owned(),
            )),
            ..SweepReport::default()
        };
        assert_eq!(from_sweep(&refused, &inventory)[0].status, Some(401));
        // A refused event that could not be kept is not reported as refused.
        let kept_failed = SweepReport {
            first_delivery_problem: Some(DeliveryProblem::new(
                DeliveryProblemKind::KeepFailed,
                Some(400),
                "could not keep a refused event: disk full".to_owned(),
            )),
            ..SweepReport::default()
        };
        assert!(from_sweep(&kept_failed, &inventory).is_empty());
        // A proxy answering in Direktiv's place would swallow the error
        // event too: none is made.
        let proxy = SweepReport {
            first_delivery_problem: Some(DeliveryProblem::new(
                DeliveryProblemKind::NotDirektiv,
                Some(200),
                "the endpoint answered a web page, not Direktiv".to_owned(),
            )),
            ..SweepReport::default()
        };
        assert!(from_sweep(&proxy, &inventory).is_empty());
    }

    #[test]
    fn a_sweep_report_becomes_occurrences() {
        let inventory = Inventory {
            org_id: metal_events::OrganizationId::new("org-1".to_owned()),
            org_name: "ACME".to_owned(),
            projects: Vec::new(),
            devices: std::collections::HashMap::new(),
        };
        let report = SweepReport {
            first_list_error: Some(ListProblem::new(
                Some(SourceKey::Project(ProjectId::new("p1".to_owned()))),
                Some(429),
                "GET /projects/p1/events answered 429".to_owned(),
                false,
            )),
            first_delivery_problem: Some(DeliveryProblem::new(
                DeliveryProblemKind::EndpointRefused,
                Some(403),
                "Direktiv answered 403 Forbidden".to_owned(),
            )),
            persist_error: Some("disk full".to_owned()),
            ..SweepReport::default()
        };
        let found = from_sweep(&report, &inventory);
        let kinds: Vec<_> = found.iter().map(|o| (o.kind, o.target.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (ErrorKind::RateLimited, "project:p1"),
                (ErrorKind::DeliveryPermanent, "direktiv"),
                (ErrorKind::State, "state"),
            ]
        );
        assert_eq!(found[0].project.as_deref(), Some("p1"));
        assert_eq!(found[1].status, Some(403));

        // Retryable delivery trouble and 404s are not reported.
        let quiet = SweepReport {
            first_list_error: Some(ListProblem::new(
                Some(SourceKey::Device(DeviceId::new("d9".to_owned()))),
                Some(404),
                "GET /devices/d9/events answered 404".to_owned(),
                false,
            )),
            first_delivery_problem: Some(DeliveryProblem::new(
                DeliveryProblemKind::Deferred,
                Some(503),
                "Direktiv answered 503; retries ran out".to_owned(),
            )),
            ..SweepReport::default()
        };
        assert!(from_sweep(&quiet, &inventory).is_empty());
    }
}
