//! What earlier runs did with each message, by the 128-bit digest of its journal key: the journal's memory on a
//! resume. 16 bytes per message and never copied whole: 2^16 sorted vectors picked by a digest's top 16 bits,
//! each entry the digest's other 112 bits with the state in the top 16. A hash map of `u128` keys takes 32
//! bytes per slot (the key is 16-byte aligned) at a load of 44–88 %, and the old and new tables at once while
//! it doubles: a second run over a settled million-message DLQ peaked at 109.7 MiB with one, 98.4 MiB with this
//! (BENCHMARKS.md). The container is [`Buckets`], the one under [`crate::core::digest_set::DigestSet`].

use super::journal::PastState;
use crate::core::digest_set::{BUCKET_BITS, Buckets, Digest};

/// The bits of a digest kept in an entry (the rest are the bucket's number).
const LOW: u128 = (1u128 << (128 - BUCKET_BITS)) - 1;

/// The journal's memory of earlier runs (see the module's documentation).
#[derive(Default)]
pub struct PastMap {
    /// Entries sorted by their low bits.
    entries: Buckets<u128>,
}

fn tag(state: PastState) -> u128 {
    let code: u128 = match state {
        PastState::Acked => 1,
        PastState::SettledNotAcked => 2,
        PastState::InDoubt => 3,
    };
    code << (128 - BUCKET_BITS)
}

fn state_of(entry: u128) -> PastState {
    match entry >> (128 - BUCKET_BITS) {
        1 => PastState::Acked,
        2 => PastState::SettledNotAcked,
        _ => PastState::InDoubt,
    }
}

impl PastMap {
    /// What earlier runs did with the message of this digest, if anything was recorded.
    pub fn get(&self, digest: u128) -> Option<PastState> {
        let entry = self
            .entries
            .find(digest.bucket(), &(digest & LOW), |entry| entry & LOW)?;
        Some(state_of(entry))
    }

    /// Set the state of `digest` to what `next` makes of its current one (`None`: nothing recorded yet).
    pub fn update(&mut self, digest: u128, next: impl FnOnce(Option<PastState>) -> PastState) {
        let low = digest & LOW;
        self.entries.upsert(
            digest.bucket(),
            &low,
            |entry| entry & LOW,
            |entry| low | tag(next(entry.map(state_of))),
        );
    }

    /// How many messages have a state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message has one.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every message's state, in no particular order.
    pub fn states(&self) -> impl Iterator<Item = PastState> + '_ {
        self.entries.iter().map(state_of)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_empty_map_knows_nothing_and_allocates_nothing() {
        let map = PastMap::default();
        assert_eq!(map.get(7), None);
        assert!(map.is_empty());
        assert_eq!(map.states().count(), 0);
    }

    #[test]
    fn digests_sharing_a_bucket_keep_their_own_states() {
        let mut map = PastMap::default();
        let a = 0xabcd_u128 << 112 | 3;
        let b = 0xabcd_u128 << 112 | 1;
        let c = 0xabcd_u128 << 112 | LOW;
        map.update(a, |_| PastState::Acked);
        map.update(b, |_| PastState::InDoubt);
        map.update(c, |_| PastState::SettledNotAcked);
        map.update(b, |old| {
            assert_eq!(old, Some(PastState::InDoubt));
            PastState::SettledNotAcked
        });
        assert_eq!(map.get(a), Some(PastState::Acked));
        assert_eq!(map.get(b), Some(PastState::SettledNotAcked));
        assert_eq!(map.get(c), Some(PastState::SettledNotAcked));
        assert_eq!(map.get(0xabce_u128 << 112 | 3), None, "same low bits, another bucket");
        assert_eq!(map.len(), 3);
    }

    fn state(code: u8) -> PastState {
        match code % 3 {
            0 => PastState::Acked,
            1 => PastState::SettledNotAcked,
            _ => PastState::InDoubt,
        }
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(
            ops in proptest::collection::vec((any::<bool>(), 0u128..64, 0u8..4, any::<u8>()), 0..400)
        ) {
            let mut map = PastMap::default();
            let mut model = HashMap::new();
            for (write, low, high, code) in ops {
                // Few distinct digests over a few buckets, so new keys, updates and misses all happen.
                let digest = (u128::from(high) << 112) | (low << 64) | low;
                if write {
                    map.update(digest, |old| {
                        assert_eq!(old, model.get(&digest).copied());
                        state(code)
                    });
                    model.insert(digest, state(code));
                } else {
                    prop_assert_eq!(map.get(digest), model.get(&digest).copied());
                }
                prop_assert_eq!(map.len(), model.len());
            }
            let mut states: Vec<_> = map.states().map(|s| s as u8).collect();
            let mut expected: Vec<_> = model.values().map(|&s| s as u8).collect();
            states.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(states, expected);
        }
    }
}
