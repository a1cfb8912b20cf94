//! The command line as clap sees it, and its conversion into a validated [`Config`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::config::{self, Config, IdentitySource, LinkMode, ListenAddr, Look, Trust};
use crate::identity::fingerprint::Fingerprint;
use crate::identity::known_peers::{Entry, KnownPeers};
use crate::identity::{self, IdentityFiles};
use crate::link::target::Target;
use crate::pairing::InviteCode;

/// The examples under `--help`: the way most people start, by code, first.
const EXAMPLE: &str = "\
Examples:
  alice$ chat --invite        prints a one-time code, such as 7-amber-lantern-echo
  bob$   chat --join          asks for that code; the two are then paired and chat
  later: chat --peer bob      on alice's side, chat --peer alice on bob's

In a session: type to chat, `transfer FILE` or `transfer DIR` to send, /help for more.
The whole manual: chat manpage | man -l -";

/// What the manual adds after the options: the other ways to start a session.
const MORE_EXAMPLES: &str = "\
Pair by a one-time code over the internet (through iroh's relays, then directly where
the routers allow):
  alice$ chat --invite
  bob$ chat --join
  later: chat --peer bob (alice) and chat --peer alice (bob)

Pair by code over TCP, where one side can reach the other:
  alice$ chat --invite --listen 7001
  bob$ chat --join --connect 192.168.1.20:7001

Exchange fingerprints instead of a code:
  alice$ chat --listen 7001
  Fingerprint: 3f1c...          (tell bob this line)
  Enter the target port number: 7002
  Enter the peer's fingerprint: 9a0b...   (bob's Fingerprint line)
  bob$ chat --listen 7002 --connect 7001 --peer-fingerprint 3f1c...

When only one side can be reached, one connection carries both directions:
  alice$ chat --peer bob --accept --listen 7001           (the side bob can reach)
  bob$ chat --peer alice --connect 203.0.113.5:7001 --no-listen

Each line typed in one window appears in the other as `name: text`, and `transfer
FILE...` sends files, stored in the peer's --download-dir once each one's size and
SHA-256 are verified. Check a fingerprint with: openssl x509 -in
~/.config/chat/alice.crt -noout -fingerprint -sha256. Type /help in a session for its
commands.";

/// The option groups of `--help`, in the order a person needs them.
const PAIRING: &str = "Pairing";
const CONNECTING: &str = "Connecting";
const TRANSFERS: &str = "Transfers";
const IDENTITY: &str = "Identity";
const OUTPUT: &str = "Output";

/// Peer-to-peer chat and file transfer over mutually pinned TLS 1.3.
///
/// Two people pair once with a one-time code (or by exchanging fingerprints), then
/// meet by name. Every line and every file travels inside TLS 1.3 that each side
/// pins to the other's certificate; received files are stored only once their size
/// and SHA-256 check out.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = EXAMPLE,
    after_long_help = MORE_EXAMPLES,
    args_conflicts_with_subcommands = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Tool>,
    #[command(flatten)]
    pub peer: PeerArgs,
    /// Print help (the whole manual: chat manpage).
    #[arg(short, long, action = ArgAction::HelpShort, help_heading = OUTPUT)]
    help: Option<bool>,
    /// Print the version.
    #[arg(short = 'V', long, action = ArgAction::Version, help_heading = OUTPUT)]
    version: Option<bool>,
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
    /// Print a shell's completion script for chat (see the README for where it goes).
    Completions {
        /// The shell: bash, zsh, fish, powershell or elvish.
        shell: Shell,
    },
    /// Print chat's manual page, in roff (read it with: chat manpage | man -l -).
    Manpage,
}

/// Options for running a peer. The first paragraph of each is its line in
/// `--help`; the rest is for the manual page.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Pair with someone new: print a one-time code for them.
    ///
    /// Prints the code, and the command to give them, and waits for them to join.
    /// Nothing to type on either side but that command. The code works once, for 5
    /// minutes.
    #[arg(long, help_heading = PAIRING, conflicts_with_all = ["connect", "peer_fingerprint", "peer_cert", "peer", "join"])]
    pub invite: bool,
    /// Join the peer that printed an invite code.
    ///
    /// With --connect, at the address it printed. Without CODE, the code is taken
    /// from $CHAT_INVITE_CODE (for scripts) or asked for, which keeps it out of the
    /// process list that other users of this machine can read.
    #[arg(long, help_heading = PAIRING, value_name = "CODE", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["peer_fingerprint", "peer_cert", "peer"])]
    pub join: Option<String>,
    /// Meet the peer saved under NAME by an earlier session (chat peers lists them).
    ///
    /// Every peer reached with --peer-fingerprint, --peer-cert, the prompt or an
    /// invite code is saved in known_peers under its certificate's name.
    #[arg(long, help_heading = PAIRING, value_name = "NAME", conflicts_with_all = ["peer_fingerprint", "peer_cert"])]
    pub peer: Option<String>,
    /// Trust only the peer with this certificate fingerprint.
    ///
    /// The SHA-256 of the peer's certificate: hex, any case, colons and a "sha256:"
    /// prefix allowed. Asked for on standard input if neither this nor --peer-cert
    /// nor any other way of pairing is given.
    #[arg(long, help_heading = PAIRING, value_name = "FP", conflicts_with = "peer_cert")]
    pub peer_fingerprint: Option<String>,
    /// Trust only the peer with this certificate file.
    #[arg(long, help_heading = PAIRING, value_name = "FILE")]
    pub peer_cert: Option<PathBuf>,
    /// Dial the peer's listener: PORT (on 127.0.0.1) or HOST:PORT.
    ///
    /// Asked for on standard input if absent, unless pairing or a known peer met
    /// over iroh says where the peer is.
    #[arg(long, help_heading = CONNECTING, value_name = "TARGET")]
    pub connect: Option<String>,
    /// Listen on PORT or HOST:PORT, IPv4 or IPv6.
    ///
    /// [default: all interfaces, a port the system picks]
    #[arg(long, help_heading = CONNECTING, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Listen and dial nobody: for the side the peer can reach.
    ///
    /// The peer's one connection (it runs with --connect ... --no-listen) carries
    /// both directions; no target is asked for.
    #[arg(long, help_heading = CONNECTING, conflicts_with_all = ["connect", "invite", "join"])]
    pub accept: bool,
    /// Dial --connect and listen for nothing: for the side behind a NAT.
    ///
    /// That one connection carries both directions; the peer runs with --accept.
    #[arg(long, help_heading = CONNECTING, requires = "connect", conflicts_with_all = ["listen", "map_port", "accept", "invite", "join"])]
    pub no_listen: bool,
    /// Ask the router to forward the listening port (PCP or UPnP-IGD).
    ///
    /// Prints the public address for the peer. The mapping is renewed while chat
    /// runs and removed at exit. If the router says no, chat warns and goes on.
    #[arg(long, help_heading = CONNECTING)]
    pub map_port: bool,
    /// Keep trying to reach the peer this long (seconds, or with s, m or h).
    ///
    /// At start, and after a connection drops.
    #[arg(long, help_heading = CONNECTING, value_name = "DURATION", default_value = "5m")]
    pub retry_for: String,
    /// Meet the peer through this relay over iroh (repeatable).
    ///
    /// Instead of the public relays that iroh's authors run: a URL such as
    /// https://relay.example.org (repeat for more; also $CHAT_RELAY, URLs separated
    /// by commas). A relay sees endpoint IDs, addresses, timing and volume, never
    /// what is said or sent.
    #[arg(long, help_heading = CONNECTING, value_name = "URL")]
    pub relay: Vec<String>,
    /// Trust the CA certificates (PEM) in FILE for relays (repeatable).
    ///
    /// Beside the web's usual roots: for a relay of your own with a private
    /// certificate (also $CHAT_RELAY_CA, files separated by commas).
    #[arg(long, help_heading = CONNECTING, value_name = "FILE")]
    pub relay_ca: Vec<PathBuf>,
    /// Do not look for the peer on the local network (mDNS).
    ///
    /// Over iroh, chat announces its endpoint IDs and IP addresses to the local
    /// network and looks the peer's up there, so that two machines on one network
    /// meet with no relay reachable. Anyone on that network can then see that an
    /// endpoint is there, and recognise it when it comes back. Also $CHAT_NO_MDNS=1.
    #[arg(long, help_heading = CONNECTING)]
    pub no_mdns: bool,
    /// Store received files in DIR (created if missing).
    #[arg(long, help_heading = TRANSFERS, value_name = "DIR", default_value = ".")]
    pub download_dir: PathBuf,
    /// Refuse offered files larger than SIZE (bytes, or with K, M, G, T).
    ///
    /// [default: no limit beyond the free space in the download folder]
    #[arg(long, help_heading = TRANSFERS, value_name = "SIZE")]
    pub max_file_size: Option<String>,
    /// Use the identity NAME, created if missing [default: your login name].
    ///
    /// NAME.crt and NAME.key in the --certs-dir folder, created if neither exists.
    /// [default: $USER if it makes a valid name, else "peer"]
    #[arg(long, help_heading = IDENTITY, value_name = "NAME")]
    pub name: Option<String>,
    /// Keep identities in DIR.
    ///
    /// [default: $CHAT_HOME, else the per-user configuration folder's chat/:
    /// $XDG_CONFIG_HOME/chat or ~/.config/chat]
    #[arg(long, help_heading = IDENTITY, value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Present this certificate file instead of a named identity (needs --key).
    #[arg(long, help_heading = IDENTITY, value_name = "FILE", requires = "key", conflicts_with = "name")]
    pub cert: Option<PathBuf>,
    /// The private key file for --cert; readable by you alone.
    #[arg(long, help_heading = IDENTITY, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Show connection details, such as the TLS cipher suite and key exchange.
    #[arg(short, long, help_heading = OUTPUT)]
    pub verbose: bool,
    /// Never draw progress bars.
    #[arg(long, help_heading = OUTPUT)]
    pub no_progress: bool,
    /// Start every line shown with the local time, as [HH:MM].
    #[arg(long, help_heading = OUTPUT)]
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
        let mdns = !(self.no_mdns || env_flag("CHAT_NO_MDNS"));
        let relays = relay_settings(self.relay, &self.relay_ca, mdns)?;
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

/// Writes `shell`'s completion script for `chat`.
pub fn write_completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "chat", out);
}

/// Writes `chat`'s manual page, in roff: the command with its options under their
/// headings, then each helper command with its own. One page rather than one per
/// helper (as git has), since the helpers are few and small.
pub fn write_manual(out: &mut dyn Write) -> io::Result<()> {
    let command = Cli::command();
    clap_mangen::Man::new(command.clone()).render(out)?;
    for tool in command.get_subcommands() {
        let name = format!("chat {}", tool.get_name());
        let has_options = tool.get_arguments().any(|arg| !arg.is_hide_set());
        let page = clap_mangen::Man::new(tool.clone().bin_name(name.clone()));
        let mut section = Vec::new();
        page.render_synopsis_section(&mut section)?;
        page.render_description_section(&mut section)?;
        if has_options {
            page.render_options_section(&mut section)?;
        }
        // One section per helper: its own headings become subsections of it.
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let section = String::from_utf8_lossy(&section).replace(".SH ", ".SS ");
        out.write_all(section.as_bytes())?;
    }
    Ok(())
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

/// The relays from `--relay` (else `$CHAT_RELAY`) and `--relay-ca` (else
/// `$CHAT_RELAY_CA`); `mdns`, whether to look on the local network too.
fn relay_settings(
    urls: Vec<String>,
    ca_files: &[PathBuf],
    mdns: bool,
) -> Result<crate::link::iroh::Settings> {
    use crate::link::iroh::{Relays, Settings};
    let urls = match urls.is_empty() {
        true => listed_in("CHAT_RELAY"),
        false => urls,
    };
    let ca_files = match ca_files.is_empty() {
        true => listed_in("CHAT_RELAY_CA")
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        false => ca_files.to_vec(),
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
    for path in &ca_files {
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
        mdns,
    })
}

/// The items of the comma-separated list in the environment variable `name`.
fn listed_in(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|list| {
            (list.split(','))
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the environment variable `name` is set to anything but empty or `0`.
fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| !value.is_empty() && value != "0")
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
