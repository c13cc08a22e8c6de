// SPDX-License-Identifier: GPL-2.0

//! The `VFIO_DEVICE_*` ioctl numbers a driver dispatches on.

use super::bindings;

/// `VFIO_DEVICE_GET_INFO`.
pub(crate) const DEVICE_GET_INFO: u32 = bindings::KAPI_VFIO_DEVICE_GET_INFO;
/// `VFIO_DEVICE_RESET`.
pub(crate) const DEVICE_RESET: u32 = bindings::KAPI_VFIO_DEVICE_RESET;
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub(crate) const DEVICE_GET_IRQ_INFO: u32 = bindings::KAPI_VFIO_DEVICE_GET_IRQ_INFO;
/// `VFIO_DEVICE_SET_IRQS`.
pub(crate) const DEVICE_SET_IRQS: u32 = bindings::KAPI_VFIO_DEVICE_SET_IRQS;
/// `VFIO_MIG_GET_PRECOPY_INFO` (on the data file).
pub(crate) const MIG_GET_PRECOPY_INFO: u32 = bindings::KAPI_VFIO_MIG_GET_PRECOPY_INFO;
