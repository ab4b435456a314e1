//! `mysql://user@host:3306/db?table=failed_jobs` (or `mariadb://`): a failed-jobs table in MySQL or MariaDB
//! (Laravel's `failed_jobs`, django-q's tasks, or any table with an id, a payload and an error) as a
//! dead-letter queue, through mysql_async.
//!
//! It reads like the PostgreSQL source (`core::failed_jobs` holds what both share): rows in id order, a
//! page at a time (`page=500`), locked with `FOR UPDATE SKIP LOCKED` in one transaction that lasts the pass,
//! so two workers never take the same row (MySQL ≥ 8.0, MariaDB ≥ 10.6). An ack deletes the row (or sets
//! `mark_column` to the current time, `ack=mark`) in that transaction, only after the forward was
//! confirmed; a release leaves the row untouched. The transaction commits when the pass ends; if the
//! session is lost, the source reconnects, locks its rows again and re-applies its acks.
//!
//! The session runs at READ COMMITTED, so the pass's locks are on its own rows only: InnoDB takes no gap
//! locks, and the application can keep inserting new failed jobs while a pass runs. Times are read in UTC.
//!
//! `--where` adds an operator-written predicate (trusted input: it is SQL). Values taken from rows are
//! always passed as parameters, never put into SQL text. `plan` reads without locking.

mod rows;
mod source;
mod url;

pub use source::MySqlSource;
