// SPDX-License-Identifier: GPL-2.0

//! The record of guest pages the engine has pinned (docs/device.md §7–§8).
//!
//! Policy: the pages of the ring stay pinned from their first fetch until
//! the ring stops (disable, error, reset, close) or they are unmapped; a
//! command's data pages are pinned for the command and unpinned when it
//! ends. At most `budget` pages are pinned at once.
//!
//! Guest memory is only ever touched through a page held in this record,
//! under the lock that guards it, so `dma_unmap` (which takes the same
//! lock) can never unpin a page while the engine copies to or from it.

use crate::{kapi::vfio::PinnedPage, logic::regs::ErrorCode};
use kernel::prelude::*;

/// Guest page size the engine pins at.
pub(crate) const GUEST_PAGE: u64 = kernel::page::PAGE_SIZE as u64;

struct Entry {
    page: PinnedPage,
    ring: bool,
    write: bool,
}

/// The pinned pages of one device. Guarded by the device's pin lock.
pub(crate) struct Pins {
    entries: KVec<Entry>,
    budget: usize,
    /// Set by `dma_unmap` when it took a page away from the command in
    /// flight: the start of the unmapped range.
    unmapped: Option<u64>,
}

/// An engine error: code and `ERR_ADDR`.
pub(crate) type EngineError = (ErrorCode, u64);

impl Pins {
    /// An empty record with a budget of `budget` pages.
    pub(crate) fn new(budget: u32) -> Self {
        Self {
            entries: KVec::new(),
            budget: budget as usize,
            unmapped: None,
        }
    }

    /// Number of pages pinned now.
    pub(crate) fn count(&self) -> usize {
        self.entries.len()
    }

    /// A command starts.
    pub(crate) fn begin_command(&mut self) {
        self.unmapped = None;
    }

    /// A command ended: its data pages are unpinned.
    pub(crate) fn end_command(&mut self) {
        self.entries.retain(|e| e.ring);
        self.unmapped = None;
    }

    /// Unpins everything (ring stopped, reset, close).
    pub(crate) fn release_all(&mut self) {
        self.entries.clear();
        self.unmapped = None;
    }

    /// Unpins every page in `[iova, iova + len)`.
    pub(crate) fn unmap(&mut self, iova: u64, len: u64) {
        let end = iova.saturating_add(len);
        let mut data_hit = false;
        self.entries.retain(|e| {
            let inside = e.page.iova() >= iova && e.page.iova() < end;
            data_hit |= inside && !e.ring;
            !inside
        });
        // Data pages exist only while a command runs: it must fail.
        if data_hit && self.unmapped.is_none() {
            self.unmapped = Some(iova);
        }
    }

    /// The pinned page at `page_iova` with at least the access wanted,
    /// pinning it through `pin` if needed.
    fn get(
        &mut self,
        page_iova: u64,
        write: bool,
        ring: bool,
        pin: &dyn Fn(u64, bool) -> Result<PinnedPage>,
    ) -> core::result::Result<&PinnedPage, EngineError> {
        if let Some(start) = self.unmapped {
            return Err((ErrorCode::Unmapped, start));
        }
        let found = self.entries.iter().position(|e| e.page.iova() == page_iova);
        let i = match found {
            Some(i) if self.entries[i].write || !write => i,
            _ => {
                let fault = if ring {
                    ErrorCode::RingFetch
                } else {
                    ErrorCode::IovaFault
                };
                // An upgrade to writable replaces the entry: no budget change.
                if found.is_none() && self.entries.len() >= self.budget {
                    return Err((ErrorCode::PinBudget, page_iova));
                }
                let page = pin(page_iova, write).map_err(|_| (fault, page_iova))?;
                let entry = Entry { page, ring, write };
                match found {
                    Some(i) => {
                        self.entries[i] = entry;
                        i
                    }
                    None => {
                        self.entries
                            .push(entry, GFP_KERNEL)
                            .map_err(|_| (ErrorCode::PinBudget, page_iova))?;
                        self.entries.len() - 1
                    }
                }
            }
        };
        Ok(&self.entries[i].page)
    }

    /// Reads guest memory at `iova` into `out` (`ring`: a descriptor fetch).
    pub(crate) fn read(
        &mut self,
        iova: u64,
        out: &mut [u8],
        ring: bool,
        pin: &dyn Fn(u64, bool) -> Result<PinnedPage>,
    ) -> core::result::Result<(), EngineError> {
        let mut done = 0;
        while done < out.len() {
            let addr = iova + done as u64;
            let at = (addr % GUEST_PAGE) as usize;
            let n = (GUEST_PAGE as usize - at).min(out.len() - done);
            let page = self.get(addr - at as u64, false, ring, pin)?;
            let fault = (ErrorCode::IovaFault, addr);
            page.read(at, &mut out[done..done + n]).map_err(|_| fault)?;
            done += n;
        }
        Ok(())
    }

    /// Writes `data` to guest memory at `iova`.
    pub(crate) fn write(
        &mut self,
        iova: u64,
        data: &[u8],
        pin: &dyn Fn(u64, bool) -> Result<PinnedPage>,
    ) -> core::result::Result<(), EngineError> {
        let mut done = 0;
        while done < data.len() {
            let addr = iova + done as u64;
            let at = (addr % GUEST_PAGE) as usize;
            let n = (GUEST_PAGE as usize - at).min(data.len() - done);
            let page = self.get(addr - at as u64, true, false, pin)?;
            let fault = (ErrorCode::IovaFault, addr);
            page.write(at, &data[done..done + n]).map_err(|_| fault)?;
            done += n;
        }
        Ok(())
    }
}
