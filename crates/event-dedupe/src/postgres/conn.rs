//! [`Conn`]: one lazily (re)connected PostgreSQL connection, given up when it
//! breaks or a request times out, and opened again at the next use.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls};

use crate::error::Result;
use crate::postgres::options::Encrypt;
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
    let attempt = async {
        match (&inner.tls, options.encrypt) {
            (Some(tls), Encrypt::IfOffered | Encrypt::Always) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
            _ => {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(inner.db_error(operation, &error)),
        Err(_) => Err(timed_out(operation, timeout)),
    }
}

/// Runs a connection until its client is dropped or it breaks.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "PostgreSQL connection closed");
    }
}
