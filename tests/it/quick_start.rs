//! The README's quick start, followed word for word: the commands it shows are run
//! as shown, with only what a fresh machine here lacks given in the environment (a
//! login name, a home for identities, and a relay of our own instead of the public
//! ones), and each line it shows must be among what they print.

use std::path::Path;

use crate::common;

use common::relay::Relay;
use common::{Peer, Stream, World, pseudo_random};

/// The quick start's console block: each command with the lines shown after it.
fn quick_start() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("a Quick start section");
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a console block in the quick start");
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines().filter(|line| !line.is_empty()) {
        match line.split_once("$ ") {
            Some((_, command)) if line.starts_with("alice$ ") || line.starts_with("bob$ ") => {
                steps.push((line.to_owned(), vec![command.to_owned()]))
            }
            _ => steps
                .last_mut()
                .expect("output follows a command")
                .1
                .push(line.to_owned()),
        }
    }
    steps
}

/// What may differ from run to run: the code, fingerprints, and the path of the
/// connection (through which relay, or, where the peers can reach each other at
/// once, directly at which address: peers on one host may do either); and the join
/// command names our relay, since it is not the public one.
fn shape(line: &str) -> String {
    let mut words = Vec::new();
    for word in line.split(' ') {
        let word = if word.split('-').count() == 4 && word.starts_with(|c: char| c.is_ascii_digit())
        {
            "CODE"
        } else if word.len() == 4 && word.chars().all(|c| c.is_ascii_hexdigit()) {
            "HEX"
        } else {
            word
        };
        words.push(word);
    }
    let line = words.join(" ");
    let path = (line.split_once(" through relay ")).or_else(|| line.split_once(" directly at "));
    let line = match path {
        Some((before, after)) => {
            let rest = after.split_once(' ').map_or("", |(_, rest)| rest);
            format!("{before} PATH {rest}")
        }
        None => line,
    };
    match line.split_once(" --relay ") {
        Some((before, _)) => before.to_owned(),
        None => line,
    }
}

/// Every line the README shows after `command` is among what `peer` printed. The
/// prompt for the code, which a terminal shows with what was typed, is matched by
/// the prompt alone; a prompt has no line end, so the next line may follow it.
fn shows(peer: &mut Peer, command: &str, shown: &[String]) {
    let wanted: Vec<String> = (shown.iter())
        .map(|line| match line.split_once(": ") {
            Some((prompt, _)) if prompt.starts_with("Enter the") => format!("{prompt}:"),
            _ => shape(line),
        })
        .collect();
    let last = wanted.last().expect("output shown");
    peer.expect_where(Stream::Stderr, last, |printed| matches(printed, last));
    for line in &wanted {
        assert!(
            peer.history
                .iter()
                .any(|(_, printed)| matches(printed, line)),
            "the README shows {line:?} after `{command}`; printed:\n{}",
            peer.transcript()
        );
    }
}

fn matches(printed: &str, wanted: &str) -> bool {
    let printed = shape(printed);
    printed == wanted
        || printed.ends_with(&format!(" {wanted}"))
        || (wanted.ends_with(':') && printed.starts_with(wanted))
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let relay = Relay::start();
    let world = World::new();
    let ca = relay.ca_file.display().to_string();
    let home = |name: &str| {
        let home = world.path().join(name);
        std::fs::create_dir_all(home.join("config")).unwrap();
        home
    };
    let (alice_home, bob_home) = (home("alice"), home("bob"));
    let env_of = |name: &'static str, home: &Path| -> Vec<(&'static str, String)> {
        vec![
            ("USER", name.to_owned()),
            ("CHAT_HOME", home.join("config").display().to_string()),
            ("CHAT_RELAY", relay.url.clone()),
            ("CHAT_RELAY_CA", ca.clone()),
        ]
    };
    let run = |who: &str, command: &str| -> Peer {
        let (name, home) = match who {
            "alice" => ("alice", &alice_home),
            _ => ("bob", &bob_home),
        };
        let args: Vec<String> = command
            .strip_prefix("chat ")
            .expect("a chat command")
            .split(' ')
            .map(String::from)
            .collect();
        let env = env_of(name, home);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Peer::spawn_with_env(&env, home, &args)
    };

    let steps = quick_start();
    assert_eq!(steps.len(), 2, "alice invites, bob joins: {steps:?}");
    let (alice_line, alice_shown) = (&steps[0].0, &steps[0].1[1..]);
    let (bob_line, bob_shown) = (&steps[1].0, &steps[1].1[1..]);
    let mut alice = run("alice", &steps[0].1[0]);
    let code = alice.expect(Stream::Stdout, "Invite code: ")["Invite code: ".len()..].to_owned();
    let (invite_code_line, rest) = alice_shown.split_first().unwrap();
    assert_eq!(shape(invite_code_line), "Invite code: CODE");
    shows(&mut alice, alice_line, rest);

    let mut bob = run("bob", &steps[1].1[0]);
    bob.send(&code);
    shows(&mut bob, bob_line, bob_shown);
    alice.expect(Stream::Stderr, "Paired with bob (sha256 ");

    // "Type lines to chat; `transfer notes.txt` or `transfer photos/` sends a file or a folder."
    bob.send("hello alice");
    alice.expect(Stream::Stdout, "bob: hello alice");
    let notes = pseudo_random(10_000, 3);
    std::fs::write(alice_home.join("notes.txt"), &notes).unwrap();
    std::fs::create_dir_all(alice_home.join("photos/2026")).unwrap();
    let photo = pseudo_random(200_000, 4);
    std::fs::write(alice_home.join("photos/2026/beach.jpg"), &photo).unwrap();
    alice.send("transfer notes.txt");
    bob.expect(Stream::Stderr, "Saved ./notes.txt (verified");
    alice.send("transfer photos/");
    bob.expect(Stream::Stderr, "Saved ./photos");
    assert_eq!(std::fs::read(bob_home.join("notes.txt")).unwrap(), notes);
    assert_eq!(
        std::fs::read(bob_home.join("photos/2026/beach.jpg")).unwrap(),
        photo
    );

    // "From then on, `chat --peer alice` on one side and `chat --peer bob` on the other."
    alice.close_stdin();
    bob.expect(Stream::Stderr, "has nothing more to say");
    bob.close_stdin();
    assert!(alice.wait().success(), "{}", alice.transcript());
    assert!(bob.wait().success(), "{}", bob.transcript());
    let mut bob = run("bob", "chat --peer alice");
    let mut alice = run("alice", "chat --peer bob");
    alice.expect(Stream::Stderr, "Connected to bob ");
    bob.expect(Stream::Stderr, "Connected to alice ");
    alice.send("next time, by name");
    bob.expect(Stream::Stdout, "alice: next time, by name");
}
