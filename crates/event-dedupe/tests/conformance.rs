//! Both stores pass the shared conformance suite.

use std::sync::{Arc, Mutex};

use event_dedupe::{FileOptions, FileTracker, MemoryTracker, Tracker, TrackerOptions, conformance};

#[tokio::test]
async fn memory_tracker_conforms() {
    conformance::run_all(|options: TrackerOptions| async move {
        Arc::new(MemoryTracker::new(options)) as Arc<dyn Tracker>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_tracker_conforms() {
    // Each check gets its own directory, kept until the suite ends.
    let dirs = Arc::new(Mutex::new(Vec::new()));
    conformance::run_all(|options: TrackerOptions| {
        let dirs = dirs.clone();
        async move {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("state.json");
            dirs.lock().unwrap().push(dir);
            let tracker = FileTracker::open(&path, FileOptions::new(options))
                .await
                .expect("open");
            Arc::new(tracker) as Arc<dyn Tracker>
        }
    })
    .await;
}
