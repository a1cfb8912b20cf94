//! The receiving side fed any sequence of frames, over one or more connections:
//! nothing lands outside the download folder, and every stored file holds bytes an
//! offer declared, under a name the rules accept (`checks::check_receiver`).

#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::{fuzz_mutator, fuzz_target};

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../mutator.rs"]
mod mutator;
#[path = "../seeds.rs"]
#[allow(dead_code)]
mod seeds;

/// One runtime and one scratch folder for the whole run; each input gets a folder
/// of its own in it, numbered by `RUNS`, removed when its checks pass.
struct Harness {
    runtime: tokio::runtime::Runtime,
    scratch: tempfile::TempDir,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();
static RUNS: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(|| Harness {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        scratch: tempfile::tempdir().unwrap(),
    });
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let checked =
        harness
            .runtime
            .block_on(checks::check_receiver(data, harness.scratch.path(), run));
    if let Err(failure) = checked {
        panic!("{failure}");
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutator::mutate(data, size, max_size, seed)
});

/// LeakSanitizer is off for this target (AddressSanitizer's memory error checks stay
/// on). The receiver starts threads for its disk work, and their thread-local state
/// (aws-lc's random generator state, freed by a thread-exit destructor; a new
/// thread's start closure; glibc's thread-exit records) was reported as leaked: twice
/// during runs, from inputs that did not reproduce it, and at the end of a run. None
/// of it is memory that chat allocates.
#[unsafe(no_mangle)]
pub extern "C" fn __lsan_is_turned_off() -> std::ffi::c_int {
    1
}
