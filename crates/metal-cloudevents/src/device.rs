//! Finding the device an event belongs to from its `relationships`.
//!
//! Events listed under a project carry no device field; the device shows up
//! only as a relationship: `{"href": "#<uuid>"}`, `{"href": "/devices/<uuid>"}`,
//! `{"href": "/metal/v1/devices/<uuid>"}` or an absolute URL ending so. A
//! `#<uuid>` may name another kind of resource too, so an id found here is a
//! candidate until a lookup among the project's known devices confirms it.

use metal_events::Event;

/// The device id an `href` names, if it can name one: the part after `#` in
/// `#<id>`, or the last segment of a path or URL whose previous segment is
/// `devices` (a query, a fragment and a trailing `/` are ignored). `None` for
/// anything else, such as `/metal/v1/projects/<id>` or an empty id.
///
/// ```
/// use metal_cloudevents::device_id_from_href;
/// assert_eq!(device_id_from_href("#0caf4d6d"), Some("0caf4d6d"));
/// assert_eq!(device_id_from_href("/metal/v1/devices/0caf4d6d"), Some("0caf4d6d"));
/// assert_eq!(device_id_from_href("https://api.equinix.com/metal/v1/devices/0caf4d6d?include=x"), Some("0caf4d6d"));
/// assert_eq!(device_id_from_href("/metal/v1/projects/0caf4d6d"), None);
/// ```
pub fn device_id_from_href(href: &str) -> Option<&str> {
    let href = href.trim();
    if let Some(id) = href.strip_prefix('#') {
        return (!id.is_empty() && !id.contains(['/', '?', '#'])).then_some(id);
    }
    let path = href.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = path.rsplit('/');
    let id = segments.next().filter(|id| !id.is_empty())?;
    (segments.next() == Some("devices")).then_some(id)
}

/// The candidate device ids among an event's relationships, in order (see
/// [`device_id_from_href`]).
pub fn device_ids(event: &Event) -> impl Iterator<Item = &str> {
    event
        .relationships()
        .iter()
        .filter_map(|rel| device_id_from_href(&rel.href))
}

/// The first relationship of `event` that names a device `lookup` knows, with
/// what `lookup` returned for it.
///
/// `lookup` receives each candidate id (see [`device_ids`]) and returns
/// `Some` for a known device; with a `HashMap<DeviceId, T>` it is
/// `|id| map.get(id)`. When several known devices are named the first wins.
pub fn find_device<T>(
    event: &Event,
    mut lookup: impl FnMut(&str) -> Option<T>,
) -> Option<(&str, T)> {
    device_ids(event).find_map(|id| lookup(id).map(|found| (id, found)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use metal_events::DeviceId;
    use serde_json::json;

    use super::*;

    const DEVICE: &str = "0caf4d6d-fafc-470b-86b1-d889eb838afa";

    #[test]
    fn every_href_shape_names_the_device() {
        for href in [
            format!("#{DEVICE}"),
            format!("/devices/{DEVICE}"),
            format!("/metal/v1/devices/{DEVICE}"),
            format!("/metal/v1/devices/{DEVICE}/"),
            format!("devices/{DEVICE}"),
            format!("https://api.equinix.com/metal/v1/devices/{DEVICE}"),
            format!("https://api.equinix.com/metal/v1/devices/{DEVICE}?include=facility#x"),
        ] {
            assert_eq!(device_id_from_href(&href), Some(DEVICE), "{href}");
        }
    }

    #[test]
    fn other_hrefs_name_no_device() {
        for href in [
            "",
            "#",
            "/",
            "/devices",
            "/devices/",
            "/metal/v1/projects/d894d0eb-2b6c-4741-b106-c7cb76018d32",
            "/metal/v1/devices/0caf4d6d/events",
            "#a/b",
            "https://api.equinix.com/metal/v1/devices",
        ] {
            assert_eq!(device_id_from_href(href), None, "{href:?}");
        }
    }

    #[test]
    fn find_device_skips_unknown_relationships_and_takes_the_first_known() {
        let event: Event = serde_json::from_value(json!({
            "relationships": [
                {"href": "/metal/v1/projects/d894d0eb-2b6c-4741-b106-c7cb76018d32"},
                {"href": "#5b4d1a9e-7d36-4c38-9a4e-0f0d5a2b7c11"},
                {"href": format!("/metal/v1/devices/{DEVICE}")},
                {"href": "#9f1c2e44-1111-4b2a-8c3d-2e5f6a7b8c9d"},
            ]
        }))
        .unwrap();
        let known: HashMap<DeviceId, &str> = HashMap::from([
            (DeviceId::new(DEVICE), "c3-small-x86-01"),
            (
                DeviceId::new("9f1c2e44-1111-4b2a-8c3d-2e5f6a7b8c9d"),
                "m3-large-x86-02",
            ),
        ]);
        assert_eq!(
            find_device(&event, |id| known.get(id)),
            Some((DEVICE, &"c3-small-x86-01"))
        );
        assert_eq!(device_ids(&event).count(), 3);
    }

    #[test]
    fn no_known_device_gives_none() {
        let event: Event =
            serde_json::from_value(json!({"relationships": [{"href": format!("#{DEVICE}")}]}))
                .unwrap();
        assert_eq!(find_device(&event, |_| None::<()>), None);
        let empty: Event = serde_json::from_value(json!({"relationships": []})).unwrap();
        assert_eq!(find_device(&empty, |_| Some(())), None);
    }
}
