//! The boot-time resume decision (reference 5.5, pv:`pv_update_resume`) as a pure function of
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
mod tests {
    use super::*;

    fn facts(
        booted: &str,
        rev: Option<&str>,
        try_: Option<&str>,
        try_status: Option<Status>,
    ) -> Facts {
        Facts {
            booted: booted.into(),
            env_rev: rev.map(Into::into),
            env_try: try_.map(Into::into),
            try_status,
            booted_status: Some(Status::Done),
            booted_done: true,
        }
    }

    // One test per row of reference 5.5's resume logic, plus the rows our commit order adds.

    #[test]
    fn trying_and_failed_rolls_back() {
        assert_eq!(
            decide(&facts("2", Some("1"), Some("2"), Some(Status::Error))),
            Resume::Rollback
        );
        assert_eq!(
            decide(&facts("2", Some("1"), Some("2"), Some(Status::Wontgo))),
            Resume::Rollback
        );
    }

    #[test]
    fn fell_back_and_failed_clears_try() {
        assert_eq!(
            decide(&facts("1", Some("1"), Some("2"), Some(Status::Error))),
            Resume::ClearTry
        );
    }

    #[test]
    fn not_trying_and_done_is_nothing_to_do() {
        assert_eq!(
            decide(&facts("1", Some("1"), Some("2"), Some(Status::Done))),
            Resume::Run
        );
    }

    #[test]
    fn fell_back_without_outcome_is_unexpected_rollback() {
        for s in [
            None,
            Some(Status::Inprogress),
            Some(Status::Testing),
            Some(Status::Updated),
            Some(Status::New),
        ] {
            assert_eq!(
                decide(&facts("1", Some("1"), Some("2"), s)),
                Resume::RecordUnexpectedRollback,
                "{s:?}"
            );
        }
    }

    #[test]
    fn trying_otherwise_tries() {
        for s in [
            None,
            Some(Status::Inprogress),
            Some(Status::Testing),
            Some(Status::Updated),
        ] {
            assert_eq!(
                decide(&facts("2", Some("1"), Some("2"), s)),
                Resume::Try,
                "{s:?}"
            );
        }
    }

    #[test]
    fn trying_a_done_revision_commits_again() {
        assert_eq!(
            decide(&facts("2", Some("1"), Some("2"), Some(Status::Done))),
            Resume::Recommit
        );
    }

    #[test]
    fn factory_first_boot() {
        let mut f = facts("0", Some("0"), None, None);
        f.booted_status = None;
        f.booted_done = false;
        assert_eq!(decide(&f), Resume::Factory);
        f.booted_status = Some(Status::Done);
        f.booted_done = true;
        assert_eq!(decide(&f), Resume::Run);
    }

    #[test]
    fn committed_but_bookkeeping_cut_short_finishes_commit() {
        let mut f = facts("2", Some("2"), None, None);
        f.booted_status = Some(Status::Testing);
        f.booted_done = false;
        assert_eq!(decide(&f), Resume::FinishCommit);
        f.booted_status = Some(Status::Done);
        assert_eq!(
            decide(&f),
            Resume::FinishCommit,
            "progress DONE but .pv/done missing"
        );
    }

    #[test]
    fn plain_boot_runs() {
        assert_eq!(decide(&facts("1", Some("1"), None, None)), Resume::Run);
        // empty pv_try reads as unset
        assert_eq!(decide(&facts("1", Some("1"), Some(""), None)), Resume::Run);
        // a revision booted by hand that is not the committed one: nothing to record
        let mut f = facts("5", Some("1"), None, None);
        f.booted_status = None;
        f.booted_done = false;
        assert_eq!(decide(&f), Resume::Run);
    }
}
