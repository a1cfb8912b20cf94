//! Every frame round-trips, and no byte sequence panics the decoder.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn text(max_chars: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{0,{max_chars}}}")).expect("valid regex")
}

fn any_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u16>(), any::<u64>(), text(16)).prop_map(|(version, session_id, name)| {
            Frame::Hello {
                version,
                session_id,
                name,
            }
        }),
        (any::<u64>(), text(200)).prop_map(|(seq, text)| Frame::Message { seq, text }),
        any::<u64>().prop_map(|seq| Frame::Ack { seq }),
        Just(Frame::Leave),
        Just(Frame::Finish),
        Just(Frame::FinishAck),
        any::<u64>().prop_map(|limit| Frame::Credit { limit }),
        (any::<u64>(), any::<u64>(), any::<[u8; 32]>(), text(60)).prop_map(
            |(id, size, sha256, name)| {
                Frame::Offer {
                    id,
                    size,
                    sha256,
                    name,
                }
            }
        ),
        (any::<u64>(), any::<u64>(), text(60)).prop_map(|(id, size, name)| Frame::OfferUnhashed {
            id,
            size,
            name
        }),
        (any::<u64>(), any::<[u8; 32]>()).prop_map(|(id, sha256)| Frame::Digest { id, sha256 }),
        (any::<u64>(), any::<u64>()).prop_map(|(id, offset)| Frame::Accept { id, offset }),
        (any::<u64>(), vec(any::<u8>(), 1..2000)).prop_map(|(id, data)| Frame::Chunk { id, data }),
        (any::<u64>(), 0u8..4, text(100)).prop_map(|(id, status, detail)| Frame::Verdict {
            id,
            status: VerdictStatus::from_byte(status).unwrap(),
            detail
        }),
        (any::<u64>(), text(100)).prop_map(|(id, reason)| Frame::Cancel { id, reason }),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            text(60)
        )
            .prop_map(|(id, entries, manifest_len, size, name)| Frame::Folder {
                id,
                entries,
                manifest_len,
                size,
                name,
            }),
        (any::<u64>(), vec(any::<u8>(), 1..2000))
            .prop_map(|(id, data)| Frame::Manifest { id, data }),
    ]
}

proptest! {
    #[test]
    fn every_frame_round_trips(frame in any_frame()) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        prop_assert_eq!(Frame::decode(&bytes), Ok(Some((frame, bytes.len()))));
    }

    #[test]
    fn a_stream_of_frames_decodes_in_order_from_any_prefix(frames in vec(any_frame(), 1..6), cut in any::<proptest::sample::Index>()) {
        let mut bytes = Vec::new();
        for frame in &frames {
            frame.encode(&mut bytes);
        }
        let cut = cut.index(bytes.len() + 1);
        let mut decoded = Vec::new();
        let mut offset = 0;
        while let Some((frame, used)) = Frame::decode(&bytes[offset..cut]).unwrap() {
            decoded.push(frame);
            offset += used;
        }
        prop_assert!(decoded.len() <= frames.len());
        prop_assert_eq!(&decoded[..], &frames[..decoded.len()]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overrun(bytes in vec(any::<u8>(), 0..512)) {
        if let Ok(Some((_, used))) = Frame::decode(&bytes) {
            prop_assert!(used <= bytes.len());
            prop_assert!(used >= HEADER_LEN);
        }
    }
}
