//! Replays every input the fuzz targets ever found failing (`fuzz/regressions/`), so
//! that the normal test suite, on stable Rust, keeps each bug fixed. A file's name
//! says which check it replays: `decoder-`, `receiver-`, `names-`, `manifest-` or
//! `sanitizer-`; any other name fails the test rather than being skipped.
//!
//! A failure that depended on timing may not recur on replay; each such bug also has a
//! deterministic unit test where it was fixed. `receiver-reoffer-during-verify.bin`
//! (the same offer again while the first copy was being verified) is pinned down by
//! `transfer::incoming::tests::a_part_still_being_verified_is_never_resumed`.

#[path = "../../fuzz/checks.rs"]
mod checks;
#[path = "../../fuzz/seeds.rs"]
#[allow(dead_code)]
mod seeds;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saved_fuzz_input_now_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let scratch = tempfile::tempdir().unwrap();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no saved inputs found in {}",
        dir.display()
    );
    for (run, path) in paths.iter().enumerate() {
        let input = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let target = name.split('-').next().unwrap_or_default();
        let result = match target {
            "decoder" => checks::check_decoder(&input),
            "receiver" => checks::check_receiver(&input, scratch.path(), run as u64).await,
            "names" => checks::check_name(&input),
            "manifest" => checks::check_manifest(&input),
            "sanitizer" => checks::check_sanitizer(&input),
            _ => {
                panic!(
                    "{name}: the name must start with decoder-, receiver-, names-, manifest- or sanitizer-"
                )
            }
        };
        assert_eq!(result, Ok(()), "{name}");
    }
}

/// The receiver target's seeds, each a connection's frames (verified files, a hash
/// after the data, a digest out of place, a resume), keep the check's invariants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_seeds_pass() {
    let scratch = tempfile::tempdir().unwrap();
    for (run, input) in seeds::frame_sequences().iter().enumerate() {
        let result = checks::check_receiver(input, scratch.path(), run as u64).await;
        assert_eq!(result, Ok(()), "seed {run}");
    }
}

/// The manifest target's seeds hold what its check claims, and the check is not
/// vacuous: the sender's own tree is accepted by both systems' rules, names that
/// differ only in case by Unix's alone, and every hostile tree by neither.
#[test]
fn the_manifest_seeds_pass_and_only_the_honest_trees_are_accepted() {
    use chat::transfer::manifest;
    use chat::transfer::name::NameRules;
    let inputs = seeds::manifests();
    let accepted_by = |rules: NameRules| -> Vec<bool> {
        (inputs.iter())
            .map(|input| {
                assert_eq!(checks::check_manifest(input), Ok(()));
                let (head, bytes) = input.split_at(12);
                let entries = u32::from_be_bytes(head[..4].try_into().unwrap());
                let total = u64::from_be_bytes(head[4..].try_into().unwrap());
                manifest::check(bytes, entries, total, rules).is_ok()
            })
            .collect()
    };
    let mut unix = vec![false; inputs.len()];
    (unix[0], unix[4], unix[9]) = (true, true, true);
    let mut windows = vec![false; inputs.len()];
    (windows[0], windows[9]) = (true, true);
    assert_eq!(accepted_by(NameRules::UNIX), unix);
    assert_eq!(accepted_by(NameRules::WINDOWS), windows);
}
