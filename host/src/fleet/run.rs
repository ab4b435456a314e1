//! A fleet *run*: the workers started under one fleet name that work together until they stop. Its id is
//! kept in `redrive:fleet:NAME:run` while any worker is alive (each one refreshes it every tick); a worker
//! started when no run is alive, or when the last one was stopped, starts a new run, so a stop or a canary
//! verdict of yesterday's run never applies to today's.
//!
//! Keys, under `redrive:fleet:NAME:`: `run` (the run id, expires 60 s after the last worker), `rate` (the
//! shared bucket), and per run `RUN:control` (hash: state run|pause|stop, at), `RUN:workers` (hash: worker id →
//! its status as JSON), `RUN:canary` (the canary lease), `RUN:verdict` (the canary's verdict).

use serde::{Deserialize, Serialize};

use super::store::{Store, StoreError};

/// How long a run outlives its last worker.
pub const RUN_TTL_SECS: u64 = 60;

/// Join the alive, not stopped run, or start a new one with id `candidate`. Returns the run id.
const JOIN: &str = r"
local run = redis.call('GET', KEYS[1])
if run then
  local state = redis.call('HGET', ARGV[2] .. run .. ':control', 'state')
  if state ~= 'stop' then
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return run
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return ARGV[1]
";

/// One worker's tick: keep the run alive (bring it back after Redis lost it), write the worker's status
/// when given (stamped `seen` with Redis's clock), and read the run's control state and Redis's clock
/// (seconds).
const TICK: &str = r"
local run = redis.call('GET', KEYS[1])
if not run then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
elseif run == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
local t = redis.call('TIME')
if ARGV[3] ~= '' then
  local status = cjson.decode(ARGV[3])
  status['seen'] = tonumber(t[1])
  redis.call('HSET', KEYS[3], ARGV[2], cjson.encode(status))
  redis.call('EXPIRE', KEYS[3], 86400)
end
return {redis.call('HGET', KEYS[2], 'state') or 'run', t[1]}
";

/// What the fleet asks its workers to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Work.
    Run,
    /// Hold forwarding until resumed.
    Pause,
    /// Stop as Ctrl-C does.
    Stop,
}

impl Control {
    /// The word kept in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Run => "run",
            Control::Pause => "pause",
            Control::Stop => "stop",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "pause" => Control::Pause,
            "stop" => Control::Stop,
            _ => Control::Run,
        }
    }
}

/// Where a worker stands, as `redrive fleet status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Replaying.
    Running,
    /// Forwarding held by `redrive fleet pause`.
    Paused,
    /// Waiting for the fleet's canary verdict.
    WaitingForCanary,
    /// Draining after a stop.
    Stopping,
    /// Its run ended.
    Finished,
}

/// One worker's counts, as the fleet sees them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerCounts {
    /// Confirmed by the destination.
    pub replayed: u64,
    /// Left in the DLQ by a filter.
    pub skipped: u64,
    /// Archived and removed.
    pub discarded: u64,
    /// A filter failed.
    pub failed: u64,
    /// Parked by the loop guard.
    pub parked: u64,
}

/// One worker's status record (`RUN:workers`, field = its id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// `host-pid-xxxx`.
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The DLQ it reads (without credentials).
    pub source: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Redis's clock (seconds since the epoch) at its last status write (Redis stamps it).
    pub seen: u64,
    /// Where it stands.
    pub state: WorkerState,
    /// Its counts so far.
    pub counts: WorkerCounts,
    /// Its replay rate over the last few seconds (messages per second).
    pub rate: f64,
}

/// Join (or start) the fleet's run as worker `candidate` would: the run id.
pub async fn join(store: &Store, candidate: &str) -> Result<String, StoreError> {
    let url = store.url();
    let (run_key, prefix) = (url.key("run"), url.key(""));
    store
        .call(async |c| {
            redis::Script::new(JOIN)
                .key(&run_key)
                .arg(candidate)
                .arg(&prefix)
                .arg(RUN_TTL_SECS)
                .invoke_async(c)
                .await
        })
        .await
}

/// The run alive now, if any.
pub async fn current(store: &Store) -> Result<Option<String>, StoreError> {
    let key = store.url().key("run");
    store
        .call(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
        .await
}

/// What a tick read: the control state, and Redis's clock in seconds.
pub async fn tick(
    store: &Store,
    run: &str,
    worker: &str,
    status: Option<&WorkerStatus>,
) -> Result<(Control, u64), StoreError> {
    let url = store.url();
    let json = status
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .unwrap_or_default();
    let (keys, run, worker) = (
        [
            url.key("run"),
            url.key(&format!("{run}:control")),
            url.key(&format!("{run}:workers")),
        ],
        run.to_owned(),
        worker.to_owned(),
    );
    let (state, now): (String, String) = store
        .call(async |c| {
            redis::Script::new(TICK)
                .key(&keys[0])
                .key(&keys[1])
                .key(&keys[2])
                .arg(&run)
                .arg(&worker)
                .arg(&json)
                .arg(RUN_TTL_SECS)
                .invoke_async(c)
                .await
        })
        .await?;
    Ok((Control::parse(&state), now.parse().unwrap_or(0)))
}

/// Set the run's control state (`redrive fleet stop|pause|resume`).
pub async fn set_control(store: &Store, run: &str, control: Control) -> Result<(), StoreError> {
    let key = store.url().key(&format!("{run}:control"));
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    store
        .call(async |c| {
            redis::pipe()
                .hset(&key, "state", control.as_str())
                .hset(&key, "at", &at)
                .expire(&key, 86_400)
                .query_async::<()>(c)
                .await
        })
        .await
}

/// The run's workers, and Redis's clock (seconds).
pub async fn workers(store: &Store, run: &str) -> Result<(Vec<WorkerStatus>, Control, u64), StoreError> {
    let url = store.url();
    let (workers_key, control_key) = (url.key(&format!("{run}:workers")), url.key(&format!("{run}:control")));
    /// Worker records, the control state, Redis's TIME (seconds, microseconds).
    type Read = (Vec<(String, String)>, Option<String>, (String, String));
    let (records, state, time): Read = store
        .call(async |c| {
            redis::pipe()
                .hgetall(&workers_key)
                .hget(&control_key, "state")
                .cmd("TIME")
                .query_async(c)
                .await
        })
        .await?;
    let mut all: Vec<WorkerStatus> = records
        .iter()
        .filter_map(|(_, json)| serde_json::from_str(json).ok())
        .collect();
    all.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
    let control = state.as_deref().map_or(Control::Run, Control::parse);
    Ok((all, control, time.0.parse().unwrap_or(0)))
}
