//! Received file-name rules on any name: what `transfer::name::sanitize` accepts is
//! one safe path component, accepted again unchanged, and so are its numbered
//! alternatives (`checks::check_name`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = checks::check_name(data) {
        panic!("{failure}");
    }
});
