//! Replays every input the fuzzer ever found failing (`fuzz/regressions/`).
//!
//! A failure that depended on timing may not recur on replay; each such bug also has a
//! deterministic unit test where it was fixed. `receiver-reoffer-during-verify.bin`
//! (the same offer again while the first copy was being verified) is pinned down by
//! `transfer::incoming::tests::a_part_still_being_verified_is_never_resumed`.

#[path = "../fuzz/checks.rs"]
mod checks;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saved_fuzz_input_now_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let scratch = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for (run, entry) in std::fs::read_dir(&dir).unwrap().enumerate() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = if name.starts_with("decoder-") {
            checks::check_decoder(&input)
        } else {
            checks::check_receiver(&input, scratch.path(), run as u64).await
        };
        assert_eq!(result, Ok(()), "{name}");
        replayed += 1;
    }
    assert!(replayed > 0, "no saved inputs found in {}", dir.display());
}
