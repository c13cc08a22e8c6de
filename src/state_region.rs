// SPDX-License-Identifier: GPL-2.0

//! The DEVICE_STATE region (docs/device.md §10, docs/migration.md): the
//! run-control byte, the header and the state area of the original
//! live-migration proposal.
//!
//! This file keeps the region's own data (the snapshot a stop took, its
//! generation, the incoming state a destination writes) and answers
//! accesses to it; `device.rs` stops and starts the device and turns the
//! device into a state blob and back.

use crate::logic::region::{Header, RunControl, STATE_AREA_OFFSET};
use kernel::{
    prelude::*,
    uaccess::{UserSliceReader, UserSliceWriter},
};

/// The region's data, guarded by the device state lock.
pub(crate) struct StateRegion {
    /// The snapshot taken by the last stop (empty while running).
    snapshot: KVVec<u8>,
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
            snapshot: KVVec::new(),
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
    pub(crate) fn set_snapshot(&mut self, snapshot: KVVec<u8>) {
        self.snapshot = snapshot;
        self.generation = self.generation.wrapping_add(1);
        self.incoming.clear();
    }

    /// The device runs again (or was reset): the snapshot and any incoming
    /// state are dropped.
    pub(crate) fn clear(&mut self) {
        self.snapshot = KVVec::new();
        self.incoming = KVVec::new();
    }

    /// Takes the state written since the stop (empty if none); it is
    /// applied or refused once, either way it is gone.
    pub(crate) fn take_incoming(&mut self) -> KVVec<u8> {
        core::mem::replace(&mut self.incoming, KVVec::new())
    }

    /// Reads the header part (`offset` inside the control page).
    pub(crate) fn read_header(&self, type_id: u32, running: bool, offset: u32, out: &mut [u8]) {
        let header = Header {
            type_id,
            state_size: if running {
                0
            } else {
                self.snapshot.len() as u64
            },
            generation: self.generation,
        };
        header.read(offset, out);
    }

    /// Copies `len` bytes of the snapshot at `offset` to `out`.
    pub(crate) fn read_state(&self, offset: u64, len: usize, out: &mut UserSliceWriter) -> Result {
        let start = usize::try_from(offset).map_err(|_| EINVAL)?;
        let end = start.checked_add(len).ok_or(EINVAL)?;
        let bytes = self.snapshot.get(start..end).ok_or(EINVAL)?;
        out.write_slice(bytes)
    }

    /// Stores `len` bytes from `input` at `offset` of the incoming state.
    pub(crate) fn write_state(
        &mut self,
        offset: u64,
        len: usize,
        input: &mut UserSliceReader,
    ) -> Result {
        let start = usize::try_from(offset).map_err(|_| EINVAL)?;
        let end = start.checked_add(len).ok_or(EINVAL)?;
        if end > self.max_state {
            return Err(EINVAL);
        }
        if self.incoming.len() < end {
            self.incoming.resize(end, 0, GFP_KERNEL)?;
        }
        input.read_slice(&mut self.incoming[start..end])
    }
}

/// The run-control value for `running`.
pub(crate) fn run_control(running: bool) -> u8 {
    if running {
        RunControl::Running.value()
    } else {
        RunControl::Stopped.value()
    }
}
