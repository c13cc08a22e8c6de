// SPDX-License-Identifier: GPL-2.0

//! The DEVICE_STATE region (docs/device.md §10, docs/migration.md): the
//! run-control byte, the header and the state area of the original
//! live-migration proposal.
//!
//! This file keeps the region's own data (the snapshot a stop took, its
//! generation, the incoming state a destination writes); `device.rs`
//! answers accesses, stops and starts the device and turns the device into
//! a state blob and back. Nothing here touches user memory: the snapshot is
//! shared (`Arc`) so a reader copies it out with no lock held, and incoming
//! bytes arrive from a bounce buffer.

use crate::logic::{
    region::{Header, RunControl, STATE_AREA_OFFSET},
    state,
};
use kernel::{prelude::*, sync::Arc};

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

    /// The header as it reads now.
    pub(crate) fn header(&self, type_id: u32, running: bool) -> Header {
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
    pub(crate) fn snapshot(&self) -> Option<Arc<KVVec<u8>>> {
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
    pub(crate) fn write_state(&mut self, offset: u64, data: &[u8]) -> Result {
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
pub(crate) fn run_control(running: bool) -> u8 {
    if running {
        RunControl::Running.value()
    } else {
        RunControl::Stopped.value()
    }
}
