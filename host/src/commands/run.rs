//! `redrive run` and `redrive plan`: turn flags and the config file into a [`RunConfig`], run the pipeline
//! with Ctrl-C / SIGTERM handling, and print the summary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use super::config_file::{LoadedConfig, value_text};
use super::exit;
use super::run_flags::{gate, message_memory, rate_plan, return_guard, time_arg};
use super::sandbox;
use super::summary::{exit_code, print_groups, print_summary};
use crate::brokers::{self, BrokerOptions};
use crate::cli::{OutputFormat, PlanArgs, RunArgs, SelectArgs};
use crate::core::adapter::SourceMode;
use crate::core::fleet::FleetLink;
use crate::core::{Destination, Endpoint, TimeWindow};
use crate::filter::ModuleSpec;
use crate::fleet::{FleetUrl, Member};
use crate::observe::{Live, PushTarget, ReportKind, RunInfo, RunMetrics, Server, report, server};
use crate::pipeline::plan::Plan;
use crate::pipeline::{self, Gate, Journal, Opened, RunConfig, RunControl, RunReport, Telemetry};

/// What a run shows outside itself while it goes.
#[derive(Clone, Debug, Default)]
struct Observe {
    /// `--metrics`: serve Prometheus metrics here.
    metrics: Option<SocketAddr>,
    /// `--ui`: serve the live page here.
    ui: Option<SocketAddr>,
    /// Keep what a report or the live page shows (error groups, repairs, latest decisions).
    details: bool,
    /// `--metrics-push`: push the metrics here at the end.
    push: Option<PushTarget>,
}

/// `--message-memory` when not given: 64 MiB.
pub const DEFAULT_MESSAGE_MEMORY: u64 = 64 << 20;

/// Run `redrive run`; returns the exit code.
pub fn run(args: &RunArgs) -> Result<u8> {
    crate::pipeline::crash_point::arm_from_env()?;
    let loaded = load_config(&args.select)?;
    let (mut config, mut options) = base_config(&args.select, &loaded)?;
    let file = &loaded.file;
    let pick = |flag: &Option<String>, from_file: &Option<String>, url: bool| -> Option<String> {
        flag.clone().or_else(|| {
            from_file
                .as_deref()
                .map(|v| if url { loaded.url(v) } else { v.to_owned() })
        })
    };
    config.to = pick(&args.to, &file.to, true)
        .map(|to| Destination::parse(&to).context("--to"))
        .transpose()?;
    config.park = pick(&args.park, &file.park, true)
        .map(|park| Destination::parse(&park).context("--park"))
        .transpose()?;
    config.max_in_flight = args.max_in_flight.or(file.max_in_flight);
    if config.max_in_flight == Some(0) {
        bail!("--max-in-flight must be at least 1");
    }
    config.message_memory = message_memory(args, &loaded)?;
    config.dry_run = args.dry_run;
    if config.to.is_none() && !config.dry_run {
        bail!(
            "no destination: give --to file:staging.jsonl (or `to` in the config file), or use --dry-run / `redrive plan`"
        );
    }
    config.returning = return_guard(args, &loaded)?;
    config.rate = rate_plan(args, &loaded)?;
    config.canary = args.canary.or(file.canary).unwrap_or(0);
    config.gate = gate(args, &loaded)?;
    if config.gate != Gate::None && config.canary == 0 {
        bail!("a verification gate needs a canary: add --canary N (e.g. --canary 10)");
    }
    config.archive = args
        .archive
        .clone()
        .or_else(|| file.archive.as_deref().map(|p| loaded.path(p)))
        .unwrap_or_else(|| config.audit_dir.join("discarded.jsonl"));
    config.remainder = args
        .remainder
        .clone()
        .or_else(|| file.remainder.as_deref().map(|p| loaded.path(p)));
    options.remainder.clone_from(&config.remainder);
    config.preserve_order = !(args.allow_reorder || file.allow_reorder.unwrap_or(false));
    if let Some(path) = &args.plan {
        config.plan = Some(Plan::read(path)?.selection());
    }
    let output = args.select.output;
    check_report_path(args.select.report.as_deref())?;
    let observe = Observe {
        metrics: args.select.metrics,
        ui: args.ui,
        details: args.ui.is_some() || args.select.report.is_some(),
        push: push_target(&args.select)?,
    };
    // The pass's size is shown as progress, and as the metrics' messages left.
    options.count_pass |= observe.metrics.is_some() || observe.ui.is_some();
    let fleet = pick(&args.fleet, &file.fleet, true)
        .map(|url| FleetUrl::parse(&url).map_err(anyhow::Error::msg).context("--fleet"))
        .transpose()?;
    if fleet.is_some() && config.dry_run {
        bail!("--fleet coordinates workers that replay; a dry run changes nothing and has nothing to share");
    }
    let (report, telemetry) = execute(config, options, observe, fleet)?;
    if let Some(path) = &args.select.report {
        write_report(path, &report, &telemetry, ReportKind::Run, None)?;
    }
    print_summary(&report, output, false)?;
    Ok(exit_code(&report))
}

/// Run `redrive plan`; returns the exit code.
pub fn plan(args: &PlanArgs) -> Result<u8> {
    let loaded = load_config(&args.select)?;
    check_report_path(args.select.report.as_deref())?;
    let (mut config, mut brokers) = base_config(&args.select, &loaded)?;
    config.dry_run = true;
    let options = serde_json::json!({
        "max": config.max,
        "since": config.since,
        "until": config.until,
        "max_replays": config.max_replays,
    });
    let observe = Observe {
        metrics: args.select.metrics,
        ui: None,
        details: args.select.report.is_some(),
        push: push_target(&args.select)?,
    };
    brokers.count_pass |= observe.metrics.is_some();
    let (mut report, telemetry) = execute(config, brokers, observe, None)?;
    if let Some(path) = &args.select.report {
        write_report(path, &report, &telemetry, ReportKind::Plan, Some(&args.plan_out))?;
    }
    let collector = report.plan.take().unwrap_or_default();
    print_summary(&report, args.select.output, true)?;
    if args.select.output == OutputFormat::Table {
        print_groups(&collector);
    }
    let plan = collector.into_plan(&report.source, std::mem::take(&mut report.modules), options);
    plan.write(&args.plan_out)?;
    if args.select.output == OutputFormat::Table {
        out!(
            "plan: {} messages written to {}; replay exactly this selection with `redrive run --plan {}`",
            plan.messages.len(),
            args.plan_out.display(),
            args.plan_out.display()
        );
    }
    Ok(exit_code(&report))
}

fn load_config(args: &SelectArgs) -> Result<LoadedConfig> {
    match &args.config {
        Some(path) => LoadedConfig::read(path),
        None => Ok(LoadedConfig::default()),
    }
}

/// The settings `run` and `plan` share: the pipeline's, and the brokers' own (AWS, `--where`).
fn base_config(args: &SelectArgs, loaded: &LoadedConfig) -> Result<(RunConfig, BrokerOptions)> {
    let file = &loaded.file;
    let from = args
        .from
        .clone()
        .or_else(|| file.from.as_deref().map(|u| loaded.url(u)))
        .context("no source: give --from file:dlq.jsonl (or `from` in the config file)")?;
    let from = Endpoint::parse(&from).context("--from")?;
    let mut base = sandbox::module_settings(&args.sandbox)?;
    for (key, value) in &file.limits {
        // Flags win over the file.
        if !sandbox::flags(&args.sandbox)
            .iter()
            .any(|(flag, v)| flag == key && v.is_some())
        {
            base.set(key, &value_text(value))
                .with_context(|| format!("[limits] in {}", loaded.dir.display()))?;
        }
    }
    let mut filters = Vec::new();
    if args.filters.is_empty() {
        for entry in &file.filters {
            let path = loaded.path(&entry.path);
            let mut spec = ModuleSpec::parse(&path.display().to_string(), &base)?;
            if let Some(name) = &entry.name {
                spec.name.clone_from(name);
            }
            for (key, value) in &entry.config {
                spec.config.push((key.clone(), value_text(value)));
            }
            for (key, value) in &entry.limits {
                spec.settings
                    .set(key, &value_text(value))
                    .with_context(|| format!("limits of filter {}", entry.path.display()))?;
            }
            filters.push(spec);
        }
    } else {
        for text in &args.filters {
            filters.push(ModuleSpec::parse(text, &base)?);
        }
    }
    match (filters.is_empty(), args.no_filter) {
        (true, false) => bail!(
            "no filters: give --filter path/to/module.wasm (repeatable), or [[filters]] in the config file \
             (or --no-filter to replay every message)"
        ),
        (false, true) => bail!("--no-filter was given, but so were filters (in the config file): drop one"),
        _ => {}
    }
    let workers = args
        .workers
        .or(file.workers)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(4)));
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let config = RunConfig {
        from,
        to: None,
        filters,
        workers,
        rate: None,
        canary: 0,
        gate: Gate::None,
        workdir: loaded.dir.clone(),
        max: args.max.or(file.max),
        since: time_arg("--since", args.since.as_ref().or(file.since.as_ref()))?,
        until: time_arg("--until", args.until.as_ref().or(file.until.as_ref()))?,
        max_replays: args.max_replays.or(file.max_replays),
        returning: None,
        park: None,
        max_in_flight: None,
        message_memory: DEFAULT_MESSAGE_MEMORY,
        audit_dir: args
            .audit_dir
            .clone()
            .or_else(|| file.audit_dir.as_deref().map(|p| loaded.path(p)))
            .unwrap_or_else(|| PathBuf::from("redrive-audit")),
        archive: PathBuf::new(),
        remainder: None,
        dry_run: false,
        preserve_order: true,
        plan: None,
        engine: sandbox::engine_settings(&args.sandbox)?,
        progress: !args.no_progress && args.output == OutputFormat::Table,
        started: std::time::Instant::now(),
    };
    let options = BrokerOptions {
        remainder: None,
        count_pass: config.progress,
        aws: crate::core::AwsSettings {
            profile: args.aws.profile.clone().or_else(|| file.aws.profile.clone()),
            region: args.aws.region.clone().or_else(|| file.aws.region.clone()),
            endpoint_url: args.aws.endpoint_url.clone().or_else(|| file.aws.endpoint_url.clone()),
        },
        where_clause: args.where_clause.clone(),
        window: TimeWindow {
            since: config.since,
            until: config.until,
        },
        worker: None,
    };
    Ok((config, options))
}

/// Run the pipeline on a Tokio runtime with the kill switch wired to Ctrl-C and SIGTERM.
fn execute(
    config: RunConfig,
    options: BrokerOptions,
    observe: Observe,
    fleet: Option<FleetUrl>,
) -> Result<(RunReport, Arc<Telemetry>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let interrupt = CancellationToken::new();
        tokio::spawn(kill_switch(interrupt.clone()));
        open_and_run(config, options, observe, fleet, interrupt).await
    })
}

/// Everything that can be checked before a broker is touched first ([`pipeline::prepare`]); then the
/// source, its journal (which holds the run lock, so it comes before any destination is opened), the
/// destinations; then the fleet, if this run is a worker of one; then the run.
async fn open_and_run(
    config: RunConfig,
    options: BrokerOptions,
    observe: Observe,
    fleet: Option<FleetUrl>,
    interrupt: CancellationToken,
) -> Result<(RunReport, Arc<Telemetry>)> {
    let prepared = pipeline::prepare(&config).await?;
    let modules = prepared.modules().iter().map(|m| m.name.as_str());
    let telemetry = match observe.details {
        true => Telemetry::detailed(modules),
        false => Telemetry::new(modules),
    };
    // A fleet worker's id labels its metrics, so it is chosen before they are served.
    let fleet = fleet.map(|url| (url, crate::fleet::new_worker_id()));
    let mut info = run_info(&config, fleet.as_ref().map(|(_, id)| id.clone()));
    let options = BrokerOptions {
        worker: fleet.as_ref().map(|(_, id)| id.clone()),
        ..options
    };
    let metrics = match observe.metrics {
        Some(addr) => Some(serve_metrics(addr, telemetry.clone(), info.clone()).await?),
        None => None,
    };
    let ended = CancellationToken::new();
    let ui = match observe.ui {
        Some(addr) => Some(serve_live(&config, addr, &telemetry, &interrupt, &ended).await?),
        None => None,
    };
    let mode = match config.dry_run {
        true => SourceMode::Peek,
        false => SourceMode::Consume,
    };
    let (source, link) = brokers::open_source(&config.from, mode, &options)
        .await
        .with_context(|| format!("cannot open the source {}", config.from))?;
    let journal = match config.dry_run {
        true => None,
        false => Some(Journal::open(&config.audit_dir, source.identity())?),
    };
    let mut sinks = [None, None];
    for (slot, (destination, what)) in sinks
        .iter_mut()
        .zip([(&config.to, "destination"), (&config.park, "park destination")])
    {
        if let (Some(destination), false) = (destination, config.dry_run) {
            let sink = brokers::open_sink(destination, &config.from, &link, &options)
                .await
                .with_context(|| format!("cannot open the {what} {destination}"))?;
            *slot = Some(sink);
        }
    }
    let [sink, park] = sinks;
    let member = match fleet {
        Some((url, id)) => {
            let control = RunControl::new(telemetry.clone(), interrupt.clone());
            Some(Member::join(url, id, config.from.to_string(), telemetry.clone(), control).await?)
        }
        None => None,
    };
    let opened = Opened {
        source,
        journal,
        sink,
        park,
        fleet: member.as_ref().map(|m| m.worker.clone() as Arc<dyn FleetLink>),
    };
    let report = pipeline::run(config, prepared, opened, interrupt, telemetry.clone()).await;
    ended.cancel();
    if let Some(member) = member {
        member.leave(&telemetry).await;
    }
    if let Some(target) = &observe.push {
        // A fleet's workers push to groups of their own (`…/worker/ID`), so none replaces another's metrics; the
        // Pushgateway gives their series the group's `worker` label, which pushed series must not carry too.
        let target = match info.worker.take() {
            Some(worker) => target.for_worker(&worker),
            None => target.clone(),
        };
        // The run's outcome stands whatever the Pushgateway says; a failed push is reported, not fatal.
        match target.push(RunMetrics::new(telemetry.clone(), info).render()).await {
            Ok(()) => tracing::debug!("metrics pushed"),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    for server in [metrics, ui].into_iter().flatten() {
        server.stop().await;
    }
    Ok((report?, telemetry))
}

/// What the run is, for the metrics' `redrive_run_info`.
fn run_info(config: &RunConfig, worker: Option<String>) -> RunInfo {
    RunInfo {
        worker,
        source: config.from.to_string(),
        destination: config
            .to
            .as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string),
        command: if config.dry_run { "plan" } else { "run" },
    }
}

/// `--metrics-push`, checked before anything runs.
fn push_target(args: &SelectArgs) -> Result<Option<PushTarget>> {
    Ok(args.metrics_push.as_deref().map(PushTarget::parse).transpose()?)
}

/// Start the `--ui` live page (before any broker is opened, like the metrics).
async fn serve_live(
    config: &RunConfig,
    addr: SocketAddr,
    telemetry: &Arc<Telemetry>,
    interrupt: &CancellationToken,
    ended: &CancellationToken,
) -> Result<Server> {
    let title = format!(
        "{} → {}",
        config.from,
        config
            .to
            .as_ref()
            .map_or_else(|| "(dry run)".to_owned(), ToString::to_string)
    );
    let control = RunControl::new(telemetry.clone(), interrupt.clone());
    let mut live = Live::new(addr, telemetry.clone(), control, ended.clone(), title)?;
    let mut url = String::new();
    let server = Server::start("--ui", addr, |bound| {
        live.bound(bound);
        url = live.url();
        live.router()
    })
    .await?;
    eprintln!("live page: {url}");
    Ok(server)
}

/// Write the `--report` HTML file.
fn write_report(
    path: &std::path::Path,
    run: &RunReport,
    telemetry: &Telemetry,
    kind: ReportKind,
    plan_file: Option<&std::path::Path>,
) -> Result<()> {
    let html = report::render(run, telemetry, kind, plan_file);
    crate::core::files::write_private(path, html.as_bytes())
        .with_context(|| format!("--report: cannot write {}", path.display()))?;
    eprintln!("report: {}", path.display());
    Ok(())
}

/// Refuse a `--report` path whose directory does not exist before anything runs, not after.
fn check_report_path(path: Option<&std::path::Path>) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "--report {}: the directory {} does not exist; create it or write the report elsewhere",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!(
            "--report {}: that is a directory; give a file name such as report.html",
            path.display()
        );
    }
    Ok(())
}

/// Start the `--metrics` endpoint (before any broker is opened: a taken port stops the run first).
async fn serve_metrics(addr: SocketAddr, telemetry: Arc<Telemetry>, info: RunInfo) -> Result<Server> {
    let metrics = Arc::new(RunMetrics::new(telemetry, info));
    let server = Server::start("--metrics", addr, |_| server::metrics_router(metrics)).await?;
    eprintln!("metrics: http://{}/metrics", server.addr());
    Ok(server)
}

/// First Ctrl-C / SIGTERM / SIGHUP (the terminal closed): stop taking messages and drain. Second: exit at
/// once — nothing unconfirmed was acked, so nothing is lost.
async fn kill_switch(interrupt: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut hangup) = match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
        (Ok(term), Ok(hangup)) => (term, hangup),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot watch SIGTERM / SIGHUP: {e}");
            return;
        }
    };
    let mut signals = 0;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            _ = term.recv() => {},
            _ = hangup.recv() => {},
        }
        signals += 1;
        if signals == 1 {
            eprintln!("\nstopping: no new messages, finishing in-flight confirms; press Ctrl-C again to abort at once");
            interrupt.cancel();
        } else {
            eprintln!("aborted: unconfirmed messages were not acked and are still in the DLQ");
            std::process::exit(exit::INTERRUPTED.into());
        }
    }
}
