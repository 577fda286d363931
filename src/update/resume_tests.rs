use super::*;

fn facts(booted: &str, rev: Option<&str>, try_: Option<&str>, try_status: Option<Status>) -> Facts {
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

mod queue_and_interrupted {
    use crate::update::progress::{Progress, Status};
    use crate::update::{interrupted, queue, Queue};

    fn p(status: Status, retries: u32) -> Progress {
        Progress {
            retries,
            ..Progress::new(status, "")
        }
    }

    #[test]
    fn a_fresh_upload_is_queued_without_a_retry_and_a_resumed_one_counts_one() {
        assert_eq!(
            queue(Some(&p(Status::New, 0)), 10),
            Queue::Proceed { retries: 0 }
        );
        assert_eq!(queue(None, 10), Queue::Proceed { retries: 0 });
        assert_eq!(
            queue(Some(&p(Status::Queued, 0)), 10),
            Queue::Proceed { retries: 1 }
        );
    }

    #[test]
    fn every_final_status_is_left_as_it_is() {
        for s in [Status::Done, Status::Updated, Status::Wontgo, Status::Error] {
            assert_eq!(queue(Some(&p(s, 3)), 10), Queue::Final(s));
        }
    }

    #[test]
    fn retries_reaching_the_maximum_refuse() {
        assert_eq!(
            queue(Some(&p(Status::Queued, 8)), 10),
            Queue::Proceed { retries: 9 }
        );
        assert_eq!(
            queue(Some(&p(Status::Queued, 9)), 10),
            Queue::TooManyRetries { retries: 10 }
        );
        assert_eq!(
            queue(Some(&p(Status::Inprogress, u32::MAX)), 10),
            Queue::TooManyRetries { retries: u32::MAX }
        );
    }

    #[test]
    fn only_unowned_mid_processing_updates_are_interrupted() {
        use Status::*;
        for s in [Queued, Downloading, Inprogress, Testing] {
            assert!(interrupted(s, false, false), "{s:?}");
            // the bootloader tries pv_try, the booted one runs its gates: both are owned
            assert!(!interrupted(s, true, false), "{s:?}");
            assert!(!interrupted(s, false, true), "{s:?}");
        }
        for s in [New, Updated, Done, Wontgo, Error] {
            assert!(!interrupted(s, false, false), "{s:?}");
        }
    }
}
