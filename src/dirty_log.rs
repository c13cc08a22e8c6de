// SPDX-License-Identifier: GPL-2.0

//! Device DMA logging (`vfio_log_ops`, docs/dirty-tracking.md): the guest
//! pages the engine wrote, inside the ranges the user asked for, since
//! logging started or the last report.
//!
//! [`DirtyLog`] owns its lock, which it takes alone: no other lock of the
//! device is held while it is held, and it holds no other (device.rs,
//! `# Locks`).

// The granule the engine pins, writes and logs at.
use crate::pins::GUEST_PAGE as LOG_PAGE;
use kernel::{new_mutex, prelude::*, sync::Mutex};

/// Most 4 KiB pages all ranges together may cover (1 TiB of IOVA space):
/// bounds the bitmaps a user can make the driver allocate (32 MiB).
const MAX_LOGGED_PAGES: u64 = 1 << 28;

struct Range {
    first: u64,
    last: u64,
    /// One bit per 4 KiB page of the range.
    bits: KVVec<u64>,
}

/// What the log's lock guards.
#[derive(Default)]
struct Inner {
    /// The ranges being logged, each with its bitmap.
    ranges: KVec<Range>,
    /// Logging was started and not stopped since.
    active: bool,
}

/// The device's DMA log.
#[pin_data]
pub(crate) struct DirtyLog {
    /// The ranges and their bitmaps, and whether logging is on.
    #[pin]
    inner: Mutex<Inner>,
}

impl DirtyLog {
    /// An inactive log.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            inner <- new_mutex!(Inner::default(), "mblit_dirty_log"),
        })
    }

    /// Starts logging writes to `ranges` (`(first, last)` IOVAs, already
    /// checked by the VFIO core for alignment and overlap); `EBUSY` if it
    /// is already on.
    pub(crate) fn start(&self, ranges: &[(u64, u64)], page_size: &mut u64) -> Result {
        self.inner.lock().start(ranges, page_size)
    }

    /// Stops logging and forgets everything.
    pub(crate) fn stop(&self) {
        self.inner.lock().stop();
    }

    /// The engine wrote guest page `page_iova`.
    pub(crate) fn mark(&self, page_iova: u64) {
        self.inner.lock().mark(page_iova);
    }

    /// Calls `report(iova)` for every logged page in `[iova, iova +
    /// length)` and forgets it; `EINVAL` if logging is off.
    pub(crate) fn read_and_clear(&self, iova: u64, length: u64, report: impl FnMut(u64)) -> Result {
        self.inner.lock().read_and_clear(iova, length, report)
    }
}

impl Inner {
    fn start(&mut self, ranges: &[(u64, u64)], page_size: &mut u64) -> Result {
        if self.active {
            return Err(EBUSY);
        }
        if !page_size.is_power_of_two() {
            return Err(EINVAL);
        }
        let mut total = 0u64;
        let mut list = KVec::with_capacity(ranges.len(), GFP_KERNEL)?;
        for &(first, last) in ranges {
            // The core hands a zero-length range over as `last = first -
            // 1`; refuse it rather than let the subtraction wrap.
            if last < first {
                return Err(EINVAL);
            }
            // The first page starts at `first` rounded down: count from there.
            let base = first - first % LOG_PAGE;
            // At most 2^52 + 1: no overflow.
            let pages = (last - base) / LOG_PAGE + 1;
            total = total.saturating_add(pages);
            if total > MAX_LOGGED_PAGES {
                return Err(E2BIG);
            }
            let words = usize::try_from(pages.div_ceil(64)).map_err(|_| E2BIG)?;
            list.push(
                Range {
                    first: base,
                    last,
                    // A failed allocation is the user's ENOMEM, not a
                    // kernel warning; the bitmaps are the user's memory.
                    bits: KVVec::from_elem(0u64, words, GFP_KERNEL_ACCOUNT | __GFP_NOWARN)?,
                },
                GFP_KERNEL,
            )?;
        }
        self.ranges = list;
        self.active = true;
        Ok(())
    }

    fn stop(&mut self) {
        self.ranges = KVec::new();
        self.active = false;
    }

    fn mark(&mut self, page_iova: u64) {
        // A test build (Kbuild `MBLIT_BROKEN_DIRTY_LOG=y`, for make e2e's
        // negative run only) logs nothing, to show that a lost page fails
        // the end-to-end check.
        if !self.active || cfg!(mblit_broken_dirty_log) {
            return;
        }
        // The page's last byte: `page_iova` is page aligned, so this never
        // passes 2^64 - 1 (the top page of IOVA space included).
        let page_last = page_iova | (LOG_PAGE - 1);
        for r in self.ranges.iter_mut() {
            if page_last >= r.first && page_iova <= r.last {
                // `r.first` is page aligned and not above `page_iova`.
                let bit = (page_iova.max(r.first) - r.first) / LOG_PAGE;
                if let Some(w) = r.bits.get_mut((bit / 64) as usize) {
                    *w |= 1u64 << (bit % 64);
                }
            }
        }
    }

    fn read_and_clear(&mut self, iova: u64, length: u64, mut report: impl FnMut(u64)) -> Result {
        if !self.active {
            return Err(EINVAL);
        }
        // Inclusive end: a report may cover the top page of IOVA space.
        let Some(last) = length.checked_sub(1) else {
            return Ok(());
        };
        let last = iova.checked_add(last).ok_or(EINVAL)?;
        for r in self.ranges.iter_mut() {
            for (wi, w) in r.bits.iter_mut().enumerate() {
                let mut bits = *w;
                while bits != 0 {
                    let b = bits.trailing_zeros() as u64;
                    bits &= bits - 1;
                    // A set bit is a page inside the range, whose start
                    // and length fit in u64: none of this overflows.
                    let page = r.first + (wi as u64 * 64 + b) * LOG_PAGE;
                    if page >= iova && page <= last {
                        report(page);
                        *w &= !(1u64 << b);
                    }
                }
            }
        }
        Ok(())
    }
}
