//! The `Fingerprint` of a certificate: SHA-256 over its DER, parsed leniently and shown strictly.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// SHA-256 of a certificate's DER encoding; the only thing that decides whom we trust.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Why typed-in text is not a fingerprint.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FingerprintError {
    /// Nothing was given; there is no unauthenticated mode.
    #[error("the fingerprint is empty; ask your peer for the 64 hex digits their `chat` printed")]
    Empty,
    /// A character other than a hex digit, colon or space.
    #[error("the fingerprint contains {0:?}, which is not a hex digit")]
    NotHex(char),
    /// The wrong number of hex digits.
    #[error("the fingerprint has {0} hex digits; a SHA-256 fingerprint has 64")]
    WrongLength(usize),
}

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(certificate_der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(certificate_der).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits in groups of 4, for a person to read or compare:
    /// `7254 87da 85cb …`.
    pub fn grouped(&self) -> String {
        let hex = self.to_string();
        let groups: Vec<&str> = (0..16).map(|i| &hex[i * 4..i * 4 + 4]).collect();
        groups.join(" ")
    }

    /// The first 4 groups, for a line that names a peer: `sha256 7254 87da 85cb 1f0e …`.
    pub fn abbreviated(&self) -> String {
        format!("sha256 {} …", &self.grouped()[..19])
    }
}

/// What two people compare to know that each pinned the other's certificate: 6
/// groups of 5 digits, the same whichever side computes it. The SHA-256 of
/// `chat safety number v1`, a zero byte, then the two fingerprints in ascending
/// byte order; each group is the next 5 bytes of that hash read as a big-endian
/// number, modulo 100000 (PROTOCOL.md, "Safety number").
pub fn safety_number(one: &Fingerprint, other: &Fingerprint) -> String {
    let (low, high) = if one.0 <= other.0 {
        (one, other)
    } else {
        (other, one)
    };
    let mut hash = Sha256::new();
    hash.update(b"chat safety number v1\0");
    hash.update(low.0);
    hash.update(high.0);
    let digest = hash.finalize();
    let groups: Vec<String> = digest
        .chunks(5)
        .take(6)
        .map(|bytes| {
            let value = bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
            format!("{:05}", value % 100_000)
        })
        .collect();
    groups.join(" ")
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    /// Accepts upper or lower case, colons or white space between digits, and an
    /// optional `sha256:` prefix, so that `openssl x509 -fingerprint` output pastes in.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let body = match trimmed.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &trimmed[7..],
            _ => trimmed,
        };
        let mut digits = Vec::with_capacity(64);
        for c in body.chars() {
            match c {
                ':' => {}
                c if c.is_whitespace() => {}
                c if c.is_ascii_hexdigit() => digits.push(c.to_ascii_lowercase() as u8),
                other => return Err(FingerprintError::NotHex(other)),
            }
        }
        if digits.is_empty() {
            return Err(FingerprintError::Empty);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes)
            .map_err(|_| FingerprintError::WrongLength(digits.len()))?;
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn of_is_sha256_of_der() {
        assert_eq!(Fingerprint::of(b"test").to_string(), HEX);
    }

    #[test]
    fn displays_as_64_lowercase_hex() {
        let fp: Fingerprint = HEX.parse().unwrap();
        assert_eq!(fp.to_string(), HEX);
        assert_eq!(format!("{fp:?}"), format!("Fingerprint({HEX})"));
    }

    #[test]
    fn parses_every_accepted_spelling() {
        let expected: Fingerprint = HEX.parse().unwrap();
        let colons = HEX
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for spelling in [
            HEX.to_uppercase(),
            colons.clone(),
            format!("sha256:{HEX}"),
            format!("SHA256:{colons}"),
            format!("  {}  ", colons.replace(':', " ")),
        ] {
            assert_eq!(spelling.parse::<Fingerprint>(), Ok(expected), "{spelling}");
        }
    }

    #[test]
    fn groups_of_four_for_people() {
        let fingerprint: Fingerprint = HEX.parse().unwrap();
        assert_eq!(
            fingerprint.grouped(),
            "9f86 d081 884c 7d65 9a2f eaa0 c55a d015 a3bf 4f1b 2b0b 822c d15d 6c15 b0f0 0a08"
        );
    }

    #[test]
    fn the_safety_number_is_the_same_on_both_sides_and_differs_for_another_pair() {
        let a: Fingerprint = HEX.parse().unwrap();
        let b = Fingerprint::of(b"bob");
        let c = Fingerprint::of(b"carol");
        let number = safety_number(&a, &b);
        assert_eq!(number, safety_number(&b, &a));
        assert_ne!(number, safety_number(&a, &c));
        let groups: Vec<&str> = number.split(' ').collect();
        assert_eq!(groups.len(), 6);
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 5 && g.bytes().all(|d| d.is_ascii_digit()))
        );
        // The example in PROTOCOL.md, computed there by another implementation.
        assert_eq!(number, "69546 09777 01764 94769 58323 90345");
    }

    #[test]
    fn rejects_malformed_input() {
        assert_eq!("".parse::<Fingerprint>(), Err(FingerprintError::Empty));
        assert_eq!(" : ".parse::<Fingerprint>(), Err(FingerprintError::Empty));
        assert_eq!(
            "sha256:".parse::<Fingerprint>(),
            Err(FingerprintError::Empty)
        );
        assert_eq!(
            HEX[..62].parse::<Fingerprint>(),
            Err(FingerprintError::WrongLength(62))
        );
        assert_eq!(
            format!("{HEX}00").parse::<Fingerprint>(),
            Err(FingerprintError::WrongLength(66))
        );
        assert_eq!(
            format!("{}g", &HEX[..63]).parse::<Fingerprint>(),
            Err(FingerprintError::NotHex('g'))
        );
        assert_eq!(
            "sha1:abcd".parse::<Fingerprint>(),
            Err(FingerprintError::NotHex('s'))
        );
    }
}
