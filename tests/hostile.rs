//! A pinned peer that holds the real certificate but breaks the protocol, spoken
//! in-process against a real `chat` listener. Each violation must close only that
//! connection, with a clear message, and leave the listener serving.

mod common;

use chat::frame::{Frame, MAX_PAYLOAD_LEN};
use chat::handshake::{self, Greeting, Link};
use chat::identity::{self, IdentityFiles};
use chat::tls;
use common::{Peer, Stream, World};
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
        let mut alice = world.peer("alice", &["--peer-fingerprint", &bob_fp]);
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
        let pin = self.alice_fp.parse().unwrap();
        let connector = TlsConnector::from(tls::client_config(&bob, pin).unwrap());
        let addr = ([127, 0, 0, 1], self.alice.port).into();
        let tcp = TcpStream::connect(addr).await.unwrap();
        handshake::connect(&connector, tcp, addr, &Greeting::new("bob".into()))
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

impl<W: tokio::io::AsyncWrite + Unpin> WriteRaw for chat::connection::FrameWriter<W> {
    async fn write_raw(&mut self, bytes: &[u8]) {
        let stream = self.get_mut();
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
    }
}
