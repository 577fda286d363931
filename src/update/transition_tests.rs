use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn ctr(name: &str, policy: &str) -> (String, String) {
    (
        format!("{name}/run.json"),
        format!(
            r#"{{"name":"{name}","type":"lxc","root-volume":"root.squashfs","restart_policy":"{policy}"}}"#
        ),
    )
}

fn obj(key: &str, sha: &str) -> (String, String) {
    (key.to_string(), format!("\"{sha}\""))
}

/// A state of a BSP, the `os` (system) platform and the given extra keys.
fn state(extra: &[(String, String)]) -> State {
    let mut keys = vec![
        (
            "bsp/run.json".to_string(),
            r#"{"linux":"kernel.img","initrd":"pantavisor"}"#.to_string(),
        ),
        obj("bsp/kernel.img", A),
        obj("bsp/pantavisor", A),
        ctr("os", "system"),
        obj("os/root.squashfs", A),
    ];
    for (k, v) in extra {
        match keys.iter_mut().find(|(x, _)| x == k) {
            Some(slot) => slot.1 = v.clone(),
            None => keys.push((k.clone(), v.clone())),
        }
    }
    let body: Vec<String> = keys.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let doc = format!(
        "{{\"#spec\":\"pantavisor-service-system@1\",{}}}",
        body.join(",")
    );
    match State::parse(doc.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("{e}\n{doc}"),
    }
}

fn apps() -> Vec<(String, String)> {
    vec![
        ctr("web", "container"),
        obj("web/root.squashfs", A),
        ctr("app", "container"),
        obj("app/root.squashfs", A),
    ]
}

fn live(stop: &[&str]) -> Transition {
    Transition::Live {
        stop: stop.iter().map(|s| s.to_string()).collect(),
    }
}

fn is_reboot(t: &Transition) -> bool {
    matches!(t, Transition::Reboot { .. })
}

#[test]
fn identical_states_change_nothing() {
    assert_eq!(decide(&state(&apps()), &state(&apps())), live(&[]));
}

#[test]
fn a_changed_object_of_a_container_app_restarts_only_it() {
    let mut new = apps();
    new.push(obj("web/root.squashfs", B));
    assert_eq!(decide(&state(&apps()), &state(&new)), live(&["web"]));
}

#[test]
fn a_changed_inline_json_of_a_container_app_restarts_it() {
    let mut new = apps();
    new.push((
        "app/run.json".into(),
        r#"{"name":"app","type":"lxc","root-volume":"root.squashfs","restart_policy":"container","status_goal":"READY"}"#.into(),
    ));
    assert_eq!(decide(&state(&apps()), &state(&new)), live(&["app"]));
}

#[test]
fn config_overlay_of_a_container_belongs_to_it() {
    let mut new = apps();
    new.push(obj("_config/web/etc/motd", B));
    assert_eq!(decide(&state(&apps()), &state(&new)), live(&["web"]));
}

#[test]
fn config_overlay_of_no_container_reboots() {
    let mut new = apps();
    new.push(obj("_config/nobody/etc/motd", B));
    assert!(is_reboot(&decide(&state(&apps()), &state(&new))));
}

#[test]
fn a_system_container_change_reboots() {
    let new = [obj("os/root.squashfs", B)];
    assert!(is_reboot(&decide(&state(&[]), &state(&new))));
}

#[test]
fn becoming_system_in_the_new_state_reboots() {
    let mut new = apps();
    new.push(ctr("web", "system"));
    assert!(is_reboot(&decide(&state(&apps()), &state(&new))));
}

#[test]
fn bsp_change_reboots() {
    let new = [obj("bsp/kernel.img", B)];
    match decide(&state(&[]), &state(&new)) {
        Transition::Reboot { why } => assert!(why.contains("bsp/kernel.img"), "{why}"),
        t => panic!("{t:?}"),
    }
}

#[test]
fn device_json_change_reboots() {
    let new = [("device.json".to_string(), r#"{"groups":[{"name":"root","restart_policy":"system","status_goal":"STARTED","timeout":30},{"name":"platform","restart_policy":"system","status_goal":"STARTED","timeout":30},{"name":"app","restart_policy":"container","status_goal":"STARTED","timeout":30}]}"#.to_string())];
    assert!(is_reboot(&decide(&state(&[]), &state(&new))));
}

#[test]
fn an_added_container_app_starts_live_and_stops_nothing() {
    assert_eq!(decide(&state(&[]), &state(&apps())), live(&[]));
}

#[test]
fn a_removed_container_app_is_stopped_live() {
    let old = apps();
    let new: Vec<_> = apps()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("app/"))
        .collect();
    assert_eq!(decide(&state(&old), &state(&new)), live(&["app"]));
}

#[test]
fn removing_a_system_container_reboots() {
    let mut old = apps();
    old.push(ctr("net", "system"));
    old.push(obj("net/root.squashfs", A));
    assert!(is_reboot(&decide(&state(&old), &state(&apps()))));
}

#[test]
fn untracked_keys_restart_nothing() {
    let mut new = apps();
    new.push(("web/src.json".into(), r#"{"x":1}"#.into()));
    new.push(("web/build.json".into(), r#"{"y":2}"#.into()));
    assert_eq!(decide(&state(&apps()), &state(&new)), live(&[]));
}

#[test]
fn two_changed_apps_both_restart_in_name_order() {
    let mut new = apps();
    new.push(obj("web/root.squashfs", B));
    new.push(obj("app/root.squashfs", B));
    assert_eq!(decide(&state(&apps()), &state(&new)), live(&["app", "web"]));
}

#[test]
fn any_reboot_key_wins_over_live_changes() {
    let mut new = apps();
    new.push(obj("web/root.squashfs", B));
    new.push(obj("bsp/pantavisor", B));
    assert!(is_reboot(&decide(&state(&apps()), &state(&new))));
}
