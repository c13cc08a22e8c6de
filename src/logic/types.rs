// SPDX-License-Identifier: GPL-2.0

//! The mdev types mblit offers and the device-memory budget they share.
//!
//! Every mdev reserves its type's device memory out of one module-wide
//! budget (the `mem_budget_mib` module parameter). A type's
//! `available_instances` is how many more mdevs of that type fit into what
//! is left of the budget.

use core::ffi::CStr;

/// One mdev type: its sysfs name (the directory is `mblit-<name>`), the
/// name shown in its `name` attribute, and its device-memory size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    /// Suffix of the sysfs type directory, `mblit-<sysfs_name>`.
    pub sysfs_name: &'static CStr,
    /// The type's `name` attribute.
    pub pretty_name: &'static CStr,
    /// Device memory (BAR2) size in MiB.
    pub vram_mib: u32,
}

impl TypeInfo {
    /// Device memory size in bytes.
    pub const fn vram_bytes(&self) -> u64 {
        (self.vram_mib as u64) << 20
    }
}

/// The types, smallest first. The index into this table is the type index
/// the mdev parent registers.
pub const TYPES: [TypeInfo; 3] = [
    TypeInfo {
        sysfs_name: c"1m",
        pretty_name: c"mblit-1M",
        vram_mib: 1,
    },
    TypeInfo {
        sysfs_name: c"16m",
        pretty_name: c"mblit-16M",
        vram_mib: 16,
    },
    TypeInfo {
        sysfs_name: c"256m",
        pretty_name: c"mblit-256M",
        vram_mib: 256,
    },
];

/// Default device-memory budget of all mdevs together, in MiB.
pub const DEFAULT_BUDGET_MIB: u32 = 512;

/// Largest budget accepted, in MiB (1 TiB): keeps the arithmetic far from
/// overflow and refuses nonsense parameters.
pub const MAX_BUDGET_MIB: u32 = 1 << 20;

/// Accounting of the device-memory budget shared by all mdevs.
///
/// The caller serialises access (the driver keeps it under a lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    limit_mib: u32,
    used_mib: u32,
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetError {
    /// Not enough budget is left for the request.
    Exhausted,
}

impl Budget {
    /// A budget of `limit_mib`, clamped to [`MAX_BUDGET_MIB`].
    pub const fn new(limit_mib: u32) -> Self {
        let limit_mib = if limit_mib > MAX_BUDGET_MIB {
            MAX_BUDGET_MIB
        } else {
            limit_mib
        };
        Self {
            limit_mib,
            used_mib: 0,
        }
    }

    /// The limit, in MiB.
    #[cfg(test)]
    pub const fn limit_mib(&self) -> u32 {
        self.limit_mib
    }

    /// MiB currently reserved.
    #[cfg(test)]
    pub const fn used_mib(&self) -> u32 {
        self.used_mib
    }

    /// How many more mdevs of `ty` fit (0 for a type without device
    /// memory).
    pub const fn available(&self, ty: &TypeInfo) -> u32 {
        // `used_mib <= limit_mib` always holds (`reserve` adds only what
        // fits); checked all the same, as is the division by zero.
        match self.limit_mib.checked_sub(self.used_mib) {
            Some(free) => match free.checked_div(ty.vram_mib) {
                Some(n) => n,
                None => 0,
            },
            None => 0,
        }
    }

    /// Reserves the device memory of one mdev of `ty`.
    pub fn reserve(&mut self, ty: &TypeInfo) -> Result<(), BudgetError> {
        if self.available(ty) == 0 {
            return Err(BudgetError::Exhausted);
        }
        // Cannot fail: `used_mib + vram_mib <= limit_mib` when it fits.
        self.used_mib = self
            .used_mib
            .checked_add(ty.vram_mib)
            .ok_or(BudgetError::Exhausted)?;
        Ok(())
    }

    /// Gives back what [`Budget::reserve`] took for one mdev of `ty`.
    ///
    /// Releasing more than was reserved is a driver bug; the count saturates
    /// at zero rather than wrapping.
    pub fn release(&mut self, ty: &TypeInfo) {
        self.used_mib = self.used_mib.saturating_sub(ty.vram_mib);
    }
}

/// Writes the `description` attribute of `ty` into `out`, returning the
/// number of bytes written (truncated to `out`'s length, newline-terminated
/// when it fits).
pub fn describe(ty: &TypeInfo, out: &mut [u8]) -> usize {
    let mut w = ByteWriter { buf: out, len: 0 };
    w.put(b"mblit DMA blitter, ");
    w.put_u32(ty.vram_mib);
    w.put(b" MiB device memory, migratable\n");
    w.len
}

struct ByteWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl ByteWriter<'_> {
    fn put(&mut self, s: &[u8]) {
        for &b in s {
            if self.len == self.buf.len() {
                return;
            }
            self.buf[self.len] = b;
            // `len < buf.len()` (checked above): no overflow.
            #[allow(clippy::arithmetic_side_effects)]
            {
                self.len += 1;
            }
        }
    }

    // `v % 10 <= 9`, so the digit is at most `b'9'`; a `u32` has at most 10
    // decimal digits, so `n <= 10` (the size of `digits`).
    #[allow(clippy::arithmetic_side_effects)]
    fn put_u32(&mut self, mut v: u32) {
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.put(&digits[..n]);
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn types_are_sorted_and_sized() {
        assert_eq!(TYPES.len(), 3);
        assert_eq!(TYPES[0].vram_bytes(), 1 << 20);
        assert_eq!(TYPES[2].vram_bytes(), 256 << 20);
        assert!(TYPES.windows(2).all(|w| w[0].vram_mib < w[1].vram_mib));
    }

    #[test]
    fn default_budget_availability() {
        let b = Budget::new(DEFAULT_BUDGET_MIB);
        assert_eq!(b.available(&TYPES[0]), 512);
        assert_eq!(b.available(&TYPES[1]), 32);
        assert_eq!(b.available(&TYPES[2]), 2);
    }

    #[test]
    fn reserve_until_exhausted_then_release() {
        let mut b = Budget::new(512);
        assert_eq!(b.reserve(&TYPES[2]), Ok(()));
        assert_eq!(b.available(&TYPES[1]), 16);
        assert_eq!(b.reserve(&TYPES[2]), Ok(()));
        assert_eq!(b.available(&TYPES[0]), 0);
        assert_eq!(b.reserve(&TYPES[2]), Err(BudgetError::Exhausted));
        assert_eq!(b.reserve(&TYPES[0]), Err(BudgetError::Exhausted));
        b.release(&TYPES[2]);
        assert_eq!(b.available(&TYPES[2]), 1);
        assert_eq!(b.used_mib(), 256);
    }

    #[test]
    fn mixed_types_share_the_budget() {
        let mut b = Budget::new(20);
        b.reserve(&TYPES[1]).unwrap();
        assert_eq!(b.available(&TYPES[0]), 4);
        assert_eq!(b.available(&TYPES[1]), 0);
        for _ in 0..4 {
            b.reserve(&TYPES[0]).unwrap();
        }
        assert_eq!(b.reserve(&TYPES[0]), Err(BudgetError::Exhausted));
    }

    #[test]
    fn release_saturates_and_limit_is_clamped() {
        let mut b = Budget::new(u32::MAX);
        assert_eq!(b.limit_mib(), MAX_BUDGET_MIB);
        b.release(&TYPES[2]);
        assert_eq!(b.used_mib(), 0);
        let zero = Budget::new(0);
        assert!(TYPES.iter().all(|t| zero.available(t) == 0));
    }

    fn ty(vram_mib: u32) -> TypeInfo {
        TypeInfo {
            vram_mib,
            ..TYPES[0]
        }
    }

    #[test]
    fn budget_at_the_limits() {
        assert_eq!(ty(u32::MAX).vram_bytes(), u64::from(u32::MAX) << 20);
        let mut b = Budget::new(u32::MAX);
        // Types larger than any budget, and a type without memory.
        for t in [ty(u32::MAX), ty(MAX_BUDGET_MIB + 1), ty(0)] {
            assert_eq!(b.available(&t), 0);
            assert_eq!(b.reserve(&t), Err(BudgetError::Exhausted));
            assert_eq!(b.used_mib(), 0);
        }
        // One type the size of the whole budget.
        let all = ty(MAX_BUDGET_MIB);
        assert_eq!(b.available(&all), 1);
        assert_eq!(b.reserve(&all), Ok(()));
        assert_eq!(b.used_mib(), MAX_BUDGET_MIB);
        assert_eq!(b.reserve(&ty(1)), Err(BudgetError::Exhausted));
        assert_eq!(b.available(&ty(1)), 0);
        assert_eq!(b.available(&ty(u32::MAX)), 0);
        b.release(&ty(u32::MAX));
        assert_eq!(b.used_mib(), 0);
        // The whole budget, 1 MiB at a time.
        let one = ty(1);
        assert_eq!(b.available(&one), MAX_BUDGET_MIB);
        for _ in 0..MAX_BUDGET_MIB {
            b.reserve(&one).unwrap();
        }
        assert_eq!(b.used_mib(), MAX_BUDGET_MIB);
        assert_eq!(b.reserve(&one), Err(BudgetError::Exhausted));
        for _ in 0..=MAX_BUDGET_MIB {
            b.release(&one);
        }
        assert_eq!(b.used_mib(), 0);
    }

    #[test]
    fn description_at_the_limits() {
        let text = |mib: u32| {
            let mut buf = [0u8; 128];
            let n = describe(&ty(mib), &mut buf);
            std::string::String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        assert_eq!(
            text(u32::MAX),
            "mblit DMA blitter, 4294967295 MiB device memory, migratable\n"
        );
        assert_eq!(
            text(0),
            "mblit DMA blitter, 0 MiB device memory, migratable\n"
        );
        let full = text(u32::MAX).len();
        for len in [0, 1, 19, 20, 29, full - 1, full] {
            let mut buf = std::vec![0u8; len];
            assert_eq!(describe(&ty(u32::MAX), &mut buf), len);
            assert_eq!(buf[..], text(u32::MAX).as_bytes()[..len]);
        }
    }

    #[test]
    fn description_names_the_size() {
        let mut buf = [0u8; 128];
        let n = describe(&TYPES[2], &mut buf);
        let s = core::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(s, "mblit DMA blitter, 256 MiB device memory, migratable\n");
        let mut small = [0u8; 5];
        assert_eq!(describe(&TYPES[0], &mut small), 5);
        assert_eq!(&small, b"mblit");
    }
}
