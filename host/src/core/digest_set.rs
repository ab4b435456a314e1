//! Sets and maps keyed by digests (hash outputs) that cost about their entries' own size per member and grow
//! without ever copying themselves whole: 2^16 sorted vectors, picked by a digest's top 16 bits.
//!
//! A `std` hash set of `u64` costs 9 bytes per slot, 10 to 21 per member depending on where it is in its
//! doubling, and needs the old and the new table at once while it grows: at a million members ~28 MiB for a
//! moment instead of ~10. Here a member costs its own size plus its bucket's slack: a bucket grows by a
//! quarter (at least 4 entries), and it is only 1 / 65 536th of the whole. Digests spread evenly over the
//! buckets; a bucket holds `len / 65 536` members on average (15 at a million), searched by bisection.
//! A million random inserts (a scratch program with this file and jemalloc, as redrive allocates): `u64`s, 6
//! bytes each since their bucket's bits are not stored again, peak at 14.4 MiB of process RSS (2.6 of it the
//! program's own) in 282 M instructions (callgrind, the generator's included), 17.8 MiB in 251 M as 8 bytes
//! each, 19.4 MiB in 233 M growing by doubling; `u128`s at 30.2 MiB in 309 M instructions where `std`'s
//! `HashSet<u128>` peaks at 63.8 MiB in 491 M; the file sink's 649 600 replay ids of the benchmark's second
//! run at 21.4 against 37.6 MiB.
//!
//! [`DigestSet`] is the set; [`Buckets`] the container under it, for maps that pack a value into each entry
//! (the journal's memory of earlier runs keeps a state in the top bits of each 128-bit entry).

/// How many of a digest's top bits pick its bucket.
pub const BUCKET_BITS: u32 = 16;

/// The fewest entries a bucket grows by.
const MIN_GROWTH: usize = 4;

/// An unsigned integer that is a digest: its top [`BUCKET_BITS`] pick its bucket.
pub trait Digest: Copy + Ord {
    /// What a [`DigestSet`] stores of a digest, ordered as the digests are: for a `u64`, its bits below the top
    /// [`BUCKET_BITS`] (the bucket says those) as 16-bit limbs, most significant first.
    type Rest: Copy + Ord;

    /// The bucket of this digest: its top [`BUCKET_BITS`] bits.
    fn bucket(self) -> usize;

    /// This digest without its bucket's bits.
    fn rest(self) -> Self::Rest;
}

/// `N` 16-bit limbs of `value`, the most significant first.
fn limbs<const N: usize>(value: u64) -> [u16; N] {
    std::array::from_fn(|i| (value >> (16 * (N - 1 - i))) as u16)
}

impl Digest for u64 {
    type Rest = [u16; 3];

    fn bucket(self) -> usize {
        (self >> (u64::BITS - BUCKET_BITS)) as usize
    }

    fn rest(self) -> [u16; 3] {
        limbs(self)
    }
}

/// Stored whole: 14-byte entries were no smaller in jemalloc's size classes (a million random inserts peaked
/// at 31.3 MiB against 30.5; 649 600 at 20.6 against 21.5) and cost a compare by limbs.
impl Digest for u128 {
    type Rest = u128;

    fn bucket(self) -> usize {
        (self >> (u128::BITS - BUCKET_BITS)) as usize
    }

    fn rest(self) -> u128 {
        self
    }
}

/// 2^16 vectors of entries, each sorted by a key the caller derives from an entry (see the module's
/// documentation). Which bucket an entry belongs to is the caller's to say, by a [`Digest::bucket`].
pub struct Buckets<E> {
    /// Empty until the first insert, then `1 << BUCKET_BITS` sorted vectors.
    buckets: Vec<Vec<E>>,
    len: usize,
}

impl<E> Default for Buckets<E> {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            len: 0,
        }
    }
}

impl<E: Copy> Buckets<E> {
    /// The entry of `bucket` whose key is `key`.
    pub fn find<K: Ord>(&self, bucket: usize, key: &K, key_of: impl FnMut(&E) -> K) -> Option<E> {
        let entries = self.buckets.get(bucket)?;
        let at = entries.binary_search_by_key(key, key_of).ok()?;
        entries.get(at).copied()
    }

    /// Put `make(current entry)` where the entry of `bucket` with key `key` is or goes (`None`: there was
    /// none). `make` must keep the key. True when the entry is new.
    pub fn upsert<K: Ord>(
        &mut self,
        bucket: usize,
        key: &K,
        key_of: impl FnMut(&E) -> K,
        make: impl FnOnce(Option<E>) -> E,
    ) -> bool {
        if self.buckets.is_empty() {
            self.buckets.resize_with(1 << BUCKET_BITS, Vec::new);
        }
        let entries = &mut self.buckets[bucket];
        match entries.binary_search_by_key(key, key_of) {
            Ok(at) => {
                entries[at] = make(Some(entries[at]));
                false
            }
            Err(at) => {
                if entries.len() == entries.capacity() {
                    // A quarter more, not double: a bucket's slack stays under a quarter of its entries (what
                    // jemalloc's size classes round to anyway) instead of up to all of them.
                    entries.reserve_exact((entries.len() / 4).max(MIN_GROWTH));
                }
                entries.insert(at, make(None));
                self.len += 1;
                true
            }
        }
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, bucket by bucket.
    pub fn iter(&self) -> impl Iterator<Item = E> + '_ {
        self.buckets.iter().flatten().copied()
    }
}

/// A set of digests (see the module's documentation). A `u64` member costs its bits below its bucket's, 6
/// bytes; a `u128` its 16.
pub struct DigestSet<D: Digest> {
    members: Buckets<D::Rest>,
}

impl<D: Digest> Default for DigestSet<D> {
    fn default() -> Self {
        Self {
            members: Buckets::default(),
        }
    }
}

impl<D: Digest> DigestSet<D> {
    /// Add `digest`; false when it was already there.
    pub fn insert(&mut self, digest: D) -> bool {
        let rest = digest.rest();
        self.members.upsert(digest.bucket(), &rest, |&r| r, |_| rest)
    }

    /// Whether `digest` is in the set.
    pub fn contains(&self, digest: D) -> bool {
        let rest = digest.rest();
        self.members.find(digest.bucket(), &rest, |&r| r).is_some()
    }

    /// How many digests are in the set.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl<D: Digest> FromIterator<D> for DigestSet<D> {
    fn from_iter<I: IntoIterator<Item = D>>(digests: I) -> Self {
        let mut set = Self::default();
        for digest in digests {
            set.insert(digest);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_empty_set_holds_nothing_and_allocates_nothing() {
        let set = DigestSet::<u64>::default();
        assert!(!set.contains(7));
        assert_eq!(set.len(), 0);
        assert!(set.is_empty());
        assert!(set.members.buckets.is_empty());
    }

    #[test]
    fn digests_sharing_a_bucket_stay_apart() {
        let mut set = DigestSet::default();
        let same_bucket = [0xabcd_0000_0000_0003_u64, 0xabcd_0000_0000_0001, 0xabcd_ffff_ffff_ffff];
        for d in same_bucket {
            assert!(set.insert(d));
        }
        assert!(!set.insert(0xabcd_0000_0000_0001));
        assert!(set.contains(0xabcd_ffff_ffff_ffff));
        assert!(!set.contains(0xabcd_0000_0000_0002));
        assert!(!set.contains(0xabce_0000_0000_0001), "same low bits, another bucket");
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_128_bit_digest_is_bucketed_by_its_top_bits() {
        let high = 0x1234_u128 << 112;
        assert_eq!(high.bucket(), 0x1234);
        assert_eq!((high | u128::from(u64::MAX)).bucket(), 0x1234);
        assert_eq!((0xfedc_u64 << 48).bucket(), 0xfedc);
        let set: DigestSet<u128> = [high | 2, high | 1, high | 2, 5].into_iter().collect();
        assert_eq!(set.len(), 3);
        assert!(set.contains(high | 1) && set.contains(5) && !set.contains(high | 5));
    }

    #[test]
    fn a_member_is_stored_without_its_bucket_bits() {
        assert_eq!(std::mem::size_of::<<u64 as Digest>::Rest>(), 6);
        assert_eq!(0x1234_5678_9abc_def0_u64.rest(), [0x5678, 0x9abc, 0xdef0]);
    }

    #[test]
    fn a_bucket_grows_by_a_quarter_not_by_doubling() {
        let mut set = DigestSet::default();
        for low in 0..70_u64 {
            set.insert(0x4242_u64 << 48 | low);
        }
        let bucket = &set.members.buckets[0x4242];
        assert_eq!(bucket.len(), 70);
        // Doubling would leave room for 128.
        assert!(
            bucket.capacity() <= 70 + 70 / 4 + MIN_GROWTH,
            "capacity {}",
            bucket.capacity()
        );
    }

    proptest! {
        #[test]
        fn the_stored_rest_sorts_as_the_digests_do(a in any::<u64>(), b in any::<u64>()) {
            // Same bucket, so only the rest tells them apart.
            let b = a & (u64::MAX << 48) | b >> 16;
            prop_assert_eq!(a.rest().cmp(&b.rest()), a.cmp(&b));
        }

        #[test]
        fn behaves_as_a_hash_set(ops in proptest::collection::vec((0u8..2, 0u64..64, any::<u16>()), 0..400)) {
            let mut set = DigestSet::default();
            let mut model = HashSet::new();
            for (op, low, high) in ops {
                // Few distinct values, spread over a few buckets, so inserts and repeats both happen.
                let digest = (u128::from(high % 4) << 112) | (u128::from(low) << 60) | u128::from(low);
                match op {
                    0 => prop_assert_eq!(set.insert(digest), model.insert(digest)),
                    _ => prop_assert_eq!(set.contains(digest), model.contains(&digest)),
                }
                prop_assert_eq!(set.len(), model.len());
            }
        }
    }
}
