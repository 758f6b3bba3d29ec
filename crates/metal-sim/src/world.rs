//! The simulated Metal world: organizations, projects, devices and the event
//! log, with the per-list indexes that make every page a slice.
//!
//! Events are kept once, in creation order, each with its JSON pre-serialized.
//! Every list (a device's, a project's, an organization's, the user's) is a
//! vector of positions into that log, so a page costs `O(per_page)` whatever
//! the history's size, and "newest first" is a walk from the end.

use std::collections::HashMap;
use std::time::SystemTime;

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::util::uuid;

/// Where an event belongs: which list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventScope {
    /// An organization-level event (API keys, memberships, org changes).
    Organization,
    /// A project-level event (project updates, memberships, API keys).
    Project,
    /// A device event; also shown in its project's list when configured.
    Device,
}

/// One event the simulator generated, as a test sees it: enough to check that
/// every event reached the sink exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event id (a UUID).
    pub id: String,
    /// The event type, e.g. `provisioning.110`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `created_at` as the API reports it (whole seconds).
    pub created_at: DateTime<Utc>,
    /// When the event became visible through the API (wall clock). History
    /// events carry the simulator's start time.
    pub visible_at: SystemTime,
    /// Which list owns the event.
    pub scope: EventScope,
    /// The organization the event belongs to.
    pub organization_id: String,
    /// The project, for project and device events.
    pub project_id: Option<String>,
    /// The device, for device events.
    pub device_id: Option<String>,
}

/// An event in the log.
pub(crate) struct StoredEvent {
    pub(crate) id: Box<str>,
    pub(crate) event_type: &'static str,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) visible_at: SystemTime,
    pub(crate) org: u32,
    pub(crate) project: Option<u32>,
    pub(crate) device: Option<u32>,
    /// The pre-serialized JSON object.
    pub(crate) json: Box<str>,
}

pub(crate) struct Org {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) projects: Vec<u32>,
    /// Organization-level events only.
    pub(crate) own_events: Vec<u32>,
    /// Every event of the organization, its projects and their devices.
    pub(crate) all_events: Vec<u32>,
}

pub(crate) struct Project {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) org: u32,
    pub(crate) created_at: DateTime<Utc>,
    /// Live (not deleted) devices, in creation order.
    pub(crate) devices: Vec<u32>,
    /// Project-level events only.
    pub(crate) own_events: Vec<u32>,
    /// Project-level events and its devices' events.
    pub(crate) all_events: Vec<u32>,
}

pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) hostname: String,
    pub(crate) project: u32,
    pub(crate) deleted: bool,
    pub(crate) json: Box<str>,
    pub(crate) events: Vec<u32>,
}

/// The kinds of event the simulator produces, with realistic bodies.
/// `{{ user }}` and `{{ hostname }}` are interpolated as the real API does.
struct Kind {
    event_type: &'static str,
    body: &'static str,
    by_user: bool,
}

static PROVISIONING: [Kind; 10] = [
    kind("provisioning.101", "Provision started", false),
    kind("provisioning.102", "Network configured", false),
    kind(
        "provisioning.103",
        "Configuration written, network details requested",
        false,
    ),
    kind(
        "provisioning.104",
        "Connected to magic install system",
        false,
    ),
    kind("provisioning.105", "Server partitions created", false),
    kind(
        "provisioning.106",
        "Operating system packages installed",
        false,
    ),
    kind(
        "provisioning.107",
        "Server networking interfaces configured",
        false,
    ),
    kind(
        "provisioning.108",
        "Cloud-init packages installed and configured",
        false,
    ),
    kind(
        "provisioning.109",
        "Installation finished, rebooting server",
        false,
    ),
    kind(
        "provisioning.110",
        "Provision complete! Your device is ready to go.",
        false,
    ),
];

static DEVICE_LIFE: [Kind; 6] = [
    kind(
        "instance.power_off",
        "{{ user }} powered off {{ hostname }}",
        true,
    ),
    kind(
        "instance.power_on",
        "{{ user }} powered on {{ hostname }}",
        true,
    ),
    kind(
        "instance.reboot",
        "{{ user }} rebooted {{ hostname }}",
        true,
    ),
    kind(
        "instance.reinstall",
        "{{ user }} started a reinstall of {{ hostname }}",
        true,
    ),
    kind("instance.update", "{{ user }} updated {{ hostname }}", true),
    kind(
        "instance.rescue",
        "{{ user }} booted {{ hostname }} into rescue mode",
        true,
    ),
];

static DEVICE_DELETED: Kind = kind(
    "instance.deleted",
    "{{ user }} deleted {{ hostname }}",
    true,
);
static DEVICE_CREATED: Kind = kind(
    "instance.created",
    "{{ user }} created {{ hostname }}",
    true,
);

static PROJECT_LIFE: [Kind; 5] = [
    kind(
        "project.updated",
        "{{ user }} updated the project {{ project }}",
        true,
    ),
    kind(
        "api_key.created",
        "{{ user }} created a project API key",
        true,
    ),
    kind(
        "api_key.deleted",
        "{{ user }} deleted a project API key",
        true,
    ),
    kind(
        "membership.added",
        "{{ user }} added {{ member }} to {{ project }}",
        true,
    ),
    kind(
        "membership.removed",
        "{{ user }} removed {{ member }} from {{ project }}",
        true,
    ),
];

static ORG_LIFE: [Kind; 5] = [
    kind(
        "organization.updated",
        "{{ user }} updated the organization {{ organization }}",
        true,
    ),
    kind("api_key.created", "{{ user }} created a user API key", true),
    kind(
        "invitation.created",
        "{{ user }} invited {{ member }} to {{ organization }}",
        true,
    ),
    kind(
        "membership.added",
        "{{ member }} joined {{ organization }}",
        true,
    ),
    kind(
        "membership.removed",
        "{{ user }} removed {{ member }} from {{ organization }}",
        true,
    ),
];

const fn kind(event_type: &'static str, body: &'static str, by_user: bool) -> Kind {
    Kind {
        event_type,
        body,
        by_user,
    }
}

const USERS: [(&str, &str); 4] = [
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Ken Thompson", "ken@example.com"),
    ("Barbara Liskov", "barbara@example.com"),
];

const TOPICS: [&str; 8] = [
    "EKS",
    "Edge",
    "Build",
    "Staging",
    "Storage",
    "Analytics",
    "Lab",
    "Core",
];
const PLANS: [&str; 4] = [
    "c3-small-x86",
    "m3-large-x86",
    "c3-medium-x86",
    "s3-xlarge-x86",
];

/// Settings the world needs to grow.
pub(crate) struct WorldShape {
    pub(crate) base_path: String,
    pub(crate) org_id: Option<String>,
    pub(crate) org_name: String,
    pub(crate) projects: usize,
    pub(crate) devices_per_project: usize,
    pub(crate) history_per_device: usize,
    pub(crate) history_per_project: usize,
    pub(crate) history_per_org: usize,
    pub(crate) history_span: ChronoDuration,
    pub(crate) history_end: DateTime<Utc>,
    pub(crate) project_share: f64,
    pub(crate) org_share: f64,
    /// The API's clock minus this host's.
    pub(crate) clock_offset: ChronoDuration,
}

/// Everything the Metal simulator serves.
pub(crate) struct World {
    pub(crate) base_path: String,
    pub(crate) orgs: Vec<Org>,
    pub(crate) projects: Vec<Project>,
    pub(crate) devices: Vec<Device>,
    pub(crate) events: Vec<StoredEvent>,
    pub(crate) org_by_id: HashMap<String, u32>,
    pub(crate) project_by_id: HashMap<String, u32>,
    pub(crate) device_by_id: HashMap<String, u32>,
    pub(crate) event_by_id: HashMap<Box<str>, u32>,
    pub(crate) rng: StdRng,
    project_share: f64,
    org_share: f64,
    /// The newest `created_at` so far; new events never go back in time.
    last_created: DateTime<Utc>,
    /// The API's clock minus this host's: new events are dated by it.
    clock_offset: ChronoDuration,
    device_seq: usize,
}

/// An event about to be stored.
struct Pending {
    org: u32,
    project: Option<u32>,
    device: Option<u32>,
    kind: &'static Kind,
    at: DateTime<Utc>,
}

fn idx(n: usize) -> u32 {
    u32::try_from(n).expect("the simulator holds fewer than 2^32 items")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl World {
    /// Builds the fleet and its history.
    pub(crate) fn generate(shape: &WorldShape, rng: StdRng) -> Self {
        let start = shape.history_end - shape.history_span;
        let mut world = World {
            base_path: shape.base_path.clone(),
            orgs: Vec::new(),
            projects: Vec::new(),
            devices: Vec::new(),
            events: Vec::new(),
            org_by_id: HashMap::new(),
            project_by_id: HashMap::new(),
            device_by_id: HashMap::new(),
            event_by_id: HashMap::new(),
            rng,
            clock_offset: shape.clock_offset,
            project_share: shape.project_share,
            org_share: shape.org_share,
            last_created: shape.history_end,
            device_seq: 0,
        };
        let org_id = shape.org_id.clone().unwrap_or_else(|| uuid(&mut world.rng));
        let home = world.add_org(org_id, shape.org_name.clone(), start);
        let foreign_id = uuid(&mut world.rng);
        let foreign = world.add_org(foreign_id, "Someone Else Inc.".to_owned(), start);

        let mut pending = Vec::new();
        for p in 0..shape.projects {
            let name = format!("{} Project {:02}", TOPICS[p % TOPICS.len()], p + 1);
            let project = world.add_project(home, name, start);
            for _ in 0..shape.devices_per_project {
                let device = world.add_device(project, start);
                world.device_history(device, shape, &mut pending);
            }
            for _ in 0..shape.history_per_project {
                let at = world.random_time(start, shape.history_end);
                pending.push(Pending {
                    org: home,
                    project: Some(project),
                    device: None,
                    kind: pick(&mut world.rng, &PROJECT_LIFE),
                    at,
                });
            }
        }
        // The foreign organization: one project with two devices, visible
        // only through `GET /projects`.
        let project = world.add_project(foreign, "Not Ours Project".to_owned(), start);
        for _ in 0..2 {
            let device = world.add_device(project, start);
            world.device_history(device, shape, &mut pending);
        }
        for org in [home, foreign] {
            for _ in 0..shape.history_per_org {
                let at = world.random_time(start, shape.history_end);
                pending.push(Pending {
                    org,
                    project: None,
                    device: None,
                    kind: pick(&mut world.rng, &ORG_LIFE),
                    at,
                });
            }
        }
        pending.sort_by_key(|p| p.at);
        let now = SystemTime::now();
        for p in pending {
            world.store(p, now);
        }
        world
    }

    fn random_time(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
        let span = (to - from).num_seconds().max(1);
        from + ChronoDuration::seconds(self.rng.random_range(0..span))
    }

    /// A device's history: the ten provisioning steps a few seconds apart,
    /// then power, reboot and reinstall events spread until `history_end`.
    fn device_history(&mut self, device: u32, shape: &WorldShape, pending: &mut Vec<Pending>) {
        let n = shape.history_per_device;
        if n == 0 {
            return;
        }
        let d = &self.devices[device as usize];
        let (project, org) = (d.project, self.projects[d.project as usize].org);
        let span = shape.history_span.num_seconds().max(60);
        // Provisioned somewhere in the first half of the span.
        let mut at = shape.history_end - shape.history_span
            + ChronoDuration::seconds(self.rng.random_range(0..span / 2));
        for i in 0..n {
            let kind = if let Some(step) = PROVISIONING.get(i) {
                at += ChronoDuration::seconds(self.rng.random_range(5..90));
                step
            } else {
                let left = (shape.history_end - at).num_seconds().max(1);
                let remaining = i64::try_from(n - i).unwrap_or(i64::MAX);
                at += ChronoDuration::seconds(self.rng.random_range(0..=(left / remaining).max(1)));
                pick(&mut self.rng, &DEVICE_LIFE)
            };
            pending.push(Pending {
                org,
                project: Some(project),
                device: Some(device),
                kind,
                at: at.min(shape.history_end),
            });
        }
    }

    fn add_org(&mut self, id: String, name: String, created_at: DateTime<Utc>) -> u32 {
        let i = idx(self.orgs.len());
        self.org_by_id.insert(id.clone(), i);
        self.orgs.push(Org {
            id,
            name,
            created_at,
            projects: Vec::new(),
            own_events: Vec::new(),
            all_events: Vec::new(),
        });
        i
    }

    fn add_project(&mut self, org: u32, name: String, created_at: DateTime<Utc>) -> u32 {
        let i = idx(self.projects.len());
        let id = uuid(&mut self.rng);
        self.project_by_id.insert(id.clone(), i);
        self.orgs[org as usize].projects.push(i);
        self.projects.push(Project {
            id,
            name,
            org,
            created_at,
            devices: Vec::new(),
            own_events: Vec::new(),
            all_events: Vec::new(),
        });
        i
    }

    pub(crate) fn add_device(&mut self, project: u32, created_at: DateTime<Utc>) -> u32 {
        let i = idx(self.devices.len());
        let id = uuid(&mut self.rng);
        self.device_seq += 1;
        let hostname = format!(
            "{}-{:02}",
            PLANS[self.device_seq % PLANS.len()],
            self.device_seq
        );
        let short_id = id[..8].to_owned();
        let base = &self.base_path;
        let json = json!({
            "id": id,
            "short_id": short_id,
            "hostname": hostname,
            "state": "active",
            "href": format!("{base}/devices/{id}"),
            "created_at": rfc3339(created_at),
            "updated_at": rfc3339(created_at),
            "plan": { "slug": PLANS[self.device_seq % PLANS.len()].replace("-x86", ".x86") },
            "project": { "href": format!("{base}/projects/{}", self.projects[project as usize].id) },
            "tags": [],
        })
        .to_string();
        self.device_by_id.insert(id.clone(), i);
        self.projects[project as usize].devices.push(i);
        self.devices.push(Device {
            id,
            hostname,
            project,
            deleted: false,
            json: json.into(),
            events: Vec::new(),
        });
        i
    }

    /// Stores one event and indexes it in every list that shows it.
    fn store(&mut self, p: Pending, visible_at: SystemTime) -> u32 {
        let i = idx(self.events.len());
        let id = uuid(&mut self.rng);
        let (user, email) = USERS[self.rng.random_range(0..USERS.len())];
        let (member, _) = USERS[self.rng.random_range(0..USERS.len())];
        let org = &self.orgs[p.org as usize];
        let project = p.project.map(|x| &self.projects[x as usize]);
        let device = p.device.map(|x| &self.devices[x as usize]);
        let interpolated = p
            .kind
            .body
            .replace("{{ user }}", user)
            .replace("{{ member }}", member)
            .replace("{{ hostname }}", device.map_or("", |d| d.hostname.as_str()))
            .replace("{{ project }}", project.map_or("", |x| x.name.as_str()))
            .replace("{{ organization }}", &org.name);
        let relationship = match (device, project) {
            (Some(d), _) => format!("#{}", d.id),
            (None, Some(x)) => format!("#{}", x.id),
            (None, None) => format!("#{}", org.id),
        };
        let ip = format!("198.51.100.{}", self.rng.random_range(1..=254));
        let modified_by = if p.kind.by_user {
            json!({ "id": "", "full_name": user, "email": email, "href": "" })
        } else {
            json!({ "id": null, "full_name": "Equinix Metal", "href": null })
        };
        let state = if p.kind.event_type.starts_with("provisioning.") {
            json!("done")
        } else {
            Value::Null
        };
        let base = &self.base_path;
        let json = json!({
            "id": id,
            "state": state,
            "type": p.kind.event_type,
            "body": if p.kind.by_user { p.kind.body.to_owned() } else { interpolated.clone() },
            "interpolated": interpolated,
            "relationships": [{ "href": relationship }],
            "modified_by": modified_by,
            "ip": ip,
            "created_at": rfc3339(p.at),
            "href": format!("{base}/events/{id}"),
        })
        .to_string();
        self.event_by_id.insert(id.clone().into(), i);
        self.orgs[p.org as usize].all_events.push(i);
        match (p.project, p.device) {
            (_, Some(d)) => {
                self.devices[d as usize].events.push(i);
                self.projects[p.project.unwrap_or(self.devices[d as usize].project) as usize]
                    .all_events
                    .push(i);
            }
            (Some(x), None) => {
                let project = &mut self.projects[x as usize];
                project.own_events.push(i);
                project.all_events.push(i);
            }
            (None, None) => self.orgs[p.org as usize].own_events.push(i),
        }
        self.last_created = self.last_created.max(p.at);
        self.events.push(StoredEvent {
            id: id.into(),
            event_type: p.kind.event_type,
            created_at: p.at,
            visible_at,
            org: p.org,
            project: p.project,
            device: p.device,
            json: json.into(),
        });
        i
    }

    /// Generates one new event now, on a random live device, project or the
    /// configured organization (the foreign one stays quiet).
    pub(crate) fn emit_random(&mut self) -> u32 {
        let at = self.now().max(self.last_created);
        let home = 0;
        let projects = self.orgs[home as usize].projects.len();
        let dice: f64 = self.rng.random();
        let pending = if dice < self.org_share || projects == 0 {
            Pending {
                org: home,
                project: None,
                device: None,
                kind: pick(&mut self.rng, &ORG_LIFE),
                at,
            }
        } else {
            let project = self.orgs[home as usize].projects[self.rng.random_range(0..projects)];
            let devices = self.projects[project as usize].devices.len();
            if dice < self.org_share + self.project_share || devices == 0 {
                Pending {
                    org: home,
                    project: Some(project),
                    device: None,
                    kind: pick(&mut self.rng, &PROJECT_LIFE),
                    at,
                }
            } else {
                let device =
                    self.projects[project as usize].devices[self.rng.random_range(0..devices)];
                Pending {
                    org: home,
                    project: Some(project),
                    device: Some(device),
                    kind: pick(&mut self.rng, &DEVICE_LIFE),
                    at,
                }
            }
        };
        self.store(pending, SystemTime::now())
    }

    /// The API's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    /// Generates one event for a given device dated `at` (which may lie in
    /// the past: an event the API lists late), placed in every list where
    /// its time puts it, as an API that lists by `created_at` does.
    pub(crate) fn emit_for_device_at(&mut self, device: u32, at: DateTime<Utc>) -> u32 {
        let project = self.devices[device as usize].project;
        let org = self.projects[project as usize].org;
        let kind = pick(&mut self.rng, &DEVICE_LIFE);
        let i = self.store(
            Pending {
                org,
                project: Some(project),
                device: Some(device),
                kind,
                at,
            },
            SystemTime::now(),
        );
        let events = &self.events;
        let place = |list: &mut Vec<u32>| {
            if list.last() == Some(&i) {
                list.pop();
                let at = list.partition_point(|&e| {
                    events[e as usize].created_at <= events[i as usize].created_at
                });
                list.insert(at, i);
            }
        };
        place(&mut self.devices[device as usize].events);
        place(&mut self.projects[project as usize].all_events);
        place(&mut self.orgs[org as usize].all_events);
        i
    }

    /// Moves event `i` to `position` (from 1, the newest) of its device's
    /// list: a list out of order. False when it belongs to no device.
    pub(crate) fn list_at(&mut self, i: u32, position: usize) -> bool {
        let Some(device) = self.events[i as usize].device else {
            return false;
        };
        let list = &mut self.devices[device as usize].events;
        let Some(at) = list.iter().position(|&e| e == i) else {
            return false;
        };
        list.remove(at);
        let to = list.len().saturating_sub(position.saturating_sub(1));
        list.insert(to, i);
        true
    }

    /// Generates one event now for a given device.
    pub(crate) fn emit_for_device(&mut self, device: u32) -> u32 {
        let at = self.now().max(self.last_created);
        self.emit_for_device_at(device, at)
    }

    /// Adds a device to a project now, with an `instance.created` event and
    /// its provisioning steps.
    pub(crate) fn create_device(&mut self, project: u32) -> u32 {
        let at = self.now().max(self.last_created);
        let device = self.add_device(project, at);
        let org = self.projects[project as usize].org;
        let now = SystemTime::now();
        self.store(
            Pending {
                org,
                project: Some(project),
                device: Some(device),
                kind: &DEVICE_CREATED,
                at,
            },
            now,
        );
        for kind in &PROVISIONING {
            self.store(
                Pending {
                    org,
                    project: Some(project),
                    device: Some(device),
                    kind,
                    at,
                },
                now,
            );
        }
        device
    }

    /// Deletes a device: an `instance.deleted` event, then its lists answer 404.
    pub(crate) fn delete_device(&mut self, device: u32) {
        let at = self.now().max(self.last_created);
        let project = self.devices[device as usize].project;
        let org = self.projects[project as usize].org;
        self.store(
            Pending {
                org,
                project: Some(project),
                device: Some(device),
                kind: &DEVICE_DELETED,
                at,
            },
            SystemTime::now(),
        );
        self.devices[device as usize].deleted = true;
        self.projects[project as usize]
            .devices
            .retain(|&d| d != device);
    }

    /// The record of one stored event.
    pub(crate) fn record(&self, i: u32) -> EventRecord {
        let e = &self.events[i as usize];
        let scope = match (e.project, e.device) {
            (_, Some(_)) => EventScope::Device,
            (Some(_), None) => EventScope::Project,
            (None, None) => EventScope::Organization,
        };
        EventRecord {
            id: e.id.to_string(),
            event_type: e.event_type.to_owned(),
            created_at: e.created_at,
            visible_at: e.visible_at,
            scope,
            organization_id: self.orgs[e.org as usize].id.clone(),
            project_id: e.project.map(|p| self.projects[p as usize].id.clone()),
            device_id: e.device.map(|d| self.devices[d as usize].id.clone()),
        }
    }

    pub(crate) fn org_json(&self, o: u32) -> Value {
        let org = &self.orgs[o as usize];
        let base = &self.base_path;
        json!({
            "id": org.id,
            "name": org.name,
            "href": format!("{base}/organizations/{}", org.id),
            "created_at": rfc3339(org.created_at),
            "updated_at": rfc3339(org.created_at),
            "projects": org.projects.iter().map(|p| json!({ "href": format!("{base}/projects/{}", self.projects[*p as usize].id) })).collect::<Vec<_>>(),
        })
    }

    pub(crate) fn project_json(&self, p: u32) -> String {
        let project = &self.projects[p as usize];
        let base = &self.base_path;
        json!({
            "id": project.id,
            "name": project.name,
            "href": format!("{base}/projects/{}", project.id),
            "created_at": rfc3339(project.created_at),
            "updated_at": rfc3339(project.created_at),
            "organization": { "href": format!("{base}/organizations/{}", self.orgs[project.org as usize].id) },
            "devices": [],
        })
        .to_string()
    }
}

fn pick<'a>(rng: &mut StdRng, kinds: &'a [Kind]) -> &'a Kind {
    &kinds[rng.random_range(0..kinds.len())]
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rand::SeedableRng;

    use super::*;

    fn world() -> World {
        let shape = WorldShape {
            base_path: "/metal/v1".to_owned(),
            org_id: Some("org".to_owned()),
            org_name: "Direktiv".to_owned(),
            projects: 3,
            devices_per_project: 4,
            history_per_device: 20,
            history_per_project: 2,
            history_per_org: 2,
            history_span: ChronoDuration::days(3),
            history_end: Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap(),
            project_share: 0.1,
            org_share: 0.1,
            clock_offset: ChronoDuration::zero(),
        };
        World::generate(&shape, StdRng::seed_from_u64(3))
    }

    #[test]
    fn the_log_and_every_list_run_oldest_to_newest() {
        let mut world = world();
        for _ in 0..50 {
            world.emit_random();
        }
        let ascending = |list: &[u32]| {
            list.windows(2).all(|w| {
                w[0] < w[1]
                    && world.events[w[0] as usize].created_at
                        <= world.events[w[1] as usize].created_at
            })
        };
        let all: Vec<u32> = (0..world.events.len() as u32).collect();
        assert!(ascending(&all));
        assert!(world.devices.iter().all(|d| ascending(&d.events)));
        assert!(
            world
                .projects
                .iter()
                .all(|p| ascending(&p.all_events) && ascending(&p.own_events))
        );
        assert_eq!(world.events.len(), (12 + 2) * 20 + 3 * 2 + 2 * 2 + 50);
    }

    #[test]
    fn a_device_history_starts_with_the_provisioning_steps() {
        let world = world();
        let device = &world.devices[5];
        let types: Vec<&str> = device
            .events
            .iter()
            .map(|&i| world.events[i as usize].event_type)
            .collect();
        assert_eq!(types[0], "provisioning.101");
        assert_eq!(types[9], "provisioning.110");
        assert!(types[10..].iter().all(|t| t.starts_with("instance.")));
        let json: Value =
            serde_json::from_str(&world.events[device.events[0] as usize].json).unwrap();
        assert_eq!(json["relationships"][0]["href"], format!("#{}", device.id));
        assert_eq!(json["interpolated"], "Provision started");
    }
}
