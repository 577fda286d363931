//! Reboot or live (upstream's reboot-or-live decision, pv:`pv_state_stop_platforms`): which keys changed between
//! the running state and the new one, and who owns them, decide whether the device must reboot
//! into the new revision or can restart only the containers that changed. A pure function.
use crate::state::{RestartPolicy, State};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Reboot into the new revision; `why` names the key (or rule) that forced it.
    Reboot { why: String },
    /// Stay up: stop `stop` (changed or removed containers), then run the new state, which
    /// starts the changed and added ones; every other container keeps running.
    Live { stop: Vec<String> },
}

/// A key whose value differs between the states (added, removed or changed), in key order.
/// `_sigs/*`, `*/src.json` and `*/build.json` are not tracked (upstream does not compare them).
fn changed_keys(old: &State, new: &State) -> Vec<String> {
    let value = |s: &State, k: &str| {
        s.entry(k).map(|e| match (e.sha(), e.json()) {
            (Some(sha), _) => sha.to_string(),
            (None, Some(j)) => j.to_string(),
            (None, None) => String::new(),
        })
    };
    // Inserted one by one: collecting into a BTreeSet sorts first, with its own sort code.
    let mut keys = BTreeSet::new();
    keys.extend(
        old.entries()
            .iter()
            .chain(new.entries())
            .filter(|e| e.expanded())
            .map(|e| e.key.as_str()),
    );
    keys.into_iter()
        .filter(|k| value(old, k) != value(new, k))
        .map(str::to_string)
        .collect()
}

pub fn decide(old: &State, new: &State) -> Transition {
    if old.spec() != new.spec() {
        return Transition::Reboot {
            why: "#spec changed".into(),
        };
    }
    let mut stop = BTreeSet::new();
    for key in changed_keys(old, new) {
        let owner = new
            .entry(&key)
            .or_else(|| old.entry(&key))
            .and_then(|e| e.owner())
            .filter(|o| old.container(o).is_some() || new.container(o).is_some());
        let Some(owner) = owner else {
            return Transition::Reboot {
                why: format!("{key} belongs to no container"),
            };
        };
        let system = [old.container(owner), new.container(owner)]
            .into_iter()
            .flatten()
            .any(|c| c.restart_policy == RestartPolicy::System);
        if system {
            return Transition::Reboot {
                why: format!("{key} belongs to {owner}, restart_policy system"),
            };
        }
        if old.container(owner).is_some() {
            stop.insert(owner.to_string());
        }
    }
    // removed containers whose keys all vanished were caught above; a container can also go
    // away while its keys stay (another container's run.json no longer names it): stop it too
    for c in old.containers() {
        if new.container(&c.name).is_none() {
            stop.insert(c.name.clone());
        }
    }
    Transition::Live {
        stop: stop.into_iter().collect(),
    }
}

#[cfg(test)]
#[path = "transition_tests.rs"]
mod tests;
