//! [`PostgresTracker`]: the tracking rules in memory, every change written to
//! PostgreSQL as row inserts, upserts and deletes, fenced by the lease
//! generation; and the one-time import of a file state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio_postgres::Transaction;

use crate::error::{Error, Result};
use crate::options::{Baseline, TrackerOptions};
use crate::postgres::conn::Conn;
use crate::postgres::{Generation, ImportReport, Inner, timed_out};
use crate::state::{Core, FORMAT_VERSION, SourceState, State, in_range};
use crate::{EventKey, Stats, Tracker, Verdict};

/// A tracker whose state lives in PostgreSQL, keyed by organization; made by
/// [`Database::tracker`](crate::postgres::Database::tracker).
///
/// Decisions are taken in memory (the state is loaded once, when the tracker
/// is made). [`Tracker::persist`] writes what changed since the last write,
/// in one transaction: the ids recorded (inserts), the floors that moved
/// (upserts), sources forgotten and ids pruned (deletes), never the whole
/// state. That transaction first locks the organization's lease row and is
/// refused with [`Error::Fenced`] when its generation is not the tracker's;
/// nothing is written then, and the elector of this process is told.
///
/// Times are stored with PostgreSQL's microsecond precision, rounded the safe
/// way: floors and the horizon down (a little more is looked at), the times
/// of delivered ids up (they are remembered a little longer).
#[derive(Debug)]
pub struct PostgresTracker {
    generation: Generation,
    db: Arc<Inner>,
    conn: Conn,
    state: Mutex<Tracked>,
    /// One write at a time, so that what a write saved is what the next
    /// compares with.
    write: tokio::sync::Mutex<()>,
}

/// The rules, what changed, and what the database holds.
#[derive(Debug)]
struct Tracked {
    core: Core,
    /// Ids recorded since the last write.
    pending: HashSet<Box<str>>,
    /// Each source's floor as written.
    saved_floors: HashMap<Box<str>, DateTime<Utc>>,
    saved_horizon: Option<DateTime<Utc>>,
    /// The undated ids as written.
    saved_undated: HashSet<Box<str>>,
    /// `core.generation` as of the last write.
    saved_change: u64,
}

/// One write: everything that changed, read from the rules at one moment.
struct Batch {
    change: u64,
    baseline: Option<DateTime<Utc>>,
    horizon: Option<DateTime<Utc>>,
    prune_below: Option<DateTime<Utc>>,
    ids: Vec<String>,
    dated: Vec<bool>,
    at: Vec<DateTime<Utc>>,
    taken: Vec<Box<str>>,
    upsert_sources: Vec<String>,
    upsert_floors: Vec<DateTime<Utc>>,
    upsert_advanced: Vec<DateTime<Utc>>,
    delete_sources: Vec<String>,
    delete_undated: Vec<String>,
    floors: HashMap<Box<str>, DateTime<Utc>>,
    undated: HashSet<Box<str>>,
}

/// `at` to the microsecond below (floors, the horizon: never further).
fn micros_down(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(in_range(at).timestamp_micros()).unwrap_or(at)
}

/// `at` to the microsecond above (the time of a delivered id: kept longer).
fn micros_up(at: DateTime<Utc>) -> DateTime<Utc> {
    let down = micros_down(at);
    if down < at {
        down + TimeDelta::microseconds(1)
    } else {
        down
    }
}

impl PostgresTracker {
    /// The lease generation every write of this tracker carries.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Loads (or creates) the organization's state; see
    /// [`Database::tracker`](crate::postgres::Database::tracker).
    pub(crate) async fn load(
        db: Arc<Inner>,
        generation: Generation,
        options: TrackerOptions,
    ) -> Result<Self> {
        let conn = Conn::new(db.clone());
        let operation = "loading the state";
        let loaded = {
            let mut guard = conn.get(operation).await?;
            let timeout = db.options.request_timeout() * 3;
            let work = async {
                let tx = guard
                    .client()
                    .transaction()
                    .await
                    .map_err(|e| db.db_error(operation, &e))?;
                check_generation(&db, &tx, generation, operation).await?;
                let state = match read_state(&db, &tx, operation).await? {
                    Some(state) => (state, false),
                    None => {
                        let state = State::new(options.baseline, options.clock.now());
                        write_whole(&db, &tx, &state, generation, operation).await?;
                        (state, true)
                    }
                };
                tx.commit().await.map_err(|e| db.db_error(operation, &e))?;
                Ok(state)
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(Ok(state)) => state,
                Ok(Err(error)) => {
                    guard.check_closed();
                    return Err(error);
                }
                Err(_) => {
                    guard.discard();
                    return Err(timed_out(operation, timeout));
                }
            }
        };
        let (mut state, created) = loaded;
        let organization = db.options.organization_id().to_owned();
        let schema = db.options.schema().to_owned();
        let stored = state.baseline();
        if !created && options.baseline != Baseline::Now && options.baseline != stored {
            tracing::warn!(
                %organization, %schema, %stored, configured = %options.baseline,
                "the configured start point differs from the one stored in the database; keeping \
                 the stored one"
            );
        }
        let saved_floors = state
            .sources
            .iter()
            .map(|(k, s)| (k.clone(), s.floor))
            .collect();
        let saved_horizon = state.horizon;
        let saved_undated = state.undated.keys().cloned().collect();
        let overlap = TimeDelta::from_std(options.overlap).unwrap_or(TimeDelta::MAX);
        let held = state.hold_at(options.clock.now(), overlap);
        if !held.is_empty() {
            tracing::warn!(
                %organization, %schema, held = %held.join("; "),
                "the stored state holds times past this host's clock; they are held at the clock \
                 plus the tolerance so that new events are not skipped (written at the next save)"
            );
        }
        tracing::info!(
            %organization, %schema, %generation,
            baseline = %state.baseline(),
            tracked = state.delivered.len() + state.undated.len(),
            sources = state.sources.len(),
            "loaded dedupe state from PostgreSQL"
        );
        let mut core = Core::new(state, &options);
        if !held.is_empty() {
            core.mark_changed();
        }
        Ok(Self {
            generation,
            db,
            conn,
            state: Mutex::new(Tracked {
                core,
                pending: HashSet::new(),
                saved_floors,
                saved_horizon,
                saved_undated,
                saved_change: 0,
            }),
            write: tokio::sync::Mutex::new(()),
        })
    }

    fn tracked(&self) -> MutexGuard<'_, Tracked> {
        // The rules are consistent after every statement that can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What changed since the last write; `None` when nothing did.
    fn batch(&self) -> Option<Batch> {
        let mut tracked = self.tracked();
        if tracked.core.generation == tracked.saved_change && tracked.pending.is_empty() {
            return None;
        }
        let taken: Vec<Box<str>> = tracked.pending.drain().collect();
        let state = &tracked.core.state;
        let (mut ids, mut dated, mut at) = (Vec::new(), Vec::new(), Vec::new());
        for id in &taken {
            let row = match (state.delivered.get(id), state.undated.get(id)) {
                (Some(created), _) => (true, *created),
                (None, Some(recorded)) => (false, *recorded),
                // Pruned before it was written: nothing to remember.
                (None, None) => continue,
            };
            ids.push(id.to_string());
            dated.push(row.0);
            at.push(micros_up(row.1));
        }
        let floors: HashMap<Box<str>, DateTime<Utc>> = state
            .sources
            .iter()
            .map(|(k, s)| (k.clone(), micros_down(s.floor)))
            .collect();
        let (mut upsert_sources, mut upsert_floors, mut upsert_advanced) =
            (Vec::new(), Vec::new(), Vec::new());
        for (key, source) in &state.sources {
            let floor = floors[key];
            if tracked.saved_floors.get(key) != Some(&floor) {
                upsert_sources.push(key.to_string());
                upsert_floors.push(floor);
                upsert_advanced.push(micros_down(source.advanced_at));
            }
        }
        let delete_sources = tracked
            .saved_floors
            .keys()
            .filter(|k| !state.sources.contains_key(*k))
            .map(|k| k.to_string())
            .collect();
        let undated: HashSet<Box<str>> = state.undated.keys().cloned().collect();
        let delete_undated = tracked
            .saved_undated
            .iter()
            .filter(|k| !undated.contains(*k))
            .map(|k| k.to_string())
            .collect();
        let horizon = state.horizon.map(micros_down);
        Some(Batch {
            change: tracked.core.generation,
            baseline: state.baseline.map(micros_down),
            prune_below: horizon.filter(|h| tracked.saved_horizon.is_none_or(|s| s < *h)),
            horizon,
            ids,
            dated,
            at,
            taken,
            upsert_sources,
            upsert_floors,
            upsert_advanced,
            delete_sources,
            delete_undated,
            floors,
            undated,
        })
    }

    /// Writes a batch in one fenced transaction.
    async fn write_batch(&self, batch: &Batch) -> Result<()> {
        let operation = "writing the state";
        let db = &self.db;
        let schema = db.schema();
        let org = db.options.organization_id();
        let mut guard = self.conn.get(operation).await?;
        let timeout = db.options.request_timeout();
        let work = async {
            let fail = |e: tokio_postgres::Error| db.db_error(operation, &e);
            let tx = guard.client().transaction().await.map_err(fail)?;
            check_generation(db, &tx, self.generation, operation).await?;
            if !batch.delete_sources.is_empty() {
                tx.execute(
                    &format!(
                        "DELETE FROM {schema}.sources WHERE organization_id = $1 AND source = ANY($2)"
                    ),
                    &[&org, &batch.delete_sources],
                )
                .await
                .map_err(fail)?;
            }
            if !batch.upsert_sources.is_empty() {
                tx.execute(
                    &format!(
                        "INSERT INTO {schema}.sources (organization_id, source, floor, advanced_at)
                         SELECT $1, * FROM UNNEST($2::text[], $3::timestamptz[], $4::timestamptz[])
                         ON CONFLICT (organization_id, source) DO UPDATE
                         SET floor = excluded.floor, advanced_at = excluded.advanced_at"
                    ),
                    &[
                        &org,
                        &batch.upsert_sources,
                        &batch.upsert_floors,
                        &batch.upsert_advanced,
                    ],
                )
                .await
                .map_err(fail)?;
            }
            if !batch.delete_undated.is_empty() {
                tx.execute(
                    &format!(
                        "DELETE FROM {schema}.delivered
                         WHERE organization_id = $1 AND NOT dated AND event_id = ANY($2)"
                    ),
                    &[&org, &batch.delete_undated],
                )
                .await
                .map_err(fail)?;
            }
            if let Some(horizon) = batch.prune_below {
                tx.execute(
                    &format!(
                        "DELETE FROM {schema}.delivered
                         WHERE organization_id = $1 AND dated AND at < $2"
                    ),
                    &[&org, &horizon],
                )
                .await
                .map_err(fail)?;
            }
            if !batch.ids.is_empty() {
                insert_ids(db, &tx, &batch.ids, &batch.dated, &batch.at)
                    .await
                    .map_err(fail)?;
            }
            tx.execute(
                &format!(
                    "UPDATE {schema}.states
                     SET baseline = $2, horizon = $3, written_generation = $4, updated_at = now()
                     WHERE organization_id = $1"
                ),
                &[&org, &batch.baseline, &batch.horizon, &self.generation.0],
            )
            .await
            .map_err(fail)?;
            tx.commit().await.map_err(fail)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                guard.check_closed();
                Err(error)
            }
            Err(_) => {
                guard.discard();
                Err(timed_out(operation, timeout))
            }
        }
    }
}

/// Inserts delivered ids; an id written undated and now dated becomes dated.
async fn insert_ids(
    db: &Inner,
    tx: &Transaction<'_>,
    ids: &[String],
    dated: &[bool],
    at: &[DateTime<Utc>],
) -> std::result::Result<u64, tokio_postgres::Error> {
    let schema = db.schema();
    tx.execute(
        &format!(
            "INSERT INTO {schema}.delivered AS d (organization_id, event_id, dated, at)
             SELECT $1, * FROM UNNEST($2::text[], $3::boolean[], $4::timestamptz[])
             ON CONFLICT (organization_id, event_id) DO UPDATE
             SET dated = true, at = excluded.at
             WHERE excluded.dated AND NOT d.dated"
        ),
        &[&db.options.organization_id(), &ids, &dated, &at],
    )
    .await
}

/// Locks the organization's lease row (creating it) for the rest of the
/// transaction and refuses with [`Error::Fenced`] when its generation is not
/// `ours`: a newer leader exists. Reports the fencing to this process's
/// elector.
async fn check_generation(
    db: &Inner,
    tx: &Transaction<'_>,
    ours: Generation,
    operation: &str,
) -> Result<()> {
    let schema = db.schema();
    let org = db.options.organization_id();
    let fail = |e: tokio_postgres::Error| db.db_error(operation, &e);
    tx.execute(
        &format!(
            "INSERT INTO {schema}.leases (organization_id) VALUES ($1)
             ON CONFLICT (organization_id) DO NOTHING"
        ),
        &[&org],
    )
    .await
    .map_err(fail)?;
    let current: i64 = tx
        .query_one(
            &format!("SELECT generation FROM {schema}.leases WHERE organization_id = $1 FOR SHARE"),
            &[&org],
        )
        .await
        .map_err(fail)?
        .get(0);
    if current == ours.0 {
        return Ok(());
    }
    if current > ours.0 {
        db.report_fenced(ours);
    }
    Err(Error::Fenced {
        ours: ours.0,
        current,
    })
}

/// The organization's stored state, `None` when it has none.
async fn read_state(db: &Inner, tx: &Transaction<'_>, operation: &str) -> Result<Option<State>> {
    let schema = db.schema();
    let org = db.options.organization_id();
    let fail = |e: tokio_postgres::Error| db.db_error(operation, &e);
    let Some(row) = tx
        .query_opt(
            &format!(
                "SELECT format_version, baseline, created, horizon FROM {schema}.states
                 WHERE organization_id = $1"
            ),
            &[&org],
        )
        .await
        .map_err(fail)?
    else {
        return Ok(None);
    };
    let version: i32 = row.get(0);
    if i64::from(version) != FORMAT_VERSION as i64 {
        return Err(Error::Database {
            operation: operation.to_owned(),
            reason: format!(
                "the stored state has format version {version}, this build reads version \
                 {FORMAT_VERSION}: run a matching receiver"
            ),
        });
    }
    let baseline: Option<DateTime<Utc>> = row.get(1);
    let created: DateTime<Utc> = row.get(2);
    let horizon: Option<DateTime<Utc>> = row.get(3);
    let mut state = State::new(Baseline::All, in_range(created));
    state.baseline = baseline.map(in_range);
    state.horizon = horizon.map(in_range);
    for row in tx
        .query(
            &format!(
                "SELECT source, floor, advanced_at FROM {schema}.sources WHERE organization_id = $1"
            ),
            &[&org],
        )
        .await
        .map_err(fail)?
    {
        let source: String = row.get(0);
        let floor: DateTime<Utc> = row.get(1);
        let advanced_at: DateTime<Utc> = row.get(2);
        state.sources.insert(
            source.into(),
            SourceState {
                floor: in_range(floor),
                advanced_at: in_range(advanced_at),
            },
        );
    }
    for row in tx
        .query(
            &format!(
                "SELECT event_id, dated, at FROM {schema}.delivered WHERE organization_id = $1"
            ),
            &[&org],
        )
        .await
        .map_err(fail)?
    {
        let id: String = row.get(0);
        let dated: bool = row.get(1);
        let at: DateTime<Utc> = in_range(row.get(2));
        if dated {
            state.delivered.insert(id.into(), at);
        } else {
            state.undated.insert(id.into(), at);
        }
    }
    Ok(Some(state))
}

/// Writes a whole state for an organization that has none (a new state, or
/// an import).
async fn write_whole(
    db: &Inner,
    tx: &Transaction<'_>,
    state: &State,
    generation: Generation,
    operation: &str,
) -> Result<()> {
    let schema = db.schema();
    let org = db.options.organization_id();
    let fail = |e: tokio_postgres::Error| db.db_error(operation, &e);
    tx.execute(
        &format!(
            "INSERT INTO {schema}.states
             (organization_id, format_version, baseline, created, horizon, written_generation)
             VALUES ($1, $2, $3, $4, $5, $6)"
        ),
        &[
            &org,
            &(FORMAT_VERSION as i32),
            &state.baseline.map(micros_down),
            &micros_down(state.created),
            &state.horizon.map(micros_down),
            &generation.0,
        ],
    )
    .await
    .map_err(fail)?;
    if !state.sources.is_empty() {
        let (mut names, mut floors, mut advanced) = (Vec::new(), Vec::new(), Vec::new());
        for (key, source) in &state.sources {
            names.push(key.to_string());
            floors.push(micros_down(source.floor));
            advanced.push(micros_down(source.advanced_at));
        }
        tx.execute(
            &format!(
                "INSERT INTO {schema}.sources (organization_id, source, floor, advanced_at)
                 SELECT $1, * FROM UNNEST($2::text[], $3::timestamptz[], $4::timestamptz[])"
            ),
            &[&org, &names, &floors, &advanced],
        )
        .await
        .map_err(fail)?;
    }
    let (mut ids, mut dated, mut at) = (Vec::new(), Vec::new(), Vec::new());
    for (map, is_dated) in [(&state.delivered, true), (&state.undated, false)] {
        for (id, when) in map {
            ids.push(id.to_string());
            dated.push(is_dated);
            at.push(micros_up(*when));
        }
    }
    if !ids.is_empty() {
        insert_ids(db, tx, &ids, &dated, &at).await.map_err(fail)?;
    }
    Ok(())
}

/// What a state is, as the database stores it: for comparing an import with
/// what is there.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    baseline: Option<DateTime<Utc>>,
    horizon: Option<DateTime<Utc>>,
    floors: BTreeMap<String, DateTime<Utc>>,
    delivered: BTreeMap<String, DateTime<Utc>>,
    undated: BTreeMap<String, DateTime<Utc>>,
}

impl Stored {
    fn of(state: &State) -> Self {
        let ids = |map: &HashMap<Box<str>, DateTime<Utc>>| {
            map.iter()
                .map(|(k, at)| (k.to_string(), micros_up(*at)))
                .collect()
        };
        Self {
            baseline: state.baseline.map(micros_down),
            horizon: state.horizon.map(micros_down),
            floors: state
                .sources
                .iter()
                .map(|(k, s)| (k.to_string(), micros_down(s.floor)))
                .collect(),
            delivered: ids(&state.delivered),
            undated: ids(&state.undated),
        }
    }
}

/// [`Database::import_state`](crate::postgres::Database::import_state).
pub(crate) async fn import(db: Arc<Inner>, path: &Path) -> Result<ImportReport> {
    let operation = "importing the state";
    let task_path = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || crate::file::load_read_only(&task_path))
        .await
        .map_err(|e| Error::Task {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })??;
    let Some(state) = loaded else {
        return Err(Error::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    };
    let report = |imported| ImportReport {
        imported,
        delivered_ids: state.delivered.len() + state.undated.len(),
        sources: state.sources.len(),
    };
    let conn = Conn::new(db.clone());
    let mut guard = conn.get(operation).await?;
    let fail = |e: tokio_postgres::Error| db.db_error(operation, &e);
    let tx = guard.client().transaction().await.map_err(fail)?;
    let schema = db.schema();
    let org = db.options.organization_id();
    tx.execute(
        &format!(
            "INSERT INTO {schema}.leases (organization_id) VALUES ($1)
             ON CONFLICT (organization_id) DO NOTHING"
        ),
        &[&org],
    )
    .await
    .map_err(fail)?;
    let current: i64 = tx
        .query_one(
            &format!(
                "SELECT generation FROM {schema}.leases WHERE organization_id = $1 FOR UPDATE"
            ),
            &[&org],
        )
        .await
        .map_err(fail)?
        .get(0);
    if let Some(stored) = read_state(&db, &tx, operation).await? {
        if Stored::of(&stored) == Stored::of(&state) {
            return Ok(report(false));
        }
        return Err(Error::ImportRefused {
            path: path.to_path_buf(),
            reason: format!(
                "organization {org} already has a state in schema {} ({} delivered ids, {} \
                 sources) that differs from the file",
                db.options.schema(),
                stored.delivered.len() + stored.undated.len(),
                stored.sources.len()
            ),
        });
    }
    write_whole(&db, &tx, &state, Generation(current), operation).await?;
    tx.commit().await.map_err(fail)?;
    tracing::info!(
        path = %path.display(), organization = %org, schema = %db.options.schema(),
        tracked = state.delivered.len() + state.undated.len(), sources = state.sources.len(),
        "imported the state file into PostgreSQL"
    );
    Ok(report(true))
}

#[async_trait]
impl Tracker for PostgresTracker {
    fn baseline(&self) -> Baseline {
        self.tracked().core.state.baseline()
    }

    async fn check(
        &self,
        source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<Verdict> {
        Ok(self.tracked().core.check(source, event_id, created_at))
    }

    async fn check_many(&self, source: &str, events: &[EventKey<'_>]) -> Result<Vec<Verdict>> {
        let tracked = self.tracked();
        Ok(events
            .iter()
            .map(|e| tracked.core.check(source, e.id, e.created_at))
            .collect())
    }

    async fn record_delivered(
        &self,
        _source: &str,
        event_id: &str,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let mut tracked = self.tracked();
        if tracked.core.record(event_id, created_at) {
            tracked.pending.insert(event_id.into());
        }
        Ok(())
    }

    async fn floor(&self, source: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.tracked().core.floor(source))
    }

    async fn advance_floor(&self, source: &str, floor: DateTime<Utc>) -> Result<()> {
        self.tracked().core.advance_floor(source, floor);
        Ok(())
    }

    async fn forget_source(&self, source: &str) -> Result<()> {
        self.tracked().core.forget_source(source);
        Ok(())
    }

    async fn align_start(&self, api_now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        Ok(self.tracked().core.align_start(api_now))
    }

    /// Writes what changed since the last write, in one fenced transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] when a newer leader exists (step down; nothing was
    /// written), [`Error::Database`] when the database cannot be reached (the
    /// changes stay pending for the next call).
    async fn persist(&self) -> Result<()> {
        let _one = self.write.lock().await;
        let Some(batch) = self.batch() else {
            return Ok(());
        };
        match self.write_batch(&batch).await {
            Ok(()) => {
                let mut tracked = self.tracked();
                tracked.saved_floors = batch.floors;
                tracked.saved_undated = batch.undated;
                tracked.saved_horizon = batch.horizon.or(tracked.saved_horizon);
                tracked.saved_change = batch.change;
                Ok(())
            }
            Err(error) => {
                self.tracked().pending.extend(batch.taken);
                Err(error)
            }
        }
    }

    fn stats(&self) -> Stats {
        let tracked = self.tracked();
        Stats {
            unpersisted: tracked.pending.len(),
            dirty: tracked.core.generation != tracked.saved_change || !tracked.pending.is_empty(),
            ..tracked.core.stats()
        }
    }
}
