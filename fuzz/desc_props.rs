// SPDX-License-Identifier: GPL-2.0

//! Properties of the descriptor decoder (`desc::decode`, `Command::encode`)
//! and of the ring (`desc::Ring`), against a reference written from
//! docs/device.md §7–8 with 128-bit arithmetic.

use mblit_logic::desc::{decode, Addr, Command, DescError, Fields, RawDesc, Ring, XFER_MAX};
use mblit_logic::regs::ErrorCode;
use proptest::prelude::*;

use crate::config;
use crate::model::{interesting_u64, ring_ok};

/// Device memory sizes: none, tiny, the three types, the whole space.
const VRAMS: &[u64] = &[0, 1, 4096, 1 << 20, 16 << 20, 256 << 20, u64::MAX];

/// docs/device.md §8, "Validation": the checks in the documented order.
fn reference(raw: &RawDesc, vram: u64) -> Result<Command, (ErrorCode, u64)> {
    let u = |r: std::ops::Range<usize>| {
        raw[r]
            .iter()
            .rev()
            .fold(0u64, |v, &b| v << 8 | u64::from(b))
    };
    let (op, flags, rsvd0, len, dst, src, rsvd1) = (
        raw[0],
        raw[1],
        u(2..4),
        u(4..8),
        u(8..16),
        u(16..24),
        u(24..32),
    );
    // opcode: (allowed flags, uses len, uses dst, bits of src it uses)
    let (allowed, uses_len, uses_dst, src_bits) = match op {
        0x01 => (0u8, false, false, 0u64),
        0x02 => (0x01, true, true, 0xffff_ffff),
        0x03 => (0x03, true, true, u64::MAX),
        0x04 => (0x04, false, true, u64::MAX),
        _ => return Err((ErrorCode::BadOpcode, u64::from(op))),
    };
    // The first bad field, by offset.
    let reserved = [
        (flags & !allowed != 0, 1),
        (rsvd0 != 0, 2),
        (!uses_len && len != 0, 4),
        (!uses_dst && dst != 0, 8),
        (src & !src_bits != 0, 16),
        (rsvd1 != 0, 24),
    ];
    if let Some(&(_, off)) = reserved.iter().find(|(bad, _)| *bad) {
        return Err((ErrorCode::Reserved, off));
    }
    if uses_len && !(1..=u64::from(XFER_MAX)).contains(&len) {
        return Err((ErrorCode::BadLen, len));
    }
    if op == 0x04 && dst % 8 != 0 {
        return Err((ErrorCode::BadAlign, dst));
    }
    let addr = |dev: bool, a: u64| if dev { Addr::Device(a) } else { Addr::Guest(a) };
    let end = |a: u64| u128::from(a) + u128::from(len);
    let range = |a: Addr| match a {
        Addr::Device(o) if end(o) > u128::from(vram) => Err((ErrorCode::DevRange, o)),
        Addr::Guest(i) if end(i) > 1u128 << 64 => Err((ErrorCode::IovaFault, i)),
        _ => Ok(()),
    };
    let len32 = len as u32;
    match op {
        0x01 => Ok(Command::Nop),
        0x02 => {
            let dst = addr(flags & 1 != 0, dst);
            range(dst)?;
            Ok(Command::Fill {
                dst,
                len: len32,
                pattern: src as u32,
            })
        }
        0x03 => {
            let (d, s) = (addr(flags & 1 != 0, dst), addr(flags & 2 != 0, src));
            range(d)?;
            range(s)?;
            // [dst, dst + len) and [src, src + len) intersect.
            let overlap = d.is_device() == s.is_device()
                && u128::from(dst) < end(src)
                && u128::from(src) < end(dst);
            if overlap {
                return Err((ErrorCode::Overlap, src));
            }
            Ok(Command::Copy {
                dst: d,
                src: s,
                len: len32,
            })
        }
        _ => Ok(Command::Fence {
            iova: dst,
            value: src,
            irq: flags & 4 != 0,
        }),
    }
}

/// An address: anything, near the end of device memory, or near the top of
/// the address space, or so that a range of the descriptor's length ends
/// right at (`d` around 0) the end of device memory or of the space.
#[derive(Debug, Clone, Copy)]
enum AddrSpec {
    Abs(u64),
    BelowVram(u32),
    Top(u32),
    EndAtVram(i8),
    EndAtTop(i8),
}

impl AddrSpec {
    fn resolve(self, vram: u64, len: u32) -> u64 {
        let len = u64::from(len);
        match self {
            AddrSpec::Abs(a) => a,
            AddrSpec::BelowVram(k) => vram.wrapping_sub(u64::from(k)),
            AddrSpec::Top(k) => u64::MAX - u64::from(k),
            AddrSpec::EndAtVram(d) => vram.wrapping_sub(len).wrapping_add_signed(i64::from(d)),
            AddrSpec::EndAtTop(d) => 0u64.wrapping_sub(len).wrapping_add_signed(i64::from(d)),
        }
    }
}

fn addr_spec() -> impl Strategy<Value = AddrSpec> {
    prop_oneof![
        4 => interesting_u64().prop_map(AddrSpec::Abs),
        2 => prop_oneof![0..=4096u32, Just(XFER_MAX), Just(XFER_MAX + 1), any::<u32>()]
            .prop_map(AddrSpec::BelowVram),
        1 => prop_oneof![0..=64u32, Just(XFER_MAX), any::<u32>()].prop_map(AddrSpec::Top),
        2 => (-2i8..=2).prop_map(AddrSpec::EndAtVram),
        1 => (-2i8..=2).prop_map(AddrSpec::EndAtTop),
    ]
}

/// A source relative to the destination: `len + d` after or before it
/// (ranges that just touch or just overlap), or anywhere near.
#[derive(Debug, Clone, Copy)]
enum Near {
    After(i8),
    Before(i8),
    By(i32),
}

impl Near {
    fn resolve(self, dst: u64, len: u32) -> u64 {
        let len = u64::from(len);
        match self {
            Near::After(d) => dst.wrapping_add(len).wrapping_add_signed(i64::from(d)),
            Near::Before(d) => dst.wrapping_sub(len).wrapping_add_signed(i64::from(d)),
            Near::By(d) => dst.wrapping_add_signed(i64::from(d)),
        }
    }
}

fn near() -> impl Strategy<Value = Option<Near>> {
    prop_oneof![
        3 => Just(None),
        1 => (-2i8..=2).prop_map(|d| Some(Near::After(d))),
        1 => (-2i8..=2).prop_map(|d| Some(Near::Before(d))),
        1 => (-5000i32..5000).prop_map(|d| Some(Near::By(d))),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => Just(0u32),
        3 => 1..=4096u32,
        1 => XFER_MAX - 2..=XFER_MAX + 2,
        1 => any::<u32>(),
    ]
}

/// Descriptor fields, mostly near valid: known opcodes, small flags, zero
/// reserved fields, addresses at the edges; `src` sometimes close to
/// `dst` (overlaps).
fn desc() -> impl Strategy<Value = (usize, RawDesc)> {
    let opcode = prop_oneof![4 => 1..=4u8, 1 => any::<u8>()];
    let flags = prop_oneof![4 => 0..=7u8, 1 => any::<u8>()];
    let rsvd0 = prop_oneof![6 => Just(0u16), 1 => any::<u16>()];
    let rsvd1 = prop_oneof![6 => Just(0u64), 1 => any::<u64>()];
    (
        0..VRAMS.len(),
        (opcode, flags, rsvd0, len(), rsvd1),
        (addr_spec(), addr_spec(), near()),
    )
        .prop_map(|(v, (opcode, flags, rsvd0, len, rsvd1), (d, s, near))| {
            let vram = VRAMS[v];
            let dst = d.resolve(vram, len);
            let src = match near {
                Some(n) => n.resolve(dst, len),
                None => s.resolve(vram, len),
            };
            // FILL's pattern mostly fits its 32 bits; NOP mostly zero.
            let (len, dst, src) = match opcode {
                0x01 if flags % 2 == 0 => (0, 0, 0),
                0x02 if flags % 4 < 2 => (len, dst, src & 0xffff_ffff),
                0x04 if flags % 4 < 2 => (0, dst & !7, src),
                _ => (len, dst, src),
            };
            let f = Fields {
                opcode,
                flags,
                rsvd0,
                len,
                dst,
                src,
                rsvd1,
            };
            (v, f.to_raw())
        })
}

/// Valid-looking commands of every kind.
fn command() -> impl Strategy<Value = (usize, Command)> {
    let a = |dev: bool, a: u64| {
        if dev {
            Addr::Device(a)
        } else {
            Addr::Guest(a)
        }
    };
    (
        0..VRAMS.len(),
        0..4u8,
        (any::<bool>(), any::<bool>()),
        (addr_spec(), addr_spec(), near()),
        len(),
        any::<u64>(),
    )
        .prop_map(move |(v, kind, (dd, sd), (d, s, near), len, value)| {
            let vram = VRAMS[v];
            let dst = d.resolve(vram, len);
            let src = match near {
                Some(n) => n.resolve(dst, len),
                None => s.resolve(vram, len),
            };
            let c = match kind {
                0 => Command::Nop,
                1 => Command::Fill {
                    dst: a(dd, dst),
                    len,
                    pattern: value as u32,
                },
                2 => Command::Copy {
                    dst: a(dd, dst),
                    src: a(sd, src),
                    len,
                },
                _ => Command::Fence {
                    iova: dst & !7,
                    value,
                    irq: dd,
                },
            };
            (v, c)
        })
}

fn got(raw: &RawDesc, vram: u64) -> Result<Command, (ErrorCode, u64)> {
    decode(raw, vram).map_err(|DescError { code, addr }| (code, addr))
}

proptest! {
    #![proptest_config(config(2500, regressions!("desc.txt")))]

    /// Any descriptor decodes exactly as docs/device.md §8 says: the same
    /// command, or the same error code and `ERR_ADDR` (first failing check
    /// in the documented order).
    #[test]
    fn decode_matches_the_documented_rules((v, raw) in desc()) {
        prop_assert_eq!(got(&raw, VRAMS[v]), reference(&raw, VRAMS[v]));
    }

    /// Entirely random bytes, every device memory size: the same.
    #[test]
    fn noise_decodes_as_documented(raw in any::<[u8; 32]>(), v in 0..VRAMS.len()) {
        prop_assert_eq!(got(&raw, VRAMS[v]), reference(&raw, VRAMS[v]));
    }

    /// Whatever decodes re-encodes to exactly the same 32 bytes (no bit is
    /// ignored), and counts its length in BYTE_COUNT.
    #[test]
    fn accepted_descriptors_reencode_exactly((v, raw) in desc()) {
        if let Ok(c) = decode(&raw, VRAMS[v]) {
            prop_assert_eq!(c.encode(), raw);
            let bytes = match c {
                Command::Fill { len, .. } | Command::Copy { len, .. } => u64::from(len),
                Command::Nop | Command::Fence { .. } => 0,
            };
            prop_assert_eq!(c.bytes(), bytes);
        }
    }

    /// Round trip: a command encodes to a descriptor that decodes to it
    /// when the documented rules allow the command, and to the documented
    /// error otherwise.
    #[test]
    fn commands_round_trip((v, c) in command()) {
        let raw = c.encode();
        let want = reference(&raw, VRAMS[v]);
        prop_assert_eq!(got(&raw, VRAMS[v]), want);
        if want.is_ok() {
            prop_assert_eq!(decode(&raw, VRAMS[v]), Ok(c));
        }
    }

    /// Changes to an encoded command (bytes set or bits flipped at random
    /// positions): the documented result for the changed bytes.
    #[test]
    fn changed_descriptors_decode_to_what_they_say(
        (v, c) in command(),
        changes in prop::collection::vec((0..32usize, any::<u8>(), any::<bool>()), 1..4),
    ) {
        let mut raw = c.encode();
        for (at, val, flip) in changes {
            if flip {
                raw[at] ^= 1 << (val % 8);
            } else {
                raw[at] = val;
            }
        }
        prop_assert_eq!(got(&raw, VRAMS[v]), reference(&raw, VRAMS[v]));
    }

    /// `Ring::new` accepts exactly the rings of docs/device.md §7, and a
    /// valid ring's index arithmetic stays inside the ring.
    #[test]
    fn rings_as_documented(
        base in prop_oneof![
            any::<u64>(),
            (0..=8192u64).prop_map(|k| (u64::MAX - k * 32).wrapping_add(1)),
            (0..=8192u64).prop_map(|k| k * 32),
        ],
        size in prop_oneof![
            (0..=13u32).prop_map(|s| 1u32 << s),
            any::<u32>(),
            0..=5000u32,
        ],
        head in any::<u32>(),
        tail in prop_oneof![any::<u32>(), 0..=8192u32],
        index in any::<u32>(),
    ) {
        let r = Ring::new(base, size);
        prop_assert_eq!(r.is_ok(), ring_ok(base, u64::from(size)));
        if let Err(e) = r {
            prop_assert_eq!(e, ErrorCode::RingConfig);
        }
        if let Ok(r) = r {
            // A tail relative to the head, around the ring's size.
            let tail = head.wrapping_add(tail % (2 * size + 2));
            prop_assert_eq!((r.base(), r.size()), (base, size));
            prop_assert_eq!(r.bytes(), u64::from(size) * 32);
            let slot = r.slot(index);
            prop_assert_eq!(slot, index % size);
            let iova = r.desc_iova(index);
            prop_assert_eq!(u128::from(iova), u128::from(base) + u128::from(slot) * 32);
            prop_assert!(u128::from(iova) + 32 <= u128::from(base) + u128::from(r.bytes()));
            prop_assert_eq!(r.desc_iova(index.wrapping_add(size)), iova);
            let n = tail.wrapping_sub(head);
            let want = if n <= size { Ok(n) } else { Err(ErrorCode::BadTail) };
            prop_assert_eq!(r.pending(head, tail), want);
        }
    }
}
