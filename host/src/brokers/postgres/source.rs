use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::rows::envelope;
use super::url::{PgUrl, connection_lost, pg_error, quote};
use crate::core::adapter::{AckToken, Acker, AdapterError, Delivery, PassSize, Received, Source, SourceMode};
use crate::core::backoff::Backoff;
use crate::core::failed_jobs::SqlDialect;
use crate::core::table_options::{AckMode, commit_failed};

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
        let mut backoff = Backoff::new(self.url.table.reconnect_for);
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
                        humantime::format_duration(self.url.table.reconnect_for)
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
                    quote(&self.url.table.columns.table),
                    quote(&self.url.table.columns.id),
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
        let c = &self.url.table.columns;
        let sql = match &self.url.table.ack {
            AckMode::Delete => format!(
                "DELETE FROM {} WHERE {} = ANY(($1::text[])::{}[])",
                quote(&c.table),
                quote(&c.id),
                self.id_type
            ),
            AckMode::Mark(mark) => format!(
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
    /// The id of the last row of the pass (taken at the start).
    last_of_pass: Option<String>,
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
        let c = &parsed.table.columns;
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
        if let AckMode::Mark(mark) = &parsed.table.ack {
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
        let filter_sql = parsed.table.selection_sql(SqlDialect::Postgres, where_clause)?;
        // How many rows the pass holds, and where it ends: at the last row there now, so a job that fails
        // again while the pass runs (a replay that did not help) gets a new row, for the next pass, never this one.
        let size_sql = format!(
            "SELECT count(*), max(t.{})::text FROM {} t WHERE true{filter_sql}",
            quote(&c.id),
            quote(&c.table)
        );
        let size = client.query_one(&size_sql, &[]).await.map_err(|e| {
            AdapterError::Config(format!(
                "{}: the selection does not run: {} (check --where)",
                parsed.identity,
                pg_error(&e)
            ))
        })?;
        let total: i64 = size.get(0);
        let last_of_pass: Option<String> = size.get(1);
        let lock = if mode == SourceMode::Consume {
            " FOR UPDATE OF t SKIP LOCKED"
        } else {
            ""
        };
        let select = format!(
            "SELECT t.{id}::text, {body_expr}, row_to_json(t)::text FROM {table} t \
             WHERE ($1::text IS NULL OR t.{id} > ($1::text)::{id_type}) AND t.{id} <= ($3::text)::{id_type}{filter_sql} \
             ORDER BY t.{id} LIMIT $2{lock}",
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
            done: last_of_pass.is_none(),
            last_of_pass,
            buffer: Default::default(),
            seq: 0,
            pass_size,
        })
    }

    async fn fill(&mut self) -> Result<(), AdapterError> {
        let shared = self.shared.clone();
        let mut state = shared.state.lock().await;
        let mut backoff = Backoff::new(shared.url.table.reconnect_for);
        let page = i64::from(shared.url.table.page);
        let rows = loop {
            let client = shared.client(&mut state).await?;
            match client
                .query(&self.select, &[&self.last_id, &page, &self.last_of_pass])
                .await
            {
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
        if rows.len() < shared.url.table.page as usize {
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
                key: Some(id.clone()),
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
        let mut committed = None;
        if shared.mode == SourceMode::Consume && (state.client.is_some() || !state.acked.is_empty()) {
            let client = shared.client(&mut state).await?;
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| commit_failed(&shared.url.identity, &pg_error(&e)))?;
            committed = Some(state.acked.len());
        }
        let notes = shared.url.table.pass_notes(committed, state.held.len());
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
        let ids: Vec<String> = tokens.iter().filter_map(|t| t.key.clone()).collect();
        let mut state = self.shared.state.lock().await;
        let mut backoff = Backoff::new(self.shared.url.table.reconnect_for);
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
