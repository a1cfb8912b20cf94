//! The invariants the fuzz targets check (`fuzz/fuzz_targets/`), shared with the
//! regression test that replays the inputs they found (`tests/it/fuzz_regressions.rs`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use chat::frame::{Frame, HEADER_LEN, MAX_FILE_NAME_LEN, UNHASHED_OFFER_VERSION};
use chat::identity::fingerprint::Fingerprint;
use chat::session::receiving_half::ReceiveState;
use chat::transfer::incoming::ReceiveLimits;
use chat::transfer::manifest::{self, Kind, MAX_DEPTH};
use chat::transfer::name::{NameRules, numbered, sanitize};
use chat::transfer::parts::PARTS_DIR;
use chat::transfer::receiving::Receiving;
use chat::ui::sanitize::{MAX_COMBINING_MARKS, for_terminal, is_invisible};
use sha2::{Digest, Sha256};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::is_nfc;

/// Decoding never panics, never claims more bytes than it was given, and whatever it
/// accepts re-encodes to exactly the bytes it consumed (the encoding is canonical).
pub fn check_decoder(input: &[u8]) -> Result<(), String> {
    let mut offset = 0;
    while let Ok(Some((frame, used))) = Frame::decode(&input[offset..]) {
        if used > input.len() - offset || used < HEADER_LEN {
            return Err(format!(
                "decode used {used} of {} bytes",
                input.len() - offset
            ));
        }
        let mut again = Vec::new();
        frame.encode(&mut again);
        if again != input[offset..offset + used] {
            return Err(format!(
                "{} frame does not re-encode to its bytes",
                frame.kind()
            ));
        }
        offset += used;
    }
    Ok(())
}

/// Feeds decoded frames to the receiving side as connections would. A `Hello` ends
/// the connection as a lost link does (unfinished parts are kept) and starts the next
/// one on the same download folder and session, so resuming and "already saved" are
/// reached too; any other frame the receiver must not get, or a protocol violation,
/// ends the input. Nothing may appear outside the download folder, and every file
/// under a final name must be a regular file whose name follows the name rules and
/// which holds exactly the bytes whose SHA-256 an offer or a digest declared. The
/// connections speak version 8, where a file's SHA-256 may follow its data.
pub async fn check_receiver(input: &[u8], scratch: &Path, run: u64) -> Result<(), String> {
    let root = scratch.join(run.to_string());
    let downloads = root.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let limits = ReceiveLimits::new(downloads.clone(), Some(1 << 20));
    let state = Arc::new(Mutex::new(ReceiveState::default()));
    let mut session = 7;
    let mut declared: Vec<[u8; 32]> = Vec::new();
    // Each connection's reply and event receivers: drained once the input is done, so
    // that a verification still running overlaps the next connection.
    let mut ended = Vec::new();
    let mut offset = 0;
    loop {
        let (replies, replies_rx) = tokio::sync::mpsc::channel(1 << 16);
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut files = Receiving::new(
            limits.clone(),
            "fuzz".into(),
            Fingerprint::of(b"fuzz"),
            UNHASHED_OFFER_VERSION,
            replies,
            events,
        );
        let mut reconnect = false;
        let mut keep_partial = true;
        while let Ok(Some((frame, used))) = Frame::decode(&input[offset..]) {
            offset += used;
            let result = match frame {
                Frame::Hello { session_id, .. } => {
                    session = session_id;
                    reconnect = true;
                    break;
                }
                Frame::Message { seq, .. } => state
                    .lock()
                    .unwrap()
                    .arrive(session, seq)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Frame::Offer {
                    id,
                    size,
                    sha256,
                    name,
                } => {
                    declared.push(sha256);
                    files
                        .offer(id, &name, size, Some(sha256))
                        .await
                        .map_err(|e| e.to_string())
                }
                Frame::OfferUnhashed { id, size, name } => files
                    .offer(id, &name, size, None)
                    .await
                    .map_err(|e| e.to_string()),
                Frame::Digest { id, sha256 } => {
                    declared.push(sha256);
                    files.digest(id, sha256).map_err(|e| e.to_string())
                }
                Frame::Chunk { id, data } => files.chunk(id, data).await.map_err(|e| e.to_string()),
                Frame::Cancel { id, reason } => {
                    files.cancel(id, &reason).await.map_err(|e| e.to_string())
                }
                _ => Err("frame not valid on this direction".into()),
            };
            if result.is_err() {
                keep_partial = false;
                break;
            }
        }
        let reason = if reconnect {
            "the connection was lost"
        } else {
            "fuzz input ended"
        };
        files.abandon(reason, keep_partial).await;
        drop(files);
        ended.push((replies_rx, events_rx));
        if !reconnect {
            break;
        }
    }
    // Let verdict tasks finish: they hold clones of the reply senders.
    for (mut replies_rx, mut events_rx) in ended {
        while replies_rx.recv().await.is_some() {}
        while events_rx.try_recv().is_ok() {}
    }

    let outside: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    if outside != ["downloads"] {
        return Err(format!("files outside the download folder: {outside:?}"));
    }
    for entry in std::fs::read_dir(&downloads).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == PARTS_DIR {
            continue;
        }
        if !entry.file_type().unwrap().is_file() {
            return Err(format!("{name:?} is not a regular file"));
        }
        if sanitize(&name).as_deref() != Ok(name.as_str()) {
            return Err(format!("{name:?} was stored under a name the rules refuse"));
        }
        let hash: [u8; 32] = Sha256::digest(std::fs::read(entry.path()).unwrap()).into();
        if !declared.contains(&hash) {
            return Err(format!("{name} holds bytes no offer nor digest declared"));
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
    Ok(())
}

/// Whatever `transfer::name::sanitize` accepts is one safe path component that the
/// rules accept again unchanged, and so is each of its numbered alternatives, which
/// stay within the file-name limit. The input is taken as UTF-8, invalid bytes
/// replaced (offered names arrive as UTF-8 text).
///
/// Alternatives need not differ from each other nor from the name, and nothing in
/// `numbered` says they do: cutting a long stem can leave what reads as its own
/// number (`x (12 (9).txt` cut for alternative 9 gives `x (12 (9).txt` again). That
/// costs one more candidate and no more, since the free name is looked for in the
/// folder and the rename into place never replaces a file.
pub fn check_name(input: &[u8]) -> Result<(), String> {
    let offered = String::from_utf8_lossy(input);
    let Ok(stored) = sanitize(&offered) else {
        return Ok(());
    };
    let context = |problem: String| format!("{offered:?} stored as {stored:?}: {problem}");
    safe_component(&stored).map_err(context)?;
    if sanitize(&stored).as_deref() != Ok(stored.as_str()) {
        return Err(context(format!(
            "the rules change it again: {:?}",
            sanitize(&stored)
        )));
    }
    if numbered(&stored, 0) != stored {
        return Err(context("alternative 0 is not the name itself".into()));
    }
    for n in [1, 2, 9, 10, 123, 99_999, u32::MAX] {
        let alternative = numbered(&stored, n);
        let context =
            |problem: String| context(format!("alternative {n} {alternative:?} {problem}"));
        if alternative.len() > MAX_FILE_NAME_LEN {
            return Err(context(format!(
                "is {} bytes, over {MAX_FILE_NAME_LEN}",
                alternative.len()
            )));
        }
        if !alternative.contains(&format!(" ({n})")) {
            return Err(context("lost its number".into()));
        }
        if sanitize(&alternative).as_deref() != Ok(alternative.as_str()) {
            return Err(context(format!(
                "is not kept by the rules: {:?}",
                sanitize(&alternative)
            )));
        }
    }
    Ok(())
}

/// A folder's manifest, as a receiver gets it: the entry count (u32) and total size
/// (u64) its `Folder` frame announced, then the manifest bytes. What `manifest::check`
/// accepts, by either system's name rules, is a tree the receiver can build as
/// announced: as many entries as declared, sizes adding up to the total, every
/// component a safe name, no deeper than `MAX_DEPTH`, every folder before what it
/// holds, and no two entries stored under one name as those rules compare names.
pub fn check_manifest(input: &[u8]) -> Result<(), String> {
    let Some((head, bytes)) = input.split_first_chunk::<12>() else {
        return Ok(());
    };
    let entries = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let total = u64::from_be_bytes(head[4..].try_into().expect("8 bytes"));
    for rules in [NameRules::UNIX, NameRules::WINDOWS] {
        let Ok(checked) = manifest::check(bytes, entries, total, rules) else {
            continue;
        };
        if checked.len() != entries as usize {
            return Err(format!(
                "{} entries accepted, {entries} declared",
                checked.len()
            ));
        }
        let sizes = checked.entries().filter_map(|entry| match entry.kind() {
            Kind::File { size, .. } => Some(size),
            Kind::Folder => None,
        });
        let (files, sum) = sizes.fold((0usize, 0u128), |(n, sum), size| {
            (n + 1, sum + u128::from(size))
        });
        if sum != u128::from(total) || checked.total_size != total || checked.files() != files {
            return Err(format!(
                "sizes add up to {sum} over {files} files; declared {total}, accepted {} over {}",
                checked.total_size,
                checked.files()
            ));
        }
        let mut stored = std::collections::HashSet::new();
        let mut folders = std::collections::HashSet::new();
        for entry in checked.entries() {
            let components = entry.components();
            let path = components.join("/");
            if components.is_empty() || components.len() > MAX_DEPTH {
                return Err(format!("{path:?} is {} deep", components.len()));
            }
            for component in &components {
                safe_component(component).map_err(|why| format!("{path:?}: {why}"))?;
            }
            let keys: Vec<String> = (components.iter())
                .map(|component| rules.key(component))
                .collect();
            let parent = keys[..keys.len() - 1].join("/");
            if keys.len() > 1 && !folders.contains(&parent) {
                return Err(format!("{path:?} comes before its folder"));
            }
            let key = keys.join("/");
            if !stored.insert(key.clone()) {
                return Err(format!("{path:?} is stored twice ({rules:?})"));
            }
            if entry.kind() == Kind::Folder {
                folders.insert(key);
            }
        }
    }
    Ok(())
}

/// What `sanitize` promises of a name it returns.
fn safe_component(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("not a file name".into());
    }
    if name.contains(['/', '\\', '\0']) {
        return Err("holds a path separator or NUL".into());
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(format!("is {} bytes, over {MAX_FILE_NAME_LEN}", name.len()));
    }
    if !is_nfc(name) {
        return Err("is not in normal form C".into());
    }
    if let Some(c) = name.chars().find(|&c| c.is_control() || is_invisible(c)) {
        return Err(format!("holds U+{:04X}", c as u32));
    }
    if name.ends_with(['.', ' ']) {
        return Err("ends with a dot or a space".into());
    }
    if name.starts_with(['.', '-']) {
        return Err("starts with a dot or a dash".into());
    }
    let lowercase = name.to_lowercase();
    if lowercase.ends_with(".part") || lowercase.ends_with(".part.meta") {
        return Err("ends like an unfinished transfer".into());
    }
    Ok(())
}

/// `sanitize::for_terminal` leaves no control character (C0, DEL, C1: every escape
/// sequence starts with one), no invisible character and no more than
/// `MAX_COMBINING_MARKS` combining marks in a row, so its output needs no further
/// escaping; text with none of these, printable ASCII for one, is left as it is.
pub fn check_sanitizer(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    let shown = for_terminal(&text);
    if let Some(c) = shown.chars().find(|&c| c.is_control() || is_invisible(c)) {
        return Err(format!("{text:?} is shown with U+{:04X}", c as u32));
    }
    if longest_run_of_marks(&shown) > MAX_COMBINING_MARKS {
        return Err(format!(
            "{text:?} is shown with {} combining marks in a row",
            longest_run_of_marks(&shown)
        ));
    }
    if for_terminal(&shown) != shown {
        return Err(format!(
            "{text:?} is shown as {shown:?}, which is escaped again"
        ));
    }
    let ordinary = !text.chars().any(|c| c.is_control() || is_invisible(c))
        && longest_run_of_marks(&text) <= MAX_COMBINING_MARKS;
    if ordinary && shown != text {
        return Err(format!("ordinary text {text:?} is shown as {shown:?}"));
    }
    let printable: String = input
        .iter()
        .filter(|b| (0x20..0x7f).contains(*b))
        .map(|&b| char::from(b))
        .collect();
    if for_terminal(&printable) != printable {
        return Err(format!("printable ASCII {printable:?} is changed"));
    }
    Ok(())
}

fn longest_run_of_marks(text: &str) -> usize {
    let (mut run, mut longest) = (0, 0);
    for c in text.chars() {
        run = if is_combining_mark(c) { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}
