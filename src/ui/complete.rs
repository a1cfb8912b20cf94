//! Tab completion of the file after `transfer `, from the file system.

use std::path::{Path, PathBuf};

use crate::ui::input::{expand_home, quote_path, shell_words_so_far};

/// How many names a completion lists at most.
const MAX_CHOICES: usize = 40;

/// What Tab does to the text before the cursor.
#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
    /// The char index where the replaced text starts.
    pub from: usize,
    pub replacement: String,
    /// The names that matched, when more than one did.
    pub choices: Vec<String>,
}

/// Completes the file name that `before_cursor` (`transfer …`) ends with: as far
/// as every match agrees, with `/` after a folder. Nothing if it is not a
/// `transfer` line or nothing matches.
pub fn transfer_argument(before_cursor: &str) -> Option<Completion> {
    complete_in(before_cursor, std::env::home_dir().as_deref())
}

fn complete_in(before_cursor: &str, home: Option<&Path>) -> Option<Completion> {
    let typed = before_cursor.strip_prefix("transfer ")?;
    let typed = typed.trim_start();
    let (words, _) = shell_words_so_far(typed);
    let partial = match words.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        _ => return None,
    };
    let unquoted = !typed.starts_with(['"', '\'']);
    let (folder_typed, prefix) = match partial.rfind('/') {
        Some(slash) => partial.split_at(slash + 1),
        None => ("", partial.as_str()),
    };
    let folder: PathBuf = match folder_typed {
        "" => PathBuf::from("."),
        typed => expand_home(typed, unquoted, home),
    };
    let mut matches: Vec<(String, bool)> = std::fs::read_dir(&folder)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            // A name that would move the cursor or retitle the window is never
            // shown or inserted; it can still be typed.
            if name
                .chars()
                .any(|c| c.is_control() || crate::ui::sanitize::is_invisible(c))
            {
                return None;
            }
            let visible = !name.starts_with('.') || prefix.starts_with('.');
            (visible && name.starts_with(prefix)).then(|| {
                let is_dir = entry.path().is_dir();
                (name, is_dir)
            })
        })
        .collect();
    matches.sort();
    let (first, _) = matches.first()?;
    let mut common = first.clone();
    for (name, _) in &matches[1..] {
        let agreed = common
            .char_indices()
            .zip(name.chars())
            .find(|((_, a), b)| a != b)
            .map_or(common.len().min(name.len()), |((i, _), _)| i);
        common.truncate(agreed);
    }
    if matches.len() == 1 && matches[0].1 {
        common.push('/');
    }
    let choices = if matches.len() > 1 {
        (matches.iter().take(MAX_CHOICES))
            .map(|(name, is_dir)| {
                if *is_dir {
                    format!("{name}/")
                } else {
                    name.clone()
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let completed = format!("{folder_typed}{common}");
    let replacement = match completed.strip_prefix("~/") {
        Some(rest) if unquoted => format!("transfer ~/{}", quote_path(rest)),
        _ => format!("transfer {}", quote_path(&completed)),
    };
    Some(Completion {
        from: 0,
        replacement,
        choices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_a_unique_file_a_folder_and_the_common_start_of_several() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("my report.txt"), b"").unwrap();
        std::fs::create_dir(base.join("photos")).unwrap();
        std::fs::write(base.join("photos/a1.jpg"), b"").unwrap();
        std::fs::write(base.join("photos/a2.jpg"), b"").unwrap();
        std::fs::write(base.join(".hidden"), b"").unwrap();
        std::fs::write(base.join("my \x1b]0;title\x07"), b"").unwrap();
        let at = |typed: &str| complete_in(&format!("transfer {typed}"), Some(base));

        assert_eq!(
            at("~/my").unwrap().replacement,
            "transfer ~/my\\ report.txt"
        );
        assert_eq!(at("~/ph").unwrap().replacement, "transfer ~/photos/");
        let several = at("~/photos/a").unwrap();
        assert_eq!(several.replacement, "transfer ~/photos/a");
        assert_eq!(several.choices, ["a1.jpg", "a2.jpg"]);
        let inside = format!("{}/", base.display());
        let listed = at(&inside).unwrap();
        assert_eq!(
            listed.choices,
            ["my report.txt", "photos/"],
            "no hidden files"
        );
        assert_eq!(at("~/.h").unwrap().replacement, "transfer ~/.hidden");
        assert_eq!(at("~/nothing"), None);
        assert_eq!(complete_in("hello ~/my", Some(base)), None);
    }
}
