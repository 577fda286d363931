//! The work of the commands (LOCAL_RUN, MAKE_FACTORY, RUN_GC), the end of a probation
//! (commit or UPDATED), the live switch's adoption and the update log capture. The decisions
//! around them are the model's; what must never be removed is computed here from the boot
//! env, and without a readable boot env nothing is removed.
use super::model::Outcome;
use super::work::Install;
use super::{containers, group_timeouts, Device};
use crate::bootloader::BootEnv;
use crate::device::commands::Command;
use crate::pvlog;
use crate::state::State;
use crate::update::hooks;
use crate::update::progress::msg;
use crate::update::transition::{self, Transition};
use crate::update::{self, Entry};

/// The revisions GC keeps: running, committed, tried, `pending` (being installed or entered),
/// and 0 when asked.
pub fn gc_keep(
    running: &str,
    env: &BootEnv,
    pending: &[String],
    keep_factory: bool,
) -> Vec<String> {
    let mut keep = vec![running.to_string()];
    keep.extend(env.rev.clone());
    keep.extend(env.try_rev.clone());
    keep.extend(pending.iter().cloned());
    if keep_factory {
        keep.push("0".into());
    }
    keep
}

/// Revision 0 is running, committed or tried: it is what the device falls back to.
pub fn factory_in_use(running: &str, env: &BootEnv) -> bool {
    running == "0" || env.rev.as_deref() == Some("0") || env.try_rev.as_deref() == Some("0")
}

/// The revisions admitted and not installed yet (QUEUED, DOWNLOADING): a Hub step whose
/// objects the Hub client is fetching, or a local one queued. GC keeps them and what they name,
/// so a GC asked while downloading (the space check's) cannot take the step away. Read only
/// when a GC starts.
pub fn admitted(st: &crate::storage::Storage) -> Vec<String> {
    st.list_revisions()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| update::remote::runnable(st.read_progress(r).as_ref()))
        .collect()
}

impl Device<'_> {
    /// The revisions being installed or entered: GC keeps them.
    pub(super) fn pending(&self) -> Vec<String> {
        let entering = self.entering.as_ref().map(|(r, _)| r.clone());
        let installing = self.installing.as_ref().map(|i| i.rev.clone());
        entering.into_iter().chain(installing).collect()
    }

    /// Carries out a command; None while its work goes on off the loop (the worker or a
    /// hook), whose end then feeds the outcome.
    pub(super) fn run_command(&mut self, cmd: Command) -> Option<Outcome> {
        match cmd {
            Command::RunGc => match self.bl.read(self.st.fs) {
                Ok(env) => {
                    let mut pending = self.pending();
                    pending.extend(admitted(self.st));
                    let keep = gc_keep(
                        &self.rev,
                        &env,
                        &pending,
                        self.cfg.storage_gc_keep_factory(),
                    );
                    let root = self.st.root().to_path_buf();
                    self.gc = Some(super::work::start_gc(&mut self.workers, root, keep, false));
                    None
                }
                Err(e) => {
                    pvlog!(Error, "storage", "GC refused: boot env: {e}");
                    Some(Outcome::Done)
                }
            },
            Command::LocalRun { rev, commit } => self.local_run(&rev, commit),
            Command::RemoteRun { rev } => self.remote_run(&rev),
            // the model carries it out (Model::set_remote)
            Command::GoRemote => Some(Outcome::Done),
            Command::DebugSsh(on) => {
                // as upstream: until reboot; no SSH server runs here to start or stop
                let v = if on { "1" } else { "0" };
                // the command level is open to PV_DEBUG_SSH (config/keys.rs): it cannot refuse
                let _ = self
                    .cfg
                    .set(crate::config::Level::Command, "PV_DEBUG_SSH", v);
                pvlog!(Info, "config", "PV_DEBUG_SSH={v} by command");
                Some(Outcome::Done)
            }
            Command::DeferReboot(t) => {
                pvlog!(
                    Info,
                    "device",
                    "DEFER_REBOOT {t}: no debug shell holds a reboot on this device"
                );
                Some(Outcome::Done)
            }
            Command::MakeFactory { rev } => {
                if self.make_factory(&rev) {
                    self.local_run("0", true)
                } else {
                    Some(Outcome::Done)
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
            .and_then(|()| update::stage(self.st, "0", &raw, &self.pvs));
        match res {
            Ok(_) => true,
            Err(e) => {
                pvlog!(Error, "update", "MAKE_FACTORY: {e}");
                false
            }
        }
    }

    /// LOCAL_RUN: admit, decide reboot or live, then the install's slow part (checkout and
    /// re-hash) on the worker; [`Device::prepared`] goes on from there. Every refusal is
    /// recorded in the revision's progress. None: the command goes on off the loop.
    fn local_run(&mut self, rev: &str, force_reboot: bool) -> Option<Outcome> {
        let has_state = self
            .st
            .state_path(rev)
            .is_ok_and(|p| crate::storage::fs::exists(self.st.fs, &p).unwrap_or(false));
        if !has_state {
            // before the capture, which would make `trails/<rev>/.pv` of a revision never put
            pvlog!(Error, "update", "LOCAL_RUN: no revision {rev:?}");
            return Some(Outcome::Done);
        }
        self.capture_rev(rev, true);
        let Some((state, decision)) = self.admit_local(rev, force_reboot) else {
            self.capture_rev(rev, false);
            return Some(Outcome::Done);
        };
        self.install(rev, state, decision)
    }

    /// REMOTE_RUN: a Hub revision the remote admission counted and queued, its objects
    /// fetched by the Hub client: checked as LOCAL_RUN checks (no second attempt counted),
    /// then the same install.
    fn remote_run(&mut self, rev: &str) -> Option<Outcome> {
        if !update::remote::runnable(self.st.read_progress(rev).as_ref()) {
            pvlog!(Warn, "update", "REMOTE_RUN {rev}: not admitted: not run");
            return Some(Outcome::Done);
        }
        self.capture_rev(rev, true);
        let checked = match update::check(self.st, rev, &self.pvs) {
            Ok(Ok(state)) => Some(state),
            Ok(Err(update::Refused::Wontgo(m, why))) => {
                pvlog!(Error, "update", "revision {rev}: WONTGO {m}: {why}");
                None
            }
            Ok(Err(update::Refused::Final(_))) => None,
            Err(e) => {
                pvlog!(Error, "update", "revision {rev}: {e}");
                None
            }
        };
        let Some(state) = checked else {
            self.capture_rev(rev, false);
            return Some(Outcome::Done);
        };
        let decision = self.transition(rev, &state, false);
        self.install(rev, state, decision)
    }

    /// The install's slow part (checkout and re-hash) on the worker; [`Device::prepared`]
    /// goes on from there.
    fn install(&mut self, rev: &str, state: State, decision: Transition) -> Option<Outcome> {
        let job = self.workers.spawn(crate::worker::prepare_job(
            self.st.root().to_path_buf(),
            rev.to_string(),
            state.clone(),
        ));
        self.installing = Some(Install {
            rev: rev.to_string(),
            state,
            decision,
            job,
        });
        None
    }

    fn admit_local(&mut self, rev: &str, force_reboot: bool) -> Option<(State, Transition)> {
        let max = self.cfg.revision_retries();
        let state = match update::admit(self.st, rev, max, &self.pvs) {
            Ok(Ok(state)) => state,
            Ok(Err(update::Refused::Final(s))) => {
                pvlog!(
                    Warn,
                    "update",
                    "revision {rev} already ended {}: not run again",
                    s.as_str()
                );
                return None;
            }
            Ok(Err(update::Refused::Wontgo(m, why))) => {
                pvlog!(Error, "update", "revision {rev}: WONTGO {m}: {why}");
                return None;
            }
            Err(e) => {
                pvlog!(Error, "update", "revision {rev}: {e}");
                return None;
            }
        };
        let decision = self.transition(rev, &state, force_reboot);
        Some((state, decision))
    }

    /// Reboot or live, as upstream decides, logged.
    fn transition(&self, rev: &str, state: &State, force_reboot: bool) -> Transition {
        let decision = if force_reboot {
            Transition::Reboot {
                why: "a reboot was asked".into(),
            }
        } else {
            transition::decide(&self.state, state)
        };
        match &decision {
            Transition::Reboot { why } => {
                pvlog!(Info, "update", "revision {rev}: reboot update ({why})")
            }
            Transition::Live { stop } => pvlog!(
                Info,
                "update",
                "revision {rev}: live update, restarting [{}]",
                stop.join(", ")
            ),
        }
        decision
    }

    /// The install's checkout and re-hash ended: on to the `system-install-update` hook.
    pub(super) fn prepared(&mut self, result: Result<(), String>) -> Option<Outcome> {
        let rev = self.installing.as_ref()?.rev.clone();
        if let Err(why) = result {
            return Some(self.install_refused(&rev, why));
        }
        let env = match update::hook_env(self.st, self.bl, &rev) {
            Ok(env) => env,
            Err(e) => return Some(self.install_refused(&rev, e.to_string())),
        };
        match self.hooks.start(hooks::Op::InstallUpdate, &env) {
            Ok(None) => Some(self.enter_update()),
            Ok(Some(run)) => {
                self.start_hook(run, super::work::AfterHook::Install);
                None
            }
            Err(e) => Some(self.install_refused(&rev, e.to_string())),
        }
    }

    /// The install failed before `pv_try` was set: WONTGO, the device runs on.
    pub(super) fn install_refused(&mut self, rev: &str, why: String) -> Outcome {
        pvlog!(Error, "update", "revision {rev}: install refused: {why}");
        if let Err(e) = update::refuse(self.st, rev, why) {
            pvlog!(Error, "update", "{e}");
        }
        self.installing = None;
        self.capture_rev(rev, false);
        Outcome::Done
    }

    /// Prepared and hooked: INPROGRESS, then `pv_try`; then a reboot or the live switch.
    pub(super) fn enter_update(&mut self) -> Outcome {
        let Some(i) = self.installing.take() else {
            return Outcome::Done;
        };
        let entry = match i.decision {
            Transition::Reboot { .. } => Entry::Reboot,
            Transition::Live { .. } => Entry::Live,
        };
        let res = update::enter(self.st, self.bl, &i.rev, entry);
        self.capture_rev(&i.rev, false);
        if let Err(e) = res {
            pvlog!(Error, "update", "revision {}: install: {e}", i.rev);
            let _ = update::fail(self.st, &i.rev, msg::INTERNAL);
            return Outcome::Done;
        }
        match i.decision {
            Transition::Reboot { .. } => Outcome::Reboot { rev: i.rev },
            Transition::Live { stop } => {
                self.entering = Some((i.rev, i.state));
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
        self.set_own_meta("pantavisor.revision", self.rev.clone());
        self.revision_runs();
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
                self.report_hook(op, if live { "UPDATED" } else { "DONE" });
            }
            Err(e) => pvlog!(Error, "update", "finishing {}: {e}", self.rev),
        }
    }

    /// The environment of a hook about the running revision; the boot env only informs its
    /// PV_TRY, an unreadable one reads as empty.
    pub(super) fn hook_env(&self, status: &str) -> hooks::Env {
        let env = self.bl.read(self.st.fs).unwrap_or_default();
        hooks::Env::new(&env, &self.rev, status)
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
            if update::remote::left_to_hub(&rev, p.status, self.m.remote) {
                continue;
            }
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
