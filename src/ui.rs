//! The terminal front end: reading typed lines, prompting, and printing events.
//!
//! Peer messages go to standard output as `name: text`; status lines go to standard
//! error, so a script can read the conversation alone. Everything that came from
//! the network is passed through [`sanitize::for_terminal`] first.

use std::collections::HashMap;
use std::io::{self, BufRead, IsTerminal, Write};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, oneshot};

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::event::{Command, Direction, Event, Phase};
use crate::platform;
use crate::sanitize::for_terminal;

/// Reads standard input on its own thread, one line at a time, so that a blocked
/// read never holds up the async runtime or its shutdown. The channel closes at end
/// of input; it is bounded, so a script that pipes in more than the peer takes is
/// simply read more slowly.
pub fn spawn_line_reader() -> io::Result<mpsc::Receiver<String>> {
    let (lines, rx) = mpsc::channel(LINES_AHEAD);
    std::thread::Builder::new()
        .name("chat-stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match stdin.read_until(b'\n', &mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buffer);
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        if lines.blocking_send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        })?;
    Ok(rx)
}

/// Typed lines read ahead of the session.
const LINES_AHEAD: usize = 256;

/// Shows the core's events on a thread of its own, so that a terminal that stops
/// reading (Ctrl-S, a pager, a slow link) never blocks the async runtime. A peer's
/// line counts as shown once written; if standard output is gone, the session is
/// asked to quit and no later line is acknowledged. `finished` fires when the
/// events channel has closed and everything before it was shown.
pub fn spawn_printer(
    screen: Screen,
    mut events: mpsc::UnboundedReceiver<Event>,
    quit: mpsc::Sender<Command>,
) -> io::Result<oneshot::Receiver<()>> {
    let (finished, finished_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("chat-printer".into())
        .spawn(move || {
            let mut bars = Bars::default();
            let mut output_open = true;
            while let Some(event) = events.blocking_recv() {
                if let Event::Message { .. } = event
                    && !output_open
                {
                    continue;
                }
                match (screen.show(&event, &mut bars), &event) {
                    (Ok(()), Event::Message { shown, .. }) => shown.written(),
                    (Ok(()), _) => {}
                    (Err(err), _) => {
                        output_open = false;
                        screen.status(&format!(
                            "chat: cannot write to standard output ({err}); quitting"
                        ));
                        let _ = quit.blocking_send(Command::Quit);
                    }
                }
            }
            let _ = finished.send(());
        })?;
    Ok(finished_rx)
}

/// Prints `question` without a newline and waits for the next typed line. When the
/// answer does not come from a terminal (which echoes it), ends the prompt's line
/// so that later output starts on a line of its own.
pub async fn prompt(question: &str, lines: &mut mpsc::Receiver<String>) -> Option<String> {
    let mut stdout = io::stdout();
    let _ = stdout
        .write_all(question.as_bytes())
        .and_then(|()| stdout.flush());
    let answer = lines.recv().await;
    if !io::stdin().is_terminal() {
        say("");
    }
    answer
}

/// The terminal: prints lines above any progress bars, and owns the bars.
///
/// Bars draw on standard error and hide themselves when it is not a terminal.
/// Lines are printed inside `suspend`, never with `MultiProgress::println`, which
/// drops lines while the bars are hidden.
#[derive(Clone)]
pub struct Screen {
    bars: MultiProgress,
    verbose: bool,
    /// Peer lines on a terminal are wrapped by us, each continuation row marked, so
    /// that no padding can make a row of a peer's line pass for a status line.
    stdout_is_terminal: bool,
}

/// Progress bars by transfer, for the printer task.
#[derive(Default)]
pub struct Bars {
    by_transfer: HashMap<(bool, u64), ProgressBar>,
}

impl Screen {
    pub fn new(progress: bool, verbose: bool) -> Self {
        let target = if progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Screen {
            bars: MultiProgress::with_draw_target(target),
            verbose,
            stdout_is_terminal: io::stdout().is_terminal(),
        }
    }

    /// Prints a line on standard output.
    pub fn say(&self, line: &str) {
        self.bars.suspend(|| say(line));
    }

    /// Prints a status line on standard error.
    pub fn status(&self, line: &str) {
        self.bars.suspend(|| status(line));
    }

    /// Shows one event from the core. Fails only if a peer's line could not be
    /// written to standard output; it must then not be acknowledged.
    pub fn show(&self, event: &Event, bars: &mut Bars) -> io::Result<()> {
        match event {
            Event::Message { from, text, .. } => {
                let line = format!("{}: {}", for_terminal(from), for_terminal(text));
                let rows = match self.stdout_is_terminal.then(platform::stdout_columns) {
                    Some(Some(columns)) => wrap_marked(&line, columns),
                    _ => vec![line],
                };
                return self.bars.suspend(|| {
                    let mut out = io::stdout().lock();
                    rows.iter().try_for_each(|row| write_line(&mut out, row))
                });
            }
            Event::Note { text } => self.status(text),
            Event::TransferQueued { id, name, size } => {
                let bar = self.bar(*size, &format!("hashing {}", for_terminal(name)));
                bars.by_transfer.insert((false, *id), bar);
            }
            Event::TransferIncoming {
                id,
                name,
                size,
                from,
            } => {
                self.status(&format!(
                    "Receiving {} ({}) from {}",
                    for_terminal(name),
                    HumanBytes(*size),
                    for_terminal(from)
                ));
                let bar = self.bar(*size, &format!("receiving {}", for_terminal(name)));
                bars.by_transfer.insert((true, *id), bar);
            }
            Event::TransferProgress {
                id, phase, done, ..
            } => {
                let receiving = *phase == Phase::Receiving;
                if let Some(bar) = bars.by_transfer.get(&(receiving, *id)) {
                    if *phase == Phase::Sending && bar.prefix().starts_with("hashing") {
                        bar.set_prefix(bar.prefix().replacen("hashing", "sending", 1));
                        bar.reset();
                    }
                    bar.set_position(*done);
                }
            }
            Event::TransferSaved { id, path, sha256 } => {
                self.remove_bar(bars, (true, *id));
                self.status(&format!(
                    "Saved {} (verified, sha256 {sha256})",
                    for_terminal(&path.display().to_string())
                ));
            }
            Event::TransferDelivered { id, name, peer } => {
                self.remove_bar(bars, (false, *id));
                self.status(&format!(
                    "{} delivered and verified by {}",
                    for_terminal(name),
                    for_terminal(peer)
                ));
            }
            Event::TransferInterrupted {
                id,
                name,
                receiving,
                reason,
            } => {
                self.remove_bar(bars, (*receiving, *id));
                self.transfer_line(name, *receiving, "interrupted: ", reason);
            }
            Event::TransferNote {
                name,
                receiving,
                note,
                ..
            } => self.transfer_line(name, *receiving, "", note),
            Event::TransferFailed {
                id,
                name,
                receiving,
                reason,
            } => {
                self.remove_bar(bars, (*receiving, *id));
                self.transfer_line(name, *receiving, "failed: ", reason);
            }
            other => self.bars.suspend(|| show(other, self.verbose)),
        }
        Ok(())
    }

    /// `Sending NAME: …` or `Receiving NAME: …`, with peer-supplied text made safe.
    fn transfer_line(&self, name: &str, receiving: bool, what: &str, detail: &str) {
        let side = if receiving { "Receiving" } else { "Sending" };
        let separator = if what.is_empty() { ": " } else { " " };
        self.status(&format!(
            "{side} {}{separator}{what}{}",
            for_terminal(name),
            for_terminal(detail)
        ));
    }

    fn bar(&self, size: u64, prefix: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        let bar = self.bars.add(ProgressBar::new(size).with_style(style));
        bar.set_prefix(prefix.to_owned());
        bar
    }

    fn remove_bar(&self, bars: &mut Bars, key: (bool, u64)) {
        if let Some(bar) = bars.by_transfer.remove(&key) {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
    }
}

/// Prints a line on standard output. A closed output is not this line's problem:
/// peer lines go through [`Screen::show`], which reports it.
pub fn say(line: &str) {
    let _ = write_line(&mut io::stdout().lock(), line);
}

/// Prints a status line on standard error, where nothing is acknowledged.
pub fn status(line: &str) {
    let _ = write_line(&mut io::stderr().lock(), line);
}

/// The rows `line` takes on a terminal `columns` wide, every row after the first
/// starting with [`CONTINUATION`]: a peer cannot pad its text so that a row of it
/// starts where a status line would.
pub fn wrap_marked(line: &str, columns: usize) -> Vec<String> {
    let marker_width = CONTINUATION.width();
    let columns = columns.max(marker_width + 2);
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut width = 0;
    for c in line.chars() {
        let char_width = c.width().unwrap_or(0);
        if width + char_width > columns {
            rows.push(std::mem::take(&mut row));
            row.push_str(CONTINUATION);
            width = marker_width;
        }
        row.push(c);
        width += char_width;
    }
    rows.push(row);
    rows
}

/// How a continuation row of a peer's line starts on a terminal.
pub const CONTINUATION: &str = "  \u{21b3} ";

/// Writes one whole line and flushes it, reporting any failure instead of panicking
/// as `println!` does when the reader has gone away.
fn write_line(out: &mut impl Write, line: &str) -> io::Result<()> {
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Shows one event that needs no progress bar.
fn show(event: &Event, verbose: bool) {
    match event {
        Event::Message { .. } | Event::Note { .. } => {}
        Event::Waiting { target, reason } => status(&format!(
            "Waiting for the peer at {target} ({}); retrying until it is up",
            for_terminal(reason)
        )),
        Event::Retrying {
            target,
            reason,
            delay,
        } if verbose => status(&format!(
            "[verbose] {target}: {}; next attempt in {} ms",
            for_terminal(reason),
            delay.as_millis()
        )),
        Event::Retrying { .. } => {}
        Event::Connected {
            direction,
            again,
            peer,
            addr,
            tls,
        } => {
            let peer = for_terminal(peer);
            match (direction, again) {
                (Direction::Outbound, false) => status(&format!("Connected to {peer} at {addr}")),
                (Direction::Outbound, true) => status(&format!("Reconnected to {peer} at {addr}")),
                (Direction::Inbound, false) => status(&format!("{peer} connected from {addr}")),
                (Direction::Inbound, true) => status(&format!("{peer} reconnected from {addr}")),
            }
            if verbose {
                let way = match direction {
                    Direction::Outbound => "outbound",
                    Direction::Inbound => "inbound",
                };
                status(&format!(
                    "[verbose] {way} TLS: {} {} {}",
                    tls.version, tls.cipher_suite, tls.key_exchange
                ));
            }
        }
        Event::Queued { pending: 1 } => {
            status("Not connected yet: lines are queued and will be sent once connected")
        }
        Event::Queued { .. } => {}
        Event::Rejected { addr, reason } => status(&format!(
            "Rejected connection from {addr}: {}",
            for_terminal(reason)
        )),
        Event::PeerFinished { peer } => {
            status(&format!("{} has finished sending", for_terminal(peer)))
        }
        Event::InboundLost { peer, reason } => status(&format!(
            "Connection from {} lost: {}; waiting for it to come back",
            for_terminal(peer),
            for_terminal(reason)
        )),
        Event::OutboundLost { reason } => status(&format!(
            "Connection to the peer lost: {}; reconnecting",
            for_terminal(reason)
        )),
        Event::PeerLeft => status("The peer closed the connection"),
        Event::Distrusted { reason } => status(&format!(
            "Warning: {}; still trying to reach the pinned peer",
            for_terminal(reason)
        )),
        Event::GaveUp { target, reason } => status(&format!(
            "Gave up reaching the peer at {target}: {}",
            for_terminal(reason)
        )),
        Event::NotSent { text } => status(&format!(
            "Not sent, the peer has left: {}",
            for_terminal(text)
        )),
        Event::Undelivered { lines } => {
            status(&format!("{} line(s) were not delivered:", lines.len()));
            for line in lines {
                status(&format!("  {}", for_terminal(line)));
            }
        }
        Event::RejectedMore { count, window } => status(&format!(
            "… and {} more rejected connections in the last {} s",
            thousands(*count),
            window.as_secs()
        )),
        Event::TransferQueued { .. }
        | Event::TransferIncoming { .. }
        | Event::TransferProgress { .. }
        | Event::TransferSaved { .. }
        | Event::TransferDelivered { .. }
        | Event::TransferInterrupted { .. }
        | Event::TransferNote { .. }
        | Event::TransferFailed { .. } => {}
    }
}

/// `3412` as `3,412`: a count from a flood reads at a glance.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_line_cannot_start_a_row_like_a_status_line() {
        let fake = format!("alice: hi{}Saved ./x (verified, sha256 00)", " ".repeat(71));
        let rows = wrap_marked(&fake, 80);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].len(), 80);
        assert!(rows[1].starts_with(CONTINUATION), "{rows:?}");
        assert!(rows.iter().all(|row| row.width() <= 80), "{rows:?}");
    }

    #[test]
    fn wide_characters_wrap_by_their_width() {
        let rows = wrap_marked(&"日".repeat(10), 8);
        assert_eq!(rows[0], "日".repeat(4));
        assert!(rows.iter().all(|row| row.width() <= 8), "{rows:?}");
        assert_eq!(wrap_marked("short", 80), ["short"]);
    }

    #[test]
    fn thousands_are_separated_by_commas() {
        let cases = [(0, "0"), (999, "999"), (1000, "1,000"), (3412, "3,412")];
        for (n, text) in cases {
            assert_eq!(thousands(n), text);
        }
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
