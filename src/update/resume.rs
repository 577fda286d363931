//! The boot-time resume decision (upstream's try-boot contract, pv:`pv_update_resume`) as a pure function of
//! persisted facts. The effects are applied by [`super::boot`].
use super::progress::Status;

/// What is known at boot, all of it read from storage or the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The revision the bootloader booted (`pv_rev=` of the command line).
    pub booted: String,
    /// `pv_rev` in the boot env: the last committed revision.
    pub env_rev: Option<String>,
    /// `pv_try` in the boot env: an update is in progress.
    pub env_try: Option<String>,
    /// Progress status of the `pv_try` revision.
    pub try_status: Option<Status>,
    /// Progress status of the booted revision.
    pub booted_status: Option<Status>,
    /// `.pv/done` of the booted revision exists.
    pub booted_done: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Nothing pending: run the booted revision.
    Run,
    /// Booted into `pv_try`: INPROGRESS "Trying new revision", then the health gates.
    Try,
    /// Booted into `pv_try` whose update already failed: reboot so the bootloader falls back.
    Rollback,
    /// Fell back after a failure that is already recorded: clear `pv_try`.
    ClearTry,
    /// Fell back without a recorded outcome (a crash or power cut while trying): record
    /// ERROR "Unexpected rollback" for the try revision, then clear `pv_try`.
    RecordUnexpectedRollback,
    /// First boot of the factory revision 0: DONE "Factory revision" and `.pv/done`.
    Factory,
    /// Booted the committed revision whose commit was cut short after the boot env was
    /// written (the commit point): finish the bookkeeping, DONE and `.pv/done`.
    FinishCommit,
    /// Booted into `pv_try` already marked DONE (the boot env write of the commit was lost):
    /// commit again.
    Recommit,
}

pub fn decide(f: &Facts) -> Resume {
    match &f.env_try {
        Some(t) if !t.is_empty() => {
            let trying = &f.booted == t;
            match (trying, f.try_status) {
                (true, Some(s)) if s.is_failed() => Resume::Rollback,
                (true, Some(Status::Done)) => Resume::Recommit,
                (true, _) => Resume::Try,
                (false, Some(s)) if s.is_failed() => Resume::ClearTry,
                // upstream: "progress DONE -> nothing to do"
                (false, Some(Status::Done)) => Resume::Run,
                (false, _) => Resume::RecordUnexpectedRollback,
            }
        }
        _ => {
            let committed = f.env_rev.as_deref() == Some(f.booted.as_str());
            let done = f.booted_done && f.booted_status == Some(Status::Done);
            if f.booted == "0" && !done {
                Resume::Factory
            } else if committed && !done && f.booted_status.is_some_and(|s| !s.is_failed()) {
                Resume::FinishCommit
            } else {
                Resume::Run
            }
        }
    }
}

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;
