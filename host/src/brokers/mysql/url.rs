//! A `mysql://` (or `mariadb://`) source URL: the connection, the table and its columns (the presets of
//! `core::failed_jobs`, each column overridable), and how rows leave the table on ack.

use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder};

use crate::core::adapter::{AdapterError, error_chain};
use crate::core::endpoint::redact;
use crate::core::failed_jobs::SqlDialect;
use crate::core::table_options::{TABLE_OPTION_NAMES, TableOptions, with_query};

/// A parsed source URL.
#[derive(Clone, Debug)]
pub(super) struct MySqlUrl {
    /// What mysql_async connects with (credentials included, never printed).
    opts: Opts,
    /// `mysql://host:port/db?table=t`, no credentials.
    pub(super) identity: String,
    /// The table, its columns, the ack mode, page size and reconnect time.
    pub(super) table: TableOptions,
}

/// What a session of redrive sets first: UTC times, and no gap locks (READ COMMITTED), so a pass-long
/// transaction never blocks the application inserting new failed jobs while it runs.
const SESSION_SETUP: [&str; 3] = [
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION innodb_lock_wait_timeout = 5",
];

impl MySqlUrl {
    pub(super) fn parse(text: &str) -> Result<Self, AdapterError> {
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        // mysql_async reads `mysql://` only; `mariadb://` is the same protocol.
        let base = match base.split_once("://") {
            Some((_, rest)) => format!("mysql://{rest}"),
            None => base.to_owned(),
        };
        let shown = redact(&base);
        let (table, passthrough) = TableOptions::parse(query, SqlDialect::MySql)
            .map_err(|bad| AdapterError::Config(format!("{shown}: {bad}")))?;
        let connect = with_query(&base, &passthrough);
        let opts = Opts::from_url(&connect).map_err(|e| {
            AdapterError::Config(format!("{shown}: {e}; redrive's own options are {TABLE_OPTION_NAMES}"))
        })?;
        let Some(db) = opts.db_name().map(str::to_owned) else {
            return Err(AdapterError::Config(format!(
                "{shown}: name the database the table is in, e.g. mysql://user@host:3306/app?table=failed_jobs"
            )));
        };
        let identity = format!(
            "mysql://{}:{}/{db}?table={}",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            table.columns.table
        );
        let opts = OptsBuilder::from_opts(opts).setup(SESSION_SETUP.to_vec()).into();
        Ok(MySqlUrl { opts, identity, table })
    }

    /// A new session, within five seconds.
    pub(super) async fn connect(&self) -> Result<Conn, AdapterError> {
        let cannot = |why: String| {
            AdapterError::Broker(format!(
                "{}: cannot connect: {why}; is MySQL/MariaDB running there, and are the user, password and \
                 database right?",
                self.identity
            ))
        };
        match tokio::time::timeout(Duration::from_secs(5), Conn::new(self.opts.clone())).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(cannot(mysql_error(&e))),
            Err(_) => Err(cannot("no answer within 5 s".into())),
        }
    }

    /// `identifier` quoted for MySQL.
    pub(super) fn quote(identifier: &str) -> String {
        SqlDialect::MySql.quote(identifier)
    }
}

/// An error as one line: the server's message and code, or the driver's chain of causes.
pub(super) fn mysql_error(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} ({} / SQLSTATE {})", s.message, s.code, s.state),
        other => error_chain(other),
    }
}

/// True when the error means the session or its transaction is gone: the connection broke, the server ended
/// the session (killed, shutting down, gone away), or InnoDB rolled the transaction back (a deadlock, 1213).
/// Either way the transaction's locks and deletes are gone and must be restored on a new one.
pub(super) fn connection_lost(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => matches!(s.code, 1053 | 1077 | 1213 | 1927 | 2006 | 2013 | 4031),
        _ => e.is_fatal(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_presets_and_errors() {
        let u = MySqlUrl::parse("mariadb://root:pw@127.0.0.1:3306/test?table=jobs&ack=mark&page=50").unwrap();
        assert_eq!(u.identity, "mysql://127.0.0.1:3306/test?table=jobs");
        assert_eq!(
            u.table.ack,
            crate::core::table_options::AckMode::Mark("replayed_at".into())
        );
        assert_eq!(u.table.page, 50);
        let u = MySqlUrl::parse("mysql://h/app?body_column=job&preset=django_q").unwrap();
        assert_eq!(u.table.columns.table, "django_q_task");
        assert_eq!(u.table.columns.body, "job", "explicit columns win over the preset");
        assert_eq!(u.table.preset_where.as_deref(), Some("`success` = false"));
        for (url, says) in [
            ("mysql://h/app?preset=good_job", "PostgreSQL only"),
            ("mysql://h/app?page=0", "1 to 100000"),
            ("mysql://h/app?ack=drop", "`delete` or `mark`"),
            ("mysql://h/app?no_such_option=1", "no_such_option"),
            ("mysql://u:s3cret@h?table=t", "name the database"),
        ] {
            let e = MySqlUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
