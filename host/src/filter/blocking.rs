//! Host calls that can block (a filter sleeping, or waiting on a pollable) end at the message's deadline,
//! or at once when the run is stopping.
//!
//! Fuel and epoch interruption only stop WebAssembly code; a guest blocked *inside* a host call would
//! otherwise sleep past its deadline, hold its instance (and its slot in the pooling allocator) and keep a
//! stopping run waiting. The blocking calls are replaced here:
//! - components (WASI preview 2): `wasi:io/poll.poll` and `pollable.block` wait on the same pollables as
//!   wasmtime-wasi's own, but no longer than the deadline;
//! - command modules (WASI preview 1): `poll_oneoff` is implemented here with clocks of our own
//!   (`clock_time_get`), so every wait is bounded the same way.
//!
//! A wait cut short is a [`HostWaitCut`] error: the call fails like a trap, the instance is thrown away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;

/// The `wasi:io/poll` interface name wasmtime-wasi 50 links; its functions are replaced here.
const POLL_INTERFACE: &str = "wasi:io/poll@0.2.12";

/// How long one blocking host call may wait: until the current message's deadline, or until the run stops.
#[derive(Clone, Debug)]
pub(crate) struct WaitLimit {
    /// When the current call's deadline passes.
    pub deadline: Instant,
    /// The call's timeout, for messages.
    pub timeout: Duration,
    /// Set when the run is stopping: waits end at once.
    pub stopping: Arc<AtomicBool>,
}

impl WaitLimit {
    /// A limit for a call starting now.
    pub(crate) fn starting_now(timeout: Duration, stopping: Arc<AtomicBool>) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            timeout,
            stopping,
        }
    }

    /// Restart the deadline for the next call.
    pub(crate) fn restart(&mut self) {
        self.deadline = Instant::now() + self.timeout;
    }
}

/// A blocking host call that was ended before it was done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostWaitCut {
    /// The message's deadline passed while the filter was waiting outside WebAssembly.
    #[error(
        "timed out: still waiting in a host call (sleeping or polling) at the per-message deadline of {}",
        humantime::format_duration(*.0)
    )]
    Deadline(Duration),
    /// The run is stopping (Ctrl-C / SIGTERM).
    #[error("interrupted: the run is stopping")]
    Stopping,
}

/// Sleep until `until`, in short slices so a stop is seen at once; cut at the deadline.
fn sleep_until(until: Instant, limit: &WaitLimit) -> Result<(), HostWaitCut> {
    loop {
        if limit.stopping.load(Ordering::Relaxed) {
            return Err(HostWaitCut::Stopping);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        if now >= limit.deadline {
            return Err(HostWaitCut::Deadline(limit.timeout));
        }
        std::thread::sleep((until.min(limit.deadline) - now).min(Duration::from_millis(20)));
    }
}

/// Run a wasmtime-wasi wait (an async poll) bounded by `limit`.
fn bounded<T>(limit: &WaitLimit, wait: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
    let stopping = limit.stopping.clone();
    let (deadline, timeout) = (limit.deadline, limit.timeout);
    wasmtime_wasi::runtime::in_tokio(async move {
        let stop = async {
            while !stopping.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            biased;
            () = stop => Err(wasmtime::Error::new(HostWaitCut::Stopping)),
            () = tokio::time::sleep_until(deadline.into()) => Err(wasmtime::Error::new(HostWaitCut::Deadline(timeout))),
            result = wait => result,
        }
    })
}

/// The store state a component's bounded waits need.
pub(crate) trait BoundedWaits: Send + 'static {
    /// The resource table holding the guest's pollables.
    fn table(&mut self) -> &mut ResourceTable;
    /// The current call's limit.
    fn wait_limit(&self) -> &WaitLimit;
}

/// Replace `wasi:io/poll.poll` and `pollable.block` (already linked by wasmtime-wasi) with bounded ones.
pub(crate) fn bound_component_waits<T: BoundedWaits>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL_INTERFACE)?;
    poll.func_wrap(
        "poll",
        |mut store: wasmtime::StoreContextMut<'_, T>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let limit = store.data().wait_limit().clone();
            let table = store.data_mut().table();
            bounded(&limit, async_poll::Host::poll(table, pollables)).map(|ready| (ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: wasmtime::StoreContextMut<'_, T>, (pollable,): (Resource<DynPollable>,)| {
            let limit = store.data().wait_limit().clone();
            let table = store.data_mut().table();
            bounded(&limit, async_poll::HostPollable::block(table, pollable))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

// ---- WASI preview 1: clocks and poll_oneoff of our own ----

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: u16 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;

/// The store state a command module's clocks and bounded waits need.
pub(crate) trait CommandWaits: Send + 'static {
    /// The current request's limit.
    fn wait_limit(&self) -> &WaitLimit;
    /// When the instance started: its monotonic clock's zero.
    fn clock_base(&self) -> Instant;
    /// Bytes of stdin that can be read without waiting.
    fn stdin_ready(&self) -> u64;
}

/// Replace `clock_time_get` and `poll_oneoff` (already linked by wasmtime-wasi) with bounded ones.
pub(crate) fn bound_command_waits<T: CommandWaits>(linker: &mut wasmtime::Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "clock_time_get",
        |mut caller: wasmtime::Caller<'_, T>, id: i32, _precision: i64, out: i32| -> i32 {
            let Some(now) = clock_now(id as u32, caller.data().clock_base()) else {
                return i32::from(ERRNO_BADF);
            };
            write_guest(&mut caller, out, &now.to_le_bytes())
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: wasmtime::Caller<'_, T>, subs: i32, events: i32, count: i32, out: i32| -> wasmtime::Result<i32> {
            poll_oneoff(&mut caller, subs as u32 as usize, events as u32 as usize, count, out)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Nanoseconds on clock `id`: monotonic from the instance's start, realtime from the Unix epoch.
fn clock_now(id: u32, base: Instant) -> Option<u64> {
    match id {
        CLOCK_MONOTONIC => Some(u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)),
        CLOCK_REALTIME => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        _ => None,
    }
}

fn memory<T>(caller: &mut wasmtime::Caller<'_, T>) -> Option<wasmtime::Memory> {
    caller.get_export("memory").and_then(|e| e.into_memory())
}

fn write_guest<T>(caller: &mut wasmtime::Caller<'_, T>, at: i32, bytes: &[u8]) -> i32 {
    match memory(caller).map(|m| m.write(&mut *caller, at as u32 as usize, bytes)) {
        Some(Ok(())) => ERRNO_SUCCESS,
        _ => ERRNO_FAULT,
    }
}

/// One subscription, as far as this host serves it.
enum Subscription {
    /// Wake at this instant.
    Clock { userdata: u64, at: Instant },
    /// An fd: stdin readable, stdout/stderr writable, anything else a bad descriptor.
    Fd { userdata: u64, kind: u8, fd: u32 },
}

fn poll_oneoff<T: CommandWaits>(
    caller: &mut wasmtime::Caller<'_, T>,
    subs_at: usize,
    events_at: usize,
    count: i32,
    out: i32,
) -> wasmtime::Result<i32> {
    let Ok(count) = usize::try_from(count) else {
        return Ok(ERRNO_INVAL);
    };
    if count == 0 || count > 4096 {
        return Ok(ERRNO_INVAL);
    }
    let Some(mem) = memory(caller) else {
        return Ok(ERRNO_FAULT);
    };
    let mut raw = vec![0u8; count * SUBSCRIPTION_SIZE];
    if mem.read(&*caller, subs_at, &mut raw).is_err() {
        return Ok(ERRNO_FAULT);
    }
    let base = caller.data().clock_base();
    let now = Instant::now();
    let mut subscriptions = Vec::with_capacity(count);
    for sub in raw.chunks_exact(SUBSCRIPTION_SIZE) {
        let u64_at = |i: usize| u64::from_le_bytes(sub[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(sub[i..i + 4].try_into().unwrap_or_default());
        let userdata = u64_at(0);
        match sub[8] {
            EVENTTYPE_CLOCK => {
                let (id, timeout) = (u32_at(16), u64_at(24));
                let flags = u16::from_le_bytes([sub[40], sub[41]]);
                let wait = if flags & SUBCLOCKFLAGS_ABSTIME == 0 {
                    Duration::from_nanos(timeout)
                } else {
                    match clock_now(id, base) {
                        Some(current) => Duration::from_nanos(timeout.saturating_sub(current)),
                        None => return Ok(ERRNO_INVAL),
                    }
                };
                let at = now.checked_add(wait).unwrap_or(now + Duration::from_secs(86_400 * 365));
                subscriptions.push(Subscription::Clock { userdata, at });
            }
            kind @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => subscriptions.push(Subscription::Fd {
                userdata,
                kind,
                fd: u32_at(16),
            }),
            _ => return Ok(ERRNO_INVAL),
        }
    }
    // Descriptors are always ready (stdin is served by the host, stdout and stderr are captured), so a
    // poll with one returns at once; only a poll on clocks alone waits.
    let mut events: Vec<[u8; EVENT_SIZE]> = Vec::new();
    for sub in &subscriptions {
        if let Subscription::Fd { userdata, kind, fd } = sub {
            let (error, nbytes) = match (*kind, *fd) {
                (EVENTTYPE_FD_READ, 0) => (0, caller.data().stdin_ready().max(1)),
                (EVENTTYPE_FD_WRITE, 1 | 2) => (0, 64 * 1024),
                _ => (ERRNO_BADF, 0),
            };
            events.push(event(*userdata, error, *kind, nbytes));
        }
    }
    if events.is_empty() {
        let wake = subscriptions
            .iter()
            .filter_map(|s| match s {
                Subscription::Clock { at, .. } => Some(*at),
                Subscription::Fd { .. } => None,
            })
            .min()
            .unwrap_or(now);
        sleep_until(wake, caller.data().wait_limit()).map_err(wasmtime::Error::new)?;
        let now = Instant::now();
        for sub in &subscriptions {
            if let Subscription::Clock { userdata, at } = sub
                && *at <= now
            {
                events.push(event(*userdata, 0, EVENTTYPE_CLOCK, 0));
            }
        }
    }
    let bytes: Vec<u8> = events.iter().flatten().copied().collect();
    if mem.write(&mut *caller, events_at, &bytes).is_err() {
        return Ok(ERRNO_FAULT);
    }
    let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
    Ok(write_guest(caller, out, &n.to_le_bytes()))
}

fn event(userdata: u64, error: u16, kind: u8, nbytes: u64) -> [u8; EVENT_SIZE] {
    let mut e = [0u8; EVENT_SIZE];
    e[0..8].copy_from_slice(&userdata.to_le_bytes());
    e[8..10].copy_from_slice(&error.to_le_bytes());
    e[10] = kind;
    e[16..24].copy_from_slice(&nbytes.to_le_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_past_the_deadline_is_cut_and_a_stop_ends_it_at_once() {
        let stopping = Arc::new(AtomicBool::new(false));
        let limit = WaitLimit::starting_now(Duration::from_millis(50), stopping.clone());
        let started = Instant::now();
        assert_eq!(
            sleep_until(Instant::now() + Duration::from_secs(10), &limit),
            Err(HostWaitCut::Deadline(Duration::from_millis(50)))
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        let limit = WaitLimit::starting_now(Duration::from_secs(10), stopping.clone());
        assert_eq!(sleep_until(Instant::now() + Duration::from_millis(10), &limit), Ok(()));
        stopping.store(true, Ordering::Relaxed);
        assert_eq!(
            sleep_until(Instant::now() + Duration::from_secs(10), &limit),
            Err(HostWaitCut::Stopping)
        );
    }

    #[test]
    fn events_have_the_preview1_layout() {
        let e = event(0x0102030405060708, 8, EVENTTYPE_FD_READ, 5);
        assert_eq!(&e[0..8], &0x0102030405060708u64.to_le_bytes());
        assert_eq!(e[8], 8);
        assert_eq!(e[10], EVENTTYPE_FD_READ);
        assert_eq!(&e[16..24], &5u64.to_le_bytes());
    }
}
