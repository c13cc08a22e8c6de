// SPDX-License-Identifier: GPL-2.0

//! The DEVICE_STATE region (docs/device.md §10, docs/migration.md): the
//! run-control byte, the header and the state area of the original
//! live-migration proposal.
//!
//! [`StateRegion`] owns the region's data (the snapshot a stop took, its
//! generation, the incoming state a destination writes) behind its own
//! lock, and answers every access: which part of the region it falls in,
//! when it is refused (`EBUSY` while the v2 protocol or the run-control
//! state forbids it), and the stop and start of the device that the
//! run-control byte asks for. It reaches the device through [`Host`]:
//! its hardware (`hw.rs`, which turns the device into a state blob and
//! back), the engine's stop and start, and the migration lock that keeps
//! one protocol at a time.
//!
//! # Locks
//!
//! The region's lock is taken inside the device's state lock, never the
//! other way round: the checks on the device's state and the region's
//! change happen in one critical section. No lock is held across a user
//! copy: a read is decided under the locks and copied out after them
//! ([`ReadOut`]; the snapshot is shared, `Arc`), and incoming bytes arrive
//! from a bounce buffer.

use crate::{
    hw::Hw,
    kapi::vfio::Device,
    logic::{
        mig::MigState,
        region::{self, Header, Part, RunControl, STATE_AREA_OFFSET},
        state,
    },
    migration,
};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    uaccess::{UserSliceReader, UserSliceWriter},
};

/// Size of the bounce buffer a write to the state area copies through: a
/// state is hundreds of MiB, written in large pieces, and each bounce
/// takes the locks once.
const STATE_BOUNCE: usize = 64 * 1024;

/// What the region needs from its device.
pub(crate) trait Host: migration::Host {
    /// The device's hardware, behind the device's state lock.
    fn hw(&self) -> &Mutex<Hw>;
    /// The device's DEVICE_STATE region.
    fn state_region(&self) -> &StateRegion;
    /// A restore changed the error count (for debugfs).
    fn errors_changed(&self, errors: u64);
}

/// The DEVICE_STATE region of one device.
#[pin_data]
pub(crate) struct StateRegion {
    /// Largest state of this device (bounds the state area).
    max_state: usize,
    /// The snapshot, its generation and the incoming state. Taken inside
    /// the device's state lock (# Locks).
    #[pin]
    contents: Mutex<Contents>,
}

/// What a read of the region returns, decided under the state lock and
/// copied out after it.
enum ReadOut {
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
    fn copy_out(self, out: &mut UserSliceWriter) -> Result {
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
enum WriteTo {
    /// The run-control byte: stop or start the device.
    RunControl,
    /// The state area, at this offset in it.
    Area(u64),
}

/// The region's data, guarded by [`StateRegion::contents`].
struct Contents {
    /// The snapshot taken by the last stop (`None` while running).
    snapshot: Option<Arc<KVVec<u8>>>,
    generation: u64,
    /// The state written into the state area since the stop.
    incoming: KVVec<u8>,
    /// Largest state of this device (bounds the state area).
    max_state: usize,
}

impl Contents {
    /// The region's size.
    fn size(&self) -> u64 {
        size(self.max_state)
    }

    /// A stop took `snapshot`.
    fn set_snapshot(&mut self, snapshot: Arc<KVVec<u8>>) {
        self.snapshot = Some(snapshot);
        // A counter of stops: wraps by design.
        self.generation = self.generation.wrapping_add(1);
        self.incoming = KVVec::new();
    }

    /// The device runs again (or was reset): the snapshot and any incoming
    /// state are dropped.
    fn clear(&mut self) {
        self.snapshot = None;
        self.incoming = KVVec::new();
    }

    /// Takes the state written since the stop (empty if none); it is
    /// applied or refused once, either way it is gone.
    fn take_incoming(&mut self) -> KVVec<u8> {
        core::mem::replace(&mut self.incoming, KVVec::new())
    }

    /// Decides a read of `len` bytes at `offset` of the region of a device
    /// of `type_id` that is `running` (run-control) in v2 state `v2`.
    fn read(
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
    fn write_target(&self, offset: u64, len: usize) -> Result<WriteTo> {
        match region::classify(offset, len, self.size()).map_err(|_| EINVAL)? {
            Part::RunControl => Ok(WriteTo::RunControl),
            Part::Control { .. } => Err(EINVAL),
            Part::Area { offset } => Ok(WriteTo::Area(offset)),
        }
    }

    /// Writes `data` at `offset` of the state area: only while the device
    /// is stopped by run-control and the v2 protocol is idle (`EBUSY`).
    fn write_area(&mut self, running: bool, v2: MigState, offset: u64, data: &[u8]) -> Result {
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

/// The size of the region of a device whose state takes at most
/// `max_state` bytes.
fn size(max_state: usize) -> u64 {
    u64::from(STATE_AREA_OFFSET) + max_state as u64
}

impl StateRegion {
    /// An empty region for a device whose state takes at most `max_state`
    /// bytes.
    pub(crate) fn new(max_state: usize) -> impl PinInit<Self> {
        let max = max_state;
        pin_init!(Self {
            max_state: max,
            contents <- new_mutex!(
                Contents {
                    snapshot: None,
                    generation: 0,
                    incoming: KVVec::new(),
                    max_state: max,
                },
                "mblit_region"
            ),
        })
    }

    /// The region's size.
    pub(crate) fn size(&self) -> u64 {
        size(self.max_state)
    }

    /// The device runs again (or was reset, or goes away): the snapshot and
    /// any incoming state are dropped. The caller holds the state lock.
    pub(crate) fn clear(&self) {
        self.contents.lock().clear();
    }

    /// A user read of the region at `offset`.
    pub(crate) fn user_read<T: Host>(
        dev: &Device<T>,
        out: &mut UserSliceWriter,
        offset: u64,
    ) -> Result {
        let read = {
            let hw = dev.hw().lock();
            let (type_id, _) = dev.state_type();
            dev.state_region().contents.lock().read(
                offset,
                out.len(),
                type_id,
                hw.running,
                hw.v2,
            )?
        };
        read.copy_out(out)
    }

    /// A user write to the region at `offset`: the run-control byte stops
    /// or starts the device; state bytes are copied in through a bounce
    /// buffer, each piece stored under the locks.
    pub(crate) fn user_write<T: Host>(
        dev: &Device<T>,
        input: &mut UserSliceReader,
        offset: u64,
    ) -> Result {
        let len = input.len();
        let this = dev.state_region();
        let target = this.contents.lock().write_target(offset, len)?;
        match target {
            WriteTo::RunControl => {
                let mut v = [0u8; 1];
                input.read_slice(&mut v)?;
                match RunControl::from_value(v[0]).ok_or(EINVAL)? {
                    RunControl::Stopped => Self::stop(dev),
                    RunControl::Running => Self::start(dev),
                }
            }
            WriteTo::Area(offset) => {
                let mut bounce = KVec::from_elem(0u8, len.min(STATE_BOUNCE), GFP_KERNEL)?;
                let mut done = 0usize;
                while done < len {
                    let n = (len - done).min(bounce.len());
                    let chunk = &mut bounce[..n];
                    input.read_slice(chunk)?;
                    let hw = dev.hw().lock();
                    // Inside the region (classify): no overflow.
                    this.contents.lock().write_area(
                        hw.running,
                        hw.v2,
                        offset + done as u64,
                        chunk,
                    )?;
                    drop(hw);
                    done += n;
                }
                Ok(())
            }
        }
    }

    /// Run-control STOPPED: the engine finishes its command, then the
    /// whole state is snapshotted into the region.
    fn stop<T: Host>(dev: &Device<T>) -> Result {
        // One protocol at a time (docs/migration.md §3.4).
        let _mig = dev.migration().exclusive();
        {
            let mut hw = dev.hw().lock();
            if hw.v2 != MigState::Running {
                return Err(EBUSY);
            }
            if !hw.running {
                return Ok(());
            }
            hw.running = false;
            hw.sync(0);
        }
        T::quiesce_engine(dev);
        let (type_id, vram_size) = dev.state_type();
        let mut hw = dev.hw().lock();
        match hw
            .save(type_id, vram_size)
            .and_then(|blob| Ok(Arc::new(blob, GFP_KERNEL_ACCOUNT)?))
        {
            Ok(blob) => {
                dev.state_region().contents.lock().set_snapshot(blob);
                Ok(())
            }
            Err(e) => {
                // No snapshot: keep running rather than sit stopped with
                // nothing to migrate.
                hw.running = true;
                drop(hw);
                T::kick_engine(dev);
                Err(e)
            }
        }
    }

    /// Run-control RUNNING: applies an incoming state first, if one was
    /// written (an invalid one fails the write, the device stays stopped
    /// and unchanged), then lets the device run.
    fn start<T: Host>(dev: &Device<T>) -> Result {
        let _mig = dev.migration().exclusive();
        let (type_id, vram_size) = dev.state_type();
        let this = dev.state_region();
        let mut hw = dev.hw().lock();
        if hw.v2 != MigState::Running {
            return Err(EBUSY);
        }
        if hw.running {
            return Ok(());
        }
        let incoming = this.contents.lock().take_incoming();
        if !incoming.is_empty() {
            hw.restore(type_id, vram_size, &incoming)?;
            dev.errors_changed(hw.errors);
        }
        hw.running = true;
        this.contents.lock().clear();
        hw.sync(0);
        drop(hw);
        T::kick_engine(dev);
        Ok(())
    }
}
