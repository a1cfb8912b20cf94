//! What the command line offers besides a session: `--help`, shell completions and
//! the manual page, each checked against the clap definition, so that a new option
//! or helper that one of them leaves out is caught.

use std::io::Write;
use std::process::{Command, Stdio};

use chat::cli::Cli;
use clap::CommandFactory;

use crate::common::BIN;

/// Runs `chat ARGS` and returns its standard output; it must succeed.
fn run(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).output().expect("run chat");
    assert!(output.status.success(), "chat {args:?}: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The helper commands, as clap knows them.
fn subcommands() -> Vec<String> {
    (Cli::command().get_subcommands())
        .map(|tool| tool.get_name().to_owned())
        .collect()
}

/// Every `--long` option of the command and of each helper, as clap knows them.
fn long_options() -> Vec<String> {
    let command = Cli::command();
    let tools = command.get_subcommands().cloned().collect::<Vec<_>>();
    std::iter::once(command)
        .chain(tools)
        .flat_map(|command| {
            (command.get_arguments())
                .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn each_shell_gets_a_completion_script_that_knows_every_helper_and_option() {
    let tools = subcommands();
    assert!(tools.contains(&"completions".to_owned()), "{tools:?}");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = run(&["completions", shell]);
        for tool in &tools {
            assert!(script.contains(tool.as_str()), "{shell}: no {tool}");
        }
        for option in ["--invite", "--join", "--peer", "--download-dir"] {
            assert!(
                script.contains(option.trim_start_matches('-')),
                "{shell}: no {option}"
            );
        }
    }
    let wrong = Command::new(BIN)
        .args(["completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
}

#[test]
fn the_manual_page_lists_every_option_of_every_command() {
    let roff = run(&["manpage"]);
    assert!(
        roff.lines().any(|line| line.starts_with(".TH chat 1")),
        "no title:\n{roff}"
    );
    let text = match rendered(&roff) {
        Some(text) => text,
        // Without `man`, the roff itself: a hyphen in it is written `\-`.
        None => roff.replace("\\-", "-"),
    };
    for option in long_options() {
        assert!(
            text.contains(&option),
            "{option} is not in the manual:\n{text}"
        );
    }
    for tool in subcommands() {
        let heading = format!("CHAT {}", tool.to_uppercase());
        assert!(text.contains(&heading), "no section {heading}:\n{text}");
    }
    for heading in ["PAIRING", "CONNECTING", "TRANSFERS", "IDENTITY", "OUTPUT"] {
        assert!(text.contains(heading), "no {heading}:\n{text}");
    }
}

/// The page as `man -l` renders it, plain text, if `man` is installed.
fn rendered(roff: &str) -> Option<String> {
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "120")
        .env("LC_ALL", "C")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    man.stdin.take()?.write_all(roff.as_bytes()).ok()?;
    let output = man.wait_with_output().ok()?;
    assert!(output.status.success(), "man -l failed: {output:?}");
    // Bold and underline as overstrikes, should man use them.
    let text = String::from_utf8_lossy(&output.stdout);
    let mut plain = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    Some(plain)
}

#[test]
fn help_is_short_grouped_by_task_and_leads_with_the_invite_code() {
    let help = run(&["--help"]);
    let headings: Vec<&str> = (help.lines())
        .filter(|line| !line.starts_with(' ') && line.ends_with(':'))
        .collect();
    for heading in [
        "Pairing:",
        "Connecting:",
        "Transfers:",
        "Identity:",
        "Output:",
    ] {
        assert!(headings.contains(&heading), "{heading} missing:\n{help}");
    }
    assert!(
        help.lines().count() <= 60,
        "{} lines:\n{help}",
        help.lines().count()
    );
    let examples = help.split("Examples:").nth(1).expect("an Examples section");
    let first = examples
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap();
    assert!(first.contains("chat --invite"), "{first}");
    assert!(
        !help.contains("--peer-fingerprint 3f1c"),
        "a fingerprint example in --help:\n{help}"
    );
    assert_eq!(run(&["-h"]), help, "-h and --help differ");
}
