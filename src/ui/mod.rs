//! The two front ends and what they share. The interactive one runs when standard
//! input and output are both terminals: an input line that nothing overwrites, bars
//! between it and the messages. The plain one, for scripts, pipes and CI, prints
//! peer lines on standard output as `name: text` and status lines on standard error,
//! so that a script can read the conversation alone. Everything that came from the
//! network is passed through [`crate::ui::sanitize::for_terminal`] first.

pub mod complete;
pub mod editor;
pub mod input;
pub mod interactive;
pub mod lines;
pub mod plain;
pub mod rate;
pub mod repeats;
pub mod sanitize;
pub mod status;
pub mod transfers;
pub mod width;

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use crate::config::Look;
use crate::identity::fingerprint::Fingerprint;
use crate::link::dialer::WrongPin;
use crate::link::tls::Pin;
use crate::platform;
use crate::session::AtFinish;
use crate::session::event::{Command, Event};
use interactive::Interactive;

/// The front end in use: chosen once, at start.
pub enum Console {
    Plain(Look),
    Interactive(Interactive),
}

impl Console {
    /// The interactive front end when standard input and output are both terminals
    /// that understand escape sequences (and `TERM` is not `dumb`), the plain one
    /// otherwise. Returns the typed lines.
    pub fn start(own_name: &str, look: Look) -> anyhow::Result<(Console, mpsc::Receiver<String>)> {
        if at_a_terminal() {
            let (console, lines) =
                Interactive::start(own_name, look).context("cannot set up the terminal")?;
            return Ok((Console::Interactive(console), lines));
        }
        let lines = spawn_line_reader().context("cannot start reading standard input")?;
        Ok((Console::Plain(look), lines))
    }

    pub fn is_interactive(&self) -> bool {
        matches!(self, Console::Interactive(_))
    }

    /// What the end of input means: at a terminal, Ctrl-D is leaving; from a
    /// script, the end of what it had to say.
    pub fn at_finish(&self) -> AtFinish {
        match self {
            Console::Plain(_) => AtFinish::WaitForPeer,
            Console::Interactive(_) => AtFinish::Leave,
        }
    }

    /// What a wrong pin means: at a terminal, the person can enter it again.
    pub fn wrong_pin(&self) -> WrongPin {
        match self {
            Console::Plain(_) => WrongPin::Fatal,
            Console::Interactive(_) => WrongPin::AskAgain,
        }
    }

    /// Asks `question` and waits for the answer.
    pub async fn prompt(
        &self,
        question: &str,
        lines: &mut mpsc::Receiver<String>,
    ) -> Option<String> {
        match self {
            Console::Plain(_) => prompt(question, lines).await,
            Console::Interactive(console) => {
                console.ask(question);
                lines.recv().await
            }
        }
    }

    /// A status line of the front end's own, before the session shows events.
    pub fn note(&self, text: &str) {
        match self {
            Console::Plain(_) => status(text),
            Console::Interactive(console) => console.note(text),
        }
    }

    /// Shows the core's events from now on; the receiver fires once they ended and
    /// were all shown.
    pub fn show(
        &mut self,
        events: mpsc::UnboundedReceiver<Event>,
        quit: mpsc::Sender<Command>,
        pin: Pin,
        own: Fingerprint,
    ) -> io::Result<oneshot::Receiver<()>> {
        match self {
            Console::Plain(look) => {
                let screen = plain::Screen::new(*look);
                plain::spawn_printer(screen, events, quit)
            }
            Console::Interactive(console) => console.attach(events, quit, pin, own),
        }
    }

    /// Gives the terminal back before `err` is reported.
    pub async fn close_with(self, err: anyhow::Error) -> anyhow::Error {
        if let Console::Interactive(console) = self {
            console.close().await;
        }
        err
    }
}

/// Whether the interactive front end will run: standard input and output are both
/// terminals that understand escape sequences, and `TERM` is not `dumb`.
pub fn at_a_terminal() -> bool {
    io::stdin().is_terminal()
        && io::stdout().is_terminal()
        && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
        && platform::enable_escape_sequences()
}

/// Our fingerprint as a person reads it out: two rows of 8 groups of 4 digits,
/// which fit any terminal and paste back in whole.
pub fn fingerprint_rows(fingerprint: &Fingerprint) -> [String; 2] {
    let grouped = fingerprint.grouped();
    let (first, second) = grouped.split_at(39);
    let label = "Fingerprint: ";
    [
        format!("{label}{first}"),
        format!("{}{}", " ".repeat(label.len()), second.trim_start()),
    ]
}

/// Leaves raw mode if the interactive front end is using it: on every way out.
pub fn restore_terminal() {
    interactive::restore();
}

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
pub(crate) const LINES_AHEAD: usize = 256;

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

/// Prints a line on standard output. A closed output is not this line's problem:
/// peer lines go through [`Screen::show`], which reports it.
pub fn say(line: &str) {
    let _ = write_line(&mut io::stdout().lock(), line);
}

/// Like [`prompt`], before the front end starts: reads the answer from standard
/// input itself, blocking. `None` when input has ended.
pub fn prompt_before_start(question: &str) -> io::Result<Option<String>> {
    let mut stdout = io::stdout();
    stdout.write_all(question.as_bytes())?;
    stdout.flush()?;
    let mut answer = String::new();
    let read = io::stdin().read_line(&mut answer)?;
    if !io::stdin().is_terminal() {
        say("");
    }
    Ok((read > 0).then_some(answer))
}

/// Prints a status line on standard error, where nothing is acknowledged.
pub fn status(line: &str) {
    let _ = write_line(&mut io::stderr().lock(), line);
}

/// Writes one whole line and flushes it, reporting any failure instead of panicking
/// as `println!` does when the reader has gone away.
pub(crate) fn write_line(out: &mut impl Write, line: &str) -> io::Result<()> {
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}
