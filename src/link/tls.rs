//! All TLS policy in one place: TLS 1.3 only, X25519MLKEM768 first, and verifiers
//! that trust exactly one pinned certificate in each direction.
//!
//! The verifiers replace chain validation with a fingerprint comparison, but still
//! check the handshake signature through the crypto provider: that signature is what
//! proves the peer holds the private key of the pinned certificate.

use std::io;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::NoServerSessionStorage;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, CommonState, DigitallySignedStruct,
    DistinguishedName, OtherError, ServerConfig, SignatureScheme,
};
use thiserror::Error;
use tokio::sync::watch;

use crate::identity::Identity;
use crate::identity::fingerprint::Fingerprint;

/// Application protocol names, newest first, so that a `chat` connection cannot be
/// confused with another protocol and the two peers agree on a version. The listener
/// picks the first of its own that the dialer offers.
pub const ALPN: [&[u8]; 5] = [b"chat/8", b"chat/6", b"chat/4", b"chat/2", b"chat/1"];

/// The application protocols of single-connection mode (`--no-listen`, `--accept`),
/// newest first: version 9 (with unhashed offers), version 7 (with credit), version 5
/// (with folders), version 3. A dialer offers only its own
/// mode's names, and an accepting listener takes only these, so a two-connection
/// dialer is refused by it and never misunderstood.
pub const ONE_CONNECTION_ALPN: [&[u8]; 4] = [b"chat/9", b"chat/7", b"chat/5", b"chat/3"];

/// What a two-connection listener takes: its own mode first, then a connection that
/// carries both directions (a peer that could reach us but that we cannot reach, or
/// a `--no-listen` dialer). Its dialer never offers names of both modes at once.
const TWO_CONNECTION_LISTENER_ALPN: [&[u8]; 9] = [
    b"chat/8", b"chat/6", b"chat/4", b"chat/2", b"chat/1", b"chat/9", b"chat/7", b"chat/5",
    b"chat/3",
];

/// The application protocol of a pairing connection (PROTOCOL.md §12): a session
/// listener does not offer it, so an invite code used twice meets a clear refusal.
pub const PAIRING_ALPN: &[u8] = b"chat-pair/1";

/// The RFC 9266 label of the exporter value that binds a pairing to its TLS connection.
const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// The protocol version a finished handshake agreed on: the number in `chat/N`, or
/// 1 (a dialer that offers no ALPN is not refused for that alone, except by a
/// listener in single-connection mode).
pub fn negotiated_version(state: &CommonState) -> u16 {
    match state.alpn_protocol() {
        Some(b"chat/9") => 9,
        Some(b"chat/8") => 8,
        Some(b"chat/7") => 7,
        Some(b"chat/6") => 6,
        Some(b"chat/5") => 5,
        Some(b"chat/4") => 4,
        Some(b"chat/3") => 3,
        Some(b"chat/2") => 2,
        _ => 1,
    }
}

/// Whether a connection of this version carries both directions (section 13).
pub fn carries_both(version: u16) -> bool {
    matches!(version, 3 | 5 | 7 | 9)
}

/// The application protocols a dialer offers in one mode or the other.
fn dialer_alpn(one_connection: bool) -> &'static [&'static [u8]] {
    if one_connection {
        &ONE_CONNECTION_ALPN
    } else {
        &ALPN
    }
}

/// The application protocols a listener takes: an accepting one only its own.
fn listener_alpn(one_connection: bool) -> &'static [&'static [u8]] {
    if one_connection {
        &ONE_CONNECTION_ALPN
    } else {
        &TWO_CONNECTION_LISTENER_ALPN
    }
}

/// The peer presented a certificate other than the pinned one.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("certificate fingerprint mismatch: expected {expected}, presented {presented}")]
pub struct PinMismatch {
    pub expected: Fingerprint,
    pub presented: Fingerprint,
}

/// Why a TLS configuration could not be built from our identity.
#[derive(Debug, Error)]
#[error("cannot use our certificate and key for TLS: {0}")]
pub struct TlsConfigError(#[from] rustls::Error);

/// What was negotiated, for verbose output and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSummary {
    pub version: String,
    pub cipher_suite: String,
    pub key_exchange: String,
}

/// aws-lc-rs for the key exchange (it has ML-KEM), signatures and randomness,
/// preferring the post-quantum hybrid and keeping classic groups for other clients;
/// ring for the record ciphers, the same TLS 1.3 suites in the same order: its
/// AES-GCM uses VAES with AVX2 where the processor has them, and aws-lc's only
/// with AVX-512.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites = rustls::crypto::ring::default_provider().cipher_suites;
    provider.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
    ];
    Arc::new(provider)
}

/// The one fingerprint a session trusts, read by both of its verifiers at every
/// handshake. A person who mistyped it may enter it again; handshakes from then on
/// check the new one.
#[derive(Debug, Clone)]
pub struct Pin(Arc<watch::Sender<Fingerprint>>);

impl Pin {
    pub fn new(fingerprint: Fingerprint) -> Self {
        Pin(Arc::new(watch::Sender::new(fingerprint)))
    }

    pub fn current(&self) -> Fingerprint {
        *self.0.borrow()
    }

    pub fn replace(&self, fingerprint: Fingerprint) {
        self.0.send_replace(fingerprint);
    }

    /// Changes from now on.
    pub fn changes(&self) -> watch::Receiver<Fingerprint> {
        self.0.subscribe()
    }
}

impl From<Fingerprint> for Pin {
    fn from(fingerprint: Fingerprint) -> Self {
        Pin::new(fingerprint)
    }
}

/// The listening side: requires a client certificate and accepts only `pin`, in
/// single-connection mode (`--accept`) or with one connection per direction, where
/// it takes a connection for both directions too.
pub fn server_config(
    identity: &Identity,
    pin: impl Into<Pin>,
    one_connection: bool,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    build_server_config(
        identity,
        Trusts::Pin(pin.into()),
        listener_alpn(one_connection),
    )
}

/// The listening side of a pairing: requires a client certificate, any one, whose
/// key the handshake proves; the pairing exchange then decides whom to trust.
pub fn pairing_server_config(identity: &Identity) -> Result<Arc<ServerConfig>, TlsConfigError> {
    build_server_config(identity, Trusts::AnyoneForPairing, &[PAIRING_ALPN])
}

fn build_server_config(
    identity: &Identity,
    trusts: Trusts,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = crypto_provider();
    let verifier = PinVerifier {
        trusts,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(
            vec![identity.certificate.clone()],
            identity.private_key.clone_key(),
        )?;
    config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The connecting side: presents our certificate and accepts only a server matching
/// `pin`, in single-connection mode or with one connection per direction.
pub fn client_config(
    identity: &Identity,
    pin: impl Into<Pin>,
    one_connection: bool,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    build_client_config(
        identity,
        Trusts::Pin(pin.into()),
        dialer_alpn(one_connection),
    )
}

/// The connecting side of a pairing: any server certificate whose key the
/// handshake proves; the pairing exchange then decides.
pub fn pairing_client_config(identity: &Identity) -> Result<Arc<ClientConfig>, TlsConfigError> {
    build_client_config(identity, Trusts::AnyoneForPairing, &[PAIRING_ALPN])
}

fn build_client_config(
    identity: &Identity,
    trusts: Trusts,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = crypto_provider();
    let verifier = PinVerifier {
        trusts,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(
            vec![identity.certificate.clone()],
            identity.private_key.clone_key(),
        )?;
    config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
    config.enable_sni = false;
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// What binds a pairing to one TLS connection: its exporter value (RFC 8446 §7.5,
/// with RFC 9266's label and no context) and both certificates' fingerprints.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionBinding {
    pub exporter: [u8; 32],
    pub client: Fingerprint,
    pub server: Fingerprint,
}

/// Reads the binding of a finished TLS 1.3 handshake in which both sides presented
/// a certificate; `ours` is the fingerprint of the certificate we presented.
pub fn binding(
    connection: &rustls::ConnectionCommon<impl Sized>,
    ours: Fingerprint,
    we_are_client: bool,
) -> Result<ConnectionBinding, rustls::Error> {
    if connection.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return Err(rustls::Error::General("pairing needs TLS 1.3".into()));
    }
    let theirs = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| Fingerprint::of(certificate))
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    let exporter = connection.export_keying_material([0u8; 32], CHANNEL_BINDING_LABEL, None)?;
    let (client, server) = if we_are_client {
        (ours, theirs)
    } else {
        (theirs, ours)
    };
    Ok(ConnectionBinding {
        exporter,
        client,
        server,
    })
}

/// Reads what a finished handshake negotiated.
pub fn summarize(state: &CommonState) -> TlsSummary {
    let unknown = || "unknown".to_owned();
    TlsSummary {
        version: state
            .protocol_version()
            .map_or_else(unknown, |v| format!("{v:?}")),
        cipher_suite: state
            .negotiated_cipher_suite()
            .map_or_else(unknown, |s| format!("{:?}", s.suite())),
        key_exchange: state
            .negotiated_key_exchange_group()
            .map_or_else(unknown, |g| format!("{:?}", g.name())),
    }
}

/// The pin mismatch behind a failed handshake, if that is why it failed.
pub fn pin_mismatch(err: &io::Error) -> Option<&PinMismatch> {
    match rustls_error(err)? {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.0.downcast_ref(),
        _ => None,
    }
}

/// A readable account of a failed handshake; names both fingerprints on a pin mismatch.
pub fn explain(err: &io::Error) -> String {
    match pin_mismatch(err) {
        Some(mismatch) => mismatch.to_string(),
        None => err.to_string(),
    }
}

/// The alert the peer sent, if the handshake or connection failed because of one.
pub fn received_alert(err: &io::Error) -> Option<AlertDescription> {
    match rustls_error(err)? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

fn rustls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whom a verifier accepts.
#[derive(Debug)]
enum Trusts {
    /// Exactly one certificate.
    Pin(Pin),
    /// Any certificate, on a pairing connection, which carries nothing but the
    /// pairing exchange that then decides.
    AnyoneForPairing,
}

/// Trusts exactly one certificate, the one whose fingerprint is `pin` (or, pairing,
/// any); serves as the server verifier on the connecting side and the client
/// verifier on the listening side. Either way the handshake signature is checked.
#[derive(Debug)]
struct PinVerifier {
    trusts: Trusts,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinVerifier {
    fn check_pin(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let pin = match &self.trusts {
            Trusts::Pin(pin) => pin,
            Trusts::AnyoneForPairing => return Ok(()),
        };
        let presented = Fingerprint::of(end_entity);
        let expected = pin.current();
        if presented == expected {
            return Ok(());
        }
        let mismatch = PinMismatch {
            expected,
            presented,
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(mismatch)),
        )))
    }

    fn refuse_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check_pin(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_pin(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::refuse_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls13_suites(provider: &CryptoProvider) -> Vec<rustls::CipherSuite> {
        provider
            .cipher_suites
            .iter()
            .filter(|suite| suite.tls13().is_some())
            .map(|suite| suite.suite())
            .collect()
    }

    #[test]
    fn the_record_ciphers_are_the_tls13_suites_aws_lc_offers_in_its_order() {
        let ours = tls13_suites(&crypto_provider());
        assert_eq!(ours, tls13_suites(&aws_lc_rs::default_provider()));
        assert_eq!(ours[0], rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
    }

    #[test]
    fn the_post_quantum_hybrid_comes_first() {
        let provider = crypto_provider();
        assert_eq!(
            provider.kx_groups[0].name(),
            rustls::NamedGroup::X25519MLKEM768
        );
    }
}
