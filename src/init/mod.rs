//! What PID 1 does before the device runs: finding and mounting storage in embedded mode.
pub mod blockdev;
pub mod embedded;
