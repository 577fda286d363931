use super::*;
use crate::storage::simfs::{Cut, SimFs};

#[test]
fn set_get_delete_list_and_durability() {
    let fs = SimFs::new();
    let m = MetaStore::new(&fs, "/storage/cache/meta");
    m.set("pvr-sdk.authorized_keys", b"ssh-ed25519 AAA")
        .unwrap();
    m.set("k", b"1").unwrap();
    fs.power_cut(Cut::DurableOnly);
    assert_eq!(m.get("k").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(m.list().unwrap().len(), 2);
    assert!(m.delete("k").unwrap());
    assert!(!m.delete("k").unwrap());
    fs.power_cut(Cut::DurableOnly);
    assert_eq!(m.get("k").unwrap(), None);
}

#[test]
fn unsafe_keys_are_refused() {
    let fs = SimFs::new();
    let m = MetaStore::new(&fs, "/m");
    for k in ["", ".", "..", "a/b", "x.tmp", "a\nb"] {
        let e = m.set(k, b"v").unwrap_err();
        assert!(e.to_string().contains("bad name"), "{k}: {e}");
    }
}

#[test]
fn container_views_split_at_the_first_dot() {
    assert_eq!(
        container_view("pvr-sdk.authorized_keys"),
        Some(("pvr-sdk", "authorized_keys"))
    );
    assert_eq!(container_view("a.b.c"), Some(("a", "b.c")));
    assert_eq!(container_view("plain"), None);
    assert_eq!(container_view(".hidden"), None);
    assert_eq!(container_view("trailing."), None);
}
