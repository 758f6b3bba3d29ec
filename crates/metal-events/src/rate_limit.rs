//! Rate-limit headers: [`RateLimit`] from `X-RateLimit-*`, and the wait a 429
//! asks for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Below this, an `X-RateLimit-Reset` value is read as seconds from now
/// rather than as a Unix time (which has been past 10⁹ since 2001).
const UNIX_TIME_FLOOR: u64 = 1_000_000_000;

/// The rate-limit headers of one response. A header that is missing or not a
/// number is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RateLimit {
    /// `X-RateLimit-Limit`: requests allowed in the window.
    pub limit: Option<u64>,
    /// `X-RateLimit-Remaining`: requests left in the window.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Reset`: when the window resets, in Unix seconds, as sent.
    pub reset: Option<u64>,
}

impl RateLimit {
    /// Rate-limit figures as the three headers would give them.
    pub fn new(limit: Option<u64>, remaining: Option<u64>, reset: Option<u64>) -> Self {
        Self {
            limit,
            remaining,
            reset,
        }
    }

    /// Reads the `X-RateLimit-*` headers; `None` when none of the three is
    /// present.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let limit = Self {
            limit: read("x-ratelimit-limit"),
            remaining: read("x-ratelimit-remaining"),
            reset: read("x-ratelimit-reset"),
        };
        (limit.limit.is_some() || limit.remaining.is_some() || limit.reset.is_some())
            .then_some(limit)
    }

    /// When the window resets. A small `X-RateLimit-Reset` value (below 10⁹)
    /// is read as seconds from `now`, a larger one as a Unix time.
    pub fn reset_at(&self, now: SystemTime) -> Option<SystemTime> {
        let reset = self.reset?;
        Some(if reset < UNIX_TIME_FLOOR {
            now + Duration::from_secs(reset)
        } else {
            UNIX_EPOCH + Duration::from_secs(reset)
        })
    }

    /// How long from `now` until the window resets (zero when it is past).
    pub fn reset_after(&self, now: SystemTime) -> Option<Duration> {
        self.reset_at(now)
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// The wait a 429 asks for: `Retry-After` in seconds or as an HTTP date, else
/// the time until `X-RateLimit-Reset`, else `None`. A date in the past means
/// no wait (zero).
pub(crate) fn retry_after(
    headers: &HeaderMap,
    rate_limit: Option<&RateLimit>,
    now: SystemTime,
) -> Option<Duration> {
    let from_header = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| match v.parse::<u64>() {
            Ok(seconds) => Some(Duration::from_secs(seconds)),
            Err(_) => httpdate::parse_http_date(v)
                .ok()
                .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)),
        });
    from_header.or_else(|| rate_limit.and_then(|r| r.reset_after(now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn reads_the_three_headers() {
        let map = headers(&[
            ("x-ratelimit-limit", "500"),
            ("x-ratelimit-remaining", " 12 "),
            ("x-ratelimit-reset", "1700000000"),
        ]);
        assert_eq!(
            RateLimit::from_headers(&map),
            Some(RateLimit {
                limit: Some(500),
                remaining: Some(12),
                reset: Some(1_700_000_000)
            })
        );
        assert_eq!(RateLimit::from_headers(&HeaderMap::new()), None);
        let junk = headers(&[("x-ratelimit-limit", "lots")]);
        assert_eq!(RateLimit::from_headers(&junk), None);
    }

    #[test]
    fn retry_after_prefers_the_header_then_the_reset() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let seconds = headers(&[("retry-after", "7"), ("x-ratelimit-reset", "1700000100")]);
        let rl = RateLimit::from_headers(&seconds);
        assert_eq!(
            retry_after(&seconds, rl.as_ref(), now),
            Some(Duration::from_secs(7))
        );

        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let dated = headers(&[("retry-after", &date)]);
        assert_eq!(
            retry_after(&dated, None, now),
            Some(Duration::from_secs(90))
        );

        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        let past = headers(&[("retry-after", &past)]);
        assert_eq!(retry_after(&past, None, now), Some(Duration::ZERO));

        let reset = headers(&[("x-ratelimit-reset", "1700000030")]);
        let rl = RateLimit::from_headers(&reset);
        assert_eq!(
            retry_after(&reset, rl.as_ref(), now),
            Some(Duration::from_secs(30))
        );

        let relative = headers(&[("x-ratelimit-reset", "45")]);
        let rl = RateLimit::from_headers(&relative);
        assert_eq!(
            retry_after(&relative, rl.as_ref(), now),
            Some(Duration::from_secs(45))
        );

        assert_eq!(retry_after(&HeaderMap::new(), None, now), None);
    }
}
