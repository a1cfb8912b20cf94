//! Received file names are untrusted: validate them, and pick a free local name.

use thiserror::Error;

use unicode_normalization::UnicodeNormalization;

use crate::frame::MAX_FILE_NAME_LEN;
use crate::platform;
use crate::ui::sanitize::is_invisible;

/// Why an offered file name is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("the file name is empty")]
    Empty,
    #[error("the file name {0:?} refers to a folder")]
    DotName(String),
    #[error("the file name contains a path separator or NUL")]
    Separator,
    #[error("the file name contains control characters")]
    Control,
    #[error("the file name contains an invisible character (U+{0:04X})")]
    Invisible(u32),
    #[error("the file name is longer than {MAX_FILE_NAME_LEN} bytes")]
    TooLong,
    #[error("the file name {0:?} is a reserved device name")]
    DeviceName(String),
    #[error("the file name {0:?} ends like an unfinished transfer (.part, .part.meta)")]
    PartSuffix(String),
}

/// Windows device names, refused with or without an extension on every system so
/// that a file received here can be copied anywhere.
const DEVICE_NAMES: &[&str] = &[
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    "COM0",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{b9}",
    "COM\u{b2}",
    "COM\u{b3}",
    "LPT0",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{b9}",
    "LPT\u{b2}",
    "LPT\u{b3}",
];

/// Characters Windows reserves in names (`:` would even name a stream inside a file).
const WINDOWS_RESERVED: [char; 7] = ['<', '>', ':', '"', '|', '?', '*'];

/// What the receiving system asks of names beyond what every system gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRules {
    /// The characters Windows reserves become `_`.
    pub reserved_characters: bool,
    /// Names that differ only in case are one name.
    pub case_insensitive: bool,
}

impl NameRules {
    pub const UNIX: Self = Self {
        reserved_characters: false,
        case_insensitive: false,
    };
    pub const WINDOWS: Self = Self {
        reserved_characters: true,
        case_insensitive: true,
    };

    /// The rules of the system `chat` runs on.
    pub fn here() -> Self {
        if platform::WINDOWS_NAMES {
            Self::WINDOWS
        } else {
            Self::UNIX
        }
    }

    /// These rules where names that differ only in case name one file.
    pub fn ignoring_case(self) -> Self {
        Self {
            case_insensitive: true,
            ..self
        }
    }

    /// Whether two stored names would name one file.
    pub fn same(&self, a: &str, b: &str) -> bool {
        self.key(a) == self.key(b)
    }

    /// `name` as these rules compare it: itself, or where case does not count, its
    /// case folded so that any two names that one case-insensitive file system or
    /// another takes for one have one key. NTFS compares upper case one character
    /// at a time; APFS and ext4's casefold fold case fully (`ß` is `ss`) and ignore
    /// the normal form. Lower, upper, then lower case again folds at least as much
    /// as each (`ẞ`, `ß`, `SS` and `ss` meet), and the key is put in one normal form.
    /// A key that joins more than a system does only refuses more.
    pub fn key(&self, name: &str) -> String {
        if !self.case_insensitive {
            return name.to_owned();
        }
        let folded = name.to_lowercase().to_uppercase().to_lowercase();
        folded.nfd().collect()
    }
}

/// Checks an offered name and returns the name to store the file under, by the
/// rules of the system `chat` runs on.
pub fn sanitize(offered: &str) -> Result<String, NameError> {
    sanitize_with(offered, NameRules::here())
}

/// Checks an offered name and returns the name to store the file under.
///
/// The name is put in Unicode normal form C, so that one name has one spelling.
/// Invisible characters (format characters, fillers, noncharacters) are refused: they
/// let `invoice\u{202E}fdp.exe` pass for a PDF. Trailing dots and spaces are dropped
/// (Windows would drop them too, and they hide an extension). A leading `.` would
/// make a hidden file, so leading dots become `_` (`.bashrc` is stored as `_bashrc`);
/// a leading `-` could be read as an option by a command given the name, so it gets a
/// `_` before it. Where `rules` ask for it, the characters Windows reserves become `_`.
pub fn sanitize_with(offered: &str, rules: NameRules) -> Result<String, NameError> {
    let mut normal: String = if offered.is_ascii() {
        offered.to_owned()
    } else {
        offered.nfc().collect()
    };
    if normal == "." || normal == ".." {
        return Err(NameError::DotName(normal));
    }
    if normal.contains(['/', '\\', '\0']) {
        return Err(NameError::Separator);
    }
    if normal.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    if let Some(invisible) = normal.chars().find(|&c| is_invisible(c)) {
        return Err(NameError::Invisible(invisible as u32));
    }
    if rules.reserved_characters {
        normal = normal.replace(WINDOWS_RESERVED, "_");
    }
    let trimmed = normal.trim_end_matches(['.', ' ']);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    let stem = trimmed.split('.').next().unwrap_or_default();
    let stem = stem.trim_end_matches(' ');
    if DEVICE_NAMES
        .iter()
        .any(|device| device.eq_ignore_ascii_case(stem))
    {
        return Err(NameError::DeviceName(offered.to_owned()));
    }
    let lowercase = trimmed.to_lowercase();
    if lowercase.ends_with(".part") || lowercase.ends_with(".part.meta") {
        return Err(NameError::PartSuffix(offered.to_owned()));
    }
    let visible_from = trimmed.len() - trimmed.trim_start_matches('.').len();
    let rest = &trimmed[visible_from..];
    let guard = if visible_from == 0 && rest.starts_with('-') {
        "_"
    } else {
        ""
    };
    let stored = format!("{}{guard}{rest}", "_".repeat(visible_from));
    if stored.len() > MAX_FILE_NAME_LEN {
        return Err(NameError::TooLong);
    }
    Ok(stored)
}

/// The `n`th alternative for `name`: `name` itself for 0, then `name (1).ext`, ...
/// The number goes before the first dot, so `a.tar.gz` becomes `a (1).tar.gz`.
pub fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    let suffix = format!(" ({n})");
    // An extension with no room left for the number beside it is cut like a stem.
    let (stem, extension) = match name.find('.') {
        Some(dot) if dot > 0 && name.len() - dot + suffix.len() <= MAX_FILE_NAME_LEN => {
            name.split_at(dot)
        }
        _ => (name, ""),
    };
    // A long name keeps its number and extension: the stem gives way.
    let mut room = MAX_FILE_NAME_LEN
        .saturating_sub(suffix.len() + extension.len())
        .min(stem.len());
    while !stem.is_char_boundary(room) {
        room -= 1;
    }
    format!("{}{suffix}{extension}", &stem[..room])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_names() {
        for name in [
            "film.mkv",
            "my notes.txt",
            "日本語.pdf",
            "a..b",
            "CONSOLE.txt",
            "com10",
        ] {
            assert_eq!(sanitize(name).as_deref(), Ok(name), "{name}");
        }
    }

    #[test]
    fn refuses_traversal_and_absolute_paths() {
        assert_eq!(sanitize(""), Err(NameError::Empty));
        assert!(matches!(sanitize("."), Err(NameError::DotName(_))));
        assert!(matches!(sanitize(".."), Err(NameError::DotName(_))));
        for name in [
            "../etc/passwd",
            "/etc/passwd",
            "a/b",
            "..\\win.ini",
            "C:\\x",
            "a\0b",
        ] {
            assert_eq!(sanitize(name), Err(NameError::Separator), "{name}");
        }
    }

    #[test]
    fn refuses_control_characters() {
        for name in [
            "a\nb",
            "a\rb",
            "\x1b[31mred",
            "tab\there",
            "del\x7f",
            "c1\u{9b}",
        ] {
            assert_eq!(sanitize(name), Err(NameError::Control), "{name:?}");
        }
    }

    #[test]
    fn refuses_overlong_names() {
        assert_eq!(sanitize(&"a".repeat(256)), Err(NameError::TooLong));
        assert!(sanitize(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn refuses_device_names_with_or_without_extension() {
        for name in ["CON", "con", "nul.txt", "Com1.tar.gz", "LPT9", "aux .txt"] {
            assert!(
                matches!(sanitize(name), Err(NameError::DeviceName(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn windows_rules_on_every_system() {
        let (windows, unix) = (NameRules::WINDOWS, NameRules::UNIX);
        for rules in [windows, unix] {
            for device in ["CON", "con.txt", "NUL.tar.gz", "COM\u{b9}.log", "lpt0"] {
                assert!(
                    matches!(sanitize_with(device, rules), Err(NameError::DeviceName(_))),
                    "{device} {rules:?}"
                );
            }
            assert_eq!(sanitize_with("name.", rules).as_deref(), Ok("name"));
            assert_eq!(sanitize_with("name ", rules).as_deref(), Ok("name"));
        }
        assert_eq!(sanitize_with("a:b", windows).as_deref(), Ok("a_b"));
        assert_eq!(sanitize_with("a:b", unix).as_deref(), Ok("a:b"));
        assert_eq!(
            sanitize_with("why? <not> \"x\"|*.txt", windows).as_deref(),
            Ok("why_ _not_ _x___.txt")
        );
        assert_eq!(
            sanitize_with("file.txt:hidden", windows).as_deref(),
            Ok("file.txt_hidden")
        );
        assert!(windows.same("Report.TXT", "report.txt"));
        assert!(windows.same("\u{c4}rger", "\u{e4}RGER"));
        assert!(!unix.same("Report.TXT", "report.txt"));
        assert!(unix.same("report.txt", "report.txt"));
        assert_eq!(
            unix.ignoring_case(),
            NameRules {
                case_insensitive: true,
                ..unix
            }
        );
    }

    #[test]
    fn ignoring_case_joins_what_any_case_insensitive_system_joins() {
        let rules = NameRules::UNIX.ignoring_case();
        // Full case folding, as APFS and ext4's casefold do.
        for (a, b) in [
            ("stra\u{df}e", "STRASSE"),
            ("\u{1e9e}", "ss"),
            ("\u{fb01}le", "FILE"),
            ("\u{3c3}\u{3c2}", "\u{3a3}\u{3a3}"),
            ("\u{212a}", "k"),
            ("\u{1f0}", "J\u{30c}"),
        ] {
            assert!(rules.same(a, b), "{a:?} {b:?}");
        }
        assert!(!rules.same("a", "b"));
        assert!(!rules.same("\u{e9}", "e"));
        // NTFS: each character's simple upper case.
        for code in (0..0x3_0000).filter_map(char::from_u32) {
            let mut upper = code.to_uppercase();
            if let (Some(single), None) = (upper.next(), upper.next()) {
                let (a, b) = (code.to_string(), single.to_string());
                assert!(
                    rules.same(&a, &b),
                    "U+{:04X} and its upper case",
                    code as u32
                );
            }
        }
    }

    #[test]
    fn refuses_names_of_unfinished_transfers() {
        for name in ["movie.mkv.part", "movie.mkv.part.meta", "x.PART", ".part"] {
            assert!(
                matches!(sanitize(name), Err(NameError::PartSuffix(_))),
                "{name}"
            );
        }
        assert!(sanitize("partition.img").is_ok());
    }

    #[test]
    fn refuses_invisible_characters() {
        for (name, code) in [
            ("invoice\u{202e}fdp.exe", 0x202e),
            ("report\u{200b}.pdf", 0x200b),
            ("\u{3164}", 0x3164),
            ("tag\u{e0041}", 0xe0041),
            ("bom\u{feff}", 0xfeff),
        ] {
            assert_eq!(sanitize(name), Err(NameError::Invisible(code)), "{name:?}");
        }
    }

    #[test]
    fn normalises_trims_and_guards_names() {
        assert_eq!(sanitize("e\u{301}.txt").as_deref(), Ok("\u{e9}.txt"));
        assert_eq!(sanitize("report.pdf. . ").as_deref(), Ok("report.pdf"));
        assert_eq!(sanitize(". .."), Err(NameError::Empty));
        assert_eq!(
            sanitize("--checkpoint-action=exec=sh x.sh").as_deref(),
            Ok("_--checkpoint-action=exec=sh x.sh")
        );
        assert!(matches!(sanitize("nul. "), Err(NameError::DeviceName(_))));
        assert_eq!(
            sanitize(&format!("-{}", "a".repeat(254))),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn hidden_names_become_visible() {
        assert_eq!(sanitize(".bashrc").as_deref(), Ok("_bashrc"));
        assert_eq!(sanitize("...x").as_deref(), Ok("___x"));
    }

    #[test]
    fn numbers_alternatives_before_the_extension() {
        assert_eq!(numbered("film.mkv", 0), "film.mkv");
        assert_eq!(numbered("film.mkv", 1), "film (1).mkv");
        assert_eq!(numbered("a.tar.gz", 2), "a (2).tar.gz");
        assert_eq!(numbered("README", 3), "README (3)");
        assert_eq!(numbered("_bashrc", 1), "_bashrc (1)");
        let long = format!("{}.tar.gz", "é".repeat(124));
        let alternative = numbered(&long, 12);
        assert!(
            alternative.len() <= MAX_FILE_NAME_LEN,
            "{}",
            alternative.len()
        );
        assert!(alternative.ends_with(" (12).tar.gz"), "{alternative}");
    }

    #[test]
    fn an_extension_too_long_for_the_number_gives_way_too() {
        // Found by the names fuzz target: the number and the extension alone were
        // over the limit, so the second copy of such a file could not be stored.
        let name = format!("a.{}", "x".repeat(253));
        assert_eq!(sanitize(&name).as_deref(), Ok(name.as_str()));
        for n in [1, 12, u32::MAX] {
            let alternative = numbered(&name, n);
            assert!(
                alternative.len() <= MAX_FILE_NAME_LEN,
                "{n}: {} bytes",
                alternative.len()
            );
            assert!(alternative.ends_with(&format!(" ({n})")), "{alternative}");
            assert_eq!(sanitize(&alternative).as_deref(), Ok(alternative.as_str()));
        }
    }
}
