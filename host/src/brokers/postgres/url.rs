//! A `postgres://` source URL: the connection, the table and its columns (presets of the common frameworks,
//! each column overridable), and how rows leave the table on ack.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::core::adapter::AdapterError;
use crate::core::endpoint::redact;
use crate::core::failed_jobs::{self, Columns, SqlDialect};

/// A parsed source URL.
#[derive(Clone, Debug)]
pub(super) struct PgUrl {
    /// What tokio-postgres connects with (our options removed; credentials included, never printed).
    pub(super) connect: String,
    /// `postgres://host:port/db?table=t`, no credentials.
    pub(super) identity: String,
    pub(super) columns: Columns,
    /// Extra predicate from the preset (GoodJob: only failed jobs).
    pub(super) preset_where: Option<String>,
    pub(super) mark_column: Option<String>,
    pub(super) page: i64,
    pub(super) reconnect_for: Duration,
}

impl PgUrl {
    pub(super) fn parse(text: &str) -> Result<Self, AdapterError> {
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let laravel = failed_jobs::preset("laravel", SqlDialect::Postgres).map_err(AdapterError::Config)?;
        let mut columns = laravel.columns;
        let mut preset_where = None;
        let mut mark_column = None;
        let mut page = 500;
        let mut reconnect_for = Duration::from_secs(60);
        let mut passthrough = Vec::new();
        let mut explicit = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let bad = |why: String| AdapterError::Config(format!("{}: option `{key}`: {why}", redact(base)));
            match key.as_ref() {
                "preset" => {
                    let preset = failed_jobs::preset(&value, SqlDialect::Postgres).map_err(bad)?;
                    columns = preset.columns;
                    preset_where = preset.predicate;
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
            .map_err(|e| AdapterError::Config(format!("{}: {e}", redact(text))))?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(AdapterError::Config(format!(
                "{}: sslmode=require is not supported yet (no TLS for PostgreSQL); connect through a local tunnel",
                redact(base)
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

    pub(super) async fn connect(&self) -> Result<Client, AdapterError> {
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

pub(super) fn pg_error(e: &tokio_postgres::Error) -> String {
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
pub(super) fn connection_lost(e: &tokio_postgres::Error, client: &Client) -> bool {
    e.is_closed()
        || client.is_closed()
        || e.code()
            .is_some_and(|c| *c == tokio_postgres::error::SqlState::ADMIN_SHUTDOWN || c.code().starts_with("08"))
}

/// A quoted SQL identifier.
pub(super) fn quote(identifier: &str) -> String {
    SqlDialect::Postgres.quote(identifier)
}
