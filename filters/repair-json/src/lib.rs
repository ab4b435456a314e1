//! Example redrive filter: **sandboxed repair of malformed JSON payloads**.
//!
//! For each message body:
//!
//! 1. not UTF-8 → the `binary` verdict (default skip), reason `binary body (not UTF-8 text)`;
//! 2. empty or whitespace only → discard, reason `empty body`;
//! 3. valid JSON → apply the configured top-level key renames (the known
//!    v1 → v2 change `qty` → `quantity`; when a key was renamed, a top-level
//!    `"schema_version": 1` becomes `2`): replay with the new compact body and
//!    reason `renamed qty -> quantity`, or replay unchanged with reason `valid JSON`;
//! 4. invalid JSON → try, in order and each only if needed: remove trailing
//!    commas, convert single-quoted strings and keys to double quotes, close an
//!    unterminated tail (open string, dangling `,` / `"key":`, open brackets).
//!    If the result parses: replay with the repaired compact body (renames
//!    applied too), reason `repaired: trailing commas, single quotes` (plus
//!    `; renamed qty -> quantity`). Otherwise discard with reason
//!    `unrepairable JSON: <parser error for the original body>`.
//!
//! Repairs work on the text with a small tokenizer (strings, escapes and
//! brackets are tracked), so numbers, key order and string contents are kept
//! byte for byte.
//!
//! Config (`init`):
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `binary` | verdict for non-UTF-8 bodies: `replay`, `skip` or `discard` | `skip` |
//! | `rename` | comma-separated `old:new` top-level key renames (empty: none) | `qty:quantity` |

pub mod repair;
pub mod scan;

use redrive_guest::{Config, Decision, Filter, Message, Verdict, log};
use serde::de::IgnoredAny;

/// The renames applied when the config has no `rename` key.
pub const DEFAULT_RENAMES: &str = "qty:quantity";

/// The filter: what to do with binary bodies, and which keys to rename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairJson {
    /// Verdict for bodies that are not UTF-8.
    pub binary: Verdict,
    /// Top-level key renames `(old, new)`, applied in order.
    pub renames: Vec<(String, String)>,
}

impl Default for RepairJson {
    fn default() -> Self {
        RepairJson {
            binary: Verdict::Skip,
            renames: vec![("qty".to_string(), "quantity".to_string())],
        }
    }
}

fn parse_renames(items: Vec<String>) -> Result<Vec<(String, String)>, String> {
    items
        .into_iter()
        .map(|item| match item.split_once(':') {
            Some((old, new)) if !old.trim().is_empty() && !new.trim().is_empty() => {
                Ok((old.trim().to_string(), new.trim().to_string()))
            }
            _ => Err(format!("config key 'rename': invalid item '{item}' (expected old:new)")),
        })
        .collect()
}

fn is_valid_json(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<IgnoredAny>(text).map(|_| ())
}

impl RepairJson {
    /// Applies the renames to valid JSON: `Some((compact body, "renamed a -> b, ..."))`
    /// when at least one key was renamed.
    pub fn rename(&self, valid_json: &str) -> Option<(String, String)> {
        let (body, applied) = repair::rename_top_level_keys(valid_json, &self.renames)?;
        let what = applied
            .iter()
            .map(|(old, new)| format!("{old} -> {new}"))
            .collect::<Vec<_>>()
            .join(", ");
        Some((body, format!("renamed {what}")))
    }

    /// Tries the repairs in order, each only if it changes something. Returns
    /// the repaired text and the names of the repairs applied, or `None` when
    /// no repair applied or the result still does not parse.
    pub fn repair(text: &str) -> Option<(String, Vec<&'static str>)> {
        type Repair = fn(&str) -> Option<String>;
        let repairs: [(&str, Repair); 3] = [
            ("trailing commas", repair::remove_trailing_commas),
            ("single quotes", repair::convert_single_quotes),
            ("unterminated tail", repair::close_unterminated_tail),
        ];
        let mut current = text.to_string();
        let mut applied = Vec::new();
        for (name, fix) in repairs {
            if let Some(fixed) = fix(&current) {
                current = fixed;
                applied.push(name);
            }
        }
        if applied.is_empty() || is_valid_json(&current).is_err() {
            return None;
        }
        Some((current, applied))
    }
}

impl Filter for RepairJson {
    fn init(config: &Config) -> Result<Self, String> {
        config.check_keys(&["binary", "rename"])?;
        Ok(RepairJson {
            binary: config.get_parsed_or("binary", Verdict::Skip)?,
            renames: parse_renames(config.get_list_or("rename", &[DEFAULT_RENAMES]))?,
        })
    }

    fn decide(&mut self, msg: &Message) -> Result<Decision, String> {
        let Some(text) = msg.body_str() else {
            return Ok(Decision::new(self.binary, "binary body (not UTF-8 text)"));
        };
        if text.trim().is_empty() {
            return Ok(Decision::discard("empty body"));
        }
        let original_error = match scan::check_json(text, &self.renames) {
            Ok(may_rename) => {
                let renamed = if may_rename { self.rename(text) } else { None };
                return Ok(match renamed {
                    Some((body, reason)) => Decision::replay_with_body(reason, body),
                    None => Decision::replay("valid JSON"),
                });
            }
            // Reported as a plain parse words it (the scan's wording differs for some inputs).
            Err(scan_error) => is_valid_json(text).err().unwrap_or(scan_error),
        };
        let Some((repaired, applied)) = RepairJson::repair(text) else {
            log::warn(format!("unrepairable JSON in {}", msg.id));
            return Ok(Decision::discard(format!("unrepairable JSON: {original_error}")));
        };
        let mut reason = format!("repaired: {}", applied.join(", "));
        let body = match self.rename(&repaired) {
            Some((body, renamed)) => {
                reason.push_str("; ");
                reason.push_str(&renamed);
                body
            }
            None => repair::compact(&repaired),
        };
        log::info(&reason);
        Ok(Decision::replay_with_body(reason, body))
    }
}

redrive_guest::export_filter!(RepairJson);

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_guest::Verdict::{Discard, Replay, Skip};

    fn run(filter: &mut RepairJson, body: impl Into<Vec<u8>>) -> (Verdict, String, Option<String>) {
        let d = filter.decide(&Message::new("m", body)).unwrap();
        let body = d.body.map(|b| String::from_utf8(b).unwrap());
        (d.verdict, d.reason, body)
    }

    fn default_filter() -> RepairJson {
        RepairJson::init(&Config::default()).unwrap()
    }

    fn replay(reason: &str, body: Option<&str>) -> (Verdict, String, Option<String>) {
        (Replay, reason.to_string(), body.map(str::to_string))
    }

    #[test]
    fn binary_and_empty_bodies() {
        let mut f = default_filter();
        assert_eq!(
            run(&mut f, vec![0xff, 0xd8, 0xff, 0xe0]),
            (Skip, "binary body (not UTF-8 text)".into(), None)
        );
        let mut f = RepairJson::init(&Config::from_pairs([("binary", "replay")])).unwrap();
        assert_eq!(run(&mut f, vec![0x80]).0, Replay);
        assert_eq!(run(&mut f, "").0, Discard);
        assert_eq!(run(&mut f, " \n\t ").1, "empty body");
    }

    #[test]
    fn valid_json_is_replayed_unchanged() {
        let mut f = default_filter();
        assert_eq!(run(&mut f, r#"{"quantity": 2}"#), replay("valid JSON", None));
        assert_eq!(run(&mut f, r#"[{"qty": 2}]"#), replay("valid JSON", None));
        assert_eq!(run(&mut f, "42"), replay("valid JSON", None));
    }

    #[test]
    fn valid_json_gets_the_rename() {
        let mut f = default_filter();
        assert_eq!(
            run(&mut f, r#"{"sku": "A-1", "qty": 2, "schema_version": 1}"#),
            replay(
                "renamed qty -> quantity",
                Some(r#"{"sku":"A-1","quantity":2,"schema_version":2}"#)
            )
        );
        let mut f = RepairJson::init(&Config::from_pairs([("rename", "qty:quantity, sku : product_id")])).unwrap();
        assert_eq!(
            run(&mut f, r#"{"sku": "A-1", "qty": 2}"#),
            replay(
                "renamed qty -> quantity, sku -> product_id",
                Some(r#"{"product_id":"A-1","quantity":2}"#)
            )
        );
        let mut f = RepairJson::init(&Config::from_pairs([("rename", "")])).unwrap();
        assert_eq!(run(&mut f, r#"{"qty": 2}"#), replay("valid JSON", None));
    }

    #[test]
    fn repairs_trailing_commas() {
        let mut f = default_filter();
        assert_eq!(
            run(&mut f, r#"{"items": ["a", "b",], "note": "x,]",}"#),
            replay("repaired: trailing commas", Some(r#"{"items":["a","b"],"note":"x,]"}"#))
        );
    }

    #[test]
    fn repairs_single_quotes() {
        let mut f = default_filter();
        assert_eq!(
            run(&mut f, r#"{'name': 'O\'Brien', 'quote': 'say "hi"', 'n': 1}"#),
            replay(
                "repaired: single quotes",
                Some(r#"{"name":"O'Brien","quote":"say \"hi\"","n":1}"#)
            )
        );
    }

    #[test]
    fn repairs_truncated_input() {
        let mut f = default_filter();
        assert_eq!(
            run(&mut f, r#"{"order": {"id": 7, "lines": [{"sku": "A", "note": "open [{"#),
            replay(
                "repaired: unterminated tail",
                Some(r#"{"order":{"id":7,"lines":[{"sku":"A","note":"open [{"}]}}"#)
            )
        );
        assert_eq!(
            run(&mut f, r#"{"id": 7, "total":"#),
            replay("repaired: unterminated tail", Some(r#"{"id":7}"#))
        );
    }

    #[test]
    fn repairs_combine_and_rename() {
        let mut f = default_filter();
        assert_eq!(
            run(
                &mut f,
                "{'qty': 3, 'tags': ['a', 'b',], 'schema_version': 1, 'x': {'y': 'z"
            ),
            replay(
                "repaired: trailing commas, single quotes, unterminated tail; renamed qty -> quantity",
                Some(r#"{"quantity":3,"tags":["a","b"],"schema_version":2,"x":{"y":"z"}}"#)
            )
        );
    }

    #[test]
    fn non_ascii_text_survives_repairs() {
        let mut f = default_filter();
        assert_eq!(
            run(
                &mut f,
                "{'kunde': 'Jürgen Müller', 'stadt': 'Köln', 'notiz': '東京 ✓ 😀',}"
            ),
            replay(
                "repaired: trailing commas, single quotes",
                Some(r#"{"kunde":"Jürgen Müller","stadt":"Köln","notiz":"東京 ✓ 😀"}"#)
            )
        );
        assert_eq!(
            run(&mut f, r#"{"städte": ["Zürich", "Genève"#),
            replay("repaired: unterminated tail", Some(r#"{"städte":["Zürich","Genève"]}"#))
        );
        assert_eq!(run(&mut f, r#"{"ü": "ß"}"#), replay("valid JSON", None));
    }

    #[test]
    fn unrepairable_reports_the_original_error() {
        let mut f = default_filter();
        // In the words of a plain parse ("trailing comma" in the scan's).
        assert_eq!(
            run(&mut f, r#"{"a": 1,} x"#).1,
            "unrepairable JSON: key must be a string at line 1 column 9"
        );
        assert_eq!(
            run(&mut f, "hello world"),
            (
                Discard,
                "unrepairable JSON: expected value at line 1 column 1".into(),
                None
            )
        );
        // A repair applied, but the result still does not parse: the error is
        // the one for the original body.
        assert_eq!(
            run(&mut f, "{name: 'x',}"),
            (
                Discard,
                "unrepairable JSON: key must be a string at line 1 column 2".into(),
                None
            )
        );
        assert_eq!(
            run(&mut f, r#"{"a": 1]"#).1,
            "unrepairable JSON: expected `,` or `}` at line 1 column 8"
        );
    }

    #[test]
    fn bad_config_is_an_init_error() {
        assert_eq!(
            RepairJson::init(&Config::from_pairs([("rename", "qty")])).unwrap_err(),
            "config key 'rename': invalid item 'qty' (expected old:new)"
        );
        assert_eq!(
            RepairJson::init(&Config::from_pairs([("binary", "keep")])).unwrap_err(),
            "config key 'binary': invalid value 'keep' (expected one of replay, skip, discard)"
        );
        assert!(RepairJson::init(&Config::from_pairs([("renames", "a:b")])).is_err());
    }

    #[test]
    fn sample_files_match() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/filters/repair-json");
        let checked = redrive_guest::testing::assert_examples::<RepairJson>(
            &Config::default(),
            &format!("{dir}/input.jsonl"),
            &format!("{dir}/expected.jsonl"),
        );
        assert!((12..=25).contains(&checked), "{checked} messages");
    }
}
