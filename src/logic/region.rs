// SPDX-License-Identifier: GPL-2.0

//! The DEVICE_STATE region's interface (docs/device.md, "The DEVICE_STATE
//! region"): its VFIO type/subtype, the run-control values, the header
//! layout, and the decoder that says which part of the region an access
//! falls in. The state area's contents (the state format) are another
//! module's concern.

use super::config_space::VENDOR_ID;
use super::uapi::uapi_consts;

/// `VFIO_REGION_TYPE_PCI_VENDOR_TYPE` from `<linux/vfio.h>`.
const VFIO_REGION_TYPE_PCI_VENDOR_TYPE: u32 = 1 << 31;
/// `VFIO_PCI_NUM_REGIONS` from `<linux/vfio.h>`: the first index for
/// device-specific regions.
const VFIO_PCI_NUM_REGIONS: u32 = 9;

uapi_consts! {
    /// The shared constants of this module, by C name.
    table UAPI;

    /// `vfio_region_info_cap_type.type` of the DEVICE_STATE region:
    /// `VFIO_REGION_TYPE_PCI_VENDOR_TYPE | MBLIT_VENDOR_ID`.
    pub const REGION_TYPE_DEVICE_STATE: u32 = VFIO_REGION_TYPE_PCI_VENDOR_TYPE | VENDOR_ID as u32;
    /// `vfio_region_info_cap_type.subtype` of the DEVICE_STATE region.
    pub const REGION_SUBTYPE_DEVICE_STATE: u32 = 1;
    /// The region index mblit uses for it today. Users must find the region
    /// by its type/subtype, not by this index.
    pub const STATE_REGION_INDEX: u32 = VFIO_PCI_NUM_REGIONS;

    /// Run-control value: the device runs.
    pub const RUNCTL_RUNNING: u8 = 0x01;
    /// Run-control value: the device is stopped; the state area is valid.
    pub const RUNCTL_STOPPED: u8 = 0x02;

    /// Offset of the run-control byte.
    pub const STATE_OFF_RUNCTL: u32 = 0x00;
    /// Offset of the header's magic (u32).
    pub const STATE_OFF_MAGIC: u32 = 0x08;
    /// Offset of the header's format version (u32).
    pub const STATE_OFF_VERSION: u32 = 0x0c;
    /// Offset of the header's device type (u32, the type id).
    pub const STATE_OFF_TYPE: u32 = 0x10;
    /// Offset of the header's state size in bytes (u64).
    pub const STATE_OFF_SIZE: u32 = 0x18;
    /// Offset of the header's snapshot generation (u64).
    pub const STATE_OFF_GENERATION: u32 = 0x20;
    /// End of the header.
    pub const STATE_HEADER_END: u32 = 0x28;
    /// Offset of the state area.
    pub const STATE_AREA_OFFSET: u32 = 0x1000;

    /// The header's magic: the bytes `"MBST"` in little-endian order.
    pub const STATE_MAGIC: u32 = 0x5453_424d;
    /// The state format version the header reports: the version of the
    /// records this build writes.
    pub const STATE_FORMAT_VERSION: u32 = super::state::FORMAT_VERSION;
}

/// The run-control byte's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunControl {
    /// [`RUNCTL_RUNNING`].
    Running,
    /// [`RUNCTL_STOPPED`].
    Stopped,
}

impl RunControl {
    /// The byte value.
    pub const fn value(self) -> u8 {
        match self {
            RunControl::Running => RUNCTL_RUNNING,
            RunControl::Stopped => RUNCTL_STOPPED,
        }
    }

    /// The state a written byte asks for; any other value is `EINVAL`.
    pub const fn from_value(v: u8) -> Option<Self> {
        match v {
            RUNCTL_RUNNING => Some(RunControl::Running),
            RUNCTL_STOPPED => Some(RunControl::Stopped),
            _ => None,
        }
    }
}

/// The header fields that vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Device type (the type id).
    pub type_id: u32,
    /// Size of the current snapshot in bytes (0 while running).
    pub state_size: u64,
    /// Snapshot generation.
    pub generation: u64,
}

impl Header {
    /// The header bytes `[STATE_OFF_MAGIC, STATE_HEADER_END)`.
    pub fn encode(&self) -> [u8; (STATE_HEADER_END - STATE_OFF_MAGIC) as usize] {
        let mut b = [0u8; (STATE_HEADER_END - STATE_OFF_MAGIC) as usize];
        // `off` is a `STATE_OFF_*` header constant, at least
        // `STATE_OFF_MAGIC`, and `v` that field's bytes.
        #[allow(clippy::arithmetic_side_effects)]
        let mut put = |off: u32, v: &[u8]| {
            let o = (off - STATE_OFF_MAGIC) as usize;
            b[o..][..v.len()].copy_from_slice(v);
        };
        put(STATE_OFF_MAGIC, &STATE_MAGIC.to_le_bytes());
        put(STATE_OFF_VERSION, &STATE_FORMAT_VERSION.to_le_bytes());
        put(STATE_OFF_TYPE, &self.type_id.to_le_bytes());
        put(STATE_OFF_SIZE, &self.state_size.to_le_bytes());
        put(STATE_OFF_GENERATION, &self.generation.to_le_bytes());
        b
    }

    /// Copies the region bytes `[offset, offset + out.len())` of the
    /// control page (offsets below [`STATE_AREA_OFFSET`]) into `out`:
    /// header bytes and zeros for reserved bytes. The run-control byte is
    /// the caller's; `out` gets 0 for it.
    pub fn read(&self, offset: u32, out: &mut [u8]) {
        let h = self.encode();
        for (i, o) in out.iter_mut().enumerate() {
            let at = (offset as usize).saturating_add(i);
            *o = at
                .checked_sub(STATE_OFF_MAGIC as usize)
                .and_then(|k| h.get(k))
                .copied()
                .unwrap_or(0);
        }
    }
}

/// Which part of the region an access falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The run-control byte (offset 0, exactly one byte).
    RunControl,
    /// Header and reserved bytes, `[1, STATE_AREA_OFFSET)`: read-only.
    Control {
        /// Offset in the region.
        offset: u32,
    },
    /// The state area.
    Area {
        /// Offset inside the state area.
        offset: u64,
    },
}

/// Why a region access was refused (`EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// Empty, past the region's end, or spanning two parts.
    Range,
}

/// Classifies an access of `len` bytes at `offset` in a region of
/// `region_size` bytes. An access must lie inside one part; the run-control
/// byte is accessed alone.
pub fn classify(offset: u64, len: usize, region_size: u64) -> Result<Part, RegionError> {
    let end = match offset.checked_add(len as u64) {
        Some(e) if len > 0 && e <= region_size => e,
        _ => return Err(RegionError::Range),
    };
    let area = u64::from(STATE_AREA_OFFSET);
    if offset == u64::from(STATE_OFF_RUNCTL) {
        if len == 1 {
            Ok(Part::RunControl)
        } else {
            Err(RegionError::Range)
        }
    } else if end <= area {
        Ok(Part::Control {
            offset: offset as u32,
        })
    } else if let Some(offset) = offset.checked_sub(area) {
        Ok(Part::Area { offset })
    } else {
        Err(RegionError::Range)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn type_and_subtype() {
        assert_eq!(REGION_TYPE_DEVICE_STATE, 0x8000_6d62);
        assert_eq!(REGION_TYPE_DEVICE_STATE & 0xffff, u32::from(VENDOR_ID));
        // Not one of the global types (GFX 1, CCW 2, MIGRATION_DEPRECATED 3).
        const { assert!(REGION_TYPE_DEVICE_STATE > 3) };
        assert_eq!(&STATE_MAGIC.to_le_bytes(), b"MBST");
    }

    #[test]
    fn run_control_values() {
        for r in [RunControl::Running, RunControl::Stopped] {
            assert_eq!(RunControl::from_value(r.value()), Some(r));
        }
        for v in (0..=255u8).filter(|v| !matches!(*v, 1 | 2)) {
            assert_eq!(RunControl::from_value(v), None);
        }
    }

    #[test]
    fn header_layout() {
        let h = Header {
            type_id: 16,
            state_size: 0x0102_0304_0506_0708,
            generation: 9,
        };
        let mut page = [0xaau8; 0x1000];
        h.read(0, &mut page);
        assert_eq!(page[..8], [0u8; 8]);
        assert_eq!(page[8..12], *b"MBST");
        assert_eq!(page[12..16], 1u32.to_le_bytes());
        assert_eq!(page[16..20], 16u32.to_le_bytes());
        assert_eq!(page[20..24], [0u8; 4]);
        assert_eq!(page[24..32], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(page[32..40], 9u64.to_le_bytes());
        assert!(page[40..].iter().all(|&b| b == 0));
        // Any chunk equals the same slice of the whole page.
        for off in [1u32, 7, 9, 23, 39, 40, 4000] {
            for len in [1usize, 3, 8, 17] {
                let mut b = [0u8; 17];
                h.read(off, &mut b[..len]);
                let end = (off as usize + len).min(0x1000);
                assert_eq!(&b[..end - off as usize], &page[off as usize..end]);
            }
        }
        h.read(u32::MAX, &mut [0u8; 4]);
    }

    #[test]
    fn classify_accesses() {
        let size = 0x1000 + 0x10_0000;
        assert_eq!(classify(0, 1, size), Ok(Part::RunControl));
        assert_eq!(classify(0, 2, size), Err(RegionError::Range));
        assert_eq!(classify(0, 0, size), Err(RegionError::Range));
        assert_eq!(classify(1, 7, size), Ok(Part::Control { offset: 1 }));
        assert_eq!(classify(8, 0xff8, size), Ok(Part::Control { offset: 8 }));
        assert_eq!(classify(0xfff, 2, size), Err(RegionError::Range));
        assert_eq!(classify(0x1000, 1, size), Ok(Part::Area { offset: 0 }));
        assert_eq!(
            classify(0x1003, 0x10_0000 - 3, size),
            Ok(Part::Area { offset: 3 })
        );
        assert_eq!(
            classify(0x1003, 0x10_0000 - 2, size),
            Err(RegionError::Range)
        );
        assert_eq!(classify(size, 1, size), Err(RegionError::Range));
        assert_eq!(classify(u64::MAX, 2, size), Err(RegionError::Range));
        assert_eq!(classify(5, usize::MAX, u64::MAX), Err(RegionError::Range));
        assert_eq!(classify(0x1000, 0, size), Err(RegionError::Range));
    }

    #[test]
    fn classify_at_the_limits() {
        let area = u64::from(STATE_AREA_OFFSET);
        let max = u64::MAX;
        // A region as large as the address space: the last byte only.
        assert_eq!(
            classify(max - 1, 1, max),
            Ok(Part::Area {
                offset: max - 1 - area
            })
        );
        assert_eq!(classify(max, 1, max), Err(RegionError::Range));
        assert_eq!(classify(max, 0, max), Err(RegionError::Range));
        let rest = usize::MAX - STATE_AREA_OFFSET as usize; // up to 2^64 - 1
        assert_eq!(classify(area, rest, max), Ok(Part::Area { offset: 0 }));
        assert_eq!(classify(area + 1, rest, max), Err(RegionError::Range));
        assert_eq!(classify(area, usize::MAX, max), Err(RegionError::Range));
        assert_eq!(classify(1, usize::MAX, max), Err(RegionError::Range));
        assert_eq!(classify(0, usize::MAX, max), Err(RegionError::Range));
        assert_eq!(classify(0, 1, max), Ok(Part::RunControl));
        // The control page's last byte; spanning into the area.
        assert_eq!(
            classify(area - 1, 1, max),
            Ok(Part::Control { offset: 0xfff })
        );
        assert_eq!(classify(area - 1, 2, max), Err(RegionError::Range));
        assert_eq!(classify(1, 0xfff, max), Ok(Part::Control { offset: 1 }));
        // Empty and tiny regions.
        for size in [0u64, 1] {
            assert_eq!(classify(0, 1, size).is_ok(), size == 1);
            assert_eq!(classify(1, 1, size), Err(RegionError::Range));
            assert_eq!(classify(max, 1, size), Err(RegionError::Range));
        }
        assert_eq!(classify(area, 1, area), Err(RegionError::Range));
    }

    #[test]
    fn header_with_extreme_values() {
        let h = Header {
            type_id: u32::MAX,
            state_size: u64::MAX,
            generation: u64::MAX,
        };
        let e = h.encode();
        assert_eq!(e.len(), 32);
        assert_eq!(e[8..12], [0xff; 4]);
        assert_eq!(e[12..16], [0; 4]);
        assert_eq!(e[16..32], [0xff; 16]);
        let mut page = [0u8; 0x1000];
        h.read(0, &mut page);
        assert_eq!(page[8..40], e);
        // Offsets near the top of u32, with reads running past it.
        let mut big = [0xaau8; 0x2000];
        for off in [
            STATE_AREA_OFFSET - 1,
            u32::MAX - 0x1000,
            u32::MAX - 1,
            u32::MAX,
        ] {
            h.read(off, &mut big);
            assert!(big.iter().all(|&b| b == 0), "{off:#x}");
            big.fill(0xaa);
        }
        h.read(0, &mut []);
    }
}
