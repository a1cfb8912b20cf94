//! Terminal escaping on any text: `sanitize::for_terminal` leaves nothing that could
//! drive a terminal or hide itself, and leaves ordinary text alone
//! (`checks::check_sanitizer`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = checks::check_sanitizer(data) {
        panic!("{failure}");
    }
});
