//! Leader election: one lease row per organization and deployment (holder, generation,
//! expiry by the database's clock), and [`Elector::lead`], the campaign.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::postgres::conn::Conn;
use crate::postgres::{Database, timed_out};

/// A lease generation: the fencing token. Each new holder of an
/// organization's lease gets a greater one; every state write carries its
/// writer's and is refused when a greater one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub i64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a state write must find in the lease row to pass: its term's
/// generation *and* holder token. A generation alone is not enough: a lease
/// row that went backwards (a restore, an asynchronous replica promoted)
/// issues a generation again, to another holder.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fence {
    /// The term's generation.
    pub generation: Generation,
    /// The term's holder (`None`: a state written without a lease, whose
    /// row has no holder).
    pub holder: Option<String>,
}

impl From<Generation> for Fence {
    /// A fence without a holder: for a state kept without an elector.
    fn from(generation: Generation) -> Self {
        Self {
            generation,
            holder: None,
        }
    }
}

impl From<&Lease> for Fence {
    fn from(lease: &Lease) -> Self {
        Self {
            generation: lease.generation,
            holder: Some(lease.holder.clone()),
        }
    }
}

impl From<&Term> for Fence {
    fn from(term: &Term) -> Self {
        Self {
            generation: term.generation,
            holder: Some(term.holder.clone()),
        }
    }
}

/// A lease held by this process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The fencing token of this holding.
    pub generation: Generation,
    /// When this process must consider the lease lost (local monotonic clock):
    /// the moment the last successful acquisition or renewal was sent, plus
    /// the lease duration, minus the safety margin.
    pub deadline: Instant,
    /// The holder identity (this elector's).
    pub holder: String,
    /// The same deadline on the boot clock ([`boot_now`]), which keeps
    /// counting while the machine is suspended or the VM frozen.
    boot_deadline: Duration,
}

/// One term of leadership, handed to the callback of [`Elector::lead`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Term {
    /// The generation every state write of this term must carry.
    pub generation: Generation,
    /// The holder token written at acquire, which every state write of this
    /// term must find beside its generation.
    pub holder: String,
    /// Fires at step-down (lost lease, failed renewals, a fenced write, or
    /// `stop`): stop polling and delivering at once, then return.
    pub lost: CancellationToken,
    /// This process's deadline for the lease, moved by each renewal: on
    /// the monotonic clock (for timers) and on the boot clock.
    deadline: Arc<Mutex<(Instant, Duration)>>,
}

impl Term {
    /// Whether this term may still act: [`Term::lost`] has not fired and
    /// the lease's local deadline (the send time of the last successful
    /// renewal plus the lease duration, minus the safety margin) has not
    /// passed on this process's monotonic clock nor on its boot clock. Ask right before each send:
    /// after the process was paused (SIGSTOP, a stalled host), its tasks may
    /// run before the elector gets to cancel `lost`, and this answers `false`
    /// for them.
    pub fn is_current(&self) -> bool {
        self.time_left().is_some()
    }

    /// How long this term may still act: `None` when [`Term::is_current`]
    /// says no, else the time to the lease's local deadline. A send started
    /// now must be given up once it has passed.
    pub fn time_left(&self) -> Option<Duration> {
        if self.lost.is_cancelled() {
            return None;
        }
        let (deadline, boot_deadline) =
            *self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        // The monotonic clock stops while the machine is suspended or the VM
        // frozen; the boot clock does not: the smaller of the two counts.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(boot_deadline.saturating_sub(boot_now()));
        (!left.is_zero()).then_some(left)
    }

    /// The lease's local deadline as of the last renewal.
    pub fn deadline(&self) -> Instant {
        self.deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// Why leadership ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// Renewals failed until the local deadline (database unreachable).
    RenewalFailed,
    /// The database answered that another replica holds a newer lease.
    Superseded,
    /// A state write was refused because a newer generation exists.
    Fenced,
    /// The term's state writes kept failing for longer than the lease: a
    /// leader that cannot record what it delivers steps down, so that a
    /// failover never resends more than about a lease of deliveries.
    StateUnwritable,
    /// The process is stopping and released the lease.
    Stopped,
    /// The term's work returned on its own; the lease was released.
    Returned,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RenewalFailed => "renewal failed until the lease deadline",
            Self::Superseded => "another replica holds a newer lease",
            Self::Fenced => "a state write was fenced by a newer generation",
            Self::StateUnwritable => "the state could not be written for longer than the lease",
            Self::Stopped => "stopping",
            Self::Returned => "the term's work ended",
        })
    }
}

/// What an [`Elector`] reports to its observer (see [`Elector::with_events`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderEvent {
    /// This replica became the leader with this generation.
    Gained(Generation),
    /// This replica stopped being the leader.
    Lost {
        /// The generation of the term that ended.
        generation: Generation,
        /// Why.
        reason: LossReason,
    },
    /// Whether the last request to the database got an answer (reported on
    /// every change, and once at the first answer or failure).
    DatabaseReachable(bool),
    /// The replica holding (or last holding) the deployment's lease delivers
    /// with other settings (see [`PostgresOptions::with_settings`](crate::postgres::PostgresOptions::with_settings)):
    /// this one does not take the lease while it is live. Reported when
    /// first seen and when they change.
    SettingsDiffer {
        /// The holder's identity.
        holder: String,
        /// The holder's settings.
        theirs: String,
        /// This replica's.
        ours: String,
    },
}

type Observer = Arc<dyn Fn(LeaderEvent) + Send + Sync>;

/// Leader election for one organization: its lease row, with the holder's
/// identity, a generation and an expiry computed with the database's `now()`.
///
/// Uses a connection of its own, so the state's writes never delay a renewal.
pub struct Elector {
    db: Database,
    conn: Conn,
    identity: String,
    lease_duration: Duration,
    events: Option<Observer>,
    /// The last reachability reported, to report changes only.
    reachable: Mutex<Option<bool>>,
}

impl fmt::Debug for Elector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elector")
            .field("organization_id", &self.db.options().organization_id())
            .field("identity", &self.identity)
            .field("lease_duration", &self.lease_duration)
            .finish_non_exhaustive()
    }
}

/// What the database says of a lease we do not hold.
struct Holder {
    /// How long until this replica may take it, by the database's clock.
    remaining: Duration,
    /// The holder and its settings, when they differ from ours.
    differs: Option<(String, String)>,
}

impl Elector {
    /// An elector campaigning as `identity` (see [`replica_identity`]) for
    /// leases of `lease_duration` (the caller enforces a sensible minimum;
    /// the receiver's is 2 s).
    pub fn new(db: Database, identity: String, lease_duration: Duration) -> Self {
        Self {
            conn: Conn::new(db.inner().clone()),
            db,
            identity,
            lease_duration,
            events: None,
            reachable: Mutex::new(None),
        }
    }

    /// The same elector reporting gains, losses and database reachability to
    /// `observer` (called inline: keep it quick).
    #[must_use]
    pub fn with_events(mut self, observer: Arc<dyn Fn(LeaderEvent) + Send + Sync>) -> Self {
        self.events = Some(observer);
        self
    }

    /// This elector's holder identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How long before the database's expiry the holder gives a lease up:
    /// a fifth of the lease duration (covers clock-rate differences and the
    /// time the term needs to stop).
    pub fn safety_margin(&self) -> Duration {
        self.lease_duration / 5
    }

    /// How often the holder renews: a third of the lease duration.
    pub fn renew_interval(&self) -> Duration {
        self.lease_duration / 3
    }

    fn emit(&self, event: LeaderEvent) {
        if let Some(observer) = &self.events {
            observer(event);
        }
    }

    /// Reports reachability when it changed.
    fn reached(&self, ok: bool) {
        let changed = {
            let mut last = self
                .reachable
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let changed = *last != Some(ok);
            *last = Some(ok);
            changed
        };
        if changed {
            self.emit(LeaderEvent::DatabaseReachable(ok));
        }
    }

    /// A request on the elector's connection, bounded by `timeout`; reports
    /// reachability.
    async fn request<T>(
        &self,
        operation: &str,
        timeout: Duration,
        work: impl AsyncFnOnce(
            &mut tokio_postgres::Client,
        ) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let inner = self.db.inner();
        let result = tokio::time::timeout(timeout, async {
            let mut guard = self.conn.get(operation).await?;
            match work(guard.client()).await {
                Ok(value) => Ok(value),
                Err(error) => {
                    guard.check_closed();
                    Err(inner.db_error(operation, &error))
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(timed_out(operation, timeout)));
        if result.is_err() {
            // A request cut short leaves the connection in an unknown state.
            if let Ok(mut guard) = self.conn.try_get() {
                guard.discard();
            }
        }
        self.reached(result.is_ok());
        result
    }

    /// Takes the lease when free, expired or ours; with `new_term`, a lease
    /// we hold is taken anew with the next generation.
    async fn acquire(&self, new_term: bool, timeout: Duration) -> Result<Result<Lease, Holder>> {
        let sent = (Instant::now(), boot_now());
        let schema = self.db.inner().schema();
        let org = self.db.options().organization_id().to_owned();
        let deployment = self.db.options().deployment().to_owned();
        let millis = i64::try_from(self.lease_duration.as_millis()).unwrap_or(i64::MAX);
        let identity = self.identity.clone();
        let settings = self.db.options().settings().map(str::to_owned);
        let taken = self
            .request("acquiring the lease", timeout, async |client| {
                let row = client
                    .query_opt(
                        &format!(
                            "INSERT INTO {schema}.leases AS l
                                 (organization_id, deployment, holder, generation, expires_at, acquired_at, renewed_at, settings)
                             VALUES ($1, $5, $2, 1, now() + $3::bigint * interval '1 millisecond', now(), now(), $6)
                             ON CONFLICT (organization_id, deployment) DO UPDATE SET
                                 generation = CASE
                                     WHEN l.holder = excluded.holder AND l.expires_at > now() AND NOT $4
                                     THEN l.generation ELSE l.generation + 1 END,
                                 acquired_at = CASE
                                     WHEN l.holder = excluded.holder AND l.expires_at > now() AND NOT $4
                                     THEN l.acquired_at ELSE now() END,
                                 holder = excluded.holder,
                                 expires_at = excluded.expires_at,
                                 renewed_at = now(),
                                 settings = excluded.settings
                             WHERE l.holder IS NULL OR l.holder = excluded.holder
                                OR (l.expires_at <= now()
                                    AND (l.settings IS NULL OR excluded.settings IS NULL
                                         OR l.settings = excluded.settings
                                         OR l.expires_at <= now() - $3::bigint * interval '1 millisecond'))
                             RETURNING generation"
                        ),
                        &[&org, &identity, &millis, &new_term, &deployment, &settings],
                    )
                    .await?;
                if let Some(row) = row {
                    return Ok(Ok(row.get::<_, i64>(0)));
                }
                let row = client
                    .query_one(
                        &format!(
                            "SELECT GREATEST(0, (EXTRACT(EPOCH FROM
                                        CASE WHEN differs THEN expires_at + $3::bigint * interval '1 millisecond'
                                             ELSE expires_at END - now()) * 1000))::bigint,
                                    CASE WHEN differs THEN holder END, CASE WHEN differs THEN settings END
                             FROM (SELECT *, holder IS NOT NULL AND settings IS NOT NULL
                                             AND $4::text IS NOT NULL AND settings <> $4::text AS differs
                                   FROM {schema}.leases
                                   WHERE organization_id = $1 AND deployment = $2) AS l"
                        ),
                        &[&org, &deployment, &millis, &settings],
                    )
                    .await?;
                let differs = match (row.get::<_, Option<String>>(1), row.get::<_, Option<String>>(2)) {
                    (Some(holder), Some(theirs)) => Some((holder, theirs)),
                    _ => None,
                };
                Ok(Err((row.get::<_, i64>(0), differs)))
            })
            .await?;
        Ok(match taken {
            Ok(generation) => Ok(self.lease_from(Generation(generation), sent)),
            Err((remaining, differs)) => Err(Holder {
                remaining: Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
                differs,
            }),
        })
    }

    fn lease_from(&self, generation: Generation, (sent, sent_boot): (Instant, Duration)) -> Lease {
        let valid = self.lease_duration - self.safety_margin();
        Lease {
            generation,
            deadline: sent + valid,
            holder: self.identity.clone(),
            boot_deadline: sent_boot + valid,
        }
    }

    /// Takes the lease when free or expired (generation + 1), or renews it
    /// when we hold it. `None`: another replica holds it.
    ///
    /// # Errors
    ///
    /// [`Error::Database`](crate::Error::Database) when the database cannot be reached.
    pub async fn try_acquire(&self) -> Result<Option<Lease>> {
        let timeout = self.db.options().request_timeout();
        Ok(self.acquire(false, timeout).await?.ok())
    }

    /// Renews a lease we hold. `None`: lost it (a newer generation exists, or
    /// it expired).
    ///
    /// # Errors
    ///
    /// [`Error::Database`](crate::Error::Database) when the database cannot be reached.
    pub async fn renew(&self, lease: &Lease) -> Result<Option<Lease>> {
        let timeout = self.db.options().request_timeout();
        self.renew_within(lease, timeout).await
    }

    async fn renew_within(&self, lease: &Lease, timeout: Duration) -> Result<Option<Lease>> {
        let sent = (Instant::now(), boot_now());
        let schema = self.db.inner().schema();
        let org = self.db.options().organization_id().to_owned();
        let deployment = self.db.options().deployment().to_owned();
        let millis = i64::try_from(self.lease_duration.as_millis()).unwrap_or(i64::MAX);
        let generation = lease.generation;
        let renewed = self
            .request("renewing the lease", timeout, async |client| {
                client
                    .execute(
                        &format!(
                            "UPDATE {schema}.leases
                             SET expires_at = now() + $4::bigint * interval '1 millisecond',
                                 renewed_at = now()
                             WHERE organization_id = $1 AND holder = $2 AND generation = $3
                               AND expires_at > now() AND deployment = $5"
                        ),
                        &[&org, &lease.holder, &generation.0, &millis, &deployment],
                    )
                    .await
            })
            .await?;
        Ok((renewed == 1).then(|| self.lease_from(generation, sent)))
    }

    /// Gives the lease up so a standby can take it at once.
    ///
    /// # Errors
    ///
    /// [`Error::Database`](crate::Error::Database) when the database cannot be reached (the lease then
    /// expires on its own).
    pub async fn release(&self, lease: Lease) -> Result<()> {
        let schema = self.db.inner().schema();
        let org = self.db.options().organization_id().to_owned();
        let deployment = self.db.options().deployment().to_owned();
        let timeout = self.db.options().request_timeout();
        self.request("releasing the lease", timeout, async |client| {
            client
                .execute(
                    &format!(
                        "UPDATE {schema}.leases SET holder = NULL, expires_at = '-infinity'
                         WHERE organization_id = $1 AND holder = $2 AND generation = $3
                           AND deployment = $4"
                    ),
                    &[&org, &lease.holder, &lease.generation.0, &deployment],
                )
                .await
        })
        .await
        .map(|_| ())
    }

    /// The whole campaign: waits for the lease (retrying with backoff while
    /// the database is unreachable), then calls `term(Term)` and keeps
    /// renewing every `lease_duration / 3`; cancels [`Term::lost`] before the
    /// lease can expire when renewal fails (judged on this process's monotonic
    /// clock from the moment the renewal was sent, with a safety margin of a
    /// fifth of the lease), when renewal answers lost, or when a write was
    /// fenced, then waits for `term` to return. Every term has a new
    /// generation. When `term` returns on its own, releases the lease and
    /// campaigns again. Returns when `stop` fires (after `term` returned and
    /// the lease was released).
    pub async fn lead<F, Fut>(&self, stop: CancellationToken, mut term: F)
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ()>,
    {
        let organization = self.db.options().organization_id().to_owned();
        let mut fenced = self.db.inner().fenced.subscribe();
        loop {
            let Some(lease) = self.campaign(&stop).await else {
                return;
            };
            let generation = lease.generation;
            fenced.borrow_and_update();
            tracing::debug!(%organization, identity = %self.identity, %generation, "became the leader");
            self.emit(LeaderEvent::Gained(generation));
            let lost = CancellationToken::new();
            let deadline = Arc::new(Mutex::new((lease.deadline, lease.boot_deadline)));
            let mut work = pin!(term(Term {
                generation,
                holder: self.identity.clone(),
                lost: lost.clone(),
                deadline: deadline.clone(),
            }));
            let (reason, held) = tokio::select! {
                (reason, held) = self.keep(lease, &deadline, &stop, &mut fenced) => {
                    lost.cancel();
                    work.await;
                    (reason, held)
                }
                () = &mut work => {
                    lost.cancel();
                    (LossReason::Returned, None)
                }
            };
            let reason = if reason == LossReason::Returned && stop.is_cancelled() {
                LossReason::Stopped
            } else {
                reason
            };
            let held = match (held, reason) {
                (Some(lease), _) => Some(lease),
                (None, LossReason::Returned | LossReason::Stopped) => Some(Lease {
                    generation,
                    deadline: Instant::now(),
                    holder: self.identity.clone(),
                    boot_deadline: boot_now(),
                }),
                _ => None,
            };
            if let Some(lease) = held
                && let Err(error) = self.release(lease).await
            {
                tracing::warn!(%organization, %error, "could not release the lease; it expires on its own");
            }
            tracing::debug!(%organization, identity = %self.identity, %generation, %reason, "stopped being the leader");
            self.emit(LeaderEvent::Lost { generation, reason });
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// Waits for a new term's lease; `None` when `stop` fired first.
    async fn campaign(&self, stop: &CancellationToken) -> Option<Lease> {
        let first_backoff = Duration::from_millis(100);
        let max_backoff = self.renew_interval().max(first_backoff);
        let mut backoff = first_backoff;
        let mut reported: Option<(String, String)> = None;
        loop {
            if stop.is_cancelled() {
                return None;
            }
            let timeout = self.db.options().request_timeout().min(self.lease_duration);
            let wait = match self.acquire(true, timeout).await {
                Ok(Ok(lease)) => return Some(lease),
                Ok(Err(holder)) => {
                    backoff = first_backoff;
                    if holder.differs.is_some() && holder.differs != reported {
                        let (theirs_holder, theirs) = holder.differs.clone().unwrap_or_default();
                        self.emit(LeaderEvent::SettingsDiffer {
                            holder: theirs_holder,
                            theirs,
                            ours: self.db.options().settings().unwrap_or_default().to_owned(),
                        });
                    }
                    reported.clone_from(&holder.differs);
                    // Look again just after the holder's lease would expire,
                    // and at least every renewal interval.
                    (holder.remaining + Duration::from_millis(20)).min(self.renew_interval())
                }
                Err(error) => {
                    tracing::warn!(organization = %self.db.options().organization_id(), %error,
                        retry_in = ?backoff, "cannot reach PostgreSQL for the lease");
                    let wait = jitter(backoff);
                    backoff = (backoff * 2).min(max_backoff);
                    wait
                }
            };
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Renews `lease` until it is lost or `stop` fires; returns why, and the
    /// lease when it is still ours to release.
    async fn keep(
        &self,
        mut lease: Lease,
        deadline: &Mutex<(Instant, Duration)>,
        stop: &CancellationToken,
        fenced: &mut watch::Receiver<Generation>,
    ) -> (LossReason, Option<Lease>) {
        let organization = self.db.options().organization_id();
        let mut next = Instant::now() + self.renew_interval();
        let mut failing = self.db.inner().write_failing.subscribe();
        loop {
            // Woken after a suspend (the monotonic timers stood still): the
            // boot clock says whether the lease may have run out meanwhile.
            if boot_now() >= lease.boot_deadline {
                return (LossReason::RenewalFailed, None);
            }
            // When this term's state writes have failed since `since`, it
            // steps down a lease later unless one succeeds meanwhile.
            let unwritable = failing
                .borrow_and_update()
                .filter(|(generation, _)| *generation == lease.generation)
                .map(|(_, since)| since + self.lease_duration);
            tokio::select! {
                () = stop.cancelled() => return (LossReason::Stopped, Some(lease)),
                Ok(()) = failing.changed() => continue,
                () = sleep_until_some(unwritable) => {
                    return (LossReason::StateUnwritable, Some(lease));
                }
                Ok(()) = fenced.changed() => {
                    if *fenced.borrow_and_update() >= lease.generation {
                        return (LossReason::Fenced, None);
                    }
                    continue;
                }
                () = tokio::time::sleep_until(lease.deadline) => {
                    return (LossReason::RenewalFailed, None);
                }
                () = tokio::time::sleep_until(next) => {}
            }
            // A renewal that answers after the deadline is worth nothing.
            let left = lease.deadline.saturating_duration_since(Instant::now());
            let renewal = tokio::select! {
                () = stop.cancelled() => return (LossReason::Stopped, Some(lease)),
                renewal = self.renew_within(&lease, left) => renewal,
            };
            match renewal {
                Ok(Some(renewed)) => {
                    *deadline.lock().unwrap_or_else(PoisonError::into_inner) =
                        (renewed.deadline, renewed.boot_deadline);
                    lease = renewed;
                    next = Instant::now() + self.renew_interval();
                }
                Ok(None) => return (LossReason::Superseded, None),
                Err(error) => {
                    tracing::warn!(%organization, %error, generation = %lease.generation,
                        deadline_in = ?lease.deadline.saturating_duration_since(Instant::now()),
                        "cannot renew the lease; stepping down at its deadline unless a renewal succeeds");
                    next =
                        Instant::now() + (self.renew_interval() / 4).max(Duration::from_millis(50));
                }
            }
        }
    }
}

/// The time since boot, suspended time included (Linux `CLOCK_BOOTTIME`):
/// unlike the monotonic clock it keeps counting while the machine is
/// suspended or the VM frozen. Elsewhere, the monotonic clock.
pub(crate) fn boot_now() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `wait` plus up to a quarter more, so replicas do not retry in step.
fn jitter(wait: Duration) -> Duration {
    let quarter = u64::try_from(wait.as_millis() / 4).unwrap_or(0);
    wait + Duration::from_millis(rand::random_range(0..=quarter))
}

/// A replica identity: the hostname (the pod name in Kubernetes), `-`, and a
/// suffix unique to this process (its pid and a random number), so two
/// processes on one host are two replicas.
pub fn replica_identity() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".to_owned());
    let random: u32 = rand::random();
    format!("{host}-{}-{random:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(deadline: Instant, boot_deadline: Duration) -> Term {
        Term {
            generation: Generation(1),
            holder: "a".into(),
            lost: CancellationToken::new(),
            deadline: Arc::new(Mutex::new((deadline, boot_deadline))),
        }
    }

    #[test]
    fn the_boot_clock_counts() {
        let before = boot_now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(boot_now() >= before + Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_term_past_its_deadline_on_the_boot_clock_is_over() {
        // As after a suspend: the monotonic deadline is ahead, the boot
        // clock has passed its own.
        let suspended = term(
            Instant::now() + Duration::from_secs(10),
            boot_now().saturating_sub(Duration::from_millis(1)),
        );
        assert!(!suspended.is_current());
        assert_eq!(suspended.time_left(), None);

        let current = term(
            Instant::now() + Duration::from_secs(10),
            boot_now() + Duration::from_secs(3),
        );
        assert!(current.is_current());
        let left = current.time_left().unwrap();
        assert!(
            left <= Duration::from_secs(3) && left > Duration::from_secs(2),
            "{left:?}"
        );
        current.lost.cancel();
        assert_eq!(current.time_left(), None);
    }
}
