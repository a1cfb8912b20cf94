//! A home behind a masquerading router, and a public peer on the router's other
//! side, each in a network namespace of the test:
//! - the home peer dials the public one in single-connection mode, and lines and
//!   64 MiB files cross both ways;
//! - in two-connection mode the public peer cannot dial home, and both say to use
//!   single-connection mode instead;
//! - the router resets the single connection mid-transfer (as one that lost its
//!   connection-tracking state does), and the session comes back and resumes;
//! - with a real UPnP-IGD daemon in the router (Debian's `miniupnpd`), the home
//!   peer's `--map-port` gets a mapping, the public peer dials the mapped address,
//!   the session works both ways, and the mapping is gone once the home peer exits.
//!
//! Needs root, iproute2, nftables and (for the mapping) miniupnpd (`make test`
//! installs the last two where it can); skipped with the reason printed otherwise.
//!
//! The router's WAN side carries 80.100.100.0/24, a public block, because
//! miniupnpd 2.3.1 refuses to map on a reserved WAN address. So that no packet of
//! the test can reach the real owners of that block, the test first checks that the
//! block appears on no interface outside its namespaces, and that its namespaces
//! hold only the interfaces it made, joined to each other and to nothing else.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::two_homes::run;
use common::{Peer, Stream, TIMEOUT, World, pseudo_random};
use sha2::{Digest, Sha256};

const WAN_BLOCK: &str = "80.100.100.";

/// home — router — public, removed when dropped.
struct Nat {
    home: String,
    router: String,
    public: String,
    lan: String,
    wan: String,
}

impl Nat {
    /// `label` (one letter) keeps the namespaces of tests running at once apart.
    fn create(label: char) -> Result<Nat, String> {
        let tag = std::process::id() % 100_000;
        let nat = Nat {
            home: format!("chat{tag}{label}home"),
            router: format!("chat{tag}{label}rtr"),
            public: format!("chat{tag}{label}pub"),
            lan: format!("cl{label}{tag}"),
            wan: format!("cw{label}{tag}"),
        };
        let (home, router, public) = (&nat.home, &nat.router, &nat.public);
        let (lan, wan) = (&nat.lan, &nat.wan);
        let ip = |args: &str| run("ip", &args.split_whitespace().collect::<Vec<_>>(), None);
        for namespace in [home, router, public] {
            ip(&format!("netns add {namespace}"))?;
            ip(&format!("-n {namespace} link set lo up"))?;
        }
        ip(&format!("link add {lan}h type veth peer name {lan}r"))?;
        ip(&format!("link add {wan}r type veth peer name {wan}p"))?;
        for (device, namespace) in [
            (format!("{lan}h"), home),
            (format!("{lan}r"), router),
            (format!("{wan}r"), router),
            (format!("{wan}p"), public),
        ] {
            ip(&format!("link set {device} netns {namespace}"))?;
        }
        nat.check_isolated()?;
        for (namespace, address, device) in [
            (home, "192.168.77.2/24", format!("{lan}h")),
            (router, "192.168.77.1/24", format!("{lan}r")),
            (router, "80.100.100.1/24", format!("{wan}r")),
            (public, "80.100.100.2/24", format!("{wan}p")),
        ] {
            ip(&format!("-n {namespace} addr add {address} dev {device}"))?;
            ip(&format!("-n {namespace} link set {device} up"))?;
        }
        ip(&format!("-n {home} route add default via 192.168.77.1"))?;
        nat.in_router("sysctl", &["-qw", "net.ipv4.ip_forward=1"], None)?;
        // The chains miniupnpd 2.3.1 expects, and masquerading out of the WAN side.
        let rules = format!(
            "table inet filter {{
 chain forward {{
  type filter hook forward priority 0; policy drop;
  ct state established,related accept
  iifname \"{lan}r\" oifname \"{wan}r\" accept
  jump miniupnpd
 }}
 chain miniupnpd {{
 }}
 chain prerouting {{
  type nat hook prerouting priority -100; policy accept;
  jump prerouting_miniupnpd
 }}
 chain postrouting {{
  type nat hook postrouting priority 100; policy accept;
  jump postrouting_miniupnpd
  oifname \"{wan}r\" masquerade
 }}
 chain prerouting_miniupnpd {{
 }}
 chain postrouting_miniupnpd {{
 }}
 chain cut {{
  type filter hook forward priority -10; policy accept;
 }}
}}
"
        );
        nat.in_router("nft", &["-f", "-"], Some(&rules))?;
        Ok(nat)
    }

    /// No address of the public block outside our namespaces, and nothing in them
    /// but loopback and the veth ends we made (so nothing joins them to the world).
    fn check_isolated(&self) -> Result<(), String> {
        let outside = run("ip", &["-o", "addr"], None)?;
        if outside.contains(WAN_BLOCK) {
            return Err(format!(
                "{WAN_BLOCK}0/24 is on an interface of this machine; not using it"
            ));
        }
        for (namespace, expected) in [(&self.home, 2), (&self.router, 3), (&self.public, 2)] {
            let links = run("ip", &["-n", namespace, "-o", "link"], None)?;
            let ours = |line: &&str| {
                line.contains(": lo:") || line.contains(&self.lan) || line.contains(&self.wan)
            };
            let lines: Vec<&str> = links.lines().collect();
            if lines.len() != expected || !lines.iter().all(ours) {
                return Err(format!(
                    "namespace {namespace} holds other interfaces: {links}"
                ));
            }
        }
        Ok(())
    }

    fn in_router(
        &self,
        program: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, String> {
        let mut full = vec!["netns", "exec", &self.router, program];
        full.extend_from_slice(args);
        run("ip", &full, input)
    }

    /// Resets every forwarded TCP segment to or from `port` on the public side, as a
    /// router does that lost its connection-tracking state; until [`Nat::mend`].
    fn cut(&self, port: u16) -> Result<(), String> {
        for rule in [
            format!("tcp dport {port} reject with tcp reset"),
            format!("tcp sport {port} reject with tcp reset"),
        ] {
            let mut args = vec!["add", "rule", "inet", "filter", "cut"];
            args.extend(rule.split_whitespace());
            self.in_router("nft", &args, None)?;
        }
        Ok(())
    }

    /// Polices what the public side at `port` sends to 8 MB/s, dropping the excess,
    /// until [`Nat::mend`]: a transfer that way is then still under way when cut.
    fn slow_down(&self, port: u16) -> Result<(), String> {
        let rule = format!("tcp sport {port} limit rate over 8 mbytes/second drop");
        let mut args = vec!["add", "rule", "inet", "filter", "cut"];
        args.extend(rule.split_whitespace());
        self.in_router("nft", &args, None).map(drop)
    }

    fn mend(&self) -> Result<(), String> {
        self.in_router("nft", &["flush", "chain", "inet", "filter", "cut"], None)
            .map(drop)
    }

    fn dnat_rules(&self) -> usize {
        self.in_router("nft", &["list", "ruleset"], None)
            .map(|rules| rules.lines().filter(|line| line.contains("dnat")).count())
            .unwrap_or(0)
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        for namespace in [&self.home, &self.router, &self.public] {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

/// miniupnpd in the router namespace, stopped when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(nat: &Nat, dir: &std::path::Path) -> Result<Daemon, String> {
        let leases = dir.join("leases");
        std::fs::write(&leases, "").unwrap();
        let config = dir.join("miniupnpd.conf");
        std::fs::write(
            &config,
            format!(
                "ext_ifname={wan}r\nlistening_ip={lan}r\nhttp_port=5555\nenable_natpmp=yes\n\
                 enable_upnp=yes\nsecure_mode=yes\nsystem_uptime=no\nlease_file={leases}\n\
                 uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
                 allow 1024-65535 192.168.77.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
                wan = nat.wan,
                lan = nat.lan,
                leases = leases.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &nat.router, "miniupnpd", "-d", "-f"])
            .arg(&config)
            .arg("-P")
            .arg(dir.join("miniupnpd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("miniupnpd: {err}"))?;
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let daemon = Daemon(child);
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if line.contains("Listening for NAT-PMP/PCP traffic") {
                return Ok(daemon);
            }
            seen.push(line);
        }
        Err(format!("miniupnpd did not start: {}", seen.join(" | ")))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn missing_tools(tools: &[&str]) -> Option<String> {
    for &tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Starts `name` in `namespace` and waits for its listening port.
fn start_in(world: &World, namespace: &str, name: &str, args: &[&str]) -> Peer {
    Peer::start_in(
        &["ip", "netns", "exec", namespace],
        &home_dir(world, name),
        &full_args(world, name, args),
    )
}

/// The public peer listening on the WAN side, and the home peer behind the NAT
/// dialing it in two-connection mode, with `home_extra`; the public peer still
/// waits for the address to dial back.
struct TwoConnections {
    public: Peer,
    home: Peer,
    public_addr: String,
}

impl TwoConnections {
    fn start(world: &World, nat: &Nat, home_extra: &[&str]) -> Self {
        let home_fp = world.identity("home");
        let public_fp = world.identity("public");
        let public = start_in(
            world,
            &nat.public,
            "public",
            &["--listen", "80.100.100.2:0", "--peer-fingerprint", &home_fp],
        );
        let public_addr = format!("80.100.100.2:{}", public.port);
        let mut home_args = vec![
            "--listen",
            "0.0.0.0:0",
            "--connect",
            &public_addr,
            "--peer-fingerprint",
            &public_fp,
        ];
        home_args.extend(home_extra);
        let home = start_in(world, &nat.home, "home", &home_args);
        TwoConnections {
            public,
            home,
            public_addr,
        }
    }
}

/// Starts `name` in `namespace`, which listens for nothing (`--no-listen`).
fn spawn_in(world: &World, namespace: &str, name: &str, args: &[&str]) -> Peer {
    Peer::spawn_in(
        &["ip", "netns", "exec", namespace],
        &home_dir(world, name),
        &full_args(world, name, args),
    )
}

fn home_dir(world: &World, name: &str) -> std::path::PathBuf {
    let dir = world.path().join(format!("{name}-home"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn full_args(world: &World, name: &str, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = ["--name", name, "--certs-dir"].map(String::from).into();
    all.push(world.certs().display().to_string());
    all.extend(args.iter().map(|arg| arg.to_string()));
    all
}

/// The namespaces, or the reason to skip (printed).
fn network(label: char) -> Option<Nat> {
    if let Some(reason) = missing_tools(&["ip", "nft"]) {
        println!("SKIPPED NAT test: {reason}");
        return None;
    }
    match Nat::create(label) {
        Ok(nat) => Some(nat),
        Err(reason) => {
            println!("SKIPPED NAT test: {reason}");
            None
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The public peer accepts, the home peer dials it through the NAT.
struct OneConnection {
    world: World,
    public: Peer,
    home: Peer,
    public_port: u16,
}

impl OneConnection {
    fn start(nat: &Nat) -> OneConnection {
        let world = World::new();
        let home_fp = world.identity("home");
        let public_fp = world.identity("public");
        let mut public = start_in(
            &world,
            &nat.public,
            "public",
            &[
                "--accept",
                "--listen",
                "80.100.100.2:0",
                "--peer-fingerprint",
                &home_fp,
            ],
        );
        let public_port = public.port;
        let public_addr = format!("80.100.100.2:{public_port}");
        let mut home = spawn_in(
            &world,
            &nat.home,
            "home",
            &[
                "--connect",
                &public_addr,
                "--no-listen",
                "--peer-fingerprint",
                &public_fp,
                "--retry-for",
                "60s",
            ],
        );
        home.expect_seen(
            Stream::Stderr,
            &format!("Connected to public at {public_addr} (one connection, both directions)"),
        );
        // The router's address: the home peer is masqueraded.
        public.expect_seen(Stream::Stderr, "home connected from 80.100.100.1:");
        OneConnection {
            world,
            public,
            home,
            public_port,
        }
    }

    /// Both peers offer a file of `size` bytes to each other at once.
    fn exchange(&mut self, size: usize) -> (Vec<u8>, Vec<u8>) {
        let to_home = common::pseudo_random(size, 21);
        let to_public = common::pseudo_random(size, 22);
        std::fs::write(self.public.workdir.join("to-home.bin"), &to_home).unwrap();
        std::fs::write(self.home.workdir.join("to-public.bin"), &to_public).unwrap();
        self.public.send("transfer to-home.bin");
        self.home.send("transfer to-public.bin");
        (to_home, to_public)
    }

    fn expect_stored(&mut self, to_home: &[u8], to_public: &[u8]) {
        for (receiver, name, data) in [
            (&mut self.home, "to-home.bin", to_home),
            (&mut self.public, "to-public.bin", to_public),
        ] {
            // Before the cut or after it: a file the receiver saved as the
            // connection went is offered again and found already saved.
            let saved = receiver.expect_seen(Stream::Stderr, &format!("{name} (verified, sha256 "));
            assert!(saved.contains(&sha256_hex(data)), "{saved}");
            let stored = std::fs::read(receiver.workdir.join(name)).unwrap();
            assert_eq!(sha256_hex(&stored), sha256_hex(data), "{name}");
        }
    }

    fn finish(mut self) {
        self.home.close_stdin();
        self.public.close_stdin();
        assert!(self.home.wait().success(), "{}", self.home.transcript());
        assert!(self.public.wait().success(), "{}", self.public.transcript());
        drop(self.world);
    }
}

#[test]
fn a_home_behind_nat_dials_the_public_peer_and_one_connection_carries_both_ways() {
    let Some(nat) = network('o') else { return };
    let mut session = OneConnection::start(&nat);
    session.public.send("hello home");
    session.home.send("hello public");
    session.home.expect(Stream::Stdout, "public: hello home");
    session.public.expect(Stream::Stdout, "home: hello public");
    let (to_home, to_public) = session.exchange(64 << 20);
    session.public.send("during the transfers");
    session
        .home
        .expect(Stream::Stdout, "public: during the transfers");
    session.expect_stored(&to_home, &to_public);
    session.finish();
}

#[test]
fn a_cut_single_connection_comes_back_resumes_and_loses_no_line() {
    let Some(nat) = network('c') else { return };
    let mut session = OneConnection::start(&nat);
    session.public.send("before the cut");
    session
        .home
        .expect(Stream::Stdout, "public: before the cut");
    nat.slow_down(session.public_port).unwrap();
    let (to_home, to_public) = session.exchange(32 << 20);
    common::wait_for_kept_part(&session.home.workdir, 1 << 20);
    nat.cut(session.public_port).unwrap();
    let home_lost = session
        .home
        .expect(Stream::Stderr, "Connection to the peer lost");
    assert!(home_lost.ends_with("; reconnecting"), "{home_lost}");
    let public_lost = session
        .public
        .expect(Stream::Stderr, "Connection to the peer lost");
    assert!(
        public_lost.ends_with("; waiting for it to reconnect"),
        "{public_lost}"
    );
    session.public.send("during the cut");
    nat.mend().unwrap();
    session
        .home
        .expect(Stream::Stderr, "Reconnected to public at 80.100.100.2:");
    session
        .public
        .expect(Stream::Stderr, "home reconnected from 80.100.100.1:");
    session.home.send("after the cut");
    session.public.expect(Stream::Stdout, "home: after the cut");
    session
        .home
        .expect_seen(Stream::Stderr, "Receiving to-home.bin: resuming at");
    session.expect_stored(&to_home, &to_public);
    for (viewer, from, line) in [
        (&session.home, "public", "before the cut"),
        (&session.home, "public", "during the cut"),
        (&session.public, "home", "after the cut"),
    ] {
        let shown = common::proxy::shown_from(viewer, from);
        assert_eq!(
            shown.iter().filter(|text| *text == line).count(),
            1,
            "{line:?} shown exactly once: {shown:?}"
        );
    }
    session.finish();
}

/// Two-connection mode where only one connection can be made: the home peer
/// reaches the public one, never the reverse. The one that was made comes to
/// carry both directions, and neither side is told to start again in another mode.
#[test]
fn two_connections_from_behind_a_nat_become_one_that_carries_both_ways() {
    let Some(nat) = network('t') else { return };
    let world = World::new();
    let TwoConnections {
        mut public,
        mut home,
        public_addr,
    } = TwoConnections::start(&world, &nat, &[]);
    // What the home peer's own addresses say; the public side has no route there.
    public.send(&format!("192.168.77.2:{}", home.port));
    home.expect_seen(
        Stream::Stderr,
        &format!("Connected to public at {public_addr}"),
    );
    home.expect_seen(
        Stream::Stderr,
        "public has not connected back within 3s: carrying both directions on our connection to it",
    );
    public.expect_seen(
        Stream::Stderr,
        "home carries both directions on its connection to us; no longer dialing 192.168.77.2:",
    );
    public.expect_seen(Stream::Stderr, "(one connection, both directions)");
    home.expect_seen(
        Stream::Stderr,
        &format!("Connected to public at {public_addr} (one connection, both directions)"),
    );

    // The direction that never had a connection of its own: a line and a file.
    let data = pseudo_random(3 << 20, 77);
    std::fs::write(home_dir(&world, "public").join("to-home.bin"), &data).unwrap();
    public.send("from public");
    public.send("transfer to-home.bin");
    home.send("from home");
    home.expect(Stream::Stdout, "public: from public");
    public.expect(Stream::Stdout, "home: from home");
    home.expect(Stream::Stderr, "Saved ./to-home.bin (verified");
    assert_eq!(
        std::fs::read(home_dir(&world, "home").join("to-home.bin")).unwrap(),
        data
    );
    home.close_stdin();
    public.close_stdin();
    assert!(home.wait().success(), "{}", home.transcript());
    assert!(public.wait().success(), "{}", public.transcript());
    for peer in [&home, &public] {
        assert!(
            !peer.transcript().contains("behind a NAT"),
            "{}",
            peer.transcript()
        );
    }
}

#[test]
fn a_home_behind_nat_maps_its_port_and_the_public_peer_reaches_it() {
    if let Some(reason) = missing_tools(&["ip", "nft", "miniupnpd"]) {
        println!("SKIPPED NAT test: {reason}");
        return;
    }
    let nat = match Nat::create('m') {
        Ok(nat) => nat,
        Err(reason) => {
            println!("SKIPPED NAT test: {reason}");
            return;
        }
    };
    let world = World::new();
    let _daemon = match Daemon::start(&nat, world.path()) {
        Ok(daemon) => daemon,
        Err(reason) => {
            println!("SKIPPED NAT test: {reason}");
            return;
        }
    };
    let TwoConnections {
        mut public,
        mut home,
        public_addr,
    } = TwoConnections::start(&world, &nat, &["--map-port"]);
    let mapped = home.expect(Stream::Stderr, "(public, forwarded by the router to port ");
    let external = mapped
        .strip_prefix("Reachable at ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_owned();
    assert!(external.starts_with("80.100.100.1:"), "{mapped}");
    assert_eq!(nat.dnat_rules(), 1, "the router holds the mapping");

    public.send(&external);
    public.expect_seen(Stream::Stderr, &format!("Connected to home at {external}"));
    home.expect_seen(
        Stream::Stderr,
        &format!("Connected to public at {public_addr}"),
    );
    public.send("hello home");
    home.expect(Stream::Stdout, "public: hello home");
    let data = common::pseudo_random(4 << 20, 11);
    std::fs::write(public.workdir.join("to-home.bin"), &data).unwrap();
    public.send("transfer to-home.bin");
    let saved = home.expect(Stream::Stderr, "(verified, sha256 ");
    assert!(
        saved.contains(&hex::encode(Sha256::digest(&data))),
        "{saved}"
    );
    assert_eq!(
        std::fs::read(home.workdir.join("to-home.bin")).unwrap(),
        data
    );

    home.close_stdin();
    public.close_stdin();
    assert!(home.wait().success(), "{}", home.transcript());
    let deadline = Instant::now() + TIMEOUT;
    while nat.dnat_rules() != 0 {
        assert!(
            Instant::now() < deadline,
            "the mapping was not removed at exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
