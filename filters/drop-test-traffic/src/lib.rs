//! Example redrive filter: **discard test and synthetic traffic**.
//!
//! Checks, in order (the first hit discards the message):
//!
//! 1. an attribute named in `attributes` (name compared ignoring ASCII case)
//!    whose value is `true`, `1` or `yes` (ignoring case) →
//!    `test traffic: attribute <name>=<value>`;
//! 2. attribute `x-traffic-type` or `traffic-type` with value `test`,
//!    `synthetic` or `loadtest` (ignoring case) → `test traffic: attribute <name>=<value>`;
//! 3. the message id starts with one of `id_prefixes` → `test traffic: id prefix <prefix>`;
//! 4. the body is a JSON object with a top-level field from `body_fields` that
//!    is the boolean `true` → `test traffic: body field <field>=true`;
//! 5. the body is a JSON object whose top-level `"email"` or `"customer_email"`
//!    is an address in one of `test_domains` (or a subdomain of one) →
//!    `test traffic: email domain <domain>`.
//!
//! Anything else is replayed with reason `not test traffic`. Bodies that are
//! not JSON objects are fine: only the attribute and id checks apply to them.
//!
//! Config (`init`), all comma-separated lists replacing the defaults:
//!
//! | key | default |
//! | --- | --- |
//! | `attributes` | `x-test,x-synthetic,x-test-traffic` |
//! | `id_prefixes` | `test-,synthetic-` |
//! | `body_fields` | `test,is_test,synthetic` |
//! | `test_domains` | `example.com,example.org,test.invalid` |

pub mod body;

use body::body_facts;
use redrive_guest::{Config, Decision, Filter, Message, log};

/// Default flag attributes (`true`/`1`/`yes` means test traffic).
pub const DEFAULT_ATTRIBUTES: &[&str] = &["x-test", "x-synthetic", "x-test-traffic"];
/// Default test id prefixes.
pub const DEFAULT_ID_PREFIXES: &[&str] = &["test-", "synthetic-"];
/// Default top-level boolean body fields.
pub const DEFAULT_BODY_FIELDS: &[&str] = &["test", "is_test", "synthetic"];
/// Default test email domains.
pub const DEFAULT_TEST_DOMAINS: &[&str] = &["example.com", "example.org", "test.invalid"];

/// Attributes that carry a traffic type.
pub const TRAFFIC_TYPE_ATTRIBUTES: &[&str] = &["x-traffic-type", "traffic-type"];
/// Traffic types that mean test traffic.
pub const TEST_TRAFFIC_TYPES: &[&str] = &["test", "synthetic", "loadtest"];
/// Top-level body fields that hold an email address.
pub const EMAIL_FIELDS: &[&str] = &["email", "customer_email"];

/// The filter and its (configured) lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropTestTraffic {
    /// Flag attribute names.
    pub attributes: Vec<String>,
    /// Test id prefixes (case-sensitive).
    pub id_prefixes: Vec<String>,
    /// Top-level boolean body fields.
    pub body_fields: Vec<String>,
    /// Test email domains, lowercased.
    pub test_domains: Vec<String>,
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

impl Default for DropTestTraffic {
    fn default() -> Self {
        DropTestTraffic {
            attributes: owned(DEFAULT_ATTRIBUTES),
            id_prefixes: owned(DEFAULT_ID_PREFIXES),
            body_fields: owned(DEFAULT_BODY_FIELDS),
            test_domains: owned(DEFAULT_TEST_DOMAINS),
        }
    }
}

fn is_truthy(value: &str) -> bool {
    ["true", "1", "yes"]
        .iter()
        .any(|yes| value.trim().eq_ignore_ascii_case(yes))
}

impl DropTestTraffic {
    /// Why the message is test traffic, or `None` if it is not.
    pub fn test_traffic_reason(&self, msg: &Message) -> Option<String> {
        let attribute = |name: &str, value: &str| format!("test traffic: attribute {name}={value}");

        for wanted in &self.attributes {
            if let Some((name, value)) = msg
                .attributes
                .iter()
                .find(|(name, value)| name.eq_ignore_ascii_case(wanted) && is_truthy(value))
            {
                return Some(attribute(name, value));
            }
        }
        for wanted in TRAFFIC_TYPE_ATTRIBUTES {
            if let Some((name, value)) = msg.attributes.iter().find(|(name, value)| {
                name.eq_ignore_ascii_case(wanted)
                    && TEST_TRAFFIC_TYPES
                        .iter()
                        .any(|kind| value.trim().eq_ignore_ascii_case(kind))
            }) {
                return Some(attribute(name, value));
            }
        }
        if let Some(prefix) = self.id_prefixes.iter().find(|p| msg.id.starts_with(p.as_str())) {
            return Some(format!("test traffic: id prefix {prefix}"));
        }

        // Body checks: only for JSON objects.
        let facts = body_facts(&msg.body, &self.body_fields)?;
        if let Some(field) = self
            .body_fields
            .iter()
            .zip(&facts.flags)
            .find_map(|(field, flag)| flag.then_some(field))
        {
            return Some(format!("test traffic: body field {field}=true"));
        }
        for email in facts.emails.iter().flatten() {
            let Some((_, domain)) = email.trim().rsplit_once('@') else {
                continue;
            };
            let domain = domain.to_lowercase();
            if let Some(test_domain) = self.test_domains.iter().find(|test_domain| {
                domain == **test_domain
                    || domain
                        .strip_suffix(test_domain.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }) {
                return Some(format!("test traffic: email domain {test_domain}"));
            }
        }
        None
    }
}

impl Filter for DropTestTraffic {
    fn init(config: &Config) -> Result<Self, String> {
        config.check_keys(&["attributes", "id_prefixes", "body_fields", "test_domains"])?;
        Ok(DropTestTraffic {
            attributes: config.get_list_or("attributes", DEFAULT_ATTRIBUTES),
            id_prefixes: config.get_list_or("id_prefixes", DEFAULT_ID_PREFIXES),
            body_fields: config.get_list_or("body_fields", DEFAULT_BODY_FIELDS),
            test_domains: config
                .get_list_or("test_domains", DEFAULT_TEST_DOMAINS)
                .into_iter()
                .map(|domain| domain.trim_start_matches('@').to_lowercase())
                .collect(),
        })
    }

    fn decide(&mut self, msg: &Message) -> Result<Decision, String> {
        Ok(match self.test_traffic_reason(msg) {
            Some(reason) => {
                log::info(&reason);
                Decision::discard(reason)
            }
            None => Decision::replay("not test traffic"),
        })
    }
}

redrive_guest::export_filter!(DropTestTraffic);

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_guest::Verdict::{self, Discard, Replay};

    fn decide(filter: &mut DropTestTraffic, msg: Message) -> (Verdict, String) {
        let d = filter.decide(&msg).unwrap();
        assert_eq!(d.body, None);
        (d.verdict, d.reason)
    }

    fn discard(reason: &str) -> (Verdict, String) {
        (Discard, reason.to_string())
    }

    fn default_filter() -> DropTestTraffic {
        DropTestTraffic::init(&Config::default()).unwrap()
    }

    #[test]
    fn flag_attributes() {
        let mut f = default_filter();
        let msg = Message::new("m", "").with_attribute("X-Test", "TRUE");
        assert_eq!(decide(&mut f, msg), discard("test traffic: attribute X-Test=TRUE"));
        let msg = Message::new("m", "").with_attribute("x-synthetic", "yes");
        assert_eq!(decide(&mut f, msg), discard("test traffic: attribute x-synthetic=yes"));
        let msg = Message::new("m", "")
            .with_attribute("x-test", "false")
            .with_attribute("x-test-traffic", "1");
        assert_eq!(decide(&mut f, msg), discard("test traffic: attribute x-test-traffic=1"));
        let msg = Message::new("m", "").with_attribute("x-test", "0");
        assert_eq!(decide(&mut f, msg), (Replay, "not test traffic".into()));
    }

    #[test]
    fn traffic_type_attributes() {
        let mut f = default_filter();
        let msg = Message::new("m", "").with_attribute("traffic-type", "LoadTest");
        assert_eq!(
            decide(&mut f, msg),
            discard("test traffic: attribute traffic-type=LoadTest")
        );
        let msg = Message::new("m", "").with_attribute("x-traffic-type", "synthetic");
        assert_eq!(
            decide(&mut f, msg),
            discard("test traffic: attribute x-traffic-type=synthetic")
        );
        let msg = Message::new("m", "").with_attribute("x-traffic-type", "production");
        assert_eq!(decide(&mut f, msg).0, Replay);
    }

    #[test]
    fn id_prefixes() {
        let mut f = default_filter();
        assert_eq!(
            decide(&mut f, Message::new("synthetic-42", "")),
            discard("test traffic: id prefix synthetic-")
        );
        assert_eq!(decide(&mut f, Message::new("contest-1", "")).0, Replay);
        let mut f = DropTestTraffic::init(&Config::from_pairs([("id_prefixes", "qa_")])).unwrap();
        assert_eq!(
            decide(&mut f, Message::new("qa_1", "")),
            discard("test traffic: id prefix qa_")
        );
        assert_eq!(decide(&mut f, Message::new("test-1", "")).0, Replay);
    }

    #[test]
    fn body_fields() {
        let mut f = default_filter();
        let msg = Message::new("m", r#"{"order": 1, "is_test": true}"#);
        assert_eq!(decide(&mut f, msg), discard("test traffic: body field is_test=true"));
        for body in [
            r#"{"test": false}"#,
            r#"{"test": "true"}"#,
            r#"{"nested": {"test": true}}"#,
            r#"[{"test": true}]"#,
        ] {
            assert_eq!(decide(&mut f, Message::new("m", body)).0, Replay, "{body}");
        }
    }

    #[test]
    fn email_domains() {
        let mut f = default_filter();
        let msg = Message::new("m", r#"{"email": "Jane@Example.COM"}"#);
        assert_eq!(decide(&mut f, msg), discard("test traffic: email domain example.com"));
        let msg = Message::new("m", r#"{"customer_email": "bot@mail.test.invalid"}"#);
        assert_eq!(decide(&mut f, msg), discard("test traffic: email domain test.invalid"));
        for body in [
            r#"{"email": "jane@notexample.com"}"#,
            r#"{"email": "example.com"}"#,
            r#"{"email": 7}"#,
            r#"{"contact": {"email": "a@example.com"}}"#,
        ] {
            assert_eq!(decide(&mut f, Message::new("m", body)).0, Replay, "{body}");
        }
        let mut f = DropTestTraffic::init(&Config::from_pairs([("test_domains", "@QA.Shop")])).unwrap();
        let msg = Message::new("m", r#"{"email": "x@qa.shop"}"#);
        assert_eq!(decide(&mut f, msg), discard("test traffic: email domain qa.shop"));
    }

    #[test]
    fn checks_run_in_order() {
        let mut f = default_filter();
        let msg = Message::new("test-1", r#"{"test": true}"#).with_attribute("x-test", "1");
        assert_eq!(decide(&mut f, msg), discard("test traffic: attribute x-test=1"));
        let msg = Message::new("test-1", r#"{"test": true}"#);
        assert_eq!(decide(&mut f, msg), discard("test traffic: id prefix test-"));
        let msg = Message::new("m", r#"{"email": "a@example.org", "synthetic": true}"#);
        assert_eq!(decide(&mut f, msg), discard("test traffic: body field synthetic=true"));
    }

    #[test]
    fn non_json_and_non_ascii_bodies_are_fine() {
        let mut f = default_filter();
        assert_eq!(decide(&mut f, Message::new("m", vec![0xff, 0x00])).0, Replay);
        assert_eq!(decide(&mut f, Message::new("m", "plain text")).0, Replay);
        assert_eq!(decide(&mut f, Message::new("m", "")).0, Replay);
        let msg = Message::new("m", r#"{"email": "jürgen@müller.example.org", "name": "Jürgen"}"#);
        assert_eq!(decide(&mut f, msg), discard("test traffic: email domain example.org"));
        let msg = Message::new("m", r#"{"email": "たろう@例え.jp"}"#);
        assert_eq!(decide(&mut f, msg).0, Replay);
    }

    #[test]
    fn logs_the_reason_and_rejects_unknown_keys() {
        let mut f = default_filter();
        let _ = log::take_native_logs();
        f.decide(&Message::new("test-9", "")).unwrap();
        assert_eq!(log::take_native_logs()[0].text, "test traffic: id prefix test-");
        assert!(DropTestTraffic::init(&Config::from_pairs([("domains", "x")])).is_err());
    }

    #[test]
    fn sample_files_match() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/filters/drop-test-traffic");
        let checked = redrive_guest::testing::assert_examples::<DropTestTraffic>(
            &Config::default(),
            &format!("{dir}/input.jsonl"),
            &format!("{dir}/expected.jsonl"),
        );
        assert!((12..=25).contains(&checked), "{checked} messages");
    }
}
