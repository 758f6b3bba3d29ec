//! The inventory: the organization's name, its projects and their devices,
//! listed through the organization (never `/projects`, which spans every
//! organization the token can see) and refreshed on its own schedule.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use metal_events::{DeviceId, DeviceState, OrganizationId, ProjectId};

/// A project being polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    /// Its id.
    pub id: ProjectId,
    /// Its name (the id when the API gave none).
    pub name: String,
}

/// A device being polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its id.
    pub id: DeviceId,
    /// Its hostname, when the API gave one.
    pub hostname: Option<String>,
    /// The project it belongs to.
    pub project: ProjectId,
    /// Its state, when the API gave one: a change makes its list hot.
    pub state: Option<DeviceState>,
    /// When the API last changed it: a change makes its list hot.
    pub updated_at: Option<DateTime<Utc>>,
}

/// What the receiver polls: one organization, its projects, their devices.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The organization's id.
    pub org_id: OrganizationId,
    /// The organization's name (the id when the API gave none).
    pub org_name: String,
    /// Its projects, in the API's order.
    pub projects: Vec<ProjectInfo>,
    /// Their devices, by id.
    pub devices: HashMap<DeviceId, DeviceInfo>,
}

impl Inventory {
    /// The project with this id.
    pub fn project(&self, id: &ProjectId) -> Option<&ProjectInfo> {
        self.projects.iter().find(|p| &p.id == id)
    }
}
