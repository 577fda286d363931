//! Upstream's auto-recovery algorithm as a pure function of the container's policy and counters.
use crate::state::{AutoRecovery, BackoffPolicy, RecoveryPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No recovery: during an update roll back, in steady state reboot the device.
    Error,
    /// Restart after `delay` seconds (0 = at once, status INSTALLED; else RECOVERING).
    Retry { delay: u64 },
    /// `backoff_policy: never` with retries exhausted: leave it STOPPED, recovery_failed.
    GiveUp,
    /// A duration `backoff_policy` with retries exhausted: counter reset, try again after it.
    Wait { delay: u64 },
}

/// The counters auto-recovery keeps per container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub retries: u32,
}

/// Delay before retry number `n` (1-based): `retry_delay * factor^(n-1)`, truncated to whole
/// seconds; the factor only counts when above 1.0. Saturates instead of overflowing.
pub fn backoff_delay(ar: &AutoRecovery, n: u32) -> u64 {
    let base = ar.retry_delay as f64;
    let d = if ar.backoff_factor > 1.0 {
        base * ar
            .backoff_factor
            .powi(n.saturating_sub(1).min(i32::MAX as u32) as i32)
    } else {
        base
    };
    if d.is_finite() && d < u64::MAX as f64 {
        d as u64
    } else {
        u64::MAX
    }
}

/// Upstream's auto-recovery: what to do when a STARTED/READY container exits (or a STOPPED one was
/// not stopped by the user). `ran_for`: seconds since its last start; `update_active`: an update is
/// INPROGRESS or TESTING. Returns the decision and the new counters.
pub fn on_exit(
    ar: &AutoRecovery,
    c: Counters,
    ran_for: u64,
    update_active: bool,
) -> (Decision, Counters) {
    if !matches!(
        ar.policy,
        RecoveryPolicy::Always | RecoveryPolicy::OnFailure
    ) {
        return (Decision::Error, c);
    }
    let mut retries = c.retries;
    if ar.reset_window > 0 && ran_for > ar.reset_window as u64 {
        retries = 0;
    }
    if ar.max_retries > 0 && retries >= ar.max_retries {
        if update_active {
            return (Decision::Error, Counters { retries });
        }
        return match ar.backoff_policy {
            BackoffPolicy::Reboot => (Decision::Error, Counters { retries }),
            BackoffPolicy::Never => (Decision::GiveUp, Counters { retries }),
            BackoffPolicy::Duration(d) => (Decision::Wait { delay: d }, Counters { retries: 0 }),
        };
    }
    retries += 1;
    (
        Decision::Retry {
            delay: backoff_delay(ar, retries),
        },
        Counters { retries },
    )
}
