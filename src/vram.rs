// SPDX-License-Identifier: GPL-2.0

//! Device memory (BAR2): sparse, page-granular, zero until written.
//!
//! A page is allocated on its first write, so an mdev of the 256 MiB type
//! costs only what its user has written. Unwritten pages read as zeros.

use kernel::{
    prelude::*,
    uaccess::{UserSliceReader, UserSliceWriter},
};

/// Granule of device memory allocation.
pub(crate) const VRAM_PAGE: usize = 4096;

type Page = [u8; VRAM_PAGE];

static ZERO_PAGE: Page = [0; VRAM_PAGE];

/// The device memory of one mdev.
pub(crate) struct Vram {
    pages: KVVec<Option<KBox<Page>>>,
    size: u64,
}

impl Vram {
    /// `size` bytes of zeroed device memory (a multiple of [`VRAM_PAGE`]).
    pub(crate) fn new(size: u64) -> Result<Self> {
        let n = usize::try_from(size).map_err(|_| EINVAL)? / VRAM_PAGE;
        let mut pages = KVVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            pages.push(None, GFP_KERNEL)?;
        }
        Ok(Self { pages, size })
    }

    /// Splits `[offset, offset + len)` into `(page, offset in page, bytes)`
    /// chunks, after checking that it is non-empty and inside the memory.
    fn chunks(
        &self,
        offset: u64,
        len: usize,
    ) -> Result<impl Iterator<Item = (usize, usize, usize)>> {
        let end = offset.checked_add(len as u64).ok_or(EINVAL)?;
        if len == 0 || end > self.size {
            return Err(EINVAL);
        }
        // Both fit in usize: they are below `size`, which came from a usize.
        let (mut pos, end) = (offset as usize, end as usize);
        Ok(core::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let in_page = pos % VRAM_PAGE;
            let n = (VRAM_PAGE - in_page).min(end - pos);
            let chunk = (pos / VRAM_PAGE, in_page, n);
            pos += n;
            Some(chunk)
        }))
    }

    /// Copies `len` bytes at `offset` to `out`.
    pub(crate) fn read(&self, offset: u64, len: usize, out: &mut UserSliceWriter) -> Result {
        for (page, at, n) in self.chunks(offset, len)? {
            let src = match self.pages.get(page).ok_or(EINVAL)? {
                Some(p) => &p[at..at + n],
                None => &ZERO_PAGE[at..at + n],
            };
            out.write_slice(src)?;
        }
        Ok(())
    }

    /// Copies `len` bytes from `input` to `offset`, allocating pages on
    /// first write.
    pub(crate) fn write(&mut self, offset: u64, len: usize, input: &mut UserSliceReader) -> Result {
        for (page, at, n) in self.chunks(offset, len)? {
            let p = self.page_mut(page)?;
            input.read_slice(&mut p[at..at + n])?;
        }
        Ok(())
    }

    /// Copies `out.len()` bytes at `offset` into `out` (for the engine).
    pub(crate) fn read_into(&self, offset: u64, out: &mut [u8]) -> Result {
        let mut done = 0;
        for (page, at, n) in self.chunks(offset, out.len())? {
            let dst = &mut out[done..done + n];
            match self.pages.get(page).ok_or(EINVAL)? {
                Some(p) => dst.copy_from_slice(&p[at..at + n]),
                None => dst.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Copies `data` to `offset` (for the engine).
    pub(crate) fn write_from(&mut self, offset: u64, data: &[u8]) -> Result {
        let mut done = 0;
        for (page, at, n) in self.chunks(offset, data.len())? {
            let p = self.page_mut(page)?;
            p[at..at + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Page `page`, allocated (zeroed) if it was never written.
    fn page_mut(&mut self, page: usize) -> Result<&mut Page> {
        let slot = self.pages.get_mut(page).ok_or(EINVAL)?;
        if slot.is_none() {
            *slot = Some(KBox::init(pin_init::zeroed::<Page>(), GFP_KERNEL)?);
        }
        slot.as_deref_mut().ok_or(ENOMEM)
    }

    /// Number of pages ever written (the others are zero).
    pub(crate) fn page_count(&self) -> usize {
        self.pages.iter().filter(|p| p.is_some()).count()
    }

    /// The written pages, by index, in increasing order.
    pub(crate) fn pages(&self) -> impl Iterator<Item = (u64, &Page)> {
        self.pages
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_deref().map(|p| (i as u64, p)))
    }

    /// Zeroes all of it (frees every page).
    pub(crate) fn clear(&mut self) {
        for slot in self.pages.iter_mut() {
            *slot = None;
        }
    }
}
