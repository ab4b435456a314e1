//! `redis://HOST:PORT/DB?name=NAME`: where a fleet keeps what its workers share, and its name.

use std::fmt;

/// Characters a fleet name may hold (it becomes part of Redis keys and of what people type).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A parsed `--fleet` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetUrl {
    /// The Redis URL without the `name=` option (credentials included: never shown).
    redis: String,
    /// The Redis URL with the password masked, for messages.
    shown: String,
    /// The fleet's name.
    pub name: String,
}

impl fmt::Debug for FleetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}?name={}", self.shown, self.name)
    }
}

impl FleetUrl {
    /// Parse `redis://[user:password@]HOST[:PORT][/DB]?name=NAME` (or `rediss://` for TLS). Errors say what
    /// is wrong and never repeat the password.
    pub fn parse(text: &str) -> Result<Self, String> {
        let shown_input = crate::core::endpoint::redact(text);
        let url = url::Url::parse(text).map_err(|e| format!("{shown_input} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(format!(
                "{shown_input}: a fleet is coordinated through Redis: redis://HOST:PORT/DB?name=NAME"
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "{shown_input}: no host; e.g. redis://127.0.0.1:6379/0?name=orders-replay"
            ));
        }
        let mut name = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "name" => name = Some(value.into_owned()),
                other => {
                    return Err(format!(
                        "{shown_input}: unknown option `{other}`; a fleet URL takes only name=NAME"
                    ));
                }
            }
        }
        let Some(name) = name else {
            return Err(format!(
                "{shown_input}: the fleet needs a name: add ?name=NAME (every worker of one fleet uses the same)"
            ));
        };
        if !valid_name(&name) {
            return Err(format!(
                "{shown_input}: fleet name `{name}`: use 1 to 100 letters, digits, `-`, `_` or `.`"
            ));
        }
        let mut redis = url.clone();
        redis.set_query(None);
        let shown = crate::core::endpoint::redact(redis.as_str());
        Ok(Self {
            redis: redis.to_string(),
            shown,
            name,
        })
    }

    /// A fleet named `name` on the Redis at `redis` (for `redrive fleet` commands given a bare name).
    pub fn named(redis: &str, name: &str) -> Result<Self, String> {
        let separator = if redis.contains('?') { '&' } else { '?' };
        Self::parse(&format!("{redis}{separator}name={name}"))
    }

    /// The Redis URL to connect to (with credentials: never print it).
    pub fn redis_url(&self) -> &str {
        &self.redis
    }

    /// `redis://HOST:PORT/DB?name=NAME`, without the password.
    pub fn describe(&self) -> String {
        format!("{}?name={}", self.shown, self.name)
    }

    /// The prefix of every key of this fleet.
    pub fn key(&self, part: &str) -> String {
        format!("redrive:fleet:{}:{part}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_urls_parse_and_mistakes_say_what_to_write() {
        let u = FleetUrl::parse("redis://:s3cret@127.0.0.1:6379/2?name=orders-replay").unwrap();
        assert_eq!(u.name, "orders-replay");
        assert_eq!(u.redis_url(), "redis://:s3cret@127.0.0.1:6379/2");
        assert!(!u.describe().contains("s3cret"), "{}", u.describe());
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.key("rate"), "redrive:fleet:orders-replay:rate");
        let named = FleetUrl::named("redis://127.0.0.1:6379/0", "a.b_c").unwrap();
        assert_eq!(named.name, "a.b_c");
        for (bad, says) in [
            ("redis://:s3cret@127.0.0.1:6379/0", "needs a name"),
            ("redis://:s3cret@h/0?name=a b", "letters, digits"),
            ("redis://:s3cret@h/0?name=x&nmae=y", "unknown option `nmae`"),
            ("amqp://:s3cret@h/?name=x", "through Redis"),
            ("not a url", "not a URL"),
        ] {
            let e = FleetUrl::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
