//! The frame decoder on any bytes: it never panics nor overruns, and whatever it
//! accepts re-encodes to the very bytes it consumed (`checks::check_decoder`).

#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../mutator.rs"]
mod mutator;
#[path = "../seeds.rs"]
#[allow(dead_code)]
mod seeds;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = checks::check_decoder(data) {
        panic!("{failure}");
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutator::mutate(data, size, max_size, seed)
});
