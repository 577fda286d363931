//! Update progress (upstream's progress JSON): the statuses, their numbers, the exact status
//! messages, and the progress JSON kept in `trails/<rev>/.pv/progress`.
use crate::storage::{fs, Error, Result, Storage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    New,
    Queued,
    Downloading,
    Inprogress,
    Testing,
    Updated,
    Done,
    Wontgo,
    Error,
}

const STATUSES: [(Status, &str, u8); 9] = [
    (Status::New, "NEW", 0),
    (Status::Queued, "QUEUED", 5),
    (Status::Downloading, "DOWNLOADING", 25),
    (Status::Inprogress, "INPROGRESS", 50),
    (Status::Testing, "TESTING", 75),
    (Status::Updated, "UPDATED", 100),
    (Status::Done, "DONE", 100),
    (Status::Wontgo, "WONTGO", 100),
    (Status::Error, "ERROR", 100),
];

impl Status {
    pub fn as_str(self) -> &'static str {
        STATUSES
            .iter()
            .find(|s| s.0 == self)
            .map_or("ERROR", |s| s.1)
    }
    /// The `progress` number that goes with the status.
    pub fn percent(self) -> u8 {
        STATUSES.iter().find(|s| s.0 == self).map_or(100, |s| s.2)
    }
    pub fn parse(s: &str) -> Option<Status> {
        STATUSES.iter().find(|x| x.1 == s).map(|x| x.0)
    }
    /// DONE, UPDATED, WONTGO and ERROR end an update.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Done | Status::Updated | Status::Wontgo | Status::Error
        )
    }
    pub fn is_failed(self) -> bool {
        matches!(self, Status::Wontgo | Status::Error)
    }
}

/// The exact `status-msg` texts upstream writes.
pub mod msg {
    pub const NOT_INSTALLED: &str = "Update not yet installed";
    pub const READY_TO_RUN: &str = "Update ready to be run";
    pub const REBOOTING: &str = "Rebooting";
    pub const TRANSITIONING: &str = "Transitioning to new revision without rebooting";
    pub const TRYING: &str = "Trying new revision";
    pub const TESTING_REBOOT: &str = "Awaiting to set rollback point if update is stable";
    pub const TESTING_LIVE: &str = "Awaiting to see if update is stable";
    pub const WAIT_STABLE: &str = "Waiting for all containers to become stable";
    pub const DONE: &str = "Update finished, revision set as rollback point";
    pub const UPDATED: &str = "Update finished, revision not set as rollback point";
    pub const FACTORY: &str = "Factory revision";
    pub const MAX_RETRIES: &str = "Max update processing retries reached";
    pub const MAX_DOWNLOAD_RETRIES: &str = "Max download update retries reached";
    pub const BAD_STATE: &str = "State JSON has bad format";
    pub const STATE_NOT_FOUND: &str = "State JSON not found";
    pub const BAD_OBJECT: &str = "Object validation went wrong";
    pub const HUB_UNREACHABLE: &str = "Hub not reachable";
    pub const HUB_UNSTABLE: &str = "Hub communication not stable";
    pub const GOAL_TIMEOUT: &str = "Status goal not reached";
    pub const CONTAINER_FAILED: &str = "A container could not be started";
    pub const UNEXPECTED_ROLLBACK: &str = "Unexpected rollback";
    pub const INTERNAL: &str = "Internal error";

    /// QUEUED, the n-th time an update is taken up.
    pub fn retried(n: u32, max: u64) -> String {
        format!("Retried {n} of {max}")
    }
    /// QUEUED, while the Hub is asked for the objects' metadata (remote updates).
    pub fn downloading_metadata(n: u32, max: u64) -> String {
        format!("Downloading update metadata, retry {n} of {max}")
    }
    /// DOWNLOADING (remote updates).
    pub fn downloading_artifacts(n: u32, max: u64) -> String {
        format!("Downloading update artifacts, retry {n} of {max}")
    }
    /// WONTGO: the objects to download do not fit, even after GC (remote updates).
    pub fn space_required(needed: u64, available: u64) -> String {
        format!("Space required {needed} B, available {available} B")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Downloads {
    pub total_size: u64,
    pub total_downloaded: u64,
    pub start_time: u64,
    pub current_time: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub status: Status,
    pub msg: String,
    pub progress: u8,
    pub retries: u32,
    /// Only while DOWNLOADING.
    pub downloads: Option<Downloads>,
    /// JSON lines of the ERROR/FATAL records logged while the update ran (at most 4 KiB).
    pub logs: Option<String>,
}

impl Progress {
    pub fn new(status: Status, msg: &str) -> Progress {
        Progress {
            status,
            msg: msg.to_string(),
            progress: status.percent(),
            retries: 0,
            downloads: None,
            logs: None,
        }
    }

    /// The progress JSON with keys in upstream's order.
    pub fn to_json(&self) -> String {
        use crate::json::escape_str;
        let mut s = String::from("{\"status\":");
        escape_str(self.status.as_str(), &mut s);
        s.push_str(",\"status-msg\":");
        escape_str(&self.msg, &mut s);
        s.push_str(&format!(
            ",\"progress\":{},\"retries\":{}",
            self.progress, self.retries
        ));
        if let Some(d) = &self.downloads {
            s.push_str(&format!(
                ",\"downloads\":{{\"total\":{{\"object_name\":\"total\",\"object_id\":\"none\",\"total_size\":{},\"total_downloaded\":{},\"start_time\":{},\"current_time\":{}}}}}",
                d.total_size, d.total_downloaded, d.start_time, d.current_time
            ));
        }
        if let Some(l) = &self.logs {
            s.push_str(",\"logs\":");
            escape_str(l, &mut s);
        }
        s.push('}');
        s
    }

    /// Lenient read-back: an unknown status or a missing field gives `None`, never a
    /// panic; extra keys are ignored.
    pub fn from_json(bytes: &[u8]) -> Option<Progress> {
        let v = crate::json::parse(bytes, crate::json::Limits::default()).ok()?;
        let status = Status::parse(v.get("status")?.as_str()?)?;
        let msg = v
            .get("status-msg")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        let progress = v
            .get("progress")
            .and_then(|p| p.as_u64())
            .map_or(status.percent(), |p| p.min(100) as u8);
        let retries = v
            .get("retries")
            .and_then(|r| r.as_u64())
            .map_or(0, |r| r.min(u32::MAX as u64) as u32);
        let downloads = v.get("downloads").and_then(|d| d.get("total")).map(|t| {
            let n = |k: &str| t.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            Downloads {
                total_size: n("total_size"),
                total_downloaded: n("total_downloaded"),
                start_time: n("start_time"),
                current_time: n("current_time"),
            }
        });
        let logs = v.get("logs").and_then(|l| l.as_str()).map(str::to_string);
        Some(Progress {
            status,
            msg,
            progress,
            retries,
            downloads,
            logs,
        })
    }
}

impl<'a> Storage<'a> {
    /// Persists the progress of `rev` (crash-safe), as every change must be.
    /// The update's captured ERROR lines (`.pv/logs`, 5.2) go with it when they exist.
    pub fn write_progress(&self, rev: &str, p: &Progress) -> Result<()> {
        let path = self.progress_path(rev)?;
        let dir = path.parent().map(|d| d.to_path_buf()).unwrap_or_default();
        fs::create_dir_all(self.fs, &dir).map_err(|e| Error::io("create", &dir, e))?;
        let captured = self
            .fs
            .read(&dir.join("logs"))
            .ok()
            .and_then(|b| crate::logs::tree::logs_excerpt(&b));
        let p = match captured {
            Some(logs) => &Progress {
                logs: Some(logs),
                ..p.clone()
            },
            None => p,
        };
        fs::write_atomic(self.fs, &path, p.to_json().as_bytes())
            .map_err(|e| Error::io("write", &path, e))
    }

    /// The progress of `rev`; `None` when there is none or it cannot be read back.
    pub fn read_progress(&self, rev: &str) -> Option<Progress> {
        let path = self.progress_path(rev).ok()?;
        Progress::from_json(&self.fs.read(&path).ok()?)
    }

    /// `.pv/done`: this revision was committed at least once.
    pub fn mark_done(&self, rev: &str) -> Result<()> {
        let path = self.done_path(rev)?;
        let dir = path.parent().map(|d| d.to_path_buf()).unwrap_or_default();
        fs::create_dir_all(self.fs, &dir).map_err(|e| Error::io("create", &dir, e))?;
        fs::write_atomic(self.fs, &path, b"").map_err(|e| Error::io("write", &path, e))
    }

    pub fn is_done(&self, rev: &str) -> bool {
        self.done_path(rev)
            .map(|p| fs::exists(self.fs, &p).unwrap_or(false))
            .unwrap_or(false)
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
