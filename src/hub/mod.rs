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
    /// A progress PUT is in flight or queued.
    pub progress_pending: bool,
}

/// The next state, or `None` to stay (upstream's `pv_pantahub_evaluate_state`, in its order):
/// no session means login; the trail must be known and synced; with no update the client
/// idles (polling steps); a pending progress report holds the state where it is; then the
/// update's phase decides.
pub fn next(f: Facts) -> Option<State> {
    if !f.authenticated {
        return Some(State::Login);
    }
    match f.trails {
        Trails::Unknown => return Some(State::WaitHub),
        Trails::Unsynced => return Some(State::Sync),
        Trails::Synced => {}
    }
    if f.update == Update::NoneOrFinal {
        return Some(State::Idle);
    }
    if f.progress_pending {
        return None;
    }
    Some(match f.update {
        Update::Queued => State::PrepDownload,
        Update::Downloading => State::Download,
        Update::Trying | Update::NoneOrFinal => State::Report,
    })
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

/// Progress reports to the Hub (reference 8.5): one PUT in flight; a newer report waits in a
/// single slot, replacing an older waiting one (only the newest state of a step matters).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProgressQueue {
    in_flight: bool,
    next: Option<(String, String)>,
}

impl ProgressQueue {
    /// A report for step `rev` with this body: returns it when it is to be sent now.
    pub fn push(&mut self, rev: String, body: String) -> Option<(String, String)> {
        if self.in_flight {
            self.next = Some((rev, body));
            return None;
        }
        self.in_flight = true;
        Some((rev, body))
    }

    /// The PUT in flight ended (sent or failed): the waiting report, to send now, if any.
    pub fn done(&mut self) -> Option<(String, String)> {
        self.in_flight = false;
        let next = self.next.take()?;
        self.in_flight = true;
        Some(next)
    }

    pub fn pending(&self) -> bool {
        self.in_flight || self.next.is_some()
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
