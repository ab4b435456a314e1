//! The body checks' one pass over a JSON body: only the top-level fields the checks look at are kept.
//!
//! Building a `serde_json::Value` of the whole body (every nested object and string copied) only to look up
//! a handful of top-level fields cost more than the rest of the filter; this pass validates the whole body
//! just the same, but skips every value it does not need without copying it.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::EMAIL_FIELDS;

/// What the body checks need from a body that is a JSON object.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// For each configured body field, in order: is its (last) value the boolean `true`?
    pub flags: Vec<bool>,
    /// For each of [`EMAIL_FIELDS`], in order: its (last) value, when that is a string.
    pub emails: Vec<Option<String>>,
}

/// The facts of `body` when it is a JSON object (UTF-8 text, valid JSON); `None` for anything else.
pub fn body_facts(body: &[u8], body_fields: &[String]) -> Option<BodyFacts> {
    let text = std::str::from_utf8(body).ok()?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let facts = FactsSeed { body_fields }.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(facts)
}

struct FactsSeed<'a> {
    body_fields: &'a [String],
}

impl<'de> DeserializeSeed<'de> for FactsSeed<'_> {
    type Value = BodyFacts;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<BodyFacts, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FactsSeed<'_> {
    type Value = BodyFacts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyFacts, A::Error> {
        let mut facts = BodyFacts {
            flags: vec![false; self.body_fields.len()],
            emails: vec![None; EMAIL_FIELDS.len()],
        };
        while let Some(key) = map.next_key_seed(Key)? {
            let flag = self.body_fields.iter().position(|field| *field == key);
            let email = EMAIL_FIELDS.iter().position(|field| *field == key);
            if flag.is_none() && email.is_none() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = map.next_value::<Scalar>()?;
            // A repeated key: the last value counts, as in a parsed object.
            for (index, field) in self.body_fields.iter().enumerate() {
                if *field == key {
                    facts.flags[index] = value == Scalar::True;
                }
            }
            if let Some(index) = email {
                facts.emails[index] = match value {
                    Scalar::Text(text) => Some(text),
                    _ => None,
                };
            }
        }
        Ok(facts)
    }
}

/// A key, borrowed from the body unless it holds escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(key))
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(key.to_owned()))
    }
}

/// A field's value as far as the checks care: `true`, a string, or anything else (skipped, not copied).
#[derive(Debug, PartialEq, Eq)]
enum Scalar {
    True,
    Text(String),
    Other,
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Scalar, E> {
                Ok(if value { Scalar::True } else { Scalar::Other })
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(text.to_owned()))
            }

            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }

            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fields() -> Vec<String> {
        ["test", "is_test", "synthetic"].iter().map(|f| f.to_string()).collect()
    }

    /// The same facts taken from a parsed `Value`, as the filter did before this pass.
    fn from_value(body: &[u8], body_fields: &[String]) -> Option<BodyFacts> {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        Some(BodyFacts {
            flags: body_fields
                .iter()
                .map(|field| body.get(field.as_str()) == Some(&Value::Bool(true)))
                .collect(),
            emails: EMAIL_FIELDS
                .iter()
                .map(|field| body.get(*field).and_then(Value::as_str).map(str::to_owned))
                .collect(),
        })
    }

    #[test]
    fn agrees_with_a_parsed_value() {
        let bodies: &[&[u8]] = &[
            br#"{"test": true, "email": "a@example.com"}"#,
            br#"{"is_test": false, "customer_email": "b@x.org", "email": 7}"#,
            br#"{"nested": {"test": true, "email": "c@example.com"}, "items": [1, "two", {"synthetic": true}]}"#,
            br#"{"test": true, "test": false, "email": "first@a", "email": "last@b"}"#,
            br#"{"test": "true", "synthetic": true, "email": null}"#,
            br#"{"t\u0065st": true, "em\u0061il": "esc\"aped@example.org"}"#,
            br#"{"email": "j\u00fcrgen@m\u00fcller.example.org", "name": "J\u00fcrgen"}"#,
            br#"[{"test": true}]"#,
            br#""just a string""#,
            b"42",
            br#"{"test": true,}"#,
            br#"{"test": true} {"#,
            b"{\"test\": true, \"x\": \"\xff\"}",
            b"",
            b"plain text",
        ];
        for body in bodies {
            assert_eq!(
                body_facts(body, &fields()),
                from_value(body, &fields()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_field_configured_twice_is_checked_at_both_places() {
        let twice: Vec<String> = vec!["test".into(), "test".into()];
        let facts = body_facts(br#"{"test": true}"#, &twice).unwrap();
        assert_eq!(facts.flags, vec![true, true]);
    }
}
