//! Rate limiting for the forwarder: a governor token bucket, optionally ramped from a starting rate to the
//! target rate over a period.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A rate in messages per second, parsed from `50/s`, `3000/m` or `10/h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate(pub f64);

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a rate; expected e.g. 50/s, 3000/m or 10/h");
        let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let n: f64 = n.trim().parse().map_err(|_| bad())?;
        let per_second = match unit.trim() {
            "s" | "sec" | "second" => n,
            "m" | "min" | "minute" => n / 60.0,
            "h" | "hour" => n / 3600.0,
            _ => return Err(bad()),
        };
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(format!("{text:?}: the rate must be more than zero"));
        }
        Ok(Rate(per_second))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 >= 1.0 {
            write!(f, "{}/s", (self.0 * 100.0).round() / 100.0)
        } else {
            write!(f, "{}/m", (self.0 * 60.0 * 100.0).round() / 100.0)
        }
    }
}

/// How fast the forwarder may go.
#[derive(Clone, Debug, PartialEq)]
pub struct RatePlan {
    /// The target rate.
    pub rate: Rate,
    /// Messages that may go at once after an idle period.
    pub burst: u32,
    /// Start at this rate and reach `rate` linearly over the duration.
    pub ramp: Option<(Rate, Duration)>,
}

/// Paces messages according to a [`RatePlan`].
pub struct Pacer {
    plan: RatePlan,
    started: Instant,
    current: f64,
    limiter: DefaultDirectRateLimiter,
    last_update: Instant,
}

impl Pacer {
    /// A pacer starting now.
    pub fn new(plan: RatePlan) -> Self {
        let now = Instant::now();
        let current = plan.ramp.map_or(plan.rate.0, |(from, _)| from.0);
        let limiter = limiter(current, plan.burst);
        Self {
            plan,
            started: now,
            current,
            limiter,
            last_update: now,
        }
    }

    /// The rate in force now.
    pub fn current_rate(&self) -> Rate {
        Rate(self.current)
    }

    /// Wait until one more message may go.
    pub async fn ready(&mut self) {
        self.update_ramp();
        self.limiter.until_ready().await;
    }

    fn update_ramp(&mut self) {
        let Some((from, over)) = self.plan.ramp else {
            return;
        };
        if self.last_update.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last_update = Instant::now();
        let progress = (self.started.elapsed().as_secs_f64() / over.as_secs_f64().max(1e-9)).min(1.0);
        let target = from.0 + (self.plan.rate.0 - from.0) * progress;
        if (target - self.current).abs() > self.current * 0.01 {
            self.current = target;
            self.limiter = limiter(target, self.plan.burst);
        }
    }
}

fn limiter(per_second: f64, burst: u32) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period).map_or_else(|| Quota::per_second(NonZeroU32::MAX), |q| q.allow_burst(burst));
    RateLimiter::direct(quota)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!("50/s".parse::<Rate>().unwrap(), Rate(50.0));
        assert_eq!("120/m".parse::<Rate>().unwrap(), Rate(2.0));
        assert!("0/s".parse::<Rate>().unwrap_err().contains("more than zero"));
        assert!("fast".parse::<Rate>().unwrap_err().contains("50/s"));
        assert_eq!(Rate(0.5).to_string(), "30/m");
    }

    #[tokio::test]
    async fn paces_to_the_rate_after_the_burst() {
        let mut pacer = Pacer::new(RatePlan {
            rate: Rate(100.0),
            burst: 1,
            ramp: None,
        });
        let started = Instant::now();
        for _ in 0..21 {
            pacer.ready().await;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
    }
}
