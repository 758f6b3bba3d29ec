//! Property tests: arbitrary event JSON never panics the mapper, whatever maps
//! survives a JSON round trip through cloudevents-sdk and carries no control
//! character in any attribute, and every `source` is a URI-reference whose
//! names decode back to the originals.

use cloudevents::{AttributesReader, Data};
use metal_cloudevents::{
    Context, DeviceRef, MapError, MapOptions, OrganizationRef, ProjectRef, is_valid_extension_name,
    source, to_cloudevent, to_json_value,
};
use metal_events::Event;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Leaf JSON values, biased towards what Metal sends.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Dyadic fractions print and parse back exactly.
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        ".{0,16}".prop_map(Value::from),
        "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}".prop_map(Value::from),
        "#[0-9a-f-]{0,12}|/metal/v1/devices/[0-9a-f-]{0,12}|/devices/.{0,8}".prop_map(Value::from),
        "(19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]0[0-9]:[03]0)"
            .prop_map(Value::from),
    ]
}

/// Any JSON value, a few levels deep, with `{"href": ...}` objects likely.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            inner.clone().prop_map(|href| json!({ "href": href })),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// An event object: the spec's keys and random ones, with values of any shape.
fn event_object() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        Just("id".to_owned()),
        Just("type".to_owned()),
        Just("created_at".to_owned()),
        Just("relationships".to_owned()),
        Just("state".to_owned()),
        Just("body".to_owned()),
        Just("modified_by".to_owned()),
        Just("ip".to_owned()),
        ".{0,10}",
    ];
    // Most events get a usable id and type, so the mapped path is well covered;
    // some hold control characters or only whitespace.
    let id = prop::option::weighted(
        0.8,
        prop_oneof![
            8 => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            1 => CONTROLLED,
            1 => "[ \t]{1,3}",
        ],
    );
    let ty = prop::option::weighted(
        0.8,
        prop_oneof![
            8 => "[a-z_]{1,12}(\\.[a-z0-9_]{1,12}){0,3}",
            1 => CONTROLLED,
            1 => " {1,3}",
        ],
    );
    (prop::collection::vec((key, value()), 0..10), id, ty).prop_map(|(fields, id, ty)| {
        let mut object: Map<String, Value> = fields.into_iter().collect();
        object.extend(id.map(|id| ("id".to_owned(), Value::from(id))));
        object.extend(ty.map(|ty| ("type".to_owned(), Value::from(ty))));
        object
    })
}

/// Text with control characters (C0, DEL and C1) among letters.
const CONTROLLED: &str = "[a-z0-9\\x00-\\x1f\\x7f-\\x9f]{1,12}";

/// A name or id: any Unicode, or letters among control characters.
fn text(max: usize) -> impl Strategy<Value = String> {
    let regex = |pattern: &str| proptest::string::string_regex(pattern).expect("a valid regex");
    prop_oneof![
        3 => regex(&format!(".{{0,{max}}}")),
        1 => regex(CONTROLLED),
    ]
}

/// A context whose names and ids are arbitrary strings (any Unicode, control
/// characters included).
fn context() -> impl Strategy<Value = Context> {
    (
        (text(12), text(24)),
        prop::option::of((text(12), text(24))),
        prop::option::of((text(12), prop::option::of(text(16)))),
    )
        .prop_map(|((org_id, org_name), project, device)| {
            let mut ctx = Context::new(OrganizationRef::new(org_id, org_name));
            ctx.project = project.map(|(id, name)| ProjectRef::new(id, name));
            ctx.device = device.map(|(id, hostname)| DeviceRef::new(id, hostname));
            ctx
        })
}

fn options() -> impl Strategy<Value = MapOptions> {
    (
        prop_oneof![
            2 => Just("direktiv/listener/equinix".to_owned()),
            2 => "[a-z0-9/:.-]{0,20}",
            1 => ".{0,10}",
        ],
        prop::option::of(".{0,8}"),
    )
        .prop_map(|(source_prefix, type_prefix)| {
            let mut opts = MapOptions::default();
            opts.source_prefix = source_prefix;
            opts.type_prefix = type_prefix;
            opts
        })
}

/// A character that may stand unencoded in a `source` built from names.
fn literal_in_source(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~$&+,:;=@%/".contains(c)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_events_map_or_say_why(raw in event_object(), ctx in context(), opts in options()) {
        let event = Event::from_raw(raw.clone());
        let has_id = event.id().is_some_and(|id| !id.as_str().is_empty());
        let has_type = event.event_type().is_some_and(|ty| !ty.is_empty());
        match to_cloudevent(&event, &ctx, &opts) {
            Ok(ce) => {
                prop_assert!(opts.validate().is_ok() && has_id && has_type);
                // No attribute holds a control character (CloudEvents forbids
                // them in strings), nor is the id or type only whitespace.
                let mut strings = vec![
                    ("id", ce.id().to_owned()),
                    ("type", ce.ty().to_owned()),
                    ("source", ce.source().to_string()),
                ];
                strings.extend(ce.iter_extensions().map(|(n, v)| (n, v.to_string())));
                for (name, value) in &strings {
                    prop_assert!(!value.chars().any(char::is_control), "{}: {:?}", name, value);
                }
                prop_assert!(!ce.id().trim().is_empty() && !ce.ty().trim().is_empty());
                prop_assert_eq!(ce.id(), event.id().unwrap().as_str());
                prop_assert_eq!(ce.data(), Some(&Data::Json(Value::Object(raw))));
                prop_assert_eq!(ce.time().copied(), event.created_at());
                for (name, value) in ce.iter_extensions() {
                    prop_assert!(is_valid_extension_name(name), "{}", name);
                    prop_assert!(!value.to_string().is_empty(), "{} is empty", name);
                }
                // The structured body parses back with cloudevents-sdk to an equal event,
                // through the stable-order JSON and through plain serde alike.
                let body = serde_json::to_string(&to_json_value(&ce).unwrap()).unwrap();
                let back: cloudevents::Event = serde_json::from_str(&body).unwrap();
                prop_assert_eq!(&back, &ce);
                let plain: cloudevents::Event =
                    serde_json::from_str(&serde_json::to_string(&ce).unwrap()).unwrap();
                prop_assert_eq!(&plain, &ce);
                // Deterministic: mapping again gives the same bytes.
                let again = to_cloudevent(&event, &ctx, &opts).unwrap();
                prop_assert_eq!(serde_json::to_string(&to_json_value(&again).unwrap()).unwrap(), body);
            }
            Err(MapError::InvalidSourcePrefix { .. } | MapError::InvalidTypePrefix { .. }) => {
                prop_assert!(opts.validate().is_err());
            }
            Err(MapError::MissingId { .. }) => prop_assert!(!has_id),
            Err(MapError::MissingType { .. }) => prop_assert!(has_id && !has_type),
            Err(MapError::InvalidAttribute { attribute, value }) => {
                let given = match attribute {
                    "id" => event.id().map(|id| id.as_str()),
                    _ => event.event_type(),
                };
                let given = given.unwrap_or_default();
                prop_assert!(given.starts_with(value.as_str()));
                prop_assert!(given.trim().is_empty() || given.chars().any(char::is_control));
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn source_names_are_single_segments_that_decode_back(ctx in context()) {
        let opts = MapOptions::default();
        let source = source(&ctx, &opts);
        let rest = source.strip_prefix("direktiv/listener/equinix/").unwrap();
        prop_assert!(rest.chars().all(literal_in_source), "{}", source);
        let segments: Vec<&str> = rest.split('/').collect();
        let mut names = vec![ctx.organization.name.as_str()];
        names.extend(ctx.project.as_ref().map(|p| p.name.as_str()));
        prop_assert_eq!(segments.len(), names.len());
        for (segment, name) in segments.iter().zip(names) {
            prop_assert_eq!(percent_decode_str(segment).decode_utf8().unwrap(), name);
            // Every `%` starts an escape.
            for (i, _) in segment.match_indices('%') {
                prop_assert!(segment[i + 1..].chars().take(2).all(|c| c.is_ascii_hexdigit()));
                prop_assert!(segment.len() >= i + 3);
            }
        }
    }
}

proptest! {
    /// On the first and last day RFC 3339 can write, an offset can take the
    /// instant out of the years 0000 to 9999 in UTC, which no CloudEvents
    /// `time` can carry: the event still maps, without a `time`, and its body
    /// parses back.
    #[test]
    fn times_at_the_edges_of_rfc3339_map_or_are_left_out(
        created_at in "(0000-01-01T0|9999-12-31T2)[0-3]:[0-5][0-9]:[0-5][0-9](Z|[+-](0[0-9]|1[0-9]|2[0-3]):[0-5][0-9])",
    ) {
        let event: Event = serde_json::from_value(
            json!({ "id": "e1", "type": "t", "created_at": created_at }),
        )
        .unwrap();
        let at = event.created_at().expect("a valid RFC 3339 time");
        let ctx = Context::new(OrganizationRef::new("o", "Org"));
        let ce = to_cloudevent(&event, &ctx, &MapOptions::default()).unwrap();
        let writable = (-62_167_219_200..=253_402_300_799).contains(&at.timestamp());
        prop_assert_eq!(ce.time(), writable.then_some(&at));
        let body = serde_json::to_string(&to_json_value(&ce).unwrap()).unwrap();
        let back: cloudevents::Event = serde_json::from_str(&body).unwrap();
        prop_assert_eq!(back, ce);
    }
}
