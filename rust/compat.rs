// SPDX-License-Identifier: GPL-2.0

//! What differs between the kernel releases this layer builds against, in
//! one place (docs/kernel-releases.md).
//!
//! The rest of the driver uses these items and never asks which release it
//! is built for. Where an API exists on every supported release, this file
//! uses it and needs no switch; where it does not, `Kbuild` probes the
//! target kernel's own Rust sources and passes a `--cfg kapi_*` flag, so a
//! new release that keeps an API needs no change here.

use kernel::{error::Error, prelude::*};

use super::bindings;

/// An [`Error`] from a C errno number. `kernel::error::code` declares only
/// some errnos, and which ones changes between releases (7.2 has neither
/// `ENOMSG` nor `EOPNOTSUPP`); every release's bindings have the numbers.
fn errno(e: u32) -> Error {
    // The numbers below are small positive constants, so the negation is
    // exact and `from_errno` takes them as they are.
    Error::from_errno(-(e as i32))
}

/// `ENOMSG`: no message of the desired type (pre-copy's temporary end of
/// stream, `<linux/vfio.h>`).
pub(crate) fn enomsg() -> Error {
    errno(bindings::ENOMSG)
}

/// `EPROTONOSUPPORT`: here, a device state of a format version this
/// driver does not read.
pub(crate) fn eprotonosupport() -> Error {
    errno(bindings::EPROTONOSUPPORT)
}

/// A module parameter's value, whichever way the release hands it out:
/// 7.3's `ModuleParamAccess::value()` returns a copy, 7.2's a reference.
/// [`param`] takes either, with no switch.
pub(crate) trait ParamValue<T> {
    /// The value.
    fn get(self) -> T;
}

impl<T: Copy> ParamValue<T> for T {
    fn get(self) -> T {
        self
    }
}

impl<T: Copy> ParamValue<T> for &T {
    fn get(self) -> T {
        *self
    }
}

/// The value of a module parameter (`module_parameters::NAME.value()`).
pub(crate) fn param<T: Copy>(value: impl ParamValue<T>) -> T {
    value.get()
}

/// This module's `struct module` (C's `THIS_MODULE`), for ops tables the
/// driver hands to C.
///
/// 7.3's `module!` provides it through `ModuleMetadata::THIS_MODULE` and
/// `kernel::module::this_module`; 7.2's as a `THIS_MODULE` static at the
/// crate root. `Kbuild` sets `kapi_module_metadata` for the former.
pub(crate) const fn this_module_ptr() -> *mut bindings::module {
    #[cfg(kapi_module_metadata)]
    let m = kernel::module::this_module::<crate::LocalModule>();
    #[cfg(not(kapi_module_metadata))]
    let m = &crate::THIS_MODULE;
    m.as_ptr()
}

/// Runs the pin-initialiser `init` on `slot`.
///
/// 7.3's `pin_init` has `raw_try_init` (and renamed the trait method it
/// calls); 7.2's has only `PinInit::__pinned_init`. `Kbuild` sets
/// `kapi_raw_try_init` when the target's `pin_init` has the former.
///
/// # Safety
///
/// `slot` is valid for writes and uninitialised; it does not move until
/// its value is dropped; on `Err` the caller does not touch it again, only
/// frees it.
pub(crate) unsafe fn init_slot<T, E>(slot: *mut T, init: impl PinInit<T, E>) -> Result<(), E> {
    #[cfg(kapi_raw_try_init)]
    // SAFETY: this function's own contract is `raw_try_init`'s.
    let ret = unsafe { pin_init::raw_try_init(slot, init) };
    #[cfg(not(kapi_raw_try_init))]
    // SAFETY: this function's own contract is `__pinned_init`'s.
    let ret = unsafe { init.__pinned_init(slot) };
    ret
}
