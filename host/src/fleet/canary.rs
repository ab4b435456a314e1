//! One canary for the fleet: the first worker to take the lease (`RUN:canary`, a key that lapses
//! [`LEASE_MS`] after its holder stops renewing it) runs the canary and the gate and writes the verdict
//! (`RUN:verdict`); the others wait for it. A worker that dies holding the lease loses it when it lapses,
//! and a waiting worker takes it over and runs the canary itself. Once a verdict is given the lease is
//! never taken again: the check and the take are one Lua script.

use crate::core::fleet::CanaryVerdict;

use super::store::{Store, StoreError};

/// How long the canary lease lasts without being renewed.
pub const LEASE_MS: u64 = 10_000;

/// Renew the lease only while this worker holds it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Let the lease go only while this worker holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

fn keys(store: &Store, run: &str) -> (String, String) {
    let url = store.url();
    (url.key(&format!("{run}:canary")), url.key(&format!("{run}:verdict")))
}

/// What [`try_lease`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// No verdict, nobody held the lease: this worker now holds it and runs the canary.
    Taken,
    /// No verdict, and another worker holds the lease.
    HeldElsewhere,
    /// The verdict is given already: nobody runs the canary again (read it with [`verdict`]).
    Decided,
}

/// Take the lease unless a verdict is given or another worker holds it, in one step: a worker that read
/// "no verdict" just before the canary's worker published its verdict and let the lease go must not take
/// the free lease and run the canary a second time.
const TAKE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 2
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
";

/// Take the lease if there is no verdict yet and nobody holds it.
pub async fn try_lease(store: &Store, run: &str, worker: &str) -> Result<LeaseAttempt, StoreError> {
    let (lease, verdict) = keys(store, run);
    let found: i64 = store
        .call(async |c| {
            redis::Script::new(TAKE)
                .key(&lease)
                .key(&verdict)
                .arg(worker)
                .arg(LEASE_MS)
                .invoke_async(c)
                .await
        })
        .await?;
    Ok(match found {
        1 => LeaseAttempt::Taken,
        2 => LeaseAttempt::Decided,
        _ => LeaseAttempt::HeldElsewhere,
    })
}

/// Renew the lease this worker holds.
pub async fn renew(store: &Store, run: &str, worker: &str) -> Result<(), StoreError> {
    let (lease, _) = keys(store, run);
    store
        .call(async |c| {
            redis::Script::new(RENEW)
                .key(&lease)
                .arg(worker)
                .arg(LEASE_MS)
                .invoke_async::<i64>(c)
                .await
        })
        .await
        .map(|_| ())
}

/// Let go of the lease this worker holds.
pub async fn release(store: &Store, run: &str, worker: &str) -> Result<(), StoreError> {
    let (lease, _) = keys(store, run);
    store
        .call(async |c| {
            redis::Script::new(RELEASE)
                .key(&lease)
                .arg(worker)
                .invoke_async::<i64>(c)
                .await
        })
        .await
        .map(|_| ())
}

/// Write the verdict (kept a day) and let go of the lease.
pub async fn publish(store: &Store, run: &str, worker: &str, verdict: &CanaryVerdict) -> Result<(), StoreError> {
    let (_, key) = keys(store, run);
    let text = match verdict {
        CanaryVerdict::Passed => "passed".to_owned(),
        CanaryVerdict::Failed(why) => format!("failed\n{why}"),
    };
    store
        .call(async |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&text)
                .arg("EX")
                .arg(86_400)
                .query_async::<()>(c)
                .await
        })
        .await?;
    release(store, run, worker).await
}

/// The verdict, once there is one.
pub async fn verdict(store: &Store, run: &str) -> Result<Option<CanaryVerdict>, StoreError> {
    let (_, key) = keys(store, run);
    let text: Option<String> = store
        .call(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
        .await?;
    Ok(text.map(|t| match t.split_once('\n') {
        Some(("failed", why)) => CanaryVerdict::Failed(why.to_owned()),
        _ if t == "passed" => CanaryVerdict::Passed,
        _ => CanaryVerdict::Failed(format!("unreadable verdict {t:?}")),
    }))
}
