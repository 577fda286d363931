//! The container engine: containers built by hand from a checked-out revision.
pub mod lxc;
pub mod net;
