// SPDX-License-Identifier: GPL-2.0

//! mblit: a migratable mediated DMA blitter.
//!
//! Registers a class device `mblit` as an mdev parent with one type per
//! device-memory size (see [`logic::types`]); every mdev created under it is
//! a VFIO device (see `device.rs`).

// The driver is safe Rust: all FFI and raw-pointer code lives in `kapi`
// (rust/), behind the safe types it exports; the compiler holds every other
// module to that.
#![deny(unsafe_code)]

use kernel::prelude::*;

mod bar2;
mod device;
mod dirty_log;
mod engine;
mod hw;
mod irq;
#[allow(unsafe_code)]
#[path = "../rust/mod.rs"]
mod kapi;
// The `pub` items of `logic` are the host crate's API (src/logic/lib.rs,
// used by tests/ and fuzz/); in the module they are crate-visible only.
#[allow(unreachable_pub)]
mod logic;
mod migration;
mod parent;
mod pins;
mod state_region;
mod streams;
mod uapi_check;
mod vram;

use kapi::{class::ClassDevice, mdev};

module! {
    type: MblitModule,
    name: "mblit",
    authors: ["The mblit developers"],
    description: "Migratable mediated DMA blitter (VFIO mdev)",
    license: "GPL",
    // iova_bitmap_set(), for DMA logging reports.
    imports_ns: ["IOMMUFD"],
    params: {
        mem_budget_mib: u32 {
            default: crate::logic::types::DEFAULT_BUDGET_MIB,
            description: "Device memory all mblit mdevs may use together, in MiB",
        },
        pin_budget: u32 {
            default: 1024,
            description: "Guest pages each mblit mdev may have pinned at once",
        },
    },
}

#[pin_data]
struct MblitModule {
    /// The mdev driver and parent (which owns the `mblit` class device).
    #[pin]
    mdev: mdev::Registration<parent::Parent, ClassDevice>,
}

impl kernel::InPlaceModule for MblitModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let budget: u32 = kapi::compat::param(module_parameters::mem_budget_mib.value());
        let pin_budget: u32 = kapi::compat::param(module_parameters::pin_budget.value());
        try_pin_init!(Self {
            mdev <- {
                kapi::check_layout()?;
                mdev::Registration::new(
                    module,
                    ClassDevice::new(c"mblit")?,
                    parent::Parent::new(budget, pin_budget),
                )
            },
        })
    }
}
