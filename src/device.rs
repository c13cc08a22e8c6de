// SPDX-License-Identifier: GPL-2.0

//! One mblit mdev as a VFIO device: routes each VFIO call to the part of
//! the device it belongs to.
//!
//! Locks: none yet; the device model (registers, engine, migration) adds
//! them here with their order.

use crate::{
    kapi::vfio::{self, ioctl, uapi, Device},
    logic::types::TYPES,
};
use kernel::{
    prelude::*,
    uaccess::{UserSliceReader, UserSliceWriter},
};

/// The driver data of one mblit VFIO device.
#[pin_data]
pub(crate) struct MblitDevice {
    type_index: usize,
}

impl MblitDevice {
    /// A device of mdev type `type_index`.
    pub(crate) fn new(type_index: usize) -> impl PinInit<Self, Error> {
        try_pin_init!(Self { type_index })
    }

    /// Device memory size in bytes.
    #[allow(dead_code)]
    pub(crate) fn vram_bytes(&self) -> u64 {
        TYPES[self.type_index].vram_bytes()
    }

    /// `VFIO_DEVICE_GET_INFO`.
    fn get_info(arg: UserPtr) -> Result<isize> {
        // struct vfio_device_info: argsz, flags, num_regions, num_irqs
        // (cap_offset and pad follow; mblit reports no capabilities).
        const MINSZ: usize = 16;
        let (mut info, _argsz) = vfio::read_arg::<MINSZ>(arg, MINSZ)?;
        let flags = uapi::DEVICE_FLAGS_PCI | uapi::DEVICE_FLAGS_RESET;
        info[4..8].copy_from_slice(&flags.to_ne_bytes());
        info[8..12].copy_from_slice(&0u32.to_ne_bytes());
        info[12..16].copy_from_slice(&0u32.to_ne_bytes());
        vfio::write_arg(arg, &info)?;
        Ok(0)
    }
}

impl vfio::Ops for MblitDevice {
    fn read(_dev: &Device<Self>, _out: &mut UserSliceWriter, _offset: u64) -> Result<usize> {
        // No regions yet.
        Err(EINVAL)
    }

    fn write(_dev: &Device<Self>, _input: &mut UserSliceReader, _offset: u64) -> Result<usize> {
        Err(EINVAL)
    }

    fn ioctl(_dev: &Device<Self>, cmd: u32, arg: UserPtr) -> Result<isize> {
        match cmd {
            ioctl::DEVICE_GET_INFO => Self::get_info(arg),
            // Nothing to reset yet: the device has no state.
            ioctl::DEVICE_RESET => Ok(0),
            _ => Err(ENOTTY),
        }
    }
}
