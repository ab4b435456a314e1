//! One attribute of one JSONL line, read without building the rest.
//!
//! A file destination and the discard archive read their own files when they open, for one attribute of every
//! line (a replay id, an archive key). [`string_attribute`] walks the line once, checks that it is JSON, and
//! keeps only that attribute's value: no map of attributes, no copy of the body, and no copy of the value
//! either unless it holds escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The string value of attribute `name` in a JSONL message line (`{"attributes": {name: "value", ...}, ...}`).
///
/// `None` when the line is not a JSON object (a line torn by a crash, say), has no such attribute, or the
/// attribute's value is not a string. Of a repeated name the last wins, as when the line is read as a message.
pub fn string_attribute<'a>(line: &'a [u8], name: &str) -> Option<Cow<'a, str>> {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let found = Path(&["attributes", name]).deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    found
}

/// Walks down nested objects along its keys, skipping every other value without copying it: the string at the
/// end of the path, if there is one.
struct Path<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for Path<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Path<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let Some((key, rest)) = self.0.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        while let Some(is_key) = map.next_key_seed(KeyIs(key))? {
            if is_key {
                // Of a repeated key the last wins, as when the line is read as a message.
                found = map.next_value_seed(Path(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then_some(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| Cow::Owned(text.to_owned())))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An object's key, read only to compare it with one name (no copy unless it holds escapes).
struct KeyIs<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(line: &'a str, name: &str) -> Option<Cow<'a, str>> {
        string_attribute(line.as_bytes(), name)
    }

    #[test]
    fn finds_the_named_string_attribute_and_borrows_it() {
        let line = r#"{"id":"m-1","body":"{\"a\":[1,{}]}","attributes":{"x":"1","redrive-replay-id":"r-9"}}"#;
        assert!(matches!(attr(line, "redrive-replay-id"), Some(Cow::Borrowed("r-9"))));
        assert_eq!(attr(line, "x").as_deref(), Some("1"));
    }

    #[test]
    fn an_escaped_value_is_unescaped() {
        let line = r#"{"attributes":{"k":"a\"b\u00e9"}}"#;
        assert_eq!(attr(line, "k").as_deref(), Some("a\"bé"));
    }

    #[test]
    fn nothing_for_missing_non_string_or_unreadable() {
        for line in [
            r#"{"id":"m","attributes":{"other":"v"}}"#,
            r#"{"id":"m"}"#,
            r#"{"attributes":null}"#,
            r#"{"attributes":{"k":7}}"#,
            r#"{"attributes":{"k":["v"]}}"#,
            r#"{"attributes":{"k":{"v":"w"}}}"#,
            r#"{"attributes":{"k":null}}"#,
            r#"{"attributes":"k"}"#,
            r#"{"attributes":["k","v"]}"#,
            r#""k""#,
            r#"{"attributes":{"k":"v"}"#,
            r#"{"attributes":{"k":"v"}} trailing"#,
            r#"["attributes"]"#,
            "",
        ] {
            assert_eq!(attr(line, "k"), None, "{line}");
        }
    }

    #[test]
    fn a_torn_line_is_skipped_even_when_its_attribute_came_first() {
        assert_eq!(attr(r#"{"attributes":{"k":"v"},"body":"cut he"#, "k"), None);
        assert_eq!(string_attribute(b"{\"attributes\":{\"k\":\"v\xff\"}}", "k"), None);
    }

    #[test]
    fn the_last_of_a_repeated_name_wins() {
        assert_eq!(attr(r#"{"attributes":{"k":"a","k":"b"}}"#, "k").as_deref(), Some("b"));
    }

    #[test]
    fn the_name_is_compared_exactly() {
        assert_eq!(attr(r#"{"attributes":{"K":"v","k ":"w"}}"#, "k"), None);
        assert_eq!(attr(r#"{"attributes":{"\u006b":"v"}}"#, "k").as_deref(), Some("v"));
    }
}
