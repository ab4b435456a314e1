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

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{AckToken, Acker, AdapterError, Delivery, PassSize, Received, Source, SourceMode, redact_url};
use crate::message::{Envelope, FailureContext, Origin, REPLAY_COUNT_ATTRIBUTE};
use crate::retry::Backoff;

/// Column names of a failed-jobs table.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Columns {
    table: String,
    id: String,
    body: String,
    error: String,
    failed_at: String,
    queue: String,
}

/// Schemas of the common frameworks (`preset=`); each column can be overridden.
fn preset(name: &str) -> Option<Columns> {
    let cols = |table: &str, id: &str, body: &str, error: &str, failed_at: &str, queue: &str| Columns {
        table: table.into(),
        id: id.into(),
        body: body.into(),
        error: error.into(),
        failed_at: failed_at.into(),
        queue: queue.into(),
    };
    match name {
        // Laravel: id, uuid, connection, queue, payload, exception, failed_at.
        "laravel" => Some(cols("failed_jobs", "id", "payload", "exception", "failed_at", "queue")),
        // Rails GoodJob: finished jobs with an error; the job is serialized_params.
        "good_job" => Some(cols(
            "good_jobs",
            "id",
            "serialized_params",
            "error",
            "finished_at",
            "queue_name",
        )),
        // django-q: failed tasks (success = false).
        "django_q" => Some(cols("django_q_task", "id", "args", "result", "stopped", "group")),
        _ => None,
    }
}

/// A parsed source URL.
#[derive(Clone, Debug)]
struct PgUrl {
    /// What tokio-postgres connects with (our options removed; credentials included, never printed).
    connect: String,
    /// `postgres://host:port/db?table=t`, no credentials.
    identity: String,
    columns: Columns,
    /// Extra predicate from the preset (GoodJob: only failed jobs).
    preset_where: Option<String>,
    mark_column: Option<String>,
    page: i64,
    reconnect_for: Duration,
}

impl PgUrl {
    fn parse(text: &str) -> Result<Self, AdapterError> {
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let mut columns = preset("laravel").unwrap_or_else(|| unreachable!("the laravel preset exists"));
        let mut preset_where = None;
        let mut mark_column = None;
        let mut page = 500;
        let mut reconnect_for = Duration::from_secs(60);
        let mut passthrough = Vec::new();
        let mut explicit = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let bad = |why: String| AdapterError::Config(format!("{}: option `{key}`: {why}", redact_url(base)));
            match key.as_ref() {
                "preset" => {
                    columns = preset(&value).ok_or_else(|| bad("presets are laravel, good_job, django_q".into()))?;
                    preset_where = match value.as_ref() {
                        "good_job" => Some("\"error\" IS NOT NULL AND \"finished_at\" IS NOT NULL".to_owned()),
                        "django_q" => Some("\"success\" = false".to_owned()),
                        _ => None,
                    };
                }
                "table" | "id_column" | "body_column" | "error_column" | "failed_at_column" | "queue_column" => {
                    explicit.push((key.into_owned(), value.into_owned()));
                }
                "ack" => match value.as_ref() {
                    "delete" => mark_column = None,
                    "mark" => {
                        mark_column.get_or_insert_with(|| "replayed_at".to_owned());
                    }
                    _ => return Err(bad("expected `delete` or `mark`".into())),
                },
                "mark_column" => mark_column = Some(value.into_owned()),
                "page" => {
                    page = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=100_000).contains(n))
                        .ok_or_else(|| bad("expected 1 to 100000".into()))?;
                }
                "reconnect" => {
                    reconnect_for = humantime::parse_duration(&value).map_err(|e| bad(e.to_string()))?;
                }
                _ => passthrough.push((key.into_owned(), value.into_owned())),
            }
        }
        // Explicit columns win over the preset, whatever their order in the URL.
        for (key, value) in explicit {
            let slot = match key.as_str() {
                "table" => &mut columns.table,
                "id_column" => &mut columns.id,
                "body_column" => &mut columns.body,
                "error_column" => &mut columns.error,
                "failed_at_column" => &mut columns.failed_at,
                _ => &mut columns.queue,
            };
            *slot = value;
        }
        let mut connect = base.to_owned();
        if !passthrough.is_empty() {
            connect.push('?');
            connect.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&passthrough)
                    .finish(),
            );
        }
        let config = tokio_postgres::Config::from_str(&connect)
            .map_err(|e| AdapterError::Config(format!("{}: {e}", redact_url(text))))?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(AdapterError::Config(format!(
                "{}: sslmode=require is not supported yet (no TLS for PostgreSQL); connect through a local tunnel",
                redact_url(base)
            )));
        }
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
        Ok(PgUrl {
            identity: format!("postgres://{host}:{port}/{db}?table={}", columns.table),
            connect,
            columns,
            preset_where,
            mark_column,
            page,
            reconnect_for,
        })
    }

    async fn connect(&self) -> Result<Client, AdapterError> {
        let mut config = tokio_postgres::Config::from_str(&self.connect)
            .map_err(|e| AdapterError::Config(format!("{}: {e}", self.identity)))?;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("redrive");
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            AdapterError::Broker(format!(
                "{}: cannot connect: {}; is PostgreSQL running there, and are the user and database right?",
                self.identity,
                pg_error(&e)
            ))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
        Ok(client)
    }
}

fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// True when the error means the connection is gone (closed, or the server ended the session).
fn connection_lost(e: &tokio_postgres::Error, client: &Client) -> bool {
    e.is_closed()
        || client.is_closed()
        || e.code()
            .is_some_and(|c| *c == tokio_postgres::error::SqlState::ADMIN_SHUTDOWN || c.code().starts_with("08"))
}

/// Check that an operator's `--where` predicate stays one predicate inside the parentheses redrive puts it
/// in: balanced parentheses, no `;`, no comment that would hide the rest of the query (quotes, quoted
/// identifiers and dollar-quoted strings are skipped). It is still trusted SQL; this stops accidents, such as
/// a stray `)` that would widen the selection to the whole table.
fn check_where(predicate: &str) -> Result<(), String> {
    let bytes = predicate.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                let escapes = quote == b'\'' && i > 0 && matches!(bytes[i - 1], b'E' | b'e');
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err("has a quote that is not closed".into()),
                        Some(b'\\') if escapes => i += 2,
                        Some(&c) if c == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
                        Some(&c) if c == quote => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'$' => {
                let tag_end = bytes[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map(|n| i + 1 + n);
                if let Some(end) = tag_end.filter(|&e| bytes[e] == b'$') {
                    let tag = &predicate[i..=end];
                    match predicate[end + 1..].find(tag) {
                        Some(close) => i = end + 1 + close + tag.len() - 1,
                        None => return Err(format!("has a dollar-quoted string {tag}...{tag} that is not closed")),
                    }
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("closes a parenthesis it did not open".into());
                }
            }
            b';' => return Err("has a `;`: it must be one predicate, not statements".into()),
            b'-' if bytes.get(i + 1) == Some(&b'-') => return Err("has a `--` comment".into()),
            b'/' if bytes.get(i + 1) == Some(&b'*') => return Err("has a `/*` comment".into()),
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err("opens a parenthesis it does not close".into());
    }
    Ok(())
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// What the source and its acker share: the connection with its pass-long transaction.
struct Shared {
    url: PgUrl,
    mode: SourceMode,
    /// The id column's SQL type (for casting text parameters).
    id_type: String,
    state: Mutex<State>,
}

struct State {
    client: Option<Arc<Client>>,
    /// Rows handed out and not acked or released (locked by our transaction).
    held: HashSet<String>,
    /// Rows acked in this transaction (re-applied after a reconnect).
    acked: Vec<String>,
}

impl Shared {
    /// The connection, reconnecting (and restoring the transaction: locks and acks) when it was lost.
    async fn client(&self, state: &mut State) -> Result<Arc<Client>, AdapterError> {
        if let Some(c) = &state.client {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            tracing::warn!(
                "{}: the connection was lost; reconnecting (locks and acks are restored)",
                self.url.identity
            );
        }
        state.client = None;
        let mut backoff = Backoff::new(self.url.reconnect_for);
        loop {
            match self.open_transaction(state).await {
                Ok(client) => {
                    state.client = Some(client.clone());
                    return Ok(client);
                }
                Err(e) if backoff.wait(&self.url.identity, &e).await => {}
                Err(e) => {
                    return Err(AdapterError::Broker(format!(
                        "{e}; gave up after {}. Nothing is lost: rows are deleted only when the pass commits, and the \
                         run journal lets the same command resume",
                        humantime::format_duration(self.url.reconnect_for)
                    )));
                }
            }
        }
    }

    async fn open_transaction(&self, state: &State) -> Result<Arc<Client>, AdapterError> {
        let client = Arc::new(self.url.connect().await?);
        if self.mode == SourceMode::Consume {
            let db =
                |e: tokio_postgres::Error| AdapterError::Broker(format!("{}: {}", self.url.identity, pg_error(&e)));
            client
                .batch_execute("BEGIN; SET LOCAL lock_timeout = '5s'")
                .await
                .map_err(db)?;
            let held: Vec<String> = state.held.iter().cloned().collect();
            if !held.is_empty() {
                let sql = format!(
                    "SELECT 1 FROM {} WHERE {} = ANY(($1::text[])::{}[]) FOR UPDATE SKIP LOCKED",
                    quote(&self.url.columns.table),
                    quote(&self.url.columns.id),
                    self.id_type
                );
                let locked = client.query(&sql, &[&held]).await.map_err(db)?.len();
                if locked < held.len() {
                    tracing::warn!(
                        "{}: {} rows in flight were taken by another worker while the connection was down",
                        self.url.identity,
                        held.len() - locked
                    );
                }
            }
            if !state.acked.is_empty() {
                self.settle_rows(&client, &state.acked).await?;
            }
        }
        Ok(client)
    }

    /// Delete (or mark) rows in the current transaction.
    async fn settle_rows(&self, client: &Client, ids: &[String]) -> Result<(), AdapterError> {
        let c = &self.url.columns;
        let sql = match &self.url.mark_column {
            None => format!(
                "DELETE FROM {} WHERE {} = ANY(($1::text[])::{}[])",
                quote(&c.table),
                quote(&c.id),
                self.id_type
            ),
            Some(mark) => format!(
                "UPDATE {} SET {} = now() WHERE {} = ANY(($1::text[])::{}[])",
                quote(&c.table),
                quote(mark),
                quote(&c.id),
                self.id_type
            ),
        };
        client
            .execute(&sql, &[&ids])
            .await
            .map(|_| ())
            .map_err(|e| AdapterError::Broker(format!("{}: {}", self.url.identity, pg_error(&e))))
    }
}

/// Reads one pass over a failed-jobs table.
pub struct PgSource {
    shared: Arc<Shared>,
    select: String,
    last_id: Option<String>,
    buffer: std::collections::VecDeque<Received>,
    done: bool,
    seq: u64,
    pass_size: PassSize,
}

impl PgSource {
    /// Connect, check the table and columns, count the rows; nothing is locked until the first read.
    pub async fn open(url: &str, mode: SourceMode, where_clause: Option<&str>) -> Result<Self, AdapterError> {
        let parsed = PgUrl::parse(url)?;
        let client = parsed.connect().await?;
        let c = &parsed.columns;
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text, udt_name::text FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = ANY(current_schemas(false)) ORDER BY ordinal_position",
                &[&c.table],
            )
            .await
            .map_err(|e| AdapterError::Broker(format!("{}: {}", parsed.identity, pg_error(&e))))?;
        if rows.is_empty() {
            return Err(AdapterError::Config(format!(
                "{}: table `{}` does not exist (or is not on the search path)",
                parsed.identity, c.table
            )));
        }
        let columns: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        let type_of = |name: &str| {
            columns
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, t, u)| (t.clone(), u.clone()))
        };
        let mut required = vec![&c.id, &c.body];
        if let Some(mark) = &parsed.mark_column {
            required.push(mark);
        }
        for name in required {
            if type_of(name).is_none() {
                return Err(AdapterError::Config(format!(
                    "{}: table `{}` has no column `{name}` (columns: {}); set the column with e.g. body_column=NAME",
                    parsed.identity,
                    c.table,
                    columns
                        .iter()
                        .map(|(n, _, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let (_, id_type) = type_of(&c.id).unwrap_or_default();
        let (body_type, _) = type_of(&c.body).unwrap_or_default();
        let body_expr = if body_type == "bytea" {
            format!("t.{}", quote(&c.body))
        } else {
            format!("convert_to(t.{}::text, 'UTF8')", quote(&c.body))
        };
        let mut filter = Vec::new();
        if let Some(w) = &parsed.preset_where {
            filter.push(w.clone());
        }
        if let Some(mark) = &parsed.mark_column {
            filter.push(format!("t.{} IS NULL", quote(mark)));
        }
        if let Some(w) = where_clause {
            check_where(w).map_err(|problem| {
                AdapterError::Config(format!(
                    "--where {problem}; write one predicate over the table's columns, e.g. \"queue = 'emails'\" \
                     (it goes into redrive's query in parentheses)"
                ))
            })?;
            filter.push(format!("({w})"));
        }
        let filter_sql = filter.iter().map(|f| format!(" AND {f}")).collect::<String>();
        let count_sql = format!("SELECT count(*) FROM {} t WHERE true{filter_sql}", quote(&c.table));
        let total: i64 = client
            .query_one(&count_sql, &[])
            .await
            .map_err(|e| {
                AdapterError::Config(format!(
                    "{}: the selection does not run: {} (check --where)",
                    parsed.identity,
                    pg_error(&e)
                ))
            })?
            .get(0);
        let lock = if mode == SourceMode::Consume {
            " FOR UPDATE OF t SKIP LOCKED"
        } else {
            ""
        };
        let select = format!(
            "SELECT t.{id}::text, {body_expr}, row_to_json(t)::text FROM {table} t \
             WHERE ($1::text IS NULL OR t.{id} > ($1::text)::{id_type}){filter_sql} ORDER BY t.{id} LIMIT $2{lock}",
            id = quote(&c.id),
            table = quote(&c.table),
        );
        let pass_size = PassSize::default();
        let _ = pass_size.set(u64::try_from(total).unwrap_or(0));
        drop(client);
        Ok(Self {
            shared: Arc::new(Shared {
                url: parsed,
                mode,
                id_type,
                state: Mutex::new(State {
                    client: None,
                    held: HashSet::new(),
                    acked: Vec::new(),
                }),
            }),
            select,
            last_id: None,
            buffer: Default::default(),
            done: false,
            seq: 0,
            pass_size,
        })
    }

    async fn fill(&mut self) -> Result<(), AdapterError> {
        let shared = self.shared.clone();
        let mut state = shared.state.lock().await;
        let mut backoff = Backoff::new(shared.url.reconnect_for);
        let rows = loop {
            let client = shared.client(&mut state).await?;
            match client.query(&self.select, &[&self.last_id, &shared.url.page]).await {
                Ok(rows) => break rows,
                Err(e) if connection_lost(&e, &client) => {
                    state.client = None;
                    let error = AdapterError::Broker(format!("{}: {}", shared.url.identity, pg_error(&e)));
                    tracing::warn!("{error}; reconnecting (locks and acks are restored)");
                    if !backoff.wait(&shared.url.identity, &error).await {
                        return Err(error);
                    }
                }
                Err(e) => {
                    return Err(AdapterError::Broker(format!(
                        "{}: reading rows: {}",
                        shared.url.identity,
                        pg_error(&e)
                    )));
                }
            }
        };
        if rows.len() < shared.url.page as usize {
            self.done = true;
        }
        for row in rows {
            let id: String = row.get(0);
            let body: Vec<u8> = row.get::<_, Option<Vec<u8>>>(1).unwrap_or_default();
            let json: String = row.get(2);
            self.last_id = Some(id.clone());
            self.seq += 1;
            let token = AckToken {
                seq: self.seq,
                key: id.clone(),
            };
            state.held.insert(id.clone());
            let received = match envelope(&shared.url, id, body, &json) {
                Ok(envelope) => Received::Message(Delivery { envelope, token }),
                Err(problem) => Received::Malformed { token, problem },
            };
            self.buffer.push_back(received);
        }
        Ok(())
    }
}

/// A row to an envelope: the body column is the body; the other columns are attributes; error,
/// failed-at and queue fill the failure context and origin.
fn envelope(url: &PgUrl, id: String, body: Vec<u8>, row_json: &str) -> Result<Envelope, String> {
    let c = &url.columns;
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(row_json).map_err(|e| format!("row {id} could not be read: {e}"))?;
    let mut attributes = Vec::with_capacity(row.len());
    let mut notes = Vec::new();
    let mut failure = FailureContext::default();
    let mut original = None;
    for (name, value) in row {
        if name == c.body {
            continue;
        }
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if name == c.error {
            // Laravel stores the whole stack trace: the first line is the error.
            failure.error_text = Some(text.lines().next().unwrap_or("").to_owned());
        } else if name == c.failed_at {
            match parse_time(&text) {
                Some(t) => failure.last_failed_at = Some(t),
                None => notes.push(format!("{name} {text:?} is not a time")),
            }
        } else if name == c.queue {
            original = Some(text.clone());
        }
        attributes.push((name, text));
    }
    let replay_count = attributes
        .iter()
        .find(|(k, _)| k == REPLAY_COUNT_ATTRIBUTE)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Ok(Envelope {
        id,
        body,
        attributes,
        origin: Origin {
            system: "database".into(),
            dlq: c.table.clone(),
            original_queue: original,
        },
        failure,
        replay_count,
        notes,
        id_unique_per_send: true,
        ..Default::default()
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // `timestamp without time zone` from row_to_json: 2026-11-20T08:00:00[.123456], taken as UTC.
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[async_trait]
impl Source for PgSource {
    fn identity(&self) -> &str {
        &self.shared.url.identity
    }

    fn pass_size(&self) -> PassSize {
        self.pass_size.clone()
    }

    async fn next(&mut self) -> Result<Option<Received>, AdapterError> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Ok(Some(r));
            }
            if self.done {
                return Ok(None);
            }
            self.fill().await?;
        }
    }

    fn acker(&self) -> Arc<dyn Acker> {
        Arc::new(PgAcker {
            shared: self.shared.clone(),
        })
    }

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        let shared = &self.shared;
        let mut state = shared.state.lock().await;
        let mut notes = Vec::new();
        if shared.mode == SourceMode::Consume && (state.client.is_some() || !state.acked.is_empty()) {
            let client = shared.client(&mut state).await?;
            client.batch_execute("COMMIT").await.map_err(|e| {
                AdapterError::Broker(format!(
                    "{}: COMMIT failed ({}): the pass's deletes did not happen; the run journal makes the same \
                     command remove them without forwarding again",
                    shared.url.identity,
                    pg_error(&e)
                ))
            })?;
            let verb = if shared.url.mark_column.is_some() {
                "marked"
            } else {
                "deleted"
            };
            notes.push(format!(
                "{} rows {verb} (committed at the end of the pass)",
                state.acked.len()
            ));
        }
        if !state.held.is_empty() {
            notes.push(format!(
                "{} rows left untouched (skipped, failed, parked or not done)",
                state.held.len()
            ));
        }
        state.client = None;
        Ok(notes)
    }
}

/// Deletes (or marks) rows of a [`PgSource`] in its transaction.
struct PgAcker {
    shared: Arc<Shared>,
}

#[async_trait]
impl Acker for PgAcker {
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        if self.shared.mode == SourceMode::Peek || tokens.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = tokens.iter().map(|t| t.key.clone()).collect();
        let mut state = self.shared.state.lock().await;
        let mut backoff = Backoff::new(self.shared.url.reconnect_for);
        loop {
            let client = self.shared.client(&mut state).await?;
            match self.shared.settle_rows(&client, &ids).await {
                Ok(()) => break,
                Err(e) if client.is_closed() || e.to_string().contains("57P01") => {
                    state.client = None;
                    tracing::warn!("{e}; reconnecting (locks and acks are restored)");
                    if !backoff.wait(&self.shared.url.identity, &e).await {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for id in &ids {
            state.held.remove(id);
        }
        state.acked.extend(ids);
        Ok(())
    }

    async fn release(&self, _tokens: &[AckToken]) -> Result<(), AdapterError> {
        Ok(()) // the row stays as it is (and locked until the pass ends)
    }
}

#[cfg(test)]
mod tests {
    use super::check_where;

    #[test]
    fn a_where_predicate_stays_inside_its_parentheses() {
        for ok in [
            "queue = 'emails'",
            "(a = 1 OR b = 2) AND c <> 'x)y'",
            "payload LIKE '%--%' AND note = E'it\\'s (fine'",
            "\"odd)name\" = 1",
            "body = $q$ ); -- $q$",
            "a = 'it''s'",
        ] {
            assert_eq!(check_where(ok), Ok(()), "{ok}");
        }
        for bad in [
            "queue = 'emails') OR (true",
            "queue = 'emails' -- rest",
            "queue = 'emails' /* x */",
            "a = 1; DELETE FROM t",
            "(a = 1",
            "a = 'open",
            "body = $q$ open",
        ] {
            assert!(check_where(bad).is_err(), "{bad}");
        }
    }
}
