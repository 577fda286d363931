//! Slow work kept off the loop: the worker thread's jobs (an update's checkout and re-hash,
//! GC) and the system hooks, which are children the loop reaps with a deadline. The loop only
//! starts them and takes their results; supervision and pv-ctrl go on meanwhile.
use super::model::{Input, Outcome};
use super::timers::Timer;
use super::Device;
use crate::control::http::Response;
use crate::event_loop::EventLoop;
use crate::pvlog;
use crate::state::State;
use crate::update::hooks::{HookRun, HookStep, Op};
use crate::update::transition::Transition;
use crate::worker::{Done, JobId, Workers};
use std::path::PathBuf;

/// An update being installed: its checkout and re-hash run on the worker (`job`), then its
/// install hook, then it is entered.
pub struct Install {
    pub rev: String,
    pub state: State,
    pub decision: Transition,
    pub job: JobId,
}

/// What follows a hook run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterHook {
    /// `system-install-update` of the update being installed: enter it, or refuse it.
    Install,
    /// A hook that reports (`system-boot-done`, `system-done`): its failure is logged.
    Report,
}

/// A GC on the worker; `answer`: pv-ctrl waits for it (POST /storage/gc), else RUN_GC.
pub struct Gc {
    pub job: JobId,
    pub answer: bool,
}

/// GC on the worker from a keep-set the loop took (running, committed, tried and pending
/// revisions; see `updates::gc_keep`).
pub fn start_gc(workers: &mut Workers, root: PathBuf, keep: Vec<String>, answer: bool) -> Gc {
    let job = workers.spawn(crate::worker::gc_job(root, keep, Default::default()));
    Gc { job, answer }
}

impl Device<'_> {
    /// The worker finished jobs.
    pub(super) fn worker_done(&mut self) {
        for (job, done) in self.workers.drain() {
            match done {
                Done::Prepared { rev, result } => {
                    if self
                        .installing
                        .as_ref()
                        .is_some_and(|i| i.job == job && i.rev == rev)
                    {
                        let outcome = self.prepared(result.map_err(|e| e.to_string()));
                        self.command_done(outcome);
                    }
                }
                Done::Gc(result) => {
                    self.gc_done(job, result.map_err(|e| (e.is_no_space(), e.to_string())))
                }
                Done::Panicked => {
                    pvlog!(Error, "device", "a worker job failed (panic)");
                    if self.installing.as_ref().is_some_and(|i| i.job == job) {
                        let outcome = self.prepared(Err("the install job failed".into()));
                        self.command_done(outcome);
                    } else {
                        self.gc_done(job, Err((false, "the GC job failed".into())));
                    }
                }
            }
        }
    }

    fn gc_done(&mut self, job: JobId, result: Result<u64, (bool, String)>) {
        if self.gc.as_ref().is_none_or(|g| g.job != job) {
            return;
        }
        let Some(gc) = self.gc.take() else { return };
        let response = match &result {
            Ok(n) => {
                pvlog!(Info, "storage", "GC reclaimed {n} bytes");
                let mut o = crate::json::ObjectWriter::new();
                o.uint("reclaimed", *n);
                Response::json(200, o.finish())
            }
            Err((no_space, e)) => {
                pvlog!(Error, "storage", "GC: {e}");
                crate::control::routes::refused(&super::commands::Refusal::Storage {
                    no_space: *no_space,
                    reason: e.clone(),
                })
            }
        };
        if gc.answer {
            if let Some(server) = self.server.as_mut() {
                if !server.complete(&mut self.lp, gc.job, response) {
                    pvlog!(Info, "ctrl", "GC answer dropped: the client is gone");
                }
            }
        }
        self.command_done(Some(Outcome::Done));
    }

    /// A command's work ended (None: it goes on).
    pub(super) fn command_done(&mut self, outcome: Option<Outcome>) {
        if let Some(o) = outcome {
            self.feed(Input::CommandDone(o));
        }
    }

    pub(super) fn start_hook(&mut self, run: HookRun, then: AfterHook) {
        let left = run.deadline_ms().saturating_sub(EventLoop::now_ms());
        self.timers.arm(&mut self.lp, Timer::Hook, left);
        self.hook = Some((run, then));
    }

    /// A reporting hook: started now, or after the one that runs.
    pub(super) fn report_hook(&mut self, op: Op, status: &str) {
        let env = self.hook_env(status);
        if self.hook.is_some() {
            self.hook_queue.push_back((op, env));
            return;
        }
        match self.hooks.start(op, &env) {
            Ok(Some(run)) => self.start_hook(run, AfterHook::Report),
            Ok(None) => {}
            Err(e) => pvlog!(Error, "hooks", "{e}"),
        }
    }

    /// A hook's pid was reaped (true), or it is not the running hook's.
    pub(super) fn hook_exited(&mut self, pid: i32, status: i32) -> bool {
        let step = match self.hook.as_mut() {
            Some((run, _)) if run.pid() == pid => run.exited(status),
            _ => return false,
        };
        self.hook_step(step);
        true
    }

    pub(super) fn hook_timed_out(&mut self) {
        let Some((run, _)) = self.hook.as_mut() else {
            return;
        };
        let step = run.timed_out();
        self.hook_step(step);
    }

    fn hook_step(&mut self, step: HookStep) {
        match step {
            HookStep::Running => {}
            HookStep::Next => {
                if let Some(left) = self
                    .hook
                    .as_ref()
                    .map(|(run, _)| run.deadline_ms().saturating_sub(EventLoop::now_ms()))
                {
                    self.timers.arm(&mut self.lp, Timer::Hook, left);
                }
            }
            HookStep::Done(result) => {
                self.timers.cancel(&mut self.lp, Timer::Hook);
                let Some((run, then)) = self.hook.take() else {
                    return;
                };
                match (then, result) {
                    (AfterHook::Install, Ok(_)) => {
                        let outcome = self.enter_update();
                        self.command_done(Some(outcome));
                    }
                    (AfterHook::Install, Err(e)) => {
                        let rev = self.installing.as_ref().map(|i| i.rev.clone());
                        if let Some(rev) = rev {
                            let outcome = self.install_refused(&rev, e.to_string());
                            self.command_done(Some(outcome));
                        }
                    }
                    (AfterHook::Report, Ok(n)) => {
                        pvlog!(Info, "hooks", "{} hooks of {} ok", n, run.op().as_str())
                    }
                    (AfterHook::Report, Err(e)) => pvlog!(Error, "hooks", "{e}"),
                }
                if let Some((op, env)) = self.hook_queue.pop_front() {
                    match self.hooks.start(op, &env) {
                        Ok(Some(run)) => self.start_hook(run, AfterHook::Report),
                        Ok(None) => {}
                        Err(e) => pvlog!(Error, "hooks", "{e}"),
                    }
                }
            }
        }
    }
}
