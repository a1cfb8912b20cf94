//! Frames byte by byte, and every malformed payload refused.

use super::*;

#[test]
fn credit_is_a_limit_of_eight_bytes_and_nothing_else() {
    let mut out = Vec::new();
    Frame::Credit { limit: 0x0102 }.encode(&mut out);
    assert_eq!(out, [0x07, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(
        Frame::decode(&out),
        Ok(Some((Frame::Credit { limit: 0x0102 }, 13)))
    );
    for bad in [
        &[0x07, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1][..],
        &[0x07, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 1, 2, 3],
    ] {
        assert!(
            matches!(
                Frame::decode(bad),
                Err(FrameError::BadLength {
                    frame: "Credit",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn leave_is_a_bare_header_and_refuses_a_payload() {
    let mut out = Vec::new();
    Frame::Leave.encode(&mut out);
    assert_eq!(out, [0x04, 0, 0, 0, 0]);
    assert_eq!(Frame::decode(&out), Ok(Some((Frame::Leave, 5))));
    assert!(matches!(
        Frame::decode(&[0x04, 0, 0, 0, 1, 0]),
        Err(FrameError::BadLength { frame: "Leave", .. })
    ));
}

#[test]
fn finish_and_its_answer_are_bare_headers() {
    for (frame, kind) in [(Frame::Finish, 0x05), (Frame::FinishAck, 0x06)] {
        let mut out = Vec::new();
        frame.encode(&mut out);
        assert_eq!(out, [kind, 0, 0, 0, 0]);
        assert_eq!(Frame::decode(&out), Ok(Some((frame, 5))));
        assert!(matches!(
            Frame::decode(&[kind, 0, 0, 0, 1, 0]),
            Err(FrameError::BadLength { .. })
        ));
    }
}

#[test]
fn an_unhashed_offer_is_id_size_and_name_and_its_digest_id_and_hash() {
    let offer = Frame::OfferUnhashed {
        id: 1,
        size: 2,
        name: "a".into(),
    };
    assert_eq!(
        encoded(&offer),
        [
            0x17, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, b'a'
        ]
    );
    let digest = Frame::Digest {
        id: 1,
        sha256: [0xee; 32],
    };
    let mut expected = vec![0x18, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 1];
    expected.extend([0xee; 32]);
    assert_eq!(encoded(&digest), expected);
    assert_eq!(Frame::decode(&expected), Ok(Some((digest, 45))));
    let mut short = expected.clone();
    short[4] = 39;
    short.pop();
    let mut long = expected;
    long[4] = 41;
    long.push(0);
    for bad in [
        short,
        long,
        vec![
            0x17, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        ],
    ] {
        assert!(
            matches!(Frame::decode(&bad), Err(FrameError::BadLength { .. })),
            "{bad:?}"
        );
    }
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out);
    out
}

fn samples() -> Vec<Frame> {
    vec![
        Frame::Hello {
            version: PROTOCOL_VERSION,
            session_id: 0x0102_0304_0506_0708,
            name: "alice".into(),
        },
        Frame::Message {
            seq: 1,
            text: "héllo wörld".into(),
        },
        Frame::Message {
            seq: u64::MAX,
            text: String::new(),
        },
        Frame::Ack { seq: 42 },
        Frame::Leave,
        Frame::Finish,
        Frame::FinishAck,
        Frame::Credit { limit: 8 << 20 },
        Frame::Offer {
            id: 3,
            size: 5 << 32,
            sha256: [0xab; 32],
            name: "film (1).mkv".into(),
        },
        Frame::OfferUnhashed {
            id: 5,
            size: u64::MAX,
            name: "notes.txt".into(),
        },
        Frame::Digest {
            id: 5,
            sha256: [0xcd; 32],
        },
        Frame::Accept { id: 3, offset: 0 },
        Frame::Chunk {
            id: 3,
            data: vec![7; MAX_CHUNK_LEN],
        },
        Frame::Chunk {
            id: u64::MAX,
            data: vec![0],
        },
        Frame::Verdict {
            id: 3,
            status: VerdictStatus::Corrupt,
            detail: "expected ab…, got cd…".into(),
        },
        Frame::Cancel {
            id: 3,
            reason: String::new(),
        },
        Frame::Folder {
            id: 4,
            entries: 10_000,
            manifest_len: 600_000,
            size: 200 << 20,
            name: "src".into(),
        },
        Frame::Manifest {
            id: 4,
            data: vec![1; MAX_CHUNK_LEN],
        },
    ]
}

#[test]
fn folder_has_documented_layout() {
    let bytes = encoded(&Frame::Folder {
        id: 1,
        entries: 2,
        manifest_len: 3,
        size: 4,
        name: "d".into(),
    });
    assert_eq!(
        bytes,
        [
            0x15, 0, 0, 0, 25, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,
            4, b'd'
        ]
    );
    assert!(matches!(
        Frame::decode(&[
            0x15, 0, 0, 0, 23, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]),
        Err(FrameError::BadLength {
            frame: "Folder",
            ..
        })
    ));
    assert!(matches!(
        Frame::decode(&[0x16, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]),
        Err(FrameError::BadLength {
            frame: "Manifest",
            ..
        })
    ));
}

#[test]
fn round_trips_every_frame() {
    for frame in samples() {
        let bytes = encoded(&frame);
        assert_eq!(Frame::decode(&bytes), Ok(Some((frame, bytes.len()))));
    }
}

#[test]
fn message_has_documented_layout() {
    let bytes = encoded(&Frame::Message {
        seq: 7,
        text: "hi".into(),
    });
    assert_eq!(bytes, b"\x02\x00\x00\x00\x0a\0\0\0\0\0\0\0\x07hi");
}

#[test]
fn hello_has_documented_layout() {
    let bytes = encoded(&Frame::Hello {
        version: 1,
        session_id: 9,
        name: "bob".into(),
    });
    assert_eq!(bytes, b"\x01\x00\x00\x00\x0d\x00\x01\0\0\0\0\0\0\0\x09bob");
}

#[test]
fn every_truncation_asks_for_more() {
    for frame in samples() {
        let bytes = encoded(&frame);
        for cut in 0..bytes.len() {
            assert_eq!(
                Frame::decode(&bytes[..cut]),
                Ok(None),
                "{frame:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn decodes_first_of_two_frames() {
    let mut bytes = encoded(&Frame::Ack { seq: 1 });
    let first_len = bytes.len();
    bytes.extend(encoded(&Frame::Ack { seq: 2 }));
    assert_eq!(
        Frame::decode(&bytes),
        Ok(Some((Frame::Ack { seq: 1 }, first_len)))
    );
}

#[test]
fn rejects_oversized_length_before_payload_arrives() {
    let header = [TYPE_MESSAGE, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        Frame::decode(&header),
        Err(FrameError::TooLarge { len: 0xffff_ffff })
    );
    let just_over = (MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes();
    let header = [
        TYPE_ACK,
        just_over[0],
        just_over[1],
        just_over[2],
        just_over[3],
    ];
    assert!(matches!(
        Frame::decode(&header),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn rejects_unknown_type_from_first_byte() {
    assert_eq!(Frame::decode(&[0x7f]), Err(FrameError::UnknownType(0x7f)));
    assert_eq!(
        Frame::decode(&[0x00, 0, 0, 0, 0]),
        Err(FrameError::UnknownType(0))
    );
}

#[test]
fn rejects_invalid_utf8() {
    let bytes = b"\x02\x00\x00\x00\x0a\0\0\0\0\0\0\0\x01\xff\xfe";
    assert_eq!(
        Frame::decode(bytes),
        Err(FrameError::InvalidUtf8 { frame: "Message" })
    );
}

#[test]
fn rejects_short_and_long_fixed_payloads() {
    let short_ack = b"\x03\x00\x00\x00\x04\0\0\0\x01";
    assert!(matches!(
        Frame::decode(short_ack),
        Err(FrameError::BadLength { frame: "Ack", .. })
    ));
    let long_ack = b"\x03\x00\x00\x00\x09\0\0\0\0\0\0\0\x01\x00";
    assert!(matches!(
        Frame::decode(long_ack),
        Err(FrameError::BadLength { frame: "Ack", .. })
    ));
    let short_message = b"\x02\x00\x00\x00\x03abc";
    assert!(matches!(
        Frame::decode(short_message),
        Err(FrameError::BadLength {
            frame: "Message",
            ..
        })
    ));
    let short_hello = b"\x01\x00\x00\x00\x02\x00\x01";
    assert!(matches!(
        Frame::decode(short_hello),
        Err(FrameError::BadLength { frame: "Hello", .. })
    ));
}

#[test]
fn transfer_frames_have_documented_layout() {
    let offer = encoded(&Frame::Offer {
        id: 1,
        size: 2,
        sha256: [0x11; 32],
        name: "a".into(),
    });
    let mut expected = b"\x10\x00\x00\x00\x31\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02".to_vec();
    expected.extend([0x11; 32]);
    expected.push(b'a');
    assert_eq!(offer, expected);
    assert_eq!(
        encoded(&Frame::Accept { id: 1, offset: 0 }),
        b"\x11\x00\x00\x00\x10\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0"
    );
    assert_eq!(
        encoded(&Frame::Chunk {
            id: 1,
            data: b"xy".to_vec()
        }),
        b"\x12\x00\x00\x00\x0a\0\0\0\0\0\0\0\x01xy"
    );
    assert_eq!(
        encoded(&Frame::Verdict {
            id: 1,
            status: VerdictStatus::Verified,
            detail: "ok".into()
        }),
        b"\x13\x00\x00\x00\x0b\0\0\0\0\0\0\0\x01\x00ok"
    );
    assert_eq!(
        encoded(&Frame::Cancel {
            id: 1,
            reason: "no".into()
        }),
        b"\x14\x00\x00\x00\x0a\0\0\0\0\0\0\0\x01no"
    );
}

#[test]
fn rejects_malformed_transfer_frames() {
    let empty_chunk = b"\x12\x00\x00\x00\x08\0\0\0\0\0\0\0\x01";
    assert!(matches!(
        Frame::decode(empty_chunk),
        Err(FrameError::BadLength { frame: "Chunk", .. })
    ));
    let mut big_chunk = vec![TYPE_CHUNK];
    big_chunk.extend_from_slice(&((8 + MAX_CHUNK_LEN + 1) as u32).to_be_bytes());
    big_chunk.extend(vec![0; 8 + MAX_CHUNK_LEN + 1]);
    assert!(matches!(
        Frame::decode(&big_chunk),
        Err(FrameError::BadLength { frame: "Chunk", .. })
    ));
    let short_offer = b"\x10\x00\x00\x00\x10\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02";
    assert!(matches!(
        Frame::decode(short_offer),
        Err(FrameError::BadLength { frame: "Offer", .. })
    ));
    let long_accept = b"\x11\x00\x00\x00\x11\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0";
    assert!(matches!(
        Frame::decode(long_accept),
        Err(FrameError::BadLength {
            frame: "Accept",
            ..
        })
    ));
    let bad_status = b"\x13\x00\x00\x00\x09\0\0\0\0\0\0\0\x01\x09";
    assert_eq!(Frame::decode(bad_status), Err(FrameError::UnknownStatus(9)));
    let mut long_name = vec![TYPE_OFFER];
    long_name.extend_from_slice(&((48 + MAX_FILE_NAME_LEN + 1) as u32).to_be_bytes());
    long_name.extend(vec![b'a'; 48 + MAX_FILE_NAME_LEN + 1]);
    assert!(matches!(
        Frame::decode(&long_name),
        Err(FrameError::TextTooLong { frame: "Offer", .. })
    ));
}

#[test]
fn rejects_overlong_text_fields() {
    let mut bytes = vec![TYPE_HELLO];
    let name = vec![b'a'; MAX_NAME_LEN + 1];
    bytes.extend_from_slice(&((10 + name.len()) as u32).to_be_bytes());
    bytes.extend_from_slice(&[0; 10]);
    bytes.extend_from_slice(&name);
    assert!(matches!(
        Frame::decode(&bytes),
        Err(FrameError::TextTooLong { frame: "Hello", .. })
    ));

    let mut bytes = vec![TYPE_MESSAGE];
    let text = vec![b'a'; MAX_TEXT_LEN + 1];
    bytes.extend_from_slice(&((8 + text.len()) as u32).to_be_bytes());
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&text);
    assert!(matches!(
        Frame::decode(&bytes),
        Err(FrameError::TextTooLong {
            frame: "Message",
            ..
        })
    ));
}
