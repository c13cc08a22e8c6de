// SPDX-License-Identifier: GPL-2.0

//! Unit tests of the state format: layout, round trips, every decoder
//! error, the limits, robustness.

use super::super::config_space::{COMMAND_INTX_DISABLE, COMMAND_MASTER, COMMAND_MEMORY};
use super::super::regs::{
    ERR_BAD_OPCODE, ERR_RING_CONFIG, INT_ERROR, INT_FENCE, STATUS_BUSY, STATUS_ERROR,
};
use super::crc::CRC_TABLES;
use super::decoder::{decode_in, peek_record_in, read_regs};
use super::*;
use std::{vec, vec::Vec};

const TYPE: u32 = 1;
const VRAM: u64 = 1 << 20;
const NPAGES: u64 = VRAM / PAGE as u64;

/// Offsets of the section headers in a device record (docs/migration.md).
const OFF_CONFIG: usize = 32;
const OFF_REGS: usize = 304;
const OFF_ENGINE: usize = 472;
const OFF_IRQ: usize = 504;
const OFF_VRAM: usize = 528;
const OFF_PAGES: usize = 552;

fn reg_off(reg: Reg) -> usize {
    OFF_REGS + SECTION_HEADER_LEN + reg as usize * 8
}

/// A busy device: config programmed, ring enabled, counters, interrupt.
fn busy_state() -> DeviceState {
    let mut cfg = ConfigSpace::new(VRAM, TYPE as u16);
    let cmd = COMMAND_MEMORY | COMMAND_MASTER | COMMAND_INTX_DISABLE;
    cfg.write(4, &cmd.to_le_bytes()).unwrap();
    cfg.write(0x10, &0xfebf_0000u32.to_le_bytes()).unwrap();
    cfg.write(0x18, &0xe000_000cu32.to_le_bytes()).unwrap();
    cfg.write(0x44, &0xfee0_0000u32.to_le_bytes()).unwrap();
    cfg.write(0x4c, &0x4041u16.to_le_bytes()).unwrap();
    cfg.write(0x42, &[1]).unwrap();
    cfg.set_intx_pending(true);
    let mut f = RegFile::new();
    f.set(Reg::Ctrl, u64::from(CTRL_ENABLE));
    f.set(Reg::RingBase, 0x1_0000);
    f.set(Reg::RingSize, 64);
    f.set(Reg::RingHead, 0xffff_fff0);
    f.set(Reg::RingTail, 0x0000_0010);
    f.set(Reg::Status, u64::from(STATUS_BUSY));
    f.set(Reg::IntStatus, u64::from(INT_FENCE));
    f.set(Reg::IntMask, u64::from(INT_ERROR));
    f.set(Reg::FenceLast, 0xdead_beef_0000_0001);
    f.set(Reg::CmdCount, 12345);
    f.set(Reg::ByteCount, 1 << 40);
    f.set(Reg::Scratch2, 0x0123_4567_89ab_cdef);
    DeviceState {
        type_id: TYPE,
        vram_size: VRAM,
        config: *cfg.image(),
        regs: *f.values(),
        ring_valid: true,
        error: 0,
        errors: 3,
        intx_masked: true,
    }
}

fn page_of(i: u64) -> [u8; PAGE] {
    let mut p = [0u8; PAGE];
    for (k, b) in p.iter_mut().enumerate() {
        *b = (i as usize * 7 + k * 13 + k / 256) as u8;
    }
    p
}

fn enc(state: &DeviceState, pages: &[(u64, [u8; PAGE])]) -> Vec<u8> {
    let mut out = vec![0u8; encoded_len(pages.len())];
    encode(
        state,
        pages.len(),
        pages.iter().map(|(i, p)| (*i, p)),
        &mut out,
    )
    .unwrap();
    out
}

fn pages(idx: &[u64]) -> Vec<(u64, [u8; PAGE])> {
    idx.iter().map(|&i| (i, page_of(i))).collect()
}

/// Recomputes the CRC trailer after tampering.
fn reseal(b: &mut [u8]) {
    let n = b.len() - TRAILER_LEN;
    let c = crc32(&b[..n]);
    b[n..].copy_from_slice(&c.to_le_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn dec(b: &[u8]) -> Result<Decoded<'_>, StateError> {
    decode(b, TYPE, VRAM)
}

/// `b` with `f` applied and the CRC recomputed, decoded.
fn tampered(b: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Result<DeviceState, StateError> {
    let mut v = b.to_vec();
    f(&mut v);
    reseal(&mut v);
    decode(&v, TYPE, VRAM).map(|d| d.state)
}

fn with_state(f: impl FnOnce(&mut DeviceState)) -> Result<DeviceState, StateError> {
    let mut s = busy_state();
    f(&mut s);
    let b = enc(&s, &[]);
    decode(&b, TYPE, VRAM).map(|d| d.state)
}

// ---- CRC32

fn crc_bitwise(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn announced_len_reads_the_header_only() {
    let st = busy_state();
    let mut out = vec![0u8; encoded_len(0)];
    encode(&st, 0, core::iter::empty(), &mut out).unwrap();
    assert_eq!(announced_len(&out), Some(encoded_len(0)));
    assert_eq!(announced_len(&out[..HEADER_LEN]), Some(encoded_len(0)));
    assert_eq!(announced_len(&out[..HEADER_LEN - 1]), None);
    out[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    #[cfg(target_pointer_width = "64")]
    assert_eq!(announced_len(&out), Some(usize::MAX));
}

#[test]
fn crc32_known_vectors() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"a"), 0xe8b7_be43);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414f_a339
    );
    assert_eq!(crc32(&[0u8; 32]), 0x190a_55ad);
    assert_eq!(crc32(&[0xffu8; 32]), 0xff6c_ab0b);
    assert_eq!(CRC_TABLES[0][1], 0x7707_3096);
    assert_eq!(CRC_TABLES[0][255], 0x2d02_ef8d);
}

#[test]
fn crc32_incremental_and_slicing_match_bitwise() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 + i / 7) as u8).collect();
    for len in 0..data.len() {
        assert_eq!(crc32(&data[..len]), crc_bitwise(&data[..len]), "{len}");
    }
    let whole = crc32(&data);
    for split in 0..data.len() {
        for split2 in [split, (split + 3).min(data.len()), data.len()] {
            let mut c = Crc32::default();
            c.update(&data[..split]);
            c.update(&data[split..split2]);
            c.update(&data[split2..]);
            assert_eq!(c.finish(), whole);
        }
    }
}

// ---- Layout

#[test]
fn layout_matches_the_documentation() {
    assert_eq!(DEVICE_MAGIC.to_le_bytes(), *b"MBSV");
    assert_eq!(PAGES_MAGIC.to_le_bytes(), *b"MBPG");
    assert_ne!(DEVICE_MAGIC, super::super::region::STATE_MAGIC);
    assert_eq!(encoded_len(0), 556);
    assert_eq!(encoded_len(3), 556 + 3 * 4104);
    assert_eq!(pages_chunk_len(0), 36);
    assert_eq!(pages_chunk_len(2), 36 + 2 * 4104);
    assert_eq!(encoded_len(usize::MAX), usize::MAX);
    assert_eq!(pages_chunk_len(usize::MAX / 2), usize::MAX);
    assert_eq!(max_encoded_len(VRAM), encoded_len(256));
    assert_eq!(max_encoded_len(256 << 20), 556 + 65536 * 4104);
    assert_eq!(max_encoded_len(PAGE as u64 - 1), encoded_len(0));

    let s = busy_state();
    let b = enc(&s, &pages(&[5, 9]));
    let r32 = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let r64 = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(&b[0..4], b"MBSV");
    assert_eq!(r32(4), 1);
    assert_eq!(r32(8), TYPE);
    assert_eq!(r32(12), 5);
    assert_eq!(r64(16), VRAM);
    assert_eq!(r64(24), b.len() as u64);
    let secs = [
        (OFF_CONFIG, 1, 256),
        (OFF_REGS, 2, 152),
        (OFF_ENGINE, 3, 16),
        (OFF_IRQ, 4, 8),
        (OFF_VRAM, 5, 8 + 2 * 4104),
    ];
    for (off, id, len) in secs {
        assert_eq!((r32(off), r32(off + 4), r64(off + 8)), (id, 0, len));
    }
    assert_eq!(&b[OFF_CONFIG + 16..OFF_REGS], &s.config[..]);
    assert_eq!(
        r64(reg_off(Reg::Id)),
        u64::from(super::super::regs::ID_MAGIC)
    );
    assert_eq!(r64(reg_off(Reg::CmdCount)), 12345);
    assert_eq!(
        &b[OFF_ENGINE + 16..OFF_ENGINE + 24],
        &[1, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(r64(OFF_ENGINE + 24), 3);
    assert_eq!(&b[OFF_IRQ + 16..OFF_IRQ + 24], &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r64(OFF_VRAM + 16), 2);
    assert_eq!(r64(OFF_PAGES), 5);
    assert_eq!(&b[OFF_PAGES + 8..OFF_PAGES + 8 + PAGE], &page_of(5)[..]);
    assert_eq!(r64(OFF_PAGES + PAGE_ENTRY_LEN), 9);
    let n = b.len() - 4;
    assert_eq!(r32(n), crc32(&b[..n]));
}

// ---- Round trips

#[test]
fn round_trip_without_pages() {
    for s in [busy_state(), DeviceState::at_reset(TYPE, VRAM)] {
        let b = enc(&s, &[]);
        assert_eq!(b.len(), encoded_len(0));
        let d = dec(&b).unwrap();
        assert_eq!(d.state, s);
        assert_eq!(d.npages(), 0);
        assert_eq!(d.pages().count(), 0);
    }
}

#[test]
fn round_trip_one_page() {
    for idx in [0, 1, NPAGES - 1] {
        let s = busy_state();
        let p = pages(&[idx]);
        let b = enc(&s, &p);
        let d = dec(&b).unwrap();
        assert_eq!(d.state, s);
        let got: Vec<_> = d.pages().map(|(i, p)| (i, *p)).collect();
        assert_eq!(got, p);
    }
}

#[test]
fn round_trip_many_pages() {
    let all: Vec<u64> = (0..NPAGES).collect();
    let sparse: Vec<u64> = (0..NPAGES).filter(|i| i % 3 == 1).collect();
    for idx in [all, sparse] {
        let s = busy_state();
        let p = pages(&idx);
        let b = enc(&s, &p);
        assert_eq!(b.len(), encoded_len(idx.len()));
        let d = dec(&b).unwrap();
        assert_eq!(d.state, s);
        assert_eq!(d.npages(), idx.len());
        assert!(d.pages().map(|(i, p)| (i, *p)).eq(p.iter().copied()));
    }
}

#[test]
fn round_trip_every_type_and_error_states() {
    for (ty, mib) in [(1u32, 1u64), (16, 16), (256, 256)] {
        let vram = mib << 20;
        let mut s = DeviceState::at_reset(ty, vram);
        assert_eq!(validate(&s, ty, vram), Ok(()));
        // Enabled with an invalid ring: error stop at enable.
        let mut f = RegFile::new();
        f.set(Reg::Ctrl, u64::from(CTRL_ENABLE));
        f.set(Reg::RingSize, 3);
        f.set(
            Reg::Status,
            u64::from(STATUS_ERROR) | u64::from(ERR_RING_CONFIG) << 8,
        );
        f.set(Reg::IntStatus, u64::from(INT_ERROR));
        s.regs = *f.values();
        s.error = ERR_RING_CONFIG;
        s.errors = 1;
        let last = vram / PAGE as u64 - 1;
        let p = pages(&[0, last]);
        let mut out = vec![0u8; encoded_len(2)];
        encode(&s, 2, p.iter().map(|(i, p)| (*i, p)), &mut out).unwrap();
        let d = decode(&out, ty, vram).unwrap();
        assert_eq!(d.state, s);
        assert_eq!(d.state.error_code(), Some(ErrorCode::RingConfig));
        assert_eq!(d.state.ring(), None);
        assert_eq!(decode(&out, ty, vram * 2), Err(StateError::WrongVramSize));
    }
    // A valid ring that then hit a descriptor error.
    let s = with_state(|s| {
        let st = u64::from(STATUS_ERROR) | u64::from(ERR_BAD_OPCODE) << 8;
        s.regs[Reg::Status as usize] = st;
        s.error = ERR_BAD_OPCODE;
    })
    .unwrap();
    assert_eq!(s.ring().map(|r| (r.base(), r.size())), Some((0x1_0000, 64)));
    assert_eq!(s.reg_file().get(Reg::Scratch2), 0x0123_4567_89ab_cdef);
}

#[test]
fn encoder_stores_ring_valid_only_while_enabled() {
    let mut s = busy_state();
    s.regs[Reg::Ctrl as usize] = 0;
    s.regs[Reg::Status as usize] = 0;
    // A stale ring of the last enable, with the ring registers since
    // rewritten to something invalid: legal while disabled.
    s.regs[Reg::RingSize as usize] = 5;
    let b = enc(&s, &[]);
    let d = dec(&b).unwrap();
    assert!(!d.state.ring_valid);
    assert_eq!(
        d.state,
        DeviceState {
            ring_valid: false,
            ..s
        }
    );
}

// ---- Encoder errors

#[test]
fn encoder_rejects_bad_input() {
    let s = busy_state();
    let p = pages(&[1, 2, 3]);
    let it = || p.iter().map(|(i, p)| (*i, p));
    for len in [0, encoded_len(3) - 1, encoded_len(3) + 1, encoded_len(2)] {
        let mut out = vec![0u8; len];
        assert_eq!(encode(&s, 3, it(), &mut out), Err(StateError::BufferSize));
    }
    let mut out = vec![0u8; encoded_len(2)];
    assert_eq!(encode(&s, 2, it(), &mut out), Err(StateError::PageCount));
    let mut out = vec![0u8; encoded_len(4)];
    assert_eq!(encode(&s, 4, it(), &mut out), Err(StateError::PageCount));
    assert_eq!(
        encode(&s, usize::MAX, it(), &mut []),
        Err(StateError::BufferSize)
    );
    for bad in [[2u64, 2], [3, 2], [0, NPAGES], [NPAGES, NPAGES + 1]] {
        let p = pages(&bad);
        let mut out = vec![0u8; encoded_len(2)];
        let r = encode(&s, 2, p.iter().map(|(i, p)| (*i, p)), &mut out);
        assert_eq!(r, Err(StateError::BadPageIndex), "{bad:?}");
    }
    let p = pages(&[1]);
    let mut out = vec![0u8; pages_chunk_len(1)];
    let r = encode_pages_chunk(TYPE, VRAM, 1, p.iter().map(|(i, p)| (*i, p)), &mut out);
    assert_eq!(r, Ok(()));
    let mut out = vec![0u8; pages_chunk_len(PAGES_CHUNK_MAX + 1)];
    let r = encode_pages_chunk(
        TYPE,
        VRAM,
        PAGES_CHUNK_MAX + 1,
        core::iter::empty(),
        &mut out,
    );
    assert_eq!(r, Err(StateError::PageCount));
    let mut out = vec![0u8; pages_chunk_len(1) + 1];
    let r = encode_pages_chunk(TYPE, VRAM, 1, p.iter().map(|(i, p)| (*i, p)), &mut out);
    assert_eq!(r, Err(StateError::BufferSize));
}

// ---- Decoder: every truncation, every bit

#[test]
fn every_truncation_is_rejected() {
    for b in [enc(&busy_state(), &[]), enc(&busy_state(), &pages(&[7, 8]))] {
        for len in 0..b.len() {
            assert_eq!(dec(&b[..len]), Err(StateError::Truncated), "len {len}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(dec(&longer), Err(StateError::BadLength));
        assert!(dec(&b).is_ok());
    }
}

#[test]
fn every_flipped_bit_is_rejected() {
    for b in [
        enc(&busy_state(), &[]),
        enc(&busy_state(), &pages(&[NPAGES - 1])),
    ] {
        let mut v = b.clone();
        for bit in 0..v.len() * 8 {
            v[bit / 8] ^= 1 << (bit % 8);
            let r = dec(&v);
            assert!(r.is_err(), "bit {bit} accepted");
            v[bit / 8] ^= 1 << (bit % 8);
        }
        assert_eq!(v, b);
    }
}

#[test]
fn flipped_payload_bits_fail_the_checksum() {
    let b = enc(&busy_state(), &pages(&[3]));
    let mut v = b.clone();
    for off in [
        OFF_CONFIG + 16 + 0x0c,
        reg_off(Reg::Scratch0),
        OFF_PAGES + 100,
        b.len() - 1,
    ] {
        v[off] ^= 0x10;
        assert_eq!(dec(&v), Err(StateError::BadChecksum), "{off}");
        v[off] ^= 0x10;
    }
}

// ---- Decoder: header

#[test]
fn header_errors() {
    let b = enc(&busy_state(), &[]);
    assert_eq!(tampered(&b, |v| v[0] = b'X'), Err(StateError::BadMagic));
    assert_eq!(
        tampered(&b, |v| put32(v, 0, PAGES_MAGIC)),
        Err(StateError::BadMagic)
    );
    assert_eq!(
        tampered(&b, |v| put32(v, 0, super::super::region::STATE_MAGIC)),
        Err(StateError::BadMagic)
    );
    assert_eq!(
        tampered(&b, |v| put32(v, 4, 0)),
        Err(StateError::BadVersion)
    );
    for ver in [FORMAT_VERSION + 1, u32::MAX] {
        assert_eq!(
            tampered(&b, |v| put32(v, 4, ver)),
            Err(StateError::NewerVersion(ver))
        );
    }
    assert_eq!(
        tampered(&b, |v| put32(v, 8, 16)),
        Err(StateError::WrongType)
    );
    assert_eq!(decode(&b, 16, VRAM), Err(StateError::WrongType));
    assert_eq!(decode(&b, 16, 16 << 20), Err(StateError::WrongType));
    assert_eq!(
        tampered(&b, |v| put64(v, 16, 16 << 20)),
        Err(StateError::WrongVramSize)
    );
    assert_eq!(
        decode(&b, TYPE, VRAM + PAGE as u64),
        Err(StateError::WrongVramSize)
    );
    for n in [0, 4, 6, u32::MAX] {
        assert_eq!(
            tampered(&b, |v| put32(v, 12, n)),
            Err(StateError::BadSection)
        );
    }
    let len = b.len() as u64;
    assert_eq!(
        tampered(&b, |v| put64(v, 24, len + 1)),
        Err(StateError::Truncated)
    );
    assert_eq!(
        tampered(&b, |v| put64(v, 24, u64::MAX)),
        Err(StateError::Truncated)
    );
    assert_eq!(
        tampered(&b, |v| put64(v, 24, len - 1)),
        Err(StateError::BadLength)
    );
    assert_eq!(
        tampered(&b, |v| put64(v, 24, 0)),
        Err(StateError::BadLength)
    );
    // A stream from a larger mdev type.
    let big = DeviceState::at_reset(16, 16 << 20);
    let mut out = vec![0u8; encoded_len(0)];
    encode(&big, 0, core::iter::empty(), &mut out).unwrap();
    assert_eq!(dec(&out), Err(StateError::WrongType));
    assert!(decode(&out, 16, 16 << 20).is_ok());
}

// ---- Decoder: sections

#[test]
fn section_errors() {
    let b = enc(&busy_state(), &pages(&[1]));
    let offs = [OFF_CONFIG, OFF_REGS, OFF_ENGINE, OFF_IRQ, OFF_VRAM];
    for (k, &off) in offs.iter().enumerate() {
        for id in [0, 6, 0x8000_0001, SECTIONS[(k + 1) % 5]] {
            assert_eq!(
                tampered(&b, |v| put32(v, off, id)),
                Err(StateError::BadSection),
                "section {k} id {id}"
            );
        }
        assert_eq!(
            tampered(&b, |v| put32(v, off + 4, 1)),
            Err(StateError::BadSection)
        );
        let len = u64::from_le_bytes(b[off + 8..off + 16].try_into().unwrap());
        for bad in [len + 1, len - 1, len + 4104, 1 << 40, u64::MAX, 0] {
            assert_eq!(
                tampered(&b, |v| put64(v, off + 8, bad)),
                Err(StateError::BadLength),
                "section {k} len {bad}"
            );
        }
    }
    // Sections swapped (same lengths: ENGINE and... none equal, so swap
    // the ids only).
    assert_eq!(
        tampered(&b, |v| {
            put32(v, OFF_ENGINE, SECTION_IRQ);
            put32(v, OFF_IRQ, SECTION_ENGINE);
        }),
        Err(StateError::BadSection)
    );
    // VRAM page count inconsistent with the section length.
    for n in [0, 2, u64::MAX] {
        assert_eq!(
            tampered(&b, |v| put64(v, OFF_VRAM + 16, n)),
            Err(StateError::BadLength)
        );
    }
}

#[test]
fn oversized_vram_section_with_consistent_lengths() {
    // A record claiming more pages than device memory has, every
    // length consistent: the page indices give it away.
    let b = enc(&busy_state(), &pages(&[0]));
    let n = NPAGES as usize + 1;
    let mut v = vec![0u8; encoded_len(n)];
    v[..OFF_PAGES].copy_from_slice(&b[..OFF_PAGES]);
    put64(&mut v, 24, encoded_len(n) as u64);
    put64(&mut v, OFF_VRAM + 8, (8 + n * PAGE_ENTRY_LEN) as u64);
    put64(&mut v, OFF_VRAM + 16, n as u64);
    for i in 0..n {
        put64(&mut v, OFF_PAGES + i * PAGE_ENTRY_LEN, i as u64);
    }
    reseal(&mut v);
    assert_eq!(dec(&v), Err(StateError::BadPageIndex));
}

// ---- Decoder: pages

#[test]
fn page_index_errors() {
    let b = enc(&busy_state(), &pages(&[1, 2, 3]));
    let at = |k: usize| OFF_PAGES + k * PAGE_ENTRY_LEN;
    let cases: [(usize, u64); 6] = [
        (0, NPAGES),   // past device memory
        (0, u64::MAX), // far past
        (2, NPAGES),   // last one past
        (1, 1),        // duplicate
        (2, 1),        // decreasing
        (1, 0),        // decreasing
    ];
    for (k, idx) in cases {
        assert_eq!(
            tampered(&b, |v| put64(v, at(k), idx)),
            Err(StateError::BadPageIndex),
            "entry {k} index {idx}"
        );
    }
    assert!(tampered(&b, |v| put64(v, at(2), NPAGES - 1)).is_ok());
    assert!(tampered(&b, |v| put64(v, at(0), 0)).is_ok());
}

// ---- Decoder: values

#[test]
fn register_errors() {
    use StateError::BadRegister;
    // Every 4-byte register with a high bit set.
    for r in REGS.iter().filter(|r| r.size == 4) {
        let res = with_state(|s| s.regs[r.reg as usize] |= 1 << 32);
        assert_eq!(res, Err(BadRegister), "{}", r.name);
        let res = with_state(|s| s.regs[r.reg as usize] |= 1 << 63);
        assert_eq!(res, Err(BadRegister), "{}", r.name);
    }
    assert_eq!(
        with_state(|s| s.regs[Reg::Id as usize] ^= 1),
        Err(BadRegister)
    );
    assert_eq!(
        with_state(|s| s.regs[Reg::Id as usize] = 0),
        Err(BadRegister)
    );
    assert_eq!(
        with_state(|s| s.regs[Reg::Version as usize] = 0x0002_0000),
        Err(BadRegister)
    );
    let bad: [(Reg, u64); 8] = [
        (Reg::Ctrl, u64::from(CTRL_ENABLE) | 2), // RESET reads 0
        (Reg::Ctrl, 1 << 5),
        (Reg::RingBase, 0x1_0008),
        (Reg::IntStatus, 1 << 2),
        (Reg::IntMask, 0x8000_0000),
        (Reg::Status, 1 << 2),
        (Reg::Status, 1 << 16),
        (Reg::Status, 1 << 31),
    ];
    for (reg, v) in bad {
        assert_eq!(
            with_state(|s| s.regs[reg as usize] = v),
            Err(BadRegister),
            "{reg:?} {v:#x}"
        );
    }
    // Values a device can have.
    let good: [(Reg, u64); 7] = [
        (Reg::RingTail, 0xffff_ffff),
        (Reg::RingHead, 0xffff_ffff),
        (Reg::ErrIndex, 0xffff_ffff),
        (Reg::ErrAddr, u64::MAX),
        (Reg::ByteCount, u64::MAX),
        (Reg::Scratch0, u64::MAX),
        (Reg::IntMask, 3),
    ];
    for (reg, v) in good {
        assert!(with_state(|s| s.regs[reg as usize] = v).is_ok(), "{reg:?}");
    }
}

#[test]
fn config_errors() {
    let b = enc(&busy_state(), &[]);
    let cfg = OFF_CONFIG + 16;
    // Read-only bytes / bits: ids, status, BAR type bits, BAR2 size bits,
    // subsystem id (the type), capability layout, reserved space.
    for (off, x) in [
        (0x00, 1u8),
        (0x02, 1),
        (0x04, 1),
        (0x06, 0x10),
        (0x08, 1),
        (0x10, 1),
        (0x18, 0x04),
        (0x18, 0x10),
        (0x1a, 0x01),
        (0x2e, 1),
        (0x34, 1),
        (0x3d, 1),
        (0x42, 0x02),
        (0x50, 1),
        (0xff, 0x80),
    ] {
        assert_eq!(
            tampered(&b, |v| v[cfg + off] ^= x),
            Err(StateError::BadConfig),
            "config {off:#x} ^ {x:#x}"
        );
    }
    // Writable bits and the device-owned interrupt status bit.
    for (off, x) in [
        (0x04, 0x02),
        (0x05, 0x04),
        (0x06, 0x08),
        (0x0c, 0xff),
        (0x4d, 0xff),
    ] {
        assert!(tampered(&b, |v| v[cfg + off] ^= x).is_ok(), "{off:#x}");
    }
    // A config image of the 16 MiB type (BAR2 size) in a 1 MiB record.
    let other = DeviceState::at_reset(16, 16 << 20);
    assert_eq!(
        with_state(|s| s.config = other.config),
        Err(StateError::BadConfig)
    );
}

#[test]
fn engine_and_irq_errors() {
    use StateError::{BadEngine, BadIrq};
    for code in [0x0d, 0x80, 0xff] {
        let r = with_state(|s| {
            s.error = code;
            s.regs[Reg::Status as usize] = u64::from(STATUS_ERROR) | u64::from(code) << 8;
        });
        assert_eq!(r, Err(BadEngine), "code {code:#x}");
    }
    // Error not matching STATUS.
    assert_eq!(with_state(|s| s.error = ERR_BAD_OPCODE), Err(BadEngine));
    assert_eq!(
        with_state(|s| s.regs[Reg::Status as usize] = u64::from(STATUS_ERROR)),
        Err(BadEngine)
    );
    assert_eq!(
        with_state(|s| {
            s.error = ERR_BAD_OPCODE;
            s.regs[Reg::Status as usize] = u64::from(STATUS_ERROR) | 0x0200;
        }),
        Err(BadEngine)
    );
    // ring_valid with an invalid ring.
    for (base, size) in [
        (0x1_0000u64, 3u64),
        (0x1_0000, 0),
        (0x1_0000, 8192),
        (u64::MAX - 31, 2),
    ] {
        let r = with_state(|s| {
            s.regs[Reg::RingBase as usize] = base;
            s.regs[Reg::RingSize as usize] = size;
        });
        assert_eq!(r, Err(BadEngine), "{base:#x} {size}");
    }
    // Enabled with a valid ring but none recorded.
    assert_eq!(with_state(|s| s.ring_valid = false), Err(BadEngine));
    // ring_valid while disabled, in a hand-made record.
    let mut s = busy_state();
    s.regs[Reg::Ctrl as usize] = 0;
    s.regs[Reg::Status as usize] = 0;
    let b = enc(&s, &[]);
    assert_eq!(tampered(&b, |v| v[OFF_ENGINE + 16] = 1), Err(BadEngine));
    let b = enc(&busy_state(), &[]);
    assert_eq!(tampered(&b, |v| v[OFF_ENGINE + 16] = 2), Err(BadEngine));
    assert_eq!(tampered(&b, |v| v[OFF_ENGINE + 16] = 0), Err(BadEngine));
    for k in 2..8 {
        assert_eq!(tampered(&b, |v| v[OFF_ENGINE + 16 + k] = 1), Err(BadEngine));
    }
    assert_eq!(tampered(&b, |v| v[OFF_IRQ + 16] = 2), Err(BadIrq));
    for k in 1..8 {
        assert_eq!(tampered(&b, |v| v[OFF_IRQ + 16 + k] = 1), Err(BadIrq));
    }
    let s = tampered(&b, |v| v[OFF_IRQ + 16] = 0).unwrap();
    assert!(!s.intx_masked);
    let s = tampered(&b, |v| put64(v, OFF_ENGINE + 24, u64::MAX)).unwrap();
    assert_eq!(s.errors, u64::MAX);
}

// ---- Versions that differ in their registers

/// A hand-made register table: `A` and `C` joined in version 1, `B`
/// (between them, reset value 0xb0b0) in version 2.
fn three_regs() -> [RegInfo; 3] {
    let base = *Reg::Scratch0.info();
    [
        RegInfo {
            reg: Reg::Scratch0,
            name: "A",
            reset: 0x11,
            ..base
        },
        RegInfo {
            reg: Reg::Scratch1,
            name: "B",
            reset: 0xb0b0,
            since: 2,
            ..base
        },
        RegInfo {
            reg: Reg::Scratch2,
            name: "C",
            ..base
        },
    ]
}

fn le(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn format_version_follows_the_registers() {
    let t = three_regs();
    assert_eq!(format_version(1, &t), 2);
    assert_eq!(format_version(2, &t), 2);
    assert_eq!(format_version(3, &t), 3);
    assert_eq!(format_version(1, &t[..1]), 1);
    assert_eq!(format_version(1, &[t[2], t[1], t[0]]), 2);
    assert_eq!(format_version(4, &[]), 4);
    assert_eq!(format_version(SECTIONS_VERSION, &REGS), FORMAT_VERSION);
    for r in &REGS {
        assert!((1..=FORMAT_VERSION).contains(&r.since), "{}", r.name);
    }
    assert_eq!(regs_in_version(&REGS, FORMAT_VERSION), REGS.len());
    assert_eq!(regs_len(&REGS, FORMAT_VERSION), Some(REGS_LEN));
    assert_eq!(
        super::super::region::STATE_FORMAT_VERSION,
        FORMAT_VERSION,
        "the region header reports the version this build writes"
    );
}

#[test]
fn registers_of_each_version_in_a_synthetic_table() {
    use StateError::BadLength;
    let t = three_regs();
    let counts: Vec<usize> = (0..4).map(|v| regs_in_version(&t, v)).collect();
    assert_eq!(counts, [0, 2, 3, 3]);
    assert_eq!(regs_len(&t, 1), Some(16));
    assert_eq!(regs_len(&t, 2), Some(24));
    // Version 1 lacks B: it takes its reset value, C is the second word.
    let (a, b, c) = (0x0a0a_0a0a_0a0a_0a0a, u64::MAX, 0xc);
    assert_eq!(read_regs(&t, 1, &le(&[a, c])), Ok([a, 0xb0b0, c]));
    assert_eq!(read_regs(&t, 2, &le(&[a, b, c])), Ok([a, b, c]));
    assert_eq!(read_regs(&t, 3, &le(&[a, b, c])), Ok([a, b, c]));
    // A version-2 payload read as version 1 and the other way round, and
    // every other wrong length.
    assert_eq!(read_regs(&t, 1, &le(&[a, b, c])), Err(BadLength));
    assert_eq!(read_regs(&t, 2, &le(&[a, c])), Err(BadLength));
    let long = le(&[a, b, c, a]);
    for (version, good) in [(1u32, 16usize), (2, 24)] {
        for len in 0..=long.len() {
            let r = read_regs(&t, version, &long[..len]);
            assert_eq!(r.is_ok(), len == good, "version {version} length {len}");
            if len != good {
                assert_eq!(r, Err(BadLength));
            }
        }
    }
    // Version 0 carries no register: everything at reset.
    assert_eq!(read_regs(&t, 0, &[]), Ok([0x11, 0xb0b0, 0]));
    // This build's table at its own version: every register, in order.
    let values: Vec<u64> = (0..REGS.len() as u64).map(|k| k * 0x0101).collect();
    let got = read_regs(&REGS, FORMAT_VERSION, &le(&values)).unwrap();
    assert_eq!(got[..], values[..]);
}

#[test]
fn layout_lengths_of_each_version() {
    assert_eq!(LAYOUT.fixed_len(FORMAT_VERSION), Some(encoded_len(0)));
    assert_eq!(LAYOUT.fixed_len(OLDEST_VERSION - 1), None);
    assert_eq!(LAYOUT.fixed_len(FORMAT_VERSION + 1), None);
    assert_eq!(LAYOUT.fixed_len(u32::MAX), None);
    for n in [0, 1, 256, usize::MAX / PAGE_ENTRY_LEN, usize::MAX] {
        let want = Some(encoded_len(n)).filter(|&l| l != usize::MAX);
        assert_eq!(LAYOUT.record_len(FORMAT_VERSION, n), want, "{n}");
    }
    for vram in [0, 1, VRAM, 256 << 20, u64::MAX] {
        assert_eq!(
            LAYOUT.max_len(FORMAT_VERSION, vram),
            Some(max_encoded_len(vram))
        );
        assert_eq!(LAYOUT.max_len(FORMAT_VERSION + 1, vram), None);
    }
    // One more register, in the next version: that version's records are
    // 8 bytes longer, the older ones keep their length.
    let mut table = REGS;
    table[Reg::ErrAddr as usize].since = FORMAT_VERSION + 1;
    let l = Layout::new(&table);
    assert_eq!(l.fixed_len(FORMAT_VERSION), Some(encoded_len(0) - 8));
    assert_eq!(l.fixed_len(FORMAT_VERSION + 1), Some(encoded_len(0)));
    assert_eq!(l.fixed_len(FORMAT_VERSION + 2), None);
    assert_eq!(
        l.max_len(FORMAT_VERSION, VRAM),
        Some(max_encoded_len(VRAM) - 8)
    );
    assert_eq!(l.check_version(FORMAT_VERSION + 1), Ok(()));
    assert_eq!(
        l.check_version(FORMAT_VERSION + 2),
        Err(StateError::NewerVersion(FORMAT_VERSION + 2))
    );
    assert_eq!(l.check_version(0), Err(StateError::BadVersion));
}

/// `b` (a record this build wrote: every register) as a record of
/// `version` without register `skip`: its 8 bytes cut out of the REGS
/// section, the lengths fixed, the CRC resealed.
fn as_version(b: &[u8], version: u32, skip: Option<Reg>) -> Vec<u8> {
    let mut v = b.to_vec();
    put32(&mut v, 4, version);
    if let Some(reg) = skip {
        let at = reg_off(reg);
        v.drain(at..at + 8);
        put64(&mut v, OFF_REGS + 8, (REGS_LEN - 8) as u64);
        let total = v.len() as u64;
        put64(&mut v, 24, total);
    }
    reseal(&mut v);
    v
}

/// What becomes of a register that joins the format after this build's
/// version, simulated with this build's table and one register moved to
/// the next version: records of this version (without it) still decode,
/// the register at its reset value; records of the next version carry it.
#[test]
fn a_newer_register_decodes_from_older_records_at_its_reset_value() {
    use StateError::*;
    let (old, next) = (FORMAT_VERSION, FORMAT_VERSION + 1);
    let mut s = busy_state();
    s.regs[Reg::Scratch3 as usize] = 0x5ca1_ab1e;
    s.regs[Reg::ErrAddr as usize] = 0xe000;
    let p = pages(&[2, 9]);
    let b = enc(&s, &p);
    // The first and the last register, one in the middle, and two that
    // must equal their reset value.
    for reg in [Reg::Id, Reg::Version, Reg::ErrAddr, Reg::Scratch3] {
        let mut table = REGS;
        table[reg as usize].since = next;
        let layout = Layout::new(&table);
        let dec_in = |v: &[u8]| {
            decode_in(&layout, v, TYPE, VRAM)
                .map(|d| (d.state, d.pages().map(|(i, p)| (i, *p)).collect::<Vec<_>>()))
        };
        let peek = |v: &[u8]| peek_record_in(&layout, v, TYPE, VRAM);
        let device = |len: usize| {
            Ok(RecordInfo {
                kind: RecordKind::Device,
                len,
            })
        };

        // The next version carries every register.
        let full = as_version(&b, next, None);
        assert_eq!(dec_in(&full), Ok((s, p.clone())), "{reg:?}");
        assert_eq!(peek(&full), device(full.len()));
        // The older version lacks `reg`: it decodes as its reset value.
        let short = as_version(&b, old, Some(reg));
        assert_eq!(short.len(), b.len() - 8);
        let mut want = s;
        want.regs[reg as usize] = REGS[reg as usize].reset;
        assert_eq!(dec_in(&short), Ok((want, p.clone())), "{reg:?}");
        assert_eq!(peek(&short), device(short.len()));
        // Each length belongs to its version only.
        for v in [as_version(&b, old, None), as_version(&b, next, Some(reg))] {
            assert_eq!(dec_in(&v), Err(BadLength), "{reg:?}");
            assert_eq!(peek(&v), Err(BadLength), "{reg:?}");
        }
        assert_eq!(
            dec_in(&as_version(&b, next + 1, None)),
            Err(NewerVersion(next + 1))
        );
        // This build reads neither of the simulated records.
        assert_eq!(dec(&short), Err(BadLength));
        assert_eq!(dec(&full), Err(NewerVersion(next)));

        // The length bounds of the older version, header only.
        let max = layout.max_len(old, VRAM).unwrap();
        assert_eq!(max, max_encoded_len(VRAM) - 8);
        let mut h = short[..HEADER_LEN].to_vec();
        for (total, ok) in [
            (max, true),
            (max + PAGE_ENTRY_LEN, false),
            (max_encoded_len(VRAM), false),
            (short.len() + 8, false),
            (encoded_len(0) - 8, true),
            (encoded_len(0) - 9, false),
        ] {
            put64(&mut h, 24, total as u64);
            let r = peek(&h);
            assert_eq!(r.is_ok(), ok, "{reg:?} total {total}");
            if !ok {
                assert_eq!(r, Err(BadLength));
            }
        }
    }

    // The values filled in are validated like the others: a reset value
    // no device can have is refused.
    let mut table = REGS;
    table[Reg::Version as usize].since = next;
    table[Reg::Version as usize].reset = 0x0002_0000;
    let layout = Layout::new(&table);
    let short = as_version(&b, old, Some(Reg::Version));
    assert_eq!(
        decode_in(&layout, &short, TYPE, VRAM).map(|d| d.state),
        Err(BadRegister)
    );
}

#[test]
fn older_version_records_refuse_every_truncation_and_flipped_bit() {
    let next = FORMAT_VERSION + 1;
    let mut table = REGS;
    table[Reg::Scratch1 as usize].since = next;
    let layout = Layout::new(&table);
    let short = as_version(
        &enc(&busy_state(), &[]),
        FORMAT_VERSION,
        Some(Reg::Scratch1),
    );
    let d = |v: &[u8]| decode_in(&layout, v, TYPE, VRAM).map(|d| d.state);
    assert!(d(&short).is_ok());
    for len in 0..short.len() {
        assert_eq!(d(&short[..len]), Err(StateError::Truncated), "len {len}");
    }
    let mut v = short.clone();
    for bit in 0..v.len() * 8 {
        v[bit / 8] ^= 1 << (bit % 8);
        assert!(d(&v).is_err(), "bit {bit} accepted");
        v[bit / 8] ^= 1 << (bit % 8);
    }
}

// ---- Pages records and v2 streams

fn chunk(idx: &[u64], fill: u8) -> Vec<u8> {
    let p: Vec<(u64, [u8; PAGE])> = idx.iter().map(|&i| (i, [fill; PAGE])).collect();
    let mut out = vec![0u8; pages_chunk_len(p.len())];
    encode_pages_chunk(
        TYPE,
        VRAM,
        p.len(),
        p.iter().map(|(i, p)| (*i, p)),
        &mut out,
    )
    .unwrap();
    out
}

#[test]
fn pages_chunk_round_trip_and_errors() {
    use StateError::*;
    let idx: Vec<u64> = (0..PAGES_CHUNK_MAX as u64).map(|i| i % NPAGES).collect();
    let c = chunk(&idx, 0xa5);
    let d = decode_pages_chunk(&c, TYPE, VRAM).unwrap();
    assert_eq!(d.npages(), PAGES_CHUNK_MAX);
    assert!(d.pages().map(|(i, _)| i).eq(idx.iter().copied()));
    assert!(d.pages().all(|(_, p)| p.iter().all(|&b| b == 0xa5)));
    let empty = chunk(&[], 0);
    assert_eq!(
        decode_pages_chunk(&empty, TYPE, VRAM).map(|d| d.npages()),
        Ok(0)
    );

    let c = chunk(&[4, 200], 7);
    assert_eq!(&c[0..4], b"MBPG");
    assert!(decode_pages_chunk(&c, TYPE, VRAM).is_ok());
    for len in 0..c.len() {
        assert_eq!(decode_pages_chunk(&c[..len], TYPE, VRAM), Err(Truncated));
    }
    let mut v = chunk(&[200], 7);
    for bit in 0..v.len() * 8 {
        v[bit / 8] ^= 1 << (bit % 8);
        assert!(decode_pages_chunk(&v, TYPE, VRAM).is_err(), "bit {bit}");
        v[bit / 8] ^= 1 << (bit % 8);
    }
    let t = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = c.clone();
        f(&mut v);
        reseal(&mut v);
        decode_pages_chunk(&v, TYPE, VRAM).map(|d| d.npages())
    };
    assert_eq!(t(&|v| put32(v, 0, DEVICE_MAGIC)), Err(BadMagic));
    assert_eq!(t(&|v| put32(v, 4, 2)), Err(NewerVersion(2)));
    assert_eq!(t(&|v| put32(v, 8, 256)), Err(WrongType));
    assert_eq!(t(&|v| put64(v, 16, 256 << 20)), Err(WrongVramSize));
    assert_eq!(t(&|v| put32(v, 12, 1)), Err(BadLength));
    assert_eq!(t(&|v| put32(v, 12, 3)), Err(BadLength));
    assert_eq!(t(&|v| put32(v, 12, 257)), Err(BadLength));
    assert_eq!(t(&|v| put64(v, 24, 0)), Err(BadLength));
    assert_eq!(t(&|v| put64(v, 32, NPAGES)), Err(BadPageIndex));
    assert_eq!(t(&|v| put64(v, 32 + PAGE_ENTRY_LEN, 4)), Err(BadPageIndex));
    assert_eq!(t(&|v| put64(v, 32 + PAGE_ENTRY_LEN, 3)), Err(BadPageIndex));
    assert_eq!(decode(&c, TYPE, VRAM), Err(BadMagic));
    assert_eq!(
        decode_pages_chunk(&enc(&busy_state(), &[]), TYPE, VRAM),
        Err(BadMagic)
    );
}

#[test]
fn peek_record_bounds_lengths() {
    use StateError::*;
    let d = enc(&busy_state(), &pages(&[1, 2]));
    let c = chunk(&[9], 1);
    assert_eq!(
        peek_record(&d, TYPE, VRAM),
        Ok(RecordInfo {
            kind: RecordKind::Device,
            len: d.len()
        })
    );
    assert_eq!(
        peek_record(&c[..HEADER_LEN], TYPE, VRAM),
        Ok(RecordInfo {
            kind: RecordKind::Pages,
            len: c.len()
        })
    );
    for len in 0..HEADER_LEN {
        assert_eq!(peek_record(&d[..len], TYPE, VRAM), Err(Truncated));
    }
    let p = |b: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = b[..HEADER_LEN].to_vec();
        f(&mut v);
        peek_record(&v, TYPE, VRAM)
    };
    assert_eq!(p(&d, &|v| v[3] = 0), Err(BadMagic));
    assert_eq!(p(&d, &|v| put32(v, 4, 9)), Err(NewerVersion(9)));
    assert_eq!(p(&d, &|v| put32(v, 8, 9)), Err(WrongType));
    assert_eq!(p(&d, &|v| put64(v, 16, 9)), Err(WrongVramSize));
    assert_eq!(p(&d, &|v| put32(v, 12, 4)), Err(BadSection));
    let max = max_encoded_len(VRAM) as u64;
    assert_eq!(p(&d, &|v| put64(v, 24, max)).map(|r| r.len as u64), Ok(max));
    for bad in [
        max + PAGE_ENTRY_LEN as u64,
        u64::MAX,
        0,
        555,
        557,
        556 + 4103,
    ] {
        assert_eq!(p(&d, &|v| put64(v, 24, bad)), Err(BadLength), "{bad}");
    }
    assert_eq!(p(&c, &|v| put32(v, 12, 257)), Err(BadLength));
    assert_eq!(p(&c, &|v| put64(v, 24, 36)), Err(BadLength));
    assert_eq!(p(&c, &|v| put64(v, 24, u64::MAX)), Err(BadLength));
    // Device memory smaller than a chunk: the count is bounded by it too.
    let tiny = 2 * PAGE as u64;
    let mut h = c[..HEADER_LEN].to_vec();
    put64(&mut h, 16, tiny);
    put32(&mut h, 12, 3);
    put64(&mut h, 24, pages_chunk_len(3) as u64);
    assert_eq!(peek_record(&h, TYPE, tiny), Err(BadLength));
    put32(&mut h, 12, 2);
    put64(&mut h, 24, pages_chunk_len(2) as u64);
    assert!(peek_record(&h, TYPE, tiny).is_ok());
}

#[test]
fn stream_lengths() {
    assert_eq!(pages_stream_len(0), 0);
    assert_eq!(pages_stream_len(1), pages_chunk_len(1));
    assert_eq!(
        pages_stream_len(PAGES_CHUNK_MAX),
        pages_chunk_len(PAGES_CHUNK_MAX)
    );
    assert_eq!(
        pages_stream_len(PAGES_CHUNK_MAX * 3 + 5),
        3 * pages_chunk_len(PAGES_CHUNK_MAX) + pages_chunk_len(5)
    );
    assert_eq!(pages_stream_len(usize::MAX), usize::MAX);
}

#[test]
fn lengths_at_the_limits() {
    assert_eq!(vram_pages(u64::MAX), (1 << 52) - 1);
    assert_eq!(vram_pages(0), 0);
    assert_eq!(vram_pages(PAGE as u64 - 1), 0);
    assert_eq!(max_encoded_len(u64::MAX), usize::MAX);
    assert_eq!(max_encoded_len(0), encoded_len(0));
    // The largest page count whose record length fits, and the next.
    let n = (usize::MAX - encoded_len(0)) / PAGE_ENTRY_LEN;
    assert_eq!(encoded_len(n), encoded_len(0) + n * PAGE_ENTRY_LEN);
    assert_eq!(encoded_len(n + 1), usize::MAX);
    let n = (usize::MAX - pages_chunk_len(0)) / PAGE_ENTRY_LEN;
    assert_eq!(pages_chunk_len(n), pages_chunk_len(0) + n * PAGE_ENTRY_LEN);
    assert_eq!(pages_chunk_len(n + 1), usize::MAX);
    assert_eq!(pages_chunk_len(usize::MAX), usize::MAX);
    // Stream lengths just below and past what usize holds.
    let chunk = pages_chunk_len(PAGES_CHUNK_MAX);
    let full = usize::MAX / chunk;
    let fits = full * PAGES_CHUNK_MAX;
    assert_eq!(pages_stream_len(fits), full * chunk);
    assert_eq!(pages_stream_len(fits + PAGES_CHUNK_MAX), usize::MAX);
    for k in [1, PAGES_CHUNK_MAX - 1] {
        let len = pages_stream_len(fits + k);
        assert!(len == usize::MAX || len == full * chunk + pages_chunk_len(k));
    }
    assert_eq!(pages_stream_len(usize::MAX - 1), usize::MAX);
    // Encoders refuse impossible counts before touching the buffer.
    let none = || core::iter::empty::<(u64, &[u8; PAGE])>();
    let s = busy_state();
    for n in [usize::MAX, usize::MAX / PAGE_ENTRY_LEN] {
        assert_eq!(encode(&s, n, none(), &mut []), Err(StateError::BufferSize));
        assert_eq!(
            encode_pages_chunk(TYPE, VRAM, n, none(), &mut []),
            Err(StateError::PageCount)
        );
    }
}

#[test]
fn encoder_page_iterators_at_the_limits() {
    let s = busy_state();
    let p = [0u8; PAGE];
    // More pages than announced, first with none announced.
    let mut out = vec![0u8; encoded_len(0)];
    let r = encode(&s, 0, [(0u64, &p)].into_iter(), &mut out);
    assert_eq!(r, Err(StateError::PageCount));
    let mut out = vec![0u8; pages_chunk_len(0)];
    let r = encode_pages_chunk(TYPE, VRAM, 0, [(0u64, &p)].into_iter(), &mut out);
    assert_eq!(r, Err(StateError::PageCount));
    // Indices at and past the end of device memory, and u64::MAX.
    for idx in [NPAGES, u64::MAX] {
        let mut out = vec![0u8; encoded_len(1)];
        let r = encode(&s, 1, [(idx, &p)].into_iter(), &mut out);
        assert_eq!(r, Err(StateError::BadPageIndex), "{idx}");
    }
    let mut out = vec![0u8; encoded_len(2)];
    let r = encode(&s, 2, [(NPAGES - 1, &p), (0, &p)].into_iter(), &mut out);
    assert_eq!(r, Err(StateError::BadPageIndex));
}

#[test]
fn largest_device_memory_round_trips() {
    // A device with 2^64 - 1 bytes of device memory and the largest
    // type id: page indices up to 2^52 - 2, all lengths in range.
    let (ty, vram) = (u32::MAX, u64::MAX);
    let last = vram_pages(vram) - 1;
    let mut s = DeviceState::at_reset(ty, vram);
    s.errors = u64::MAX;
    s.regs[Reg::ErrAddr as usize] = u64::MAX;
    s.regs[Reg::ByteCount as usize] = u64::MAX;
    s.regs[Reg::RingHead as usize] = u64::from(u32::MAX);
    s.regs[Reg::RingTail as usize] = u64::from(u32::MAX);
    let p = [(0u64, page_of(0)), (last, page_of(last))];
    let mut out = vec![0u8; encoded_len(2)];
    encode(&s, 2, p.iter().map(|(i, p)| (*i, p)), &mut out).unwrap();
    let d = decode(&out, ty, vram).unwrap();
    assert_eq!(d.state, s);
    assert!(d.pages().map(|(i, _)| i).eq([0, last]));
    let info = peek_record(&out, ty, vram).unwrap();
    assert_eq!((info.kind, info.len), (RecordKind::Device, out.len()));
    for idx in [last + 1, u64::MAX] {
        let mut v = out.clone();
        put64(&mut v, OFF_PAGES + PAGE_ENTRY_LEN, idx);
        reseal(&mut v);
        assert_eq!(decode(&v, ty, vram), Err(StateError::BadPageIndex));
    }
    // A pages record of the same device.
    let mut c = vec![0u8; pages_chunk_len(1)];
    let it = [(last, &p[1].1)].into_iter();
    encode_pages_chunk(ty, vram, 1, it, &mut c).unwrap();
    let d = decode_pages_chunk(&c, ty, vram).unwrap();
    assert!(d.pages().map(|(i, _)| i).eq([last]));
}

#[test]
fn header_fields_at_their_maximum() {
    use StateError::*;
    let d = enc(&busy_state(), &pages(&[1]));
    let c = chunk(&[1], 1);
    // Every header field all ones (the CRC resealed), one at a time.
    let fields: [(usize, bool); 6] = [
        (0, false),
        (4, false),
        (8, false),
        (12, false),
        (16, true),
        (24, true),
    ];
    for (off, wide) in fields {
        for b in [&d, &c] {
            let mut v = b.clone();
            if wide {
                put64(&mut v, off, u64::MAX);
            } else {
                put32(&mut v, off, u32::MAX);
            }
            reseal(&mut v);
            assert!(dec(&v).is_err(), "{off}");
            assert!(decode_pages_chunk(&v, TYPE, VRAM).is_err(), "{off}");
            assert!(peek_record(&v, TYPE, VRAM).is_err(), "{off}");
        }
    }
    // A pages record claiming u32::MAX pages.
    let mut v = c.clone();
    put32(&mut v, 12, u32::MAX);
    reseal(&mut v);
    assert_eq!(decode_pages_chunk(&v, TYPE, VRAM), Err(BadLength));
    assert_eq!(peek_record(&v, TYPE, VRAM), Err(BadLength));
    // Total lengths near usize::MAX for the largest device memory: a
    // length error or a record length, never an overflow.
    let mut h = d[..HEADER_LEN].to_vec();
    put64(&mut h, 16, u64::MAX);
    let huge = encoded_len(1 << 50) as u64; // a whole number of pages
    for total in [u64::MAX, u64::MAX - 1, u64::MAX - 556, 1 << 63, huge] {
        put64(&mut h, 24, total);
        match peek_record(&h, TYPE, u64::MAX) {
            Ok(info) => {
                assert_eq!(info.len as u64, total);
                assert_eq!((info.len - encoded_len(0)) % PAGE_ENTRY_LEN, 0);
            }
            Err(e) => {
                assert_eq!(e, BadLength);
                assert_ne!(total, huge);
            }
        }
        let mut v = h.clone();
        v.extend_from_slice(&[0u8; 64]);
        assert_eq!(decode(&v, TYPE, u64::MAX), Err(Truncated));
    }
}

#[test]
fn tiny_device_memory_bounds_every_page() {
    use StateError::*;
    for vram in [0u64, 1, PAGE as u64 - 1] {
        let none = || core::iter::empty::<(u64, &[u8; PAGE])>();
        let mut c = vec![0u8; pages_chunk_len(0)];
        encode_pages_chunk(TYPE, vram, 0, none(), &mut c).unwrap();
        assert_eq!(
            decode_pages_chunk(&c, TYPE, vram).map(|d| d.npages()),
            Ok(0)
        );
        // One page announced and present, but device memory has none.
        let p = [0u8; PAGE];
        let mut c = vec![0u8; pages_chunk_len(1)];
        let r = encode_pages_chunk(TYPE, vram, 1, [(0u64, &p)].into_iter(), &mut c);
        assert_eq!(r, Err(BadPageIndex));
        let mut h = chunk(&[0], 0)[..HEADER_LEN].to_vec();
        put64(&mut h, 16, vram);
        assert_eq!(peek_record(&h, TYPE, vram), Err(BadLength));
        // A device record with no pages at all.
        let s = DeviceState::at_reset(TYPE, vram);
        let mut out = vec![0u8; encoded_len(0)];
        encode(&s, 0, none(), &mut out).unwrap();
        assert_eq!(decode(&out, TYPE, vram).map(|d| d.state), Ok(s));
        assert_eq!(max_encoded_len(vram), encoded_len(0));
    }
}

#[test]
fn every_register_at_its_maximum() {
    // u64::MAX in every register, one at a time: refused or accepted,
    // never a panic; never accepted for a 4-byte register.
    for r in &REGS {
        let res = with_state(|s| s.regs[r.reg as usize] = u64::MAX);
        let ok = matches!(
            r.reg,
            Reg::FenceLast
                | Reg::CmdCount
                | Reg::ByteCount
                | Reg::ErrAddr
                | Reg::Scratch0
                | Reg::Scratch1
                | Reg::Scratch2
                | Reg::Scratch3
        );
        assert_eq!(res.is_ok(), ok, "{}", r.name);
        if !ok {
            assert_eq!(res, Err(StateError::BadRegister), "{}", r.name);
        }
    }
    // The ring registers at their largest 32-bit values.
    for (reg, v) in [(Reg::RingSize, 0xffff_ffffu64), (Reg::RingSize, 1 << 31)] {
        assert_eq!(
            with_state(|s| s.regs[reg as usize] = v),
            Err(StateError::BadEngine)
        );
    }
    let r = with_state(|s| {
        s.regs[Reg::RingBase as usize] = u64::MAX - 31;
        s.regs[Reg::RingSize as usize] = 1;
    })
    .unwrap();
    assert_eq!(r.ring().map(|r| r.base()), Some(u64::MAX - 31));
}

/// A v2 stream as docs/migration.md describes it: pre-copy pages
/// records, then the device record; the receiver splits it with
/// `peek_record`, validates each record, and applies "last record
/// wins, never sent means zero".
#[test]
fn v2_stream_reassembles_to_the_source() {
    let mut src = vec![[0u8; PAGE]; NPAGES as usize];
    let mut stream = Vec::new();
    let send_chunks = |src: &[[u8; PAGE]], idx: &[u64], stream: &mut Vec<u8>| {
        for part in idx.chunks(PAGES_CHUNK_MAX) {
            let mut out = vec![0u8; pages_chunk_len(part.len())];
            let it = part.iter().map(|&i| (i, &src[i as usize]));
            encode_pages_chunk(TYPE, VRAM, part.len(), it, &mut out).unwrap();
            stream.extend_from_slice(&out);
        }
    };
    // Initial contents: some non-zero pages; the initial pass sends
    // only those.
    for i in (0..NPAGES).filter(|i| i % 5 == 0) {
        src[i as usize] = page_of(i);
    }
    let nonzero: Vec<u64> = (0..NPAGES)
        .filter(|&i| src[i as usize] != [0u8; PAGE])
        .collect();
    send_chunks(&src, &nonzero, &mut stream);
    // The guest dirties pages, one of them back to zero: dirty pages are
    // sent whatever their content.
    for (i, fill) in [(3u64, 1u8), (10, 0), (255, 9)] {
        src[i as usize] = [fill; PAGE];
    }
    send_chunks(&src, &[3, 10], &mut stream);
    // Stop-copy: the device record with the pages dirtied since.
    src[77] = [0x77; PAGE];
    let last = [77u64, 255];
    let st = busy_state();
    let mut out = vec![0u8; encoded_len(last.len())];
    let it = last.iter().map(|&i| (i, &src[i as usize]));
    encode(&st, last.len(), it, &mut out).unwrap();
    stream.extend_from_slice(&out);

    // Receiver: device memory zeroed when the stream began.
    let mut dst = vec![[0u8; PAGE]; NPAGES as usize];
    let mut rest = &stream[..];
    let mut got = None;
    while !rest.is_empty() {
        assert!(got.is_none(), "record after the device record");
        let info = peek_record(rest, TYPE, VRAM).unwrap();
        let (rec, tail) = rest.split_at(info.len);
        match info.kind {
            RecordKind::Pages => {
                for (i, p) in decode_pages_chunk(rec, TYPE, VRAM).unwrap().pages() {
                    dst[i as usize] = *p;
                }
            }
            RecordKind::Device => {
                let d = decode(rec, TYPE, VRAM).unwrap();
                for (i, p) in d.pages() {
                    dst[i as usize] = *p;
                }
                got = Some(d.state);
            }
        }
        rest = tail;
    }
    assert_eq!(got, Some(st));
    assert!(dst == src);
}

// ---- Robustness

/// xorshift64*, for reproducible pseudo-random inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_mutations_never_panic_or_pass() {
    let good = enc(&busy_state(), &pages(&[0, 17]));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let mut v = good.clone();
        let n = 1 + rng.next() % 8;
        for _ in 0..n {
            let at = (rng.next() % v.len() as u64) as usize;
            v[at] = rng.next() as u8;
        }
        if round % 2 == 0 {
            // Keep the checksum right so the structural checks are hit.
            reseal(&mut v);
        }
        if v != good {
            let r = dec(&v);
            // With a resealed checksum, a mutation may produce another
            // valid state; it must then validate as one.
            if let Ok(d) = r {
                assert_eq!(round % 2, 0);
                assert_eq!(validate(&d.state, TYPE, VRAM), Ok(()));
            }
        }
        let _ = peek_record(&v, TYPE, VRAM);
        let _ = decode_pages_chunk(&v, TYPE, VRAM);
        let cut = (rng.next() % v.len() as u64) as usize;
        assert!(dec(&v[..cut]).is_err());
    }
    // Pure garbage of every small length.
    for len in 0..700 {
        let v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(dec(&v).is_err());
        assert!(decode_pages_chunk(&v, TYPE, VRAM).is_err());
    }
}

/// The layout fingerprint each format version was released with:
/// `(version, fingerprint)`. A build that changes the layout adds the
/// next version's entry and keeps the older ones.
const LAYOUT_FINGERPRINTS: &[(u32, u64)] = &[(1, FINGERPRINT_V1)];
const FINGERPRINT_V1: u64 = 0x444e_be85_e3ad_abdb;

/// A fingerprint of the encoded layout: a hash of a device record
/// with two pages, a pages record with one page and a DEVICE_STATE
/// region header, all of fixed, arbitrary content. It changes with any
/// field offset, size, order, section, magic or record kind.
fn layout_fingerprint() -> u64 {
    use super::super::region::Header;
    let mut regs = [0u64; REGS.len()];
    for (k, r) in regs.iter_mut().enumerate() {
        *r = 0x0101_0101_0101_0101 * (k as u64 + 1);
    }
    let mut config = [0u8; CONFIG_LEN];
    for (i, b) in config.iter_mut().enumerate() {
        *b = i as u8;
    }
    let ds = DeviceState {
        type_id: 0x1234,
        vram_size: 0x10_0000,
        config,
        regs,
        ring_valid: true,
        error: 0x56,
        errors: 0x789a,
        intx_masked: true,
    };
    let p1 = [0xa5u8; PAGE];
    let p2 = [0x5au8; PAGE];
    let pages = [(3u64, &p1), (7u64, &p2)];

    let mut device = vec![0u8; encoded_len(2)];
    encode(&ds, 2, pages.iter().copied(), &mut device).unwrap();
    let mut chunk = vec![0u8; pages_chunk_len(1)];
    encode_pages_chunk(
        ds.type_id,
        ds.vram_size,
        1,
        pages[..1].iter().copied(),
        &mut chunk,
    )
    .unwrap();
    let header = Header {
        type_id: ds.type_id,
        state_size: 0x1122_3344_5566,
        generation: 0x77,
    }
    .encode();

    // FNV-1a, not CRC32: a record ending in its own CRC32 has the same
    // CRC32 whatever its content.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [&device[..], &chunk[..], &header[..]] {
        for &b in (part.len() as u64).to_le_bytes().iter().chain(part) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A layout change without a version bump fails here: the fingerprint
/// recorded for [`FORMAT_VERSION`] is that of the layout this build
/// writes.
#[test]
fn layout_change_needs_a_version_bump() {
    let got = layout_fingerprint();
    let recorded = LAYOUT_FINGERPRINTS
        .iter()
        .find(|&&(v, _)| v == FORMAT_VERSION)
        .map(|&(_, f)| f);
    assert_eq!(
        recorded,
        Some(got),
        "the state layout's fingerprint is {got:#018x}: if the layout changed, bump \
         FORMAT_VERSION (docs/migration.md §1.8) and record the new version's \
         fingerprint in LAYOUT_FINGERPRINTS; never edit an older version's entry"
    );
    // Versions are recorded in order, one entry each, none ahead of
    // this build.
    for w in LAYOUT_FINGERPRINTS.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1);
    }
    assert_eq!(
        LAYOUT_FINGERPRINTS.last().map(|e| e.0),
        Some(FORMAT_VERSION)
    );
}
