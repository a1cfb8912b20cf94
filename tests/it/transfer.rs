//! `transfer FILE` between two real processes: the bytes that land on disk, the
//! names they land under, and what both users are told.

use crate::common;

use std::time::{Duration, SystemTime};

use common::case_folder::CaseInsensitiveFolder;
use common::{Pair, Stream, World, listing, pseudo_random};
use sha2::{Digest, Sha256};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Sends `data` as `name` from alice to bob and checks the bytes bob stores.
fn send_and_verify(pair: &mut Pair, name: &str, data: &[u8]) {
    std::fs::write(pair.alice.workdir.join(name), data).unwrap();
    pair.alice.send(&format!("transfer {name}"));
    let saved = pair.bob.expect(Stream::Stderr, "(verified, sha256 ");
    assert!(saved.contains(&sha256_hex(data)), "{saved}");
    assert!(saved.contains("verified"), "{saved}");
    pair.alice.expect(
        Stream::Stderr,
        &format!("{name} delivered and verified by bob"),
    );
    let received = std::fs::read(pair.bob.workdir.join(name)).unwrap();
    assert_eq!(received.len(), data.len(), "{name}");
    assert_eq!(sha256_hex(&received), sha256_hex(data), "{name}");
}

#[test]
fn files_of_boundary_sizes_arrive_intact() {
    let mut pair = Pair::connect(&[]);
    for (i, size) in [0usize, 1, 65_535, 65_536, 65_537, 3 * 65_536 + 17]
        .into_iter()
        .enumerate()
    {
        send_and_verify(
            &mut pair,
            &format!("size-{size}.bin"),
            &pseudo_random(size, i as u64),
        );
    }
    assert!(!pair.bob.workdir.join(common::PARTS_DIR).exists());
}

#[test]
fn tens_of_mebibytes_arrive_intact_while_chat_continues() {
    let mut pair = Pair::connect(&[]);
    let data = pseudo_random(40 << 20, 7);
    std::fs::write(pair.alice.workdir.join("big.bin"), &data).unwrap();
    pair.alice.send("transfer big.bin");
    pair.bob
        .expect(Stream::Stderr, "Receiving big.bin (40.00 MiB) from alice");
    for i in 0..20 {
        pair.alice.send(&format!("during {i}"));
        pair.bob.send(&format!("reply {i}"));
    }
    for i in 0..20 {
        pair.bob
            .expect(Stream::Stdout, &format!("alice: during {i}"));
        pair.alice
            .expect(Stream::Stdout, &format!("bob: reply {i}"));
    }
    pair.bob.expect(Stream::Stderr, "(verified, sha256 ");
    pair.alice
        .expect(Stream::Stderr, "big.bin delivered and verified by bob");
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("big.bin")).unwrap(),
        data
    );
}

#[test]
fn names_with_spaces_unicode_and_folders_arrive_as_base_names() {
    let mut pair = Pair::connect(&[]);
    send_and_verify(&mut pair, "my holiday notes.txt", b"spaces");
    send_and_verify(&mut pair, "résumé – 日本.pdf", b"unicode");
    let folder = pair.alice.workdir.join("deep/er");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("nested.txt"), b"nested").unwrap();
    pair.alice.send("transfer \"deep/er/nested.txt\"");
    pair.bob.expect(Stream::Stderr, "(verified, sha256 ");
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("nested.txt")).unwrap(),
        b"nested"
    );
    assert!(!pair.bob.workdir.join("deep").exists());
}

#[test]
fn a_name_collision_keeps_both_files() {
    let mut pair = Pair::connect(&[]);
    std::fs::write(pair.bob.workdir.join("report.txt"), b"bob's own").unwrap();
    std::fs::write(pair.alice.workdir.join("report.txt"), b"from alice").unwrap();
    pair.alice.send("transfer report.txt");
    let saved = pair.bob.expect(Stream::Stderr, "(verified, sha256 ");
    assert!(saved.contains("report (1).txt"), "{saved}");
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("report.txt")).unwrap(),
        b"bob's own"
    );
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("report (1).txt")).unwrap(),
        b"from alice"
    );
}

/// Opening a FIFO to read waits for a writer: `transfer` must look before it opens.
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_at_once_and_a_file_after_it_still_goes() {
    let mut pair = Pair::connect(&[]);
    let made = std::process::Command::new("mkfifo")
        .arg(pair.alice.workdir.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(pair.alice.workdir.join("after.txt"), b"after the pipe").unwrap();
    pair.alice.send("transfer pipe");
    pair.alice.send("transfer after.txt");
    let failed = pair.alice.expect(Stream::Stderr, "Sending pipe failed");
    assert!(failed.contains("is not a regular file"), "{failed}");
    pair.bob.expect(Stream::Stderr, "(verified, sha256 ");
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("after.txt")).unwrap(),
        b"after the pipe"
    );
}

#[test]
fn a_missing_file_is_a_local_error_and_chat_goes_on() {
    let mut pair = Pair::connect(&[]);
    pair.alice.send("transfer no-such-file.bin");
    let failed = pair
        .alice
        .expect(Stream::Stderr, "Sending no-such-file.bin failed");
    assert!(failed.contains("No such file"), "{failed}");
    assert!(
        failed.ends_with("to send it as a message instead, type: /say transfer no-such-file.bin"),
        "{failed}"
    );
    pair.alice.send("still here");
    pair.bob.expect(Stream::Stdout, "alice: still here");
    assert!(
        !pair
            .bob
            .history
            .iter()
            .any(|(_, line)| line.contains("Receiving"))
    );
}

#[test]
fn two_queued_transfers_both_arrive() {
    let mut pair = Pair::connect(&[]);
    let first = pseudo_random(3 << 20, 1);
    let second = pseudo_random(2 << 20, 2);
    std::fs::write(pair.alice.workdir.join("first.bin"), &first).unwrap();
    std::fs::write(pair.alice.workdir.join("second.bin"), &second).unwrap();
    pair.alice.send("transfer first.bin");
    pair.alice.send("transfer second.bin");
    pair.alice
        .expect_seen(Stream::Stderr, "first.bin delivered and verified by bob");
    pair.alice
        .expect_seen(Stream::Stderr, "second.bin delivered and verified by bob");
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("first.bin")).unwrap(),
        first
    );
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("second.bin")).unwrap(),
        second
    );
}

#[test]
fn one_transfer_line_sends_several_files_quoted_as_a_shell_would() {
    let mut pair = Pair::connect(&[]);
    let files = [
        ("one.bin", pseudo_random(1 << 20, 3)),
        ("two words.txt", b"spaces in a name".to_vec()),
        ("three.bin", pseudo_random(70_000, 4)),
    ];
    for (name, data) in &files {
        std::fs::write(pair.alice.workdir.join(name), data).unwrap();
    }
    pair.alice
        .send("transfer one.bin \"two words.txt\" three.bin missing.bin");
    pair.alice.expect(Stream::Stderr, "missing.bin");
    for (name, data) in &files {
        pair.alice.expect_seen(
            Stream::Stderr,
            &format!("{name} delivered and verified by bob"),
        );
        let stored = std::fs::read(pair.bob.workdir.join(name)).unwrap();
        assert_eq!(sha256_hex(&stored), sha256_hex(data), "{name}");
    }
    assert!(!pair.bob.workdir.join("missing.bin").exists());
    for _ in &files {
        pair.bob.expect(Stream::Stderr, "(verified, sha256 ");
    }
    // A single name with spaces, unquoted, is still one file.
    send_and_verify(&mut pair, "a b c.txt", b"one file");
}

#[test]
fn a_sender_killed_mid_transfer_leaves_no_final_file_and_the_receiver_runs_on() {
    let mut pair = Pair::connect(&[]);
    let data = pseudo_random(128 << 20, 3);
    std::fs::write(pair.alice.workdir.join("huge.bin"), &data).unwrap();
    pair.alice.send("transfer huge.bin");
    pair.bob.expect(Stream::Stderr, "Receiving huge.bin");
    pair.alice.signal("KILL");
    let interrupted = pair
        .bob
        .expect(Stream::Stderr, "Receiving huge.bin interrupted");
    assert!(interrupted.contains("kept"), "{interrupted}");
    assert!(pair.bob.is_running());
    // Only the partial file and its description are left, in the private folder,
    // for a resume.
    assert_eq!(listing(&pair.bob.workdir), [common::PARTS_DIR]);
    assert_eq!(common::kept_counts(&pair.bob.workdir), (1, 1));
    pair.bob.send("still running");
}

#[test]
fn offers_over_the_size_limit_are_refused_on_both_sides() {
    let mut pair = Pair::connect(&["--max-file-size", "1K"]);
    std::fs::write(pair.alice.workdir.join("big.txt"), vec![b'x'; 2048]).unwrap();
    pair.alice.send("transfer big.txt");
    let refused = pair.bob.expect(Stream::Stderr, "Receiving big.txt failed");
    assert!(
        refused.contains("the file is 2.00 KiB, more than the receiver's limit of 1.00 KiB"),
        "{refused}"
    );
    let told = pair.alice.expect(Stream::Stderr, "Sending big.txt failed");
    assert!(told.contains("refused by the peer"), "{told}");
    assert!(listing(&pair.bob.workdir).is_empty());
}

#[test]
fn files_go_to_the_download_folder_which_is_created() {
    let mut pair = Pair::connect(&["--download-dir", "incoming/files"]);
    std::fs::write(pair.alice.workdir.join("a.txt"), b"into the folder").unwrap();
    pair.alice.send("transfer a.txt");
    pair.bob
        .expect(Stream::Stderr, "Saved incoming/files/a.txt");
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("incoming/files/a.txt")).unwrap(),
        b"into the folder"
    );
}

/// A download folder in which no file can be created is found at start, and the
/// error names it, rather than every offer being refused later.
#[cfg(unix)]
#[test]
fn an_unwritable_download_folder_is_refused_at_start_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    world.identity("bob");
    let home = world.path().join("bob-home");
    std::fs::create_dir_all(home.join("closed")).unwrap();
    std::fs::set_permissions(home.join("closed"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let certs = world.certs().display().to_string();
    let args = [
        "--name",
        "bob",
        "--certs-dir",
        &certs,
        "--listen",
        "127.0.0.1:0",
        "--peer-fingerprint",
        &"ab".repeat(32),
        "--connect",
        "1",
        "--download-dir",
        "closed",
    ]
    .map(String::from);
    let mut bob = common::Peer::spawn_in(&common::bound_by_permissions(), &home, &args);
    let status = bob.wait();
    assert_eq!(status.code(), Some(1), "{}", bob.transcript());
    let error = (bob.lines_on(Stream::Stderr).into_iter())
        .find(|line| line.starts_with("chat: error: "))
        .unwrap_or_else(|| panic!("no error:\n{}", bob.transcript()))
        .to_owned();
    assert!(
        error.contains("cannot write in the download folder closed"),
        "{error}"
    );
    assert!(
        bob.lines_on(Stream::Stdout).is_empty(),
        "{}",
        bob.transcript()
    );
}

#[test]
fn a_chat_line_starting_with_transfer_can_be_sent_as_text() {
    let mut pair = Pair::connect(&[]);
    pair.alice.send("/say transfer complete, thanks");
    pair.bob
        .expect(Stream::Stdout, "alice: transfer complete, thanks");
}

/// A file of `size` bytes that costs no time to write (sparse, all zeros).
fn sparse_file(path: &std::path::Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

/// Each side says who cancelled, in words: the one who did reads "by you", the
/// other the name of who did; and `/transfers` lists by ID, sent ones first.
#[test]
fn the_sender_cancels_and_both_sides_are_told() {
    let mut pair = Pair::connect(&[]);
    sparse_file(&pair.alice.workdir.join("big.bin"), 1 << 30);
    std::fs::write(pair.bob.workdir.join("reply.txt"), b"reply\n").unwrap();
    std::fs::write(pair.alice.workdir.join("small.txt"), b"small\n").unwrap();
    pair.alice.send("transfer big.bin");
    pair.bob
        .expect(Stream::Stderr, "Receiving big.bin (1.00 GiB) from alice");
    pair.bob.send("transfer reply.txt");
    pair.alice.expect_seen(Stream::Stderr, "Saved ./reply.txt");
    pair.alice.send("/cancel s1");
    pair.alice
        .expect(Stream::Stderr, "Sending big.bin: cancelled by you");
    pair.bob
        .expect(Stream::Stderr, "Receiving big.bin: cancelled by alice");
    pair.alice.send("transfer small.txt");
    pair.alice
        .expect(Stream::Stderr, "small.txt delivered and verified by bob");
    pair.alice.send("/transfers");
    pair.alice.expect(Stream::Stderr, "Transfers:");
    let rows: Vec<String> = ["s1", "s2", "r1"]
        .iter()
        .map(|_| pair.alice.expect(Stream::Stderr, "  "))
        .collect();
    assert!(
        rows[0].starts_with("  s1    big.bin (1.00 GiB): cancelled by you"),
        "{rows:#?}"
    );
    assert!(rows[1].starts_with("  s2    small.txt"), "{rows:#?}");
    assert!(rows[2].starts_with("  r1    reply.txt"), "{rows:#?}");
    assert_eq!(common::kept_counts(&pair.bob.workdir), (0, 0));
    pair.alice.send("still talking");
    pair.bob.expect(Stream::Stdout, "alice: still talking");
}

#[test]
fn the_receiver_cancels_keeping_the_part_and_a_later_offer_resumes() {
    let mut pair = Pair::connect(&[]);
    sparse_file(&pair.alice.workdir.join("big.bin"), 1 << 30);
    pair.alice.send("transfer big.bin");
    pair.bob
        .expect(Stream::Stderr, "Receiving big.bin (1.00 GiB) from alice");
    common::wait_for_kept_part(&pair.bob.workdir, 16 << 20);
    pair.bob.send("/cancel r1 keep");
    let kept = pair
        .bob
        .expect(Stream::Stderr, "Receiving big.bin: cancelled by you; ");
    let (moved, rest) = (kept.split("cancelled by you; ").nth(1))
        .and_then(|rest| rest.split_once(" of 1.00 GiB kept in "))
        .unwrap_or_else(|| panic!("no human sizes in {kept:?}"));
    assert!(moved.ends_with(" MiB") || moved.ends_with(" GiB"), "{kept}");
    assert!(rest.ends_with(" to resume"), "{kept}");
    pair.alice
        .expect(Stream::Stderr, "Sending big.bin: cancelled by bob");
    assert_eq!(common::kept_counts(&pair.bob.workdir), (1, 1));
    pair.alice.send("transfer big.bin");
    pair.bob.expect(Stream::Stderr, "resuming at");
    let saved = pair.bob.expect(Stream::Stderr, "Saved ./big.bin (verified");
    let zeros = hex::encode(Sha256::digest(vec![0u8; 1 << 30]));
    assert!(saved.contains(&zeros), "{saved}");
    assert_eq!(common::kept_counts(&pair.bob.workdir), (0, 0));
}

/// A part kept for over 30 days is removed once the next transfer starts, and the
/// receiver says so: that transfer is taken as given up, and its bytes go.
#[test]
fn a_part_kept_for_over_30_days_is_removed_and_the_receiver_says_so() {
    let mut pair = Pair::connect(&[]);
    sparse_file(&pair.alice.workdir.join("big.bin"), 1 << 30);
    pair.alice.send("transfer big.bin");
    pair.bob
        .expect(Stream::Stderr, "Receiving big.bin (1.00 GiB) from alice");
    common::wait_for_kept_part(&pair.bob.workdir, 1 << 20);
    pair.bob.send("/cancel r1 keep");
    pair.bob
        .expect(Stream::Stderr, "Receiving big.bin: cancelled by you; ");
    let kept = common::kept_parts(&pair.bob.workdir);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let long_ago = SystemTime::now() - Duration::from_secs(31 * 24 * 60 * 60);
    std::fs::File::options()
        .write(true)
        .open(&kept[0])
        .and_then(|part| part.set_modified(long_ago))
        .unwrap();
    std::fs::write(pair.alice.workdir.join("small.txt"), b"new").unwrap();
    pair.alice.send("transfer small.txt");
    let removed = pair
        .bob
        .expect(Stream::Stderr, "Removed 1 unfinished transfer");
    assert!(
        removed.contains(
            "kept for over 30 days in ./.chat-parts, which can no longer resume: big.bin"
        ),
        "{removed}"
    );
    pair.bob
        .expect(Stream::Stderr, "Saved ./small.txt (verified");
    assert_eq!(common::kept_counts(&pair.bob.workdir), (0, 0));
}

const NOT_HASHED_AGAIN: &str =
    "Sending same.bin: unchanged since it was last hashed; not hashed again";

/// Sends same.bin from alice and waits until bob has it, sent or already there;
/// true when alice hashed it.
fn send_same(pair: &mut Pair) -> bool {
    let before = pair.alice.lines_on(Stream::Stderr).len();
    pair.alice.send("transfer same.bin");
    pair.alice
        .expect_where(Stream::Stderr, "same.bin delivered or there", |line| {
            line == "same.bin delivered and verified by bob"
                || line == "bob already has same.bin (same SHA-256); nothing needed sending"
        });
    !pair.alice.lines_on(Stream::Stderr)[before..]
        .iter()
        .any(|line| line.contains(NOT_HASHED_AGAIN))
}

#[test]
fn an_unchanged_file_is_hashed_once_even_after_a_restart_and_a_changed_one_again() {
    let world = World::new();
    let alice_home = world.path().join("alice-home");
    std::fs::create_dir_all(&alice_home).unwrap();
    let path = alice_home.join("same.bin");
    let data = pseudo_random(3 << 20, 21);
    std::fs::write(&path, &data).unwrap();
    common::wait_until_settled(&path);

    let mut pair = Pair::connect_in(world, &[]);
    assert!(send_same(&mut pair), "the first send hashes the file");
    assert!(!send_same(&mut pair), "the second one does not");
    pair.bob.expect(
        Stream::Stderr,
        "same.bin from alice is one you already received, as ./same.bin",
    );
    pair.alice.close_stdin();
    pair.bob.close_stdin();
    assert!(pair.alice.wait().success(), "{}", pair.alice.transcript());
    assert!(pair.bob.wait().success(), "{}", pair.bob.transcript());

    let mut pair = Pair::connect_again(pair.world, &[]);
    assert!(!send_same(&mut pair), "nor one after a restart");

    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(file);
    assert!(
        send_same(&mut pair),
        "the same bytes with another modification time are hashed again"
    );

    let longer = [data.as_slice(), b"more"].concat();
    std::fs::write(&path, &longer).unwrap();
    assert!(send_same(&mut pair), "a longer file is hashed again");
    let saved = pair.bob.expect(Stream::Stderr, "Saved ./same (1).bin");
    assert!(saved.contains(&sha256_hex(&longer)), "{saved}");
}

/// What bob answers when offered a file: the line that says it was stored, or the
/// one that says it was there already.
fn bob_answers(pair: &mut Pair, name: &str) -> String {
    pair.bob
        .expect_where(Stream::Stderr, "Saved or already", |line| {
            line.starts_with("Saved ./") || (line.contains(name) && line.contains("already"))
        })
}

#[test]
fn a_file_put_in_the_download_folder_by_hand_is_stored_again_as_a_copy() {
    // "Already saved" for any file that happens to be there would tell the peer,
    // without a byte sent, whether a file of that name and content is there.
    let mut pair = Pair::connect(&[]);
    let data = b"the same bytes on both sides\n";
    std::fs::write(pair.alice.workdir.join("notes.txt"), data).unwrap();
    std::fs::write(pair.bob.workdir.join("notes.txt"), data).unwrap();
    pair.alice.send("transfer notes.txt");
    let answer = bob_answers(&mut pair, "notes.txt");
    assert!(
        answer.starts_with("Saved ./notes (1).txt (verified, sha256 "),
        "{answer}"
    );
    pair.alice
        .expect(Stream::Stderr, "notes.txt delivered and verified by bob");
    assert_eq!(listing(&pair.bob.workdir), ["notes (1).txt", "notes.txt"]);
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("notes (1).txt")).unwrap(),
        data
    );
}

#[test]
fn two_peers_started_in_one_folder_store_a_visible_copy() {
    // The seed's first test case: alice and bob in one folder, alice sends a file
    // of that folder to bob, who stores it beside the original.
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let folder = world.path().join("shared");
    std::fs::create_dir(&folder).unwrap();
    let start = |name: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "--name".into(),
            name.into(),
            "--certs-dir".into(),
            world.certs().display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        common::Peer::start(&folder, &args)
    };
    let mut alice = start("alice", &["--peer-fingerprint", &bob_fp]);
    let alice_port = alice.port.to_string();
    let mut bob = start(
        "bob",
        &["--connect", &alice_port, "--peer-fingerprint", &alice_fp],
    );
    alice.send(&bob.port.to_string());
    alice.expect_seen(Stream::Stderr, "Connected to bob at 127.0.0.1:");
    bob.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    let data = b"notes for bob\n";
    std::fs::write(folder.join("notes.txt"), data).unwrap();
    alice.send("transfer notes.txt");
    let answer = bob.expect_where(Stream::Stderr, "Saved or already", |line| {
        line.starts_with("Saved ./") || line.contains("already")
    });
    assert_eq!(
        answer,
        format!(
            "Saved ./notes (1).txt (verified, sha256 {})",
            sha256_hex(data)
        )
    );
    alice.expect(Stream::Stderr, "notes.txt delivered and verified by bob");
    assert_eq!(
        std::fs::read(folder.join("notes (1).txt")).unwrap(),
        data.as_slice()
    );
}

#[cfg(unix)]
#[test]
fn a_file_stored_just_before_the_receiver_was_killed_is_known_after_a_restart() {
    let world = World::new();
    let mut pair = Pair::connect_in(world, &[]);
    let data = pseudo_random(200_000, 51);
    std::fs::write(pair.alice.workdir.join("notes.txt"), &data).unwrap();
    pair.alice.send("transfer notes.txt");
    pair.bob
        .expect(Stream::Stderr, "Saved ./notes.txt (verified");
    // Killed right after `Saved`: the verdict may or may not have left.
    pair.bob.signal("KILL");
    pair.alice.signal("KILL");
    pair.bob.wait();
    pair.alice.wait();

    // Changed just before it was first sent, its hash was not kept by alice's
    // cache: it goes again before its hash, and bob knows it once the data is in.
    let mut pair = Pair::connect_again(pair.world, &[]);
    pair.alice.send("transfer notes.txt");
    let answer = bob_answers(&mut pair, "notes.txt");
    assert_eq!(
        answer,
        "notes.txt from alice is one you already received, as ./notes.txt (same SHA-256); not copied again"
    );
    pair.alice
        .expect(Stream::Stderr, "notes.txt delivered and verified by bob");
    assert_eq!(listing(&pair.bob.workdir), ["notes.txt"]);
}

#[test]
fn already_there_never_rests_on_a_stale_cached_hash() {
    // The hash cache can be outdated by a write that leaves a file's stamp alone
    // (through a shared mapping); a cached hash the receiver happens to hold must
    // not make the sender say the peer has the file.
    let world = World::new();
    let alice_home = world.path().join("alice-home");
    std::fs::create_dir_all(&alice_home).unwrap();
    let path = alice_home.join("same.bin");
    let old = pseudo_random(100_000, 61);
    std::fs::write(&path, &old).unwrap();
    let mut pair = Pair::connect_in(world, &[]);
    pair.alice.send("transfer same.bin");
    pair.bob
        .expect(Stream::Stderr, "Saved ./same.bin (verified");
    pair.alice
        .expect(Stream::Stderr, "same.bin delivered and verified by bob");
    pair.alice.close_stdin();
    pair.bob.close_stdin();
    assert!(pair.alice.wait().success(), "{}", pair.alice.transcript());
    assert!(pair.bob.wait().success(), "{}", pair.bob.transcript());

    // New bytes of the same size, with a cache entry for them that still says
    // the old hash: what a stamp that did not move leaves behind.
    let new = pseudo_random(100_000, 62);
    std::fs::write(&path, &new).unwrap();
    common::wait_until_settled(&path);
    let stamp = chat::platform::file_stamp(&std::fs::File::open(&path).unwrap()).unwrap();
    let cache = pair.world.certs().join("hash_cache");
    let stale = format!(
        "v1 {} {} {} {} {} {}\n",
        stamp.device,
        stamp.inode,
        stamp.size,
        stamp.modified_ns,
        stamp.changed_ns,
        sha256_hex(&old)
    );
    let mut text = std::fs::read_to_string(&cache).unwrap_or_default();
    text.push_str(&stale);
    std::fs::write(&cache, text).unwrap();

    let mut pair = Pair::connect_again(pair.world, &[]);
    pair.alice.send("transfer same.bin");
    pair.alice.expect(Stream::Stderr, NOT_HASHED_AGAIN);
    let saved = pair
        .bob
        .expect(Stream::Stderr, "Saved ./same (1).bin (verified");
    assert!(saved.contains(&sha256_hex(&new)), "{saved}");
    pair.alice
        .expect(Stream::Stderr, "same.bin delivered and verified by bob");
    assert!(
        !pair
            .alice
            .lines_on(Stream::Stderr)
            .iter()
            .any(|line| line.contains("bob already has")),
        "{}",
        pair.alice.transcript()
    );
}

/// Where the download folder does not tell case apart, `REPORT.txt` offered beside
/// a stored `Report.txt` is stored as `REPORT (1).txt`, and `Report.txt` is kept.
/// (This folder lists every name in lower case; macOS keeps each name's case.)
#[test]
fn a_name_taken_in_another_case_gets_a_number_where_case_does_not_count() {
    let world = World::new();
    let downloads = world.path().join("bob-home/downloads");
    let Some(_folder) = CaseInsensitiveFolder::mount_or_skip(&downloads) else {
        return;
    };
    std::fs::write(downloads.join("Report.txt"), b"kept").unwrap();
    let mut pair = Pair::connect_in(world, &["--download-dir", "downloads"]);
    std::fs::write(pair.alice.workdir.join("REPORT.txt"), b"new").unwrap();
    pair.alice.send("transfer REPORT.txt");
    let saved = pair.bob.expect(Stream::Stderr, "(verified, sha256 ");
    assert!(saved.contains("REPORT (1).txt (verified"), "{saved}");
    pair.alice
        .expect(Stream::Stderr, "REPORT.txt delivered and verified by bob");
    assert_eq!(
        std::fs::read(downloads.join("Report.txt")).unwrap(),
        b"kept"
    );
    assert_eq!(
        std::fs::read(downloads.join("REPORT (1).txt")).unwrap(),
        b"new"
    );
}
