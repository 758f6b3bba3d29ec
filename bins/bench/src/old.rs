//! The old Go receiver's cost (design notes §5): computed from its algorithm,
//! and measured by replaying its request sequence against the simulator.
//!
//! Each sweep it listed `GET /projects` (every organization's projects), then
//! for each project, one request after another: the project's events, the
//! project's devices, and each device's events, following every page with
//! the API's default page size of 10.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metal_sim::{EventScope, MetalSimHandle};
use serde_json::Value;

/// The API's default page size, which the old receiver never changed.
pub(crate) const OLD_PAGE_SIZE: u64 = 10;

/// Requests of one old sweep, from the fleet's shape.
pub(crate) fn computed_requests(sim: &MetalSimHandle, project_lists_include_devices: bool) -> u64 {
    let pages = |items: u64| items.div_ceil(OLD_PAGE_SIZE).max(1);
    let mut per_device: HashMap<String, u64> = HashMap::new();
    let mut per_project: HashMap<String, u64> = HashMap::new();
    for event in sim.events() {
        match event.scope {
            EventScope::Device => {
                if let Some(device) = event.device_id {
                    *per_device.entry(device).or_default() += 1;
                }
                if project_lists_include_devices && let Some(project) = event.project_id {
                    *per_project.entry(project).or_default() += 1;
                }
            }
            EventScope::Project => {
                if let Some(project) = event.project_id {
                    *per_project.entry(project).or_default() += 1;
                }
            }
            EventScope::Organization => {}
        }
    }
    let projects: Vec<_> = sim
        .projects()
        .into_iter()
        .chain(sim.foreign_projects())
        .collect();
    let mut requests = pages(projects.len() as u64);
    for project in &projects {
        requests += pages(per_project.get(&project.id).copied().unwrap_or(0));
        requests += pages(project.devices.len() as u64);
        for device in &project.devices {
            requests += pages(per_device.get(&device.id).copied().unwrap_or(0));
        }
    }
    requests
}

/// What a replayed old sweep cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replay {
    pub(crate) requests: u64,
    pub(crate) wall: Duration,
}

/// Replays one old sweep against `sim` over HTTP, sequentially.
pub(crate) async fn replay(sim: &MetalSimHandle) -> anyhow::Result<Replay> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the replay client")?;
    let old = OldClient {
        client,
        base: sim.base_url(),
        token: sim.token().to_owned(),
        requests: 0,
    };
    let started = Instant::now();
    let mut old = old;
    let projects = old.all_pages("/projects", "projects").await?;
    for project in &projects {
        let id = item_id(project)?;
        old.all_pages(&format!("/projects/{id}/events"), "events")
            .await?;
        let devices = old
            .all_pages(&format!("/projects/{id}/devices"), "devices")
            .await?;
        for device in &devices {
            let device = item_id(device)?;
            old.all_pages(&format!("/devices/{device}/events"), "events")
                .await?;
        }
    }
    Ok(Replay {
        requests: old.requests,
        wall: started.elapsed(),
    })
}

struct OldClient {
    client: reqwest::Client,
    base: String,
    token: String,
    requests: u64,
}

impl OldClient {
    /// Every page of a list, page after page, without `per_page`.
    async fn all_pages(&mut self, path: &str, key: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut page = 1u64;
        loop {
            let url = format!("{}{path}?page={page}", self.base);
            let response = self
                .client
                .get(&url)
                .header("X-Auth-Token", &self.token)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            self.requests += 1;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .with_context(|| format!("GET {url}"))?;
            if !status.is_success() {
                bail!("GET {url}: {status}");
            }
            let mut body: Value =
                serde_json::from_slice(&body).with_context(|| format!("decoding {url}"))?;
            if let Some(Value::Array(list)) = body.get_mut(key).map(Value::take) {
                items.extend(list);
            }
            let last = body
                .pointer("/meta/last_page")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if page >= last {
                return Ok(items);
            }
            page += 1;
        }
    }
}

fn item_id(item: &Value) -> anyhow::Result<&str> {
    item.get("id")
        .and_then(Value::as_str)
        .context("a list item without an id")
}
