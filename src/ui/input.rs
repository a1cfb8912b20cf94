//! What a typed line means: a chat line or a command. Pure, so it is tested with strings.

use std::path::{Path, PathBuf};

use crate::frame::MAX_TEXT_LEN;
use crate::session::event::TransferId;

/// One line of user input, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Send this text.
    Say(String),
    /// `/quit`: close both directions and exit.
    Quit,
    /// `/help`: show the commands.
    Help,
    /// `transfer FILE...`: send one or more files.
    Transfer(TransferPaths),
    /// `/transfers`: list them.
    Transfers,
    /// `/status`.
    Status,
    /// `/cancel [ID] [keep]`: stop a transfer (the only one running if no ID).
    Cancel {
        transfer: Option<TransferId>,
        keep: bool,
    },
    /// Nothing to do (an empty line).
    Nothing,
    /// A line we refuse, with the reason.
    Invalid(String),
}

/// The files a `transfer` line names: the whole rest of the line as one name, as it
/// always was, or its words as several, whichever names files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferPaths {
    pub whole: PathBuf,
    /// The words read as a shell would, when there are two or more.
    pub words: Vec<PathBuf>,
}

impl TransferPaths {
    /// The files to send: the whole name when it exists or when none of the words
    /// does (then its error is the one to show), else every word.
    pub fn resolve(self, exists: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
        let words_name_files = self.words.iter().any(|word| exists(word));
        if self.words.is_empty() || exists(&self.whole) || !words_name_files {
            vec![self.whole]
        } else {
            self.words
        }
    }
}

/// The commands, as `/help` shows them.
pub const HELP: &str = "\
Commands:
  transfer FILE...
                 send one or more files; quote a name with spaces when sending several
  /transfers     list this session's transfers with their IDs (s1 sent, r1 received)
  /status        the connection (path, round trip) and how fast transfers move now
  /cancel [ID] [keep]
                 stop a transfer in either direction (the only one running if no ID);
                 for a file arriving here, 'keep' keeps what arrived so that it can resume
  /quit          close both connections and exit (Ctrl-C does the same)
  /say TEXT      send TEXT as it is, even if it starts with '/' or 'transfer '
  /help          show this list
Any other line is sent to the peer. At a terminal, Ctrl-D on an empty line delivers what is queued and leaves;
from a script, the end of input does the same and then waits for the peer to finish.";

/// Interprets one line, without its line ending. A file name may start with `~/`
/// for the home folder.
pub fn parse_line(line: &str) -> Input {
    parse_line_at_home(line, std::env::home_dir().as_deref())
}

/// [`parse_line`], with the home folder given.
pub fn parse_line_at_home(line: &str, home: Option<&Path>) -> Input {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Input::Nothing;
    }
    if let Some(rest) = line.strip_prefix("transfer ") {
        let raw = rest.trim();
        let file = path_argument(raw);
        if file.is_empty() {
            return Input::Invalid(TRANSFER_USAGE.into());
        }
        let words = match shell_words(raw) {
            Ok(words) if words.len() > 1 => words,
            _ => Vec::new(),
        };
        // A word expands `~` when it was typed as it reads, outside quotes.
        let typed_plain = |word: &str| raw.split_whitespace().any(|typed| typed == word);
        return Input::Transfer(TransferPaths {
            whole: expand_home(&file, file_is_unquoted(raw), home),
            words: words
                .iter()
                .map(|word| expand_home(word, typed_plain(word), home))
                .collect(),
        });
    }
    if trimmed == "transfer" {
        return Input::Invalid(TRANSFER_USAGE.into());
    }
    let text = if let Some(rest) = line.strip_prefix("/say ") {
        rest
    } else if let Some(command) = trimmed.strip_prefix('/') {
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        return match name {
            "quit" if rest.is_empty() => Input::Quit,
            "help" if rest.is_empty() => Input::Help,
            "transfers" if rest.is_empty() => Input::Transfers,
            "status" if rest.is_empty() => Input::Status,
            "cancel" => parse_cancel(rest),
            _ => Input::Invalid(format!(
                "unknown command /{command}; type /help for the list"
            )),
        };
    } else {
        line
    };
    if text.len() > MAX_TEXT_LEN {
        return Input::Invalid(format!(
            "line of {} bytes not sent: the limit is {MAX_TEXT_LEN}",
            text.len()
        ));
    }
    Input::Say(text.to_owned())
}

/// `/cancel`'s arguments: an optional transfer ID, then optionally `keep`.
fn parse_cancel(arguments: &str) -> Input {
    let words: Vec<&str> = arguments.split_whitespace().collect();
    let (transfer, keep) = match words.as_slice() {
        [] => (None, false),
        ["keep"] => (None, true),
        [id] => (Some(*id), false),
        [id, "keep"] => (Some(*id), true),
        _ => return Input::Invalid("usage: /cancel [ID] [keep]".into()),
    };
    match transfer.map(str::parse).transpose() {
        Ok(transfer) => Input::Cancel { transfer, keep },
        Err(reason) => Input::Invalid(reason),
    }
}

const TRANSFER_USAGE: &str = "usage: transfer FILE...";

/// Whether the name begins outside quotes (a quoted `~` is a plain character).
fn file_is_unquoted(raw: &str) -> bool {
    !raw.starts_with(['"', '\'', '\\'])
}

/// The one file a `transfer` line names. Without quotes or backslashes, the whole
/// rest of the line is the name, spaces and all, as it always was. With them, it is
/// read as a shell would: `'…'` literally, `"…"` with `\"` and `\\`, and `\x` as x,
/// if it reads as one word; otherwise (`Bob's notes.txt`) it is the name as typed.
pub fn path_argument(text: &str) -> String {
    if !text.contains(['"', '\'', '\\']) {
        return text.to_owned();
    }
    match shell_words(text).as_deref() {
        Ok([one]) => one.clone(),
        Ok([]) => String::new(),
        _ => text.to_owned(),
    }
}

/// Splits `text` into words as a shell does (quotes and backslashes, nothing
/// else). An unclosed quote is an error naming it.
pub fn shell_words(text: &str) -> Result<Vec<String>, char> {
    let (words, unclosed) = shell_words_so_far(text);
    match unclosed {
        Some(quote) => Err(quote),
        None => Ok(words),
    }
}

/// [`shell_words`] of a line still being typed: the words so far, and the quote
/// still open at the end, if any.
pub fn shell_words_so_far(text: &str) -> (Vec<String>, Option<char>) {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' | '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => {
                            words.push(word.take().unwrap_or_default());
                            return (words, Some(c));
                        }
                        Some(end) if end == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(escaped @ ('"' | '\\')) => current.push(escaped),
                            Some(other) => {
                                current.push('\\');
                                current.push(other);
                            }
                            None => current.push('\\'),
                        },
                        Some(inner) => current.push(inner),
                    }
                }
            }
            '\\' => {
                let current = word.get_or_insert_with(String::new);
                if let Some(escaped) = chars.next() {
                    current.push(escaped);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    (words, None)
}

/// `~` or `~/…` (typed outside quotes) in the home folder.
pub fn expand_home(file: &str, unquoted: bool, home: Option<&Path>) -> PathBuf {
    match (unquoted, home) {
        (true, Some(home)) if file == "~" => home.to_owned(),
        (true, Some(home)) => match file.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => PathBuf::from(file),
        },
        _ => PathBuf::from(file),
    }
}

/// `name` as [`path_argument`] reads it back: as it is when that is unambiguous,
/// with backslashes before spaces, quotes and backslashes otherwise.
pub fn quote_path(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted
}

/// An answer to a prompt without the label it was copied with: `Fingerprint: …`
/// and `Listening on port N` as `chat` prints them, and OpenSSL's
/// `sha256 Fingerprint=…`.
pub fn without_pasted_label(answer: &str) -> &str {
    let answer = answer.trim();
    for label in ["Fingerprint:", "sha256 Fingerprint=", "Listening on port "] {
        if let Some(rest) = answer
            .get(..label.len())
            .filter(|start| start.eq_ignore_ascii_case(label))
            .map(|_| &answer[label.len()..])
        {
            return rest.trim();
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one name a `transfer` line reads as.
    fn whole(input: Input) -> PathBuf {
        match input {
            Input::Transfer(paths) => paths.whole,
            other => panic!("not a transfer: {other:?}"),
        }
    }

    /// What a `transfer` line sends, where the files in `existing` exist.
    fn sends(line: &str, existing: &[&str]) -> Vec<PathBuf> {
        match parse_line_at_home(line, Some(Path::new("/home/al"))) {
            Input::Transfer(paths) => {
                paths.resolve(|path| existing.iter().any(|e| path == Path::new(e)))
            }
            other => panic!("not a transfer: {other:?}"),
        }
    }

    #[test]
    fn transfer_sends_several_files_when_the_words_name_them() {
        let paths = |names: &[&str]| names.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            sends("transfer a.txt b.txt", &["a.txt", "b.txt"]),
            paths(&["a.txt", "b.txt"])
        );
        assert_eq!(
            sends("transfer \"my notes.txt\" b.txt ~/c", &["b.txt"]),
            paths(&["my notes.txt", "b.txt", "/home/al/c"])
        );
        assert_eq!(sends("transfer '~/x' y", &["y"]), paths(&["~/x", "y"]));
        // One file whose name has spaces, as always.
        assert_eq!(
            sends("transfer a b.txt", &["a b.txt", "a"]),
            paths(&["a b.txt"])
        );
        // Nothing exists: the error is about the name as typed, once.
        assert_eq!(
            sends("transfer my holiday.txt", &[]),
            paths(&["my holiday.txt"])
        );
        // Some words exist: each is tried, and the missing ones are reported.
        assert_eq!(
            sends("transfer a.txt gone.txt", &["a.txt"]),
            paths(&["a.txt", "gone.txt"])
        );
        assert_eq!(
            sends("transfer Bob's notes.txt", &["notes.txt"]),
            paths(&["Bob's notes.txt"])
        );
    }

    #[test]
    fn plain_lines_are_sent_as_typed() {
        assert_eq!(
            parse_line("hello  there "),
            Input::Say("hello  there ".into())
        );
        assert_eq!(parse_line("a/b"), Input::Say("a/b".into()));
    }

    #[test]
    fn recognises_commands() {
        assert_eq!(parse_line("/quit"), Input::Quit);
        assert_eq!(parse_line("  /quit "), Input::Quit);
        assert_eq!(parse_line("/help"), Input::Help);
        assert!(matches!(parse_line("/nope"), Input::Invalid(_)));
    }

    #[test]
    fn transfer_takes_the_rest_of_the_line_as_the_path() {
        assert_eq!(
            whole(parse_line("transfer a b.txt")),
            PathBuf::from("a b.txt")
        );
        assert_eq!(
            whole(parse_line("transfer \"a b.txt\"")),
            PathBuf::from("a b.txt")
        );
        assert_eq!(whole(parse_line("transfer 'x'")), PathBuf::from("x"));
        assert_eq!(
            whole(parse_line("transfer /tmp/x")),
            PathBuf::from("/tmp/x")
        );
        assert!(matches!(parse_line("transfer"), Input::Invalid(_)));
        assert!(matches!(parse_line("transfer   "), Input::Invalid(_)));
        assert_eq!(
            parse_line("/say transfer x"),
            Input::Say("transfer x".into())
        );
        assert_eq!(
            parse_line("transferring"),
            Input::Say("transferring".into())
        );
    }

    #[test]
    fn transfer_reads_quotes_backslashes_and_the_home_folder_as_a_shell_does() {
        let home = Path::new("/home/al");
        let parse = |line| parse_line_at_home(line, Some(home));
        assert_eq!(
            whole(parse("transfer my\\ report.txt")),
            PathBuf::from("my report.txt")
        );
        assert_eq!(
            whole(parse("transfer ~/notes.txt")),
            PathBuf::from("/home/al/notes.txt")
        );
        assert_eq!(whole(parse("transfer ~")), PathBuf::from("/home/al"));
        assert_eq!(whole(parse("transfer '~/x'")), PathBuf::from("~/x"));
        assert_eq!(whole(parse("transfer ~bob/x")), PathBuf::from("~bob/x"));
        assert_eq!(
            whole(parse("transfer \"it's \\\"here\\\".txt\"")),
            PathBuf::from("it's \"here\".txt")
        );
        assert_eq!(whole(parse("transfer a\\\\b")), PathBuf::from("a\\b"));
        assert_eq!(
            whole(parse("transfer Bob's notes.txt")),
            PathBuf::from("Bob's notes.txt")
        );
        assert_eq!(whole(parse("transfer 'a' 'b'")), PathBuf::from("'a' 'b'"));
    }

    #[test]
    fn pasted_labels_are_taken_off_answers() {
        assert_eq!(without_pasted_label(" Fingerprint: ab cd "), "ab cd");
        assert_eq!(without_pasted_label("SHA256 Fingerprint=AB:CD"), "AB:CD");
        assert_eq!(without_pasted_label("Listening on port 7001"), "7001");
        assert_eq!(without_pasted_label("7001"), "7001");
        assert_eq!(without_pasted_label("Fingerprint"), "Fingerprint");
    }

    #[test]
    fn quoted_paths_read_back_as_themselves() {
        for name in [
            "plain.txt",
            "a b.txt",
            "it's",
            "back\\slash",
            "q\"uote",
            " lead",
        ] {
            let line = format!("transfer {}", quote_path(name));
            assert_eq!(
                whole(parse_line_at_home(&line, None)),
                PathBuf::from(name),
                "{line}"
            );
        }
    }

    #[test]
    fn cancel_takes_an_optional_id_and_keep() {
        let s1 = "s1".parse().ok();
        assert_eq!(parse_line("/transfers"), Input::Transfers);
        assert_eq!(
            parse_line("/cancel"),
            Input::Cancel {
                transfer: None,
                keep: false
            }
        );
        assert_eq!(
            parse_line("/cancel s1"),
            Input::Cancel {
                transfer: s1,
                keep: false
            }
        );
        assert_eq!(
            parse_line("/cancel keep"),
            Input::Cancel {
                transfer: None,
                keep: true
            }
        );
        assert_eq!(
            parse_line("/cancel r2 keep"),
            Input::Cancel {
                transfer: "r2".parse().ok(),
                keep: true
            }
        );
        assert!(matches!(parse_line("/cancel 2"), Input::Invalid(_)));
        assert!(matches!(
            parse_line("/cancel s1 keep now"),
            Input::Invalid(_)
        ));
        assert!(matches!(parse_line("/quit now"), Input::Invalid(_)));
    }

    #[test]
    fn say_sends_a_slash_line_verbatim() {
        assert_eq!(parse_line("/say /quit"), Input::Say("/quit".into()));
    }

    #[test]
    fn empty_and_oversized_lines() {
        assert_eq!(parse_line(""), Input::Nothing);
        assert_eq!(parse_line("   "), Input::Nothing);
        assert!(matches!(
            parse_line(&"x".repeat(MAX_TEXT_LEN + 1)),
            Input::Invalid(_)
        ));
        assert!(matches!(
            parse_line(&"x".repeat(MAX_TEXT_LEN)),
            Input::Say(_)
        ));
    }
}
