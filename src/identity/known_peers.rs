//! Peers met before, kept beside the identity in `known_peers`, as ssh keeps
//! `known_hosts`: the pin for `--peer NAME`, saved after the first session.
//!
//! One peer per line, fields separated by spaces: the name, the 64 hex digits of
//! its fingerprint, when it was first and last seen (RFC 3339, UTC), and, once it
//! was met over iroh, `iroh:` and the 64 hex digits of its endpoint ID, which
//! `--peer NAME` dials. The endpoint ID is only ever learned over a connection that
//! authenticated both it and the fingerprint. Lines
//! starting with `#` and blank lines are kept as written. A line that is anything
//! else is an error naming its line number: a pin is never guessed at.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use thiserror::Error;

use crate::identity;
use crate::identity::fingerprint::Fingerprint;
use crate::platform::{self, Access, Exposure};

pub const FILE_NAME: &str = "known_peers";
/// Held while the file is read, changed and replaced, so that two sessions of one
/// user never lose each other's updates.
const LOCK_FILE_NAME: &str = "known_peers.lock";
/// The new file, before it is renamed over the old.
const TEMPORARY_PREFIX: &str = ".known_peers.";
/// Far more than anyone pairs with; a larger file is not ours.
const MAX_FILE_LEN: u64 = 4 << 20;
/// What Notepad and other editors may put before UTF-8 text; it is not part of
/// the first line.
const BYTE_ORDER_MARK: char = '\u{feff}';
const HEADER: &str = "# Peers met by the identities in this folder: NAME FINGERPRINT FIRST-SEEN LAST-SEEN [iroh:ENDPOINT-ID]";
/// What comes before a saved endpoint ID.
const ENDPOINT_PREFIX: &str = "iroh:";

/// One saved peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    pub name: String,
    pub fingerprint: Fingerprint,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Its long-term iroh endpoint, once met over iroh.
    pub endpoint: Option<iroh::EndpointId>,
}

/// A saved peer and the line it is on, for messages that tell a person where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub peer: KnownPeer,
    /// 1-based.
    pub line: usize,
}

/// The file's contents, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPeers {
    lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Peer(KnownPeer),
    /// A comment or a blank line, kept as written.
    Other(String),
}

/// What [`KnownPeers::record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new line for the peer.
    Added,
    /// The fingerprint was saved already, perhaps under a name a person chose:
    /// its last-seen time is now.
    Seen { name: String },
    /// The name is saved with another fingerprint. Nothing changed: a pin is
    /// replaced only by a person.
    NameTaken(Entry),
    /// The peer's name cannot be a name in the file (or on the command line).
    UnusableName,
}

/// Why the file cannot be used.
#[derive(Debug, Error)]
pub enum KnownPeersError {
    #[error("{}, line {line}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl KnownPeers {
    /// Reads `path`; a missing file is an empty list. The file must be ours and
    /// writable by no one else, as the identity's key must be private: whoever can
    /// write it decides whom `--peer` trusts.
    pub fn load(path: &Path) -> Result<Self, KnownPeersError> {
        let io_error = |source| KnownPeersError::Io {
            path: path.to_owned(),
            source,
        };
        let (file, exposure) = match platform::open_secret(path, Access::Change) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(io_error(err)),
            Ok(opened) => opened,
        };
        if let Some(Exposure { permissions, fix }) = exposure {
            return Err(io_error(io::Error::other(format!(
                "{permissions} let others change whom you trust; fix with: {fix}"
            ))));
        }
        let mut text = String::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(io_error)?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(io_error(io::Error::other(format!(
                "larger than {} MiB; not a known-peers file",
                MAX_FILE_LEN >> 20
            ))));
        }
        Self::parse(&text).map_err(|(line, reason)| KnownPeersError::Corrupt {
            path: path.to_owned(),
            line,
            reason,
        })
    }

    /// Parses the file's text; an error names the 1-based line and what is wrong.
    /// A leading byte-order mark, which some editors write at the start of UTF-8, is
    /// skipped (and not written back).
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text);
        let mut peers = KnownPeers::default();
        let mut lines_by_name = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                peers.lines.push(Line::Other(line.to_owned()));
                continue;
            }
            let peer = parse_peer(trimmed).map_err(|reason| (number, reason))?;
            if let Some(earlier) = lines_by_name.insert(peer.name.to_ascii_lowercase(), number) {
                return Err((
                    number,
                    format!("{} is already on line {earlier}", peer.name),
                ));
            }
            peers.lines.push(Line::Peer(peer));
        }
        Ok(peers)
    }

    /// The peer saved under `name`, in any case: `Bob` and `bob` are one peer.
    pub fn find(&self, name: &str) -> Option<Entry> {
        self.find_where(|peer| peer.name.eq_ignore_ascii_case(name))
    }

    /// The first peer saved with `fingerprint`.
    pub fn find_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Entry> {
        self.find_where(|peer| peer.fingerprint == *fingerprint)
    }

    fn find_where(&self, mut matches: impl FnMut(&KnownPeer) -> bool) -> Option<Entry> {
        self.peers()
            .find(|(_, peer)| matches(peer))
            .map(|(line, peer)| Entry {
                peer: peer.clone(),
                line,
            })
    }

    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.peers().map(|(line, peer)| Entry {
            peer: peer.clone(),
            line,
        })
    }

    /// The saved peers with their 1-based line numbers.
    fn peers(&self) -> impl Iterator<Item = (usize, &KnownPeer)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(index, line)| match line {
                Line::Peer(peer) => Some((index + 1, peer)),
                Line::Other(_) => None,
            })
    }

    /// Notes that the peer called `name` (its certificate's name) presented
    /// `fingerprint`, authenticated, at `now`, from `endpoint` if it came over iroh
    /// (authenticated as well, by the same connection).
    pub fn record(
        &mut self,
        name: &str,
        fingerprint: Fingerprint,
        endpoint: Option<iroh::EndpointId>,
        now: Timestamp,
    ) -> Recorded {
        let now = whole_seconds(now);
        if let Some(peer) = self.lines.iter_mut().find_map(|line| match line {
            Line::Peer(peer) if peer.fingerprint == fingerprint => Some(peer),
            _ => None,
        }) {
            peer.last_seen = now;
            if endpoint.is_some() {
                peer.endpoint = endpoint;
            }
            return Recorded::Seen {
                name: peer.name.clone(),
            };
        }
        if let Some(entry) = self.find(name) {
            return Recorded::NameTaken(entry);
        }
        if identity::validate_name(name).is_err() {
            return Recorded::UnusableName;
        }
        if self.lines.is_empty() {
            self.lines.push(Line::Other(HEADER.to_owned()));
        }
        self.lines.push(Line::Peer(KnownPeer {
            name: name.to_owned(),
            fingerprint,
            first_seen: now,
            last_seen: now,
            endpoint,
        }));
        Recorded::Added
    }

    /// Removes the peer saved under `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.lines.len();
        self.lines.retain(
            |line| !matches!(line, Line::Peer(peer) if peer.name.eq_ignore_ascii_case(name)),
        );
        self.lines.len() != before
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Peer(peer) => {
                    let _ = write!(
                        text,
                        "{} {} {} {}",
                        peer.name, peer.fingerprint, peer.first_seen, peer.last_seen
                    );
                    if let Some(endpoint) = &peer.endpoint {
                        let _ = write!(text, " {ENDPOINT_PREFIX}{endpoint}");
                    }
                    text.push('\n');
                }
                Line::Other(other) => {
                    text.push_str(other);
                    text.push('\n');
                }
            }
        }
        text
    }
}

fn parse_peer(line: &str) -> Result<KnownPeer, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (name, fingerprint, first_seen, last_seen, endpoint) = match fields[..] {
        [name, fingerprint, first_seen, last_seen] => {
            (name, fingerprint, first_seen, last_seen, None)
        }
        [name, fingerprint, first_seen, last_seen, endpoint] => {
            (name, fingerprint, first_seen, last_seen, Some(endpoint))
        }
        _ => {
            return Err(format!(
                "expected 4 or 5 fields (NAME FINGERPRINT FIRST-SEEN LAST-SEEN [iroh:ENDPOINT-ID]), found {}",
                fields.len()
            ));
        }
    };
    identity::validate_name(name).map_err(|err| err.to_string())?;
    let fingerprint = fingerprint
        .parse()
        .map_err(|err| format!("the fingerprint of {name}: {err}"))?;
    let time = |text: &str, what: &str| {
        text.parse::<Timestamp>()
            .map_err(|_| format!("{what} of {name} is not a time like 2026-12-02T05:30:00Z"))
    };
    let endpoint = endpoint
        .map(|text| {
            (text.strip_prefix(ENDPOINT_PREFIX))
                .filter(|hex| hex.len() == 64)
                .and_then(|hex| hex.parse::<iroh::EndpointId>().ok())
                .ok_or_else(|| format!("the endpoint of {name} is not iroh: and 64 hex digits"))
        })
        .transpose()?;
    Ok(KnownPeer {
        name: name.to_owned(),
        fingerprint,
        first_seen: time(first_seen, "the first-seen time")?,
        last_seen: time(last_seen, "the last-seen time")?,
        endpoint,
    })
}

fn whole_seconds(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// Reads the file at `path`, applies `change`, and, if it says so, replaces the
/// file atomically, all under the lock beside it. `change` returns its result and
/// whether the file changed.
pub fn update<T>(
    path: &Path,
    change: impl FnOnce(&mut KnownPeers) -> (T, bool),
) -> Result<T, KnownPeersError> {
    let io_error = |source| KnownPeersError::Io {
        path: path.to_owned(),
        source,
    };
    let folder = folder_of(path);
    let lock = open_lock(&folder.join(LOCK_FILE_NAME)).map_err(io_error)?;
    lock.lock().map_err(io_error)?;
    remove_leftovers(&folder);
    let mut peers = KnownPeers::load(path)?;
    let (result, changed) = change(&mut peers);
    if changed {
        let text = peers.render();
        replace_atomically(path, |file| file.write_all(text.as_bytes())).map_err(io_error)?;
    }
    Ok(result)
}

/// Removes what a writer killed before its rename left behind. Only the holder of
/// the lock writes, so none of these is anyone's work in progress.
fn remove_leftovers(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(TEMPORARY_PREFIX)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Opens the lock file, creating it if needed, never through a link and never
/// truncating whatever is there.
fn open_lock(path: &Path) -> io::Result<File> {
    match platform::open_private_file(path, true) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            match platform::create_private_file(path) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    platform::open_private_file(path, true)
                }
                created => created,
            }
        }
        opened => opened,
    }
}

/// Writes a new file beside `path` (created readable by its owner alone), flushes
/// it to disk, and renames it over `path`: whatever happens midway, `path` holds
/// either the old text or the new, never a part.
pub fn replace_atomically(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let folder = folder_of(path);
    let mut file = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(&folder)?;
    write(file.as_file_mut())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|err| err.error)?;
    platform::sync_dir(&folder)
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const BOB: &str = "725487da85cb1f0e725487da85cb1f0e725487da85cb1f0e725487da85cb1f0e";

    fn fingerprint(byte: u8) -> Fingerprint {
        hex::encode([byte; 32]).parse().unwrap()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_796_000_000 + second).unwrap()
    }

    #[test]
    fn reads_what_it_writes_and_keeps_comments() {
        let text = format!(
            "# mine\n\nbob {BOB} 2026-12-02T05:30:00Z 2026-12-02T06:00:00Z\n# carol below\n"
        );
        let peers = KnownPeers::parse(&text).unwrap();
        assert_eq!(peers.render(), text);
        let bob = peers.find("bob").unwrap();
        assert_eq!(bob.line, 3);
        assert_eq!(bob.peer.fingerprint.to_string(), BOB);
        assert_eq!(bob.peer.first_seen.to_string(), "2026-12-02T05:30:00Z");
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let text =
            format!("\u{feff}{HEADER}\r\nbob {BOB} 2026-12-02T05:30:00Z 2026-12-02T06:00:00Z\r\n");
        let peers = KnownPeers::parse(&text).unwrap();
        assert_eq!(peers.find("bob").unwrap().line, 2);
        assert!(peers.render().starts_with(HEADER), "{}", peers.render());
        let first_is_a_peer =
            format!("\u{feff}bob {BOB} 2026-12-02T05:30:00Z 2026-12-02T06:00:00Z\n");
        let peers = KnownPeers::parse(&first_is_a_peer).unwrap();
        assert_eq!(peers.find("bob").unwrap().line, 1);
        let (line, why) = KnownPeers::parse(&format!("# ok\n\u{feff}{HEADER}\n")).unwrap_err();
        assert_eq!(line, 2, "only a mark at the very start is skipped: {why}");
    }

    #[test]
    fn an_endpoint_met_over_iroh_is_saved_and_read_back() {
        let endpoint = iroh::SecretKey::from_bytes(&[7; 32]).public();
        let mut peers = KnownPeers::default();
        assert_eq!(
            peers.record("bob", fingerprint(1), None, at(0)),
            Recorded::Added
        );
        assert_eq!(peers.find("bob").unwrap().peer.endpoint, None);
        peers.record("bob", fingerprint(1), Some(endpoint), at(60));
        let text = peers.render();
        assert!(text.contains(&format!(" iroh:{endpoint}\n")), "{text}");
        let read = KnownPeers::parse(&text).unwrap();
        assert_eq!(read.find("bob").unwrap().peer.endpoint, Some(endpoint));
        // A later session over TCP does not forget it.
        let mut read = read;
        read.record("bob", fingerprint(1), None, at(90));
        assert_eq!(read.find("bob").unwrap().peer.endpoint, Some(endpoint));
    }

    #[test]
    fn a_malformed_endpoint_is_reported_with_its_line() {
        let times = "2026-12-02T05:30:00Z 2026-12-02T05:30:00Z";
        for endpoint in [
            "iroh:",
            "iroh:abc",
            &format!("tcp:{BOB}"),
            &format!("iroh:{}", &BOB[1..]),
        ] {
            let (line, why) =
                KnownPeers::parse(&format!("bob {BOB} {times} {endpoint}\n")).unwrap_err();
            assert_eq!(line, 1);
            assert!(why.contains("endpoint of bob"), "{endpoint}: {why}");
        }
    }

    #[test]
    fn a_corrupt_line_is_reported_with_its_number() {
        let cases = [
            (
                format!("# ok\nbob {BOB} 2026-12-02T05:30:00Z\n"),
                2,
                "4 or 5 fields",
            ),
            (
                format!(
                    "bob {} 2026-12-02T05:30:00Z 2026-12-02T05:30:00Z\n",
                    &BOB[1..]
                ),
                1,
                "63 hex digits",
            ),
            (
                format!("bob {BOB} yesterday 2026-12-02T05:30:00Z\n"),
                1,
                "first-seen",
            ),
            (
                format!("-bob {BOB} 2026-12-02T05:30:00Z 2026-12-02T05:30:00Z\n"),
                1,
                "invalid identity name",
            ),
            (
                format!(
                    "bob {BOB} 2026-12-02T05:30:00Z 2026-12-02T05:30:00Z\n\
                     bob {BOB} 2026-12-02T05:30:00Z 2026-12-02T05:30:00Z\n"
                ),
                2,
                "already on line 1",
            ),
        ];
        for (text, line, reason) in cases {
            let (number, why) = KnownPeers::parse(&text).unwrap_err();
            assert_eq!(number, line, "{text}");
            assert!(why.contains(reason), "{why}");
        }
    }

    #[test]
    fn records_new_peers_and_never_repins_a_name() {
        let mut peers = KnownPeers::default();
        assert_eq!(
            peers.record("bob", fingerprint(1), None, at(0)),
            Recorded::Added
        );
        assert_eq!(
            peers.record("bob", fingerprint(1), None, at(60)),
            Recorded::Seen { name: "bob".into() }
        );
        let bob = peers.find("bob").unwrap().peer;
        assert_eq!((bob.first_seen, bob.last_seen), (at(0), at(60)));

        let Recorded::NameTaken(entry) = peers.record("bob", fingerprint(2), None, at(90)) else {
            panic!("a second fingerprint for bob was accepted");
        };
        assert_eq!(entry.peer.fingerprint, fingerprint(1));
        assert_eq!(peers.find("bob").unwrap().peer.fingerprint, fingerprint(1));
        assert_eq!(
            peers.record("no spaces allowed", fingerprint(3), None, at(0)),
            Recorded::UnusableName
        );
    }

    #[test]
    fn a_peer_renamed_by_hand_keeps_its_name() {
        let mut peers = KnownPeers::default();
        peers.record("peer", fingerprint(1), None, at(0));
        let renamed = peers.render().replace("\npeer ", "\nbob ");
        let mut peers = KnownPeers::parse(&renamed).unwrap();
        assert_eq!(
            peers.record("peer", fingerprint(1), None, at(5)),
            Recorded::Seen { name: "bob".into() }
        );
        assert!(peers.find("peer").is_none());
    }

    #[test]
    fn names_that_differ_only_in_case_are_one_peer() {
        let mut peers = KnownPeers::default();
        peers.record("bob", fingerprint(1), None, at(0));
        assert!(matches!(
            peers.record("Bob", fingerprint(2), None, at(0)),
            Recorded::NameTaken(_)
        ));
        assert_eq!(peers.find("BOB").unwrap().peer.name, "bob");
        let twice = peers.render() + &format!("Bob {} {} {}\n", fingerprint(3), at(0), at(0));
        let (line, why) = KnownPeers::parse(&twice).unwrap_err();
        assert_eq!(line, 3);
        assert!(why.contains("already on line 2"), "{why}");
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let (_dir, path) = saved_with_bob();
        let writers: Vec<_> = (0..8u8)
            .map(|n| {
                let path = path.clone();
                std::thread::spawn(move || {
                    update(&path, |peers| {
                        let added =
                            peers.record(&format!("peer{n}"), fingerprint(n + 10), None, at(0));
                        ((), added == Recorded::Added)
                    })
                    .unwrap()
                })
            })
            .collect();
        writers
            .into_iter()
            .for_each(|writer| writer.join().unwrap());
        let peers = KnownPeers::load(&path).unwrap();
        assert_eq!(peers.entries().count(), 9);
    }

    #[test]
    fn forgets_a_peer() {
        let mut peers = KnownPeers::default();
        peers.record("bob", fingerprint(1), None, at(0));
        peers.record("carol", fingerprint(2), None, at(0));
        assert!(peers.remove("bob"));
        assert!(!peers.remove("bob"));
        let names: Vec<String> = peers.entries().map(|entry| entry.peer.name).collect();
        assert_eq!(names, ["carol"]);
    }

    /// A known-peers file in a new folder, with bob saved in it.
    fn saved_with_bob() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let added = update(&path, |peers| {
            let added = peers.record("bob", fingerprint(1), None, at(0)) == Recorded::Added;
            (added, added)
        });
        assert!(added.unwrap());
        (dir, path)
    }

    #[test]
    fn a_write_cut_short_leaves_the_old_file_and_nothing_else() {
        let (dir, path) = saved_with_bob();
        let before = fs::read(&path).unwrap();

        let cut = replace_atomically(&path, |file| {
            file.write_all(b"carol 0101")?;
            Err(io::Error::other("the disk is full"))
        });
        assert!(cut.is_err());
        assert_eq!(fs::read(&path).unwrap(), before);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [FILE_NAME, LOCK_FILE_NAME]);
    }

    #[test]
    fn the_file_is_private() {
        let (_dir, path) = saved_with_bob();
        let (_, exposure) = platform::open_secret(&path, Access::Read).unwrap();
        assert_eq!(exposure, None);
    }
}
