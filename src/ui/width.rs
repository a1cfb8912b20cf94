//! How many columns text takes on a terminal, by grapheme cluster, erring wide.
//!
//! Terminals disagree. One that knows an emoji sequence draws it as one glyph two
//! columns wide (`❤` with U+FE0F in kitty, WezTerm, foot, iTerm2, Windows
//! Terminal); one that does not draws each character on its own. Characters of
//! ambiguous width are wide in an East Asian setting. Counted short, a row that
//! `chat` thinks fits is wrapped by the terminal, and the rest of it starts a row
//! of its own without the continuation marker, where a peer could make it look
//! like a status line. So a cluster counts as the widest of its readings: a row
//! may end a little early, but never wraps. The cursor is never placed by these
//! counts (the terminal finds it, see `interactive`).

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The columns `text` takes at most.
pub fn width(text: &str) -> usize {
    clusters(text).map(|(_, columns)| columns).sum()
}

/// The grapheme clusters of `text`, each with the columns it takes at most.
pub fn clusters(text: &str) -> impl Iterator<Item = (&str, usize)> {
    text.graphemes(true)
        .map(|cluster| (cluster, cluster_width(cluster)))
}

/// The longest start of `text` that takes at most `columns`, cut between clusters.
pub fn truncate(text: &str, columns: usize) -> &str {
    let mut used = 0;
    for (at, cluster) in text.grapheme_indices(true) {
        used += cluster_width(cluster);
        if used > columns {
            return &text[..at];
        }
    }
    text
}

/// The columns one grapheme cluster takes at most: the widest of the cluster as
/// one glyph, its characters side by side, and either in an East Asian setting;
/// at least 2 where an emoji component makes its presentation uncertain.
pub fn cluster_width(cluster: &str) -> usize {
    let whole = cluster.width().max(cluster.width_cjk());
    let apart: usize = cluster.chars().map(char_width).sum();
    let emoji = if cluster.chars().any(is_emoji_component) {
        2
    } else {
        0
    };
    whole.max(apart).max(emoji)
}

/// One character's columns at most, drawn on its own.
fn char_width(c: char) -> usize {
    if is_regional_indicator(c) {
        // Half a flag: a letter in a box, or a wide glyph of its own.
        2
    } else {
        c.width_cjk().unwrap_or(0)
    }
}

/// Characters that turn what comes before them into an emoji, or join emoji into
/// one: presentation selectors, skin tones, the zero-width joiner, the keycap,
/// tags and flags' regional indicators.
fn is_emoji_component(c: char) -> bool {
    matches!(c,
        '\u{fe0e}' | '\u{fe0f}' | '\u{1f3fb}'..='\u{1f3ff}' | '\u{200d}' | '\u{20e3}'
        | '\u{e0020}'..='\u{e007f}')
        || is_regional_indicator(c)
}

fn is_regional_indicator(c: char) -> bool {
    ('\u{1f1e6}'..='\u{1f1ff}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEART: &str = "\u{2764}\u{fe0f}";

    #[test]
    fn an_emoji_with_its_presentation_selector_is_two_columns() {
        assert_eq!(cluster_width(HEART), 2);
        assert_eq!(width(&HEART.repeat(40)), 80);
        assert_eq!(width(&format!("bob: {HEART}x")), 8);
        assert_eq!(cluster_width("\u{2764}"), 1);
    }

    #[test]
    fn uncertain_clusters_count_as_their_widest_reading() {
        // Text presentation of an emoji that is wide by default.
        assert_eq!(cluster_width("\u{231a}\u{fe0e}"), 2);
        // A skin tone some terminals draw beside its hand.
        assert_eq!(cluster_width("\u{1f44d}\u{1f3fd}"), 4);
        // A flag, and half of one.
        assert_eq!(cluster_width("\u{1f1fa}\u{1f1f8}"), 4);
        assert_eq!(cluster_width("\u{1f1fa}"), 2);
        // Ambiguous width: wide in an East Asian setting.
        assert_eq!(cluster_width("\u{2026}"), 2);
        assert_eq!(cluster_width("a\u{fe0f}"), 2);
    }

    #[test]
    fn ordinary_clusters_count_as_drawn() {
        for (cluster, columns) in [
            ("a", 1),
            ("e\u{301}", 1),
            ("\u{65e5}", 2),
            ("\u{d55c}", 2),
            ("\u{1100}\u{1161}", 2),
            ("\u{3b1}", 1),
            ("\u{44f}", 1),
            ("\u{21b3}", 1),
        ] {
            assert_eq!(cluster_width(cluster), columns, "{cluster:?}");
        }
    }

    #[test]
    fn truncating_never_splits_a_cluster() {
        let text = HEART.repeat(3);
        assert_eq!(truncate(&text, 5), HEART.repeat(2));
        assert_eq!(truncate(&text, 1), "");
        assert_eq!(truncate("e\u{301}e\u{301}", 1), "e\u{301}");
        assert_eq!(truncate("short", 80), "short");
    }

    proptest! {
        #[test]
        fn never_narrower_than_any_one_reading(
            text in "(\\PC|[\u{2764}\u{231a}\u{fe0e}\u{fe0f}\u{200d}\u{20e3}\u{1f1e6}-\u{1f1ff}\u{1f3fb}-\u{1f3ff}\u{1f44d}\u{301}\u{1100}\u{1161}]){0,40}"
        ) {
            let columns = width(&text);
            prop_assert!(columns >= text.width(), "{text:?}");
            prop_assert!(columns >= text.width_cjk(), "{text:?}");
            let apart: usize = text.chars().filter_map(|c| c.width()).sum();
            prop_assert!(columns >= apart, "{text:?}");
            prop_assert!(width(truncate(&text, 10)) <= 10, "{text:?}");
        }
    }
}
