//! `postgres://user@host:5432/db?table=failed_jobs`: a database table of failed jobs (Laravel's
//! `failed_jobs`, GoodJob's `good_jobs`, or any table with an id, a payload and an error) as a
//! dead-letter queue, through tokio-postgres.
//!
//! Rows are read in id order, a page at a time (`page=500`), and locked with `FOR UPDATE SKIP LOCKED`
//! in one transaction that lasts the pass, so two workers never take the same row. An ack deletes the
//! row (or sets `mark_column` to now(), `ack=mark`) in that transaction, only after the forward was
//! confirmed; a release leaves the row untouched. The transaction commits when the pass ends; if the
//! connection is lost, the source reconnects, locks its rows again and re-applies its acks (an ack
//! already in the run journal is never forwarded again).
//!
//! `--where` adds an operator-written predicate (trusted input: it is SQL). Values taken from rows are
//! always passed as parameters, never put into SQL text. `plan` reads without locking.

mod rows;
mod source;
mod url;

pub use source::PgSource;
