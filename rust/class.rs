// SPDX-License-Identifier: GPL-2.0

//! A device class with one device in it, to serve as an mdev parent.
//!
//! The mdev core names each type directory `<driver or class name>-<type>`,
//! so a class device named after the driver gives the familiar
//! `/sys/class/<name>/<name>/mdev_supported_types/<name>-<type>` layout (the
//! same shape as the `mtty` sample's).

use super::{bindings, mdev::Parent};
use core::ptr::{null_mut, NonNull};
use kernel::{error::from_err_ptr, prelude::*};

/// A registered class and a device of that class, both named `name`;
/// unregistered (device first) on drop.
///
/// # Invariants
///
/// `class` was returned by `class_create()` and `dev` by `device_create()` in
/// that class; both stay registered until `drop`.
pub(crate) struct ClassDevice {
    class: NonNull<bindings::class>,
    dev: NonNull<bindings::device>,
}

impl ClassDevice {
    /// Registers the class `name` and a device `name` in it.
    pub(crate) fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: `name` is a NUL-terminated string that lives for the
        // whole module lifetime, as `class_create()` requires (it keeps the
        // pointer).
        let class = from_err_ptr(unsafe { bindings::class_create(name.as_char_ptr()) })?;
        let class = NonNull::new(class).ok_or(ENOMEM)?;
        // SAFETY: `class` is a registered class; a NULL parent, a zero
        // devt and NULL drvdata are allowed; the format is "%s" with one
        // NUL-terminated string argument.
        let dev = from_err_ptr(unsafe {
            bindings::device_create(
                class.as_ptr(),
                null_mut(),
                0,
                null_mut(),
                c"%s".as_char_ptr(),
                name.as_char_ptr(),
            )
        });
        let dev = match dev.map(NonNull::new) {
            Ok(Some(dev)) => dev,
            Ok(None) | Err(_) => {
                // SAFETY: `class` was created above and has no devices.
                unsafe { bindings::class_destroy(class.as_ptr()) };
                return Err(dev.err().unwrap_or(ENOMEM));
            }
        };
        // INVARIANT: both were registered above.
        Ok(Self { class, dev })
    }
}

// SAFETY: `device` always returns `self.dev`, which `new` registered and
// only `drop` unregisters (type invariants).
unsafe impl Parent for ClassDevice {
    fn device(&self) -> &kernel::device::Device {
        // SAFETY: `dev` is registered, and so referenced, until `drop`
        // (type invariant), which the `&self` borrow excludes.
        unsafe { kernel::device::Device::from_raw(self.dev.as_ptr()) }
    }
}

impl Drop for ClassDevice {
    fn drop(&mut self) {
        // SAFETY: by the type invariants both are registered; the device
        // goes first, then its (now empty) class.
        unsafe {
            bindings::device_unregister(self.dev.as_ptr());
            bindings::class_destroy(self.class.as_ptr());
        }
    }
}

// SAFETY: the driver core's class and device registration functions may be
// called from any thread.
unsafe impl Send for ClassDevice {}
// SAFETY: `&ClassDevice` only hands out the raw pointer; no shared mutation.
unsafe impl Sync for ClassDevice {}
