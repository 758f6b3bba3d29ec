//! The simulated Metal API: a [`Transport`] that answers the real client's
//! requests from the [`World`] at the current virtual time, in memory, with
//! the archived spec's shapes (`{"events": [...], "meta": {...}}`, `page`,
//! `per_page`, `meta.next`, `current_page`, `last_page`, `total`), a `Date`
//! header from the API's clock on every answer, and the nemesis's faults.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use metal_events::{Transport, TransportFuture};
use serde_json::{Value, json};

use super::rng::{keyed, of_str};
use super::world::{Ingredient, List, Ms, Owner, SEC, World};

/// Virtual time: the API's clock is `epoch` plus tokio's (paused) time
/// since `start`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VirtualTime {
    pub(crate) start: tokio::time::Instant,
    pub(crate) epoch: DateTime<Utc>,
}

impl VirtualTime {
    /// Virtual milliseconds since the first start.
    pub(crate) fn now(&self) -> Ms {
        self.start.elapsed().as_millis() as Ms
    }

    /// The API's clock at `t`.
    pub(crate) fn api(&self, t: Ms) -> DateTime<Utc> {
        self.epoch + TimeDelta::milliseconds(t)
    }
}

/// The host's clock as the tracker reads it: the API's plus the seed's skew.
#[derive(Debug)]
pub(crate) struct HostClock {
    pub(crate) time: VirtualTime,
    pub(crate) skew: Ms,
}

impl event_dedupe::Clock for HostClock {
    fn now(&self) -> DateTime<Utc> {
        self.time.api(self.time.now() + self.skew)
    }
}

pub(crate) const BASE_URL: &str = "http://metal.sim.invalid/metal/v1";

#[derive(Debug)]
pub(crate) struct Metal {
    pub(crate) world: Arc<World>,
    pub(crate) time: VirtualTime,
    pub(crate) requests: AtomicU64,
    pub(crate) trace: bool,
}

impl Transport for Metal {
    fn execute(&self, request: reqwest::Request) -> TransportFuture<'_> {
        let t = self.time.now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (status, body, retry_after) = self.answer(request.url(), t);
        if self.trace {
            eprintln!(
                "{:>8.3}s metal {} {status}",
                t as f64 / 1000.0,
                &request.url()[url::Position::BeforePath..]
            );
        }
        let date = self
            .time
            .api(t)
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut answer = http::Response::builder()
            .status(status)
            .header("date", date)
            .header("content-type", "application/json");
        if let Some(wait) = retry_after {
            answer = answer.header("retry-after", wait.to_string());
        }
        let answer = answer.body(body.to_string()).expect("a valid answer");
        Box::pin(async move { Ok(reqwest::Response::from(answer)) })
    }
}

fn not_found() -> (u16, Value, Option<u64>) {
    (404, json!({"errors": ["Not found"]}), None)
}

impl Metal {
    fn answer(&self, url: &url::Url, t: Ms) -> (u16, Value, Option<u64>) {
        let world = &*self.world;
        let path = url.path().strip_prefix("/metal/v1/").unwrap_or("");
        let segments: Vec<&str> = path.split('/').collect();
        let query = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let page = query("page").unwrap_or(1).max(1);
        let per_page = query("per_page").unwrap_or(10).clamp(1, 1000);
        let project = |id: &str| world.projects.iter().position(|p| p == id);
        let device = |id: &str| world.devices.iter().position(|d| d.id == id);
        let list = match segments.as_slice() {
            ["organizations", org] if *org == world.org => {
                return (200, json!({"id": world.org, "name": "Sim Org"}), None);
            }
            ["organizations", org, "projects"] if *org == world.org => {
                let items: Vec<Value> = world
                    .projects
                    .iter()
                    .enumerate()
                    .map(|(n, id)| json!({"id": id, "name": format!("Project {n}")}))
                    .collect();
                return (200, paged("projects", path, &items, page, per_page), None);
            }
            ["projects", p, "devices"] => {
                let Some(p) = project(p) else {
                    return not_found();
                };
                let items: Vec<Value> = world
                    .devices
                    .iter()
                    .filter(|d| d.alive(t) && d.project_at(t) == p)
                    .map(|d| json!({"id": d.id, "hostname": d.hostname, "state": "active"}))
                    .collect();
                return (200, paged("devices", path, &items, page, per_page), None);
            }
            ["organizations", org, "events"] if *org == world.org => List::Org,
            ["projects", p, "events"] => match project(p) {
                Some(p) => List::Project(p),
                None => return not_found(),
            },
            ["devices", d, "events"] => match device(d) {
                Some(d) => List::Device(d),
                None => return not_found(),
            },
            _ => return not_found(),
        };
        if !world.exists(list, t) {
            return not_found();
        }
        if let Some(fault) = world.fault(list, t) {
            return if fault.throttle {
                let wait = 1 + keyed(&[world.seed, t as u64 / 1000], 3);
                (429, json!({"errors": ["Too many requests"]}), Some(wait))
            } else {
                (503, json!({"errors": ["Service unavailable"]}), None)
            };
        }
        if world.ingredients.contains(&Ingredient::Fail)
            && t < world.knobs.active
            && keyed(
                &[world.seed, of_str(path), page as u64, (t / SEC) as u64],
                25,
            ) == 0
        {
            return (502, json!({"errors": ["Bad gateway"]}), None);
        }
        let listing = world.listing(list, t);
        let (from, to) = page_range(listing.len(), page, per_page);
        let items: Vec<Value> = listing[from..to]
            .iter()
            .map(|e| {
                let mut event = json!({
                    "id": e.id,
                    "type": e.ty,
                    "body": format!("{} happened", e.ty),
                    "state": null,
                    "created_at": self.time.api(e.created).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "href": format!("/metal/v1/events/{}", e.id),
                });
                if let Owner::Device(d, _) = e.owner {
                    event["relationships"] = json!([{"href": format!("#{}", world.devices[d].id)}]);
                }
                event
            })
            .collect();
        (
            200,
            page_of("events", path, items, listing.len(), page, per_page),
            None,
        )
    }
}

/// Page `page` of `items` as the API sends it.
fn paged(key: &str, path: &str, items: &[Value], page: usize, per_page: usize) -> Value {
    let (from, to) = page_range(items.len(), page, per_page);
    page_of(
        key,
        path,
        items[from..to].to_vec(),
        items.len(),
        page,
        per_page,
    )
}

/// Where page `page` of a list of `total` lies.
fn page_range(total: usize, page: usize, per_page: usize) -> (usize, usize) {
    let from = ((page - 1) * per_page).min(total);
    (from, (from + per_page).min(total))
}

/// Page `page` of a list of `total`, holding `items`, as the API sends it.
fn page_of(
    key: &str,
    path: &str,
    items: Vec<Value>,
    total: usize,
    page: usize,
    per_page: usize,
) -> Value {
    let last_page = total.div_ceil(per_page).max(1);
    let href = |n: usize| json!({"href": format!("/metal/v1/{path}?page={n}&per_page={per_page}")});
    json!({
        key: items,
        "meta": {
            "first": href(1),
            "previous": if page > 1 { href(page - 1) } else { Value::Null },
            "self": href(page),
            "next": if page < last_page { href(page + 1) } else { Value::Null },
            "last": href(last_page),
            "total": total,
            "current_page": page,
            "last_page": last_page,
        }
    })
}
