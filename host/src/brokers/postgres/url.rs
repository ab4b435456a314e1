//! A `postgres://` source URL: the connection, the table and its columns (presets of the common frameworks,
//! each column overridable), and how rows leave the table on ack.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::core::adapter::{AdapterError, error_chain};
use crate::core::endpoint::redact;
use crate::core::failed_jobs::SqlDialect;
use crate::core::table_options::{TableOptions, with_query};

/// A parsed source URL.
#[derive(Clone, Debug)]
pub(super) struct PgUrl {
    /// What tokio-postgres connects with (our options removed; credentials included, never printed).
    pub(super) connect: String,
    /// `postgres://host:port/db?table=t`, no credentials.
    pub(super) identity: String,
    /// The table, its columns, the ack mode, page size and reconnect time.
    pub(super) table: TableOptions,
}

impl PgUrl {
    pub(super) fn parse(text: &str) -> Result<Self, AdapterError> {
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let (table, passthrough) = TableOptions::parse(query, SqlDialect::Postgres)
            .map_err(|bad| AdapterError::Config(format!("{}: {bad}", redact(base))))?;
        let connect = with_query(base, &passthrough);
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
            identity: format!("postgres://{host}:{port}/{db}?table={}", table.columns.table),
            connect,
            table,
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
        None => error_chain(e),
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
