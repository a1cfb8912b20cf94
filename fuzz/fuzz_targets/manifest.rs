//! A folder's manifest from a hostile peer: whatever `transfer::manifest::check`
//! accepts is a tree the receiver can build as announced (`checks::check_manifest`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = checks::check_manifest(data) {
        panic!("{failure}");
    }
});
