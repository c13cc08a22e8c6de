// SPDX-License-Identifier: GPL-2.0

//! Read-only debugfs counters: a directory of `u64` files, each showing
//! one counter the directory owns.
//!
//! C header: [`include/linux/debugfs.h`](srctree/include/linux/debugfs.h).

use super::bindings;
use core::{
    ptr::null_mut,
    sync::atomic::{AtomicU64, Ordering},
};
use kernel::{new_mutex, prelude::*, sync::Mutex};

/// A debugfs directory (removed with its contents on drop). Creation never
/// fails: without debugfs the directory is simply absent, as the C API
/// intends.
pub(crate) struct Dir {
    dentry: *mut bindings::dentry,
}

impl Dir {
    /// Creates `name` under `parent` (the debugfs root when `None`).
    pub(crate) fn new(name: &CStr, parent: Option<&Dir>) -> Self {
        let parent = parent.map_or(null_mut(), |p| p.dentry);
        // SAFETY: `name` is NUL-terminated and copied by debugfs; `parent`
        // is NULL or a directory kept alive by the `&Dir` borrow. Errors
        // come back as error pointers, which every debugfs function
        // accepts and ignores.
        let dentry = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), parent) };
        Self { dentry }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: removes what `new` created (an error pointer is ignored);
        // files inside are removed with it, waiting for open readers.
        unsafe { bindings::debugfs_remove(self.dentry) };
    }
}

// SAFETY: debugfs functions may be called from any thread.
unsafe impl Send for Dir {}
// SAFETY: `&Dir` only lends the dentry as a parent, which is thread-safe.
unsafe impl Sync for Dir {}

/// `N` named `u64` counters shown in their own debugfs directory.
///
/// # Invariants
///
/// The files in `dir` point into `values`; `dir` (and thus the files) is
/// removed in [`Counters::remove`] or in `drop`, before `values` is freed,
/// and `values` never moves (the counters are pinned).
#[pin_data(PinnedDrop)]
pub(crate) struct Counters<const N: usize> {
    values: [AtomicU64; N],
    /// The directory, until it is removed.
    #[pin]
    dir: Mutex<Option<Dir>>,
}

impl<const N: usize> Counters<N> {
    /// Zeroed counters with files `names` in a new directory `name` under
    /// `parent`.
    pub(crate) fn new(
        parent: &Dir,
        name: &CStr,
        names: &'static [&'static CStr; N],
    ) -> impl PinInit<Self, Error> {
        let dir = Dir::new(name, Some(parent));
        try_pin_init!(Self {
            values: [const { AtomicU64::new(0) }; N],
            dir <- new_mutex!(Some(dir), "debugfs_counters_dir"),
        })
        .pin_chain(move |this| {
            let dir = this.dir.lock();
            let Some(dir) = dir.as_ref() else {
                return Ok(());
            };
            for (value, file) in this.values.iter().zip(names.iter()) {
                // SAFETY: `file` is NUL-terminated; the value is a pinned
                // u64 that outlives the file (type invariant); debugfs
                // reads it without synchronisation, which is fine for a
                // counter shown to a human.
                unsafe {
                    bindings::debugfs_create_u64(
                        file.as_char_ptr(),
                        0o444,
                        dir.dentry,
                        value.as_ptr(),
                    )
                };
            }
            Ok(())
        })
    }

    /// Adds `n` to counter `i` (ignored when out of range); wraps.
    pub(crate) fn add(&self, i: usize, n: u64) {
        if let Some(v) = self.values.get(i) {
            v.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sets counter `i`.
    pub(crate) fn set(&self, i: usize, n: u64) {
        if let Some(v) = self.values.get(i) {
            v.store(n, Ordering::Relaxed);
        }
    }

    /// Removes the directory and its files now (the counters keep
    /// counting, unseen).
    pub(crate) fn remove(&self) {
        let dir = self.dir.lock().take();
        drop(dir);
    }
}

#[pinned_drop]
impl<const N: usize> PinnedDrop for Counters<N> {
    fn drop(self: Pin<&mut Self>) {
        // Removes the files before `values` goes away (type invariant).
        self.remove();
    }
}
