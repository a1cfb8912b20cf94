//! The invariants the fuzzer checks, shared with the regression tests that replay
//! the inputs it found.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chat::frame::{Frame, HEADER_LEN, PROTOCOL_VERSION};
use chat::inbound::ReceiveState;
use chat::transfer::incoming::ReceiveLimits;
use chat::transfer::parts::PARTS_DIR;
use chat::transfer::receiving::Receiving;
use sha2::{Digest, Sha256};

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

/// Feeds decoded frames to the receiving side as a connection would. Nothing may
/// appear outside the download folder, and every file under a final name must hold
/// exactly the bytes whose SHA-256 an offer of that name declared.
pub async fn check_receiver(input: &[u8], scratch: &Path, run: u64) -> Result<(), String> {
    let root = scratch.join(run.to_string());
    let downloads = root.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let limits = ReceiveLimits::new(downloads.clone(), Some(1 << 20));
    let (replies, mut replies_rx) = tokio::sync::mpsc::channel(1 << 16);
    let (events, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut files = Receiving::new(limits, "fuzz".into(), PROTOCOL_VERSION, replies, events);
    let state = Arc::new(Mutex::new(ReceiveState::default()));
    let mut declared: Vec<(String, [u8; 32])> = Vec::new();
    let mut offset = 0;
    let mut keep_partial = true;
    while let Ok(Some((frame, used))) = Frame::decode(&input[offset..]) {
        offset += used;
        let result = match frame {
            Frame::Message { seq, .. } => state
                .lock()
                .unwrap()
                .arrive(7, seq)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Frame::Offer {
                id,
                size,
                sha256,
                name,
            } => {
                declared.push((name.clone(), sha256));
                files
                    .offer(id, &name, size, sha256)
                    .await
                    .map_err(|e| e.to_string())
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
    files.abandon("fuzz input ended", keep_partial).await;
    drop(files);
    // Let verdict tasks finish: they hold clones of the reply sender.
    while replies_rx.recv().await.is_some() {}
    while events_rx.try_recv().is_ok() {}

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
        let hash: [u8; 32] = Sha256::digest(std::fs::read(entry.path()).unwrap()).into();
        if !declared.iter().any(|(_, declared)| *declared == hash) {
            return Err(format!("{name} holds bytes no offer declared"));
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
    Ok(())
}
