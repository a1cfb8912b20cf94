//! Makes untrusted text safe to print: a peer must never drive our terminal.
//!
//! C0 and C1 control characters (which start every ANSI escape sequence), DEL,
//! bidirectional overrides and line separators are replaced by visible escapes.

use std::borrow::Cow;
use std::fmt::Write;

/// Returns `text` with every character that could move the cursor, change colours,
/// set the window title or reorder what is shown replaced by a visible escape.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_dangerous) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !is_dangerous(c) {
            safe.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(safe, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(safe, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(safe)
}

fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200e}' | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_ordinary_text_alone() {
        assert!(matches!(
            for_terminal("héllo, wörld! 日本"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn neutralises_escape_sequences() {
        assert_eq!(
            for_terminal("\x1b[2J\x1b]0;pwned\x07"),
            "\\x1b[2J\\x1b]0;pwned\\x07"
        );
        assert_eq!(for_terminal("a\rb\nc\td\x7f"), "a\\x0db\\x0ac\\x09d\\x7f");
    }

    #[test]
    fn neutralises_c1_and_bidi_controls() {
        assert_eq!(for_terminal("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(for_terminal("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(for_terminal("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(for_terminal("a\u{2028}b"), "a\\u{2028}b");
    }
}
