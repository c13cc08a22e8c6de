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
    pins::{EngineError, GUEST_PAGE},
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
            dev.pins.lock().begin_command();
            let result = Self::execute(dev, ring, head, &mut bounce);
            dev.pins.lock().end_command();
            dev.finish_command(head, result);
        }
        dev.engine_idle();
    }

    /// Fetches, decodes and executes the descriptor at `head`.
    fn execute(
        dev: &Device<Self>,
        ring: Ring,
        head: u32,
        bounce: &mut Chunk,
    ) -> core::result::Result<Completion, EngineError> {
        let mut raw: RawDesc = [0; DESC_SIZE as usize];
        let pin = |iova, write| dev.pin_page(iova, write);
        dev.pins
            .lock()
            .read(ring.desc_iova(head), &mut raw, true, &pin)?;
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
                    Self::store(dev, dst, done, &bounce[..n])?;
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
                    Self::load(dev, src, done, &mut bounce[..n])?;
                    Self::store(dev, dst, done, &bounce[..n])?;
                    done += n as u64;
                }
                Ok(Completion {
                    bytes: u64::from(len),
                    fence: None,
                })
            }
            Command::Fence { iova, value, irq } => {
                dev.pins.lock().write(iova, &value.to_le_bytes(), &pin)?;
                Ok(Completion {
                    bytes: 0,
                    fence: Some((value, irq)),
                })
            }
        }
    }

    /// Bytes to move next at `addr + done`: up to the end of the page.
    fn chunk_len(addr: Addr, done: u64, left: u64) -> usize {
        let at = addr.value().wrapping_add(done) % GUEST_PAGE;
        (GUEST_PAGE - at).min(left) as usize
    }

    /// Reads `out.len()` bytes at `addr + done`.
    fn load(
        dev: &Device<Self>,
        addr: Addr,
        done: u64,
        out: &mut [u8],
    ) -> core::result::Result<(), EngineError> {
        // No wrap: decode checked both ranges.
        let a = addr.value() + done;
        match addr {
            Addr::Guest(_) => {
                let pin = |iova, write| dev.pin_page(iova, write);
                dev.pins.lock().read(a, out, false, &pin)
            }
            Addr::Device(_) => dev.vram_read(a, out).map_err(|_| (ErrorCode::DevRange, a)),
        }
    }

    /// Writes `data` at `addr + done`.
    fn store(
        dev: &Device<Self>,
        addr: Addr,
        done: u64,
        data: &[u8],
    ) -> core::result::Result<(), EngineError> {
        let a = addr.value() + done;
        match addr {
            Addr::Guest(_) => {
                let pin = |iova, write| dev.pin_page(iova, write);
                dev.pins.lock().write(a, data, &pin)
            }
            Addr::Device(_) => dev
                .vram_write(a, data)
                .map_err(|_| (ErrorCode::DevRange, a)),
        }
    }
}
