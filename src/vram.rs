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

/// Granule of device memory allocation: the state format's page, so a
/// page of device memory is a page of a state record.
pub(crate) const VRAM_PAGE: usize = crate::logic::state::PAGE;

type Page = [u8; VRAM_PAGE];

/// Pages per leaf table: a full leaf is one 4 KiB array of page pointers.
const LEAF: usize = VRAM_PAGE / core::mem::size_of::<Option<KBox<Page>>>();

/// A leaf table: the pages of `LEAF` consecutive page indices (fewer in
/// the last leaf of a small memory).
type Leaf = KVec<Option<KBox<Page>>>;

static ZERO_PAGE: Page = [0; VRAM_PAGE];

/// The device memory of one mdev.
///
/// Pages hang off a two-level table whose leaves are allocated with their
/// first page, so an mdev that has written nothing costs a pointer per
/// `LEAF` pages (1 KiB for 256 MiB), and written memory costs its pages
/// plus one pointer each.
pub(crate) struct Vram {
    leaves: KVVec<Option<Leaf>>,
    /// Pages in the memory.
    npages: usize,
    /// Pages allocated (written at least once).
    written: usize,
    size: u64,
    /// One bit per page written since tracking (re)started, while
    /// `tracking` (v2 pre-copy).
    dirty: KVVec<u64>,
    tracking: bool,
}

impl Vram {
    /// `size` bytes of zeroed device memory (a multiple of [`VRAM_PAGE`]).
    pub(crate) fn new(size: u64) -> Result<Self> {
        let npages = usize::try_from(size).map_err(|_| EINVAL)? / VRAM_PAGE;
        let nleaves = npages.div_ceil(LEAF);
        let mut leaves = KVVec::with_capacity(nleaves, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..nleaves {
            leaves.push(None, GFP_KERNEL_ACCOUNT)?;
        }
        let dirty = KVVec::from_elem(0u64, npages.div_ceil(64), GFP_KERNEL_ACCOUNT)?;
        Ok(Self {
            leaves,
            npages,
            written: 0,
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

    /// Page `index`, if it was ever written.
    fn get(&self, index: usize) -> Option<&Page> {
        let leaf = self.leaves.get(index / LEAF)?.as_ref()?;
        leaf.get(index % LEAF)?.as_deref()
    }

    /// Copies `out.len()` bytes at `offset` into `out`.
    pub(crate) fn read_into(&self, offset: u64, out: &mut [u8]) -> Result {
        let mut done = 0;
        for (page, at, n) in self.chunks(offset, out.len())? {
            let dst = &mut out[done..done + n];
            match self.get(page) {
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

    /// Writes the whole page `index` with `data`. A page written for the
    /// first time is allocated and written once, not zero-filled first
    /// (restoring a state writes every page this way).
    pub(crate) fn write_page(&mut self, index: usize, data: &Page) -> Result {
        let (slot, written) = self.slot_mut(index)?;
        match slot {
            Some(p) => p.copy_from_slice(data),
            None => {
                *slot = Some(KBox::write(KBox::new_uninit(GFP_KERNEL_ACCOUNT)?, *data));
                *written += 1;
            }
        }
        Ok(())
    }

    /// Writes whole pages `(index, bytes)` ([`Vram::write_page`]).
    pub(crate) fn write_pages<'p>(
        &mut self,
        pages: impl Iterator<Item = (u64, &'p Page)>,
    ) -> Result {
        for (index, page) in pages {
            self.write_page(usize::try_from(index).map_err(|_| EINVAL)?, page)?;
        }
        Ok(())
    }

    /// Page `page`, allocated (zeroed) if it was never written.
    fn page_mut(&mut self, page: usize) -> Result<&mut Page> {
        let (slot, written) = self.slot_mut(page)?;
        if slot.is_none() {
            *slot = Some(KBox::init(pin_init::zeroed::<Page>(), GFP_KERNEL_ACCOUNT)?);
            *written += 1;
        }
        slot.as_deref_mut().ok_or(ENOMEM)
    }

    /// The slot of page `page`, its leaf allocated if needed, and the
    /// count of written pages for the caller to keep; marks the page dirty
    /// (it is about to be written).
    fn slot_mut(&mut self, page: usize) -> Result<(&mut Option<KBox<Page>>, &mut usize)> {
        if page >= self.npages {
            return Err(EINVAL);
        }
        if self.tracking {
            if let Some(w) = self.dirty.get_mut(page / 64) {
                *w |= 1u64 << (page % 64);
            }
        }
        let first = page - page % LEAF;
        let leaf_len = (self.npages - first).min(LEAF);
        let leaf_slot = self.leaves.get_mut(page / LEAF).ok_or(EINVAL)?;
        if leaf_slot.is_none() {
            let mut leaf = KVec::with_capacity(leaf_len, GFP_KERNEL_ACCOUNT)?;
            for _ in 0..leaf_len {
                // Within the capacity just reserved.
                leaf.push(None, GFP_KERNEL_ACCOUNT)?;
            }
            *leaf_slot = Some(leaf);
        }
        let leaf = leaf_slot.as_mut().ok_or(ENOMEM)?;
        let slot = leaf.get_mut(page % LEAF).ok_or(EINVAL)?;
        Ok((slot, &mut self.written))
    }

    /// Number of pages ever written (the others are zero).
    pub(crate) fn page_count(&self) -> usize {
        self.written
    }

    /// The written pages from index `from` on, by index, in increasing
    /// order (leaves never allocated are skipped whole).
    fn written_pages_from(&self, from: usize) -> impl Iterator<Item = (usize, &Page)> {
        let first_leaf = from / LEAF;
        self.leaves
            .iter()
            .enumerate()
            .skip(first_leaf)
            .filter_map(|(l, leaf)| leaf.as_ref().map(|leaf| (l * LEAF, leaf)))
            .flat_map(|(base, leaf)| {
                leaf.iter()
                    .enumerate()
                    .filter_map(move |(i, p)| p.as_deref().map(|p| (base + i, p)))
            })
            .filter(move |&(i, _)| i >= from)
    }

    /// The written pages, by index, in increasing order.
    pub(crate) fn pages(&self) -> impl Iterator<Item = (u64, &Page)> {
        self.written_pages_from(0).map(|(i, p)| (i as u64, p))
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
        if from == 0 {
            return self.written;
        }
        self.written_pages_from(from).count()
    }

    /// Written pages from index `from` on, in order, into `out` (as
    /// indices) until it is full (its capacity: nothing is allocated);
    /// returns the index after the last page looked at.
    pub(crate) fn written_from(&self, from: usize, out: &mut KVec<usize>) -> usize {
        for (i, _) in self.written_pages_from(from) {
            if out.push_within_capacity(i).is_err() {
                return i;
            }
        }
        self.npages
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
        self.get(index).unwrap_or(&ZERO_PAGE)
    }

    /// Zeroes all of it (frees every page) and stops tracking.
    pub(crate) fn clear(&mut self) {
        for leaf in self.leaves.iter_mut() {
            *leaf = None;
        }
        self.written = 0;
        self.stop_tracking();
    }

    /// Frees everything, page table included (the mdev is being removed):
    /// from now on every access fails with `EINVAL`.
    pub(crate) fn release(&mut self) {
        self.leaves = KVVec::new();
        self.dirty = KVVec::new();
        self.npages = 0;
        self.written = 0;
        self.size = 0;
        self.tracking = false;
    }
}
