#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pantavisor::fuzz::pvs(data));
