//! A network namespace with nothing but its loopback interface, where nftables drops
//! every UDP datagram on its way in: iroh endpoints inside reach a relay over TCP on
//! that loopback and nothing else, so they never open a direct path. Needs root,
//! iproute2 and nftables; [`NoUdpLoopback::create`] says why not.

use std::io::Write;
use std::process::{Command, Stdio};

/// The namespace, removed when dropped.
pub struct NoUdpLoopback {
    pub namespace: String,
}

const RULES: &str = "table inet no_udp {
  chain input {
    type filter hook input priority 0; policy accept;
    meta l4proto udp drop
  }
}
";

impl NoUdpLoopback {
    /// `label` tells apart the namespaces of one process.
    pub fn create(label: &str) -> Result<NoUdpLoopback, String> {
        let net = NoUdpLoopback {
            namespace: format!("ch{}{label}", std::process::id() % 10_000),
        };
        run(&["ip", "netns", "add", &net.namespace], None)?;
        run(
            &["ip", "-n", &net.namespace, "link", "set", "lo", "up"],
            None,
        )?;
        let exec = ["ip", "netns", "exec", &net.namespace, "nft", "-f", "-"];
        run(&exec, Some(RULES))?;
        Ok(net)
    }

    /// `ip netns exec NS`, to run a program inside.
    pub fn prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.namespace]
    }
}

impl Drop for NoUdpLoopback {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
    }
}

/// Runs `args` with `input` on its standard input; the error carries its stderr.
fn run(args: &[&str], input: Option<&str>) -> Result<(), String> {
    let (program, rest) = args.split_first().expect("a program");
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("{program}: {err}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    if let Some(input) = input {
        stdin
            .write_all(input.as_bytes())
            .map_err(|err| format!("{program}: {err}"))?;
    }
    drop(stdin);
    let output = child.wait_with_output().map_err(|err| err.to_string())?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}
