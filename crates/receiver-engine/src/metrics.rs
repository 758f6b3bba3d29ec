//! Prometheus metrics: every figure the receiver exports, registered once
//! under the prefix `equinix_receiver_`. Labels stay bounded: never an event
//! id, type or device. Every labelled counter exists at 0 for the label values
//! known in advance, so `rate()`, `increase()` and `absent()` alerts work
//! before the first failure.

use std::fmt::{self, Write as _};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metal_events::{Endpoint, RateLimit, RequestRecord};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::error_events::ErrorKind;
use crate::poll::Level;
use crate::schedule::Band;

/// The `code` label: the HTTP status of an answer, or `error` when no answer
/// came (connection refused, timeout, broken transfer).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct HttpCode(pub Option<u16>);

/// The `code`s every endpoint's request counter starts with: the normal
/// answer, and no answer.
const KNOWN_API_CODES: [HttpCode; 2] = [HttpCode(Some(200)), HttpCode(None)];

/// The `reason` label of a delivery failure.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum FailureReason {
    /// Worth another try: no answer, 408, 429 or 5xx.
    Retryable,
    /// Sending again will not help: other 4xx, redirects, unsendable events.
    Permanent,
}

impl FailureReason {
    /// Every reason.
    pub(crate) const ALL: [Self; 2] = [Self::Retryable, Self::Permanent];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
        }
    }

    /// The `code`s this reason's counter starts with: the answers
    /// `direktiv_broadcast` classifies this way that Direktiv is known to give.
    /// Any other code appears at its first occurrence.
    fn known_codes(self) -> &'static [HttpCode] {
        match self {
            Self::Retryable => &[
                HttpCode(None),
                HttpCode(Some(408)),
                HttpCode(Some(429)),
                HttpCode(Some(500)),
                HttpCode(Some(502)),
                HttpCode(Some(503)),
                HttpCode(Some(504)),
            ],
            Self::Permanent => &[
                HttpCode(Some(400)),
                HttpCode(Some(401)),
                HttpCode(Some(403)),
                HttpCode(Some(404)),
                HttpCode(Some(405)),
                HttpCode(Some(413)),
                HttpCode(Some(415)),
                HttpCode(Some(422)),
            ],
        }
    }
}

impl EncodeLabelValue for HttpCode {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        match self.0 {
            Some(status) => write!(encoder, "{status}"),
            None => encoder.write_str("error"),
        }
    }
}

impl EncodeLabelValue for FailureReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Level {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Band {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// The `band` label: how often a list is read.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BandLabel {
    /// `hot`, `cooling`, `max` or `covered`.
    pub band: Band,
}

/// The buckets of `list_staleness_seconds`, in seconds: around the
/// intervals a list is read at, from a second to half an hour.
const STALENESS_BUCKETS: [f64; 15] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
];

/// The buckets of `events_listed_late_seconds`, in seconds: from a few
/// seconds to past the default overlap window.
const LATE_BUCKETS: [f64; 11] = [
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
];

/// The `endpoint` and `code` labels of an API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ApiLabels {
    /// Which kind of list or object ([`Endpoint::as_str`]).
    pub endpoint: &'static str,
    /// The HTTP status, or `error` when no answer came.
    pub code: HttpCode,
}

/// The `endpoint` label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabel {
    /// Which kind of list or object.
    pub endpoint: &'static str,
}

/// The `level` label: which kind of list an event was read from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LevelLabel {
    /// `project`, `device` or `organization`.
    pub level: Level,
}

/// The `reason` and `code` labels of a delivery failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FailureLabels {
    /// `retryable` or `permanent`.
    pub reason: FailureReason,
    /// Direktiv's HTTP status, or `error` when no answer came.
    pub code: HttpCode,
}

/// The `kind` label of an operational error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    /// `equinix_api`, `auth`, `rate_limited`, `delivery_permanent`, `state`.
    pub kind: ErrorKind,
}

/// The Metal API's `X-RateLimit-*` headers as last answered. Each gauge is
/// absent from `/metrics` until an answer carried its header: a number made
/// up before that would be read as a real budget.
#[derive(Debug, Default)]
struct RateLimitGauges(Mutex<RateLimitSeen>);

/// The last value of each rate-limit header.
#[derive(Debug, Default, Clone, Copy)]
struct RateLimitSeen {
    limit: Option<u64>,
    remaining: Option<u64>,
    /// Unix seconds.
    reset: Option<u64>,
}

impl Collector for RateLimitGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let seen = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let gauges = [
            (
                "rate_limit_remaining",
                "X-RateLimit-Remaining of the last API answer that had it (absent until one did).",
                seen.remaining,
            ),
            (
                "rate_limit_limit",
                "X-RateLimit-Limit of the last API answer that had it: requests allowed per window.",
                seen.limit,
            ),
            (
                "rate_limit_reset_timestamp_seconds",
                "Unix time at which the rate-limit window of the last API answer resets.",
                seen.reset,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// The buckets of `sweep_duration_seconds`: from 50 ms, doubling, until one
/// is above `sweep_timeout`, so that a sweep that ran out of time lands in
/// the largest finite bucket rather than only in `+Inf`.
pub(crate) fn sweep_buckets(sweep_timeout: Duration) -> Vec<f64> {
    const FIRST: f64 = 0.05;
    // 0.05 s doubled 40 times is 1,700 years: enough for any timeout.
    const MAX_BUCKETS: u16 = 41;
    let limit = sweep_timeout.as_secs_f64();
    let count = (1..MAX_BUCKETS)
        .find(|n| FIRST * 2f64.powi(i32::from(*n) - 1) > limit)
        .unwrap_or(MAX_BUCKETS);
    exponential_buckets(FIRST, 2.0, count).collect()
}

/// Now, in Unix seconds, for the `_timestamp_seconds` gauges.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Every metric of the receiver.
#[derive(Debug)]
pub struct Metrics {
    /// Sweeps started: `equinix_receiver_sweeps`.
    pub sweeps: Counter,
    /// Sweeps that ended with an error (no API answer, wrong token, timeout): `equinix_receiver_sweep_failures`.
    pub sweep_failures: Counter,
    /// Wall time of one sweep: read the lists that are due, deliver what is new: `equinix_receiver_sweep_duration_seconds`.
    pub sweep_duration: Histogram,
    /// Unix time at which the last sweep without errors finished: `equinix_receiver_last_successful_sweep_timestamp_seconds`.
    pub last_successful_sweep: Gauge<f64, AtomicU64>,
    /// Equinix Metal API requests by endpoint and HTTP status (`error`: no answer): `equinix_receiver_api_requests`.
    pub(crate) api_requests: Family<ApiLabels, Counter>,
    /// Equinix Metal API request latency by endpoint: `equinix_receiver_api_request_duration_seconds`.
    pub(crate) api_request_duration: Family<EndpointLabel, Histogram>,
    /// Events read from the API by list level, before dedupe: `equinix_receiver_events_received`.
    pub(crate) events_received: Family<LevelLabel, Counter>,
    /// Events read that were already delivered or settled: `equinix_receiver_events_duplicate`.
    pub events_duplicate: Counter,
    /// Events read that are older than the state's baseline (never sent): `equinix_receiver_events_before_baseline`.
    pub events_before_baseline: Counter,
    /// Events Direktiv accepted: `equinix_receiver_events_delivered`.
    pub events_delivered: Counter,
    /// Events Direktiv answered it already had (409 or history 400): `equinix_receiver_events_already_delivered`.
    pub events_already_delivered: Counter,
    /// Events that cannot become a CloudEvent (no id or no type): `equinix_receiver_events_unmappable`.
    pub events_unmappable: Counter,
    /// New events dated more than a minute past the API's clock (its `Date`): `equinix_receiver_events_future_dated`.
    pub events_future_dated: Counter,
    /// New events not sent because their type matches no pattern of `equinix.eventTypes`: `equinix_receiver_events_filtered`.
    pub events_filtered: Counter,
    /// Failed delivery attempts by reason and HTTP status: `equinix_receiver_delivery_failures`.
    pub(crate) delivery_failures: Family<FailureLabels, Counter>,
    /// Delivery attempts that were retries: `equinix_receiver_delivery_retries`.
    pub delivery_retries: Counter,
    /// Unix time at which Direktiv last acknowledged an event (0: not yet): `equinix_receiver_last_successful_delivery_timestamp_seconds`.
    pub last_successful_delivery: Gauge<f64, AtomicU64>,
    /// New events the last sweep found that Direktiv has not acknowledged: `equinix_receiver_pending_events`.
    pub pending_events: Gauge,
    /// Age at the end of the last sweep of the oldest event it left undelivered (0: none): `equinix_receiver_oldest_pending_event_age_seconds`.
    pub oldest_pending_age: Gauge<f64, AtomicU64>,
    /// Event ids the dedupe state holds: `equinix_receiver_tracked_events`.
    pub tracked_events: Gauge,
    rate_limit: Arc<RateLimitGauges>,
    /// Now minus created_at of the newest delivered event: `equinix_receiver_delivery_lag_seconds`.
    pub delivery_lag: Gauge<f64, AtomicU64>,
    /// 1 when the dedupe state is kept in a file, 0 when only in memory: `equinix_receiver_state_persistent`.
    pub state_persistent: Gauge,
    /// 1 when Direktiv's TLS certificate is not verified: `equinix_receiver_tls_insecure_skip_verify`.
    pub tls_insecure_skip_verify: Gauge,
    /// Projects of the organization being polled: `equinix_receiver_inventory_projects`.
    pub inventory_projects: Gauge,
    /// Devices of those projects being polled: `equinix_receiver_inventory_devices`.
    pub inventory_devices: Gauge,
    /// Time since a list was last read, observed when it is read again: `equinix_receiver_list_staleness_seconds`.
    pub list_staleness: Histogram,
    /// Event lists by cadence band: `equinix_receiver_lists`.
    pub lists: Family<BandLabel, Gauge>,
    /// List reads the page cap ended before the settled part (the next
    /// read goes on below): `equinix_receiver_lists_capped`.
    pub lists_capped: Counter,
    /// List reads that found the list not newest first: `equinix_receiver_lists_out_of_order`.
    pub lists_out_of_order: Counter,
    /// Event lists not read to their settled part for longer than three
    /// times `maxPollInterval`: `equinix_receiver_lists_stalled`.
    pub lists_stalled: Gauge,
    /// New events a list showed after a complete read of it, taken after
    /// their `created_at`, had not: `equinix_receiver_events_listed_late`.
    pub events_listed_late: Counter,
    /// How late those events were listed (first seen minus `created_at`,
    /// by the API's clock): `equinix_receiver_events_listed_late_seconds`.
    pub events_listed_late_seconds: Histogram,
    /// This host's clock minus the API's (its `Date` header): `equinix_receiver_clock_skew_seconds`.
    pub clock_skew: Gauge<f64, AtomicU64>,
    /// Operational errors by kind: `equinix_receiver_errors`.
    pub(crate) errors: Family<KindLabel, Counter>,
    /// equinix.receiver.error CloudEvents sent to Direktiv: `equinix_receiver_error_events_sent`.
    pub error_events_sent: Counter,
    /// Failed writes of the state file: `equinix_receiver_state_persist_failures`.
    pub state_persist_failures: Counter,
    /// Events acknowledged by Direktiv but not yet written to the state, after the last sweep: `equinix_receiver_state_unpersisted`.
    pub state_unpersisted: Gauge,
    /// Refused events kept in the dead-letter store, waiting for --redeliver-refused: `equinix_receiver_dead_letter_events`.
    pub dead_letter_events: Gauge,
    /// Events Direktiv refused for good and kept in the dead-letter store: `equinix_receiver_events_refused`.
    pub events_refused: Counter,
    /// Events kept in the dead-letter store after failing with retryable answers for direktiv.poisonAfter while later events of their device waited: `equinix_receiver_events_poisoned`.
    pub events_poisoned: Counter,
    /// Refused events dropped from the full dead-letter store (oldest first): `equinix_receiver_dead_letter_dropped`.
    pub dead_letter_dropped: Counter,
    /// 1 while this replica holds its organization's lease (high availability), else 0: `equinix_receiver_leader`.
    pub leader: Gauge,
    /// Gains and losses of the organization's lease by this replica: `equinix_receiver_lease_transitions`.
    pub lease_transitions: Counter,
    /// Connections to PostgreSQL this replica holds open (high availability): `equinix_receiver_postgres_connections`.
    pub postgres_connections: Gauge,
    registry: Registry,
}

impl Metrics {
    /// Creates and registers every metric; `sweep_timeout`
    /// (`equinix.sweepTimeout`) sets the largest sweep duration bucket.
    pub fn new(sweep_timeout: Duration) -> Self {
        let mut registry = Registry::with_prefix("equinix_receiver");
        registry.register(
            "build",
            "Build information: the version of the receiver",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let metrics = Self {
            sweeps: Counter::default(),
            sweep_failures: Counter::default(),
            sweep_duration: Histogram::new(sweep_buckets(sweep_timeout)),
            last_successful_sweep: Gauge::default(),
            api_requests: Family::default(),
            api_request_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            }),
            events_received: Family::default(),
            events_duplicate: Counter::default(),
            events_before_baseline: Counter::default(),
            events_delivered: Counter::default(),
            events_already_delivered: Counter::default(),
            events_unmappable: Counter::default(),
            events_future_dated: Counter::default(),
            events_filtered: Counter::default(),
            delivery_failures: Family::default(),
            delivery_retries: Counter::default(),
            last_successful_delivery: Gauge::default(),
            pending_events: Gauge::default(),
            oldest_pending_age: Gauge::default(),
            tracked_events: Gauge::default(),
            rate_limit: Arc::default(),
            delivery_lag: Gauge::default(),
            state_persistent: Gauge::default(),
            tls_insecure_skip_verify: Gauge::default(),
            inventory_projects: Gauge::default(),
            inventory_devices: Gauge::default(),
            list_staleness: Histogram::new(STALENESS_BUCKETS),
            lists: Family::default(),
            lists_capped: Counter::default(),
            lists_out_of_order: Counter::default(),
            lists_stalled: Gauge::default(),
            events_listed_late: Counter::default(),
            events_listed_late_seconds: Histogram::new(LATE_BUCKETS),
            clock_skew: Gauge::default(),
            errors: Family::default(),
            error_events_sent: Counter::default(),
            state_persist_failures: Counter::default(),
            state_unpersisted: Gauge::default(),
            dead_letter_events: Gauge::default(),
            events_refused: Counter::default(),
            events_poisoned: Counter::default(),
            dead_letter_dropped: Counter::default(),
            leader: Gauge::default(),
            lease_transitions: Counter::default(),
            postgres_connections: Gauge::default(),
            registry,
        };
        metrics.create_known_labels();
        metrics.register()
    }

    /// Creates every labelled counter at 0 for the label values known in
    /// advance.
    fn create_known_labels(&self) {
        for endpoint in Endpoint::ALL {
            for code in KNOWN_API_CODES {
                let endpoint = endpoint.as_str();
                drop(
                    self.api_requests
                        .get_or_create(&ApiLabels { endpoint, code }),
                );
            }
        }
        for level in Level::ALL {
            drop(self.events_received.get_or_create(&LevelLabel { level }));
        }
        for reason in FailureReason::ALL {
            for &code in reason.known_codes() {
                drop(
                    self.delivery_failures
                        .get_or_create(&FailureLabels { reason, code }),
                );
            }
        }
        for kind in ErrorKind::ALL {
            drop(self.errors.get_or_create(&KindLabel { kind }));
        }
        for band in Band::ALL {
            drop(self.lists.get_or_create(&BandLabel { band }));
        }
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register("sweeps", "Sweeps started", self.sweeps.clone());
        r.register(
            "sweep_failures",
            "Sweeps that ended with an error (no API answer, wrong token, timeout)",
            self.sweep_failures.clone(),
        );
        r.register(
            "sweep_duration_seconds",
            "Wall time of one sweep: read the lists that are due, deliver what is new",
            self.sweep_duration.clone(),
        );
        r.register(
            "last_successful_sweep_timestamp_seconds",
            "Unix time at which the last sweep without errors finished",
            self.last_successful_sweep.clone(),
        );
        r.register(
            "api_requests",
            "Equinix Metal API requests by endpoint and HTTP status (`error`: no answer)",
            self.api_requests.clone(),
        );
        r.register(
            "api_request_duration_seconds",
            "Equinix Metal API request latency by endpoint",
            self.api_request_duration.clone(),
        );
        r.register(
            "events_received",
            "Events read from the API by list level, before dedupe",
            self.events_received.clone(),
        );
        r.register(
            "events_duplicate",
            "Events read that were already delivered or settled",
            self.events_duplicate.clone(),
        );
        r.register(
            "events_before_baseline",
            "Events read that are older than the state's baseline (never sent)",
            self.events_before_baseline.clone(),
        );
        r.register(
            "events_delivered",
            "Events Direktiv accepted",
            self.events_delivered.clone(),
        );
        r.register(
            "events_already_delivered",
            "Events Direktiv answered it already had (409 or history 400)",
            self.events_already_delivered.clone(),
        );
        r.register(
            "events_unmappable",
            "Events that cannot become a CloudEvent (no id or no type)",
            self.events_unmappable.clone(),
        );
        r.register(
            "events_future_dated",
            "New events dated more than a minute past the API's own clock (delivered; their date \
             never settles a list)",
            self.events_future_dated.clone(),
        );
        r.register(
            "events_filtered",
            "New events not sent because their type matches no pattern of equinix.eventTypes \
             (settled, never sent later)",
            self.events_filtered.clone(),
        );
        r.register(
            "delivery_failures",
            "Failed delivery attempts by reason (retryable, permanent) and HTTP status \
             (`error`: no answer)",
            self.delivery_failures.clone(),
        );
        r.register(
            "delivery_retries",
            "Delivery attempts that were retries",
            self.delivery_retries.clone(),
        );
        r.register(
            "last_successful_delivery_timestamp_seconds",
            "Unix time at which Direktiv last acknowledged an event (0: not yet)",
            self.last_successful_delivery.clone(),
        );
        r.register(
            "pending_events",
            "New events the last sweep found that Direktiv has not acknowledged",
            self.pending_events.clone(),
        );
        r.register(
            "oldest_pending_event_age_seconds",
            "Age at the end of the last sweep of the oldest event it left undelivered (0: none)",
            self.oldest_pending_age.clone(),
        );
        r.register(
            "tracked_events",
            "Event ids the dedupe state holds",
            self.tracked_events.clone(),
        );
        r.register_collector(Box::new(Arc::clone(&self.rate_limit)));
        r.register(
            "delivery_lag_seconds",
            "Now minus created_at of the newest delivered event",
            self.delivery_lag.clone(),
        );
        r.register(
            "state_persistent",
            "1 when the dedupe state is kept in a file, 0 when only in memory",
            self.state_persistent.clone(),
        );
        r.register(
            "tls_insecure_skip_verify",
            "1 when Direktiv's TLS certificate is not verified",
            self.tls_insecure_skip_verify.clone(),
        );
        r.register(
            "inventory_projects",
            "Projects of the organization being polled",
            self.inventory_projects.clone(),
        );
        r.register(
            "inventory_devices",
            "Devices of those projects being polled",
            self.inventory_devices.clone(),
        );
        r.register(
            "list_staleness_seconds",
            "Time since an event list was last read, observed when it is read again",
            self.list_staleness.clone(),
        );
        r.register(
            "lists",
            "Event lists by cadence band (hot, cooling, max, covered)",
            self.lists.clone(),
        );
        r.register(
            "lists_capped",
            "List reads the page cap (equinix.maxPages) ended before the settled part; the next \
             read goes on where it stopped",
            self.lists_capped.clone(),
        );
        r.register(
            "lists_out_of_order",
            "List reads that found the list not newest first (read on to a page wholly below its \
             settled line)",
            self.lists_out_of_order.clone(),
        );
        r.register(
            "lists_stalled",
            "Event lists not read to their settled part for longer than three times \
             equinix.maxPollInterval (failing, cut by the page cap, or waiting on the request budget)",
            self.lists_stalled.clone(),
        );
        r.register(
            "events_listed_late",
            "New events that a complete read of their list, taken after their created_at, did \
             not show",
            self.events_listed_late.clone(),
        );
        r.register(
            "events_listed_late_seconds",
            "How late the API listed an event: first seen minus created_at, by the API's clock",
            self.events_listed_late_seconds.clone(),
        );
        r.register(
            "clock_skew_seconds",
            "This host's clock minus the Metal API's (from its Date header); floors and the start \
             point follow the API's clock",
            self.clock_skew.clone(),
        );
        r.register("errors", "Operational errors by kind", self.errors.clone());
        r.register(
            "error_events_sent",
            "equinix.receiver.error CloudEvents sent to Direktiv",
            self.error_events_sent.clone(),
        );
        r.register(
            "state_persist_failures",
            "Failed writes of the state file",
            self.state_persist_failures.clone(),
        );
        r.register(
            "state_unpersisted",
            "Events acknowledged by Direktiv but not yet written to the state, after the last sweep",
            self.state_unpersisted.clone(),
        );
        r.register(
            "dead_letter_events",
            "Refused events kept in the dead-letter store, waiting for --redeliver-refused",
            self.dead_letter_events.clone(),
        );
        r.register(
            "events_refused",
            "Events Direktiv refused for good and kept in the dead-letter store",
            self.events_refused.clone(),
        );
        r.register(
            "events_poisoned",
            "Events kept in the dead-letter store after failing with retryable answers for \
             direktiv.poisonAfter while later events of their device waited",
            self.events_poisoned.clone(),
        );
        r.register(
            "dead_letter_dropped",
            "Refused events dropped from the full dead-letter store (oldest first)",
            self.dead_letter_dropped.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds its organization's lease (high availability), else 0",
            self.leader.clone(),
        );
        r.register(
            "lease_transitions",
            "Gains and losses of the organization's lease by this replica",
            self.lease_transitions.clone(),
        );
        r.register(
            "postgres_connections",
            "Connections to PostgreSQL this replica holds open (high availability)",
            self.postgres_connections.clone(),
        );
        self
    }

    /// Sets the number of lists in each cadence band.
    pub(crate) fn set_bands(&self, bands: [(Band, usize); 4]) {
        for (band, count) in bands {
            self.lists
                .get_or_create(&BandLabel { band })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Counts one operational error of a kind.
    pub(crate) fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts one failed delivery attempt.
    pub(crate) fn delivery_failure(&self, reason: FailureReason, code: HttpCode) {
        self.delivery_failures
            .get_or_create(&FailureLabels { reason, code })
            .inc();
    }

    /// Counts one Metal API request the client reports (give it to
    /// [`metal_events::ClientBuilder::observer`]): its endpoint and status, its
    /// latency and the rate-limit headers of its answer.
    pub fn observe_request(&self, record: &RequestRecord) {
        let endpoint = record.endpoint.as_str();
        let code = HttpCode(record.status.map(|s| s.as_u16()));
        self.api_requests
            .get_or_create(&ApiLabels { endpoint, code })
            .inc();
        self.api_request_duration
            .get_or_create(&EndpointLabel { endpoint })
            .observe(record.duration.as_secs_f64());
        if let Some(limit) = record.rate_limit {
            self.observe_rate_limit(&limit, SystemTime::now());
        }
    }

    /// Keeps the rate-limit headers an API answer carried; those it did not
    /// carry keep their last value.
    pub fn observe_rate_limit(&self, limit: &RateLimit, now: SystemTime) {
        let mut seen = self
            .rate_limit
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.limit = limit.limit.or(seen.limit);
        seen.remaining = limit.remaining.or(seen.remaining);
        let reset = limit
            .reset_at(now)
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_secs());
        seen.reset = reset.or(seen.reset);
    }

    /// The metrics in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Every metric in the format the `Accept` header asks for: OpenMetrics
    /// when it names `application/openmetrics-text` (as Prometheus does),
    /// else the Prometheus text format 0.0.4. Returns the content type and
    /// the body.
    pub fn encode_for(&self, accept: Option<&str>) -> (&'static str, String) {
        use crate::exposition::{
            OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE, accepts_openmetrics,
            to_prometheus_text,
        };
        if accepts_openmetrics(accept) {
            (OPENMETRICS_CONTENT_TYPE, self.encode())
        } else {
            (
                PROMETHEUS_TEXT_CONTENT_TYPE,
                to_prometheus_text(&self.encode()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP_TIMEOUT: Duration = Duration::from_secs(300);

    /// The value of `sample` (name and labels as printed) in `text`.
    fn value(text: &str, sample: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    /// The `X-RateLimit-*` headers of an answer, as the client reads them.
    fn rate_limit(headers: &[(&'static str, &str)]) -> RateLimit {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        RateLimit::from_headers(&map).expect("a rate-limit header")
    }

    #[test]
    fn every_metric_has_the_prefix_and_counters_move() {
        let metrics = Metrics::new(SWEEP_TIMEOUT);
        metrics.events_delivered.inc();
        metrics.events_filtered.inc();
        metrics
            .api_requests
            .get_or_create(&ApiLabels {
                endpoint: "device_events",
                code: HttpCode(Some(200)),
            })
            .inc();
        metrics.delivery_failure(FailureReason::Retryable, HttpCode(Some(503)));
        metrics.delivery_failure(FailureReason::Retryable, HttpCode(None));
        metrics.error(ErrorKind::Auth);
        let text = metrics.encode();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("equinix_receiver_"), "{line}");
        }
        for (sample, expected) in [
            ("equinix_receiver_events_delivered_total", 1.0),
            (
                "equinix_receiver_api_requests_total{endpoint=\"device_events\",code=\"200\"}",
                1.0,
            ),
            (
                "equinix_receiver_delivery_failures_total{reason=\"retryable\",code=\"503\"}",
                1.0,
            ),
            (
                "equinix_receiver_delivery_failures_total{reason=\"retryable\",code=\"error\"}",
                1.0,
            ),
            ("equinix_receiver_events_filtered_total", 1.0),
            ("equinix_receiver_errors_total{kind=\"auth\"}", 1.0),
            ("equinix_receiver_errors_total{kind=\"state\"}", 0.0),
        ] {
            assert_eq!(value(&text, sample), Some(expected), "{sample} in\n{text}");
        }
        assert!(
            text.contains("equinix_receiver_build_info{version=\""),
            "{text}"
        );
    }

    #[test]
    fn every_labelled_counter_shows_its_known_values_at_zero_from_the_start() {
        let text = Metrics::new(SWEEP_TIMEOUT).encode();
        let zero = |sample: &str| {
            assert_eq!(value(&text, sample), Some(0.0), "{sample} in\n{text}");
        };
        for kind in [
            "equinix_api",
            "auth",
            "rate_limited",
            "delivery_permanent",
            "state",
        ] {
            zero(&format!("equinix_receiver_errors_total{{kind=\"{kind}\"}}"));
        }
        for level in ["device", "project", "organization"] {
            zero(&format!(
                "equinix_receiver_events_received_total{{level=\"{level}\"}}"
            ));
        }
        for endpoint in Endpoint::ALL {
            for code in ["200", "error"] {
                zero(&format!(
                    "equinix_receiver_api_requests_total{{endpoint=\"{}\",code=\"{code}\"}}",
                    endpoint.as_str()
                ));
            }
        }
        for (reason, code) in [
            ("retryable", "error"),
            ("retryable", "503"),
            ("retryable", "429"),
            ("permanent", "400"),
            ("permanent", "401"),
            ("permanent", "404"),
        ] {
            zero(&format!(
                "equinix_receiver_delivery_failures_total{{reason=\"{reason}\",code=\"{code}\"}}"
            ));
        }
        for gauge in [
            "equinix_receiver_pending_events",
            "equinix_receiver_oldest_pending_event_age_seconds",
            "equinix_receiver_last_successful_delivery_timestamp_seconds",
        ] {
            zero(gauge);
        }
        // Unknown until the Metal API answers: absent, not a made-up value.
        assert!(!text.contains("equinix_receiver_rate_limit_"), "{text}");
    }

    #[test]
    fn rate_limit_gauges_appear_with_the_first_answer_that_carries_them() {
        let metrics = Metrics::new(SWEEP_TIMEOUT);
        let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        metrics.observe_rate_limit(&rate_limit(&[("x-ratelimit-remaining", "41")]), now);
        let text = metrics.encode();
        assert_eq!(
            value(&text, "equinix_receiver_rate_limit_remaining"),
            Some(41.0)
        );
        assert!(
            !text.contains("equinix_receiver_rate_limit_limit"),
            "{text}"
        );
        assert!(!text.contains("reset_timestamp"), "{text}");

        // A relative reset (seconds from now) becomes a Unix time; a header
        // an answer lacks keeps its last value.
        metrics.observe_rate_limit(
            &rate_limit(&[("x-ratelimit-limit", "500"), ("x-ratelimit-reset", "60")]),
            now,
        );
        let text = metrics.encode();
        for (sample, expected) in [
            ("equinix_receiver_rate_limit_remaining", 41.0),
            ("equinix_receiver_rate_limit_limit", 500.0),
            (
                "equinix_receiver_rate_limit_reset_timestamp_seconds",
                1_750_000_060.0,
            ),
        ] {
            assert_eq!(value(&text, sample), Some(expected), "{sample} in\n{text}");
        }
        assert!(text.contains("# TYPE equinix_receiver_rate_limit_limit gauge"));
    }

    #[test]
    fn the_largest_sweep_bucket_is_above_the_sweep_timeout() {
        for seconds in [1, 2, 30, 300, 301, 3600, 86_400] {
            let timeout = Duration::from_secs(seconds);
            let buckets = sweep_buckets(timeout);
            let largest = *buckets.last().unwrap();
            assert!(
                largest > timeout.as_secs_f64(),
                "{seconds} s: largest bucket {largest}"
            );
            // Not more than one bucket beyond it.
            assert!(buckets[buckets.len() - 2] <= timeout.as_secs_f64());
            assert_eq!(buckets[0], 0.05);
        }
        // The default sweepTimeout (5 min): up to 409.6 s.
        assert_eq!(sweep_buckets(SWEEP_TIMEOUT).len(), 14);
        let text = Metrics::new(SWEEP_TIMEOUT).encode();
        assert!(
            text.contains("equinix_receiver_sweep_duration_seconds_bucket{le=\"409.6\"} 0"),
            "{text}"
        );
    }

    /// Every series name the receiver can expose, with its label names (`le`
    /// left out), one per line. `deploy/check-manifests.py` checks the names
    /// in `docs/operations.md` and the PrometheusRule against this snapshot.
    #[test]
    fn exposed_metric_names() {
        let metrics = Metrics::new(SWEEP_TIMEOUT);
        // Touch what exists only once used.
        metrics
            .api_request_duration
            .get_or_create(&EndpointLabel {
                endpoint: Endpoint::DeviceEvents.as_str(),
            })
            .observe(0.1);
        metrics.observe_rate_limit(
            &rate_limit(&[
                ("x-ratelimit-limit", "500"),
                ("x-ratelimit-remaining", "499"),
                ("x-ratelimit-reset", "60"),
            ]),
            SystemTime::now(),
        );
        let text = metrics.encode();
        let mut series = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series_part, _) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = series_part
                .split_once('{')
                .map_or((series_part, ""), |(n, l)| (n, l.trim_end_matches('}')));
            let labels: Vec<&str> = labels
                .split(',')
                .filter_map(|pair| pair.split_once('=').map(|(k, _)| k))
                .filter(|k| *k != "le")
                .collect();
            series.insert(format!("{name} {}", labels.join(",")).trim_end().to_owned());
        }
        let names = series.into_iter().collect::<Vec<_>>().join("\n");
        insta::assert_snapshot!(names);
    }
}
