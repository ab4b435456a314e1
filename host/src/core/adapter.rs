//! The contract between the pipeline and the brokers: a [`Source`] (a DLQ read in one bounded pass) settled
//! through its [`Acker`], and a [`Sink`] (a destination that confirms each message). Every broker in
//! `brokers/` implements these; the pipeline sees nothing else of them.
//!
//! A source yields [`Received`] items, each message with an [`AckToken`]; the pipeline settles it downstream:
//! `ack` removes it from the DLQ (only after the destination confirmed it, or it was archived), `release`
//! leaves it there untouched. The split lets brokers with very different models fit: RabbitMQ delivery tags
//! (ack / nack+requeue), SQS receipt handles (delete / change visibility), Redis Streams entry ids (XACK), rows
//! in a transaction (DELETE at commit), line numbers of a file (a remainder file).

use std::sync::Arc;

use async_trait::async_trait;

use super::envelope::Envelope;

/// Identifies one received message to its source, for settling it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckToken {
    /// Position or tag: line number, delivery tag, offset; increasing in the order messages were received.
    pub seq: u64,
    /// The broker's key where a number is not enough: message id, entry id, row id.
    pub key: Option<String>,
}

/// One message received from a source.
#[derive(Debug)]
pub struct Delivery {
    /// The normalised message.
    pub envelope: Envelope,
    /// How to settle it.
    pub token: AckToken,
}

/// What a source yields.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "almost every item is a message; boxing would cost an allocation each"
)]
pub enum Received {
    /// A message.
    Message(Delivery),
    /// Something that could not be read as a message. It stays in the DLQ; the problem is reported.
    Malformed {
        /// How to settle it (it is always released).
        token: AckToken,
        /// Where and what: e.g. `line 12: not a message object: ...`.
        problem: String,
    },
}

/// Whether the pass may remove messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceMode {
    /// A replay: acked messages are removed from the DLQ.
    Consume,
    /// A plan or dry run: nothing is ever removed.
    Peek,
}

/// Errors of a source or sink as a whole: opening it, reading a pass, settling.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The URL or its options are wrong, or what it names does not exist.
    #[error("{0}")]
    Config(String),
    /// The broker refused, went away or could not be reached (the message says where and why).
    #[error("{0}")]
    Broker(String),
    /// The DLQ itself is gone (deleted, or lost by a broker that restarted without its data): nothing more
    /// can be settled there, and the run stops.
    #[error("{0}")]
    Gone(String),
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and where.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// An error and its causes on one line (`a: b: c`), each cause once: driver errors often repeat their
/// source's text in their own, or wrap it in a variant whose text says the same (`Input/output error:
/// Input/output error: Connection refused`): a part said twice in a row is said once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    join_causes(std::iter::successors(Some(e), |e| e.source()).map(ToString::to_string))
}

/// An error's text and its causes' texts, outermost first, on one line as [`error_chain`] puts them: for error
/// types that walk their chain another way (wasmtime's).
pub fn join_causes(causes: impl IntoIterator<Item = String>) -> String {
    let mut causes = causes.into_iter();
    let mut text = causes.next().unwrap_or_default();
    for next in causes {
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

impl AdapterError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AdapterError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Why the destination did not confirm one message. The message stays in the DLQ either way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    /// What happened, in words.
    pub reason: String,
    /// What the failure means for this message and for the rest of the run.
    pub failure: SendFailure,
}

/// What a failed send means: for the message (may a later run succeed?) and for the run (can it go on?).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// The send did not get through, or its confirmation was lost (a lost connection, throttling, a
    /// timeout): sending it again may work.
    Transient,
    /// The destination refused this message (unroutable, too large, a nack).
    Refused,
    /// The destination can take nothing more from this run (a transactional producer fenced by another one
    /// with its id, a client in a state it cannot leave): the run stops, and everything it did not send stays
    /// in the DLQ for the next run.
    Fatal,
}

impl SendError {
    /// The destination refused this message.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            failure: SendFailure::Refused,
        }
    }

    /// The send did not get through, or its confirmation was lost; trying again may work.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            failure: SendFailure::Transient,
        }
    }

    /// The destination can take nothing more from this run; the run stops.
    pub fn fatal(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            failure: SendFailure::Fatal,
        }
    }

    /// Whether a later run sending it again may succeed (true for everything but a refusal).
    pub fn is_retryable(&self) -> bool {
        self.failure != SendFailure::Refused
    }
}

/// A dead-letter queue, read in one bounded pass.
#[async_trait]
pub trait Source: Send {
    /// A stable identity without credentials (e.g. `file:/abs/dlq.jsonl`, `amqp://host/vhost?queue=q`).
    /// Replay ids and the run journal are derived from it.
    fn identity(&self) -> &str;

    /// How many messages this pass will yield, for progress and ETA. Filled in when known; it may arrive
    /// after the pass started (a file is counted in the background).
    fn pass_size(&self) -> PassSize;

    /// Most messages this source should hand out before they are settled, set by the pipeline before the pass
    /// from the forwarder's window and the rate (more would only wait). A source whose open messages cost
    /// something keeps to it (Kafka: a partition given to another worker waits for its open messages); the
    /// others have nothing to do.
    fn set_open_window(&mut self, _messages: usize) {}

    /// The next message of the pass, or `None` when the pass is complete. Messages that come back to the
    /// DLQ during the run are not part of the pass. The pipeline polls each call's future to its end; it drops
    /// one unfinished only when the run is stopping or over, so a source need not be cancel-safe otherwise.
    async fn next(&mut self) -> Result<Option<Received>, AdapterError>;

    /// The handle the pipeline settles messages with.
    fn acker(&self) -> Arc<dyn Acker>;

    /// End the pass: give back whatever is still held, write remainders. Returns lines for the summary.
    async fn finish(&mut self) -> Result<Vec<String>, AdapterError>;

    /// A watch on what arrives in the DLQ after the pass started, for the re-poison breaker (replays that
    /// fail again and come back). `None` where the broker cannot show new messages without taking them.
    /// Called once, after the source is opened.
    fn arrivals(&self) -> Option<Box<dyn Arrivals>> {
        None
    }
}

/// Messages that arrived in the DLQ after the pass started, seen without taking them, hiding them or
/// changing them: how a run notices its own replays coming back.
#[async_trait]
pub trait Arrivals: Send {
    /// What arrived since the last call, each message once. Called about once a second while the run
    /// lasts; an error is reported and the next call tries again, except [`AdapterError::Config`]: this DLQ
    /// cannot be watched at all (how it is set up, or the user turned it off), said once and not tried again.
    async fn poll(&mut self) -> Result<Vec<Envelope>, AdapterError>;
}

/// Settles received messages. Both calls are idempotent.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Remove these messages from the DLQ. Only called once their fate is durable elsewhere.
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError>;
    /// Leave these messages in the DLQ, untouched.
    async fn release(&self, tokens: &[AckToken]) -> Result<(), AdapterError>;
}

/// The size of a pass, set once when it becomes known.
pub type PassSize = Arc<std::sync::OnceLock<u64>>;

/// What a destination can tell about a message sent just before a crash (it may or may not have arrived).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redelivery {
    /// It cannot be read back (RabbitMQ, SQS): a message in flight at a crash is sent again on resume, with
    /// the same replay id, at most `--max-in-flight` of them per crash.
    Possible,
    /// The sink recognises a replay id it already holds and does not add it again (a file).
    Deduplicated,
    /// It can be asked whether messages arrived ([`Sink::delivered`]): sends are journaled ahead, and a
    /// resumed run asks before sending again (a Redis stream).
    Checkable,
}

/// The in-flight window on a destination a crash can repeat from ([`Redelivery::Possible`]) when
/// `--max-in-flight` is not given: at most this many copies per crash (README, "What a crash can repeat").
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

impl Redelivery {
    /// The in-flight window when `--max-in-flight` is not given, for a sink whose batches hold at most
    /// `max_batch` messages. Where a crash can repeat what was in flight, the window bounds the copies, so it
    /// stays [`DEFAULT_MAX_IN_FLIGHT`]. Where a crash repeats nothing (the sink drops a replay id it holds, or is
    /// asked before sending again), a larger window costs no safety and each batch (one sync, one commit, one
    /// journal record) carries more: it is the sink's largest batch.
    #[must_use]
    pub fn default_in_flight(self, max_batch: usize) -> usize {
        match self {
            Self::Possible => DEFAULT_MAX_IN_FLIGHT,
            Self::Deduplicated | Self::Checkable => max_batch.max(1),
        }
    }
}

/// A destination for replayed messages. [`Sink::send`] resolves only when the destination confirmed each
/// message (publisher confirms, per-entry batch results, fsync), entry by entry: the pipeline acks a source
/// message only after its entry is `Ok`.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Where messages go, without credentials.
    fn describe(&self) -> String;

    /// Most messages one `send` call should carry.
    fn max_batch(&self) -> usize;

    /// What the destination can tell about a message sent before a crash.
    fn redelivery(&self) -> Redelivery {
        Redelivery::Possible
    }

    /// For [`Redelivery::Checkable`] sinks: whether each message (by its replay id) is already there.
    async fn delivered(&self, batch: &[Envelope]) -> Result<Vec<bool>, AdapterError> {
        Ok(vec![false; batch.len()])
    }

    /// Send a batch. One result per message, in order; `Ok` means the destination confirmed it.
    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), SendError>>;

    /// Flush and close.
    async fn close(&self) -> Result<(), AdapterError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                })
            })
            .expect("at least one layer")
    }

    #[test]
    fn each_cause_is_said_once() {
        let e = layers(&["cannot open x", "cannot read x: No such file", "No such file"]);
        assert_eq!(error_chain(&e), "cannot open x: cannot read x: No such file");
        let e = layers(&[
            "cannot connect",
            "Input/output error: Input/output error: Connection refused",
        ]);
        assert_eq!(
            error_chain(&e),
            "cannot connect: Input/output error: Connection refused"
        );
        let e = layers(&["a", "b", "c"]);
        assert_eq!(error_chain(&e), "a: b: c");
    }

    #[test]
    fn causes_walked_another_way_are_joined_alike() {
        let causes = |c: &[&str]| join_causes(c.iter().map(|s| (*s).to_owned()));
        assert_eq!(causes(&["outer: inner", "inner", "root"]), "outer: inner: root");
        assert_eq!(causes(&["a", "b: b", "c"]), "a: b: c");
        assert_eq!(causes(&["only"]), "only");
        assert_eq!(causes(&[]), "");
    }

    #[test]
    fn the_default_window_is_small_only_where_a_crash_can_repeat_it() {
        assert_eq!(Redelivery::Possible.default_in_flight(512), DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(Redelivery::Possible.default_in_flight(10), DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(Redelivery::Deduplicated.default_in_flight(256), 256);
        assert_eq!(Redelivery::Checkable.default_in_flight(500), 500);
        assert_eq!(Redelivery::Checkable.default_in_flight(0), 1);
    }
}
