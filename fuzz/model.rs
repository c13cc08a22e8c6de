// SPDX-License-Identifier: GPL-2.0

//! The reference side of the state-format properties: the layout and the
//! validation rules of docs/migration.md §1 written out again from the
//! document (not from `src/logic/state/`), a raw record model that can
//! hold any field value, an encoder for it, the result the decoder must give
//! for it, and the strategies that generate models.
//!
//! A raw model is what the bytes "say": every field of a record as it will
//! be written. Edits change a field of the model; the encoder writes the
//! model at the documented offsets and seals it with a correct CRC. The
//! decoder must then return exactly the model's content when the model
//! satisfies every documented rule, and an error naming a rule it breaks
//! otherwise.

use std::collections::BTreeMap;

use mblit_logic::config_space::ConfigSpace;
use mblit_logic::regs::{ErrorCode, Reg, REGS};
use mblit_logic::state::{
    self, crc32, DeviceState, RecordKind, StateError, CONFIG_LEN, DEVICE_MAGIC, PAGE,
    PAGES_CHUNK_MAX, PAGES_MAGIC, PAGE_ENTRY_LEN,
};
use proptest::prelude::*;

/// One device-memory page.
pub type Page = Box<[u8; PAGE]>;
/// Device memory as a stream receiver sees it: the pages written so far
/// (absent pages are zero).
pub type Vram = BTreeMap<u64, Page>;

/// The device geometries under test, `(type_id, vram_size)`: the three real
/// types and the corners of the format.
pub const GEOMETRIES: &[(u32, u64)] = &[
    (1, 1 << 20),
    (16, 16 << 20),
    (256, 256 << 20),
    // Four pages: random page indices collide and run past the end often.
    (2, 4 * PAGE as u64),
    // Not a whole number of pages: the partial page is not addressable.
    (3, 3 * PAGE as u64 + 5),
    // No device memory at all.
    (0, 0),
    // A type id above u16 (the config subsystem id saturates), 1 TiB.
    (70_000, 1 << 40),
    // The largest values of both fields.
    (u32::MAX, u64::MAX),
];

/// Number of addressable pages of `vram_size` (docs: indices below
/// `vram_size / 4096`).
pub fn page_limit(vram_size: u64) -> u64 {
    vram_size / PAGE as u64
}

// ---------------------------------------------------------------------------
// The register map of docs/device.md §5, typed in again from the document.

/// Access kind of a register (docs/device.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Ro,
    Rw,
    W1c,
}

/// One row of the register-map table of docs/device.md §5.
#[derive(Debug, Clone, Copy)]
pub struct DocReg {
    pub name: &'static str,
    pub offset: u64,
    pub size: u64,
    pub widths: &'static [usize],
    pub kind: DocKind,
    pub reset: u64,
    /// Bits a write changes (RW: sets; W1C: clears). Reserved bits, the
    /// write-only `CTRL.RESET` and the read-as-zero `RING_BASE` bits 4:0
    /// are not in it.
    pub writable: u64,
}

const fn reg(
    name: &'static str,
    offset: u64,
    size: u64,
    widths: &'static [usize],
    kind: DocKind,
    reset: u64,
    writable: u64,
) -> DocReg {
    DocReg {
        name,
        offset,
        size,
        widths,
        kind,
        reset,
        writable,
    }
}

const W4: &[usize] = &[4];
const W48: &[usize] = &[4, 8];
const WANY: &[usize] = &[1, 2, 4, 8];

/// The table, in register-map order (which is also the `REGS` section
/// order of the state format).
pub const DOC_REGS: [DocReg; 19] = [
    reg("ID", 0x000, 4, W4, DocKind::Ro, 0x544c_424d, 0),
    reg("VERSION", 0x004, 4, W4, DocKind::Ro, 0x0001_0000, 0),
    reg("CTRL", 0x008, 4, W4, DocKind::Rw, 0, 0x1),
    reg("STATUS", 0x00c, 4, W4, DocKind::Ro, 0, 0),
    reg("RING_BASE", 0x010, 8, W48, DocKind::Rw, 0, !0x1f),
    reg("RING_SIZE", 0x018, 4, W4, DocKind::Rw, 0, 0xffff_ffff),
    reg("RING_HEAD", 0x01c, 4, W4, DocKind::Ro, 0, 0),
    reg("RING_TAIL", 0x020, 4, W4, DocKind::Rw, 0, 0xffff_ffff),
    reg("INT_STATUS", 0x024, 4, W4, DocKind::W1c, 0, 0x3),
    reg("INT_MASK", 0x028, 4, W4, DocKind::Rw, 0, 0x3),
    reg("FENCE_LAST", 0x030, 8, W48, DocKind::Ro, 0, 0),
    reg("CMD_COUNT", 0x038, 8, W48, DocKind::Ro, 0, 0),
    reg("BYTE_COUNT", 0x040, 8, W48, DocKind::Ro, 0, 0),
    reg("ERR_INDEX", 0x048, 4, W4, DocKind::Ro, 0, 0),
    reg("ERR_ADDR", 0x050, 8, W48, DocKind::Ro, 0, 0),
    reg("SCRATCH0", 0x060, 8, WANY, DocKind::Rw, 0, u64::MAX),
    reg("SCRATCH1", 0x068, 8, WANY, DocKind::Rw, 0, u64::MAX),
    reg("SCRATCH2", 0x070, 8, WANY, DocKind::Rw, 0, u64::MAX),
    reg("SCRATCH3", 0x078, 8, WANY, DocKind::Rw, 0, u64::MAX),
];

/// Indices into [`DOC_REGS`] of the registers the engine rules use.
pub const K_CTRL: usize = 2;
pub const K_STATUS: usize = 3;
pub const K_RING_BASE: usize = 4;
pub const K_RING_SIZE: usize = 5;

/// docs/device.md §7: a ring is valid when `RING_SIZE` is a power of two
/// in 1..=4096 and the ring does not wrap past 2^64 (and `RING_BASE` is
/// 32-byte aligned, which its read-as-zero bits guarantee on a device).
pub fn ring_ok(base: u64, size: u64) -> bool {
    let end = u128::from(base) + u128::from(size) * 32;
    size.is_power_of_two() && size <= 4096 && base.is_multiple_of(32) && end <= 1u128 << 64
}

/// The bits of each config byte a guest write can change, found by
/// writing all ones and all zeros through `ConfigSpace::write`.
fn config_writable(fresh: &ConfigSpace) -> [u8; CONFIG_LEN] {
    let mut ones = fresh.clone();
    ones.write(0, &[0xff; CONFIG_LEN]).unwrap();
    let mut zeros = fresh.clone();
    zeros.write(0, &[0x00; CONFIG_LEN]).unwrap();
    let mut m = [0u8; CONFIG_LEN];
    for (k, b) in m.iter_mut().enumerate() {
        *b = ones.image()[k] ^ zeros.image()[k];
    }
    m
}

/// The reset config space of a geometry (docs: subsystem id = type id,
/// saturated to 16 bits).
pub fn fresh_config(type_id: u32, vram_size: u64) -> ConfigSpace {
    ConfigSpace::new(vram_size, u16::try_from(type_id).unwrap_or(u16::MAX))
}

/// CRC32 as docs/migration.md §1.3 defines it (reflected polynomial
/// 0xEDB88320, initial value and final xor all ones), byte at a time with a
/// table built here: independent of the module's slicing-by-8 `Crc32`,
/// which `state_props::crc32_as_documented` checks against it. The models
/// seal records with the module's (several times faster, for `make fuzz`).
pub fn reference_crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        t[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

// ---------------------------------------------------------------------------
// Raw record models

/// Every field of a device record's payload, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDevice {
    pub config: [u8; CONFIG_LEN],
    pub regs: [u64; 19],
    pub ring_valid: u8,
    pub error: u8,
    pub engine_rsvd: [u8; 6],
    pub errors: u64,
    pub intx: u8,
    pub irq_rsvd: [u8; 7],
}

/// A record model: a device record or a pages record of one geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub type_id: u32,
    pub vram_size: u64,
    /// `Some` for a device record.
    pub device: Option<RawDevice>,
    pub pages: Vec<(u64, Page)>,
    pub framing: Framing,
}

/// The structural fields of a record as written, where they differ from
/// what the format requires for the record's content (`None`: as
/// required).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Framing {
    pub magic: Option<u32>,
    pub version: Option<u32>,
    pub count: Option<u32>,
    pub total: Option<u64>,
    /// Device records: each section header's id, reserved field, length.
    pub sections: [(Option<u32>, Option<u32>, Option<u64>); 5],
    /// Device records: the VRAM section's page count.
    pub vram_count: Option<u64>,
}

/// The structural fields a record's content requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Required {
    pub magic: u32,
    pub count: u32,
    pub total: u64,
    pub section_lens: [u64; 5],
}

/// What a receiver must make of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a test value, compared whole
pub enum Expect {
    /// Accepted with exactly this content.
    Ok {
        kind: RecordKind,
        state: Option<DeviceState>,
        pages: Vec<(u64, Page)>,
    },
    /// Refused by `peek_record` (the header alone): a stream receiver
    /// stops after the header.
    BadHeader(Vec<StateError>),
    /// The header passes `peek_record`, the whole record is refused with
    /// one of these errors.
    BadRecord(Vec<StateError>),
}

impl RawDevice {
    /// The doc rules (docs/migration.md §1.7, items 4–7) this payload
    /// breaks for a device of the given geometry, as the errors naming
    /// them.
    pub fn violations(&self, type_id: u32, vram_size: u64) -> Vec<StateError> {
        let mut v = Vec::new();
        // 4. CONFIG: every read-only bit as on a fresh device of the type,
        // except STATUS bit 3 (interrupt pending, at byte 6).
        let fresh = fresh_config(type_id, vram_size);
        let writable = config_writable(&fresh);
        let config_bad = (0..CONFIG_LEN).any(|off| {
            let mut ro = !writable[off];
            if off == 6 {
                ro &= !0x08;
            }
            (self.config[off] ^ fresh.image()[off]) & ro != 0
        });
        if config_bad {
            v.push(StateError::BadConfig);
        }
        // 5. REGS.
        let regs_bad = DOC_REGS.iter().zip(self.regs).any(|(r, val)| {
            let high_ok = r.size == 8 || val >> 32 == 0;
            let ok = match (r.kind, r.name) {
                (DocKind::Ro, "ID" | "VERSION") => val == r.reset,
                (DocKind::Ro, "STATUS") => val & !0xff03 == 0,
                (DocKind::Ro, _) => true,
                (DocKind::Rw | DocKind::W1c, _) => (val ^ r.reset) & !r.writable == 0,
            };
            !(high_ok && ok)
        });
        if regs_bad {
            v.push(StateError::BadRegister);
        }
        // 6. ENGINE.
        let status = self.regs[K_STATUS];
        let enabled = self.regs[K_CTRL] & 1 != 0;
        let ring = ring_ok(self.regs[K_RING_BASE], self.regs[K_RING_SIZE]);
        let known = self.error == 0 || (1..=12).contains(&self.error);
        let status_matches =
            (status & 2 != 0) == (self.error != 0) && (status >> 8) & 0xff == u64::from(self.error);
        if self.ring_valid > 1
            || self.engine_rsvd != [0; 6]
            || !known
            || !status_matches
            || (self.ring_valid == 1) != (enabled && ring)
        {
            v.push(StateError::BadEngine);
        }
        // 7. IRQ.
        if self.intx > 1 || self.irq_rsvd != [0; 7] {
            v.push(StateError::BadIrq);
        }
        v
    }

    /// The state this payload stands for (meaningful when it is valid).
    pub fn state(&self, type_id: u32, vram_size: u64) -> DeviceState {
        DeviceState {
            type_id,
            vram_size,
            config: self.config,
            regs: self.regs,
            ring_valid: self.ring_valid == 1,
            error: self.error,
            errors: self.errors,
            intx_masked: self.intx == 1,
        }
    }
}

impl RawRecord {
    pub fn kind(&self) -> RecordKind {
        if self.device.is_some() {
            RecordKind::Device
        } else {
            RecordKind::Pages
        }
    }

    /// The record's bytes, written at the offsets of docs/migration.md
    /// §1.2–1.5, with a correct CRC32 trailer.
    pub fn encode(&self) -> Vec<u8> {
        let req = self.required();
        let f = &self.framing;
        let mut b = Vec::new();
        b.extend_from_slice(&f.magic.unwrap_or(req.magic).to_le_bytes());
        b.extend_from_slice(&f.version.unwrap_or(1).to_le_bytes());
        b.extend_from_slice(&self.type_id.to_le_bytes());
        b.extend_from_slice(&f.count.unwrap_or(req.count).to_le_bytes());
        b.extend_from_slice(&self.vram_size.to_le_bytes());
        b.extend_from_slice(&f.total.unwrap_or(req.total).to_le_bytes());
        let section = |b: &mut Vec<u8>, k: usize| {
            let (id, rsvd, len) = f.sections[k];
            b.extend_from_slice(&id.unwrap_or(k as u32 + 1).to_le_bytes());
            b.extend_from_slice(&rsvd.unwrap_or(0).to_le_bytes());
            b.extend_from_slice(&len.unwrap_or(req.section_lens[k]).to_le_bytes());
        };
        if let Some(d) = &self.device {
            section(&mut b, 0);
            b.extend_from_slice(&d.config);
            section(&mut b, 1);
            for r in d.regs {
                b.extend_from_slice(&r.to_le_bytes());
            }
            section(&mut b, 2);
            b.push(d.ring_valid);
            b.push(d.error);
            b.extend_from_slice(&d.engine_rsvd);
            b.extend_from_slice(&d.errors.to_le_bytes());
            section(&mut b, 3);
            b.push(d.intx);
            b.extend_from_slice(&d.irq_rsvd);
            section(&mut b, 4);
            let n = self.pages.len() as u64;
            b.extend_from_slice(&f.vram_count.unwrap_or(n).to_le_bytes());
        }
        for (i, p) in &self.pages {
            b.extend_from_slice(&i.to_le_bytes());
            b.extend_from_slice(&p[..]);
        }
        assert_eq!(b.len() as u64 + 4, req.total);
        let c = crc32(&b);
        b.extend_from_slice(&c.to_le_bytes());
        b
    }

    /// Sets a structural field, relative to the value the content
    /// requires now.
    pub fn frame(&mut self, field: FrameField, val: FrameVal) {
        let req = self.required();
        let other = if req.magic == DEVICE_MAGIC {
            PAGES_MAGIC
        } else {
            DEVICE_MAGIC
        };
        let n = self.pages.len() as u64;
        let value = |required: u64| match val {
            FrameVal::Delta(d) => required.wrapping_add_signed(i64::from(d)),
            FrameVal::Entries(k) => {
                required.wrapping_add_signed(i64::from(k) * PAGE_ENTRY_LEN as i64)
            }
            FrameVal::OtherMagic => required.wrapping_add(1),
            FrameVal::Set(v) => v,
        };
        let f = &mut self.framing;
        match field {
            FrameField::Magic => {
                f.magic = Some(match val {
                    FrameVal::OtherMagic => other,
                    _ => value(u64::from(req.magic)) as u32,
                })
            }
            FrameField::Version => f.version = Some(value(1) as u32),
            FrameField::Count => f.count = Some(value(u64::from(req.count)) as u32),
            FrameField::Total => f.total = Some(value(req.total)),
            FrameField::SectionId(k) => {
                let k = usize::from(k) % 5;
                f.sections[k].0 = Some(value(k as u64 + 1) as u32);
            }
            FrameField::SectionRsvd(k) => f.sections[usize::from(k) % 5].1 = Some(value(0) as u32),
            FrameField::SectionLen(k) => {
                let k = usize::from(k) % 5;
                f.sections[k].2 = Some(value(req.section_lens[k]));
            }
            FrameField::VramCount => f.vram_count = Some(value(n)),
        }
    }

    /// The structural fields the content requires (docs/migration.md
    /// §1.2, §1.4, §1.5).
    pub fn required(&self) -> Required {
        let n = self.pages.len() as u64;
        let entries = n * PAGE_ENTRY_LEN as u64;
        match self.device {
            Some(_) => Required {
                magic: DEVICE_MAGIC,
                count: 5,
                total: 556 + entries,
                section_lens: [256, 152, 16, 8, 8 + entries],
            },
            None => Required {
                magic: PAGES_MAGIC,
                count: n as u32,
                total: 36 + entries,
                section_lens: [0; 5],
            },
        }
    }

    /// The total length the header states.
    pub fn total(&self) -> u64 {
        self.framing.total.unwrap_or(self.required().total)
    }

    /// The header's total length passes `peek_record` but is not the
    /// record's: a stream receiver frames the stream differently from the
    /// records the models describe.
    pub fn reframes(&self, type_id: u32, vram_size: u64) -> bool {
        let total = self.framing.total.unwrap_or(self.required().total);
        total != self.required().total && self.header_errors(type_id, vram_size).is_empty()
    }

    /// The header checks of `peek_record` this record fails.
    fn header_errors(&self, type_id: u32, vram_size: u64) -> Vec<StateError> {
        let req = self.required();
        let f = &self.framing;
        let limit = u128::from(page_limit(vram_size));
        let mut e = Vec::new();
        let magic = f.magic.unwrap_or(req.magic);
        if magic != req.magic {
            e.push(StateError::BadMagic);
            if magic == DEVICE_MAGIC || magic == PAGES_MAGIC {
                // Read as the other kind: wrong count or length.
                e.extend([StateError::BadSection, StateError::BadLength]);
            }
        }
        match f.version {
            Some(v) if v > 1 => e.push(StateError::NewerVersion(v)),
            Some(0) => e.push(StateError::BadVersion),
            _ => {}
        }
        if self.type_id != type_id {
            e.push(StateError::WrongType);
        }
        if self.vram_size != vram_size {
            e.push(StateError::WrongVramSize);
        }
        let count = f.count.unwrap_or(req.count);
        let total = u128::from(f.total.unwrap_or(req.total));
        let entry = PAGE_ENTRY_LEN as u128;
        match self.device {
            Some(_) => {
                if count != 5 {
                    e.push(StateError::BadSection);
                }
                // A whole number of pages, at most every page of device
                // memory.
                if total < 556 || (total - 556) % entry != 0 || total > 556 + limit * entry {
                    e.push(StateError::BadLength);
                }
            }
            None => {
                let c = u128::from(count);
                if c > PAGES_CHUNK_MAX as u128 || c > limit || total != 36 + c * entry {
                    e.push(StateError::BadLength);
                }
            }
        }
        e
    }

    /// What a receiver of a device of geometry `(type_id, vram_size)` must
    /// make of this record (docs/migration.md §1.7 and §3.2).
    pub fn expect(&self, type_id: u32, vram_size: u64) -> Expect {
        let header = self.header_errors(type_id, vram_size);
        if !header.is_empty() {
            return Expect::BadHeader(header);
        }
        let req = self.required();
        let f = &self.framing;
        let limit = page_limit(vram_size);
        let mut bad = Vec::new();
        let total = f.total.unwrap_or(req.total);
        if total > req.total {
            bad.push(StateError::Truncated);
        } else if total < req.total {
            bad.push(StateError::BadLength);
        }
        if self.device.is_some() {
            for (k, (id, rsvd, len)) in f.sections.iter().enumerate() {
                if id.is_some_and(|id| id != k as u32 + 1) || rsvd.is_some_and(|r| r != 0) {
                    bad.push(StateError::BadSection);
                }
                if len.is_some_and(|l| l != req.section_lens[k]) {
                    bad.push(StateError::BadLength);
                }
            }
            if f.vram_count.is_some_and(|c| c != self.pages.len() as u64) {
                bad.push(StateError::BadLength);
            }
        }
        let indices_ok = self.pages.iter().all(|(i, _)| *i < limit)
            && self.pages.windows(2).all(|w| w[0].0 < w[1].0);
        if !indices_ok {
            bad.push(StateError::BadPageIndex);
        }
        if let Some(d) = &self.device {
            bad.extend(d.violations(type_id, vram_size));
        }
        if !bad.is_empty() {
            return Expect::BadRecord(bad);
        }
        Expect::Ok {
            kind: self.kind(),
            state: self.device.as_ref().map(|d| d.state(type_id, vram_size)),
            pages: self.pages.clone(),
        }
    }
}

/// The model of a whole stream after it ended (RESUMING left): what the
/// driver's ResumeStream must produce.
#[derive(Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a test value, compared whole
pub enum StreamOutcome {
    /// Complete and valid: the device record's state and device memory
    /// (zero pages left out).
    Ok { state: DeviceState, vram: Vram },
    /// A write failed once the stream reached byte `at` (the end of the
    /// header or record that failed, or the end of the device record when
    /// bytes follow it).
    Refused { at: usize },
    /// Every write succeeded but the stream is incomplete: no device
    /// record, or a partial record at the end.
    Incomplete,
}

/// Pages as their indices and the CRC of their data.
impl std::fmt::Debug for StreamOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamOutcome::Ok { state, vram } => {
                let pages: Vec<_> = vram.iter().map(|(i, p)| (*i, crc32(&p[..]))).collect();
                write!(f, "Ok {{ state: {state:?}, vram (index, crc): {pages:?} }}")
            }
            StreamOutcome::Refused { at } => write!(f, "Refused {{ at: {at} }}"),
            StreamOutcome::Incomplete => write!(f, "Incomplete"),
        }
    }
}

/// Drops zero pages: a page written with zeros and a page never written
/// are the same device memory.
pub fn normalise(vram: &mut Vram) {
    vram.retain(|_, p| p.iter().any(|&b| b != 0));
}

/// The outcome of the records `recs`, back to back and cut after `limit`
/// bytes, for a device of the given geometry, by docs/migration.md §3.2.
pub fn expect_stream(
    recs: &[RawRecord],
    type_id: u32,
    vram_size: u64,
    limit: usize,
) -> StreamOutcome {
    let mut at = 0usize;
    let mut vram = Vram::new();
    let mut device = None;
    for r in recs {
        if at >= limit {
            break;
        }
        if device.is_some() {
            // Nothing may follow the device record.
            return StreamOutcome::Refused { at };
        }
        let len = r.required().total as usize;
        // Where the receiver knows: the end of the header, of the record.
        let known = match r.expect(type_id, vram_size) {
            Expect::BadHeader(_) => at + 32,
            _ => at + len,
        };
        if known > limit {
            // A partial record: refused only once complete.
            return StreamOutcome::Incomplete;
        }
        match r.expect(type_id, vram_size) {
            Expect::BadHeader(_) | Expect::BadRecord(_) => {
                return StreamOutcome::Refused { at: known }
            }
            Expect::Ok { state, pages, .. } => {
                for (i, p) in pages {
                    vram.insert(i, p);
                }
                device = state;
            }
        }
        at += len;
    }
    match device {
        Some(state) => {
            normalise(&mut vram);
            StreamOutcome::Ok { state, vram }
        }
        None => StreamOutcome::Incomplete,
    }
}

// ---------------------------------------------------------------------------
// Re-encoding with the code under test

/// `state::encode` of a state and pages.
pub fn encode_device(s: &DeviceState, pages: &[(u64, Page)]) -> Vec<u8> {
    let mut out = vec![0u8; state::encoded_len(pages.len())];
    state::encode(
        s,
        pages.len(),
        pages.iter().map(|(i, p)| (*i, &**p)),
        &mut out,
    )
    .expect("encode of a decoded record");
    out
}

/// `state::encode_pages_chunk` of pages.
pub fn encode_chunk(type_id: u32, vram_size: u64, pages: &[(u64, Page)]) -> Vec<u8> {
    let mut out = vec![0u8; state::pages_chunk_len(pages.len())];
    let it = pages.iter().map(|(i, p)| (*i, &**p));
    state::encode_pages_chunk(type_id, vram_size, pages.len(), it, &mut out)
        .expect("encode of a decoded pages record");
    out
}

/// Copies a decoder's page iterator.
pub fn collect_pages<'a>(it: impl Iterator<Item = (u64, &'a [u8; PAGE])>) -> Vec<(u64, Page)> {
    it.map(|(i, p)| (i, Box::new(*p))).collect()
}

// ---------------------------------------------------------------------------
// Specifications: the generated values (small, shrinkable, printable) from
// which models are built.

/// A page: its content is a pseudo-random fill from `seed` (zero for seed
/// 0) with a few bytes poked in.
#[derive(Debug, Clone)]
pub struct PageSpec {
    pub index: IndexSpec,
    pub seed: u64,
    pub pokes: Vec<(u16, u8)>,
}

/// A page index relative to the device's page count, so that indices land
/// in range (and at its edges) for every geometry.
#[derive(Debug, Clone, Copy)]
pub enum IndexSpec {
    /// `n % limit`.
    Mod(u64),
    /// `limit - 1 - k`, saturating.
    FromEnd(u8),
}

impl IndexSpec {
    fn resolve(self, limit: u64) -> Option<u64> {
        if limit == 0 {
            return None;
        }
        Some(match self {
            IndexSpec::Mod(n) => n % limit,
            IndexSpec::FromEnd(k) => (limit - 1).saturating_sub(u64::from(k)),
        })
    }
}

/// Fills a page from `seed` (xorshift64*), zero for seed 0.
pub fn page_bytes(seed: u64, pokes: &[(u16, u8)]) -> Page {
    let mut p: Page = Box::new([0u8; PAGE]);
    if seed != 0 {
        let mut x = seed;
        for w in p.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            w.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
    }
    for &(at, v) in pokes {
        p[usize::from(at) % PAGE] = v;
    }
    p
}

/// Builds valid pages (sorted, distinct, in range) from specs.
pub fn build_pages(specs: &[PageSpec], vram_size: u64) -> Vec<(u64, Page)> {
    let limit = page_limit(vram_size);
    let mut m = BTreeMap::new();
    for s in specs {
        if let Some(i) = s.index.resolve(limit) {
            m.insert(i, page_bytes(s.seed, &s.pokes));
        }
    }
    m.into_iter().collect()
}

/// A device state, valid by construction.
#[derive(Debug, Clone)]
pub struct StateSpec {
    /// Guest config writes: offset, value, width 1..=4.
    pub cfg_writes: Vec<(u8, u32, u8)>,
    pub intx_pending: bool,
    /// Raw register values, cut down to what each register can hold: from
    /// a seed (all zero for seed 0), with some set explicitly.
    pub reg_seed: u64,
    pub reg_sets: Vec<(u8, u64)>,
    pub enable: bool,
    pub ring_base: u64,
    pub ring_size: u64,
    /// Index into `ErrorCode::ALL`, or none.
    pub error: Option<usize>,
    pub busy: bool,
    pub errors: u64,
    pub intx_masked: bool,
}

impl StateSpec {
    /// The payload of a device in this state.
    pub fn build(&self, type_id: u32, vram_size: u64) -> RawDevice {
        let mut cfg = fresh_config(type_id, vram_size);
        for &(off, val, width) in &self.cfg_writes {
            let w = usize::from(width.clamp(1, 4));
            // Refused accesses (past the end) change nothing.
            let _ = cfg.write(u64::from(off), &val.to_le_bytes()[..w]);
        }
        cfg.set_intx_pending(self.intx_pending);
        let error = self.error.map(|k| ErrorCode::ALL[k % ErrorCode::ALL.len()]);
        let mut regs = [0u64; 19];
        for (k, r) in DOC_REGS.iter().enumerate() {
            let raw = self
                .reg_sets
                .iter()
                .rev()
                .find(|(j, _)| usize::from(*j) % 19 == k)
                .map_or_else(|| seeded_u64(self.reg_seed, k as u64), |(_, v)| *v);
            let v = match r.kind {
                DocKind::Ro => match r.name {
                    "ID" | "VERSION" => r.reset,
                    _ => raw,
                },
                DocKind::Rw | DocKind::W1c => (r.reset & !r.writable) | (raw & r.writable),
            };
            regs[k] = if r.size == 4 { v & 0xffff_ffff } else { v };
        }
        regs[K_CTRL] = u64::from(self.enable);
        regs[K_RING_BASE] = self.ring_base & !0x1f;
        regs[K_RING_SIZE] = self.ring_size & 0xffff_ffff;
        let mut status = u64::from(self.busy);
        if let Some(e) = error {
            status |= 2 | u64::from(e.code()) << 8;
        }
        regs[K_STATUS] = status;
        let ring_valid = self.enable && ring_ok(regs[K_RING_BASE], regs[K_RING_SIZE]);
        RawDevice {
            config: *cfg.image(),
            regs,
            ring_valid: u8::from(ring_valid),
            error: error.map_or(0, |e| e.code()),
            engine_rsvd: [0; 6],
            errors: self.errors,
            intx: u8::from(self.intx_masked),
            irq_rsvd: [0; 7],
        }
    }
}

/// A change to one field of a record model (a "semantic" mutation: the
/// bytes change at that field's offset and the CRC is made right again).
#[derive(Debug, Clone)]
pub enum Edit {
    Config {
        off: u8,
        val: u8,
    },
    ConfigBit {
        off: u8,
        bit: u8,
    },
    Reg {
        k: u8,
        val: u64,
    },
    RegBit {
        k: u8,
        bit: u8,
    },
    RingValid(u8),
    Error(u8),
    EngineRsvd {
        i: u8,
        val: u8,
    },
    Errors(u64),
    Intx(u8),
    IrqRsvd {
        i: u8,
        val: u8,
    },
    PageByte {
        k: u8,
        pos: u16,
        val: u8,
    },
    PageIndex {
        k: u8,
        to: IndexEdit,
    },
    /// A page dropped.
    DropPage {
        k: u8,
    },
    /// A page entry repeated (same index twice; possibly more pages than
    /// device memory has).
    DupPage {
        k: u8,
    },
    /// A structural field (header, section header, page count).
    Frame {
        field: FrameField,
        val: FrameVal,
    },
}

/// The structural fields of a record.
#[derive(Debug, Clone, Copy)]
pub enum FrameField {
    Magic,
    Version,
    Count,
    Total,
    SectionId(u8),
    SectionRsvd(u8),
    SectionLen(u8),
    VramCount,
}

/// A new value for a structural field.
#[derive(Debug, Clone, Copy)]
pub enum FrameVal {
    /// The required value plus `d`.
    Delta(i8),
    /// The required value plus `k` page entries.
    Entries(i8),
    /// The other record kind's magic (for the magic; else `Delta(1)`).
    OtherMagic,
    Set(u64),
}

/// A new page index.
#[derive(Debug, Clone, Copy)]
pub enum IndexEdit {
    Set(u64),
    Add(i8),
    /// `limit + d`: at or around the device's page count.
    Limit(i8),
}

impl Edit {
    /// Applies the edit to `r` (a no-op where the field does not exist).
    pub fn apply(&self, r: &mut RawRecord) {
        let limit = page_limit(r.vram_size);
        let npages = r.pages.len();
        match (self, r.device.as_mut()) {
            (Edit::Config { off, val }, Some(d)) => d.config[usize::from(*off)] = *val,
            (Edit::ConfigBit { off, bit }, Some(d)) => {
                d.config[usize::from(*off)] ^= 1 << (bit % 8)
            }
            (Edit::Reg { k, val }, Some(d)) => d.regs[usize::from(*k) % 19] = *val,
            (Edit::RegBit { k, bit }, Some(d)) => d.regs[usize::from(*k) % 19] ^= 1 << (bit % 64),
            (Edit::RingValid(v), Some(d)) => d.ring_valid = *v,
            (Edit::Error(v), Some(d)) => d.error = *v,
            (Edit::EngineRsvd { i, val }, Some(d)) => d.engine_rsvd[usize::from(*i) % 6] = *val,
            (Edit::Errors(v), Some(d)) => d.errors = *v,
            (Edit::Intx(v), Some(d)) => d.intx = *v,
            (Edit::IrqRsvd { i, val }, Some(d)) => d.irq_rsvd[usize::from(*i) % 7] = *val,
            (Edit::PageByte { k, pos, val }, _) if npages > 0 => {
                r.pages[usize::from(*k) % npages].1[usize::from(*pos) % PAGE] = *val;
            }
            (Edit::PageIndex { k, to }, _) if npages > 0 => {
                let e = &mut r.pages[usize::from(*k) % npages].0;
                *e = match *to {
                    IndexEdit::Set(v) => v,
                    IndexEdit::Add(d) => e.wrapping_add_signed(i64::from(d)),
                    IndexEdit::Limit(d) => limit.wrapping_add_signed(i64::from(d)),
                };
            }
            (Edit::DropPage { k }, _) if npages > 0 => {
                r.pages.remove(usize::from(*k) % npages);
            }
            (Edit::Frame { field, val }, _) => r.frame(*field, *val),
            (Edit::DupPage { k }, _) if npages > 0 => {
                let k = usize::from(*k) % npages;
                let page = r.pages[k].clone();
                r.pages.insert(k, page);
            }
            _ => {}
        }
    }
}

/// A byte-level mutation, with no knowledge of the fields (the CRC is made
/// right again only by [`Raw::Reseal`]).
#[derive(Debug, Clone)]
pub enum Raw {
    Flip {
        pos: Pos,
        bit: u8,
    },
    Set {
        pos: Pos,
        val: u8,
    },
    /// Writes the little-endian bytes of `val`, `width` (1..=8) of them.
    SetInt {
        pos: Pos,
        val: u64,
        width: u8,
    },
    Truncate {
        keep: Pos,
    },
    Insert {
        pos: Pos,
        bytes: Vec<u8>,
    },
    Remove {
        pos: Pos,
        n: u16,
    },
    /// Recomputes the CRC of the bytes that end at the end of the record
    /// the mutations apply to.
    Reseal,
}

/// A position in the mutated bytes: anywhere, or one of the field offsets
/// of the format (header fields, section headers, payload fields, page
/// entries, trailer), where changes matter most.
#[derive(Debug, Clone, Copy)]
pub enum Pos {
    Any(u32),
    Field(u8),
    /// The last bytes: the trailer and what precedes it.
    FromEnd(u8),
}

/// Field offsets of docs/migration.md §1 (device record; the first ones
/// are the header's, shared with the pages record).
const FIELDS: &[usize] = &[
    0, 4, 8, 12, 16, 24, // header
    32, 36, 40, 48, 52, 54, 58, 62, // CONFIG section header and payload
    304, 308, 312, 320, 328, 336, 340, 344, 352, 360, 368, // REGS
    472, 476, 480, 488, 489, 490, 496, // ENGINE
    504, 508, 512, 520, 521, // IRQ
    528, 532, 536, 544, 552, 560, // VRAM section, count, first entry
    4656, 4664, // second entry
    // Pages record: first and second entry.
    32, 40, 4136, 4144,
];

impl Pos {
    /// The offset in a buffer of `len` bytes (`len` itself allowed when
    /// `end`, for insertions and truncations).
    fn at(self, len: usize, end: bool) -> usize {
        let span = len + usize::from(end);
        if span == 0 {
            return 0;
        }
        match self {
            Pos::Any(n) => n as usize % span,
            Pos::Field(k) => FIELDS[usize::from(k) % FIELDS.len()] % span,
            Pos::FromEnd(k) => span - 1 - usize::from(k) % span,
        }
    }
}

impl Raw {
    pub fn apply(&self, b: &mut Vec<u8>) {
        let len = b.len();
        match self {
            Raw::Flip { pos, bit } if len > 0 => b[pos.at(len, false)] ^= 1 << (bit % 8),
            Raw::Set { pos, val } if len > 0 => b[pos.at(len, false)] = *val,
            Raw::SetInt { pos, val, width } if len > 0 => {
                let at = pos.at(len, false);
                let w = usize::from((*width).clamp(1, 8)).min(len - at);
                b[at..at + w].copy_from_slice(&val.to_le_bytes()[..w]);
            }
            Raw::Truncate { keep } => b.truncate(keep.at(len, true)),
            Raw::Insert { pos, bytes } => {
                let at = pos.at(len, true);
                b.splice(at..at, bytes.iter().copied());
            }
            Raw::Remove { pos, n } if len > 0 => {
                let at = pos.at(len, false);
                let end = (at + usize::from(*n).max(1)).min(len);
                b.drain(at..end);
            }
            Raw::Reseal if len >= 4 => {
                let c = crc32(&b[..len - 4]);
                b[len - 4..].copy_from_slice(&c.to_le_bytes());
            }
            _ => {}
        }
    }
}

/// One record of a generated stream.
#[derive(Debug, Clone)]
pub struct RecordSpec {
    /// The state of a device record; none for a pages record.
    pub state: Option<StateSpec>,
    /// Encoded for another geometry (an index into [`GEOMETRIES`]).
    pub foreign: Option<u8>,
    pub pages: Vec<PageSpec>,
    pub edits: Vec<Edit>,
    pub raw: Vec<Raw>,
}

impl RecordSpec {
    /// The record model, with the edits applied.
    pub fn model(&self, geo: (u32, u64)) -> RawRecord {
        let (type_id, vram_size) = match self.foreign {
            Some(g) => GEOMETRIES[usize::from(g) % GEOMETRIES.len()],
            None => geo,
        };
        let mut r = RawRecord {
            type_id,
            vram_size,
            device: self.state.as_ref().map(|s| s.build(type_id, vram_size)),
            pages: build_pages(&self.pages, vram_size),
            framing: Framing::default(),
        };
        for e in &self.edits {
            e.apply(&mut r);
        }
        r
    }
}

/// A whole stream: records, then byte-level mutations of the whole, fed to
/// the receiver in writes of the given sizes.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub geo: u8,
    pub records: Vec<RecordSpec>,
    pub raw: Vec<Raw>,
    /// The stream cut short (a position, modulo its length plus one).
    pub cut: Option<u32>,
    pub writes: Vec<u16>,
}

/// A generated stream, built.
pub struct Built {
    pub geo: (u32, u64),
    /// Each record's model and bytes, and whether no byte-level mutation
    /// changed those bytes (the model then says exactly what they are).
    pub records: Vec<(RawRecord, Vec<u8>, bool)>,
    /// The stream: the records back to back, then mutated as a whole.
    pub bytes: Vec<u8>,
    /// Every record is exact and no mutation of the whole changed it
    /// (but for the cut).
    pub exact: bool,
    /// The length before the cut.
    pub limit: usize,
}

impl Built {
    pub fn models(&self) -> Vec<RawRecord> {
        self.records.iter().map(|(m, _, _)| m.clone()).collect()
    }
}

impl StreamSpec {
    pub fn geometry(&self) -> (u32, u64) {
        GEOMETRIES[usize::from(self.geo) % GEOMETRIES.len()]
    }

    pub fn build(&self) -> Built {
        let geo = self.geometry();
        let mut records = Vec::new();
        let mut bytes = Vec::new();
        let mut exact = true;
        for r in &self.records {
            let m = r.model(geo);
            // A total length that passes peek_record but is not the
            // record's: the receiver frames the rest differently.
            exact &= !m.reframes(geo.0, geo.1);
            let orig = m.encode();
            let mut b = orig.clone();
            for op in &r.raw {
                op.apply(&mut b);
            }
            let same = b == orig;
            exact &= same;
            bytes.extend_from_slice(&b);
            records.push((m, b, same));
        }
        let orig = bytes.clone();
        for op in &self.raw {
            op.apply(&mut bytes);
        }
        exact &= bytes == orig;
        let limit = match self.cut {
            Some(c) => c as usize % (bytes.len() + 1),
            None => bytes.len(),
        };
        bytes.truncate(limit);
        Built {
            geo,
            records,
            bytes,
            exact,
            limit,
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies

/// u64 values where the edge cases are: small, powers of two and their
/// neighbours, the top of the range, anything.
pub fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => 0..=64u64,
        2 => (0..64u32, -2i64..=2).prop_map(|(s, d)| (1u64 << s).wrapping_add_signed(d)),
        1 => (0..=64u64).prop_map(|d| u64::MAX - d),
        1 => any::<u32>().prop_map(u64::from),
    ]
}

fn page_spec() -> impl Strategy<Value = PageSpec> {
    let index = prop_oneof![
        3 => any::<u64>().prop_map(IndexSpec::Mod),
        1 => (0..4u8).prop_map(IndexSpec::FromEnd),
    ];
    let seed = prop_oneof![1 => Just(0u64), 3 => any::<u64>()];
    (index, seed, prop::collection::vec(any::<(u16, u8)>(), 0..3))
        .prop_map(|(index, seed, pokes)| PageSpec { index, seed, pokes })
}

/// Page lists, mostly short: a page costs 4 KiB of CRC per pass.
pub fn pages_spec() -> impl Strategy<Value = Vec<PageSpec>> {
    prop_oneof![
        4 => Just(Vec::new()),
        4 => prop::collection::vec(page_spec(), 1..=2),
        1 => prop::collection::vec(page_spec(), 3..=4),
    ]
}

/// The `k`th value of the sequence of `seed` (0 for seed 0), shaped like
/// [`interesting_u64`]'s values: cheaper to generate than one strategy per
/// value.
pub fn seeded_u64(seed: u64, k: u64) -> u64 {
    if seed == 0 {
        return 0;
    }
    let x = mix(seed ^ mix(k));
    let y = mix(x);
    match x % 8 {
        0..=2 => y,
        3 | 4 => y % 65,
        5 => (1u64 << (y % 64))
            .wrapping_add((y >> 8) % 5)
            .wrapping_sub(2),
        6 => u64::MAX - y % 65,
        _ => y & 0xffff_ffff,
    }
}

/// splitmix64.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn state_spec() -> impl Strategy<Value = StateSpec> {
    let ring_base = prop_oneof![
        2 => any::<u64>(),
        1 => Just(0u64),
        1 => (0..=4096u64).prop_map(|n| (u64::MAX - n * 32).wrapping_add(1)),
        1 => (0..0x1_0000u64).prop_map(|n| n * 32),
    ];
    let ring_size = prop_oneof![
        3 => (0..=12u32).prop_map(|s| 1u64 << s),
        1 => 0..=5000u64,
        1 => any::<u32>().prop_map(u64::from),
        1 => Just(1u64 << 31),
    ];
    let cfg_writes = prop::collection::vec((any::<u8>(), any::<u32>(), 1..=4u8), 0..4).boxed();
    (
        (cfg_writes, any::<bool>()),
        (
            any::<u64>(),
            prop::collection::vec((0..19u8, interesting_u64()), 0..3),
        ),
        (any::<bool>(), ring_base, ring_size),
        (
            prop::option::of(0..12usize),
            any::<bool>(),
            interesting_u64(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (cfg_writes, intx_pending),
                (reg_seed, reg_sets),
                (enable, ring_base, ring_size),
                (error, busy, errors, intx_masked),
            )| StateSpec {
                cfg_writes,
                intx_pending,
                reg_seed,
                reg_sets,
                enable,
                ring_base,
                ring_size,
                error,
                busy,
                errors,
                intx_masked,
            },
        )
}

fn index_edit() -> impl Strategy<Value = IndexEdit> {
    prop_oneof![
        1 => interesting_u64().prop_map(IndexEdit::Set),
        2 => any::<i8>().prop_map(IndexEdit::Add),
        1 => (-2i8..=1).prop_map(IndexEdit::Limit),
    ]
}

fn frame_field() -> impl Strategy<Value = FrameField> {
    prop_oneof![
        1 => Just(FrameField::Magic),
        1 => Just(FrameField::Version),
        1 => Just(FrameField::Count),
        3 => Just(FrameField::Total),
        1 => (0..5u8).prop_map(FrameField::SectionId),
        1 => (0..5u8).prop_map(FrameField::SectionRsvd),
        2 => (0..5u8).prop_map(FrameField::SectionLen),
        1 => Just(FrameField::VramCount),
    ]
}

fn frame_val() -> impl Strategy<Value = FrameVal> {
    prop_oneof![
        3 => (-3i8..=3).prop_map(FrameVal::Delta),
        2 => (-3i8..=3).prop_map(FrameVal::Entries),
        1 => Just(FrameVal::OtherMagic),
        1 => interesting_u64().prop_map(FrameVal::Set),
    ]
}

pub fn edit() -> impl Strategy<Value = Edit> {
    let small = prop_oneof![3 => 0..=2u8, 1 => any::<u8>()];
    prop_oneof![
        3 => (any::<u8>(), any::<u8>()).prop_map(|(off, val)| Edit::Config { off, val }),
        2 => (any::<u8>(), 0..8u8).prop_map(|(off, bit)| Edit::ConfigBit { off, bit }),
        3 => (0..19u8, interesting_u64()).prop_map(|(k, val)| Edit::Reg { k, val }),
        3 => (0..19u8, 0..64u8).prop_map(|(k, bit)| Edit::RegBit { k, bit }),
        1 => small.clone().prop_map(Edit::RingValid),
        1 => prop_oneof![0..=13u8, any::<u8>()].prop_map(Edit::Error),
        1 => (0..6u8, small.clone()).prop_map(|(i, val)| Edit::EngineRsvd { i, val }),
        1 => interesting_u64().prop_map(Edit::Errors),
        1 => small.clone().prop_map(Edit::Intx),
        1 => (0..7u8, small).prop_map(|(i, val)| Edit::IrqRsvd { i, val }),
        3 => (any::<u8>(), any::<u16>(), any::<u8>())
            .prop_map(|(k, pos, val)| Edit::PageByte { k, pos, val }),
        2 => (any::<u8>(), index_edit()).prop_map(|(k, to)| Edit::PageIndex { k, to }),
        1 => any::<u8>().prop_map(|k| Edit::DropPage { k }),
        1 => any::<u8>().prop_map(|k| Edit::DupPage { k }),
        4 => (frame_field(), frame_val()).prop_map(|(field, val)| Edit::Frame { field, val }),
    ]
}

pub fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        2 => any::<u32>().prop_map(Pos::Any),
        2 => any::<u8>().prop_map(Pos::Field),
        1 => (0..8u8).prop_map(Pos::FromEnd),
    ]
}

pub fn raw_op() -> impl Strategy<Value = Raw> {
    prop_oneof![
        3 => (pos(), 0..8u8).prop_map(|(pos, bit)| Raw::Flip { pos, bit }),
        2 => (pos(), any::<u8>()).prop_map(|(pos, val)| Raw::Set { pos, val }),
        2 => (pos(), interesting_u64(), prop_oneof![Just(4u8), Just(8u8), 1..=8u8])
            .prop_map(|(pos, val, width)| Raw::SetInt { pos, val, width }),
        1 => pos().prop_map(|keep| Raw::Truncate { keep }),
        1 => (pos(), prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(pos, bytes)| Raw::Insert { pos, bytes }),
        1 => (pos(), prop_oneof![1..=8u16, any::<u16>()])
            .prop_map(|(pos, n)| Raw::Remove { pos, n }),
        2 => Just(Raw::Reseal),
    ]
}

/// Byte-level mutations: none most of the time, so that the models stay
/// exact in most cases.
pub fn raw_ops() -> impl Strategy<Value = Vec<Raw>> {
    prop_oneof![
        4 => Just(Vec::new()),
        2 => prop::collection::vec(raw_op(), 1..=4),
    ]
}

pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop_oneof![
        2 => Just(Vec::new()),
        3 => prop::collection::vec(edit(), 1..=3),
    ]
}

/// A record of the stream's geometry, or (rarely) of another: a device
/// record or a pages record, in the ratio of the weights (a weight may be
/// 0).
pub fn record_spec(device: u32, pages: u32) -> BoxedStrategy<RecordSpec> {
    let rest = || {
        let foreign = prop_oneof![12 => Just(None), 1 => any::<u8>().prop_map(Some)];
        (foreign, pages_spec(), edits(), raw_ops())
    };
    let dev = (state_spec(), rest()).prop_map(|(state, (foreign, pages, edits, raw))| RecordSpec {
        state: Some(state),
        foreign,
        pages,
        edits,
        raw,
    });
    let pg = rest().prop_map(|(foreign, pages, edits, raw)| RecordSpec {
        state: None,
        foreign,
        pages,
        edits,
        raw,
    });
    match (device, pages) {
        (_, 0) => dev.boxed(),
        (0, _) => pg.boxed(),
        (d, p) => prop_oneof![d => dev, p => pg].boxed(),
    }
}

/// Streams of one to four records: pages records, then a device record,
/// with the rules broken now and then (a device record in the middle, none
/// at the end), field edits, byte mutations of records and of the whole.
pub fn stream_spec() -> impl Strategy<Value = StreamSpec> {
    let middle = prop::collection::vec(record_spec(1, 9), 0..=3);
    let last = record_spec(9, 1);
    let writes = prop_oneof![
        2 => Just(vec![u16::MAX]),
        1 => prop::collection::vec(1..=64u16, 1..8),
        1 => prop::collection::vec(any::<u16>(), 1..8),
    ];
    let raw = prop_oneof![4 => Just(Vec::new()), 1 => prop::collection::vec(raw_op(), 1..=3)];
    let cut = prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(Some)];
    (0..GEOMETRIES.len() as u8, middle, last, raw, cut, writes).prop_map(
        |(geo, mut records, last, raw, cut, writes)| {
            records.push(last);
            StreamSpec {
                geo,
                records,
                raw,
                cut,
                writes,
            }
        },
    )
}

// ---------------------------------------------------------------------------
// Cross-checks with the code under test

/// `DOC_REGS` agrees with the module's own table on what the state format
/// needs (register order), checked once by a test.
pub fn doc_regs_match_the_module() {
    for (d, r) in DOC_REGS.iter().zip(REGS.iter()) {
        assert_eq!(d.name, r.name);
        assert_eq!(d.offset, u64::from(r.offset), "{}", d.name);
    }
    assert_eq!(REGS[K_CTRL].reg, Reg::Ctrl);
    assert_eq!(REGS[K_STATUS].reg, Reg::Status);
    assert_eq!(REGS[K_RING_BASE].reg, Reg::RingBase);
    assert_eq!(REGS[K_RING_SIZE].reg, Reg::RingSize);
}
