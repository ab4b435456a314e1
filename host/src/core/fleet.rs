//! What the workers of one fleet share, as the pipeline sees it: one rate limit, one canary, and a hold on
//! forwarding while the coordination store cannot be reached. The fleet module builds it (on Redis); the
//! pipeline only calls these methods.

use async_trait::async_trait;

/// Who runs the canary of a fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryRole {
    /// This worker holds the canary lease: it runs the canary and the gate and publishes the verdict.
    Runs,
    /// Another worker runs it (or already ran it): wait for its verdict.
    Waits,
}

/// The verdict of a fleet's canary gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanaryVerdict {
    /// The gate let the run go on: every worker forwards.
    Passed,
    /// The gate said no (why): every worker stops.
    Failed(String),
}

/// One worker's link to its fleet.
#[async_trait]
pub trait FleetLink: Send + Sync {
    /// Wait until one more message may go under the fleet's shared rate of `per_second` messages per second
    /// (all workers together). While the coordination store cannot be reached, this waits for it.
    async fn take(&self, per_second: f64);

    /// Wait while forwarding is held because the coordination store cannot be reached (returns at once when
    /// it can).
    async fn reachable(&self);

    /// Who runs the canary: called once, before the first replay goes out.
    async fn canary_role(&self) -> CanaryRole;

    /// Keep the canary lease alive while this worker runs the canary (called about once a second).
    async fn hold_canary(&self);

    /// Publish this worker's canary verdict to the fleet (and let the lease go).
    async fn publish_verdict(&self, verdict: &CanaryVerdict);

    /// This worker stops before its canary gave a verdict: let the lease go, so another worker runs it.
    async fn give_up_canary(&self);

    /// Wait for the verdict of the worker running the canary. If that worker dies before it gives one, its
    /// lease lapses and this worker may be asked to run the canary itself: [`VerdictOrLease::Lease`].
    async fn wait_verdict(&self) -> VerdictOrLease;
}

/// What waiting for a fleet's canary verdict gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerdictOrLease {
    /// The verdict.
    Verdict(CanaryVerdict),
    /// The worker running the canary went away; this worker took the lease and runs it.
    Lease,
}
