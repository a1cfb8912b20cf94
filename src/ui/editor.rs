//! The input line of the interactive front end: the text being typed, the cursor,
//! the history of this session, and what is visible of it in a given width. Pure:
//! keys come in as [`Edit`]s, so it is tested without a terminal.

use unicode_width::UnicodeWidthChar;

/// One editing action, as the keys map to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Insert(char),
    /// Pasted text; line breaks in it become spaces, so a paste never sends itself.
    Paste(String),
    Submit,
    /// Backspace.
    DeleteBefore,
    /// Delete, and Ctrl-D on a line that is not empty.
    DeleteUnder,
    Left,
    Right,
    /// Home, Ctrl-A.
    Start,
    /// End, Ctrl-E.
    End,
    /// Ctrl-Left, Alt-B.
    WordLeft,
    /// Ctrl-Right, Alt-F.
    WordRight,
    /// Ctrl-W.
    DeleteWordBefore,
    /// Ctrl-U.
    DeleteToStart,
    /// Ctrl-K.
    DeleteToEnd,
    /// Up.
    Older,
    /// Down.
    Newer,
}

/// The line being typed.
#[derive(Debug, Default)]
pub struct Editor {
    text: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Which history entry is shown, while browsing it.
    browsing: Option<usize>,
    /// What was typed before browsing began.
    draft: Vec<char>,
}

/// How many submitted lines Up can recall.
const MAX_HISTORY: usize = 1000;

impl Editor {
    pub fn text(&self) -> String {
        self.text.iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Applies one edit; a submitted line is returned and the input line emptied.
    pub fn apply(&mut self, edit: Edit) -> Option<String> {
        match edit {
            Edit::Insert(c) => self.insert(&[c]),
            Edit::Paste(text) => {
                let chars: Vec<char> = text
                    .chars()
                    .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
                    .filter(|c| !c.is_control())
                    .collect();
                self.insert(&chars);
            }
            Edit::Submit => return Some(self.submit()),
            Edit::DeleteBefore => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.text.remove(self.cursor);
                }
            }
            Edit::DeleteUnder => {
                if self.cursor < self.text.len() {
                    self.text.remove(self.cursor);
                }
            }
            Edit::Left => self.cursor = self.cursor.saturating_sub(1),
            Edit::Right => self.cursor = (self.cursor + 1).min(self.text.len()),
            Edit::Start => self.cursor = 0,
            Edit::End => self.cursor = self.text.len(),
            Edit::WordLeft => self.cursor = self.word_start(),
            Edit::WordRight => self.cursor = self.word_end(),
            Edit::DeleteWordBefore => {
                let start = self.word_start();
                self.text.drain(start..self.cursor);
                self.cursor = start;
            }
            Edit::DeleteToStart => {
                self.text.drain(..self.cursor);
                self.cursor = 0;
            }
            Edit::DeleteToEnd => self.text.truncate(self.cursor),
            Edit::Older => self.browse_older(),
            Edit::Newer => self.browse_newer(),
        }
        None
    }

    /// Replaces the text before the cursor from char index `from` with `with`.
    pub fn replace_before_cursor(&mut self, from: usize, with: &str) {
        let from = from.min(self.cursor);
        let replacement: Vec<char> = with.chars().collect();
        let len = replacement.len();
        self.text.splice(from..self.cursor, replacement);
        self.cursor = from + len;
    }

    /// The text before the cursor.
    pub fn before_cursor(&self) -> String {
        self.text[..self.cursor].iter().collect()
    }

    /// What of `prompt` and the text fits in `columns - 1` columns (the last column
    /// stays free, so the row never wraps), scrolled so that the cursor is visible,
    /// and the cursor's column.
    pub fn view(&self, prompt: &str, columns: usize) -> (String, usize) {
        let room = columns.saturating_sub(1).max(2);
        let prompt_width: usize = prompt.chars().map(char_width).sum();
        let prompt: String = if prompt_width + 1 >= room {
            prompt.chars().take(room / 2).collect()
        } else {
            prompt.to_owned()
        };
        let prompt_width: usize = prompt.chars().map(char_width).sum();
        let room = room - prompt_width;
        // Start as far left as lets the cursor (and one cell after it) fit.
        let mut start = self.cursor;
        let mut width = 1;
        while start > 0 && width + char_width(self.text[start - 1]) <= room {
            start -= 1;
            width += char_width(self.text[start]);
        }
        let mut shown = prompt;
        let mut used = 0;
        let mut cursor_column = prompt_width;
        for (i, &c) in self.text.iter().enumerate().skip(start) {
            if used + char_width(c) > room {
                break;
            }
            if i < self.cursor {
                cursor_column += char_width(c);
            }
            shown.push(c);
            used += char_width(c);
        }
        (shown, cursor_column)
    }

    fn insert(&mut self, chars: &[char]) {
        self.text
            .splice(self.cursor..self.cursor, chars.iter().copied());
        self.cursor += chars.len();
        self.browsing = None;
    }

    fn submit(&mut self) -> String {
        let line: String = self.text.drain(..).collect();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == MAX_HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    fn browse_older(&mut self) {
        let next = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = std::mem::take(&mut self.text);
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.show_history(next);
    }

    fn browse_newer(&mut self) {
        match self.browsing {
            None => {}
            Some(i) if i + 1 < self.history.len() => self.show_history(i + 1),
            Some(_) => {
                self.browsing = None;
                self.text = std::mem::take(&mut self.draft);
                self.cursor = self.text.len();
            }
        }
    }

    fn show_history(&mut self, index: usize) {
        self.browsing = Some(index);
        self.text = self.history[index].chars().collect();
        self.cursor = self.text.len();
    }

    fn word_start(&self) -> usize {
        let mut i = self.cursor;
        while i > 0 && self.text[i - 1].is_whitespace() {
            i -= 1;
        }
        while i > 0 && !self.text[i - 1].is_whitespace() {
            i -= 1;
        }
        i
    }

    fn word_end(&self) -> usize {
        let mut i = self.cursor;
        while i < self.text.len() && self.text[i].is_whitespace() {
            i += 1;
        }
        while i < self.text.len() && !self.text[i].is_whitespace() {
            i += 1;
        }
        i
    }
}

fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Editor {
        let mut editor = Editor::default();
        for c in text.chars() {
            editor.apply(Edit::Insert(c));
        }
        editor
    }

    #[test]
    fn editing_keys_move_and_delete_as_in_a_shell() {
        let mut editor = typed("hello world");
        editor.apply(Edit::WordLeft);
        editor.apply(Edit::Insert('_'));
        assert_eq!(editor.text(), "hello _world");
        editor.apply(Edit::DeleteWordBefore);
        assert_eq!(editor.text(), "hello world");
        editor.apply(Edit::Start);
        editor.apply(Edit::DeleteUnder);
        editor.apply(Edit::End);
        editor.apply(Edit::DeleteBefore);
        assert_eq!(editor.text(), "ello worl");
        editor.apply(Edit::Start);
        editor.apply(Edit::WordRight);
        editor.apply(Edit::DeleteToEnd);
        assert_eq!(editor.text(), "ello");
        editor.apply(Edit::Left);
        editor.apply(Edit::DeleteToStart);
        assert_eq!(editor.text(), "o");
        assert_eq!(editor.apply(Edit::Submit).as_deref(), Some("o"));
        assert!(editor.is_empty());
    }

    #[test]
    fn up_and_down_walk_the_history_and_come_back_to_the_draft() {
        let mut editor = typed("first");
        editor.apply(Edit::Submit);
        for c in "second".chars() {
            editor.apply(Edit::Insert(c));
        }
        editor.apply(Edit::Submit);
        for c in "dra".chars() {
            editor.apply(Edit::Insert(c));
        }
        editor.apply(Edit::Older);
        assert_eq!(editor.text(), "second");
        editor.apply(Edit::Older);
        editor.apply(Edit::Older);
        assert_eq!(editor.text(), "first");
        editor.apply(Edit::Newer);
        assert_eq!(editor.text(), "second");
        editor.apply(Edit::Newer);
        assert_eq!(editor.text(), "dra");
    }

    #[test]
    fn a_paste_with_line_breaks_stays_one_line() {
        let mut editor = Editor::default();
        editor.apply(Edit::Paste("git reset --hard\nrm -rf x\r\n".into()));
        assert_eq!(editor.text(), "git reset --hard rm -rf x  ");
    }

    #[test]
    fn the_view_scrolls_to_keep_the_cursor_visible_and_never_fills_the_row() {
        let editor = typed(&"abcdefghij".repeat(5));
        let (shown, cursor) = editor.view("> ", 20);
        assert_eq!(shown, format!("> {}", &"abcdefghij".repeat(5)[34..]));
        assert_eq!(shown.chars().count(), 18);
        assert_eq!(cursor, 18);
        let mut editor = editor;
        editor.apply(Edit::Start);
        let (shown, cursor) = editor.view("> ", 20);
        assert_eq!(shown, "> abcdefghijabcdefg");
        assert_eq!(cursor, 2);
        let wide = typed(&"日".repeat(30));
        let (shown, _) = wide.view("> ", 20);
        assert!(
            shown.chars().map(char_width).sum::<usize>() <= 19,
            "{shown}"
        );
    }
}
