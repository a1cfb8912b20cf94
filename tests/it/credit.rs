//! The receiver paces file data by `Credit` (PROTOCOL.md §6): a real `chat` sender,
//! dialing a receiver spoken in-process that grants credit a little at a time, never
//! sends more file data than it was granted, still sends its lines while it waits,
//! and delivers the whole file, verified, as credit comes.

use crate::common;

use chat::frame::{CREDIT_WINDOW, Frame, MAX_CHUNK_LEN, VerdictStatus};
use chat::identity::fingerprint::Fingerprint;
use chat::identity::{self, IdentityFiles};
use chat::link::handshake::{self, Greeting, Link};
use chat::link::{Route, Stream as Transport, tls};
use common::{Peer, Stream, TIMEOUT, World, pseudo_random};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What each `Credit` of the receiver here adds.
const STEP: u64 = 1 << 20;

/// The next frame from alice, within the suite's timeout.
async fn next(link: &mut Link, what: &str) -> Frame {
    tokio::time::timeout(TIMEOUT, link.connection.read_frame())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|err| panic!("{what}: {err}"))
        .unwrap_or_else(|| panic!("the connection ended before {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_keeps_to_its_credit_and_its_lines_do_not_wait_for_it() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let bob = identity::load(&IdentityFiles::named(&world.certs(), "bob")).unwrap();
    let pin: Fingerprint = alice_fp.parse().unwrap();
    let acceptor = TlsAcceptor::from(tls::server_config(&bob, pin, true).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let alice_home = world.path().join("alice-home");
    std::fs::create_dir_all(&alice_home).unwrap();
    let certs = world.certs().display().to_string();
    let args = [
        "--name",
        "alice",
        "--certs-dir",
        &certs,
        "--peer-fingerprint",
        &bob_fp,
        "--connect",
        &port,
        "--no-listen",
    ];
    let mut alice = Peer::spawn(&alice_home, &args.map(String::from));
    let data = pseudo_random(3 * CREDIT_WINDOW as usize, 71);
    std::fs::write(alice_home.join("big.bin"), &data).unwrap();

    let (tcp, from) = tokio::time::timeout(TIMEOUT, listener.accept())
        .await
        .expect("alice dials")
        .unwrap();
    let mut link = handshake::accept(
        &acceptor,
        Transport::Tcp(tcp),
        Route::Tcp(from),
        &Greeting::new("bob".into()),
        None,
        |_| true,
    )
    .await
    .expect("alice is pinned");
    assert_eq!(
        link.version, 9,
        "a current chat speaks the version with credit and unhashed offers"
    );

    alice.send("transfer big.bin");
    let Frame::OfferUnhashed { id, .. } = next(&mut link, "the offer").await else {
        panic!("expected the offer first, before the file is hashed");
    };
    link.connection
        .write_frame(&Frame::Accept { id, offset: 0 })
        .await
        .unwrap();

    let mut limit = CREDIT_WINDOW;
    let mut received = Vec::with_capacity(data.len());
    let mut line_typed = false;
    let mut line_seen = false;
    while received.len() < data.len() {
        // Used up: nothing more may come until credit does.
        if received.len() as u64 + MAX_CHUNK_LEN as u64 > limit {
            if !line_typed {
                // Asked for while the sender waits for credit: the line must come
                // before any.
                alice.send("while you hold the credit");
                line_typed = true;
                match next(&mut link, "the line typed meanwhile").await {
                    Frame::Message { text, .. } => {
                        assert_eq!(text, "while you hold the credit");
                        line_seen = true;
                    }
                    other => panic!("expected the line before any credit, got {other:?}"),
                }
            }
            limit += STEP;
            link.connection
                .write_frame(&Frame::Credit { limit })
                .await
                .unwrap();
        }
        match next(&mut link, "the file's data").await {
            Frame::Chunk { id: chunk_id, data } => {
                assert_eq!(chunk_id, id);
                received.extend_from_slice(&data);
                assert!(
                    received.len() as u64 <= limit,
                    "{} bytes sent against a credit of {limit}",
                    received.len()
                );
            }
            Frame::Message { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(line_seen, "the sender never waited for credit");
    assert_eq!(received, data);
    let digest = loop {
        match next(&mut link, "the digest after the data").await {
            Frame::Digest { id: of, sha256 } if of == id => break sha256,
            Frame::Message { .. } => {}
            other => panic!("expected the digest after the data, got {other:?}"),
        }
    };
    assert_eq!(<[u8; 32]>::from(Sha256::digest(&received)), digest);
    link.connection
        .write_frame(&Frame::Verdict {
            id,
            status: VerdictStatus::Verified,
            detail: "./big.bin".into(),
        })
        .await
        .unwrap();
    alice.expect(Stream::Stderr, "big.bin delivered and verified by bob");
}
