//! Supervision decisions as data (upstream's container lifecycle and auto-recovery): container statuses, status goals and
//! group chaining, auto-recovery. Everything here is pure; the runtime applies the actions.
pub mod recovery;

use crate::state::StatusGoal;

/// Container status, in upstream's numeric order: group and revision status are the *minimum*
/// over members, so the order is part of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    None,
    Installed,
    Mounted,
    Blocked,
    Starting,
    Started,
    Ready,
    Recovering,
    Stopping,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "NONE",
            Status::Installed => "INSTALLED",
            Status::Mounted => "MOUNTED",
            Status::Blocked => "BLOCKED",
            Status::Starting => "STARTING",
            Status::Started => "STARTED",
            Status::Ready => "READY",
            Status::Recovering => "RECOVERING",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
        }
    }
    pub fn of_goal(goal: StatusGoal) -> Status {
        match goal {
            StatusGoal::Mounted => Status::Mounted,
            StatusGoal::Started => Status::Started,
            StatusGoal::Ready => Status::Ready,
        }
    }
}

/// Outcome of checking one container (or group) against its goal (upstream's status goals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    Achieved,
    Unachieved,
    TimedOut,
    /// Past its goal (e.g. STOPPED after STARTED): does not block anyone.
    NotBlocking,
}

/// pv:`pv_platform_check_goal`. `timer_expired`: the group timeout armed at start has passed.
pub fn check_goal(current: Status, goal: StatusGoal, timer_expired: bool) -> Goal {
    let g = Status::of_goal(goal);
    if current == g {
        Goal::Achieved
    } else if current < Status::Starting {
        Goal::Unachieved
    } else if current > g {
        Goal::NotBlocking
    } else if timer_expired {
        Goal::TimedOut
    } else {
        Goal::Unachieved
    }
}

/// A group's goal from its members' (any unachieved member makes the group unachieved;
/// otherwise a timed-out member makes it timed out).
pub fn group_goal(members: &[Goal]) -> Goal {
    if members.contains(&Goal::Unachieved) {
        Goal::Unachieved
    } else if members.contains(&Goal::TimedOut) {
        Goal::TimedOut
    } else {
        Goal::Achieved
    }
}

/// Group status (as upstream computes it): READY when every member achieved its goal, else the
/// lowest current status among those that have not.
pub fn group_status(members: &[(Status, Goal)]) -> Status {
    members
        .iter()
        .filter(|(_, g)| *g != Goal::Achieved && *g != Goal::NotBlocking)
        .map(|(s, _)| *s)
        .min()
        .unwrap_or(Status::Ready)
}

/// Revision status: the minimum over its groups (published as device-meta `pantavisor.status`).
pub fn revision_status(groups: &[Status]) -> Status {
    groups.iter().copied().min().unwrap_or(Status::Ready)
}

/// May a member of group number `index` start? Every earlier group must be ACHIEVED or TIMEDOUT
/// (upstream's start ordering; a timeout still unblocks at boot, the update gate is separate).
pub fn may_start(earlier_groups: &[Goal]) -> bool {
    earlier_groups
        .iter()
        .all(|g| matches!(g, Goal::Achieved | Goal::TimedOut | Goal::NotBlocking))
}

/// What happened to a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The evaluation tick found every earlier group done.
    Unblocked,
    /// The evaluation tick found an earlier group not done.
    Blocked,
    /// Its volumes are mounted.
    Mounted,
    /// The init exec'd.
    Execed,
    /// A process in the container signalled `ready` (upstream's READY signal).
    SignalReady,
    /// The init exited (or was killed).
    Exited,
    /// Stop asked (API, update, shutdown).
    StopRequested,
    /// The stop grace period passed.
    GraceExpired,
    /// The auto-recovery retry delay passed.
    RetryTimer,
    /// Start asked through the API, or a stop the API asked to end in a restart ended.
    StartRequested,
    /// Mounting its volumes, loading its drivers or spawning its init failed: counts as an
    /// exit for auto-recovery.
    StartFailed,
    /// Auto-recovery decided to restart it at once.
    RetryNow,
    /// Auto-recovery armed a retry (or backoff) delay.
    RetryLater,
}

/// What the runtime must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing; the status does not change.
    Ignore,
    /// Set the new status; no effect besides.
    Become(Status),
    /// Mount its volumes (then `Mounted` follows).
    Mount,
    /// Spawn the init (then `Execed` or `Exited` follows); status STARTING.
    Spawn,
    /// Send the halt signal and arm the grace timer; status STOPPING.
    Halt,
    /// Kill the cgroup.
    Kill,
    /// Run the auto-recovery decision ([`recovery::on_exit`]).
    Recover,
    /// Unmount its volumes; status STOPPED.
    Unmount,
    /// Back through the normal start path; status INSTALLED.
    Restart,
}

/// The status machine as a table (s6's shape): state x event -> action. `goal_is_mounted`:
/// a MOUNTED-goal container stops after its volumes are mounted; `goal_is_ready`: only those
/// accept the ready signal (others get a 500 from pv-ctrl, as upstream).
pub fn next(status: Status, event: Event, goal: StatusGoal) -> Action {
    use Action::*;
    use Event as E;
    use Status as S;
    match (status, event) {
        (S::None | S::Installed | S::Blocked, E::Blocked) => Become(S::Blocked),
        (S::None | S::Installed | S::Blocked, E::Unblocked) => Mount,
        (S::Installed | S::Blocked, E::Mounted) if goal == StatusGoal::Mounted => {
            Become(S::Mounted)
        }
        (S::Installed | S::Blocked, E::Mounted) => Spawn,
        (S::Starting, E::Execed) => Become(S::Started),
        (S::Started, E::SignalReady) if goal == StatusGoal::Ready => Become(S::Ready),
        (S::Starting | S::Started | S::Ready, E::Exited) => Recover,
        (S::None | S::Installed | S::Blocked | S::Starting, E::StartFailed) => Recover,
        (S::Stopped, E::RetryNow) => Restart,
        (S::Stopped, E::RetryLater) => Become(S::Recovering),
        (S::Starting | S::Started | S::Ready, E::StopRequested) => Halt,
        (S::Mounted | S::Installed | S::Blocked | S::Recovering, E::StopRequested) => Unmount,
        (S::Stopping, E::GraceExpired) => Kill,
        (S::Stopping, E::Exited) => Unmount,
        (S::Recovering, E::RetryTimer) => Restart,
        (S::Stopped | S::Recovering, E::StartRequested) => Restart,
        _ => Ignore,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
