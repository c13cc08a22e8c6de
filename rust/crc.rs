// SPDX-License-Identifier: GPL-2.0

//! The kernel's CRC32 library, accelerated by the architecture where the
//! CPU allows (x86: PCLMULQDQ folding; otherwise a table).
//!
//! C header: [`include/linux/crc32.h`](srctree/include/linux/crc32.h).

use super::bindings;

/// `crc32_le()`: the reflected IEEE 802.3 CRC32 register `crc` advanced
/// over `data`, with no inversion before or after (the caller's
/// convention decides those). Used only when the module is built
/// with `--cfg kernel_crc32`.
#[cfg_attr(not(kernel_crc32), allow(dead_code))]
pub(crate) fn crc32_le(crc: u32, data: &[u8]) -> u32 {
    // SAFETY: `data` is a live slice, so its `data.len()` bytes at
    // `data.as_ptr()` are readable for the duration of the call;
    // `crc32_le` only reads them and may sleep or not (it takes no lock and
    // saves the FPU state itself around the vector code).
    unsafe { bindings::crc32_le(crc, data.as_ptr().cast(), data.len()) }
}
