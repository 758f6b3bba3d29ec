//! Cost of a lookup, a record and a persist with 100,000 tracked ids, and the
//! size of that state in memory (estimated) and on disk.

#![allow(missing_docs, clippy::print_stdout)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use event_dedupe::{
    Baseline, FileOptions, FileTracker, ManualClock, MemoryTracker, Tracker, TrackerOptions,
};

const IDS: usize = 100_000;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

/// A uuid-shaped id, like Metal's.
fn id(i: usize) -> String {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xffff,
        x & 0xfff,
        (x >> 20) & 0xfff,
        i
    )
}

fn created(i: usize) -> Option<DateTime<Utc>> {
    Some(t0() + TimeDelta::milliseconds(i as i64))
}

fn options() -> TrackerOptions {
    TrackerOptions::new()
        .with_baseline(Baseline::All)
        .with_clock(Arc::new(ManualClock::new(t0())))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn fill(t: &dyn Tracker) {
    for i in 0..IDS {
        t.record_delivered("project:p1", &id(i), created(i))
            .await
            .unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let memory = MemoryTracker::new(options());
    rt.block_on(fill(&memory));
    let ids: Vec<String> = (0..IDS).map(id).collect();
    let misses: Vec<String> = (IDS..2 * IDS).map(id).collect();

    c.bench_function("lookup/hit (100k tracked)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for n in 0..iters as usize {
                    let i = n % IDS;
                    black_box(
                        memory
                            .check("device:d1", &ids[i], created(i))
                            .await
                            .unwrap(),
                    );
                }
                start.elapsed()
            })
        })
    });
    c.bench_function("lookup/miss (100k tracked)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for n in 0..iters as usize {
                    let i = n % IDS;
                    black_box(
                        memory
                            .check("device:d1", &misses[i], created(IDS + i))
                            .await
                            .unwrap(),
                    );
                }
                start.elapsed()
            })
        })
    });
    c.bench_function("record/new id (100k tracked)", |b| {
        b.iter_custom(|iters| {
            let t = MemoryTracker::new(options());
            rt.block_on(async {
                fill(&t).await;
                let fresh: Vec<String> = (0..iters as usize).map(|i| id(IDS + i)).collect();
                let start = Instant::now();
                for (i, e) in fresh.iter().enumerate() {
                    t.record_delivered("device:d1", e, created(IDS + i))
                        .await
                        .unwrap();
                }
                start.elapsed()
            })
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let file = rt.block_on(async {
        let opts = FileOptions::new(options()).with_max_unpersisted(usize::MAX);
        let t = FileTracker::open(&path, opts).await.unwrap();
        fill(&t).await;
        t.persist().await.unwrap();
        t
    });
    let mut extra = 0;
    c.bench_function("persist (100k tracked)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // One new record makes the state dirty, as after a delivery batch.
                    extra += 1;
                    file.record_delivered("device:d1", &id(10 * IDS + extra), created(IDS))
                        .await
                        .unwrap();
                    let start = Instant::now();
                    file.persist().await.unwrap();
                    total += start.elapsed();
                }
                total
            })
        })
    });

    let stats = memory.stats();
    let disk = std::fs::metadata(&path).unwrap().len();
    println!(
        "size/{IDS} ids: memory ~{} bytes (~{} bytes per id, estimated from map capacity and key sizes); \
         on disk {} bytes ({} bytes per id)",
        stats.approx_memory_bytes,
        stats.approx_memory_bytes / IDS,
        disk,
        disk as usize / IDS,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
