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
