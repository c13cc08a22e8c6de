// SPDX-License-Identifier: GPL-2.0

//! BAR2 accesses of the VFIO user: device memory (`vram.rs`), read and
//! written through a bounce buffer a page at a time, so that no lock is
//! held across a user copy (`device.rs`, # Locks).

use crate::{hw::Hw, vram::VRAM_PAGE};
use kernel::{
    prelude::*,
    sync::Mutex,
    uaccess::{UserSliceReader, UserSliceWriter},
};

/// Size of the bounce buffer BAR2 accesses copy through.
const BOUNCE: usize = VRAM_PAGE;

/// A bounce buffer for a user copy of `len` bytes.
fn bounce(len: usize) -> Result<KVec<u8>> {
    Ok(KVec::from_elem(0u8, len.min(BOUNCE), GFP_KERNEL)?)
}

/// Checks that `[offset, offset + len)` is a non-empty range of a device
/// memory of `vram_size` bytes.
fn range(vram_size: u64, offset: u64, len: usize) -> Result {
    match offset.checked_add(len as u64) {
        Some(end) if len > 0 && end <= vram_size => Ok(()),
        _ => Err(EINVAL),
    }
}

/// The pieces of `[offset, offset + len)` that end at a page boundary or
/// at the end, as `(position, bytes)`; the range is one [`range`] accepted.
fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        // Below vram_size (checked by `range`): no overflow.
        let pos = offset + done as u64;
        let at = (pos % VRAM_PAGE as u64) as usize;
        let n = (VRAM_PAGE - at).min(len - done);
        done += n;
        Some((pos, n))
    })
}

/// A BAR2 read: device memory is copied into the bounce buffer under
/// the state lock `hw`, a page at a time, and out to the user after it.
pub(crate) fn read(
    hw: &Mutex<Hw>,
    vram_size: u64,
    offset: u64,
    out: &mut UserSliceWriter,
) -> Result {
    let len = out.len();
    range(vram_size, offset, len)?;
    let mut bounce = bounce(len)?;
    for (pos, n) in pieces(offset, len) {
        let chunk = &mut bounce[..n];
        hw.lock().vram.read_into(pos, chunk)?;
        out.write_slice(chunk)?;
    }
    Ok(())
}

/// A BAR2 write: user bytes are copied into the bounce buffer first,
/// then written under the state lock `hw`, in the same critical section as
/// the check that device memory is writable (not stopped for
/// migration). A fault or a stop part-way fails the write (`EFAULT`,
/// `EBUSY`); the pages before it were written, and a stop's snapshot
/// holds them.
pub(crate) fn write(
    hw: &Mutex<Hw>,
    vram_size: u64,
    offset: u64,
    input: &mut UserSliceReader,
) -> Result {
    let len = input.len();
    range(vram_size, offset, len)?;
    let mut bounce = bounce(len)?;
    for (pos, n) in pieces(offset, len) {
        let chunk = &mut bounce[..n];
        input.read_slice(chunk)?;
        let mut st = hw.lock();
        if !st.mmio_writable() {
            return Err(EBUSY);
        }
        st.vram.write_from(pos, chunk)?;
    }
    Ok(())
}
