// SPDX-License-Identifier: GPL-2.0

//! Eventfds a user hands to the driver (interrupt triggers).
//!
//! C header: [`include/linux/eventfd.h`](srctree/include/linux/eventfd.h).

use super::bindings;
use core::ptr::NonNull;
use kernel::{error::from_err_ptr, prelude::*};

/// A reference to an eventfd context, taken from a user's file descriptor
/// and dropped on drop.
///
/// # Invariants
///
/// `ctx` holds a reference taken by `eventfd_ctx_fdget()`.
pub(crate) struct EventFd {
    ctx: NonNull<bindings::eventfd_ctx>,
}

impl EventFd {
    /// Takes a reference to the eventfd behind the caller's `fd`
    /// (`EBADF`/`EINVAL` when it is not one).
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: any integer may be passed; the function validates it and
        // returns a referenced context or an error pointer.
        let ctx = from_err_ptr(unsafe { bindings::eventfd_ctx_fdget(fd) })?;
        // INVARIANT: a successful fdget returned a referenced context.
        Ok(Self {
            ctx: NonNull::new(ctx).ok_or(EINVAL)?,
        })
    }

    /// Adds one to the eventfd's counter and wakes its waiters.
    pub(crate) fn signal(&self) {
        // SAFETY: the context is referenced (type invariant); signalling
        // may happen from any context the driver calls this from (process
        // context or under a spinlock).
        unsafe { bindings::kapi_eventfd_signal(self.ctx.as_ptr()) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: drops the reference taken in `from_fd` (type invariant).
        unsafe { bindings::eventfd_ctx_put(self.ctx.as_ptr()) };
    }
}

// SAFETY: an eventfd context reference may be used and dropped from any
// thread.
unsafe impl Send for EventFd {}
// SAFETY: `signal` is safe to call concurrently.
unsafe impl Sync for EventFd {}
