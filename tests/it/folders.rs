//! `transfer DIR` between two real processes: the tree that lands on disk, file by
//! file, and what both users are told.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::case_folder::CaseInsensitiveFolder;
use common::{Pair, Stream, World, listing, pseudo_random};
use sha2::{Digest, Sha256};

/// Every file under `root` by its path from there, with its SHA-256; every folder
/// with `/`, so that empty ones count too.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                found.insert(format!("{relative}/"), String::new());
                pending.push(path);
            } else if kind.is_file() {
                let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                found.insert(relative, digest);
            }
        }
    }
    found
}

/// A small source tree: nested folders, an empty one, spaces and non-ASCII in
/// names, an empty file, a 20 MiB file, and a link that must not be followed.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("src/nested/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty folder")).unwrap();
    std::fs::write(root.join("README"), b"read me\n").unwrap();
    std::fs::write(root.join("src/main.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(root.join("src/nested/café au lait.txt"), "ça va\n").unwrap();
    std::fs::write(root.join("src/nested/deeper/empty"), b"").unwrap();
    std::fs::write(root.join("big.bin"), pseudo_random(20 << 20, 40)).unwrap();
    symlink(&root.join("README"), &root.join("src/link"));
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[cfg(windows)]
fn symlink(target: &Path, link: &Path) {
    std::os::windows::fs::symlink_file(target, link).unwrap();
}

#[test]
fn a_folder_arrives_file_for_file_with_empty_folders_and_without_links() {
    let mut pair = Pair::connect(&[]);
    let root = pair.alice.workdir.join("project");
    make_tree(&root);
    pair.alice.send("transfer project");
    let saved = pair
        .bob
        .expect(Stream::Stderr, "Saved ./project (verified, ");
    assert!(
        saved.contains("5 files, 20.00 MiB, each by its size and SHA-256"),
        "{saved}"
    );
    pair.alice
        .expect(Stream::Stderr, "project delivered and verified by bob");
    let mut expected = tree(&root);
    expected.remove("src/link");
    assert_eq!(tree(&pair.bob.workdir.join("project")), expected);
    assert!(
        pair.alice
            .transcript()
            .contains("Sending project: left out ")
            && pair
                .alice
                .transcript()
                .contains("src/link: a symbolic link, not followed"),
        "{}",
        pair.alice.transcript()
    );
    assert_eq!(listing(&pair.bob.workdir), ["project"]);
    assert!(
        !pair.bob.transcript().contains(" received "),
        "per-file detail is for --verbose only: {}",
        pair.bob.transcript()
    );
}

#[test]
fn verbose_output_tells_of_each_file_once_on_both_sides() {
    let mut pair = Pair::connect(&["--verbose"]);
    let root = pair.alice.workdir.join("project");
    make_tree(&root);
    pair.alice.send("transfer project");
    pair.bob
        .expect(Stream::Stderr, "Saved ./project (verified, ");
    pair.alice
        .expect(Stream::Stderr, "project delivered and verified by bob");
    let told = |peer: &common::Peer, how: &str| -> Vec<String> {
        let marker = format!("[verbose] {how} ");
        (peer.lines_on(Stream::Stderr).into_iter())
            .filter_map(|line| Some(line.split_once(&marker)?.1.to_owned()))
            .collect()
    };
    let files = [
        "README (8 B)",
        "big.bin (20.00 MiB)",
        "src/main.rs (13 B)",
        "src/nested/café au lait.txt (7 B)",
        "src/nested/deeper/empty (0 B)",
    ];
    let mut sent = told(&pair.alice, "s1 sent");
    let mut received = told(&pair.bob, "r1 received");
    sent.sort();
    received.sort();
    assert_eq!(sent, files, "{}", pair.alice.transcript());
    assert_eq!(received, files, "{}", pair.bob.transcript());
}

#[test]
fn a_folder_sent_twice_is_stored_twice_without_replacing_the_first() {
    let mut pair = Pair::connect(&[]);
    let root = pair.alice.workdir.join("docs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.txt"), b"first").unwrap();
    common::wait_until_settled(&root.join("a.txt"));
    pair.alice.send("transfer docs");
    pair.bob.expect(Stream::Stderr, "Saved ./docs (verified, ");
    pair.alice
        .expect(Stream::Stderr, "docs delivered and verified by bob");
    pair.alice.send("transfer docs");
    pair.bob
        .expect(Stream::Stderr, "Saved ./docs (1) (verified, ");
    pair.alice
        .expect(Stream::Stderr, "docs delivered and verified by bob");
    pair.alice.expect_seen(
        Stream::Stderr,
        "1 of 1 files unchanged since they were last hashed",
    );
    assert_eq!(listing(&pair.bob.workdir), ["docs", "docs (1)"]);
    assert_eq!(
        std::fs::read(pair.bob.workdir.join("docs (1)/a.txt")).unwrap(),
        b"first"
    );
}

/// Waits, with a deadline, until the staging folder under `download_dir` holds at
/// least `bytes` of the folder's file `name` (a path inside the folder).
fn wait_for_arriving(download_dir: &Path, name: &str, bytes: u64) {
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        let held = std::fs::read_dir(download_dir.join(common::PARTS_DIR))
            .into_iter()
            .flatten()
            .filter_map(|entry| std::fs::metadata(entry.ok()?.path().join(name)).ok())
            .any(|kept| kept.len() >= bytes);
        if held {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never grew to {bytes} bytes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The offset in `… resuming at 12.0 MiB, …`, in MiB.
fn resumed_mib(line: &str) -> f64 {
    let at = line.split("resuming at ").nth(1).expect("an offset");
    let mut words = at.split([' ', ',']);
    let number: f64 = words.next().unwrap().parse().unwrap();
    match words.next().unwrap() {
        "GiB" => number * 1024.0,
        "MiB" => number,
        "KiB" => number / 1024.0,
        _ => 0.0,
    }
}

fn make_two_file_folder(root: &Path) -> BTreeMap<String, String> {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("a.bin"), pseudo_random(8 << 20, 41)).unwrap();
    std::fs::write(root.join("b.bin"), pseudo_random(128 << 20, 42)).unwrap();
    tree(root)
}

#[test]
fn a_receiver_killed_mid_folder_resumes_after_the_files_verified_again() {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let alice_fp = world.identity_fingerprint("alice");
    let expected = make_two_file_folder(&alice.workdir.join("data"));
    alice.send("transfer data");
    bob.expect(Stream::Stderr, "Receiving data");
    wait_for_arriving(&bob.workdir, "b.bin", 4 << 20);
    let bob_port = bob.port;
    bob.signal("KILL");
    bob.wait();
    alice.expect(Stream::Stderr, "Sending data: connection lost");

    // Nothing was synced before the kill: a.bin is checked again by its SHA-256
    // and kept, and what had arrived of b.bin arrives again.
    let mut bob = world.restart("bob", bob_port, alice.port, &alice_fp);
    let resumed = bob.expect(Stream::Stderr, "Receiving data: resuming at");
    assert_eq!(
        resumed_mib(&resumed),
        8.0,
        "a.bin alone is not sent again: {resumed}"
    );
    bob.expect_seen(Stream::Stderr, "Saved ./data (verified, 2 files");
    alice.expect_seen(Stream::Stderr, "data delivered and verified by bob");
    assert_eq!(tree(&bob.workdir.join("data")), expected);
    assert_eq!(listing(&bob.workdir), ["data"]);
}

#[test]
fn a_sender_killed_mid_folder_sends_it_again_from_where_it_stopped() {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let bob_fp = world.identity_fingerprint("bob");
    let expected = make_two_file_folder(&alice.workdir.join("data"));
    alice.send("transfer data");
    bob.expect(Stream::Stderr, "Receiving data");
    wait_for_arriving(&bob.workdir, "b.bin", 4 << 20);
    let alice_port = alice.port;
    alice.signal("KILL");
    alice.wait();
    bob.expect(Stream::Stderr, "Receiving data interrupted");

    let mut alice = world.restart("alice", alice_port, bob.port, &bob_fp);
    alice.send("transfer data");
    let resumed = alice.expect(Stream::Stderr, "Sending data: resuming at");
    assert!(
        resumed_mib(&resumed) >= 12.0,
        "a.bin is not sent again: {resumed}"
    );
    bob.expect(Stream::Stderr, "Saved ./data (verified, 2 files");
    alice.expect(Stream::Stderr, "data delivered and verified by bob");
    assert_eq!(tree(&bob.workdir.join("data")), expected);
    assert_eq!(listing(&bob.workdir), ["data"]);
}

/// Where the download folder does not tell case apart, a folder holding `Todo.txt`
/// and `todo.txt` is refused before anything is written: stored, the second would
/// replace the first while the verdict still counted two files.
#[test]
fn names_that_differ_only_in_case_are_refused_where_case_does_not_count() {
    let world = World::new();
    let downloads = world.path().join("bob-home/downloads");
    let Some(_folder) = CaseInsensitiveFolder::mount_or_skip(&downloads) else {
        return;
    };
    let mut pair = Pair::connect_in(world, &["--download-dir", "downloads"]);
    let root = pair.alice.workdir.join("notes");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("Todo.txt"), b"first").unwrap();
    std::fs::write(root.join("todo.txt"), b"second").unwrap();
    pair.alice.send("transfer notes");
    let refused = pair.bob.expect(Stream::Stderr, "Receiving notes failed: ");
    assert!(refused.contains("is listed twice"), "{refused}");
    pair.alice.expect(Stream::Stderr, "Sending notes failed");
    assert!(listing(&downloads).is_empty(), "{:?}", listing(&downloads));
    pair.alice.send("still talking");
    pair.bob.expect(Stream::Stdout, "alice: still talking");
}

/// A file that may not be read is left out and named, as an unreadable subfolder
/// is, and the rest of the folder is sent.
#[cfg(unix)]
#[test]
fn an_unreadable_file_is_left_out_and_named_and_the_rest_is_sent() {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = common::bound_by_permissions();
    let mut pair = Pair::connect_with_alice_in(&wrapper, common::World::new(), &[]);
    let root = pair.alice.workdir.join("notes");
    std::fs::create_dir_all(root.join("week")).unwrap();
    std::fs::write(root.join("week/monday.txt"), b"monday\n").unwrap();
    std::fs::write(root.join("week/secret.txt"), b"secret\n").unwrap();
    std::fs::write(root.join("todo.txt"), b"todo\n").unwrap();
    let secret = root.join("week/secret.txt");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    pair.alice.send("transfer notes");
    let left_out = pair
        .alice
        .expect(Stream::Stderr, "Sending notes: left out ");
    assert!(
        left_out.contains("notes/week/secret.txt: a file that cannot be read"),
        "{left_out}"
    );
    let saved = pair.bob.expect(Stream::Stderr, "Saved ./notes (verified, ");
    assert!(saved.contains("2 files, "), "{saved}");
    pair.alice
        .expect(Stream::Stderr, "notes delivered and verified by bob");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut expected = tree(&root);
    expected.retain(|path, _| !path.ends_with("secret.txt"));
    assert_eq!(tree(&pair.bob.workdir.join("notes")), expected);
}

/// A subfolder that may not be read is left out and named, as links are, and the
/// rest of the folder is sent.
#[cfg(unix)]
#[test]
fn an_unreadable_subfolder_is_left_out_and_named_and_the_rest_is_sent() {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = common::bound_by_permissions();
    let mut pair = Pair::connect_with_alice_in(&wrapper, common::World::new(), &[]);
    let root = pair.alice.workdir.join("project");
    std::fs::create_dir_all(root.join("private/inside")).unwrap();
    std::fs::create_dir_all(root.join("public")).unwrap();
    std::fs::write(root.join("public/a.txt"), b"public\n").unwrap();
    std::fs::write(root.join("private/inside/b.txt"), b"private\n").unwrap();
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o000)).unwrap();
    pair.alice.send("transfer project");
    let left_out = pair
        .alice
        .expect(Stream::Stderr, "Sending project: left out ");
    assert!(
        left_out.contains("project/private: a folder that cannot be read"),
        "{left_out}"
    );
    let saved = pair
        .bob
        .expect(Stream::Stderr, "Saved ./project (verified, ");
    assert!(saved.contains("1 files, "), "{saved}");
    pair.alice
        .expect(Stream::Stderr, "project delivered and verified by bob");
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut expected = tree(&root);
    expected.retain(|path, _| !path.starts_with("private"));
    assert_eq!(tree(&pair.bob.workdir.join("project")), expected);
}
