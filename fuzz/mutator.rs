//! A frame-aware mutator for the decoder and receiver targets. Byte-level mutation
//! alone rarely gets past the receiver's first checks: an offer whose SHA-256 and
//! size match the chunks that follow it, or the same offer again on a later
//! connection, is almost never hit by flipping bytes. So, most of the time, the input
//! is decoded into frames, the sequence is changed as a sender could change it
//! (frames inserted, dropped, repeated, reordered, split, their ids, names and data
//! changed, a reconnect inserted), offers are often made to match their chunks, and
//! the result is encoded again; the rest of the time libFuzzer's own mutations run.

use chat::frame::{Frame, MAX_CHUNK_LEN, MAX_FILE_NAME_LEN, MAX_REASON_LEN, MAX_TEXT_LEN};
use libfuzzer_sys::fuzzer_mutate;

use crate::seeds;

/// The body of `fuzz_mutator!`: mutates `data[..size]` in place, at most `max_size`
/// bytes, and returns the new size.
pub fn mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> usize {
    let mut rng = Rng::new(seed);
    if rng.below(4) == 0 {
        return fuzzer_mutate(data, size, max_size);
    }
    let (mut frames, tail) = decode_all(&data[..size]);
    for _ in 0..=rng.below(3) {
        change(&mut frames, &mut rng);
    }
    if rng.below(4) != 0 {
        match_offers(&mut frames, &mut rng);
    }
    let mut bytes = seeds::encode(&frames);
    if rng.below(2) == 0 {
        bytes.extend_from_slice(&tail);
    }
    if bytes.len() > max_size || bytes == data[..size] {
        return fuzzer_mutate(data, size, max_size);
    }
    data[..bytes.len()].copy_from_slice(&bytes);
    bytes.len()
}

/// The frames at the front of `input`, and the bytes after the last one.
fn decode_all(input: &[u8]) -> (Vec<Frame>, Vec<u8>) {
    let mut frames = Vec::new();
    let mut offset = 0;
    while let Ok(Some((frame, used))) = Frame::decode(&input[offset..]) {
        frames.push(frame);
        offset += used;
    }
    (frames, input[offset..].to_vec())
}

/// One change to the sequence, as a sender could make it.
fn change(frames: &mut Vec<Frame>, rng: &mut Rng) {
    if frames.is_empty() {
        frames.push(fresh(frames, rng));
        return;
    }
    let at = rng.below(frames.len());
    match rng.below(10) {
        0 | 1 => {
            let frame = fresh(frames, rng);
            frames.insert(rng.below(frames.len() + 1), frame);
        }
        2 => {
            frames.remove(at);
        }
        3 => {
            let copy = frames[at].clone();
            frames.insert(rng.below(frames.len() + 1), copy);
        }
        4 => {
            let other = rng.below(frames.len());
            frames.swap(at, other);
        }
        5 => {
            // Split a chunk in two.
            if let Frame::Chunk { id, data } = &mut frames[at]
                && data.len() > 1
            {
                let rest = data.split_off(1 + rng.below(data.len() - 1));
                let id = *id;
                frames.insert(at + 1, Frame::Chunk { id, data: rest });
            }
        }
        6 => {
            // Give a frame the id of another one.
            let other = frames[rng.below(frames.len())].clone();
            if let (Some(id), Some(target)) = (id_of(&other), id_mut(&mut frames[at])) {
                *target = id;
            }
        }
        7 => {
            // A reconnect: the rest arrives on a new connection.
            frames.insert(at, hello(rng));
        }
        _ => change_field(&mut frames[at], rng),
    }
}

/// Changes one field of `frame` in place.
fn change_field(frame: &mut Frame, rng: &mut Rng) {
    match frame {
        Frame::Offer { name, size, .. } => match rng.below(3) {
            0 => *name = pick(seeds::NAMES, rng).to_owned(),
            1 => *name = mutate_text(name, MAX_FILE_NAME_LEN),
            _ => *size = interesting(*size, rng),
        },
        Frame::Chunk { data, .. } => {
            let mut bytes = data.clone();
            let len = bytes.len();
            let room = MAX_CHUNK_LEN.min(len * 2 + 16);
            bytes.resize(room, 0);
            let new_len = fuzzer_mutate(&mut bytes, len, room);
            bytes.truncate(new_len);
            if !bytes.is_empty() {
                *data = bytes;
            }
        }
        Frame::Message { seq, text } => match rng.below(2) {
            0 => *seq = interesting(*seq, rng),
            _ => *text = mutate_text(text, MAX_TEXT_LEN),
        },
        Frame::Cancel { reason, .. } => *reason = mutate_text(reason, MAX_REASON_LEN),
        Frame::Hello { session_id, .. } => *session_id = rng.next() % 4,
        _ => {}
    }
}

/// A new frame of the kinds a sender sends, with small ids so that it meets others.
fn fresh(frames: &[Frame], rng: &mut Rng) -> Frame {
    let id = rng.next() % 5;
    match rng.below(8) {
        0..=2 => {
            let data: Vec<u8> = (0..1 + rng.below(12)).map(|_| rng.next() as u8).collect();
            Frame::Offer {
                id,
                size: data.len() as u64,
                sha256: seeds::sha256(&data),
                name: pick(seeds::NAMES, rng).to_owned(),
            }
        }
        3..=5 => Frame::Chunk {
            id,
            data: (0..1 + rng.below(12)).map(|_| rng.next() as u8).collect(),
        },
        6 => Frame::Cancel {
            id,
            reason: "changed".into(),
        },
        _ => {
            let seq = frames
                .iter()
                .filter_map(|frame| match frame {
                    Frame::Message { seq, .. } => Some(*seq),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            Frame::Message {
                seq: seq.saturating_add(1),
                text: "line".into(),
            }
        }
    }
}

fn hello(rng: &mut Rng) -> Frame {
    Frame::Hello {
        version: chat::frame::PROTOCOL_VERSION,
        session_id: rng.next() % 4,
        name: "fuzz".into(),
    }
}

/// Makes offers declare the size and SHA-256 of the chunks of their id that follow
/// them (up to the next offer of that id), so that transfers can verify: all of
/// them, or one.
fn match_offers(frames: &mut [Frame], rng: &mut Rng) {
    let offers: Vec<usize> = (0..frames.len())
        .filter(|&i| matches!(frames[i], Frame::Offer { .. }))
        .collect();
    if offers.is_empty() {
        return;
    }
    let only = (rng.below(2) == 0).then(|| offers[rng.below(offers.len())]);
    for at in offers {
        if only.is_some_and(|only| only != at) {
            continue;
        }
        let Frame::Offer { id, .. } = frames[at] else {
            unreachable!()
        };
        let mut data = Vec::new();
        for frame in &frames[at + 1..] {
            match frame {
                Frame::Offer { id: next, .. } if *next == id => break,
                Frame::Chunk {
                    id: of,
                    data: bytes,
                } if *of == id => data.extend_from_slice(bytes),
                _ => {}
            }
        }
        if let Frame::Offer { size, sha256, .. } = &mut frames[at] {
            *size = data.len() as u64;
            *sha256 = seeds::sha256(&data);
        }
    }
}

fn id_of(frame: &Frame) -> Option<u64> {
    match frame {
        Frame::Offer { id, .. }
        | Frame::Chunk { id, .. }
        | Frame::Cancel { id, .. }
        | Frame::Accept { id, .. }
        | Frame::Verdict { id, .. } => Some(*id),
        _ => None,
    }
}

fn id_mut(frame: &mut Frame) -> Option<&mut u64> {
    match frame {
        Frame::Offer { id, .. }
        | Frame::Chunk { id, .. }
        | Frame::Cancel { id, .. }
        | Frame::Accept { id, .. }
        | Frame::Verdict { id, .. } => Some(id),
        _ => None,
    }
}

/// `text` mutated by libFuzzer, kept valid UTF-8 within `max` bytes.
fn mutate_text(text: &str, max: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let len = bytes.len();
    let room = max.min(len * 2 + 16);
    bytes.resize(room, 0);
    let new_len = fuzzer_mutate(&mut bytes, len, room);
    bytes.truncate(new_len);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

fn interesting(value: u64, rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => value.wrapping_add(1),
        1 => value.wrapping_sub(1),
        2 => [0, 1, 1 << 20, (1 << 20) + 1, u64::MAX][rng.below(5)],
        _ => rng.next() % 64,
    }
}

fn pick<'a>(from: &[&'a str], rng: &mut Rng) -> &'a str {
    from[rng.below(from.len())]
}

/// xorshift64, seeded by libFuzzer: the same seed gives the same mutation.
struct Rng(u64);

impl Rng {
    fn new(seed: u32) -> Self {
        Rng(u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
