//! Two peers in two network namespaces joined by a veth pair, with `tc netem` adding
//! 50 ms delay, 1 % loss and reordering where the kernel offers netem. Needs root and
//! iproute2; skipped with the reason printed otherwise.

mod common;

use std::process::Command;

use common::{Peer, Stream, World, listing};
use sha2::{Digest, Sha256};

/// Two namespaces and the veth pair between them, removed when dropped.
struct Link {
    namespaces: [String; 2],
}

impl Link {
    fn create() -> Result<Link, String> {
        let tag = std::process::id() % 10_000;
        let namespaces = [format!("chat{tag}a"), format!("chat{tag}b")];
        let link = Link { namespaces };
        let [a, b] = &link.namespaces;
        let (va, vb) = (format!("vc{tag}a"), format!("vc{tag}b"));
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), a.clone()],
            vec!["netns".into(), "add".into(), b.clone()],
            vec![
                "link".into(),
                "add".into(),
                va.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                vb.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                va.clone(),
                "netns".into(),
                a.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                vb.clone(),
                "netns".into(),
                b.clone(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "addr".into(),
                "add".into(),
                "10.203.0.1/24".into(),
                "dev".into(),
                va.clone(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "addr".into(),
                "add".into(),
                "10.203.0.2/24".into(),
                "dev".into(),
                vb.clone(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "link".into(),
                "set".into(),
                va.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "link".into(),
                "set".into(),
                vb.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                a.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                b.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            let output = Command::new("ip")
                .args(&step)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "ip {}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
        }
        Ok(link)
    }

    /// Adds the impairment on both ends; the error says why it could not.
    fn impair(&self) -> Result<(), String> {
        let tag = std::process::id() % 10_000;
        for (namespace, device) in self
            .namespaces
            .iter()
            .zip([format!("vc{tag}a"), format!("vc{tag}b")])
        {
            let output = Command::new("ip")
                .args([
                    "netns", "exec", namespace, "tc", "qdisc", "add", "dev", &device, "root",
                    "netem",
                ])
                .args(["delay", "50ms", "loss", "1%", "reorder", "25%", "50%"])
                .output()
                .map_err(|e| format!("tc: {e}"))?;
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
            }
        }
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

#[test]
fn a_transfer_and_chat_survive_an_impaired_link() {
    let link = match Link::create() {
        Ok(link) => link,
        Err(reason) => {
            println!("SKIPPED network-namespace test: {reason}");
            return;
        }
    };
    let impaired = match link.impair() {
        Ok(()) => true,
        Err(reason) => {
            println!(
                "SKIPPED impairment: `tc qdisc add … netem` failed ({reason}); running over an unimpaired veth pair"
            );
            false
        }
    };
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let home = |name: &str| {
        let dir = world.path().join(format!("{name}-home"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let args = |name: &str, listen: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--name".into(),
            name.into(),
            "--certs-dir".into(),
            world.certs().display().to_string(),
            "--listen".into(),
            listen.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let [ns_a, ns_b] = &link.namespaces;
    let mut bob = Peer::start_in(
        &["ip", "netns", "exec", ns_b],
        &home("bob"),
        &args("bob", "10.203.0.2:0", &["--peer-fingerprint", &alice_fp]),
    );
    let target = format!("10.203.0.2:{}", bob.port);
    let mut alice = Peer::start_in(
        &["ip", "netns", "exec", ns_a],
        &home("alice"),
        &args(
            "alice",
            "10.203.0.1:0",
            &["--connect", &target, "--peer-fingerprint", &bob_fp],
        ),
    );
    bob.send(&format!("10.203.0.1:{}", alice.port));
    alice.expect_seen(Stream::Stderr, "Connected to bob at 10.203.0.2:");

    let size = if impaired { 64 << 20 } else { 16 << 20 };
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(alice.workdir.join("over-the-wire.bin"), &data).unwrap();
    alice.send("transfer over-the-wire.bin");
    for i in 0..50 {
        alice.send(&format!("line {i}"));
    }
    for i in 0..50 {
        bob.expect(Stream::Stdout, &format!("alice: line {i}"));
    }
    let saved = bob.expect(Stream::Stderr, "Saved ");
    assert!(
        saved.contains(&hex::encode(Sha256::digest(&data))),
        "{saved}"
    );
    assert_eq!(
        std::fs::read(bob.workdir.join("over-the-wire.bin")).unwrap(),
        data
    );
    assert_eq!(listing(&bob.workdir), ["over-the-wire.bin"]);
}
