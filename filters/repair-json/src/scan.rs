//! One pass over a body that checks it is JSON and tells whether a rename could apply to it.
//!
//! Most bodies are valid JSON that no rename touches. Checking the JSON and then lexing the whole body to
//! find its top-level keys cost two passes and an allocation per key for every message; this pass does the
//! check and looks at the top-level keys at once, without copying them, so the lexer only runs for the bodies
//! that hold a key to rename.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Whether `text` could get a rename: it is a JSON object and one of its top-level keys is the `old` name of
/// one of `renames`. (Whether one does is for [`crate::repair::rename_top_level_keys`] to say: the new name
/// may be taken already.) It fails for exactly the texts `serde_json::from_str` rejects, though not always
/// with the same words.
pub fn check_json(text: &str, renames: &[(String, String)]) -> Result<bool, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let may_rename = TopLevel { renames }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(may_rename)
}

struct TopLevel<'a> {
    renames: &'a [(String, String)],
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut may_rename = false;
        while let Some(is_old) = map.next_key_seed(IsOldName { renames: self.renames })? {
            may_rename |= is_old;
            map.next_value::<IgnoredAny>()?;
        }
        Ok(may_rename)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A top-level key, compared with the renames' old names (unescaped, not copied).
struct IsOldName<'a> {
    renames: &'a [(String, String)],
}

impl<'de> DeserializeSeed<'de> for IsOldName<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsOldName<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(self.renames.iter().any(|(old, _)| old == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

    fn qty() -> Vec<(String, String)> {
        vec![("qty".to_string(), "quantity".to_string())]
    }

    #[test]
    fn only_a_top_level_old_key_may_rename() {
        assert!(check_json(r#"{"sku": "A", "qty": 2}"#, &qty()).unwrap());
        assert!(check_json(r#"{"q\u0074y": 2}"#, &qty()).unwrap());
        assert!(check_json(r#"{"qty": 2, "quantity": 3}"#, &qty()).unwrap());
        for text in [
            r#"{"quantity": 2}"#,
            r#"{"items": [{"qty": 2}], "nested": {"qty": 1}}"#,
            r#"{"note": "qty"}"#,
            r#"[{"qty": 2}]"#,
            r#""qty""#,
            "42",
            "null",
            "true",
            "-1.5e3",
        ] {
            assert!(!check_json(text, &qty()).unwrap(), "{text}");
        }
        assert!(!check_json(r#"{"qty": 2}"#, &[]).unwrap());
    }

    #[test]
    fn accepts_and_rejects_what_the_parser_does() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let deep_object = format!("{{\"a\": {}1{}}}", "{\"b\": ".repeat(300), "}".repeat(300));
        for text in [
            r#"{"a": 1,}"#,
            r#"{'a': 1}"#,
            r#"{"a": [1, 2"#,
            r#"{"a": 1} trailing"#,
            "{\"a\": \"tab\there\"}",
            "{\"t\tab\": 1}",
            r#"{"a": "\x"}"#,
            r#"{"\x": 1}"#,
            r#"{"qty": 01}"#,
            r#"{"qty": 1} {"qty": 2}"#,
            "",
            "  {\"qty\": 1}  ",
            deep.as_str(),
            deep_object.as_str(),
        ] {
            let ours = check_json(text, &qty()).is_ok();
            let theirs = serde_json::from_str::<IgnoredAny>(text).is_ok();
            assert_eq!(ours, theirs, "{text}");
        }
    }
}
