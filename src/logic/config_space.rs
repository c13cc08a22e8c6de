// SPDX-License-Identifier: GPL-2.0

//! The emulated PCI configuration space of an mblit device
//! (docs/device.md, "PCI configuration space"): 256 bytes, a type-0 header
//! with one MSI capability.
//!
//! Writes go through a per-bit write mask: bits outside it keep their value,
//! which gives read-only fields and BAR sizing (write all ones, read back the
//! size mask) the same byte-granular semantics for every access width.

use super::regs::BAR0_SIZE;
use super::uapi::uapi_consts;

uapi_consts! {
    /// The shared constants of this module, by C name.
    table UAPI;

    /// PCI vendor id. Made up: it belongs to no real vendor (see
    /// docs/device.md).
    pub const VENDOR_ID: u16 = 0x6d62;
    /// PCI device id.
    pub const DEVICE_ID: u16 = 0x0001;
    /// Subsystem vendor id (the subsystem id is the type id, [`type_id`]).
    pub const SUBSYS_VENDOR_ID: u16 = 0x6d62;
    /// Revision id.
    pub const REVISION: u8 = 0x01;
    /// Class code (base, sub, prog-if): system peripheral, other.
    pub const CLASS_CODE: u32 = 0x08_8000;
    /// Size of the config space region in bytes.
    pub const CONFIG_SIZE: u32 = 256;
    /// Offset of the MSI capability (the only capability).
    pub const MSI_CAP_OFFSET: u8 = 0x40;
    /// The BAR holding the registers (BAR0, 32-bit, non-prefetchable).
    pub const BAR_REGS: u8 = 0;
    /// The BAR holding device memory (BAR2, 64-bit, prefetchable).
    pub const BAR_VRAM: u8 = 2;
}

/// The type id of an mdev type with `vram_mib` MiB of device memory: the
/// config-space subsystem id and the DEVICE_STATE header's device type.
pub const fn type_id(vram_mib: u32) -> u16 {
    if vram_mib > 0xffff {
        0xffff
    } else {
        vram_mib as u16
    }
}

// Standard header offsets and bits (as in <linux/pci_regs.h>).
const PCI_VENDOR_ID: usize = 0x00;
const PCI_DEVICE_ID: usize = 0x02;
const PCI_COMMAND: usize = 0x04;
const PCI_STATUS: usize = 0x06;
const PCI_REVISION_ID: usize = 0x08;
const PCI_CLASS_PROG: usize = 0x09;
const PCI_CACHE_LINE_SIZE: usize = 0x0c;
const PCI_BASE_ADDRESS_0: usize = 0x10;
const PCI_BASE_ADDRESS_2: usize = 0x18;
const PCI_SUBSYSTEM_VENDOR_ID: usize = 0x2c;
const PCI_SUBSYSTEM_ID: usize = 0x2e;
const PCI_CAPABILITY_LIST: usize = 0x34;
const PCI_INTERRUPT_LINE: usize = 0x3c;
const PCI_INTERRUPT_PIN: usize = 0x3d;
const PCI_CAP_ID_MSI: u8 = 0x05;
const MSI: usize = MSI_CAP_OFFSET as usize;
const PCI_MSI_FLAGS: usize = MSI + 2;
const PCI_MSI_ADDRESS_LO: usize = MSI + 4;
#[cfg(test)]
const PCI_MSI_ADDRESS_HI: usize = MSI + 8;
#[cfg(test)]
const PCI_MSI_DATA_64: usize = MSI + 12;

/// `COMMAND` bit: memory space enable.
pub const COMMAND_MEMORY: u16 = 0x0002;
/// `COMMAND` bit: bus master enable (the engine runs only with it set).
pub const COMMAND_MASTER: u16 = 0x0004;
/// `COMMAND` bit: INTx disable.
pub const COMMAND_INTX_DISABLE: u16 = 0x0400;
/// `STATUS` bit: INTx interrupt status (the device's interrupt is pending).
pub const STATUS_INTERRUPT: u16 = 0x0008;
/// `STATUS` bit: capabilities list present.
pub const STATUS_CAP_LIST: u16 = 0x0010;
/// MSI message control: MSI enable.
pub const MSI_FLAGS_ENABLE: u16 = 0x0001;
/// MSI message control: 64-bit address capable.
pub const MSI_FLAGS_64BIT: u16 = 0x0080;

const COMMAND_WRITABLE: u16 = COMMAND_MEMORY | COMMAND_MASTER | COMMAND_INTX_DISABLE;
const BAR0_FLAGS: u32 = 0x0; // memory, 32-bit, non-prefetchable
const BAR2_FLAGS: u32 = 0xc; // memory, 64-bit, prefetchable

/// Smallest BAR2 size: one 4 KiB page.
const BAR2_MIN: u64 = 0x1000;

/// Why a config space access or restore was refused (`EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The access is empty or does not lie inside the 256 bytes.
    OutOfRange,
    /// A restored image differs from this device in a read-only bit, at this
    /// byte offset.
    ReadOnlyMismatch(usize),
}

/// The config space of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE as usize],
    bar2_size: u64,
    subsystem_id: u16,
}

// `off` is one of the header offsets above: the sub-slices are in range
// (and need no `off + n`).
fn put16(b: &mut [u8; CONFIG_SIZE as usize], off: usize, v: u16) {
    b[off..][..2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8; CONFIG_SIZE as usize], off: usize, v: u32) {
    b[off..][..4].copy_from_slice(&v.to_le_bytes());
}

/// Checks that `len` bytes at `offset` lie in the config space; returns the
/// byte range.
fn range(offset: u64, len: usize) -> Result<core::ops::Range<usize>, ConfigError> {
    match offset.checked_add(len as u64) {
        Some(end) if len > 0 && end <= u64::from(CONFIG_SIZE) => Ok(offset as usize..end as usize),
        _ => Err(ConfigError::OutOfRange),
    }
}

impl ConfigSpace {
    /// The reset config space of a device with `vram_size` bytes of device
    /// memory (BAR2's size: rounded up to a power of two of at least 4 KiB)
    /// and subsystem id `subsystem_id`.
    pub fn new(vram_size: u64, subsystem_id: u16) -> Self {
        let bar2_size = vram_size
            .max(BAR2_MIN)
            .checked_next_power_of_two()
            .unwrap_or(1 << 63);
        let mut b = [0u8; CONFIG_SIZE as usize];
        put16(&mut b, PCI_VENDOR_ID, VENDOR_ID);
        put16(&mut b, PCI_DEVICE_ID, DEVICE_ID);
        put16(&mut b, PCI_STATUS, STATUS_CAP_LIST);
        b[PCI_REVISION_ID] = REVISION;
        b[PCI_CLASS_PROG..PCI_CLASS_PROG + 3].copy_from_slice(&CLASS_CODE.to_le_bytes()[..3]);
        put32(&mut b, PCI_BASE_ADDRESS_0, BAR0_FLAGS);
        put32(&mut b, PCI_BASE_ADDRESS_2, BAR2_FLAGS);
        put16(&mut b, PCI_SUBSYSTEM_VENDOR_ID, SUBSYS_VENDOR_ID);
        put16(&mut b, PCI_SUBSYSTEM_ID, subsystem_id);
        b[PCI_CAPABILITY_LIST] = MSI_CAP_OFFSET;
        b[PCI_INTERRUPT_PIN] = 1; // INTA#
        b[MSI] = PCI_CAP_ID_MSI;
        b[MSI + 1] = 0; // end of the list
        put16(&mut b, PCI_MSI_FLAGS, MSI_FLAGS_64BIT);
        Self {
            bytes: b,
            bar2_size,
            subsystem_id,
        }
    }

    /// Returns to the reset state.
    pub fn reset(&mut self) {
        *self = Self::new(self.bar2_size, self.subsystem_id);
    }

    /// BAR2's size in bytes.
    #[cfg(test)]
    pub fn bar2_size(&self) -> u64 {
        self.bar2_size
    }

    /// BAR2's size mask: the address bits of BAR2 a write can change.
    #[allow(clippy::arithmetic_side_effects)]
    fn bar2_mask(&self) -> u64 {
        // `bar2_size >= BAR2_MIN` (`new` is the only constructor): no underflow.
        !(self.bar2_size - 1) & !0xf
    }

    /// The bits of config byte `off` a write can change.
    fn write_mask(&self, off: usize) -> u8 {
        // Byte `off - base` (little-endian) of `mask`; 0 outside its 8 bytes.
        let byte_of = |mask: u64, base: usize| {
            off.checked_sub(base)
                .and_then(|i| mask.to_le_bytes().get(i).copied())
                .unwrap_or(0)
        };
        match off {
            PCI_COMMAND => COMMAND_WRITABLE as u8,
            0x05 => (COMMAND_WRITABLE >> 8) as u8,
            PCI_CACHE_LINE_SIZE => 0xff,
            0x10..=0x13 => byte_of(u64::from(!(BAR0_SIZE - 1)), PCI_BASE_ADDRESS_0),
            0x18..=0x1f => byte_of(self.bar2_mask(), PCI_BASE_ADDRESS_2),
            PCI_INTERRUPT_LINE => 0xff,
            PCI_MSI_FLAGS => MSI_FLAGS_ENABLE as u8,
            PCI_MSI_ADDRESS_LO => 0xfc,
            0x45..=0x4d => 0xff, // address bits 31:8, address high, data
            _ => 0,
        }
    }

    /// Reads `out.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), ConfigError> {
        let r = range(offset, out.len())?;
        out.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    /// Writes `data` at `offset`, bit by bit through the write mask.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ConfigError> {
        let r = range(offset, data.len())?;
        for (off, &v) in r.zip(data) {
            let m = self.write_mask(off);
            self.bytes[off] = (self.bytes[off] & !m) | (v & m);
        }
        Ok(())
    }

    // `off` is one of the header offsets above, as for `put16`/`put32`.
    fn get16(&self, off: usize) -> u16 {
        let mut b = [0u8; 2];
        b.copy_from_slice(&self.bytes[off..][..2]);
        u16::from_le_bytes(b)
    }

    #[cfg(test)]
    #[cfg(test)]
    fn get32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[off..][..4]);
        u32::from_le_bytes(b)
    }

    /// The `COMMAND` register.
    pub fn command(&self) -> u16 {
        self.get16(PCI_COMMAND)
    }

    /// Whether bus mastering is enabled (the engine may do DMA).
    pub fn bus_master(&self) -> bool {
        self.command() & COMMAND_MASTER != 0
    }

    /// Whether INTx is disabled by `COMMAND`.
    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Sets `STATUS.INTERRUPT` (the device's interrupt is pending).
    pub fn set_intx_pending(&mut self, pending: bool) {
        let mut s = self.get16(PCI_STATUS) & !STATUS_INTERRUPT;
        if pending {
            s |= STATUS_INTERRUPT;
        }
        put16(&mut self.bytes, PCI_STATUS, s);
    }

    /// Whether `STATUS.INTERRUPT` is set.
    pub fn intx_pending(&self) -> bool {
        self.get16(PCI_STATUS) & STATUS_INTERRUPT != 0
    }

    // The readers below are for the unit tests: the driver signals its
    // interrupt through the user's eventfds and never reads the programmed
    // MSI address, data or BAR addresses back.

    /// The MSI enable bit of the MSI capability.
    #[cfg(test)]
    pub fn msi_enabled(&self) -> bool {
        self.get16(PCI_MSI_FLAGS) & MSI_FLAGS_ENABLE != 0
    }

    /// The programmed MSI address.
    #[cfg(test)]
    pub fn msi_address(&self) -> u64 {
        u64::from(self.get32(PCI_MSI_ADDRESS_HI)) << 32 | u64::from(self.get32(PCI_MSI_ADDRESS_LO))
    }

    /// The programmed MSI data.
    #[cfg(test)]
    pub fn msi_data(&self) -> u16 {
        self.get16(PCI_MSI_DATA_64)
    }

    /// The interrupt line register.
    #[cfg(test)]
    pub fn interrupt_line(&self) -> u8 {
        self.bytes[PCI_INTERRUPT_LINE]
    }

    /// BAR0's programmed address.
    #[cfg(test)]
    pub fn bar0_address(&self) -> u64 {
        u64::from(self.get32(PCI_BASE_ADDRESS_0) & !0xf)
    }

    /// BAR2's programmed (64-bit) address.
    #[cfg(test)]
    pub fn bar2_address(&self) -> u64 {
        let lo = u64::from(self.get32(PCI_BASE_ADDRESS_2) & !0xf);
        lo | u64::from(self.get32(PCI_BASE_ADDRESS_2 + 4)) << 32
    }

    /// The whole space, for saving it.
    pub fn image(&self) -> &[u8; CONFIG_SIZE as usize] {
        &self.bytes
    }

    /// Replaces the space with a saved `image`, after checking that every
    /// read-only bit of it equals this device's (so ids, BAR sizes and the
    /// capability layout cannot change). `STATUS.INTERRUPT` is taken from
    /// the image. Nothing changes on error.
    pub fn load(&mut self, image: &[u8; CONFIG_SIZE as usize]) -> Result<(), ConfigError> {
        for (off, (&cur, &new)) in self.bytes.iter().zip(image.iter()).enumerate() {
            let mut ro = !self.write_mask(off);
            if off == PCI_STATUS {
                ro &= !(STATUS_INTERRUPT as u8);
            }
            if (cur ^ new) & ro != 0 {
                return Err(ConfigError::ReadOnlyMismatch(off));
            }
        }
        self.bytes = *image;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::super::types::TYPES;
    use super::*;

    fn dev() -> ConfigSpace {
        ConfigSpace::new(16 << 20, 16)
    }

    fn rd32(c: &ConfigSpace, off: u64) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn wr32(c: &mut ConfigSpace, off: u64, v: u32) {
        c.write(off, &v.to_le_bytes()).unwrap();
    }

    fn rd16(c: &ConfigSpace, off: u64) -> u16 {
        let mut b = [0u8; 2];
        c.read(off, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    #[test]
    fn ids_and_header() {
        let c = dev();
        assert_eq!(rd16(&c, 0x00), 0x6d62);
        assert_eq!(rd16(&c, 0x02), 0x0001);
        assert_eq!(rd32(&c, 0x08), 0x0880_0001);
        assert_eq!(rd16(&c, 0x2c), 0x6d62);
        assert_eq!(rd16(&c, 0x2e), 16);
        let mut b = [0u8; 4];
        c.read(0x0c, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0, 0]); // cache line, latency, header type 0, BIST
        assert_eq!(rd16(&c, 0x04), 0);
        assert_eq!(rd16(&c, 0x06), STATUS_CAP_LIST);
        assert_eq!(rd32(&c, 0x10), 0x0);
        assert_eq!(rd32(&c, 0x14), 0);
        assert_eq!(rd32(&c, 0x18), 0xc);
        assert_eq!(rd32(&c, 0x30), 0);
        assert_eq!(c.image()[0x34], 0x40);
        assert_eq!(c.image()[0x3d], 1);
        assert_eq!(type_id(256), 256);
        assert_eq!(type_id(1 << 20), 0xffff);
    }

    #[test]
    fn read_only_stays_read_only() {
        let mut c = dev();
        let before = c.clone();
        // Write all ones over everything, then zeros, byte by byte and at once.
        c.write(0, &[0xff; 256]).unwrap();
        for off in 0..256u64 {
            c.write(off, &[0]).unwrap();
        }
        c.reset();
        assert_eq!(c, before);
        c.write(0, &[0xff; 256]).unwrap();
        let img = *c.image();
        for (off, (&a, &b)) in img.iter().zip(before.image().iter()).enumerate() {
            let m = before.write_mask(off);
            assert_eq!(a & !m, b & !m, "read-only bits changed at {off:#x}");
        }
        assert_eq!(rd16(&c, 0), VENDOR_ID);
        assert_eq!(rd16(&c, 2), DEVICE_ID);
        assert_eq!(
            rd16(&c, 4),
            COMMAND_MEMORY | COMMAND_MASTER | COMMAND_INTX_DISABLE
        );
        assert_eq!(rd16(&c, 6), STATUS_CAP_LIST);
        assert_eq!(c.image()[0x0c], 0xff);
        assert_eq!(c.image()[0x0d], 0);
        assert_eq!(c.image()[0x0e], 0);
        assert_eq!(c.interrupt_line(), 0xff);
        assert_eq!(c.image()[0x3d], 1);
        assert_eq!(c.image()[0x34], 0x40);
        assert_eq!(&c.image()[0x50..], &[0u8; 0xb0][..]);
    }

    #[test]
    fn command_bits() {
        let mut c = dev();
        c.write(4, &[0xff, 0xff]).unwrap();
        assert!(c.bus_master() && c.intx_disabled());
        c.write(4, &[COMMAND_MASTER as u8]).unwrap();
        assert!(c.bus_master());
        assert_eq!(c.command(), COMMAND_MASTER | COMMAND_INTX_DISABLE);
        c.write(5, &[0]).unwrap();
        assert!(!c.intx_disabled());
    }

    #[test]
    fn status_interrupt_bit_is_device_owned() {
        let mut c = dev();
        c.set_intx_pending(true);
        assert!(c.intx_pending());
        assert_eq!(rd16(&c, 6), STATUS_CAP_LIST | STATUS_INTERRUPT);
        c.write(6, &[0xff, 0xff]).unwrap(); // no W1C bits: nothing changes
        assert_eq!(rd16(&c, 6), STATUS_CAP_LIST | STATUS_INTERRUPT);
        c.set_intx_pending(false);
        assert_eq!(rd16(&c, 6), STATUS_CAP_LIST);
    }

    #[test]
    fn bar_sizing_for_every_type() {
        for t in &TYPES {
            let size = t.vram_bytes();
            let mut c = ConfigSpace::new(size, type_id(t.vram_mib));
            assert_eq!(c.bar2_size(), size);
            for off in [0x10u64, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30] {
                wr32(&mut c, off, 0xffff_ffff);
            }
            assert_eq!(rd32(&c, 0x10), 0xffff_f000); // 4 KiB, mem32
            assert_eq!(rd32(&c, 0x14), 0);
            let lo = rd32(&c, 0x18);
            let hi = rd32(&c, 0x1c);
            assert_eq!(lo & 0xf, 0xc, "64-bit prefetchable");
            let mask = u64::from(hi) << 32 | u64::from(lo & !0xf);
            assert_eq!((!mask).wrapping_add(1), size, "{} MiB", t.vram_mib);
            assert_eq!(rd32(&c, 0x20), 0);
            assert_eq!(rd32(&c, 0x24), 0);
            assert_eq!(rd32(&c, 0x30), 0, "no expansion ROM");
            // Program addresses.
            wr32(&mut c, 0x10, 0xfebf_0123);
            wr32(&mut c, 0x18, 0x1234_5678);
            wr32(&mut c, 0x1c, 0x0000_0080);
            assert_eq!(c.bar0_address(), 0xfebf_0000);
            assert_eq!(
                c.bar2_address(),
                0x80_0000_0000 | (0x1234_5678 & !(size - 1))
            );
            assert_eq!(rd32(&c, 0x18) & 0xf, 0xc);
        }
    }

    #[test]
    fn bar2_size_is_normalised() {
        assert_eq!(ConfigSpace::new(0, 0).bar2_size(), 0x1000);
        assert_eq!(ConfigSpace::new(5000, 0).bar2_size(), 0x2000);
        assert_eq!(ConfigSpace::new(u64::MAX, 0).bar2_size(), 1 << 63);
        let mut big = ConfigSpace::new(8 << 30, 0);
        wr32(&mut big, 0x18, 0xffff_ffff);
        wr32(&mut big, 0x1c, 0xffff_ffff);
        assert_eq!(rd32(&big, 0x18), 0x0000_000c);
        assert_eq!(rd32(&big, 0x1c), 0xffff_fffe);
    }

    #[test]
    fn msi_capability_walk() {
        let mut c = dev();
        assert_ne!(rd16(&c, 6) & STATUS_CAP_LIST, 0);
        let mut ptr = c.image()[0x34] & !3;
        let mut found = None;
        let mut hops = 0;
        while ptr != 0 {
            hops += 1;
            assert!(hops < 48, "capability loop");
            let id = c.image()[usize::from(ptr)];
            if id == PCI_CAP_ID_MSI {
                found = Some(ptr);
            }
            ptr = c.image()[usize::from(ptr) + 1] & !3;
        }
        assert_eq!((found, hops), (Some(0x40), 1));
        let flags = rd16(&c, 0x42);
        assert_eq!(flags, MSI_FLAGS_64BIT); // 1 vector, 64-bit, no masking
        assert_eq!(flags & 0x000e, 0, "multiple message capable = 1 vector");
        assert_eq!(flags & 0x0100, 0, "no per-vector masking");
        // Program it.
        c.write(0x42, &[0xff, 0xff]).unwrap();
        assert_eq!(rd16(&c, 0x42), MSI_FLAGS_64BIT | MSI_FLAGS_ENABLE);
        assert!(c.msi_enabled());
        wr32(&mut c, 0x44, 0xfee0_1003);
        wr32(&mut c, 0x48, 0x1);
        c.write(0x4c, &[0x41, 0x00, 0xff, 0xff]).unwrap();
        assert_eq!(c.msi_address(), 0x1_fee0_1000);
        assert_eq!(c.msi_data(), 0x41);
        assert_eq!(rd16(&c, 0x4e), 0);
        assert_eq!(c.image()[0x40], 0x05);
        assert_eq!(c.image()[0x41], 0);
    }

    #[test]
    fn bounds() {
        let mut c = dev();
        let mut b = [0u8; 4];
        assert_eq!(c.read(253, &mut b), Err(ConfigError::OutOfRange));
        assert_eq!(c.read(256, &mut b[..1]), Err(ConfigError::OutOfRange));
        assert_eq!(c.read(0, &mut []), Err(ConfigError::OutOfRange));
        assert_eq!(c.read(u64::MAX, &mut b), Err(ConfigError::OutOfRange));
        assert_eq!(c.write(u64::MAX - 1, &b), Err(ConfigError::OutOfRange));
        assert_eq!(c.write(0, &[0u8; 257]), Err(ConfigError::OutOfRange));
        assert_eq!(c.write(10, &[]), Err(ConfigError::OutOfRange));
        assert!(c.read(252, &mut b).is_ok());
        let mut all = [0u8; 256];
        c.read(0, &mut all).unwrap();
        assert_eq!(&all, c.image());
        // Unaligned, odd-length accesses are byte-granular.
        c.write(0x3b, &[0xaa, 0x33, 0xbb]).unwrap();
        assert_eq!(c.interrupt_line(), 0x33);
        assert_eq!(c.image()[0x3d], 1);
    }

    #[test]
    fn edge_offsets_and_lengths() {
        let mut c = dev();
        let mut b = [0u8; 256];
        // Offsets whose end wraps past 2^64, or lies just past the space.
        for off in [u64::MAX, u64::MAX - 1, u64::MAX - 255, 1 << 63, 256, 257] {
            for len in [1usize, 2, 4, 8, 256] {
                assert_eq!(c.read(off, &mut b[..len]), Err(ConfigError::OutOfRange));
                assert_eq!(c.write(off, &b[..len]), Err(ConfigError::OutOfRange));
            }
        }
        assert_eq!(c.write(u64::MAX, &[]), Err(ConfigError::OutOfRange));
        assert_eq!(c.read(1, &mut b), Err(ConfigError::OutOfRange));
        // The last byte, and the whole space, in one access.
        assert!(c.read(255, &mut b[..1]).is_ok());
        assert!(c.write(255, &[0xff]).is_ok());
        assert!(c.read(0, &mut b).is_ok());
        assert_eq!(c.image()[255], 0);
    }

    #[test]
    fn extreme_device_memory_sizes() {
        for (vram, bar2) in [
            (0u64, 0x1000u64),
            (1, 0x1000),
            (0x1001, 0x2000),
            ((1 << 63) - 1, 1 << 63),
            (1 << 63, 1 << 63),
            ((1 << 63) + 1, 1 << 63),
            (u64::MAX, 1 << 63),
        ] {
            let mut c = ConfigSpace::new(vram, u16::MAX);
            assert_eq!(c.bar2_size(), bar2, "{vram:#x}");
            // Every byte's write mask, through an all-ones write.
            c.write(0, &[0xff; 256]).unwrap();
            let mask = u64::from(rd32(&c, 0x1c)) << 32 | u64::from(rd32(&c, 0x18) & !0xf);
            assert_eq!((!mask).wrapping_add(1), bar2, "{vram:#x}");
            assert_eq!(rd32(&c, 0x18) & 0xf, 0xc);
            wr32(&mut c, 0x18, u32::MAX);
            wr32(&mut c, 0x1c, u32::MAX);
            assert_eq!(c.bar2_address(), mask);
            // Its image restores onto a fresh device of the same size only.
            let img = *c.image();
            let mut same = ConfigSpace::new(vram, u16::MAX);
            assert_eq!(same.load(&img), Ok(()));
            assert_eq!(same, c);
            c.reset();
            assert_eq!(c, ConfigSpace::new(vram, u16::MAX));
        }
        let big = ConfigSpace::new(u64::MAX, 0);
        let mut small = ConfigSpace::new(0, 0);
        let mut img = *big.image();
        img[0x1f] = 0x80;
        assert_eq!(small.load(&img), Ok(()));
        img[0x1b] = 0x80;
        assert_eq!(small.load(&img), Ok(()));
        img[0x19] = 0x01;
        assert_eq!(small.load(&img), Err(ConfigError::ReadOnlyMismatch(0x19)));
        let mut huge = ConfigSpace::new(u64::MAX, 0);
        img[0x19] = 0;
        assert_eq!(huge.load(&img), Err(ConfigError::ReadOnlyMismatch(0x1b)));
        assert_eq!(type_id(u32::MAX), 0xffff);
        assert_eq!(type_id(0), 0);
    }

    #[test]
    fn load_checks_read_only_bits() {
        let mut src = dev();
        src.write(4, &[0x06, 0x04]).unwrap();
        wr32(&mut src, 0x18, 0xc000_0000);
        src.set_intx_pending(true);
        let img = *src.image();
        let mut dst = dev();
        dst.load(&img).unwrap();
        assert_eq!(dst, src);

        // A 1 MiB device's BAR2 can hold an address a 16 MiB one cannot.
        let mut small = ConfigSpace::new(1 << 20, 16);
        wr32(&mut small, 0x18, 0x0010_0000);
        let mut d = dev();
        assert_eq!(
            d.load(small.image()),
            Err(ConfigError::ReadOnlyMismatch(0x1a))
        );
        assert_eq!(d, dev());
        let mut other = ConfigSpace::new(16 << 20, 1);
        assert_eq!(other.load(&img), Err(ConfigError::ReadOnlyMismatch(0x2e)));
        for (off, bit) in [
            (0usize, 1u8),
            (0x06, 0x10),
            (0x08, 1),
            (0x34, 0x40),
            (0x42, 0x80),
            (0x99, 1),
        ] {
            let mut bad = img;
            bad[off] ^= bit;
            let mut d = dev();
            assert_eq!(d.load(&bad), Err(ConfigError::ReadOnlyMismatch(off)));
            assert_eq!(d, dev());
        }
    }
}
