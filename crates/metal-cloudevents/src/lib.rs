//! Turns Equinix Metal events into CloudEvents: a pure, deterministic mapper
//! with a Direktiv-compatible `source` and extensions.
//!
//! [`to_cloudevent`] takes a Metal [`Event`](metal_events::Event), the
//! [`Context`] it was found in (its organization, and its project and device
//! when it has them) and [`MapOptions`], and returns a CloudEvents 1.0
//! [`cloudevents::Event`]:
//!
//! | CloudEvent | Value |
//! |---|---|
//! | `specversion` | `1.0` |
//! | `id` | the Metal event id (never repaired: one holding a control character or only whitespace is refused) |
//! | `type` | the Metal event type, after [`MapOptions::type_prefix`] when set (refused like the id) |
//! | `source` | `<prefix>/<org name>/<project name>`, or `<prefix>/<org name>` without a project; each name percent-encoded as one URI path segment |
//! | `time` | the event's `created_at`, absent when it has none or its UTC year is outside 0000 to 9999 (RFC 3339 has four-digit years) |
//! | `datacontenttype` | `application/json` |
//! | `orgid`, `orgname`, `projid`, `projname`, `deviceid`, `hostname` | from the [`Context`], control characters stripped, each only when known and not empty |
//! | `data` | the event's JSON object exactly as the API sent it, unknown fields and key order included |
//!
//! ```
//! use metal_cloudevents::{Context, DeviceRef, MapOptions, OrganizationRef, ProjectRef, to_cloudevent};
//! use metal_events::Event;
//! use cloudevents::AttributesReader;
//!
//! let event: Event = serde_json::from_str(r##"{
//!     "id": "cbe6eed5-b2ac-4bdb-bd82-b7b88866e200",
//!     "type": "provisioning.110",
//!     "body": "Provision complete! Your device is ready to go.",
//!     "created_at": "2023-02-10T03:56:32Z",
//!     "relationships": [{"href": "#0caf4d6d-fafc-470b-86b1-d889eb838afa"}]
//! }"##)?;
//! let ctx = Context::new(OrganizationRef::new("ed49fa53-743f-43aa-836b-e24f88f94d9c", "Direktiv"))
//!     .with_project(ProjectRef::new("d894d0eb-2b6c-4741-b106-c7cb76018d32", "Direktiv EKS Project"))
//!     .with_device(DeviceRef::new("0caf4d6d-fafc-470b-86b1-d889eb838afa", Some("c3-small-x86-01".into())));
//!
//! let ce = to_cloudevent(&event, &ctx, &MapOptions::default())?;
//! assert_eq!(ce.id(), "cbe6eed5-b2ac-4bdb-bd82-b7b88866e200");
//! assert_eq!(ce.ty(), "provisioning.110");
//! assert_eq!(ce.source(), "direktiv/listener/equinix/Direktiv/Direktiv%20EKS%20Project");
//! assert_eq!(ce.extension("hostname").map(|v| v.to_string()).as_deref(), Some("c3-small-x86-01"));
//!
//! // Structured-mode JSON with a stable key order, ready to POST.
//! let body = metal_cloudevents::to_json_value(&ce)?;
//! assert_eq!(body["data"]["type"], "provisioning.110");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Finding the device an event from a project's list belongs to:
//!
//! ```
//! use std::collections::HashMap;
//! use metal_cloudevents::find_device;
//! use metal_events::{DeviceId, Event};
//!
//! let mut hostnames: HashMap<DeviceId, String> = HashMap::new();
//! hostnames.insert(DeviceId::new("0caf4d6d-fafc-470b-86b1-d889eb838afa"), "c3-small-x86-01".into());
//!
//! let event: Event = serde_json::from_str(r##"{
//!     "relationships": [{"href": "#5b4d1a9e-0000-4000-8000-000000000000"},
//!                       {"href": "/metal/v1/devices/0caf4d6d-fafc-470b-86b1-d889eb838afa"}]
//! }"##)?;
//! let (id, hostname) = find_device(&event, |id| hostnames.get(id)).expect("a known device");
//! assert_eq!((id, hostname.as_str()), ("0caf4d6d-fafc-470b-86b1-d889eb838afa", "c3-small-x86-01"));
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! # Invariants
//!
//! - **Pure and deterministic**: no IO, no async, no clock, no randomness. The
//!   same event, context and options always give an equal CloudEvent, and
//!   [`to_json_value`] always gives the same JSON, key order included.
//! - **Infallible on valid input**: with options that pass
//!   [`MapOptions::validate`], every event whose `id` and `type` are strings
//!   with something besides whitespace and no control character maps. Any
//!   other event is refused with a [`MapError`] saying which attribute and
//!   why; the mapper never panics and never invents or repairs an id.
//! - **Valid strings**: no attribute holds a control character (U+0000 to
//!   U+001F, U+007F to U+009F), which CloudEvents strings may not contain.
//!   Names in `source` are percent-encoded (`%09`, `%7F`, `%C2%85`); extension
//!   values have them stripped (`ACME\tOps\n` becomes `ACMEOps`; a value left
//!   empty is left out); an `id` or `type` holding one, or only whitespace, is
//!   [`MapError::InvalidAttribute`]. `data` keeps the event as sent (JSON
//!   escapes what it must).
//! - **Nothing is lost**: `data` is the raw object the API sent.
//! - **No IO dependencies**: the crate depends on neither tokio nor reqwest;
//!   `metal-events` is used with its models only. A `traceparent` extension
//!   belongs to delivery, not to this mapping.
//! - **Key order needs `preserve_order`**: this crate enables `serde_json`'s
//!   `preserve_order` feature, because its output is a `serde_json::Value`
//!   whose documented key order (the attributes' order in [`to_json_value`],
//!   the API's order in `data`) a `Value` can only hold with it.

mod device;
mod error;
mod extensions;
mod map;

pub use device::{device_id_from_href, device_ids, find_device};
pub use error::{MapError, Result};
pub use extensions::{
    DEVICE_ID, EXTENSION_NAMES, HOSTNAME, ORG_ID, ORG_NAME, PROJECT_ID, PROJECT_NAME,
    is_valid_extension_name,
};
pub use map::{
    Context, DATA_CONTENT_TYPE, DEFAULT_SOURCE_PREFIX, DeviceRef, MapOptions, OrganizationRef,
    ProjectRef, source, to_cloudevent, to_json_value,
};

/// The cloudevents-sdk crate this mapper builds on, re-exported so callers use
/// the same version.
pub use cloudevents;
