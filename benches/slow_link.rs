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
#[path = "../tests/it/common/veth.rs"]
mod veth;

use support::pair::{Side, Sides, chat_round_on};
use support::{env_or, make_identities, make_random_file, median, percentile, scratch_dir};
use veth::VethPair;

const RATE: &str = "100mbit";

/// Alice's and bob's places: the two ends of the pair.
fn sides(link: &VethPair) -> Sides {
    let inside = |side: usize| Side {
        prefix: ["ip", "netns", "exec", &link.namespaces[side]]
            .map(str::to_owned)
            .to_vec(),
        ip: link.address(side),
    };
    Sides {
        alice: inside(0),
        bob: inside(1),
    }
}

fn main() {
    let mib: u64 = env_or("BENCH_MIB", 48);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let shaped = VethPair::create("bench").and_then(|link| {
        let shape =
            format!("tc qdisc add dev {{dev}} root tbf rate {RATE} burst 64kb latency 50ms");
        link.on_each_end(&shape).map(|()| link)
    });
    let link = match shaped {
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
        let run = chat_round_on(&scratch, &file, &sides(&link));
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
