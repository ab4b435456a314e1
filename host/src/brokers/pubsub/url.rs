//! `pubsub://projects/P/subscriptions/S` (a source: the subscription on a dead-letter topic) and
//! `pubsub://projects/P/topics/T` (a destination), with redrive's options.

use std::time::Duration;

use crate::core::adapter::AdapterError;
use crate::core::endpoint::{duration_option, non_empty_option};

/// What a `pubsub://` URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `projects/P/subscriptions/S`: read from it.
    Subscription(String),
    /// `projects/P/topics/T`: publish to it.
    Topic(String),
}

/// What a replay does with the `CloudPubSubDeadLetterSource*` attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathAttributes {
    /// Rename them `x-redrive-original-<name>` (default): subscribers see a fresh message, the history stays.
    Move,
    /// Send them unchanged (`death=keep`).
    Keep,
}

/// A parsed `pubsub://` URL.
#[derive(Clone, Debug)]
pub struct PubSubUrl {
    /// The project.
    pub project: String,
    /// The subscription or topic, fully qualified.
    pub resource: Resource,
    /// `emulator=HOST:PORT`, or `PUBSUB_EMULATOR_HOST`: talk to an emulator, without credentials.
    pub emulator: Option<String>,
    /// Source: the ack deadline messages are held with and renewed to (`lease=`, 10 s to 600 s, default 60 s).
    pub lease: Duration,
    /// Source: most messages per pull (`max=`, 1 to 1000, default 500).
    pub max_messages: i32,
    /// Sink: dead-letter attributes (`death=move|keep`).
    pub death: DeathAttributes,
    /// How long to keep retrying when the service is unreachable (`reconnect=`, default 60 s).
    pub reconnect_for: Duration,
}

impl PubSubUrl {
    /// Parse a `pubsub://` URL.
    pub fn parse(text: &str) -> Result<Self, AdapterError> {
        let shape = "write pubsub://projects/PROJECT/subscriptions/NAME (a source) or \
                     pubsub://projects/PROJECT/topics/NAME (a destination)";
        let Some(rest) = text.strip_prefix("pubsub://") else {
            return Err(AdapterError::Config(format!("not a pubsub:// URL; {shape}")));
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let (project, resource) = match parts.as_slice() {
            ["projects", project, kind @ ("subscriptions" | "topics"), name]
                if !project.is_empty() && !name.is_empty() =>
            {
                let full = format!("projects/{project}/{kind}/{name}");
                let resource = if *kind == "topics" {
                    Resource::Topic(full)
                } else {
                    Resource::Subscription(full)
                };
                ((*project).to_owned(), resource)
            }
            _ => return Err(AdapterError::Config(format!("pubsub://{path}: {shape}"))),
        };
        let mut url = PubSubUrl {
            project,
            resource,
            emulator: std::env::var("PUBSUB_EMULATOR_HOST").ok().filter(|h| !h.is_empty()),
            lease: Duration::from_secs(60),
            max_messages: 500,
            death: DeathAttributes::Move,
            reconnect_for: Duration::from_secs(60),
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let bad = |why: String| AdapterError::Config(format!("pubsub://{path}: option `{key}`: {why}"));
            match key.as_ref() {
                "emulator" => url.emulator = Some(non_empty_option(&value).map_err(bad)?),
                "lease" => {
                    url.lease = duration_option(&value)
                        .ok()
                        .filter(|d| (10..=600).contains(&d.as_secs()))
                        .ok_or_else(|| bad("expected 10s to 600s (Pub/Sub's ack deadline range)".into()))?;
                }
                "max" => {
                    url.max_messages = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| bad("expected 1 to 1000".into()))?;
                }
                "death" => {
                    url.death = match value.as_ref() {
                        "move" => DeathAttributes::Move,
                        "keep" => DeathAttributes::Keep,
                        _ => return Err(bad("expected `move` or `keep`".into())),
                    };
                }
                "reconnect" => url.reconnect_for = duration_option(&value).map_err(bad)?,
                _ => {
                    return Err(bad(
                        "unknown; the options are emulator, lease, max, death, reconnect (credentials come from \
                         GOOGLE_APPLICATION_CREDENTIALS or the application default credentials)"
                            .into(),
                    ));
                }
            }
        }
        Ok(url)
    }

    /// The subscription or topic path, `projects/P/...`.
    pub fn path(&self) -> &str {
        match &self.resource {
            Resource::Subscription(p) | Resource::Topic(p) => p,
        }
    }

    /// `pubsub://projects/P/...`, for messages and identities.
    pub fn describe(&self) -> String {
        format!("pubsub://{}", self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_topics_and_options() {
        let u = PubSubUrl::parse("pubsub://projects/shop/subscriptions/orders-dlq-sub?lease=2m&max=50").unwrap();
        assert_eq!(u.project, "shop");
        assert_eq!(
            u.resource,
            Resource::Subscription("projects/shop/subscriptions/orders-dlq-sub".into())
        );
        assert_eq!(u.lease, Duration::from_secs(120));
        assert_eq!(u.max_messages, 50);
        assert_eq!(u.describe(), "pubsub://projects/shop/subscriptions/orders-dlq-sub");
        let u = PubSubUrl::parse("pubsub://projects/shop/topics/orders?death=keep&emulator=127.0.0.1:8085").unwrap();
        assert_eq!(u.resource, Resource::Topic("projects/shop/topics/orders".into()));
        assert_eq!(u.death, DeathAttributes::Keep);
        assert_eq!(u.emulator.as_deref(), Some("127.0.0.1:8085"));
        for (url, says) in [
            ("pubsub://orders", "pubsub://projects/PROJECT/subscriptions/NAME"),
            ("pubsub://projects/p/queues/q", "pubsub://projects/PROJECT/topics/NAME"),
            ("pubsub://projects/p/topics/t?lease=1h", "10s to 600s"),
            ("pubsub://projects/p/topics/t?max=0", "1 to 1000"),
            ("pubsub://projects/p/topics/t?death=drop", "`move` or `keep`"),
            (
                "pubsub://projects/p/topics/t?credentials=x",
                "GOOGLE_APPLICATION_CREDENTIALS",
            ),
        ] {
            let e = PubSubUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
