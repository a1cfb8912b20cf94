//! The plain front end: lines as they are, bars on standard error when it is a
//! terminal, and no other escape sequences.

use std::collections::HashMap;
use std::io::{self, IsTerminal};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, oneshot};

use super::lines::{self, Tone, wrap_marked};
use super::rate::{self, Run};
use super::status::StatusBoard;
use super::transfers::TransferTable;
use super::{status, write_line};
use crate::config::Look;
use crate::platform;
use crate::session::event::{Command, Event, Phase};
use crate::ui::sanitize::for_terminal;

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
            let mut transfers = TransferTable::default();
            let mut status = StatusBoard::default();
            let mut output_open = true;
            while let Some(event) = events.blocking_recv() {
                transfers.observe(&event);
                status.observe(&event);
                match &event {
                    Event::StatusRequest => {
                        status.report().iter().for_each(|line| screen.status(line));
                        continue;
                    }
                    Event::ListTransfers => {
                        transfers
                            .listing()
                            .iter()
                            .for_each(|line| screen.status(line));
                        continue;
                    }
                    Event::CancelRequest { transfer, keep } => {
                        match transfers.resolve(*transfer) {
                            Ok(transfer) => {
                                let keep = *keep;
                                let _ = quit.blocking_send(Command::Cancel { transfer, keep });
                            }
                            Err(why) => screen.status(&why),
                        }
                        continue;
                    }
                    _ => {}
                }
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

/// The terminal: prints lines above any progress bars, and owns the bars.
///
/// Bars draw on standard error and hide themselves when it is not a terminal.
/// Lines are printed inside `suspend`, never with `MultiProgress::println`, which
/// drops lines while the bars are hidden.
#[derive(Clone)]
pub struct Screen {
    bars: MultiProgress,
    verbose: bool,
    timestamps: bool,
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
    pub fn new(look: Look) -> Self {
        let target = if look.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Screen {
            bars: MultiProgress::with_draw_target(target),
            verbose: look.verbose,
            timestamps: look.timestamps,
            stdout_is_terminal: io::stdout().is_terminal(),
        }
    }

    /// Prints a status line on standard error.
    pub fn status(&self, line: &str) {
        self.bars.suspend(|| status(line));
    }

    /// Shows one event from the core. Fails only if a peer's line could not be
    /// written to standard output; it must then not be acknowledged.
    pub fn show(&self, event: &Event, bars: &mut Bars) -> io::Result<()> {
        match event {
            Event::TransferQueued { id, name, size } => {
                let bar = self.bar(*size, &format!("hashing {}", for_terminal(name)), 0);
                bars.by_transfer.insert((false, *id), bar);
            }
            Event::TransferIncoming {
                id,
                name,
                size,
                run_start,
                ..
            } => {
                let prefix = format!("receiving {}", for_terminal(name));
                let bar = self.bar(*size, &prefix, *run_start);
                bars.by_transfer.insert((true, *id), bar);
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
                if let Some(bar) = bars.by_transfer.get(&(receiving, *id)) {
                    if *phase == Phase::Sending && bar.prefix().starts_with("hashing") {
                        bar.set_prefix(bar.prefix().replacen("hashing", "sending", 1));
                        bar.reset();
                        // The speed counts from this report: the bytes before it
                        // moved in a time not seen, or in an earlier run.
                        bar.set_style(bar_style(Run::new(*run_start, *done, Instant::now())));
                    }
                    if let Some(files) = files {
                        bar.set_message(lines::files_done(files));
                    }
                    bar.set_position(*done);
                }
            }
            Event::TransferSaved { id, .. } => self.remove_bar(bars, (true, *id)),
            Event::TransferDelivered { id, .. } | Event::TransferAlreadyThere { id, .. } => {
                self.remove_bar(bars, (false, *id))
            }
            Event::TransferInterrupted { id, receiving, .. }
            | Event::TransferCancelled { id, receiving, .. }
            | Event::TransferFailed { id, receiving, .. } => {
                self.remove_bar(bars, (*receiving, *id))
            }
            _ => {}
        }
        for mut line in lines::describe(event, self.verbose) {
            if self.timestamps {
                line.text.insert_str(0, &lines::timestamp());
            }
            if line.tone != Tone::Peer {
                self.status(&line.text);
                continue;
            }
            let rows = match self.stdout_is_terminal.then(platform::stdout_columns) {
                Some(Some(columns)) => wrap_marked(&line.text, columns),
                _ => vec![line.text],
            };
            self.bars.suspend(|| {
                let mut out = io::stdout().lock();
                rows.iter().try_for_each(|row| write_line(&mut out, row))
            })?;
        }
        Ok(())
    }

    /// A bar for `size` bytes, of which an earlier run moved `run_start`.
    fn bar(&self, size: u64, prefix: &str, run_start: u64) -> ProgressBar {
        let run = Run::new(run_start, run_start, Instant::now());
        let bar = ProgressBar::new(size)
            .with_style(bar_style(run))
            .with_position(run_start);
        let bar = self.bars.add(bar);
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

/// A bar's look, its speed counted over `run`.
fn bar_style(run: Run) -> ProgressStyle {
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes}{msg}{speed}")
            .expect("valid template")
            .progress_chars("=> ");
    rate::with_speed(style, run)
}
