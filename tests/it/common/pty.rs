//! `chat` in a pseudo-terminal, read through a terminal emulator: tests assert on
//! the screen a person would see, and every wait has a deadline.
//!
//! The emulator keeps a cleared screen in its scrollback, as tmux (its default
//! `scroll-on-clear`) and VTE terminals do, so that the scrollback a test reads is
//! the one such a terminal would hold.

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::{BIN, TIMEOUT};

/// What the emulator made of the output, and whether the output has ended.
struct Shared {
    parser: vt100::Parser,
    ended: bool,
}

/// A `chat` process on a terminal of its own.
pub struct Terminal {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    writer: Box<dyn Write + Send>,
    master: Box<dyn MasterPty + Send>,
    pub child: Box<dyn Child + Send + Sync>,
}

impl Terminal {
    /// Starts `chat ARGS` in `workdir` on a `columns`×`rows` terminal. `env` is
    /// added to a small fixed environment (`TERM=xterm-256color`, `HOME`).
    pub fn start(workdir: &Path, args: &[String], size: (u16, u16), env: &[(&str, &str)]) -> Self {
        Self::start_program(BIN, workdir, args, size, env)
    }

    /// Like [`Terminal::start`], then, once `chat` has exited, a shell on the same
    /// terminal reads for 2 s and prints whatever was left unread: `left:[…]`.
    pub fn start_before_a_shell(
        workdir: &Path,
        args: &[String],
        size: (u16, u16),
        env: &[(&str, &str)],
    ) -> Self {
        let script =
            r#""$0" "$@"; status=$?; read -r -t 2 left; echo "left:[$left] status:$status""#;
        let mut shell_args = vec!["-c".to_owned(), script.to_owned(), BIN.to_owned()];
        shell_args.extend_from_slice(args);
        Self::start_program("/bin/bash", workdir, &shell_args, size, env)
    }

    fn start_program(
        program: &str,
        workdir: &Path,
        args: &[String],
        size: (u16, u16),
        env: &[(&str, &str)],
    ) -> Self {
        let (columns, rows) = size;
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols: columns,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut command = CommandBuilder::new(program);
        command.args(args);
        command.cwd(workdir);
        command.env_clear();
        command.env("TERM", "xterm-256color");
        command.env("HOME", workdir);
        command.env("PATH", "/usr/bin:/bin");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = pty.slave.spawn_command(command).expect("start chat");
        // Only the child may hold the terminal's other end, or the output never ends.
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let writer = pty.master.take_writer().unwrap();
        let size = |n: u16| NonZeroU16::new(n).unwrap();
        let shared = Arc::new((
            Mutex::new(Shared {
                parser: vt100::Parser::new(size(rows), size(columns), 10_000),
                ended: false,
            }),
            Condvar::new(),
        ));
        let feeding = shared.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            let mut unfed = Vec::new();
            loop {
                let read = reader.read(&mut buffer).unwrap_or(0);
                let (lock, changed) = &*feeding;
                let mut shared = lock.lock().unwrap();
                if read == 0 {
                    shared.parser.process(&unfed);
                    shared.ended = true;
                    changed.notify_all();
                    return;
                }
                feed(&mut shared.parser, &mut unfed, &buffer[..read]);
                changed.notify_all();
            }
        });
        Terminal {
            shared,
            writer,
            master: pty.master,
            child,
        }
    }

    /// Types `keys` (one write, so an escape sequence stays whole).
    pub fn keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Types `line` and Enter.
    pub fn line(&mut self, line: &str) {
        self.keys(line);
        self.keys("\r");
    }

    /// Changes the terminal's size, as a person resizing the window.
    pub fn resize(&mut self, columns: u16, rows: u16) {
        {
            let mut shared = self.shared.0.lock().unwrap();
            let size = |n: u16| NonZeroU16::new(n).unwrap();
            shared
                .parser
                .screen_mut()
                .set_size(size(rows), size(columns));
        }
        self.master
            .resize(PtySize {
                rows,
                cols: columns,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
    }

    /// The visible screen, one string per row, trailing spaces removed.
    pub fn rows(&self) -> Vec<String> {
        let shared = self.shared.0.lock().unwrap();
        visible_rows(shared.parser.screen())
    }

    /// Waits until `ready` holds for the screen; panics showing the screen if it
    /// does not within the deadline.
    pub fn wait_for(&self, what: &str, mut ready: impl FnMut(&vt100::Screen) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        let (lock, changed) = &*self.shared;
        let mut shared = lock.lock().unwrap();
        loop {
            if ready(shared.parser.screen()) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out waiting for {what}; the screen:\n{}",
                    visible_rows(shared.parser.screen()).join("\n")
                );
            }
            shared = changed.wait_timeout(shared, deadline - now).unwrap().0;
        }
    }

    /// Waits until some visible row contains `text`; returns that row.
    pub fn wait_for_text(&self, text: &str) -> String {
        let mut found = String::new();
        self.wait_for(
            &format!("{text:?} on screen"),
            |screen| match visible_rows(screen)
                .into_iter()
                .find(|row| row.contains(text))
            {
                Some(row) => {
                    found = row;
                    true
                }
                None => false,
            },
        );
        found
    }

    /// The row the cursor is on.
    pub fn cursor_row(&self) -> String {
        let shared = self.shared.0.lock().unwrap();
        let screen = shared.parser.screen();
        let (row, _) = screen.cursor_position();
        visible_rows(screen).swap_remove(usize::from(row))
    }

    /// Every row printed so far, scrollback first, then the screen.
    pub fn history(&self) -> Vec<String> {
        let mut shared = self.shared.0.lock().unwrap();
        let screen = shared.parser.screen_mut();
        screen.set_scrollback(usize::MAX);
        let depth = screen.scrollback();
        let mut rows = Vec::new();
        for offset in (1..=depth).rev() {
            screen.set_scrollback(offset);
            rows.push(visible_rows(screen).swap_remove(0));
        }
        screen.set_scrollback(0);
        rows.extend(visible_rows(screen));
        rows
    }

    /// The screen as the emulator holds it, attributes and all.
    pub fn with_screen<T>(&self, look: impl FnOnce(&vt100::Screen) -> T) -> T {
        look(self.shared.0.lock().unwrap().parser.screen())
    }

    /// Waits for the process to exit; its status code.
    pub fn wait_exit(&mut self) -> u32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.exit_code();
            }
            assert!(
                Instant::now() < deadline,
                "chat did not exit; the screen:\n{}",
                self.rows().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Erases the whole screen (ED 2).
const CLEAR_SCREEN: &[u8] = b"\x1b[2J";

/// Passes `bytes` to the emulator, keeping the rows of every cleared screen in the
/// scrollback first. `unfed` holds the start of a clear split across two reads.
fn feed(parser: &mut vt100::Parser, unfed: &mut Vec<u8>, bytes: &[u8]) {
    unfed.extend_from_slice(bytes);
    while let Some(at) = (unfed.windows(CLEAR_SCREEN.len())).position(|w| w == CLEAR_SCREEN) {
        parser.process(&unfed[..at]);
        keep_screen_in_scrollback(parser);
        parser.process(CLEAR_SCREEN);
        unfed.drain(..at + CLEAR_SCREEN.len());
    }
    let kept = (1..CLEAR_SCREEN.len())
        .rev()
        .find(|&n| unfed.ends_with(&CLEAR_SCREEN[..n]))
        .unwrap_or(0);
    let fed = unfed.len() - kept;
    parser.process(&unfed[..fed]);
    unfed.drain(..fed);
}

/// Scrolls the screen's rows, down to the last one with text, into the scrollback,
/// and puts the cursor back where it was.
fn keep_screen_in_scrollback(parser: &mut vt100::Parser) {
    let screen = parser.screen();
    let (rows, _) = screen.size();
    let (row, column) = screen.cursor_position();
    let used = visible_rows(screen)
        .iter()
        .rposition(|text| !text.is_empty())
        .map_or(0, |last| last + 1);
    let mut scroll = format!("\x1b[{};1H", rows.get());
    scroll.push_str(&"\n".repeat(used));
    scroll.push_str(&format!("\x1b[{};{}H", row + 1, column + 1));
    parser.process(scroll.as_bytes());
}

fn visible_rows(screen: &vt100::Screen) -> Vec<String> {
    let (_, columns) = screen.size();
    screen
        .rows(0, columns.get())
        .map(|row| row.trim_end().to_owned())
        .collect()
}
