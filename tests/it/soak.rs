//! A seeded soak, opt-in (`make soak`): for `CHAT_SOAK_SECONDS`, alice and bob type
//! and send each other files through two proxies that inject random faults, while bob
//! is now and then killed with SIGKILL and restarted. Afterwards nothing typed or sent
//! may be missing, shown twice, stored twice, reported lost or left half-kept.
//! `CHAT_SOAK_SEED` replays a run's sequence of actions.

use crate::common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::proxy::{ALICE, BOB, NAMES, Proxy, Session, Way, sha256_hex, shown_from, wait_both};
use common::{Peer, SeededRng, Stream, TIMEOUT, kept_counts, kept_parts, listing, pseudo_random};

const LARGEST_FILE: u64 = 8 << 20;
/// Fewest actions from one kill of bob to the next, so that every run of bob works.
const ACTIONS_BETWEEN_KILLS: usize = 5;
/// How long a kill waits for the moment it aims at before it kills anyway.
const KILL_MOMENT_WAIT: Duration = Duration::from_secs(5);
/// Files a side may have waiting for their verdict before a new one waits for the oldest.
const MAX_PENDING_FILES: usize = 3;
/// How each side's lines and files are told apart: `a000042 …`, `b-0007.bin`.
const LETTERS: [char; 2] = ['a', 'b'];
/// Characters of typed text besides printable ASCII; none needs escaping when shown.
const WIDE: [char; 6] = ['é', 'ß', 'ж', '你', '🙂', ' '];

#[test]
fn soak_under_random_faults() {
    let Ok(seconds) = std::env::var("CHAT_SOAK_SECONDS") else {
        println!("SKIPPED soak: set CHAT_SOAK_SECONDS=N (optionally CHAT_SOAK_SEED=S) to run it");
        return;
    };
    let seconds: u64 = (seconds.trim().parse())
        .unwrap_or_else(|_| panic!("CHAT_SOAK_SECONDS={seconds:?} is not a number of seconds"));
    let seed = match std::env::var("CHAT_SOAK_SEED") {
        Ok(seed) => (seed.trim().parse())
            .unwrap_or_else(|_| panic!("CHAT_SOAK_SEED={seed:?} is not a number")),
        Err(_) => {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_000
        }
    };
    println!("soak seed {seed}");
    let mut soak = Soak::start(seed);
    let outcome = soak.run(Duration::from_secs(seconds));
    soak.finish(outcome);
}

/// A fault on one proxied connection (or, for fragmenting, on the proxy's next writes).
#[derive(Debug, Clone, Copy)]
enum Fault {
    Reset,
    Fin(Way),
    Stall(Duration),
    /// Cut writes into pieces of 1 to this many bytes, or stop doing so (`None`).
    Fragment(Option<usize>),
    /// Drop one way's bytes, then reset after the delay, as a path that died would.
    LoseThenReset(Way, Duration),
    /// The next connection is black-holed; the current one is reset to make it come.
    BlackHoleNext,
}

/// One random step of the soak; every choice in it comes from the seed.
#[derive(Debug)]
enum Action {
    Burst {
        who: usize,
        lines: usize,
    },
    Transfer {
        who: usize,
        size: u64,
        content: u64,
    },
    Fault {
        link: usize,
        fault: Fault,
    },
    /// SIGKILL bob, at a moment `when` picks (in a file of `size` bytes alice sends
    /// first, or just after alice typed `before` lines); alice types `meanwhile` lines
    /// while he is down for `down`.
    KillBob {
        when: KillMoment,
        before: usize,
        size: u64,
        content: u64,
        down: Duration,
        meanwhile: usize,
    },
}

/// When a kill of bob lands.
#[derive(Debug, Clone, Copy)]
enum KillMoment {
    /// Right after alice typed some lines: bob may have shown them and not yet
    /// acknowledged them.
    Now,
    /// Once bob keeps some bytes of alice's file in a part: mid-transfer.
    MidFile,
    /// As soon as bob says he saved alice's file: his verdict may still be on its way.
    JustSaved,
}

/// A line one side typed, and which run of that side typed it (always 0 for alice).
struct Typed {
    text: String,
    run: usize,
}

/// A file one side sent.
struct Sent {
    name: String,
    size: u64,
    sha256: String,
    run: usize,
}

struct Soak {
    seed: u64,
    rng: SeededRng,
    s: Session,
    /// Bob's earlier runs, killed, oldest first; `s.peers[BOB]` is the current one.
    dead_bobs: Vec<Peer>,
    started: Instant,
    log: Vec<String>,
    actions: usize,
    last_kill: usize,
    fragmenting: [Option<usize>; 2],
    typed: [Vec<Typed>; 2],
    sent: [Vec<Sent>; 2],
    /// Per viewer: the last line typed for it to show, and where in its history to look.
    awaited: [Option<(String, usize)>; 2],
    outboxes: [PathBuf; 2],
    /// Set once the outcome is printed, so that a panic does not print it twice.
    reported: bool,
}

impl Soak {
    fn start(seed: u64) -> Soak {
        let mut rng = SeededRng::new(seed);
        let proxies = [Proxy::seeded(rng.next_u64()), Proxy::seeded(rng.next_u64())];
        let s = Session::start_with(proxies);
        let outboxes = NAMES.map(|name| s.world.path().join(format!("{name}-outbox")));
        for outbox in &outboxes {
            std::fs::create_dir_all(outbox).unwrap();
        }
        Soak {
            seed,
            rng,
            s,
            dead_bobs: Vec::new(),
            started: Instant::now(),
            log: Vec::new(),
            actions: 0,
            last_kill: 0,
            fragmenting: [None; 2],
            typed: [Vec::new(), Vec::new()],
            sent: [Vec::new(), Vec::new()],
            awaited: [None, None],
            outboxes,
            reported: false,
        }
    }

    /// The current run of bob: 0 for the first, one more after each restart.
    fn bob_run(&self) -> usize {
        self.dead_bobs.len()
    }

    fn note(&mut self, what: String) {
        let entry = format!(
            "#{} {:6.1}s {what}",
            self.actions,
            self.started.elapsed().as_secs_f64()
        );
        println!("{entry}");
        self.log.push(entry);
    }

    /// Random actions for `duration`. An error says what did not happen in time.
    fn run(&mut self, duration: Duration) -> Result<(), String> {
        while self.started.elapsed() < duration {
            self.actions += 1;
            let action = self.pick();
            let is_burst = matches!(action, Action::Burst { .. });
            self.perform(action)?;
            // After most actions, one line each way shows that both links carry
            // traffic again; after the rest, faults pile up until the next check.
            if is_burst || self.rng.percent(70) {
                if !is_burst {
                    self.type_lines(ALICE, 1);
                    self.type_lines(BOB, 1);
                }
                self.catch_up()?;
            }
            thread::sleep(Duration::from_millis(self.rng.within(0..=200)));
        }
        Ok(())
    }

    fn pick(&mut self) -> Action {
        let may_kill = self.actions - self.last_kill >= ACTIONS_BETWEEN_KILLS;
        match self.rng.below(100) {
            0..=21 => self.burst(ALICE),
            22..=35 => self.burst(BOB),
            36..=47 => self.transfer(ALICE),
            48..=55 => self.transfer(BOB),
            56..=91 => {
                let link = self.rng.below(2) as usize;
                let way = |rng: &mut SeededRng| match rng.below(2) {
                    0 => Way::ToListener,
                    _ => Way::ToDialer,
                };
                // A black hole costs a 10 s handshake deadline: rarer than the rest.
                let fault = match self.rng.below(19) {
                    0..=2 => Fault::Reset,
                    3..=5 => Fault::Fin(Way::ToListener),
                    6..=8 => Fault::Fin(Way::ToDialer),
                    9..=11 => Fault::Stall(Duration::from_millis(self.rng.within(500..=3000))),
                    12..=14 => match self.fragmenting[link] {
                        Some(_) => Fault::Fragment(None),
                        None => Fault::Fragment(Some(1 << self.rng.within(4..=12))),
                    },
                    15..=17 => Fault::LoseThenReset(
                        way(&mut self.rng),
                        Duration::from_millis(self.rng.within(50..=1000)),
                    ),
                    _ => Fault::BlackHoleNext,
                };
                Action::Fault { link, fault }
            }
            _ if may_kill => Action::KillBob {
                when: match self.rng.below(5) {
                    0 | 1 => KillMoment::Now,
                    2 | 3 => KillMoment::MidFile,
                    _ => KillMoment::JustSaved,
                },
                before: self.rng.within(1..=30) as usize,
                size: self.rng.within(1 << 20..=LARGEST_FILE),
                content: self.rng.next_u64(),
                down: Duration::from_millis(self.rng.within(0..=1500)),
                meanwhile: self.rng.within(0..=5) as usize,
            },
            _ => self.burst(ALICE),
        }
    }

    fn burst(&mut self, who: usize) -> Action {
        let lines = match self.rng.below(10) {
            0 => self.rng.within(41..=300),
            _ => self.rng.within(1..=40),
        } as usize;
        Action::Burst { who, lines }
    }

    fn transfer(&mut self, who: usize) -> Action {
        let size = match self.rng.below(8) {
            0 => 0,
            1 => self.rng.within(1..=1024),
            2..=4 => self.rng.within(1025..=256 << 10),
            _ => self.rng.within(0..=LARGEST_FILE),
        };
        let content = self.rng.next_u64();
        Action::Transfer { who, size, content }
    }

    fn perform(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Burst { who, lines } => {
                let (first, last) = self.type_lines(who, lines);
                self.note(format!(
                    "{} types {lines} line(s), {first}..{last}",
                    NAMES[who]
                ));
            }
            Action::Transfer { who, size, content } => self.send_file(who, size, content)?,
            Action::Fault { link, fault } => self.inject(link, fault),
            Action::KillBob {
                when,
                before,
                size,
                content,
                down,
                meanwhile,
            } => {
                match when {
                    KillMoment::Now => {
                        let (first, last) = self.type_lines(ALICE, before);
                        self.note(format!("alice types {before} line(s), {first}..{last}"));
                    }
                    _ => self.send_file(ALICE, size, content)?,
                }
                self.kill_bob(when, down, meanwhile)?;
            }
        }
        Ok(())
    }

    /// `who` types `count` lines in one write; returns the first and last line's number.
    fn type_lines(&mut self, who: usize, count: usize) -> (String, String) {
        let run = if who == BOB { self.bob_run() } else { 0 };
        let texts: Vec<String> = (0..count)
            .map(|_| {
                let number = self.typed[who].len();
                let filler = self.filler();
                let text = match filler.is_empty() {
                    true => format!("{}{number:06}", LETTERS[who]),
                    false => format!("{}{number:06} {filler}", LETTERS[who]),
                };
                self.typed[who].push(Typed {
                    text: text.clone(),
                    run,
                });
                text
            })
            .collect();
        // Where the viewer's history stands before the lines can possibly arrive.
        let viewer = 1 - who;
        self.s.peers[viewer].collect();
        let from = self.s.peers[viewer].history.len();
        self.s.peers[who].send(&texts.join("\n"));
        let shown = format!("{}: {}", NAMES[who], texts[texts.len() - 1]);
        self.awaited[viewer] = Some((shown, from));
        let number = |text: &str| text[..7].to_owned();
        (number(&texts[0]), number(&texts[texts.len() - 1]))
    }

    /// Text after a line's number: mostly short, sometimes long, never starting or
    /// ending with a space.
    fn filler(&mut self) -> String {
        let len = match self.rng.below(100) {
            0..=69 => self.rng.within(0..=40),
            70..=94 => self.rng.within(41..=400),
            _ => self.rng.within(401..=6000),
        };
        let text: String = (0..len)
            .map(|_| match self.rng.below(100) {
                0..=89 => char::from(self.rng.within(0x21..=0x7e) as u8),
                _ => WIDE[self.rng.below(WIDE.len() as u64) as usize],
            })
            .collect();
        text.trim().to_owned()
    }

    /// Waits until each side has shown the last line typed for it.
    fn catch_up(&mut self) -> Result<(), String> {
        for viewer in [BOB, ALICE] {
            let Some((line, from)) = self.awaited[viewer].take() else {
                continue;
            };
            let deadline = Instant::now() + TIMEOUT;
            let peer = &mut self.s.peers[viewer];
            if !peer.wait_for(from, deadline, Stream::Stdout, |shown| shown == line) {
                return Err(format!(
                    "after action #{}: {} did not show {:?} within {TIMEOUT:?}",
                    self.actions,
                    NAMES[viewer],
                    shorten(&line)
                ));
            }
        }
        Ok(())
    }

    /// The files `who` sent in its current run that it has not yet seen delivered.
    fn pending(&mut self, who: usize) -> Vec<String> {
        let run = if who == BOB { self.bob_run() } else { 0 };
        let peer = &mut self.s.peers[who];
        peer.collect();
        let done = delivered_lines(peer, NAMES[1 - who]);
        (self.sent[who].iter())
            .filter(|sent| sent.run == run && !done.contains(&sent.name))
            .map(|sent| sent.name.clone())
            .collect()
    }

    /// Waits until `who` says that `name` was delivered and verified.
    fn wait_delivered(&mut self, who: usize, name: &str) -> Result<(), String> {
        let line = format!("{name} delivered and verified by {}", NAMES[1 - who]);
        let deadline = Instant::now() + TIMEOUT;
        let peer = &mut self.s.peers[who];
        if peer.wait_for(0, deadline, Stream::Stderr, |shown| shown == line) {
            return Ok(());
        }
        Err(format!(
            "after action #{}: {} did not print {line:?} within {TIMEOUT:?}",
            self.actions, NAMES[who]
        ))
    }

    fn send_file(&mut self, who: usize, size: u64, content: u64) -> Result<(), String> {
        let name = format!("{}-{:04}.bin", LETTERS[who], self.sent[who].len());
        let pending = self.pending(who);
        let waits = pending.len() >= MAX_PENDING_FILES;
        self.note(format!(
            "{} sends {name} ({size} bytes){}",
            NAMES[who],
            if waits {
                format!(" once {} is delivered", pending[0])
            } else {
                String::new()
            }
        ));
        if waits {
            self.wait_delivered(who, &pending[0])?;
        }
        let data = pseudo_random(size as usize, content);
        let path = self.outboxes[who].join(&name);
        std::fs::write(&path, &data).unwrap();
        self.sent[who].push(Sent {
            name,
            size,
            sha256: sha256_hex(&data),
            run: if who == BOB { self.bob_run() } else { 0 },
        });
        self.s.peers[who].send(&format!("transfer {}", path.display()));
        Ok(())
    }

    fn inject(&mut self, link: usize, fault: Fault) {
        let proxy = &self.s.proxies[link];
        let conn = proxy.current();
        let place = format!(
            "{}'s link ({} bytes to {}, {} back)",
            NAMES[link],
            conn.forwarded(Way::ToListener),
            NAMES[1 - link],
            conn.forwarded(Way::ToDialer)
        );
        let what = match fault {
            Fault::Reset => {
                conn.reset();
                format!("reset on {place}")
            }
            Fault::Fin(way) => {
                conn.half_close(way);
                format!("FIN {} on {place}", towards(way, link))
            }
            Fault::Stall(how_long) => {
                conn.stall(how_long);
                format!("stall of {how_long:?} on {place}")
            }
            Fault::Fragment(max_piece) => {
                proxy.fragment(max_piece);
                self.fragmenting[link] = max_piece;
                match max_piece {
                    Some(max) => format!("writes of 1..={max} bytes from now on, on {place}"),
                    None => format!("whole writes again, on {place}"),
                }
            }
            Fault::LoseThenReset(way, after) => {
                conn.lose(way);
                thread::sleep(after);
                conn.reset();
                format!(
                    "bytes {} lost, reset {after:?} later, on {place}",
                    towards(way, link)
                )
            }
            Fault::BlackHoleNext => {
                proxy.black_hole_next();
                conn.reset();
                format!("reset, and the next connection black-holed, on {place}")
            }
        };
        self.note(what);
    }

    fn kill_bob(
        &mut self,
        when: KillMoment,
        down: Duration,
        meanwhile: usize,
    ) -> Result<(), String> {
        self.last_kill = self.actions;
        let run = self.bob_run();
        let file = self.sent[ALICE].last().map(|sent| sent.name.clone());
        let moment = match (when, file) {
            (KillMoment::MidFile, Some(file)) => self.wait_for_part(&file),
            (KillMoment::JustSaved, Some(file)) => self.wait_for_saved(&file),
            _ => "at once".to_owned(),
        };
        let bob = &mut self.s.peers[BOB];
        // Straight from here (no `kill` command to start), so that the moment holds.
        let _ = bob.child.kill();
        self.note(format!(
            "kill -9 bob (run {run}) {moment}; down for {down:?}, alice types {meanwhile} line(s) meanwhile"
        ));
        self.s.peers[BOB].wait();
        // Bob's lines and files of this run are exempt from here on.
        self.awaited[ALICE] = None;
        if meanwhile > 0 {
            self.type_lines(ALICE, meanwhile);
        }
        thread::sleep(down);
        let port = self.s.peers[BOB].port;
        let restarted = self.s.world.restart(
            "bob",
            port,
            self.s.proxies[BOB].port,
            &self.s.fingerprints[ALICE],
        );
        let killed = std::mem::replace(&mut self.s.peers[BOB], restarted);
        self.dead_bobs.push(killed);
        // The new bob shows every line alice typed that the old one did not acknowledge.
        if let Some(last) = self.typed[ALICE].last() {
            self.awaited[BOB] = Some((format!("alice: {}", last.text), 0));
        }
        let deadline = Instant::now() + TIMEOUT;
        let bob = &mut self.s.peers[BOB];
        for needle in ["Connected to alice at", "alice connected from"] {
            if !bob.wait_for(0, deadline, Stream::Stderr, |line| line.contains(needle)) {
                return Err(format!(
                    "after action #{}: the restarted bob did not print {needle:?} within {TIMEOUT:?}",
                    self.actions
                ));
            }
        }
        self.note(format!("bob (run {}) is connected both ways", run + 1));
        Ok(())
    }

    /// Waits, a few seconds at most, until bob keeps some bytes of alice's `file` in
    /// a part, or has saved it; says which.
    fn wait_for_part(&mut self, file: &str) -> String {
        let deadline = Instant::now() + KILL_MOMENT_WAIT;
        let saved = format!("Saved ./{file} (verified");
        let bob = &mut self.s.peers[BOB];
        while Instant::now() < deadline {
            let held = (kept_parts(&bob.workdir).iter())
                .filter(|part| kept_for(part).as_deref() == Some(file))
                .map(|part| std::fs::metadata(part).map_or(0, |m| m.len()))
                .max();
            if let Some(held) = held.filter(|&held| held > 0) {
                return format!("mid-file, {held} bytes of {file} kept");
            }
            bob.collect();
            if bob
                .lines_on(Stream::Stderr)
                .iter()
                .any(|line| line.starts_with(&saved))
            {
                return format!("after {file} was saved");
            }
            thread::sleep(Duration::from_millis(1));
        }
        format!("after {KILL_MOMENT_WAIT:?} without a part of {file} in sight")
    }

    /// Waits, a few seconds at most, until bob says he saved alice's `file`; says
    /// whether he did.
    fn wait_for_saved(&mut self, file: &str) -> String {
        let deadline = Instant::now() + KILL_MOMENT_WAIT;
        let saved = format!("Saved ./{file} (verified");
        let bob = &mut self.s.peers[BOB];
        match bob.wait_for(0, deadline, Stream::Stderr, |line| line.starts_with(&saved)) {
            true => format!("right after it said \"Saved ./{file}\""),
            false => format!("after {KILL_MOMENT_WAIT:?} without {file} saved"),
        }
    }

    /// Ends the soak: back to whole writes, every line and file through, both inputs
    /// closed; then every invariant is checked and the outcome printed.
    fn finish(&mut self, outcome: Result<(), String>) {
        let mut problems = Vec::new();
        let stuck = outcome.and_then(|()| self.settle()).err();
        let violations = match stuck {
            None => {
                problems.extend(wait_both(&mut self.s.peers));
                self.check()
            }
            // Whatever did not happen in time would only be reported again, piecemeal.
            Some(stuck) => {
                problems.push(stuck);
                for peer in &mut self.s.peers {
                    let _ = peer.child.kill();
                    peer.drain();
                }
                Vec::new()
            }
        };
        problems.extend(violations);
        self.reported = true;
        if !problems.is_empty() {
            panic!(
                "soak seed {}: {} violation(s):\n- {}\n\n{}",
                self.seed,
                problems.len(),
                problems.join("\n- "),
                self.context()
            );
        }
        println!("{}", self.summary());
    }

    fn settle(&mut self) -> Result<(), String> {
        self.actions += 1;
        for link in [ALICE, BOB] {
            if self.fragmenting[link].is_some() {
                self.inject(link, Fault::Fragment(None));
            }
        }
        self.note("the end: both sides type a last line and wait for every file".into());
        self.type_lines(ALICE, 1);
        self.type_lines(BOB, 1);
        self.catch_up()?;
        for who in [ALICE, BOB] {
            for name in self.pending(who) {
                self.wait_delivered(who, &name)?;
            }
        }
        self.note("both close standard input".into());
        self.s.peers.iter_mut().for_each(Peer::close_stdin);
        Ok(())
    }

    /// Every invariant, over everything the processes printed and stored.
    fn check(&self) -> Vec<String> {
        let mut violations = Vec::new();
        let bobs: Vec<&Peer> = self.bobs();
        violations.extend(alice_lines_problems(&self.typed[ALICE], &bobs));
        violations.extend(bob_lines_problems(
            &self.typed[BOB],
            &self.s.peers[ALICE],
            self.dead_bobs.len(),
        ));
        let runs = std::iter::once(("alice".to_owned(), &self.s.peers[ALICE])).chain(
            bobs.iter()
                .enumerate()
                .map(|(run, bob)| (format!("bob (run {run})"), *bob)),
        );
        for (who, peer) in runs {
            violations.extend(
                (peer.lines_on(Stream::Stderr).into_iter())
                    .filter(|line| is_alarming(line))
                    .map(|line| format!("{who} printed {:?}", shorten(line))),
            );
        }
        // Alice's files, at bob.
        let alice_says = delivered_lines(&self.s.peers[ALICE], "bob");
        for sent in &self.sent[ALICE] {
            let times = alice_says.iter().filter(|name| **name == sent.name).count();
            if times != 1 {
                violations.push(format!(
                    "alice printed \"{} delivered and verified by bob\" {times} times, not once",
                    sent.name
                ));
            }
        }
        let bob_home = self.s.peers[BOB].workdir.clone();
        let all_sent: Vec<&Sent> = self.sent[ALICE].iter().collect();
        for (_, problem) in stored_problems(&bob_home, &all_sent, &all_sent) {
            violations.push(format!("bob's download folder: {problem}"));
        }
        let (parts, metas) = kept_counts(&bob_home);
        if parts > 0 || metas > 0 {
            let kept: Vec<String> = kept_parts(&bob_home)
                .iter()
                .map(|p| describe_part(p))
                .collect();
            violations.push(format!(
                "bob keeps {parts} part(s) and {metas} meta(s) after every transfer was verified: {}",
                kept.join("; ")
            ));
        }
        // Bob's files, at alice: those of his last run must all be there; those of a
        // killed run only if that run saw them delivered, but never wrong nor twice.
        let final_run = self.bob_run();
        let bob_says: Vec<Vec<String>> = (bobs.iter())
            .map(|bob| delivered_lines(bob, "alice"))
            .collect();
        let mut required = Vec::new();
        for sent in &self.sent[BOB] {
            let times = (bob_says[sent.run].iter())
                .filter(|name| **name == sent.name)
                .count();
            if times > 1 || (sent.run == final_run && times != 1) {
                violations.push(format!(
                    "bob (run {}) printed \"{} delivered and verified by alice\" {times} times, not once",
                    sent.run, sent.name
                ));
            }
            if times > 0 || sent.run == final_run {
                required.push(sent);
            }
        }
        let alice_home = self.s.peers[ALICE].workdir.clone();
        let allowed: Vec<&Sent> = self.sent[BOB].iter().collect();
        for (_, problem) in stored_problems(&alice_home, &required, &allowed) {
            violations.push(format!("alice's download folder: {problem}"));
        }
        // A part alice keeps can only be of a file that a killed run of bob's never
        // finished sending.
        for part in kept_parts(&alice_home) {
            let cut_off = kept_for(&part).is_some_and(|name| {
                (self.sent[BOB].iter()).any(|sent| {
                    sent.name == name && sent.run < final_run && !alice_home.join(&name).exists()
                })
            });
            if !cut_off {
                violations.push(format!(
                    "alice keeps a part that no kill of bob's explains: {}",
                    describe_part(&part)
                ));
            }
        }
        violations
    }

    /// Every run of bob, oldest first.
    fn bobs(&self) -> Vec<&Peer> {
        (self.dead_bobs.iter())
            .chain(std::iter::once(&self.s.peers[BOB]))
            .collect()
    }

    /// The seed, the action log and every transcript, for a failure message.
    fn context(&self) -> String {
        let mut text = format!(
            "replay with CHAT_SOAK_SEED={} (the same actions in the same order)\n\naction log:\n{}\n\nalice's transcript:\n{}",
            self.seed,
            self.log.join("\n"),
            self.s.peers[ALICE].transcript()
        );
        for (run, bob) in self.bobs().into_iter().enumerate() {
            let _ = write!(
                text,
                "\n\nbob's transcript (run {run}):\n{}",
                bob.transcript()
            );
        }
        text
    }

    fn summary(&self) -> String {
        let lines_of = |who: usize| self.typed[who].len();
        let bytes_of = |who: usize| self.sent[who].iter().map(|sent| sent.size).sum::<u64>();
        format!(
            "soak seed {}: passed after {:.0} s and {} actions: alice typed {} lines and sent {} files ({} bytes), bob typed {} lines and sent {} files ({} bytes), bob was killed {} times",
            self.seed,
            self.started.elapsed().as_secs_f64(),
            self.actions,
            lines_of(ALICE),
            self.sent[ALICE].len(),
            bytes_of(ALICE),
            lines_of(BOB),
            self.sent[BOB].len(),
            bytes_of(BOB),
            self.dead_bobs.len(),
        )
    }
}

impl Drop for Soak {
    fn drop(&mut self) {
        if thread::panicking() && !self.reported {
            for peer in &mut self.s.peers {
                peer.collect();
            }
            eprintln!("soak seed {} failed\n{}", self.seed, self.context());
        }
    }
}

/// The name of the file a kept part is for, as its meta says.
fn kept_for(part: &Path) -> Option<String> {
    let meta = std::fs::read_to_string(part.with_extension("meta")).ok()?;
    meta.lines()
        .find_map(|line| line.strip_prefix("name "))
        .map(str::to_owned)
}

/// A kept part, for a message: its size, and the offer its meta names.
fn describe_part(part: &Path) -> String {
    let held = std::fs::metadata(part).map_or(0, |m| m.len());
    let meta = std::fs::read_to_string(part.with_extension("meta"))
        .map(|meta| meta.lines().skip(1).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|err| format!("no meta ({err})"));
    let name = part.file_name().unwrap_or_default().to_string_lossy();
    format!("{name} holds {held} bytes of {meta}")
}

/// Which end a way of `link`'s connection (the one `link` dials) leads to.
fn towards(way: Way, link: usize) -> String {
    match way {
        Way::ToListener => format!("towards {}", NAMES[1 - link]),
        Way::ToDialer => format!("towards {}", NAMES[link]),
    }
}

/// A long line, cut for a message.
fn shorten(line: &str) -> String {
    match line.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// The names `peer` printed as delivered to and verified by `by`, in order.
fn delivered_lines(peer: &Peer, by: &str) -> Vec<String> {
    let suffix = format!(" delivered and verified by {by}");
    (peer.lines_on(Stream::Stderr).into_iter())
        .filter_map(|line| line.strip_suffix(&suffix).map(str::to_owned))
        .collect()
}

/// A status line that no fault the soak injects may cause: lines reported lost or not
/// delivered, a transfer that failed, a file that arrived damaged, a protocol
/// violation, a pin warning, a peer taken to have left. (A lost connection or a
/// failed reconnect is not one: faults cause those.)
fn is_alarming(line: &str) -> bool {
    let lower = line.to_lowercase();
    let alarms = [
        "were not delivered",
        "not sent",
        "mismatch",
        "corrupt",
        "protocol error",
        "warning: ",
        "gave up",
        "chat: error",
        "internal error",
        "acknowledged message",
        "verified before all data",
        "reuses transfer id",
        "which is not active",
        "more bytes arrived",
    ];
    let transfer_failed = (line.starts_with("Sending ") || line.starts_with("Receiving "))
        && line.contains(" failed: ");
    alarms.iter().any(|alarm| lower.contains(alarm))
        || transfer_failed
        || (lower.contains("unexpected") && lower.contains("frame"))
        || line == "The peer closed the connection"
}

/// The typed line that a shown one names by its number, if the text is the same.
fn typed_index(typed: &[Typed], shown: &str) -> Option<usize> {
    let number: usize = shown.get(1..7)?.parse().ok()?;
    (typed.get(number)?.text == shown).then_some(number)
}

/// Alice's lines at bob, run by run: each run shows a contiguous stretch of them, once
/// each and in order. A restarted run may begin with lines the killed one already
/// showed (written, not yet acknowledged), never before where the killed one began,
/// never after where it ended; the last run ends with alice's last line.
fn alice_lines_problems(typed: &[Typed], bobs: &[&Peer]) -> Vec<String> {
    let mut problems = Vec::new();
    let (mut low, mut high) = (0, 0);
    for (run, bob) in bobs.iter().enumerate() {
        let mut expected: Option<usize> = None;
        for shown in shown_from(bob, "alice") {
            let Some(number) = typed_index(typed, &shown) else {
                problems.push(format!(
                    "bob (run {run}) showed {:?}, which alice never typed",
                    shorten(&shown)
                ));
                return problems;
            };
            match expected {
                None if !(low..=high).contains(&number) => {
                    problems.push(format!(
                        "bob (run {run}) began with alice's line {number}, but lines {low}..{high} were the ones it could show again or next"
                    ));
                    return problems;
                }
                None => {
                    if number < high {
                        println!(
                            "bob (run {run}) showed again alice's lines {number}..{} of the run before, written but not yet acknowledged",
                            high - 1
                        );
                    }
                    low = number;
                }
                Some(next) if number != next => {
                    problems.push(format!(
                        "bob (run {run}) showed alice's line {number} where line {next} was due"
                    ));
                    return problems;
                }
                Some(_) => {}
            }
            expected = Some(number + 1);
            high = high.max(number + 1);
        }
    }
    let last_run = bobs.len() - 1;
    let shown_last = shown_from(bobs[last_run], "alice");
    let ends_right = match shown_last.last() {
        Some(shown) => typed_index(typed, shown) == Some(typed.len() - 1),
        None => typed.is_empty(),
    };
    if !ends_right {
        problems.push(format!(
            "bob (run {last_run}) did not end with alice's last line ({} typed)",
            typed.len()
        ));
    }
    problems
}

/// Bob's lines at alice (who is never killed): once each, in the order typed; of
/// each run of bob, a first stretch; of his last run, all.
fn bob_lines_problems(typed: &[Typed], alice: &Peer, last_run: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let mut previous: Option<usize> = None;
    for shown in shown_from(alice, "bob") {
        let Some(number) = typed_index(typed, &shown) else {
            problems.push(format!(
                "alice showed {:?}, which bob never typed",
                shorten(&shown)
            ));
            return problems;
        };
        let run = typed[number].run;
        let due = match previous {
            Some(previous) if typed[previous].run == run => previous + 1,
            // The first line of a run of bob's.
            _ => typed.iter().position(|line| line.run == run).unwrap(),
        };
        if number != due {
            problems.push(format!(
                "alice showed bob's line {number} (run {run}) where line {due} was due"
            ));
            return problems;
        }
        if previous.is_some_and(|previous| typed[previous].run > run) {
            problems.push(format!(
                "alice showed bob's line {number} of run {run} after lines of a later run"
            ));
            return problems;
        }
        previous = Some(number);
    }
    let last_typed = typed.iter().rposition(|line| line.run == last_run);
    if last_typed.is_some() && previous != last_typed {
        problems.push(format!(
            "alice's last line from bob is {previous:?}, not {last_typed:?}, the last one his last run typed"
        ));
    }
    problems
}

/// What is wrong with the files in `folder`: each of `required` there once with its
/// exact SHA-256, nothing there but files of `allowed` (the same rule for them), no
/// second copy. Returns each problem with the stored name it is about.
fn stored_problems(folder: &Path, required: &[&Sent], allowed: &[&Sent]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let stored: Vec<String> = (listing(folder).into_iter())
        .filter(|name| name != common::PARTS_DIR)
        .collect();
    for sent in required {
        if !stored.contains(&sent.name) {
            problems.push((sent.name.clone(), format!("{} is missing", sent.name)));
        }
    }
    for name in stored {
        let Some(sent) = allowed.iter().find(|sent| sent.name == name) else {
            let problem = format!("{name} was stored, but no such file was sent");
            problems.push((name, problem));
            continue;
        };
        let data = std::fs::read(folder.join(&name)).unwrap();
        if data.len() as u64 != sent.size || sha256_hex(&data) != sent.sha256 {
            let problem = format!(
                "{name} holds {} bytes with SHA-256 {}, not {} bytes with {}",
                data.len(),
                sha256_hex(&data),
                sent.size,
                sent.sha256
            );
            problems.push((name, problem));
        }
    }
    problems
}
