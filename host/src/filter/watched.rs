//! Clocks and random sources for a guest that note whether the guest read them.
//!
//! Used while `init` runs for a snapshot (`snapshot.rs`): a value `init` read from the clock or from random
//! bytes would be frozen into the snapshot and shared by every instance started from it (a sampler seeded in
//! `init` would then draw the same number for every message), so such a module is not pre-initialised. The seed
//! of `wasi:random/insecure-seed` (Rust's `HashMap` keys) is a fixed number per instance, not watched: sharing it
//! changes nothing a filter can rely on.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand_core::TryRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, Rng, WasiCtxBuilder};

/// Whether a guest read the clock or random bytes, shared by the sources [`watch`] installs.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadFlag(Arc<AtomicBool>);

impl ReadFlag {
    /// True once the guest read any watched source.
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Install watched versions of the default clocks and random sources in `builder`; `flag` says when any was read.
pub(crate) fn watch(builder: &mut WasiCtxBuilder, flag: &ReadFlag) {
    builder
        .secure_random(Watched::new(wasmtime_wasi::thread_rng(), flag))
        .insecure_random(Watched::new(wasmtime_wasi::thread_rng(), flag))
        .wall_clock(Watched::new(wasmtime_wasi::clocks::wall_clock(), flag))
        .monotonic_clock(Watched::new(wasmtime_wasi::clocks::monotonic_clock(), flag));
}

/// A source that sets its flag when read.
struct Watched<T> {
    inner: T,
    flag: ReadFlag,
}

impl<T> Watched<T> {
    fn new(inner: T, flag: &ReadFlag) -> Self {
        Self {
            inner,
            flag: flag.clone(),
        }
    }
}

impl TryRng for Watched<Box<dyn Rng + Send>> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.flag.set();
        Ok(self.inner.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.flag.set();
        Ok(self.inner.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.flag.set();
        self.inner.fill_bytes(dst);
        Ok(())
    }
}

impl HostWallClock for Watched<Box<dyn HostWallClock + Send>> {
    fn resolution(&self) -> Duration {
        self.inner.resolution()
    }

    fn now(&self) -> Duration {
        self.flag.set();
        self.inner.now()
    }
}

impl HostMonotonicClock for Watched<Box<dyn HostMonotonicClock + Send>> {
    fn resolution(&self) -> u64 {
        self.inner.resolution()
    }

    fn now(&self) -> u64 {
        self.flag.set();
        self.inner.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_sets_the_flag_when_read_and_not_before() {
        let flag = ReadFlag::default();
        let wall = Watched::new(wasmtime_wasi::clocks::wall_clock(), &flag);
        let monotonic = Watched::new(wasmtime_wasi::clocks::monotonic_clock(), &flag);
        let _ = (wall.resolution(), monotonic.resolution());
        assert!(!flag.is_set(), "a clock's resolution is not a reading");

        type Read = Box<dyn Fn(&ReadFlag)>;
        let reads: [Read; 5] = [
            Box::new(|f| {
                let _ = Watched::new(wasmtime_wasi::clocks::wall_clock(), f).now();
            }),
            Box::new(|f| {
                let _ = Watched::new(wasmtime_wasi::clocks::monotonic_clock(), f).now();
            }),
            Box::new(|f| {
                let _ = Watched::new(wasmtime_wasi::thread_rng(), f).try_next_u32();
            }),
            Box::new(|f| {
                let _ = Watched::new(wasmtime_wasi::thread_rng(), f).try_next_u64();
            }),
            Box::new(|f| {
                let _ = Watched::new(wasmtime_wasi::thread_rng(), f).try_fill_bytes(&mut [0; 8]);
            }),
        ];
        for (n, read) in reads.iter().enumerate() {
            let flag = ReadFlag::default();
            read(&flag);
            assert!(flag.is_set(), "read {n} did not set the flag");
        }
    }
}
