//! [`SourceKey`]: the tracker's name for one event list, built and parsed
//! here only.

use std::fmt;

use metal_events::{DeviceId, EventScope, OrganizationId, ProjectId};

/// Which event list a tracker source is: written `project:<id>`,
/// `device:<id>` or `organization:<id>` in the state file, the logs and the
/// error events.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// `/projects/{id}/events`.
    Project(ProjectId),
    /// `/devices/{id}/events`.
    Device(DeviceId),
    /// `/organizations/{id}/events`.
    Organization(OrganizationId),
}

impl SourceKey {
    /// The key of the list `scope` names; `None` for `GET /events`, which
    /// no tracker source reads.
    pub fn of_scope(scope: &EventScope) -> Option<Self> {
        match scope {
            EventScope::Project(id) => Some(Self::Project(id.clone())),
            EventScope::Device(id) => Some(Self::Device(id.clone())),
            EventScope::Organization(id) => Some(Self::Organization(id.clone())),
            _ => None,
        }
    }

    /// The key written as `key`, or `None` when it names no known list.
    pub fn parse(key: &str) -> Option<Self> {
        let (kind, id) = key.split_once(':')?;
        if id.is_empty() {
            return None;
        }
        let id = id.to_owned();
        match kind {
            "project" => Some(Self::Project(ProjectId::new(id))),
            "device" => Some(Self::Device(DeviceId::new(id))),
            "organization" => Some(Self::Organization(OrganizationId::new(id))),
            _ => None,
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Project(id) => write!(f, "project:{id}"),
            Self::Device(id) => write!(f, "device:{id}"),
            Self::Organization(id) => write!(f, "organization:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_written() {
        let keys = [
            SourceKey::Project(ProjectId::new("p1".to_owned())),
            SourceKey::Device(DeviceId::new("d1".to_owned())),
            SourceKey::Organization(OrganizationId::new("o1".to_owned())),
        ];
        let written: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(written, ["project:p1", "device:d1", "organization:o1"]);
        for (key, text) in keys.iter().zip(&written) {
            assert_eq!(SourceKey::parse(text).as_ref(), Some(key));
        }
    }

    #[test]
    fn other_text_is_no_key() {
        for text in ["", "device", "device:", "vlan:v1", "d1"] {
            assert_eq!(SourceKey::parse(text), None, "{text}");
        }
    }
}
