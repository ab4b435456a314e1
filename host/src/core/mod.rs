//! The leaf of the crate: the types every other part shares, depending on nothing else of redrive.
//!
//! - [`envelope`]: the [`Envelope`] every broker's messages are normalised into, and the decisions filters
//!   make about them.
//! - [`adapter`]: the [`Source`], [`Acker`] and [`Sink`] traits every broker implements, their tokens and
//!   typed errors.
//! - [`endpoint`]: a source or destination URL parsed once, with its redacted form.
//! - [`ids`]: journal keys, replay ids, digests; [`digest_set`]: sets of digests that grow without rehashing.
//! - [`jsonl`]: the JSONL message format of files and `redrive filter test`; [`line_attribute`]: one attribute
//!   of a line, read without the rest.
//! - [`backoff`]: retrying for a bounded time.
//! - [`aws`]: AWS profile, region and endpoint from the command line.
//! - [`failed_jobs`]: a database table of failed jobs as a DLQ (presets, rows, `--where`), for every database;
//!   [`table_options`]: the URL options every table source shares.
//! - [`text`]: text clipped for people.
//! - [`fleet`]: what a worker shares with the rest of its fleet, as the pipeline sees it.
//! - [`files`], [`lock`]: private directories, files opened without following symlinks, one run per DLQ.

pub mod adapter;
pub mod aws;
pub mod backoff;
pub mod digest_set;
pub mod endpoint;
pub mod envelope;
pub mod failed_jobs;
pub mod files;
pub mod fleet;
pub mod ids;
pub mod jsonl;
pub mod line_attribute;
pub mod lock;
pub mod table_options;
pub mod text;

pub use adapter::{
    AckToken, Acker, AdapterError, Delivery, PassSize, Received, Redelivery, SendError, Sink, Source, SourceMode,
};
pub use aws::AwsSettings;
pub use endpoint::{Destination, Endpoint, EndpointError, Scheme};
pub use envelope::{Envelope, TimeWindow};
pub use files::{FileError, FileIdentity};
pub use ids::JournalKey;
pub use lock::{LockError, RunLock};
