//! What the high-availability process tests share: the PostgreSQL server of
//! the tests (skipped with a reason without one, unless `CI` is set), a fresh
//! schema per test, and a TCP proxy per replica that the test can cut to
//! partition that replica from the database.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The server the tests use unless `TEST_POSTGRES_URL` names another.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test database: its URL and a schema of this test's own, dropped at the end.
pub(crate) struct TestDb {
    /// `TEST_POSTGRES_URL`, or the default.
    pub(crate) url: String,
    /// The host and port the URL names.
    pub(crate) addr: SocketAddr,
    /// A schema no other test uses.
    pub(crate) schema: String,
}

impl TestDb {
    /// The test database, or `None` (after printing why) when no server
    /// answers; with `CI` set that is a failure instead.
    pub(crate) async fn get(test: &str) -> Option<TestDb> {
        let url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let parsed = url::Url::parse(&url).expect("TEST_POSTGRES_URL is a URL");
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = parsed.port().unwrap_or(5432);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next());
        let reachable = match addr {
            Some(addr) => tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
                .await
                .is_ok_and(|c| c.is_ok()),
            None => false,
        };
        if !reachable {
            let why = format!("{test}: no PostgreSQL answers at {host}:{port} (TEST_POSTGRES_URL)");
            assert!(std::env::var_os("CI").is_none(), "{why}; CI needs one");
            #[expect(clippy::print_stderr, reason = "why the test did not run")]
            {
                eprintln!("SKIPPED {why}");
            }
            return None;
        }
        let schema = format!(
            "ha_test_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Some(TestDb {
            url,
            addr: addr.expect("reachable"),
            schema,
        })
    }

    /// The test URL with host and port replaced by `addr` (a proxy).
    pub(crate) fn url_via(&self, addr: SocketAddr) -> String {
        let mut url = url::Url::parse(&self.url).expect("a URL");
        url.set_host(Some(&addr.ip().to_string())).expect("host");
        url.set_port(Some(addr.port())).expect("port");
        url.to_string()
    }

    /// Drops the test's schema.
    pub(crate) async fn drop_schema(&self) {
        let Ok((client, connection)) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await
        else {
            return;
        };
        let task = tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .await;
        drop(client);
        let _ = task.await;
    }
}

/// A TCP proxy to the database for one replica. [`Proxy::cut`] partitions
/// it: bytes stop flowing both ways on open connections and new ones are
/// accepted but never forwarded, as a network partition does (no reset);
/// [`Proxy::restore`] closes those and forwards again.
pub(crate) struct Proxy {
    /// Where the replica connects.
    pub(crate) addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let state = Arc::clone(&cut);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, upstream, state.subscribe()));
            }
        });
        Proxy { addr, cut, task }
    }

    /// Partitions the replica from the database.
    pub(crate) fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Ends the partition.
    pub(crate) fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one connection until either side closes it or the proxy is
/// cut; once cut, holds the client's socket silent until restored.
async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    if !*cut.borrow_and_update() {
        if let Ok(mut server) = TcpStream::connect(upstream).await {
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                _ = cut.wait_for(|cut| *cut) => {}
            }
        } else {
            return;
        }
    }
    // Partitioned: nothing flows until the cut ends, then the socket closes.
    let _ = cut.wait_for(|cut| !*cut).await;
    drop(client);
}
