//! The simulated Metal API: a [`Transport`] that answers the real client's
//! requests from the [`World`] at the current virtual time, in memory, with
//! the archived spec's shapes (`{"events": [...], "meta": {...}}`, `page`,
//! `per_page`, `meta.next`, `current_page`, `last_page`, `total`), a `Date`
//! header from the API's clock on every answer, and the nemesis's faults.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use metal_events::{Transport, TransportFuture};
use serde_json::json;

use super::rng::{keyed, of_str};
use super::world::{Ingredient, List, Ms, Owner, SEC, SimEvent, World};

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
    /// Each event's JSON, written once.
    rendered: Vec<String>,
}

/// An answer: status, body, `Retry-After` seconds.
type Answer = (u16, String, Option<u64>);

fn error(status: u16, message: &str) -> Answer {
    (status, json!({ "errors": [message] }).to_string(), None)
}

/// An event as the API writes it.
fn render(world: &World, time: &VirtualTime, event: &SimEvent) -> String {
    let mut json = json!({
        "id": event.id,
        "type": event.ty,
        "body": format!("{} happened", event.ty),
        "state": null,
        "created_at": time
            .api(event.created)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "href": format!("/metal/v1/events/{}", event.id),
    });
    if let Owner::Device(d, _) = event.owner {
        json["relationships"] = json!([{ "href": format!("#{}", world.devices[d].id) }]);
    }
    json.to_string()
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
        let answer = answer.body(body).expect("a valid answer");
        Box::pin(async move { Ok(reqwest::Response::from(answer)) })
    }
}

impl Metal {
    pub(crate) fn new(world: Arc<World>, time: VirtualTime, trace: bool) -> Self {
        let rendered = world
            .events
            .iter()
            .map(|e| render(&world, &time, e))
            .collect();
        Self {
            world,
            time,
            requests: 0.into(),
            trace,
            rendered,
        }
    }

    fn answer(&self, url: &url::Url, t: Ms) -> Answer {
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
                let org = json!({"id": world.org, "name": "Sim Org"});
                return (200, org.to_string(), None);
            }
            ["organizations", org, "projects"] if *org == world.org => {
                let items: Vec<String> = world
                    .projects
                    .iter()
                    .enumerate()
                    .map(|(n, id)| json!({"id": id, "name": format!("Project {n}")}).to_string())
                    .collect();
                return (200, paged("projects", path, &items, page, per_page), None);
            }
            ["projects", p, "devices"] => {
                let Some(p) = project(p) else {
                    return error(404, "Not found");
                };
                let items: Vec<String> = world
                    .devices
                    .iter()
                    .filter(|d| d.alive(t) && d.project_at(t) == p)
                    .map(|d| {
                        json!({"id": d.id, "hostname": d.hostname, "state": "active"}).to_string()
                    })
                    .collect();
                return (200, paged("devices", path, &items, page, per_page), None);
            }
            ["organizations", org, "events"] if *org == world.org => List::Org,
            ["projects", p, "events"] => match project(p) {
                Some(p) => List::Project(p),
                None => return error(404, "Not found"),
            },
            ["devices", d, "events"] => match device(d) {
                Some(d) => List::Device(d),
                None => return error(404, "Not found"),
            },
            _ => return error(404, "Not found"),
        };
        if !world.exists(list, t) {
            return error(404, "Not found");
        }
        if let Some(fault) = world.fault(list, t) {
            return if fault.throttle {
                let wait = 1 + keyed(&[world.seed, t as u64 / 1000], 3);
                let (status, body, _) = error(429, "Too many requests");
                (status, body, Some(wait))
            } else {
                error(503, "Service unavailable")
            };
        }
        let window = (t / SEC) as u64;
        if world.ingredients.contains(&Ingredient::Fail)
            && t < world.knobs.active
            && keyed(&[world.seed, of_str(path), page as u64, window], 25) == 0
        {
            return error(502, "Bad gateway");
        }
        let listing = world.listing(list, t);
        let (from, to) = page_range(listing.len(), page, per_page);
        let items: Vec<&str> = listing[from..to]
            .iter()
            .map(|&n| self.rendered[n].as_str())
            .collect();
        let meta = meta(path, listing.len(), page, per_page);
        let body = format!(r#"{{"events":[{}],"meta":{meta}}}"#, items.join(","));
        (200, body, None)
    }
}

/// Where page `page` of a list of `total` lies.
fn page_range(total: usize, page: usize, per_page: usize) -> (usize, usize) {
    let from = ((page - 1) * per_page).min(total);
    (from, (from + per_page).min(total))
}

/// Page `page` of `items` (each written as JSON) as the API sends it.
fn paged(key: &str, path: &str, items: &[String], page: usize, per_page: usize) -> String {
    let (from, to) = page_range(items.len(), page, per_page);
    let meta = meta(path, items.len(), page, per_page);
    format!(
        r#"{{"{key}":[{}],"meta":{meta}}}"#,
        items[from..to].join(",")
    )
}

/// The `meta` of page `page` of a list of `total`: `next` (`null` on the
/// last page), `total`, `current_page`, `last_page`. (The spec's `first`,
/// `previous`, `self` and `last` are optional and the client reads none of
/// them, so they are left out: decoding them is a tenth of a seed's time.)
fn meta(path: &str, total: usize, page: usize, per_page: usize) -> String {
    let last_page = total.div_ceil(per_page).max(1);
    let next = if page < last_page {
        format!(
            r#"{{"href":"/metal/v1/{path}?page={}&per_page={per_page}"}}"#,
            page + 1
        )
    } else {
        "null".to_owned()
    };
    format!(r#"{{"next":{next},"total":{total},"current_page":{page},"last_page":{last_page}}}"#)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The simulated API pages as the spec says and dates every answer,
    /// as read by the real client.
    #[test]
    fn the_simulated_api_pages_and_dates_its_answers_for_the_real_client() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let world = Arc::new(World::new(3, Some(&BTreeSet::new())));
            let time = VirtualTime {
                start: tokio::time::Instant::now(),
                epoch: DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            };
            tokio::time::sleep(std::time::Duration::from_secs(100)).await;
            let metal = Arc::new(Metal::new(Arc::clone(&world), time, false));
            let client = metal_events::Client::builder("t".to_owned().into())
                .base_url(BASE_URL)
                .transport(metal)
                .build()
                .unwrap();
            let scope = metal_events::EventScope::Organization(metal_events::OrganizationId::new(
                world.org.clone(),
            ));
            let options = metal_events::ListOptions::new().with_per_page(2);
            let mut pager = client.event_pages(&scope, &options);
            let mut ids = Vec::new();
            while let Some(page) = pager.next_page().await.unwrap() {
                assert_eq!(page.date, Some(time.api(100_000)));
                ids.extend(page.items.iter().map(|e| e.id().unwrap().to_string()));
            }
            let listed: Vec<String> = world
                .listing(List::Org, 100_000)
                .into_iter()
                .map(|n| world.events[n].id.clone())
                .collect();
            assert!(listed.len() > 2, "more than one page");
            assert_eq!(ids, listed);
            assert!(client.api_now().unwrap() >= time.api(100_000));
        });
    }
}
