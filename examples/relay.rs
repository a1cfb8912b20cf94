//! A relay for the tests and benches: iroh-relay's own server (HTTPS relaying and QUIC
//! address discovery), with a self-signed certificate that only `chat --relay-ca`
//! trusts.
//!
//!     relay IP CA_FILE [PORT]
//!
//! Listens on IP: HTTPS on PORT (else a free one), QUIC address discovery on port
//! 7842 (the port clients assume). Writes its certificate to CA_FILE and its key
//! beside it (CA_FILE.key), or, when both are there, serves with them again, so that
//! a relay restarted on the same port is the same relay to its clients. Prints
//! `Relay at https://IP:PORT` and serves until its standard input closes.

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ip, ca_file, port) = match &args[..] {
        [ip, ca_file] => (ip, ca_file, 0),
        [ip, ca_file, port] => (ip, ca_file, port.parse().expect("PORT is a port")),
        _ => {
            eprintln!("usage: relay IP CA_FILE [PORT]");
            std::process::exit(2);
        }
    };
    let ip: std::net::IpAddr = ip.parse().expect("IP is an address");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(linux::serve(ip, std::path::Path::new(ca_file), port));
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the test relay runs on Linux only");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::IpAddr;
    use std::path::Path;
    use std::sync::Arc;

    use iroh_relay::defaults::DEFAULT_RELAY_QUIC_PORT;
    use iroh_relay::server::{
        CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig,
    };
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::AsyncReadExt;

    pub async fn serve(ip: IpAddr, ca_file: &Path, port: u16) {
        let key_file = ca_file.with_extension("key");
        let (certificate, key) = match (std::fs::read(ca_file), std::fs::read(&key_file)) {
            (Ok(certificate), Ok(key)) => (
                CertificateDer::from_pem_slice(&certificate).expect("CA_FILE holds a certificate"),
                PrivateKeyDer::from_pem_slice(&key).expect("CA_FILE.key holds a key"),
            ),
            _ => {
                let certified = rcgen::generate_simple_self_signed(vec![ip.to_string()])
                    .expect("a self-signed certificate");
                std::fs::write(ca_file, certified.cert.pem()).expect("CA_FILE is writable");
                std::fs::write(&key_file, certified.signing_key.serialize_pem())
                    .expect("CA_FILE.key is writable");
                (
                    certified.cert.der().clone(),
                    PrivateKeyDer::from(PrivatePkcs8KeyDer::from(
                        certified.signing_key.serialize_der(),
                    )),
                )
            }
        };
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS 1.3 with ring")
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .expect("the certificate matches its key");

        let mut relay = RelayConfig::new((ip, 0));
        relay.tls = Some(TlsConfig::new(
            (ip, port),
            CertConfig::Manual {
                server_config: tls.clone(),
            },
        ));
        let mut quic = QuicConfig::new((ip, DEFAULT_RELAY_QUIC_PORT));
        quic.server_config = Some(tls);
        let mut config = ServerConfig::default();
        config.relay = Some(relay);
        config.quic = Some(quic);
        let server = Server::spawn(config).await.expect("the relay starts");
        let https = server.https_addr().expect("an HTTPS relay");
        println!("Relay at https://{https}");
        let mut stdin = tokio::io::stdin();
        let mut sink = [0u8; 64];
        while stdin.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        let _ = server.shutdown().await;
    }
}
