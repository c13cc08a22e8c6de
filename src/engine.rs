// SPDX-License-Identifier: GPL-2.0

//! The ring engine (docs/device.md §7–§8): a work item that fetches,
//! decodes and executes one descriptor after another while the device may
//! run.
//!
//! Each command moves data in chunks of at most one page through a
//! heap bounce buffer, taking the pin lock for a guest access and the state
//! lock for a device-memory access, never both at once, and checks at every
//! chunk whether a `dma_unmap` asked it to stop (`pins.rs`).

use crate::{
    kapi::vfio::{Device, Ops},
    logic::{
        desc::{self, Addr, Command, RawDesc, Ring, DESC_SIZE},
        regs::ErrorCode,
    },
    pins::{Access, CommandPins, EngineError, PinTracker, GUEST_PAGE},
};
use core::marker::PhantomData;
use kernel::prelude::*;

/// What the engine needs from the device it runs for: the narrow
/// interface through which it fetches work, reaches device memory and
/// reports what it did. The device implements it; the engine knows
/// nothing else of the device.
pub(crate) trait Host: Ops {
    /// The record of the device's pinned guest pages.
    fn pins(&self) -> &PinTracker;
    /// Device memory size in bytes.
    fn vram_size(&self) -> u64;
    /// The next command the engine may run: `(ring, head)`.
    fn next_command(&self) -> Option<(Ring, u32)>;
    /// Records the outcome of the command at `head`.
    fn finish_command(&self, head: u32, result: core::result::Result<Completion, EngineError>);
    /// The engine found nothing more to run.
    fn engine_idle(&self);
    /// The number of pinned pages changed.
    fn update_pin_count(&self);
    /// Reads device memory at `offset`.
    fn vram_read(&self, offset: u64, out: &mut [u8]) -> Result;
    /// Writes device memory at `offset`.
    fn vram_write(&self, offset: u64, data: &[u8]) -> Result;
    /// The engine wrote the guest page at `page_iova`.
    fn log_write(&self, page_iova: u64);
}

/// The engine of devices of type `T`: its functions run in `T`'s work item.
pub(crate) struct Engine<T>(PhantomData<T>);

/// What a completed command changes in the registers.
pub(crate) struct Completion {
    /// Bytes moved (FILL, COPY), for `BYTE_COUNT`.
    pub(crate) bytes: u64,
    /// A FENCE's value and whether it raises the interrupt.
    pub(crate) fence: Option<(u64, bool)>,
}

type Chunk = [u8; GUEST_PAGE as usize];

/// What a guest-memory read fetches: its faults are reported differently.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// A descriptor (a fault is `ERR_RING_FETCH`).
    Descriptor,
    /// A command's source data (a fault is `ERR_IOVA_FAULT`).
    Data,
}

impl<T: Host> Engine<T> {
    /// The work item: runs commands until the engine may not run any more.
    pub(crate) fn run(dev: &Device<T>) {
        let mut bounce = match KBox::<Chunk>::init(pin_init::zeroed::<Chunk>(), GFP_KERNEL) {
            Ok(b) => b,
            // Nothing was fetched; a later doorbell retries.
            Err(_) => return,
        };
        while let Some((ring, head)) = dev.next_command() {
            let mut pins = CommandPins::new(dev, dev.pins());
            let result = Self::execute(dev, &mut pins, ring, head, &mut bounce);
            // Every page of the command is unpinned before it completes.
            drop(pins);
            dev.finish_command(head, result);
        }
        dev.engine_idle();
    }

    /// Fetches, decodes and executes the descriptor at `head`.
    fn execute(
        dev: &Device<T>,
        pins: &mut CommandPins<'_, T>,
        ring: Ring,
        head: u32,
        bounce: &mut Chunk,
    ) -> core::result::Result<Completion, EngineError> {
        let mut raw: RawDesc = [0; DESC_SIZE as usize];
        let desc_iova = ring.desc_iova(head);
        Self::guest_read(dev, pins, desc_iova, &mut raw, Read::Descriptor).map_err(
            |(code, addr)| {
                match code {
                    // ERR_ADDR of a failed fetch is the descriptor's IOVA.
                    ErrorCode::RingFetch => (code, desc_iova),
                    _ => (code, addr),
                }
            },
        )?;
        let cmd = desc::decode(&raw, dev.vram_size()).map_err(|e| (e.code, e.addr))?;
        let fence = match cmd {
            Command::Nop => None,
            Command::Fill { dst, len, pattern } => {
                let p = pattern.to_le_bytes();
                let len = u64::from(len);
                let mut done = 0u64;
                while done < len {
                    // Every chunk, device memory included: an unmap waits
                    // for this command while its descriptor page is pinned.
                    pins.check_abort()?;
                    let n = Self::chunk_len(dst, done, len - done);
                    // `done` is at most XFER_MAX: no overflow.
                    let phase = (done % 4) as usize;
                    for (j, b) in bounce[..n].iter_mut().enumerate() {
                        *b = p[(phase + j) % 4];
                    }
                    Self::store(dev, pins, dst, done, &bounce[..n])?;
                    done += n as u64;
                }
                None
            }
            Command::Copy { dst, src, len } => {
                let len = u64::from(len);
                let mut done = 0u64;
                while done < len {
                    pins.check_abort()?;
                    let n = Self::chunk_len(dst, done, len - done).min(Self::chunk_len(
                        src,
                        done,
                        len - done,
                    ));
                    Self::load(dev, pins, src, done, &mut bounce[..n])?;
                    Self::store(dev, pins, dst, done, &bounce[..n])?;
                    done += n as u64;
                }
                None
            }
            Command::Fence { iova, value, irq } => {
                Self::guest_write(dev, pins, iova, &value.to_le_bytes())?;
                Some((value, irq))
            }
        };
        Ok(Completion {
            bytes: cmd.bytes(),
            fence,
        })
    }

    /// The page-sized pieces of `[iova, iova + len)`: `(address, offset of
    /// the address in its page, bytes)`. Fails at a piece whose address
    /// would pass 2^64 (decode and the ring check rule that out; the check
    /// keeps a mistake there from wrapping silently).
    fn pieces(
        iova: u64,
        len: usize,
        fault: ErrorCode,
    ) -> impl Iterator<Item = core::result::Result<(u64, usize, usize), EngineError>> {
        let mut done = 0usize;
        core::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let Some(addr) = iova.checked_add(done as u64) else {
                done = len;
                return Some(Err((fault, iova)));
            };
            // `at` < GUEST_PAGE, so the subtraction cannot underflow.
            let at = (addr % GUEST_PAGE) as usize;
            let n = (GUEST_PAGE as usize - at).min(len - done);
            done += n;
            Some(Ok((addr, at, n)))
        })
    }

    /// Reads guest memory at `iova` into `out` through the command's
    /// pinned pages.
    fn guest_read(
        dev: &Device<T>,
        pins: &mut CommandPins<'_, T>,
        iova: u64,
        out: &mut [u8],
        what: Read,
    ) -> core::result::Result<(), EngineError> {
        let fault = match what {
            Read::Descriptor => ErrorCode::RingFetch,
            Read::Data => ErrorCode::IovaFault,
        };
        let mut done = 0;
        for piece in Self::pieces(iova, out.len(), fault) {
            let (addr, at, n) = piece?;
            let pinned = pins.len();
            let page = pins.page(addr - at as u64, Access::Read, fault)?;
            page.read(at, &mut out[done..done + n])
                .map_err(|_| (ErrorCode::IovaFault, addr))?;
            if pins.len() != pinned {
                // debugfs shows the pages pinned now.
                dev.update_pin_count();
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` to guest memory at `iova` through the command's pinned
    /// pages, and logs the pages written.
    fn guest_write(
        dev: &Device<T>,
        pins: &mut CommandPins<'_, T>,
        iova: u64,
        data: &[u8],
    ) -> core::result::Result<(), EngineError> {
        let mut done = 0;
        for piece in Self::pieces(iova, data.len(), ErrorCode::IovaFault) {
            let (addr, at, n) = piece?;
            let page_iova = addr - at as u64;
            let pinned = pins.len();
            let page = pins.page(page_iova, Access::Write, ErrorCode::IovaFault)?;
            page.write(at, &data[done..done + n])
                .map_err(|_| (ErrorCode::IovaFault, addr))?;
            if pins.len() != pinned {
                dev.update_pin_count();
            }
            dev.log_write(page_iova);
            done += n;
        }
        Ok(())
    }

    /// Bytes to move next at `addr + done`: up to the end of the page.
    fn chunk_len(addr: Addr, done: u64, left: u64) -> usize {
        let at = addr.value().wrapping_add(done) % GUEST_PAGE;
        (GUEST_PAGE - at).min(left) as usize
    }

    /// `addr + done`: in range, since decode checked the whole range.
    fn at(addr: Addr, done: u64) -> core::result::Result<u64, EngineError> {
        let code = match addr {
            Addr::Guest(_) => ErrorCode::IovaFault,
            Addr::Device(_) => ErrorCode::DevRange,
        };
        addr.value().checked_add(done).ok_or((code, addr.value()))
    }

    /// Reads `out.len()` bytes at `addr + done`.
    fn load(
        dev: &Device<T>,
        pins: &mut CommandPins<'_, T>,
        addr: Addr,
        done: u64,
        out: &mut [u8],
    ) -> core::result::Result<(), EngineError> {
        let a = Self::at(addr, done)?;
        match addr {
            Addr::Guest(_) => Self::guest_read(dev, pins, a, out, Read::Data),
            Addr::Device(_) => dev.vram_read(a, out).map_err(|_| (ErrorCode::DevRange, a)),
        }
    }

    /// Writes `data` at `addr + done`.
    fn store(
        dev: &Device<T>,
        pins: &mut CommandPins<'_, T>,
        addr: Addr,
        done: u64,
        data: &[u8],
    ) -> core::result::Result<(), EngineError> {
        let a = Self::at(addr, done)?;
        match addr {
            Addr::Guest(_) => Self::guest_write(dev, pins, a, data),
            Addr::Device(_) => dev
                .vram_write(a, data)
                .map_err(|_| (ErrorCode::DevRange, a)),
        }
    }
}
