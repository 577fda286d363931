//! Typed, owned timers. A deadline names what it is for; a container's timers carry the run
//! that armed them. Runs are numbered over the device's whole life and never reused, so a
//! timer of a run that ended can never act on the next one -- and the run's end cancels them
//! anyway (a STABLE timer of a crashed run must not mark its restart stable early).
use crate::event_loop::{DeadlineId, EventLoop};
use std::collections::BTreeMap;

/// One start of one container: armed by the start, ended by its exit.
pub type Run = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Upstream's WAIT tick: re-evaluate, keep the log directory in budget.
    Tick,
    /// The run's status goal must be reached by then (its group's timeout).
    Goal(Run),
    /// The run has stayed up `stable_timeout` after reaching its goal.
    Stable(Run),
    /// Auto-recovery's delay after the run ended.
    Retry(Run),
    /// The stop grace of the run passed: kill it.
    Grace(Run),
    /// `PV_UPDATER_COMMIT_DELAY` of the update on probation passed.
    Commit,
    /// A system hook ran too long.
    Hook,
    /// Managed daemon `i` ended: spawn it again (upstream's 5 s respawn delay).
    Respawn(u32),
    /// The daemons SIGTERMed as the device ends had their grace: kill them.
    DaemonGrace,
    /// `PH_UPDATER_NETWORK_TIMEOUT` of a remote revision on probation passed.
    Network,
}

const KIND_SHIFT: u32 = 32;
/// pv-ctrl owns the tokens `CTRL..CTRL + connections` for its fds and deadlines.
pub const CTRL: u64 = 15 << KIND_SHIFT;
/// The managed daemons' stdout and stderr pipes: `DAEMON_LOG + serial`.
pub const DAEMON_LOG: u64 = 14 << KIND_SHIFT;
const LOW: u64 = (1 << KIND_SHIFT) - 1;

impl Timer {
    pub fn token(self) -> u64 {
        let (kind, run) = match self {
            Timer::Tick => (1, 0),
            Timer::Goal(r) => (2, r),
            Timer::Stable(r) => (3, r),
            Timer::Retry(r) => (4, r),
            Timer::Grace(r) => (5, r),
            Timer::Commit => (6, 0),
            Timer::Hook => (7, 0),
            Timer::Respawn(i) => (8, i),
            Timer::DaemonGrace => (9, 0),
            Timer::Network => (10, 0),
        };
        kind << KIND_SHIFT | u64::from(run)
    }

    pub fn from_token(t: u64) -> Option<Timer> {
        let run = (t & LOW) as Run;
        Some(match t >> KIND_SHIFT {
            1 => Timer::Tick,
            2 => Timer::Goal(run),
            3 => Timer::Stable(run),
            4 => Timer::Retry(run),
            5 => Timer::Grace(run),
            6 => Timer::Commit,
            7 => Timer::Hook,
            8 => Timer::Respawn(run),
            9 => Timer::DaemonGrace,
            10 => Timer::Network,
            _ => return None,
        })
    }
}

/// Is this token one of pv-ctrl's?
pub fn is_ctrl(token: u64) -> bool {
    token & !LOW == CTRL
}

/// Is this token a daemon's output pipe?
pub fn is_daemon_log(token: u64) -> bool {
    token & !LOW == DAEMON_LOG
}

/// The armed timers and their loop deadlines, so an owner can cancel what it armed.
#[derive(Default)]
pub struct Timers {
    armed: BTreeMap<Timer, DeadlineId>,
}

impl Timers {
    /// Arms `t` `after_ms` from now; an armed `t` is moved, never doubled.
    pub fn arm(&mut self, lp: &mut EventLoop, t: Timer, after_ms: u64) {
        self.cancel(lp, t);
        let id = lp.after(after_ms, t.token());
        self.armed.insert(t, id);
    }

    pub fn cancel(&mut self, lp: &mut EventLoop, t: Timer) {
        if let Some(id) = self.armed.remove(&t) {
            lp.cancel(id);
        }
    }

    /// A deadline fired: its timer if it was still armed (else it was cancelled meanwhile).
    pub fn fired(&mut self, token: u64) -> Option<Timer> {
        let t = Timer::from_token(token)?;
        self.armed.remove(&t).map(|_| t)
    }

    pub fn is_armed(&self, t: Timer) -> bool {
        self.armed.contains_key(&t)
    }

    pub fn len(&self) -> usize {
        self.armed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}
