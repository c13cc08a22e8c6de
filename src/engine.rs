// SPDX-License-Identifier: GPL-2.0

//! The ring engine (docs/device.md §7–§8): a work item that fetches,
//! decodes and executes one descriptor after another while the device may
//! run.
//!
//! Each command moves data in chunks of at most one page through a bounce
//! buffer, taking the pin lock for a guest access and the state lock for a
//! device-memory access, never both at once.

use crate::{
    device::MblitDevice,
    kapi::vfio::Device,
    logic::{
        desc::{self, Addr, Command, RawDesc, Ring, DESC_SIZE},
        regs::ErrorCode,
    },
    pins::{CommandPins, EngineError, GUEST_PAGE},
};
use kernel::prelude::*;

/// What a completed command changes in the registers.
pub(crate) struct Completion {
    /// Bytes moved (FILL, COPY), for `BYTE_COUNT`.
    pub(crate) bytes: u64,
    /// A FENCE's value and whether it raises the interrupt.
    pub(crate) fence: Option<(u64, bool)>,
}

type Chunk = [u8; GUEST_PAGE as usize];

impl MblitDevice {
    /// The work item: runs commands until the engine may not run any more.
    pub(crate) fn run_engine(dev: &Device<Self>) {
        let mut bounce = match KBox::<Chunk>::init(pin_init::zeroed::<Chunk>(), GFP_KERNEL) {
            Ok(b) => b,
            // Nothing was fetched; a later doorbell retries.
            Err(_) => return,
        };
        while let Some((ring, head)) = dev.next_command() {
            let mut pins = CommandPins::new(dev, &dev.pins);
            let result = Self::execute(dev, &mut pins, ring, head, &mut bounce);
            // Every page of the command is unpinned before it completes.
            drop(pins);
            dev.finish_command(head, result);
        }
        dev.engine_idle();
    }

    /// Fetches, decodes and executes the descriptor at `head`.
    fn execute(
        dev: &Device<Self>,
        pins: &mut CommandPins<'_, Self>,
        ring: Ring,
        head: u32,
        bounce: &mut Chunk,
    ) -> core::result::Result<Completion, EngineError> {
        let mut raw: RawDesc = [0; DESC_SIZE as usize];
        let desc_iova = ring.desc_iova(head);
        Self::guest_rw(dev, pins, desc_iova, &mut raw, false, true).map_err(|(code, addr)| {
            match code {
                // ERR_ADDR of a failed fetch is the descriptor's IOVA.
                ErrorCode::RingFetch => (code, desc_iova),
                _ => (code, addr),
            }
        })?;
        let cmd = desc::decode(&raw, dev.vram_size()).map_err(|e| (e.code, e.addr))?;
        match cmd {
            Command::Nop => Ok(Completion {
                bytes: 0,
                fence: None,
            }),
            Command::Fill { dst, len, pattern } => {
                let p = pattern.to_le_bytes();
                let mut done = 0u64;
                while done < u64::from(len) {
                    let n = Self::chunk_len(dst, done, u64::from(len) - done);
                    for (j, b) in bounce[..n].iter_mut().enumerate() {
                        *b = p[((done as usize) + j) % 4];
                    }
                    Self::store(dev, pins, dst, done, &bounce[..n])?;
                    done += n as u64;
                }
                Ok(Completion {
                    bytes: u64::from(len),
                    fence: None,
                })
            }
            Command::Copy { dst, src, len } => {
                let mut done = 0u64;
                while done < u64::from(len) {
                    let n = Self::chunk_len(dst, done, u64::from(len) - done).min(Self::chunk_len(
                        src,
                        done,
                        u64::from(len) - done,
                    ));
                    Self::load(dev, pins, src, done, &mut bounce[..n])?;
                    Self::store(dev, pins, dst, done, &bounce[..n])?;
                    done += n as u64;
                }
                Ok(Completion {
                    bytes: u64::from(len),
                    fence: None,
                })
            }
            Command::Fence { iova, value, irq } => {
                Self::guest_rw(dev, pins, iova, &mut value.to_le_bytes(), true, false)?;
                Ok(Completion {
                    bytes: 0,
                    fence: Some((value, irq)),
                })
            }
        }
    }

    /// Copies between guest memory at `iova` and `buf` (`write`: into guest
    /// memory) through the command's pinned pages; `ring` for a descriptor
    /// fetch.
    fn guest_rw(
        dev: &Device<Self>,
        pins: &mut CommandPins<'_, Self>,
        iova: u64,
        buf: &mut [u8],
        write: bool,
        ring: bool,
    ) -> core::result::Result<(), EngineError> {
        let mut done = 0;
        while done < buf.len() {
            // No wrap: decode and the ring check bounded the range.
            let addr = iova + done as u64;
            let at = (addr % GUEST_PAGE) as usize;
            let n = (GUEST_PAGE as usize - at).min(buf.len() - done);
            let page = pins.page(addr - at as u64, write, ring)?;
            let part = &mut buf[done..done + n];
            let copied = if write {
                page.write(at, part)
            } else {
                page.read(at, part)
            };
            copied.map_err(|_| (ErrorCode::IovaFault, addr))?;
            if write {
                dev.log_write(addr - at as u64);
            }
            done += n;
        }
        Ok(())
    }

    /// Bytes to move next at `addr + done`: up to the end of the page.
    fn chunk_len(addr: Addr, done: u64, left: u64) -> usize {
        let at = addr.value().wrapping_add(done) % GUEST_PAGE;
        (GUEST_PAGE - at).min(left) as usize
    }

    /// Reads `out.len()` bytes at `addr + done`.
    fn load(
        dev: &Device<Self>,
        pins: &mut CommandPins<'_, Self>,
        addr: Addr,
        done: u64,
        out: &mut [u8],
    ) -> core::result::Result<(), EngineError> {
        // No wrap: decode checked both ranges.
        let a = addr.value() + done;
        match addr {
            Addr::Guest(_) => Self::guest_rw(dev, pins, a, out, false, false),
            Addr::Device(_) => dev.vram_read(a, out).map_err(|_| (ErrorCode::DevRange, a)),
        }
    }

    /// Writes `data` at `addr + done`.
    fn store(
        dev: &Device<Self>,
        pins: &mut CommandPins<'_, Self>,
        addr: Addr,
        done: u64,
        data: &[u8],
    ) -> core::result::Result<(), EngineError> {
        let a = addr.value() + done;
        match addr {
            Addr::Guest(_) => {
                // `guest_rw` takes a mutable buffer for both directions.
                let mut chunk = [0u8; GUEST_PAGE as usize];
                let chunk = chunk
                    .get_mut(..data.len())
                    .ok_or((ErrorCode::IovaFault, a))?;
                chunk.copy_from_slice(data);
                Self::guest_rw(dev, pins, a, chunk, true, false)
            }
            Addr::Device(_) => dev
                .vram_write(a, data)
                .map_err(|_| (ErrorCode::DevRange, a)),
        }
    }
}
