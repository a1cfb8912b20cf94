//! The receiving side fed any sequence of frames, over one or more connections:
//! nothing lands outside the download folder, and every stored file holds bytes an
//! offer declared, under a name the rules accept (`checks::check_receiver`).

#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
///
/// The runtime's blocking threads are kept for the whole run. A blocking thread that
/// ends after its idle time frees the random number generator state that aws-lc keeps
/// per thread (part names are random) from a thread-exit destructor, and a leak check
/// that LeakSanitizer runs meanwhile reports that state as leaked: a false report,
/// seen once in a 10-minute run and not reproducible from its input.
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
            .thread_keep_alive(Duration::from_secs(24 * 60 * 60))
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
