//! `redrive fleet stop|pause|resume|status FLEET`: one command for every worker of a fleet.

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

use super::exit;
use crate::cli::{FleetArgs, FleetStatusArgs, OutputFormat};
pub use crate::fleet::run::Control;
use crate::fleet::run::{self, WorkerCounts, WorkerState, WorkerStatus};
use crate::fleet::{FleetUrl, Store};

/// A worker not seen for this long is shown as gone (it ticks four times a second while it runs).
const GONE_AFTER_SECS: u64 = 10;

fn fleet_url(args: &FleetArgs) -> Result<FleetUrl> {
    let parsed = if args.fleet.contains("://") {
        FleetUrl::parse(&args.fleet)
    } else {
        FleetUrl::named(&args.redis, &args.fleet)
    };
    parsed.map_err(|e| anyhow!(e)).context("FLEET")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The fleet's run alive now, or an error saying there is none.
async fn alive_run(store: &Store) -> Result<String> {
    run::current(store).await?.ok_or_else(|| {
        anyhow!(
            "fleet {}: no run is alive (no worker of it ticked in the last {} s); start workers with `redrive run \
             --fleet {}`",
            store.url().describe(),
            run::RUN_TTL_SECS,
            store.url().describe()
        )
    })
}

/// `redrive fleet stop|pause|resume`: set the fleet's control state; every worker applies it within a second.
pub fn control(args: &FleetArgs, control: Control) -> Result<u8> {
    let url = fleet_url(args)?;
    runtime()?.block_on(async {
        let store = Store::new(url.clone());
        let run = alive_run(&store).await?;
        run::set_control(&store, &run, control).await?;
        let (workers, _, now) = run::workers(&store, &run).await?;
        let live = workers.iter().filter(|w| is_live(w, now)).count();
        let what = match control {
            Control::Stop => "stop: each worker drains as Ctrl-C does and exits",
            Control::Pause => "pause: forwarding holds until `redrive fleet resume`",
            Control::Run => "resume: forwarding goes on",
        };
        println!("fleet {} (run {run}, live workers: {live}): {what}", url.name);
        Ok(exit::OK)
    })
}

fn is_live(w: &WorkerStatus, now: u64) -> bool {
    w.state != WorkerState::Finished && now.saturating_sub(w.seen) <= GONE_AFTER_SECS
}

/// What `redrive fleet status -o json` prints.
#[derive(Serialize)]
struct StatusJson<'a> {
    fleet: &'a str,
    run: &'a str,
    control: Control,
    workers: Vec<WorkerJson<'a>>,
    totals: WorkerCounts,
    rate: f64,
}

#[derive(Serialize)]
struct WorkerJson<'a> {
    #[serde(flatten)]
    status: &'a WorkerStatus,
    /// Seconds since its last tick.
    last_seen_secs: u64,
    /// Gone: not seen for a while, and not finished (killed, or its host lost).
    gone: bool,
}

/// `redrive fleet status`: every worker of the fleet's run, and the totals.
pub fn status(args: &FleetStatusArgs) -> Result<u8> {
    let url = fleet_url(&args.fleet)?;
    runtime()?.block_on(async {
        let store = Store::new(url.clone());
        let run = alive_run(&store).await?;
        let (workers, control, now) = run::workers(&store, &run).await?;
        let mut totals = WorkerCounts::default();
        let mut rate = 0.0;
        for w in &workers {
            totals.replayed += w.counts.replayed;
            totals.skipped += w.counts.skipped;
            totals.discarded += w.counts.discarded;
            totals.failed += w.counts.failed;
            totals.parked += w.counts.parked;
            if is_live(w, now) {
                rate += w.rate;
            }
        }
        match args.output {
            OutputFormat::Json => {
                let json = StatusJson {
                    fleet: &url.name,
                    run: &run,
                    control,
                    workers: workers
                        .iter()
                        .map(|w| WorkerJson {
                            status: w,
                            last_seen_secs: now.saturating_sub(w.seen),
                            gone: w.state != WorkerState::Finished && !is_live(w, now),
                        })
                        .collect(),
                    totals,
                    rate,
                };
                println!("{}", serde_json::to_string(&json)?);
            }
            OutputFormat::Table => print_table(&url, &run, control, &workers, &totals, rate, now),
        }
        Ok(exit::OK)
    })
}

fn print_table(
    url: &FleetUrl,
    run: &str,
    control: Control,
    workers: &[WorkerStatus],
    totals: &WorkerCounts,
    rate: f64,
    now: u64,
) {
    println!("fleet {} run {run}: {}", url.name, control.as_str());
    println!(
        "{:<28} {:>7} {:<18} {:>9} {:>8} {:>9} {:>7} {:>7} {:>8} {:>6}",
        "worker", "pid", "state", "replayed", "skipped", "discarded", "failed", "parked", "rate/s", "seen"
    );
    for w in workers {
        let state = if w.state != WorkerState::Finished && !is_live(w, now) {
            "gone".to_owned()
        } else {
            serde_json::to_value(w.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
                .replace('_', " ")
        };
        println!(
            "{:<28} {:>7} {:<18} {:>9} {:>8} {:>9} {:>7} {:>7} {:>8.1} {:>5}s",
            crate::core::text::clip(&w.id, 28),
            w.pid,
            state,
            w.counts.replayed,
            w.counts.skipped,
            w.counts.discarded,
            w.counts.failed,
            w.counts.parked,
            w.rate,
            now.saturating_sub(w.seen)
        );
    }
    println!(
        "{:<28} {:>7} {:<18} {:>9} {:>8} {:>9} {:>7} {:>7} {:>8.1}",
        "total", "", "", totals.replayed, totals.skipped, totals.discarded, totals.failed, totals.parked, rate
    );
}
