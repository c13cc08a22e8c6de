// SPDX-License-Identifier: GPL-2.0

//! Pinned guest pages (docs/device.md §8, "Pinning").
//!
//! Policy: the engine pins the pages a command uses — its descriptor's
//! page, its sources read-only, its destinations writable — as it reaches
//! them, and unpins them all when the command ends. Nothing is pinned
//! between commands. At most `budget` pages are pinned at once.
//!
//! # Locking and the `dma_unmap` guarantee
//!
//! The IOMMU back-ends call `dma_unmap` with their own locks held (type1:
//! `device_list_lock`), and their pin and unpin paths take locks that are
//! ordered before that one (type1: `iommu->lock`, taken before
//! `device_list_lock` when a device registers). Unpinning from inside
//! `dma_unmap` would therefore invert the back-end's own lock order. So only
//! the engine pins and unpins, always with no lock of ours held:
//! [`CommandPins`] lives on the engine's stack and owns the pinned pages;
//! [`PinTracker`] mirrors which IOVA pages are pinned (or about to be), for
//! `dma_unmap` and debugfs.
//!
//! [`PinTracker::unmap`] never unpins. It marks the range as being
//! unmapped — from then on no page in it can be pinned (a pin attempt fails
//! with `ERR_UNMAPPED`) — asks the command in progress to stop (the engine
//! checks at every chunk it moves, device-only commands included), and
//! sleeps on a condition variable that the engine signals every time it
//! unpins, until no page of the range is pinned. There is no timeout: the
//! wait ends by the engine's own progress, which depends on no lock of the
//! driver held across a user copy (see `device.rs`) and on no other task,
//! except under iommufd on the user's own userfaultfd handler for a page
//! being pinned (docs/device.md §8): the user's to resolve, and resolved
//! at the latest when its process exits.

use crate::{
    kapi::vfio::{Device, Ops, PinnedPage},
    logic::regs::ErrorCode,
};
use kernel::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{CondVar, Mutex},
};

/// Guest page size the engine pins at.
pub(crate) const GUEST_PAGE: u64 = kernel::page::PAGE_SIZE as u64;

/// What the engine does with a guest page it asks [`CommandPins::page`] for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads it: a descriptor or a source (pinned read-only).
    Read,
    /// Writes it: a destination or a FENCE target (pinned writable).
    Write,
}

/// An engine error: code and `ERR_ADDR`.
pub(crate) type EngineError = (ErrorCode, u64);

/// How many `dma_unmap` calls can wait at once with their own range;
/// further concurrent ones forbid pinning anything until they return.
const UNMAP_SLOTS: usize = 4;

/// Which guest pages are pinned now, and what `dma_unmap` asked for.
/// Guarded by [`PinTracker::inner`].
struct Pins {
    /// The IOVA of every page pinned or being pinned (one entry per pin).
    pinned: KVec<u64>,
    budget: usize,
    /// `[start, end)` of the ranges whose `dma_unmap` is waiting.
    unmapping: [Option<(u64, u64)>; UNMAP_SLOTS],
    /// Waiting `dma_unmap` calls that found no free slot: while non-zero,
    /// no page may be pinned at all.
    unmapping_overflow: usize,
    /// Start of a range an unmap took away from the command in progress:
    /// the command must stop.
    abort: Option<u64>,
}

impl Pins {
    /// Whether a pinned page lies in `[start, end)`.
    fn pinned_in(&self, start: u64, end: u64) -> bool {
        self.pinned.iter().any(|&p| p >= start && p < end)
    }

    /// The start of an unmap in progress that covers `page_iova`.
    fn unmapping_at(&self, page_iova: u64) -> Option<u64> {
        if self.unmapping_overflow != 0 {
            return Some(page_iova);
        }
        self.unmapping
            .iter()
            .flatten()
            .find(|&&(start, end)| page_iova >= start && page_iova < end)
            .map(|&(start, _)| start)
    }
}

/// The record of pinned pages of one device, and the condition `dma_unmap`
/// waits on.
#[pin_data]
pub(crate) struct PinTracker {
    /// The pinned pages, the budget and the unmaps in progress.
    #[pin]
    inner: Mutex<Pins>,
    /// Signalled whenever a page is unpinned (or a pin attempt given up).
    #[pin]
    released: CondVar,
}

impl PinTracker {
    /// No page pinned; a budget of `budget` pages.
    pub(crate) fn new(budget: u32) -> impl PinInit<Self> {
        pin_init!(Self {
            inner <- new_mutex!(
                Pins {
                    pinned: KVec::new(),
                    budget: budget as usize,
                    unmapping: [None; UNMAP_SLOTS],
                    unmapping_overflow: 0,
                    abort: None,
                },
                "mblit_pins"
            ),
            released <- new_condvar!("mblit_pins_released"),
        })
    }

    /// Number of pages pinned now.
    pub(crate) fn count(&self) -> usize {
        self.inner.lock().pinned.len()
    }

    /// `dma_unmap` of `[iova, iova + len)`: returns only when no page in
    /// the range is pinned; until then no page in it can be pinned, and the
    /// command in progress is told to stop if it holds one.
    pub(crate) fn unmap(&self, iova: u64, len: u64) {
        let end = iova.saturating_add(len);
        let mut st = self.inner.lock();
        let slot = st.unmapping.iter().position(Option::is_none);
        match slot {
            Some(i) => st.unmapping[i] = Some((iova, end)),
            // Bounded by the number of threads in dma_unmap.
            None => st.unmapping_overflow += 1,
        }
        if st.pinned_in(iova, end) {
            st.abort.get_or_insert(iova);
            while st.pinned_in(iova, end) {
                // Woken by CommandPins, which never waits for us.
                self.released.wait(&mut st);
            }
        }
        match slot {
            Some(i) => st.unmapping[i] = None,
            None => st.unmapping_overflow -= 1,
        }
    }
}

/// The pages one command has pinned; all unpinned on drop (in the engine,
/// with no lock held).
pub(crate) struct CommandPins<'a, T: Ops> {
    dev: &'a Device<T>,
    tracker: &'a PinTracker,
    pages: KVec<(PinnedPage, bool)>,
}

impl<'a, T: Ops> CommandPins<'a, T> {
    /// No page pinned yet for the command starting on `dev`: an abort
    /// meant for an earlier command is void (its pages are released, and
    /// ranges still being unmapped stay unpinnable).
    pub(crate) fn new(dev: &'a Device<T>, tracker: &'a PinTracker) -> Self {
        tracker.inner.lock().abort = None;
        Self {
            dev,
            tracker,
            pages: KVec::new(),
        }
    }

    /// Pages this command has pinned.
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    /// Fails with `ERR_UNMAPPED` when an unmap asked the command to stop.
    /// The engine calls this at every chunk it moves.
    pub(crate) fn check_abort(&self) -> Result<(), EngineError> {
        match self.tracker.inner.lock().abort {
            Some(start) => Err((ErrorCode::Unmapped, start)),
            None => Ok(()),
        }
    }

    /// The pinned page at `page_iova` with at least `access`, pinning it
    /// if needed. A page that cannot be pinned is reported as `fault`
    /// (`ERR_RING_FETCH` for a descriptor, `ERR_IOVA_FAULT` otherwise).
    pub(crate) fn page(
        &mut self,
        page_iova: u64,
        access: Access,
        fault: ErrorCode,
    ) -> Result<&PinnedPage, EngineError> {
        let write = access == Access::Write;
        {
            let mut st = self.tracker.inner.lock();
            if let Some(start) = st.abort {
                return Err((ErrorCode::Unmapped, start));
            }
            if let Some(start) = st.unmapping_at(page_iova) {
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
            // Both records get room before either is written, so a failed
            // allocation leaves no stale announcement behind.
            st.pinned
                .reserve(1, GFP_KERNEL)
                .map_err(|_| (ErrorCode::PinBudget, page_iova))?;
            self.pages
                .reserve(1, GFP_KERNEL)
                .map_err(|_| (ErrorCode::PinBudget, page_iova))?;
            // Announce the page before pinning it, so an unmap that races
            // with the pin waits for it. Cannot fail: room was made above.
            st.pinned
                .push_within_capacity(page_iova)
                .map_err(|_| (ErrorCode::PinBudget, page_iova))?;
        }
        match self.dev.pin_page(page_iova, write) {
            Ok(page) => {
                // Cannot fail: capacity was reserved above.
                if let Err(rejected) = self.pages.push_within_capacity((page, write)) {
                    drop(rejected);
                    self.forget(page_iova);
                    return Err((fault, page_iova));
                }
                let last = self.pages.len().checked_sub(1).ok_or((fault, page_iova))?;
                Ok(&self.pages[last].0)
            }
            Err(_) => {
                self.forget(page_iova);
                Err((fault, page_iova))
            }
        }
    }

    /// Removes one announcement of `page_iova` and wakes the unmaps that
    /// wait for pages to go.
    fn forget(&self, page_iova: u64) {
        let mut st = self.tracker.inner.lock();
        if let Some(i) = st.pinned.iter().position(|&p| p == page_iova) {
            // Cannot fail: `i` is in range.
            let _ = st.pinned.remove(i);
        }
        drop(st);
        self.tracker.released.notify_all();
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
