//! One rate limit for every worker of a fleet: GCRA (the generic cell rate algorithm) kept in Redis, taken
//! atomically by a Lua script on Redis's own clock, so the hosts' clocks do not matter. A worker takes a
//! handful of tokens at a time (about 50 ms of the fleet's rate) and spends them locally, so Redis is asked
//! a few times a second per worker, not once per message.

use std::time::Duration;

use tokio::sync::Mutex;

use super::store::{Store, StoreError};

/// GCRA over one key: KEYS[1] holds the theoretical arrival time (µs, Redis's clock). ARGV: the emission
/// interval T (µs), the burst tolerance τ (µs), the tokens wanted. Returns {granted, wait µs}: as many tokens
/// as fit within τ (at least one when any does), or none and how long until one will.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local ahead = tat - now
if ahead > tolerance then
  return {0, math.ceil(ahead - tolerance)}
end
local room = math.floor((tolerance - ahead) / interval) + 1
local granted = math.min(wanted, room)
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
return {granted, 0}
";

/// How much of the fleet's rate one worker takes at a time.
const CHUNK_OF_A_SECOND: f64 = 0.05;
/// Most tokens taken at once.
const MOST_PER_TAKE: u32 = 100;

/// What one take from the fleet's bucket gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// This many tokens (at least one).
    Granted(u32),
    /// None now; one will be there after this long.
    Wait(Duration),
}

/// The tokens a worker took and has not spent yet.
#[derive(Default)]
pub struct SharedRate {
    left: Mutex<u32>,
    script: std::sync::OnceLock<redis::Script>,
}

/// How many tokens to take at once at `per_second` (all workers together).
pub fn chunk(per_second: f64) -> u32 {
    ((per_second * CHUNK_OF_A_SECOND).floor() as u32).clamp(1, MOST_PER_TAKE)
}

impl SharedRate {
    /// Spend one token taken earlier, if any is left.
    pub async fn spend_local(&self) -> bool {
        let mut left = self.left.lock().await;
        if *left > 0 {
            *left -= 1;
            true
        } else {
            false
        }
    }

    /// Take tokens from the fleet's bucket at `per_second`; one of them is spent now, the rest kept.
    pub async fn take(&self, store: &Store, per_second: f64) -> Result<Take, StoreError> {
        let interval_us = (1_000_000.0 / per_second.max(1e-6)).max(1.0);
        let wanted = chunk(per_second);
        // The bucket lets a whole take through at once, and no more than that as a burst.
        let tolerance_us = interval_us * f64::from(wanted);
        let script = self.script.get_or_init(|| redis::Script::new(GCRA));
        let key = store.url().key("rate");
        let (granted, wait_us): (i64, i64) = store
            .call(async |c| {
                script
                    .key(&key)
                    .arg(interval_us.round() as i64)
                    .arg(tolerance_us.round() as i64)
                    .arg(wanted)
                    .invoke_async(c)
                    .await
            })
            .await?;
        if granted > 0 {
            let granted = u32::try_from(granted).unwrap_or(1);
            *self.left.lock().await += granted - 1;
            Ok(Take::Granted(granted))
        } else {
            Ok(Take::Wait(Duration::from_micros(
                u64::try_from(wait_us).unwrap_or(1000).max(1),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_is_about_fifty_milliseconds_of_the_fleet_rate() {
        assert_eq!(chunk(1.0), 1);
        assert_eq!(chunk(100.0), 5);
        assert_eq!(chunk(1000.0), 50);
        assert_eq!(chunk(1_000_000.0), MOST_PER_TAKE);
    }
}
