//! The dead letter a filter looks at: [`Message`], [`Origin`] and [`FailureInfo`].

use serde::de::DeserializeOwned;

/// One dead letter, as the host hands it to [`Filter::decide`](crate::Filter::decide).
///
/// The fields mirror the `message` record of the WIT contract
/// (`guest-sdk/wit/filter.wit`). In a filter chain, `body` is the body the
/// previous filter returned (if it repaired it), not necessarily the body in
/// the dead-letter queue.
///
/// For unit tests, build one with [`Message::new`] and the `with_*` builders:
///
/// ```
/// use redrive_guest::Message;
///
/// let msg = Message::new("m-1", r#"{"qty": 2}"#)
///     .with_attribute("content-type", "application/json")
///     .with_error_text("connection reset by peer")
///     .with_receive_count(3);
/// assert_eq!(msg.body_str(), Some(r#"{"qty": 2}"#));
/// assert_eq!(msg.attribute_ignore_case("Content-Type"), Some("application/json"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The message id in its dead-letter queue.
    pub id: String,
    /// The payload, byte for byte.
    pub body: Vec<u8>,
    /// Headers / message attributes, in the order the broker gave them.
    /// Values that are not strings on the broker are given as JSON.
    pub attributes: Vec<(String, String)>,
    /// Where the message came from.
    pub origin: Origin,
    /// Why the message is in the dead-letter queue, as far as it is known.
    pub failure: FailureInfo,
    /// How many times redrive has already replayed this message
    /// (the `x-redrive-replay-count` attribute).
    pub replay_count: u32,
}

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The system the dead-letter queue lives in: `"file"`, `"rabbitmq"`,
    /// `"sqs"`, `"redis"`, `"kafka"`, `"database"`, ...
    pub system: String,
    /// Name of the dead-letter queue (queue, stream, topic or table).
    pub dlq: String,
    /// The queue or topic the message was dead-lettered from, when the broker
    /// tells it.
    pub original_queue: Option<String>,
}

/// Why the message is in the dead-letter queue, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailureInfo {
    /// Broker-level reason, e.g. `"rejected"`, `"expired"`, `"maxlen"`.
    pub reason: Option<String>,
    /// The error text the failing consumer recorded.
    pub error_text: Option<String>,
    /// The error class or type, e.g. `"TimeoutError"`.
    pub error_class: Option<String>,
    /// How many times the message was delivered before it was dead-lettered.
    pub receive_count: Option<u32>,
    /// First failure, milliseconds since the Unix epoch (UTC).
    pub first_failed_at_ms: Option<i64>,
    /// Last failure, milliseconds since the Unix epoch (UTC).
    pub last_failed_at_ms: Option<i64>,
}

impl FailureInfo {
    /// `true` when none of `reason`, `error_text` and `error_class` carries any
    /// non-blank text: the broker told nothing about why the message failed.
    pub fn is_unknown(&self) -> bool {
        [&self.reason, &self.error_text, &self.error_class]
            .iter()
            .all(|field| field.as_deref().is_none_or(|text| text.trim().is_empty()))
    }
}

impl Message {
    /// A message with the given id and body and nothing else (no attributes,
    /// empty origin, no failure context, replay count 0). Meant for tests.
    pub fn new(id: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Message {
            id: id.into(),
            body: body.into(),
            ..Message::default()
        }
    }

    /// The body as UTF-8 text, or `None` if it is not valid UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Parses the body as JSON into any serde type (`serde_json::Value` for
    /// untyped access).
    ///
    /// ```
    /// # use redrive_guest::Message;
    /// #[derive(serde::Deserialize)]
    /// struct Order { quantity: u32 }
    ///
    /// let msg = Message::new("m-1", r#"{"quantity": 3}"#);
    /// let order: Order = msg.json().unwrap();
    /// assert_eq!(order.quantity, 3);
    /// assert!(Message::new("m-2", "not json").json::<Order>().is_err());
    /// ```
    ///
    /// In [`Filter::decide`](crate::Filter::decide), turn the error into the
    /// `String` error with `.map_err(|e| format!("body is not JSON: {e}"))?`,
    /// or decide something else for non-JSON bodies.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The value of the first attribute whose name is exactly `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The value of the first attribute whose name equals `name` ignoring
    /// ASCII case (HTTP-style header names: `X-Test` matches `x-test`).
    pub fn attribute_ignore_case(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Adds an attribute (builder, for tests).
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    /// Sets the origin's system and dead-letter queue name (builder, for tests).
    pub fn with_origin(mut self, system: impl Into<String>, dlq: impl Into<String>) -> Self {
        self.origin.system = system.into();
        self.origin.dlq = dlq.into();
        self
    }

    /// Sets the queue the message was dead-lettered from (builder, for tests).
    pub fn with_original_queue(mut self, queue: impl Into<String>) -> Self {
        self.origin.original_queue = Some(queue.into());
        self
    }

    /// Replaces the whole failure context (builder, for tests).
    pub fn with_failure(mut self, failure: FailureInfo) -> Self {
        self.failure = failure;
        self
    }

    /// Sets the broker-level failure reason, e.g. `"rejected"` (builder, for tests).
    pub fn with_failure_reason(mut self, reason: impl Into<String>) -> Self {
        self.failure.reason = Some(reason.into());
        self
    }

    /// Sets the error text the failing consumer recorded (builder, for tests).
    pub fn with_error_text(mut self, text: impl Into<String>) -> Self {
        self.failure.error_text = Some(text.into());
        self
    }

    /// Sets the error class, e.g. `"TimeoutError"` (builder, for tests).
    pub fn with_error_class(mut self, class: impl Into<String>) -> Self {
        self.failure.error_class = Some(class.into());
        self
    }

    /// Sets how many times the broker delivered the message (builder, for tests).
    pub fn with_receive_count(mut self, count: u32) -> Self {
        self.failure.receive_count = Some(count);
        self
    }

    /// Sets the first and last failure times, in milliseconds since the Unix
    /// epoch (builder, for tests).
    pub fn with_failed_at_ms(mut self, first: i64, last: i64) -> Self {
        self.failure.first_failed_at_ms = Some(first);
        self.failure.last_failed_at_ms = Some(last);
        self
    }

    /// Sets how many times redrive already replayed the message (builder, for tests).
    pub fn with_replay_count(mut self, count: u32) -> Self {
        self.replay_count = count;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sets_only_id_and_body() {
        let msg = Message::new("m-1", "hello");
        assert_eq!(msg.id, "m-1");
        assert_eq!(msg.body, b"hello");
        assert!(msg.attributes.is_empty());
        assert_eq!(msg.origin, Origin::default());
        assert_eq!(msg.failure, FailureInfo::default());
        assert_eq!(msg.replay_count, 0);
    }

    #[test]
    fn body_str_is_none_for_invalid_utf8() {
        assert_eq!(Message::new("a", "héllo ✓").body_str(), Some("héllo ✓"));
        assert_eq!(Message::new("b", vec![0xff, 0xfe, 0x00]).body_str(), None);
        assert_eq!(Message::new("c", Vec::new()).body_str(), Some(""));
    }

    #[test]
    fn json_parses_into_serde_types() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Order {
            sku: String,
            quantity: u32,
        }
        let msg = Message::new("m", r#"{"sku":"é-1","quantity":2}"#);
        assert_eq!(
            msg.json::<Order>().unwrap(),
            Order {
                sku: "é-1".into(),
                quantity: 2
            }
        );
        let value: serde_json::Value = msg.json().unwrap();
        assert_eq!(value["quantity"], 2);
        assert!(Message::new("m", "{").json::<serde_json::Value>().is_err());
        assert!(Message::new("m", vec![0xff]).json::<serde_json::Value>().is_err());
    }

    #[test]
    fn attribute_lookup_exact_and_ignoring_case() {
        let msg = Message::new("m", "")
            .with_attribute("X-Test", "1")
            .with_attribute("x-test", "2")
            .with_attribute("trace", "abc");
        assert_eq!(msg.attribute("x-test"), Some("2"));
        assert_eq!(msg.attribute("X-Test"), Some("1"));
        assert_eq!(msg.attribute("X-TEST"), None);
        assert_eq!(msg.attribute_ignore_case("X-TEST"), Some("1"));
        assert_eq!(msg.attribute_ignore_case("TRACE"), Some("abc"));
        assert_eq!(msg.attribute_ignore_case("missing"), None);
    }

    #[test]
    fn builders_fill_origin_and_failure() {
        let msg = Message::new("m", "")
            .with_origin("rabbitmq", "orders.dlq")
            .with_original_queue("orders")
            .with_failure_reason("rejected")
            .with_error_text("timeout")
            .with_error_class("TimeoutError")
            .with_receive_count(4)
            .with_failed_at_ms(1, 2)
            .with_replay_count(1);
        assert_eq!(msg.origin.system, "rabbitmq");
        assert_eq!(msg.origin.dlq, "orders.dlq");
        assert_eq!(msg.origin.original_queue.as_deref(), Some("orders"));
        assert_eq!(msg.failure.reason.as_deref(), Some("rejected"));
        assert_eq!(msg.failure.error_text.as_deref(), Some("timeout"));
        assert_eq!(msg.failure.error_class.as_deref(), Some("TimeoutError"));
        assert_eq!(msg.failure.receive_count, Some(4));
        assert_eq!(msg.failure.first_failed_at_ms, Some(1));
        assert_eq!(msg.failure.last_failed_at_ms, Some(2));
        assert_eq!(msg.replay_count, 1);
    }

    #[test]
    fn failure_is_unknown_only_without_text() {
        assert!(FailureInfo::default().is_unknown());
        assert!(Message::new("m", "").with_error_text("  ").failure.is_unknown());
        assert!(Message::new("m", "").with_receive_count(3).failure.is_unknown());
        assert!(
            !Message::new("m", "")
                .with_failure_reason("expired")
                .failure
                .is_unknown()
        );
        assert!(!Message::new("m", "").with_error_class("E").failure.is_unknown());
    }
}
