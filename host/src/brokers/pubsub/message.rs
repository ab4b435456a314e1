//! A Pub/Sub message as an envelope (the dead-letter attributes read into failure context and origin), and
//! an envelope as the attributes and ordering key to publish.

use chrono::{DateTime, Utc};
use gcloud_googleapis::pubsub::v1::PubsubMessage;

use super::url::DeathAttributes;
use crate::core::envelope::{
    ERROR_CLASS_ATTRIBUTES, ERROR_TEXT_ATTRIBUTES, Envelope, FailureContext, MOVED_ATTRIBUTE_PREFIX, Origin,
    REPLAY_COUNT_ATTRIBUTE, is_broker_property,
};

/// The subscription a message was dead-lettered from (its id, or on some clients its full path).
pub const SOURCE_SUBSCRIPTION: &str = "CloudPubSubDeadLetterSourceSubscription";
/// The project of that subscription.
pub const SOURCE_PROJECT: &str = "CloudPubSubDeadLetterSourceSubscriptionProject";
/// Deliveries before the message was dead-lettered.
pub const SOURCE_DELIVERY_COUNT: &str = "CloudPubSubDeadLetterSourceDeliveryCount";
/// When the message was first published to its topic.
pub const SOURCE_PUBLISH_TIME: &str = "CloudPubSubDeadLetterSourceTopicPublishTime";

/// Attributes redrive adds for filters: the ordering key, the publish time in the DLQ, the delivery attempt.
pub const ORDERING_KEY: &str = "pubsub.ordering_key";
const PUBLISH_TIME: &str = "pubsub.publish_time";
const DELIVERY_ATTEMPT: &str = "pubsub.delivery_attempt";

/// When Pub/Sub accepted the message (for a message in a dead-letter topic: when it was dead-lettered).
pub(super) fn publish_time(message: &PubsubMessage) -> Option<DateTime<Utc>> {
    let t = message.publish_time.as_ref()?;
    DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
}

/// Pub/Sub's limits on a published message's attributes.
const MAX_ATTRIBUTES: usize = 100;
const MAX_KEY_BYTES: usize = 256;
const MAX_VALUE_BYTES: usize = 1024;

/// A message of the dead-letter subscription `subscription` as an envelope. `delivery_attempt` is the DLQ
/// subscription's own count (0 when it has no dead-letter policy itself). Malformed dead-letter attributes
/// become notes.
pub fn envelope(subscription: &str, message: PubsubMessage, delivery_attempt: i32) -> Envelope {
    let mut notes = Vec::new();
    let published = publish_time(&message);
    let mut attributes: Vec<(String, String)> = message.attributes.into_iter().collect();
    attributes.sort();
    let get = |name: &str| attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let receive_count = get(SOURCE_DELIVERY_COUNT).and_then(|text| match text.parse::<u32>() {
        Ok(n) => Some(n),
        Err(_) => {
            notes.push(format!("{SOURCE_DELIVERY_COUNT} {text:?} is not a count"));
            None
        }
    });
    if let Some(text) = get(SOURCE_PUBLISH_TIME)
        && DateTime::parse_from_rfc3339(&text).is_err()
    {
        notes.push(format!("{SOURCE_PUBLISH_TIME} {text:?} is not a time"));
    }
    let original_queue = match (get(SOURCE_SUBSCRIPTION), get(SOURCE_PROJECT)) {
        (Some(s), _) if s.starts_with("projects/") => Some(s),
        (Some(s), Some(p)) if !s.contains('/') && !p.contains('/') => Some(format!("projects/{p}/subscriptions/{s}")),
        (Some(s), None) if !s.contains('/') => {
            notes.push(format!(
                "{SOURCE_SUBSCRIPTION} {s:?} without {SOURCE_PROJECT}: the project is unknown"
            ));
            None
        }
        (Some(s), _) => {
            notes.push(format!("{SOURCE_SUBSCRIPTION} {s:?} is not a subscription name"));
            None
        }
        (None, _) => None,
    };
    let first = |names: &[&str]| names.iter().find_map(|n| get(n));
    let failure = FailureContext {
        reason: receive_count.map(|_| "max-delivery-attempts".to_owned()),
        error_text: first(&ERROR_TEXT_ATTRIBUTES),
        error_class: first(&ERROR_CLASS_ATTRIBUTES),
        receive_count,
        first_failed_at: None,
        // Dead-lettering publishes the message to the DLQ topic: that is when it failed for the last time.
        last_failed_at: published,
    };
    let replay_count = get(REPLAY_COUNT_ATTRIBUTE).and_then(|v| v.parse().ok()).unwrap_or(0);
    if !message.ordering_key.is_empty() {
        attributes.push((ORDERING_KEY.into(), message.ordering_key));
    }
    if let Some(t) = published {
        attributes.push((PUBLISH_TIME.into(), t.to_rfc3339()));
    }
    if delivery_attempt > 0 {
        attributes.push((DELIVERY_ATTEMPT.into(), delivery_attempt.to_string()));
    }
    Envelope {
        id: message.message_id,
        body: message.data,
        attributes,
        origin: Origin {
            system: "pubsub".into(),
            dlq: subscription.to_owned(),
            original_queue,
        },
        failure,
        replay_count,
        notes,
        id_unique_per_send: true,
        ..Default::default()
    }
}

fn is_dead_letter_attribute(name: &str) -> bool {
    name.starts_with("CloudPubSubDeadLetterSource")
}

/// The message to publish for `env`: its body, its attributes (redrive's `pubsub.*` and other brokers'
/// properties left out, the dead-letter attributes renamed unless `death=keep`), its ordering key. An
/// attribute Pub/Sub would refuse is an error that says which.
pub fn outgoing(env: &Envelope, death: DeathAttributes) -> Result<PubsubMessage, String> {
    let mut message = PubsubMessage {
        data: env.body.clone(),
        ..Default::default()
    };
    for (name, value) in &env.attributes {
        if name == ORDERING_KEY {
            message.ordering_key.clone_from(value);
            continue;
        }
        if is_broker_property(name) {
            continue;
        }
        let name = if death == DeathAttributes::Move && is_dead_letter_attribute(name) {
            format!("{MOVED_ATTRIBUTE_PREFIX}{name}")
        } else {
            name.clone()
        };
        if name.is_empty() || name.len() > MAX_KEY_BYTES || name.starts_with("goog") {
            return Err(format!(
                "attribute {name:?}: Pub/Sub takes names of 1 to {MAX_KEY_BYTES} bytes not starting with `goog`"
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "attribute {name:?} is {} bytes; Pub/Sub takes at most {MAX_VALUE_BYTES}",
                value.len()
            ));
        }
        message.attributes.insert(name, value.clone());
    }
    if message.attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "{} attributes; Pub/Sub takes at most {MAX_ATTRIBUTES}",
            message.attributes.len()
        ));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn dead(attributes: &[(&str, &str)]) -> PubsubMessage {
        PubsubMessage {
            data: br#"{"order":1}"#.to_vec(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
            message_id: "42".into(),
            ordering_key: "customer-7".into(),
            ..Default::default()
        }
    }

    #[test]
    fn dead_letter_attributes_become_failure_context_and_origin() {
        let env = envelope(
            "projects/p/subscriptions/orders-dlq-sub",
            dead(&[
                (SOURCE_SUBSCRIPTION, "orders-sub"),
                (SOURCE_PROJECT, "p"),
                (SOURCE_DELIVERY_COUNT, "5"),
                (SOURCE_PUBLISH_TIME, "2026-11-20T08:00:00.123Z"),
                ("x-error-message", "timeout calling billing"),
            ]),
            0,
        );
        assert_eq!(env.id, "42");
        assert_eq!(env.failure.receive_count, Some(5));
        assert_eq!(env.failure.error_text.as_deref(), Some("timeout calling billing"));
        assert_eq!(
            env.origin.original_queue.as_deref(),
            Some("projects/p/subscriptions/orders-sub")
        );
        assert_eq!(env.attribute(ORDERING_KEY), Some("customer-7"));
        assert!(env.notes.is_empty(), "{:?}", env.notes);
        let out = outgoing(&env, DeathAttributes::Move).unwrap();
        assert_eq!(out.ordering_key, "customer-7");
        assert_eq!(
            out.attributes
                .get("x-redrive-original-CloudPubSubDeadLetterSourceDeliveryCount")
                .map(String::as_str),
            Some("5")
        );
        assert!(!out.attributes.contains_key(SOURCE_DELIVERY_COUNT));
        assert!(!out.attributes.keys().any(|k| k.starts_with("pubsub.")));
        let kept = outgoing(&env, DeathAttributes::Keep).unwrap();
        assert_eq!(
            kept.attributes.get(SOURCE_DELIVERY_COUNT).map(String::as_str),
            Some("5")
        );
    }

    #[test]
    fn malformed_dead_letter_attributes_are_notes() {
        let env = envelope(
            "projects/p/subscriptions/dlq",
            dead(&[
                (SOURCE_SUBSCRIPTION, "orders-sub"),
                (SOURCE_DELIVERY_COUNT, "five"),
                (SOURCE_PUBLISH_TIME, "yesterday"),
            ]),
            0,
        );
        assert_eq!(env.failure.receive_count, None);
        assert_eq!(env.origin.original_queue, None);
        assert_eq!(env.notes.len(), 3, "{:?}", env.notes);
    }

    #[test]
    fn attributes_pubsub_would_refuse_are_errors() {
        let mut env = envelope("projects/p/subscriptions/dlq", dead(&[]), 0);
        env.attributes.push(("googx".into(), "1".into()));
        assert!(outgoing(&env, DeathAttributes::Move).unwrap_err().contains("goog"));
        env.attributes.pop();
        env.attributes.push(("big".into(), "x".repeat(2000)));
        assert!(
            outgoing(&env, DeathAttributes::Move)
                .unwrap_err()
                .contains("2000 bytes")
        );
    }
}
