//! The settings of `redrive run` that come from one flag or its config-file entry, parsed with errors that name
//! the flag: the rate and its ramp, the canary's gate, the re-poison breaker, `--since` / `--until` times, and
//! `--message-memory`.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::config_file::LoadedConfig;
use crate::cli::RunArgs;
use crate::pipeline::breaker::{ReturnGuard, Threshold};
use crate::pipeline::{Gate, Rate, RatePlan};

/// The re-poison breaker's settings (`--abort-if-returning`, `--returning-window`); `None` when off.
pub(super) fn return_guard(args: &RunArgs, loaded: &LoadedConfig) -> Result<Option<ReturnGuard>> {
    let file = &loaded.file;
    let threshold = match args.abort_if_returning.as_ref().or(file.abort_if_returning.as_ref()) {
        Some(text) => text
            .parse::<Threshold>()
            .map_err(|e| anyhow::anyhow!("--abort-if-returning {e}"))?,
        None => Threshold::Percent(ReturnGuard::DEFAULT.percent),
    };
    let window = match args.returning_window.as_ref().or(file.returning_window.as_ref()) {
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|w| !w.is_zero())
            .with_context(|| format!("--returning-window {text:?}: expected a duration such as 10m or 90s"))?,
        None => ReturnGuard::DEFAULT.window,
    };
    Ok(match threshold {
        Threshold::Off => None,
        Threshold::Percent(percent) => Some(ReturnGuard { percent, window }),
    })
}

/// A `--since` / `--until` value: an RFC 3339 time, or a duration ago.
pub(super) fn time_arg(flag: &str, value: Option<&String>) -> Result<Option<DateTime<Utc>>> {
    let Some(text) = value else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let ago = humantime::parse_duration(text).with_context(|| {
        format!("{flag} {text:?}: expected an RFC 3339 time (2026-11-20T08:00:00Z) or a duration ago (24h)")
    })?;
    let ago = chrono::Duration::from_std(ago).with_context(|| format!("{flag} {text:?} is too far back"))?;
    Ok(Some(Utc::now() - ago))
}

pub(super) fn rate_plan(args: &RunArgs, loaded: &LoadedConfig) -> Result<Option<RatePlan>> {
    let file = &loaded.file;
    let parse_rate = |flag: &str, text: &str| text.parse::<Rate>().map_err(|e| anyhow::anyhow!("{flag}: {e}"));
    let Some(rate) = args.rate.as_ref().or(file.rate.as_ref()) else {
        if args.ramp_from.is_some() || file.ramp_from.is_some() {
            bail!("--ramp-from needs --rate: the rate to ramp up to");
        }
        return Ok(None);
    };
    let rate = parse_rate("--rate", rate)?;
    let burst = args
        .burst
        .or(file.burst)
        .unwrap_or_else(|| ((rate.0 / 10.0).ceil() as u32).max(1));
    if burst == 0 {
        bail!("--burst must be at least 1");
    }
    let ramp = match (
        args.ramp_from.as_ref().or(file.ramp_from.as_ref()),
        args.ramp_over.as_ref().or(file.ramp_over.as_ref()),
    ) {
        (Some(from), Some(over)) => {
            let over =
                humantime::parse_duration(over).with_context(|| format!("--ramp-over {over:?}: expected e.g. 5m"))?;
            Some((parse_rate("--ramp-from", from)?, over))
        }
        (None, None) => None,
        _ => bail!("a ramp needs both --ramp-from and --ramp-over (or ramp_from and ramp_over in the config file)"),
    };
    Ok(Some(RatePlan { rate, burst, ramp }))
}

pub(super) fn gate(args: &RunArgs, loaded: &LoadedConfig) -> Result<Gate> {
    let file = &loaded.file;
    if let Some(cmd) = args.verify_cmd.as_ref().or(if args.verify.is_none() {
        file.verify_cmd.as_ref()
    } else {
        None
    }) {
        return Ok(Gate::Command(cmd.clone()));
    }
    match args.verify.as_deref().or(file.verify.as_deref()) {
        None | Some("none") => Ok(Gate::None),
        Some("prompt") => {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                bail!("--verify prompt needs a terminal to ask on; use --verify-cmd for unattended runs");
            }
            Ok(Gate::Prompt)
        }
        Some(other) => bail!("--verify {other:?}: expected `prompt` or `none` (or use --verify-cmd COMMAND)"),
    }
}

/// The least `--message-memory` accepted: below it, ordinary messages would go through one at a time.
const MIN_MESSAGE_MEMORY: u64 = 1 << 20;

/// `--message-memory` (or `message_memory` in the config file), in bytes.
pub(super) fn message_memory(args: &RunArgs, loaded: &LoadedConfig) -> Result<u64> {
    let Some(text) = args.message_memory.as_ref().or(loaded.file.message_memory.as_ref()) else {
        return Ok(super::run::DEFAULT_MESSAGE_MEMORY);
    };
    let bytes = crate::filter::parse_size(text).map_err(|e| anyhow::anyhow!("--message-memory: {e}"))?;
    if bytes < MIN_MESSAGE_MEMORY {
        bail!("--message-memory {text}: less than the 1MiB it needs at least; give e.g. 64MiB");
    }
    if bytes > 4 << 30 {
        bail!("--message-memory {text}: more than the 4GiB it can count; give e.g. 1GiB");
    }
    Ok(bytes)
}
