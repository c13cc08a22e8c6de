// SPDX-License-Identifier: GPL-2.0

//! Pinned guest pages (docs/device.md §8, "Pinning").
//!
//! Policy: the engine pins the pages a command uses — its descriptor's
//! page, its sources read-only, its destinations writable — as it reaches
//! them, and unpins them all when the command ends. Nothing is pinned
//! between commands. At most `budget` pages are pinned at once.
//!
//! # Locking
//!
//! The IOMMU back-ends call `dma_unmap` with their own locks held (type1:
//! `device_list_lock`), and their pin and unpin paths take locks that are
//! ordered before that one (type1: `iommu->lock`, taken before
//! `device_list_lock` when a device registers). Unpinning from inside
//! `dma_unmap` would therefore invert the back-end's own lock order. So only
//! the engine pins and unpins, always with no lock of ours held:
//! [`CommandPins`] lives on the engine's stack and owns the pinned pages;
//! [`Pins`] (under the device's pin lock) mirrors which IOVA pages are
//! pinned, for `dma_unmap` and debugfs. `dma_unmap` never unpins: it asks
//! the engine to abort the command (which then releases its pages and
//! fails with `ERR_UNMAPPED`) and waits, with no lock held, until no page
//! of the range is pinned any more.

use crate::{
    kapi::vfio::{Device, Ops, PinnedPage},
    logic::regs::ErrorCode,
};
use kernel::{prelude::*, sync::Mutex};

/// Guest page size the engine pins at.
pub(crate) const GUEST_PAGE: u64 = kernel::page::PAGE_SIZE as u64;

/// An engine error: code and `ERR_ADDR`.
pub(crate) type EngineError = (ErrorCode, u64);

/// Which guest pages are pinned now, and whether an unmap asked the
/// command in progress to stop. Guarded by the device's pin lock.
pub(crate) struct Pins {
    pinned: KVec<u64>,
    budget: usize,
    /// Start of a range an unmap took away from the command in progress.
    abort: Option<u64>,
}

impl Pins {
    /// No page pinned; a budget of `budget` pages.
    pub(crate) fn new(budget: u32) -> Self {
        Self {
            pinned: KVec::new(),
            budget: budget as usize,
            abort: None,
        }
    }

    /// Number of pages pinned now.
    pub(crate) fn count(&self) -> usize {
        self.pinned.len()
    }

    /// A command starts: an abort meant for an earlier one is void (its
    /// pages are released).
    pub(crate) fn begin_command(&mut self) {
        self.abort = None;
    }

    /// An unmap of `[iova, iova + len)`: whether a page in it is pinned
    /// (then the command in progress is asked to stop).
    pub(crate) fn unmap(&mut self, iova: u64, len: u64) -> bool {
        let end = iova.saturating_add(len);
        let hit = self.pinned.iter().any(|&p| p >= iova && p < end);
        if hit {
            self.abort.get_or_insert(iova);
        }
        hit
    }
}

/// The pages one command has pinned; all unpinned on drop (in the engine,
/// with no lock held).
pub(crate) struct CommandPins<'a, T: Ops> {
    dev: &'a Device<T>,
    state: &'a Mutex<Pins>,
    pages: KVec<(PinnedPage, bool)>,
}

impl<'a, T: Ops> CommandPins<'a, T> {
    /// No page pinned yet for the command starting on `dev`.
    pub(crate) fn new(dev: &'a Device<T>, state: &'a Mutex<Pins>) -> Self {
        state.lock().begin_command();
        Self {
            dev,
            state,
            pages: KVec::new(),
        }
    }

    /// The pinned page at `page_iova` with at least the access wanted,
    /// pinning it if needed. `ring`: a descriptor fetch (its errors are
    /// `ERR_RING_FETCH`).
    pub(crate) fn page(
        &mut self,
        page_iova: u64,
        write: bool,
        ring: bool,
    ) -> Result<&PinnedPage, EngineError> {
        let fault = if ring {
            ErrorCode::RingFetch
        } else {
            ErrorCode::IovaFault
        };
        {
            let mut st = self.state.lock();
            if let Some(start) = st.abort {
                return Err((ErrorCode::Unmapped, start));
            }
            if let Some(i) = self
                .pages
                .iter()
                .position(|(p, w)| p.iova() == page_iova && (*w || !write))
            {
                return Ok(&self.pages[i].0);
            }
            if st.pinned.len() >= st.budget {
                return Err((ErrorCode::PinBudget, page_iova));
            }
            // Announce the page before pinning it, so an unmap that races
            // with the pin waits for it.
            st.pinned
                .push(page_iova, GFP_KERNEL)
                .map_err(|_| (ErrorCode::PinBudget, page_iova))?;
            self.pages
                .reserve(1, GFP_KERNEL)
                .map_err(|_| (ErrorCode::PinBudget, page_iova))?;
        }
        match self.dev.pin_page(page_iova, write) {
            Ok(page) => {
                // Cannot fail: capacity was reserved above.
                let _ = self.pages.push_within_capacity((page, write));
                let last = self.pages.len().checked_sub(1).ok_or((fault, page_iova))?;
                Ok(&self.pages[last].0)
            }
            Err(_) => {
                self.forget(page_iova);
                Err((fault, page_iova))
            }
        }
    }

    /// Removes one announcement of `page_iova` from the mirror.
    fn forget(&self, page_iova: u64) {
        let mut st = self.state.lock();
        if let Some(i) = st.pinned.iter().position(|&p| p == page_iova) {
            let _ = st.pinned.remove(i);
        }
    }
}

impl<T: Ops> Drop for CommandPins<'_, T> {
    fn drop(&mut self) {
        // Unpin first (no lock held), then drop the announcements, so an
        // unmap waiting on them returns only when the pages are unpinned.
        while let Some((page, _)) = self.pages.pop() {
            let iova = page.iova();
            drop(page);
            self.forget(iova);
        }
    }
}
