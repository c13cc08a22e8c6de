// SPDX-License-Identifier: GPL-2.0

//! uAPI flag and count values a driver reports.

use super::bindings;

/// `VFIO_DEVICE_FLAGS_PCI`.
pub(crate) const DEVICE_FLAGS_PCI: u32 = bindings::VFIO_DEVICE_FLAGS_PCI;
/// `VFIO_DEVICE_FLAGS_RESET`.
pub(crate) const DEVICE_FLAGS_RESET: u32 = bindings::VFIO_DEVICE_FLAGS_RESET;
/// `VFIO_REGION_INFO_FLAG_READ`.
pub(crate) const REGION_INFO_FLAG_READ: u32 = bindings::VFIO_REGION_INFO_FLAG_READ;
/// `VFIO_REGION_INFO_FLAG_WRITE`.
pub(crate) const REGION_INFO_FLAG_WRITE: u32 = bindings::VFIO_REGION_INFO_FLAG_WRITE;
/// `VFIO_REGION_TYPE_PCI_VENDOR_TYPE`: the type bit of a vendor's own
/// region (`vfio_region_info_cap_type.type`).
pub(crate) const REGION_TYPE_PCI_VENDOR_TYPE: u32 = bindings::VFIO_REGION_TYPE_PCI_VENDOR_TYPE;
/// `VFIO_PCI_NUM_REGIONS`: the standard vfio-pci region indexes.
pub(crate) const PCI_NUM_REGIONS: u32 = bindings::VFIO_PCI_NUM_REGIONS;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub(crate) const PCI_CONFIG_REGION_INDEX: u32 = bindings::VFIO_PCI_CONFIG_REGION_INDEX;
/// `VFIO_PCI_BAR0_REGION_INDEX`.
pub(crate) const PCI_BAR0_REGION_INDEX: u32 = bindings::VFIO_PCI_BAR0_REGION_INDEX;
/// `VFIO_PCI_BAR2_REGION_INDEX`.
pub(crate) const PCI_BAR2_REGION_INDEX: u32 = bindings::VFIO_PCI_BAR2_REGION_INDEX;
/// `enum vfio_device_mig_state`: `VFIO_DEVICE_STATE_ERROR`.
pub(crate) const DEVICE_STATE_ERROR: u32 = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_ERROR;
/// `VFIO_DEVICE_STATE_STOP`.
pub(crate) const DEVICE_STATE_STOP: u32 = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP;
/// `VFIO_DEVICE_STATE_RUNNING`.
pub(crate) const DEVICE_STATE_RUNNING: u32 =
    bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING;
/// `VFIO_DEVICE_STATE_STOP_COPY`.
pub(crate) const DEVICE_STATE_STOP_COPY: u32 =
    bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP_COPY;
/// `VFIO_DEVICE_STATE_RESUMING`.
pub(crate) const DEVICE_STATE_RESUMING: u32 =
    bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RESUMING;
/// `VFIO_DEVICE_STATE_RUNNING_P2P`.
pub(crate) const DEVICE_STATE_RUNNING_P2P: u32 =
    bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING_P2P;
/// `VFIO_DEVICE_STATE_PRE_COPY`.
pub(crate) const DEVICE_STATE_PRE_COPY: u32 =
    bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY;
/// `VFIO_DEVICE_STATE_PRE_COPY_P2P`.
pub(crate) const DEVICE_STATE_PRE_COPY_P2P: u32 =
    bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY_P2P;
/// `VFIO_DEVICE_STATE_NR`: one past the last state.
pub(crate) const DEVICE_STATE_NR: u32 = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_NR;
/// `VFIO_MIGRATION_STOP_COPY`.
pub(crate) const MIGRATION_STOP_COPY: u32 = bindings::VFIO_MIGRATION_STOP_COPY;
/// `VFIO_MIGRATION_P2P`.
pub(crate) const MIGRATION_P2P: u32 = bindings::VFIO_MIGRATION_P2P;
/// `VFIO_MIGRATION_PRE_COPY`.
pub(crate) const MIGRATION_PRE_COPY: u32 = bindings::VFIO_MIGRATION_PRE_COPY;
/// `EPOLLIN | EPOLLRDNORM`.
pub(crate) const POLL_IN: u32 = bindings::KAPI_EPOLLIN;
/// `EPOLLOUT | EPOLLWRNORM`.
pub(crate) const POLL_OUT: u32 = bindings::KAPI_EPOLLOUT;
/// `VFIO_PCI_NUM_IRQS`.
pub(crate) const PCI_NUM_IRQS: u32 = bindings::VFIO_PCI_NUM_IRQS;
/// `VFIO_PCI_INTX_IRQ_INDEX`.
pub(crate) const PCI_INTX_IRQ_INDEX: u32 = bindings::VFIO_PCI_INTX_IRQ_INDEX;
/// `VFIO_PCI_MSI_IRQ_INDEX`.
pub(crate) const PCI_MSI_IRQ_INDEX: u32 = bindings::VFIO_PCI_MSI_IRQ_INDEX;
/// `VFIO_IRQ_INFO_EVENTFD`.
pub(crate) const IRQ_INFO_EVENTFD: u32 = bindings::VFIO_IRQ_INFO_EVENTFD;
/// `VFIO_IRQ_INFO_MASKABLE`.
pub(crate) const IRQ_INFO_MASKABLE: u32 = bindings::VFIO_IRQ_INFO_MASKABLE;
/// `VFIO_IRQ_INFO_AUTOMASKED`.
pub(crate) const IRQ_INFO_AUTOMASKED: u32 = bindings::VFIO_IRQ_INFO_AUTOMASKED;
/// `VFIO_IRQ_INFO_NORESIZE`.
pub(crate) const IRQ_INFO_NORESIZE: u32 = bindings::VFIO_IRQ_INFO_NORESIZE;
/// `VFIO_IRQ_SET_DATA_NONE`.
pub(crate) const IRQ_SET_DATA_NONE: u32 = bindings::VFIO_IRQ_SET_DATA_NONE;
/// `VFIO_IRQ_SET_DATA_BOOL`.
pub(crate) const IRQ_SET_DATA_BOOL: u32 = bindings::VFIO_IRQ_SET_DATA_BOOL;
/// `VFIO_IRQ_SET_DATA_EVENTFD`.
pub(crate) const IRQ_SET_DATA_EVENTFD: u32 = bindings::VFIO_IRQ_SET_DATA_EVENTFD;
/// `VFIO_IRQ_SET_ACTION_MASK`.
pub(crate) const IRQ_SET_ACTION_MASK: u32 = bindings::VFIO_IRQ_SET_ACTION_MASK;
/// `VFIO_IRQ_SET_ACTION_UNMASK`.
pub(crate) const IRQ_SET_ACTION_UNMASK: u32 = bindings::VFIO_IRQ_SET_ACTION_UNMASK;
/// `VFIO_IRQ_SET_ACTION_TRIGGER`.
pub(crate) const IRQ_SET_ACTION_TRIGGER: u32 = bindings::VFIO_IRQ_SET_ACTION_TRIGGER;
