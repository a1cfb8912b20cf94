//! The interactive front end, for a person at a terminal: an input line at the
//! bottom that nothing overwrites, progress bars just above it, and everything else
//! printed above both. One thread owns the terminal; keys, the core's events and
//! the bars' redraws all reach it as [`Msg`]s, and each change is drawn as one
//! frame in one write: erase the live rows (bars and input), print what is new,
//! draw the live rows again. Only the live rows are ever erased, also after a
//! resize: a terminal that keeps a cleared screen in its scrollback (tmux, VTE)
//! would otherwise hold another copy of the conversation for every resize.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use crossterm::event::{self as term, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use tokio::sync::{mpsc, oneshot};

use super::complete;
use super::editor::{Edit, Editor};
use super::lines::{self, Tone, wrap_marked};
use super::rate::{self, Run};
use super::repeats::{Repeats, Seen};
use super::status::StatusBoard;
use super::transfers::TransferTable;
use super::width;
use crate::config::Look;
use crate::identity::fingerprint::Fingerprint;
use crate::link::tls::{Pin, PinMismatch};
use crate::platform;
use crate::session::event::{Command, Event, Phase};
use crate::ui::input::{self, Input};
use crate::ui::sanitize::for_terminal;

/// How often bars are checked for a stall.
const TICK: Duration = Duration::from_millis(500);
/// At most this many waiting messages are taken in before the screen is drawn again.
const MAX_MESSAGES_PER_DRAW: usize = 256;
/// No progress for this long, and a bar says it has stalled.
const STALLED_AFTER: Duration = Duration::from_secs(3);
/// Rows at most that the echo of one typed line takes.
const MAX_ECHO_ROWS: usize = 4;

/// What the first Ctrl-C says while a file moves.
const TRANSFER_RUNNING: &str = "A transfer is running: Ctrl-C again to leave; it resumes next time";

/// What the input line asks after the peer presented another certificate.
const REPIN_QUESTION: &str = "Enter the peer's fingerprint again: ";

/// Whether the terminal is in raw mode, so that every way out restores it.
static RAW: AtomicBool = AtomicBool::new(false);

/// What the terminal thread reacts to.
enum Msg {
    Key(term::Event),
    Core(Box<Event>),
    /// The core's events ended: draw the last frame and give the terminal back.
    CoreClosed,
    /// The question the input line asks; empty for none.
    Prompt(String),
    /// The session runs: a re-entered fingerprint replaces `pin`, and the terminal's
    /// own commands (a resolved `/cancel`) go to `commands`.
    Session {
        pin: Pin,
        /// Our own fingerprint, for the safety number after a new pin.
        own: Fingerprint,
        commands: mpsc::Sender<Command>,
    },
    /// A bar drew a new frame.
    Redraw,
}

/// The interactive front end, seen from the rest of the program.
pub struct Interactive {
    messages: std_mpsc::Sender<Msg>,
    finished: Option<oneshot::Receiver<()>>,
}

/// What to show for a line this side typed: `alice> text`.
#[derive(Clone)]
struct Me {
    name: String,
}

impl Interactive {
    /// Takes over the terminal. Lines typed and submitted arrive on the returned
    /// channel, which closes on Ctrl-D at an empty line (leaving).
    pub fn start(own_name: &str, look: Look) -> io::Result<(Interactive, mpsc::Receiver<String>)> {
        crossterm::terminal::enable_raw_mode()?;
        RAW.store(true, Ordering::SeqCst);
        let _ = platform::write_stdout(b"\x1b[?2004h");
        let (messages, inbox) = std_mpsc::channel();
        let (lines, lines_rx) = mpsc::channel(super::LINES_AHEAD);
        let (finished, finished_rx) = oneshot::channel();
        let keys = messages.clone();
        std::thread::Builder::new()
            .name("chat-keys".into())
            .spawn(move || {
                while let Ok(event) = term::read() {
                    if keys.send(Msg::Key(event)).is_err() {
                        return;
                    }
                }
            })?;
        let me = Me {
            name: for_terminal(own_name).into_owned(),
        };
        let redraws = messages.clone();
        std::thread::Builder::new()
            .name("chat-terminal".into())
            .spawn(move || {
                let mut screen = Screen::new(me, look, lines, redraws);
                screen.run(&inbox);
                restore();
                let _ = finished.send(());
            })?;
        Ok((
            Interactive {
                messages,
                finished: Some(finished_rx),
            },
            lines_rx,
        ))
    }

    /// Asks `question` on the input line; the answer arrives as a typed line.
    pub fn ask(&self, question: &str) {
        let _ = self.messages.send(Msg::Prompt(question.to_owned()));
    }

    /// Prints a line above the input line, as a status line.
    pub fn note(&self, text: &str) {
        let _ = self
            .messages
            .send(Msg::Core(Box::new(Event::Note { text: text.into() })));
    }

    /// Shows the core's events from now on. Commands that the terminal itself
    /// decides on (quit, because standard output is gone) go to `quit`. The
    /// returned receiver fires once the events ended and the terminal is restored.
    pub fn attach(
        &mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        quit: mpsc::Sender<Command>,
        pin: Pin,
        own: Fingerprint,
    ) -> io::Result<oneshot::Receiver<()>> {
        let messages = self.messages.clone();
        let _ = messages.send(Msg::Prompt(String::new()));
        let _ = messages.send(Msg::Session {
            pin,
            own,
            commands: quit.clone(),
        });
        std::thread::Builder::new()
            .name("chat-events".into())
            .spawn(move || {
                while let Some(event) = events.blocking_recv() {
                    if messages.send(Msg::Core(Box::new(event))).is_err() {
                        let _ = quit.blocking_send(Command::Quit);
                        return;
                    }
                }
                let _ = messages.send(Msg::CoreClosed);
            })?;
        Ok(self.finished.take().expect("attached once"))
    }

    /// Ends the front end without a session (an error before it began).
    pub async fn close(self) {
        let _ = self.messages.send(Msg::CoreClosed);
        if let Some(finished) = self.finished {
            let _ = tokio::time::timeout(Duration::from_secs(2), finished).await;
        }
        restore();
    }
}

/// Gives the terminal back as it was: cooked mode, no bracketed paste, the cursor
/// on a fresh row, and nothing typed left over for the shell. Safe to call from
/// any thread, any number of times, including on the way out of a panic.
pub fn restore() {
    if RAW.swap(false, Ordering::SeqCst) {
        let _ = platform::write_stdout(b"\x1b[?2004l\x1b[?25h");
        platform::discard_typed_input();
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// A progress bar of one transfer, drawn by indicatif into a row of ours.
struct Bar {
    bar: ProgressBar,
    row: Arc<Mutex<String>>,
    /// This run of its bytes, for its speed and the summary line.
    run: Run,
    last_progress: Instant,
    /// Whether bytes should be moving now: not while hashing, queued or verifying.
    moving: bool,
    stalled: bool,
    /// For a folder, how many of its files are through: `, 12/40 files`.
    files: String,
}

/// The rows indicatif draws for one bar: it writes into a buffer, and a flush makes
/// the buffer the bar's row and asks the terminal thread to draw.
#[derive(Debug)]
struct BarRow {
    row: Arc<Mutex<String>>,
    drawing: Mutex<String>,
    columns: Arc<std::sync::atomic::AtomicU16>,
    redraw: Mutex<std_mpsc::Sender<Msg>>,
}

impl TermLike for BarRow {
    fn width(&self) -> u16 {
        self.columns.load(Ordering::Relaxed).saturating_sub(1)
    }
    fn move_cursor_up(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write_str(s)
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.drawing.lock().expect("bar row poisoned").push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> io::Result<()> {
        self.drawing.lock().expect("bar row poisoned").clear();
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        let drawn = self
            .drawing
            .lock()
            .expect("bar row poisoned")
            .trim_end()
            .to_owned();
        *self.row.lock().expect("bar row poisoned") = drawn;
        let _ = self
            .redraw
            .lock()
            .expect("bar row poisoned")
            .send(Msg::Redraw);
        Ok(())
    }
}

/// What the terminal shows and how to draw it again.
struct Screen {
    /// Rows of the terminal, as of the last resize.
    height: usize,
    me: Me,
    verbose: bool,
    progress: bool,
    timestamps: bool,
    colour: bool,
    editor: Editor,
    prompt: Option<String>,
    lines: Option<mpsc::Sender<String>>,
    redraws: std_mpsc::Sender<Msg>,
    columns: Arc<std::sync::atomic::AtomicU16>,
    bars: HashMap<(bool, u64), Bar>,
    /// Bars in the order they appeared.
    bar_order: Vec<(bool, u64)>,
    /// New lines to print above the live rows in the next frame.
    pending: Vec<Printed>,
    /// The live rows the last frame drew, for the next one to erase.
    drawn: Drawn,
    peer: Option<String>,
    /// The session's pin, once it runs.
    pin: Option<Pin>,
    commands: Option<mpsc::Sender<Command>>,
    own: Option<Fingerprint>,
    transfers: TransferTable,
    status: StatusBoard,
    /// Whether the input line asks for the peer's fingerprint again.
    asking_for_pin: bool,
    /// The rejection repeating, counted on a live row.
    repeats: Repeats,
    /// The two fingerprints last compared on the screen.
    compared: Option<PinMismatch>,
    /// Ctrl-C said that a transfer is running; the next one leaves.
    warned_of_transfers: bool,
    output_open: bool,
    leaving: bool,
}

impl Screen {
    fn new(
        me: Me,
        look: Look,
        lines: mpsc::Sender<String>,
        redraws: std_mpsc::Sender<Msg>,
    ) -> Self {
        let (columns, height) = terminal_size();
        Screen {
            height,
            me,
            verbose: look.verbose,
            progress: look.progress,
            timestamps: look.timestamps,
            colour: std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()),
            editor: Editor::default(),
            prompt: None,
            lines: Some(lines),
            redraws,
            columns: Arc::new(columns.into()),
            bars: HashMap::new(),
            bar_order: Vec::new(),
            pending: Vec::new(),
            drawn: Drawn::default(),
            peer: None,
            pin: None,
            commands: None,
            own: None,
            transfers: TransferTable::default(),
            status: StatusBoard::default(),
            asking_for_pin: false,
            repeats: Repeats::default(),
            compared: None,
            warned_of_transfers: false,
            output_open: true,
            leaving: false,
        }
    }

    fn run(&mut self, inbox: &std_mpsc::Receiver<Msg>) {
        self.draw();
        let mut next_stall_check = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            if now >= next_stall_check {
                self.check_stalls();
                next_stall_check = now + TICK;
            }
            let msg = match inbox.recv_timeout(next_stall_check.saturating_duration_since(now)) {
                Ok(msg) => msg,
                Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // What is already waiting is taken in before one redraw: a folder's
            // files end in bursts, a paste arrives as many keys.
            let waiting = std::iter::from_fn(|| inbox.try_recv().ok()).take(MAX_MESSAGES_PER_DRAW);
            if !std::iter::once(msg)
                .chain(waiting)
                .all(|msg| self.take(msg))
            {
                break;
            }
            if !self.draw() {
                self.output_open = false;
            }
        }
        self.bars.clear();
        self.bar_order.clear();
        self.leaving = true;
        self.draw_final();
    }

    fn columns(&self) -> usize {
        usize::from(self.columns.load(Ordering::Relaxed)).max(10)
    }

    fn key(&mut self, event: term::Event) {
        match event {
            term::Event::Key(key) if key.kind != KeyEventKind::Release => self.press(key),
            term::Event::Paste(text) if !self.leaving => {
                self.editor.apply(Edit::Paste(text));
            }
            // The frame drawn after it erases and draws the live rows at the new
            // size; what is printed above them stays as the terminal keeps it.
            term::Event::Resize(..) => {
                let (columns, height) = terminal_size();
                self.columns.store(columns, Ordering::Relaxed);
                self.height = height;
            }
            _ => {}
        }
    }

    fn press(&mut self, key: KeyEvent) {
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if control && key.code == KeyCode::Char('c') {
            if self.pin.is_none() {
                restore();
                std::process::exit(130);
            }
            // Leaving stops a transfer half way: asked once, and the next Ctrl-C
            // (with no other key between) leaves.
            if !self.leaving && !self.warned_of_transfers && self.transfers.any_running() {
                self.warned_of_transfers = true;
                self.push(Paint::Problem, TRANSFER_RUNNING);
                return;
            }
            platform::interrupt_self();
            return;
        }
        self.warned_of_transfers = false;
        if self.leaving {
            return;
        }
        let edit = match key.code {
            KeyCode::Char('d') if control && self.editor.is_empty() => {
                self.leave();
                return;
            }
            KeyCode::Char('d') if control => Edit::DeleteUnder,
            KeyCode::Char('a') if control => Edit::Start,
            KeyCode::Char('e') if control => Edit::End,
            KeyCode::Char('w') if control => Edit::DeleteWordBefore,
            KeyCode::Char('u') if control => Edit::DeleteToStart,
            KeyCode::Char('k') if control => Edit::DeleteToEnd,
            KeyCode::Char('b') if control => Edit::Left,
            KeyCode::Char('f') if control => Edit::Right,
            KeyCode::Char('p') if control => Edit::Older,
            KeyCode::Char('n') if control => Edit::Newer,
            KeyCode::Char('b') if alt => Edit::WordLeft,
            KeyCode::Char('f') if alt => Edit::WordRight,
            KeyCode::Char(_) if control || alt => return,
            KeyCode::Char(c) => Edit::Insert(c),
            KeyCode::Enter => Edit::Submit,
            KeyCode::Backspace => Edit::DeleteBefore,
            KeyCode::Delete => Edit::DeleteUnder,
            KeyCode::Left if control || alt => Edit::WordLeft,
            KeyCode::Right if control || alt => Edit::WordRight,
            KeyCode::Left => Edit::Left,
            KeyCode::Right => Edit::Right,
            KeyCode::Home => Edit::Start,
            KeyCode::End => Edit::End,
            KeyCode::Up => Edit::Older,
            KeyCode::Down => Edit::Newer,
            KeyCode::Tab => {
                self.complete();
                return;
            }
            _ => return,
        };
        if let Some(line) = self.editor.apply(edit) {
            self.submit(line);
        }
    }

    fn submit(&mut self, line: String) {
        if self.asking_for_pin {
            self.repin(&line);
            return;
        }
        match &self.prompt {
            Some(question) => {
                let answered = format!("{question}{}", for_terminal(&line));
                self.push(Paint::Dim, &answered);
            }
            None => self.echo(&line),
        }
        let refused = match &self.lines {
            Some(lines) => lines.try_send(line).is_err(),
            None => false,
        };
        if refused {
            self.push(
                Paint::Problem,
                "Not sent: too many typed lines are still waiting to go out",
            );
        }
    }

    /// Shows what this side typed, as the peer will see it (`alice> text`), or a
    /// command as it was typed.
    fn echo(&mut self, line: &str) {
        let mut text = for_terminal(line).into_owned();
        let longest = self.columns() * MAX_ECHO_ROWS;
        if text.chars().count() > longest {
            text = text.chars().take(longest).collect::<String>() + "…";
        }
        match input::parse_line(line) {
            Input::Nothing => {}
            Input::Say(_) => {
                let name = format!("{}{}>", self.stamp(), self.me.name);
                let shown = format!("{name} {text}");
                self.push_line(shown, name.len(), Paint::Own);
            }
            _ => self.push(Paint::Dim, &format!("> {text}")),
        }
    }

    /// An answer to "the fingerprint again": a valid one becomes the pin, and the
    /// attempts start over at once.
    fn repin(&mut self, answer: &str) {
        let question = self.prompt.clone().unwrap_or_default();
        self.push(Paint::Dim, &format!("{question}{}", for_terminal(answer)));
        match input::without_pasted_label(answer).parse::<Fingerprint>() {
            Ok(fingerprint) => {
                if let Some(pin) = &self.pin {
                    pin.replace(fingerprint);
                }
                self.asking_for_pin = false;
                self.prompt = None;
                self.repeats.end();
                self.push(Paint::Status, "Trying again with the new fingerprint");
                if let Some(own) = self.own {
                    self.push(Paint::Status, &lines::safety_line(&own, &fingerprint));
                }
            }
            Err(err) => self.push(Paint::Problem, &format!("{err}; try again")),
        }
    }

    fn leave(&mut self) {
        self.leaving = true;
        self.lines = None;
        self.push(
            Paint::Dim,
            "Leaving: delivering what is queued, then closing",
        );
    }

    fn complete(&mut self) {
        let before = self.editor.before_cursor();
        if let Some(completion) = complete::transfer_argument(&before) {
            self.editor
                .replace_before_cursor(completion.from, &completion.replacement);
            if completion.choices.len() > 1 {
                let choices = completion.choices.join("  ");
                self.push(Paint::Dim, &choices);
            }
        }
    }

    /// Takes in one message; false once the core has closed.
    fn take(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Key(event) => self.key(event),
            Msg::Core(event) => self.core(*event),
            Msg::Prompt(question) => {
                self.prompt = (!question.is_empty()).then_some(question);
            }
            Msg::Session { pin, own, commands } => {
                self.pin = Some(pin);
                self.own = Some(own);
                self.commands = Some(commands);
            }
            Msg::Redraw => {}
            Msg::CoreClosed => return false,
        }
        true
    }

    fn core(&mut self, event: Event) {
        self.transfers.observe(&event);
        self.status.observe(&event);
        match &event {
            Event::StatusRequest => {
                for line in self.status.report() {
                    self.push(Paint::Status, &line);
                }
                return;
            }
            Event::ListTransfers => {
                for line in self.transfers.listing() {
                    self.push(Paint::Status, &line);
                }
                return;
            }
            Event::CancelRequest { transfer, keep } => {
                match self.transfers.resolve(*transfer) {
                    Ok(transfer) => {
                        let cancel = Command::Cancel {
                            transfer,
                            keep: *keep,
                        };
                        if let Some(commands) = &self.commands {
                            let _ = commands.try_send(cancel);
                        }
                    }
                    Err(why) => self.push(Paint::Problem, &why),
                }
                return;
            }
            Event::Message { from, text, shown } => {
                if !self.output_open {
                    return;
                }
                let name = format!("{}{}", self.stamp(), for_terminal(from));
                let line = format!("{name}: {}", for_terminal(text));
                self.push_line(line, name.len() + 1, Paint::Peer);
                if self.draw() {
                    shown.written();
                } else {
                    self.output_open = false;
                }
                return;
            }
            Event::Connected { peer, .. } => {
                self.peer = Some(for_terminal(peer).into_owned());
                self.repeats.end();
            }
            Event::WrongPin { target, mismatch } => {
                if self.pin.is_some() {
                    self.asking_for_pin = true;
                    self.prompt = Some(REPIN_QUESTION.into());
                }
                if self.compared.replace(mismatch.clone()).as_ref() == Some(mismatch) {
                    let text = format!(
                        "The peer at {target} is not the one whose fingerprint was given: \
                         it presented the certificate compared above"
                    );
                    self.push(Paint::Problem, &text);
                    return;
                }
            }
            Event::Rejected {
                addr,
                reason,
                mismatch,
            } => {
                self.rejected(*addr, reason, mismatch.as_ref());
                return;
            }
            Event::RejectedMore { count, .. } if self.repeats.untold(*count) => return,
            Event::PeerLeft => {
                let peer = self.peer.clone().unwrap_or_else(|| "The peer".into());
                self.push(Paint::Status, &format!("{peer} left"));
                return;
            }
            _ => {}
        }
        let summary = self.track_bars(&event);
        for line in lines::describe(&event, self.verbose) {
            let paint = match line.tone {
                Tone::Peer => Paint::Peer,
                Tone::Status => Paint::Status,
                Tone::Problem => Paint::Problem,
                Tone::Detail => Paint::Dim,
            };
            match &summary {
                Some(summary) => self.push(paint, &format!("{} ({summary})", line.text)),
                None => self.push(paint, &line.text),
            }
        }
    }

    /// A rejected connection: the first of its kind on lines of its own, with the
    /// fingerprints compared unless the same comparison was just shown; the same
    /// again only counted, on a live row.
    fn rejected(
        &mut self,
        addr: std::net::SocketAddr,
        reason: &str,
        mismatch: Option<&PinMismatch>,
    ) {
        if self.repeats.rejected(addr, reason) == Seen::Again {
            return;
        }
        let from = format!("Rejected connection from {addr}");
        match mismatch {
            Some(mismatch) if self.compared.as_ref() == Some(mismatch) => self.push(
                Paint::Problem,
                &format!("{from}: the certificate compared above, not the pinned one"),
            ),
            Some(mismatch) => {
                self.push(
                    Paint::Problem,
                    &format!("{from}: it presented another certificate than the pinned one:"),
                );
                for row in lines::compare_fingerprints(&mismatch.expected, &mismatch.presented) {
                    self.push(Paint::Problem, &row);
                }
                self.compared = Some(mismatch.clone());
            }
            None => self.push(Paint::Problem, &format!("{from}: {}", for_terminal(reason))),
        }
    }

    /// Starts, moves and ends bars; for a finished transfer, the summary of how
    /// long it took.
    fn track_bars(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::TransferQueued { id, name, size } => {
                self.add_bar(
                    (false, *id),
                    *size,
                    &format!("hashing {}", for_terminal(name)),
                    0,
                );
            }
            Event::TransferIncoming {
                id,
                name,
                size,
                run_start,
                ..
            } => {
                self.add_bar(
                    (true, *id),
                    *size,
                    &format!("receiving {}", for_terminal(name)),
                    *run_start,
                );
            }
            Event::TransferProgress {
                id,
                phase,
                done,
                files,
                run_start,
                ..
            } => {
                let receiving = *phase == Phase::Receiving;
                if let Some(bar) = self.bars.get_mut(&(receiving, *id)) {
                    let now = Instant::now();
                    let sending_starts =
                        *phase == Phase::Sending && bar.bar.prefix().starts_with("hashing");
                    if sending_starts {
                        bar.bar
                            .set_prefix(bar.bar.prefix().replacen("hashing", "sending", 1));
                        bar.bar.reset();
                    }
                    // Its speed counts from what this report shows, not from the
                    // bar's 0: the bytes before it moved in a time not seen.
                    if sending_starts || (*phase != Phase::Hashing && *run_start != bar.run.start())
                    {
                        bar.run = Run::new(*run_start, *done, now);
                        bar.bar.set_style(bar_style(bar.stalled, bar.run));
                    }
                    bar.last_progress = now;
                    bar.moving = *phase != Phase::Hashing
                        && bar.bar.length().is_some_and(|total| *done < total);
                    if bar.stalled {
                        bar.stalled = false;
                        bar.bar.set_style(bar_style(false, bar.run));
                    }
                    if let Some(files) = files {
                        bar.files = lines::files_done(files);
                    }
                    bar.bar.set_message(bar.files.clone());
                    bar.bar.set_position(*done);
                }
            }
            Event::TransferSaved { id, .. } => return self.end_bar((true, *id), true),
            Event::TransferDelivered { id, .. } => return self.end_bar((false, *id), true),
            // Nothing moved: no rate to report.
            Event::TransferAlreadyThere { id, .. } => {
                self.end_bar((false, *id), false);
            }
            Event::TransferInterrupted { id, receiving, .. }
            | Event::TransferCancelled { id, receiving, .. }
            | Event::TransferFailed { id, receiving, .. } => {
                self.end_bar((*receiving, *id), false);
            }
            _ => {}
        }
        None
    }

    /// A bar for `size` bytes, of which an earlier run moved `run_start`.
    fn add_bar(&mut self, key: (bool, u64), size: u64, prefix: &str, run_start: u64) {
        let row = Arc::new(Mutex::new(String::new()));
        let target = BarRow {
            row: row.clone(),
            drawing: Mutex::new(String::new()),
            columns: self.columns.clone(),
            redraw: Mutex::new(self.redraws.clone()),
        };
        let now = Instant::now();
        let run = Run::new(run_start, run_start, now);
        let bar = ProgressBar::with_draw_target(
            Some(size),
            ProgressDrawTarget::term_like_with_hz(Box::new(target), 10),
        )
        .with_style(bar_style(false, run))
        .with_prefix(prefix.to_owned())
        .with_position(run_start);
        bar.tick();
        self.bars.insert(
            key,
            Bar {
                bar,
                row,
                run,
                last_progress: now,
                moving: key.0,
                stalled: false,
                files: String::new(),
            },
        );
        self.bar_order.push(key);
    }

    fn end_bar(&mut self, key: (bool, u64), done: bool) -> Option<String> {
        self.bar_order.retain(|k| *k != key);
        let bar = self.bars.remove(&key)?;
        bar.bar.finish_and_clear();
        if !done {
            return None;
        }
        let size = bar.bar.length().unwrap_or(0);
        Some(bar.run.summary(size, Instant::now()))
    }

    fn check_stalls(&mut self) {
        let mut changed = false;
        for bar in self.bars.values_mut() {
            let quiet = bar.last_progress.elapsed();
            if bar.moving && quiet >= STALLED_AFTER {
                if !bar.stalled {
                    bar.stalled = true;
                    bar.bar.set_style(bar_style(true, bar.run));
                }
                bar.bar
                    .set_message(format!("{}, stalled for {} s", bar.files, quiet.as_secs()));
                changed = true;
            }
        }
        if changed {
            self.draw();
        }
    }

    /// `[HH:MM] ` with `--timestamps`, else nothing.
    fn stamp(&self) -> String {
        if self.timestamps {
            lines::timestamp()
        } else {
            String::new()
        }
    }

    /// Queues a status line, or each line of a text of several (`/help`) as its own,
    /// as `/transfers` does with its rows: in raw mode a bare line feed would start
    /// the next line where the last one ended, and the wrapping would run across it.
    fn push(&mut self, paint: Paint, text: &str) {
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line = format!("{}{line}", self.stamp());
            self.push_line(line, 0, paint);
        }
    }

    /// Queues a line to print above the live rows, wrapped when it is drawn.
    fn push_line(&mut self, text: String, head: usize, paint: Paint) {
        self.pending.push(Printed { text, head, paint });
    }

    /// The rows `line` takes at `columns`, coloured: the first `head` bytes of a
    /// name line (peer or own), every row of any other. A status line shows each
    /// SHA-256 in its short grouped form, which keeps it within 80 columns, and
    /// continues on an indented row: the `↳` marker is the peer's alone.
    fn rows_of(&self, line: &Printed, columns: usize) -> Vec<String> {
        let rows = match line.paint {
            Paint::Peer | Paint::Own => wrap_marked(&line.text, columns),
            Paint::Status | Paint::Problem | Paint::Dim => {
                let text = match line.paint {
                    Paint::Dim => line.text.clone(),
                    _ => shorten_digests(&line.text),
                };
                let indent = " ".repeat(width::width(lines::CONTINUATION));
                (wrap_marked(&text, columns).into_iter())
                    .map(|row| match row.strip_prefix(lines::CONTINUATION) {
                        Some(rest) => format!("{indent}{rest}"),
                        None => row,
                    })
                    .collect()
            }
        };
        (rows.into_iter().enumerate())
            .map(|(i, row)| match line.paint {
                Paint::Peer | Paint::Own if i == 0 && self.colour => {
                    let (name, rest) = row.split_at(line.head.min(row.len()));
                    format!("{}{name}\x1b[0m{rest}", line.paint.code())
                }
                Paint::Peer | Paint::Own => row,
                _ if self.colour => format!("{}{row}\x1b[0m", line.paint.code()),
                _ => row,
            })
            .collect()
    }

    /// Draws one frame; false if standard output could not be written.
    fn draw(&mut self) -> bool {
        let mut frame = String::from("\x1b[?2026h");
        self.erase_live_and_print_pending(&mut frame);
        let live = self.live_part();
        self.drawn = Drawn {
            widths: live.widths.clone(),
            cursor: live.cursor,
            columns: self.columns(),
        };
        for row in &live.rows {
            frame.push_str(row);
            frame.push_str("\r\n");
        }
        // The terminal itself keeps where the cursor goes (DECSC, DECRC): a column
        // counted here may be wider than the terminal draws.
        frame.push_str(&live.input_before);
        frame.push_str("\x1b7");
        frame.push_str(&live.input_after);
        frame.push_str("\x1b8");
        frame.push_str("\x1b[?2026l");
        platform::write_stdout(frame.as_bytes()).is_ok()
    }

    /// The last frame: whatever is pending, and the live rows gone.
    fn draw_final(&mut self) {
        let mut frame = String::new();
        self.erase_live_and_print_pending(&mut frame);
        let _ = platform::write_stdout(frame.as_bytes());
    }

    /// Moves up over the live rows, erases to the end of the screen, and prints the
    /// lines waiting to be printed, wrapped at the terminal's width now: it is asked
    /// for every frame, as a window may have changed size before chat hears of it.
    fn erase_live_and_print_pending(&mut self, frame: &mut String) {
        if let Some(columns) = platform::stdout_columns().and_then(|c| u16::try_from(c).ok()) {
            self.columns.store(columns, Ordering::Relaxed);
        }
        let columns = self.columns();
        frame.push('\r');
        let up = self.drawn.rows_above_cursor(columns);
        if up > 0 {
            frame.push_str(&format!("\x1b[{up}A"));
        }
        frame.push_str("\x1b[J");
        for line in std::mem::take(&mut self.pending) {
            for row in self.rows_of(&line, columns) {
                frame.push_str(&row);
                frame.push_str("\r\n");
            }
        }
        self.drawn = Drawn::default();
    }

    fn live_part(&self) -> Live {
        let columns = self.columns();
        // The bars, the input line and one row of messages must fit, or rows would
        // scroll away on every frame.
        let repeated = self.repeats.row();
        let room = (self
            .height
            .saturating_sub(2 + usize::from(repeated.is_some())))
        .max(1);
        let shown_bars = if self.progress {
            &self.bar_order[..]
        } else {
            &[]
        };
        let (shown_bars, more) = if shown_bars.len() > room {
            (&shown_bars[..room - 1], shown_bars.len() - (room - 1))
        } else {
            (shown_bars, 0)
        };
        let mut rows: Vec<String> = (shown_bars.iter())
            .filter_map(|key| self.bars.get(key))
            .map(|bar| {
                let row = bar.row.lock().expect("bar row poisoned");
                width::truncate(&row, columns - 1).to_owned()
            })
            .collect();
        let bar_rows = rows.len();
        if let Some(repeated) = repeated {
            rows.push(width::truncate(&repeated, columns - 1).to_owned());
        }
        if more > 0 {
            let more = format!("… and {more} more transfers (/transfers lists them)");
            rows.push(width::truncate(&more, columns - 1).to_owned());
        }
        let widths = rows.iter().map(|row| width::width(row)).collect();
        if self.colour {
            for row in &mut rows[..bar_rows] {
                *row = format!("\x1b[2m{row}\x1b[0m");
            }
        }
        if self.leaving {
            return Live {
                rows,
                widths,
                input_before: String::new(),
                input_after: String::new(),
                cursor: 0,
            };
        }
        let prompt = match &self.prompt {
            Some(question) => question.clone(),
            None => format!("{}> ", self.me.name),
        };
        let view = self.editor.view(&prompt, columns);
        let input_before = if self.colour {
            format!("\x1b[1m{}\x1b[0m{}", view.prompt, view.before)
        } else {
            view.prompt + &view.before
        };
        Live {
            rows,
            widths,
            input_before,
            input_after: view.after,
            cursor: view.cursor,
        }
    }
}

/// A line to print above the live rows.
struct Printed {
    text: String,
    /// Bytes of the name at its start, for a peer's or our own line.
    head: usize,
    paint: Paint,
}

/// The rows below the messages: bars, then the input line.
struct Live {
    rows: Vec<String>,
    /// The columns each of `rows` takes, at most.
    widths: Vec<usize>,
    /// The input line up to the cursor, prompt included, and from the cursor on.
    input_before: String,
    input_after: String,
    /// The cursor's column, at most.
    cursor: usize,
}

/// The live rows a frame drew, as the next frame must erase them.
#[derive(Debug, Default)]
struct Drawn {
    /// The columns each row above the input line takes, at most.
    widths: Vec<usize>,
    /// The cursor's column on the input line, at most.
    cursor: usize,
    /// The terminal's width then.
    columns: usize,
}

impl Drawn {
    /// How far above the cursor the live rows start, on a terminal now `columns`
    /// wide. A narrower terminal has broken each row wider than itself into several,
    /// the input line too, if it reflows its rows as tmux, VTE and most others do.
    /// One that does not (xterm) has cut them instead; there the rows counted in
    /// excess are printed lines, which the frame then erases: less harm than
    /// leaving pieces of old bars in every other terminal.
    fn rows_above_cursor(&self, columns: usize) -> usize {
        if columns >= self.columns {
            return self.widths.len();
        }
        let columns = columns.max(1);
        let rows = |width: &usize| width.div_ceil(columns).max(1);
        self.widths.iter().map(rows).sum::<usize>() + self.cursor / columns
    }
}

/// How a row is coloured.
#[derive(Clone, Copy)]
enum Paint {
    Peer,
    Own,
    Status,
    Problem,
    Dim,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Peer => "\x1b[1;32m",
            Paint::Own => "\x1b[1;36m",
            Paint::Status | Paint::Dim => "\x1b[2m",
            Paint::Problem => "\x1b[31m",
        }
    }
}

/// A bar's look; a stalled one shows no speed, `run` is what a moving one's counts.
fn bar_style(stalled: bool, run: Run) -> ProgressStyle {
    let template = if stalled {
        "{prefix} [{bar:20}] {bytes}/{total_bytes}{msg}"
    } else {
        "{prefix} [{bar:20}] {bytes}/{total_bytes}{msg}{speed}"
    };
    let style = ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ");
    rate::with_speed(style, run)
}

/// `text` with each SHA-256 in hex (64 digits standing alone) in the grouped
/// short form a person compares: `ec12 be32 5a77 19c0 …`. What is typed (a
/// fingerprint at a prompt) is shown as typed, and plain output keeps every digit.
fn shorten_digests(text: &str) -> String {
    const DIGITS: usize = 64;
    let mut shortened = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        let (before, from) = rest.split_at(start);
        let run = from
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(from.len());
        let (word, after) = from.split_at(run);
        let alone = !before.ends_with(|c: char| c.is_ascii_alphanumeric());
        shortened.push_str(before);
        if alone && word.len() == DIGITS && word.chars().all(|c| c.is_ascii_hexdigit()) {
            let groups: Vec<&str> = (0..4).map(|i| &word[i * 4..i * 4 + 4]).collect();
            shortened.push_str(&groups.join(" "));
            shortened.push_str(" …");
        } else {
            shortened.push_str(word);
        }
        rest = after;
    }
    shortened.push_str(rest);
    shortened
}

/// Columns and rows of the terminal (80×24 if it cannot tell).
fn terminal_size() -> (u16, usize) {
    crossterm::terminal::size().map_or((80, 24), |(columns, rows)| (columns, usize::from(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::event::Verified;

    /// A file of 3 GiB, of which an earlier run kept 1,600 MiB.
    const SIZE: u64 = 3 << 30;
    const KEPT: u64 = 1_600 << 20;
    const CHUNK: u64 = 64 << 10;

    fn screen() -> Screen {
        let look = Look {
            verbose: false,
            progress: true,
            timestamps: false,
        };
        let (lines, _) = mpsc::channel(1);
        let (redraws, _) = std_mpsc::channel();
        let me = Me {
            name: "alice".into(),
        };
        let mut screen = Screen::new(me, look, lines, redraws);
        screen.colour = false;
        // Wide enough that no line here wraps.
        screen.columns.store(300, Ordering::Relaxed);
        screen
    }

    fn progress(phase: Phase, done: u64, run_start: u64) -> Event {
        Event::TransferProgress {
            id: 1,
            phase,
            done,
            total: SIZE,
            files: None,
            run_start,
        }
    }

    fn incoming(run_start: u64) -> Event {
        Event::TransferIncoming {
            id: 1,
            name: "big.bin".into(),
            size: SIZE,
            from: "bob".into(),
            run_start,
        }
    }

    /// What the bar of `key` shows now.
    fn bar_row(screen: &Screen, key: (bool, u64)) -> String {
        let bar = &screen.bars[&key];
        bar.bar.force_draw();
        bar.row.lock().unwrap().clone()
    }

    #[test]
    fn a_resumed_send_shows_no_speed_for_the_bytes_an_earlier_run_moved() {
        let mut screen = screen();
        screen.core(Event::TransferQueued {
            id: 1,
            name: "big.bin".into(),
            size: SIZE,
        });
        screen.core(progress(Phase::Sending, KEPT + CHUNK, KEPT));
        let row = bar_row(&screen, (false, 1));
        assert!(row.starts_with("sending big.bin ["), "{row}");
        assert!(row.contains(" 1.56 GiB/3.00 GiB"), "{row}");
        assert!(
            !row.contains("/s") && !row.contains("ETA"),
            "a speed before any was measured: {row}"
        );
    }

    #[test]
    fn a_resumed_receive_starts_its_bar_at_the_bytes_kept() {
        let mut screen = screen();
        screen.core(incoming(KEPT));
        let row = bar_row(&screen, (true, 1));
        assert!(row.starts_with("receiving big.bin ["), "{row}");
        assert!(row.contains(" 1.56 GiB/3.00 GiB"), "{row}");
        assert!(
            !row.contains("/s"),
            "a speed before any was measured: {row}"
        );
    }

    #[test]
    fn the_closing_line_of_a_resumed_transfer_counts_only_this_run() {
        let mut screen = screen();
        screen.core(incoming(KEPT));
        screen.core(progress(Phase::Receiving, KEPT + CHUNK, KEPT));
        screen.core(progress(Phase::Receiving, SIZE, KEPT));
        screen.core(Event::TransferSaved {
            id: 1,
            path: "./big.bin".into(),
            verified: Verified::Sha256("00".repeat(32)),
        });
        let printed = printed(&screen);
        let saved = (printed.iter())
            .find(|row| row.starts_with("Saved ./big.bin"))
            .unwrap_or_else(|| panic!("no closing line: {printed:#?}"));
        assert!(saved.contains(" (1.44 GiB of 3.00 GiB in "), "{saved}");
    }

    #[test]
    fn digests_are_shortened_where_they_stand_alone() {
        let digest = "ec12be325a7719c0".repeat(4);
        assert_eq!(
            shorten_digests(&format!("Saved ./a (verified, sha256 {digest})")),
            "Saved ./a (verified, sha256 ec12 be32 5a77 19c0 …)"
        );
        let longer = format!("{digest}0");
        assert_eq!(shorten_digests(&longer), longer);
        let inside = format!("x{digest}");
        assert_eq!(shorten_digests(&inside), inside);
        assert_eq!(shorten_digests("no digest, café 12"), "no digest, café 12");
    }

    /// The rows waiting to be printed above the live ones.
    fn printed(screen: &Screen) -> Vec<String> {
        (screen.pending.iter())
            .map(|line| line.text.clone())
            .collect()
    }
}
