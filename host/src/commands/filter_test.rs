//! `redrive filter test`: the filter author's loop. Runs a chain on a JSONL file of messages, prints one
//! decision per message and a summary, and compares with expected decisions.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use super::{clip, exit, sandbox};
use crate::audit::AuditLog;
use crate::cli::{FilterTestArgs, OutputFormat};
use crate::core::envelope::{Origin, Outcome};
use crate::core::jsonl::{insert_body, line_text, parse_message, read_body};
use crate::filter::{ChainOutcome, FilterChain, ModuleSpec};

/// Run `redrive filter test`; returns the exit code.
pub fn run(args: &FilterTestArgs) -> Result<u8> {
    let specs = module_specs(args)?;
    let expected = args.expect.as_deref().map(read_expectations).transpose()?;
    let input =
        File::open(&args.input).with_context(|| format!("cannot open the input file {}", args.input.display()))?;

    let chain = FilterChain::load(&specs, 1, &sandbox::engine_settings(&args.sandbox)?)?;
    let mut runner = chain.runner()?;
    let mut audit = args
        .audit_dir
        .as_deref()
        .map(|dir| AuditLog::open(dir, chain.modules().iter().map(|m| m.as_ref())))
        .transpose()?;

    let origin = Origin {
        system: "file".into(),
        dlq: args.input.display().to_string(),
        original_queue: None,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut tally = Tally::default();
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut disabled = None;

    if args.output == OutputFormat::Table {
        writeln!(out, "{:<24} {:<8} REASON", "ID", "VERDICT")?;
    }
    for (index, bytes) in BufReader::new(input).split(b'\n').enumerate() {
        let line_no = index + 1;
        let bytes = bytes.with_context(|| format!("cannot read {} at line {line_no}", args.input.display()))?;
        let parsed = line_text(&bytes, line_no).and_then(|line| match line.trim().is_empty() {
            true => Ok(None),
            false => parse_message(line, line_no, &origin).map(Some),
        });
        let message = match parsed {
            Ok(Some(message)) => message,
            Ok(None) => continue,
            Err(e) => {
                out.flush()?;
                eprintln!("{}: {e} (line skipped)", args.input.display());
                tally.malformed += 1;
                continue;
            }
        };
        let decided = match runner.decide(&message) {
            Ok(decided) => decided,
            Err(e) => {
                disabled = Some(e);
                break;
            }
        };
        if let Some(audit) = audit.as_mut() {
            audit.write(&decided.records)?;
        }
        tally.add(&decided);
        let record = decision_json(&message.id, &decided);
        match args.output {
            OutputFormat::Json => writeln!(out, "{record}")?,
            OutputFormat::Table => write_table_row(&mut out, &message.id, &decided)?,
        }
        if expected.is_some() {
            results.insert(message.id.clone(), record);
        }
    }
    if let Some(audit) = audit.as_mut() {
        audit.sync()?;
    }

    let mismatches = expected.map(|e| compare(&e, &results)).unwrap_or_default();
    match args.output {
        OutputFormat::Json => writeln!(out, "{}", tally.summary_json(mismatches.len()))?,
        OutputFormat::Table => writeln!(out, "{}", tally.summary_line())?,
    }
    out.flush()?;
    drop(out);

    for mismatch in &mismatches {
        eprintln!("mismatch: {mismatch}");
    }
    if let Some(e) = disabled {
        eprintln!("error: {e}");
        return Ok(exit::MODULE_DISABLED);
    }
    if !mismatches.is_empty() {
        eprintln!("{} of the expected decisions did not match", mismatches.len());
        return Ok(exit::PROBLEMS);
    }
    if tally.malformed > 0 {
        eprintln!("{} malformed input lines were skipped", tally.malformed);
        return Ok(exit::PROBLEMS);
    }
    Ok(exit::OK)
}

fn module_specs(args: &FilterTestArgs) -> Result<Vec<ModuleSpec>> {
    let base = sandbox::module_settings(&args.sandbox)?;
    let mut specs = Vec::with_capacity(args.modules.len());
    for text in &args.modules {
        let mut spec = ModuleSpec::parse(text, &base)?;
        for pair in &args.config {
            let Some((key, value)) = pair.split_once('=') else {
                bail!("--config {pair:?} is not key=value");
            };
            spec.apply(key, value.to_owned())
                .with_context(|| format!("--config {pair:?}"))?;
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// The JSON form of one decision: `id`, `verdict`, `reason`, `decided_by`, the new body when the chain
/// changed it, and attribute changes when there are any.
fn decision_json(id: &str, decided: &ChainOutcome) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), Value::String(id.to_owned()));
    obj.insert("verdict".into(), Value::String(decided.outcome.as_str().into()));
    obj.insert("reason".into(), Value::String(decided.reason.clone()));
    let decided_by = decided.decided_by.clone().map_or(Value::Null, Value::String);
    obj.insert("decided_by".into(), decided_by);
    if let Some(body) = &decided.body {
        insert_body(&mut obj, body);
    }
    if !decided.attribute_changes.is_empty() {
        obj.insert(
            "attribute_changes".into(),
            serde_json::to_value(&decided.attribute_changes).unwrap_or(Value::Null),
        );
    }
    Value::Object(obj)
}

fn write_table_row(out: &mut impl Write, id: &str, decided: &ChainOutcome) -> std::io::Result<()> {
    let mut reason = decided.reason.clone();
    if let Some(body) = &decided.body {
        reason.push_str(&format!("  [new body, {} bytes]", body.len()));
    }
    writeln!(out, "{:<24} {:<8} {}", clip(id, 24), decided.outcome.as_str(), reason)?;
    for record in &decided.records {
        for line in &record.logs {
            writeln!(out, "{:>24}   {} [{}] {}", "", record.module, line.level, line.text)?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    counts: BTreeMap<&'static str, u64>,
    messages: u64,
    malformed: u64,
    filter_time: Duration,
}

impl Tally {
    fn add(&mut self, decided: &ChainOutcome) {
        *self.counts.entry(decided.outcome.as_str()).or_default() += 1;
        self.messages += 1;
        self.filter_time += decided
            .records
            .iter()
            .map(|r| Duration::from_micros(r.duration_us))
            .sum::<Duration>();
    }

    fn count(&self, outcome: Outcome) -> u64 {
        self.counts.get(outcome.as_str()).copied().unwrap_or(0)
    }

    fn per_message_us(&self) -> f64 {
        if self.messages == 0 {
            return 0.0;
        }
        self.filter_time.as_secs_f64() * 1e6 / self.messages as f64
    }

    fn summary_line(&self) -> String {
        let mut line = format!(
            "{} messages: {} replay, {} skip, {} discard, {} failed",
            self.messages,
            self.count(Outcome::Replay),
            self.count(Outcome::Skip),
            self.count(Outcome::Discard),
            self.count(Outcome::Failed),
        );
        if self.malformed > 0 {
            line.push_str(&format!("; {} malformed lines skipped", self.malformed));
        }
        line.push_str(&format!("; {:.1} µs per message in filters", self.per_message_us()));
        line
    }

    fn summary_json(&self, mismatches: usize) -> Value {
        serde_json::json!({"summary": {
            "messages": self.messages,
            "replay": self.count(Outcome::Replay),
            "skip": self.count(Outcome::Skip),
            "discard": self.count(Outcome::Discard),
            "failed": self.count(Outcome::Failed),
            "malformed_lines": self.malformed,
            "mismatches": mismatches,
            "us_per_message": (self.per_message_us() * 10.0).round() / 10.0,
        }})
    }
}

/// One expected decision. `reason` and `body` are compared when given; a missing body means
/// "the body must be unchanged".
struct Expectation {
    verdict: String,
    reason: Option<String>,
    body: Option<Vec<u8>>,
}

fn read_expectations(path: &Path) -> Result<Vec<(String, Expectation)>> {
    let file = File::open(path).with_context(|| format!("cannot open the expectations file {}", path.display()))?;
    let mut out = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line_no = index + 1;
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Result<(String, Expectation), String> = (|| {
            let obj: Map<String, Value> = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            let id = obj
                .get("id")
                .and_then(Value::as_str)
                .ok_or("`id` (a string) is missing")?;
            let verdict = obj
                .get("verdict")
                .and_then(Value::as_str)
                .ok_or("`verdict` is missing")?;
            if !["replay", "skip", "discard", "failed"].contains(&verdict) {
                return Err(format!(
                    "`verdict` must be replay, skip, discard or failed, not {verdict:?}"
                ));
            }
            let reason = obj.get("reason").and_then(Value::as_str).map(str::to_owned);
            Ok((
                id.to_owned(),
                Expectation {
                    verdict: verdict.to_owned(),
                    reason,
                    body: read_body(&obj)?,
                },
            ))
        })();
        match parsed {
            Ok(entry) => out.push(entry),
            Err(problem) => bail!("{}: line {line_no}: {problem}", path.display()),
        }
    }
    Ok(out)
}

fn compare(expected: &[(String, Expectation)], actual: &HashMap<String, Value>) -> Vec<String> {
    let mut mismatches = Vec::new();
    for (id, want) in expected {
        let Some(got) = actual.get(id) else {
            mismatches.push(format!(
                "{id}: expected {}, but no decision was made for it",
                want.verdict
            ));
            continue;
        };
        let got_verdict = got["verdict"].as_str().unwrap_or_default();
        let got_reason = got["reason"].as_str().unwrap_or_default();
        if got_verdict != want.verdict {
            mismatches.push(format!(
                "{id}: verdict {got_verdict} ({got_reason}), expected {}",
                want.verdict
            ));
            continue;
        }
        if let Some(reason) = &want.reason
            && reason != got_reason
        {
            mismatches.push(format!("{id}: reason {got_reason:?}, expected {reason:?}"));
        }
        let got_body = got.as_object().map(read_body).and_then(Result::ok).flatten();
        if got_body != want.body {
            let show = |b: &Option<Vec<u8>>| match b {
                None => "unchanged".to_string(),
                Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
            };
            mismatches.push(format!("{id}: body {}, expected {}", show(&got_body), show(&want.body)));
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
    let mut extra: Vec<&String> = actual.keys().filter(|id| !known.contains(id.as_str())).collect();
    extra.sort();
    for id in extra {
        mismatches.push(format!("{id}: decided, but not in the expectations file"));
    }
    mismatches
}
