//! Pagination: [`Pager`] reads a list a page at a time, [`Page`] is one page.
//!
//! # One bad event does not sink its page
//!
//! A page of events is decoded whole when it can be (the quick path). When it
//! cannot, it is decoded event by event: its outer structure (the `events`
//! array, `meta`) is read first, by serde_json or, when serde_json cannot get
//! past an event, by a small scanner that splits the array's elements
//! without recursion; then each event is decoded alone. An event that cannot
//! be decoded (nested deeper than serde_json's limit of 128, a number out of
//! range, a broken escape, not an object) is left out of
//! [`Page::items`] and reported in [`Page::skipped`] as an [`Undecodable`],
//! with its id and creation time when they can be read. Bytes that are not
//! UTF-8 are replaced with U+FFFD rather than failing the page. A body that is
//! not an object with an `events` array fails the page with
//! [`Error::Decode`], naming the JSON path.
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
use crate::split;

/// Turns a page's body into its items and metadata.
type Decoder<T> = fn(&[u8], &str) -> Result<Decoded<T>>;

/// A decoded page body.
pub(crate) struct Decoded<T> {
    pub(crate) items: Vec<T>,
    pub(crate) meta: Option<Meta>,
    pub(crate) skipped: Vec<Undecodable>,
}

impl<T> Decoded<T> {
    /// A page whose items all decoded.
    pub(crate) fn whole(items: Vec<T>, meta: Option<Meta>) -> Self {
        Self {
            items,
            meta,
            skipped: Vec::new(),
        }
    }
}

/// An event of a page that could not be decoded, left out so the rest of its
/// page is not lost (see [`Page::skipped`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Undecodable {
    /// Its id, when its top-level `id` is a readable string.
    pub id: Option<EventId>,
    /// When it happened, when its top-level `created_at` is a readable
    /// RFC 3339 string.
    pub created_at: Option<DateTime<Utc>>,
    /// Its position in the page's `events` array, from 0.
    pub index: usize,
    /// Why it could not be decoded (serde_json's message).
    pub reason: String,
}

impl Undecodable {
    /// Reads what it can of the raw `element` at `index`.
    fn new(index: usize, element: &str, reason: impl fmt::Display) -> Self {
        Self {
            id: split::string_member(element, "id").map(EventId::new),
            created_at: split::string_member(element, "created_at")
                .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                .map(|at| at.with_timezone(&Utc)),
            index,
            reason: reason.to_string(),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items of this page, in the order the API sent them.
    pub items: Vec<T>,
    /// The events of this page that could not be decoded, left out of
    /// `items` (always empty for projects and devices, which decode whole or
    /// fail). `items.len() + skipped.len()` is the length of the page's
    /// `events` array.
    pub skipped: Vec<Undecodable>,
    /// The page's pagination metadata (all `None` when the answer had none).
    pub meta: Meta,
    /// The page number: `meta.current_page` when the API sent it, else the
    /// count of pages this pager has read (from 1).
    pub page: u64,
    /// The rate-limit headers of this page's answer, when it carried any.
    pub rate_limit: Option<RateLimit>,
    /// The answer's `Date` header: the API's clock when it served the page.
    pub date: Option<chrono::DateTime<chrono::Utc>>,
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
    /// A pager from `first`; when the first URL could not be built, a pager
    /// whose first call returns that error and whose list then ends.
    pub(crate) fn new(
        client: Client,
        endpoint: Endpoint,
        first: Result<Url>,
        decode: Decoder<T>,
    ) -> Self {
        let (next, pending) = match first {
            Ok(url) => (Some(Next::Url(url)), None),
            Err(error) => (None, Some(error)),
        };
        Self {
            client,
            endpoint,
            next,
            pending,
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
        let Decoded {
            items,
            meta,
            skipped,
        } = (self.decode)(&fetched.body, &path)?;
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

        if !skipped.is_empty() {
            tracing::debug!(
                path,
                skipped = skipped.len(),
                decoded = items.len(),
                "events that could not be decoded were left out of the page"
            );
        }
        Ok(Some(Page {
            items,
            skipped,
            page: meta.current_page.unwrap_or(self.pages_read),
            meta,
            rate_limit: fetched.rate_limit,
            date: fetched.date,
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

    /// Reads every page of the list and returns their items in order;
    /// unlike [`collect_all`](Self::collect_all), a list longer than
    /// `max_pages` pages is an error, never a silent cut.
    ///
    /// # Errors
    ///
    /// As [`next_page`](Self::next_page), and [`Error::TooManyPages`] when
    /// the list goes on past `max_pages` pages.
    pub async fn collect_complete(&mut self, max_pages: usize) -> Result<Vec<T>> {
        let items = self.collect_all(max_pages).await?;
        if self.is_finished() {
            Ok(items)
        } else {
            Err(Error::TooManyPages {
                path: self
                    .next
                    .as_ref()
                    .map_or_else(|| self.endpoint.as_str().to_owned(), Next::describe),
                max_pages,
            })
        }
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
    /// None in practice: the event was checked to decode as an [`Event`]
    /// when its page was read (an event that does not is in
    /// [`Page::skipped`] instead). The error is serde_json's, should that
    /// ever fail.
    pub fn decode(&self) -> serde_json::Result<Event> {
        serde_json::from_str(self.raw.get())
    }

    /// Reads the id and creation time of a raw event, checking that it
    /// decodes as an [`Event`].
    fn from_raw(raw: Box<RawValue>) -> serde_json::Result<Self> {
        let head: Head = serde_json::from_str(raw.get())?;
        Ok(Self {
            id: head.id.map(EventId::new),
            created_at: head.created_at,
            raw,
        })
    }
}

/// A page of events with each event (and `meta`) kept as its JSON text:
/// serde_json reads raw values without recursion, so no event's depth can
/// fail this outer read.
#[derive(Deserialize)]
struct RawEventList {
    #[serde(default, deserialize_with = "raw_events")]
    events: Vec<Box<RawValue>>,
    #[serde(default)]
    meta: Option<Box<RawValue>>,
}

/// `null` is an empty list (as [`EventList`] reads it).
fn raw_events<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Box<RawValue>>, D::Error> {
    Ok(Option::<Vec<Box<RawValue>>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads `meta` as [`EventList`] does: a value that is not a [`Meta`]
/// (mistyped, or too deep to read) is absent.
fn lenient_meta(raw: Option<&str>) -> Option<Meta> {
    let value = serde_json::from_str::<serde_json::Value>(raw?).ok()?;
    serde_json::from_value(value).ok()
}

/// Decodes a page of events whole ([`Client::event_pages`]): quickly when
/// every event decodes, else event by event, as [`decode_lazy_events`] does.
pub(crate) fn decode_events(body: &[u8], path: &str) -> Result<Decoded<Event>> {
    if let Ok(list) = serde_json::from_slice::<EventList>(body) {
        return Ok(Decoded::whole(list.events, list.meta));
    }
    let careful = decode_careful(body, path)?;
    let mut page = Decoded::whole(Vec::with_capacity(careful.items.len()), careful.meta);
    page.skipped = careful.skipped;
    for (lazy, index) in careful.items {
        match lazy.decode() {
            Ok(event) => page.items.push(event),
            Err(error) => page
                .skipped
                .push(Undecodable::new(index, lazy.raw_json(), error)),
        }
    }
    page.skipped.sort_by_key(|s| s.index);
    Ok(page)
}

/// Decodes a page of events lazily ([`Client::lazy_event_pages`]). The
/// result is the one [`decode_events`] gives: the same events, the same
/// skipped ones, the same errors.
pub(crate) fn decode_lazy_events(body: &[u8], path: &str) -> Result<Decoded<LazyEvent>> {
    if let Ok((items, meta)) = decode_lazy_quick(body) {
        return Ok(Decoded::whole(items, meta));
    }
    let careful = decode_careful(body, path)?;
    Ok(Decoded {
        items: careful.items.into_iter().map(|(lazy, _)| lazy).collect(),
        meta: careful.meta,
        skipped: careful.skipped,
    })
}

/// The quick path of [`decode_lazy_events`]; its errors name no JSON path.
fn decode_lazy_quick(body: &[u8]) -> serde_json::Result<(Vec<LazyEvent>, Option<Meta>)> {
    let list = serde_json::from_slice::<RawEventList>(body)?;
    let events = list
        .events
        .into_iter()
        .map(LazyEvent::from_raw)
        .collect::<serde_json::Result<Vec<_>>>()?;
    Ok((
        events,
        lenient_meta(list.meta.as_deref().map(RawValue::get)),
    ))
}

/// The careful path: the page's structure first, then each event alone.
/// Every event that decodes is returned with its index in the `events`
/// array; the others are [`Undecodable`].
fn decode_careful(body: &[u8], path: &str) -> Result<Decoded<(LazyEvent, usize)>> {
    let text = String::from_utf8_lossy(body);
    let (elements, meta): (Vec<Cow<'_, str>>, _) = match serde_json::from_str::<RawEventList>(&text)
    {
        Ok(list) => {
            let meta = lenient_meta(list.meta.as_deref().map(RawValue::get));
            let events = list
                .events
                .into_iter()
                .map(|raw| Cow::Owned(Box::<str>::from(raw).into_string()));
            (events.collect(), meta)
        }
        Err(_) => match split::split_page(&text) {
            Some(page) => (
                page.events.into_iter().map(Cow::Borrowed).collect(),
                lenient_meta(page.meta),
            ),
            // Not an object with an events array: fail, naming where.
            None => return whole_or_error(text.as_bytes(), path),
        },
    };
    let mut page = Decoded::whole(Vec::with_capacity(elements.len()), meta);
    for (index, element) in elements.into_iter().enumerate() {
        let decoded =
            RawValue::from_string(element.clone().into_owned()).and_then(LazyEvent::from_raw);
        match decoded {
            Ok(lazy) => page.items.push((lazy, index)),
            Err(error) => page.skipped.push(Undecodable::new(index, &element, error)),
        }
    }
    Ok(page)
}

/// A body neither serde_json nor the scanner could split: decoded as an
/// [`EventList`] to name the JSON path that failed.
fn whole_or_error(body: &[u8], path: &str) -> Result<Decoded<(LazyEvent, usize)>> {
    let list: EventList = decode(body, path)?;
    let mut items = Vec::with_capacity(list.events.len());
    for (index, event) in list.events.into_iter().enumerate() {
        let raw =
            RawValue::from_string(event.raw_json().to_owned()).map_err(|source| Error::Decode {
                path: path.to_owned(),
                json_path: format!("events[{index}]"),
                source,
            })?;
        let lazy = LazyEvent {
            id: event.id().cloned(),
            created_at: event.created_at(),
            raw,
        };
        items.push((lazy, index));
    }
    Ok(Decoded::whole(items, list.meta))
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
            Ok(current.clone()),
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

    /// Decodes `body` both ways and checks they agree: the same events and
    /// skipped events, or the same error. Returns the full decoding.
    fn agree(body: &[u8]) -> Result<Decoded<Event>> {
        let shown = String::from_utf8_lossy(body);
        let full = decode_events(body, "/events");
        let lazy = decode_lazy_events(body, "/events");
        match (&full, lazy) {
            (Ok(full), Ok(lazy)) => {
                assert_eq!(lazy.meta, full.meta, "{shown}");
                assert_eq!(lazy.skipped, full.skipped, "{shown}");
                assert_eq!(lazy.items.len(), full.items.len(), "{shown}");
                for (lazy, event) in lazy.items.iter().zip(&full.items) {
                    assert_eq!(lazy.id(), event.id(), "{shown}");
                    assert_eq!(lazy.created_at(), event.created_at(), "{shown}");
                    assert_eq!(&lazy.decode().unwrap(), event, "{shown}");
                }
            }
            (Err(full), Err(lazy)) => assert_eq!(lazy.to_string(), full.to_string()),
            (full, lazy) => panic!(
                "{shown}: full {:?}, lazy {:?}",
                full.as_ref().map(|f| f.items.len()),
                lazy.map(|l| l.items.len())
            ),
        }
        full
    }

    fn ids(page: &Decoded<Event>) -> Vec<&str> {
        page.items
            .iter()
            .map(|e| e.id().map_or("", EventId::as_str))
            .collect()
    }

    fn skipped_ids(page: &Decoded<Event>) -> Vec<(usize, Option<&str>)> {
        page.skipped
            .iter()
            .map(|s| (s.index, s.id.as_ref().map(EventId::as_str)))
            .collect()
    }

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
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
                    agree(text.as_bytes()).ok();
                    agree(format!("{{\"events\": [{text}, {text}]}}").as_bytes()).unwrap();
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
            agree(body.as_bytes()).ok();
            assert_eq!(
                decode_lazy_quick(body.as_bytes()).is_ok(),
                serde_json::from_slice::<EventList>(body.as_bytes()).is_ok(),
                "the quick paths must agree: {body}"
            );
        }
    }

    #[test]
    fn one_bad_event_is_skipped_and_its_neighbours_kept() {
        let deep = nested(200);
        /// A body, the ids decoded, and the skipped events (index, id).
        type Case = (
            String,
            Vec<&'static str>,
            Vec<(usize, Option<&'static str>)>,
        );
        let cases: [Case; 6] = [
            // Nested deeper than serde_json's limit.
            (
                format!(r#"{{"events": [{{"id": "a"}}, {{"id": "b", "x": {deep}}}, {{"id": "c"}}]}}"#),
                vec!["a", "c"],
                vec![(1, Some("b"))],
            ),
            // A number out of range, an element that is not an object.
            (
                r#"{"events": [{"id": "a", "big": 1e400}, 7, {"id": "c"}]}"#.to_owned(),
                vec!["c"],
                vec![(0, Some("a")), (1, None)],
            ),
            // A lone surrogate escape.
            (
                r#"{"events": [{"id": "a", "x": "\ud800"}, {"id": "b"}]}"#.to_owned(),
                vec!["b"],
                vec![(0, Some("a"))],
            ),
            // An escape serde_json refuses even to skip: the scanner splits.
            (
                r#"{"events": [{"id": "a"}, {"id": "b", "x": "\q"}, {"id": "c"}], "meta": {"current_page": 2}}"#.to_owned(),
                vec!["a", "c"],
                vec![(1, Some("b"))],
            ),
            // A raw control character inside a string, before the id.
            (
                "{\"events\": [{\"x\": \"\u{1}\", \"id\": \"a\"}, {\"id\": \"b\"}]}".to_owned(),
                vec!["b"],
                vec![(0, Some("a"))],
            ),
            // An event deep enough to fail only inside the page.
            (
                format!(r#"{{"events": [{{"id": "a", "x": {}}}]}}"#, nested(126)),
                vec!["a"],
                vec![],
            ),
        ];
        for (body, decoded, skipped) in cases {
            let page = agree(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(ids(&page), decoded, "{body}");
            assert_eq!(skipped_ids(&page), skipped, "{body}");
            for undecodable in &page.skipped {
                assert!(!undecodable.reason.is_empty());
            }
        }
        let page = decode_events(
            r#"{"events": [{"id": "a", "x": "\q"}], "meta": {"current_page": 2}}"#.as_bytes(),
            "/e",
        )
        .unwrap();
        assert_eq!(page.meta.unwrap().current_page, Some(2), "meta is kept");
    }

    #[test]
    fn the_id_and_time_of_a_skipped_event_are_read_when_they_can_be() {
        let body = format!(
            r#"{{"events": [{{"created_at": "2024-05-01T12:00:00Z", "x": {}, "id": "deep"}}, {{"id": {{"no": 1}}, "x": "\ud800"}}]}}"#,
            nested(300)
        );
        let page = agree(body.as_bytes()).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.skipped[0].id.as_ref().unwrap().as_str(), "deep");
        assert_eq!(
            page.skipped[0].created_at.unwrap().to_rfc3339(),
            "2024-05-01T12:00:00+00:00"
        );
        assert_eq!(page.skipped[1].id, None);
        assert_eq!(page.skipped[1].created_at, None);

        // Deep around the page's other members, or as an element: one skipped.
        let body = format!(r#"{{"x": {0}, "events": [{0}], "meta": {0}}}"#, nested(300));
        let page = agree(body.as_bytes()).unwrap();
        assert_eq!((page.items.len(), page.skipped.len()), (0, 1));
        assert_eq!(page.meta, None);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut body = br#"{"events": [{"id": "a"}, {"id": "b", "body": "caf"#.to_vec();
        body.extend_from_slice(b"\xe9 \xff\"}, {\"id\": \"c\"}]}");
        let page = agree(&body).unwrap();
        assert_eq!(ids(&page), ["a", "b", "c"]);
        assert!(page.skipped.is_empty());
        assert_eq!(page.items[1].body(), Some("caf\u{fffd} \u{fffd}"));
    }

    #[test]
    fn a_body_that_is_no_events_page_still_fails_naming_the_path() {
        for (body, json_path) in [
            (r#"{"events": {"id": "a"}}"#.to_owned(), "events"),
            (r#"{"events": [{"id": "a"}]} trailing"#.to_owned(), "."),
            (r#"{"events": "x"}"#.to_owned(), "events"),
            ("\u{1}".to_owned(), "."),
        ] {
            match decode_events(body.as_bytes(), "/e") {
                Err(Error::Decode { json_path: p, .. }) => assert_eq!(p, json_path, "{body}"),
                other => panic!("{body}: {:?}", other.map(|p| p.items.len())),
            }
        }
    }
}

/// Property tests of the page decoders: whatever the bytes, no panic; and a
/// page whose `events` is an array accounts for every element, decoded or
/// skipped.
#[cfg(test)]
mod prop_tests {
    use proptest::prelude::*;

    use super::*;

    /// A string token: pieces that are fine, escaped, broken (a lone
    /// surrogate, a bad escape, a raw control character) or not UTF-8.
    fn string_token() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            "[a-z0-9 :-]{0,8}".prop_map(String::into_bytes),
            Just(br#"\""#.to_vec()),
            Just(br"\\".to_vec()),
            Just(br"\u00e9".to_vec()),
            Just(br"\ud800".to_vec()),
            Just(br"\q".to_vec()),
            Just(br"\u12x".to_vec()),
            Just(vec![0x01]),
            Just(vec![0xff]),
            Just(vec![0xe2, 0x82]),
            Just("é".as_bytes().to_vec()),
        ];
        prop::collection::vec(piece, 0..4).prop_map(|pieces| {
            let mut token = vec![b'"'];
            token.extend(pieces.concat());
            token.push(b'"');
            token
        })
    }

    fn scalar() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"null".to_vec()),
            Just(b"true".to_vec()),
            any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            Just(b"1e400".to_vec()),
            Just(b"18446744073709551616".to_vec()),
            Just(b"-0.5".to_vec()),
            Just(br#""2024-05-01T12:00:00Z""#.to_vec()),
            Just(br#""+10000-01-01T00:00:00Z""#.to_vec()),
            Just(br#""9999-12-31T23:59:59-01:00""#.to_vec()),
            string_token(),
        ]
    }

    /// A scalar inside 0 to 300 levels of arrays or objects.
    fn nested() -> impl Strategy<Value = Vec<u8>> {
        (scalar(), 0usize..300, any::<bool>()).prop_map(|(inner, depth, objects)| {
            let (open, close): (&[u8], &[u8]) = if objects {
                (br#"{"k":"#, b"}")
            } else {
                (b"[", b"]")
            };
            let mut value = open.repeat(depth);
            value.extend(inner);
            value.extend(close.repeat(depth));
            value
        })
    }

    /// An event-like object: ids, times and other members of any type, in
    /// any order, possibly repeated.
    fn event() -> impl Strategy<Value = Vec<u8>> {
        let member = prop_oneof![
            scalar().prop_map(|v| (br#""id""#.to_vec(), v)),
            nested().prop_map(|v| (br#""id""#.to_vec(), v)),
            scalar().prop_map(|v| (br#""created_at""#.to_vec(), v)),
            (string_token(), nested()),
        ];
        prop::collection::vec(member, 0..6).prop_map(|members| {
            let members: Vec<Vec<u8>> = members
                .into_iter()
                .map(|(key, value)| [key, b": ".to_vec(), value].concat())
                .collect();
            [b"{".to_vec(), members.join(&b", "[..]), b"}".to_vec()].concat()
        })
    }

    /// A page body and the length of its `events` array.
    fn page() -> impl Strategy<Value = (Vec<u8>, usize)> {
        let element = prop_oneof![4 => event(), 1 => nested()];
        let meta = prop_oneof![
            Just(None),
            nested().prop_map(Some),
            Just(Some(
                br#"{"current_page": 2, "last_page": "x", "next": {"href": "?page=3"}}"#.to_vec()
            )),
        ];
        (prop::collection::vec(element, 0..8), meta, any::<bool>()).prop_map(
            |(events, meta, null_events)| {
                let count = if null_events { 0 } else { events.len() };
                let array = if null_events {
                    b"null".to_vec()
                } else {
                    [b"[".to_vec(), events.join(&b", "[..]), b"]".to_vec()].concat()
                };
                let mut body = [br#"{"events": "#.to_vec(), array].concat();
                if let Some(meta) = meta {
                    body.extend_from_slice(br#", "meta": "#);
                    body.extend(meta);
                }
                body.push(b'}');
                (body, count)
            },
        )
    }

    /// Both decoders give the same answer; returns it as counts.
    fn both(body: &[u8]) -> Result<(usize, Vec<usize>), String> {
        let full = decode_events(body, "/p");
        let lazy = decode_lazy_events(body, "/p");
        match (full, lazy) {
            (Ok(full), Ok(lazy)) => {
                assert_eq!(full.skipped, lazy.skipped);
                assert_eq!(full.items.len(), lazy.items.len());
                assert_eq!(full.meta, lazy.meta);
                Ok((
                    full.items.len(),
                    full.skipped.iter().map(|s| s.index).collect(),
                ))
            }
            (Err(full), Err(lazy)) => {
                assert_eq!(full.to_string(), lazy.to_string());
                Err(full.to_string())
            }
            (full, lazy) => panic!(
                "the decoders disagree: {:?} / {:?}",
                full.map(|f| f.items.len()),
                lazy.map(|l| l.items.len())
            ),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = both(&body);
            let mut wrapped = br#"{"events": ["#.to_vec();
            wrapped.extend(&body);
            wrapped.extend_from_slice(b"]}");
            let _ = both(&wrapped);
        }

        #[test]
        fn every_element_of_the_events_array_is_decoded_or_skipped((body, count) in page()) {
            let (decoded, skipped) = both(&body)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&body))))?;
            prop_assert_eq!(decoded + skipped.len(), count);
            prop_assert!(skipped.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(skipped.iter().all(|&i| i < count));
        }
    }
}
