//! The health and metrics server (`server.*`): `/healthz`, `/readyz`,
//! `/metrics` and a short index page, served by axum until the run ends.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::Metrics;

/// The content type of `/metrics` (OpenMetrics text, which Prometheus reads).
pub(crate) const METRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// A running server; [`Server::shutdown`] stops it and waits for its task.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `listen` and starts serving. A bind failure names the address
    /// and the key that set it.
    pub(crate) async fn start(
        listen: SocketAddr,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {listen} (server.listen) for the health and metrics \
                     server: choose a free address or set server.enabled: false"
                )
            })?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("reading the bound address of {listen} (server.listen)"))?;
        let stop = CancellationToken::new();
        let app = router(Shared { health, metrics });
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "the health and metrics server failed");
            }
        });
        Ok(Self { addr, stop, task })
    }

    /// The address actually bound (the port is known even for `:0`).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish, and waits for the task.
    pub(crate) async fn shutdown(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::debug!(%error, "the health and metrics server task ended badly");
        }
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn index() -> Response {
    let body = format!(
        "equinix-receiver {}\n\n/healthz  liveness: 200 while the main loop is alive\n\
         /readyz   readiness: 200 after the first sweep, 503 while shutting down\n\
         /metrics  Prometheus metrics\n",
        env!("CARGO_PKG_VERSION")
    );
    text(StatusCode::OK, body)
}

async fn healthz(State(shared): State<Shared>) -> Response {
    let age = shared.health.age();
    if shared.health.alive() {
        text(
            StatusCode::OK,
            format!("ok: main loop beat {}ms ago\n", age.as_millis()),
        )
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stalled: main loop last beat {}ms ago\n", age.as_millis()),
        )
    }
}

async fn readyz(State(shared): State<Shared>) -> Response {
    if shared.health.ready() {
        text(StatusCode::OK, "ready\n".to_owned())
    } else if shared.health.stopping() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        )
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the first sweep has not completed\n".to_owned(),
        )
    }
}

async fn metrics(State(shared): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        shared.metrics.encode(),
    )
        .into_response()
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
