// SPDX-License-Identifier: GPL-2.0

//! Properties of the state format's records (`state::encode`, `decode`,
//! `encode_pages_chunk`, `decode_pages_chunk`, `peek_record`, `validate`)
//! and of streams of them.

use mblit_logic::state::{
    decode, decode_pages_chunk, peek_record, validate, RecordInfo, RecordKind, StateError,
    DEVICE_MAGIC, PAGES_MAGIC, PAGE_ENTRY_LEN,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::check::{bytes_canonical, record_exact};
use crate::config;
use crate::model::{
    build_pages, collect_pages, edits, encode_chunk, encode_device, page_limit, pages_spec, raw_op,
    record_spec, state_spec, Edit, RawRecord, RecordSpec, StreamSpec, GEOMETRIES, K_CTRL,
};

fn geometry() -> impl Strategy<Value = usize> {
    0..GEOMETRIES.len()
}

/// A record with no byte-level mutation.
fn clean_record(device: u32, pages: u32) -> impl Strategy<Value = RecordSpec> {
    record_spec(device, pages).prop_map(|mut r| {
        r.raw.clear();
        r.foreign = None;
        r
    })
}

#[test]
fn reference_tables_match_the_module() {
    crate::model::doc_regs_match_the_module();
    assert_eq!(crate::model::reference_crc32(b"123456789"), 0xcbf4_3926);
}

/// A record header: the fields of docs/migration.md §1.2.
#[derive(Debug, Clone, Copy)]
struct Header {
    magic: u32,
    version: u32,
    type_id: u32,
    count: u32,
    vram_size: u64,
    total: u64,
}

impl Header {
    fn bytes(&self) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[0..4].copy_from_slice(&self.magic.to_le_bytes());
        h[4..8].copy_from_slice(&self.version.to_le_bytes());
        h[8..12].copy_from_slice(&self.type_id.to_le_bytes());
        h[12..16].copy_from_slice(&self.count.to_le_bytes());
        h[16..24].copy_from_slice(&self.vram_size.to_le_bytes());
        h[24..32].copy_from_slice(&self.total.to_le_bytes());
        h
    }
}

/// docs/migration.md §1.7 item 1 and §3.2 for a header alone: the record's
/// kind and length, or the rules it breaks.
fn reference_peek(h: &Header, type_id: u32, vram_size: u64) -> Result<RecordInfo, Vec<StateError>> {
    let mut e = Vec::new();
    let kind = match h.magic {
        DEVICE_MAGIC => RecordKind::Device,
        PAGES_MAGIC => RecordKind::Pages,
        _ => return Err(vec![StateError::BadMagic]),
    };
    if h.version > 1 {
        e.push(StateError::NewerVersion(h.version));
    } else if h.version < 1 {
        e.push(StateError::BadVersion);
    }
    if h.type_id != type_id {
        e.push(StateError::WrongType);
    }
    if h.vram_size != vram_size {
        e.push(StateError::WrongVramSize);
    }
    let limit = u128::from(page_limit(vram_size));
    let (total, entry) = (u128::from(h.total), PAGE_ENTRY_LEN as u128);
    match kind {
        RecordKind::Device => {
            if h.count != 5 {
                e.push(StateError::BadSection);
            }
            if total < 556 || (total - 556) % entry != 0 || total > 556 + limit * entry {
                e.push(StateError::BadLength);
            }
        }
        RecordKind::Pages => {
            let c = u128::from(h.count);
            if c > 256 || c > limit || total != 36 + c * entry {
                e.push(StateError::BadLength);
            }
        }
    }
    if e.is_empty() {
        Ok(RecordInfo {
            kind,
            len: h.total as usize,
        })
    } else {
        Err(e)
    }
}

/// A page count: absolute, or relative to the device's page count.
#[derive(Debug, Clone, Copy)]
enum Count {
    Abs(u64),
    FromLimit(i8),
}

/// Headers with every field at and around its bounds: page counts around
/// 256 and around the device's page count, lengths around the largest
/// record and off by one entry or one byte, counts not matching lengths.
fn header() -> impl Strategy<Value = (usize, Header)> {
    let magic = prop_oneof![
        2 => Just(DEVICE_MAGIC),
        2 => Just(PAGES_MAGIC),
        1 => any::<u32>(),
    ];
    let version = prop_oneof![4 => Just(1u32), 1 => any::<u32>()];
    // Off the device's geometry, now and then.
    let geo_off = prop_oneof![6 => Just((0u32, 0i64)), 1 => (any::<u32>(), -1i64..=1)];
    let n = prop_oneof![
        1 => (0..=6u64).prop_map(Count::Abs),
        2 => (255..=257u64).prop_map(Count::Abs),
        2 => (-2i8..=2).prop_map(Count::FromLimit),
        1 => any::<u32>().prop_map(|n| Count::Abs(u64::from(n))),
    ];
    // The count field: as the page count requires, or another.
    let count =
        prop_oneof![4 => Just(None), 1 => prop_oneof![4..=6u32, any::<u32>()].prop_map(Some)];
    // The total: n entries, give or take an entry and a byte; or anything.
    let total = prop_oneof![
        4 => Just((0i64, 0i64)),
        2 => (-1i64..=1, -1i64..=1),
        1 => (any::<i64>(), Just(0)),
    ];
    (
        0..GEOMETRIES.len(),
        magic,
        version,
        geo_off,
        n,
        count,
        total,
    )
        .prop_map(|(g, magic, version, (dt, dv), n, count, (de, db))| {
            let (t, v) = GEOMETRIES[g];
            let n = match n {
                Count::Abs(n) => n,
                Count::FromLimit(d) => page_limit(v).wrapping_add_signed(i64::from(d)),
            };
            let (fixed, required) = if magic == PAGES_MAGIC {
                (36u64, n as u32)
            } else {
                (556, 5)
            };
            let total = n
                .wrapping_add_signed(de)
                .wrapping_mul(PAGE_ENTRY_LEN as u64)
                .wrapping_add(fixed)
                .wrapping_add_signed(db);
            let h = Header {
                magic,
                version,
                type_id: t.wrapping_add(dt),
                count: count.unwrap_or(required),
                vram_size: v.wrapping_add_signed(dv),
                total,
            };
            (g, h)
        })
}

proptest! {
    #![proptest_config(config(300, regressions!("state.txt")))]

    /// The module's CRC32, whole and in pieces, is the documented one.
    #[test]
    fn crc32_as_documented(
        data in prop::collection::vec(any::<u8>(), 0..10_000),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let want = crate::model::reference_crc32(&data);
        prop_assert_eq!(mblit_logic::state::crc32(&data), want);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort();
        let mut c = mblit_logic::state::Crc32::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([data.len()]) {
            c.update(&data[at..cut]);
            at = cut;
        }
        prop_assert_eq!(c.finish(), want);
    }
}

proptest! {
    // Cheap: headers only.
    #![proptest_config(config(3000, regressions!("state.txt")))]

    /// `peek_record` on any header: the documented kind and length, with
    /// the length bounded by the kind, or an error naming a broken rule;
    /// never more than the header is read.
    #[test]
    fn peek_record_as_documented((g, h) in header()) {
        let (t, v) = GEOMETRIES[g];
        let got = peek_record(&h.bytes(), t, v);
        match reference_peek(&h, t, v) {
            Ok(info) => prop_assert_eq!(got, Ok(info)),
            Err(errs) => {
                let Err(e) = got else {
                    return Err(TestCaseError::fail("peek_record accepted a bad header"));
                };
                prop_assert!(errs.contains(&e), "{:?} not in {:?}", e, errs);
            }
        }
        // Followed by anything: the same.
        let mut more = h.bytes().to_vec();
        more.extend_from_slice(&[0xa5; 40]);
        prop_assert_eq!(peek_record(&more, t, v), got);
        for cut in [0, 1, 31] {
            prop_assert_eq!(peek_record(&h.bytes()[..cut], t, v), Err(StateError::Truncated));
        }
    }
}

proptest! {
    #![proptest_config(config(400, regressions!("state.txt")))]

    /// Round trip: any valid state with random pages, encoded by the
    /// module, is the documented layout and decodes to itself.
    #[test]
    fn device_record_round_trip(
        geo in geometry(),
        st in state_spec(),
        pages in pages_spec(),
    ) {
        let (t, v) = GEOMETRIES[geo];
        let raw = st.build(t, v);
        let pages = build_pages(&pages, v);
        let s = raw.state(t, v);
        prop_assert_eq!(validate(&s, t, v), Ok(()));
        let bytes = encode_device(&s, &pages);
        let model = RawRecord { type_id: t, vram_size: v, device: Some(raw), pages: pages.clone(), framing: Default::default() };
        prop_assert!(bytes == model.encode(), "not the documented layout");
        let d = decode(&bytes, t, v);
        prop_assert_eq!(d.map(|d| (d.state, collect_pages(d.pages()))), Ok((s, pages.clone())));
        let len = bytes.len();
        prop_assert_eq!(peek_record(&bytes, t, v), Ok(RecordInfo { kind: RecordKind::Device, len }));
        // ring_valid is stored only while CTRL.ENABLE is set.
        if s.regs[K_CTRL] & 1 == 0 {
            let mut claims = s;
            claims.ring_valid = true;
            prop_assert!(encode_device(&claims, &pages) == bytes);
        }
    }

    /// Round trip of pages records.
    #[test]
    fn pages_record_round_trip(geo in geometry(), pages in pages_spec()) {
        let (t, v) = GEOMETRIES[geo];
        let pages = build_pages(&pages, v);
        let bytes = encode_chunk(t, v, &pages);
        let model = RawRecord { type_id: t, vram_size: v, device: None, pages: pages.clone(), framing: Default::default() };
        prop_assert!(bytes == model.encode(), "not the documented layout");
        let c = decode_pages_chunk(&bytes, t, v).map(|c| collect_pages(c.pages()));
        prop_assert_eq!(c, Ok(pages));
        let len = bytes.len();
        prop_assert_eq!(peek_record(&bytes, t, v), Ok(RecordInfo { kind: RecordKind::Pages, len }));
    }

    /// Field changes with the CRC made right (a page's data, a page index,
    /// a register, a config byte, engine and IRQ bytes, …): the record
    /// decodes to exactly the changed fields when they keep every rule of
    /// docs/migration.md §1.7, and is refused with an error naming a
    /// broken rule otherwise.
    #[test]
    fn edited_records_decode_to_what_they_say(
        geo in geometry(),
        rec in clean_record(1, 1),
    ) {
        let g = GEOMETRIES[geo];
        let m = rec.model(g);
        record_exact(&m, &m.encode(), g.0, g.1)?;
    }

    /// Byte-level changes anywhere (bit flips, byte and integer writes at
    /// random and at field offsets, truncation, insertion, removal, with
    /// and without the CRC made right): refused, or exactly the encoding of
    /// what the bytes decode to.
    #[test]
    fn mutated_records_are_refused_or_canonical(
        geo in geometry(),
        rec in clean_record(1, 1),
        ops in prop::collection::vec(raw_op(), 1..6),
    ) {
        let g = GEOMETRIES[geo];
        let mut b = rec.model(g).encode();
        for op in &ops {
            op.apply(&mut b);
        }
        bytes_canonical(&b, g.0, g.1)?;
    }

    /// docs/migration.md §1.7: any burst of changed bits no longer than 32
    /// (a flipped bit among them) is caught, every truncation is
    /// `Truncated`, bytes inserted after the header are refused.
    #[test]
    fn small_corruptions_are_always_refused(
        geo in geometry(),
        rec in clean_record(1, 1),
        at in any::<u32>(),
        burst in any::<u32>().prop_filter("a change", |b| *b != 0),
        cut in any::<u32>(),
        insert in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let (t, v) = GEOMETRIES[geo];
        let mut rec = rec;
        rec.edits.clear();
        let good = rec.model((t, v)).encode();
        let len = good.len();
        let dec = |b: &[u8]| -> Result<(), StateError> {
            if rec.state.is_some() {
                decode(b, t, v).map(|_| ())
            } else {
                decode_pages_chunk(b, t, v).map(|_| ())
            }
        };
        // Only valid records: a refusal must be due to the corruption.
        if dec(&good).is_ok() {
            let mut b = good.clone();
            let at = at as usize % (len - 3);
            for (k, x) in burst.to_le_bytes().iter().enumerate() {
                b[at + k] ^= x;
            }
            prop_assert!(dec(&b).is_err(), "burst at {} accepted", at);
            let cut = cut as usize % len;
            prop_assert_eq!(dec(&good[..cut]), Err(StateError::Truncated));
            let mut b = good.clone();
            let at = 32 + at % (len - 31);
            b.splice(at..at, insert.iter().copied());
            prop_assert!(dec(&b).is_err(), "insertion at {} accepted", at);
        }
    }

    /// `validate` (what the region and v2 restore paths use) agrees with
    /// the documented value rules on any state a record can carry.
    #[test]
    fn validate_agrees_with_the_rules(
        geo in geometry(),
        st in state_spec(),
        edits in edits(),
    ) {
        let (t, v) = GEOMETRIES[geo];
        let mut r = RawRecord { type_id: t, vram_size: v, device: Some(st.build(t, v)), pages: vec![], framing: Default::default() };
        for e in &edits {
            e.apply(&mut r);
        }
        let mut d = r.device.unwrap();
        // Only what a DeviceState can hold.
        d.ring_valid %= 2;
        d.intx %= 2;
        d.engine_rsvd = [0; 6];
        d.irq_rsvd = [0; 7];
        let broken = d.violations(t, v);
        match validate(&d.state(t, v), t, v) {
            Ok(()) => prop_assert!(broken.is_empty(), "accepted, breaks {:?}", broken),
            Err(e) => prop_assert!(broken.contains(&e), "{:?} not in {:?}", e, broken),
        }
        // And the other geometries' devices refuse it.
        let other = GEOMETRIES[(geo + 1) % GEOMETRIES.len()];
        prop_assert!(validate(&d.state(t, v), other.0, other.1).is_err());
    }
}

/// Streams of valid records: pages records then a device record.
fn clean_stream() -> impl Strategy<Value = StreamSpec> {
    let middle = prop::collection::vec(clean_record(0, 1), 0..=3);
    let writes = prop_oneof![
        Just(vec![u16::MAX]),
        prop::collection::vec(1..=5000u16, 1..6),
    ];
    (geometry(), middle, clean_record(1, 0), writes).prop_map(|(geo, mut records, last, writes)| {
        records.push(last);
        for r in &mut records {
            // No field edits either.
            r.edits.clear();
        }
        StreamSpec {
            geo: geo as u8,
            records,
            raw: vec![],
            cut: None,
            writes,
        }
    })
}

proptest! {
    #![proptest_config(config(300, regressions!("stream.txt")))]

    /// Round trip of whole streams, split into writes anywhere: device
    /// memory is the last record's copy of each page (zero where none),
    /// the state is the device record's.
    #[test]
    fn stream_round_trip(spec in clean_stream()) {
        let b = spec.build();
        prop_assert!(b.exact);
        let out = crate::check::stream_consistent(&b.bytes, b.geo.0, b.geo.1, &spec.writes)?;
        let want = crate::model::expect_stream(&b.models(), b.geo.0, b.geo.1, b.limit);
        let complete = matches!(want, crate::model::StreamOutcome::Ok { .. });
        prop_assert!(complete);
        prop_assert_eq!(out, want);
    }
}

proptest! {
    // Exhaustive over the bits: 3 264 records per case.
    #![proptest_config(config(6, regressions!("state.txt")))]

    /// Every single bit of every register and config byte flipped in turn
    /// (CRC made right): judged exactly by the documented rules.
    #[test]
    fn every_state_bit_flip_is_judged_by_the_rules(geo in geometry(), st in state_spec()) {
        let g = GEOMETRIES[geo];
        let base = RawRecord {
            type_id: g.0,
            vram_size: g.1,
            device: Some(st.build(g.0, g.1)),
            pages: vec![],
            framing: Default::default(),
        };
        let flips = (0..19u8)
            .flat_map(|k| (0..64).map(move |bit| Edit::RegBit { k, bit }))
            .chain((0..=255u8).flat_map(|off| (0..8).map(move |bit| Edit::ConfigBit { off, bit })));
        for e in flips {
            let mut m = base.clone();
            e.apply(&mut m);
            record_exact(&m, &m.encode(), g.0, g.1)?;
        }
    }
}
