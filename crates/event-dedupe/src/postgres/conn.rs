//! [`Conn`]: one lazily (re)connected PostgreSQL connection, given up when it
//! breaks or a request times out, and opened again at the next use.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls};

use crate::error::Result;
use crate::postgres::options::{Encrypt, PostgresOptions};
use crate::postgres::{Inner, timed_out};

/// One connection, opened at first use and again after it broke.
#[derive(Debug)]
pub(crate) struct Conn {
    inner: Arc<Inner>,
    client: Mutex<Option<Client>>,
}

/// Exclusive use of an open connection.
pub(crate) struct ConnGuard<'a> {
    slot: MutexGuard<'a, Option<Client>>,
}

impl Conn {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            client: Mutex::new(None),
        }
    }

    /// The open connection, (re)connecting first when there is none or it
    /// broke. `operation` names what failed in an error.
    pub(crate) async fn get(&self, operation: &str) -> Result<ConnGuard<'_>> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            *slot = Some(open(&self.inner, operation).await?);
        }
        Ok(ConnGuard { slot })
    }
}

impl Conn {
    /// The connection slot if nobody uses it now (to give a connection up
    /// after a request was cut short).
    pub(crate) fn try_get(&self) -> std::result::Result<ConnGuard<'_>, tokio::sync::TryLockError> {
        Ok(ConnGuard {
            slot: self.client.try_lock()?,
        })
    }
}

impl ConnGuard<'_> {
    /// The client.
    /// The client. Only [`Conn::get`] hands out a guard used this way, and
    /// it hands out a filled slot.
    pub(crate) fn client(&mut self) -> &mut Client {
        self.slot
            .get_or_insert_with(|| unreachable!("Conn::get fills the slot"))
    }

    /// Gives the connection up (a request timed out: its state is unknown).
    pub(crate) fn discard(&mut self) {
        *self.slot = None;
    }

    /// Gives the connection up if it broke.
    pub(crate) fn check_closed(&mut self) {
        if self.slot.as_ref().is_none_or(Client::is_closed) {
            *self.slot = None;
        }
    }
}

/// Opens a connection; its driver runs on a task that ends with the client.
async fn open(inner: &Inner, operation: &str) -> Result<Client> {
    let options = &inner.options;
    let timeout = options.connect_timeout();
    let mut config = options.config.clone();
    config.connect_timeout(timeout);
    settle(&mut config, options);
    let attempt = async {
        match (&inner.tls, options.encrypt) {
            (Some(tls), Encrypt::IfOffered | Encrypt::Always) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                tokio::spawn(drive(connection, Arc::clone(&inner.connections)));
                Ok(client)
            }
            _ => {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(drive(connection, Arc::clone(&inner.connections)));
                Ok(client)
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(client)) => {
            inner.connections.fetch_add(1, Ordering::Relaxed);
            Ok(client)
        }
        Ok(Err(error)) => Err(inner.db_error(operation, &error)),
        Err(_) => Err(timed_out(operation, timeout)),
    }
}

/// Runs a connection until its client is dropped or it breaks, counted in
/// `open` meanwhile.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>, open: Arc<AtomicUsize>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "PostgreSQL connection closed");
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

/// Every connection's settings, derived from the lease duration: the
/// server cancels a statement that waits for a lock, runs too long, or ends
/// a session idle inside a transaction before a lease can run out; TCP
/// keepalives and `tcp_user_timeout` on both ends notice a silent peer
/// within about a lease (the server's default is over two hours); and the
/// replica's name shows in `pg_stat_activity`.
fn settle(config: &mut tokio_postgres::Config, options: &PostgresOptions) {
    let ms = |d: Duration| d.as_millis();
    let s = |d: Duration| d.as_secs().max(1);
    let mut server = format!(
        "-c lock_timeout={} -c statement_timeout={} -c idle_in_transaction_session_timeout={} \
         -c tcp_keepalives_idle={} -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 \
         -c tcp_user_timeout={}",
        ms(options.lock_timeout()),
        ms(options.statement_timeout()),
        ms(options.idle_in_transaction_timeout()),
        s(options.keepalive_idle()),
        ms(options.tcp_user_timeout()),
    );
    if let Some(given) = config.get_options() {
        // The URL's own options come last: they win.
        server = format!("{server} {given}");
    }
    config.options(server);
    config
        .keepalives(true)
        .keepalives_idle(options.keepalive_idle())
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(options.tcp_user_timeout());
    if config.get_application_name().is_none()
        && let Some(name) = options.application_name()
    {
        config.application_name(name);
    }
}
