//! CPU time of the calling thread, read from `/proc/thread-self` (Linux): what a loop of calls cost in CPU,
//! the kernel's share included, which wall time on a shared VM does not say reliably.

use std::time::Duration;

/// CPU spent per call by a loop, and how it splits between user space and the kernel.
#[derive(Clone, Copy, Debug)]
pub struct CpuPerCall {
    /// User and kernel time (the scheduler's own count, in nanoseconds).
    pub total: Duration,
    /// User time (counted in clock ticks of 10 ms: for loops of a second or more).
    pub user: Duration,
    /// Kernel time: page faults, `madvise`, TLB shootdowns (clock ticks, as `user`).
    pub system: Duration,
}

/// Run `f` `calls` times; the calling thread's CPU per call.
pub fn per_call(calls: u32, mut f: impl FnMut()) -> CpuPerCall {
    let before = Sample::now();
    for _ in 0..calls {
        f();
    }
    let after = Sample::now();
    let per = |ns: u64| Duration::from_nanos(ns / u64::from(calls.max(1)));
    let tick_ns = 1_000_000_000 / USER_HZ;
    CpuPerCall {
        total: per(after.total_ns - before.total_ns),
        user: per((after.user_ticks - before.user_ticks) * tick_ns),
        system: per((after.system_ticks - before.system_ticks) * tick_ns),
    }
}

struct Sample {
    total_ns: u64,
    user_ticks: u64,
    system_ticks: u64,
}

impl Sample {
    fn now() -> Self {
        let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
        // After the command name (in parentheses, which may hold spaces): state is field 3, utime 14, stime 15.
        let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let fields: Vec<u64> = after_name.split(' ').map(|f| f.parse().unwrap_or(0)).collect();
        Self {
            total_ns: schedstat
                .split(' ')
                .next()
                .and_then(|f| f.parse().ok())
                .expect("schedstat's run time"),
            user_ticks: fields[11],
            system_ticks: fields[12],
        }
    }
}

/// The kernel's clock ticks per second for `utime` / `stime` (100 on every Linux we run).
const USER_HZ: u64 = 100;
