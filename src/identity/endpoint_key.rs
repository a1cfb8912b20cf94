//! The identity's long-term iroh endpoint key, which known peers dial
//! (PROTOCOL.md, "Endpoint keys"). It authenticates nothing: who the peer is stays
//! with the pinned certificate.

use aws_lc_rs::hkdf;
use iroh::SecretKey;
use rustls::pki_types::PrivateKeyDer;

/// HKDF's info for an identity's endpoint key.
const ENDPOINT_KEY_INFO: &[u8] = b"chat endpoint key v1";

/// The identity's long-term endpoint key: HKDF-SHA256 of its private key's DER,
/// with no salt. It is as private as that key, kept in no file of its own, and the
/// same on every run, so a known peer can dial its endpoint ID.
pub fn endpoint_key(private_key: &PrivateKeyDer<'_>) -> SecretKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(private_key.secret_der());
    let mut seed = [0u8; 32];
    prk.expand(&[ENDPOINT_KEY_INFO], Seed)
        .and_then(|okm| okm.fill(&mut seed))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    SecretKey::from_bytes(&seed)
}

/// HKDF output of 32 bytes.
struct Seed;

impl hkdf::KeyType for Seed {
    fn len(&self) -> usize {
        32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivatePkcs8KeyDer;

    /// The test vector of PROTOCOL.md, checked against an independent HKDF and Ed25519.
    #[test]
    fn a_private_key_gives_the_endpoint_key_of_the_specification() {
        let der: Vec<u8> = (0u8..48).collect();
        let key = endpoint_key(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)));
        assert_eq!(
            hex::encode(key.to_bytes()),
            "fce0917067a4d5a43336ce53ef4f3bd2c85eb03fd0123e47f82170d94f5926f7"
        );
    }
}
