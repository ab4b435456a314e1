//! The URL options every failed-jobs table source takes, whatever the database: the preset and the column
//! overrides, how an acked row leaves the table, the page size and how long to keep reconnecting. The
//! PostgreSQL and MySQL/MariaDB sources parse them here and pass every other option to their driver.

use std::time::Duration;

use super::adapter::AdapterError;
use super::endpoint::duration_option;
use super::failed_jobs::{self, Columns, SqlDialect, check_where};

/// redrive's own options on a table source URL, for error messages.
pub const TABLE_OPTION_NAMES: &str = "table, preset, id_column, body_column, error_column, failed_at_column, queue_column, ack, mark_column, page, \
     reconnect";

/// How an acked row leaves the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// `DELETE` the row (the default, as `php artisan queue:retry` does).
    Delete,
    /// Set this column to the current time and keep the row; rows already marked are not read again.
    Mark(String),
}

/// The parsed table options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableOptions {
    /// The table and its columns (the preset's, with explicit `*_column=` / `table=` on top).
    pub columns: Columns,
    /// Extra predicate from the preset (GoodJob, django-q: only the failed jobs).
    pub preset_where: Option<String>,
    /// How an acked row leaves the table.
    pub ack: AckMode,
    /// Rows read per query (1 to 100000).
    pub page: u32,
    /// How long a lost connection is retried before the run stops.
    pub reconnect_for: Duration,
}

/// One option that was not understood, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadOption {
    /// The option's key.
    pub key: String,
    /// What is wrong with its value.
    pub why: String,
}

impl std::fmt::Display for BadOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "option `{}`: {}", self.key, self.why)
    }
}

impl TableOptions {
    /// Parse the query string of a table source URL for `dialect`. Returns the options and every other
    /// key/value pair, in order, for the driver.
    pub fn parse(query: &str, dialect: SqlDialect) -> Result<(TableOptions, Vec<(String, String)>), BadOption> {
        let laravel = failed_jobs::preset("laravel", dialect).map_err(|why| BadOption {
            key: "preset".into(),
            why,
        })?;
        let mut columns = laravel.columns;
        let mut preset_where = None;
        let mut mark = None;
        let mut ack_mark = false;
        let mut page = 500;
        let mut reconnect_for = Duration::from_secs(60);
        let mut passthrough = Vec::new();
        let mut explicit = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let bad = |why: String| BadOption {
                key: key.to_string(),
                why,
            };
            match key.as_ref() {
                "preset" => {
                    let preset = failed_jobs::preset(&value, dialect).map_err(bad)?;
                    columns = preset.columns;
                    preset_where = preset.predicate;
                }
                "table" | "id_column" | "body_column" | "error_column" | "failed_at_column" | "queue_column" => {
                    explicit.push((key.into_owned(), value.into_owned()));
                }
                "ack" => match value.as_ref() {
                    "delete" => ack_mark = false,
                    "mark" => ack_mark = true,
                    _ => return Err(bad("expected `delete` or `mark`".into())),
                },
                "mark_column" => {
                    mark = Some(value.into_owned());
                    ack_mark = true;
                }
                "page" => {
                    page = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=100_000).contains(n))
                        .ok_or_else(|| bad("expected 1 to 100000".into()))?;
                }
                "reconnect" => reconnect_for = duration_option(&value).map_err(bad)?,
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
        let ack = if ack_mark {
            AckMode::Mark(mark.unwrap_or_else(|| "replayed_at".to_owned()))
        } else {
            AckMode::Delete
        };
        let options = TableOptions {
            columns,
            preset_where,
            ack,
            page,
            reconnect_for,
        };
        Ok((options, passthrough))
    }
}

impl TableOptions {
    /// The rows of the pass as SQL conditions to append to `WHERE true`: the preset's predicate, unmarked
    /// rows (`ack=mark`), and the operator's `--where` (checked for `dialect`, in parentheses). Each is
    /// ` AND …`; empty when there is none.
    pub fn selection_sql(&self, dialect: SqlDialect, where_clause: Option<&str>) -> Result<String, AdapterError> {
        let mut filter = Vec::new();
        if let Some(w) = &self.preset_where {
            filter.push(w.clone());
        }
        if let AckMode::Mark(mark) = &self.ack {
            filter.push(format!("t.{} IS NULL", dialect.quote(mark)));
        }
        if let Some(w) = where_clause {
            check_where(w, dialect).map_err(|problem| {
                AdapterError::Config(format!(
                    "--where {problem}; write one predicate over the table's columns, e.g. \"queue = 'emails'\" \
                     (it goes into redrive's query in parentheses)"
                ))
            })?;
            filter.push(format!("({w})"));
        }
        Ok(filter.iter().map(|f| format!(" AND {f}")).collect())
    }

    /// The summary lines of a pass that ends: how many rows its commit removed (or marked), when it
    /// committed, and how many it left.
    pub fn pass_notes(&self, committed: Option<usize>, left: usize) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(acked) = committed {
            let verb = match self.ack {
                AckMode::Delete => "deleted",
                AckMode::Mark(_) => "marked",
            };
            notes.push(format!("{acked} rows {verb} (committed at the end of the pass)"));
        }
        if left > 0 {
            notes.push(format!(
                "{left} rows left untouched (skipped, failed, parked or not done)"
            ));
        }
        notes
    }
}

/// The error of a pass whose closing COMMIT failed on the table `identity`.
pub fn commit_failed(identity: &str, why: &str) -> AdapterError {
    AdapterError::Broker(format!(
        "{identity}: COMMIT failed ({why}): the pass's deletes did not happen; the run journal makes the same \
         command remove them without forwarding again"
    ))
}

/// `base` with `pairs` as its query string (none when empty).
pub fn with_query(base: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return base.to_owned();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_laravel_delete_500_and_a_minute() {
        let (o, rest) = TableOptions::parse("", SqlDialect::MySql).unwrap();
        assert_eq!(o.columns.table, "failed_jobs");
        assert_eq!(o.ack, AckMode::Delete);
        assert_eq!((o.page, o.reconnect_for), (500, Duration::from_secs(60)));
        assert!(rest.is_empty());
    }

    #[test]
    fn explicit_columns_win_over_the_preset_in_any_order() {
        let (o, _) = TableOptions::parse("table=jobs_dead&preset=django_q", SqlDialect::Postgres).unwrap();
        assert_eq!(o.columns.table, "jobs_dead");
        assert!(o.preset_where.is_some());
    }

    #[test]
    fn mark_column_implies_mark_and_ack_mark_has_a_default_column() {
        let (o, _) = TableOptions::parse("mark_column=done_at", SqlDialect::MySql).unwrap();
        assert_eq!(o.ack, AckMode::Mark("done_at".into()));
        let (o, _) = TableOptions::parse("ack=mark", SqlDialect::MySql).unwrap();
        assert_eq!(o.ack, AckMode::Mark("replayed_at".into()));
        let (o, _) = TableOptions::parse("mark_column=x&ack=delete", SqlDialect::MySql).unwrap();
        assert_eq!(o.ack, AckMode::Delete);
    }

    #[test]
    fn unknown_keys_pass_through_and_bad_values_name_the_key() {
        let (_, rest) = TableOptions::parse("sslmode=disable&page=10", SqlDialect::Postgres).unwrap();
        assert_eq!(rest, vec![("sslmode".to_owned(), "disable".to_owned())]);
        let e = TableOptions::parse("page=0", SqlDialect::Postgres).unwrap_err();
        assert_eq!(e.key, "page");
        assert!(TableOptions::parse("ack=maybe", SqlDialect::MySql).is_err());
        assert!(TableOptions::parse("reconnect=soon", SqlDialect::MySql).is_err());
        assert!(TableOptions::parse("preset=good_job", SqlDialect::MySql).is_err());
    }

    #[test]
    fn the_selection_joins_preset_mark_and_where_and_refuses_a_bad_where() {
        let (o, _) = TableOptions::parse("preset=django_q&ack=mark", SqlDialect::MySql).unwrap();
        let sql = o.selection_sql(SqlDialect::MySql, Some("queue = 'emails'")).unwrap();
        assert_eq!(
            sql,
            " AND `success` = false AND t.`replayed_at` IS NULL AND (queue = 'emails')"
        );
        let (plain, _) = TableOptions::parse("", SqlDialect::Postgres).unwrap();
        assert_eq!(plain.selection_sql(SqlDialect::Postgres, None).unwrap(), "");
        let e = plain
            .selection_sql(SqlDialect::Postgres, Some("1=1) OR (1=1"))
            .unwrap_err();
        assert!(e.to_string().starts_with("--where "), "{e}");
    }

    #[test]
    fn pass_notes_say_what_the_commit_did_and_what_is_left() {
        let (o, _) = TableOptions::parse("ack=mark", SqlDialect::MySql).unwrap();
        assert_eq!(
            o.pass_notes(Some(3), 2),
            vec![
                "3 rows marked (committed at the end of the pass)".to_owned(),
                "2 rows left untouched (skipped, failed, parked or not done)".to_owned()
            ]
        );
        assert!(o.pass_notes(None, 0).is_empty());
    }

    #[test]
    fn with_query_adds_nothing_when_there_is_nothing() {
        assert_eq!(with_query("mysql://h/db", &[]), "mysql://h/db");
        assert_eq!(
            with_query("mysql://h/db", &[("a".into(), "b c".into())]),
            "mysql://h/db?a=b+c"
        );
    }
}
