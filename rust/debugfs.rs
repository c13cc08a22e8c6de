// SPDX-License-Identifier: GPL-2.0

//! Read-only debugfs counters: a directory of `u64` files, each showing
//! one counter, built on the kernel crate's [`kernel::debugfs`].
//!
//! Each file reads as the counter in decimal and a newline (what the C
//! `debugfs_create_u64()` shows), mode 0400 (`kernel::debugfs`'s mode for
//! read-only files). The directory can be removed before the counters go
//! away ([`Counters::remove`]: an object that outlives its name, so that a
//! new one can take the name): `kernel::debugfs` removes a directory only
//! with the data it owns (a [`Scope`]), so the scope owns a reference to
//! the counters and [`Counters`] another.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    debugfs::{Dir, Scope},
    fmt, new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
};

/// The counters, shared by [`Counters`] and the debugfs files.
type Values<const N: usize> = Arc<[AtomicU64; N]>;

/// `N` named `u64` counters shown in their own debugfs directory.
///
/// Without debugfs (or if creating the directory fails) the counters count
/// all the same, unseen.
#[pin_data]
pub(crate) struct Counters<const N: usize> {
    values: Values<N>,
    /// The directory and its files, until they are removed.
    #[pin]
    dir: Mutex<Option<Pin<KBox<Scope<Values<N>>>>>>,
}

impl<const N: usize> Counters<N> {
    /// Zeroed counters with files `names` in a new directory `name` under
    /// `parent`.
    pub(crate) fn new(
        parent: &Dir,
        name: &CStr,
        names: &'static [&'static CStr; N],
    ) -> impl PinInit<Self, Error> {
        // Creates the directory now, so the initialiser borrows nothing.
        let (values, dir) = match Self::create(parent, name, names) {
            Ok((values, dir)) => (Ok(values), Some(dir)),
            Err(e) => (Err(e), None),
        };
        try_pin_init!(Self {
            values: values?,
            dir <- new_mutex!(dir, "debugfs_counters_dir"),
        })
    }

    /// The counters, and the directory `name` under `parent` with a file
    /// for each.
    fn create(
        parent: &Dir,
        name: &CStr,
        names: &'static [&'static CStr; N],
    ) -> Result<(Values<N>, Pin<KBox<Scope<Values<N>>>>)> {
        let values = Arc::new([const { AtomicU64::new(0) }; N], GFP_KERNEL)?;
        let files = parent.scope(values.clone(), name, move |values, dir| {
            for (value, file) in values.iter().zip(names.iter()) {
                dir.read_callback_file(file, value, &Self::show);
            }
        });
        Ok((values, KBox::pin_init(files, GFP_KERNEL)?))
    }

    /// A file's contents: the counter in decimal, then a newline.
    fn show(value: &AtomicU64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", value.load(Ordering::Relaxed))
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

    /// Removes the directory and its files now (waiting for readers in
    /// them); the counters keep counting, unseen.
    pub(crate) fn remove(&self) {
        let dir = self.dir.lock().take();
        drop(dir);
    }
}
