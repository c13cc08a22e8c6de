// SPDX-License-Identifier: GPL-2.0

//! Properties of the BAR0 access decoder (`regs::decode`) and the register
//! file (`RegFile` reads and writes), against the register map and access
//! rules of docs/device.md §5 (`model::DOC_REGS`).

use mblit_logic::regs::{decode, DecodeError, RegAccess, RegFile, REGS};
use mblit_logic::state::{self, DeviceState};
use proptest::prelude::*;

use crate::config;
use crate::model::{
    encode_device, fresh_config, ring_ok, DocKind, DOC_REGS, K_CTRL, K_RING_BASE, K_RING_SIZE,
};

/// docs/device.md §5, "Access rules", in the documented order: the
/// register (index into `DOC_REGS`) and the byte of it the access starts
/// at. An empty access lies nowhere (`OutOfRange`; every error is `EINVAL`
/// to the user).
fn reference(offset: u64, width: usize) -> Result<(usize, u64), DecodeError> {
    let end = u128::from(offset) + width as u128;
    if width == 0 || end > 0x1000 {
        return Err(DecodeError::OutOfRange);
    }
    if ![1, 2, 4, 8].contains(&width) {
        return Err(DecodeError::BadWidth);
    }
    let w = width as u64;
    if !offset.is_multiple_of(w) {
        return Err(DecodeError::Unaligned);
    }
    let k = DOC_REGS
        .iter()
        .position(|r| offset >= r.offset && offset < r.offset + r.size)
        .ok_or(DecodeError::Hole)?;
    let r = &DOC_REGS[k];
    if offset + w > r.offset + r.size {
        return Err(DecodeError::Straddle);
    }
    if !r.widths.contains(&width) {
        return Err(DecodeError::WidthNotAllowed);
    }
    Ok((k, offset - r.offset))
}

/// The bits an access of `width` bytes at byte `byte` covers.
fn covered(byte: u64, width: u64) -> u64 {
    let ones = if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    if byte >= 8 {
        0
    } else {
        ones << (8 * byte)
    }
}

/// A read of the model register `val`.
fn model_read(val: u64, byte: u64, width: u64) -> u64 {
    (val & covered(byte, width)) >> (8 * byte)
}

/// A write of `data` to model register `k` holding `old`.
fn model_write(k: usize, old: u64, byte: u64, width: u64, data: u64) -> u64 {
    let r = &DOC_REGS[k];
    let bits = covered(byte, width) & r.writable;
    let data = data.checked_shl(8 * byte as u32).unwrap_or(0);
    match r.kind {
        DocKind::Ro => old,
        DocKind::Rw => (old & !bits) | (data & bits),
        DocKind::W1c => old & !(data & bits),
    }
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        // At and around a register's bytes.
        4 => (0..19usize, 0..8u64).prop_map(|(k, b)| DOC_REGS[k].offset + b),
        2 => 0..0x1010u64,
        1 => any::<u64>(),
        1 => (0..16u64).prop_map(|k| u64::MAX - k),
    ]
}

fn width() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => prop_oneof![Just(1usize), Just(2), Just(4), Just(8)],
        1 => 0..=16usize,
        1 => any::<usize>(),
    ]
}

/// A guest access, or a device-side update of a register the device
/// computes (counters, head, error index and address).
#[derive(Debug, Clone)]
enum Op {
    Read {
        offset: u64,
        width: usize,
    },
    Write {
        offset: u64,
        width: usize,
        data: u64,
    },
    Set {
        k: usize,
        val: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let computed = prop::sample::select(vec![6usize, 10, 11, 12, 13, 14]);
    prop_oneof![
        3 => (offset(), width()).prop_map(|(offset, width)| Op::Read { offset, width }),
        4 => (offset(), width(), crate::model::interesting_u64())
            .prop_map(|(offset, width, data)| Op::Write { offset, width, data }),
        1 => (computed, any::<u64>()).prop_map(|(k, val)| Op::Set { k, val }),
    ]
}

fn access(acc: &RegAccess) -> (usize, u64, usize) {
    (
        acc.info.reg as usize,
        u64::from(acc.byte),
        usize::from(acc.width),
    )
}

proptest! {
    #![proptest_config(config(1000, regressions!("regs.txt")))]

    /// Any `(offset, width)`: the documented register and byte, or the
    /// documented first failing rule.
    #[test]
    fn decode_matches_the_documented_rules(offset in offset(), width in width()) {
        let got = decode(offset, width).map(|a| access(&a));
        let want = reference(offset, width).map(|(k, b)| (k, b, width));
        prop_assert_eq!(got, want);
    }

    /// Sequences of reads, writes and device updates: `RegFile` holds and
    /// returns what the documented semantics (RO ignores writes, RW changes
    /// the writable bits of the covered bytes, W1C clears written ones,
    /// reserved bits stay 0) give, byte lane by byte lane.
    #[test]
    fn register_file_behaves_as_documented(ops in prop::collection::vec(op(), 1..40)) {
        let mut f = RegFile::new();
        let mut m: Vec<u64> = DOC_REGS.iter().map(|r| r.reset).collect();
        prop_assert_eq!(&f.values()[..], &m[..]);
        for op in &ops {
            match *op {
                Op::Read { offset, width } => {
                    if let Ok(acc) = decode(offset, width) {
                        let (k, b, w) = access(&acc);
                        let v = f.read(&acc);
                        prop_assert_eq!(v, model_read(m[k], b, w as u64));
                        prop_assert_eq!(v & !covered(0, w as u64), 0);
                    }
                }
                Op::Write { offset, width, data } => {
                    if let Ok(acc) = decode(offset, width) {
                        let (k, b, w) = access(&acc);
                        m[k] = model_write(k, m[k], b, w as u64, data);
                        prop_assert_eq!(f.write(&acc, data), m[k]);
                        // The guest's own bits, for actions (CTRL.RESET,
                        // the doorbell).
                        let mine = data & covered(0, w as u64);
                        prop_assert_eq!(acc.written(data), mine << (8 * b));
                    }
                }
                Op::Set { k, val } => {
                    f.set(REGS[k].reg, val);
                    m[k] = if DOC_REGS[k].size == 4 { val & 0xffff_ffff } else { val };
                }
            }
            prop_assert_eq!(&f.values()[..], &m[..]);
        }
        // Whatever guest writes and device updates leave in the registers
        // (with the engine state that goes with them) can be saved and
        // restored: validate accepts it and it round-trips.
        let (t, v) = (16u32, 16u64 << 20);
        let regs = *f.values();
        let enabled = regs[K_CTRL] & 1 != 0;
        let s = DeviceState {
            type_id: t,
            vram_size: v,
            config: *fresh_config(t, v).image(),
            regs,
            ring_valid: enabled && ring_ok(regs[K_RING_BASE], regs[K_RING_SIZE]),
            error: 0,
            errors: 0,
            intx_masked: false,
        };
        prop_assert_eq!(state::validate(&s, t, v), Ok(()));
        let b = encode_device(&s, &[]);
        prop_assert_eq!(state::decode(&b, t, v).map(|d| d.state), Ok(s));
    }

    /// `RegAccess` built by hand with any byte and width (its fields are
    /// public): no panic, no overflow; within the register it behaves as
    /// the documented semantics.
    #[test]
    fn any_register_access_is_safe(
        k in 0..19usize,
        byte in prop_oneof![3 => 0..8u8, 1 => any::<u8>()],
        width in prop_oneof![3 => prop::sample::select(vec![1u8, 2, 4, 8]), 1 => any::<u8>()],
        old in any::<u64>(),
        data in any::<u64>(),
    ) {
        let acc = RegAccess { info: &REGS[k], byte, width };
        let lanes = acc.lanes();
        let r = acc.read(old);
        let w = acc.write(old, data);
        let _ = acc.written(data);
        let (b, wd) = (u64::from(byte), u64::from(width));
        if (1..=8).contains(&wd) && b + wd <= 8 {
            prop_assert_eq!(lanes, covered(b, wd));
            prop_assert_eq!(r, model_read(old, b, wd));
            prop_assert_eq!(w, model_write(k, old, b, wd, data));
        }
    }
}
