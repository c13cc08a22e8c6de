// SPDX-License-Identifier: GPL-2.0

//! Command descriptors and the ring (docs/device.md, "Command ring" and
//! "Descriptors"): decoding a descriptor into a validated [`Command`], with
//! every check that does not need the guest's memory map, and the ring index
//! arithmetic.

use super::regs::{ErrorCode, RING_ALIGN, RING_SIZE_MAX};
use super::uapi::{code_enum, uapi_consts};

uapi_consts! {
    /// The shared constants of this module, by C name.
    table UAPI;

    /// Size of one descriptor in bytes (`struct mblit_desc`).
    pub const DESC_SIZE: u32 = 32;
    /// Offset of `opcode` (u8).
    pub const DESC_OFF_OPCODE: u32 = 0;
    /// Offset of `flags` (u8).
    pub const DESC_OFF_FLAGS: u32 = 1;
    /// Offset of `rsvd0` (u16, must be zero).
    pub const DESC_OFF_RSVD0: u32 = 2;
    /// Offset of `len` (u32): FILL/COPY byte count.
    pub const DESC_OFF_LEN: u32 = 4;
    /// Offset of `dst` (u64): destination address.
    pub const DESC_OFF_DST: u32 = 8;
    /// Offset of `src` (u64): COPY source, FILL pattern, FENCE value.
    pub const DESC_OFF_SRC: u32 = 16;
    /// Offset of `rsvd1` (u64, must be zero).
    pub const DESC_OFF_RSVD1: u32 = 24;

    /// Opcode: do nothing (counts as a completed command).
    pub const OP_NOP: u8 = 0x01;
    /// Opcode: fill `len` bytes at `dst` with a repeated 32-bit pattern.
    pub const OP_FILL: u8 = 0x02;
    /// Opcode: copy `len` bytes from `src` to `dst`.
    pub const OP_COPY: u8 = 0x03;
    /// Opcode: write the 64-bit `src` value to guest IOVA `dst`.
    pub const OP_FENCE: u8 = 0x04;

    /// Flag: `dst` is a device-memory offset, not a guest IOVA (FILL, COPY).
    pub const FLAG_DST_DEV: u8 = 1 << 0;
    /// Flag: `src` is a device-memory offset, not a guest IOVA (COPY).
    pub const FLAG_SRC_DEV: u8 = 1 << 1;
    /// Flag: raise `INT_FENCE` when the FENCE completes (FENCE).
    pub const FLAG_IRQ: u8 = 1 << 2;

    /// Largest FILL/COPY length in bytes (1 MiB).
    pub const XFER_MAX: u32 = 0x10_0000;
    /// Required alignment of a FENCE address.
    pub const FENCE_ALIGN: u32 = 8;
}

/// One descriptor as it lies in guest memory (little-endian).
pub type RawDesc = [u8; DESC_SIZE as usize];

code_enum! {
    /// A descriptor's opcode: the `OP_*` values as a type, so that every
    /// match on an opcode is exhaustive and a new one must be handled
    /// everywhere.
    pub enum Opcode {
        /// [`OP_NOP`].
        Nop = OP_NOP,
        /// [`OP_FILL`].
        Fill = OP_FILL,
        /// [`OP_COPY`].
        Copy = OP_COPY,
        /// [`OP_FENCE`].
        Fence = OP_FENCE,
    }
}

impl Opcode {
    /// The flags a descriptor of this opcode may set.
    fn allowed_flags(self) -> u8 {
        match self {
            Self::Nop => 0,
            Self::Fill => FLAG_DST_DEV,
            Self::Copy => FLAG_DST_DEV | FLAG_SRC_DEV,
            Self::Fence => FLAG_IRQ,
        }
    }

    /// Which fields it uses: `(len, dst, the bits of src)`; the others
    /// are reserved (must be zero).
    fn fields(self) -> (bool, bool, u64) {
        match self {
            Self::Nop => (false, false, 0),
            Self::Fill => (true, true, 0xffff_ffff),
            Self::Copy => (true, true, u64::MAX),
            Self::Fence => (false, true, u64::MAX),
        }
    }
}

/// A FILL/COPY address: a guest IOVA or a device-memory offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// Guest I/O virtual address.
    Guest(u64),
    /// Offset into device memory (BAR2).
    Device(u64),
}

impl Addr {
    fn new(device: bool, a: u64) -> Self {
        if device {
            Addr::Device(a)
        } else {
            Addr::Guest(a)
        }
    }

    /// The address or offset.
    pub fn value(self) -> u64 {
        match self {
            Addr::Guest(a) | Addr::Device(a) => a,
        }
    }

    /// Whether this is a device-memory offset.
    pub fn is_device(self) -> bool {
        matches!(self, Addr::Device(_))
    }
}

/// A validated command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// NOP.
    Nop,
    /// FILL: byte `k` of the destination (from 0) gets byte `k % 4` of the
    /// little-endian `pattern`.
    Fill {
        /// Destination.
        dst: Addr,
        /// Length in bytes, `1..=XFER_MAX`.
        len: u32,
        /// The pattern.
        pattern: u32,
    },
    /// COPY.
    Copy {
        /// Destination.
        dst: Addr,
        /// Source.
        src: Addr,
        /// Length in bytes, `1..=XFER_MAX`.
        len: u32,
    },
    /// FENCE: write `value` (8 bytes, little-endian) to guest `iova`, then
    /// set `FENCE_LAST` to it and, with `irq`, raise `INT_FENCE`.
    Fence {
        /// Guest IOVA, 8-byte aligned.
        iova: u64,
        /// The value.
        value: u64,
        /// Whether to raise the interrupt.
        irq: bool,
    },
}

/// A descriptor that failed validation: the device error code and the value
/// the device reports in `ERR_ADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescError {
    /// The error code for `STATUS`.
    pub code: ErrorCode,
    /// For `ERR_ADDR`: the opcode (BAD_OPCODE), the byte offset in the
    /// descriptor of the first bad field (RESERVED), the length (BAD_LEN),
    /// the offending address or offset (BAD_ALIGN, DEV_RANGE, IOVA_FAULT),
    /// the source address (OVERLAP).
    pub addr: u64,
}

const fn err(code: ErrorCode, addr: u64) -> DescError {
    DescError { code, addr }
}

// `off` is one of the `DESC_OFF_*` constants: the field lies inside the
// 32 bytes (and the sub-slice needs no `off + n`).
fn le_u16(raw: &RawDesc, off: u32) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&raw[off as usize..][..2]);
    u16::from_le_bytes(b)
}

fn le_u32(raw: &RawDesc, off: u32) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&raw[off as usize..][..4]);
    u32::from_le_bytes(b)
}

fn le_u64(raw: &RawDesc, off: u32) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[off as usize..][..8]);
    u64::from_le_bytes(b)
}

/// The raw fields of a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fields {
    /// `opcode`.
    pub opcode: u8,
    /// `flags`.
    pub flags: u8,
    /// `rsvd0`.
    pub rsvd0: u16,
    /// `len`.
    pub len: u32,
    /// `dst`.
    pub dst: u64,
    /// `src`.
    pub src: u64,
    /// `rsvd1`.
    pub rsvd1: u64,
}

impl Fields {
    /// Splits a raw descriptor into its fields (no validation).
    pub fn parse(raw: &RawDesc) -> Self {
        Self {
            opcode: raw[DESC_OFF_OPCODE as usize],
            flags: raw[DESC_OFF_FLAGS as usize],
            rsvd0: le_u16(raw, DESC_OFF_RSVD0),
            len: le_u32(raw, DESC_OFF_LEN),
            dst: le_u64(raw, DESC_OFF_DST),
            src: le_u64(raw, DESC_OFF_SRC),
            rsvd1: le_u64(raw, DESC_OFF_RSVD1),
        }
    }

    /// The raw descriptor with these fields.
    // Host API, for the property tests in fuzz/; the driver does not need it.
    #[allow(dead_code)]
    pub fn to_raw(&self) -> RawDesc {
        let mut raw = [0u8; DESC_SIZE as usize];
        // `off` is a `DESC_OFF_*` constant, `bytes` that field's size.
        let mut put = |off: u32, bytes: &[u8]| {
            raw[off as usize..][..bytes.len()].copy_from_slice(bytes);
        };
        put(DESC_OFF_OPCODE, &[self.opcode]);
        put(DESC_OFF_FLAGS, &[self.flags]);
        put(DESC_OFF_RSVD0, &self.rsvd0.to_le_bytes());
        put(DESC_OFF_LEN, &self.len.to_le_bytes());
        put(DESC_OFF_DST, &self.dst.to_le_bytes());
        put(DESC_OFF_SRC, &self.src.to_le_bytes());
        put(DESC_OFF_RSVD1, &self.rsvd1.to_le_bytes());
        raw
    }
}

/// Checks that `len` bytes at `a` lie in their space: device offsets inside
/// `vram_size`, guest ranges not wrapping past 2^64. Returns the range's
/// last address (inclusive end). `len >= 1` (else `ERR_BAD_LEN`).
fn check_range(a: Addr, len: u32, vram_size: u64) -> Result<u64, DescError> {
    let Some(span) = u64::from(len).checked_sub(1) else {
        return Err(err(ErrorCode::BadLen, u64::from(len)));
    };
    match a {
        // `last < vram_size` is `off + len <= vram_size` without the overflow.
        Addr::Device(off) => match off.checked_add(span) {
            Some(last) if last < vram_size => Ok(last),
            _ => Err(err(ErrorCode::DevRange, off)),
        },
        Addr::Guest(iova) => iova
            .checked_add(span)
            .ok_or(err(ErrorCode::IovaFault, iova)),
    }
}

/// Decodes and validates a descriptor for a device with `vram_size` bytes of
/// device memory.
///
/// Checks, in this order (the first failure is reported): opcode known;
/// reserved flags and fields zero (flags, `rsvd0`, fields the opcode does
/// not use, the high half of a FILL pattern, `rsvd1`); FILL/COPY length in
/// `1..=XFER_MAX`; FENCE address aligned; destination range, then source
/// range; COPY ranges in the same space not overlapping.
pub fn decode(raw: &RawDesc, vram_size: u64) -> Result<Command, DescError> {
    let f = Fields::parse(raw);
    let op = Opcode::try_from(f.opcode).map_err(|op| err(ErrorCode::BadOpcode, u64::from(op)))?;
    let reserved = |off: u32| err(ErrorCode::Reserved, u64::from(off));
    if f.flags & !op.allowed_flags() != 0 {
        return Err(reserved(DESC_OFF_FLAGS));
    }
    if f.rsvd0 != 0 {
        return Err(reserved(DESC_OFF_RSVD0));
    }
    let (uses_len, uses_dst, src_mask) = op.fields();
    if !uses_len && f.len != 0 {
        return Err(reserved(DESC_OFF_LEN));
    }
    if !uses_dst && f.dst != 0 {
        return Err(reserved(DESC_OFF_DST));
    }
    if f.src & !src_mask != 0 {
        return Err(reserved(DESC_OFF_SRC));
    }
    if f.rsvd1 != 0 {
        return Err(reserved(DESC_OFF_RSVD1));
    }
    if uses_len && (f.len == 0 || f.len > XFER_MAX) {
        return Err(err(ErrorCode::BadLen, u64::from(f.len)));
    }
    let dst = Addr::new(f.flags & FLAG_DST_DEV != 0, f.dst);
    match op {
        Opcode::Nop => Ok(Command::Nop),
        Opcode::Fill => {
            check_range(dst, f.len, vram_size)?;
            Ok(Command::Fill {
                dst,
                len: f.len,
                pattern: f.src as u32,
            })
        }
        Opcode::Copy => {
            let src = Addr::new(f.flags & FLAG_SRC_DEV != 0, f.src);
            let dst_last = check_range(dst, f.len, vram_size)?;
            let src_last = check_range(src, f.len, vram_size)?;
            if dst.is_device() == src.is_device() {
                // Inclusive ends, computed (without wrapping) by check_range.
                let (d, s) = (dst.value(), src.value());
                if d <= src_last && s <= dst_last {
                    return Err(err(ErrorCode::Overlap, s));
                }
            }
            Ok(Command::Copy {
                dst,
                src,
                len: f.len,
            })
        }
        Opcode::Fence => {
            if !f.dst.is_multiple_of(u64::from(FENCE_ALIGN)) {
                return Err(err(ErrorCode::BadAlign, f.dst));
            }
            Ok(Command::Fence {
                iova: f.dst,
                value: f.src,
                irq: f.flags & FLAG_IRQ != 0,
            })
        }
    }
}

impl Command {
    /// The descriptor that decodes to this command.
    // Host API, for the property tests in fuzz/; the driver does not need it.
    #[allow(dead_code)]
    pub fn encode(&self) -> RawDesc {
        let dev = |a: Addr, flag: u8| if a.is_device() { flag } else { 0 };
        let f = match *self {
            Command::Nop => Fields {
                opcode: OP_NOP,
                ..Fields::default()
            },
            Command::Fill { dst, len, pattern } => Fields {
                opcode: OP_FILL,
                flags: dev(dst, FLAG_DST_DEV),
                len,
                dst: dst.value(),
                src: u64::from(pattern),
                ..Fields::default()
            },
            Command::Copy { dst, src, len } => Fields {
                opcode: OP_COPY,
                flags: dev(dst, FLAG_DST_DEV) | dev(src, FLAG_SRC_DEV),
                len,
                dst: dst.value(),
                src: src.value(),
                ..Fields::default()
            },
            Command::Fence { iova, value, irq } => Fields {
                opcode: OP_FENCE,
                flags: if irq { FLAG_IRQ } else { 0 },
                dst: iova,
                src: value,
                ..Fields::default()
            },
        };
        f.to_raw()
    }

    /// Bytes the command writes to its destination, counted in `BYTE_COUNT`
    /// when it completes (the 8 bytes a FENCE writes are not counted).
    pub fn bytes(&self) -> u64 {
        match *self {
            Command::Fill { len, .. } | Command::Copy { len, .. } => u64::from(len),
            Command::Nop | Command::Fence { .. } => 0,
        }
    }
}

/// A validated ring: `RING_BASE` and `RING_SIZE` as checked when the guest
/// sets `CTRL.ENABLE`.
///
/// `RING_HEAD` and `RING_TAIL` are free-running 32-bit indices: descriptor
/// `i` lives in slot `i mod size`, the ring holds `tail - head` (wrapping)
/// descriptors, and it is full when that equals `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    base: u64,
    size: u32,
}

impl Ring {
    /// Validates a ring of `size` descriptors at IOVA `base`: `size` a power
    /// of two in `1..=RING_SIZE_MAX`, `base` aligned to `RING_ALIGN`, and the
    /// ring not wrapping past 2^64. Failure is `ERR_RING_CONFIG`.
    pub fn new(base: u64, size: u32) -> Result<Self, ErrorCode> {
        if !size.is_power_of_two() || size > RING_SIZE_MAX {
            return Err(ErrorCode::RingConfig);
        }
        if !base.is_multiple_of(u64::from(RING_ALIGN)) {
            return Err(ErrorCode::RingConfig);
        }
        let ring = Self { base, size };
        // `1 <= size <= RING_SIZE_MAX` here (what `bytes` needs), so only
        // the last step can fail; checked all the same, as `size` is the
        // guest's.
        let last = ring
            .bytes()
            .checked_sub(1)
            .and_then(|span| base.checked_add(span));
        if last.is_none() {
            return Err(ErrorCode::RingConfig);
        }
        Ok(ring)
    }

    /// IOVA of the ring.
    // Host API, for the property tests in fuzz/; the driver does not need it.
    #[allow(dead_code)]
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Number of descriptors.
    // Host API, for the property tests in fuzz/; the driver does not need it.
    #[allow(dead_code)]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Size of the ring in bytes.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn bytes(&self) -> u64 {
        // `size <= RING_SIZE_MAX` (checked in new): at most 128 KiB.
        u64::from(self.size) * u64::from(DESC_SIZE)
    }

    /// The slot of free-running index `index`.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn slot(&self, index: u32) -> u32 {
        // `size` is a power of two, so `size >= 1` (checked in new).
        index & (self.size - 1)
    }

    /// IOVA of the descriptor with free-running index `index`.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn desc_iova(&self, index: u32) -> u64 {
        // In range: `slot < size <= RING_SIZE_MAX`, and
        // `base + size * DESC_SIZE - 1` does not wrap (checked in new).
        self.base + u64::from(self.slot(index)) * u64::from(DESC_SIZE)
    }

    /// Number of descriptors between `head` and `tail`, or `ERR_BAD_TAIL`
    /// if the tail is more than a ring ahead of the head.
    pub fn pending(&self, head: u32, tail: u32) -> Result<u32, ErrorCode> {
        let n = tail.wrapping_sub(head);
        if n > self.size {
            Err(ErrorCode::BadTail)
        } else {
            Ok(n)
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const VRAM: u64 = 1 << 20;

    fn raw(f: Fields) -> RawDesc {
        f.to_raw()
    }

    fn code(r: Result<Command, DescError>) -> (ErrorCode, u64) {
        let e = r.unwrap_err();
        (e.code, e.addr)
    }

    #[test]
    fn layout_is_little_endian_at_documented_offsets() {
        let f = Fields {
            opcode: 0x11,
            flags: 0x22,
            rsvd0: 0x4433,
            len: 0x8877_6655,
            dst: 0x1011_1213_1415_1617,
            src: 0x2021_2223_2425_2627,
            rsvd1: 0x3031_3233_3435_3637,
        };
        let r = f.to_raw();
        assert_eq!(r[0], 0x11);
        assert_eq!(r[1], 0x22);
        assert_eq!(r[2..4], [0x33, 0x44]);
        assert_eq!(r[4..8], [0x55, 0x66, 0x77, 0x88]);
        assert_eq!(r[8], 0x17);
        assert_eq!(r[15], 0x10);
        assert_eq!(r[16], 0x27);
        assert_eq!(r[24], 0x37);
        assert_eq!(r[31], 0x30);
        assert_eq!(Fields::parse(&r), f);
    }

    #[test]
    fn round_trips() {
        let cmds = [
            Command::Nop,
            Command::Fill {
                dst: Addr::Guest(0x1000),
                len: 1,
                pattern: 0xdead_beef,
            },
            Command::Fill {
                dst: Addr::Device(VRAM - XFER_MAX as u64),
                len: XFER_MAX,
                pattern: 0,
            },
            Command::Copy {
                dst: Addr::Device(0),
                src: Addr::Guest(u64::MAX - 4095),
                len: 4096,
            },
            Command::Copy {
                dst: Addr::Guest(0x2000),
                src: Addr::Device(VRAM - 1),
                len: 1,
            },
            Command::Copy {
                dst: Addr::Device(0),
                src: Addr::Device(4096),
                len: 4096,
            },
            Command::Copy {
                dst: Addr::Guest(0x10_0000),
                src: Addr::Guest(0),
                len: XFER_MAX,
            },
            Command::Fence {
                iova: 0x3008,
                value: u64::MAX,
                irq: true,
            },
            Command::Fence {
                iova: 0,
                value: 7,
                irq: false,
            },
        ];
        for c in cmds {
            assert_eq!(decode(&c.encode(), VRAM), Ok(c), "{c:?}");
        }
    }

    #[test]
    fn opcode_try_from_accepts_exactly_the_four_opcodes() {
        let mut known = 0;
        for v in 0..=u8::MAX {
            match Opcode::try_from(v) {
                Ok(op) => {
                    assert_eq!(op as u8, v);
                    known += 1;
                }
                Err(e) => assert_eq!(e, v),
            }
        }
        assert_eq!(known, 4);
        for (v, op) in [
            (OP_NOP, Opcode::Nop),
            (OP_FILL, Opcode::Fill),
            (OP_COPY, Opcode::Copy),
            (OP_FENCE, Opcode::Fence),
        ] {
            assert_eq!(Opcode::try_from(v), Ok(op));
        }
    }

    #[test]
    fn zeroed_memory_is_a_bad_opcode() {
        assert_eq!(code(decode(&[0; 32], VRAM)), (ErrorCode::BadOpcode, 0));
        assert_eq!(
            code(decode(&[0xff; 32], VRAM)),
            (ErrorCode::BadOpcode, 0xff)
        );
        for op in 5..=255u8 {
            let r = raw(Fields {
                opcode: op,
                ..Fields::default()
            });
            assert_eq!(
                code(decode(&r, VRAM)),
                (ErrorCode::BadOpcode, u64::from(op))
            );
        }
    }

    #[test]
    fn reserved_fields_and_flags() {
        let base = Command::Copy {
            dst: Addr::Guest(0),
            src: Addr::Guest(0x1000),
            len: 16,
        }
        .encode();
        let mut r = base;
        r[1] |= FLAG_IRQ;
        assert_eq!(code(decode(&r, VRAM)), (ErrorCode::Reserved, 1));
        let mut r = base;
        r[1] |= 0x80;
        assert_eq!(code(decode(&r, VRAM)), (ErrorCode::Reserved, 1));
        let mut r = base;
        r[3] = 1;
        assert_eq!(code(decode(&r, VRAM)), (ErrorCode::Reserved, 2));
        let mut r = base;
        r[31] = 1;
        assert_eq!(code(decode(&r, VRAM)), (ErrorCode::Reserved, 24));

        // NOP uses nothing.
        for (i, off) in [(1usize, 1u64), (4, 4), (8, 8), (16, 16), (24, 24)] {
            let mut r = Command::Nop.encode();
            r[i] = 1;
            assert_eq!(
                code(decode(&r, VRAM)),
                (ErrorCode::Reserved, off),
                "byte {i}"
            );
        }
        // FILL: only the low half of src is the pattern; no SRC_DEV.
        let fill = Command::Fill {
            dst: Addr::Guest(0),
            len: 4,
            pattern: 1,
        }
        .encode();
        let mut r = fill;
        r[20] = 1;
        assert_eq!(code(decode(&r, VRAM)), (ErrorCode::Reserved, 16));
        let mut r = fill;
        r[1] |= FLAG_SRC_DEV;
        assert_eq!(code(decode(&r, VRAM)), (ErrorCode::Reserved, 1));
        // FENCE: len is reserved, DST_DEV is not allowed.
        let fence = Command::Fence {
            iova: 8,
            value: 1,
            irq: false,
        }
        .encode();
        let mut r = fence;
        r[4] = 8;
        assert_eq!(code(decode(&r, VRAM)), (ErrorCode::Reserved, 4));
        let mut r = fence;
        r[1] = FLAG_DST_DEV;
        assert_eq!(code(decode(&r, VRAM)), (ErrorCode::Reserved, 1));
    }

    #[test]
    fn lengths() {
        for (op, extra) in [(OP_FILL, 0u64), (OP_COPY, 0x20_0000)] {
            for len in [0, XFER_MAX + 1, u32::MAX] {
                let r = raw(Fields {
                    opcode: op,
                    len,
                    src: extra,
                    ..Fields::default()
                });
                assert_eq!(code(decode(&r, VRAM)), (ErrorCode::BadLen, u64::from(len)));
            }
        }
    }

    #[test]
    fn fence_alignment() {
        for a in 1..8u64 {
            let r = raw(Fields {
                opcode: OP_FENCE,
                dst: 0x1000 + a,
                ..Fields::default()
            });
            assert_eq!(code(decode(&r, VRAM)), (ErrorCode::BadAlign, 0x1000 + a));
        }
        let r = raw(Fields {
            opcode: OP_FENCE,
            dst: u64::MAX - 7,
            ..Fields::default()
        });
        assert!(decode(&r, VRAM).is_ok());
    }

    #[test]
    fn device_ranges() {
        let fill = |off: u64, len: u32| {
            Command::Fill {
                dst: Addr::Device(off),
                len,
                pattern: 0,
            }
            .encode()
        };
        assert!(decode(&fill(VRAM - 1, 1), VRAM).is_ok());
        assert_eq!(
            code(decode(&fill(VRAM, 1), VRAM)),
            (ErrorCode::DevRange, VRAM)
        );
        assert_eq!(
            code(decode(&fill(VRAM - 1, 2), VRAM)),
            (ErrorCode::DevRange, VRAM - 1)
        );
        assert_eq!(
            code(decode(&fill(u64::MAX, 1), VRAM)),
            (ErrorCode::DevRange, u64::MAX)
        );
        assert_eq!(code(decode(&fill(0, 1), 0)), (ErrorCode::DevRange, 0));
        // Destination is checked before the source.
        let c = Command::Copy {
            dst: Addr::Device(VRAM),
            src: Addr::Device(VRAM + 8),
            len: 1,
        };
        assert_eq!(code(decode(&c.encode(), VRAM)), (ErrorCode::DevRange, VRAM));
        let c = Command::Copy {
            dst: Addr::Device(0),
            src: Addr::Device(VRAM + 8),
            len: 1,
        };
        assert_eq!(
            code(decode(&c.encode(), VRAM)),
            (ErrorCode::DevRange, VRAM + 8)
        );
    }

    #[test]
    fn guest_ranges_must_not_wrap() {
        let c = Command::Copy {
            dst: Addr::Device(0),
            src: Addr::Guest(u64::MAX),
            len: 2,
        };
        assert_eq!(
            code(decode(&c.encode(), VRAM)),
            (ErrorCode::IovaFault, u64::MAX)
        );
        let c = Command::Fill {
            dst: Addr::Guest(u64::MAX),
            len: 1,
            pattern: 0,
        };
        assert!(decode(&c.encode(), VRAM).is_ok());
    }

    #[test]
    fn overlap_in_the_same_space_only() {
        let copy = |dst: Addr, src: Addr, len: u32| Command::Copy { dst, src, len }.encode();
        use Addr::{Device as D, Guest as G};
        assert_eq!(
            code(decode(&copy(D(0), D(15), 16), VRAM)),
            (ErrorCode::Overlap, 15)
        );
        assert_eq!(
            code(decode(&copy(D(15), D(0), 16), VRAM)),
            (ErrorCode::Overlap, 0)
        );
        assert_eq!(
            code(decode(&copy(G(8), G(8), 1), VRAM)),
            (ErrorCode::Overlap, 8)
        );
        assert_eq!(
            code(decode(&copy(G(u64::MAX - 1), G(u64::MAX - 2), 2), VRAM)),
            (ErrorCode::Overlap, u64::MAX - 2)
        );
        assert!(decode(&copy(D(0), D(16), 16), VRAM).is_ok());
        assert!(decode(&copy(D(16), D(0), 16), VRAM).is_ok());
        assert!(decode(&copy(G(0), D(0), 16), VRAM).is_ok());
        assert!(decode(&copy(D(0), G(0), 16), VRAM).is_ok());
        assert!(decode(&copy(G(u64::MAX), G(u64::MAX - 1), 1), VRAM).is_ok());
    }

    #[test]
    fn bytes_counted() {
        assert_eq!(Command::Nop.bytes(), 0);
        assert_eq!(
            Command::Fence {
                iova: 0,
                value: 0,
                irq: true
            }
            .bytes(),
            0
        );
        assert_eq!(
            Command::Fill {
                dst: Addr::Guest(0),
                len: 100,
                pattern: 0
            }
            .bytes(),
            100
        );
    }

    #[test]
    fn decode_never_panics_on_noise() {
        // A small deterministic generator; every field boundary value mixed in.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000u32 {
            let mut r = [0u8; 32];
            for chunk in r.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            // Bias towards valid opcodes, small flags and zero reserved fields.
            r[0] %= 6;
            if i % 2 == 0 {
                r[1] &= 7;
                r[2] = 0;
                r[3] = 0;
                r[24..].fill(0);
            }
            for vram in [0, 1, VRAM, u64::MAX] {
                if let Ok(c) = decode(&r, vram) {
                    assert_eq!(decode(&c.encode(), vram), Ok(c));
                }
            }
        }
    }

    #[test]
    fn every_field_at_its_maximum() {
        // All-ones fields for every opcode: rejected, never a panic.
        for op in [OP_NOP, OP_FILL, OP_COPY, OP_FENCE] {
            let max = Fields {
                opcode: op,
                flags: u8::MAX,
                rsvd0: u16::MAX,
                len: u32::MAX,
                dst: u64::MAX,
                src: u64::MAX,
                rsvd1: u64::MAX,
            };
            for vram in [0, 1, VRAM, u64::MAX] {
                assert_eq!(code(decode(&max.to_raw(), vram)), (ErrorCode::Reserved, 1));
            }
        }
        // Only the length at its maximum.
        for op in [OP_FILL, OP_COPY] {
            let r = raw(Fields {
                opcode: op,
                len: u32::MAX,
                dst: u64::MAX,
                ..Fields::default()
            });
            let e = (ErrorCode::BadLen, u64::from(u32::MAX));
            assert_eq!(code(decode(&r, u64::MAX)), e);
        }
        // FENCE at the last aligned IOVA, with the largest value.
        let f = Command::Fence {
            iova: u64::MAX - 7,
            value: u64::MAX,
            irq: true,
        };
        assert_eq!(decode(&f.encode(), 0), Ok(f));
    }

    #[test]
    fn ranges_at_the_top_of_the_address_space() {
        use Addr::{Device as D, Guest as G};
        let top = u64::MAX - u64::from(XFER_MAX);
        // Device memory as large as the address space: `off + len` may be
        // exactly 2^64, one past the last byte.
        let fill = |dst: Addr, len: u32| Command::Fill {
            dst,
            len,
            pattern: 0,
        };
        for (dst, len, ok) in [
            (D(top), XFER_MAX, true),
            (D(top + 1), XFER_MAX, false),
            (D(u64::MAX - 1), 1, true),
            (D(u64::MAX), 1, false),
            (D(u64::MAX), XFER_MAX, false),
            (G(top + 1), XFER_MAX, true),
            (G(top + 2), XFER_MAX, false),
            (G(u64::MAX), 1, true),
            (G(u64::MAX), 2, false),
        ] {
            let c = fill(dst, len);
            let r = decode(&c.encode(), u64::MAX);
            if ok {
                assert_eq!(r, Ok(c), "{dst:?} {len}");
            } else {
                let e = if dst.is_device() {
                    ErrorCode::DevRange
                } else {
                    ErrorCode::IovaFault
                };
                assert_eq!(code(r), (e, dst.value()), "{dst:?} {len}");
            }
        }
        // Overlap checks at the top end, in both spaces.
        let copy = |dst: Addr, src: Addr, len: u32| Command::Copy { dst, src, len };
        for (mk, vram) in [(D as fn(u64) -> Addr, u64::MAX), (G, VRAM)] {
            let hi = u64::MAX - u64::from(XFER_MAX) * 2 + 1;
            let lo = hi - u64::from(XFER_MAX);
            let c = copy(mk(hi), mk(lo), XFER_MAX);
            assert_eq!(decode(&c.encode(), vram), Ok(c));
            let c = copy(mk(lo), mk(hi), XFER_MAX);
            assert_eq!(decode(&c.encode(), vram), Ok(c));
            let c = copy(mk(hi), mk(hi - 1), XFER_MAX);
            assert_eq!(
                code(decode(&c.encode(), vram)),
                (ErrorCode::Overlap, hi - 1)
            );
            let c = copy(mk(hi - 1), mk(hi), XFER_MAX);
            assert_eq!(code(decode(&c.encode(), vram)), (ErrorCode::Overlap, hi));
        }
        let c = copy(G(u64::MAX), G(u64::MAX), 1);
        assert_eq!(code(decode(&c.encode(), 0)), (ErrorCode::Overlap, u64::MAX));
        let c = copy(D(u64::MAX - 1), D(u64::MAX - 1), 1);
        let e = (ErrorCode::Overlap, u64::MAX - 1);
        assert_eq!(code(decode(&c.encode(), u64::MAX)), e);
        // The same range in both spaces is no overlap.
        let c = copy(D(u64::MAX - 1), G(u64::MAX - 1), 1);
        assert_eq!(decode(&c.encode(), u64::MAX), Ok(c));
    }

    #[test]
    fn check_range_bounds() {
        use Addr::{Device as D, Guest as G};
        assert_eq!(check_range(D(0), 1, 1), Ok(0));
        assert_eq!(check_range(D(u64::MAX - 1), 1, u64::MAX), Ok(u64::MAX - 1));
        assert_eq!(
            check_range(D(u64::MAX), 1, u64::MAX),
            Err(err(ErrorCode::DevRange, u64::MAX))
        );
        assert_eq!(check_range(G(u64::MAX), 1, 0), Ok(u64::MAX));
        assert_eq!(check_range(G(1), u32::MAX, 0), Ok(u64::from(u32::MAX)));
        assert_eq!(
            check_range(G(u64::MAX - 1), u32::MAX, 0),
            Err(err(ErrorCode::IovaFault, u64::MAX - 1))
        );
        // A zero length is refused, not wrapped.
        for a in [D(0), G(0), D(u64::MAX), G(u64::MAX)] {
            assert_eq!(check_range(a, 0, u64::MAX), Err(err(ErrorCode::BadLen, 0)));
        }
    }

    #[test]
    fn ring_config() {
        assert_eq!(Ring::new(0, 0), Err(ErrorCode::RingConfig));
        assert_eq!(Ring::new(0, 3), Err(ErrorCode::RingConfig));
        assert_eq!(Ring::new(0, 4097), Err(ErrorCode::RingConfig));
        assert_eq!(Ring::new(0, 8192), Err(ErrorCode::RingConfig));
        assert_eq!(Ring::new(0, u32::MAX), Err(ErrorCode::RingConfig));
        assert_eq!(Ring::new(0x1010, 16), Err(ErrorCode::RingConfig));
        assert_eq!(Ring::new(u64::MAX - 31, 2), Err(ErrorCode::RingConfig));
        let r = Ring::new(u64::MAX - 31, 1).unwrap();
        assert_eq!(r.desc_iova(12345), u64::MAX - 31);
        let r = Ring::new(0x1_0000, RING_SIZE_MAX).unwrap();
        assert_eq!(r.bytes(), 128 * 1024);
        for s in 0..=12 {
            assert!(Ring::new(0x20, 1 << s).is_ok());
        }
        assert_eq!((r.base(), r.size()), (0x1_0000, 4096));
    }

    #[test]
    fn ring_index_arithmetic_wraps() {
        let r = Ring::new(0x4000, 8).unwrap();
        assert_eq!(r.slot(0), 0);
        assert_eq!(r.slot(9), 1);
        assert_eq!(r.desc_iova(9), 0x4020);
        assert_eq!(r.desc_iova(u32::MAX), 0x4000 + 7 * 32);
        assert_eq!(r.pending(0, 0), Ok(0));
        assert_eq!(r.pending(3, 11), Ok(8));
        assert_eq!(r.pending(3, 12), Err(ErrorCode::BadTail));
        assert_eq!(r.pending(5, 4), Err(ErrorCode::BadTail));
        // Across the 32-bit wrap of the free-running indices.
        assert_eq!(r.pending(u32::MAX - 2, 3), Ok(6));
        assert_eq!(r.slot(u32::MAX - 2), 5);
        assert_eq!(r.pending(u32::MAX, u32::MAX), Ok(0));
        let one = Ring::new(0, 1).unwrap();
        assert_eq!(one.pending(7, 8), Ok(1));
        assert_eq!(one.pending(7, 9), Err(ErrorCode::BadTail));
    }

    #[test]
    fn ring_at_its_limits() {
        // Sizes: zero, above the maximum, the largest powers of two.
        for size in [0, RING_SIZE_MAX * 2, 1 << 31, u32::MAX, u32::MAX - 1] {
            assert_eq!(Ring::new(0, size), Err(ErrorCode::RingConfig), "{size}");
        }
        // The largest ring, ending at the very last byte of the IOVA space.
        let bytes = u64::from(RING_SIZE_MAX) * u64::from(DESC_SIZE);
        let top = u64::MAX - bytes + 1;
        let r = Ring::new(top, RING_SIZE_MAX).unwrap();
        assert_eq!(r.bytes(), bytes);
        assert_eq!(r.desc_iova(0), top);
        assert_eq!(r.desc_iova(u32::MAX), u64::MAX - 31);
        assert_eq!(r.slot(u32::MAX), RING_SIZE_MAX - 1);
        for base in [top + 32, u64::MAX - 31] {
            assert_eq!(Ring::new(base, RING_SIZE_MAX), Err(ErrorCode::RingConfig));
        }
        assert_eq!(Ring::new(u64::MAX, 1), Err(ErrorCode::RingConfig));
        assert_eq!(Ring::new(1 << 63 | 16, 1), Err(ErrorCode::RingConfig));
        // Head and tail anywhere in 32 bits, across the wrap.
        let size = RING_SIZE_MAX;
        let start = u32::MAX - (size - 1); // `size` descriptors to the wrap
        assert_eq!(r.pending(start, 0), Ok(size));
        assert_eq!(r.pending(start, 1), Err(ErrorCode::BadTail));
        assert_eq!(r.pending(u32::MAX, 0), Ok(1));
        assert_eq!(r.pending(u32::MAX, u32::MAX - 1), Err(ErrorCode::BadTail));
        assert_eq!(r.pending(0, u32::MAX), Err(ErrorCode::BadTail));
        assert_eq!(r.pending(1, 0), Err(ErrorCode::BadTail));
        assert_eq!(r.pending(0, size), Ok(size));
        assert_eq!(r.pending(u32::MAX, size - 1), Ok(size));
        assert_eq!(r.pending(u32::MAX, size), Err(ErrorCode::BadTail));
        for i in [0, 1, size - 1, size, u32::MAX - 1, u32::MAX] {
            assert!(r.slot(i) < size);
            assert!(r.desc_iova(i) >= top && r.desc_iova(i) <= u64::MAX - 31);
        }
    }
}
