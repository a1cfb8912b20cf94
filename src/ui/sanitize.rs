//! Makes untrusted text safe to print: a peer must never drive our terminal, nor
//! make text look like something it is not.
//!
//! C0 and C1 control characters (which start every ANSI escape sequence), DEL,
//! bidirectional controls, line separators, invisible format characters (Unicode
//! category Cf: zero-width spaces and joiners, tags, the byte-order mark...), blank
//! fillers that render as nothing, and noncharacters are replaced by visible
//! escapes; so are combining marks beyond [`MAX_COMBINING_MARKS`] on one character,
//! which would otherwise pile up over the lines above and below.

use std::borrow::Cow;
use std::fmt::Write;

use unicode_normalization::char::is_combining_mark;

/// Combining marks shown on one base character; further ones are escaped.
pub const MAX_COMBINING_MARKS: usize = 4;

/// Returns `text` with every character that could move the cursor, change colours,
/// set the window title, reorder or hide what is shown replaced by a visible escape.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    let mut marks = 0;
    let needs_escaping = text.chars().any(|c| escape_next(c, &mut marks));
    if !needs_escaping {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 16);
    let mut marks = 0;
    for c in text.chars() {
        if !escape_next(c, &mut marks) {
            safe.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(safe, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(safe, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(safe)
}

/// Whether `c` must be escaped, given the combining marks counted so far on the
/// current base character.
fn escape_next(c: char, marks: &mut usize) -> bool {
    if is_combining_mark(c) {
        *marks += 1;
        return *marks > MAX_COMBINING_MARKS;
    }
    *marks = 0;
    c.is_control() || is_invisible(c)
}

/// Characters that change how text is laid out or read without showing themselves:
/// bidirectional controls, line and paragraph separators, format characters
/// (category Cf), blank fillers and noncharacters. Received file names may not
/// contain them either.
pub fn is_invisible(c: char) -> bool {
    let code = c as u32;
    matches!(c,
        // Format characters (Cf), Unicode 15.1.
        '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
        | '\u{890}'..='\u{891}' | '\u{8e2}' | '\u{180e}'
        | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}' | '\u{e0020}'..='\u{e007f}'
        // Line and paragraph separators.
        | '\u{2028}' | '\u{2029}'
        // Fillers that are letters but draw nothing.
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' | '\u{2800}'
        // Noncharacters.
        | '\u{fdd0}'..='\u{fdef}')
        || code & 0xfffe == 0xfffe
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
    fn neutralises_invisible_characters() {
        assert_eq!(for_terminal("report\u{200b}.pdf"), "report\\u{200b}.pdf");
        assert_eq!(for_terminal("\u{feff}x\u{e0041}"), "\\u{feff}x\\u{e0041}");
        assert_eq!(for_terminal("a\u{3164}b"), "a\\u{3164}b");
        assert_eq!(for_terminal("\u{fffe}\u{10ffff}"), "\\u{fffe}\\u{10ffff}");
    }

    #[test]
    fn caps_combining_marks_per_character() {
        let zalgo = format!("a{}b{}", "\u{301}".repeat(6), "\u{300}".repeat(2));
        let shown = for_terminal(&zalgo);
        assert_eq!(
            shown,
            format!(
                "a{}{}b{}",
                "\u{301}".repeat(MAX_COMBINING_MARKS),
                "\\u{301}".repeat(6 - MAX_COMBINING_MARKS),
                "\u{300}".repeat(2)
            )
        );
        assert!(matches!(for_terminal("e\u{301}\u{302}"), Cow::Borrowed(_)));
    }

    #[test]
    fn neutralises_c1_and_bidi_controls() {
        assert_eq!(for_terminal("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(for_terminal("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(for_terminal("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(for_terminal("a\u{2028}b"), "a\\u{2028}b");
    }
}
