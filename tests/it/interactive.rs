//! The interactive front end in a real pseudo-terminal, read through a terminal
//! emulator: what a person at the terminal sees. The peer on the other side is a
//! plain `chat` reading from a pipe.

use crate::common;

use common::pty::Terminal;
use common::{Peer, Stream, World, pseudo_random};
use sha2::{Digest, Sha256};

/// alice at a terminal, bob from a script, connected both ways.
struct Session {
    world: World,
    alice: Terminal,
    bob: Peer,
}

const WIDE: (u16, u16) = (100, 30);

impl Session {
    fn start(size: (u16, u16), env: &[(&str, &str)]) -> Session {
        Self::start_with(size, env, &[])
    }

    fn start_with(size: (u16, u16), env: &[(&str, &str)], extra: &[&str]) -> Session {
        let (world, mut alice, bob) = Self::until_the_port_prompt_with(size, env, extra);
        alice.line(&bob.port.to_string());
        let mut session = Session { world, alice, bob };
        session.wait_connected();
        session
    }

    /// Starts both; alice waits at her first prompt, for the port to dial.
    fn until_the_port_prompt(size: (u16, u16), env: &[(&str, &str)]) -> (World, Terminal, Peer) {
        Self::until_the_port_prompt_with(size, env, &[])
    }

    fn until_the_port_prompt_with(
        size: (u16, u16),
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> (World, Terminal, Peer) {
        let world = World::new();
        let alice_fp = world.identity("alice");
        let bob_fp = world.identity("bob");
        let mut extra = extra.to_vec();
        extra.extend(["--peer-fingerprint", &bob_fp]);
        let (args, home) = peer_args(&world, "alice", &extra);
        let alice = Terminal::start(&home, &args, size, env);
        let listening = alice.wait_for_text("Listening on port ");
        let port = listening
            .trim_start_matches("Listening on port ")
            .to_owned();
        alice.wait_for_text("Enter the target port number:");
        let bob = world.peer(
            "bob",
            &["--connect", &port, "--peer-fingerprint", &alice_fp],
        );
        (world, alice, bob)
    }

    fn wait_connected(&mut self) {
        self.alice.wait_for_text("Connected to bob at 127.0.0.1:");
        self.alice.wait_for_text("bob connected from 127.0.0.1:");
        self.bob
            .expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    }

    fn alice_home(&self) -> std::path::PathBuf {
        self.world.path().join("alice-home")
    }
}

#[test]
fn a_partly_typed_line_survives_an_incoming_message_and_stays_editable() {
    let mut s = Session::start(WIDE, &[]);
    s.alice.keys("so the plan is");
    s.alice.wait_for_text("alice> so the plan is");
    s.bob.send("hey, quick question");
    s.alice.wait_for_text("bob: hey, quick question");
    assert_eq!(s.alice.cursor_row(), "alice> so the plan is");
    s.alice.line(" simple");
    s.bob.expect(Stream::Stdout, "alice: so the plan is simple");
    s.alice
        .wait_for("the line sent and the input line empty", |screen| {
            let rows: Vec<String> = screen
                .rows(0, 100)
                .map(|r| r.trim_end().to_owned())
                .collect();
            let (cursor, _) = screen.cursor_position();
            rows[usize::from(cursor)] == "alice>"
                && rows.iter().any(|row| row == "alice> so the plan is simple")
        });
}

#[test]
fn arrow_keys_edit_the_line_and_up_recalls_the_last_one() {
    let mut s = Session::start(WIDE, &[]);
    s.alice.keys("helo world");
    s.alice.keys("\x1b[H"); // Home
    s.alice.keys("\x1b[C\x1b[C\x1b[C"); // three times Right
    s.alice.keys("l");
    s.alice.wait_for_text("alice> hello world");
    s.alice.keys("\r");
    s.bob.expect(Stream::Stdout, "alice: hello world");
    s.alice.keys("\x1b[A"); // Up
    s.alice.wait_for_text("alice> hello world");
    s.alice.keys("\x17again\r"); // Ctrl-W deletes "world"
    s.bob.expect(Stream::Stdout, "alice: hello again");
    s.alice.keys("x\x1b[D\x1b[Dqq"); // Left past the start stops there
    s.alice.wait_for_text("alice> qqx");
}

#[test]
fn tab_completes_the_file_after_transfer() {
    let mut s = Session::start(WIDE, &[]);
    let data = pseudo_random(100_000, 7);
    std::fs::write(s.alice_home().join("report 2026.txt"), &data).unwrap();
    s.alice.keys("transfer rep\t");
    s.alice.wait_for_text("alice> transfer report\\ 2026.txt");
    s.alice.keys("\r");
    let saved = s.bob.expect(Stream::Stderr, "(verified, sha256 ");
    assert!(
        saved.contains(&hex::encode(Sha256::digest(&data))),
        "{saved}"
    );
    s.alice
        .wait_for_text("report 2026.txt delivered and verified by bob");
}

#[test]
fn a_bad_port_is_asked_again_and_the_listening_port_stays() {
    let (world, mut alice, bob) = Session::until_the_port_prompt(WIDE, &[]);
    alice.line("7oo2");
    alice.wait_for_text("try again");
    alice.line("");
    alice.line(&format!("Listening on port {}", bob.port));
    let mut s = Session { world, alice, bob };
    s.wait_connected();
    let listening = (s.alice.history().iter())
        .filter(|row| row.starts_with("Listening on port "))
        .count();
    assert_eq!(listening, 1);
}

#[test]
fn after_ctrl_d_nothing_typed_is_left_for_the_shell() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let (args, home) = peer_args(&world, "alice", &["--peer-fingerprint", &bob_fp]);
    let mut alice = Terminal::start_before_a_shell(&home, &args, WIDE, &[]);
    let listening = alice.wait_for_text("Listening on port ");
    let port = listening
        .trim_start_matches("Listening on port ")
        .to_owned();
    let mut bob = world.peer(
        "bob",
        &["--connect", &port, "--peer-fingerprint", &alice_fp],
    );
    alice.wait_for_text("Enter the target port number:");
    alice.line(&bob.port.to_string());
    alice.wait_for_text("Connected to bob at 127.0.0.1:");
    alice.wait_for_text("bob connected from 127.0.0.1:");
    bob.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    // One write, so that the line is typed before chat can have exited: written
    // separately, a loaded machine may run chat's whole exit in between, and then
    // the line is the shell's by right.
    alice.keys("\x04git reset --hard\r");
    let left = alice.wait_for_text("left:[");
    assert_eq!(left, "left:[] status:0");
    bob.expect(Stream::Stderr, "The peer closed the connection");
}

#[test]
fn ctrl_d_leaves_and_nothing_typed_after_it_is_sent() {
    let mut s = Session::start(WIDE, &[]);
    s.alice.line("last words");
    s.bob.expect(Stream::Stdout, "alice: last words");
    s.alice.keys("\x04");
    s.alice.keys("hello?\r");
    assert_eq!(s.alice.wait_exit(), 0);
    s.bob
        .expect(Stream::Stderr, "The peer closed the connection");
    s.bob.collect();
    assert!(
        !(s.bob.lines_on(Stream::Stdout).iter()).any(|line| line.contains("hello?")),
        "{}",
        s.bob.transcript()
    );
}

#[test]
fn typing_during_transfers_leaves_one_summary_line_and_no_bar_frames() {
    for size in [WIDE, (40, 20)] {
        let mut s = Session::start(size, &[]);
        let data = pseudo_random(48 << 20, 3);
        std::fs::write(s.alice_home().join("big.bin"), &data).unwrap();
        s.alice.line("transfer big.bin");
        for i in 0..3 {
            s.alice.line(&format!("typed during it {i}"));
            s.bob
                .expect(Stream::Stdout, &format!("alice: typed during it {i}"));
        }
        s.bob.send("and bob talks too");
        s.alice
            .wait_for_text("big.bin delivered and verified by bob");
        s.alice.wait_for_text("bob: and bob talks too");
        let history = s.alice.history();
        let bars = (history.iter()).filter(|row| row.contains(" [") && row.contains("big.bin"));
        assert_eq!(bars.count(), 0, "stale bar rows:\n{}", history.join("\n"));
        let summaries = (history.iter()).filter(|row| row.contains("delivered and verified"));
        assert_eq!(summaries.count(), 1, "{}", history.join("\n"));
        for i in 0..3 {
            let typed = format!("alice> typed during it {i}");
            assert!(
                history.contains(&typed),
                "{typed} missing:\n{}",
                history.join("\n")
            );
        }
        let wrapped = wrapped_rows(&s.alice);
        assert!(
            wrapped.is_empty(),
            "{wrapped:?} wrapped:\n{}",
            history.join("\n")
        );
    }
}

#[test]
fn names_are_coloured_unless_no_color_is_set() {
    for (env, coloured) in [(&[][..], true), (&[("NO_COLOR", "1")][..], false)] {
        let mut s = Session::start(WIDE, env);
        s.bob.send("colours?");
        let row = s.alice.wait_for_text("bob: colours?");
        let _ = row;
        let colour = s.alice.with_screen(|screen| {
            let rows: Vec<String> = screen.rows(0, 100).collect();
            let at = rows
                .iter()
                .position(|row| row.starts_with("bob: colours?"))
                .unwrap();
            screen.cell(at as u16, 0).unwrap().fgcolor()
        });
        assert_eq!(
            colour != vt100::Color::Default,
            coloured,
            "{colour:?} with {env:?}"
        );
    }
}

/// `fingerprint` with one hex digit typed wrong.
fn mistyped(fingerprint: &str) -> String {
    let flipped = if fingerprint.as_bytes()[20] == b'0' {
        "1"
    } else {
        "0"
    };
    format!("{}{flipped}{}", &fingerprint[..20], &fingerprint[21..])
}

#[test]
fn a_mistyped_fingerprint_is_entered_again_and_neither_side_exits() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let typo = mistyped(&bob_fp);
    let start = |name: &str, extra: &[&str]| {
        let (terminal, port, _) = start_peer(&world, name, extra, WIDE);
        (terminal, port)
    };
    let (mut alice, alice_port) = start("alice", &["--peer-fingerprint", &typo]);
    let (bob, bob_port) = start(
        "bob",
        &["--connect", &alice_port, "--peer-fingerprint", &alice_fp],
    );
    alice.wait_for_text("Enter the target port number:");
    alice.line(&bob_port);
    alice.wait_for_text("is not the one whose fingerprint was given");
    alice.wait_for_text("^^^^ first difference");
    alice.wait_for_text("Enter the peer's fingerprint again:");
    bob.wait_for_text("refused our certificate");
    alice.line(&format!("Fingerprint: {bob_fp}"));
    alice.wait_for_text("Connected to bob at 127.0.0.1:");
    bob.wait_for_text("Connected to alice at 127.0.0.1:");
    alice.line("fixed it");
    bob.wait_for_text("alice: fixed it");
}

/// A file of `size` bytes that costs no time to write (sparse, all zeros).
fn sparse_file(path: &std::path::Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

#[test]
fn a_bar_that_gets_nothing_says_it_has_stalled() {
    let mut s = Session::start(WIDE, &[]);
    // Large enough to be still sending when bob stops, small enough to finish within
    // a wait's deadline on a loaded machine once he goes on.
    sparse_file(&s.alice_home().join("big.bin"), 512 << 20);
    s.alice.line("transfer big.bin");
    s.alice.wait_for_text("sending big.bin [");
    s.bob.signal("STOP");
    let stalled = s.alice.wait_for_text("stalled for");
    assert!(stalled.starts_with("sending big.bin ["), "{stalled}");
    s.bob.signal("CONT");
    s.alice
        .wait_for_text("big.bin delivered and verified by bob");
}

#[test]
fn a_folder_bar_counts_files_as_well_as_bytes() {
    let mut s = Session::start(WIDE, &[]);
    let folder = s.alice_home().join("data");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.txt"), b"first\n").unwrap();
    sparse_file(&folder.join("big.bin"), 512 << 20);
    s.alice.line("transfer data");
    // Reports are at most 10 a second: stopped too early, the bar would still show
    // the count from before a.txt went (0/2).
    let sending = s.alice.wait_for_text(", 1/2 files ");
    assert!(sending.starts_with("sending data ["), "{sending}");
    s.bob.signal("STOP");
    let stalled = s.alice.wait_for_text("stalled for");
    assert!(stalled.starts_with("sending data ["), "{stalled}");
    assert!(stalled.contains(", 1/2 files, stalled for"), "{stalled}");
    s.bob.signal("CONT");
    s.alice.wait_for_text("data delivered and verified by bob");
}

#[test]
fn a_resize_keeps_the_typed_line_whole_and_nothing_wider_than_the_window() {
    let mut s = Session::start(WIDE, &[]);
    s.alice.keys("half of a longer thought");
    s.alice.wait_for_text("alice> half of a longer thought");
    s.alice.resize(40, 20);
    s.bob
        .send(&format!("a reply long enough to wrap {}", "x".repeat(40)));
    s.alice.wait_for_text("bob: a reply long enough to wrap");
    // chat asks the terminal's width for every frame it draws: the reply comes
    // after the resize, and is broken by chat itself at 40 columns.
    s.alice
        .wait_for("the reply wrapped by chat and the input line", |screen| {
            let (row, _) = screen.cursor_position();
            let rows: Vec<String> = screen.rows(0, 40).collect();
            let reply_wrapped_by_chat =
                (rows.iter()).any(|text| text.starts_with("  \u{21b3} ") && text.ends_with("xxxx"));
            reply_wrapped_by_chat
                && rows[usize::from(row)].trim_end() == "alice> half of a longer thought"
        });
    let wrapped = wrapped_rows(&s.alice);
    assert!(
        wrapped.is_empty(),
        "{wrapped:?} wrapped:\n{}",
        s.alice.rows().join("\n")
    );
    s.alice.line(", finished");
    s.bob
        .expect(Stream::Stdout, "alice: half of a longer thought, finished");
}

#[test]
fn timestamps_start_every_line_when_asked_for() {
    let mut s = Session::start_with(WIDE, &[], &["--timestamps"]);
    s.bob.send("what time is it");
    let row = s.alice.wait_for_text("bob: what time is it");
    let stamp = row.split(' ').next().unwrap();
    let digits: Vec<char> = stamp.chars().collect();
    assert!(
        digits.len() == 7 && digits[0] == '[' && digits[3] == ':' && digits[6] == ']',
        "{row}"
    );
    s.alice.line("noon");
    s.bob.expect(Stream::Stdout, "alice: noon");
    let own = s.alice.wait_for_text("] alice> noon");
    assert!(own.starts_with('['), "{own}");
}

/// The README's walkthrough with both people at 120×40 terminals: a large file
/// moves while both type; afterwards each screen holds the conversation and one
/// summary line, and no bar frame.
#[test]
fn two_people_at_terminals_chat_through_a_large_transfer_and_both_screens_stay_clean() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let start = |name: &str, extra: &[&str]| start_peer(&world, name, extra, (120, 40));
    let (mut alice, alice_port, alice_home) = start("alice", &[]);
    let (mut bob, bob_port, bob_home) = start("bob", &["--connect", &alice_port]);
    alice.wait_for_text("Enter the target port number:");
    alice.line(&bob_port);
    alice.wait_for_text("Enter the peer's fingerprint:");
    alice.line(&bob_fp);
    bob.wait_for_text("Enter the peer's fingerprint:");
    bob.line(&format!("Fingerprint: {alice_fp}"));
    alice.wait_for_text("Connected to bob at 127.0.0.1:");
    bob.wait_for_text("Connected to alice at 127.0.0.1:");

    sparse_file(&alice_home.join("big.bin"), 1 << 30);
    alice.line("transfer big.bin");
    bob.wait_for_text("Receiving big.bin (1.00 GiB) from alice");
    for i in 0..3 {
        alice.line(&format!("alice typing {i}"));
        bob.line(&format!("bob typing {i}"));
        bob.wait_for_text(&format!("alice: alice typing {i}"));
        alice.wait_for_text(&format!("bob: bob typing {i}"));
    }
    alice.wait_for_text("big.bin delivered and verified by bob");
    bob.wait_for_text("Saved ./big.bin (verified");
    assert_eq!(
        std::fs::metadata(bob_home.join("big.bin")).unwrap().len(),
        1 << 30
    );

    for (who, terminal, summary) in [
        ("alice", &alice, "big.bin delivered and verified by bob"),
        ("bob", &bob, "Saved ./big.bin (verified"),
    ] {
        let history = terminal.history();
        let shown = history.join("\n");
        let bars = (history.iter())
            .filter(|row| row.contains("big.bin ["))
            .count();
        assert_eq!(bars, 0, "{who}'s scrollback holds bar frames:\n{shown}");
        let summaries = (history.iter()).filter(|row| row.contains(summary)).count();
        assert_eq!(summaries, 1, "{who}:\n{shown}");
        let other = if who == "alice" { "bob" } else { "alice" };
        for i in 0..3 {
            let own = format!("{who}> {who} typing {i}");
            let theirs = format!("{other}: {other} typing {i}");
            assert!(history.contains(&own), "{who} misses {own:?}:\n{shown}");
            assert!(
                history.contains(&theirs),
                "{who} misses {theirs:?}:\n{shown}"
            );
        }
    }
}

#[test]
fn ctrl_d_at_a_prompt_ends_with_a_usage_error_and_the_terminal_restored() {
    let (_world, mut alice, _bob) = Session::until_the_port_prompt(WIDE, &[]);
    alice.keys("\x04");
    assert_eq!(alice.wait_exit(), 2);
    alice.wait_for_text("standard input ended before an answer; pass --connect instead");
}

/// An emoji with its presentation selector (U+FE0F) is drawn 2 columns wide.
const HEART: &str = "\u{2764}\u{fe0f}";

/// A peer pads its line with emoji so that, were each counted as 1 column, the
/// terminal would wrap the row itself and a forged status line would start the next
/// one, unmarked. Without colour, the marker is all that tells the two apart.
#[test]
fn emoji_padding_cannot_make_peer_text_start_a_row_like_a_status_line() {
    let mut s = Session::start(WIDE, &[("NO_COLOR", "1")]);
    // "bob: " and 40 hearts and 15 spaces fill the 100 columns as drawn.
    let forged = format!(
        "{}{}Saved ./invoice.pdf (verified, sha256 {})",
        HEART.repeat(40),
        " ".repeat(15),
        "ab".repeat(32)
    );
    s.bob.send(&forged);
    s.bob.send("after the forgery");
    s.alice.wait_for_text("bob: after the forgery");
    let history = s.alice.history();
    let shown = history.join("\n");
    let forged_rows: Vec<&String> = (history.iter())
        .filter(|row| row.contains("invoice.pdf") || row.contains("abab"))
        .collect();
    assert!(!forged_rows.is_empty(), "{shown}");
    for row in forged_rows {
        assert!(row.starts_with("  \u{21b3} "), "unmarked {row:?}:\n{shown}");
    }
    let wrapped = wrapped_rows(&s.alice);
    assert!(wrapped.is_empty(), "{wrapped:?} wrapped:\n{shown}");
}

/// The cursor stands where the terminal drew the typed text, whatever width `chat`
/// counts for quotes of ambiguous width and an emoji with its selector; Left steps
/// over such an emoji as over one character.
#[test]
fn the_cursor_stands_after_the_text_as_the_terminal_drew_it() {
    let mut s = Session::start(WIDE, &[]);
    s.alice.keys(&format!("\u{201c}a\u{201d} {HEART}{HEART}b"));
    s.alice.keys("\x1b[D\x1b[D"); // twice Left: before the second heart
    s.alice.keys("x");
    let typed = format!("alice> \u{201c}a\u{201d} {HEART}x{HEART}b");
    s.alice.wait_for_text(&typed);
    // "alice> " 7, the quotes and the space 4, one heart 2, "x" 1.
    s.alice.wait_for("the cursor after the x", |screen| {
        screen.cursor_position().1 == 14
    });
}

/// A bar whose file name is made of emoji is cut to the window by their drawn
/// width: a bar row that wrapped would be erased only in part, and its first row
/// left behind on every frame.
#[test]
fn a_file_named_in_emoji_leaves_no_stale_bar_rows() {
    let mut s = Session::start(WIDE, &[]);
    let name = format!("{}.bin", HEART.repeat(30));
    sparse_file(&s.world.path().join("bob-home").join(&name), 64 << 20);
    s.bob.send(&format!("transfer {name}"));
    s.alice.wait_for_text(&format!("Saved ./{name} (verified"));
    s.bob.send("after the file");
    s.alice.wait_for_text("bob: after the file");
    let history = s.alice.history();
    let shown = history.join("\n");
    let bars = (history.iter()).filter(|row| row.starts_with("receiving "));
    assert_eq!(bars.count(), 0, "stale bar rows:\n{shown}");
    let wrapped = wrapped_rows(&s.alice);
    assert!(wrapped.is_empty(), "{wrapped:?} wrapped:\n{shown}");
}

/// Rows on screen that the terminal had to wrap: a row of ours that did not fit.
/// The lines printed before the interactive screen starts (down to `Listening on
/// port`) are exempt: the fingerprint is printed whole so that it can be copied, and
/// may wrap.
fn wrapped_rows(terminal: &Terminal) -> Vec<String> {
    terminal.with_screen(|screen| {
        let (rows, columns) = screen.size();
        let texts: Vec<String> = screen.rows(0, columns.get()).collect();
        let first_of_ours = (texts.iter())
            .position(|text| text.starts_with("Listening on port "))
            .unwrap_or(0);
        (0..rows.get())
            .filter(|&row| usize::from(row) > first_of_ours && screen.row_wrapped(row))
            .map(|row| texts[usize::from(row)].clone())
            .collect()
    })
}

/// Starts `name` at a terminal of `size`, listening on a port the OS picks, with
/// its identity from `world`; returns the terminal, the port and its home folder.
fn start_peer(
    world: &World,
    name: &str,
    extra: &[&str],
    size: (u16, u16),
) -> (Terminal, String, std::path::PathBuf) {
    let (args, home) = peer_args(world, name, extra);
    let terminal = Terminal::start(&home, &args, size, &[]);
    let listening = terminal.wait_for_text("Listening on port ");
    let port = listening
        .trim_start_matches("Listening on port ")
        .to_owned();
    (terminal, port, home)
}

/// The arguments that start `name` with its identity from `world`, listening on a
/// port the OS picks, plus `extra`; and its home folder, created.
fn peer_args(world: &World, name: &str, extra: &[&str]) -> (Vec<String>, std::path::PathBuf) {
    let home = world.path().join(format!("{name}-home"));
    std::fs::create_dir_all(&home).unwrap();
    let certs = world.certs().display().to_string();
    let mut args: Vec<String> = [
        "--name",
        name,
        "--certs-dir",
        &certs,
        "--listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .into();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    (args, home)
}

/// At a terminal, `--invite` shows the code and the joiner's command, pairs, and
/// then the session runs in the interactive front end as any other.
#[test]
fn an_invite_at_a_terminal_pairs_and_chats() {
    let world = World::new();
    let (mut alice, port, _) = start_peer(&world, "alice", &["--invite"], WIDE);
    let code = alice.wait_for_text("Invite code: ");
    let code = code.trim().trim_start_matches("Invite code: ").to_owned();
    alice.wait_for_text(&format!("chat --join --connect 127.0.0.1:{port}"));
    alice.wait_for_text("(then type the code at its prompt)");
    let address = format!("127.0.0.1:{port}");
    let mut bob = world.peer("bob", &["--join", "--connect", &address]);
    bob.send(&code);
    alice.wait_for_text("Paired with bob (sha256 ");
    alice.wait_for_text("Connected to bob at 127.0.0.1:");
    bob.expect_seen(Stream::Stderr, "Connected to alice at 127.0.0.1:");
    bob.send("hello from bob");
    alice.wait_for_text("bob: hello from bob");
    alice.line("hello from alice");
    bob.expect(Stream::Stdout, "alice: hello from alice");
}

/// `/help` is many lines: each shows on a row of its own from the first column, not
/// as a staircase that starts each line where the one before ended.
#[test]
fn help_shows_each_line_on_its_own_row_from_the_first_column() {
    let mut s = Session::start((120, 40), &[]);
    s.alice.line("/help");
    s.alice.wait_for_text("waits for the peer to finish.");
    let rows = s.alice.rows();
    for line in chat::ui::input::HELP.lines() {
        assert!(
            rows.iter().any(|row| row == line.trim_end()),
            "{line:?} is not a row of its own:\n{}",
            rows.join("\n")
        );
    }
}

/// A resize redraws only the rows `chat` owns. Clearing the whole screen to draw it
/// again would leave a copy of the conversation in the scrollback of tmux and VTE
/// terminals for every resize.
#[test]
fn resizes_leave_each_line_once_in_the_scrollback() {
    let mut s = Session::start(WIDE, &[]);
    for i in 0..3 {
        s.bob.send(&format!("line {i} from bob"));
        s.alice.wait_for_text(&format!("bob: line {i} from bob"));
    }
    // A typed line wider than the window: the input line shows its end, one column
    // narrower with each resize, so that the screen tells when chat has taken a
    // resize in. The row leaves its last column free and a cell for the cursor.
    let typed: String = (0..150).map(|i| char::from(b'a' + i % 26)).collect();
    s.alice.keys(&typed);
    let (columns, rows) = WIDE;
    for narrower in 1..=10 {
        let columns = columns - narrower;
        s.alice.resize(columns, rows);
        s.alice.wait_for(
            &format!("the typed line redrawn for {columns} columns"),
            |screen| {
                let (row, _) = screen.cursor_position();
                let input = screen.rows(0, columns).nth(usize::from(row)).unwrap();
                let input = input.trim_end();
                input.len() + 2 == usize::from(columns)
                    && input
                        .strip_prefix("alice> ")
                        .is_some_and(|shown| typed.ends_with(shown))
            },
        );
    }
    let history = s.alice.history();
    let shown = history.join("\n");
    for line in [
        "bob: line 0 from bob",
        "bob: line 1 from bob",
        "bob: line 2 from bob",
    ] {
        let copies = history.iter().filter(|row| *row == line).count();
        assert_eq!(copies, 1, "{line:?} {copies} times:\n{shown}");
    }
    let connected = (history.iter())
        .filter(|row| row.starts_with("Connected to bob at "))
        .count();
    assert_eq!(connected, 1, "{shown}");
    let inputs = (history.iter())
        .filter(|row| row.starts_with("alice> "))
        .count();
    assert_eq!(inputs, 1, "stale input lines:\n{shown}");
}

/// A transfer that resumes after the receiver restarted ends with a line that
/// counts what this run moved, of the whole, at a speed it could have had.
#[test]
fn a_resumed_transfer_ends_with_the_bytes_and_speed_of_its_own_run() {
    let mut s = Session::start((120, 40), &[]);
    let alice_port: u16 = (s.alice.history().iter())
        .find_map(|row| row.strip_prefix("Listening on port "))
        .expect("the listening port on screen")
        .parse()
        .unwrap();
    let alice_fp = s.world.identity_fingerprint("alice");
    let data = pseudo_random(128 << 20, 17);
    std::fs::write(s.alice_home().join("film.bin"), &data).unwrap();
    s.alice.line("transfer film.bin");
    s.bob.expect(Stream::Stderr, "Receiving film.bin");
    common::wait_for_kept_part(&s.bob.workdir, 4 << 20);
    let bob_port = s.bob.port;
    s.bob.signal("KILL");
    s.bob.wait();
    s.alice.wait_for_text("Sending film.bin: connection lost");
    s.bob = s.world.restart("bob", bob_port, alice_port, &alice_fp);
    s.bob
        .expect(Stream::Stderr, "Receiving film.bin: resuming at");
    let closing = s
        .alice
        .wait_for_text("film.bin delivered and verified by bob (");
    assert!(closing.contains(" of 128.00 MiB in "), "{closing}");
    let speed = (closing.rsplit(", ").next())
        .and_then(|speed| speed.strip_suffix("/s)"))
        .unwrap_or_else(|| panic!("no speed in {closing:?}"));
    let (number, unit) = speed.split_once(' ').unwrap();
    let scale = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        .iter()
        .position(|known| *known == unit)
        .unwrap_or_else(|| panic!("no unit in {closing:?}"));
    let per_second = number.parse::<f64>().unwrap() * 1024f64.powi(scale as i32);
    // Loopback in a debug build moves well under this; a speed counting the kept
    // bytes as moved in no time is far above it.
    assert!(per_second < 16.0 * 1024f64.powi(3), "{closing}");
    assert_eq!(std::fs::read(s.bob.workdir.join("film.bin")).unwrap(), data);
}

#[test]
fn status_shows_the_connection_and_a_running_transfer_on_rows_of_their_own() {
    let mut s = Session::start((120, 40), &[]);
    s.alice.line("/status");
    s.alice.wait_for_text("Status:");
    let connected = s
        .alice
        .wait_for_text("  bob: connected over TCP with 127.0.0.1:");
    assert_eq!(connected.trim_start(), connected.trim_start_matches(' '));
    let rows = s.alice.rows();
    assert!(
        rows.iter().any(|row| row == "Status:"),
        "not a row of its own:\n{}",
        rows.join("\n")
    );
    sparse_file(&s.alice_home().join("big.bin"), 512 << 20);
    s.alice.line("transfer big.bin");
    s.alice.wait_for_text("sending big.bin [");
    s.bob.signal("STOP");
    s.alice.line("/status");
    let running = s.alice.wait_for_text("  s1 sending: ");
    assert!(running.contains(" of 512.00 MiB"), "{running}");
    s.bob.signal("CONT");
    s.alice
        .wait_for_text("big.bin delivered and verified by bob");
}

/// While a mistyped fingerprint is entered again, the peer keeps dialling and is
/// refused each time, on both sides. The same refusal again is counted on one line,
/// so that the comparison of the two fingerprints stays on the screen.
#[test]
fn repeated_rejections_of_one_certificate_are_one_line_with_a_count() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let bob_fp = world.identity("bob");
    let typo = mistyped(&bob_fp);
    let start = |name: &str, extra: &[&str]| {
        let (terminal, port, _) = start_peer(&world, name, extra, (100, 24));
        (terminal, port)
    };
    let (mut alice, alice_port) = start("alice", &["--peer-fingerprint", &typo]);
    let (bob, bob_port) = start(
        "bob",
        &["--connect", &alice_port, "--peer-fingerprint", &alice_fp],
    );
    alice.wait_for_text("Enter the target port number:");
    alice.line(&bob_port);
    alice.wait_for_text("^^^^ first difference");
    for (who, terminal) in [("alice", &alice), ("bob", &bob)] {
        terminal.wait_for(
            &format!("{who}: a rejection counted three times"),
            |screen| {
                (screen.rows(0, 100))
                    .any(|row| row.starts_with("Rejected again") && row.contains("(3 times"))
            },
        );
        let history = terminal.history();
        let shown = history.join("\n");
        let rejected = (history.iter())
            .filter(|row| row.starts_with("Rejected connection"))
            .count();
        assert_eq!(rejected, 1, "{who}:\n{shown}");
    }
    let rows = alice.rows();
    assert!(
        rows.iter()
            .any(|row| row.ends_with("^^^^ first difference")),
        "the comparison scrolled away:\n{}",
        rows.join("\n")
    );
    alice.line(&bob_fp);
    alice.wait_for_text("Connected to bob at 127.0.0.1:");
    bob.wait_for_text("Connected to alice at 127.0.0.1:");
}

/// A file of a few bytes takes round trips, not bandwidth: its closing line gives
/// its size and time, and no rate (which read `0 B/s` or thousands of KiB/s), on
/// the side that sends it and on the side that receives it.
#[test]
fn a_tiny_file_ends_with_its_size_and_time_and_no_rate() {
    // Wide enough for a whole SHA-256 on one row.
    let mut s = Session::start((160, 30), &[]);
    std::fs::write(s.alice_home().join("notes.txt"), b"twenty-three bytes here").unwrap();
    std::fs::write(s.bob.workdir.join("reply.txt"), b"a reply of 22 bytes...").unwrap();
    s.alice.line("transfer notes.txt");
    s.bob.send("transfer reply.txt");
    let sent = s
        .alice
        .wait_for_text("notes.txt delivered and verified by bob (");
    let received = s.alice.wait_for_text("Saved ./reply.txt (verified, ");
    for closing in [sent, received] {
        assert!(closing.ends_with(" s)"), "{closing}");
        assert!(!closing.contains("/s"), "{closing}");
    }
}

/// Ctrl-C while a file arrives asks first; the second leaves, the part is kept, and
/// the sender is told that the receiver kept it and that sending again resumes.
#[test]
fn the_first_ctrl_c_during_a_transfer_asks_and_the_sender_learns_the_part_is_kept() {
    let mut s = Session::start(WIDE, &[]);
    sparse_file(&s.bob.workdir.join("big.bin"), 1 << 30);
    s.bob.send("transfer big.bin");
    s.alice.wait_for_text("receiving big.bin [");
    common::wait_for_kept_part(&s.alice_home(), 1 << 20);
    // Stopped, bob cannot finish the transfer before alice has answered.
    s.bob.signal("STOP");
    s.alice.keys("\x03");
    s.alice
        .wait_for_text("A transfer is running: Ctrl-C again to leave; it resumes next time");
    assert!(
        s.alice.child.try_wait().unwrap().is_none(),
        "the first Ctrl-C left:\n{}",
        s.alice.rows().join("\n")
    );
    s.bob.signal("CONT");
    s.alice.keys("\x03");
    assert_eq!(s.alice.wait_exit(), 130);
    s.bob.expect(
        Stream::Stderr,
        "Sending big.bin interrupted: alice left and keeps what arrived, \
         and sending it again resumes there",
    );
    assert_eq!(common::kept_counts(&s.alice_home()), (1, 1));
}

/// On an 80-column terminal a status line that carries a SHA-256 fits one row, in
/// the short grouped form, and no status row starts with the `↳` that marks the
/// continuation of a peer's line.
#[test]
fn a_saved_line_fits_80_columns_and_only_peer_lines_continue_with_the_marker() {
    let mut s = Session::start((80, 24), &[]);
    let data = pseudo_random(3000, 11);
    std::fs::write(s.bob.workdir.join("notes.txt"), &data).unwrap();
    s.bob.send("transfer notes.txt");
    let digest = hex::encode(Sha256::digest(&data));
    let grouped = format!(
        "{} {} {} {} …",
        &digest[..4],
        &digest[4..8],
        &digest[8..12],
        &digest[12..16]
    );
    let saved = s
        .alice
        .wait_for_text("Saved ./notes.txt (verified, sha256 ");
    assert!(saved.contains(&grouped), "{saved}");
    s.bob
        .send(&format!("a long line from bob {}", "y".repeat(80)));
    s.alice.wait_for_text("bob: a long line from bob");
    let rows = s.alice.rows();
    let marked: Vec<&String> = (rows.iter())
        .filter(|row| row.starts_with("  \u{21b3} "))
        .collect();
    assert_eq!(marked.len(), 1, "{}", rows.join("\n"));
    assert!(marked[0].contains("yyyy"), "{}", rows.join("\n"));
    let wrapped = wrapped_rows(&s.alice);
    assert!(wrapped.is_empty(), "{wrapped:?}:\n{}", rows.join("\n"));
}

/// A peer started with nothing to go on shows its fingerprint once, grouped, and
/// before its first question says what it waits for and what to do.
#[test]
fn a_peer_started_bare_says_what_it_waits_for_with_one_fingerprint() {
    let world = World::new();
    let alice_fp = world.identity("alice");
    let (args, home) = peer_args(&world, "alice", &[]);
    let mut alice = Terminal::start(&home, &args, (80, 24), &[]);
    alice.wait_for_text("Enter the target port number:");
    let rows = alice.rows();
    let shown = rows.join("\n");
    let prompt = (rows.iter())
        .position(|row| row.starts_with("Enter the target port number:"))
        .unwrap();
    let before: Vec<&String> = (rows[..prompt].iter())
        .filter(|row| !row.is_empty())
        .collect();
    assert!(
        before.len() <= 6,
        "{} rows before the prompt:\n{shown}",
        before.len()
    );
    assert!(
        !shown.contains(&alice_fp),
        "the fingerprint unread:\n{shown}"
    );
    let first_group = format!("Fingerprint: {} ", &alice_fp[..4]);
    let fingerprints = (rows.iter())
        .filter(|row| row.contains(&alice_fp[..4]))
        .count();
    assert_eq!(fingerprints, 1, "{shown}");
    assert!(
        rows.iter().any(|row| row.starts_with(&first_group)),
        "{shown}"
    );
    let waiting = (rows[..prompt].iter())
        .position(|row| row.starts_with("Waiting for the peer's port and fingerprint"))
        .unwrap_or_else(|| panic!("no word of what it waits for:\n{shown}"));
    assert!(
        rows[waiting..prompt]
            .iter()
            .any(|row| row.contains("chat --invite")),
        "{shown}"
    );
    // The two rows of the fingerprint, pasted, are one fingerprint: here, as the
    // fingerprint of a peer whose port is then given.
    alice.line("1");
    alice.wait_for_text("Enter the peer's fingerprint:");
    let grouped: Vec<String> = (rows.iter())
        .skip_while(|row| !row.starts_with("Fingerprint: "))
        .take(2)
        .cloned()
        .collect();
    alice.keys(&format!("\x1b[200~{}\x1b[201~\r", grouped.join("\n")));
    alice.wait_for_text("Note: the peer fingerprint is our own");
}
