//! The Hub client's decisions (README "The Hub client"): which state the client is in, when it
//! counts as online, and how progress reports queue. Pure; the daemon that talks to the Hub
//! carries them out. Upstream: `pantahub/pantahub.c`, `pantahub/pantahub_proto.c`.

pub mod creds;
pub mod daemon;
pub mod download;
pub mod fetch;
pub mod http;
pub mod logpush;
pub mod meta;
pub mod session;
pub mod tls;
pub mod wire;
pub mod xfer;

/// The client's states, as device-meta `pantahub.state` names them (reference 8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Init,
    Register,
    Claim,
    Sync,
    Login,
    WaitHub,
    Report,
    Idle,
    PrepDownload,
    Download,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Register => "register",
            State::Claim => "claim",
            State::Sync => "sync",
            State::Login => "login",
            State::WaitHub => "wait Hub",
            State::Report => "report",
            State::Idle => "idle",
            State::PrepDownload => "prep download",
            State::Download => "download",
        }
    }
}

/// Whether the device has a trail on the Hub, as `GET /trails/` last said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trails {
    /// Not asked yet, or the answer was lost.
    Unknown,
    /// An empty list: the factory state must be uploaded first.
    Unsynced,
    Synced,
}

/// Where the device's current update stands, for the client (reference 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// No update, or its progress is final (DONE, UPDATED, WONTGO, ERROR).
    NoneOrFinal,
    Queued,
    Downloading,
    /// INPROGRESS or TESTING: installed, being tried.
    Trying,
}

/// What the client's next state depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// A session token is held.
    pub authenticated: bool,
    pub trails: Trails,
    pub update: Update,
}

/// The next state (upstream's `pv_pantahub_evaluate_state`, in its order): no session means
/// login; the trail must be known and synced; with no update the client idles (polling
/// steps); then the update's phase decides. Upstream also holds the state while a progress
/// PUT is in flight; this client's PUTs are synchronous, so none is in flight when it decides.
pub fn next(f: Facts) -> State {
    if !f.authenticated {
        return State::Login;
    }
    match (f.trails, f.update) {
        (Trails::Unknown, _) => State::WaitHub,
        (Trails::Unsynced, _) => State::Sync,
        (Trails::Synced, Update::NoneOrFinal) => State::Idle,
        (Trails::Synced, Update::Queued) => State::PrepDownload,
        (Trails::Synced, Update::Downloading) => State::Download,
        (Trails::Synced, Update::Trying) => State::Report,
    }
}

/// Online/offline (reference 8.1): a response of any kind makes the client online; it goes
/// offline only after more than `threshold` requests in a row got none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Online {
    pub online: bool,
    failed: u32,
    /// A request failed since the last [`Online::reset_failure`] (a try boot's "Hub
    /// communication not stable" gate reads it).
    pub any_failure: bool,
}

impl Online {
    /// A request ended: `answered` when the Hub responded (any status). Returns the new
    /// `online` value when it changed (to publish as `pantahub.online`).
    pub fn record(&mut self, answered: bool, threshold: u32) -> Option<bool> {
        if answered {
            self.failed = 0;
            if self.online {
                return None;
            }
            self.online = true;
            return Some(true);
        }
        self.any_failure = true;
        self.failed = self.failed.saturating_add(1);
        if self.failed <= threshold || !self.online {
            return None;
        }
        self.online = false;
        Some(false)
    }

    pub fn reset_failure(&mut self) {
        self.any_failure = false;
    }
}

/// How a progress PUT ended, by the Hub's status (`None`: no answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Taken,
    /// A 4xx other than 401: the Hub will never take this body; dropped with a log line.
    Refused,
    /// No answer, a 5xx or a 401 (the session logs in again): sent again later.
    Again,
}

impl Sent {
    pub fn of(status: Option<u16>) -> Sent {
        match status {
            Some(200..=299) => Sent::Taken,
            Some(401) | None => Sent::Again,
            Some(400..=499) => Sent::Refused,
            Some(_) => Sent::Again,
        }
    }
}

/// Progress reports to the Hub (reference 8.5): what the Hub has, per step, and one report
/// waiting per step, a newer one replacing an older (only the newest state of a step matters;
/// a final outcome of one step is never replaced by another step's report).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reports {
    taken: std::collections::BTreeMap<String, String>,
    waiting: Vec<(String, String)>,
}

impl Reports {
    /// A progress of step `rev`: to send, unless the Hub has this very body already.
    pub fn push(&mut self, rev: &str, body: String) {
        if self.taken.get(rev) == Some(&body) {
            self.waiting.retain(|(r, _)| r != rev);
            return;
        }
        match self.waiting.iter_mut().find(|(r, _)| r == rev) {
            Some(w) => w.1 = body,
            None => self.waiting.push((rev.to_string(), body)),
        }
    }

    /// The oldest waiting report, to PUT now; give it back with [`Reports::done`].
    pub fn take(&mut self) -> Option<(String, String)> {
        (!self.waiting.is_empty()).then(|| self.waiting.remove(0))
    }

    /// The PUT of a taken report ended. A report sent again goes after the others, unless a
    /// newer one of its step waits already.
    pub fn done(&mut self, rev: String, body: String, how: Sent) {
        match how {
            Sent::Taken => {
                self.taken.insert(rev, body);
            }
            Sent::Refused => {}
            Sent::Again => {
                if !self.waiting.iter().any(|(r, _)| *r == rev) {
                    self.waiting.push((rev, body));
                }
            }
        }
    }

    pub fn pending(&self) -> bool {
        !self.waiting.is_empty()
    }
}

/// The steps still to act on: `GET /trails/<id>/steps` with upstream's `$in` filter on
/// `progress.status`, URL-encoded as upstream sends it.
pub fn pending_steps_path(device_id: &str) -> String {
    format!(
        "/trails/{device_id}/steps?progress.status=%7B%22$in%22:%5B%22NEW%22,%22DOWNLOADING%22,\
         %22INPROGRESS%22,%22TESTING%22,%22QUEUED%22%5D%7D"
    )
}

#[cfg(test)]
mod tests;
