//! Updates: the progress bookkeeping and the steps of the try-boot protocol (reference 5.4 step
//! 5 and 5.5), written so that a crash at any step leaves a device that boots the old or the
//! new revision. The order of the durable writes is the design:
//!
//! - install: objects (verified, durable) -> `.pvr/json` -> checkout (durable) -> verify ->
//!   progress INPROGRESS -> `pv_try=<rev>` (the boot env names the revision only once its
//!   trail is complete);
//! - commit: `pv_rev=<rev>` and `pv_try` cleared in one boot-env write (the commit point) ->
//!   progress DONE -> `.pv/done`; a boot that finds the env committed but the rest missing
//!   finishes it ([`resume::Resume::FinishCommit`]).
pub mod progress;
pub mod resume;

use crate::bootloader::Bootloader;
use crate::pvlog;
use crate::state::State;
use crate::storage::trail::Check;
use crate::storage::{self, Storage};
use progress::{msg, Progress, Status};
use resume::{Facts, Resume};
use std::fmt;

#[derive(Debug)]
pub enum Error {
    Storage(storage::Error),
    Boot(crate::bootloader::Error),
    /// The state JSON of a revision does not parse or validate.
    State {
        rev: String,
        errors: Vec<String>,
    },
    /// An object the state names is not in the object store.
    MissingObject {
        key: String,
        sha: String,
    },
    /// A trail that does not match its state.
    Verify {
        rev: String,
        problems: Vec<String>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Storage(e) => write!(f, "{e}"),
            Error::Boot(e) => write!(f, "{e}"),
            Error::State { rev, errors } => {
                write!(f, "revision {rev}: bad state JSON: {}", errors.join("; "))
            }
            Error::MissingObject { key, sha } => {
                write!(f, "object {sha} of {key} is not in the object store")
            }
            Error::Verify { rev, problems } => {
                write!(f, "revision {rev} does not verify: {}", problems.join("; "))
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<storage::Error> for Error {
    fn from(e: storage::Error) -> Error {
        Error::Storage(e)
    }
}
impl From<crate::bootloader::Error> for Error {
    fn from(e: crate::bootloader::Error) -> Error {
        Error::Boot(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Reads and parses the state JSON of `rev`.
pub fn load_state(st: &Storage, rev: &str) -> Result<State> {
    let raw = st.read_state(rev)?;
    State::parse(&raw).map_err(|errs| Error::State {
        rev: rev.to_string(),
        errors: errs.iter().map(|e| e.to_string()).collect(),
    })
}

/// Stores a new revision's state JSON (a local step upload, 5.7 step 2): validated first,
/// kept byte-exact, progress NEW "Update ready to be run".
pub fn stage(st: &Storage, rev: &str, raw: &[u8]) -> Result<State> {
    let state = State::parse(raw).map_err(|errs| Error::State {
        rev: rev.to_string(),
        errors: errs.iter().map(|e| e.to_string()).collect(),
    })?;
    st.install_state(rev, raw)?;
    st.write_progress(rev, &Progress::new(Status::New, msg::READY_TO_RUN))?;
    Ok(state)
}

/// Installs a staged revision for a reboot transition (5.4 step 5): every object must be in
/// the store; the trail is checked out, verified, marked INPROGRESS "Rebooting", and only
/// then named by `pv_try`.
pub fn install(st: &Storage, bl: &dyn Bootloader, rev: &str, state: &State) -> Result<()> {
    for (key, sha) in state.objects() {
        if !st.has_object(sha)? {
            return Err(Error::MissingObject {
                key: key.to_string(),
                sha: sha.to_string(),
            });
        }
    }
    st.checkout(rev, state)?;
    verify(st, rev, state, Check::Rehash)?;
    let mut p = st
        .read_progress(rev)
        .unwrap_or_else(|| Progress::new(Status::New, msg::READY_TO_RUN));
    p = Progress {
        status: Status::Inprogress,
        msg: msg::REBOOTING.into(),
        progress: Status::Inprogress.percent(),
        ..p
    };
    st.write_progress(rev, &p)?;
    bl.set_try(st.fs, rev)?;
    Ok(())
}

/// Commits the revision the device is trying (5.5 finalize, reboot path).
pub fn commit(st: &Storage, bl: &dyn Bootloader, rev: &str) -> Result<()> {
    bl.commit(st.fs, rev)?;
    finish_commit(st, rev)
}

fn finish_commit(st: &Storage, rev: &str) -> Result<()> {
    let retries = st.read_progress(rev).map_or(0, |p| p.retries);
    st.write_progress(
        rev,
        &Progress {
            retries,
            ..Progress::new(Status::Done, msg::DONE)
        },
    )?;
    st.mark_done(rev)?;
    Ok(())
}

/// Records a failed update (ERROR with its message); the caller then reboots so the
/// bootloader falls back.
pub fn fail(st: &Storage, rev: &str, message: &str) -> Result<()> {
    let retries = st.read_progress(rev).map_or(0, |p| p.retries);
    st.write_progress(
        rev,
        &Progress {
            retries,
            ..Progress::new(Status::Error, message)
        },
    )?;
    Ok(())
}

pub fn verify(st: &Storage, rev: &str, state: &State, check: Check) -> Result<()> {
    st.verify_trail(rev, state, check)
        .map_err(|p| Error::Verify {
            rev: rev.to_string(),
            problems: p.iter().map(|e| e.to_string()).collect(),
        })
}

/// What the boot concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Boot {
    /// Run the booted revision; `trying` when it is an update on probation.
    Run { trying: bool },
    /// Reboot now: the bootloader will fall back to `pv_rev`.
    Rollback,
}

/// Boot-time recovery and resume (5.5): clears crash leftovers, applies the resume decision,
/// then loads, checks out (repairs) and verifies the booted revision. Any failure of the revision being tried is
/// recorded and becomes a rollback; a committed revision that does not verify is an error
/// (the caller can only reboot and hope, as upstream does).
pub fn boot(st: &Storage, bl: &dyn Bootloader, booted: &str, check: Check) -> Result<Boot> {
    st.remove_stale_tmp()?;
    let env = bl.read(st.fs)?;
    let facts = Facts {
        booted: booted.to_string(),
        env_rev: env.rev.clone(),
        env_try: env.try_rev.clone(),
        try_status: env
            .try_rev
            .as_deref()
            .and_then(|t| st.read_progress(t))
            .map(|p| p.status),
        booted_status: st.read_progress(booted).map(|p| p.status),
        booted_done: st.is_done(booted),
    };
    let decision = resume::decide(&facts);
    pvlog!(
        Info,
        "update",
        "booted revision {booted}, pv_rev={} pv_try={}: {decision:?}",
        env.rev.as_deref().unwrap_or("(unset)"),
        env.try_rev.as_deref().unwrap_or("(unset)")
    );
    let trying = match decision {
        Resume::Rollback => return Ok(Boot::Rollback),
        Resume::ClearTry => {
            bl.clear_try(st.fs)?;
            false
        }
        Resume::RecordUnexpectedRollback => {
            if let Some(t) = env.try_rev.as_deref() {
                fail(st, t, msg::UNEXPECTED_ROLLBACK)?;
            }
            bl.clear_try(st.fs)?;
            false
        }
        Resume::Factory | Resume::FinishCommit | Resume::Run => false,
        Resume::Try | Resume::Recommit => true,
    };
    let state = match load_state(st, booted) {
        Ok(s) => s,
        Err(e) if trying => {
            pvlog!(Error, "update", "{e}");
            fail(st, booted, msg::BAD_STATE)?;
            return Ok(Boot::Rollback);
        }
        Err(e) => return Err(e),
    };
    // Checkout first: it re-creates missing links and files (a storage may hold only
    // objects/ and .pvr/json), then everything is verified.
    let checked = st
        .checkout(booted, &state)
        .map_err(Error::from)
        .and_then(|()| verify(st, booted, &state, check));
    if let Err(e) = checked {
        if trying {
            pvlog!(Error, "update", "{e}");
            fail(st, booted, msg::BAD_OBJECT)?;
            return Ok(Boot::Rollback);
        }
        return Err(e);
    }
    match decision {
        Resume::Factory => {
            st.write_progress(booted, &Progress::new(Status::Done, msg::FACTORY))?;
            st.mark_done(booted)?;
        }
        Resume::FinishCommit => finish_commit(st, booted)?,
        Resume::Recommit => {
            commit(st, bl, booted)?;
            return Ok(Boot::Run { trying: false });
        }
        Resume::Try => {
            let retries = st.read_progress(booted).map_or(0, |p| p.retries);
            st.write_progress(
                booted,
                &Progress {
                    retries,
                    ..Progress::new(Status::Inprogress, msg::TRYING)
                },
            )?;
        }
        _ => {}
    }
    st.set_current(booted)?;
    Ok(Boot::Run { trying })
}
