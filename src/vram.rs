// SPDX-License-Identifier: GPL-2.0

//! Device memory (BAR2): sparse, page-granular, zero until written.
//!
//! A page is allocated on its first write, so an mdev of the 256 MiB type
//! costs only what its user has written. Unwritten pages read as zeros.
//! Pages are charged to the memory cgroup of the task that writes them
//! (`GFP_KERNEL_ACCOUNT`); the type bounds how many there can be.
//!
//! Nothing here touches user memory: callers copy through a bounce buffer
//! with no lock held (`device.rs`).

use kernel::prelude::*;

/// Granule of device memory allocation.
pub(crate) const VRAM_PAGE: usize = 4096;

type Page = [u8; VRAM_PAGE];

static ZERO_PAGE: Page = [0; VRAM_PAGE];

/// The device memory of one mdev.
pub(crate) struct Vram {
    pages: KVVec<Option<KBox<Page>>>,
    size: u64,
    /// One bit per page written since tracking (re)started, while
    /// `tracking` (v2 pre-copy).
    dirty: KVVec<u64>,
    tracking: bool,
}

impl Vram {
    /// `size` bytes of zeroed device memory (a multiple of [`VRAM_PAGE`]).
    pub(crate) fn new(size: u64) -> Result<Self> {
        let n = usize::try_from(size).map_err(|_| EINVAL)? / VRAM_PAGE;
        let mut pages = KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..n {
            pages.push(None, GFP_KERNEL_ACCOUNT)?;
        }
        let dirty = KVVec::from_elem(0u64, n.div_ceil(64), GFP_KERNEL_ACCOUNT)?;
        Ok(Self {
            pages,
            size,
            dirty,
            tracking: false,
        })
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

    /// Copies `out.len()` bytes at `offset` into `out`.
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

    /// Copies `data` to `offset`, allocating pages on first write.
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
        if self.tracking {
            if let Some(w) = self.dirty.get_mut(page / 64) {
                *w |= 1u64 << (page % 64);
            }
        }
        let slot = self.pages.get_mut(page).ok_or(EINVAL)?;
        if slot.is_none() {
            *slot = Some(KBox::init(pin_init::zeroed::<Page>(), GFP_KERNEL_ACCOUNT)?);
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

    /// Starts (or restarts) tracking written pages: none is dirty now.
    pub(crate) fn start_tracking(&mut self) {
        self.dirty.iter_mut().for_each(|w| *w = 0);
        self.tracking = true;
    }

    /// Stops tracking.
    pub(crate) fn stop_tracking(&mut self) {
        self.tracking = false;
        self.dirty.iter_mut().for_each(|w| *w = 0);
    }

    /// Number of dirty pages.
    pub(crate) fn dirty_count(&self) -> usize {
        self.dirty.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Written pages at index `from` or above.
    pub(crate) fn page_count_from(&self, from: usize) -> usize {
        self.pages.iter().skip(from).filter(|p| p.is_some()).count()
    }

    /// Written pages from index `from` on, in order, into `out` (as
    /// indices) until it is full (its capacity: nothing is allocated);
    /// returns the index after the last page looked at.
    pub(crate) fn written_from(&self, from: usize, out: &mut KVec<usize>) -> usize {
        let mut i = from;
        while i < self.pages.len() && out.len() < out.capacity() {
            if self.pages[i].is_some() && out.push_within_capacity(i).is_err() {
                break;
            }
            i += 1;
        }
        i
    }

    /// Dirty pages, in order, into `out` until it is full (its capacity:
    /// nothing is allocated). The bits stay set: [`Vram::clear_dirty`]
    /// clears them once the pages are safely encoded, so a failure in
    /// between never loses one.
    pub(crate) fn dirty_pages(&self, out: &mut KVec<usize>) {
        for (wi, &w) in self.dirty.iter().enumerate() {
            let mut bits = w;
            while bits != 0 {
                if out.len() == out.capacity() {
                    return;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // `wi * 64 + bit` is a page index below `pages.len()`.
                if out.push_within_capacity(wi * 64 + bit).is_err() {
                    return;
                }
            }
        }
    }

    /// Clears the dirty bits of `indices` (pages just encoded).
    pub(crate) fn clear_dirty(&mut self, indices: &[usize]) {
        for &i in indices {
            if let Some(w) = self.dirty.get_mut(i / 64) {
                *w &= !(1u64 << (i % 64));
            }
        }
    }

    /// Page `index` (zeros if never written).
    pub(crate) fn page(&self, index: usize) -> &Page {
        match self.pages.get(index) {
            Some(Some(p)) => p,
            _ => &ZERO_PAGE,
        }
    }

    /// Zeroes all of it (frees every page) and stops tracking.
    pub(crate) fn clear(&mut self) {
        for slot in self.pages.iter_mut() {
            *slot = None;
        }
        self.stop_tracking();
    }

    /// Frees everything, page table included (the mdev is being removed):
    /// from now on every access fails with `EINVAL`.
    pub(crate) fn release(&mut self) {
        self.pages = KVVec::new();
        self.dirty = KVVec::new();
        self.size = 0;
        self.tracking = false;
    }
}
