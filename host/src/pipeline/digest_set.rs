//! A set of 64-bit digests that costs about 8 to 10 bytes per member and grows without ever copying itself
//! whole: 2^16 sorted vectors, picked by a digest's top 16 bits. A hash set of `u64` costs 9 bytes per
//! slot, 10 to 21 per member depending on where it is in its doubling, and needs the old and the new table
//! at once while it grows; at a million members that is ~28 MiB for a moment instead of ~10.
//!
//! Digests are hash outputs, so they spread evenly over the buckets; a bucket holds `len / 65 536` members
//! on average (15 at a million), searched by bisection.

/// How many of a digest's top bits pick its bucket.
const BUCKET_BITS: u32 = 16;

/// A set of 64-bit digests (see the module's documentation).
#[derive(Default)]
pub(super) struct DigestSet {
    /// Empty until the first insert, then `1 << BUCKET_BITS` sorted vectors.
    buckets: Vec<Vec<u64>>,
}

impl DigestSet {
    fn bucket(digest: u64) -> usize {
        (digest >> (64 - BUCKET_BITS)) as usize
    }

    /// Add `digest`; false when it was already there.
    pub(super) fn insert(&mut self, digest: u64) -> bool {
        if self.buckets.is_empty() {
            self.buckets.resize_with(1 << BUCKET_BITS, Vec::new);
        }
        let bucket = &mut self.buckets[Self::bucket(digest)];
        match bucket.binary_search(&digest) {
            Ok(_) => false,
            Err(at) => {
                bucket.insert(at, digest);
                true
            }
        }
    }

    /// Whether `digest` is in the set (the reader only needs `insert`'s answer; the tests look inside).
    #[cfg(test)]
    fn contains(&self, digest: u64) -> bool {
        self.buckets
            .get(Self::bucket(digest))
            .is_some_and(|bucket| bucket.binary_search(&digest).is_ok())
    }

    /// How many digests are in the set.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_empty_set_holds_nothing_and_allocates_nothing() {
        let set = DigestSet::default();
        assert!(!set.contains(7));
        assert_eq!(set.len(), 0);
        assert!(set.buckets.is_empty());
    }

    #[test]
    fn digests_sharing_a_bucket_stay_apart() {
        let mut set = DigestSet::default();
        let same_bucket = [0xabcd_0000_0000_0003, 0xabcd_0000_0000_0001, 0xabcd_ffff_ffff_ffff];
        for d in same_bucket {
            assert!(set.insert(d));
        }
        assert!(!set.insert(0xabcd_0000_0000_0001));
        assert!(set.contains(0xabcd_ffff_ffff_ffff));
        assert!(!set.contains(0xabcd_0000_0000_0002));
        assert_eq!(set.len(), 3);
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_set(ops in proptest::collection::vec((0u8..2, 0u64..64, any::<u16>()), 0..400)) {
            let mut set = DigestSet::default();
            let mut model = HashSet::new();
            for (op, low, high) in ops {
                // Few distinct values, spread over a few buckets, so inserts and repeats both happen.
                let digest = (u64::from(high % 4) << 48) | low;
                match op {
                    0 => prop_assert_eq!(set.insert(digest), model.insert(digest)),
                    _ => prop_assert_eq!(set.contains(digest), model.contains(&digest)),
                }
                prop_assert_eq!(set.len(), model.len());
            }
        }
    }
}
