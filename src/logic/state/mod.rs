// SPDX-License-Identifier: GPL-2.0

//! The versioned device-state format (docs/migration.md): the one
//! serialiser behind both the DEVICE_STATE region's state area and the VFIO
//! migration v2 `data_fd` stream.
//!
//! Two record kinds share one 32-byte header and a CRC32 trailer:
//!
//! - a **device record** (magic `"MBSV"`, [`encode`]/[`decode`]): config
//!   space, registers, engine and interrupt state, and a set of
//!   device-memory pages, as five length-prefixed sections in a fixed order;
//! - a **pages record** (magic `"MBPG"`,
//!   [`encode_pages_chunk`]/[`decode_pages_chunk`]): at most
//!   [`PAGES_CHUNK_MAX`] device-memory pages, for v2 pre-copy.
//!
//! Everything is little-endian and contains no host data. The decoders
//! validate a whole record (structure, every value, checksum) before they
//! return anything; they never panic on any input.
//!
//! Page semantics, for a single record and for a stream of records alike: a
//! page's content is that of the last record carrying it; a page no record
//! carries is zero.

// One file per concern: the CRC32 (`crc.rs`), the encoders (`encoder.rs`)
// and the decoders (`decoder.rs`); the format constants, the state, its
// lengths and its validation are here.
mod crc;
mod decoder;
mod encoder;

pub use crc::{crc32, Crc32};
pub use decoder::{announced_len, decode, decode_pages_chunk, peek_record, RecordKind};
// Host API (tests/, fuzz/): the driver uses these types but never names
// them, so in the module the re-export itself is unused.
#[allow(unused_imports)]
pub use decoder::{Decoded, PagesChunk, RecordInfo};
pub use encoder::{encode, encode_pages_chunk};

use super::config_space::{self, ConfigSpace, CONFIG_SIZE};
use super::desc::Ring;
use super::regs::{
    ErrorCode, Kind, Reg, RegFile, RegInfo, CTRL_ENABLE, REGS, STATUS_BUSY, STATUS_ERROR,
    STATUS_ERR_CODE_MASK, STATUS_ERR_CODE_SHIFT,
};

/// Device-memory page granule in the format, in bytes.
pub const PAGE: usize = 4096;
/// [`PAGE`] as a `u64`: a non-zero constant divisor.
const PAGE_U64: u64 = PAGE as u64;

/// The format version of everything but the register list: bump it for
/// any change of layout or meaning other than a new register
/// (docs/migration.md §1.8). A new register bumps [`FORMAT_VERSION`]
/// through its `since` instead (`regs.rs`), with no change here.
pub const SECTIONS_VERSION: u32 = 1;

/// Format version of both record kinds, the version this build writes:
/// the larger of [`SECTIONS_VERSION`] and the newest register's
/// [`RegInfo::since`]. Any change of layout or meaning is a new version
/// (docs/migration.md §1.8). The magic and version words at offsets 0 and
/// 4 of the header stay where they are in every version, so that any build
/// can tell which version a record has.
pub const FORMAT_VERSION: u32 = format_version(SECTIONS_VERSION, &REGS);

/// The oldest format version this build still reads. A build reads every
/// version from this one to [`FORMAT_VERSION`], and the golden streams of
/// each (`selftests/golden/`) keep passing.
pub const OLDEST_VERSION: u32 = 1;

// The decoder reads the versions from SECTIONS_VERSION on, which differ
// only in their registers ([`Layout`]). A build that bumps
// SECTIONS_VERSION and still reads older versions gives those their own
// decoder, selected by the header's version, and replaces this check.
const _: () = assert!(OLDEST_VERSION >= SECTIONS_VERSION && SECTIONS_VERSION >= 1);

/// The format version of a build whose layout apart from registers is
/// version `sections` and whose registers are `regs`: the larger of
/// `sections` and the highest [`RegInfo::since`] in `regs`.
pub const fn format_version(sections: u32, regs: &[RegInfo]) -> u32 {
    let mut newest = sections;
    let mut rest = regs;
    while let [r, tail @ ..] = rest {
        if r.since > newest {
            newest = r.since;
        }
        rest = tail;
    }
    newest
}

/// How many of `regs` a record of format `version` carries in its REGS
/// section: those with [`RegInfo::since`] at most `version`.
pub const fn regs_in_version(regs: &[RegInfo], version: u32) -> usize {
    let mut n = 0usize;
    let mut rest = regs;
    while let [r, tail @ ..] = rest {
        if r.since <= version {
            // At most `regs.len()`: no overflow.
            n = n.saturating_add(1);
        }
        rest = tail;
    }
    n
}

/// Payload length of the REGS section of a record of format `version`
/// with registers `regs`: one `u64` per register it carries (`None` if
/// that does not fit in `usize`).
pub const fn regs_len(regs: &[RegInfo], version: u32) -> Option<usize> {
    regs_in_version(regs, version).checked_mul(8)
}

/// Magic of a device record: the bytes `"MBSV"`. (The DEVICE_STATE region
/// header's magic is `"MBST"`; the two are deliberately different.)
pub const DEVICE_MAGIC: u32 = u32::from_le_bytes(*b"MBSV");

/// Magic of a pages record: the bytes `"MBPG"`.
pub const PAGES_MAGIC: u32 = u32::from_le_bytes(*b"MBPG");

/// Size of the record header common to both kinds.
pub const HEADER_LEN: usize = 32;
/// Size of a section header in a device record (id, reserved, length).
pub const SECTION_HEADER_LEN: usize = 16;
/// Size of the trailer (CRC32 of everything before it).
pub const TRAILER_LEN: usize = 4;
/// Size of one page entry: `u64` page index, then [`PAGE`] bytes.
pub const PAGE_ENTRY_LEN: usize = 8 + PAGE;

/// Section id: config space image.
pub const SECTION_CONFIG: u32 = 1;
/// Section id: BAR0 register values.
pub const SECTION_REGS: u32 = 2;
/// Section id: engine state not visible in registers.
pub const SECTION_ENGINE: u32 = 3;
/// Section id: VFIO-level interrupt state.
pub const SECTION_IRQ: u32 = 4;
/// Section id: device-memory pages.
pub const SECTION_VRAM: u32 = 5;
/// Sections of a version-1 device record, in the only order allowed.
pub const SECTIONS: [u32; 5] = [
    SECTION_CONFIG,
    SECTION_REGS,
    SECTION_ENGINE,
    SECTION_IRQ,
    SECTION_VRAM,
];

/// Payload length of the CONFIG section.
pub const CONFIG_LEN: usize = CONFIG_SIZE as usize;
/// Payload length of the REGS section of a [`FORMAT_VERSION`] record: one
/// `u64` per register of [`REGS`], in that order. (A record of an older
/// version carries only the registers of its version: [`regs_len`].)
pub const REGS_LEN: usize = REGS.len() * 8;
/// Payload length of the ENGINE section.
pub const ENGINE_LEN: usize = 16;
/// Payload length of the IRQ section.
pub const IRQ_LEN: usize = 8;

/// Most pages one pages record may carry (1 MiB of page data), so that a
/// receiver buffers at most [`pages_chunk_len`]`(PAGES_CHUNK_MAX)` bytes
/// per pages record.
pub const PAGES_CHUNK_MAX: usize = 256;

/// Length of a device record without pages and without the REGS
/// payload, the same in every version [`Layout`] reads.
const DEVICE_BASE_LEN: usize = HEADER_LEN
    + SECTIONS.len() * SECTION_HEADER_LEN
    + CONFIG_LEN
    + ENGINE_LEN
    + IRQ_LEN
    + 8 // VRAM page count
    + TRAILER_LEN;

/// Length of a [`FORMAT_VERSION`] device record without pages.
const DEVICE_FIXED_LEN: usize = DEVICE_BASE_LEN + REGS_LEN;

/// The layout of device records as a function of their version, for the
/// versions from [`SECTIONS_VERSION`] on, which differ only in the
/// registers their REGS section carries: a record of version `v` holds,
/// in table order, the registers with [`RegInfo::since`] at most `v`;
/// the others decode as their [`RegInfo::reset`]. The decoders use this
/// build's, [`LAYOUT`]; the unit tests also use synthetic register tables.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout<'t> {
    regs: &'t [RegInfo; REGS.len()],
    newest: u32,
}

/// This build's [`Layout`]: [`REGS`], newest version [`FORMAT_VERSION`].
pub(super) const LAYOUT: Layout<'static> = Layout::new(&REGS);

// This build writes every register; the layout it writes is the one it
// reads as FORMAT_VERSION.
const _: () = {
    assert!(LAYOUT.newest == FORMAT_VERSION);
    assert!(regs_in_version(&REGS, FORMAT_VERSION) == REGS.len());
    assert!(matches!(
        LAYOUT.fixed_len(FORMAT_VERSION),
        Some(DEVICE_FIXED_LEN)
    ));
};

impl<'t> Layout<'t> {
    /// The layout of a build with registers `regs`.
    pub(super) const fn new(regs: &'t [RegInfo; REGS.len()]) -> Self {
        Self {
            regs,
            newest: format_version(SECTIONS_VERSION, regs),
        }
    }

    /// The register table.
    pub(super) const fn regs(&self) -> &'t [RegInfo; REGS.len()] {
        self.regs
    }

    /// `version` is one this layout reads: from [`OLDEST_VERSION`] to its
    /// newest version.
    pub(super) const fn check_version(&self, version: u32) -> Result<(), StateError> {
        if version > self.newest {
            return Err(StateError::NewerVersion(version));
        }
        if version < OLDEST_VERSION {
            return Err(StateError::BadVersion);
        }
        Ok(())
    }

    /// Length of a device record of `version` without pages (`None` for a
    /// version this layout does not read).
    pub(super) const fn fixed_len(&self, version: u32) -> Option<usize> {
        if self.check_version(version).is_err() {
            return None;
        }
        match regs_len(self.regs, version) {
            Some(r) => r.checked_add(DEVICE_BASE_LEN),
            None => None,
        }
    }

    /// Length of a device record of `version` with `npages` pages (`None`
    /// for a version this layout does not read, or if it does not fit in
    /// `usize`).
    pub(super) fn record_len(&self, version: u32, npages: usize) -> Option<usize> {
        npages
            .checked_mul(PAGE_ENTRY_LEN)?
            .checked_add(self.fixed_len(version)?)
    }

    /// The largest device record of `version` of a device with
    /// `vram_size` bytes of device memory (every page present), as
    /// [`max_encoded_len`] for [`FORMAT_VERSION`]: `usize::MAX` if it does
    /// not fit, `None` for a version this layout does not read.
    pub(super) fn max_len(&self, version: u32, vram_size: u64) -> Option<usize> {
        self.fixed_len(version)?;
        Some(
            usize::try_from(vram_pages(vram_size))
                .ok()
                .and_then(|n| self.record_len(version, n))
                .unwrap_or(usize::MAX),
        )
    }
}

/// Why a record could not be encoded or decoded. A receiver answers
/// [`StateError::NewerVersion`] with `EPROTONOSUPPORT` and every other
/// decode error with `EINVAL`; [`StateError::BufferSize`] and
/// [`StateError::PageCount`] from an encoder are caller bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// The input is shorter than its header or than the length the header
    /// states.
    Truncated,
    /// Not the magic of the record kind expected.
    BadMagic,
    /// Older than [`OLDEST_VERSION`] (0 is no version at all).
    BadVersion,
    /// Newer than this build's [`FORMAT_VERSION`]: the version found.
    NewerVersion(u32),
    /// The record is for another mdev type.
    WrongType,
    /// The record is for another device-memory size.
    WrongVramSize,
    /// Wrong section count, a section id missing, unknown or out of order,
    /// or a section header's reserved field not zero.
    BadSection,
    /// A length (total, section, page count) is inconsistent or out of
    /// range.
    BadLength,
    /// The CRC32 trailer does not match.
    BadChecksum,
    /// A page index is past device memory or not strictly increasing.
    BadPageIndex,
    /// A register value no device can have.
    BadRegister,
    /// The config image differs from a fresh device of the type in a
    /// read-only bit.
    BadConfig,
    /// Inconsistent engine state: unknown error code, error not matching
    /// `STATUS`, or `ring_valid` not matching the ring registers.
    BadEngine,
    /// Bad IRQ section (a flag byte not 0/1, reserved bytes not zero).
    BadIrq,
    /// Encoder: the output buffer is not exactly the encoded length.
    BufferSize,
    /// Encoder: the page iterator did not yield exactly `npages` pages (or
    /// `npages` exceeds [`PAGES_CHUNK_MAX`] for a pages record).
    PageCount,
}

/// The device state besides device memory: what the device hands the
/// encoder and what the decoder returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceState {
    /// The mdev type id (device memory in MiB: 1, 16 or 256).
    pub type_id: u32,
    /// Device memory size in bytes.
    pub vram_size: u64,
    /// Config space image ([`ConfigSpace::image`]).
    pub config: [u8; CONFIG_LEN],
    /// BAR0 register values in [`REGS`] order ([`RegFile::values`]).
    pub regs: [u64; REGS.len()],
    /// A ring was validated when `CTRL.ENABLE` was set (the engine has a
    /// ring). Only meaningful while `CTRL.ENABLE` is set: the encoder
    /// stores `ring_valid && ENABLE`.
    pub ring_valid: bool,
    /// 0, or the code of the error the engine stopped on.
    pub error: u8,
    /// Error-stop counter (debugfs `errors`).
    pub errors: u64,
    /// VFIO-level INTx mask (automask or `ACTION_MASK`).
    pub intx_masked: bool,
}

impl DeviceState {
    /// The state of a freshly created (or device-reset) mdev of `type_id`
    /// with `vram_size` bytes of device memory.
    #[cfg(test)]
    pub fn at_reset(type_id: u32, vram_size: u64) -> Self {
        Self {
            type_id,
            vram_size,
            config: *fresh_config(type_id, vram_size).image(),
            regs: *RegFile::new().values(),
            ring_valid: false,
            error: 0,
            errors: 0,
            intx_masked: false,
        }
    }

    /// The value of register `reg`.
    pub fn reg(&self, reg: Reg) -> u64 {
        self.regs.get(reg as usize).copied().unwrap_or(0)
    }

    /// The registers as a [`RegFile`].
    pub fn reg_file(&self) -> RegFile {
        RegFile::from_values(self.regs)
    }

    /// The latched error, if any (`None` also for an unknown code, which
    /// [`validate`] refuses).
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.error)
    }

    /// The engine's ring: `Some` when `ring_valid` (and the ring registers
    /// form a valid ring, which [`validate`] guarantees).
    pub fn ring(&self) -> Option<Ring> {
        if !self.ring_valid {
            return None;
        }
        Ring::new(self.reg(Reg::RingBase), self.reg(Reg::RingSize) as u32).ok()
    }

    fn enabled(&self) -> bool {
        self.reg(Reg::Ctrl) & u64::from(CTRL_ENABLE) != 0
    }
}

/// A reset config space for `type_id`/`vram_size`.
fn fresh_config(type_id: u32, vram_size: u64) -> ConfigSpace {
    ConfigSpace::new(vram_size, config_space::type_id(type_id))
}

// ---------------------------------------------------------------------------
// Lengths

/// Bytes a device record with `npages` device-memory pages takes, as this
/// build writes it ([`FORMAT_VERSION`], every register) (`usize::MAX` if
/// that does not fit in `usize`).
pub fn encoded_len(npages: usize) -> usize {
    npages
        .checked_mul(PAGE_ENTRY_LEN)
        .and_then(|p| p.checked_add(DEVICE_FIXED_LEN))
        .unwrap_or(usize::MAX)
}

/// Number of [`PAGE`]-sized pages of a device memory of `vram_size` bytes
/// (only whole pages are addressable in the format).
pub fn vram_pages(vram_size: u64) -> u64 {
    vram_size / PAGE_U64
}

/// The largest device record of a device with `vram_size` bytes of device
/// memory (every page present): the bound for the DEVICE_STATE region's
/// state area. `usize::MAX` if it does not fit. Records of older versions
/// are no longer ([`FORMAT_VERSION`] carries every register).
pub fn max_encoded_len(vram_size: u64) -> usize {
    usize::try_from(vram_pages(vram_size)).map_or(usize::MAX, encoded_len)
}

/// Bytes a pages record with `npages` pages takes (`usize::MAX` if that
/// does not fit in `usize`).
pub fn pages_chunk_len(npages: usize) -> usize {
    npages
        .checked_mul(PAGE_ENTRY_LEN)
        .and_then(|p| p.checked_add(HEADER_LEN + TRAILER_LEN))
        .unwrap_or(usize::MAX)
}

/// Bytes needed to send `npages` pages as pages records of at most
/// [`PAGES_CHUNK_MAX`] pages each (for `VFIO_MIG_GET_PRECOPY_INFO` and
/// `MIG_DATA_SIZE` estimates). `usize::MAX` on overflow.
pub fn pages_stream_len(npages: usize) -> usize {
    let full = npages / PAGES_CHUNK_MAX;
    let rest = npages % PAGES_CHUNK_MAX;
    let tail = if rest == 0 { 0 } else { pages_chunk_len(rest) };
    full.checked_mul(pages_chunk_len(PAGES_CHUNK_MAX))
        .and_then(|f| f.checked_add(tail))
        .unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------
// Validation of the state values

/// Checks that `state` is one a device of `type_id` with `vram_size` bytes
/// of device memory can be in: the same checks [`decode`] makes on the
/// decoded values.
pub fn validate(state: &DeviceState, type_id: u32, vram_size: u64) -> Result<(), StateError> {
    if state.type_id != type_id {
        return Err(StateError::WrongType);
    }
    if state.vram_size != vram_size {
        return Err(StateError::WrongVramSize);
    }
    let mut cfg = fresh_config(type_id, vram_size);
    cfg.load(&state.config).map_err(|_| StateError::BadConfig)?;
    check_regs(&state.regs)?;
    check_engine(state)
}

/// Register values a device can have: 4-byte registers' high half zero,
/// `ID`/`VERSION` at their fixed values, `STATUS` only defined bits, and
/// writable registers only writable bits (e.g. `CTRL.RESET` 0, `RING_BASE`
/// 32-byte aligned, only defined interrupt bits).
fn check_regs(values: &[u64; REGS.len()]) -> Result<(), StateError> {
    for (info, &v) in REGS.iter().zip(values.iter()) {
        if info.size == 4 && v >> 32 != 0 {
            return Err(StateError::BadRegister);
        }
        let ok = match (info.kind, info.reg) {
            (Kind::Ro, Reg::Id | Reg::Version) => v == info.reset,
            (Kind::Ro, Reg::Status) => {
                v & !u64::from(STATUS_BUSY | STATUS_ERROR | STATUS_ERR_CODE_MASK) == 0
            }
            (Kind::Ro, _) => true,
            (Kind::Rw | Kind::W1c, _) => (v ^ info.reset) & !info.write_mask == 0,
        };
        if !ok {
            return Err(StateError::BadRegister);
        }
    }
    Ok(())
}

/// Engine state consistent with the registers: a known error code, equal
/// to `STATUS`'s; `ring_valid` exactly when `CTRL.ENABLE` is set and the
/// ring registers form a valid ring.
fn check_engine(state: &DeviceState) -> Result<(), StateError> {
    if state.error != 0 && ErrorCode::from_code(state.error).is_none() {
        return Err(StateError::BadEngine);
    }
    let status = state.reg(Reg::Status);
    let code = (status & u64::from(STATUS_ERR_CODE_MASK)) >> STATUS_ERR_CODE_SHIFT;
    let has_error = status & u64::from(STATUS_ERROR) != 0;
    if has_error != (state.error != 0) || code != u64::from(state.error) {
        return Err(StateError::BadEngine);
    }
    let ring_ok = Ring::new(state.reg(Reg::RingBase), state.reg(Reg::RingSize) as u32).is_ok();
    if state.ring_valid != (state.enabled() && ring_ok) {
        return Err(StateError::BadEngine);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests;
