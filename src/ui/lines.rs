//! What each event says, as lines of text: shared by both front ends, which differ
//! only in where and how they draw them. Pure, so it is tested with values.

use indicatif::HumanBytes;

use crate::identity::fingerprint::Fingerprint;
use crate::link::Route;
use crate::link::one_way;
use crate::link::route::{self, Path};
use crate::session::event::{Direction, Event, FileCount, TransferId, Verified};
use crate::ui::sanitize::for_terminal;

use super::width;

/// What kind of line it is: the plain front end sends peer lines to standard output
/// and the rest to standard error; the interactive one colours them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A line the peer typed.
    Peer,
    /// Something that happened: connected, saved, delivered.
    Status,
    /// Something that went wrong or needs attention.
    Problem,
    /// Detail for `--verbose`.
    Detail,
}

/// One line to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub tone: Tone,
    pub text: String,
}

impl Line {
    fn status(text: String) -> Self {
        Line {
            tone: Tone::Status,
            text,
        }
    }

    fn problem(text: String) -> Self {
        Line {
            tone: Tone::Problem,
            text,
        }
    }

    fn detail(text: String) -> Self {
        Line {
            tone: Tone::Detail,
            text,
        }
    }
}

/// The lines an event is shown as, the same in both front ends unless one of them
/// says otherwise. Everything that came from the network is made safe first.
pub fn describe(event: &Event, verbose: bool) -> Vec<Line> {
    let one = |line| vec![line];
    match event {
        Event::Message { from, text, .. } => one(Line {
            tone: Tone::Peer,
            text: format!("{}: {}", for_terminal(from), for_terminal(text)),
        }),
        Event::Note { text } => one(Line::status(text.clone())),
        // Answered by the front end from its transfer table.
        Event::ListTransfers | Event::StatusRequest | Event::CancelRequest { .. } => Vec::new(),
        Event::Waiting { target, reason } => one(Line::status(format!(
            "Waiting for the peer at {target} ({}); retrying until it is up",
            for_terminal(reason)
        ))),
        Event::Retrying {
            target,
            reason,
            delay,
        } if verbose => one(Line::detail(format!(
            "[verbose] {target}: {}; next attempt in {} ms",
            for_terminal(reason),
            delay.as_millis()
        ))),
        Event::Retrying { .. } => Vec::new(),
        Event::Connected {
            direction,
            again,
            peer,
            route,
            tls,
            ..
        } => {
            let peer = for_terminal(peer);
            let mut lines = vec![Line::status(connected_line(
                &peer, route, *direction, *again,
            ))];
            if verbose {
                let way = match direction {
                    Direction::Outbound => "outbound",
                    Direction::Inbound => "inbound",
                    Direction::Both { .. } => "two-way",
                };
                lines.push(Line::detail(format!(
                    "[verbose] {way} TLS: {} {} {}",
                    tls.version, tls.cipher_suite, tls.key_exchange
                )));
            }
            lines
        }
        Event::PathChanged {
            peer,
            from,
            to,
            after,
        } => {
            let peer = for_terminal(peer);
            one(Line::status(match (from, to) {
                (Path::Direct(_), Path::Relay(url)) => format!(
                    "Direct path to {peer} lost; relaying through {}",
                    route::relay_host(url)
                ),
                (_, Path::Relay(url)) => {
                    format!("Relaying to {peer} through {}", route::relay_host(url))
                }
                (Path::Direct(_), Path::Direct(addr)) => {
                    format!("Direct path to {peer} moved to {addr}")
                }
                (_, Path::Direct(addr)) => format!(
                    "Direct path to {peer} at {addr} (hole punched after {:.1} s)",
                    after.as_secs_f64()
                ),
                (_, Path::Unknown) => return Vec::new(),
            }))
        }
        Event::Queued { pending: 1 } => one(Line::status(
            "Not connected yet: lines are queued and will be sent once connected".into(),
        )),
        Event::Queued { .. } => Vec::new(),
        Event::Rejected { addr, reason, .. } => one(Line::problem(format!(
            "Rejected connection from {addr}: {}",
            for_terminal(reason)
        ))),
        Event::GaveUpWaiting { addr } if verbose => one(Line::detail(format!(
            "[verbose] {addr} gave up a connection it made while we were not yet ready"
        ))),
        Event::GaveUpWaiting { .. } => Vec::new(),
        Event::WrongPin { target, mismatch } => {
            let mut lines = vec![Line::problem(format!(
                "The peer at {target} is not the one whose fingerprint was given:"
            ))];
            lines.extend(
                compare_fingerprints(&mismatch.expected, &mismatch.presented)
                    .into_iter()
                    .map(Line::problem),
            );
            lines
        }
        Event::PeerFinished { peer } => one(Line::status(format!(
            "{} has nothing more to say, and leaves when you do",
            for_terminal(peer)
        ))),
        Event::InboundLost { peer, reason } => one(Line::problem(format!(
            "Connection from {} lost: {}; waiting for it to come back",
            for_terminal(peer),
            for_terminal(reason)
        ))),
        Event::OutboundLost { reason, we_redial } => one(Line::problem(format!(
            "Connection to the peer lost: {}; {}",
            for_terminal(reason),
            if *we_redial {
                "reconnecting"
            } else {
                "waiting for it to reconnect"
            }
        ))),
        Event::OnlyOneWay {
            peer,
            we_reached_them: true,
            target,
            after,
        } => vec![
            Line::problem(format!(
                "We reached {} at {target}, but it has not connected back within {}s: \
                 behind a NAT or a firewall, it cannot.",
                for_terminal(peer),
                after.as_secs()
            )),
            Line::problem(format!(
                "Use one connection for both directions: there `chat --accept`, \
                 here `chat --connect {target} --no-listen`"
            )),
        ],
        Event::OnlyOneWay {
            peer,
            we_reached_them: false,
            target,
            after,
        } => vec![
            Line::problem(format!(
                "{} reached us, but we have not reached it at {target} within {}s: \
                 behind a NAT or a firewall, we cannot.",
                for_terminal(peer),
                after.as_secs()
            )),
            Line::problem(
                "Use one connection for both directions: here `chat --accept`, \
                 there `chat --connect ADDRESS:PORT --no-listen` with this side's address"
                    .into(),
            ),
        ],
        Event::OneConnectionForBoth {
            peer,
            we_asked: true,
            ..
        } => one(Line::status(format!(
            "{} has not connected back within {}s: carrying both directions on our connection to it",
            for_terminal(peer),
            one_way::ASK_AFTER.as_secs()
        ))),
        Event::OneConnectionForBoth {
            peer,
            we_asked: false,
            target,
        } => one(Line::status(format!(
            "{} carries both directions on its connection to us; no longer dialing {target}",
            for_terminal(peer)
        ))),
        Event::PeerLeft => one(Line::status("The peer closed the connection".into())),
        Event::Distrusted { reason } => one(Line::problem(format!(
            "Warning: {}; still trying to reach the pinned peer",
            for_terminal(reason)
        ))),
        Event::GaveUp { target, reason } => one(Line::problem(format!(
            "Gave up reaching the peer at {target}: {}",
            for_terminal(reason)
        ))),
        Event::NotSent { text } => one(Line::problem(format!(
            "Not sent, the peer has left: {}",
            for_terminal(text)
        ))),
        Event::Undelivered { lines } => {
            let mut shown = vec![Line::problem(format!(
                "{} line(s) were not delivered:",
                lines.len()
            ))];
            shown.extend(
                (lines.iter()).map(|line| Line::problem(format!("  {}", for_terminal(line)))),
            );
            shown
        }
        Event::RejectedMore { count, window } => one(Line::problem(format!(
            "… and {} more rejected connections in the last {} s",
            thousands(*count),
            window.as_secs()
        ))),
        Event::KeptPartsRemoved {
            folder,
            old,
            surplus,
            max_age,
            max_parts,
        } => {
            let folder = for_terminal(&folder.display().to_string()).into_owned();
            let days = max_age.as_secs() / (24 * 60 * 60);
            let mut lines = Vec::new();
            if !old.is_empty() {
                lines.push(Line::status(format!(
                    "Removed {} kept for over {days} days in {folder}, which can no longer resume: {}",
                    unfinished_transfers(old.len()),
                    some_names(old)
                )));
            }
            if !surplus.is_empty() {
                lines.push(Line::status(format!(
                    "Removed {} kept in {folder}, the oldest beyond the {} kept at most, which can no longer resume: {}",
                    unfinished_transfers(surplus.len()),
                    thousands(*max_parts as u64),
                    some_names(surplus)
                )));
            }
            lines
        }
        Event::TransferQueued { .. } | Event::TransferProgress { .. } => Vec::new(),
        Event::TransferFileDone {
            id,
            receiving,
            path,
            size,
        } if verbose => {
            let transfer = TransferId {
                receiving: *receiving,
                id: *id,
            };
            let how = if *receiving { "received" } else { "sent" };
            one(Line::detail(format!(
                "[verbose] {transfer} {how} {} ({})",
                for_terminal(path),
                HumanBytes(*size)
            )))
        }
        Event::TransferFileDone { .. } => Vec::new(),
        Event::TransferIncoming {
            name, size, from, ..
        } => one(Line::status(format!(
            "Receiving {} ({}) from {}",
            for_terminal(name),
            HumanBytes(*size),
            for_terminal(from)
        ))),
        Event::TransferSaved { path, verified, .. } => one(Line::status(format!(
            "Saved {} (verified, {})",
            for_terminal(&path.display().to_string()),
            match verified {
                Verified::Sha256(sha256) => format!("sha256 {sha256}"),
                Verified::Files { files, bytes } => format!(
                    "{files} files, {}, each by its size and SHA-256",
                    HumanBytes(*bytes)
                ),
            }
        ))),
        Event::TransferDelivered { name, peer, .. } => one(Line::status(format!(
            "{} delivered and verified by {}",
            for_terminal(name),
            for_terminal(peer)
        ))),
        Event::TransferAlreadyThere { name, peer, .. } => one(Line::status(format!(
            "{} already has {} (same SHA-256); nothing needed sending",
            for_terminal(peer),
            for_terminal(name)
        ))),
        Event::TransferAlreadyReceived {
            name, path, from, ..
        } => one(Line::status(format!(
            "{} from {} is one you already received, as {} (same SHA-256); not copied again",
            for_terminal(name),
            for_terminal(from),
            for_terminal(&path.display().to_string())
        ))),
        Event::TransferInterrupted {
            name,
            receiving,
            reason,
            ..
        } => one(Line::problem(transfer_line(
            name,
            *receiving,
            "interrupted: ",
            reason,
        ))),
        Event::TransferNote {
            name,
            receiving,
            note,
            ..
        } => one(Line::status(transfer_line(name, *receiving, "", note))),
        Event::TransferCancelled {
            name,
            receiving,
            by,
            kept,
            ..
        } => {
            let by = by.as_deref().unwrap_or("you");
            let kept = kept.as_ref().map(|kept| format!("; {kept}"));
            let detail = format!("cancelled by {by}{}", kept.unwrap_or_default());
            one(Line::status(transfer_line(name, *receiving, "", &detail)))
        }
        Event::TransferFailed {
            name,
            receiving,
            reason,
            ..
        } => one(Line::problem(transfer_line(
            name, *receiving, "failed: ", reason,
        ))),
    }
}

/// Two fingerprints in groups of 4 hex digits, 8 groups a row, the rows of each
/// half one above the other, and a `^^^^` under the first group that differs.
pub fn compare_fingerprints(given: &Fingerprint, presented: &Fingerprint) -> Vec<String> {
    let groups = |fingerprint: &Fingerprint| -> Vec<String> {
        let hex = fingerprint.to_string();
        (0..16).map(|i| hex[i * 4..i * 4 + 4].to_owned()).collect()
    };
    let (given, presented) = (groups(given), groups(presented));
    let first_difference = (0..16).find(|&i| given[i] != presented[i]);
    let mut rows = Vec::new();
    for half in [0..8, 8..16] {
        let start = half.start;
        rows.push(format!("  given      {}", given[half.clone()].join(" ")));
        rows.push(format!("  presented  {}", presented[half].join(" ")));
        if let Some(at) = first_difference.filter(|at| (start..start + 8).contains(at)) {
            let offset = 13 + (at - start) * 5;
            rows.push(format!("{}^^^^ first difference", " ".repeat(offset)));
        }
    }
    rows
}

/// The safety number line shown when a session starts, and after a new pin.
pub fn safety_line(own: &Fingerprint, peer: &Fingerprint) -> String {
    format!(
        "Safety number: {} (the peer sees the same if each of you pinned the other)",
        crate::identity::fingerprint::safety_number(own, peer)
    )
}

/// `[HH:MM] ` in local time, for `--timestamps`.
pub fn timestamp() -> String {
    jiff::Zoned::now().strftime("[%H:%M] ").to_string()
}

/// `Sending NAME: …` or `Receiving NAME: …`, with peer-supplied text made safe.
fn transfer_line(name: &str, receiving: bool, what: &str, detail: &str) -> String {
    let side = if receiving { "Receiving" } else { "Sending" };
    let separator = if what.is_empty() { ": " } else { " " };
    format!(
        "{side} {}{separator}{what}{}",
        for_terminal(name),
        for_terminal(detail)
    )
}

/// The rows `line` takes on a terminal `columns` wide, every row after the first
/// starting with [`CONTINUATION`]: a peer cannot pad its text so that a row of it
/// starts where a status line would. Rows are cut between grapheme clusters, each
/// counted as wide as any terminal draws it, so that the terminal never wraps one
/// itself and starts a row that has no marker.
pub fn wrap_marked(line: &str, columns: usize) -> Vec<String> {
    let marker_width = width::width(CONTINUATION);
    let columns = columns.max(marker_width + 2);
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut used = 0;
    for (cluster, cluster_width) in width::clusters(line) {
        if used + cluster_width > columns {
            rows.push(std::mem::take(&mut row));
            row.push_str(CONTINUATION);
            used = marker_width;
        }
        row.push_str(cluster);
        used += cluster_width;
    }
    rows.push(row);
    rows
}

/// How a continuation row of a peer's line starts on a terminal.
pub const CONTINUATION: &str = "  \u{21b3} ";

/// What a folder's progress bar adds after its bytes: `, 120/10,000 files`.
pub fn files_done(files: &FileCount) -> String {
    format!(
        ", {}/{} files",
        thousands(files.done as u64),
        thousands(files.total as u64)
    )
}

/// Names listed in one line at most; the rest are counted.
const MAX_NAMES_LISTED: usize = 5;

/// `1 unfinished transfer`, `3 unfinished transfers`.
fn unfinished_transfers(count: usize) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{} unfinished transfer{plural}", thousands(count as u64))
}

/// The first few of `names`, made safe, and how many more there are.
fn some_names(names: &[String]) -> String {
    let mut listed: Vec<String> = (names.iter().take(MAX_NAMES_LISTED))
        .map(|name| for_terminal(name).into_owned())
        .collect();
    if names.len() > MAX_NAMES_LISTED {
        listed.push(format!(
            "and {} more",
            thousands((names.len() - MAX_NAMES_LISTED) as u64)
        ));
    }
    listed.join(", ")
}

/// `3412` as `3,412`: a count from a flood reads at a glance.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// How a new connection is announced. Over TCP the address is the dialled one or
/// the one the peer came from; over iroh it is the path, told the same either way.
fn connected_line(peer: &str, route: &Route, direction: Direction, again: bool) -> String {
    let (verb, route_words) = match (route, direction) {
        (Route::Tcp(addr), Direction::Inbound | Direction::Both { dialed: false }) => {
            let verb = if again { "reconnected" } else { "connected" };
            let both = if direction == Direction::Inbound {
                ""
            } else {
                " (one connection, both directions)"
            };
            return format!("{peer} {verb} from {addr}{both}");
        }
        (route, _) => (
            if again {
                "Reconnected to"
            } else {
                "Connected to"
            },
            route.describe(),
        ),
    };
    match direction {
        Direction::Outbound | Direction::Inbound => format!("{verb} {peer} {route_words}"),
        Direction::Both { .. } => {
            format!("{verb} {peer} {route_words} (one connection, both directions)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_line_cannot_start_a_row_like_a_status_line() {
        let fake = format!("alice: hi{}Saved ./x (verified, sha256 00)", " ".repeat(71));
        let rows = wrap_marked(&fake, 80);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].len(), 80);
        assert!(rows[1].starts_with(CONTINUATION), "{rows:?}");
        assert!(rows.iter().all(|row| width::width(row) <= 80), "{rows:?}");
    }

    #[test]
    fn wide_characters_wrap_by_their_width() {
        let rows = wrap_marked(&"日".repeat(10), 8);
        assert_eq!(rows[0], "日".repeat(4));
        assert!(rows.iter().all(|row| width::width(row) <= 8), "{rows:?}");
        assert_eq!(wrap_marked("short", 80), ["short"]);
    }

    #[test]
    fn emoji_padding_cannot_start_a_row_like_a_status_line() {
        // Each heart with its presentation selector is drawn 2 columns wide: counted
        // as 1, "Saved" would be where the terminal wraps the row itself.
        let fake = format!(
            "bob: {}{}Saved ./invoice.pdf (verified, sha256 00)",
            "\u{2764}\u{fe0f}".repeat(40),
            " ".repeat(15)
        );
        let rows = wrap_marked(&fake, 100);
        assert_eq!(width::width(&rows[0]), 100, "{rows:?}");
        assert!(rows[0].ends_with(' '), "{rows:?}");
        assert_eq!(
            rows[1],
            format!("{CONTINUATION}Saved ./invoice.pdf (verified, sha256 00)")
        );
        let hearts = wrap_marked(&"\u{2764}\u{fe0f}".repeat(10), 9);
        assert_eq!(hearts[0], "\u{2764}\u{fe0f}".repeat(4), "{hearts:?}");
        assert!(hearts[1..].iter().all(|row| row.starts_with(CONTINUATION)));
    }

    #[test]
    fn fingerprints_are_compared_in_groups_with_the_first_difference_marked() {
        let given: Fingerprint = "7254".repeat(16).parse().unwrap();
        let presented: Fingerprint = format!("{}7255{}", "7254".repeat(9), "7254".repeat(6))
            .parse()
            .unwrap();
        let rows = compare_fingerprints(&given, &presented);
        assert_eq!(rows.len(), 5, "{rows:#?}");
        assert_eq!(rows[2], format!("  given      {}", ["7254"; 8].join(" ")));
        assert_eq!(
            rows[3],
            "  presented  7254 7255 7254 7254 7254 7254 7254 7254"
        );
        assert_eq!(rows[4], "                  ^^^^ first difference");
        assert!(rows.iter().all(|row| row.len() <= 60), "{rows:#?}");
    }

    #[test]
    fn thousands_are_separated_by_commas() {
        let cases = [(0, "0"), (999, "999"), (1000, "1,000"), (3412, "3,412")];
        for (n, text) in cases {
            assert_eq!(thousands(n), text);
        }
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn removed_kept_parts_are_named_a_few_at_a_time_and_made_safe() {
        let names = |n: usize| (0..n).map(|i| format!("f{i}.bin")).collect::<Vec<_>>();
        let removed = describe(
            &Event::KeptPartsRemoved {
                folder: "./.chat-parts".into(),
                old: vec!["a\u{1b}[2J.bin".into()],
                surplus: names(8),
                max_age: std::time::Duration::from_secs(30 * 24 * 60 * 60),
                max_parts: 1000,
            },
            false,
        );
        let texts: Vec<&str> = removed.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Removed 1 unfinished transfer kept for over 30 days in ./.chat-parts, \
                 which can no longer resume: a\\x1b[2J.bin",
                "Removed 8 unfinished transfers kept in ./.chat-parts, the oldest beyond the \
                 1,000 kept at most, which can no longer resume: f0.bin, f1.bin, f2.bin, \
                 f3.bin, f4.bin, and 3 more",
            ]
        );
        assert!(removed.iter().all(|line| line.tone == Tone::Status));
    }

    #[test]
    fn peer_text_is_made_safe_and_the_peer_speaks_on_its_own_tone() {
        let shown = describe(
            &Event::Note {
                text: "hello".into(),
            },
            false,
        );
        assert_eq!(shown, [Line::status("hello".into())]);
        let failed = describe(
            &Event::TransferFailed {
                id: 1,
                name: "a\u{1b}[2J.txt".into(),
                receiving: true,
                reason: "refused".into(),
            },
            false,
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].tone, Tone::Problem);
        assert!(!failed[0].text.contains('\u{1b}'), "{:?}", failed[0].text);
    }
}
