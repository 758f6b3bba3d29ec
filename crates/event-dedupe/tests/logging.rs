//! What the operator reads when a state file holds times past the clock. In
//! its own test binary: a `tracing` subscriber is process-wide state.

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use event_dedupe::{FileOptions, FileTracker, ManualClock, MemoryTracker, TrackerOptions};

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

#[tokio::test]
async fn a_repaired_state_is_reported_naming_the_file_and_what_was_held() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let end = "9999-12-31T23:59:59Z";
    let state = serde_json::json!({
        "version": 1, "baseline": end, "created": "2024-05-01T12:00:00Z", "horizon": end,
        "sources": { "device:x": { "floor": end, "advanced_at": end } },
        "delivered": {}, "undated": {}
    });
    std::fs::write(&path, state.to_string()).unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap());
    let options = TrackerOptions::new().with_clock(Arc::new(clock));

    let preview = MemoryTracker::from_state_file(&path, options.clone()).await;
    let read_only = captured.take();
    drop(preview.unwrap());
    let tracker = FileTracker::open(&path, FileOptions::new(options))
        .await
        .unwrap();
    let owner = captured.take();
    drop(tracker);

    for logs in [read_only, owner] {
        let line = logs
            .lines()
            .find(|l| l.contains("holds times past this host's clock"))
            .unwrap_or_else(|| panic!("no repair warning in:\n{logs}"));
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains(&path.display().to_string()), "{line}");
        for held in [
            "baseline 9999-12-31T23:59:59Z",
            "horizon 9999-12-31T23:59:59Z",
            "1 source floor(s), the latest 9999-12-31T23:59:59Z",
        ] {
            assert!(line.contains(held), "{held:?} in {line}");
        }
    }
}
