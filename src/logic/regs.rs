// SPDX-License-Identifier: GPL-2.0

//! The BAR0 register map (docs/device.md, "BAR0 registers"): offsets,
//! widths, access kinds, reset values, and the decoder that turns a region
//! access `(offset, width)` into one register access or an error.
//!
//! The decoder is strict: an access must lie inside one register, use one of
//! the widths that register allows and be naturally aligned. Everything else
//! (holes, straddling, odd widths, past the end) is a [`DecodeError`], which
//! the region handler answers with `EINVAL`. Side effects (doorbell, reset,
//! interrupt acknowledge) are the caller's: this module only computes values.

use super::uapi::{code_enum, uapi_consts};

uapi_consts! {
    /// The shared constants of this module other than the register map's,
    /// by C name.
    table UAPI_VALUES;

    /// Size of BAR0 (the register region) in bytes.
    pub const BAR0_SIZE: u32 = 0x1000;

    /// Value of `ID`: the bytes `"MBLT"` in little-endian order.
    pub const ID_MAGIC: u32 = 0x544c_424d;
    /// Value of `VERSION`: major in bits 31:16, minor in bits 15:0 (1.0).
    pub const DEVICE_VERSION: u32 = 0x0001_0000;

    /// Shift of the error code field in `STATUS`.
    pub const STATUS_ERR_CODE_SHIFT: u32 = STATUS_ERR_CODE_MASK.trailing_zeros();
    /// All defined interrupt bits.
    pub const INT_ALL: u32 = INT_FENCE | INT_ERROR;

    /// Largest valid `RING_SIZE` (descriptors).
    pub const RING_SIZE_MAX: u32 = 4096;
    /// `RING_BASE` alignment in bytes (its low bits read as zero).
    pub const RING_ALIGN: u32 = 32;

    /// Error code: no error.
    pub const ERR_NONE: u8 = 0x00;
    /// Error code: unknown opcode.
    pub const ERR_BAD_OPCODE: u8 = 0x01;
    /// Error code: a reserved field or flag is not zero.
    pub const ERR_RESERVED: u8 = 0x02;
    /// Error code: length zero or above [`XFER_MAX`](super::desc::XFER_MAX).
    pub const ERR_BAD_LEN: u8 = 0x03;
    /// Error code: FENCE address not 8-byte aligned.
    pub const ERR_BAD_ALIGN: u8 = 0x04;
    /// Error code: COPY source and destination overlap in the same space.
    pub const ERR_OVERLAP: u8 = 0x05;
    /// Error code: device-memory range past the end of device memory.
    pub const ERR_DEV_RANGE: u8 = 0x06;
    /// Error code: guest range not mapped, or wrapping past 2^64.
    pub const ERR_IOVA_FAULT: u8 = 0x07;
    /// Error code: the descriptor could not be read from the ring.
    pub const ERR_RING_FETCH: u8 = 0x08;
    /// Error code: invalid `RING_SIZE` or `RING_BASE` when enabling.
    pub const ERR_RING_CONFIG: u8 = 0x09;
    /// Error code: `RING_TAIL` more than `RING_SIZE` ahead of `RING_HEAD`.
    pub const ERR_BAD_TAIL: u8 = 0x0a;
    /// Error code: the command needs more pinned pages than the budget.
    pub const ERR_PIN_BUDGET: u8 = 0x0b;
    /// Error code: guest memory was unmapped while the command used it.
    pub const ERR_UNMAPPED: u8 = 0x0c;
}

/// Declares the register map, each register once: its [`Reg`] variant,
/// the `REG_<NAME>` offset constant, its width (`u32` or `u64`), its
/// [`Kind`] with the bits a write can change, its reset value (default 0),
/// access widths beyond the full width and aligned 4-byte halves, its
/// bit fields as `NAME = hi:lo` (each a mask constant), and the state
/// format version it joined the device state's REGS section in
/// (`since N`, default 1; [`RegInfo::since`]). Generates the constants,
/// [`Reg`], [`REGS`] and the `UAPI` table of C names (the offsets as
/// `MBLIT_REG_<NAME>`, the fields as `MBLIT_<FIELD>`).
///
/// Every register is saved in the device state. A new one goes where its
/// offset sorts it, with `since <FORMAT_VERSION + 1>`
/// (`state::FORMAT_VERSION`): that alone makes this build write the next
/// format version, while records of the older versions still decode, with
/// the new register at its reset value (docs/migration.md §1.8). Its
/// `#define`s go into `include/uapi/linux/mblit.h`, with
/// `MBLIT_STATE_FORMAT_VERSION` bumped to match (the host uAPI test
/// compares the two); the new version's layout fingerprint goes into
/// `state/tests.rs` and its golden fixtures come from `make golden`. A
/// new register without `since` would change the layout of a version
/// already released: the fingerprint test refuses it.
macro_rules! registers {
    (
        $(
            $(#[$doc:meta])*
            $reg:ident: $offset_name:ident = $offset:literal, $ty:ty,
                $kind:ident $(($mask:expr))?
                $({
                    $( $(#[$fdoc:meta])* $field:ident = $hi:literal : $lo:literal ),* $(,)?
                })?
                $(, reset $reset:expr)?
                $(, widths $widths:expr)?
                $(, since $since:expr)?;
        )*
    ) => {
        $(
            $(#[$doc])*
            pub const $offset_name: u32 = $offset;
            $($(
                $(#[$fdoc])*
                pub const $field: u32 = field_mask($hi, $lo);
            )*)?
        )*

        /// One BAR0 register.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reg {
            $( $(#[$doc])* $reg, )*
        }

        /// The register map, sorted by offset. Offsets not covered are
        /// holes.
        pub const REGS: [RegInfo; [$(stringify!($reg)),*].len()] = [
            $(
                RegInfo {
                    reg: Reg::$reg,
                    name: strip_reg_prefix(stringify!($offset_name)),
                    offset: $offset_name,
                    size: core::mem::size_of::<$ty>() as u8,
                    widths: full_widths(core::mem::size_of::<$ty>()) $(| ($widths))?,
                    kind: Kind::$kind,
                    reset: 0 $(| ($reset))?,
                    write_mask: 0 $(| ($mask))?,
                    since: since_or_1(&[$($since)?]),
                },
            )*
        ];

        /// The register map's constants shared with C, by C name.
        #[cfg(test)]
        pub const UAPI: &[(&str, u64)] = &[
            $(
                (concat!("MBLIT_", stringify!($offset_name)), $offset_name as u64),
                $($( (concat!("MBLIT_", stringify!($field)), $field as u64), )*)?
            )*
        ];
    };
}

/// The mask of bits `hi:lo` of a 32-bit register; evaluated at compile
/// time, where a field outside 31:0 or with `hi < lo` stops the build.
#[allow(clippy::arithmetic_side_effects)]
const fn field_mask(hi: u32, lo: u32) -> u32 {
    assert!(lo <= hi && hi < 32);
    (u32::MAX >> (31 - hi)) & (u32::MAX << lo)
}

/// The widths every register allows: its full width and, for a 64-bit one,
/// its aligned 32-bit halves.
const fn full_widths(size: usize) -> u8 {
    match size {
        4 => W4,
        8 => W4 | W8,
        _ => panic!("a register is 4 or 8 bytes"),
    }
}

/// A register's `since`: the one given, else 1.
const fn since_or_1(given: &[u32]) -> u32 {
    match given {
        [since] => *since,
        _ => 1,
    }
}

/// `"REG_X"` without its `REG_` prefix: a register's name in
/// docs/device.md, from its offset constant's name.
const fn strip_reg_prefix(s: &'static str) -> &'static str {
    match s.as_bytes() {
        [b'R', b'E', b'G', b'_', rest @ ..] => match core::str::from_utf8(rest) {
            Ok(name) => name,
            Err(_) => panic!("not UTF-8"),
        },
        _ => panic!("a register's offset constant is named REG_<NAME>"),
    }
}

registers! {
    /// `ID` (RO, 4): the identification magic [`ID_MAGIC`].
    Id: REG_ID = 0x000, u32, Ro, reset ID_MAGIC as u64;
    /// `VERSION` (RO, 4): register interface version [`DEVICE_VERSION`].
    Version: REG_VERSION = 0x004, u32, Ro, reset DEVICE_VERSION as u64;
    /// `CTRL` (RW, 4): [`CTRL_ENABLE`], [`CTRL_RESET`].
    Ctrl: REG_CTRL = 0x008, u32, Rw(CTRL_ENABLE as u64) {
        /// `CTRL` bit: the engine may fetch descriptors.
        CTRL_ENABLE = 0:0,
        /// `CTRL` bit: write 1 to reset the engine and all registers; reads 0.
        CTRL_RESET = 1:1,
    };
    /// `STATUS` (RO, 4): [`STATUS_BUSY`], [`STATUS_ERROR`] and the error code.
    Status: REG_STATUS = 0x00c, u32, Ro {
        /// `STATUS` bit: `CTRL.ENABLE` is set, there is no error and
        /// `RING_HEAD` differs from `RING_TAIL`.
        STATUS_BUSY = 0:0,
        /// `STATUS` bit: the engine stopped on an error (code in bits 15:8).
        STATUS_ERROR = 1:1,
        /// Mask of the error code field in `STATUS`.
        STATUS_ERR_CODE_MASK = 15:8,
    };
    /// `RING_BASE` (RW, 8; 4 at +0/+4): IOVA of the descriptor ring.
    RingBase: REG_RING_BASE = 0x010, u64, Rw(!(RING_ALIGN as u64).wrapping_sub(1));
    /// `RING_SIZE` (RW, 4): number of descriptors in the ring.
    RingSize: REG_RING_SIZE = 0x018, u32, Rw(0xffff_ffff);
    /// `RING_HEAD` (RO, 4): free-running index of the next descriptor the
    /// device executes.
    RingHead: REG_RING_HEAD = 0x01c, u32, Ro;
    /// `RING_TAIL` (RW, 4): free-running index one past the last descriptor
    /// the guest made available; writing it rings the doorbell.
    RingTail: REG_RING_TAIL = 0x020, u32, Rw(0xffff_ffff);
    /// `INT_STATUS` (W1C, 4): [`INT_FENCE`], [`INT_ERROR`].
    IntStatus: REG_INT_STATUS = 0x024, u32, W1c(INT_ALL as u64) {
        /// `INT_STATUS`/`INT_MASK` bit: a FENCE with the IRQ flag completed.
        INT_FENCE = 0:0,
        /// `INT_STATUS`/`INT_MASK` bit: the engine stopped on an error.
        INT_ERROR = 1:1,
    };
    /// `INT_MASK` (RW, 4): a set bit masks the same bit of `INT_STATUS`.
    IntMask: REG_INT_MASK = 0x028, u32, Rw(INT_ALL as u64);
    /// `FENCE_LAST` (RO, 8; 4 at +0/+4): value of the last completed FENCE.
    FenceLast: REG_FENCE_LAST = 0x030, u64, Ro;
    /// `CMD_COUNT` (RO, 8; 4 at +0/+4): commands completed.
    CmdCount: REG_CMD_COUNT = 0x038, u64, Ro;
    /// `BYTE_COUNT` (RO, 8; 4 at +0/+4): bytes written by completed FILL
    /// and COPY commands.
    ByteCount: REG_BYTE_COUNT = 0x040, u64, Ro;
    /// `ERR_INDEX` (RO, 4): ring index at which the engine stopped on error.
    ErrIndex: REG_ERR_INDEX = 0x048, u32, Ro;
    /// `ERR_ADDR` (RO, 8; 4 at +0/+4): the address an error is about.
    ErrAddr: REG_ERR_ADDR = 0x050, u64, Ro;
    /// `SCRATCH0` (RW, 8; any of 1/2/4/8 naturally aligned).
    Scratch0: REG_SCRATCH0 = 0x060, u64, Rw(u64::MAX), widths W1 | W2;
    /// `SCRATCH1`, like `SCRATCH0`.
    Scratch1: REG_SCRATCH1 = 0x068, u64, Rw(u64::MAX), widths W1 | W2;
    /// `SCRATCH2`, like `SCRATCH0`.
    Scratch2: REG_SCRATCH2 = 0x070, u64, Rw(u64::MAX), widths W1 | W2;
    /// `SCRATCH3`, like `SCRATCH0`.
    Scratch3: REG_SCRATCH3 = 0x078, u64, Rw(u64::MAX), widths W1 | W2;
}

code_enum! {
    /// A device error, as reported in `STATUS` bits 15:8 (in numeric
    /// order, as `ALL` lists them).
    pub enum ErrorCode {
        /// [`ERR_BAD_OPCODE`].
        BadOpcode = ERR_BAD_OPCODE,
        /// [`ERR_RESERVED`].
        Reserved = ERR_RESERVED,
        /// [`ERR_BAD_LEN`].
        BadLen = ERR_BAD_LEN,
        /// [`ERR_BAD_ALIGN`].
        BadAlign = ERR_BAD_ALIGN,
        /// [`ERR_OVERLAP`].
        Overlap = ERR_OVERLAP,
        /// [`ERR_DEV_RANGE`].
        DevRange = ERR_DEV_RANGE,
        /// [`ERR_IOVA_FAULT`].
        IovaFault = ERR_IOVA_FAULT,
        /// [`ERR_RING_FETCH`].
        RingFetch = ERR_RING_FETCH,
        /// [`ERR_RING_CONFIG`].
        RingConfig = ERR_RING_CONFIG,
        /// [`ERR_BAD_TAIL`].
        BadTail = ERR_BAD_TAIL,
        /// [`ERR_PIN_BUDGET`].
        PinBudget = ERR_PIN_BUDGET,
        /// [`ERR_UNMAPPED`].
        Unmapped = ERR_UNMAPPED,
    }
}

impl ErrorCode {
    /// The error code with value `code`, if there is one (for restoring a
    /// saved `STATUS`).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::try_from(code).ok()
    }
}

/// The value of `STATUS` for an engine that is `busy` and/or stopped on
/// `error`.
pub const fn status_value(busy: bool, error: Option<ErrorCode>) -> u32 {
    let mut v = if busy { STATUS_BUSY } else { 0 };
    if let Some(e) = error {
        v |= STATUS_ERROR | ((e.code() as u32) << STATUS_ERR_CODE_SHIFT);
    }
    v
}

/// How guest writes affect a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Read-only: writes are accepted and ignored.
    Ro,
    /// Read/write: the bits in [`RegInfo::write_mask`] take the written
    /// value; other bits keep theirs.
    Rw,
    /// Write-one-to-clear: written 1 bits within the write mask clear.
    W1c,
}

/// Access width bit for 1-byte accesses in [`RegInfo::widths`].
pub const W1: u8 = 1;
/// Access width bit for 2-byte accesses.
pub const W2: u8 = 2;
/// Access width bit for 4-byte accesses.
pub const W4: u8 = 4;
/// Access width bit for 8-byte accesses.
pub const W8: u8 = 8;

/// Static description of one register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegInfo {
    /// Which register.
    pub reg: Reg,
    /// Its name in docs/device.md.
    pub name: &'static str,
    /// Offset in BAR0.
    pub offset: u32,
    /// Size in bytes: 4 or 8.
    pub size: u8,
    /// Allowed access widths: a set of [`W1`], [`W2`], [`W4`], [`W8`]
    /// (a width's bit is the width itself).
    pub widths: u8,
    /// Write semantics.
    pub kind: Kind,
    /// Value after reset.
    pub reset: u64,
    /// Bits a write can change (set for RW, clear for W1C).
    pub write_mask: u64,
    /// The device-state format version whose REGS section first carries
    /// this register (docs/migration.md §1.8): records of older versions
    /// lack it, and it decodes from them as [`reset`](Self::reset).
    pub since: u32,
}

// The access rules of the map, checked at compile time: `REGS` lists every
// variant once, in declaration order (so `REGS[reg as usize]` is `reg`'s
// entry), sorted by offset without overlap, each register naturally
// aligned inside BAR0; a read-only register has no writable bit; every
// register joined the state format in version 1 or later.
#[allow(clippy::arithmetic_side_effects)]
const _: () = {
    let mut i = 0;
    while i < REGS.len() {
        let r = &REGS[i];
        assert!(r.reg as usize == i);
        assert!(r.offset.is_multiple_of(r.size as u32));
        assert!(r.offset + r.size as u32 <= BAR0_SIZE);
        assert!(!matches!(r.kind, Kind::Ro) || r.write_mask == 0);
        assert!(r.since >= 1);
        if i > 0 {
            assert!(REGS[i - 1].offset + REGS[i - 1].size as u32 <= r.offset);
        }
        i += 1;
    }
    assert!(Reg::Scratch3 as usize + 1 == REGS.len());
};

impl Reg {
    /// This register's entry in [`REGS`].
    pub fn info(self) -> &'static RegInfo {
        &REGS[self as usize]
    }
}

/// Why a BAR0 access was refused. The region handler answers all of them
/// with `EINVAL`; nothing is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The access does not lie entirely inside BAR0.
    OutOfRange,
    /// The width is not 1, 2, 4 or 8 bytes.
    BadWidth,
    /// The offset is not a multiple of the width.
    Unaligned,
    /// No register at the offset.
    Hole,
    /// The access extends past the end of the register it starts in.
    Straddle,
    /// The register does not allow this width.
    WidthNotAllowed,
}

/// One decoded register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegAccess {
    /// The register accessed.
    pub info: &'static RegInfo,
    /// Byte offset of the access inside the register.
    pub byte: u8,
    /// Width in bytes: 1, 2, 4 or 8.
    pub width: u8,
}

/// For each 4-byte word of BAR0, 1 + the index in [`REGS`] of the register
/// that holds it, or 0 for a hole: [`decode`]'s lookup, one load instead
/// of a search (the register path is measured against mtty's by
/// `make bench`).
static REG_AT: [u8; (BAR0_SIZE / 4) as usize] = reg_at();

/// Builds [`REG_AT`]; evaluated at compile time, where a register that is
/// not 4-byte aligned, or too many registers for a `u8`, stops the build.
/// Counters are bounded by their loops and by `BAR0_SIZE` (the test
/// `table_is_sorted_aligned_and_indexed_by_variant` holds every register
/// inside it).
#[allow(clippy::arithmetic_side_effects)]
const fn reg_at() -> [u8; (BAR0_SIZE / 4) as usize] {
    assert!(REGS.len() < u8::MAX as usize);
    let mut t = [0u8; (BAR0_SIZE / 4) as usize];
    let mut i = 0;
    while i < REGS.len() {
        let r = &REGS[i];
        assert!(r.offset.is_multiple_of(4) && r.size.is_multiple_of(4));
        let mut w = r.offset / 4;
        while w < (r.offset + r.size as u32) / 4 {
            t[w as usize] = i as u8 + 1;
            w += 1;
        }
        i += 1;
    }
    t
}

/// Decodes an access of `width` bytes at `offset` into BAR0.
///
/// Checks, in this order: inside BAR0, width in {1, 2, 4, 8}, natural
/// alignment, a register at `offset`, not past that register's end, and a
/// width the register allows.
pub fn decode(offset: u64, width: usize) -> Result<RegAccess, DecodeError> {
    let end = offset.checked_add(width as u64);
    if width == 0 || !matches!(end, Some(e) if e <= u64::from(BAR0_SIZE)) {
        return Err(DecodeError::OutOfRange);
    }
    if !matches!(width, 1 | 2 | 4 | 8) {
        return Err(DecodeError::BadWidth);
    }
    if !offset.is_multiple_of(width as u64) {
        return Err(DecodeError::Unaligned);
    }
    // `offset < BAR0_SIZE` here, so it fits in u32.
    let off = offset as u32;
    // The register holding `off`, and the byte of it `off` is.
    let (info, byte) = REG_AT
        .get((off / 4) as usize)
        .and_then(|&i| REGS.get(usize::from(i).checked_sub(1)?))
        .and_then(|r| Some((r, off.checked_sub(r.offset)?)))
        .ok_or(DecodeError::Hole)?;
    // `width` is 1, 2, 4 or 8 here, so the cast is exact.
    if byte
        .checked_add(width as u32)
        .is_none_or(|end| end > u32::from(info.size))
    {
        return Err(DecodeError::Straddle);
    }
    if info.widths & width as u8 == 0 {
        return Err(DecodeError::WidthNotAllowed);
    }
    Ok(RegAccess {
        info,
        byte: byte as u8,
        width: width as u8,
    })
}

impl RegAccess {
    /// The bits of the register the access covers, in register position.
    ///
    /// Shifts are checked: the fields are public, and a shift by 64 or more
    /// is an overflow. (`u8 * 8` cannot overflow a `u32`.) Accesses from
    /// [`decode`] have `byte + width <= 8`.
    pub fn lanes(&self) -> u64 {
        // `width` bytes of ones: all 64 bits from 8 bytes on.
        let ones = u64::MAX
            .checked_shl(u32::from(self.width) * 8)
            .map_or(u64::MAX, |high| !high);
        ones.checked_shl(u32::from(self.byte) * 8).unwrap_or(0)
    }

    /// The value a read returns, given the register's current value
    /// (right-aligned, `width` bytes significant).
    pub fn read(&self, reg_value: u64) -> u64 {
        (reg_value & self.lanes())
            .checked_shr(u32::from(self.byte) * 8)
            .unwrap_or(0)
    }

    /// The written value moved to its position in the register, limited to
    /// the covered lanes: what the guest wrote, for action bits such as
    /// [`CTRL_RESET`].
    pub fn written(&self, data: u64) -> u64 {
        data.checked_shl(u32::from(self.byte) * 8).unwrap_or(0) & self.lanes()
    }

    /// The register's value after a write of `data` (right-aligned), by the
    /// register's [`Kind`] and write mask.
    pub fn write(&self, old: u64, data: u64) -> u64 {
        let w = self.written(data);
        let mask = self.lanes() & self.info.write_mask;
        match self.info.kind {
            Kind::Ro => old,
            Kind::Rw => (old & !mask) | (w & mask),
            Kind::W1c => old & !(w & mask),
        }
    }
}

/// The register values of a device, indexed like [`REGS`]; a plain store
/// with reset values and [`RegAccess`] semantics. Registers the device
/// computes (`STATUS`, `RING_HEAD`, counters) are set with [`RegFile::set`].
///
/// Rules that depend on device state are the caller's: `RING_BASE` and
/// `RING_SIZE` ignore writes while `CTRL.ENABLE` is set, `CTRL.RESET` and
/// the `RING_TAIL` doorbell are actions (see [`RegAccess::written`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegFile {
    values: [u64; REGS.len()],
}

impl Default for RegFile {
    fn default() -> Self {
        Self::new()
    }
}

impl RegFile {
    /// All registers at their reset values.
    #[allow(clippy::arithmetic_side_effects)]
    pub const fn new() -> Self {
        let mut values = [0u64; REGS.len()];
        let mut i = 0;
        while i < REGS.len() {
            values[i] = REGS[i].reset;
            // `i < REGS.len()` (19): no overflow.
            i += 1;
        }
        Self { values }
    }

    /// A register file holding exactly `values` (in [`REGS`] order), for
    /// restoring a saved state. No write mask or size is applied: the
    /// caller validates the values first (`state::decode` does).
    pub const fn from_values(values: [u64; REGS.len()]) -> Self {
        Self { values }
    }

    /// All register values, in [`REGS`] order, for saving them.
    pub const fn values(&self) -> &[u64; REGS.len()] {
        &self.values
    }

    /// Resets every register.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Current value of `reg`.
    pub fn get(&self, reg: Reg) -> u64 {
        self.values[reg as usize]
    }

    /// Sets `reg` from the device side (no write mask applied; the value is
    /// truncated to the register's size).
    pub fn set(&mut self, reg: Reg, value: u64) {
        let v = if reg.info().size == 4 {
            value & 0xffff_ffff
        } else {
            value
        };
        self.values[reg as usize] = v;
    }

    /// The value a guest read of `acc` returns.
    pub fn read(&self, acc: &RegAccess) -> u64 {
        acc.read(self.get(acc.info.reg))
    }

    /// Applies a guest write of `data` through `acc` and returns the
    /// register's new value.
    pub fn write(&mut self, acc: &RegAccess, data: u64) -> u64 {
        let reg = acc.info.reg;
        let v = acc.write(self.get(reg), data);
        self.values[reg as usize] = v;
        v
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_aligned_and_indexed_by_variant() {
        for (i, r) in REGS.iter().enumerate() {
            assert_eq!(r.reg as usize, i, "{}", r.name);
            assert!(r.size == 4 || r.size == 8);
            assert_eq!(r.offset % u32::from(r.size), 0, "{}", r.name);
            assert!(r.offset + u32::from(r.size) <= BAR0_SIZE);
            assert_ne!(r.widths & r.size, 0, "{} full width", r.name);
            assert!(r.since >= 1, "{}", r.name);
            assert_eq!(r.widths & !0xf, 0);
            if r.size == 4 {
                assert_eq!(r.reset >> 32, 0);
                assert_eq!(r.write_mask >> 32, 0);
            }
            if r.kind == Kind::Ro {
                assert_eq!(r.write_mask, 0, "{}", r.name);
            }
            assert_eq!(r.reg.info(), r);
        }
        for w in REGS.windows(2) {
            assert!(w[0].offset + u32::from(w[0].size) <= w[1].offset);
        }
    }

    #[test]
    fn uapi_offsets_match_table() {
        for r in &REGS {
            let c = std::format!("MBLIT_REG_{}", r.name);
            assert_eq!(
                super::super::uapi::lookup(&c),
                Some(u64::from(r.offset)),
                "{c}"
            );
        }
        assert_eq!(
            UAPI.iter()
                .filter(|(n, _)| n.starts_with("MBLIT_REG_"))
                .count(),
            REGS.len()
        );
    }

    #[test]
    fn reset_values() {
        let f = RegFile::new();
        assert_eq!(f.get(Reg::Id), 0x544c_424d);
        assert_eq!(&ID_MAGIC.to_le_bytes(), b"MBLT");
        assert_eq!(f.get(Reg::Version), u64::from(DEVICE_VERSION));
        for r in &REGS {
            if !matches!(r.reg, Reg::Id | Reg::Version) {
                assert_eq!(f.get(r.reg), 0, "{}", r.name);
            }
        }
        assert_eq!(f, RegFile::default());
    }

    #[test]
    fn every_register_decodes_at_full_width() {
        for r in &REGS {
            let a = decode(u64::from(r.offset), usize::from(r.size)).unwrap();
            assert_eq!(a.info.reg, r.reg);
            assert_eq!((a.byte, a.width), (0, r.size));
        }
    }

    #[test]
    fn eight_byte_registers_allow_halves() {
        for r in REGS.iter().filter(|r| r.size == 8) {
            let lo = decode(u64::from(r.offset), 4).unwrap();
            let hi = decode(u64::from(r.offset) + 4, 4).unwrap();
            assert_eq!((lo.info.reg, lo.byte), (r.reg, 0));
            assert_eq!((hi.info.reg, hi.byte), (r.reg, 4));
        }
    }

    #[test]
    fn narrow_widths_only_on_scratch() {
        for r in &REGS {
            for w in [1usize, 2] {
                let res = decode(u64::from(r.offset), w);
                if r.name.starts_with("SCRATCH") {
                    assert!(res.is_ok());
                } else {
                    assert_eq!(res, Err(DecodeError::WidthNotAllowed), "{}", r.name);
                }
            }
        }
        // Every naturally aligned sub-access of a scratch register.
        for w in [1u64, 2, 4, 8] {
            for b in (0..8).step_by(w as usize) {
                let a = decode(u64::from(REG_SCRATCH2) + b, w as usize).unwrap();
                assert_eq!((a.info.reg, u64::from(a.byte)), (Reg::Scratch2, b));
            }
        }
    }

    #[test]
    fn bad_accesses() {
        use DecodeError::*;
        assert_eq!(decode(0, 0), Err(OutOfRange));
        assert_eq!(decode(0x1000, 4), Err(OutOfRange));
        assert_eq!(decode(0xffc, 8), Err(OutOfRange));
        assert_eq!(decode(u64::MAX - 1, 4), Err(OutOfRange));
        assert_eq!(decode(u64::MAX, 1), Err(OutOfRange));
        assert_eq!(decode(0, usize::MAX), Err(OutOfRange));
        assert_eq!(decode(0, 3), Err(BadWidth));
        assert_eq!(decode(0, 16), Err(BadWidth));
        assert_eq!(decode(0x001, 4), Err(Unaligned));
        assert_eq!(decode(0x062, 4), Err(Unaligned));
        assert_eq!(decode(0x014, 8), Err(Unaligned));
        // Holes: between registers and after the last one.
        assert_eq!(decode(0x02c, 4), Err(Hole));
        assert_eq!(decode(0x04c, 4), Err(Hole));
        assert_eq!(decode(0x058, 8), Err(Hole));
        assert_eq!(decode(0x080, 4), Err(Hole));
        assert_eq!(decode(0xff8, 8), Err(Hole));
        // Two 4-byte registers in one 8-byte access.
        assert_eq!(decode(0x018, 8), Err(Straddle));
        assert_eq!(decode(0x000, 8), Err(Straddle));
        assert_eq!(decode(0x048, 8), Err(Straddle));
        // 4-byte registers allow no 1/2-byte access.
        assert_eq!(decode(0x00a, 2), Err(WidthNotAllowed));
    }

    #[test]
    fn exhaustive_decode_never_panics_and_is_consistent() {
        for off in 0..0x1010u64 {
            for w in 0..=9usize {
                if let Ok(a) = decode(off, w) {
                    assert_eq!(u64::from(a.info.offset) + u64::from(a.byte), off);
                    assert_eq!(usize::from(a.width), w);
                    assert_ne!(a.info.widths & a.width, 0);
                }
            }
        }
    }

    #[test]
    fn decode_at_the_limits() {
        use DecodeError::*;
        // Offsets and widths whose sum wraps, or ends just past BAR0.
        for off in [u64::MAX, u64::MAX - 3, u64::MAX - 7, 1 << 63, 1 << 32] {
            for w in [1usize, 2, 4, 8, usize::MAX] {
                assert_eq!(decode(off, w), Err(OutOfRange), "{off:#x} {w}");
            }
        }
        let end = u64::from(BAR0_SIZE);
        for w in [1usize, 2, 4, 8] {
            assert_eq!(decode(end - w as u64 + 1, w), Err(OutOfRange));
            assert_eq!(decode(end - w as u64, w), Err(Hole));
        }
        assert_eq!(decode(end, 0), Err(OutOfRange));
        assert_eq!(decode(0, usize::MAX - 1), Err(OutOfRange));
        assert_eq!(decode(0, BAR0_SIZE as usize), Err(BadWidth));
        // The last register, at every width, and straddling its end.
        let last = u64::from(REG_SCRATCH3);
        assert_eq!(decode(last + 7, 1).map(|a| a.byte), Ok(7));
        assert_eq!(decode(last + 6, 2).map(|a| a.byte), Ok(6));
        assert_eq!(decode(last + 8, 1), Err(Hole));
        assert_eq!(decode(last + 8, 8), Err(Hole));
    }

    #[test]
    fn accesses_not_from_decode_never_panic() {
        // `RegAccess` has public fields: lanes past the register's 64 bits
        // are empty rather than a shift overflow.
        let info = Reg::Scratch0.info();
        for (byte, width, lanes) in [
            (0u8, 0u8, 0u64),
            (0, 8, u64::MAX),
            (0, 9, u64::MAX),
            (0, u8::MAX, u64::MAX),
            (7, 1, 0xff << 56),
            (7, 8, 0xff << 56),
            (8, 1, 0),
            (8, 8, 0),
            (u8::MAX, 1, 0),
            (u8::MAX, u8::MAX, 0),
        ] {
            let a = RegAccess { info, byte, width };
            assert_eq!(a.lanes(), lanes, "byte {byte} width {width}");
            let shift = u32::from(byte) * 8;
            let expect = lanes.checked_shr(shift).unwrap_or(0);
            assert_eq!(a.read(u64::MAX), expect);
            assert_eq!(a.written(u64::MAX), lanes);
            assert_eq!(a.write(0, u64::MAX), lanes);
            assert_eq!(a.write(u64::MAX, 0), !lanes);
        }
    }

    #[test]
    fn extreme_values_through_every_register() {
        for r in &REGS {
            for w in [1usize, 2, 4, 8] {
                for b in (0..usize::from(r.size)).step_by(w) {
                    let Ok(a) = decode(u64::from(r.offset) + b as u64, w) else {
                        continue;
                    };
                    let mut f = RegFile::new();
                    f.set(r.reg, u64::MAX);
                    let full = if r.size == 4 { 0xffff_ffff } else { u64::MAX };
                    assert_eq!(f.get(r.reg), full);
                    let ones = u64::MAX >> (64 - 8 * w);
                    assert_eq!(f.read(&a), ones, "{} +{b} /{w}", r.name);
                    let v = f.write(&a, u64::MAX);
                    assert_eq!(v & !full, 0, "{}", r.name);
                    f.write(&a, 0);
                    assert_eq!(a.written(u64::MAX), a.lanes());
                }
            }
        }
    }

    #[test]
    fn scratch_round_trips_at_every_width() {
        let mut f = RegFile::new();
        let a8 = decode(u64::from(REG_SCRATCH0), 8).unwrap();
        f.write(&a8, 0x0123_4567_89ab_cdef);
        assert_eq!(f.read(&a8), 0x0123_4567_89ab_cdef);
        let hi = decode(u64::from(REG_SCRATCH0) + 4, 4).unwrap();
        assert_eq!(f.read(&hi), 0x0123_4567);
        f.write(&hi, 0xdead_beef);
        assert_eq!(f.get(Reg::Scratch0), 0xdead_beef_89ab_cdef);
        let b1 = decode(u64::from(REG_SCRATCH0) + 1, 1).unwrap();
        assert_eq!(f.read(&b1), 0xcd);
        f.write(&b1, 0x1ff); // only the low byte lands
        assert_eq!(f.get(Reg::Scratch0), 0xdead_beef_89ab_ffef);
        let h3 = decode(u64::from(REG_SCRATCH0) + 6, 2).unwrap();
        f.write(&h3, 0x5a5a);
        assert_eq!(f.get(Reg::Scratch0), 0x5a5a_beef_89ab_ffef);
        assert_eq!(f.get(Reg::Scratch1), 0);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut f = RegFile::new();
        for r in REGS.iter().filter(|r| r.kind == Kind::Ro) {
            let a = decode(u64::from(r.offset), usize::from(r.size)).unwrap();
            let before = f.get(r.reg);
            assert_eq!(f.write(&a, u64::MAX), before, "{}", r.name);
        }
        f.set(Reg::CmdCount, 0x1_0000_0002);
        let hi = decode(u64::from(REG_CMD_COUNT) + 4, 4).unwrap();
        assert_eq!(f.read(&hi), 1);
        f.write(&hi, 0);
        assert_eq!(f.get(Reg::CmdCount), 0x1_0000_0002);
    }

    #[test]
    fn ctrl_reset_bit_is_an_action_and_reads_zero() {
        let mut f = RegFile::new();
        let a = decode(u64::from(REG_CTRL), 4).unwrap();
        let v = f.write(&a, u64::from(CTRL_ENABLE | CTRL_RESET | 0xff00));
        assert_eq!(v, u64::from(CTRL_ENABLE));
        assert_eq!(a.written(u64::from(CTRL_RESET)), u64::from(CTRL_RESET));
        assert_eq!(f.read(&a), u64::from(CTRL_ENABLE));
    }

    #[test]
    fn ring_base_low_bits_read_zero() {
        let mut f = RegFile::new();
        let a = decode(u64::from(REG_RING_BASE), 8).unwrap();
        f.write(&a, 0xffff_ffff_ffff_ffff);
        assert_eq!(f.get(Reg::RingBase), 0xffff_ffff_ffff_ffe0);
        let lo = decode(u64::from(REG_RING_BASE), 4).unwrap();
        let hi = decode(u64::from(REG_RING_BASE) + 4, 4).unwrap();
        f.write(&lo, 0x1234_5678);
        f.write(&hi, 0x9);
        assert_eq!(f.get(Reg::RingBase), 0x9_1234_5660);
    }

    #[test]
    fn int_status_is_write_one_to_clear() {
        let mut f = RegFile::new();
        f.set(Reg::IntStatus, u64::from(INT_ALL));
        let a = decode(u64::from(REG_INT_STATUS), 4).unwrap();
        f.write(&a, u64::from(INT_FENCE));
        assert_eq!(f.get(Reg::IntStatus), u64::from(INT_ERROR));
        f.write(&a, 0);
        assert_eq!(f.get(Reg::IntStatus), u64::from(INT_ERROR));
        f.write(&a, 0xffff_ffff);
        assert_eq!(f.get(Reg::IntStatus), 0);
        let m = decode(u64::from(REG_INT_MASK), 4).unwrap();
        assert_eq!(f.write(&m, 0xffff_ffff), u64::from(INT_ALL));
    }

    #[test]
    fn set_truncates_to_register_size_and_reset_restores() {
        let mut f = RegFile::new();
        f.set(Reg::RingHead, u64::MAX);
        assert_eq!(f.get(Reg::RingHead), 0xffff_ffff);
        f.set(Reg::ByteCount, u64::MAX);
        assert_eq!(f.get(Reg::ByteCount), u64::MAX);
        f.reset();
        assert_eq!(f, RegFile::new());
    }

    #[test]
    fn values_round_trip() {
        let mut f = RegFile::new();
        f.set(Reg::CmdCount, 7);
        f.set(Reg::Scratch3, u64::MAX);
        let v = *f.values();
        assert_eq!(v[Reg::CmdCount as usize], 7);
        assert_eq!(v[Reg::Id as usize], u64::from(ID_MAGIC));
        assert_eq!(RegFile::from_values(v), f);
    }

    #[test]
    fn status_and_error_codes() {
        assert_eq!(status_value(false, None), 0);
        assert_eq!(status_value(true, None), STATUS_BUSY);
        assert_eq!(
            status_value(false, Some(ErrorCode::BadTail)),
            STATUS_ERROR | 0x0a00
        );
        for (i, e) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(e.code()), i + 1);
            assert_eq!(ErrorCode::from_code(e.code()), Some(*e));
            let s = status_value(false, Some(*e));
            assert_eq!(
                (s & STATUS_ERR_CODE_MASK) >> STATUS_ERR_CODE_SHIFT,
                u32::from(e.code())
            );
        }
        assert_eq!(ErrorCode::from_code(ERR_NONE), None);
        assert_eq!(ErrorCode::from_code(0x0d), None);
        assert_eq!(ErrorCode::from_code(0xff), None);
    }
}
