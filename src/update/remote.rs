//! Remote updates, the device's half (5.4): the Hub daemon hands a step's state JSON over
//! pv-ctrl (`PUT /steps/<n>`), and the device admits it -- one processing attempt, counted in
//! `retries` as upstream's `pv_update_start_install` counts it -- then takes the daemon's
//! download reports (`PUT /steps/<n>/progress`) while the revision is not installed yet. The
//! install itself is LOCAL_RUN's (REMOTE_RUN). The decisions are pure ([`admission`],
//! [`report`]); [`admit`] and [`record`] are their storage effects.
use super::progress::{msg, Downloads, Progress, Status};
use crate::state::State;
use crate::storage::{self, valid_revision, Storage};

/// A Hub revision: its step number, in decimal digits without a leading zero.
pub fn is_hub_revision(rev: &str) -> bool {
    valid_revision(rev)
        && rev.bytes().all(|b| b.is_ascii_digit())
        && (rev == "0" || !rev.starts_with('0'))
}

/// What the device knows when a Hub step is put.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts<'a> {
    /// The revision's progress file, if any.
    pub progress: Option<&'a Progress>,
    /// The staged state JSON is the one put (`None`: nothing staged yet).
    pub same_state: Option<bool>,
    /// The revision runs, or is being installed or entered.
    pub busy: bool,
    /// Another update is queued, installing or on probation.
    pub other_update: bool,
    pub max_retries: u64,
}

/// The device's answer to one processing attempt of a Hub step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Already ended, running or being installed: 409 with its progress, nothing changes
    /// (the daemon re-reports that progress).
    Standing,
    /// Another state JSON is staged under this revision: 409, nothing changes.
    Differs,
    /// Another update is under way: 503, nothing changes (the daemon asks again later).
    UpdateActive,
    /// This attempt reaches `PV_REVISION_RETRIES`: WONTGO "Max update processing retries
    /// reached" with `retries`.
    TooManyRetries { retries: u32 },
    /// Checked next, then QUEUED with `retries`.
    Proceed { retries: u32 },
}

/// Upstream counts every processing attempt of a remote step -- the first one too, and each
/// one a crash or a restart of the Hub client interrupted -- before it parses the state, and
/// gives up when the count reaches `PV_REVISION_RETRIES` (`>=`: with 3, attempts 1 and 2 run,
/// the third ends WONTGO with retries 3).
pub fn admission(f: &Facts) -> Admission {
    if f.busy || f.progress.is_some_and(|p| p.status.is_final()) {
        return Admission::Standing;
    }
    if f.same_state == Some(false) {
        return Admission::Differs;
    }
    if f.other_update {
        return Admission::UpdateActive;
    }
    let retries = f.progress.map_or(0, |p| p.retries).saturating_add(1);
    if u64::from(retries) >= f.max_retries {
        Admission::TooManyRetries { retries }
    } else {
        Admission::Proceed { retries }
    }
}

/// How [`admit`] ended; each carries the progress now on storage (the daemon's to forward).
#[derive(Debug)]
pub enum Admitted {
    /// QUEUED: the daemon fetches the objects, then asks REMOTE_RUN.
    Queued(Progress),
    /// WONTGO with upstream's message (too many attempts, a state that does not parse).
    Wontgo(Progress),
    /// [`Admission::Standing`], [`Admission::Differs`] or [`Admission::UpdateActive`]:
    /// nothing was changed; the progress as it is, if any.
    Refused(Admission, Option<Progress>),
}

/// One processing attempt of Hub step `rev` with state `raw`: [`admission`], then the state
/// is parsed and checked as a local run's is (WONTGO "State JSON has bad format"), staged
/// byte-exact, and the revision is QUEUED with upstream's message for the step that follows
/// (the daemon asks the Hub for the objects' metadata).
pub fn admit(
    st: &Storage,
    rev: &str,
    raw: &[u8],
    busy: bool,
    other_update: bool,
    max_retries: u64,
    pvs: &crate::pvs::Policy,
) -> storage::Result<Admitted> {
    let progress = st.read_progress(rev);
    let staged = match st.read_state(rev) {
        Ok(s) => Some(s == raw),
        Err(e) if matches!(&e.kind, storage::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound) => {
            None
        }
        Err(e) => return Err(e),
    };
    let facts = Facts {
        progress: progress.as_ref(),
        same_state: staged,
        busy,
        other_update,
        max_retries,
    };
    let retries = match admission(&facts) {
        Admission::Proceed { retries } => retries,
        Admission::TooManyRetries { retries } => {
            return wontgo(st, rev, retries, msg::MAX_RETRIES);
        }
        refused => return Ok(Admitted::Refused(refused, progress)),
    };
    let problems = match State::parse(raw) {
        Ok(state) => match pvs.check(&state) {
            // as upstream's start of an install: WONTGO with the secure boot message
            Err(r) => {
                crate::pvlog!(
                    Warn,
                    "update",
                    "revision {rev}: signature validation failed: {r}"
                );
                return wontgo(st, rev, retries, r.message);
            }
            Ok(()) => state.unsupported(),
        },
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    };
    if !problems.is_empty() {
        crate::pvlog!(
            Error,
            "update",
            "revision {rev}: state parse failed: {}",
            problems.join("; ")
        );
        return wontgo(st, rev, retries, msg::BAD_STATE);
    }
    if staged.is_none() {
        st.install_state(rev, raw)?;
    }
    let p = Progress {
        retries,
        ..Progress::new(
            Status::Queued,
            &msg::downloading_metadata(retries, max_retries),
        )
    };
    st.write_progress(rev, &p)?;
    Ok(Admitted::Queued(p))
}

fn wontgo(st: &Storage, rev: &str, retries: u32, m: &str) -> storage::Result<Admitted> {
    let p = Progress {
        retries,
        ..Progress::new(Status::Wontgo, m)
    };
    st.write_progress(rev, &p)?;
    Ok(Admitted::Wontgo(p))
}

/// A download report of the Hub daemon (`PUT /steps/<n>/progress`).
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub status: Status,
    pub msg: String,
    pub downloads: Option<Downloads>,
}

/// Longest `status-msg` a report may carry.
pub const MAX_REPORT_MSG: usize = 512;

/// The report in a body `{"status","status-msg","progress"[,"downloads":{"total":{...}}]}`;
/// `None` when it is not one.
pub fn parse_report(body: &[u8]) -> Option<Report> {
    let v = crate::json::parse(body, crate::json::Limits::default()).ok()?;
    v.as_object()?;
    let status = Status::parse(v.get("status")?.as_str()?)?;
    let m = v.get("status-msg")?.as_str()?;
    if m.len() > MAX_REPORT_MSG {
        return None;
    }
    let p = Progress::from_json(body)?;
    Some(Report {
        status,
        msg: m.to_string(),
        downloads: p.downloads,
    })
}

/// May the daemon report `to` over `from`? Only while the revision is admitted and not
/// installed: QUEUED -> DOWNLOADING, DOWNLOADING -> DOWNLOADING, and either to WONTGO or
/// ERROR (a failed space check, download or verification). Never for a revision being
/// installed or running: from there the device reports.
pub fn report(from: Option<Status>, to: Status, busy: bool) -> bool {
    !busy
        && matches!(from, Some(Status::Queued | Status::Downloading))
        && matches!(to, Status::Downloading | Status::Wontgo | Status::Error)
}

/// Writes an accepted report: the device keeps its own `retries`, and words DOWNLOADING
/// itself from them ("Downloading update artifacts, retry N of M"), as upstream's
/// progress does; the `downloads` totals go with DOWNLOADING only. `Err(current)`: refused.
pub fn record(
    st: &Storage,
    rev: &str,
    r: &Report,
    busy: bool,
    max_retries: u64,
) -> storage::Result<Result<Progress, Option<Progress>>> {
    let current = st.read_progress(rev);
    if !report(current.as_ref().map(|p| p.status), r.status, busy) {
        return Ok(Err(current));
    }
    let retries = current.map_or(0, |p| p.retries);
    let m = match r.status {
        Status::Downloading => msg::downloading_artifacts(retries, max_retries),
        _ => r.msg.clone(),
    };
    let p = Progress {
        retries,
        downloads: (r.status == Status::Downloading)
            .then(|| r.downloads.clone())
            .flatten(),
        ..Progress::new(r.status, &m)
    };
    st.write_progress(rev, &p)?;
    Ok(Ok(p))
}

/// May REMOTE_RUN install `rev` now? Only a revision the daemon had admitted and still
/// downloads or has downloaded (QUEUED or DOWNLOADING).
pub fn runnable(p: Option<&Progress>) -> bool {
    p.is_some_and(|p| matches!(p.status, Status::Queued | Status::Downloading))
}

/// A Hub revision interrupted before its install (QUEUED, DOWNLOADING) is the Hub client's
/// to put again in remote mode -- that is its next attempt, counted -- not the boot's to run.
pub fn left_to_hub(rev: &str, status: Status, remote: bool) -> bool {
    remote && is_hub_revision(rev) && matches!(status, Status::Queued | Status::Downloading)
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
