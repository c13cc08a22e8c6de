// SPDX-License-Identifier: GPL-2.0

//! The CRC32 of the state format, for the trailer of both record kinds.

/// CRC32 lookup tables for slicing-by-8: `T[0]` is the classic byte table
/// of the reflected IEEE polynomial, `T[k][b]` the CRC of byte `b` followed
/// by `k` zero bytes.
///
/// Evaluated at compile time (for [`CRC_TABLES`]); its counters are bounded
/// by their loops (`i < 256`, `k < 8`, `1 <= s < 8`), so no overflow.
#[allow(clippy::arithmetic_side_effects)]
const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

pub(super) static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

/// The CRC32 of the format: IEEE 802.3 (zlib, PNG), reflected polynomial
/// `0xEDB88320`, initial value and final xor `0xFFFFFFFF`. Incremental:
/// `update` with consecutive pieces equals one `update` with the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32 {
    state: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub const fn new() -> Self {
        Self { state: 0xffff_ffff }
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.state = crc_update(self.state, data);
    }

    /// The CRC of everything added so far.
    pub const fn finish(&self) -> u32 {
        !self.state
    }
}

/// The CRC register `c` advanced over `data`: portable slicing-by-8, what
/// the module uses unless it is built with `MBLIT_KERNEL_CRC=y` (Kbuild
/// sets `cfg(kernel_crc32)`: the kernel's `crc32_le()`, measured
/// slower in the benchmark VM; docs/benchmarks.md). The host tests check
/// this one against a bitwise reference.
#[cfg_attr(kernel_crc32, allow(dead_code))]
fn soft_update(mut c: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        if let Some(&[b0, b1, b2, b3, b4, b5, b6, b7]) = w.first_chunk::<8>() {
            let lo = c ^ u32::from_le_bytes([b0, b1, b2, b3]);
            c = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][b4 as usize]
                ^ t[2][b5 as usize]
                ^ t[1][b6 as usize]
                ^ t[0][b7 as usize];
        }
    }
    for &b in words.remainder() {
        c = (c >> 8) ^ t[0][((c ^ u32::from(b)) & 0xff) as usize];
    }
    c
}

#[cfg(not(kernel_crc32))]
fn crc_update(c: u32, data: &[u8]) -> u32 {
    soft_update(c, data)
}

#[cfg(kernel_crc32)]
fn crc_update(c: u32, data: &[u8]) -> u32 {
    crate::kapi::crc::crc32_le(c, data)
}

/// The CRC32 ([`Crc32`]) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}
