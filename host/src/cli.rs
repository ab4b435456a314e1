//! The command line's definitions (clap derive), nothing else: `main.rs` parses them and hands them to
//! [`crate::commands::run()`], which holds the dispatch and the exit codes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// redrive replays dead letters safely: every message goes through your sandboxed WebAssembly filters,
/// which decide replay, skip or discard.
#[derive(Debug, Parser)]
#[command(name = "redrive", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum Command {
    /// Replay a dead-letter queue: run every message through the filters, forward the replays (rate-limited,
    /// canary first), and remove from the DLQ only what the destination confirmed or what was archived.
    ///
    /// Example: redrive run --from file:dlq.jsonl --to file:staging.jsonl --filter build/filters/route-by-error.wasm
    /// --canary 10 --verify-cmd ./check.sh --rate 50/s
    Run(RunArgs),
    /// Dry run: decide every message without changing anything, group the errors, and write a plan file that
    /// `redrive run --plan` replays exactly.
    Plan(PlanArgs),
    /// Browse a dead-letter queue without changing it: list messages with their failure context, or show
    /// one whole. No filters needed; every message is given back untouched.
    ///
    /// Example: redrive inspect --from amqp://guest:guest@localhost/%2f?queue=orders.dlq --grep timeout
    Inspect(InspectArgs),
    /// Work with filter modules: try them on sample messages.
    #[command(subcommand)]
    Filter(FilterCommand),
    /// Work with a fleet of workers started with `redrive run --fleet`: stop, pause, resume, status.
    ///
    /// Example: redrive fleet status orders-replay --redis redis://127.0.0.1:6379/0
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Print a shell completion script: `redrive completions bash > /etc/bash_completion.d/redrive`.
    Completions(CompletionsArgs),
    /// Print the man page (roff): `redrive man > redrive.1 && man ./redrive.1`.
    Man,
    /// Internal: compile one module read on stdin, within limits (redrive runs itself this way).
    #[command(name = "__compile", hide = true)]
    InternalCompile(InternalCompileArgs),
}

/// `redrive fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Stop every worker of the fleet as Ctrl-C does (in-flight confirms finish, the rest stays in the DLQ);
    /// each worker sees it within a second.
    Stop(FleetArgs),
    /// Hold every worker's forwarding until `redrive fleet resume`.
    Pause(FleetArgs),
    /// Let a paused fleet go on.
    Resume(FleetArgs),
    /// Show the fleet's workers (host, pid, state, counts, rate, last seen) and the totals.
    Status(FleetStatusArgs),
}

/// Which fleet.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The fleet: its name (with --redis), or its whole URL redis://HOST:PORT/DB?name=NAME.
    #[arg(value_name = "FLEET")]
    pub fleet: String,
    /// The fleet's Redis, when FLEET is a bare name.
    #[arg(
        long,
        value_name = "URL",
        env = "REDRIVE_FLEET_REDIS",
        default_value = "redis://127.0.0.1:6379/0"
    )]
    pub redis: String,
}

/// Arguments of `redrive fleet status`.
#[derive(Debug, Args)]
pub struct FleetStatusArgs {
    /// Which fleet.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// `text` (a table) or `json`.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Arguments of `redrive inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The dead-letter queue (the same URLs as `redrive run --from`).
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Only messages whose body, error, id or an attribute contains TEXT (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Show the message with this id, whole: every attribute, the failure context, the full body.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Only messages that failed at or after this time (RFC 3339, or a duration ago like 24h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only messages that failed before this time (RFC 3339, or a duration ago like 1h).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Show at most N messages (the rest of the DLQ is not read).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u64,
    /// Database sources: only rows matching this SQL predicate.
    #[arg(long = "where", value_name = "SQL")]
    pub where_clause: Option<String>,
    /// `table` for people; `json`: one message per line in the JSONL format `file:` sources read (so
    /// `redrive inspect -o json --limit 1000000 > dlq.jsonl` exports a DLQ to a file).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// AWS settings for SQS.
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Arguments of `redrive completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// Shells `redrive completions` writes a script for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
    /// PowerShell.
    Powershell,
    /// Elvish.
    Elvish,
}

/// How the engine that will run a compiled module allocates instances (`redrive __compile --allocation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AllocationArg {
    /// From the pre-reserved pool.
    #[default]
    Pooling,
    /// On demand (the pool's address space was refused).
    OnDemand,
}

/// Whether the engine that will run a compiled module counts fuel (`redrive __compile --fuel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum FuelArg {
    /// No fuel counting in the compiled code.
    #[default]
    Off,
    /// Fuel counting compiled in.
    On,
}

/// Arguments of the internal `redrive __compile` (the bounded compiler process).
#[derive(Debug, Args)]
pub struct InternalCompileArgs {
    /// `component` or `module`.
    #[arg(long)]
    pub kind: String,
    /// The engine's largest memory (pooling allocator slots).
    #[arg(long)]
    pub max_memory_bytes: u64,
    /// The engine's instance slots.
    #[arg(long)]
    pub max_instances: u32,
    /// How the engine allocates instances (its compiled code must match).
    #[arg(long, value_enum, default_value_t)]
    pub allocation: AllocationArg,
    /// Whether the engine counts fuel (its compiled code must match).
    #[arg(long, value_enum, default_value_t)]
    pub fuel: FuelArg,
    /// The data segment limit of this process.
    #[arg(long)]
    pub limit_memory_bytes: u64,
    /// The CPU time limit of this process.
    #[arg(long)]
    pub limit_cpu_secs: u64,
}

/// `redrive filter ...`
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum FilterCommand {
    /// Run a chain of filter modules on messages from a JSONL file and print each decision.
    ///
    /// Example: redrive filter test build/filters/route-by-error.wasm --input examples/filters/route-by-error/input.jsonl
    /// --expect examples/filters/route-by-error/expected.jsonl
    Test(FilterTestArgs),
    /// Write a new filter project from a template: source, build script, README, sample input and the
    /// expected decisions, ready to build and pass `redrive filter test` as generated.
    ///
    /// Example: redrive filter new --lang python my-filter
    New(FilterNewArgs),
}

/// Arguments of `redrive filter new`.
#[derive(Debug, Args)]
pub struct FilterNewArgs {
    /// The language of the new filter.
    #[arg(long, short = 'l', value_enum, value_name = "LANG")]
    pub lang: Lang,
    /// The filter's name: lowercase letters, digits and '-', starting with a letter. It names the project
    /// directory and the module it builds (NAME.wasm).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Create the project directory inside DIR.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Languages `redrive filter new` has a template for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust (component; the guest SDK is copied into the project).
    Rust,
    /// C (component; wit-bindgen's C generator).
    C,
    /// Zig (command profile).
    Zig,
    /// Go (command profile, GOOS=wasip1).
    Go,
    /// Python (component; componentize-py).
    Python,
    /// JavaScript (component; componentize-js).
    Js,
    /// TypeScript (component; tsc, then componentize-js).
    Ts,
    /// AssemblyScript (command profile).
    Assemblyscript,
}

/// Arguments of `redrive filter test`.
#[derive(Debug, Args)]
pub struct FilterTestArgs {
    /// Filter modules, in chain order: path/to/module.wasm[?key=value&...]. Keys starting with `redrive.` set
    /// this module's limits (e.g. ?redrive.timeout=250ms); the others go to the filter's init.
    #[arg(required = true, value_name = "MODULE")]
    pub modules: Vec<String>,
    /// Messages to test, one JSON object per line (see the README for the format).
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: PathBuf,
    /// Configuration given to every module's init, as key=value; repeatable.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Expected decisions (JSONL: id, verdict, and optionally reason and body); mismatches make the exit code 1.
    #[arg(long, short = 'e', value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also write each module's audit records to `DIR/<module>.jsonl`.
    #[arg(long, value_name = "DIR")]
    pub audit_dir: Option<PathBuf>,
    /// Sandbox limits and engine options.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// What to read, which filters to run, and where the audit goes: shared by `run` and `plan`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// A redrive.toml with the run's settings; flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The dead-letter queue: file:path/dlq.jsonl, amqp://user:pass@host:5672/vhost?queue=orders.dlq,
    /// sqs://orders-dlq (or an SQS queue URL or ARN), redis://host:6379/0?stream=orders:dlq, or
    /// postgres://user@host/db?table=failed_jobs.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// A filter module, in chain order: path/to/module.wasm[?key=value&redrive.timeout=250ms]; repeatable.
    #[arg(long = "filter", short = 'f', value_name = "MODULE")]
    pub filters: Vec<String>,
    /// No filter chain: every message is replayed (a plain move that keeps the confirms, journal,
    /// canary and rate limit). Refused together with filters, so a forgotten --filter cannot do this.
    #[arg(long, conflicts_with = "filters")]
    pub no_filter: bool,
    /// Database sources: only rows matching this SQL predicate, e.g. "queue = 'emails'". Trusted input:
    /// it is put into the query as it is written.
    #[arg(long = "where", value_name = "SQL")]
    pub where_clause: Option<String>,
    /// Take at most N messages from the DLQ; the rest stay untouched.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Only messages that failed at or after this time (RFC 3339, or a duration ago like 24h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only messages that failed before this time (RFC 3339, or a duration ago like 1h).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Loop guard: park messages redrive already replayed N times (x-redrive-replay-count).
    #[arg(long, value_name = "N")]
    pub max_replays: Option<u32>,
    /// Where per-module audit logs, the run journal and the discard archive go [default: redrive-audit].
    #[arg(long, value_name = "DIR")]
    pub audit_dir: Option<PathBuf>,
    /// Threads running filters [default: the number of CPUs, at most 4].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Summary format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// No progress bar or progress lines.
    #[arg(long)]
    pub no_progress: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while the run lasts (e.g. 127.0.0.1:9464; port 0
    /// picks a free one, printed at start).
    #[arg(long, value_name = "ADDR", help_heading = "Observe")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Push the run's metrics once, at its end, to a Prometheus Pushgateway: http://HOST:9091 (job
    /// `redrive`) or http://HOST:9091/metrics/job/NAME[/LABEL/VALUE...].
    #[arg(long, value_name = "URL", help_heading = "Observe")]
    pub metrics_push: Option<String>,
    /// Write an HTML report of the plan or run to FILE at the end: totals, the flow through the chain, error
    /// groups, repairs as diffs, per-module call times, the rate over time. One file; opens from disk.
    #[arg(long, value_name = "FILE", help_heading = "Observe")]
    pub report: Option<PathBuf>,
    /// Sandbox limits and engine options.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// AWS settings for SQS sources and destinations.
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// AWS settings for `sqs://` sources and destinations. Unset ones come from the standard AWS chain
/// (environment, ~/.aws/config and credentials, SSO, instance or container role).
#[derive(Debug, Args)]
pub struct AwsArgs {
    /// AWS named profile (overrides AWS_PROFILE).
    #[arg(long, value_name = "NAME", help_heading = "AWS (SQS)")]
    pub profile: Option<String>,
    /// AWS region (a queue URL or ARN names its own).
    #[arg(long, value_name = "REGION", help_heading = "AWS (SQS)")]
    pub region: Option<String>,
    /// SQS endpoint, e.g. a local SQS-compatible server (default: AWS_ENDPOINT_URL_SQS, else AWS).
    #[arg(long, value_name = "URL", help_heading = "AWS (SQS)")]
    pub endpoint_url: Option<String>,
}

/// Arguments of `redrive run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Source, filters and audit options shared with `plan`.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Where replayed messages go: file:path/staging.jsonl, amqp://host/vhost?queue=staging,
    /// amqp://host/vhost?exchange=orders&routing_key=created, sqs://orders-staging, or `origin` (back where
    /// each message was dead-lettered from, per its broker headers or attributes).
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Serve a live page for this run: progress, canary, latest decisions, Pause / Resume / Stop. Loopback
    /// only; the URL printed at start carries the access token [default address: 127.0.0.1:8686].
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8686", help_heading = "Observe")]
    pub ui: Option<std::net::SocketAddr>,
    /// Forwarding rate limit, e.g. 50/s, 3000/m.
    #[arg(long, value_name = "RATE", help_heading = "Pace")]
    pub rate: Option<String>,
    /// Messages that may go at once after an idle moment [default: 1/10 of a second's worth, at least 1].
    #[arg(long, value_name = "N", help_heading = "Pace")]
    pub burst: Option<u32>,
    /// Start at this rate and ramp up linearly to --rate over --ramp-over.
    #[arg(long, value_name = "RATE", requires = "ramp_over", help_heading = "Pace")]
    pub ramp_from: Option<String>,
    /// How long the ramp from --ramp-from to --rate takes, e.g. 5m.
    #[arg(long, value_name = "DURATION", requires = "ramp_from", help_heading = "Pace")]
    pub ramp_over: Option<String>,
    /// Replay this many messages first, then stop at the verification gate.
    #[arg(long, value_name = "N", help_heading = "Canary")]
    pub canary: Option<u64>,
    /// Gate command after the canary (run with sh -c; exit 0 = go on). Gets the canary ids in
    /// REDRIVE_CANARY_IDS and on stdin, the destination in REDRIVE_STAGING.
    #[arg(long, value_name = "COMMAND", conflicts_with = "verify", help_heading = "Canary")]
    pub verify_cmd: Option<String>,
    /// Gate kind without a command: `prompt` (ask y/N on the terminal) or `none`.
    #[arg(long, value_name = "KIND", help_heading = "Canary")]
    pub verify: Option<String>,
    /// Re-poison breaker: stop forwarding when more than this share of the replays come back to the DLQ
    /// within --returning-window (they failed again: the fix did not work). Exit code 5. `off` turns it off
    /// [default: 5%].
    #[arg(long, value_name = "PCT", help_heading = "Canary")]
    pub abort_if_returning: Option<String>,
    /// How long after its confirmation a replay that comes back counts for --abort-if-returning
    /// [default: 10m].
    #[arg(long, value_name = "DURATION", help_heading = "Canary")]
    pub returning_window: Option<String>,
    /// Most messages sent and not yet confirmed at once [default: 64; where a crash repeats nothing (a file, a
    /// Redis stream, Kafka exactly once), the destination's largest batch]. A crash (kill -9, power loss) can
    /// forward at most this many a second time to a destination that cannot be read back (RabbitMQ, SQS),
    /// each with the same x-redrive-replay-id.
    #[arg(long, value_name = "N", help_heading = "Pace")]
    pub max_in_flight: Option<usize>,
    /// Most memory the messages read and not yet sent, archived or skipped may take together
    /// [default: 64MiB]. The reader waits for room (the rest stays in the DLQ until then); a message larger
    /// than this goes through alone.
    #[arg(long, value_name = "SIZE", help_heading = "Pace")]
    pub message_memory: Option<String>,
    /// Work as one of several workers on this DLQ: redis://HOST:PORT/DB?name=NAME. Every worker started with
    /// the same fleet shares one --rate (the whole fleet's), one canary, and stops, pauses and resumes with
    /// `redrive fleet stop|pause|resume NAME`; `redrive fleet status NAME` shows them all.
    #[arg(long, value_name = "URL", help_heading = "Fleet")]
    pub fleet: Option<String>,
    /// Send parked messages (see --max-replays) here instead of leaving them in the DLQ.
    #[arg(long, value_name = "URL")]
    pub park: Option<String>,
    /// The discard archive [default: AUDIT_DIR/discarded.jsonl].
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// For file sources: write what is still in the DLQ at the end to FILE.
    #[arg(long, value_name = "FILE")]
    pub remainder: Option<PathBuf>,
    /// Decide everything, change nothing (same as `redrive plan`, without writing a plan file).
    #[arg(long)]
    pub dry_run: bool,
    /// Replay exactly the selection of a plan file made by `redrive plan`; refuses if a module changed.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Forward messages as soon as their filters finish instead of in DLQ order.
    #[arg(long)]
    pub allow_reorder: bool,
}

/// Arguments of `redrive plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Source, filters and audit options shared with `plan`.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Where to write the plan file.
    #[arg(long, value_name = "FILE", default_value = "redrive-plan.json")]
    pub plan_out: PathBuf,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line, then a summary object.
    Json,
}

/// Sandbox limits and engine options shared by commands that run filters. Each applies to every module
/// unless the module's spec overrides it with `?redrive.<name>=`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Memory cap per module instance (e.g. 64MiB).
    #[arg(long, value_name = "SIZE", help_heading = "Sandbox limits")]
    pub memory: Option<String>,
    /// Deadline for one message in one module (e.g. 1s, 250ms).
    #[arg(long, value_name = "DURATION", help_heading = "Sandbox limits")]
    pub timeout: Option<String>,
    /// Fuel budget for one message in one module, in wasm instructions (e.g. 1_000_000_000), or `off`. Off by
    /// default: the deadline bounds each call, and counting fuel slows every call. With a budget, every audit
    /// record says what the call spent.
    #[arg(long, value_name = "UNITS", help_heading = "Sandbox limits")]
    pub fuel: Option<String>,
    /// Largest body a module may return (e.g. 8MiB).
    #[arg(long, value_name = "SIZE", help_heading = "Sandbox limits")]
    pub max_output: Option<String>,
    /// Log volume kept per message and module, including captured stdout/stderr (e.g. 64KiB).
    #[arg(long, value_name = "SIZE", help_heading = "Sandbox limits")]
    pub max_log: Option<String>,
    /// Instance policy: `reuse` one instance across messages, or a `fresh` instance per message.
    #[arg(long, value_name = "POLICY", help_heading = "Sandbox limits")]
    pub instance: Option<String>,
    /// With `--instance reuse`, replace the instance after this many messages.
    #[arg(long, value_name = "N", help_heading = "Sandbox limits")]
    pub recycle_every: Option<String>,
    /// Disable a module (and stop) after this many failed messages in a row.
    #[arg(long, value_name = "N", help_heading = "Sandbox limits")]
    pub max_failures: Option<String>,
    /// Where compiled modules are cached [default: $REDRIVE_CACHE_DIR, else ~/.cache/redrive/modules].
    #[arg(long, value_name = "DIR", help_heading = "Engine")]
    pub cache_dir: Option<PathBuf>,
    /// Compile modules every time instead of using the cache.
    #[arg(long, help_heading = "Engine", conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Largest module file accepted [default: 64MiB].
    #[arg(long, value_name = "SIZE", help_heading = "Engine")]
    pub max_module_size: Option<String>,
    /// Memory compiling one module may use; a module that needs more is refused [default: 2GiB].
    #[arg(long, value_name = "SIZE", help_heading = "Engine")]
    pub compile_memory: Option<String>,
    /// Time compiling one module may take [default: 5m].
    #[arg(long, value_name = "DURATION", help_heading = "Engine")]
    pub compile_timeout: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
