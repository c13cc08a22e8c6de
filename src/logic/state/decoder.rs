// SPDX-License-Identifier: GPL-2.0

//! Decoding: a record header ([`announced_len`], [`peek_record`]), the
//! device record ([`decode`]) and the pages record
//! ([`decode_pages_chunk`]), each validated whole before anything is
//! returned.

use super::super::regs::RegInfo;
use super::{
    crc32, pages_chunk_len, regs_len, validate, vram_pages, DeviceState, Layout, StateError,
    CONFIG_LEN, DEVICE_MAGIC, ENGINE_LEN, HEADER_LEN, IRQ_LEN, LAYOUT, PAGE, PAGES_CHUNK_MAX,
    PAGES_MAGIC, PAGE_ENTRY_LEN, SECTIONS, SECTION_CONFIG, SECTION_ENGINE, SECTION_IRQ,
    SECTION_REGS, SECTION_VRAM, TRAILER_LEN,
};

/// Reads consecutive bytes of a slice; running out is
/// [`StateError::BadLength`] (the header's total length was already
/// checked against the input, so this is a structural error).
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if n > self.buf.len() {
            return Err(StateError::BadLength);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(StateError::BadLength)?;
        self.buf = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        self.array().map(u64::from_le_bytes)
    }

    /// The payload of the next section, which must have id `id` and a
    /// zero reserved field.
    fn section(&mut self, id: u32) -> Result<&'a [u8], StateError> {
        if self.u32()? != id || self.u32()? != 0 {
            return Err(StateError::BadSection);
        }
        let len = usize::try_from(self.u64()?).map_err(|_| StateError::BadLength)?;
        self.take(len)
    }

    /// The payload of the next section, which must be exactly `N` bytes.
    fn fixed_section<const N: usize>(&mut self, id: u32) -> Result<&'a [u8; N], StateError> {
        self.section(id)?
            .try_into()
            .map_err(|_| StateError::BadLength)
    }
}

/// The header fields of a record.
#[derive(Debug, Clone, Copy)]
struct RawHeader {
    magic: u32,
    version: u32,
    type_id: u32,
    count: u32,
    vram_size: u64,
    total: u64,
}

fn parse_header(input: &[u8]) -> Result<RawHeader, StateError> {
    let h = input
        .first_chunk::<HEADER_LEN>()
        .ok_or(StateError::Truncated)?;
    let mut r = Reader { buf: h };
    Ok(RawHeader {
        magic: r.u32()?,
        version: r.u32()?,
        type_id: r.u32()?,
        count: r.u32()?,
        vram_size: r.u64()?,
        total: r.u64()?,
    })
}

/// The total length a record's header announces, if `input` starts with
/// a whole header (nothing else is checked: a hint for sizing a buffer,
/// which the caller must bound; [`decode`] checks the record).
pub fn announced_len(input: &[u8]) -> Option<usize> {
    parse_header(input)
        .ok()
        .and_then(|h| usize::try_from(h.total).ok())
}

/// What a record header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A device record ([`decode`]).
    Device,
    /// A pages record ([`decode_pages_chunk`]).
    Pages,
}

/// A record's kind and total length, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Which kind of record.
    pub kind: RecordKind,
    /// Its total length in bytes, header and trailer included.
    pub len: usize,
}

/// Checks the header at the start of `input` (at least [`HEADER_LEN`]
/// bytes, else [`StateError::Truncated`]) for a device of `type_id` with
/// `vram_size` bytes of device memory, and returns the record's kind and
/// length, bounded by the largest device record of the header's version
/// ([`max_encoded_len`](super::max_encoded_len) for this build's) or
/// [`pages_chunk_len`]`(`[`PAGES_CHUNK_MAX`]`)` (pages records). For
/// stream receivers: a record is complete once `len` bytes have arrived;
/// the whole record is validated by [`decode`] or [`decode_pages_chunk`].
pub fn peek_record(input: &[u8], type_id: u32, vram_size: u64) -> Result<RecordInfo, StateError> {
    peek_record_in(&LAYOUT, input, type_id, vram_size)
}

/// [`peek_record`] for the records of `layout`.
pub(super) fn peek_record_in(
    layout: &Layout<'_>,
    input: &[u8],
    type_id: u32,
    vram_size: u64,
) -> Result<RecordInfo, StateError> {
    let h = parse_header(input)?;
    let kind = match h.magic {
        DEVICE_MAGIC => RecordKind::Device,
        PAGES_MAGIC => RecordKind::Pages,
        _ => return Err(StateError::BadMagic),
    };
    check_common(layout, &h, type_id, vram_size)?;
    let len = usize::try_from(h.total).map_err(|_| StateError::BadLength)?;
    match kind {
        RecordKind::Device => {
            if h.count != SECTIONS.len() as u32 {
                return Err(StateError::BadSection);
            }
            // The version was checked: both are `Some`.
            let fixed = layout.fixed_len(h.version);
            let max = layout.max_len(h.version, vram_size);
            let pages_part = fixed.and_then(|f| len.checked_sub(f));
            if !matches!(pages_part, Some(p) if p.is_multiple_of(PAGE_ENTRY_LEN))
                || !matches!(max, Some(m) if len <= m)
            {
                return Err(StateError::BadLength);
            }
        }
        RecordKind::Pages => {
            chunk_count(&h, vram_size)?;
            if len != pages_chunk_len(h.count as usize) {
                return Err(StateError::BadLength);
            }
        }
    }
    Ok(RecordInfo { kind, len })
}

/// Version, type and device-memory size of a header.
fn check_common(
    layout: &Layout<'_>,
    h: &RawHeader,
    type_id: u32,
    vram_size: u64,
) -> Result<(), StateError> {
    layout.check_version(h.version)?;
    if h.type_id != type_id {
        return Err(StateError::WrongType);
    }
    if h.vram_size != vram_size {
        return Err(StateError::WrongVramSize);
    }
    Ok(())
}

/// A pages record's page count, in range.
fn chunk_count(h: &RawHeader, vram_size: u64) -> Result<usize, StateError> {
    let n = h.count as usize;
    if n > PAGES_CHUNK_MAX || u64::from(h.count) > vram_pages(vram_size) {
        return Err(StateError::BadLength);
    }
    Ok(n)
}

/// Checks the header of `blob` (magic `magic`, version, type, size) and
/// that its total length is exactly `blob`'s; returns the header and the
/// body between header and trailer.
fn check_header<'b>(
    layout: &Layout<'_>,
    blob: &'b [u8],
    magic: u32,
    type_id: u32,
    vram_size: u64,
) -> Result<(RawHeader, &'b [u8]), StateError> {
    let h = parse_header(blob)?;
    if h.magic != magic {
        return Err(StateError::BadMagic);
    }
    check_common(layout, &h, type_id, vram_size)?;
    let total = usize::try_from(h.total).map_err(|_| StateError::Truncated)?;
    if total > blob.len() {
        return Err(StateError::Truncated);
    }
    if total < blob.len() {
        return Err(StateError::BadLength);
    }
    let body = total
        .checked_sub(TRAILER_LEN)
        .and_then(|end| blob.get(HEADER_LEN..end))
        .ok_or(StateError::BadLength)?;
    Ok((h, body))
}

/// Checks the CRC trailer of `blob` (whose length was checked to be at
/// least header + trailer).
fn check_crc(blob: &[u8]) -> Result<(), StateError> {
    let (data, trailer) = blob
        .split_last_chunk::<TRAILER_LEN>()
        .ok_or(StateError::Truncated)?;
    if crc32(data) != u32::from_le_bytes(*trailer) {
        return Err(StateError::BadChecksum);
    }
    Ok(())
}

/// Checks that `entries` is a whole number of page entries whose indices
/// increase strictly and stay below the device memory's page count;
/// returns the count.
fn check_pages(entries: &[u8], vram_size: u64) -> Result<usize, StateError> {
    if !entries.len().is_multiple_of(PAGE_ENTRY_LEN) {
        return Err(StateError::BadLength);
    }
    let limit = vram_pages(vram_size);
    let mut prev: Option<u64> = None;
    for e in entries.chunks_exact(PAGE_ENTRY_LEN) {
        let index = e
            .first_chunk::<8>()
            .map(|b| u64::from_le_bytes(*b))
            .ok_or(StateError::BadLength)?;
        if index >= limit || prev.is_some_and(|p| index <= p) {
            return Err(StateError::BadPageIndex);
        }
        prev = Some(index);
    }
    Ok(entries.len() / PAGE_ENTRY_LEN)
}

/// The register values of the REGS payload `payload` of a record of
/// format `version`, for the register table `regs`: the registers with
/// [`RegInfo::since`] at most `version` are in `payload`, one
/// little-endian `u64` each in table order, and the others take their
/// [`RegInfo::reset`]. A payload of any other length is
/// [`StateError::BadLength`]. The values are not validated.
pub(super) fn read_regs<const N: usize>(
    regs: &[RegInfo; N],
    version: u32,
    payload: &[u8],
) -> Result<[u64; N], StateError> {
    if regs_len(regs, version) != Some(payload.len()) {
        return Err(StateError::BadLength);
    }
    let mut values = [0u64; N];
    let mut r = Reader { buf: payload };
    for (v, info) in values.iter_mut().zip(regs.iter()) {
        *v = if info.since <= version {
            r.u64()?
        } else {
            info.reset
        };
    }
    Ok(values)
}

/// The pages of validated page entries.
fn iter_pages(entries: &[u8]) -> impl Iterator<Item = (u64, &[u8; PAGE])> + '_ {
    entries.chunks_exact(PAGE_ENTRY_LEN).filter_map(|e| {
        let (index, rest) = e.split_first_chunk::<8>()?;
        Some((u64::from_le_bytes(*index), rest.first_chunk::<PAGE>()?))
    })
}

/// A validated device record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Everything but device memory, validated.
    pub state: DeviceState,
    /// The VRAM section's page entries, validated.
    entries: &'a [u8],
}

impl<'a> Decoded<'a> {
    /// The record's device-memory pages, `(page index, bytes)`, in strictly
    /// increasing index order. Pages not listed are zero (when the record
    /// stands alone) or keep the content an earlier record of the same v2
    /// stream gave them: the applier writes these and zeroes the rest (or
    /// had zeroed device memory before the stream began).
    pub fn pages(&self) -> impl Iterator<Item = (u64, &'a [u8; PAGE])> + 'a {
        iter_pages(self.entries)
    }

    /// Number of pages in the record.
    // Host API, for the property tests in fuzz/; the driver does not need it.
    #[allow(dead_code)]
    pub fn npages(&self) -> usize {
        self.entries.len() / PAGE_ENTRY_LEN
    }
}

/// Decodes and completely validates a device record for a device of
/// `type_id` with `vram_size` bytes of device memory, before returning
/// anything: header (magic, version, type, size, total length equal to
/// `blob.len()`), the five sections (ids, order, reserved fields,
/// lengths), every page index (strictly increasing, below
/// `vram_size / PAGE`), the values ([`validate`]), and the CRC32 trailer.
///
/// Every version from [`OLDEST_VERSION`](super::OLDEST_VERSION) to
/// [`FORMAT_VERSION`](super::FORMAT_VERSION) is read: the REGS section of
/// a record of version `v` carries the registers with `since` at most `v`,
/// and the others are set to their reset values (`read_regs`).
pub fn decode(blob: &[u8], type_id: u32, vram_size: u64) -> Result<Decoded<'_>, StateError> {
    decode_in(&LAYOUT, blob, type_id, vram_size)
}

/// [`decode`] for the records of `layout`.
pub(super) fn decode_in<'b>(
    layout: &Layout<'_>,
    blob: &'b [u8],
    type_id: u32,
    vram_size: u64,
) -> Result<Decoded<'b>, StateError> {
    let (h, body) = check_header(layout, blob, DEVICE_MAGIC, type_id, vram_size)?;
    if h.count != SECTIONS.len() as u32 {
        return Err(StateError::BadSection);
    }
    let mut r = Reader { buf: body };
    let config = r.fixed_section::<CONFIG_LEN>(SECTION_CONFIG)?;
    let regs = read_regs(layout.regs(), h.version, r.section(SECTION_REGS)?)?;
    let engine = r.fixed_section::<ENGINE_LEN>(SECTION_ENGINE)?;
    let irq = r.fixed_section::<IRQ_LEN>(SECTION_IRQ)?;
    let vram = r.section(SECTION_VRAM)?;
    if !r.buf.is_empty() {
        return Err(StateError::BadLength);
    }

    let mut vr = Reader { buf: vram };
    let count = vr.u64()?;
    let entries = vr.buf;
    let npages = check_pages(entries, vram_size)?;
    if u64::try_from(npages).ok() != Some(count) {
        return Err(StateError::BadLength);
    }

    let [ring_valid, error, e_rsvd @ .., e0, e1, e2, e3, e4, e5, e6, e7] = *engine;
    if ring_valid > 1 || e_rsvd != [0u8; 6] {
        return Err(StateError::BadEngine);
    }
    let [intx_masked, i_rsvd @ ..] = *irq;
    if intx_masked > 1 || i_rsvd != [0u8; 7] {
        return Err(StateError::BadIrq);
    }

    let state = DeviceState {
        type_id: h.type_id,
        vram_size: h.vram_size,
        config: *config,
        regs,
        ring_valid: ring_valid == 1,
        error,
        errors: u64::from_le_bytes([e0, e1, e2, e3, e4, e5, e6, e7]),
        intx_masked: intx_masked == 1,
    };
    validate(&state, type_id, vram_size)?;
    check_crc(blob)?;
    Ok(Decoded { state, entries })
}

/// A validated pages record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagesChunk<'a> {
    entries: &'a [u8],
}

impl<'a> PagesChunk<'a> {
    /// The record's pages, `(page index, bytes)`, in strictly increasing
    /// index order.
    pub fn pages(&self) -> impl Iterator<Item = (u64, &'a [u8; PAGE])> + 'a {
        iter_pages(self.entries)
    }

    /// Number of pages in the record.
    // Host API, for the property tests in fuzz/; the driver does not need it.
    #[allow(dead_code)]
    pub fn npages(&self) -> usize {
        self.entries.len() / PAGE_ENTRY_LEN
    }
}

/// Decodes and completely validates a pages record for a device of
/// `type_id` with `vram_size` bytes of device memory: header (magic,
/// version, type, size, page count at most [`PAGES_CHUNK_MAX`], total
/// length equal to `blob.len()` and to [`pages_chunk_len`] of the count),
/// page indices (strictly increasing, below `vram_size / PAGE`), CRC32.
pub fn decode_pages_chunk(
    blob: &[u8],
    type_id: u32,
    vram_size: u64,
) -> Result<PagesChunk<'_>, StateError> {
    let (h, entries) = check_header(&LAYOUT, blob, PAGES_MAGIC, type_id, vram_size)?;
    let n = chunk_count(&h, vram_size)?;
    if blob.len() != pages_chunk_len(n) {
        return Err(StateError::BadLength);
    }
    check_pages(entries, vram_size)?;
    check_crc(blob)?;
    Ok(PagesChunk { entries })
}
