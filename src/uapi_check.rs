// SPDX-License-Identifier: GPL-2.0

//! Compile-time checks that the numbers `logic/` shares with the VFIO uAPI
//! equal the kernel's.
//!
//! `logic/` is also a host crate and cannot see the bindings, so it holds
//! its own copies of the few VFIO numbers it needs (and `mblit.h` holds the
//! same values for C users, checked by a host test in `logic/uapi.rs`).
//! This module sees both sides: a copy that drifts from the kernel's value
//! fails the module build.

use crate::{kapi::vfio::uapi, logic::config_space};

// The BARs `mblit.h` names are the vfio-pci region indexes of those BARs.
const _: () = assert!(config_space::BAR_REGS as u32 == uapi::PCI_BAR0_REGION_INDEX);
const _: () = assert!(config_space::BAR_VRAM as u32 == uapi::PCI_BAR2_REGION_INDEX);
