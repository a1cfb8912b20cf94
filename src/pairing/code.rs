//! The [`InviteCode`] a person reads out to another: a number and three words,
//! `7-amber-lantern-echo`.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

/// How many numbers a code can start with: 0 to 99.
const NUMBERS: u32 = 100;

/// How many words a code has after its number.
const WORDS_PER_CODE: usize = 3;

/// The EFF short wordlist 1 (by the Electronic Frontier Foundation, CC BY 3.0 US),
/// one word per line, with its `yo-yo` replaced by `yikes`: no word may contain the
/// `-` that separates them, and the list already holds `yoyo`.
const WORD_LIST: &str = include_str!("words.txt");

/// The words of [`WORD_LIST`], in its order, which is alphabetical.
static WORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| WORD_LIST.lines().collect());

/// How many words there are to choose from.
const WORD_COUNT: u32 = 1296;

/// A one-time secret for pairing two `chat`s: a number from 0 to 99 and three words
/// from a list of 1296, as in `7-amber-lantern-echo`.
///
/// It holds log2(100 · 1296³) = log2(100) + 3 · log2(1296) ≈ 6.64 + 3 · 10.34 ≈ 37.7
/// bits. That is little for an offline search, but the exchange never gives one a
/// chance: SPAKE2 lets each connection test a single guess, and the inviter allows
/// only a few of those.
///
/// `Debug` hides the code so that it cannot reach a log by accident; `Display`
/// shows its canonical text.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode {
    number: u8,
    words: [u16; WORDS_PER_CODE],
}

/// Why typed-in text is not an invite code. None of them repeats the number or a
/// word that was recognised.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodeError {
    /// Not a number and three words joined by `-`.
    #[error("an invite code looks like 7-amber-lantern-echo: a number and three words")]
    Shape,
    /// The part before the first `-` is not a number from 0 to 99.
    #[error("an invite code starts with a number from 0 to 99, written without leading zeros")]
    Number,
    /// A word that is not in the list; it may be a typo, so it is shown.
    #[error("unknown word {0:?} in the invite code")]
    UnknownWord(String),
}

/// The system's random number generator failed, so no code can be made.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the system's random number generator failed")]
pub struct RandomnessUnavailable;

impl InviteCode {
    /// A fresh code, each of its four parts drawn uniformly from the system's
    /// cryptographically secure random number generator.
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        let random = SystemRandom::new();
        let number = uniform_below(&random, NUMBERS)?;
        let mut words = [0; WORDS_PER_CODE];
        for word in &mut words {
            *word = uniform_below(&random, WORD_COUNT)?;
        }
        Ok(InviteCode {
            number: number as u8,
            words: words.map(|index| index as u16),
        })
    }

    /// The canonical text, which is what both sides feed SPAKE2 as the password.
    pub fn as_password(&self) -> String {
        self.to_string()
    }
}

/// A number in `0..bound`, every one equally likely: 32 random bits are redrawn
/// whenever they fall in the incomplete last multiple of `bound`.
fn uniform_below(random: &SystemRandom, bound: u32) -> Result<u32, RandomnessUnavailable> {
    let accepted = (1u64 << 32) / u64::from(bound) * u64::from(bound);
    loop {
        let mut bytes = [0u8; 4];
        random.fill(&mut bytes).map_err(|_| RandomnessUnavailable)?;
        let drawn = u32::from_be_bytes(bytes);
        if u64::from(drawn) < accepted {
            return Ok(drawn % bound);
        }
    }
}

fn parse_number(text: &str) -> Result<u8, CodeError> {
    let digits_only = text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    if !(1..=2).contains(&text.len()) || !digits_only || !canonical {
        return Err(CodeError::Number);
    }
    text.parse().map_err(|_| CodeError::Number)
}

fn word_index(word: &str) -> Result<u16, CodeError> {
    WORDS
        .binary_search(&word)
        .map(|index| index as u16)
        .map_err(|_| CodeError::UnknownWord(word.to_owned()))
}

impl FromStr for InviteCode {
    type Err = CodeError;

    /// Strict but for case and surrounding white space: exactly a number from 0 to 99
    /// without leading zeros and three listed words, separated by single `-`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lowered = text.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lowered.split('-').collect();
        let [number, first, second, third] = parts[..] else {
            return Err(CodeError::Shape);
        };
        Ok(InviteCode {
            number: parse_number(number)?,
            words: [word_index(first)?, word_index(second)?, word_index(third)?],
        })
    }
}

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number)?;
        for &index in &self.words {
            write!(f, "-{}", WORDS[usize::from(index)])?;
        }
        Ok(())
    }
}

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteCode(..)")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn code(text: &str) -> InviteCode {
        text.parse().unwrap()
    }

    #[test]
    fn the_word_list_has_1296_distinct_lowercase_words_in_order() {
        assert_eq!(WORDS.len(), WORD_COUNT as usize);
        let distinct: HashSet<&str> = WORDS.iter().copied().collect();
        assert_eq!(distinct.len(), WORDS.len());
        for word in WORDS.iter() {
            assert!(
                !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()),
                "{word:?}"
            );
        }
        assert!(WORDS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn canonical_text_round_trips() {
        for text in [
            "7-acid-yikes-zoom",
            "0-acorn-acorn-acorn",
            "99-zone-zoom-acid",
        ] {
            assert_eq!(code(text).to_string(), text);
            assert_eq!(code(text).as_password(), text);
        }
    }

    #[test]
    fn case_and_surrounding_space_are_forgiven() {
        assert_eq!(code("  42-Acid-ZOOM-yikes\n"), code("42-acid-zoom-yikes"));
    }

    #[test]
    fn generated_codes_parse_back_and_vary() {
        let codes: Vec<InviteCode> = (0..64).map(|_| InviteCode::generate().unwrap()).collect();
        for generated in &codes {
            assert_eq!(&code(&generated.to_string()), generated);
        }
        let distinct: HashSet<String> = codes.iter().map(ToString::to_string).collect();
        assert!(distinct.len() > 60);
    }

    #[test]
    fn uniform_draws_stay_below_their_bound_and_reach_its_ends() {
        let random = SystemRandom::new();
        let drawn: HashSet<u32> = (0..2000)
            .map(|_| uniform_below(&random, 7).unwrap())
            .collect();
        assert_eq!(drawn, (0..7).collect());
    }

    #[test]
    fn the_wrong_shape_is_refused() {
        for text in [
            "",
            "7",
            "7-acid-acorn",
            "7-acid-acorn-acre-aged",
            "7--acid-acorn-acre",
            "7-acid-acorn-acre-",
            "7 acid acorn acre",
            "7-acid-acorn acre",
        ] {
            assert_eq!(
                text.parse::<InviteCode>(),
                Err(CodeError::Shape),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_bad_number_is_refused() {
        for text in [
            "07-acid-acorn-acre",
            "00-acid-acorn-acre",
            "100-acid-acorn-acre",
            "-acid-acorn-acre",
            "+7-acid-acorn-acre",
            "x-acid-acorn-acre",
            "٧-acid-acorn-acre",
        ] {
            assert_eq!(
                text.parse::<InviteCode>(),
                Err(CodeError::Number),
                "{text:?}"
            );
        }
    }

    #[test]
    fn an_unknown_word_is_named() {
        assert_eq!(
            "7-acid-xyz-acre".parse::<InviteCode>(),
            Err(CodeError::UnknownWord("xyz".into()))
        );
        assert_eq!(
            "7-acid-acorn-yo".parse::<InviteCode>(),
            Err(CodeError::UnknownWord("yo".into()))
        );
        assert_eq!(
            CodeError::UnknownWord("xyz".into()).to_string(),
            "unknown word \"xyz\" in the invite code"
        );
    }

    #[test]
    fn debug_hides_the_code() {
        assert_eq!(format!("{:?}", code("7-acid-acorn-acre")), "InviteCode(..)");
    }
}
