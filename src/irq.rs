// SPDX-License-Identifier: GPL-2.0

//! Interrupt delivery (docs/device.md §9): INTx (level, automasked) and
//! one MSI vector, signalled through the eventfds the user set with
//! `VFIO_DEVICE_SET_IRQS`.

use crate::{
    kapi::{
        eventfd::EventFd,
        vfio::{self, uapi, Arg, IrqInfo, IrqSet},
    },
    logic::config_space::ConfigSpace,
};
use kernel::prelude::*;

/// The interrupt side of the device: the user's eventfds and the VFIO
/// INTx mask. Guarded by the device state lock.
#[derive(Default)]
pub(crate) struct Irq {
    intx: Option<EventFd>,
    /// VFIO-level INTx mask (automask and `ACTION_MASK`).
    intx_masked: bool,
    msi: Option<EventFd>,
}

impl Irq {
    /// Re-evaluates the interrupt after `INT_STATUS`, `INT_MASK` or config
    /// space changed. `pending` is `INT_STATUS & !INT_MASK != 0`; `events`
    /// are the unmasked sources that fired just now (each signals MSI once).
    pub(crate) fn update(&mut self, config: &mut ConfigSpace, pending: bool, events: u32) {
        config.set_intx_pending(pending);
        if let Some(msi) = &self.msi {
            if events != 0 {
                msi.signal();
            }
            return;
        }
        let asserted = pending && !config.intx_disabled();
        if asserted && !self.intx_masked {
            if let Some(intx) = &self.intx {
                intx.signal();
                self.intx_masked = true;
            }
        }
    }

    /// The VFIO-level INTx mask (migrated with the device state).
    pub(crate) fn masked(&self) -> bool {
        self.intx_masked
    }

    /// Restores the VFIO-level INTx mask.
    pub(crate) fn set_masked(&mut self, masked: bool) {
        self.intx_masked = masked;
    }

    /// Disables every trigger (device close).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// After a reset: the line is deasserted; eventfds stay configured.
    pub(crate) fn reset(&mut self) {
        self.intx_masked = false;
    }
}

/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub(crate) fn get_irq_info(arg: UserPtr) -> Result<isize> {
    let mut info: IrqInfo = vfio::read_arg(arg)?;
    let (count, flags) = self::info(info.index)?;
    info.flags = flags;
    info.count = count;
    vfio::write_arg(arg, &info)?;
    Ok(0)
}

/// `(count, flags)` of irq index `index`.
fn info(index: u32) -> Result<(u32, u32)> {
    match index {
        uapi::PCI_INTX_IRQ_INDEX => Ok((
            1,
            uapi::IRQ_INFO_EVENTFD | uapi::IRQ_INFO_MASKABLE | uapi::IRQ_INFO_AUTOMASKED,
        )),
        uapi::PCI_MSI_IRQ_INDEX => Ok((1, uapi::IRQ_INFO_EVENTFD | uapi::IRQ_INFO_NORESIZE)),
        i if i < uapi::PCI_NUM_IRQS => Ok((0, 0)),
        _ => Err(EINVAL),
    }
}

/// What a validated `VFIO_DEVICE_SET_IRQS` asks for.
pub(crate) enum SetIrqs {
    /// Set (`Some`) or remove (`None`) the INTx trigger.
    IntxTrigger(Option<EventFd>),
    /// Set or remove the MSI trigger.
    MsiTrigger(Option<EventFd>),
    /// Signal the trigger of `index` as if the device had (loopback).
    Fire(u32),
    /// Mask (`true`) or unmask INTx.
    IntxMask(bool),
    /// Nothing to do (`DATA_BOOL` false, or count 0 on mask/unmask).
    Nothing,
}

/// Reads and validates a `VFIO_DEVICE_SET_IRQS` argument.
pub(crate) fn parse_set(arg: UserPtr) -> Result<SetIrqs> {
    let hdr: IrqSet = vfio::read_arg(arg)?;
    let (argsz, flags, index, start, count) =
        (hdr.argsz, hdr.flags, hdr.index, hdr.start, hdr.count);

    let data_type = flags & 0x7;
    let action = flags & 0x38;
    if flags & !0x3f != 0 || data_type.count_ones() != 1 || action.count_ones() != 1 {
        return Err(EINVAL);
    }
    let (max, _) = info(index)?;
    // As in vfio_set_irqs_validate_and_prepare(): `start` must name one of
    // the index's interrupts, so an index without any (MSI-X, ERR, REQ)
    // refuses every request, even one with count 0.
    if start >= max || count > max - start {
        return Err(EINVAL);
    }
    let data_size = match data_type {
        uapi::IRQ_SET_DATA_NONE => 0,
        uapi::IRQ_SET_DATA_BOOL => 1,
        _ => 4,
    } * count as usize;
    if (argsz as usize) < IrqSet::MINSZ + data_size {
        return Err(EINVAL);
    }
    let mut data = [0u8; 4];
    if data_size > 0 {
        vfio::read_arg_tail(arg, IrqSet::MINSZ, &mut data[..data_size])?;
    }

    match (index, action, data_type) {
        (_, uapi::IRQ_SET_ACTION_TRIGGER, uapi::IRQ_SET_DATA_EVENTFD) if count == 1 => {
            let fd = i32::from_ne_bytes(data);
            let efd = if fd == -1 {
                None
            } else {
                Some(EventFd::from_fd(fd)?)
            };
            Ok(if index == uapi::PCI_INTX_IRQ_INDEX {
                SetIrqs::IntxTrigger(efd)
            } else {
                SetIrqs::MsiTrigger(efd)
            })
        }
        (_, uapi::IRQ_SET_ACTION_TRIGGER, uapi::IRQ_SET_DATA_NONE) if count == 0 => {
            Ok(if index == uapi::PCI_INTX_IRQ_INDEX {
                SetIrqs::IntxTrigger(None)
            } else {
                SetIrqs::MsiTrigger(None)
            })
        }
        (_, uapi::IRQ_SET_ACTION_TRIGGER, uapi::IRQ_SET_DATA_NONE) => Ok(SetIrqs::Fire(index)),
        (_, uapi::IRQ_SET_ACTION_TRIGGER, uapi::IRQ_SET_DATA_BOOL) => Ok(if data[0] != 0 {
            SetIrqs::Fire(index)
        } else {
            SetIrqs::Nothing
        }),
        (
            uapi::PCI_INTX_IRQ_INDEX,
            uapi::IRQ_SET_ACTION_MASK | uapi::IRQ_SET_ACTION_UNMASK,
            uapi::IRQ_SET_DATA_NONE | uapi::IRQ_SET_DATA_BOOL,
        ) => {
            let set = data_type == uapi::IRQ_SET_DATA_NONE || data[0] != 0;
            Ok(if count == 0 || !set {
                SetIrqs::Nothing
            } else {
                SetIrqs::IntxMask(action == uapi::IRQ_SET_ACTION_MASK)
            })
        }
        _ => Err(EINVAL),
    }
}

impl Irq {
    /// Applies a validated `SET_IRQS` request. `pending` and `config` as in
    /// [`Irq::update`]. Only one of INTx and MSI may have a trigger at a
    /// time (`EINVAL`).
    pub(crate) fn apply(
        &mut self,
        req: SetIrqs,
        config: &mut ConfigSpace,
        pending: bool,
    ) -> Result {
        match &req {
            SetIrqs::IntxTrigger(Some(_)) if self.msi.is_some() => return Err(EINVAL),
            SetIrqs::MsiTrigger(Some(_)) if self.intx.is_some() => return Err(EINVAL),
            _ => {}
        }
        match req {
            SetIrqs::IntxTrigger(efd) => {
                self.intx = efd;
                self.intx_masked = false;
            }
            SetIrqs::MsiTrigger(efd) => self.msi = efd,
            SetIrqs::Fire(index) => {
                let efd = if index == uapi::PCI_MSI_IRQ_INDEX {
                    &self.msi
                } else {
                    &self.intx
                };
                if let Some(e) = efd {
                    e.signal();
                }
                return Ok(());
            }
            SetIrqs::IntxMask(mask) => self.intx_masked = mask,
            SetIrqs::Nothing => return Ok(()),
        }
        // An unmask (or a new trigger) with the line still asserted fires.
        self.update(config, pending, 0);
        Ok(())
    }
}
