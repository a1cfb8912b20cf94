//! The input line of the interactive front end: the text being typed, the cursor,
//! the history of this session, and what is visible of it in a given width. Pure:
//! keys come in as [`Edit`]s, so it is tested without a terminal. The cursor moves
//! and deletes by grapheme cluster, as a person sees characters (an emoji and its
//! presentation selector are one).

use unicode_segmentation::UnicodeSegmentation;

use super::width;

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
                let start = self.cluster_before();
                self.text.drain(start..self.cursor);
                self.cursor = start;
            }
            Edit::DeleteUnder => {
                let end = self.cluster_after();
                self.text.drain(self.cursor..end);
            }
            Edit::Left => self.cursor = self.cluster_before(),
            Edit::Right => self.cursor = self.cluster_after(),
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
    /// stays free, so the row never wraps), scrolled so that the cursor is visible.
    /// Widths are counted as wide as any terminal draws them, so the cursor's column
    /// is at most that; the terminal itself puts the cursor between
    /// [`View::before`] and [`View::after`].
    pub fn view(&self, prompt: &str, columns: usize) -> View {
        let room = columns.saturating_sub(1).max(2);
        let prompt = if width::width(prompt) + 1 >= room {
            width::truncate(prompt, room / 2)
        } else {
            prompt
        };
        let prompt_width = width::width(prompt);
        let room = room - prompt_width;
        let text = self.text();
        let clusters: Vec<(usize, &str, usize)> = (text.grapheme_indices(true))
            .map(|(at, cluster)| (at, cluster, width::cluster_width(cluster)))
            .collect();
        // The cluster the cursor stands before (or inside, after a word move).
        let cursor_at = text
            .char_indices()
            .nth(self.cursor)
            .map_or(text.len(), |(at, _)| at);
        let under = clusters.partition_point(|&(at, cluster, _)| at + cluster.len() <= cursor_at);
        // Start as far left as lets the cursor (and one cell after it) fit.
        let mut start = under;
        let mut used = 1;
        while start > 0 && used + clusters[start - 1].2 <= room {
            start -= 1;
            used += clusters[start].2;
        }
        let mut view = View {
            prompt: prompt.to_owned(),
            before: String::new(),
            after: String::new(),
            cursor: prompt_width,
        };
        let mut used = 0;
        for (i, &(_, cluster, columns)) in clusters.iter().enumerate().skip(start) {
            if used + columns > room {
                break;
            }
            used += columns;
            if i < under {
                view.before.push_str(cluster);
                view.cursor += columns;
            } else {
                view.after.push_str(cluster);
            }
        }
        view
    }

    /// Where the grapheme cluster before the cursor starts, as a char index.
    fn cluster_before(&self) -> usize {
        let before: String = self.text[..self.cursor].iter().collect();
        let last = before.graphemes(true).next_back().unwrap_or_default();
        self.cursor - last.chars().count()
    }

    /// Where the grapheme cluster at the cursor ends, as a char index.
    fn cluster_after(&self) -> usize {
        let after: String = self.text[self.cursor..].iter().collect();
        let first = after.graphemes(true).next().unwrap_or_default();
        self.cursor + first.chars().count()
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

/// The input line as shown: the prompt and the typed text around the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub prompt: String,
    /// The text shown before the cursor.
    pub before: String,
    /// The text shown from the cursor on.
    pub after: String,
    /// The cursor's column, at most: clusters of uncertain width count wide.
    pub cursor: usize,
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
        let view = editor.view("> ", 20);
        assert_eq!(view.prompt, "> ");
        assert_eq!(view.before, &"abcdefghij".repeat(5)[34..]);
        assert_eq!(view.after, "");
        assert_eq!(view.cursor, 18);
        let mut editor = editor;
        editor.apply(Edit::Start);
        let view = editor.view("> ", 20);
        assert_eq!(
            (view.before.as_str(), view.after.as_str()),
            ("", "abcdefghijabcdefg")
        );
        assert_eq!(view.cursor, 2);
        let wide = typed(&"日".repeat(30));
        let view = wide.view("> ", 20);
        assert!(
            width::width(&format!("{}{}", view.prompt, view.before)) <= 19,
            "{view:?}"
        );
    }

    const HEART: &str = "\u{2764}\u{fe0f}";

    #[test]
    fn an_emoji_with_its_selector_is_one_character_to_move_over_and_delete() {
        let mut editor = typed(&format!("a{HEART}{HEART}b"));
        editor.apply(Edit::Left);
        editor.apply(Edit::Left);
        editor.apply(Edit::DeleteBefore);
        assert_eq!(editor.text(), format!("a{HEART}b"));
        editor.apply(Edit::Insert('x'));
        editor.apply(Edit::DeleteUnder);
        assert_eq!(editor.text(), "axb");
        editor.apply(Edit::Right);
        assert_eq!(editor.text().chars().count(), editor.cursor);
    }

    #[test]
    fn the_view_counts_an_emoji_with_its_selector_as_two_columns() {
        let mut editor = typed(&HEART.repeat(30));
        let view = editor.view("> ", 20);
        assert_eq!(view.before, HEART.repeat(8), "{view:?}");
        assert_eq!(view.cursor, 18);
        editor.apply(Edit::Start);
        editor.apply(Edit::Right);
        let view = editor.view("> ", 20);
        assert_eq!(
            (view.before, view.after),
            (HEART.to_owned(), HEART.repeat(7))
        );
        assert_eq!(view.cursor, 4);
    }
}
