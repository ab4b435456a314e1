//! What a filter returns: [`Decision`], [`Verdict`] and [`AttributeChange`].

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What happens to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Forward it to the destination, then remove it from the dead-letter queue.
    /// In a chain, the message goes on to the next filter.
    Replay,
    /// Leave it in the dead-letter queue untouched. Ends the chain.
    Skip,
    /// Archive it, then remove it from the dead-letter queue. Ends the chain.
    Discard,
}

impl Verdict {
    /// All verdicts, in contract order.
    pub const ALL: [Verdict; 3] = [Verdict::Replay, Verdict::Skip, Verdict::Discard];

    /// The lowercase name used in configs, JSONL files and audit records:
    /// `"replay"`, `"skip"` or `"discard"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Replay => "replay",
            Verdict::Skip => "skip",
            Verdict::Discard => "discard",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = String;

    /// Parses `replay`, `skip` or `discard` (ASCII case-insensitive,
    /// surrounding whitespace ignored), so a config value can be read with
    /// [`Config::get_parsed`](crate::Config::get_parsed).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        Verdict::ALL
            .into_iter()
            .find(|verdict| verdict.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| "expected one of replay, skip, discard".to_string())
    }
}

/// A change to the message's attributes; a decision's changes are applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttributeChange {
    /// Set (add or replace) an attribute: name, value.
    Set(String, String),
    /// Remove an attribute by name.
    Remove(String),
}

/// A filter's decision about one message: a verdict, a short reason, and
/// optionally a new body and attribute changes.
///
/// ```
/// use redrive_guest::{AttributeChange, Decision, Verdict};
///
/// let decision = Decision::replay_with_body("fixed the schema", r#"{"quantity":2}"#)
///     .set_attribute("x-repaired-by", "my-filter")
///     .remove_attribute("x-error");
/// assert_eq!(decision.verdict, Verdict::Replay);
/// assert_eq!(decision.body_str(), Some(r#"{"quantity":2}"#));
/// assert_eq!(decision.attribute_changes.len(), 2);
///
/// let skip = Decision::skip("permanent error");
/// assert_eq!((skip.verdict, skip.reason.as_str()), (Verdict::Skip, "permanent error"));
/// assert_eq!(skip.body, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What happens to the message.
    pub verdict: Verdict,
    /// Why, in a few words. Goes to the audit log and the run summary.
    pub reason: String,
    /// A new body to replace the message's body (a repair). In a chain, the
    /// next filter sees this body. `None` keeps the body as it is.
    pub body: Option<Vec<u8>>,
    /// Attribute changes, applied in order.
    pub attribute_changes: Vec<AttributeChange>,
}

impl Decision {
    /// A decision with the given verdict and reason, no new body and no
    /// attribute changes.
    pub fn new(verdict: Verdict, reason: impl Into<String>) -> Self {
        Decision {
            verdict,
            reason: reason.into(),
            body: None,
            attribute_changes: Vec::new(),
        }
    }

    /// Replay the message as it is.
    pub fn replay(reason: impl Into<String>) -> Self {
        Decision::new(Verdict::Replay, reason)
    }

    /// Replay the message with a new body (a repair).
    pub fn replay_with_body(reason: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Decision::replay(reason).with_body(body)
    }

    /// Replay the message with a new body: `value` serialised as compact JSON.
    ///
    /// Fails only if `value` cannot be represented as JSON (for example a map
    /// with non-string keys).
    pub fn replay_json(reason: impl Into<String>, value: &impl Serialize) -> Result<Self, serde_json::Error> {
        Ok(Decision::replay_with_body(reason, serde_json::to_vec(value)?))
    }

    /// Leave the message in the dead-letter queue.
    pub fn skip(why: impl Into<String>) -> Self {
        Decision::new(Verdict::Skip, why)
    }

    /// Archive the message, then remove it from the dead-letter queue.
    pub fn discard(why: impl Into<String>) -> Self {
        Decision::new(Verdict::Discard, why)
    }

    /// Sets a new body (builder). The host only uses it when the verdict is
    /// [`Verdict::Replay`].
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Adds an attribute change that sets (adds or replaces) `name` to `value`.
    pub fn set_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attribute_changes
            .push(AttributeChange::Set(name.into(), value.into()));
        self
    }

    /// Adds an attribute change that removes the attribute `name`.
    pub fn remove_attribute(mut self, name: impl Into<String>) -> Self {
        self.attribute_changes.push(AttributeChange::Remove(name.into()));
        self
    }

    /// The new body as UTF-8 text, if there is a new body and it is UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        self.body.as_deref().and_then(|body| std::str::from_utf8(body).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_round_trip() {
        for verdict in Verdict::ALL {
            assert_eq!(verdict.as_str().parse::<Verdict>(), Ok(verdict));
            assert_eq!(verdict.to_string(), verdict.as_str());
        }
        assert_eq!(" Discard ".parse::<Verdict>(), Ok(Verdict::Discard));
        assert_eq!(
            "drop".parse::<Verdict>(),
            Err("expected one of replay, skip, discard".to_string())
        );
    }

    #[test]
    fn simple_builders() {
        assert_eq!(
            Decision::replay("ok"),
            Decision {
                verdict: Verdict::Replay,
                reason: "ok".into(),
                body: None,
                attribute_changes: vec![],
            }
        );
        assert_eq!(Decision::skip("later").verdict, Verdict::Skip);
        assert_eq!(Decision::discard("junk").verdict, Verdict::Discard);
        assert_eq!(Decision::discard("junk").reason, "junk");
        assert_eq!(Decision::new(Verdict::Skip, String::from("x")).reason, "x");
    }

    #[test]
    fn body_builders() {
        let d = Decision::replay_with_body("fixed", "new");
        assert_eq!(d.body.as_deref(), Some(&b"new"[..]));
        assert_eq!(d.body_str(), Some("new"));
        let d = Decision::replay("fixed").with_body(vec![0xff, 0x00]);
        assert_eq!(d.body, Some(vec![0xff, 0x00]));
        assert_eq!(d.body_str(), None);
        assert_eq!(Decision::replay("same").body_str(), None);
    }

    #[test]
    fn replay_json_serialises_compactly() {
        #[derive(Serialize)]
        struct Order<'a> {
            sku: &'a str,
            quantity: u32,
        }
        let d = Decision::replay_json("typed", &Order { sku: "ü", quantity: 2 }).unwrap();
        assert_eq!(d.verdict, Verdict::Replay);
        assert_eq!(d.reason, "typed");
        assert_eq!(d.body_str(), Some(r#"{"sku":"ü","quantity":2}"#));

        let value = serde_json::json!({"a": [1, 2]});
        let d = Decision::replay_json("value", &value).unwrap();
        assert_eq!(d.body_str(), Some(r#"{"a":[1,2]}"#));

        let mut bad = std::collections::BTreeMap::new();
        bad.insert(vec![1u8], 1);
        assert!(Decision::replay_json("bad", &bad).is_err());
    }

    #[test]
    fn attribute_changes_keep_order() {
        let d = Decision::skip("x")
            .set_attribute("a", "1")
            .remove_attribute("b")
            .set_attribute("a", "2");
        assert_eq!(
            d.attribute_changes,
            vec![
                AttributeChange::Set("a".into(), "1".into()),
                AttributeChange::Remove("b".into()),
                AttributeChange::Set("a".into(), "2".into()),
            ]
        );
    }
}
