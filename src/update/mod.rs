//! Updates: the progress bookkeeping and the steps of the try-boot protocol (the install
//! step of an update and the try-boot contract), written so that a crash at any step leaves a device that boots the old or the
//! new revision. The order of the durable writes is the design:
//!
//! - install: objects (verified, durable) -> `.pvr/json` -> checkout (durable) -> verify ->
//!   progress INPROGRESS -> `pv_try=<rev>` (the boot env names the revision only once its
//!   trail is complete);
//! - commit: `pv_rev=<rev>` and `pv_try` cleared in one boot-env write (the commit point) ->
//!   progress DONE -> `.pv/done`; a boot that finds the env committed but the rest missing
//!   finishes it ([`resume::Resume::FinishCommit`]).
pub mod hooks;
pub mod progress;
pub mod remote;
pub mod resume;
pub mod transition;

use crate::bootloader::Bootloader;
use crate::pvlog;
use crate::pvs::Policy;
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
    /// Its signatures do not verify as the secure boot mode demands.
    Secureboot {
        rev: String,
        refused: crate::pvs::Refused,
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
            Error::Secureboot { rev, refused } => write!(f, "revision {rev}: {refused}"),
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

/// Stores a new revision's state JSON (a local step upload, 5.7 step 2): validated and its
/// signatures checked first, kept byte-exact, progress NEW "Update ready to be run".
pub fn stage(st: &Storage, rev: &str, raw: &[u8], pvs: &Policy) -> Result<State> {
    let state = State::parse(raw).map_err(|errs| Error::State {
        rev: rev.to_string(),
        errors: errs.iter().map(|e| e.to_string()).collect(),
    })?;
    signed(rev, &state, pvs)?;
    st.install_state(rev, raw)?;
    st.write_progress(rev, &Progress::new(Status::New, msg::READY_TO_RUN))?;
    Ok(state)
}

/// What a request to run a revision (LOCAL_RUN, or the resume of one a crash interrupted)
/// does, from the revision's persisted progress (5.4 step 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Queue {
    /// Already ended: nothing to do, the outcome stands (upstream re-reports it).
    Final(Status),
    /// Processed too many times: WONTGO "Max update processing retries reached".
    TooManyRetries { retries: u32 },
    /// QUEUED with this retry count; go on.
    Proceed { retries: u32 },
}

/// A local run of a fresh step (NEW) goes straight to install, as upstream's (its progress
/// ends with `retries` 0); each time processing starts again after it began (a crash
/// interrupted it) counts one retry, so a revision that keeps failing ends.
pub fn queue(p: Option<&Progress>, max_retries: u64) -> Queue {
    let began = p.is_some_and(|p| p.status != Status::New);
    let retries = p.map_or(0, |p| p.retries).saturating_add(u32::from(began));
    match p {
        Some(p) if p.status.is_final() => Queue::Final(p.status),
        _ if u64::from(retries) >= max_retries => Queue::TooManyRetries { retries },
        _ => Queue::Proceed { retries },
    }
}

/// Whether a revision's progress shows an update that was being processed (queued, fetched,
/// installed) when the device went down, and which no boot will pick up on its own: it is not
/// `pv_try` (that one the bootloader tries) nor the booted revision. Such an update is run
/// again at boot, each time counting a retry, so it ends one way or the other.
pub fn interrupted(status: Status, is_try: bool, is_booted: bool) -> bool {
    !is_try
        && !is_booted
        && matches!(
            status,
            Status::Queued | Status::Downloading | Status::Inprogress | Status::Testing
        )
}

/// Why a queued revision was refused (WONTGO, written already) or could not be processed.
#[derive(Debug)]
pub enum Refused {
    /// The update ended before install with this WONTGO message.
    Wontgo(&'static str, String),
    /// Already final: nothing was done.
    Final(Status),
}

fn progress_of(st: &Storage, rev: &str, status: Status, m: &str) -> Progress {
    let retries = st.read_progress(rev).map_or(0, |p| p.retries);
    Progress {
        retries,
        ..Progress::new(status, m)
    }
}

/// Writes a final WONTGO for `rev` (before install) and returns the refusal.
fn wontgo(st: &Storage, rev: &str, m: &'static str, why: String) -> Result<Refused> {
    pvlog!(Error, "update", "revision {rev}: {why}");
    st.write_progress(rev, &progress_of(st, rev, Status::Wontgo, m))?;
    Ok(Refused::Wontgo(m, why))
}

/// Takes a revision in for processing (5.4 step 2, 5.7 step 4): QUEUED with one more retry,
/// then its state JSON is read and validated and every object must be in the store. A
/// refusal is recorded as WONTGO with upstream's message.
pub fn admit(
    st: &Storage,
    rev: &str,
    max_retries: u64,
    pvs: &Policy,
) -> Result<std::result::Result<State, Refused>> {
    let retries = match queue(st.read_progress(rev).as_ref(), max_retries) {
        Queue::Final(s) => return Ok(Err(Refused::Final(s))),
        Queue::TooManyRetries { retries } => {
            let p = Progress {
                retries,
                ..Progress::new(Status::Wontgo, msg::MAX_RETRIES)
            };
            st.write_progress(rev, &p)?;
            return Ok(Err(Refused::Wontgo(
                msg::MAX_RETRIES,
                format!("processed {retries} times"),
            )));
        }
        Queue::Proceed { retries } => retries,
    };
    let queued = Progress {
        retries,
        ..Progress::new(
            Status::Queued,
            &progress::msg::retried(retries, max_retries),
        )
    };
    st.write_progress(rev, &queued)?;
    check(st, rev, pvs)
}

/// The checks of a revision taken in (LOCAL_RUN after [`queue`], REMOTE_RUN after the remote
/// admission): its state JSON is read and validated, its signatures checked, and every
/// object must be in the store. A refusal is recorded as WONTGO with upstream's message.
pub fn check(st: &Storage, rev: &str, pvs: &Policy) -> Result<std::result::Result<State, Refused>> {
    let raw = match st.read_state(rev) {
        Ok(r) => r,
        Err(e) => return wontgo(st, rev, msg::STATE_NOT_FOUND, e.to_string()).map(Err),
    };
    let state = match State::parse(&raw) {
        Ok(s) => s,
        Err(errs) => {
            let why: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            return wontgo(st, rev, msg::BAD_STATE, why.join("; ")).map(Err);
        }
    };
    if let Err(r) = pvs.check(&state) {
        return wontgo(st, rev, r.message, r.to_string()).map(Err);
    }
    let refused = state.unsupported();
    if !refused.is_empty() {
        return wontgo(st, rev, msg::BAD_STATE, refused.join("; ")).map(Err);
    }
    for (key, sha) in state.objects() {
        if !st.has_object(sha)? {
            let why = format!("object {sha} of {key} is not in the object store");
            return wontgo(st, rev, msg::INTERNAL, why).map(Err);
        }
    }
    Ok(Ok(state))
}

/// How an installed revision is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Reboot,
    Live,
}

/// Installs an admitted revision (5.4 step 5) in one go: [`prepare`], the install hook,
/// [`enter`]. A failure before `pv_try` is WONTGO: the device never tried it. The device runs
/// the same phases without holding its loop (prepare on a worker, the hook reaped by the loop);
/// this blocking form is the crash simulation's and the tests'.
pub fn install(
    st: &Storage,
    bl: &dyn Bootloader,
    hooks: &hooks::Hooks,
    rev: &str,
    state: &State,
    entry: Entry,
) -> Result<std::result::Result<(), Refused>> {
    if let Err(e) = prepare(st, rev, state) {
        return refuse(st, rev, e.to_string()).map(Err);
    }
    if let Err(e) = hooks.run_blocking(hooks::Op::InstallUpdate, &hook_env(st, bl, rev)?) {
        return refuse(st, rev, e.to_string()).map(Err);
    }
    enter(st, bl, rev, entry)?;
    Ok(Ok(()))
}

/// The storage part of an install, safe on a worker thread (it touches only the revision's
/// trail and reads the object store): checks out `trails/<rev>` durably and re-hashes every
/// object. Until [`enter`] names the revision in the boot env, the caller keeps it out of GC.
pub fn prepare(st: &Storage, rev: &str, state: &State) -> Result<()> {
    st.checkout(rev, state)?;
    verify(st, rev, state, Check::Rehash)
}

/// The environment of the `system-install-update` hook, run between [`prepare`] and [`enter`].
pub fn hook_env(st: &Storage, bl: &dyn Bootloader, rev: &str) -> Result<hooks::Env> {
    Ok(hooks::Env::new(&bl.read(st.fs)?, rev, "INPROGRESS"))
}

/// Ends an install that failed before `pv_try` (the prepare or the hook): WONTGO with `why`
/// logged.
pub fn refuse(st: &Storage, rev: &str, why: String) -> Result<Refused> {
    wontgo(st, rev, msg::INTERNAL, why)
}

/// The last phase of an install, once prepared and hooked: progress INPROGRESS ("Rebooting"
/// or "Transitioning ..."), and only then `pv_try` names the revision -- the boot env never
/// names a trail that is not complete and durable.
pub fn enter(st: &Storage, bl: &dyn Bootloader, rev: &str, entry: Entry) -> Result<()> {
    let m = match entry {
        Entry::Reboot => msg::REBOOTING,
        Entry::Live => msg::TRANSITIONING,
    };
    st.write_progress(rev, &progress_of(st, rev, Status::Inprogress, m))?;
    bl.set_try(st.fs, rev)?;
    Ok(())
}

/// Ends a live update that held (5.5 finalize, non-reboot path): UPDATED, boot env untouched
/// (`pv_try` keeps naming the revision, so the next boot tries it and commits it then).
pub fn finish_live(st: &Storage, rev: &str) -> Result<()> {
    st.write_progress(rev, &progress_of(st, rev, Status::Updated, msg::UPDATED))?;
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

/// The secure boot check of `rev`'s state, as an [`Error::Secureboot`].
fn signed(rev: &str, state: &State, pvs: &Policy) -> Result<()> {
    pvs.check(state).map_err(|refused| Error::Secureboot {
        rev: rev.to_string(),
        refused,
    })
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

/// Boot-time recovery and resume (the try-boot contract): clears crash leftovers, applies the resume decision,
/// then loads, checks out (repairs) and verifies the booted revision. Any failure of the revision being tried is
/// recorded and becomes a rollback; a committed revision that does not verify is an error
/// (the caller can only reboot and hope, as upstream does).
pub fn boot(
    st: &Storage,
    bl: &dyn Bootloader,
    booted: &str,
    check: Check,
    pvs: &Policy,
) -> Result<Boot> {
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
    // every boot, as upstream: a revision whose signatures no longer verify (a trust store
    // changed with the BSP, a state edited on the storage) is not run
    if let Err(e) = signed(booted, &state, pvs) {
        if let (true, Error::Secureboot { refused, .. }) = (trying, &e) {
            pvlog!(Error, "update", "{e}");
            fail(st, booted, refused.message)?;
            return Ok(Boot::Rollback);
        }
        return Err(e);
    }
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

#[cfg(test)]
#[path = "install_tests.rs"]
mod install_tests;
