//! Wiring: identity, listener, prompts, the session, the front end, and exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;

use crate::cli::Tool;
use crate::config::{Config, IdentitySource, LinkMode, Trust};
use crate::identity::endpoint_key::endpoint_key;
use crate::identity::fingerprint::Fingerprint;
use crate::identity::known_peers::{self, KnownPeers};
use crate::identity::trust;
use crate::identity::{self, Identity, IdentityFiles};
use crate::link::Route;
use crate::link::addresses;
use crate::link::dialer::WrongPin;
use crate::link::iroh as transport;
use crate::link::portmap::{self, PortMapping};
use crate::link::tls::Pin;
use crate::pairing::invitation::{self, Rendezvous};
use crate::pairing::{CodeError, InviteCode};
use crate::platform::{self, Stop};
use crate::session::event::{Command, Event};
use crate::session::{self, Links, SessionEnd, SessionError, SessionSetup};
use crate::transfer::hash_cache::HashCache;
use crate::transfer::incoming::ReceiveLimits;
use crate::transfer::stored::StoredRecord;
use crate::ui;
use crate::ui::Console;
use crate::ui::input::{self, Input};
use crate::ui::sanitize;

/// How long a stop signal gives the graceful close before the process ends anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(7);
/// Addresses listed at start; a machine with many interfaces has more.
const ADDRESSES_SHOWN: usize = 4;
/// How long the end of a session waits for its last lines to be printed.
const PRINTER_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// A clean session, or a helper command that did its job.
    Success = 0,
    /// Any other error (I/O, bad files, lost input).
    Failure = 1,
    /// Invalid command-line or typed-in settings.
    Usage = 2,
    /// The peer is not the pinned one, or it refused our certificate.
    Refused = 3,
    /// Stopped by Ctrl-C.
    Interrupted = 130,
}

/// Runs `chat certs` or `chat fingerprint`.
pub fn run_tool(tool: Tool) -> Exit {
    let result = match tool {
        Tool::Certs { name, dir, force } => {
            let dir = match crate::config::identity_home(dir) {
                Ok(dir) => dir,
                Err(err) => {
                    ui::status(&format!("chat: error: {err:#}"));
                    return Exit::Failure;
                }
            };
            let files = IdentityFiles::named(&dir, &name);
            identity::create(&files, &name, force).map(|identity| {
                ui::status(&format!(
                    "Created identity {name}: {} and {}",
                    files.certificate.display(),
                    files.private_key.display()
                ));
                ui::say(&format!("Fingerprint: {}", identity.fingerprint));
            })
        }
        Tool::Fingerprint { file } => identity::load_certificate(&file)
            .map(|certificate| ui::say(&Fingerprint::of(&certificate).to_string())),
        Tool::Completions { shell } => {
            crate::cli::write_completions(shell, &mut std::io::stdout().lock());
            Ok(())
        }
        Tool::Manpage => {
            return match crate::cli::write_manual(&mut std::io::stdout().lock()) {
                Ok(()) => Exit::Success,
                // Read only in part (`chat manpage | head`): nothing went wrong.
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Exit::Success,
                Err(err) => {
                    ui::status(&format!("chat: error: cannot write the manual page: {err}"));
                    Exit::Failure
                }
            };
        }
        Tool::Peers { dir } => return known_peers_tool(dir, list_peers),
        Tool::Forget { name, dir } => return known_peers_tool(dir, |path| forget(path, &name)),
    };
    match result {
        Ok(()) => Exit::Success,
        Err(err) => {
            ui::status(&format!("chat: error: {err}"));
            Exit::Failure
        }
    }
}

/// Runs `chat peers` or `chat forget` on the known-peers file of the identity folder.
fn known_peers_tool(dir: Option<PathBuf>, run: impl FnOnce(&Path) -> Result<()>) -> Exit {
    let result =
        crate::config::identity_home(dir).and_then(|home| run(&home.join(known_peers::FILE_NAME)));
    match result {
        Ok(()) => Exit::Success,
        Err(err) => {
            ui::status(&format!("chat: error: {err:#}"));
            Exit::Failure
        }
    }
}

fn list_peers(path: &Path) -> Result<()> {
    let peers = KnownPeers::load(path)?;
    let mut any = false;
    for entry in peers.entries() {
        any = true;
        let peer = entry.peer;
        ui::say(&format!(
            "{}  {}  first seen {}, last seen {}",
            peer.name,
            peer.fingerprint.abbreviated(),
            peer.first_seen,
            peer.last_seen
        ));
    }
    if !any {
        ui::status(&format!("No known peers yet in {}", path.display()));
    }
    Ok(())
}

fn forget(path: &Path, name: &str) -> Result<()> {
    if known_peers::update(path, |peers| {
        let removed = peers.remove(name);
        (removed, removed)
    })? {
        ui::status(&format!("Removed {name} from {}", path.display()));
        Ok(())
    } else {
        bail!("no peer called {name:?} in {}", path.display())
    }
}

/// Runs a peer until its session ends.
pub fn run_peer(config: Config) -> Exit {
    exit_on_panic();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            ui::status(&format!(
                "chat: error: cannot start the async runtime: {err}"
            ));
            return Exit::Failure;
        }
    };
    let known_peers = config.known_peers.clone();
    let known = match &config.trust {
        Trust::Known(entry) => Some(entry.clone()),
        _ => None,
    };
    let exit = runtime.block_on(async {
        let mut mapping = None;
        let ended = peer(config, &mut mapping).await;
        if let Some(mapping) = mapping {
            mapping.remove().await;
        }
        match ended {
            Ok(exit) => exit,
            Err(err) => {
                ui::restore_terminal();
                let changed = match (err.downcast_ref::<SessionError>(), &known) {
                    (Some(SessionError::Refused(refusal)), Some(entry)) => {
                        trust::changed_certificate(&known_peers, entry, refusal)
                    }
                    _ => None,
                };
                match changed {
                    Some(warning) => ui::status(&warning),
                    None if err.is::<invitation::NameTaken>() => ui::status(&err.to_string()),
                    None => ui::status(&format!("chat: error: {err:#}")),
                }
                match err.downcast_ref::<SessionError>() {
                    Some(SessionError::Refused(_)) => Exit::Refused,
                    _ if err.is::<UsageError>() => Exit::Usage,
                    _ if invitation::refused(&err) => Exit::Refused,
                    _ => Exit::Failure,
                }
            }
        }
    });
    // The standard input thread may be blocked in a read; do not wait for it.
    runtime.shutdown_background();
    // Also when the terminal thread did not finish in time.
    ui::restore_terminal();
    exit
}

/// A panic in any thread or task ends the program with the panic's message, instead
/// of leaving a half-alive peer that still acknowledges lines it will never show.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        ui::restore_terminal();
        report(info);
        ui::status("chat: internal error; exiting");
        std::process::exit(Exit::Failure as i32);
    }));
}

/// A typed-in answer that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// `mapping` receives the router's port mapping, if `--map-port` made one, for the
/// caller to remove however the session ends.
async fn peer(config: Config, mapping: &mut Option<PortMapping>) -> Result<Exit> {
    let identity = load_identity(&config.identity)?;
    check_download_folder(&config.download_dir)?;
    // Over iroh, the identity's long-term endpoint, which known peers dial.
    let endpoint = match config.over_iroh {
        true => Some(
            transport::Node::open(endpoint_key(&identity.private_key), &config.relays)
                .await
                .context("cannot start the iroh endpoint")?,
        ),
        false => None,
    };
    let listener = match config.links {
        _ if endpoint.is_some() => None,
        LinkMode::DialOne => None,
        LinkMode::Two | LinkMode::AcceptOne => Some(
            config
                .listen
                .bind()
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?,
        ),
    };
    // A person reads the fingerprint out, once; a script reads it whole.
    if ui::at_a_terminal() {
        ui::fingerprint_rows(&identity.fingerprint)
            .iter()
            .for_each(|row| ui::say(row));
    } else {
        ui::say(&format!("Fingerprint: {}", identity.fingerprint));
        ui::status(&format!(
            "Your fingerprint, to read out: {}",
            identity.fingerprint.grouped()
        ));
    }
    let mut port = 0;
    if let Some(listener) = &listener {
        let listening = listener
            .local_addr()
            .context("cannot read the listening port")?;
        port = listening.port();
        ui::say(&format!("Listening on port {port}"));
        show_reachable(listening);
        if config.map_port {
            *mapping = map_port(port).await;
        }
    }

    // Before the front end takes the terminal: nothing is typed while pairing.
    let paired = match &config.trust {
        Trust::Invite => {
            let rendezvous = match (&endpoint, &listener) {
                (Some(endpoint), _) => Rendezvous::Iroh {
                    settings: &config.relays,
                    ours: endpoint,
                },
                (None, Some(listener)) => Rendezvous::Tcp(listener),
                (None, None) => bail!("--invite needs a listener"),
            };
            let paired = invitation::invite(
                rendezvous,
                &identity,
                &config.known_peers,
                config.look.verbose,
            )
            .await?;
            Some(paired)
        }
        Trust::Join(code) => {
            let code = match code {
                Some(code) => code.clone(),
                None => ask_invite_code().await?,
            };
            let paired = match (&endpoint, &config.connect) {
                (Some(endpoint), _) => {
                    invitation::join_over_iroh(
                        endpoint,
                        &identity,
                        &config.known_peers,
                        &code,
                        config.retry_for,
                    )
                    .await?
                }
                (None, Some(target)) => {
                    invitation::join(
                        target,
                        &identity,
                        &config.known_peers,
                        &code,
                        port,
                        config.retry_for,
                    )
                    .await?
                }
                (None, None) => bail!("--join needs --connect, or iroh"),
            };
            Some(paired)
        }
        _ => None,
    };
    // Where the session dials: over iroh, the endpoint the pairing confirmed.
    let iroh_peer = match (paired.as_ref().map(|paired| &paired.session), &config.trust) {
        (Some(Route::Iroh { peer, .. }), _) => Some(*peer),
        (None, Trust::Known(entry)) => entry.peer.endpoint,
        _ => None,
    };
    let (mut console, mut lines) = Console::start(&identity.name, config.look)?;
    let asks_target = paired.is_none()
        && config.connect.is_none()
        && config.links != LinkMode::AcceptOne
        && endpoint.is_none();
    let asks_pin = paired.is_none() && matches!(config.trust, Trust::Ask);
    if console.is_interactive() {
        for line in waiting_for_answers(asks_target, asks_pin) {
            console.note(line);
        }
    }
    let target = match (&paired, config.connect) {
        _ if config.links == LinkMode::AcceptOne || endpoint.is_some() => None,
        (Some(paired), _) => match &paired.session {
            Route::Tcp(addr) => Some(
                addr.to_string()
                    .parse()
                    .context("the paired peer's address")?,
            ),
            Route::Iroh { .. } => None,
        },
        (None, Some(target)) => Some(target),
        (None, None) => {
            let question = "Enter the target port number: ";
            match ask(&console, &mut lines, question, "--connect").await {
                Ok(target) => Some(target),
                Err(err) => return Err(console.close_with(err).await),
            }
        }
    };
    let peer = match (&paired, &config.trust) {
        (Some(paired), _) => paired.fingerprint,
        (None, Trust::Given(peer)) => *peer,
        (None, Trust::Known(entry)) => entry.peer.fingerprint,
        (None, _) => {
            let question = "Enter the peer's fingerprint: ";
            match ask(&console, &mut lines, question, "--peer-fingerprint").await {
                Ok(peer) => peer,
                Err(err) => return Err(console.close_with(err).await),
            }
        }
    };
    if peer == identity.fingerprint {
        console.note(
            "Note: the peer fingerprint is our own; this only works when talking to ourselves",
        );
    }

    if let Trust::Known(entry) = &config.trust {
        console.note(&format!(
            "Trusting {} as saved in known peers ({})",
            entry.peer.name,
            entry.peer.fingerprint.abbreviated()
        ));
    }
    console.note(&ui::lines::safety_line(&identity.fingerprint, &peer));
    if let (Some(_), Trust::Known(entry)) = (&endpoint, &config.trust) {
        console.note(&format!(
            "Waiting for {} over iroh; it connects as soon as both sides run (Ctrl-C to leave)",
            sanitize::for_terminal(&entry.peer.name)
        ));
    }

    let (commands, commands_rx) = mpsc::channel(1024);
    let (events, session_events) = mpsc::unbounded_channel();
    let (shown_events, events_rx) = mpsc::unbounded_channel();
    tokio::spawn(trust::save_peers(
        session_events,
        shown_events,
        config.known_peers.clone(),
    ));
    let at_finish = console.at_finish();
    // A saved pin is changed only by a person, with `chat forget`; one from pairing
    // was proved by the code, and is not to be typed over.
    let wrong_pin = match config.trust {
        Trust::Known(_) | Trust::Invite | Trust::Join(_) => WrongPin::Fatal,
        _ => console.wrong_pin(),
    };
    let pin = Pin::new(peer);
    let printed = console
        .show(
            events_rx,
            commands.clone(),
            pin.clone(),
            identity.fingerprint,
        )
        .context("cannot start the printing thread")?;
    let interrupted = Arc::new(AtomicBool::new(false));
    // Weak: the printer finishes once the session's own senders are gone.
    tokio::spawn(forward_input(lines, commands.clone(), events.downgrade()));
    tokio::spawn(handle_signals(
        commands,
        interrupted.clone(),
        events.downgrade(),
    ));

    // Once the session runs, the peer may dial us through our relay.
    if let Some(endpoint) = &endpoint {
        endpoint.findable().await;
    }
    let closing = endpoint.clone();
    let links = match (listener, target) {
        _ if endpoint.is_some() => {
            let (Some(endpoint), Some(peer)) = (endpoint, iroh_peer) else {
                bail!("over iroh, the peer's endpoint comes from pairing or known peers");
            };
            Links::Iroh(endpoint.role_with(peer))
        }
        (Some(listener), Some(target)) => Links::Two { listener, target },
        (None, Some(target)) => Links::DialOne(target),
        (Some(listener), None) => Links::AcceptOne(listener),
        (None, None) => unreachable!("--no-listen requires --connect"),
    };
    let setup = SessionSetup {
        links,
        identity,
        pin,
        wrong_pin,
        limits: ReceiveLimits::new(config.download_dir, config.max_file_size)
            .remembering(StoredRecord::open(config.stored_record)),
        hash_cache: Some(HashCache::open(config.hash_cache).shared()),
        retry_for: config.retry_for,
        at_finish,
    };
    let end = session::run(setup, commands_rx, events.clone()).await;
    if let Some(endpoint) = closing {
        endpoint.close().await;
    }
    if let Ok(SessionEnd::PeerLeft) = end {
        let _ = events.send(Event::PeerLeft);
    }
    drop(events);
    // A terminal that stopped reading must not keep the process alive.
    let _ = tokio::time::timeout(PRINTER_DRAIN_TIMEOUT, printed).await;
    match end? {
        SessionEnd::Quit if interrupted.load(Ordering::SeqCst) => Ok(Exit::Interrupted),
        _ => Ok(Exit::Success),
    }
}

/// What a person at a terminal reads before the first question: what `chat` waits
/// for, where it comes from, and the easier way; rows that fit 80 columns.
fn waiting_for_answers(target: bool, pin: bool) -> &'static [&'static str] {
    match (target, pin) {
        (true, true) => &[
            "Waiting for the peer's port and fingerprint: start chat in a second terminal",
            "and type what it prints. Or Ctrl-C and pair by code: chat --invite.",
        ],
        (true, false) => &["Waiting for the peer's port: its chat prints it (Listening on port)."],
        (false, true) => {
            &["Waiting for the peer's fingerprint: its chat prints it (Ctrl-C leaves)."]
        }
        (false, false) => &[],
    }
}

/// Creates the download folder if it is missing, and makes sure that files can be
/// created in it: a folder that refuses them is found now, not when the first
/// file arrives and is refused on both sides.
fn check_download_folder(dir: &Path) -> Result<()> {
    let shown = dir.display();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the download folder {shown}"))?;
    tempfile::Builder::new()
        .prefix(".chat-write-check")
        .tempfile_in(dir)
        .map(drop)
        .with_context(|| {
            format!(
                "cannot write in the download folder {shown} (choose another with --download-dir)"
            )
        })
}

/// The addresses a peer could dial, at most [`ADDRESSES_SHOWN`] of them, on one line.
fn show_reachable(listening: std::net::SocketAddr) {
    let reachable = addresses::reachable(listening);
    if reachable.is_empty() {
        return;
    }
    let mut shown: Vec<String> = (reachable.iter().take(ADDRESSES_SHOWN))
        .map(|(addr, reach)| format!("{addr} ({reach})"))
        .collect();
    if let Some(more) = reachable
        .len()
        .checked_sub(ADDRESSES_SHOWN)
        .filter(|&n| n > 0)
    {
        shown.push(format!("and {more} more"));
    }
    ui::status(&format!("Reachable at {}", shown.join(", ")));
}

/// Asks the router to forward `port`; a failure is only a warning.
async fn map_port(port: u16) -> Option<PortMapping> {
    match portmap::map(port).await {
        Ok(mapping) => {
            // A router behind another NAT has an address of a carrier's network.
            let reach =
                addresses::reach((*mapping.external.ip()).into()).unwrap_or(addresses::Reach::Lan);
            ui::status(&format!(
                "Reachable at {} ({reach}, forwarded by the router to port {port} while chat runs)",
                mapping.external
            ));
            Some(mapping)
        }
        Err(err) => {
            ui::status(&format!(
                "Warning: the router did not forward a port ({err}); the peer must reach this machine directly"
            ));
            None
        }
    }
}

fn load_identity(source: &IdentitySource) -> Result<Identity> {
    match source {
        IdentitySource::Named { dir, name } => {
            let files = IdentityFiles::named(dir, name);
            let (identity, created) = identity::load_or_create(&files, name)?;
            if created {
                ui::status(&format!(
                    "Created identity {name}: {} and {}",
                    files.certificate.display(),
                    files.private_key.display()
                ));
            }
            Ok(identity)
        }
        IdentitySource::Files(files) => Ok(identity::load(files)?),
    }
}

/// Reads the invite code from standard input, before the front end starts: the
/// terminal is still in its usual mode, so the answer is a line.
async fn ask_invite_code() -> Result<InviteCode> {
    let line = tokio::task::spawn_blocking(|| ui::prompt_before_start("Enter the invite code: "))
        .await
        .context("reading the invite code")?
        .context("reading the invite code")?;
    let Some(line) = line else {
        bail!(UsageError(
            "standard input ended before an invite code; set CHAT_INVITE_CODE to it \
             (or pass --join CODE)"
                .into()
        ));
    };
    line.trim()
        .parse()
        .map_err(|err: CodeError| UsageError(format!("--join: {err}")).into())
}

/// Asks one question and parses the answer. At a terminal a bad answer is asked
/// again with the reason; from a script it ends the program, as a bad flag would.
async fn ask<T>(
    console: &Console,
    lines: &mut mpsc::Receiver<String>,
    question: &str,
    flag: &str,
) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    loop {
        let Some(answer) = console.prompt(question, lines).await else {
            bail!(UsageError(format!(
                "standard input ended before an answer; pass {flag} instead"
            )));
        };
        match input::without_pasted_label(&answer).parse::<T>() {
            Ok(value) => return Ok(value),
            Err(err) if console.is_interactive() => {
                console.note(&format!("{err}; try again (or Ctrl-C to stop)"));
            }
            Err(err) => return Err(UsageError(err.to_string()).into()),
        }
    }
}

/// Turns typed lines into commands; end of input becomes `Finish`.
async fn forward_input(
    mut lines: mpsc::Receiver<String>,
    commands: mpsc::Sender<Command>,
    events: mpsc::WeakUnboundedSender<Event>,
) {
    let note = |text: &str| note(&events, text);
    while let Some(line) = lines.recv().await {
        let command = match input::parse_line(&line) {
            Input::Say(text) => Command::Send(text),
            Input::Transfer(paths) => {
                for path in paths.resolve(|path| path.exists()) {
                    if commands.send(Command::Transfer(path)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Input::Quit => Command::Quit,
            Input::Help => {
                note(input::HELP);
                continue;
            }
            Input::Transfers => {
                ask_front_end(&events, Event::ListTransfers);
                continue;
            }
            Input::Status => {
                ask_front_end(&events, Event::StatusRequest);
                continue;
            }
            Input::Cancel { transfer, keep } => {
                ask_front_end(&events, Event::CancelRequest { transfer, keep });
                continue;
            }
            Input::Invalid(reason) => {
                note(&reason);
                continue;
            }
            Input::Nothing => continue,
        };
        let quit = command == Command::Quit;
        if commands.send(command).await.is_err() || quit {
            return;
        }
    }
    let _ = commands.send(Command::Finish).await;
}

/// The first Ctrl-C quits gracefully; a second one exits at once. A request to
/// terminate (SIGTERM, a closed console window) quits gracefully too, like `/quit`.
/// Either way the process is gone within [`STOP_DEADLINE`], whatever state it is in:
/// a watchdog thread, which needs nothing from the async runtime, ends it if the
/// graceful close does not.
async fn handle_signals(
    commands: mpsc::Sender<Command>,
    interrupted: Arc<AtomicBool>,
    events: mpsc::WeakUnboundedSender<Event>,
) {
    let mut stops = platform::Stops::listen();
    let (note, exit) = match stops.next().await {
        Stop::Interrupt => {
            interrupted.store(true, Ordering::SeqCst);
            (
                "Closing; press Ctrl-C again to exit at once",
                Exit::Interrupted,
            )
        }
        Stop::Terminate => ("Terminated: closing", Exit::Failure),
    };
    self::note(&events, note);
    let _ = std::thread::Builder::new()
        .name("chat-stop-watchdog".into())
        .spawn(move || {
            std::thread::sleep(STOP_DEADLINE);
            ui::restore_terminal();
            ui::status(&format!(
                "chat: did not close within {} s; exiting",
                STOP_DEADLINE.as_secs()
            ));
            std::process::exit(exit as i32);
        });
    let _ = commands.send(Command::Quit).await;
    if stops.next().await == Stop::Interrupt {
        ui::restore_terminal();
        std::process::exit(Exit::Interrupted as i32);
    }
}

/// Passes a request that the front end answers from what it has shown.
fn ask_front_end(events: &mpsc::WeakUnboundedSender<Event>, request: Event) {
    if let Some(events) = events.upgrade() {
        let _ = events.send(request);
    }
}

/// Shows a line of the front end's own among the events, while anyone still prints.
fn note(events: &mpsc::WeakUnboundedSender<Event>, text: &str) {
    if let Some(events) = events.upgrade() {
        let _ = events.send(Event::Note { text: text.into() });
    }
}
