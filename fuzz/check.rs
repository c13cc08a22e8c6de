// SPDX-License-Identifier: GPL-2.0

//! The state-format properties, as functions of an input, shared by the
//! bounded property tests, the `make fuzz` driver and the replay of saved
//! failing inputs.
//!
//! "Refused or exactly what it says" is checked two ways:
//!
//! - **exact**: for a record built from a model (field edits included, CRC
//!   right), the decoder returns exactly the model's content when the model
//!   keeps every documented rule, and otherwise an error naming a rule the
//!   model breaks; a stream of such records gives exactly the model
//!   stream's outcome (device memory by "last record wins", the device
//!   record's state, or a refusal at the byte where the first bad header or
//!   record ends);
//! - **canonical**: for any bytes at all, whatever a decoder accepts
//!   re-encodes (with the module's encoder) to exactly those bytes, so no
//!   byte is ignored, and no two inputs decode to the same value; accepted
//!   values also pass `validate`, prefixes of accepted records are refused,
//!   and `peek_record` agrees with the decoders and reads only the header.

use mblit_logic::state::{
    self, decode, decode_pages_chunk, encoded_len, max_encoded_len, pages_chunk_len, peek_record,
    validate, RecordInfo, RecordKind, StateError, HEADER_LEN, PAGES_CHUNK_MAX, PAGE_ENTRY_LEN,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::model::{
    collect_pages, encode_chunk, encode_device, expect_stream, normalise, Expect, RawRecord,
    StreamOutcome, StreamSpec, Vram, K_RING_BASE, K_RING_SIZE,
};
use crate::stream::receive;

type Check = Result<(), TestCaseError>;

/// Decodes `bytes` as a record of `kind`: the state (device records) and
/// the pages.
#[allow(clippy::type_complexity)]
fn decode_as(
    kind: RecordKind,
    bytes: &[u8],
    type_id: u32,
    vram_size: u64,
) -> Result<(Option<state::DeviceState>, Vec<(u64, crate::model::Page)>), StateError> {
    match kind {
        RecordKind::Device => {
            decode(bytes, type_id, vram_size).map(|d| (Some(d.state), collect_pages(d.pages())))
        }
        RecordKind::Pages => {
            decode_pages_chunk(bytes, type_id, vram_size).map(|c| (None, collect_pages(c.pages())))
        }
    }
}

/// Page indices and the CRC of each page's data: a printable digest.
fn summary(pages: &[(u64, crate::model::Page)]) -> Vec<(u64, u32)> {
    pages
        .iter()
        .map(|(i, p)| (*i, state::crc32(&p[..])))
        .collect()
}

/// A record built from model `m` decodes to exactly what `m` says.
pub fn record_exact(m: &RawRecord, bytes: &[u8], type_id: u32, vram_size: u64) -> Check {
    let kind = m.kind();
    let other = match kind {
        RecordKind::Device => RecordKind::Pages,
        RecordKind::Pages => RecordKind::Device,
    };
    let peek = peek_record(bytes, type_id, vram_size);
    let got = decode_as(kind, bytes, type_id, vram_size);
    // The other kind's decoder refuses it by its magic (unless the magic
    // was changed to the other kind's).
    let theirs = decode_as(other, bytes, type_id, vram_size);
    if m.framing.magic.is_none_or(|x| x == m.required().magic) {
        prop_assert_eq!(theirs, Err(StateError::BadMagic));
    } else {
        prop_assert!(theirs.is_err());
    }
    match m.expect(type_id, vram_size) {
        Expect::Ok { kind, state, pages } => {
            let len = bytes.len();
            prop_assert_eq!(peek, Ok(RecordInfo { kind, len }));
            let Ok((got_state, got_pages)) = got else {
                return Err(TestCaseError::fail(format!("refused: {:?}", got.err())));
            };
            prop_assert_eq!(got_state, state);
            prop_assert_eq!(summary(&got_pages), summary(&pages));
            prop_assert!(got_pages == pages, "page data differs");
            // The module's encoder writes the documented layout.
            let enc = match state {
                Some(s) => encode_device(&s, &pages),
                None => encode_chunk(type_id, vram_size, &pages),
            };
            prop_assert!(
                enc == bytes,
                "encoder differs from docs/migration.md layout"
            );
        }
        Expect::BadHeader(errs) => {
            let Err(e) = peek else {
                return Err(TestCaseError::fail("peek_record accepted a bad header"));
            };
            prop_assert!(errs.contains(&e), "peek_record: {:?} not in {:?}", e, errs);
            prop_assert!(got.is_err(), "decoder accepted a bad header");
        }
        Expect::BadRecord(errs) => {
            // The header's length, which may not be the record's.
            let len = m.total() as usize;
            prop_assert_eq!(peek, Ok(RecordInfo { kind, len }));
            let Err(e) = got else {
                return Err(TestCaseError::fail(
                    "decoder accepted a record breaking a rule",
                ));
            };
            prop_assert!(errs.contains(&e), "decoder: {:?} not in {:?}", e, errs);
        }
    }
    Ok(())
}

/// Any bytes: refused, or exactly the encoding of what they decode to.
pub fn bytes_canonical(bytes: &[u8], type_id: u32, vram_size: u64) -> Check {
    let peek = peek_record(bytes, type_id, vram_size);
    match bytes.get(..HEADER_LEN) {
        // peek_record reads the header and nothing else.
        Some(h) => prop_assert_eq!(peek, peek_record(h, type_id, vram_size)),
        None => prop_assert_eq!(peek, Err(StateError::Truncated)),
    }
    if let Ok(info) = peek {
        // The length is one a record of that kind can have, bounded as
        // docs/migration.md §3.2 promises.
        match info.kind {
            RecordKind::Device => {
                prop_assert!(info.len >= encoded_len(0));
                prop_assert_eq!((info.len - encoded_len(0)) % PAGE_ENTRY_LEN, 0);
                prop_assert!(info.len <= max_encoded_len(vram_size));
            }
            RecordKind::Pages => {
                prop_assert!(info.len >= pages_chunk_len(0));
                prop_assert_eq!((info.len - pages_chunk_len(0)) % PAGE_ENTRY_LEN, 0);
                prop_assert!(info.len <= pages_chunk_len(PAGES_CHUNK_MAX));
            }
        }
    }
    let len = bytes.len();
    if let Ok(d) = decode(bytes, type_id, vram_size) {
        prop_assert_eq!(d.state.type_id, type_id);
        prop_assert_eq!(d.state.vram_size, vram_size);
        prop_assert_eq!(validate(&d.state, type_id, vram_size), Ok(()));
        // The accessors the restore paths use agree with the values.
        let s = &d.state;
        prop_assert_eq!(*s.reg_file().values(), s.regs);
        prop_assert_eq!(s.error_code().map_or(0, |e| e.code()), s.error);
        match s.ring() {
            Some(r) => {
                prop_assert!(s.ring_valid);
                prop_assert_eq!(r.base(), s.regs[K_RING_BASE]);
                prop_assert_eq!(u64::from(r.size()), s.regs[K_RING_SIZE]);
            }
            None => prop_assert!(!s.ring_valid),
        }
        let pages = collect_pages(d.pages());
        prop_assert_eq!(pages.len(), d.npages());
        prop_assert!(encode_device(&d.state, &pages) == bytes, "not canonical");
        prop_assert_eq!(
            peek,
            Ok(RecordInfo {
                kind: RecordKind::Device,
                len
            })
        );
        prefixes_refused(bytes, |b| decode(b, type_id, vram_size).is_err())?;
    }
    if let Ok(c) = decode_pages_chunk(bytes, type_id, vram_size) {
        let pages = collect_pages(c.pages());
        prop_assert_eq!(pages.len(), c.npages());
        prop_assert!(
            encode_chunk(type_id, vram_size, &pages) == bytes,
            "not canonical"
        );
        prop_assert_eq!(
            peek,
            Ok(RecordInfo {
                kind: RecordKind::Pages,
                len
            })
        );
        prefixes_refused(bytes, |b| {
            decode_pages_chunk(b, type_id, vram_size).is_err()
        })?;
    }
    Ok(())
}

/// Proper prefixes of an accepted record (at the edges of its parts) are
/// refused.
fn prefixes_refused(bytes: &[u8], refused: impl Fn(&[u8]) -> bool) -> Check {
    let len = bytes.len();
    for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, len / 2, len - 4, len - 1] {
        if cut < len {
            prop_assert!(refused(&bytes[..cut]), "prefix of {} bytes accepted", cut);
        }
    }
    Ok(())
}

/// A stream, received in the writes of `writes` and in one write: the same
/// outcome; the records taken in lie back to back from the start and are
/// exactly the encodings of what they decoded to; device memory is "last
/// record wins"; a complete stream ends with its only device record.
pub fn stream_consistent(
    bytes: &[u8],
    type_id: u32,
    vram_size: u64,
    writes: &[u16],
) -> Result<StreamOutcome, TestCaseError> {
    let (out, r) = receive(bytes, type_id, vram_size, &[u16::MAX]);
    let (out2, r2) = receive(bytes, type_id, vram_size, writes);
    prop_assert_eq!(&out, &out2, "outcome depends on how the stream is split");
    prop_assert_eq!(r.taken.len(), r2.taken.len());
    let mut at = 0;
    let mut vram = Vram::new();
    let mut devices = 0;
    for t in &r.taken {
        prop_assert_eq!(t.start, at);
        let enc = match t.state {
            Some(s) => {
                devices += 1;
                encode_device(&s, &t.pages)
            }
            None => encode_chunk(type_id, vram_size, &t.pages),
        };
        prop_assert!(
            enc == bytes[at..at + t.len],
            "record taken in is not canonical"
        );
        for (i, p) in &t.pages {
            vram.insert(*i, p.clone());
        }
        at += t.len;
    }
    prop_assert!(devices <= 1);
    if devices == 1 {
        prop_assert_eq!(r.taken.last().map(|t| t.kind), Some(RecordKind::Device));
    }
    normalise(&mut vram);
    match &out {
        StreamOutcome::Ok { state, vram: v } => {
            prop_assert_eq!(at, bytes.len());
            prop_assert_eq!(devices, 1);
            prop_assert_eq!(Some(*state), r.taken.last().and_then(|t| t.state));
            prop_assert!(*v == vram, "device memory is not last-record-wins");
        }
        StreamOutcome::Refused { at: e } => {
            // After the bytes taken in: at the end of the header or record
            // that failed, or right after the device record when more
            // follows it.
            let after = *e > at || (devices == 1 && *e == at);
            prop_assert!(after && *e <= bytes.len(), "refused at {} after {}", e, at);
        }
        StreamOutcome::Incomplete => {
            prop_assert!(devices == 0 || at < bytes.len());
        }
    }
    Ok(out)
}

/// One execution of the state-decoder fuzz case: every record alone, then
/// the whole stream.
pub fn stream_case(spec: &StreamSpec) -> Check {
    let b = spec.build();
    let (type_id, vram_size) = b.geo;
    for (m, bytes, exact) in &b.records {
        if *exact {
            record_exact(m, bytes, type_id, vram_size)?;
        } else {
            bytes_canonical(bytes, type_id, vram_size)?;
        }
    }
    if b.records.len() > 1 || !b.exact {
        bytes_canonical(&b.bytes, type_id, vram_size)?;
    }
    let out = stream_consistent(&b.bytes, type_id, vram_size, &spec.writes)?;
    if b.exact {
        prop_assert_eq!(out, expect_stream(&b.models(), type_id, vram_size, b.limit));
    }
    Ok(())
}

/// The self-contained checks of a saved input (a failing input of
/// `make fuzz`): any bytes as a record and as a stream.
pub fn saved_input(bytes: &[u8], type_id: u32, vram_size: u64) -> Check {
    bytes_canonical(bytes, type_id, vram_size)?;
    stream_consistent(bytes, type_id, vram_size, &[1, 7, 4096])?;
    Ok(())
}
