//! Two network namespaces joined by a veth pair, for tests and benches that cross a
//! real (virtual) link. Needs root and iproute2; the error of `create` says why not.

use std::process::Command;

/// Two namespaces and the veth pair between them, removed when dropped. The first
/// end has 10.203.0.1, the second 10.203.0.2.
pub struct VethPair {
    pub namespaces: [String; 2],
    pub devices: [String; 2],
}

impl VethPair {
    /// `label` (at most 8 characters) tells apart the pairs of one process.
    pub fn create(label: &str) -> Result<VethPair, String> {
        let tag = std::process::id() % 10_000;
        let pair = VethPair {
            namespaces: [format!("chat{tag}{label}a"), format!("chat{tag}{label}b")],
            devices: [format!("vc{tag}{label}a"), format!("vc{tag}{label}b")],
        };
        let ([a, b], [va, vb]) = (&pair.namespaces, &pair.devices);
        let steps = [
            format!("netns add {a}"),
            format!("netns add {b}"),
            format!("link add {va} type veth peer name {vb}"),
            format!("link set {va} netns {a}"),
            format!("link set {vb} netns {b}"),
            format!("-n {a} addr add 10.203.0.1/24 dev {va}"),
            format!("-n {b} addr add 10.203.0.2/24 dev {vb}"),
            format!("-n {a} link set {va} up"),
            format!("-n {b} link set {vb} up"),
            format!("-n {a} link set lo up"),
            format!("-n {b} link set lo up"),
        ];
        for step in steps {
            run("ip", &step)?;
        }
        Ok(pair)
    }

    /// The address of end `side` (0 or 1).
    pub fn address(&self, side: usize) -> String {
        format!("10.203.0.{}", side + 1)
    }

    /// Runs `command` inside each namespace, with `{dev}` standing for its end's device.
    pub fn on_each_end(&self, command: &str) -> Result<(), String> {
        for (namespace, device) in self.namespaces.iter().zip(&self.devices) {
            let command = command.replace("{dev}", device);
            run("ip", &format!("netns exec {namespace} {command}"))?;
        }
        Ok(())
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

/// Runs `program` with the white-space separated `args`; the error carries its stderr.
pub fn run(program: &str, args: &str) -> Result<(), String> {
    let output = Command::new(program)
        .args(args.split_whitespace())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
