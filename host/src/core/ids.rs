//! Identities derived from messages: the journal key a message is known by, its replay id, and digests.

use std::fmt;

use sha2::{Digest, Sha256};

use super::envelope::Envelope;

/// Lower-case hex sha256. Encoded into a fixed buffer: `hex::encode` builds the string a `char` at a time,
/// which cost as much as a tenth of the sha256 itself, once or twice per message.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut text = [0u8; 64];
    // 32 bytes always fit in 64 hex digits, and hex digits are ASCII: the fallback is never taken.
    if hex::encode_to_slice(digest, &mut text).is_ok()
        && let Ok(text) = std::str::from_utf8(&text)
    {
        return text.to_owned();
    }
    hex::encode(digest)
}

/// A compact key for remembering ids in large sets (resume state): the first 128 bits of their sha256.
/// Collisions are negligible (about 10⁻²⁶ for a million ids), unlike a 64-bit hash.
pub fn id_digest(id: &str) -> u128 {
    let hash = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_le_bytes(first)
}

/// The key a message is journaled under: its id, plus what tells this dead letter apart from the same
/// message dead-lettered again later (its replay count, delivery count and last failure time), plus its
/// place among copies when ids repeat in a pass. A message that was replayed, failed again and came back to
/// the DLQ is therefore new work for a later run, not "settled before", which would remove it without
/// forwarding it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JournalKey(String);

impl JournalKey {
    /// The key of `env`. Where the broker gives every send a new id ([`Envelope::id_unique_per_send`],
    /// SQS) the id and replay count are enough, and the receive count must stay out: SQS raises it on every
    /// receive, redrive's own included.
    pub fn of(env: &Envelope) -> Self {
        use std::fmt::Write;
        let mut key = format!("{}#r{}", env.id, env.replay_count);
        if env.id_unique_per_send {
            return Self(key);
        }
        if let Some(n) = env.failure.receive_count {
            let _ = write!(key, ".c{n}");
        }
        if let Some(at) = env.failure.last_failed_at {
            let _ = write!(key, ".t{}", at.timestamp_millis());
        }
        Self(key)
    }

    /// The key of the `occurrence`-th message (1-based) with this key in one pass of a source whose ids can
    /// repeat (a file with the same id on two lines): the first keeps its key, later ones are told apart by
    /// their place, so no copy is ever taken for another.
    pub fn nth(self, occurrence: u32) -> Self {
        if occurrence <= 1 {
            self
        } else {
            Self(format!("{}#o{occurrence}", self.0))
        }
    }

    /// A key as written in a journal file.
    pub fn from_journal(text: String) -> Self {
        Self(text)
    }

    /// The key as text (as written to the journal).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its [`id_digest`], for large sets.
    pub fn digest(&self) -> u128 {
        id_digest(&self.0)
    }
}

impl fmt::Display for JournalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stable replay id of a message: derived from the source and the message's journal key (its id,
/// replay count, failure history and occurrence), so a resumed pass reuses it, a genuine later replay gets
/// a new one, and two dead letters sharing an id never share a replay id.
pub fn replay_id(source_identity: &str, key: &JournalKey) -> String {
    sha256_hex(format!("{source_identity}\n{}", key.as_str()).as_bytes())[..32].to_owned()
}

/// 64 bits of a replay id (its first 16 hex digits), for remembering many in little memory; `None` for text
/// that is not a replay id redrive wrote.
pub fn replay_digest(replay_id: &str) -> Option<u64> {
    let head = replay_id.get(..16)?;
    u64::from_str_radix(head, 16).ok()
}

/// The key a discarded message is archived under: its source and its journal key, never its bare id.
pub fn archive_key(source_identity: &str, key: &JournalKey) -> String {
    replay_id(source_identity, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_that_comes_back_after_a_replay_has_a_new_key() {
        let first = Envelope {
            id: "m".into(),
            ..Default::default()
        };
        let mut back = first.clone();
        back.replay_count = 1;
        assert_ne!(JournalKey::of(&first), JournalKey::of(&back));
        let mut failed_again = first.clone();
        failed_again.failure.receive_count = Some(2);
        assert_ne!(JournalKey::of(&first), JournalKey::of(&failed_again));
        assert_eq!(JournalKey::of(&first), JournalKey::of(&first.clone()));

        let sqs = Envelope {
            id: "m".into(),
            id_unique_per_send: true,
            ..Default::default()
        };
        let mut received_again = sqs.clone();
        received_again.failure.receive_count = Some(7);
        assert_eq!(JournalKey::of(&sqs), JournalKey::of(&received_again));
    }

    #[test]
    fn sha256_hex_is_the_lower_case_hex_of_the_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(b"abc"), hex::encode(Sha256::digest(b"abc")));
    }

    #[test]
    fn replay_ids_are_stable_and_change_with_the_key_and_the_source() {
        let key = |text: &str| JournalKey::from_journal(text.into());
        assert_eq!(replay_id("s", &key("m#r0")), replay_id("s", &key("m#r0")));
        assert_ne!(replay_id("s", &key("m#r0")), replay_id("s", &key("m#r1")));
        assert_ne!(replay_id("s", &key("m#r0")), replay_id("t", &key("m#r0")));
        assert_eq!(replay_id("s", &key("m#r0")).len(), 32);
        assert_eq!(key("m#r0").nth(1), key("m#r0"));
        let id = replay_id("s", &key("m#r0"));
        assert!(replay_digest(&id).is_some());
        assert_ne!(replay_digest(&id), replay_digest(&replay_id("s", &key("m#r1"))));
        assert_eq!(replay_digest("not-a-replay-id-at-all"), None);
        assert_eq!(replay_digest("abc"), None);
        assert_ne!(key("m#r0").nth(2), key("m#r0"));
    }
}
