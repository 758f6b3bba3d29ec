//! A loopback HTTP listener that can be closed and reopened on the same port,
//! so a simulator can answer "connection refused" and come back.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One running `axum::serve` task and the token that stops it.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Owns the listener of one simulator.
pub(crate) struct Listener {
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    running: Mutex<Option<Running>>,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port) and starts serving.
    pub(crate) async fn bind(
        addr: SocketAddr,
        router: Router,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let this = Self {
            addr,
            router,
            shutdown,
            running: Mutex::new(None),
        };
        this.serve(listener);
        Ok(this)
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn serve(&self, listener: TcpListener) {
        let stop = self.shutdown.child_token();
        let signal = stop.clone().cancelled_owned();
        let router = self.router.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(%error, "simulator listener failed");
            }
        });
        *self.running.lock().expect("listener lock") = Some(Running { stop, task });
    }

    /// Whether the listener is accepting connections.
    pub(crate) fn is_open(&self) -> bool {
        self.running.lock().expect("listener lock").is_some()
    }

    /// Stops accepting: new connections are refused. Requests in flight get
    /// a short grace, then their connections are dropped.
    pub(crate) async fn close(&self) {
        let running = self.running.lock().expect("listener lock").take();
        if let Some(Running { stop, mut task }) = running {
            stop.cancel();
            if tokio::time::timeout(Duration::from_millis(500), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Opens the listener again on the same address.
    pub(crate) async fn reopen(&self) -> io::Result<()> {
        if self.is_open() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }
}
