//! What a typed line means: a chat line or a command. Pure, so it is tested with strings.

use std::path::PathBuf;

use crate::frame::MAX_TEXT_LEN;

/// One line of user input, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Send this text.
    Say(String),
    /// `/quit`: close both directions and exit.
    Quit,
    /// `/help`: show the commands.
    Help,
    /// `transfer FILE`: send a file.
    Transfer(PathBuf),
    /// Nothing to do (an empty line).
    Nothing,
    /// A line we refuse, with the reason.
    Invalid(String),
}

/// The commands, as `/help` shows them.
pub const HELP: &str = "\
Commands:
  transfer FILE  send FILE (a path; quotes around it are optional)
  /quit          close both connections and exit (Ctrl-C does the same)
  /say TEXT      send TEXT as it is, even if it starts with '/' or 'transfer '
  /help          show this list
Any other line is sent to the peer. End of input (Ctrl-D) sends what is queued and exits once the peer is done.";

/// Interprets one line, without its line ending.
pub fn parse_line(line: &str) -> Input {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Input::Nothing;
    }
    if let Some(file) = line.strip_prefix("transfer ") {
        return match unquote(file.trim()) {
            "" => Input::Invalid("usage: transfer FILE".into()),
            file => Input::Transfer(PathBuf::from(file)),
        };
    }
    if trimmed == "transfer" {
        return Input::Invalid("usage: transfer FILE".into());
    }
    let text = if let Some(rest) = line.strip_prefix("/say ") {
        rest
    } else if let Some(command) = trimmed.strip_prefix('/') {
        return match command {
            "quit" => Input::Quit,
            "help" => Input::Help,
            other => Input::Invalid(format!("unknown command /{other}; type /help for the list")),
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

/// Removes one pair of matching quotes around a file name, if present.
fn unquote(text: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = text
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
            parse_line("transfer a b.txt"),
            Input::Transfer("a b.txt".into())
        );
        assert_eq!(
            parse_line("transfer \"a b.txt\""),
            Input::Transfer("a b.txt".into())
        );
        assert_eq!(parse_line("transfer 'x'"), Input::Transfer("x".into()));
        assert_eq!(
            parse_line("transfer /tmp/x"),
            Input::Transfer("/tmp/x".into())
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
