//! `redrive inspect`: browse a dead-letter queue without changing it. One pass in peek mode (nothing is
//! ever removed), messages matched by id / text / failure time, shown with their failure context, each given
//! back as soon as it is shown; no filters, no journal, no audit.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};

use super::exit;
use super::run_flags::time_arg;
use crate::brokers::{self, BrokerOptions};
use crate::cli::{InspectArgs, OutputFormat};
use crate::core::adapter::{AckToken, Received, SourceMode};
use crate::core::envelope::Envelope;
use crate::core::jsonl::message_to_json;
use crate::core::text::clip;
use crate::core::{Endpoint, TimeWindow};

/// Which messages to show.
struct Selection {
    id: Option<String>,
    grep: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl Selection {
    fn matches(&self, env: &Envelope) -> bool {
        if self.id.as_ref().is_some_and(|id| *id != env.id) {
            return false;
        }
        if !env.failed_within(self.since, self.until) {
            return false;
        }
        let Some(needle) = &self.grep else { return true };
        let f = &env.failure;
        let body = String::from_utf8_lossy(&env.body);
        [
            Some(env.id.as_str()),
            Some(&*body),
            f.error_text.as_deref(),
            f.error_class.as_deref(),
            f.reason.as_deref(),
        ]
        .into_iter()
        .flatten()
        .chain(env.attributes.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
        .any(|text| text.to_lowercase().contains(needle))
    }
}

/// What one pass found.
#[derive(Default)]
struct Tally {
    read: u64,
    shown: u64,
    malformed: Vec<String>,
}

/// Run `redrive inspect`; returns the exit code.
pub fn run(args: &InspectArgs) -> Result<u8> {
    let endpoint = Endpoint::parse(&args.from).context("--from")?;
    if args.limit == 0 {
        bail!("--limit must be at least 1");
    }
    let selection = Selection {
        id: args.id.clone(),
        grep: args.grep.as_ref().map(|g| g.to_lowercase()),
        since: time_arg("--since", args.since.as_ref())?,
        until: time_arg("--until", args.until.as_ref())?,
    };
    let options = BrokerOptions {
        remainder: None,
        count_pass: false,
        aws: crate::core::AwsSettings {
            profile: args.aws.profile.clone(),
            region: args.aws.region.clone(),
            endpoint_url: args.aws.endpoint_url.clone(),
        },
        where_clause: args.where_clause.clone(),
        window: TimeWindow {
            since: selection.since,
            until: selection.until,
        },
        worker: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let tally = runtime.block_on(browse(&endpoint, &options, &selection, args))?;
    let identity = endpoint.to_string();
    let summary = format!(
        "inspect: {} shown of {} read from {identity}{}; nothing was changed",
        tally.shown,
        tally.read,
        match tally.malformed.len() {
            0 => String::new(),
            n => format!(", {n} unreadable (first: {})", tally.malformed[0]),
        }
    );
    match args.output {
        OutputFormat::Table => out!("{summary}"),
        OutputFormat::Json => eprintln!("{summary}"),
    }
    if let (Some(id), 0) = (&args.id, tally.shown) {
        eprintln!("inspect: no message with id {id:?} in {identity}");
        return Ok(exit::PROBLEMS);
    }
    Ok(exit::OK)
}

async fn browse(
    endpoint: &Endpoint,
    options: &BrokerOptions,
    selection: &Selection,
    args: &InspectArgs,
) -> Result<Tally> {
    let (mut source, _) = brokers::open_source(endpoint, SourceMode::Peek, options)
        .await
        .with_context(|| format!("cannot open the source {endpoint}"))?;
    // Each message goes back as soon as it is shown, in batches of whatever has queued up meanwhile: a
    // source with a delivery window (RabbitMQ's prefetch) hands out more only when earlier ones are settled.
    let (give_back, mut to_release) = tokio::sync::mpsc::unbounded_channel::<AckToken>();
    let acker = source.acker();
    let releaser = tokio::spawn(async move {
        while let Some(first) = to_release.recv().await {
            let mut batch = vec![first];
            while batch.len() < 100 {
                match to_release.try_recv() {
                    Ok(token) => batch.push(token),
                    Err(_) => break,
                }
            }
            if let Err(e) = acker.release(&batch).await {
                tracing::warn!("giving messages back: {e}");
            }
        }
    });
    let mut tally = Tally::default();
    let read = loop {
        let received = match source.next().await {
            Ok(Some(received)) => received,
            Ok(None) => break Ok(()),
            Err(e) => break Err(anyhow::Error::new(e).context(format!("reading {endpoint}"))),
        };
        let token = match received {
            Received::Malformed { token, problem } => {
                tally.malformed.push(problem);
                token
            }
            Received::Message(delivery) => {
                tally.read += 1;
                if selection.matches(&delivery.envelope) {
                    tally.shown += 1;
                    show(&delivery.envelope, args)?;
                }
                delivery.token
            }
        };
        give_back.send(token).ok();
        if tally.shown >= args.limit {
            break Ok(());
        }
    };
    // Everything goes back as it was, even after a read error.
    drop(give_back);
    releaser.await.ok();
    let finished = source.finish().await;
    read?;
    finished.with_context(|| format!("giving the messages back to {endpoint}"))?;
    Ok(tally)
}

fn show(env: &Envelope, args: &InspectArgs) -> Result<()> {
    use std::io::Write;
    let text = match args.output {
        OutputFormat::Json => {
            let mut value = message_to_json(env);
            if let (Some(obj), false) = (value.as_object_mut(), env.notes.is_empty()) {
                obj.insert("notes".into(), serde_json::json!(env.notes));
            }
            format!("{value}\n")
        }
        OutputFormat::Table if args.id.is_some() => whole(env),
        OutputFormat::Table => listed(env),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// A message in a few lines: id, failure context, error, the start of the body.
fn listed(env: &Envelope) -> String {
    let mut out = format!("{}\n", one_line(&env.id, 120));
    let context = failure_line(env);
    if !context.is_empty() {
        out.push_str(&format!("  failed  {context}\n"));
    }
    if let Some(error) = error_line(env) {
        out.push_str(&format!("  error   {}\n", one_line(&error, 160)));
    }
    out.push_str(&format!(
        "  body    {} B  {}\n",
        env.body.len(),
        one_line(&String::from_utf8_lossy(&env.body), 120)
    ));
    out
}

/// A message whole: every attribute, the failure context, notes, the full body.
fn whole(env: &Envelope) -> String {
    let f = &env.failure;
    let mut out = format!("id            {}\n", one_line(&env.id, 1000));
    let mut row = |label: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push_str(&format!("{label:<14}{}\n", one_line(&value, 4000)));
        }
    };
    row("dlq", Some(format!("{} ({})", env.origin.dlq, env.origin.system)));
    row("from", env.origin.original_queue.clone());
    row("reason", f.reason.clone());
    row("error class", f.error_class.clone());
    row("error", f.error_text.clone());
    row("deliveries", f.receive_count.map(|n| n.to_string()));
    row("first failed", f.first_failed_at.map(time));
    row("last failed", f.last_failed_at.map(time));
    row("replays", (env.replay_count > 0).then(|| env.replay_count.to_string()));
    for (name, value) in &env.attributes {
        row("attribute", Some(format!("{name} = {value}")));
    }
    for note in &env.notes {
        row("note", Some(note.clone()));
    }
    out.push_str(&format!("body          {} bytes\n", env.body.len()));
    match std::str::from_utf8(&env.body) {
        Ok(text) => out.push_str(&printable(text, true)),
        Err(_) => {
            out.push_str("(not UTF-8; base64:)\n");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(&env.body));
        }
    }
    out.push_str("\n\n");
    out
}

fn failure_line(env: &Envelope) -> String {
    let f = &env.failure;
    let mut parts = Vec::new();
    if let Some(at) = f.last_failed_at.or(f.first_failed_at) {
        parts.push(time(at));
    }
    if let Some(n) = f.receive_count {
        parts.push(format!("{n} deliveries"));
    }
    if let Some(reason) = &f.reason {
        parts.push(format!("reason {}", one_line(reason, 40)));
    }
    if let Some(queue) = &env.origin.original_queue {
        parts.push(format!("from {}", one_line(queue, 60)));
    }
    if env.replay_count > 0 {
        parts.push(format!("replayed {} times", env.replay_count));
    }
    parts.join(" · ")
}

fn error_line(env: &Envelope) -> Option<String> {
    let f = &env.failure;
    match (&f.error_class, &f.error_text) {
        (Some(class), Some(text)) => Some(format!("{class}: {text}")),
        (Some(one), None) | (None, Some(one)) => Some(one.clone()),
        (None, None) => None,
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `text` on one line, clipped, with control characters escaped (a message cannot drive the terminal).
fn one_line(text: &str, width: usize) -> String {
    clip(&printable(text, false), width)
}

/// `text` with control characters escaped (`\u{1b}`); newlines and tabs kept when `multiline`.
fn printable(text: &str, multiline: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' if multiline => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(one_line("a\u{1b}[31mb\nc", 100), "a\\u{1b}[31mb\\nc");
        assert_eq!(printable("x\ny\u{7}", true), "x\ny\\u{7}");
    }

    #[test]
    fn grep_looks_at_id_body_error_and_attributes_case_insensitively() {
        let env = Envelope {
            id: "m-1".into(),
            body: b"{\"sku\":\"ABC\"}".to_vec(),
            attributes: vec![("tenant".into(), "Acme".into())],
            ..Envelope::default()
        };
        let sel = |grep: &str| Selection {
            id: None,
            grep: Some(grep.to_lowercase()),
            since: None,
            until: None,
        };
        for hit in ["abc", "ACME", "tenant", "M-1"] {
            assert!(sel(hit).matches(&env), "{hit}");
        }
        assert!(!sel("timeout").matches(&env));
    }
}
