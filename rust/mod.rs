// SPDX-License-Identifier: GPL-2.0

//! The driver's Rust layer over the C APIs that have no upstream Rust
//! abstraction: VFIO devices, the mdev bus, class devices.
//!
//! Every raw pointer, C callback and bindgen type stays in here; the driver
//! in `src/` uses only the safe types these modules export. Nothing here
//! knows which device the driver emulates: names, types and behaviour come
//! from the driver, through the traits these modules declare.

pub(crate) mod bindings;
pub(crate) mod class;
pub(crate) mod compat;
pub(crate) mod crc;
pub(crate) mod datafile;
pub(crate) mod debugfs;
pub(crate) mod eventfd;
pub(crate) mod mdev;
pub(crate) mod vfio;

use kernel::prelude::*;

/// The C `struct device` behind `dev`, to hand to a C function that takes
/// it (valid while `dev` is borrowed; `kernel::device::Device::as_raw` is
/// private to the kernel crate).
pub(crate) fn device_ptr(dev: &kernel::device::Device) -> *mut bindings::device {
    // `kernel::device::Device` is a transparent wrapper of the C struct, so
    // its address is the `struct device`'s.
    core::ptr::from_ref(dev).cast_mut().cast()
}

/// Whether a log message that a user can provoke may be printed now: one
/// shared rate limit (the kernel's default interval and burst) keeps any
/// user from flooding the kernel log.
pub(crate) fn log_ratelimit() -> bool {
    // SAFETY: `kapi_log_ratelimit` takes no arguments and only updates its
    // own static ratelimit state, under that state's lock.
    unsafe { bindings::kapi_log_ratelimit() }
}

/// Checks that the generated bindings agree with the C compiler about the
/// layout of the structures the driver embeds or reaches into.
///
/// bindgen's own layout tests compare against libclang's view at build
/// time; this compares against the view of the compiler that built the
/// kernel (GCC), which is what the VFIO and mdev cores were compiled with.
pub(crate) fn check_layout() -> Result {
    use core::mem::{offset_of, size_of};

    let mut c = bindings::kapi_c_layout::default();
    // SAFETY: `kapi_c_layout` only writes the fields of the struct it is
    // given, which is valid for writes for the duration of the call.
    unsafe { bindings::kapi_c_layout(&mut c) };

    let checks: [(&str, usize, usize); 8] = [
        (
            "sizeof(struct vfio_device)",
            c.vfio_device_size,
            size_of::<bindings::vfio_device>(),
        ),
        (
            "sizeof(struct vfio_device_ops)",
            c.vfio_device_ops_size,
            size_of::<bindings::vfio_device_ops>(),
        ),
        (
            "sizeof(struct mdev_device)",
            c.mdev_device_size,
            size_of::<bindings::mdev_device>(),
        ),
        (
            "offsetof(struct mdev_device, type)",
            c.mdev_device_type_offset,
            offset_of!(bindings::mdev_device, type_),
        ),
        (
            "sizeof(struct mdev_type)",
            c.mdev_type_size,
            size_of::<bindings::mdev_type>(),
        ),
        (
            "sizeof(struct mdev_parent)",
            c.mdev_parent_size,
            size_of::<bindings::mdev_parent>(),
        ),
        (
            "sizeof(struct mdev_driver)",
            c.mdev_driver_size,
            size_of::<bindings::mdev_driver>(),
        ),
        (
            "offsetof(struct mdev_driver, driver)",
            c.mdev_driver_driver_offset,
            offset_of!(bindings::mdev_driver, driver),
        ),
    ];
    let mut ok = true;
    for (what, in_c, in_rust) in checks {
        if in_c != in_rust {
            pr_err!("layout mismatch: {what} is {in_c} in C, {in_rust} in Rust\n");
            ok = false;
        }
    }
    if ok {
        Ok(())
    } else {
        Err(EINVAL)
    }
}
