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

use std::collections::HashSet;
use std::fmt;

use url::Url;

use crate::client::{Client, Endpoint, path_of};
use crate::error::{Error, Result};
use crate::models::Meta;
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
    next: Option<Url>,
    /// An error found while working out the next page, returned by the next
    /// call (so the page that led to it is still delivered).
    pending: Option<Error>,
    visited: HashSet<String>,
    page_numbers: HashSet<u64>,
    pages_read: u64,
    decode: Decoder<T>,
}

impl<T> fmt::Debug for Pager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pager")
            .field("endpoint", &self.endpoint)
            .field("next", &self.next.as_ref().map(path_of))
            .field("pages_read", &self.pages_read)
            .finish_non_exhaustive()
    }
}

impl<T> Pager<T> {
    pub(crate) fn new(client: Client, endpoint: Endpoint, first: Url, decode: Decoder<T>) -> Self {
        Self {
            client,
            endpoint,
            next: Some(first),
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
        let Some(url) = self.next.clone() else {
            return Ok(None);
        };
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
        match self.next_url(&url, &meta) {
            Ok(Some(next)) if self.visited.contains(next.as_str()) => {
                tracing::debug!(path, "meta.next points at a page already read");
                self.pending = Some(Error::PaginationLoop {
                    path: path_of(&next),
                });
            }
            Ok(next) => self.next = next,
            Err(error) => self.pending = Some(error),
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

    fn next_url(&self, current: &Url, meta: &Meta) -> Result<Option<Url>> {
        let href = meta
            .next
            .as_ref()
            .map(|next| next.href.trim())
            .filter(|href| !href.is_empty());
        if let Some(href) = href {
            return self.client.resolve_next(current, href).map(Some);
        }
        match (meta.current_page, meta.last_page) {
            (Some(current_page), Some(last_page)) if current_page < last_page => {
                Ok(Some(with_page(current, current_page + 1)))
            }
            _ => Ok(None),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
