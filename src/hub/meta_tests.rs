use super::*;
use crate::json::{parse, Value};

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn put(k: &str, v: &str) -> Op {
    Op::Put(k.into(), v.into())
}

fn del(k: &str) -> Op {
    Op::Delete(k.into())
}

#[test]
fn the_hub_wins_and_the_first_round_deletes_nothing() {
    let hub = kv(&[("a", "1"), ("same", "x")]);
    let local = kv(&[("same", "x"), ("a", "0"), ("b", "local")]);
    let ops = usermeta_ops(&hub, &local, None);
    assert_eq!(ops, vec![put("a", "1")]);
    let prev = after(&local, &ops);
    assert_eq!(prev, kv(&[("same", "x"), ("a", "1"), ("b", "local")]));
    // the next round: b is still not on the Hub, and nobody touched it
    let ops = usermeta_ops(&hub, &prev, Some(&prev));
    assert_eq!(ops, vec![del("b")]);
    assert_eq!(after(&prev, &ops), kv(&[("same", "x"), ("a", "1")]));
    // in step: nothing to do
    let now = after(&prev, &ops);
    assert!(usermeta_ops(&hub, &now, Some(&now)).is_empty());
}

#[test]
fn a_key_the_device_set_survives_one_round() {
    let hub = kv(&[("a", "1")]);
    let prev = kv(&[("a", "1"), ("c", "old")]);
    // a container set c and d since the last round
    let local = kv(&[("a", "1"), ("c", "new"), ("d", "x")]);
    let ops = usermeta_ops(&hub, &local, Some(&prev));
    assert!(ops.is_empty(), "{ops:?}");
    let prev = after(&local, &ops);
    assert_eq!(
        usermeta_ops(&hub, &prev, Some(&prev)),
        vec![del("c"), del("d")]
    );
    // a key the device changed that the Hub has: the Hub's value comes back
    let local = kv(&[("a", "2")]);
    assert_eq!(
        usermeta_ops(&hub, &local, Some(&kv(&[("a", "1")]))),
        vec![put("a", "1")]
    );
}

#[test]
fn keys_the_device_cannot_store_are_refused_not_deleted() {
    let big = "v".repeat(4097);
    let fits = "v".repeat(4096);
    let hub = kv(&[
        ("../x", "1"),
        ("a/b", "1"),
        ("", "1"),
        ("k.tmp", "1"),
        ("big", &big),
        ("fits", &fits),
    ]);
    let local = kv(&[("big", "old")]);
    let ops = usermeta_ops(&hub, &local, Some(&local));
    let refused: Vec<&str> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Refused(k, _) => Some(k.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec!["../x", "a/b", "", "k.tmp", "big"]);
    assert!(ops.contains(&put("fits", &fits)));
    // big is on the Hub: the device keeps what it has
    assert!(!ops.contains(&del("big")));
    assert_eq!(ops.len(), 6);
    // a refusal changes nothing
    assert_eq!(after(&local, &ops), kv(&[("big", "old"), ("fits", &fits)]));
}

#[test]
fn puts_come_in_the_hubs_order_then_deletes_in_the_devices() {
    let hub = kv(&[("z", "1"), ("a", "2")]);
    let local = kv(&[("y", "0"), ("b", "0")]);
    assert_eq!(
        usermeta_ops(&hub, &local, Some(&local)),
        vec![put("z", "1"), put("a", "2"), del("y"), del("b")]
    );
}

/// Upstream's user-meta list (`metadata.c`): a key added or set (even to the same value) is
/// flagged `updated`; after each Hub GET the flagged keys are unflagged and the others removed.
struct Upstream(Vec<(String, String, bool)>);

impl Upstream {
    fn set(&mut self, k: &str, v: &str) {
        match self.0.iter_mut().find(|e| e.0 == k) {
            Some(e) => {
                e.1 = v.to_string();
                e.2 = true;
            }
            None => self.0.push((k.to_string(), v.to_string(), true)),
        }
    }
    fn hub_get(&mut self, hub: &[(String, String)]) {
        for (k, v) in hub {
            self.set(k, v);
        }
        self.0.retain(|e| e.2);
        for e in &mut self.0 {
            e.2 = false;
        }
    }
    fn pairs(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.0.iter().map(|e| (e.0.clone(), e.1.clone())).collect();
        crate::sort(&mut v);
        v
    }
}

#[test]
fn rounds_end_where_upstreams_do() {
    // xorshift: the same pseudo-random event sequences on every run
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..50 {
        // boot: the stored keys are loaded (upstream flags them)
        let mut local: Vec<(String, String)> = Vec::new();
        for k in 0..rnd(4) {
            local.push((format!("k{k}"), "boot".into()));
        }
        let mut up = Upstream(Vec::new());
        for (k, v) in &local {
            up.set(k, v);
        }
        let mut hub: Vec<(String, String)> = Vec::new();
        let mut prev: Option<Vec<(String, String)>> = None;
        for step in 0..40 {
            match rnd(4) {
                // a container sets a key to a new value
                0 => {
                    let (k, v) = (format!("k{}", rnd(6)), format!("dev{step}"));
                    up.set(&k, &v);
                    local = after(&local, &[Op::Put(k, v)]);
                }
                // the user edits user-meta on the Hub
                1 => {
                    let k = format!("k{}", rnd(6));
                    hub.retain(|(key, _)| *key != k);
                    if rnd(2) == 0 {
                        hub.push((k, format!("hub{step}")));
                    }
                }
                // a user-meta round
                _ => {
                    up.hub_get(&hub);
                    let ops = usermeta_ops(&hub, &local, prev.as_deref());
                    local = after(&local, &ops);
                    prev = Some(local.clone());
                    let mut mine = local.clone();
                    crate::sort(&mut mine);
                    assert_eq!(mine, up.pairs(), "step {step}");
                }
            }
        }
    }
}

fn obj(body: &str) -> Value {
    parse(body.as_bytes(), Default::default()).unwrap()
}

#[test]
fn the_devmeta_body_embeds_json_objects_and_quotes_the_rest() {
    let local = kv(&[
        ("pantahub.online", "1"),
        ("pantavisor.revision", "5"),
        ("flag", "true"),
        ("interfaces", r#"{"eth0.ipv4":["10.0.0.2"]}"#),
        ("list", " [1, 2] "),
        ("broken", "{\"a\":"),
        ("quoted", "say \"hi\"\n"),
        ("empty", ""),
    ]);
    let body = devmeta_body(&local);
    let v = obj(&body);
    let o = v.as_object().unwrap();
    assert_eq!(o.len(), local.len());
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    assert_eq!(s("pantahub.online").as_deref(), Some("1"));
    assert_eq!(s("pantavisor.revision").as_deref(), Some("5"));
    assert_eq!(s("flag").as_deref(), Some("true"));
    assert_eq!(s("broken").as_deref(), Some("{\"a\":"));
    assert_eq!(s("quoted").as_deref(), Some("say \"hi\"\n"));
    assert_eq!(s("empty").as_deref(), Some(""));
    let ifs = v.get("interfaces").unwrap();
    assert_eq!(
        ifs.get("eth0.ipv4")
            .and_then(Value::as_array)
            .map(|a| a.len()),
        Some(1)
    );
    assert_eq!(
        v.get("list").and_then(Value::as_array).map(|a| a.len()),
        Some(2)
    );
    assert_eq!(devmeta_body(&[]), "{}");
}

#[test]
fn pv_ctrl_answers_parse_into_the_pairs_they_render() {
    let local = kv(&[
        ("pantahub.state", "idle"),
        ("interfaces", r#"{"eth0.ipv4":["10.0.0.2"]}"#),
        ("n", "5"),
        ("q", "a \"b\"\tc"),
    ]);
    // what pv-ctrl's GET /device-meta answers is what goes to the Hub
    let body = devmeta_body(&local);
    assert_eq!(pairs(body.as_bytes(), "device-meta").unwrap(), local);
    assert_eq!(devmeta_body(&pairs(body.as_bytes(), "x").unwrap()), body);
    // the Hub's numbers, booleans and nulls
    assert_eq!(
        pairs(br#"{"a":1,"b":true,"c":null,"d":[]}"#, "user-meta").unwrap(),
        kv(&[("a", "1"), ("b", "true"), ("d", "[]")])
    );
    for bad in [&b"[]"[..], b"{", b"\xff", b"\"x\""] {
        let e = pairs(bad, "device-meta").unwrap_err();
        assert!(e.starts_with("device-meta: "), "{e}");
        assert!(!e.contains("user-meta"), "{e}");
    }
}

#[test]
fn devmeta_goes_when_it_changed() {
    assert!(changed(None, "{}"));
    assert!(!changed(Some("{\"a\":\"1\"}"), "{\"a\":\"1\"}"));
    assert!(changed(Some("{\"a\":\"1\"}"), "{\"a\":\"2\"}"));
}
