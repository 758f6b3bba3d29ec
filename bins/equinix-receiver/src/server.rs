//! The health and metrics server (`server.*`): `/healthz`, `/readyz`,
//! `/metrics` and a short index page, served until the run ends.
//!
//! Connections are served with hyper directly, under [`Limits`], so that no
//! client can hold the server (or the process's file handles) open: a
//! request head must arrive within a few seconds, an idle connection is
//! closed as soon, at most [`Limits::max_connections`] are served at once
//! (a connection past that is closed at once), no connection lives longer
//! than [`Limits::max_connection_age`], and shutdown waits for none of them
//! past the grace it is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use receiver_engine::{Health, Metrics};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// How long the accept loop pauses after a failed accept (out of file
/// handles, for instance), so it never spins.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);

/// What the server allows a client (fixed; documented in
/// docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// A request's head must arrive whole within this, counted from the
    /// moment the server waits for it: a connection idle this long between
    /// requests, or sending its head too slowly, is closed. Default 5 s.
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once. One past it is closed as soon as it is
    /// accepted, so the file handles stay bounded; probes get in again as
    /// soon as a slot frees. Default 64.
    pub(crate) max_connections: usize,
    /// The longest a connection lives, whatever the client does (one that
    /// never reads its answer, for instance). Default 30 s.
    pub(crate) max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_connection_age: Duration::from_secs(30),
        }
    }
}

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
    /// Binds `listen` and starts serving under `limits`. A bind failure names
    /// the address and the key that set it.
    pub(crate) async fn start(
        listen: SocketAddr,
        limits: Limits,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await.with_context(|| {
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
        let task = tokio::spawn(serve(listener, app, limits, stop.clone()));
        Ok(Self { addr, stop, task })
    }

    /// The address actually bound (the port is known even for `:0`).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and lets open requests finish, for at most `grace`:
    /// connections still open then are dropped.
    pub(crate) async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        match tokio::time::timeout(grace, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "the health and metrics server task ended badly");
            }
            Err(_) => {
                tracing::debug!(
                    "connections to the health server still open after the grace; dropped"
                );
                // Dropping the task drops its connections.
                self.task.abort();
                let _ = self.task.await;
            }
        }
    }
}

/// Accepts connections until `stop`, serving each under `limits`; then asks
/// every open connection to finish and waits for them (the caller bounds
/// that wait).
async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "the health and metrics server cannot accept a connection");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, limit = limits.max_connections,
                "the health and metrics server is at its connection limit; closing a new connection");
            drop(stream);
            continue;
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = tokio::time::sleep(limits.max_connection_age) => return,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%peer, %error, "a health and metrics connection ended with an error");
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
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
    let (alive, line) = shared.health.liveness();
    text(status(alive), line)
}

async fn readyz(State(shared): State<Shared>) -> Response {
    let (ready, line) = shared.health.readiness();
    text(status(ready), line.to_owned())
}

fn status(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// OpenMetrics when the `Accept` header asks for it (Prometheus does), the
/// Prometheus text format 0.0.4 otherwise (curl, `promtool check metrics`,
/// older scrapers).
async fn metrics(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let (content_type, body) = shared.metrics.encode_for(accept);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    use super::*;

    /// The longest any step of these tests may take.
    const WITHIN: Duration = Duration::from_secs(3);

    async fn start(limits: Limits) -> Server {
        let health = Arc::new(Health::new(Duration::from_secs(60)));
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Server::start(
            listen,
            limits,
            health,
            Arc::new(Metrics::new(Duration::from_secs(300))),
        )
        .await
        .expect("the server starts")
    }

    /// The status of `GET path` on a new connection; `None` when the server
    /// closed it without an answer.
    async fn get(addr: SocketAddr, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        timeout(WITHIN, stream.read_to_end(&mut answer))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&answer);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    /// Whether the server closes `stream` (end of stream or reset) within
    /// `limit`, reading whatever it sends before.
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn half_sent_request(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .unwrap();
        stream
    }

    #[tokio::test]
    async fn a_connection_past_the_limit_is_closed_at_once_and_probes_get_in_when_one_frees() {
        let server = start(Limits {
            header_read_timeout: Duration::from_secs(2),
            max_connections: 3,
            max_connection_age: Duration::from_secs(60),
        })
        .await;
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(TcpStream::connect(server.addr()).await.unwrap());
        }
        // The limit, not the header timeout (2 s), closes the fourth.
        let mut fourth = TcpStream::connect(server.addr()).await.unwrap();
        assert!(closed_within(&mut fourth, Duration::from_secs(1)).await);
        // Once the idle ones time out, a probe is answered.
        let start = tokio::time::Instant::now();
        loop {
            if get(server.addr(), "/healthz").await == Some(200) {
                break;
            }
            assert!(start.elapsed() < WITHIN * 2, "/healthz never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for stream in &mut idle {
            assert!(
                closed_within(stream, WITHIN).await,
                "an idle connection stayed open"
            );
        }
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_half_sent_request_or_an_idle_keep_alive_is_closed_after_the_header_timeout() {
        let server = start(Limits {
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        })
        .await;
        let mut slow = half_sent_request(server.addr()).await;
        assert!(closed_within(&mut slow, WITHIN).await);

        // A kept-alive connection is answered, then closed once idle.
        let mut kept = TcpStream::connect(server.addr()).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        kept.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        assert!(closed_within(&mut kept, WITHIN).await);

        // Whole requests are served as before.
        assert_eq!(get(server.addr(), "/healthz").await, Some(200));
        assert_eq!(get(server.addr(), "/nope").await, Some(404));
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn shutdown_drops_connections_still_open_after_the_grace() {
        let server = start(Limits {
            header_read_timeout: Duration::from_secs(60),
            ..Limits::default()
        })
        .await;
        let addr = server.addr();
        let mut slow = half_sent_request(addr).await;
        // Let the server take the connection before it stops.
        assert_eq!(get(addr, "/readyz").await, Some(503));
        timeout(WITHIN, server.shutdown(Duration::from_millis(200)))
            .await
            .expect("shutdown waited past its grace");
        assert!(closed_within(&mut slow, WITHIN).await);
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }
}
