//! Pagination: [`Pager`] reads a list a page at a time, [`Page`] is one page.
//!
//! # How the next page is found
//!
//! 1. `meta.next`, when present and not empty, is the next page. A relative
//!    link is resolved against the base URL (see [`Client::event_pages`]);
//!    the next request always goes to the base URL's origin.
//! 2. Otherwise, while `meta.current_page < meta.last_page`, the next page is
//!    this page's URL with `page=current_page + 1`.
//! 3. Otherwise the list has ended.
//!
//! # Loops
//!
//! A server that points back at a page this pager already read (the same
//! URL, or a `meta.current_page` seen before) would make reading go on
//! forever. The pager notices and ends with [`Error::PaginationLoop`]
//! instead: the pages before it were returned normally, the repeated page is
//! not returned again, and every later call returns `Ok(None)`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use url::Url;

use crate::client::{Client, Endpoint, decode, path_of};
use crate::error::{Error, Result};
use crate::models::{Event, EventId, EventList, Meta};
use crate::rate_limit::RateLimit;

/// Turns a page's body into its items and metadata.
type Decoder<T> = fn(&[u8], &str) -> Result<(Vec<T>, Option<Meta>)>;

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items of this page, in the order the API sent them.
    pub items: Vec<T>,
    /// The page's pagination metadata (all `None` when the answer had none).
    pub meta: Meta,
    /// The page number: `meta.current_page` when the API sent it, else the
    /// count of pages this pager has read (from 1).
    pub page: u64,
    /// The rate-limit headers of this page's answer, when it carried any.
    pub rate_limit: Option<RateLimit>,
}

/// Reads a list a page at a time; made by [`Client::event_pages`],
/// [`Client::project_pages`] and [`Client::device_pages`].
///
/// Nothing is requested until [`next_page`](Self::next_page) is called, so a
/// caller can stop as soon as it has what it needs. After an error other
/// than [`Error::PaginationLoop`] the pager stays where it was: calling
/// `next_page` again retries the same page.
pub struct Pager<T> {
    client: Client,
    endpoint: Endpoint,
    next: Option<Next>,
    /// An error found while working out the next page, returned by the next
    /// call (so the page that led to it is still delivered).
    pending: Option<Error>,
    visited: HashSet<String>,
    page_numbers: HashSet<u64>,
    pages_read: u64,
    decode: Decoder<T>,
}

/// Where the next page is.
enum Next {
    /// Its URL.
    Url(Url),
    /// The `meta.next` link of the page at `current`, resolved only when the
    /// next page is asked for: most lists stop before it.
    Link { current: Url, href: String },
}

impl Next {
    /// The path and query of the next page, or the link as the API sent it.
    fn describe(&self) -> String {
        match self {
            Self::Url(url) => path_of(url),
            Self::Link { href, .. } => href.clone(),
        }
    }
}

impl<T> fmt::Debug for Pager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pager")
            .field("endpoint", &self.endpoint)
            .field("next", &self.next.as_ref().map(Next::describe))
            .field("pages_read", &self.pages_read)
            .finish_non_exhaustive()
    }
}

impl<T> Pager<T> {
    pub(crate) fn new(client: Client, endpoint: Endpoint, first: Url, decode: Decoder<T>) -> Self {
        Self {
            client,
            endpoint,
            next: Some(Next::Url(first)),
            pending: None,
            visited: HashSet::new(),
            page_numbers: HashSet::new(),
            pages_read: 0,
            decode,
        }
    }

    /// The endpoint this pager reads.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// How many pages have been read so far.
    pub fn pages_read(&self) -> u64 {
        self.pages_read
    }

    /// Whether the list has ended: the next call of
    /// [`next_page`](Self::next_page) would return `Ok(None)`.
    pub fn is_finished(&self) -> bool {
        self.next.is_none() && self.pending.is_none()
    }

    /// Reads the next page; `Ok(None)` once the list has ended.
    ///
    /// # Errors
    ///
    /// Any request [`Error`]; [`Error::PaginationLoop`] when the server
    /// points back at a page already read; [`Error::InvalidUrl`] when
    /// `meta.next` is not a URL (returned by the call after the page that
    /// carried it).
    pub async fn next_page(&mut self) -> Result<Option<Page<T>>> {
        if let Some(error) = self.pending.take() {
            return Err(error);
        }
        let url = match self.next.take() {
            None => return Ok(None),
            Some(Next::Url(url)) => url,
            Some(Next::Link { current, href }) => {
                let next = self.client.resolve_next(&current, &href)?;
                if self.visited.contains(next.as_str()) {
                    tracing::debug!(
                        path = path_of(&current),
                        "meta.next points at a page already read"
                    );
                    return Err(Error::PaginationLoop {
                        path: path_of(&next),
                    });
                }
                next
            }
        };
        // Kept until the page is read: after an error the same page is
        // tried again.
        self.next = Some(Next::Url(url.clone()));
        let path = path_of(&url);
        let fetched = self.client.fetch(self.endpoint, &url, &path).await?;
        let (items, meta) = (self.decode)(&fetched.body, &path)?;
        let meta = meta.unwrap_or_default();

        if let Some(number) = meta.current_page
            && !self.page_numbers.insert(number)
        {
            tracing::debug!(path, page = number, "page number repeated; stopping");
            self.next = None;
            return Err(Error::PaginationLoop { path });
        }
        self.visited.insert(url.as_str().to_owned());
        self.pages_read += 1;

        self.next = None;
        match next_page_of(url, &meta) {
            Some(Next::Url(next)) if self.visited.contains(next.as_str()) => {
                tracing::debug!(path, "the next page number points at a page already read");
                self.pending = Some(Error::PaginationLoop {
                    path: path_of(&next),
                });
            }
            next => self.next = next,
        }

        Ok(Some(Page {
            items,
            page: meta.current_page.unwrap_or(self.pages_read),
            meta,
            rate_limit: fetched.rate_limit,
        }))
    }

    /// Reads pages until the list ends or `max_pages` pages have been read
    /// by this call, and returns their items in order. Check
    /// [`is_finished`](Self::is_finished) afterwards to learn whether the cap
    /// cut the list short.
    ///
    /// # Errors
    ///
    /// As [`next_page`](Self::next_page); the items read before the error are
    /// dropped.
    pub async fn collect_all(&mut self, max_pages: usize) -> Result<Vec<T>> {
        let mut items = Vec::new();
        for _ in 0..max_pages {
            match self.next_page().await? {
                Some(page) => items.extend(page.items),
                None => return Ok(items),
            }
        }
        if !self.is_finished() {
            tracing::debug!(
                endpoint = self.endpoint.as_str(),
                max_pages,
                "page cap reached before the end of the list"
            );
        }
        Ok(items)
    }
}

/// The next page after the page at `current`: its `meta.next` link (resolved
/// when asked for), or the next page number while `meta.current_page <
/// meta.last_page`.
fn next_page_of(current: Url, meta: &Meta) -> Option<Next> {
    let href = meta
        .next
        .as_ref()
        .map(|next| next.href.trim())
        .filter(|href| !href.is_empty());
    if let Some(href) = href {
        return Some(Next::Link {
            current,
            href: href.to_owned(),
        });
    }
    match (meta.current_page, meta.last_page) {
        (Some(current_page), Some(last_page)) if current_page < last_page => {
            Some(Next::Url(with_page(&current, current_page + 1)))
        }
        _ => None,
    }
}

/// `url` with its `page` query parameter set to `page`.
fn with_page(url: &Url, page: u64) -> Url {
    let mut next = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != "page")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    {
        let mut query = next.query_pairs_mut();
        query.clear();
        query.append_pair("page", &page.to_string());
        query.extend_pairs(pairs);
    }
    next
}

/// An event of a page read with [`Client::lazy_event_pages`]: its id and
/// creation time, read as [`Event`] reads them, and its JSON object, decoded
/// whole only when [`decode`](Self::decode) is called.
///
/// A poller that needs the whole event only for the few events it has not
/// seen saves most of the decoding work (every field, every string) of a
/// page.
#[derive(Debug, Clone)]
pub struct LazyEvent {
    id: Option<EventId>,
    created_at: Option<DateTime<Utc>>,
    raw: Box<RawValue>,
}

impl LazyEvent {
    /// The event's id: [`Event::id`].
    pub fn id(&self) -> Option<&EventId> {
        self.id.as_ref()
    }

    /// When it happened: [`Event::created_at`].
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }

    /// The JSON object as the API sent it.
    pub fn raw_json(&self) -> &str {
        self.raw.get()
    }

    /// The whole event.
    ///
    /// # Errors
    ///
    /// None in practice: the page that held it was checked to decode as
    /// [`Event`]s. The error is serde_json's, should that ever fail.
    pub fn decode(&self) -> serde_json::Result<Event> {
        serde_json::from_str(self.raw.get())
    }
}

/// A page of events with each event kept as its JSON text.
#[derive(Deserialize)]
struct RawEventList {
    #[serde(default, deserialize_with = "raw_events")]
    events: Vec<Box<RawValue>>,
    #[serde(default, deserialize_with = "lenient_meta")]
    meta: Option<Meta>,
}

/// `null` is an empty list (as [`EventList`] reads it).
fn raw_events<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Box<RawValue>>, D::Error> {
    Ok(Option::<Vec<Box<RawValue>>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A mistyped `meta` is absent (as [`EventList`] reads it).
fn lenient_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Meta>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// Decodes a page of events lazily. The result is the one [`EventList`]
/// decoding gives (the same events, the same errors): any failure of the
/// quick path decodes the page as [`EventList`] to name the JSON path.
pub(crate) fn decode_lazy_events(
    body: &[u8],
    path: &str,
) -> Result<(Vec<LazyEvent>, Option<Meta>)> {
    match decode_lazy_quick(body) {
        Ok(page) => Ok(page),
        Err(_) => {
            let list: EventList = decode(body, path)?;
            let events = list
                .events
                .into_iter()
                .map(|event| {
                    let raw = serde_json::value::to_raw_value(event.raw()).map_err(|source| {
                        Error::Decode {
                            path: path.to_owned(),
                            json_path: "events".to_owned(),
                            source,
                        }
                    })?;
                    Ok(LazyEvent {
                        id: event.id,
                        created_at: event.created_at,
                        raw,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((events, list.meta))
        }
    }
}

/// The quick path of [`decode_lazy_events`]; its errors name no JSON path.
fn decode_lazy_quick(body: &[u8]) -> serde_json::Result<(Vec<LazyEvent>, Option<Meta>)> {
    let list = serde_json::from_slice::<RawEventList>(body)?;
    let events = list
        .events
        .into_iter()
        .map(|raw| {
            let head: Head = serde_json::from_str(raw.get())?;
            Ok(LazyEvent {
                id: head.id.map(EventId::new),
                created_at: head.created_at,
                raw,
            })
        })
        .collect::<serde_json::Result<Vec<_>>>()?;
    Ok((events, list.meta))
}

/// The id and creation time of an event object, read as [`Event::from_raw`]
/// reads them (the last of repeated keys wins; a value of another type is
/// absent). Every other value is checked as `serde_json::Value` would check
/// it, without being kept, so an object decodes here exactly when it decodes
/// as an [`Event`].
struct Head {
    id: Option<String>,
    created_at: Option<DateTime<Utc>>,
}

impl<'de> Deserialize<'de> for Head {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadVisitor;

        impl<'de> Visitor<'de> for HeadVisitor {
            type Value = Head;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
                let mut head = Head {
                    id: None,
                    created_at: None,
                };
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Id => head.id = map.next_value_seed(AnyValue)?.map(Cow::into_owned),
                        Key::CreatedAt => {
                            head.created_at = map.next_value_seed(AnyValue)?.and_then(|at| {
                                DateTime::parse_from_rfc3339(&at)
                                    .ok()
                                    .map(|at| at.with_timezone(&Utc))
                            });
                        }
                        Key::Other => map.next_value_seed(Skip)?,
                    }
                }
                Ok(head)
            }
        }

        deserializer.deserialize_map(HeadVisitor)
    }
}

/// A key of an event object.
enum Key {
    Id,
    CreatedAt,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "id" => Key::Id,
                    "created_at" => Key::CreatedAt,
                    _ => Key::Other,
                })
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A JSON value of any shape, checked as `serde_json::Value` would check it
/// (numbers included) but not kept; a string is yielded ([`Cow::Owned`] only
/// when it had escapes).
struct AnyValue;

impl<'de> DeserializeSeed<'de> for AnyValue {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

/// [`AnyValue`] for values whose text is not needed.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(AnyVisitor).map(drop)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element_seed(Skip)?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_key::<IgnoredKey>()?.is_some() {
        map.next_value_seed(Skip)?;
    }
    Ok(())
}

/// A key of a nested object, read as `serde_json::Value` reads it (a string).
struct IgnoredKey;

impl<'de> Deserialize<'de> for IgnoredKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(IgnoredAny).map(|_| IgnoredKey)
    }
}

/// Visits any JSON value for [`AnyValue`] and [`Skip`].
struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Skip.deserialize(deserializer).map(|()| None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_next_link_fails_the_call_after_its_page_then_the_list_ends() {
        let client = Client::new(secrecy::SecretString::from("t")).unwrap();
        let current = Url::parse("https://api.equinix.com/metal/v1/events?page=1").unwrap();
        let mut pager: Pager<LazyEvent> = Pager::new(
            client,
            Endpoint::Events,
            current.clone(),
            decode_lazy_events,
        );
        pager.next = Some(Next::Link {
            current,
            href: "http://[::1".to_owned(),
        });
        assert!(!pager.is_finished());
        let error = pager.next_page().await.unwrap_err();
        assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
        assert!(pager.next_page().await.unwrap().is_none());
        assert!(pager.is_finished());
    }

    #[test]
    fn with_page_replaces_the_page_parameter() {
        let url = Url::parse("http://h/metal/v1/events?per_page=100&page=3&include=a%2Cb").unwrap();
        assert_eq!(
            with_page(&url, 4).as_str(),
            "http://h/metal/v1/events?page=4&per_page=100&include=a%2Cb"
        );
        let url = Url::parse("http://h/metal/v1/events").unwrap();
        assert_eq!(
            with_page(&url, 2).as_str(),
            "http://h/metal/v1/events?page=2"
        );
    }
}

#[cfg(test)]
mod lazy_tests {
    use super::*;

    /// Decodes `body` both ways and checks they agree: the same events, or
    /// the same error.
    fn agree(body: &str) {
        let full = decode::<EventList>(body.as_bytes(), "/events");
        let lazy = decode_lazy_events(body.as_bytes(), "/events");
        assert_eq!(
            decode_lazy_quick(body.as_bytes()).is_ok(),
            full.is_ok(),
            "the quick path must agree: {body}"
        );
        match (full, lazy) {
            (Ok(full), Ok((events, meta))) => {
                assert_eq!(meta, full.meta, "{body}");
                assert_eq!(events.len(), full.events.len(), "{body}");
                for (lazy, event) in events.iter().zip(&full.events) {
                    assert_eq!(lazy.id(), event.id.as_ref(), "{body}");
                    assert_eq!(lazy.created_at(), event.created_at, "{body}");
                    assert_eq!(&lazy.decode().unwrap(), event, "{body}");
                }
            }
            (Err(full), Err(lazy)) => assert_eq!(lazy.to_string(), full.to_string()),
            (full, lazy) => panic!("{body}: full {full:?}, lazy {:?}", lazy.map(|l| l.0)),
        }
    }

    #[test]
    fn lazy_pages_decode_as_event_lists_do() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/metal");
        let mut read = 0;
        for dir in ["events", "pages"] {
            for entry in std::fs::read_dir(format!("{fixtures}/{dir}")).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "json") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    agree(&text);
                    agree(&format!("{{\"events\": [{text}, {text}]}}"));
                    read += 1;
                }
            }
        }
        assert!(read > 10, "fixtures read: {read}");
        for body in [
            r#"{"events": null, "meta": null}"#,
            r#"{"events": [], "meta": {"current_page": "x", "next": {"href": "?page=2"}}}"#,
            r#"{"events": [{"id": "a", "id": 7, "created_at": "2024-05-01T12:00:00Z"}]}"#,
            r#"{"events": [{"id": 7, "id": "b", "created_at": "2024-05-01T12:00:00Z", "created_at": "bad"}]}"#,
            r#"{"events": [{"id": "a\"\u00e9\\", "created_at": "2024-05-01T14:00:00+02:00"}]}"#,
            r#"{"events": [{"id": "a", "x": {"y": [1, -2, 3.5, 1e300, true, null, {"z": "\n"}]}}]}"#,
            r#"{"events": [{"id": "a", "big": 1e400}]}"#,
            r#"{"events": [{"id": "a"}, 7]}"#,
            r#"{"events": [{"id": "a"}, []]}"#,
            r#"{"events": {"id": "a"}}"#,
            r#"{"events": [{"id": "a"}]} trailing"#,
            r#"{"events": [{"id": "a",}]}"#,
            r#"{"events": [], "events": []}"#,
            r#"[[{"id": "a"}], null]"#,
            r#"{"events": [{"id": "a", "n": 18446744073709551616, "m": -9223372036854775809}]}"#,
        ] {
            agree(body);
        }
    }
}
