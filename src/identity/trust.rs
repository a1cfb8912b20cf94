//! What a session does with known peers: saves each peer it authenticates, and
//! words the refusal of a known peer whose certificate changed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::identity::fingerprint::Fingerprint;
use crate::identity::known_peers::{self, Entry, KnownPeersError, Recorded};
use crate::link::Route;
use crate::link::dialer::Refusal;
use crate::session::event::Event;
use crate::ui::sanitize::for_terminal;

/// Passes the session's events on to the front end, and saves every peer that
/// authenticates to the known-peers file at `path`, saying so where it is news.
/// Ends when the session's senders are gone.
pub async fn save_peers(
    mut from_session: mpsc::UnboundedReceiver<Event>,
    to_front_end: mpsc::UnboundedSender<Event>,
    path: PathBuf,
) {
    let mut recorded = HashSet::new();
    while let Some(event) = from_session.recv().await {
        let met = match &event {
            Event::Connected {
                peer,
                fingerprint,
                route,
                ..
            } if recorded.insert(*fingerprint) => {
                let endpoint = match route {
                    Route::Iroh { peer, .. } => Some(*peer),
                    Route::Tcp(_) => None,
                };
                Some((peer.clone(), *fingerprint, endpoint))
            }
            _ => None,
        };
        if to_front_end.send(event).is_err() {
            return;
        }
        if let Some((name, fingerprint, endpoint)) = met {
            let path = path.clone();
            let saved =
                tokio::task::spawn_blocking(move || record(&path, &name, fingerprint, endpoint))
                    .await;
            if let Ok(Some(text)) = saved {
                let _ = to_front_end.send(Event::Note { text });
            }
        }
    }
}

/// Records the peer; the line to show, if any.
fn record(
    path: &Path,
    name: &str,
    fingerprint: Fingerprint,
    endpoint: Option<iroh::EndpointId>,
) -> Option<String> {
    let recorded = known_peers::update(path, |peers| {
        let recorded = peers.record(name, fingerprint, endpoint, Timestamp::now());
        let changed = matches!(recorded, Recorded::Added | Recorded::Seen { .. });
        (recorded, changed)
    });
    saved_line(path, name, &fingerprint, recorded)
}

fn saved_line(
    path: &Path,
    name: &str,
    fingerprint: &Fingerprint,
    recorded: Result<Recorded, KnownPeersError>,
) -> Option<String> {
    let name = for_terminal(name);
    match recorded {
        Ok(Recorded::Added) => Some(format!(
            "Saved {name} ({}) to known peers; next time: chat --peer {name}",
            fingerprint.abbreviated()
        )),
        Ok(Recorded::Seen { .. }) => None,
        Ok(Recorded::NameTaken(entry)) => Some(format!(
            "Not saved to known peers: line {} of {} has {name} with another certificate ({}). \
             If {name} made a new identity, remove that entry (chat forget {name}) and connect again",
            entry.line,
            path.display(),
            entry.peer.fingerprint.abbreviated()
        )),
        Ok(Recorded::UnusableName) => Some(format!(
            "Not saved to known peers: the peer's name {name:?} cannot be a name there"
        )),
        Err(err) => Some(format!("Not saved to known peers: {err}")),
    }
}

/// The refusal of a known peer whose certificate is not the saved one, loud as
/// ssh's, with the way out.
pub fn changed_certificate(path: &Path, entry: &Entry, refusal: &Refusal) -> Option<String> {
    let mismatch = refusal.mismatch.as_ref()?;
    let name = &entry.peer.name;
    let rule = "@".repeat(60);
    let title = format!(
        "WARNING: THE CERTIFICATE OF {} HAS CHANGED!",
        name.to_uppercase()
    );
    Some(format!(
        "{rule}\n@    {title:<54}@\n{rule}\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         The peer at {target} presented another certificate than the one saved for {name}.\n\
         Someone may be pretending to be {name}, or {name} has made a new identity.\n\
         Saved for {name} (line {line} of {path}):\n  sha256 {saved}\n\
         Presented:\n  sha256 {presented}\n\
         Ask {name} by another channel (the phone) for the new fingerprint. If it matches,\n\
         remove the old entry with:\n  chat forget {name}\n\
         and connect once with --peer-fingerprint to save the new one.\n\
         Connection refused.",
        target = refusal.target,
        line = entry.line,
        path = path.display(),
        saved = mismatch.expected.grouped(),
        presented = mismatch.presented.grouped(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::known_peers::KnownPeer;
    use crate::link::tls::PinMismatch;

    fn fingerprint(byte: u8) -> Fingerprint {
        hex::encode([byte; 32]).parse().unwrap()
    }

    #[test]
    fn a_changed_certificate_shows_both_fingerprints_and_the_way_out() {
        let entry = Entry {
            peer: KnownPeer {
                name: "bob".into(),
                fingerprint: fingerprint(0x72),
                first_seen: Timestamp::UNIX_EPOCH,
                last_seen: Timestamp::UNIX_EPOCH,
                endpoint: None,
            },
            line: 2,
        };
        let refusal = Refusal {
            reason: "mismatch".into(),
            mismatch: Some(PinMismatch {
                expected: fingerprint(0x72),
                presented: fingerprint(0x9a),
            }),
            target: "127.0.0.1:7002".into(),
        };
        let text = changed_certificate(Path::new("/k/known_peers"), &entry, &refusal).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "@".repeat(60));
        assert_eq!(lines[1].len(), 60, "{}", lines[1]);
        assert!(lines[1].contains("CERTIFICATE OF BOB HAS CHANGED"));
        assert!(text.contains("(line 2 of /k/known_peers)"));
        assert!(text.contains(&format!("  sha256 {}", fingerprint(0x72).grouped())));
        assert!(text.contains(&format!("  sha256 {}", fingerprint(0x9a).grouped())));
        assert!(text.contains("chat forget bob"));

        let refused_us = Refusal {
            mismatch: None,
            ..refusal
        };
        assert_eq!(
            changed_certificate(Path::new("/k"), &entry, &refused_us),
            None
        );
    }

    #[test]
    fn says_what_it_saved_and_what_it_would_not_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(known_peers::FILE_NAME);
        let saved = record(&path, "bob", fingerprint(1), None).unwrap();
        assert!(
            saved.starts_with("Saved bob (sha256 0101 0101 0101 0101 …) to known peers"),
            "{saved}"
        );
        assert_eq!(record(&path, "bob", fingerprint(1), None), None);
        let refused = record(&path, "bob", fingerprint(2), None).unwrap();
        assert!(refused.contains("line 2 of"), "{refused}");
        assert!(refused.contains("chat forget bob"), "{refused}");
    }
}
