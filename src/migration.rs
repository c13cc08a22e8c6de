// SPDX-License-Identifier: GPL-2.0

//! VFIO migration v2 (docs/migration.md §3): the device-state machine
//! arcs, which create and end the `data_fd` streams (`streams.rs`).
//!
//! The device implements [`Host`], the narrow interface a migration needs
//! (its state record, device memory, the engine's stop and start), and
//! owns a [`Migration`], which holds the streams under its lock.
//!
//! # Locks
//!
//! [`Migration`]'s lock (the streams of the current migration) is taken
//! before a stream's lock and the device's state lock: the order is
//! `migration` → stream → `state` (the full order: `device.rs`).

use crate::{
    kapi::{
        datafile::{DataFile, Direction},
        vfio::{uapi, Device},
    },
    logic::{
        mig::MigState,
        state::{self, DeviceState},
    },
    streams::{Phase, ResumeStream, SaveStream, Source},
};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex, MutexGuard},
};

/// What a v2 migration needs from its device, beyond what its streams
/// need ([`Source`]).
pub(crate) trait Host: Source {
    /// The device's migration.
    fn migration(&self) -> &Migration<Self>;
    /// Replaces everything but device memory with `s` (validated by the
    /// state decoder).
    fn apply_device_state(&self, s: &DeviceState) -> Result;
    /// Device contents back to reset values (a failed restore).
    fn reset_contents(&self);
    /// Whether the DEVICE_STATE region lets the device run.
    fn region_running(&self) -> bool;
    /// The v2 migration state.
    fn v2_state(&self) -> MigState;
    /// Sets the v2 migration state (the engine follows at its next check).
    fn set_v2_state(&self, s: MigState);
    /// Waits for the command in progress after the engine was told to stop.
    fn quiesce_engine(dev: &Device<Self>);
    /// Lets the engine run the work it has.
    fn kick_engine(dev: &Device<Self>);
}

/// The v2 migration of one device.
#[pin_data]
pub(crate) struct Migration<T: Host> {
    /// The streams of the migration in progress. Held for a whole state
    /// transition, and by the DEVICE_STATE region's stop and start: one
    /// migration protocol at a time. Taken before every other lock of the
    /// device.
    #[pin]
    streams: Mutex<Streams<T>>,
}

/// The streams of the migration in progress. Guarded by
/// [`Migration::streams`].
pub(crate) struct Streams<T: Host> {
    save: Option<Arc<SaveStream<T>>>,
    resume: Option<Arc<ResumeStream<T>>>,
}

impl<T: Host> Streams<T> {
    /// Ends every stream: their files report `ENODEV` from now on, and
    /// what they held is freed (the files may stay open for long).
    fn end_streams(&mut self) {
        if let Some(s) = self.save.take() {
            s.end();
        }
        if let Some(r) = self.resume.take() {
            r.end();
        }
    }
}

impl<T: Host> Migration<T> {
    /// No migration in progress.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            streams <- new_mutex!(
                Streams {
                    save: None,
                    resume: None,
                },
                "mblit_mig"
            ),
        })
    }

    /// Keeps the other migration protocol out while the guard lives (the
    /// DEVICE_STATE region's stop and start).
    pub(crate) fn exclusive(&self) -> MutexGuard<'_, Streams<T>> {
        self.streams.lock()
    }

    /// Ends every stream (the device goes away).
    pub(crate) fn end_streams(&self) {
        self.streams.lock().end_streams();
    }

    /// `migration_set_state`: walks the arcs from the current state to
    /// `new`.
    pub(crate) fn set_state(dev: &Device<T>, new: u32) -> Result<Option<DataFile>> {
        let target = MigState::from_u32(new).ok_or(EINVAL)?;
        let mut mig = dev.migration().streams.lock();
        if target != MigState::Running && !dev.region_running() {
            // The DEVICE_STATE region has the device stopped.
            return Err(EBUSY);
        }
        let mut file = None;
        let mut cur = dev.v2_state();
        if cur == MigState::Error && target != MigState::Error {
            // Only VFIO_DEVICE_RESET leaves ERROR (and the core's FSM must
            // not be asked about arcs from it).
            return Err(EINVAL);
        }
        while cur != target {
            let next = MigState::from_u32(dev.mig_next_state(cur.value(), new)?).ok_or(EINVAL)?;
            // A data file is handed out only by the last arc.
            if let Some(f) = file.take() {
                drop::<DataFile>(f);
                return Err(EINVAL);
            }
            file = Self::step(dev, &mut mig, cur, next)?;
            cur = next;
        }
        Ok(file)
    }

    /// Executes one arc of the migration FSM.
    fn step(
        dev: &Device<T>,
        mig: &mut Streams<T>,
        from: MigState,
        to: MigState,
    ) -> Result<Option<DataFile>> {
        use MigState::*;
        let mut file = None;
        match (from, to) {
            (Running, RunningP2p) | (PreCopy, PreCopyP2p) => {
                dev.set_v2_state(to);
                T::quiesce_engine(dev);
            }
            (RunningP2p, Running) | (PreCopyP2p, PreCopy) => {
                dev.set_v2_state(to);
                T::kick_engine(dev);
            }
            (RunningP2p, Stop) | (Stop, RunningP2p) => dev.set_v2_state(to),
            (Stop, StopCopy) => {
                let s = SaveStream::new(dev, Phase::StopCopy)?;
                file = Some(DataFile::new(s.clone(), Direction::Read)?);
                mig.save = Some(s);
                dev.set_v2_state(to);
            }
            (StopCopy, Stop) => Self::end_save(dev, mig, to),
            (Stop, Resuming) => {
                let r = ResumeStream::new(dev)?;
                file = Some(DataFile::new(r.clone(), Direction::Write)?);
                dev.with_vram_mut(|v| {
                    v.clear();
                    Ok(())
                })?;
                mig.resume = Some(r);
                dev.set_v2_state(to);
            }
            (Resuming, Stop) => {
                let result = mig.resume.take().ok_or(EINVAL).and_then(|r| r.finish());
                match result.and_then(|ds| dev.apply_device_state(&ds)) {
                    Ok(()) => dev.set_v2_state(to),
                    Err(e) => {
                        // Invalid or incomplete data: the device is left as
                        // after a reset, in ERROR until VFIO_DEVICE_RESET.
                        dev.reset_contents();
                        dev.set_v2_state(Error);
                        return Err(e);
                    }
                }
            }
            (Running, PreCopy) | (RunningP2p, PreCopyP2p) => {
                dev.with_vram_mut(|v| {
                    v.start_tracking();
                    Ok(())
                })?;
                let s = SaveStream::new(dev, Phase::PreCopy)?;
                file = Some(DataFile::new(s.clone(), Direction::Read)?);
                mig.save = Some(s);
                dev.set_v2_state(to);
            }
            (PreCopy, Running) | (PreCopyP2p, RunningP2p) => Self::end_save(dev, mig, to),
            (PreCopyP2p, StopCopy) => {
                dev.set_v2_state(to);
                mig.save.as_ref().ok_or(EINVAL)?.stop()?;
            }
            _ => return Err(EINVAL),
        }
        Ok(file)
    }

    /// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`.
    pub(crate) fn data_size(dev: &Device<T>) -> Result<usize> {
        let mig = dev.migration().streams.lock();
        if let Some(s) = &mig.save {
            return Ok(s.stop_copy_size());
        }
        let pages = dev.with_vram(|v| v.page_count_from(0));
        Ok(state::pages_stream_len(pages) + state::encoded_len(0))
    }

    /// Reset or close: back to RUNNING with no migration file working.
    pub(crate) fn reset(dev: &T) {
        let mut mig = dev.migration().streams.lock();
        Self::end_save(dev, &mut mig, MigState::Running);
    }

    /// Leaves a saving state for `to`: the streams end (their files fail
    /// from now on) and device memory stops tracking changed pages.
    fn end_save(dev: &T, mig: &mut Streams<T>, to: MigState) {
        mig.end_streams();
        // The closure cannot fail, so neither can this.
        let _ = dev.with_vram_mut(|v| {
            v.stop_tracking();
            Ok(())
        });
        dev.set_v2_state(to);
    }
}

/// The v2 flags mblit offers.
pub(crate) const MIGRATION_FLAGS: u32 =
    uapi::MIGRATION_STOP_COPY | uapi::MIGRATION_P2P | uapi::MIGRATION_PRE_COPY;
