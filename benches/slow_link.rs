//! `make bench` (`cargo bench --bench slow_link`): a file sent over a 100 Mbit/s link
//! between two network namespaces (a veth pair shaped by `tc tbf` at both ends) while
//! alice types a line every 20 ms. Reports the transfer's time and the chat-line
//! latency: on a link slower than the disks, what waits ahead of a line is the data
//! the sender's kernel holds unsent. Needs root, iproute2 and the tbf qdisc; skipped
//! with the reason printed otherwise.
//!
//! Settings (environment): `BENCH_MIB` (file size, default 48), `BENCH_ROUNDS`
//! (default 3), `BENCH_DIR` (scratch folder, as for `transfer`).

mod support;

use std::process::Command;

use support::pair::{Sides, chat_round_on};
use support::{env_or, make_identities, make_random_file, median, percentile, scratch_dir};

const RATE: &str = "100mbit";

/// Two namespaces joined by a shaped veth pair, removed when dropped.
struct ShapedLink {
    namespaces: [String; 2],
}

impl ShapedLink {
    fn create() -> Result<ShapedLink, String> {
        let tag = std::process::id() % 10_000;
        let link = ShapedLink {
            namespaces: [format!("chatbench{tag}a"), format!("chatbench{tag}b")],
        };
        let [a, b] = &link.namespaces;
        let (va, vb) = (format!("vb{tag}a"), format!("vb{tag}b"));
        for step in [
            format!("ip netns add {a}"),
            format!("ip netns add {b}"),
            format!("ip link add {va} type veth peer name {vb}"),
            format!("ip link set {va} netns {a}"),
            format!("ip link set {vb} netns {b}"),
            format!("ip -n {a} addr add 10.204.0.1/24 dev {va}"),
            format!("ip -n {b} addr add 10.204.0.2/24 dev {vb}"),
            format!("ip -n {a} link set {va} up"),
            format!("ip -n {b} link set {vb} up"),
            format!("ip -n {a} link set lo up"),
            format!("ip -n {b} link set lo up"),
            format!(
                "ip netns exec {a} tc qdisc add dev {va} root tbf rate {RATE} burst 64kb latency 50ms"
            ),
            format!(
                "ip netns exec {b} tc qdisc add dev {vb} root tbf rate {RATE} burst 64kb latency 50ms"
            ),
        ] {
            let mut words = step.split_whitespace();
            let program = words.next().expect("a program");
            let output = Command::new(program)
                .args(words)
                .output()
                .map_err(|err| format!("{program}: {err}"))?;
            if !output.status.success() {
                return Err(format!(
                    "{step}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
        }
        Ok(link)
    }

    fn sides(&self) -> Sides {
        let inside = |namespace: &str, ip: &str| {
            let prefix = ["ip", "netns", "exec", namespace].map(str::to_owned);
            (prefix.to_vec(), ip.to_owned())
        };
        Sides {
            alice: inside(&self.namespaces[0], "10.204.0.1"),
            bob: inside(&self.namespaces[1], "10.204.0.2"),
        }
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

fn main() {
    let mib: u64 = env_or("BENCH_MIB", 48);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let link = match ShapedLink::create() {
        Ok(link) => link,
        Err(reason) => {
            println!("SKIPPED slow-link bench: {reason}");
            return;
        }
    };
    let scratch = scratch_dir();
    println!(
        "bench: {mib} MiB file over a {RATE}/s link, {rounds} rounds, scratch {}",
        scratch.display()
    );
    let file = scratch.join("payload.bin");
    make_random_file(&file, mib << 20);
    make_identities(&scratch);
    let (mut seconds, mut latencies) = (vec![], vec![]);
    for round in 1..=rounds {
        let run = chat_round_on(&scratch, &file, &link.sides());
        println!(
            "round {round}: chat {:.2} s ({:.1} MiB/s), line latency median {:.1} ms p99 {:.1} ms max {:.1} ms",
            run.seconds,
            mib as f64 / run.seconds,
            median(&run.latencies_ms),
            percentile(&run.latencies_ms, 99.0),
            percentile(&run.latencies_ms, 100.0),
        );
        seconds.push(run.seconds);
        latencies.extend(run.latencies_ms);
    }
    println!("\nmedians over {rounds} rounds, {mib} MiB over {RATE}/s:");
    println!(
        "  chat  {:.2} s ({:.1} MiB/s)",
        median(&seconds),
        mib as f64 / median(&seconds)
    );
    println!(
        "  chat line latency during the transfer: median {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} lines)",
        median(&latencies),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        latencies.len()
    );
    if std::env::var_os("BENCH_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
