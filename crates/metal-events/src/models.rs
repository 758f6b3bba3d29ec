//! API models: the Metal API's JSON shapes, tolerant of `null`, of missing and
//! of unknown fields.
//!
//! Every field the spec lists is optional here, because the spec marks none as
//! required and real responses carry `null` for absent strings. A field whose
//! value has an unexpected type is read as absent rather than failing the whole
//! page; an [`Event`] keeps the raw JSON object it was read from, so nothing
//! the API sent is lost on the way to Direktiv.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id as the API spells it (usually a UUID).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the id into its string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_newtype!(
    /// The id of a Metal event.
    EventId
);
id_newtype!(
    /// The id of a Metal organization.
    OrganizationId
);
id_newtype!(
    /// The id of a Metal project.
    ProjectId
);
id_newtype!(
    /// The id of a Metal device (a server).
    DeviceId
);

/// Reads a value of any shape and keeps it only when it has the expected type:
/// `null`, a missing field and a mistyped value all become `None`.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// Reads a list field where `null` means an empty list. Elements are strict,
/// so a malformed element fails with the path that names it.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A reference to another resource: `{"href": "/metal/v1/devices/<uuid>"}`,
/// or `{"href": "#<uuid>"}` in event relationships.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Href {
    /// The reference: a path, an absolute URL, or `#<uuid>`.
    pub href: String,
}

impl Href {
    /// A reference to `href`.
    pub fn new(href: impl Into<String>) -> Self {
        Self { href: href.into() }
    }
}

/// Pagination metadata of a list response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Meta {
    /// The first page.
    #[serde(default, deserialize_with = "lenient")]
    pub first: Option<Href>,
    /// The previous page; absent on the first.
    #[serde(default, deserialize_with = "lenient")]
    pub previous: Option<Href>,
    /// This page.
    #[serde(default, rename = "self", deserialize_with = "lenient")]
    pub self_: Option<Href>,
    /// The next page; absent or `null` on the last.
    #[serde(default, deserialize_with = "lenient")]
    pub next: Option<Href>,
    /// The last page.
    #[serde(default, deserialize_with = "lenient")]
    pub last: Option<Href>,
    /// How many items the whole list holds.
    #[serde(default, deserialize_with = "lenient")]
    pub total: Option<u64>,
    /// This page's number, from 1.
    #[serde(default, deserialize_with = "lenient")]
    pub current_page: Option<u64>,
    /// The last page's number.
    #[serde(default, deserialize_with = "lenient")]
    pub last_page: Option<u64>,
}

/// The error body the API sends with 4xx and 5xx answers: either `error` or
/// `errors` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorBody {
    /// A single message.
    #[serde(default, deserialize_with = "lenient")]
    pub error: Option<String>,
    /// Several messages.
    #[serde(default, deserialize_with = "lenient")]
    pub errors: Option<Vec<String>>,
}

impl ErrorBody {
    /// The message(s) joined with `; `, or `None` when the body named none.
    pub fn message(&self) -> Option<String> {
        let mut parts: Vec<&str> = Vec::new();
        if let Some(error) = self.error.as_deref().filter(|e| !e.is_empty()) {
            parts.push(error);
        }
        parts.extend(
            self.errors
                .iter()
                .flatten()
                .map(String::as_str)
                .filter(|e| !e.is_empty()),
        );
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// A Metal organization.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Organization {
    /// The organization's id.
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<OrganizationId>,
    /// Its name, as shown in the console.
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    /// Its API path.
    #[serde(default, deserialize_with = "lenient")]
    pub href: Option<String>,
    /// When it was created.
    #[serde(default, deserialize_with = "lenient")]
    pub created_at: Option<DateTime<Utc>>,
}

/// A Metal project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Project {
    /// The project's id.
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<ProjectId>,
    /// Its name.
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    /// Its API path.
    #[serde(default, deserialize_with = "lenient")]
    pub href: Option<String>,
    /// When it was created.
    #[serde(default, deserialize_with = "lenient")]
    pub created_at: Option<DateTime<Utc>>,
}

/// The state of a device. Open: a state this version does not know is kept in
/// [`DeviceState::Other`] instead of failing the list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeviceState {
    /// Created, waiting for the provisioner.
    Queued,
    /// Being provisioned.
    Provisioning,
    /// Being deprovisioned after deletion.
    Deprovisioning,
    /// Being reinstalled with a new operating system.
    Reinstalling,
    /// Provisioned and powered on.
    Active,
    /// Powered off.
    Inactive,
    /// Provisioning or deprovisioning failed.
    Failed,
    /// Powering on.
    PoweringOn,
    /// Powering off.
    PoweringOff,
    /// Deleted.
    Deleted,
    /// A state this version does not know, as the API spelled it.
    #[serde(untagged)]
    Other(String),
}

/// A Metal device (a server).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Device {
    /// The device's id.
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<DeviceId>,
    /// The short id the console shows.
    #[serde(default, deserialize_with = "lenient")]
    pub short_id: Option<String>,
    /// Its hostname.
    #[serde(default, deserialize_with = "lenient")]
    pub hostname: Option<String>,
    /// Its state.
    #[serde(default, deserialize_with = "lenient")]
    pub state: Option<DeviceState>,
    /// Its API path.
    #[serde(default, deserialize_with = "lenient")]
    pub href: Option<String>,
    /// When it was created.
    #[serde(default, deserialize_with = "lenient")]
    pub created_at: Option<DateTime<Utc>>,
    /// When it last changed.
    #[serde(default, deserialize_with = "lenient")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// A Metal event: a typed view of every field the spec lists, and the raw JSON
/// object exactly as the API sent it (unknown fields included).
///
/// The typed view is read from the raw object and cannot be edited, so the
/// two never disagree: an event is built only by deserializing it (from JSON
/// text or a `serde_json::Value`) or from a raw object with
/// [`Event::from_raw`], and read through its accessors.
///
/// Deserializing never fails on an object: a field with an unexpected type is
/// `None` in the typed view and still present in [`Event::raw`]. Serializing
/// writes the JSON text the event was read from back unchanged
/// ([`Event::raw_json`]), in the API's key order whatever the features of
/// `serde_json`.
///
/// ```
/// use metal_events::Event;
/// let event: Event = serde_json::from_str(
///     r#"{"type":"provisioning.110","id":"e1","body":"Provisioning started"}"#,
/// )?;
/// assert_eq!(event.id().map(|id| id.as_str()), Some("e1"));
/// assert_eq!(event.event_type(), Some("provisioning.110"));
/// assert_eq!(
///     serde_json::to_string(&event)?,
///     r#"{"type":"provisioning.110","id":"e1","body":"Provisioning started"}"#,
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// Its fields cannot be set from outside:
///
/// ```compile_fail
/// let mut event: metal_events::Event = serde_json::from_str(r#"{"id":"e1"}"#).unwrap();
/// event.event_type = Some("instance.deleted".into());
/// ```
#[derive(Debug, Clone)]
pub struct Event {
    id: Option<EventId>,
    event_type: Option<String>,
    body: Option<String>,
    state: Option<String>,
    interpolated: Option<String>,
    created_at: Option<DateTime<Utc>>,
    href: Option<String>,
    relationships: Vec<Href>,
    modified_by: Option<Map<String, Value>>,
    ip: Option<String>,
    raw: Map<String, Value>,
    /// The JSON text of `raw`, in the order it was read.
    json: Box<RawValue>,
}

impl Event {
    /// Builds an event from a raw JSON object, as the API would send it.
    /// Serializing the event writes the object in its own key order.
    pub fn from_raw(raw: Map<String, Value>) -> Self {
        let json = serde_json::value::to_raw_value(&raw)
            .expect("a JSON object with string keys always serializes");
        Self::read(raw, json)
    }

    /// The typed view of `raw`, whose JSON text is `json`.
    fn read(raw: Map<String, Value>, json: Box<RawValue>) -> Self {
        // Read straight from the map: no serde round trip per field, since
        // this runs for every event of every page.
        let string = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_owned);
        Self {
            id: string("id").map(EventId),
            event_type: string("type"),
            body: string("body"),
            state: string("state"),
            interpolated: string("interpolated"),
            created_at: raw
                .get("created_at")
                .and_then(Value::as_str)
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .map(|at| at.with_timezone(&Utc)),
            href: string("href"),
            relationships: match raw.get("relationships") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|item| item.get("href").and_then(Value::as_str))
                    .map(|href| Href {
                        href: href.to_owned(),
                    })
                    .collect(),
                _ => Vec::new(),
            },
            modified_by: raw.get("modified_by").and_then(Value::as_object).cloned(),
            ip: string("ip"),
            raw,
            json,
        }
    }

    /// The event's id (a UUID).
    pub fn id(&self) -> Option<&EventId> {
        self.id.as_ref()
    }

    /// Its type, such as `provisioning.110` (the JSON field `type`).
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// Its message.
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// Its state; often `null`.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The message with names filled in.
    pub fn interpolated(&self) -> Option<&str> {
        self.interpolated.as_deref()
    }

    /// When it happened.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }

    /// Its API path.
    pub fn href(&self) -> Option<&str> {
        self.href.as_deref()
    }

    /// The resources it concerns, often `#<device uuid>`.
    pub fn relationships(&self) -> &[Href] {
        &self.relationships
    }

    /// Who made the change, as an object.
    pub fn modified_by(&self) -> Option<&Map<String, Value>> {
        self.modified_by.as_ref()
    }

    /// The IP address the change came from.
    pub fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }

    /// The JSON object as the API sent it, unknown fields included. Its key
    /// order is the API's only where `serde_json`'s `preserve_order` feature
    /// is on; [`Event::raw_json`] keeps it always.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The JSON text of the object, as the API sent it.
    pub fn raw_json(&self) -> &str {
        self.json.get()
    }

    /// Unwraps the event into its raw JSON object.
    pub fn into_raw(self) -> Map<String, Value> {
        self.raw
    }
}

/// Two events are equal when their raw objects are: the typed view is read
/// from it, and the text's spacing does not count.
impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The text first, so that its key order is kept without
        // `preserve_order`; then the object, read from it.
        let json = Box::<RawValue>::deserialize(deserializer)?;
        let raw = serde_json::from_str(json.get()).map_err(serde::de::Error::custom)?;
        Ok(Self::read(raw, json))
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// A page of events: `{"events": [...], "meta": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventList {
    /// The events of this page (in practice newest first; not guaranteed).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub events: Vec<Event>,
    /// Pagination metadata.
    #[serde(default, deserialize_with = "lenient")]
    pub meta: Option<Meta>,
}

/// A page of projects: `{"projects": [...], "meta": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProjectList {
    /// The projects of this page.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub projects: Vec<Project>,
    /// Pagination metadata.
    #[serde(default, deserialize_with = "lenient")]
    pub meta: Option<Meta>,
}

/// A page of devices: `{"devices": [...], "meta": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeviceList {
    /// The devices of this page.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub devices: Vec<Device>,
    /// Pagination metadata.
    #[serde(default, deserialize_with = "lenient")]
    pub meta: Option<Meta>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_keeps_raw_and_reads_nulls_and_unknown_fields() {
        let raw = json!({
            "id": "cbe6eed5-b2ac-4bdb-bd82-b7b88866e200",
            "type": "provisioning.110",
            "state": null,
            "created_at": "2023-02-10T03:56:32Z",
            "relationships": [{"href": "#0caf4d6d"}, {"nope": 1}, "x"],
            "not_in_spec": {"nested": [1, 2]},
        });
        let event: Event = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(
            event.id().unwrap().as_str(),
            "cbe6eed5-b2ac-4bdb-bd82-b7b88866e200"
        );
        assert_eq!(event.event_type(), Some("provisioning.110"));
        assert_eq!(event.state(), None);
        assert_eq!(
            event.relationships(),
            [Href {
                href: "#0caf4d6d".into()
            }]
        );
        assert_eq!(
            event.created_at().unwrap().to_rfc3339(),
            "2023-02-10T03:56:32+00:00"
        );
        assert_eq!(serde_json::to_value(&event).unwrap(), raw);
    }

    #[test]
    fn mistyped_fields_are_absent_not_fatal() {
        let event: Event =
            serde_json::from_value(json!({"id": 7, "created_at": "yesterday", "body": ["x"]}))
                .unwrap();
        assert_eq!(event.id(), None);
        assert_eq!(event.created_at(), None);
        assert_eq!(event.body(), None);
        assert_eq!(event.raw()["id"], json!(7));
    }

    #[test]
    fn unknown_device_state_is_kept() {
        let device: Device =
            serde_json::from_value(json!({"state": "hibernating", "hostname": null})).unwrap();
        assert_eq!(device.state, Some(DeviceState::Other("hibernating".into())));
        let device: Device = serde_json::from_value(json!({"state": "powering_on"})).unwrap();
        assert_eq!(device.state, Some(DeviceState::PoweringOn));
    }

    #[test]
    fn error_body_joins_messages() {
        let body: ErrorBody =
            serde_json::from_value(json!({"errors": ["a", "b"], "error": null})).unwrap();
        assert_eq!(body.message().as_deref(), Some("a; b"));
        let body: ErrorBody = serde_json::from_value(json!({})).unwrap();
        assert_eq!(body.message(), None);
    }

    #[test]
    fn null_lists_are_empty() {
        let list: EventList =
            serde_json::from_value(json!({"events": null, "meta": null})).unwrap();
        assert!(list.events.is_empty());
        assert_eq!(list.meta, None);
    }
}
