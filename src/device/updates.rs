//! The work of the commands (LOCAL_RUN, MAKE_FACTORY, RUN_GC), the end of a probation
//! (commit or UPDATED), the live switch's adoption and the update log capture. The decisions
//! around them are the model's; what must never be removed is computed here from the boot
//! env, and without a readable boot env nothing is removed.
use super::model::Outcome;
use super::{containers, group_timeouts, Device};
use crate::bootloader::BootEnv;
use crate::device::commands::{Command, Refusal};
use crate::pvlog;
use crate::storage::Storage;
use crate::update::hooks;
use crate::update::progress::msg;
use crate::update::transition::{self, Transition};
use crate::update::{self, Entry};

/// The revisions GC keeps: running, committed, tried, being entered, and 0 when asked.
pub fn gc_keep(
    running: &str,
    env: &BootEnv,
    entering: Option<&str>,
    keep_factory: bool,
) -> Vec<String> {
    let mut keep = vec![running.to_string()];
    keep.extend(env.rev.clone());
    keep.extend(env.try_rev.clone());
    keep.extend(entering.map(str::to_string));
    if keep_factory {
        keep.push("0".into());
    }
    keep
}

/// Revision 0 is running, committed or tried: it is what the device falls back to.
pub fn factory_in_use(running: &str, env: &BootEnv) -> bool {
    running == "0" || env.rev.as_deref() == Some("0") || env.try_rev.as_deref() == Some("0")
}

pub fn gc(st: &Storage, keep: &[String]) -> Result<u64, Refusal> {
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    match st.gc(&keep, &Default::default()) {
        Ok(n) => {
            pvlog!(Info, "storage", "GC reclaimed {n} bytes");
            Ok(n)
        }
        Err(e) => {
            pvlog!(Error, "storage", "GC: {e}");
            Err(Refusal::Storage {
                no_space: e.is_no_space(),
                reason: e.to_string(),
            })
        }
    }
}

impl Device<'_> {
    pub(super) fn run_command(&mut self, cmd: Command) -> Outcome {
        match cmd {
            Command::RunGc => {
                match self.bl.read(self.st.fs) {
                    Ok(env) => {
                        let entering = self.entering.as_ref().map(|(r, _)| r.as_str());
                        let keep = gc_keep(
                            &self.rev,
                            &env,
                            entering,
                            self.cfg.storage_gc_keep_factory(),
                        );
                        let _ = gc(self.st, &keep);
                    }
                    Err(e) => pvlog!(Error, "storage", "GC refused: boot env: {e}"),
                }
                Outcome::Done
            }
            Command::LocalRun { rev, commit } => self.local_run(&rev, commit),
            Command::MakeFactory { rev } => {
                if self.make_factory(&rev) {
                    self.local_run("0", true)
                } else {
                    Outcome::Done
                }
            }
        }
    }

    /// MAKE_FACTORY: a fresh `trails/0` with the state of `rev`. Refused while revision 0
    /// runs or is the rollback point, and when the boot env cannot tell whether it is.
    fn make_factory(&mut self, rev: &str) -> bool {
        let env = match self.bl.read(self.st.fs) {
            Ok(env) => env,
            Err(e) => {
                pvlog!(Error, "update", "MAKE_FACTORY refused: boot env: {e}");
                return false;
            }
        };
        if factory_in_use(&self.rev, &env) {
            pvlog!(
                Error,
                "update",
                "MAKE_FACTORY: revision 0 is in use (running, committed or tried)"
            );
            return false;
        }
        let raw = match self.st.read_state(rev) {
            Ok(r) => r,
            Err(e) => {
                pvlog!(Error, "update", "MAKE_FACTORY: {e}");
                return false;
            }
        };
        let res = self
            .st
            .trail_dir("0")
            .and_then(|dir| {
                crate::storage::fs::remove_all(self.st.fs, &dir)
                    .map_err(|e| crate::storage::Error::io("remove", &dir, e))
            })
            .map_err(update::Error::from)
            .and_then(|()| update::stage(self.st, "0", &raw));
        match res {
            Ok(_) => true,
            Err(e) => {
                pvlog!(Error, "update", "MAKE_FACTORY: {e}");
                false
            }
        }
    }

    /// LOCAL_RUN: admit, decide reboot or live, install; every refusal is recorded in the
    /// revision's progress.
    fn local_run(&mut self, rev: &str, force_reboot: bool) -> Outcome {
        if self.st.trail_dir(rev).is_err() {
            pvlog!(Error, "update", "LOCAL_RUN: bad revision name {rev:?}");
            return Outcome::Done;
        }
        self.capture_rev(rev, true);
        let outcome = self.try_local_run(rev, force_reboot);
        self.capture_rev(rev, false);
        outcome
    }

    fn try_local_run(&mut self, rev: &str, force_reboot: bool) -> Outcome {
        let max = self.cfg.revision_retries();
        let state = match update::admit(self.st, rev, max) {
            Ok(Ok(state)) => state,
            Ok(Err(update::Refused::Final(s))) => {
                pvlog!(
                    Warn,
                    "update",
                    "revision {rev} already ended {}: not run again",
                    s.as_str()
                );
                return Outcome::Done;
            }
            Ok(Err(update::Refused::Wontgo(m, why))) => {
                pvlog!(Error, "update", "revision {rev}: WONTGO {m}: {why}");
                return Outcome::Done;
            }
            Err(e) => {
                pvlog!(Error, "update", "revision {rev}: {e}");
                return Outcome::Done;
            }
        };
        let decision = if force_reboot {
            Transition::Reboot {
                why: "a reboot was asked".into(),
            }
        } else {
            transition::decide(&self.state, &state)
        };
        let entry = match &decision {
            Transition::Reboot { why } => {
                pvlog!(Info, "update", "revision {rev}: reboot update ({why})");
                Entry::Reboot
            }
            Transition::Live { stop } => {
                pvlog!(
                    Info,
                    "update",
                    "revision {rev}: live update, restarting [{}]",
                    stop.join(", ")
                );
                Entry::Live
            }
        };
        match update::install(self.st, self.bl, &self.hooks, rev, &state, entry) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                pvlog!(Error, "update", "revision {rev}: install refused: {e:?}");
                return Outcome::Done;
            }
            Err(e) => {
                pvlog!(Error, "update", "revision {rev}: install: {e}");
                let _ = update::fail(self.st, rev, msg::INTERNAL);
                return Outcome::Done;
            }
        }
        match decision {
            Transition::Reboot { .. } => Outcome::Reboot {
                rev: rev.to_string(),
            },
            Transition::Live { stop } => {
                self.entering = Some((rev.to_string(), state));
                Outcome::Live { stop }
            }
        }
    }

    /// The containers a live update replaces are down: the device becomes its revision.
    pub(super) fn adopt(&mut self) {
        let Some((rev, state)) = self.entering.take() else {
            pvlog!(
                Error,
                "update",
                "live switch without a revision to enter: dropped"
            );
            self.m.switch = None;
            return;
        };
        let fx = self
            .m
            .adopt(containers(&state), group_timeouts(self.cfg, &state));
        self.state = state;
        self.rev = rev;
        crate::logs::set_revision(&self.rev);
        if let Err(e) = self.st.set_current(&self.rev) {
            pvlog!(Error, "update", "{e}");
        }
        pvlog!(Info, "update", "revision {} entered live", self.rev);
        for e in fx {
            if let Some(next) = self.apply(e) {
                self.feed(next);
            }
        }
    }

    /// The update held: DONE and committed after a reboot, UPDATED after a live entry.
    pub(super) fn finish(&mut self, live: bool) {
        self.capture(false);
        let (res, op) = if live {
            (update::finish_live(self.st, &self.rev), hooks::Op::Done)
        } else {
            (
                update::commit(self.st, self.bl, &self.rev),
                hooks::Op::BootDone,
            )
        };
        match res {
            Ok(()) => {
                let what = if live { "updated live" } else { "committed" };
                pvlog!(Info, "update", "revision {} {what}", self.rev);
                if let Err(e) = self.hook(op, if live { "UPDATED" } else { "DONE" }) {
                    pvlog!(Error, "hooks", "{e}");
                }
            }
            Err(e) => pvlog!(Error, "update", "finishing {}: {e}", self.rev),
        }
    }

    pub(super) fn hook(&self, op: hooks::Op, status: &str) -> Result<usize, String> {
        // the boot env only informs the hook's PV_TRY; an unreadable one reads as empty
        let env = self.bl.read(self.st.fs).unwrap_or_default();
        self.hooks
            .run(op, &hooks::Env::new(&env, &self.rev, status))
    }

    /// ERROR lines logged while an update is processed or tried go to its `.pv/logs`; at the
    /// end they are folded into its progress.
    pub(super) fn capture(&self, on: bool) {
        self.capture_rev(&self.rev, on);
    }

    fn capture_rev(&self, rev: &str, on: bool) {
        let Ok(dir) = self.st.trail_dir(rev) else {
            return;
        };
        if on {
            crate::logs::start_update_capture(&dir.join(".pv"));
        } else {
            crate::logs::stop_update_capture();
            if let Some(p) = self.st.read_progress(rev) {
                let _ = self.st.write_progress(rev, &p);
            }
        }
    }

    /// An update that was being processed when the device went down is run again, once per
    /// boot, until it ends (its retries bound it).
    pub(super) fn resume_interrupted(&mut self) {
        let env = match self.bl.read(self.st.fs) {
            Ok(env) => env,
            Err(e) => {
                pvlog!(Error, "update", "boot env: {e}: interrupted updates wait");
                return;
            }
        };
        let Ok(revs) = self.st.list_revisions() else {
            return;
        };
        for rev in revs {
            let Some(p) = self.st.read_progress(&rev) else {
                continue;
            };
            let is_try = env.try_rev.as_deref() == Some(rev.as_str());
            if update::interrupted(p.status, is_try, rev == self.rev) && self.m.command.is_none() {
                pvlog!(
                    Warn,
                    "update",
                    "revision {rev} was interrupted ({}), running it again",
                    p.status.as_str()
                );
                self.m.command = Some(Command::LocalRun { rev, commit: false });
            }
        }
    }
}
