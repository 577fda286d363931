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
pub mod init;
pub mod json;
pub mod logs;
pub mod state;
pub mod storage;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
pub mod update;
pub mod worker;

/// Entry points of the fuzz targets (tests/fuzz) and of their corpus replay in the normal test
/// run. Each must return normally on any input; a panic is a bug found.
pub mod fuzz {
    /// The state parser, and the JSON parser under it.
    pub fn state(data: &[u8]) {
        if let Ok(s) = crate::state::State::parse(data) {
            // a valid state must also summarise and expose its model without panicking
            let _ = s.summary();
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
    /// Netlink replies from the kernel (lengths and attributes are checked before slicing).
    pub fn netlink(data: &[u8]) {
        crate::container::net::fuzz_reply(data)
    }
}
