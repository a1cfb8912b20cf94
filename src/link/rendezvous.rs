//! An invite code's rendezvous key, which only the code's holders can find
//! (PROTOCOL.md, "Endpoint keys"). It authenticates nothing: the code is proved by
//! the pairing exchange inside TLS.

use argon2::{Algorithm, Argon2, Params, Version};
use iroh::SecretKey;

use crate::pairing::InviteCode;

/// Argon2id's salt for a code's rendezvous key.
const RENDEZVOUS_SALT: &[u8] = b"chat rendezvous v1";
/// Argon2id's memory in KiB (64 MiB), passes and lanes: about 0.15 s here, so that
/// someone who sees endpoint IDs at a relay cannot try every code within its life.
const RENDEZVOUS_MEMORY_KIB: u32 = 64 * 1024;
const RENDEZVOUS_PASSES: u32 = 3;
const RENDEZVOUS_LANES: u32 = 1;

/// The code's rendezvous key: Argon2id over the code's canonical text. The inviter
/// listens as this key's endpoint for as long as the code lives; the joiner
/// derives the same endpoint ID and dials it.
pub fn rendezvous_key(code: &InviteCode) -> SecretKey {
    let params = Params::new(
        RENDEZVOUS_MEMORY_KIB,
        RENDEZVOUS_PASSES,
        RENDEZVOUS_LANES,
        Some(32),
    )
    .expect("fixed, valid Argon2 parameters");
    let mut seed = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(code.as_password().as_bytes(), RENDEZVOUS_SALT, &mut seed)
        .expect("a code, a fixed salt and 32 output bytes are within Argon2's limits");
    SecretKey::from_bytes(&seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vectors of PROTOCOL.md, checked against Argon2's reference
    /// implementation and an independent Ed25519.
    #[test]
    fn a_code_gives_the_rendezvous_key_of_the_specification() {
        let code: InviteCode = "7-rise-tribe-spill".parse().unwrap();
        let key = rendezvous_key(&code);
        assert_eq!(
            hex::encode(key.to_bytes()),
            "c68d54050bbfd2793cdc97e741226679caa122688ee92df57ac4a08c53610881"
        );
        assert_eq!(
            hex::encode(key.public().as_bytes()),
            "dccded3e30a259b451382137b080906fde97c78bae352ce24f6dfdd622ca211c"
        );
    }

    #[test]
    fn codes_that_differ_give_other_keys() {
        let a: InviteCode = "7-rise-tribe-spill".parse().unwrap();
        let b: InviteCode = "8-rise-tribe-spill".parse().unwrap();
        assert_ne!(rendezvous_key(&a).public(), rendezvous_key(&b).public());
    }
}
