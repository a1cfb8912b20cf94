//! Two homes, each behind a NAT router of its own, joined by an "internet" bridge
//! that also holds a relay, each part a network namespace of the test:
//!
//! ```text
//! home a 192.168.10.2 ── router a [NAT] 198.51.100.10 ─┐
//!                                                      bridge 198.51.100.1 (relay)
//! home b 192.168.20.2 ── router b [NAT] 198.51.100.20 ─┘
//! ```
//!
//! More homes can be added (home c 192.168.30.2 behind 198.51.100.30, and so on),
//! for a peer that comes back from another network.
//!
//! 198.51.100.0/24 is TEST-NET-2 (RFC 5737): routed nowhere, and here it exists only
//! inside the namespaces. Needs root, iproute2 and nftables; [`TwoHomes::create`]
//! says why not.

use std::io::Write;
use std::process::{Command, Stdio};

use super::relay::Relay;

/// How a home router translates and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Router {
    /// Endpoint-independent mapping, address-and-port-dependent filtering: the
    /// usual home router, through which holes can be punched (modelled as iroh's
    /// own tests model it).
    Home,
    /// Endpoint-dependent mapping with random ports: a symmetric NAT, as carrier
    /// grade NATs often are. Nothing is punched through it.
    Symmetric,
}

/// The namespaces, removed when dropped.
pub struct TwoHomes {
    pub homes: Vec<String>,
    routers: Vec<String>,
    pub internet: String,
    /// What tells this topology's names apart: the process and the label.
    tag: u32,
    label: String,
}

/// The relay's address on the bridge.
pub const RELAY_IP: &str = "198.51.100.1";

impl TwoHomes {
    /// `label` (at most 4 characters) tells apart the topologies of one process.
    pub fn create(label: &str, routers: [Router; 2]) -> Result<TwoHomes, String> {
        let tag = std::process::id() % 10_000;
        let mut net = TwoHomes {
            homes: Vec::new(),
            routers: Vec::new(),
            internet: format!("ch{tag}{label}in"),
            tag,
            label: label.to_owned(),
        };
        // Dropped on an error, the namespaces made so far go with it.
        ip(&format!("netns add {}", net.internet))?;
        let internet = net.internet.clone();
        ip(&format!("-n {internet} link set lo up"))?;
        ip(&format!("-n {internet} link add br0 type bridge"))?;
        ip(&format!("-n {internet} link set br0 up"))?;
        ip(&format!("-n {internet} addr add {RELAY_IP}/24 dev br0"))?;
        for router in routers {
            net.add_home(router)?;
        }
        Ok(net)
    }

    /// One more home behind a router of its own on the bridge, as a laptop carried
    /// to another network finds: home `n` (from 0) is 192.168.{10(n+1)}.2 behind
    /// 198.51.100.{10(n+1)}. Returns `n`, for [`TwoHomes::in_home`].
    pub fn add_home(&mut self, kind: Router) -> Result<usize, String> {
        let side = self.homes.len();
        let letter = char::from(b'a' + u8::try_from(side).expect("a few homes"));
        let (tag, label) = (self.tag, &self.label);
        let (home, router) = (
            format!("ch{tag}{label}h{letter}"),
            format!("ch{tag}{label}r{letter}"),
        );
        for namespace in [&home, &router] {
            ip(&format!("netns add {namespace}"))?;
            match namespace == &home {
                true => self.homes.push(namespace.clone()),
                false => self.routers.push(namespace.clone()),
            }
            ip(&format!("-n {namespace} link set lo up"))?;
        }
        let internet = &self.internet;
        let lan = format!("cl{tag}{label}{letter}");
        let wan = format!("cw{tag}{label}{letter}");
        ip(&format!("link add {lan}h type veth peer name {lan}r"))?;
        ip(&format!("link add {wan}r type veth peer name {wan}i"))?;
        ip(&format!("link set {lan}h netns {home}"))?;
        ip(&format!("link set {lan}r netns {router}"))?;
        ip(&format!("link set {wan}r netns {router}"))?;
        ip(&format!("link set {wan}i netns {internet}"))?;
        ip(&format!("-n {internet} link set {wan}i master br0 up"))?;
        let subnet = 10 * (side + 1);
        let public = format!("198.51.100.{subnet}");
        ip(&format!(
            "-n {home} addr add 192.168.{subnet}.2/24 dev {lan}h"
        ))?;
        ip(&format!("-n {home} link set {lan}h up"))?;
        ip(&format!(
            "-n {home} route add default via 192.168.{subnet}.1"
        ))?;
        ip(&format!(
            "-n {router} addr add 192.168.{subnet}.1/24 dev {lan}r"
        ))?;
        ip(&format!("-n {router} link set {lan}r up"))?;
        ip(&format!("-n {router} addr add {public}/24 dev {wan}r"))?;
        ip(&format!("-n {router} link set {wan}r up"))?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
            None,
        )?;
        let rules = nat_rules(&format!("{wan}r"), &public, kind);
        run(
            "ip",
            &["netns", "exec", &router, "nft", "-f", "-"],
            Some(&rules),
        )?;
        Ok(side)
    }

    fn all_namespaces(&self) -> Vec<String> {
        let mut all = self.homes.clone();
        all.extend(self.routers.iter().cloned());
        all.push(self.internet.clone());
        all
    }

    /// Drops, at router `side`, every packet between the two routers: the direct
    /// path dies, and the relay on the bridge is still reachable.
    pub fn cut_direct_path(&self, side: usize) -> Result<(), String> {
        let other = format!("198.51.100.{}", 10 * (2 - side));
        let router = &self.routers[side];
        for rule in [
            format!("ip daddr {other} drop"),
            format!("ip saddr {other} drop"),
        ] {
            let command = format!("add rule ip filter forward {rule}");
            let args: Vec<&str> = ["netns", "exec", router, "nft"]
                .into_iter()
                .chain(command.split_whitespace())
                .collect();
            run("ip", &args, None)?;
        }
        Ok(())
    }

    /// The public address of home `side`'s router.
    pub fn public_address(&self, side: usize) -> String {
        format!("198.51.100.{}", 10 * (side + 1))
    }

    /// Makes router `side` forward TCP `port` on its public address to the same port
    /// of its home, as a user does for a program that listens at home.
    pub fn forward_tcp_port(&self, side: usize, port: u16) -> Result<(), String> {
        let (public, home) = (
            self.public_address(side),
            format!("192.168.{}.2", 10 * (side + 1)),
        );
        let rules = format!(
            "add chain ip nat prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add rule ip nat prerouting ip daddr {public} tcp dport {port} dnat to {home}:{port}
insert rule ip filter forward ct status dnat accept
"
        );
        let router = &self.routers[side];
        run(
            "ip",
            &["netns", "exec", router, "nft", "-f", "-"],
            Some(&rules),
        )?;
        Ok(())
    }

    /// `ip netns exec NS`, to run a program in home `side` (0, 1, or one added).
    pub fn in_home(&self, side: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.homes[side]]
    }

    /// `ip netns exec NS`, to run a program on the internet bridge.
    pub fn on_internet(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.internet]
    }

    /// A relay on the internet bridge, at [`RELAY_IP`].
    pub fn start_relay(&self) -> Relay {
        Relay::start_with(&self.on_internet(), RELAY_IP.parse().unwrap())
    }
}

impl Drop for TwoHomes {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it, and so their peers.
        for namespace in self.all_namespaces() {
            let _ = Command::new("ip")
                .args(["netns", "del", &namespace])
                .status();
        }
    }
}

/// A router's ruleset: translation by `kind` on its WAN interface `wan` (address
/// `public`), and a filter that lets in only what answers a flow from inside.
fn nat_rules(wan: &str, public: &str, kind: Router) -> String {
    let filter = format!(
        "table ip filter {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname \"{wan}\" ct state established,related accept
    iifname \"{wan}\" drop
  }}
}}"
    );
    let nat = match kind {
        // A UDP mapping keeps its public port for every destination, and what
        // arrives on a mapped port is sent back in, where the filter admits it only
        // if it answers a flow.
        Router::Home => format!(
            "table ip nat {{
  map fullcone {{
    type inet_service : ipv4_addr . inet_service
    flags dynamic,timeout
    timeout 300s
    size 65536
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"{wan}\" meta l4proto udp dnat to udp dport map @fullcone
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"{wan}\" meta l4proto udp update @fullcone {{ udp sport timeout 300s : ip saddr . udp sport }}
    oifname \"{wan}\" snat to {public}
  }}
}}"
        ),
        Router::Symmetric => format!(
            "table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"{wan}\" masquerade random
  }}
}}"
        ),
    };
    format!("{nat}\n{filter}\n")
}

fn ip(args: &str) -> Result<String, String> {
    let args: Vec<&str> = args.split_whitespace().collect();
    run("ip", &args, None)
}

/// Runs `program` with `args` and `input` on its standard input; the error
/// carries its stderr.
pub fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("{program}: {err}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(input.as_bytes())
            .map_err(|err| format!("{program}: {err}"))?;
    }
    let output = child.wait_with_output().map_err(|err| err.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
