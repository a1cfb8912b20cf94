//! The two front ends and what they share. The interactive one runs when standard
//! input and output are both terminals: an input line that nothing overwrites, bars
//! between it and the messages. The plain one, for scripts, pipes and CI, prints
//! peer lines on standard output as `name: text` and status lines on standard error,
//! so that a script can read the conversation alone. Everything that came from the
//! network is passed through [`crate::sanitize::for_terminal`] first.

pub mod lines;
pub mod plain;

use std::io::{self, BufRead, IsTerminal, Write};

use tokio::sync::mpsc;

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
