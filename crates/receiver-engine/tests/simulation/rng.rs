//! Seeded randomness: a SplitMix64 stream for building a seed's world, and
//! a keyed hash for decisions taken while it runs, so that an answer
//! depends on (seed, entity, virtual time window), never on the order in
//! which the engine happens to ask.

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, good enough to
/// draw a world from.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        let span = (hi - lo) as u64 + 1;
        lo + (self.next_u64() % span) as i64
    }

    /// `true` with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as i64 - 1) as usize]
    }
}

/// The SplitMix64 finaliser.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A decision keyed on `parts` (seed, entity, time window, ...): uniform
/// in `0..n`, the same whenever the same parts are asked.
pub(crate) fn keyed(parts: &[u64], n: u64) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for part in parts {
        h = mix(h ^ part.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    h % n.max(1)
}

/// A stable number for a string (an id), for [`keyed`].
pub(crate) fn of_str(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_numbers_and_keys_decide_alike() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let r = Rng::new(8).range(3, 5);
        assert!((3..=5).contains(&r));
        assert_eq!(keyed(&[1, 2, 3], 10), keyed(&[1, 2, 3], 10));
        assert_ne!(of_str("a"), of_str("b"));
    }
}
