use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use tokio::sync::Mutex;

use super::rows;
use super::url::{MySqlUrl, connection_lost, mysql_error};
use crate::core::adapter::{AckToken, Acker, AdapterError, Delivery, PassSize, Received, Source, SourceMode};
use crate::core::backoff::Backoff;
use crate::core::failed_jobs::{self, SqlDialect};
use crate::core::table_options::{AckMode, commit_failed};

/// What the source and its acker share: the session with its pass-long transaction.
struct Shared {
    url: MySqlUrl,
    mode: SourceMode,
    state: Mutex<State>,
}

struct State {
    conn: Option<Conn>,
    /// Rows handed out and not acked (locked by our transaction), by the id as text, with the id's value.
    held: HashMap<String, Value>,
    /// Rows acked in this transaction (re-applied after a reconnect).
    acked: Vec<Value>,
}

impl Shared {
    fn broker_error(&self, e: &mysql_async::Error) -> AdapterError {
        AdapterError::Broker(format!("{}: {}", self.url.identity, mysql_error(e)))
    }

    /// The session, reconnecting (and restoring the transaction: locks and acks) when it was lost.
    async fn conn<'a>(&self, state: &'a mut State) -> Result<&'a mut Conn, AdapterError> {
        if state.conn.is_none() {
            let mut backoff = Backoff::new(self.url.table.reconnect_for);
            loop {
                match self.open_transaction(state).await {
                    Ok(conn) => {
                        state.conn = Some(conn);
                        break;
                    }
                    Err(e) if backoff.wait(&self.url.identity, &e).await => {}
                    Err(e) => {
                        return Err(AdapterError::Broker(format!(
                            "{e}; gave up after {}. Nothing is lost: rows are deleted only when the pass commits, \
                             and the run journal lets the same command resume",
                            humantime::format_duration(self.url.table.reconnect_for)
                        )));
                    }
                }
            }
        }
        state
            .conn
            .as_mut()
            .ok_or_else(|| AdapterError::Broker(format!("{}: no session", self.url.identity)))
    }

    /// A new session; when consuming, a transaction that locks the rows still held and re-applies the acks.
    async fn open_transaction(&self, state: &State) -> Result<Conn, AdapterError> {
        let mut conn = self.url.connect().await?;
        if self.mode == SourceMode::Consume {
            conn.query_drop("START TRANSACTION")
                .await
                .map_err(|e| self.broker_error(&e))?;
            let held: Vec<Value> = state.held.values().cloned().collect();
            let sql = format!(
                "SELECT 1 FROM {} WHERE {} = ? FOR UPDATE SKIP LOCKED",
                MySqlUrl::quote(&self.url.table.columns.table),
                MySqlUrl::quote(&self.url.table.columns.id),
            );
            let mut locked = 0;
            for id in &held {
                let row: Option<Row> = conn
                    .exec_first(&sql, vec![id.clone()])
                    .await
                    .map_err(|e| self.broker_error(&e))?;
                locked += usize::from(row.is_some());
            }
            if locked < held.len() {
                tracing::warn!(
                    "{}: {} rows in flight were taken by another worker while the connection was down",
                    self.url.identity,
                    held.len() - locked
                );
            }
            self.settle_rows(&mut conn, &state.acked)
                .await
                .map_err(|e| self.broker_error(&e))?;
        }
        Ok(conn)
    }

    /// Delete (or mark) rows in the current transaction, one primary-key lookup each: an `IN (...)` list of
    /// many ids can make InnoDB scan the table, and the scan would wait for the rows other workers hold.
    async fn settle_rows(&self, conn: &mut Conn, ids: &[Value]) -> Result<(), mysql_async::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let c = &self.url.table.columns;
        let sql = match &self.url.table.ack {
            AckMode::Delete => format!(
                "DELETE FROM {} WHERE {} = ?",
                MySqlUrl::quote(&c.table),
                MySqlUrl::quote(&c.id)
            ),
            AckMode::Mark(mark) => format!(
                "UPDATE {} SET {} = CURRENT_TIMESTAMP WHERE {} = ?",
                MySqlUrl::quote(&c.table),
                MySqlUrl::quote(mark),
                MySqlUrl::quote(&c.id)
            ),
        };
        conn.exec_batch(sql, ids.iter().map(|id| vec![id.clone()])).await
    }
}

/// Reads one pass over a failed-jobs table in MySQL or MariaDB.
pub struct MySqlSource {
    shared: Arc<Shared>,
    select: String,
    last_id: Value,
    /// The id of the last row of the pass (taken at the start).
    last_of_pass: Value,
    buffer: VecDeque<Received>,
    done: bool,
    seq: u64,
    pass_size: PassSize,
}

impl MySqlSource {
    /// Connect, check the server, the table and its columns, count the rows; nothing is locked until the
    /// first read.
    pub async fn open(url: &str, mode: SourceMode, where_clause: Option<&str>) -> Result<Self, AdapterError> {
        let mut parsed = MySqlUrl::parse(url)?;
        let mut conn = parsed.connect().await?;
        let identity = parsed.identity.clone();
        let db = |e: mysql_async::Error| AdapterError::Broker(format!("{identity}: {}", mysql_error(&e)));
        if mode == SourceMode::Consume {
            let version: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(db)?;
            check_skip_locked(version.as_deref().unwrap_or(""))
                .map_err(|problem| AdapterError::Config(format!("{}: {problem}", parsed.identity)))?;
        }
        let columns: Vec<(String, String)> = conn
            .exec(
                "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR) FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
                (parsed.table.columns.table.clone(),),
            )
            .await
            .map_err(db)?;
        let c = &mut parsed.table.columns;
        if columns.is_empty() {
            return Err(AdapterError::Config(format!(
                "{}: table `{}` does not exist in this database",
                parsed.identity, c.table
            )));
        }
        // MySQL column names are case-insensitive: use the table's own spelling from here on.
        let actual = |name: &str| {
            columns
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(n, _)| n.clone())
        };
        let mut required = vec![&mut c.id, &mut c.body];
        let mut mark = match &mut parsed.table.ack {
            AckMode::Mark(mark) => Some(mark),
            AckMode::Delete => None,
        };
        if let Some(mark) = mark.as_mut() {
            required.push(mark);
        }
        for name in required {
            match actual(name) {
                Some(spelled) => *name = spelled,
                None => {
                    return Err(AdapterError::Config(format!(
                        "{}: table `{}` has no column `{name}` (columns: {}); set the column with e.g. \
                         body_column=NAME",
                        parsed.identity,
                        c.table,
                        columns.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        for optional in [&mut c.error, &mut c.failed_at, &mut c.queue] {
            if let Some(spelled) = actual(optional) {
                *optional = spelled;
            }
        }
        let q = MySqlUrl::quote;
        let filter_sql = parsed.table.selection_sql(SqlDialect::MySql, where_clause)?;
        let table = q(&parsed.table.columns.table);
        // How many rows the pass holds, and where it ends: at the last row there now, so a job that fails
        // again while the pass runs (a replay that did not help) gets a new row, for the next pass, never this one.
        let size_sql = format!(
            "SELECT COUNT(*), MAX(t.{}) FROM {table} t WHERE true{filter_sql}",
            q(&parsed.table.columns.id)
        );
        let mut size: Option<Row> = conn.exec_first(size_sql, ()).await.map_err(|e| {
            AdapterError::Config(format!(
                "{}: the selection does not run: {} (check --where)",
                parsed.identity,
                mysql_error(&e)
            ))
        })?;
        let (total, last_of_pass) = match size.as_mut() {
            Some(row) => (row.take::<u64, _>(0), row.take::<Value, _>(1).unwrap_or(Value::NULL)),
            None => (None, Value::NULL),
        };
        let lock = if mode == SourceMode::Consume {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let id = q(&parsed.table.columns.id);
        let select = format!(
            "SELECT t.* FROM {table} t WHERE (? IS NULL OR t.{id} > ?) AND t.{id} <= ?{filter_sql} \
             ORDER BY t.{id} LIMIT ?{lock}"
        );
        let pass_size = PassSize::default();
        let _ = pass_size.set(total.unwrap_or(0));
        drop(conn.disconnect().await);
        Ok(Self {
            shared: Arc::new(Shared {
                url: parsed,
                mode,
                state: Mutex::new(State {
                    conn: None,
                    held: HashMap::new(),
                    acked: Vec::new(),
                }),
            }),
            select,
            last_id: Value::NULL,
            done: last_of_pass == Value::NULL,
            last_of_pass,
            buffer: VecDeque::new(),
            seq: 0,
            pass_size,
        })
    }

    async fn fill(&mut self) -> Result<(), AdapterError> {
        let shared = self.shared.clone();
        let mut state = shared.state.lock().await;
        let mut backoff = Backoff::new(shared.url.table.reconnect_for);
        let params = vec![
            self.last_id.clone(),
            self.last_id.clone(),
            self.last_of_pass.clone(),
            Value::UInt(u64::from(shared.url.table.page)),
        ];
        let rows: Vec<Row> = loop {
            let conn = shared.conn(&mut state).await?;
            match conn.exec(&self.select, params.clone()).await {
                Ok(rows) => break rows,
                Err(e) if connection_lost(&e) => {
                    state.conn = None;
                    let error = shared.broker_error(&e);
                    tracing::warn!("{error}; reconnecting (locks and acks are restored)");
                    if !backoff.wait(&shared.url.identity, &error).await {
                        return Err(error);
                    }
                }
                Err(e) => {
                    return Err(AdapterError::Broker(format!(
                        "{}: reading rows: {}",
                        shared.url.identity,
                        mysql_error(&e)
                    )));
                }
            }
        };
        if rows.len() < shared.url.table.page as usize {
            self.done = true;
        }
        let columns = &shared.url.table.columns;
        for row in rows {
            let position = |name: &str| row.columns_ref().iter().position(|c| c.name_str() == name);
            let Some(id_value) = position(&columns.id).and_then(|i| row.as_ref(i)).cloned() else {
                return Err(AdapterError::Broker(format!(
                    "{}: a row came back without column `{}`",
                    shared.url.identity, columns.id
                )));
            };
            let body = position(&columns.body)
                .and_then(|i| row.as_ref(i))
                .map(rows::body)
                .unwrap_or_default();
            let id = rows::text(&id_value).unwrap_or_default();
            self.last_id = id_value.clone();
            self.seq += 1;
            let token = AckToken {
                seq: self.seq,
                key: Some(id.clone()),
            };
            state.held.insert(id.clone(), id_value);
            let envelope = failed_jobs::envelope(columns, id, body, rows::named(&row));
            self.buffer.push_back(Received::Message(Delivery { envelope, token }));
        }
        Ok(())
    }
}

/// `FOR UPDATE SKIP LOCKED` needs MySQL ≥ 8.0.1 or MariaDB ≥ 10.6.
fn check_skip_locked(version: &str) -> Result<(), String> {
    // Older MariaDB put "5.5.5-" before their own version for old clients.
    let numbers: Vec<u32> = version
        .strip_prefix("5.5.5-")
        .unwrap_or(version)
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    let (major, minor) = (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    );
    let mariadb = version.contains("MariaDB");
    let ok = if mariadb { (major, minor) >= (10, 6) } else { major >= 8 };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the server is {version}; two workers are kept apart with FOR UPDATE SKIP LOCKED, which needs MySQL \
             8.0 or MariaDB 10.6 or later (`redrive plan` works on older servers)"
        ))
    }
}

#[async_trait]
impl Source for MySqlSource {
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
        Arc::new(MySqlAcker {
            shared: self.shared.clone(),
        })
    }

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        let shared = &self.shared;
        let mut state = shared.state.lock().await;
        let mut committed = None;
        if shared.mode == SourceMode::Consume && (state.conn.is_some() || !state.acked.is_empty()) {
            let conn = shared.conn(&mut state).await?;
            conn.query_drop("COMMIT")
                .await
                .map_err(|e| commit_failed(&shared.url.identity, &mysql_error(&e)))?;
            committed = Some(state.acked.len());
        }
        let notes = shared.url.table.pass_notes(committed, state.held.len());
        if let Some(conn) = state.conn.take() {
            drop(conn.disconnect().await);
        }
        Ok(notes)
    }
}

/// Deletes (or marks) rows of a [`MySqlSource`] in its transaction.
struct MySqlAcker {
    shared: Arc<Shared>,
}

#[async_trait]
impl Acker for MySqlAcker {
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        if self.shared.mode == SourceMode::Peek || tokens.is_empty() {
            return Ok(());
        }
        let mut state = self.shared.state.lock().await;
        let ids: Vec<(String, Value)> = tokens
            .iter()
            .filter_map(|t| t.key.as_ref())
            .filter_map(|k| state.held.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        let values: Vec<Value> = ids.iter().map(|(_, v)| v.clone()).collect();
        let mut backoff = Backoff::new(self.shared.url.table.reconnect_for);
        loop {
            let conn = self.shared.conn(&mut state).await?;
            match self.shared.settle_rows(conn, &values).await {
                Ok(()) => break,
                Err(e) if connection_lost(&e) => {
                    state.conn = None;
                    let error = self.shared.broker_error(&e);
                    tracing::warn!("{error}; reconnecting (locks and acks are restored)");
                    if !backoff.wait(&self.shared.url.identity, &error).await {
                        return Err(error);
                    }
                }
                Err(e) => return Err(self.shared.broker_error(&e)),
            }
        }
        for (id, _) in &ids {
            state.held.remove(id);
        }
        state.acked.extend(values);
        Ok(())
    }

    async fn release(&self, _tokens: &[AckToken]) -> Result<(), AdapterError> {
        Ok(()) // the row stays as it is (and locked until the pass ends)
    }
}

#[cfg(test)]
mod tests {
    use super::check_skip_locked;

    #[test]
    fn skip_locked_needs_mysql_8_or_mariadb_10_6() {
        assert!(check_skip_locked("10.11.19-MariaDB-0+deb12u1").is_ok());
        assert!(check_skip_locked("8.0.36").is_ok());
        assert!(check_skip_locked("5.5.5-10.6.1-MariaDB").is_ok());
        assert!(check_skip_locked("10.5.2-MariaDB").is_err());
        assert!(check_skip_locked("5.7.44-log").unwrap_err().contains("MySQL 8.0"));
    }
}
