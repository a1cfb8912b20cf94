//! A pinned peer that holds the real certificate but breaks the protocol, spoken
//! in-process against a real `chat` listener. Each violation must close only that
//! connection, with a clear message, and leave the listener serving.

use crate::common;

use chat::frame::{Frame, MAX_PAYLOAD_LEN, VerdictStatus};
use chat::identity::fingerprint::Fingerprint;
use chat::identity::{self, IdentityFiles};
use chat::link::handshake::{self, Greeting, Link};
use chat::link::tls;
use common::{PARTS_DIR, Peer, Stream, World, kept_counts, listing};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Scene {
    world: World,
    alice: Peer,
    alice_fp: String,
}

impl Scene {
    fn new() -> Scene {
        let world = World::new();
        let alice_fp = world.identity("alice");
        let bob_fp = world.identity("bob");
        let mut alice = world.peer(
            "alice",
            &["--peer-fingerprint", &bob_fp, "--download-dir", "downloads"],
        );
        alice.send("1");
        Scene {
            world,
            alice,
            alice_fp,
        }
    }

    /// Dials alice as bob, with bob's real identity, and completes the greeting.
    async fn dial_as_bob(&self) -> Link {
        let bob = identity::load(&IdentityFiles::named(&self.world.certs(), "bob")).unwrap();
        let pin: Fingerprint = self.alice_fp.parse().unwrap();
        let connector = TlsConnector::from(tls::client_config(&bob, pin, false).unwrap());
        let addr = ([127, 0, 0, 1], self.alice.port).into();
        let tcp = TcpStream::connect(addr).await.unwrap();
        handshake::connect(
            &connector,
            chat::link::Stream::Tcp(tcp),
            chat::link::Route::Tcp(addr),
            &Greeting::new("bob".into()),
            None,
        )
        .await
        .expect("bob is pinned and should be greeted")
    }
}

fn message(seq: u64, text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    Frame::Message {
        seq,
        text: text.into(),
    }
    .encode(&mut bytes);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_protocol_violation_closes_only_that_connection() {
    let mut scene = Scene::new();
    let oversized = {
        let mut bytes = vec![0x02];
        bytes.extend_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
        bytes
    };
    let invalid_utf8 = b"\x02\x00\x00\x00\x0a\0\0\0\0\0\0\0\x01\xff\xfe".to_vec();
    let mut gap = message(1, "first");
    gap.extend(message(3, "skipped one"));
    let mut ack_on_inbound = Vec::new();
    Frame::Ack { seq: 1 }.encode(&mut ack_on_inbound);
    let mut second_hello = Vec::new();
    Frame::Hello {
        version: 1,
        session_id: 1,
        name: "bob".into(),
    }
    .encode(&mut second_hello);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown type",
            vec![0x7f, 0, 0, 0, 0],
            "unknown frame type 0x7f",
        ),
        ("oversized length", oversized, "exceeds the limit"),
        ("invalid UTF-8", invalid_utf8, "invalid UTF-8"),
        ("sequence gap", gap, "message 3 arrived but 2 was next"),
        (
            "ack on the receiving direction",
            ack_on_inbound,
            "unexpected Ack",
        ),
        ("second hello", second_hello, "unexpected Hello"),
        (
            "truncated frame then close",
            b"\x02\x00\x00\x00\x20abc".to_vec(),
            "middle of a frame",
        ),
    ];
    for (case, bytes, expected) in cases {
        let link = scene.dial_as_bob().await;
        let mut stream = link.connection.into_split().1;
        stream.write_raw(&bytes).await;
        if case.starts_with("truncated") {
            stream.shutdown().await.unwrap();
        }
        let lost = scene
            .alice
            .expect(Stream::Stderr, "Connection from bob lost");
        assert!(lost.contains(expected), "{case}: {lost}");
        assert!(scene.alice.is_running(), "{case}");
    }

    // After all that, an honest bob is heard.
    let link = scene.dial_as_bob().await;
    let mut writer = link.connection.into_split().1;
    writer.write_raw(&message(1, "honest at last")).await;
    scene.alice.expect(Stream::Stdout, "bob: honest at last");
}

/// Raw bytes, bypassing the encoder, for frames no honest peer would send.
trait WriteRaw {
    async fn write_raw(&mut self, bytes: &[u8]);
}

impl<W: tokio::io::AsyncWrite + Unpin> WriteRaw for chat::link::connection::FrameWriter<W> {
    async fn write_raw(&mut self, bytes: &[u8]) {
        let stream = self.get_mut();
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
    }
}

fn offer(id: u64, name: &str, data: &[u8]) -> Frame {
    Frame::Offer {
        id,
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
        name: name.into(),
    }
}

/// What alice's working folder holds: only the download folder, and in it `expected`.
fn assert_stored(scene: &Scene, expected: &[&str]) {
    assert_eq!(listing(&scene.alice.workdir), ["downloads"]);
    assert_eq!(listing(&scene.alice.workdir.join("downloads")), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_sender_never_gets_a_file_stored() {
    let mut scene = Scene::new();

    // Wrong hash: every byte arrives, the verdict says corrupt, nothing is kept.
    let mut link = scene.dial_as_bob().await;
    let claimed = offer(1, "lie.txt", b"the truth");
    link.connection.write_frame(&claimed).await.unwrap();
    assert_eq!(
        link.connection.read_frame().await.unwrap(),
        Some(Frame::Accept { id: 1, offset: 0 })
    );
    let lie = Frame::Chunk {
        id: 1,
        data: b"the lies!".to_vec(),
    };
    link.connection.write_frame(&lie).await.unwrap();
    match link.connection.read_frame().await.unwrap() {
        Some(Frame::Verdict {
            id: 1,
            status,
            detail,
        }) => {
            assert_eq!(status, VerdictStatus::Corrupt);
            assert!(detail.contains("SHA-256 mismatch"), "{detail}");
        }
        other => panic!("expected a verdict, got {other:?}"),
    }
    let failed = scene
        .alice
        .expect(Stream::Stderr, "Receiving lie.txt failed");
    assert!(failed.contains("SHA-256 mismatch"), "{failed}");
    assert_stored(&scene, &[]);

    // A traversal name is refused before any data.
    link.connection
        .write_frame(&offer(2, "../escape.txt", b"x"))
        .await
        .unwrap();
    match link.connection.read_frame().await.unwrap() {
        Some(Frame::Verdict { id: 2, status, .. }) => assert_eq!(status, VerdictStatus::Rejected),
        other => panic!("expected a refusal, got {other:?}"),
    }
    scene.alice.expect(
        Stream::Stderr,
        "refused: the file name contains a path separator",
    );

    // More bytes than declared: a protocol error that closes the connection.
    link.connection
        .write_frame(&offer(3, "short.txt", b"abc"))
        .await
        .unwrap();
    link.connection.read_frame().await.unwrap();
    let too_much = Frame::Chunk {
        id: 3,
        data: b"abcdef".to_vec(),
    };
    link.connection.write_frame(&too_much).await.unwrap();
    let lost = scene
        .alice
        .expect(Stream::Stderr, "Connection from bob lost");
    assert!(lost.contains("more bytes arrived"), "{lost}");
    scene
        .alice
        .expect_seen(Stream::Stderr, "Receiving short.txt failed");
    assert_stored(&scene, &[]);

    // Fewer bytes, then a clean close: incomplete; no final name, only the clearly
    // named partial file and its description, kept for a resume.
    let mut link = scene.dial_as_bob().await;
    let data = vec![7u8; 100_000];
    link.connection
        .write_frame(&offer(4, "half.bin", &data))
        .await
        .unwrap();
    link.connection.read_frame().await.unwrap();
    let half = Frame::Chunk {
        id: 4,
        data: data[..50_000].to_vec(),
    };
    link.connection.write_frame(&half).await.unwrap();
    link.connection.shutdown().await.unwrap();
    let interrupted = scene
        .alice
        .expect(Stream::Stderr, "Receiving half.bin interrupted");
    assert!(
        interrupted.contains("incomplete (48.83 KiB of 97.66 KiB)"),
        "{interrupted}"
    );
    assert_stored(&scene, &[PARTS_DIR]);
    assert_eq!(kept_counts(&scene.alice.workdir.join("downloads")), (1, 1));

    // Chunks for an id never offered, and a reused id, are protocol errors.
    let mut link = scene.dial_as_bob().await;
    let stray = Frame::Chunk {
        id: 99,
        data: vec![1],
    };
    link.connection.write_frame(&stray).await.unwrap();
    let lost = scene
        .alice
        .expect(Stream::Stderr, "Connection from bob lost");
    assert!(
        lost.contains("transfer id 99, which is not active"),
        "{lost}"
    );
    let mut link = scene.dial_as_bob().await;
    link.connection
        .write_frame(&offer(5, "a", &data))
        .await
        .unwrap();
    link.connection
        .write_frame(&offer(5, "b", &data))
        .await
        .unwrap();
    let lost = scene
        .alice
        .expect(Stream::Stderr, "Connection from bob lost");
    assert!(lost.contains("reuses transfer id 5"), "{lost}");

    // And an honest file still lands.
    let mut link = scene.dial_as_bob().await;
    link.connection
        .write_frame(&offer(6, "honest.txt", b"ok"))
        .await
        .unwrap();
    link.connection.read_frame().await.unwrap();
    let chunk = Frame::Chunk {
        id: 6,
        data: b"ok".to_vec(),
    };
    link.connection.write_frame(&chunk).await.unwrap();
    match link.connection.read_frame().await.unwrap() {
        Some(Frame::Verdict { id: 6, status, .. }) => assert_eq!(status, VerdictStatus::Verified),
        other => panic!("expected a verdict, got {other:?}"),
    }
    assert_stored(&scene, &[PARTS_DIR, "honest.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_lengths_on_every_frame_type_are_refused_before_reading() {
    let mut scene = Scene::new();
    for kind in [0x01u8, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14] {
        let link = scene.dial_as_bob().await;
        let mut writer = link.connection.into_split().1;
        writer.write_raw(&[kind, 0xff, 0xff, 0xff, 0xff]).await;
        let lost = scene
            .alice
            .expect(Stream::Stderr, "Connection from bob lost");
        assert!(lost.contains("exceeds the limit"), "type {kind:#x}: {lost}");
    }
    assert!(scene.alice.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_byte_at_a_time_stream_still_works() {
    let mut scene = Scene::new();
    let link = scene.dial_as_bob().await;
    let mut writer = link.connection.into_split().1;
    for byte in message(1, "slowly, byte by byte") {
        writer.write_raw(&[byte]).await;
    }
    scene
        .alice
        .expect(Stream::Stdout, "bob: slowly, byte by byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_offers_is_refused_beyond_the_limit() {
    let mut scene = Scene::new();
    let mut link = scene.dial_as_bob().await;
    let data = vec![1u8; 10];
    for id in 1..=100 {
        link.connection
            .write_frame(&offer(id, &format!("f{id}"), &data))
            .await
            .unwrap();
    }
    let (mut accepted, mut refused) = (0, 0);
    for _ in 1..=100 {
        match link.connection.read_frame().await.unwrap() {
            Some(Frame::Accept { .. }) => accepted += 1,
            Some(Frame::Verdict {
                status: VerdictStatus::Rejected,
                detail,
                ..
            }) => {
                assert!(detail.contains("transfers at once"), "{detail}");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((accepted, refused), (4, 96));
    link.connection
        .write_frame(&message_frame(1, "still heard"))
        .await
        .unwrap();
    scene.alice.expect(Stream::Stdout, "bob: still heard");
}

fn message_frame(seq: u64, text: &str) -> Frame {
    Frame::Message {
        seq,
        text: text.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_for_a_protocol_error_gets_no_close_notify() {
    // A close_notify would tell a dialer written from PROTOCOL.md that alice left.
    let mut scene = Scene::new();
    let link = scene.dial_as_bob().await;
    let (mut reader, mut writer) = link.connection.into_split();
    writer.write_raw(&[0x7f, 0, 0, 0, 0]).await;
    scene
        .alice
        .expect(Stream::Stderr, "Connection from bob lost");
    match reader.read_frame().await {
        Err(chat::link::connection::ConnectionError::Io(err)) => {
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}")
        }
        other => panic!("expected a close without close_notify, got {other:?}"),
    }
}

/// Dials alice as bob offering only `alpn`, and returns the greeted link.
async fn dial_as_bob_speaking(scene: &Scene, alpn: &[u8]) -> Link {
    let bob = identity::load(&IdentityFiles::named(&scene.world.certs(), "bob")).unwrap();
    let mut config =
        (*tls::client_config(&bob, scene.alice_fp.parse::<Fingerprint>().unwrap(), false).unwrap())
            .clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = TlsConnector::from(std::sync::Arc::new(config));
    let addr = ([127, 0, 0, 1], scene.alice.port).into();
    let tcp = TcpStream::connect(addr).await.unwrap();
    handshake::connect(
        &connector,
        chat::link::Stream::Tcp(tcp),
        chat::link::Route::Tcp(addr),
        &Greeting::new("bob".into()),
        None,
    )
    .await
    .expect("bob is pinned and should be greeted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_says_leave_to_version_2_and_closes_plainly_for_version_1() {
    for (alpn, version, goodbye) in [
        (&b"chat/2"[..], 2, vec![Some(Frame::Leave), None]),
        (&b"chat/1"[..], 1, vec![None]),
    ] {
        let mut scene = Scene::new();
        let link = dial_as_bob_speaking(&scene, alpn).await;
        assert_eq!(link.version, version);
        let (mut reader, mut writer) = link.connection.into_split();
        writer.write_raw(&message(1, "hi")).await;
        scene.alice.expect(Stream::Stdout, "bob: hi");
        scene.alice.send("/quit");
        let mut seen = Vec::new();
        loop {
            match reader.read_frame().await.unwrap() {
                Some(Frame::Ack { .. }) => {}
                Some(frame) => seen.push(Some(frame)),
                None => {
                    seen.push(None);
                    break;
                }
            }
        }
        assert_eq!(seen, goodbye, "version {version}");
        drop((reader, writer));
        assert_eq!(scene.alice.wait().code(), Some(0));
    }
}

/// Offers a folder with `entries` and `size` as announced and the manifest `bytes`,
/// and returns alice's answer.
async fn offer_folder(link: &mut Link, id: u64, entries: u32, size: u64, bytes: &[u8]) -> Frame {
    let header = Frame::Folder {
        id,
        entries,
        manifest_len: bytes.len() as u32,
        size,
        name: "tree".into(),
    };
    link.connection.write_frame(&header).await.unwrap();
    for part in bytes.chunks(chat::frame::MAX_CHUNK_LEN) {
        let part = Frame::Manifest {
            id,
            data: part.to_vec(),
        };
        link.connection.write_frame(&part).await.unwrap();
    }
    let answer = tokio::time::timeout(common::TIMEOUT, link.connection.read_frame());
    answer
        .await
        .expect("alice answers")
        .unwrap()
        .expect("a frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_manifest_is_refused_before_anything_is_written() {
    use chat::transfer::manifest::{Entry, Kind, encode};
    let file = |path: &str, size: u64| Entry {
        path: path.into(),
        kind: Kind::File {
            size,
            sha256: [0; 32],
        },
    };
    let folder = |path: &str| Entry {
        path: path.into(),
        kind: Kind::Folder,
    };
    let deep = vec!["d"; 10_000].join("/");
    let cases: Vec<(&str, Vec<Entry>, u64, &str)> = vec![
        (
            "a .. component",
            vec![folder("a"), file("a/../../x", 1)],
            1,
            "refers to a folder",
        ),
        (
            "an absolute path",
            vec![file("/etc/passwd", 1)],
            1,
            "empty component",
        ),
        (
            "a duplicate path",
            vec![file("a", 1), file("a", 1)],
            2,
            "listed twice",
        ),
        (
            "a file that is a folder",
            vec![file("a", 1), folder("a")],
            1,
            "as a file and as a folder",
        ),
        (
            "depth 10,000",
            vec![folder(&deep)],
            0,
            "longer than 4096 bytes",
        ),
        (
            "sizes that overflow",
            vec![file("a", u64::MAX), file("b", 2)],
            1,
            "more than 2^64",
        ),
    ];
    let mut scene = Scene::new();
    let mut link = scene.dial_as_bob().await;
    for (id, (case, entries, size, why)) in cases.into_iter().enumerate() {
        let id = id as u64 + 1;
        let answer =
            offer_folder(&mut link, id, entries.len() as u32, size, &encode(&entries)).await;
        let Frame::Verdict {
            id: answered,
            status,
            detail,
        } = answer
        else {
            panic!("{case}: expected a refusal, got {answer:?}");
        };
        assert_eq!((answered, status), (id, VerdictStatus::Rejected), "{case}");
        assert!(detail.contains(why), "{case}: {detail}");
        let refused = scene
            .alice
            .expect(Stream::Stderr, "Receiving tree failed: refused: ");
        assert!(refused.contains(why), "{case}: {refused}");
    }
    // A million entries are refused from the header; the manifest that follows it
    // is read past without being kept.
    let answer = offer_folder(&mut link, 100, 1_000_000, 0, &[0; 70_000]).await;
    assert!(
        matches!(&answer, Frame::Verdict { id: 100, status: VerdictStatus::Rejected, detail } if detail.contains("1000000 entries")),
        "{answer:?}"
    );
    link.connection
        .write_frame(&message_frame(1, "still here"))
        .await
        .unwrap();
    scene.alice.expect(Stream::Stdout, "bob: still here");
    assert_stored(&scene, &[]);
}

/// A manifest like the review's, scaled to run in seconds: a chain of `depth - 1`
/// folders, then files at its bottom until there are `entries` entries, each file's
/// path `depth` components long. It passes every check but the total, announced as
/// one byte more than the files hold, so the receiver checks it to its last entry,
/// then refuses it with nothing written.
fn deep_manifest(entries: usize, depth: usize) -> (Vec<u8>, u32, u64) {
    use chat::transfer::manifest::{Entry, Kind, encode};
    let mut listed = Vec::with_capacity(entries);
    let mut folder = String::from("d");
    for _ in 1..depth {
        listed.push(Entry {
            path: folder.clone(),
            kind: Kind::Folder,
        });
        folder.push_str("/d");
    }
    folder.truncate(folder.len() - 2);
    let files = entries - listed.len();
    for index in 0..files {
        listed.push(Entry {
            path: format!("{folder}/f{index:05}"),
            kind: Kind::File {
                size: 1,
                sha256: [0; 32],
            },
        });
    }
    (encode(&listed), entries as u32, files as u64 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_manifests_over_several_connections_stays_within_memory() {
    // The goal: 64 MiB plus the largest manifest a folder may have.
    const LIMIT_KIB: u64 = (64 << 10) + (chat::transfer::manifest::MAX_MANIFEST_LEN as u64 >> 10);
    let mut scene = Scene::new();
    let (bytes, entries, size) = deep_manifest(30_000, 12);
    let pid = scene.alice.child.id();
    // Each connection replaces the one before it while its folders are checked.
    let mut links = Vec::new();
    for _ in 0..3 {
        let mut link = scene.dial_as_bob().await;
        for id in 1..=4 {
            let header = Frame::Folder {
                id,
                entries,
                manifest_len: bytes.len() as u32,
                size,
                name: format!("tree{id}"),
            };
            link.connection.write_frame(&header).await.unwrap();
            for part in bytes.chunks(chat::frame::MAX_CHUNK_LEN) {
                let data = part.to_vec();
                let part = Frame::Manifest { id, data };
                link.connection.write_frame(&part).await.unwrap();
            }
        }
        links.push(link);
    }
    // The last connection's four folders are each answered, however they fare.
    let link = links.last_mut().expect("three links");
    let answers = tokio::time::timeout(common::TIMEOUT, async {
        let mut refused = Vec::new();
        while refused.len() < 4 {
            match link.connection.read_frame().await {
                Ok(Some(Frame::Verdict { id, status, .. })) => refused.push((id, status)),
                Ok(Some(_)) => {}
                other => panic!("alice stopped answering: {other:?}"),
            }
        }
        refused
    })
    .await;
    let peak_kib = common::proc_status(pid, "VmHWM:").expect("alice runs");
    eprintln!("alice's peak RSS under the flood: {} MiB", peak_kib >> 10);
    assert!(
        peak_kib < LIMIT_KIB,
        "alice's peak RSS was {} MiB, over {} MiB",
        peak_kib >> 10,
        LIMIT_KIB >> 10
    );
    let answers = answers.expect("the last connection's folders are answered in time");
    assert!(
        answers
            .iter()
            .all(|(_, status)| *status == VerdictStatus::Rejected),
        "{answers:?}"
    );
    link.connection
        .write_frame(&message_frame(1, "still here"))
        .await
        .unwrap();
    scene.alice.expect(Stream::Stdout, "bob: still here");
    assert_stored(&scene, &[]);
}
