//! W3C Trace Context ids for the `traceparent` header and event extension.

use rand::Rng;

/// The name of the CloudEvents extension (and HTTP header) that carries the trace.
pub const TRACEPARENT: &str = "traceparent";

/// A random, non-zero 128-bit trace id.
pub(crate) fn new_trace_id() -> u128 {
    rand::rng().random_range(1..=u128::MAX)
}

/// A random, non-zero 64-bit span id.
pub(crate) fn new_span_id() -> u64 {
    rand::rng().random_range(1..=u64::MAX)
}

/// `00-<trace id>-<span id>-01` (version 00, sampled).
pub(crate) fn traceparent(trace_id: u128, span_id: u64) -> String {
    format!("00-{trace_id:032x}-{span_id:016x}-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_w3c_version_00() {
        assert_eq!(
            traceparent(
                0x41bf_5830_6274_f26d_0089_209b_0ad1_7caf,
                0xd3dd_31d5_d1f7_9415
            ),
            "00-41bf58306274f26d0089209b0ad17caf-d3dd31d5d1f79415-01"
        );
        assert_eq!(
            traceparent(1, 2),
            "00-00000000000000000000000000000001-0000000000000002-01"
        );
    }

    #[test]
    fn ids_are_fresh() {
        assert_ne!(new_trace_id(), new_trace_id());
        assert_ne!(new_span_id(), new_span_id());
    }
}
