//! The dead-letter store: every CloudEvent Direktiv refused for good (400,
//! 413, 422 ...), kept with Direktiv's answer in a bounded JSON Lines file
//! beside the state, so that `--redeliver-refused` can send it again once
//! Direktiv is fixed.
//!
//! The file holds one JSON object per line, oldest refusal first:
//! `{"id": .., "refusedAt": .., "answer": {"status": .., "detail": ..}, "event": {..}}`,
//! where `event` is the structured-mode CloudEvent exactly as it was sent.
//! One entry per id (a second refusal replaces the first); past the bound the
//! oldest entries are dropped, with a warning and a count.
//!
//! Every change replaces the whole file: a temporary file created exclusively
//! (random name, mode 0600) in the same directory, written, fsynced, renamed
//! over the file, then the directory is fsynced, so a kill leaves the old or
//! the new list. A rename replaces a symbolic link instead of writing through
//! it, and a symbolic link at the path is refused when the store opens. A file
//! that cannot be read as dead letters stops start-up naming the file and the
//! line; it is never emptied by the receiver.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use direktiv_broadcast::Outcome;
use event_dedupe::FileMode;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::scrub::Scrubber;

/// What is appended to the state file's name for the default dead-letter file.
const SUFFIX: &str = ".dead-letter.jsonl";

/// Direktiv's answer to a refused event, as kept and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The HTTP status; `None` when nothing was sent (the event could not be
    /// serialized) or no answer came.
    pub status: Option<u16>,
    /// The answer's body, trimmed by the sink, or what went wrong.
    pub detail: String,
}

impl Answer {
    /// The answer kept for a refusal: the one place where Direktiv's text
    /// (upstream text) enters the dead-letter store.
    pub fn from_outcome(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Permanent { status, body } => Self {
                status: Some(*status),
                detail: body.clone(),
            },
            Outcome::Retryable { status, detail, .. } => Self {
                status: *status,
                detail: detail.clone(),
            },
            other => Self {
                status: None,
                detail: other.to_string(),
            },
        }
    }
}

/// One refused event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The CloudEvent id, which is the Metal event id.
    pub id: String,
    /// When Direktiv refused it (the last time).
    pub refused_at: DateTime<Utc>,
    /// What Direktiv answered.
    pub answer: Answer,
    /// The structured-mode CloudEvent as it was sent.
    pub event: serde_json::Value,
}

impl Entry {
    /// The entry for `event`, refused now with `answer`.
    pub fn new(
        event: &cloudevents::Event,
        answer: Answer,
        refused_at: DateTime<Utc>,
    ) -> serde_json::Result<Self> {
        use cloudevents::AttributesReader as _;
        Ok(Self {
            id: event.id().to_owned(),
            refused_at,
            answer,
            event: metal_cloudevents::to_json_value(event)?,
        })
    }

    /// The CloudEvent to send again.
    pub fn cloud_event(&self) -> serde_json::Result<cloudevents::Event> {
        serde_json::from_value(self.event.clone())
    }
}

/// Where the dead letters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file. With `read_only` (`--dry-run`) it is read at start and never
    /// written: changes stay in memory.
    File {
        /// The dead-letter file.
        path: PathBuf,
        /// Never write it.
        read_only: bool,
    },
    /// Memory only: the receiver has no persistent state, and refused events
    /// are lost at exit.
    Memory,
}

/// The refused events, oldest first, and where they are kept.
#[derive(Debug)]
pub struct DeadLetters {
    location: Location,
    max: usize,
    entries: tokio::sync::Mutex<VecDeque<Entry>>,
    metrics: Arc<Metrics>,
    /// Direktiv's answers are upstream text: kept only scrubbed of secrets.
    scrubber: Arc<Scrubber>,
}

impl DeadLetters {
    /// Entries kept at most without `state.deadLetterMax`.
    pub const DEFAULT_MAX: u32 = 1000;
    /// The largest `state.deadLetterMax` accepted.
    pub const MAX_MAX: u32 = 100_000;

    /// The dead-letter file beside `state_path`: `<state file name>.dead-letter.jsonl`.
    pub fn default_path(state_path: &Path) -> PathBuf {
        let mut name = state_path
            .file_name()
            .map_or_else(|| OsString::from("state.json"), OsString::from);
        name.push(SUFFIX);
        state_path.with_file_name(name)
    }

    /// Opens the store, reading the file when there is one, and sets the
    /// `dead_letter_events` gauge. Holds at most `max` entries.
    ///
    /// # Errors
    ///
    /// The path is a symbolic link or not a regular file, cannot be read, or
    /// holds a line that is not a dead letter; each error names the file and
    /// the way out.
    pub fn open(
        location: Location,
        max: usize,
        metrics: Arc<Metrics>,
        scrubber: Arc<Scrubber>,
    ) -> Result<Self> {
        let max = max.max(1);
        let mut entries = match &location {
            Location::File { path, .. } => load(path)?,
            Location::Memory => VecDeque::new(),
        };
        let dropped = trim(&mut entries, max);
        if let Location::File {
            path,
            read_only: false,
        } = &location
            && !dropped.is_empty()
        {
            // The bound was lowered: write the trimmed list now, so the
            // drop is reported once.
            write_atomic(path, &encode(&entries)?)?;
        }
        let held = entries.len();
        let store = Self {
            location,
            max,
            entries: tokio::sync::Mutex::new(entries),
            metrics,
            scrubber,
        };
        store.dropped(&dropped);
        store.set_gauge(held);
        Ok(store)
    }

    /// Where the entries are kept, for log lines.
    pub fn location(&self) -> String {
        match &self.location {
            Location::File {
                path,
                read_only: false,
            } => path.display().to_string(),
            Location::File {
                path,
                read_only: true,
            } => format!("memory (dry run: {} is not written)", path.display()),
            Location::Memory => "memory only (no persistent state: lost at exit)".to_owned(),
        }
    }

    /// How many entries are held.
    pub async fn held(&self) -> usize {
        self.entries.lock().await.len()
    }

    /// The entries held, oldest first.
    pub async fn entries(&self) -> Vec<Entry> {
        self.entries.lock().await.iter().cloned().collect()
    }

    /// Keeps `entry` (replacing an entry of the same id), dropping the oldest
    /// past the bound, and writes the file before it returns.
    ///
    /// # Errors
    ///
    /// The file could not be written; nothing changed, in memory or on disk.
    pub async fn keep(&self, entry: Entry) -> Result<()> {
        self.keep_counted(entry, &self.metrics.events_refused).await
    }

    /// [`DeadLetters::keep`] for a poison event: one that failed with
    /// retryable answers for `direktiv.poisonAfter` while later events of
    /// its device waited. Counted in `events_poisoned`, not `events_refused`.
    ///
    /// # Errors
    ///
    /// The file could not be written; nothing changed, in memory or on disk.
    pub async fn keep_poisoned(&self, entry: Entry) -> Result<()> {
        self.keep_counted(entry, &self.metrics.events_poisoned)
            .await
    }

    async fn keep_counted(
        &self,
        entry: Entry,
        counter: &prometheus_client::metrics::counter::Counter,
    ) -> Result<()> {
        let entry = self.scrubbed(entry);
        let mut entries = self.entries.lock().await;
        let mut next = entries.clone();
        next.retain(|e| e.id != entry.id);
        next.push_back(entry);
        let dropped = trim(&mut next, self.max);
        self.write(&next).await?;
        *entries = next;
        counter.inc();
        self.dropped(&dropped);
        self.set_gauge(entries.len());
        Ok(())
    }

    /// After a redelivery: removes the entries whose id is in `resent` and
    /// replaces those in `refused` (refused again, with the new answer), in
    /// one write.
    ///
    /// # Errors
    ///
    /// The file could not be written; nothing changed.
    pub async fn settle(&self, resent: &HashSet<String>, refused: Vec<Entry>) -> Result<()> {
        let mut entries = self.entries.lock().await;
        let mut next = entries.clone();
        next.retain(|e| !resent.contains(&e.id));
        for entry in refused {
            let entry = self.scrubbed(entry);
            match next.iter_mut().find(|e| e.id == entry.id) {
                Some(slot) => *slot = entry,
                None => next.push_back(entry),
            }
        }
        let dropped = trim(&mut next, self.max);
        self.write(&next).await?;
        *entries = next;
        self.dropped(&dropped);
        self.set_gauge(entries.len());
        Ok(())
    }

    /// `entry` with the configured secrets scrubbed from Direktiv's answer.
    fn scrubbed(&self, mut entry: Entry) -> Entry {
        if let Cow::Owned(detail) = self.scrubber.scrub(&entry.answer.detail) {
            entry.answer.detail = detail;
        }
        entry
    }

    /// Writes `entries` to the file (nothing in memory or with `read_only`).
    async fn write(&self, entries: &VecDeque<Entry>) -> Result<()> {
        let Location::File {
            path,
            read_only: false,
        } = &self.location
        else {
            return Ok(());
        };
        let bytes = encode(entries)?;
        let path = path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
            .await
            .map_err(Error::DeadLetterTask)?
    }

    /// Warns about and counts entries dropped past the bound.
    fn dropped(&self, dropped: &[Entry]) {
        for entry in dropped {
            tracing::warn!(id = %entry.id, refused_at = %entry.refused_at, max = self.max,
                file = %self.location(),
                "dead-letter store full (state.deadLetterMax): dropped the oldest refused event");
        }
        self.metrics
            .dead_letter_dropped
            .inc_by(dropped.len() as u64);
    }

    fn set_gauge(&self, len: usize) {
        self.metrics
            .dead_letter_events
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }
}

/// The file's contents: one JSON object per line.
fn encode(entries: &VecDeque<Entry>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut bytes, entry).map_err(Error::Encode)?;
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// Drops the oldest entries past `max`; returns them.
fn trim(entries: &mut VecDeque<Entry>, max: usize) -> Vec<Entry> {
    let excess = entries.len().saturating_sub(max);
    entries.drain(..excess).collect()
}

/// Reads the file: nothing when it does not exist.
fn load(path: &Path) -> Result<VecDeque<Entry>> {
    let read = |source| Error::DeadLetterRead {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(VecDeque::new()),
        Err(e) => return Err(read(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(Error::DeadLetterSymlink {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(Error::DeadLetterNotAFile {
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(read)?;
    let corrupt = |line: usize, why: String| Error::DeadLetterCorrupt {
        path: path.to_path_buf(),
        line,
        why,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| corrupt(1, format!("not UTF-8: {e}")))?;
    let mut entries: VecDeque<Entry> = VecDeque::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(line)
            .map_err(|e| corrupt(index + 1, format!("not a dead letter: {e}")))?;
        if let Err(e) = entry.cloud_event() {
            return Err(corrupt(index + 1, format!("not a CloudEvent: {e}")));
        }
        entries.retain(|e| e.id != entry.id);
        entries.push_back(entry);
    }
    Ok(entries)
}

/// Replaces the file with `bytes` through [`event_dedupe::write_atomic`]
/// (which owns file durability), readable by its owner only.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    event_dedupe::write_atomic(path, bytes, FileMode::Private)
        .map(drop)
        .map_err(|e| Error::DeadLetterWrite {
            path: path.to_path_buf(),
            source: e.source,
        })
}

#[cfg(test)]
mod tests {
    use cloudevents::{AttributesReader as _, EventBuilder as _, EventBuilderV10};

    use super::*;

    fn event(id: &str) -> cloudevents::Event {
        EventBuilderV10::new()
            .id(id)
            .ty("provisioning.110")
            .source("direktiv/listener/equinix/Org")
            .data("application/json", serde_json::json!({ "id": id }))
            .build()
            .unwrap()
    }

    fn refused(id: &str, status: u16) -> Entry {
        let answer = Answer::from_outcome(&Outcome::Permanent {
            status,
            body: format!("no {id}"),
        });
        Entry::new(&event(id), answer, Utc::now()).unwrap()
    }

    fn open(location: Location, max: usize) -> (DeadLetters, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(std::time::Duration::from_secs(300)));
        let store = DeadLetters::open(location, max, Arc::clone(&metrics), Arc::default()).unwrap();
        (store, metrics)
    }

    fn file(path: &Path) -> Location {
        Location::File {
            path: path.to_path_buf(),
            read_only: false,
        }
    }

    #[tokio::test]
    async fn a_token_echoed_in_the_answer_is_never_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let secret = secrecy::SecretString::from("direktiv-tok-123456");
        let store = DeadLetters::open(
            file(&path),
            10,
            Arc::new(Metrics::new(std::time::Duration::from_secs(300))),
            Arc::new(Scrubber::new([&secret])),
        )
        .unwrap();
        let answer = Answer::from_outcome(&Outcome::Permanent {
            status: 400,
            body: "bad event; you sent Direktiv-Token: direktiv-tok-123456".to_owned(),
        });
        store
            .keep(Entry::new(&event("a"), answer, Utc::now()).unwrap())
            .await
            .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("direktiv-tok-123456"), "{text}");
        assert!(text.contains("Direktiv-Token: [REDACTED]"), "{text}");
    }

    async fn ids(store: &DeadLetters) -> Vec<String> {
        store.entries().await.into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn the_default_file_sits_beside_the_state() {
        assert_eq!(
            DeadLetters::default_path(Path::new("/var/lib/r/state.json")),
            Path::new("/var/lib/r/state.json.dead-letter.jsonl")
        );
    }

    #[test]
    fn the_answer_keeps_status_and_body() {
        let answer = Answer::from_outcome(&Outcome::Permanent {
            status: 413,
            body: "too large".into(),
        });
        assert_eq!(answer.status, Some(413));
        assert_eq!(answer.detail, "too large");
        let unsendable = Answer::from_outcome(&Outcome::Unsendable {
            reason: "bad json".into(),
        });
        assert_eq!(unsendable.status, None);
        assert!(unsendable.detail.contains("bad json"));
    }

    #[tokio::test]
    async fn entries_survive_a_reopen_and_one_id_is_kept_once_with_its_newest_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let (store, metrics) = open(file(&path), 10);
        store.keep(refused("a", 400)).await.unwrap();
        store.keep(refused("b", 413)).await.unwrap();
        store.keep(refused("a", 422)).await.unwrap();
        assert_eq!(ids(&store).await, ["b", "a"]);
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_dead_letter_events 2")
        );
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_events_refused_total 3")
        );

        let (reopened, metrics) = open(file(&path), 10);
        let entries = reopened.entries().await;
        assert_eq!(entries, store.entries().await);
        assert_eq!(entries[1].answer.status, Some(422));
        assert_eq!(entries[1].cloud_event().unwrap().id(), "a");
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_dead_letter_events 2")
        );
    }

    #[tokio::test]
    async fn past_the_bound_the_oldest_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let (store, metrics) = open(file(&path), 2);
        for id in ["a", "b", "c", "d"] {
            store.keep(refused(id, 400)).await.unwrap();
        }
        assert_eq!(ids(&store).await, ["c", "d"]);
        let text = metrics.encode();
        assert!(
            text.contains("equinix_receiver_dead_letter_dropped_total 2"),
            "{text}"
        );
        assert!(
            text.contains("equinix_receiver_dead_letter_events 2"),
            "{text}"
        );

        // A lowered bound trims the file once, at open.
        let (smaller, metrics) = open(file(&path), 1);
        assert_eq!(ids(&smaller).await, ["d"]);
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_dead_letter_dropped_total 1")
        );
        let (again, metrics) = open(file(&path), 1);
        assert_eq!(ids(&again).await, ["d"]);
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_dead_letter_dropped_total 0")
        );
    }

    #[tokio::test]
    async fn settle_removes_what_went_out_and_renews_what_was_refused_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let (store, metrics) = open(file(&path), 10);
        for id in ["a", "b", "c"] {
            store.keep(refused(id, 400)).await.unwrap();
        }
        let resent: HashSet<String> = ["a".to_owned()].into();
        store
            .settle(&resent, vec![refused("c", 422)])
            .await
            .unwrap();
        let (reopened, _) = open(file(&path), 10);
        let entries = reopened.entries().await;
        assert_eq!(
            entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(entries[1].answer.status, Some(422));
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_dead_letter_events 2")
        );
        store
            .settle(&["b".to_owned(), "c".to_owned()].into(), Vec::new())
            .await
            .unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "",
            "emptied, not removed"
        );
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone").join("dl.jsonl");
        let (store, metrics) = open(file(&path), 10);
        let error = store.keep(refused("a", 400)).await.unwrap_err();
        assert!(format!("{error:#}").contains("dl.jsonl"), "{error:#}");
        assert!(store.entries().await.is_empty());
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_dead_letter_events 0")
        );
        assert!(
            metrics
                .encode()
                .contains("equinix_receiver_events_refused_total 0")
        );
    }

    #[tokio::test]
    async fn memory_and_read_only_stores_never_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let (memory, _) = open(Location::Memory, 10);
        memory.keep(refused("a", 400)).await.unwrap();
        assert_eq!(ids(&memory).await, ["a"]);
        assert!(memory.location().contains("memory only"));

        let (store, _) = open(file(&path), 10);
        store.keep(refused("a", 400)).await.unwrap();
        let before = fs::read(&path).unwrap();
        let read_only = Location::File {
            path: path.clone(),
            read_only: true,
        };
        let (dry, _) = open(read_only, 10);
        dry.keep(refused("b", 400)).await.unwrap();
        assert_eq!(ids(&dry).await, ["a", "b"]);
        assert_eq!(fs::read(&path).unwrap(), before, "the dry run wrote");
        assert!(dry.location().contains("dry run"));
    }

    #[test]
    fn a_corrupt_file_names_the_file_and_the_line_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let good = serde_json::to_string(&refused("a", 400)).unwrap();
        let not_an_event = r#"{"id":"b","refusedAt":"2024-01-01T00:00:00Z","answer":{"status":400,"detail":""},"event":{"id":"b"}}"#;
        for (text, line) in [
            (format!("{good}\n{{\"id\":\n"), 2),
            (format!("{not_an_event}\n"), 1),
            ("\u{0}\u{ff}".to_owned(), 1),
        ] {
            fs::write(&path, &text).unwrap();
            let error = DeadLetters::open(
                file(&path),
                10,
                Arc::new(Metrics::new(std::time::Duration::from_secs(300))),
                Arc::default(),
            )
            .unwrap_err();
            let message = format!("{error:#}");
            assert!(
                message.contains(&path.display().to_string())
                    && message.contains(&format!("corrupt at line {line}"))
                    && message.contains("move the file aside"),
                "{message}"
            );
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        fs::write(&target, "precious").unwrap();
        let path = dir.path().join("dl.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let error = DeadLetters::open(
            file(&path),
            10,
            Arc::new(Metrics::new(std::time::Duration::from_secs(300))),
            Arc::default(),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("symbolic link"), "{error:#}");

        // Planted after the store opened: the rename replaces the link.
        fs::remove_file(&path).unwrap();
        let (store, _) = open(file(&path), 10);
        std::os::unix::fs::symlink(&target, &path).unwrap();
        store.keep(refused("a", 400)).await.unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
