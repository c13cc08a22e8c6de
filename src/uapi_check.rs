// SPDX-License-Identifier: GPL-2.0

//! Compile-time checks that the numbers `logic/` shares with the VFIO uAPI
//! equal the kernel's.
//!
//! `logic/` is also a host crate and cannot see the bindings, so it holds
//! its own copies of the few VFIO numbers it needs (and `mblit.h` holds the
//! same values for C users, checked by a host test in `logic/uapi.rs`).
//! This module sees both sides: a copy that drifts from the kernel's value
//! fails the module build.

use crate::{
    kapi::vfio::uapi,
    logic::{config_space, mig::MigState, region},
};

// The BARs `mblit.h` names are the vfio-pci region indexes of those BARs.
const _: () = assert!(config_space::BAR_REGS as u32 == uapi::PCI_BAR0_REGION_INDEX);
const _: () = assert!(config_space::BAR_VRAM as u32 == uapi::PCI_BAR2_REGION_INDEX);

// The DEVICE_STATE region: a vendor-type region, at the first index after
// the standard vfio-pci ones.
const _: () = assert!(
    region::REGION_TYPE_DEVICE_STATE
        == uapi::REGION_TYPE_PCI_VENDOR_TYPE | config_space::VENDOR_ID as u32
);
const _: () = assert!(region::STATE_REGION_INDEX == uapi::PCI_NUM_REGIONS);

// `MigState` carries the values of `enum vfio_device_mig_state`, all of them.
const _: () = {
    let states = [
        (MigState::Error, uapi::DEVICE_STATE_ERROR),
        (MigState::Stop, uapi::DEVICE_STATE_STOP),
        (MigState::Running, uapi::DEVICE_STATE_RUNNING),
        (MigState::StopCopy, uapi::DEVICE_STATE_STOP_COPY),
        (MigState::Resuming, uapi::DEVICE_STATE_RESUMING),
        (MigState::RunningP2p, uapi::DEVICE_STATE_RUNNING_P2P),
        (MigState::PreCopy, uapi::DEVICE_STATE_PRE_COPY),
        (MigState::PreCopyP2p, uapi::DEVICE_STATE_PRE_COPY_P2P),
    ];
    assert!(states.len() == uapi::DEVICE_STATE_NR as usize);
    let mut i = 0;
    while i < states.len() {
        let (s, v) = states[i];
        assert!(s.value() == v);
        assert!(matches!(MigState::from_u32(v), Some(t) if t as u32 == s as u32));
        i += 1;
    }
    assert!(MigState::from_u32(uapi::DEVICE_STATE_NR).is_none());
};
