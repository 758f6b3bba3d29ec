//! Prometheus metrics: every figure the receiver exports, registered once
//! under the prefix `equinix_receiver_`. Labels stay bounded: never an event
//! id, type or device.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `endpoint` and `code` labels of an API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ApiLabels {
    /// Which kind of list or object (bounded: a handful of values).
    pub(crate) endpoint: &'static str,
    /// The HTTP status, or `error` when no answer came.
    pub(crate) code: String,
}

/// The `endpoint` label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabel {
    /// Which kind of list or object.
    pub(crate) endpoint: &'static str,
}

/// The `level` label: which kind of list an event was read from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LevelLabel {
    /// `project`, `device` or `organization`.
    pub(crate) level: &'static str,
}

/// The `reason` label of a delivery failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    /// `retryable` or `permanent`.
    pub(crate) reason: &'static str,
}

/// The `kind` label of an operational error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    /// `equinix_api`, `auth`, `rate_limited`, `delivery_permanent`, `state`, ...
    pub(crate) kind: &'static str,
}

/// Every metric of the receiver.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) sweeps: Counter,
    pub(crate) sweep_failures: Counter,
    pub(crate) sweep_duration: Histogram,
    pub(crate) last_successful_sweep: Gauge<f64, AtomicU64>,
    pub(crate) api_requests: Family<ApiLabels, Counter>,
    pub(crate) api_request_duration: Family<EndpointLabel, Histogram>,
    pub(crate) events_received: Family<LevelLabel, Counter>,
    pub(crate) events_duplicate: Counter,
    pub(crate) events_before_baseline: Counter,
    pub(crate) events_delivered: Counter,
    pub(crate) events_already_delivered: Counter,
    pub(crate) events_unmappable: Counter,
    pub(crate) events_filtered: Counter,
    pub(crate) delivery_failures: Family<ReasonLabel, Counter>,
    pub(crate) delivery_retries: Counter,
    pub(crate) pending_events: Gauge,
    pub(crate) tracked_events: Gauge,
    pub(crate) rate_limit_remaining: Gauge,
    pub(crate) delivery_lag: Gauge<f64, AtomicU64>,
    pub(crate) state_persistent: Gauge,
    pub(crate) tls_insecure_skip_verify: Gauge,
    pub(crate) inventory_projects: Gauge,
    pub(crate) inventory_devices: Gauge,
    pub(crate) errors: Family<KindLabel, Counter>,
    pub(crate) error_events_sent: Counter,
    pub(crate) state_persist_failures: Counter,
    registry: Registry,
}

impl Metrics {
    /// Creates and registers every metric.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("equinix_receiver");
        registry.register(
            "build",
            "Build information: the version of the receiver",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let metrics = Self {
            sweeps: Counter::default(),
            sweep_failures: Counter::default(),
            sweep_duration: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
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
            events_filtered: Counter::default(),
            delivery_failures: Family::default(),
            delivery_retries: Counter::default(),
            pending_events: Gauge::default(),
            tracked_events: Gauge::default(),
            rate_limit_remaining: Gauge::<i64, AtomicI64>::default(),
            delivery_lag: Gauge::default(),
            state_persistent: Gauge::default(),
            tls_insecure_skip_verify: Gauge::default(),
            inventory_projects: Gauge::default(),
            inventory_devices: Gauge::default(),
            errors: Family::default(),
            error_events_sent: Counter::default(),
            state_persist_failures: Counter::default(),
            registry,
        };
        metrics.rate_limit_remaining.set(-1);
        metrics.register()
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
            "Wall time of one sweep: poll every list, deliver what is new",
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
            "events_filtered",
            "New events not sent because their type matches no pattern of equinix.eventTypes \
             (settled, never sent later)",
            self.events_filtered.clone(),
        );
        r.register(
            "delivery_failures",
            "Failed delivery attempts by reason (retryable, permanent)",
            self.delivery_failures.clone(),
        );
        r.register(
            "delivery_retries",
            "Delivery attempts that were retries",
            self.delivery_retries.clone(),
        );
        r.register(
            "pending_events",
            "New events found but not yet acknowledged by Direktiv",
            self.pending_events.clone(),
        );
        r.register(
            "tracked_events",
            "Event ids the dedupe state holds",
            self.tracked_events.clone(),
        );
        r.register(
            "rate_limit_remaining",
            "X-RateLimit-Remaining of the last API answer (-1: not seen yet)",
            self.rate_limit_remaining.clone(),
        );
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
        self
    }

    /// Counts one operational error of a kind.
    pub(crate) fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// The metrics in the Prometheus (OpenMetrics) text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_the_prefix_and_counters_move() {
        let metrics = Metrics::new();
        metrics.events_delivered.inc();
        metrics.events_filtered.inc();
        metrics
            .api_requests
            .get_or_create(&ApiLabels {
                endpoint: "device_events",
                code: "200".into(),
            })
            .inc();
        let text = metrics.encode();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("equinix_receiver_"), "{line}");
        }
        assert!(
            text.contains("equinix_receiver_events_delivered_total 1"),
            "{text}"
        );
        assert!(
            text.contains("equinix_receiver_events_filtered_total 1"),
            "{text}"
        );
        assert!(text.contains(
            "equinix_receiver_api_requests_total{endpoint=\"device_events\",code=\"200\"} 1"
        ));
        assert!(
            text.contains("equinix_receiver_build_info{version=\""),
            "{text}"
        );
        assert!(text.contains("equinix_receiver_rate_limit_remaining -1"));
    }
}
