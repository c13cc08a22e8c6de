// SPDX-License-Identifier: GPL-2.0

//! The DEVICE_STATE region (docs/device.md §10, docs/migration.md): the
//! run-control byte, the header and the state area of the original
//! live-migration proposal.
//!
//! This file keeps the region's own data (the snapshot a stop took, its
//! generation, the incoming state a destination writes) and the rules of
//! an access: which part of the region it falls in and when it is refused
//! (`EBUSY` while the other protocol or the device's running state forbids
//! it). `device.rs` takes the locks, stops and starts the device, and
//! `hw.rs` turns the device into a state blob and back. Under the state
//! lock nothing here touches user memory: a read is decided under it and
//! copied out after it ([`ReadOut`]; the snapshot is shared, `Arc`), and
//! incoming bytes arrive from a bounce buffer.

use crate::logic::{
    mig::MigState,
    region::{self, Header, Part, RunControl, STATE_AREA_OFFSET},
    state,
};
use kernel::{prelude::*, sync::Arc, uaccess::UserSliceWriter};

/// What a read of the region returns, decided under the state lock and
/// copied out after it.
pub(crate) enum ReadOut {
    /// The run-control byte.
    RunControl(u8),
    /// Header bytes (zeros past the header) from `offset` of the control
    /// page.
    Header { header: Header, offset: u32 },
    /// Bytes `[start, end)` of the snapshot.
    Area {
        snapshot: Arc<KVVec<u8>>,
        start: usize,
        end: usize,
    },
}

impl ReadOut {
    /// Copies the bytes to the user (no lock held).
    pub(crate) fn copy_out(self, out: &mut UserSliceWriter) -> Result {
        match self {
            ReadOut::RunControl(value) => out.write_slice(&[value]),
            ReadOut::Header { header, offset } => {
                let len = out.len();
                let mut chunk = [0u8; 64];
                let mut done = 0usize;
                while done < len {
                    let n = (len - done).min(chunk.len());
                    // Inside the control page (classify): no overflow.
                    header.read(offset + done as u32, &mut chunk[..n]);
                    out.write_slice(&chunk[..n])?;
                    done += n;
                }
                Ok(())
            }
            ReadOut::Area {
                snapshot,
                start,
                end,
            } => out.write_slice(snapshot.get(start..end).ok_or(EINVAL)?),
        }
    }
}

/// Where a write to the region goes.
pub(crate) enum WriteTo {
    /// The run-control byte: stop or start the device.
    RunControl,
    /// The state area, at this offset in it.
    Area(u64),
}

/// The region's data, guarded by the device state lock.
pub(crate) struct StateRegion {
    /// The snapshot taken by the last stop (`None` while running).
    snapshot: Option<Arc<KVVec<u8>>>,
    generation: u64,
    /// The state written into the state area since the stop.
    incoming: KVVec<u8>,
    /// Largest state of this device (bounds the state area).
    max_state: usize,
}

impl StateRegion {
    /// An empty region for a device whose state takes at most `max_state`
    /// bytes.
    pub(crate) fn new(max_state: usize) -> Self {
        Self {
            snapshot: None,
            generation: 0,
            incoming: KVVec::new(),
            max_state,
        }
    }

    /// The region's size.
    pub(crate) fn size(&self) -> u64 {
        u64::from(STATE_AREA_OFFSET) + self.max_state as u64
    }

    /// A stop took `snapshot`.
    pub(crate) fn set_snapshot(&mut self, snapshot: Arc<KVVec<u8>>) {
        self.snapshot = Some(snapshot);
        // A counter of stops: wraps by design.
        self.generation = self.generation.wrapping_add(1);
        self.incoming = KVVec::new();
    }

    /// The device runs again (or was reset): the snapshot and any incoming
    /// state are dropped.
    pub(crate) fn clear(&mut self) {
        self.snapshot = None;
        self.incoming = KVVec::new();
    }

    /// Takes the state written since the stop (empty if none); it is
    /// applied or refused once, either way it is gone.
    pub(crate) fn take_incoming(&mut self) -> KVVec<u8> {
        core::mem::replace(&mut self.incoming, KVVec::new())
    }

    /// Decides a read of `len` bytes at `offset` of the region of a device
    /// of `type_id` that is `running` (run-control) in v2 state `v2`.
    pub(crate) fn read(
        &self,
        offset: u64,
        len: usize,
        type_id: u32,
        running: bool,
        v2: MigState,
    ) -> Result<ReadOut> {
        match region::classify(offset, len, self.size()).map_err(|_| EINVAL)? {
            Part::RunControl if v2 != MigState::Running => Err(EBUSY),
            Part::RunControl => Ok(ReadOut::RunControl(run_control(running))),
            Part::Control { offset } => Ok(ReadOut::Header {
                header: self.header(type_id, running),
                offset,
            }),
            Part::Area { offset } => {
                if running || v2 != MigState::Running {
                    return Err(EBUSY);
                }
                let snapshot = self.snapshot().ok_or(EINVAL)?;
                let start = usize::try_from(offset).map_err(|_| EINVAL)?;
                let end = start.checked_add(len).ok_or(EINVAL)?;
                Ok(ReadOut::Area {
                    snapshot,
                    start,
                    end,
                })
            }
        }
    }

    /// Where a write of `len` bytes at `offset` goes (the header is
    /// read-only: `EINVAL`).
    pub(crate) fn write_target(&self, offset: u64, len: usize) -> Result<WriteTo> {
        match region::classify(offset, len, self.size()).map_err(|_| EINVAL)? {
            Part::RunControl => Ok(WriteTo::RunControl),
            Part::Control { .. } => Err(EINVAL),
            Part::Area { offset } => Ok(WriteTo::Area(offset)),
        }
    }

    /// Writes `data` at `offset` of the state area: only while the device
    /// is stopped by run-control and the v2 protocol is idle (`EBUSY`).
    pub(crate) fn write_area(
        &mut self,
        running: bool,
        v2: MigState,
        offset: u64,
        data: &[u8],
    ) -> Result {
        if running || v2 != MigState::Running {
            return Err(EBUSY);
        }
        self.write_state(offset, data)
    }

    /// The header as it reads now.
    fn header(&self, type_id: u32, running: bool) -> Header {
        Header {
            type_id,
            state_size: match &self.snapshot {
                Some(s) if !running => s.len() as u64,
                _ => 0,
            },
            generation: self.generation,
        }
    }

    /// The snapshot, for a reader to copy out of with no lock held.
    fn snapshot(&self) -> Option<Arc<KVVec<u8>>> {
        self.snapshot.clone()
    }

    /// Stores `data` at `offset` of the incoming state (charged to the
    /// writer's memory cgroup, bounded by the largest state).
    ///
    /// A state is usually written front to back: the first write of its
    /// header reserves the length the header announces (bounded by the
    /// largest state), and each write that continues where the last one
    /// ended is appended, so the bytes are copied once, with no growing
    /// reallocation and no zero-fill. Any other offset works too (the gap
    /// reads as zeros).
    fn write_state(&mut self, offset: u64, data: &[u8]) -> Result {
        let start = usize::try_from(offset).map_err(|_| EINVAL)?;
        let end = start.checked_add(data.len()).ok_or(EINVAL)?;
        if end > self.max_state {
            return Err(EINVAL);
        }
        if start == 0 && self.incoming.is_empty() {
            if let Some(len) = state::announced_len(data) {
                let room = len.clamp(end, self.max_state);
                self.incoming.reserve(room, GFP_KERNEL_ACCOUNT)?;
            }
        }
        if start == self.incoming.len() {
            return Ok(self.incoming.extend_from_slice(data, GFP_KERNEL_ACCOUNT)?);
        }
        if self.incoming.len() < end {
            self.incoming.resize(end, 0, GFP_KERNEL_ACCOUNT)?;
        }
        self.incoming[start..end].copy_from_slice(data);
        Ok(())
    }
}

/// The run-control value for `running`.
fn run_control(running: bool) -> u8 {
    if running {
        RunControl::Running.value()
    } else {
        RunControl::Stopped.value()
    }
}
