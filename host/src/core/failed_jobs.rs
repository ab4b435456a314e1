//! A database table of failed jobs as a dead-letter queue, whatever the database: the columns and the
//! presets of the frameworks that write such tables, a row to an [`Envelope`], and the check on the
//! operator's `--where` predicate. The PostgreSQL and MySQL/MariaDB sources both use them, so a table reads
//! the same on either.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::envelope::{Envelope, FailureContext, Origin, REPLAY_COUNT_ATTRIBUTE};

/// The SQL spoken by a database: how identifiers are quoted, which strings and comments exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlDialect {
    /// PostgreSQL: `"identifier"`, `E'...'` escapes, `$tag$...$tag$` strings.
    Postgres,
    /// MySQL and MariaDB: `` `identifier` ``, `'...'` and `"..."` strings with backslash escapes, `#` comments.
    MySql,
}

impl SqlDialect {
    /// `identifier` quoted for this dialect, whatever characters it holds.
    pub fn quote(self, identifier: &str) -> String {
        match self {
            SqlDialect::Postgres => format!("\"{}\"", identifier.replace('"', "\"\"")),
            SqlDialect::MySql => format!("`{}`", identifier.replace('`', "``")),
        }
    }
}

/// Column names of a failed-jobs table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    /// The table.
    pub table: String,
    /// A unique, ordered key (rows are read in its order, a page at a time).
    pub id: String,
    /// The job's payload: the message body.
    pub body: String,
    /// The error the job failed with (its first line becomes the failure's error text).
    pub error: String,
    /// When the job failed.
    pub failed_at: String,
    /// The queue the job ran on: the message's original queue.
    pub queue: String,
}

/// A framework's table: its columns and, when the table also holds jobs that did not fail, the predicate
/// that selects the failed ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preset {
    /// The columns.
    pub columns: Columns,
    /// Only rows matching this SQL are dead letters (quoted for the dialect asked for).
    pub predicate: Option<String>,
}

/// The presets, for error messages.
pub const PRESETS: &str = "laravel, good_job (PostgreSQL only), django_q";

/// The preset `name` for a database speaking `dialect`.
pub fn preset(name: &str, dialect: SqlDialect) -> Result<Preset, String> {
    let cols = |table: &str, id: &str, body: &str, error: &str, failed_at: &str, queue: &str| Columns {
        table: table.into(),
        id: id.into(),
        body: body.into(),
        error: error.into(),
        failed_at: failed_at.into(),
        queue: queue.into(),
    };
    let q = |identifier: &str| dialect.quote(identifier);
    match name {
        // Laravel: id, uuid, connection, queue, payload, exception, failed_at.
        "laravel" => Ok(Preset {
            columns: cols("failed_jobs", "id", "payload", "exception", "failed_at", "queue"),
            predicate: None,
        }),
        // Rails GoodJob: finished jobs with an error; the job is serialized_params.
        "good_job" if dialect == SqlDialect::Postgres => Ok(Preset {
            columns: cols(
                "good_jobs",
                "id",
                "serialized_params",
                "error",
                "finished_at",
                "queue_name",
            ),
            predicate: Some(format!(
                "{} IS NOT NULL AND {} IS NOT NULL",
                q("error"),
                q("finished_at")
            )),
        }),
        "good_job" => Err("GoodJob keeps its jobs in PostgreSQL only; name the columns instead \
                           (table=, id_column=, body_column=, error_column=, failed_at_column=, queue_column=)"
            .into()),
        // django-q: failed tasks (success = false).
        "django_q" => Ok(Preset {
            columns: cols("django_q_task", "id", "args", "result", "stopped", "group"),
            predicate: Some(format!("{} = false", q("success"))),
        }),
        _ => Err(format!("presets are {PRESETS}")),
    }
}

/// A row to an envelope: the body column is the body; the other columns are attributes (NULLs left out);
/// error, failed-at and queue fill the failure context and origin. A failed-at value that is not a time
/// becomes a note, never an error.
pub fn envelope(columns: &Columns, id: String, body: Vec<u8>, row: Vec<(String, Option<String>)>) -> Envelope {
    let c = columns;
    let mut attributes = Vec::with_capacity(row.len());
    let mut notes = Vec::new();
    let mut failure = FailureContext::default();
    let mut original = None;
    for (name, value) in row {
        let Some(text) = value else { continue };
        if name == c.body {
            continue;
        }
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
    Envelope {
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
    }
}

/// A time as databases write it: RFC 3339, or a time without zone (`2026-11-20T08:00:00[.123]` or with a
/// space instead of the `T`), taken as UTC.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|t| t.and_utc())
}

/// Check that an operator's `--where` predicate stays one predicate inside the parentheses redrive puts it
/// in: balanced parentheses, no `;`, no comment that would hide the rest of the query (strings and quoted
/// identifiers of the dialect are skipped). It is still trusted SQL; this stops accidents, such as a stray
/// `)` that would widen the selection to the whole table.
pub fn check_where(predicate: &str, dialect: SqlDialect) -> Result<(), String> {
    let bytes = predicate.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                let escapes = match dialect {
                    SqlDialect::Postgres => quote == b'\'' && i > 0 && matches!(bytes[i - 1], b'E' | b'e'),
                    SqlDialect::MySql => quote != b'`',
                };
                if quote == b'`' && dialect == SqlDialect::Postgres {
                    i += 1;
                    continue;
                }
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
            b'$' if dialect == SqlDialect::Postgres => {
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
            b'#' if dialect == SqlDialect::MySql => return Err("has a `#` comment".into()),
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err("opens a parenthesis it does not close".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(check_where(ok, SqlDialect::Postgres), Ok(()), "{ok}");
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
            assert!(check_where(bad, SqlDialect::Postgres).is_err(), "{bad}");
        }
    }

    #[test]
    fn mysql_strings_escape_with_backslashes_and_hash_starts_a_comment() {
        for ok in [
            "queue = 'emails'",
            "note = 'it\\'s (fine' AND `odd)name` = 1",
            "note = \"a \\\" ) b\"",
            "a = 'it''s' AND payload LIKE '%#%'",
        ] {
            assert_eq!(check_where(ok, SqlDialect::MySql), Ok(()), "{ok}");
        }
        for bad in [
            "queue = 'emails' # rest",
            "queue = 'emails') OR (true",
            "note = 'a\\' ) OR (1",
            "a = 1; DELETE FROM t",
            "`open = 1",
        ] {
            assert!(check_where(bad, SqlDialect::MySql).is_err(), "{bad}");
        }
        // A backslash does not escape in a PostgreSQL standard string: the quote closes it.
        assert!(check_where("note = 'a\\' ) OR (1", SqlDialect::Postgres).is_err());
    }

    #[test]
    fn a_row_becomes_an_envelope_and_a_bad_time_a_note() {
        let columns = preset("laravel", SqlDialect::MySql).unwrap().columns;
        let row = vec![
            ("id".to_owned(), Some("7".to_owned())),
            ("queue".to_owned(), Some("emails".to_owned())),
            ("payload".to_owned(), Some("{}".to_owned())),
            ("exception".to_owned(), Some("Boom: timeout\n#0 trace".to_owned())),
            ("failed_at".to_owned(), Some("2026-11-20 08:00:00".to_owned())),
            ("connection".to_owned(), None),
        ];
        let env = envelope(&columns, "7".into(), b"{}".to_vec(), row);
        assert_eq!(env.failure.error_text.as_deref(), Some("Boom: timeout"));
        assert_eq!(env.origin.original_queue.as_deref(), Some("emails"));
        assert_eq!(
            env.failure.last_failed_at.map(|t| t.to_rfc3339()),
            Some("2026-11-20T08:00:00+00:00".into())
        );
        assert!(env.attribute("payload").is_none() && env.attribute("connection").is_none());
        let bad = envelope(
            &columns,
            "8".into(),
            vec![],
            vec![("failed_at".into(), Some("yesterday".into()))],
        );
        assert_eq!(bad.notes, vec!["failed_at \"yesterday\" is not a time".to_owned()]);
        assert!(preset("good_job", SqlDialect::MySql).is_err());
        assert_eq!(
            preset("django_q", SqlDialect::MySql).unwrap().predicate.as_deref(),
            Some("`success` = false")
        );
    }
}
