// SPDX-License-Identifier: GPL-2.0

//! One mblit mdev as a VFIO device: routes each VFIO call to the part of
//! the device it belongs to (config space, BAR0 registers, BAR2 device
//! memory), as `docs/device.md` specifies.
//!
//! # Locks
//!
//! `state` (a mutex, may sleep) guards config space, registers and device
//! memory. User copies happen under it; nothing else is taken inside it.

use crate::{
    kapi::vfio::{self, ioctl, uapi, Device, RegionInfo},
    logic::{
        config_space::{ConfigSpace, CONFIG_SIZE},
        regs::{self, Reg, RegFile, BAR0_SIZE, CTRL_ENABLE, CTRL_RESET},
        types::TYPES,
    },
    vram::Vram,
};
use kernel::{
    new_mutex,
    prelude::*,
    sync::Mutex,
    uaccess::{UserSliceReader, UserSliceWriter},
};

/// Region offsets in the device file are `index << REGION_SHIFT` (the
/// vfio-pci convention).
const REGION_SHIFT: u32 = 40;

/// The emulated parts of the device, guarded by [`MblitDevice::state`].
struct State {
    config: ConfigSpace,
    regs: RegFile,
    vram: Vram,
}

impl State {
    /// A BAR0 write of `data` (right-aligned, `width` bytes) at `offset`.
    fn write_reg(&mut self, offset: u64, width: usize, data: u64) -> Result {
        let acc = regs::decode(offset, width).map_err(|_| EINVAL)?;
        match acc.info.reg {
            Reg::Ctrl if acc.written(data) & u64::from(CTRL_RESET) != 0 => {
                // Engine reset: every register back to its reset value.
                self.regs.reset();
            }
            Reg::RingBase | Reg::RingSize
                if self.regs.get(Reg::Ctrl) & u64::from(CTRL_ENABLE) != 0 =>
            {
                // Ignored while the ring is enabled.
            }
            _ => {
                self.regs.write(&acc, data);
            }
        }
        Ok(())
    }

    /// Device reset (`VFIO_DEVICE_RESET`).
    fn reset(&mut self) {
        self.regs.reset();
        self.config.reset();
        self.vram.clear();
    }
}

/// The driver data of one mblit VFIO device.
#[pin_data]
pub(crate) struct MblitDevice {
    type_index: usize,
    #[pin]
    state: Mutex<State>,
}

impl MblitDevice {
    /// A device of mdev type `type_index`, in its reset state.
    pub(crate) fn new(type_index: usize) -> impl PinInit<Self, Error> {
        let ty = TYPES.get(type_index).copied();
        try_pin_init!(Self {
            type_index,
            state <- {
                let ty = ty.ok_or(EINVAL)?;
                let state = State {
                    config: ConfigSpace::new(ty.vram_bytes(), ty.vram_mib as u16),
                    regs: RegFile::new(),
                    vram: Vram::new(ty.vram_bytes())?,
                };
                new_mutex!(state, "mblit_state")
            },
        })
    }

    /// `VFIO_DEVICE_GET_INFO`.
    fn get_info(arg: UserPtr) -> Result<isize> {
        // struct vfio_device_info: argsz, flags, num_regions, num_irqs
        // (cap_offset and pad follow; mblit reports no capabilities).
        const MINSZ: usize = 16;
        let (mut info, _argsz) = vfio::read_arg::<MINSZ>(arg, MINSZ)?;
        let flags = uapi::DEVICE_FLAGS_PCI | uapi::DEVICE_FLAGS_RESET;
        info[4..8].copy_from_slice(&flags.to_ne_bytes());
        info[8..12].copy_from_slice(&uapi::PCI_NUM_REGIONS.to_ne_bytes());
        info[12..16].copy_from_slice(&0u32.to_ne_bytes());
        vfio::write_arg(arg, &info)?;
        Ok(0)
    }
}

/// Splits a device file offset into region index and offset in the region.
fn split(pos: u64) -> (u64, u64) {
    (pos >> REGION_SHIFT, pos & ((1u64 << REGION_SHIFT) - 1))
}

impl vfio::Ops for MblitDevice {
    fn read(dev: &Device<Self>, out: &mut UserSliceWriter, pos: u64) -> Result<usize> {
        let (index, offset) = split(pos);
        let len = out.len();
        let state = dev.state.lock();
        match u32::try_from(index).map_err(|_| EINVAL)? {
            uapi::PCI_CONFIG_REGION_INDEX => {
                let mut buf = [0u8; CONFIG_SIZE as usize];
                let buf = buf.get_mut(..len).ok_or(EINVAL)?;
                state.config.read(offset, buf).map_err(|_| EINVAL)?;
                out.write_slice(buf)?;
            }
            uapi::PCI_BAR0_REGION_INDEX => {
                let acc = regs::decode(offset, len).map_err(|_| EINVAL)?;
                let value = state.regs.read(&acc).to_le_bytes();
                out.write_slice(&value[..len])?;
            }
            uapi::PCI_BAR2_REGION_INDEX => state.vram.read(offset, len, out)?,
            _ => return Err(EINVAL),
        }
        Ok(len)
    }

    fn write(dev: &Device<Self>, input: &mut UserSliceReader, pos: u64) -> Result<usize> {
        let (index, offset) = split(pos);
        let len = input.len();
        let mut state = dev.state.lock();
        match u32::try_from(index).map_err(|_| EINVAL)? {
            uapi::PCI_CONFIG_REGION_INDEX => {
                let mut buf = [0u8; CONFIG_SIZE as usize];
                let buf = buf.get_mut(..len).ok_or(EINVAL)?;
                input.read_slice(buf)?;
                state.config.write(offset, buf).map_err(|_| EINVAL)?;
            }
            uapi::PCI_BAR0_REGION_INDEX => {
                // Validate before copying, so a bad access reads nothing.
                regs::decode(offset, len).map_err(|_| EINVAL)?;
                let mut bytes = [0u8; 8];
                input.read_slice(&mut bytes[..len])?;
                state.write_reg(offset, len, u64::from_le_bytes(bytes))?;
            }
            uapi::PCI_BAR2_REGION_INDEX => state.vram.write(offset, len, input)?,
            _ => return Err(EINVAL),
        }
        Ok(len)
    }

    fn region_info(dev: &Device<Self>, index: u32) -> Result<RegionInfo> {
        let rw = uapi::REGION_INFO_FLAG_READ | uapi::REGION_INFO_FLAG_WRITE;
        let size = match index {
            uapi::PCI_CONFIG_REGION_INDEX => u64::from(CONFIG_SIZE),
            uapi::PCI_BAR0_REGION_INDEX => u64::from(BAR0_SIZE),
            uapi::PCI_BAR2_REGION_INDEX => dev.state.lock().vram.size(),
            i if i < uapi::PCI_NUM_REGIONS => 0,
            _ => return Err(EINVAL),
        };
        Ok(RegionInfo {
            offset: u64::from(index) << REGION_SHIFT,
            size,
            flags: if size != 0 { rw } else { 0 },
            cap_type: None,
        })
    }

    fn ioctl(dev: &Device<Self>, cmd: u32, arg: UserPtr) -> Result<isize> {
        match cmd {
            ioctl::DEVICE_GET_INFO => Self::get_info(arg),
            ioctl::DEVICE_RESET => {
                dev.state.lock().reset();
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}
