//! Injected faults: a full disk under the download folder, and a crowd of hostile
//! connections while the pinned peers chat.

use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use chat::identity::{self, IdentityFiles};
use chat::link::handshake::{self, Greeting};
use chat::link::tls;
use common::{Pair, Stream, World, listing};
use tokio_rustls::TlsConnector;

/// A small tmpfs, unmounted when dropped. Needs root; `None` (with the reason printed) otherwise.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let result = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match result {
            Ok(output) if output.status.success() => Some(SmallDisk(at.to_owned())),
            Ok(output) => {
                println!(
                    "SKIPPED disk-full test: cannot mount a tmpfs here ({})",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(err) => {
                println!("SKIPPED disk-full test: no mount command ({err})");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_transfer_removes_the_part_and_tells_the_sender() {
    let world = World::new();
    let downloads = world.path().join("bob-home/full");
    let Some(_disk) = SmallDisk::mount(&downloads, "1m") else {
        return;
    };
    let mut pair = Pair::connect_in(world, &["--download-dir", "full"]);
    // Exactly the free space: the offer passes the free-space check, but the
    // private parts folder and the meta in it take pages, so the last write hits ENOSPC.
    let data = vec![0x5a; 1 << 20];
    std::fs::write(pair.alice.workdir.join("fill.bin"), &data).unwrap();
    pair.alice.send("transfer fill.bin");
    let failed = pair.bob.expect(Stream::Stderr, "Receiving fill.bin failed");
    assert!(failed.contains("No space left on device"), "{failed}");
    let told = pair.alice.expect(Stream::Stderr, "Sending fill.bin failed");
    assert!(told.contains("failed at the peer"), "{told}");
    assert!(listing(&pair.bob.workdir.join("full")).is_empty());
    pair.alice.send("still talking");
    pair.bob.expect(Stream::Stdout, "alice: still talking");
}

#[test]
fn hundreds_of_hostile_connections_do_not_stop_the_chat() {
    let Pair {
        world,
        mut alice,
        mut bob,
    } = Pair::connect(&[]);
    let alice_fp: chat::identity::fingerprint::Fingerprint = alice.fingerprint.parse().unwrap();
    let port = alice.port;

    let idle: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    for _ in 0..30 {
        if let Ok(mut garbage) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = garbage.write_all(b"\x16\x03\x01\xff\xffnot a client hello at all");
        }
    }
    // Strangers that speak TLS 1.3 properly but hold certificates alice does not pin.
    let stranger_dir = world.path().join("strangers");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let strangers = runtime.block_on(async {
        let mut refused = 0;
        for i in 0..20 {
            let name = format!("stranger{i}");
            let files = IdentityFiles::named(&stranger_dir, &name);
            let stranger = identity::create(&files, &name, false).unwrap();
            let connector =
                TlsConnector::from(tls::client_config(&stranger, alice_fp, false).unwrap());
            let addr = ([127, 0, 0, 1], port).into();
            let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
                continue;
            };
            if handshake::connect(
                &connector,
                chat::link::Stream::Tcp(tcp),
                chat::link::Route::Tcp(addr),
                &Greeting::new(name),
                None,
            )
            .await
            .is_err()
            {
                refused += 1;
            }
        }
        refused
    });
    assert_eq!(strangers, 20, "no stranger may be greeted");

    for i in 0..100 {
        alice.send(&format!("under siege {i}"));
        bob.send(&format!("holding {i}"));
    }
    for i in 0..100 {
        bob.expect(Stream::Stdout, &format!("alice: under siege {i}"));
        alice.expect(Stream::Stdout, &format!("bob: holding {i}"));
    }
    alice.expect_seen(Stream::Stderr, "Rejected connection from 127.0.0.1:");
    assert!(alice.is_running());
    let peak_kib =
        common::proc_status(alice.child.id(), "VmHWM:").expect("VmHWM in /proc/PID/status");
    assert!(
        peak_kib < 64 * 1024,
        "alice's peak RSS grew to {peak_kib} KiB"
    );
    drop(idle);
}
