// SPDX-License-Identifier: GPL-2.0

//! VFIO ioctl arguments: the uAPI structs a driver reads from and writes
//! back to the user, whole and typed.

use super::bindings;
use core::mem::offset_of;
use kernel::{
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::UserSlice,
};

/// A VFIO ioctl argument: a C struct of integers that starts with
/// `u32 argsz`, the size the user says its buffer has. The driver reads
/// and writes the first [`Arg::MINSZ`] bytes of it, whole.
pub(crate) trait Arg: FromBytes + AsBytes + Default {
    /// The bytes every caller must provide (the uAPI's `minsz`): the struct
    /// up to the last field the driver uses.
    const MINSZ: usize;
    /// The user's `argsz`.
    fn argsz(&self) -> u32;
}

/// The uAPI structs the driver exchanges with the user.
pub(crate) type DeviceInfo = bindings::vfio_device_info;
/// `struct vfio_irq_info`.
pub(crate) type IrqInfo = bindings::vfio_irq_info;
/// `struct vfio_irq_set` without its data (see [`read_arg_tail`]).
pub(crate) type IrqSet = bindings::vfio_irq_set;
/// `struct vfio_precopy_info`.
pub(crate) type PrecopyInfo = bindings::vfio_precopy_info;

/// The size of the field `f` selects.
const fn field_size<T, F>(_f: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Implements [`Arg`] (and the byte conversions it needs) for bindgen's
/// copy of a uAPI struct, given all its fields in order: `MINSZ` ends
/// after field `$last`, and the fields must fill the struct (no padding),
/// which the build checks.
macro_rules! impl_arg {
    ($($t:ty { $($field:ident),* } minsz $last:ident;)*) => {$(
        const _: () = assert!(size_of::<$t>() == 0 $(+ field_size(|t: &$t| &t.$field))*);
        // SAFETY: every field is an integer (or, for `vfio_irq_set`, the
        // zero-sized trailing array), so every byte pattern is a valid
        // value.
        unsafe impl FromBytes for $t {}
        // SAFETY: every field is an integer and they fill the struct (no
        // padding, checked above), so every byte of a value is
        // initialised.
        unsafe impl AsBytes for $t {}
        impl Arg for $t {
            const MINSZ: usize = offset_of!($t, $last) + field_size(|t: &$t| &t.$last);
            fn argsz(&self) -> u32 {
                self.argsz
            }
        }
    )*};
}

impl_arg! {
    bindings::vfio_device_info {
        argsz, flags, num_regions, num_irqs, cap_offset, pad
    } minsz num_irqs;
    bindings::vfio_irq_info { argsz, flags, index, count } minsz count;
    bindings::vfio_irq_set { argsz, flags, index, start, count, data } minsz count;
    bindings::vfio_precopy_info { argsz, flags, initial_bytes, dirty_bytes } minsz dirty_bytes;
}

/// Reads the user ioctl argument `arg` of type `T`: its first `T::MINSZ`
/// bytes (the rest reads as zero). Fails with `EINVAL` when its `argsz` is
/// smaller than `T::MINSZ`, the VFIO convention.
pub(crate) fn read_arg<T: Arg>(arg: UserPtr) -> Result<T> {
    let mut v = T::default();
    UserSlice::new(arg, T::MINSZ)
        .reader()
        .read_slice(&mut v.as_bytes_mut()[..T::MINSZ])?;
    if (v.argsz() as usize) < T::MINSZ {
        return Err(EINVAL);
    }
    Ok(v)
}

/// Writes the first `T::MINSZ` bytes of `v` back to the user ioctl
/// argument `arg`.
pub(crate) fn write_arg<T: Arg>(arg: UserPtr, v: &T) -> Result {
    UserSlice::new(arg, T::MINSZ)
        .writer()
        .write_slice(&v.as_bytes()[..T::MINSZ])
}

/// Reads `len` bytes at `offset` of a user ioctl argument (the data that
/// follows a fixed header, e.g. `vfio_irq_set.data`) into `out`.
pub(crate) fn read_arg_tail(arg: UserPtr, offset: usize, out: &mut [u8]) -> Result {
    UserSlice::new(arg.wrapping_byte_add(offset), out.len())
        .reader()
        .read_slice(out)
}
