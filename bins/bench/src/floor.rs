//! The sink-bound floor of a catch-up, measured rather than computed: a
//! minimal client that POSTs the same CloudEvents, with the same concurrency,
//! to the same simulated Direktiv, with no receiver in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metal_sim::{AcceptedEvent, DirektivSimHandle};

/// The namespace the floor client broadcasts to: the simulated Direktiv
/// accepts any, and a namespace of its own keeps the receiver's events (same
/// source and id) from counting as duplicates.
const FLOOR_NAMESPACE: &str = "bench-floor";

/// What the minimal client reached.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Floor {
    pub(crate) events: usize,
    /// From the first request to the last answer.
    pub(crate) elapsed: Duration,
}

impl Floor {
    pub(crate) fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// POSTs each of `events` (structured mode, serialized before the clock
/// starts) to `direktiv` with `concurrency` requests in flight, each worker
/// taking the next event as soon as its last one was answered. Runs on a
/// runtime of its own with two worker threads, like the receiver's process,
/// so that it does not share the simulator's worker threads.
pub(crate) async fn measure(
    direktiv: &DirektivSimHandle,
    events: &[AcceptedEvent],
    concurrency: usize,
) -> anyhow::Result<Floor> {
    let bodies: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(&e.event))
        .collect::<Result<_, _>>()
        .context("serializing the CloudEvents")?;
    let url = direktiv.endpoint_url_for(FLOOR_NAMESPACE);
    let header = direktiv.auth_header().to_owned();
    let token = direktiv.token().unwrap_or_default().to_owned();
    let concurrency = concurrency.max(1);
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("building the floor client's runtime")?;
        runtime.block_on(post_all(bodies, url, header, token, concurrency))
    })
    .await
    .context("the floor client panicked")?
}

async fn post_all(
    bodies: Vec<Vec<u8>>,
    url: String,
    header: String,
    token: String,
    concurrency: usize,
) -> anyhow::Result<Floor> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the floor client")?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, bodies, next) = (client.clone(), Arc::clone(&bodies), Arc::clone(&next));
        let (url, header, token) = (url.clone(), header.clone(), token.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let response = client
                    .post(&url)
                    .header(&header, &token)
                    .header("content-type", "application/cloudevents+json")
                    .body(body.clone())
                    .send()
                    .await
                    .context("POST to the simulated Direktiv")?;
                let status = response.status();
                // Read the answer whole, as the receiver does.
                let _ = response.bytes().await;
                if !status.is_success() {
                    bail!("the simulated Direktiv answered {status} to the floor client");
                }
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.context("a floor worker panicked")??;
    }
    Ok(Floor {
        events: bodies.len(),
        elapsed: started.elapsed(),
    })
}
