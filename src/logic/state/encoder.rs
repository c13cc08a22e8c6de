// SPDX-License-Identifier: GPL-2.0

//! Encoding: the device record ([`encode`]) and the pages record
//! ([`encode_pages_chunk`]).

use super::{
    encoded_len, pages_chunk_len, vram_pages, Crc32, DeviceState, StateError, CONFIG_LEN,
    DEVICE_MAGIC, ENGINE_LEN, FORMAT_VERSION, IRQ_LEN, PAGE, PAGES_CHUNK_MAX, PAGES_MAGIC,
    PAGE_ENTRY_LEN, REGS_LEN, SECTIONS, SECTION_CONFIG, SECTION_ENGINE, SECTION_IRQ, SECTION_REGS,
    SECTION_VRAM,
};

/// Writes consecutive bytes into an exactly sized buffer, keeping the CRC.
struct Writer<'o> {
    out: &'o mut [u8],
    pos: usize,
    crc: Crc32,
}

impl<'o> Writer<'o> {
    fn new(out: &'o mut [u8]) -> Self {
        Self {
            out,
            pos: 0,
            crc: Crc32::new(),
        }
    }

    fn raw(&mut self, b: &[u8]) -> Result<(), StateError> {
        let end = self
            .pos
            .checked_add(b.len())
            .ok_or(StateError::BufferSize)?;
        let dst = self
            .out
            .get_mut(self.pos..end)
            .ok_or(StateError::BufferSize)?;
        dst.copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    fn put(&mut self, b: &[u8]) -> Result<(), StateError> {
        self.raw(b)?;
        self.crc.update(b);
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), StateError> {
        self.put(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<(), StateError> {
        self.put(&v.to_le_bytes())
    }

    fn usize(&mut self, v: usize) -> Result<(), StateError> {
        self.u64(u64::try_from(v).map_err(|_| StateError::BufferSize)?)
    }

    fn header(
        &mut self,
        magic: u32,
        type_id: u32,
        count: u32,
        vram_size: u64,
    ) -> Result<(), StateError> {
        let total = self.out.len();
        self.u32(magic)?;
        self.u32(FORMAT_VERSION)?;
        self.u32(type_id)?;
        self.u32(count)?;
        self.u64(vram_size)?;
        self.usize(total)
    }

    fn section(&mut self, id: u32, len: usize) -> Result<(), StateError> {
        self.u32(id)?;
        self.u32(0)?;
        self.usize(len)
    }

    /// Writes exactly `npages` page entries from `pages`, checking the
    /// indices.
    fn pages<'p>(
        &mut self,
        npages: usize,
        vram_size: u64,
        pages: impl Iterator<Item = (u64, &'p [u8; PAGE])>,
    ) -> Result<(), StateError> {
        let limit = vram_pages(vram_size);
        let mut prev: Option<u64> = None;
        // Pages still expected; one more than `npages` is an error.
        let mut left = npages;
        for (index, page) in pages {
            left = left.checked_sub(1).ok_or(StateError::PageCount)?;
            if index >= limit || prev.is_some_and(|p| index <= p) {
                return Err(StateError::BadPageIndex);
            }
            self.u64(index)?;
            self.put(page)?;
            prev = Some(index);
        }
        if left != 0 {
            return Err(StateError::PageCount);
        }
        Ok(())
    }

    /// Appends the CRC trailer; the buffer must then be full.
    fn finish(mut self) -> Result<(), StateError> {
        let crc = self.crc.finish();
        self.raw(&crc.to_le_bytes())?;
        if self.pos != self.out.len() {
            return Err(StateError::BufferSize);
        }
        Ok(())
    }
}

/// Encodes a device record of `state` and `npages` device-memory pages
/// into `out`, which must be exactly [`encoded_len`]`(npages)` bytes long
/// (else [`StateError::BufferSize`]).
///
/// `pages` yields `(page index, page bytes)` in strictly increasing index
/// order, every index below `state.vram_size / PAGE`
/// ([`StateError::BadPageIndex`]), exactly `npages` of them
/// ([`StateError::PageCount`]). Absent pages mean zero (or, in a v2
/// stream, "as last sent"), so a full snapshot sends only non-zero (or
/// allocated) pages. `state.ring_valid` is stored as
/// `ring_valid && CTRL.ENABLE`. The state itself is not validated (see
/// [`validate`](super::validate)). On error `out` holds garbage.
pub fn encode<'p>(
    state: &DeviceState,
    npages: usize,
    pages: impl Iterator<Item = (u64, &'p [u8; PAGE])>,
    out: &mut [u8],
) -> Result<(), StateError> {
    if out.len() != encoded_len(npages) {
        return Err(StateError::BufferSize);
    }
    let mut w = Writer::new(out);
    w.header(
        DEVICE_MAGIC,
        state.type_id,
        SECTIONS.len() as u32,
        state.vram_size,
    )?;

    w.section(SECTION_CONFIG, CONFIG_LEN)?;
    w.put(&state.config)?;

    w.section(SECTION_REGS, REGS_LEN)?;
    for &v in &state.regs {
        w.u64(v)?;
    }

    w.section(SECTION_ENGINE, ENGINE_LEN)?;
    let ring_valid = state.ring_valid && state.enabled();
    w.put(&[u8::from(ring_valid), state.error, 0, 0, 0, 0, 0, 0])?;
    w.u64(state.errors)?;

    w.section(SECTION_IRQ, IRQ_LEN)?;
    w.put(&[u8::from(state.intx_masked), 0, 0, 0, 0, 0, 0, 0])?;

    let vram_len = npages
        .checked_mul(PAGE_ENTRY_LEN)
        .and_then(|p| p.checked_add(8))
        .ok_or(StateError::BufferSize)?;
    w.section(SECTION_VRAM, vram_len)?;
    w.usize(npages)?;
    w.pages(npages, state.vram_size, pages)?;
    w.finish()
}

/// Encodes a pages record of `npages` pages (at most [`PAGES_CHUNK_MAX`],
/// else [`StateError::PageCount`]) of a device of `type_id` with
/// `vram_size` bytes of device memory into `out`, which must be exactly
/// [`pages_chunk_len`]`(npages)` bytes long. `pages` as for [`encode`].
pub fn encode_pages_chunk<'p>(
    type_id: u32,
    vram_size: u64,
    npages: usize,
    pages: impl Iterator<Item = (u64, &'p [u8; PAGE])>,
    out: &mut [u8],
) -> Result<(), StateError> {
    if npages > PAGES_CHUNK_MAX {
        return Err(StateError::PageCount);
    }
    if out.len() != pages_chunk_len(npages) {
        return Err(StateError::BufferSize);
    }
    let mut w = Writer::new(out);
    w.header(PAGES_MAGIC, type_id, npages as u32, vram_size)?;
    w.pages(npages, vram_size, pages)?;
    w.finish()
}
