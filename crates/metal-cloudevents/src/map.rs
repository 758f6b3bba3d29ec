//! The mapping itself: options, context, the `source` attribute, and the
//! event-to-CloudEvent function.

use std::borrow::Cow;

use cloudevents::event::{EventBuilder, EventBuilderV10};
use metal_events::{DeviceId, Event, OrganizationId, ProjectId};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::error::{MapError, Result};
use crate::extensions::{
    CONTEXT_ATTRIBUTES, DEVICE_ID, HOSTNAME, ORG_ID, ORG_NAME, PROJECT_ID, PROJECT_NAME,
};

/// The source prefix the old receiver used, and the default.
pub const DEFAULT_SOURCE_PREFIX: &str = "direktiv/listener/equinix";

/// The `datacontenttype` of every mapped event: `data` is the event's JSON.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// The instants a CloudEvents `time` can carry, in Unix seconds: RFC 3339
/// writes a four-digit year, so 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z
/// (and its fraction). `9999-12-31T23:59:59-05:00` is the year 10000 in UTC.
const TIME_SECONDS: std::ops::RangeInclusive<i64> = -62_167_219_200..=253_402_300_799;

/// What stays literal when a name becomes one path segment of `source`: ASCII
/// letters and digits, `-._~`, and `$&+,:;=@`. These are the characters Go's
/// `net/url` leaves literal in a path, so names look as they did from the old
/// receiver; unlike it, `/` is encoded too, so one name is always one segment.
/// Everything else (space, `/`, `?`, `#`, `%`, quotes, brackets, controls and
/// every non-ASCII byte) is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b',')
    .remove(b':')
    .remove(b';')
    .remove(b'=')
    .remove(b'@');

/// How events are mapped. `Default` gives the old receiver's shape; set the
/// fields to change it (the struct may gain fields, so it cannot be written
/// as a literal outside this crate).
///
/// ```
/// use metal_cloudevents::MapOptions;
/// let mut opts = MapOptions::default();
/// opts.type_prefix = Some("equinix.".into());
/// assert!(opts.validate().is_ok());
/// ```
///
/// ```compile_fail
/// let opts = metal_cloudevents::MapOptions { type_prefix: None, ..Default::default() };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapOptions {
    /// The start of every `source`, used as given (not encoded), without a
    /// trailing `/`: the names follow after one. Default
    /// [`DEFAULT_SOURCE_PREFIX`]. It must be a URI-reference path: ASCII
    /// characters allowed in a path, `%` only as `%XX`, no `?` or `#`
    /// ([`MapOptions::validate`]).
    pub source_prefix: String,
    /// Put in front of every Metal type, as given: `Some("equinix.")` turns
    /// `provisioning.110` into `equinix.provisioning.110`. Default none, so the
    /// type is unchanged. It must not hold a control character
    /// ([`MapOptions::validate`]).
    pub type_prefix: Option<String>,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self {
            source_prefix: DEFAULT_SOURCE_PREFIX.to_owned(),
            type_prefix: None,
        }
    }
}

impl MapOptions {
    /// Checks the options once, at start-up: afterwards every event with a
    /// usable id and type maps. [`to_cloudevent`] checks them too.
    pub fn validate(&self) -> Result<()> {
        if let Some(prefix) = &self.type_prefix
            && prefix.chars().any(char::is_control)
        {
            return Err(MapError::InvalidTypePrefix {
                prefix: prefix.clone(),
            });
        }
        let invalid = |reason| MapError::InvalidSourcePrefix {
            prefix: self.source_prefix.clone(),
            reason,
        };
        let bytes = self.source_prefix.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'?' | b'#' => return Err(invalid("`?` and `#` would end the path")),
                b'%' => {
                    let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
                    if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(invalid("`%` must start a `%XX` escape"));
                    }
                }
                b'/' | b':' | b'@' => {}
                b'-' | b'.' | b'_' | b'~' => {}
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
                b if b.is_ascii_alphanumeric() => {}
                _ => {
                    return Err(invalid(
                        "it holds a space, a control, a non-ASCII character or one of \"<>[\\]^`{|}, \
                         which a URI cannot carry unencoded",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The prefix without trailing `/`.
    fn prefix(&self) -> &str {
        self.source_prefix.trim_end_matches('/')
    }
}

/// The organization an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct OrganizationRef {
    /// Its id (the `orgid` extension).
    pub id: OrganizationId,
    /// Its name (the `orgname` extension and the first name in `source`).
    pub name: String,
}

impl OrganizationRef {
    /// An organization from its id and name.
    pub fn new(id: impl Into<OrganizationId>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
        }
    }
}

/// The project an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ProjectRef {
    /// Its id (the `projid` extension).
    pub id: ProjectId,
    /// Its name (the `projname` extension and the second name in `source`).
    pub name: String,
}

impl ProjectRef {
    /// A project from its id and name.
    pub fn new(id: impl Into<ProjectId>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
        }
    }
}

/// The device an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeviceRef {
    /// Its id (the `deviceid` extension).
    pub id: DeviceId,
    /// Its hostname (the `hostname` extension), when known.
    pub hostname: Option<String>,
}

impl DeviceRef {
    /// A device from its id and hostname.
    pub fn new(id: impl Into<DeviceId>, hostname: Option<String>) -> Self {
        Self {
            id: id.into(),
            hostname,
        }
    }
}

/// Where an event was found: always in an organization, sometimes in a
/// project, sometimes about a device. Build one per event (or per list and
/// set `device` per event): nothing is carried over from another event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Context {
    /// The organization.
    pub organization: OrganizationRef,
    /// The project, for project and device events; `None` for
    /// organization-level events.
    pub project: Option<ProjectRef>,
    /// The device, for device events (see [`find_device`](crate::find_device)
    /// for events found in a project's list).
    pub device: Option<DeviceRef>,
}

impl Context {
    /// An organization-level context: no project, no device.
    pub fn new(organization: OrganizationRef) -> Self {
        Self {
            organization,
            project: None,
            device: None,
        }
    }

    /// The same context in `project`.
    #[must_use]
    pub fn with_project(mut self, project: ProjectRef) -> Self {
        self.project = Some(project);
        self
    }

    /// The same context about `device`.
    #[must_use]
    pub fn with_device(mut self, device: DeviceRef) -> Self {
        self.device = Some(device);
        self
    }

    /// The extensions this context gives, in [`EXTENSION_NAMES`](crate::EXTENSION_NAMES)
    /// order, each without its control characters, leaving out every value
    /// that is unknown or empty (also once stripped).
    fn extensions(&self) -> impl Iterator<Item = (&'static str, Cow<'_, str>)> {
        let org = &self.organization;
        let project = self.project.as_ref();
        let device = self.device.as_ref();
        [
            (ORG_ID, Some(org.id.as_str())),
            (ORG_NAME, Some(org.name.as_str())),
            (PROJECT_ID, project.map(|p| p.id.as_str())),
            (PROJECT_NAME, project.map(|p| p.name.as_str())),
            (DEVICE_ID, device.map(|d| d.id.as_str())),
            (HOSTNAME, device.and_then(|d| d.hostname.as_deref())),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            let value = without_controls(value?);
            (!value.is_empty()).then_some((name, value))
        })
    }
}

/// `text` without its control characters (U+0000 to U+001F, U+007F to
/// U+009F: `char::is_control`), which CloudEvents strings may not hold.
fn without_controls(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().filter(|c| !c.is_control()).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// Refuses an `id` or `type` that no CloudEvent may carry: one holding a
/// control character, or only whitespace.
fn check_attribute(attribute: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(MapError::InvalidAttribute {
            attribute,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// The CloudEvent `source` for a context: `<prefix>/<org name>/<project name>`,
/// or `<prefix>/<org name>` without a project. Each name is percent-encoded as
/// one URI path segment (`Direktiv EKS Project` becomes `Direktiv%20EKS%20Project`,
/// `a/b` becomes `a%2Fb`); the prefix is used as given, without a trailing `/`.
///
/// ```
/// use metal_cloudevents::{Context, MapOptions, OrganizationRef, ProjectRef, source};
/// let mut ctx = Context::new(OrganizationRef::new("ed49fa53", "ACME Ops/EU"));
/// assert_eq!(source(&ctx, &MapOptions::default()), "direktiv/listener/equinix/ACME%20Ops%2FEU");
/// ctx.project = Some(ProjectRef::new("d894d0eb", "Zürich #2"));
/// assert_eq!(source(&ctx, &MapOptions::default()), "direktiv/listener/equinix/ACME%20Ops%2FEU/Z%C3%BCrich%20%232");
/// ```
pub fn source(ctx: &Context, opts: &MapOptions) -> String {
    let mut source = String::with_capacity(opts.source_prefix.len() + 64);
    source.push_str(opts.prefix());
    source.push('/');
    source.extend(utf8_percent_encode(&ctx.organization.name, SEGMENT));
    if let Some(project) = &ctx.project {
        source.push('/');
        source.extend(utf8_percent_encode(&project.name, SEGMENT));
    }
    source
}

/// Maps a Metal event to a CloudEvents 1.0 event (see the crate documentation
/// for every attribute).
///
/// Fails only when the options are invalid ([`MapError::InvalidSourcePrefix`],
/// [`MapError::InvalidTypePrefix`]), the event has no id
/// ([`MapError::MissingId`]) or no type ([`MapError::MissingType`]), or its id
/// or type holds a control character or only whitespace
/// ([`MapError::InvalidAttribute`]).
pub fn to_cloudevent(
    event: &Event,
    ctx: &Context,
    opts: &MapOptions,
) -> Result<cloudevents::Event> {
    opts.validate()?;
    let event_type = event.event_type().filter(|ty| !ty.is_empty());
    let id = event
        .id()
        .filter(|id| !id.as_str().is_empty())
        .ok_or_else(|| MapError::MissingId {
            event_type: event_type.map(str::to_owned),
        })?;
    check_attribute("id", id.as_str())?;
    let event_type = event_type.ok_or_else(|| MapError::MissingType { id: id.clone() })?;
    check_attribute("type", event_type)?;
    let event_type = match opts.type_prefix.as_deref() {
        Some(prefix) => format!("{prefix}{event_type}"),
        None => event_type.to_owned(),
    };

    let mut builder = EventBuilderV10::new()
        .id(id.as_str())
        .ty(event_type)
        .source(source(ctx, opts))
        .data(DATA_CONTENT_TYPE, Value::Object(event.raw().clone()));
    // Outside four-digit years the event goes without a `time` (one there
    // would make it invalid); `data` keeps what the API said.
    if let Some(created_at) = event
        .created_at()
        .filter(|at| TIME_SECONDS.contains(&at.timestamp()))
    {
        builder = builder.time(created_at);
    }
    for (name, value) in ctx.extensions() {
        builder = builder.extension(name, value.as_ref());
    }
    builder.build().map_err(MapError::Sdk)
}

/// The CloudEvent in structured-mode JSON (the body of an
/// `application/cloudevents+json` request) with a stable key order:
/// `specversion`, `id`, `type`, `source`, `datacontenttype`, `dataschema`,
/// `subject`, `time` (those present), then the extensions sorted by name, then
/// `data` with its own key order untouched.
///
/// `serde_json::to_value(&event)` gives the same JSON, but its extensions come
/// in hash-map order, which differs between runs.
///
/// # Errors
///
/// Whatever `serde_json` reports serializing the event; a JSON `data` cannot
/// fail.
pub fn to_json_value(event: &cloudevents::Event) -> serde_json::Result<Value> {
    let mut map = match serde_json::to_value(event)? {
        Value::Object(map) => map,
        other => return Ok(other),
    };
    let mut ordered = Map::with_capacity(map.len());
    for name in CONTEXT_ATTRIBUTES {
        if let Some(value) = map.remove(name) {
            ordered.insert(name.to_owned(), value);
        }
    }
    let data: Vec<_> = ["data", "data_base64"]
        .into_iter()
        .filter_map(|name| map.remove(name).map(|value| (name.to_owned(), value)))
        .collect();
    let mut extensions: Vec<_> = map.into_iter().collect();
    extensions.sort_by(|(a, _), (b, _)| a.cmp(b));
    ordered.extend(extensions);
    ordered.extend(data);
    Ok(Value::Object(ordered))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(org: &str, project: Option<&str>) -> Context {
        Context {
            organization: OrganizationRef::new("ed49fa53-743f-43aa-836b-e24f88f94d9c", org),
            project: project
                .map(|name| ProjectRef::new("d894d0eb-2b6c-4741-b106-c7cb76018d32", name)),
            device: None,
        }
    }

    #[test]
    fn context_builder_sets_project_and_device() {
        let org = OrganizationRef::new("o1", "Org");
        let ctx = Context::new(org.clone())
            .with_project(ProjectRef::new("p1", "Proj"))
            .with_device(DeviceRef::new("d1", Some("host".into())));
        assert_eq!(ctx.organization, org);
        assert_eq!(ctx.project.as_ref().unwrap().id.as_str(), "p1");
        assert_eq!(
            ctx.device.as_ref().unwrap().hostname.as_deref(),
            Some("host")
        );
        assert_eq!(
            source(&ctx, &MapOptions::default()),
            "direktiv/listener/equinix/Org/Proj"
        );
        let bare = Context::new(org);
        assert_eq!((bare.project, bare.device), (None, None));
    }

    #[test]
    fn names_become_one_segment_each() {
        let opts = MapOptions::default();
        let cases = [
            (
                "Direktiv",
                Some("Direktiv EKS Project"),
                "Direktiv/Direktiv%20EKS%20Project",
            ),
            ("Direktiv", None, "Direktiv"),
            ("a/b", Some("c?d#e"), "a%2Fb/c%3Fd%23e"),
            ("100% ops", Some("x"), "100%25%20ops/x"),
            (
                "Müller & Söhne",
                Some("日本"),
                "M%C3%BCller%20&%20S%C3%B6hne/%E6%97%A5%E6%9C%AC",
            ),
            ("a:b@c;d,e=f+g$h~i_j.k-l", None, "a:b@c;d,e=f+g$h~i_j.k-l"),
            (
                "\"<>[\\]^`{|}'!()*",
                None,
                "%22%3C%3E%5B%5C%5D%5E%60%7B%7C%7D%27%21%28%29%2A",
            ),
            ("tab\there\n", None, "tab%09here%0A"),
            ("nul\u{0}del\u{7f}nel\u{85}", None, "nul%00del%7Fnel%C2%85"),
        ];
        for (org, project, expected) in cases {
            assert_eq!(
                source(&ctx(org, project), &opts),
                format!("direktiv/listener/equinix/{expected}"),
                "{org:?} {project:?}"
            );
        }
    }

    #[test]
    fn prefix_is_used_as_given_without_trailing_slash() {
        let mut opts = MapOptions {
            source_prefix: "https://example.com/metal/".into(),
            type_prefix: None,
        };
        assert_eq!(
            source(&ctx("Org", None), &opts),
            "https://example.com/metal/Org"
        );
        opts.source_prefix = String::new();
        assert_eq!(source(&ctx("Org", Some("P")), &opts), "/Org/P");
        assert!(opts.validate().is_ok());
    }

    #[test]
    fn prefixes_that_are_no_uri_path_are_refused() {
        for prefix in [
            "direktiv listener",
            "a?b",
            "a#b",
            "100%",
            "%zz",
            "a%2",
            "zürich",
            "a\nb",
            "a{b}",
        ] {
            let opts = MapOptions {
                source_prefix: prefix.into(),
                type_prefix: None,
            };
            assert!(
                matches!(opts.validate(), Err(MapError::InvalidSourcePrefix { .. })),
                "{prefix:?}"
            );
        }
        for prefix in [
            "direktiv/listener/equinix",
            "a%2Fb",
            "urn:x:y",
            "/x/(y)!*'",
            "~u/v@w",
        ] {
            let opts = MapOptions {
                source_prefix: prefix.into(),
                type_prefix: None,
            };
            assert!(opts.validate().is_ok(), "{prefix:?}");
        }
    }

    #[test]
    fn a_time_past_four_digit_years_is_left_out() {
        let ctx = ctx("Direktiv", None);
        let time = |created_at: &str| {
            let event: Event = serde_json::from_value(serde_json::json!({
                "id": "e1", "type": "t", "created_at": created_at
            }))
            .unwrap();
            let ce = to_cloudevent(&event, &ctx, &MapOptions::default()).unwrap();
            cloudevents::AttributesReader::time(&ce).map(|t| t.to_rfc3339())
        };
        assert_eq!(
            time("9999-12-31T23:59:59Z").as_deref(),
            Some("9999-12-31T23:59:59+00:00")
        );
        assert_eq!(
            time("0000-01-01T00:00:00Z").as_deref(),
            Some("0000-01-01T00:00:00+00:00")
        );
        assert_eq!(time("9999-12-31T23:59:59-05:00"), None, "year 10000 in UTC");
        assert_eq!(time("0000-01-01T00:00:00+01:00"), None, "year -1 in UTC");
    }

    #[test]
    fn unknown_and_empty_values_are_left_out() {
        let mut ctx = ctx("", Some(""));
        ctx.device = Some(DeviceRef::new("", Some(String::new())));
        let names: Vec<_> = ctx.extensions().map(|(name, _)| name).collect();
        assert_eq!(names, ["orgid", "projid"]);
    }

    #[test]
    fn control_characters_are_stripped_from_extensions() {
        let mut ctx = ctx("ACME\tOps\r\n", Some("\u{0}\u{7f}\u{9f}"));
        ctx.device = Some(DeviceRef::new(
            "0caf4d6d\n",
            Some("edge\u{1b}[31m-01\u{85}".into()),
        ));
        let extensions: Vec<_> = ctx
            .extensions()
            .map(|(name, value)| (name, value.into_owned()))
            .collect();
        let expected = [
            ("orgid", "ed49fa53-743f-43aa-836b-e24f88f94d9c"),
            ("orgname", "ACMEOps"),
            ("projid", "d894d0eb-2b6c-4741-b106-c7cb76018d32"),
            // `projname` held only control characters: empty, so left out.
            ("deviceid", "0caf4d6d"),
            ("hostname", "edge[31m-01"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, v)| (*n, (*v).to_owned()))
            .collect();
        assert_eq!(extensions, expected);
    }

    #[test]
    fn ids_and_types_that_no_cloudevent_may_carry_are_refused() {
        let options = MapOptions::default();
        let event = |id: &str, ty: &str| {
            let raw = serde_json::json!({ "id": id, "type": ty });
            Event::from_raw(raw.as_object().unwrap().clone())
        };
        let refused =
            |id: &str, ty: &str| match to_cloudevent(&event(id, ty), &ctx("Org", None), &options) {
                Err(MapError::InvalidAttribute { attribute, value }) => Some((attribute, value)),
                _ => None,
            };
        assert_eq!(refused("a\u{0}b", "x"), Some(("id", "a\u{0}b".to_owned())));
        assert_eq!(refused("  ", "x"), Some(("id", "  ".to_owned())));
        assert_eq!(refused("a", "x\r\n"), Some(("type", "x\r\n".to_owned())));
        assert_eq!(
            refused("a", "x\u{85}"),
            Some(("type", "x\u{85}".to_owned()))
        );
        assert_eq!(refused("a", " "), Some(("type", " ".to_owned())));
        let long = format!("{}\u{1}", "i".repeat(100));
        assert_eq!(refused(&long, "x").unwrap().1.chars().count(), 64);
        // Spaces inside or around a usable value are not control characters.
        assert!(to_cloudevent(&event(" a b ", "x y"), &ctx("Org", None), &options).is_ok());
        let message = to_cloudevent(&event("a\u{7}", "x"), &ctx("Org", None), &options)
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"a\\u{7}\""), "{message}");
    }

    #[test]
    fn a_type_prefix_with_a_control_character_is_refused() {
        let options = MapOptions {
            type_prefix: Some("equinix\n.".into()),
            ..MapOptions::default()
        };
        assert!(matches!(
            options.validate(),
            Err(MapError::InvalidTypePrefix { .. })
        ));
    }
}
