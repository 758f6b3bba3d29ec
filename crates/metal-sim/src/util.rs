//! Small helpers shared by both simulators: seeded ids, fault dice, the
//! millisecond form of durations in JSON, and JSON error responses.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rand::rngs::StdRng;

/// A random version-4 UUID drawn from a seeded generator, so a seed gives the
/// same ids on every run.
pub(crate) fn uuid(rng: &mut StdRng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = |r: &[u8]| r.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        h(&b[0..4]),
        h(&b[4..6]),
        h(&b[6..8]),
        h(&b[8..10]),
        h(&b[10..16])
    )
}

/// True with probability `share`; `0.0` never draws and is always false, `1.0`
/// is always true.
pub(crate) fn roll(rng: &mut StdRng, share: f64) -> bool {
    if share <= 0.0 {
        false
    } else if share >= 1.0 {
        true
    } else {
        rng.random::<f64>() < share
    }
}

/// A latency of `fixed` plus a uniform jitter in `[0, jitter]`.
pub(crate) fn latency(rng: &mut StdRng, fixed: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        fixed
    } else {
        let extra = rng.random_range(0..=u64::try_from(jitter.as_micros()).unwrap_or(u64::MAX));
        fixed + Duration::from_micros(extra)
    }
}

/// A JSON response with a pre-serialized body.
pub(crate) fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// `{"error": message}` with the given status, the shape the Metal API uses.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, serde_json::json!({ "error": message }).to_string())
}

/// Serde helpers writing a [`Duration`] as whole milliseconds.
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn uuids_are_v4_and_seeded() {
        let a = uuid(&mut StdRng::seed_from_u64(7));
        let b = uuid(&mut StdRng::seed_from_u64(7));
        assert_eq!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn extreme_shares_are_certain() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| roll(&mut rng, 1.0)));
        assert!((0..100).all(|_| !roll(&mut rng, 0.0)));
    }
}
