//! pantavisor: PID 1 of an embedded Linux device (README: "How a device runs", "Layout").
//!
//! Data flows one way: `sys` knows nothing above it; `json`, `state` and `config` are pure
//! data; `storage`, `bootloader` and `container` do effects; `supervisor`, `update` and the
//! device's model (`device::model`) decide; `device` interprets the decisions; `control` and
//! the loop are the edges that turn the outside world into typed inputs.
#![deny(unsafe_code)] // only `sys` may allow it

pub mod bootloader;
pub mod config;
pub mod container;
pub mod control;
pub mod device;
pub mod drivers;
pub mod event_loop;
#[cfg(feature = "hub")]
pub mod hub;
pub mod init;
pub mod json;
pub mod logs;
pub mod pvs;
pub mod state;
pub mod storage;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
pub mod update;
pub mod worker;

/// Sorts `v` by `Ord`, stably. Only the index sort inside is core's: its sort is ~3.5 KB of the
/// binary for every element type sorted (names as String, &str, PathBuf, OsString).
pub fn sort<T: Ord + Default>(v: &mut [T]) {
    let order = sorted_order(v.len(), &|a, b| v[a].cmp(&v[b]));
    let mut old: Vec<T> = v.iter_mut().map(std::mem::take).collect();
    for (slot, i) in v.iter_mut().zip(order) {
        if let Some(x) = old.get_mut(i) {
            *slot = std::mem::take(x);
        }
    }
}

/// The indices 0..n in stable order by `cmp`: a bottom-up merge sort, smaller than core's.
fn sorted_order(n: usize, cmp: &dyn Fn(usize, usize) -> std::cmp::Ordering) -> Vec<usize> {
    let mut a: Vec<usize> = (0..n).collect();
    let mut b = a.clone();
    let mut w = 1;
    while w < n {
        let mut i = 0;
        while i < n {
            let (mid, end) = ((i + w).min(n), (i + 2 * w).min(n));
            let (mut l, mut r) = (i, mid);
            for slot in &mut b[i..end] {
                // Ties take the left run: that keeps equal elements in order.
                if r >= end || (l < mid && cmp(a[l], a[r]).is_le()) {
                    *slot = a[l];
                    l += 1;
                } else {
                    *slot = a[r];
                    r += 1;
                }
            }
            i = end;
        }
        std::mem::swap(&mut a, &mut b);
        w *= 2;
    }
    a
}

/// Entry points of the fuzz targets (tests/fuzz) and of their corpus replay in the normal test
/// run. Each must return normally on any input; a panic is a bug found.
pub mod fuzz {
    /// The state parser, and the JSON parser under it.
    pub fn state(data: &[u8]) {
        if let Ok(s) = crate::state::State::parse(data) {
            // a valid state must also summarise and expose its model without panicking
            let _ = s.summary();
            // and judge what this build can run (crypt disk paths are parsed there)
            let _ = s.unsupported();
            assert_eq!(s.raw(), data, "the state must keep its exact bytes");
        }
        let _ = crate::json::parse(data, crate::json::Limits::default());
    }
    pub fn config(data: &[u8]) {
        // every odd line is a warning by design; millions of them would drown the fuzzer
        crate::logs::set_level(crate::logs::Level::Fatal);
        crate::config::fuzz_input(data)
    }
    pub fn uboot(data: &[u8]) {
        crate::bootloader::fuzz_uboot(data)
    }
    pub fn grubenv(data: &[u8]) {
        crate::bootloader::fuzz_grubenv(data)
    }
    /// The LXC config subset parser (container configs come from the revision).
    pub fn lxc(data: &[u8]) {
        crate::container::lxc::fuzz(data)
    }
    /// pv-ctrl's HTTP request parser (requests come from containers).
    pub fn http(data: &[u8]) {
        crate::control::http::fuzz_request(data)
    }
    /// pvs signatures: the JWS protected header, selection globs, X.509 and key DER (states
    /// come from the Hub and from containers).
    pub fn pvs(data: &[u8]) {
        crate::pvs::fuzz_input(data)
    }
    /// Netlink replies from the kernel (lengths and attributes are checked before slicing).
    pub fn netlink(data: &[u8]) {
        crate::container::net::fuzz_reply(data)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sort_orders_by_ord_and_keeps_equal_elements_in_place() {
        let mut v = vec!["b", "a", "c", "a", ""];
        super::sort(&mut v);
        assert_eq!(v, ["", "a", "a", "b", "c"]);
        // Path's order is by components, not bytes: "a/b" < "a-b" although '/' > '-'.
        let mut p: Vec<std::path::PathBuf> = ["a-b", "a/b", "a"].iter().map(Into::into).collect();
        super::sort(&mut p);
        assert_eq!(p, ["a", "a/b", "a-b"].map(std::path::PathBuf::from));
        // Equal by Ord, told apart by the second field: their order stays.
        #[derive(Default, Debug, PartialEq, Eq)]
        struct K(u8, u8);
        impl PartialOrd for K {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for K {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.0.cmp(&o.0)
            }
        }
        let mut k = vec![K(2, 0), K(1, 1), K(2, 2), K(1, 3)];
        super::sort(&mut k);
        assert_eq!(k, [K(1, 1), K(1, 3), K(2, 0), K(2, 2)]);
        // Every length across the merge widths, against core's stable sort.
        for n in 0..40u32 {
            let mut v: Vec<u32> = (0..n).map(|i| i.wrapping_mul(2654435761) % 7).collect();
            let mut want = v.clone();
            want.sort();
            super::sort(&mut v);
            assert_eq!(v, want, "{n}");
        }
        let mut e: Vec<String> = Vec::new();
        super::sort(&mut e);
        assert!(e.is_empty());
    }
}
