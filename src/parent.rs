// SPDX-License-Identifier: GPL-2.0

//! The mdev parent: mblit's types and the device-memory budget they share.
//!
//! Creating an mdev reserves its type's device memory out of the budget
//! (module parameter `mem_budget_mib`); removing it gives it back. A create
//! that does not fit fails with `ENOSPC`.

use crate::{
    device::MblitDevice,
    kapi::{mdev, vfio},
    logic::types::{self, Budget, TYPES},
};
use kernel::{debugfs::Dir, new_mutex, prelude::*, sync::Mutex};

/// One created mdev: its registered VFIO device (unregistered when this
/// is dropped) and its type.
pub(crate) struct Mdev {
    _vfio: vfio::Registration<MblitDevice>,
    type_index: usize,
}

/// The parent's driver data.
#[pin_data]
pub(crate) struct Parent {
    #[pin]
    budget: Mutex<Budget>,
    pin_budget: u32,
    /// `debugfs/mblit`, one directory per mdev below it.
    debug_root: Dir,
}

impl Parent {
    /// A parent with a device-memory budget of `budget_mib` whose mdevs may
    /// each pin `pin_budget` guest pages.
    pub(crate) fn new(budget_mib: u32, pin_budget: u32) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            budget <- new_mutex!(Budget::new(budget_mib), "mblit_budget"),
            pin_budget,
            debug_root: Dir::new(c"mblit"),
        })
    }
}

impl mdev::Driver for Parent {
    type Device = Mdev;

    const NAME: &'static CStr = c"mblit";

    const DEVICE_API: mdev::DeviceApi = mdev::DeviceApi::Pci;

    const TYPE_COUNT: usize = TYPES.len();

    fn type_names(type_index: usize) -> (&'static CStr, &'static CStr) {
        let ty = &TYPES[type_index];
        (ty.sysfs_name, ty.pretty_name)
    }

    fn probe(&self, mdev: &mdev::MdevDevice, type_index: usize) -> Result<KBox<Mdev>> {
        let ty = TYPES.get(type_index).ok_or(EINVAL)?;
        self.budget.lock().reserve(ty).map_err(|_| ENOSPC)?;
        let init = MblitDevice::new(
            type_index,
            self.pin_budget,
            &self.debug_root,
            mdev.device().name(),
        );
        let created = vfio::Device::register(mdev.device(), init).and_then(|vfio| {
            KBox::new(
                Mdev {
                    _vfio: vfio,
                    type_index,
                },
                GFP_KERNEL,
            )
            .map_err(Into::into)
        });
        match created {
            Ok(m) => {
                dev_dbg!(
                    mdev.device(),
                    "created, {} MiB device memory\n",
                    ty.vram_mib
                );
                Ok(m)
            }
            Err(e) => {
                self.budget.lock().release(ty);
                Err(e)
            }
        }
    }

    fn remove(&self, device: KBox<Mdev>) {
        let type_index = device.type_index;
        // Unregisters the VFIO device, waiting for its users to close it.
        drop(device);
        if let Some(ty) = TYPES.get(type_index) {
            self.budget.lock().release(ty);
        }
    }

    fn available(&self, type_index: usize) -> u32 {
        TYPES
            .get(type_index)
            .map_or(0, |ty| self.budget.lock().available(ty))
    }

    fn describe(&self, type_index: usize, buf: &mut [u8]) -> usize {
        TYPES
            .get(type_index)
            .map_or(0, |ty| types::describe(ty, buf))
    }
}
