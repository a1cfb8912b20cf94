//! The command line as clap sees it, and its conversion into a validated [`Config`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, IdentitySource, LinkMode, ListenAddr, Look, Trust};
use crate::fingerprint::Fingerprint;
use crate::identity::{self, IdentityFiles};
use crate::known_peers::{Entry, KnownPeers};
use crate::pairing::InviteCode;
use crate::target::Target;

const EXAMPLE: &str = "\
Example: a session between two terminals
  alice$ chat --name alice --listen 7001
  Fingerprint: 3f1c...          (tell bob this line)
  Listening on port 7001
  Enter the target port number: 7002
  Enter the peer's fingerprint: 9a0b...   (bob's Fingerprint line)

  bob$ chat --name bob --listen 7002 --connect 7001 --peer-fingerprint 3f1c...

Or pair by a one-time code instead of fingerprints, and by name from then on:
  alice$ chat --invite
  Invite code: 7-amber-lantern-echo
    chat --join --connect 192.168.1.20:7001
    (then type the code at its prompt)
  bob$ chat --join --connect 192.168.1.20:7001
  Enter the invite code: 7-amber-lantern-echo
  later: chat --peer alice --connect 192.168.1.20:7001

When only one side can be reached (the other is behind a NAT or a firewall), one
connection carries both directions:
  alice$ chat --peer bob --accept --listen 7001           (the side bob can reach)
  bob$ chat --peer alice --connect 203.0.113.5:7001 --no-listen

Then each line typed in one window appears in the other as `name: text`,
and `transfer FILE...` sends files, stored in the peer's --download-dir once each
one's size and SHA-256 are verified.
Check a fingerprint with: openssl x509 -in ~/.config/chat/alice.crt -noout -fingerprint -sha256
Type /help in a session for its commands.";

/// Peer-to-peer chat over mutually authenticated TLS 1.3, each side pinning the other's certificate.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLE, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Tool>,
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// Helpers that do not start a peer.
#[derive(Debug, Subcommand)]
pub enum Tool {
    /// Create a self-signed identity: DIR/NAME.crt and DIR/NAME.key (ECDSA P-256), and print its fingerprint.
    Certs {
        /// The certificate's common name, shown to the peer, and the files' base name.
        #[arg(long)]
        name: String,
        /// Folder for the two files. [default: the per-user folder, as for --certs-dir]
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replace an existing identity (the old fingerprint stops working).
        #[arg(long)]
        force: bool,
    },
    /// List the peers saved in known_peers, the pins for --peer NAME.
    Peers {
        /// The identity folder that holds known_peers. [default: as for --certs-dir]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Remove a peer from known_peers, for example after it made a new identity.
    Forget {
        /// The peer's name in known_peers.
        name: String,
        /// The identity folder that holds known_peers. [default: as for --certs-dir]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print a certificate's SHA-256 fingerprint (64 lowercase hex digits).
    Fingerprint {
        /// A PEM certificate file.
        file: PathBuf,
    },
}

/// Options for running a peer.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Identity to use: NAME.crt and NAME.key in the --certs-dir folder, created if neither exists. [default: $USER, or "peer"]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Folder that holds named identities. [default: $CHAT_HOME, else the per-user configuration folder's chat/: $XDG_CONFIG_HOME/chat or ~/.config/chat]
    #[arg(long, value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Certificate file to present, instead of a named identity (needs --key).
    #[arg(long, value_name = "FILE", requires = "key", conflicts_with = "name")]
    pub cert: Option<PathBuf>,
    /// Private key file for --cert; must not be readable by group or others.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Where to listen: PORT or HOST:PORT, IPv4 or IPv6. [default: all interfaces, a port the OS picks]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The peer's listener: PORT (on 127.0.0.1) or HOST:PORT. Asked for on standard input if absent.
    #[arg(long, value_name = "TARGET")]
    pub connect: Option<String>,
    /// Dial --connect TARGET and listen for nothing: that one connection carries both directions.
    /// For the side behind a NAT or a firewall; the peer runs with --accept.
    #[arg(long, requires = "connect", conflicts_with_all = ["listen", "map_port", "accept", "invite", "join"])]
    pub no_listen: bool,
    /// Listen, and dial nobody: the peer's one connection (it runs with --connect ... --no-listen)
    /// carries both directions. For the side the peer can reach; no target is asked for.
    #[arg(long, conflicts_with_all = ["connect", "invite", "join"])]
    pub accept: bool,
    /// The SHA-256 fingerprint of the peer's certificate, the only one accepted. Hex, any case, colons and a
    /// "sha256:" prefix allowed. Asked for on standard input if neither this nor --peer-cert is given.
    #[arg(long, value_name = "FP", conflicts_with = "peer_cert")]
    pub peer_fingerprint: Option<String>,
    /// Take the peer's fingerprint from its certificate file.
    #[arg(long, value_name = "FILE")]
    pub peer_cert: Option<PathBuf>,
    /// Trust the peer saved under NAME in known_peers (see `chat peers`). Every peer reached with
    /// --peer-fingerprint, --peer-cert, the prompt or an invite code is saved there under its
    /// certificate's name.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["peer_fingerprint", "peer_cert"])]
    pub peer: Option<String>,
    /// Pair with someone new: print a one-time code, and the command to give them, and wait for them
    /// to join. Nothing to type on either side but that command. The code works once, for 5 minutes.
    #[arg(long, conflicts_with_all = ["connect", "peer_fingerprint", "peer_cert", "peer", "join"])]
    pub invite: bool,
    /// Join the peer that printed this invite code (with --connect, the address it printed). Without
    /// CODE, it is taken from $CHAT_INVITE_CODE (for scripts) or asked for, which keeps it out of the
    /// process list that other users of this machine can read.
    #[arg(long, value_name = "CODE", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["peer_fingerprint", "peer_cert", "peer"])]
    pub join: Option<String>,
    /// Folder where received files are stored (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub download_dir: PathBuf,
    /// Refuse offered files larger than SIZE (bytes, or with K, M, G, T suffix). [default: no limit
    /// beyond the free space in the download folder]
    #[arg(long, value_name = "SIZE")]
    pub max_file_size: Option<String>,
    /// How long to keep trying to reach the peer, at start or after a connection drops
    /// (seconds, or with s, m or h).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub retry_for: String,
    /// Ask the router (PCP or UPnP-IGD) to forward the listening port from its public address, and
    /// print that address for the peer. The mapping is renewed while chat runs and removed at exit.
    /// If the router says no, chat warns and goes on.
    #[arg(long)]
    pub map_port: bool,
    /// A relay to meet the peer through over iroh, instead of the public relays that iroh's
    /// authors run: a URL such as https://relay.example.org (repeat for more; also $CHAT_RELAY,
    /// URLs separated by commas). A relay sees endpoint IDs, addresses, timing and volume, never
    /// what is said or sent.
    #[arg(long, value_name = "URL")]
    pub relay: Vec<String>,
    /// Trust the CA certificates (PEM) in FILE for relays, beside the web's usual roots: for a relay
    /// of your own with a private certificate (repeat for more files).
    #[arg(long, value_name = "FILE")]
    pub relay_ca: Vec<PathBuf>,
    /// Show connection details such as the negotiated TLS cipher suite and key exchange.
    #[arg(short, long)]
    pub verbose: bool,
    /// Never draw progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Start every line shown with the local time, as [HH:MM].
    #[arg(long)]
    pub timestamps: bool,
}

impl PeerArgs {
    /// Validates everything that can be checked before the network is touched.
    pub fn into_config(self) -> Result<Config> {
        let identity = match (self.cert, self.key) {
            (Some(certificate), Some(private_key)) => IdentitySource::Files(IdentityFiles {
                certificate,
                private_key,
            }),
            _ => {
                let name = self.name.unwrap_or_else(default_name);
                identity::validate_name(&name).context("--name")?;
                IdentitySource::Named {
                    dir: config::identity_home(self.certs_dir)?,
                    name,
                }
            }
        };
        let listen_given = self.listen.is_some();
        let listen = match self.listen {
            Some(text) => text.parse().context("--listen")?,
            None => ListenAddr::AllInterfaces(0),
        };
        let connect = self
            .connect
            .map(|text| text.parse::<Target>())
            .transpose()
            .context("--connect")?;
        let links = match (self.no_listen, self.accept) {
            (true, _) => LinkMode::DialOne,
            (_, true) => LinkMode::AcceptOne,
            _ => LinkMode::Two,
        };
        let known_peers = identity.known_peers();
        let hash_cache = identity.hash_cache();
        let stored_record = identity.stored_record();
        let trust = match (self.peer_fingerprint, self.peer_cert, self.peer) {
            _ if self.invite => Trust::Invite,
            _ if self.join.is_some() => {
                let typed = self.join.filter(|code| !code.is_empty());
                let code = typed.or_else(|| std::env::var("CHAT_INVITE_CODE").ok());
                let code = code.map(|code| code.parse::<InviteCode>()).transpose();
                Trust::Join(code.context("--join")?)
            }
            (Some(text), _, _) => {
                Trust::Given(text.parse::<Fingerprint>().context("--peer-fingerprint")?)
            }
            (None, Some(path), _) => {
                let certificate = identity::load_certificate(&path).context("--peer-cert")?;
                Trust::Given(Fingerprint::of(&certificate))
            }
            (None, None, Some(name)) => {
                Trust::Known(find_known(&known_peers, &name).context("--peer")?)
            }
            (None, None, None) => Trust::Ask,
        };
        let max_file_size = self
            .max_file_size
            .map(|text| config::parse_size(&text))
            .transpose()
            .context("--max-file-size")?;
        let retry_for = config::parse_duration(&self.retry_for).context("--retry-for")?;
        let relays = relay_settings(self.relay, &self.relay_ca)?;
        // An invite or a join given no address meets over iroh, and so does a known
        // peer met over iroh before; anything given an address or a port is TCP.
        let tcp_asked = listen_given || connect.is_some() || self.accept || self.map_port;
        let over_iroh = match &trust {
            Trust::Invite => !listen_given && !self.map_port,
            Trust::Join(_) => connect.is_none(),
            Trust::Known(entry) => entry.peer.endpoint.is_some() && !tcp_asked,
            _ => false,
        };

        Ok(Config {
            identity,
            listen,
            connect,
            links,
            trust,
            known_peers,
            hash_cache,
            stored_record,
            download_dir: self.download_dir,
            max_file_size,
            retry_for,
            map_port: self.map_port,
            over_iroh,
            relays,
            look: Look {
                verbose: self.verbose,
                progress: !self.no_progress,
                timestamps: self.timestamps,
            },
        })
    }
}

/// The entry for `name` in the known-peers file at `path`.
fn find_known(path: &Path, name: &str) -> Result<Entry> {
    let peers = KnownPeers::load(path)?;
    if let Some(entry) = peers.find(name) {
        return Ok(entry);
    }
    let names: Vec<String> = peers.entries().map(|entry| entry.peer.name).collect();
    let known = if names.is_empty() {
        "it lists no peer yet".to_owned()
    } else {
        format!("it lists {}", names.join(", "))
    };
    bail!(
        "no peer called {name:?} in {} ({known}); to meet someone new, run chat --invite \
         and have them run chat --join (or pin a fingerprint with --peer-fingerprint): \
         the peer is saved there after that first session",
        path.display()
    )
}

/// The relays from `--relay` (else `$CHAT_RELAY`) and `--relay-ca`.
fn relay_settings(urls: Vec<String>, ca_files: &[PathBuf]) -> Result<crate::link::iroh::Settings> {
    use crate::link::iroh::{Relays, Settings};
    let urls = match urls.is_empty() {
        true => std::env::var("CHAT_RELAY")
            .map(|list| {
                (list.split(','))
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        false => urls,
    };
    let relays = match urls.is_empty() {
        true => Relays::Public,
        false => Relays::Own(
            (urls.iter())
                .map(|url| {
                    url.parse::<iroh::RelayUrl>()
                        .with_context(|| format!("--relay: {url:?} is not a URL"))
                })
                .collect::<Result<_>>()?,
        ),
    };
    let mut relay_roots = Vec::new();
    for path in ca_files {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let roots = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("--relay-ca: cannot read {}", path.display()))?;
        if roots.is_empty() {
            bail!("--relay-ca: {} holds no certificate", path.display());
        }
        relay_roots.extend(roots);
    }
    Ok(Settings {
        relays,
        relay_roots,
    })
}

/// The login name if it makes a valid identity name, else "peer".
fn default_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| identity::validate_name(user).is_ok())
        .unwrap_or_else(|| "peer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rejects_a_malformed_fingerprint_before_anything_starts() {
        let cli = Cli::try_parse_from(["chat", "--peer-fingerprint", "abc"]).unwrap();
        let err = cli.peer.into_config().unwrap_err();
        assert!(format!("{err:#}").contains("--peer-fingerprint"), "{err:#}");
    }

    #[test]
    fn relay_settings_are_checked_before_anything_starts() {
        let config = |args: &[&str]| {
            let mut all = vec!["chat", "--certs-dir", "/nonexistent", "--invite"];
            all.extend(args);
            Cli::try_parse_from(all).unwrap().peer.into_config()
        };
        let err = config(&["--relay", "not a url"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("--relay: \"not a url\""),
            "{err:#}"
        );
        let err = config(&["--relay-ca", "/nonexistent/ca.pem"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("--relay-ca: cannot read /nonexistent/ca.pem"),
            "{err:#}"
        );
        let own = config(&[
            "--relay",
            "https://r.example",
            "--relay",
            "https://s.example",
        ])
        .unwrap();
        assert!(own.over_iroh);
        assert!(
            matches!(own.relays.relays, crate::link::iroh::Relays::Own(ref urls) if urls.len() == 2)
        );
        let tcp = config(&["--listen", "0"]).unwrap();
        assert!(!tcp.over_iroh, "--invite --listen pairs over TCP");
    }
}
