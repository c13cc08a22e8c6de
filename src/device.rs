// SPDX-License-Identifier: GPL-2.0

//! [`MblitDevice`]: one mblit mdev as a VFIO device. It composes the
//! parts of the device, each of which owns its data and says what it
//! guards, and routes each VFIO call to the part it belongs to, as
//! `docs/device.md` specifies:
//!
//! - the hardware ([`Hw`], `hw.rs`: config space, BAR0 registers and their
//!   side effects, device memory, interrupt state) behind the state lock,
//!   with BAR2 user copies in `bar2.rs` and interrupts in `irq.rs`;
//! - the engine (`engine.rs`), which runs for the device through
//!   [`engine::Host`];
//! - the pinned guest pages ([`PinTracker`], `pins.rs`);
//! - the v2 migration ([`Migration`], `migration.rs`, through
//!   [`migration::Host`]);
//! - the DEVICE_STATE region ([`StateRegion`], `state_region.rs`, through
//!   [`state_region::Host`]);
//! - DMA logging ([`DirtyLog`], `dirty_log.rs`).
//!
//! No part imports this file; each reaches the device only through the
//! trait it names.
//!
//! # Locks
//!
//! The locks of one device, in the order they are taken (a lock is only
//! ever taken while holding locks above it in this list, or none):
//!
//! 1. `migration` (`Migration::streams`, a mutex): the streams of the v2
//!    migration in progress. Held for a whole state transition and by the
//!    DEVICE_STATE region's stop and start, so one migration protocol runs
//!    at a time.
//! 2. a stream's lock (`SaveStream::inner`, `ResumeStream::inner`): the
//!    record being read out or received. Never taken while `state` is
//!    held.
//! 3. `state` (a mutex over [`Hw`]): config space, registers, device
//!    memory, interrupt state, the validated ring, the error latch, both
//!    migration protocols' run state. Held only for short, bounded work:
//!    never across a user copy, never while waiting for the engine.
//! 4. `state_region` (`StateRegion::contents`): the DEVICE_STATE
//!    region's snapshot and incoming state; taken inside `state` (or
//!    alone), so a check of the device's state and the region's change
//!    are one critical section.
//!
//! Outside that chain:
//!
//! - `pins` (`PinTracker`, a mutex and a condition variable, `pins.rs`):
//!   the record of pinned guest pages; taken by the engine around each pin
//!   and chunk and by `dma_unmap`, which the IOMMU back-end calls with its
//!   own locks ordered before it (type1: `device_list_lock`). Never held
//!   together with any other lock of the device.
//! - `log` ([`DirtyLog`]'s own mutex, `dirty_log.rs`): DMA logging; taken
//!   alone (the engine takes it after writing a guest page, with no other
//!   lock held).
//! - `counters` (`Counters`): atomics, and a mutex over the debugfs
//!   directory taken alone, only to remove it.
//!
//! **No lock of the driver is held across `copy_to_user` /
//! `copy_from_user`.** Region accesses copy through a bounce buffer: user
//! bytes in first, then the lock for the device-side copy (and the check
//! that the access is allowed, in the same critical section); or the lock
//! for the device-side copy, then the bytes out. So a user whose buffer
//! faults (or is held in a userfaultfd) stalls only itself, never the
//! engine, and `dma_unmap`, which waits for the engine, always returns.
//!
//! Paths that must see the engine stopped (disable, reset, close, a stop
//! for migration) make it unable to start another command under `state`,
//! drop `state`, and flush the work item. Open and close both bring the
//! device to its reset state, so nothing of one user reaches the next.

use crate::{
    bar2,
    dirty_log::DirtyLog,
    engine::{self, Completion, Engine, Host as _},
    hw::{After, Hw},
    irq,
    kapi::{
        datafile::DataFile,
        debugfs::Counters,
        vfio::{self, ioctl, uapi, Device, DeviceInfo, IovaBitmap, RegionInfo},
    },
    logic::{
        config_space::CONFIG_SIZE,
        desc::Ring,
        mig::MigState,
        region,
        regs::{self, Reg, RegAccess, BAR0_SIZE},
        state::{self, DeviceState},
        types::TYPES,
    },
    migration::{self, Host as _, Migration},
    pins::{EngineError, PinTracker, GUEST_PAGE},
    state_region::{self, StateRegion},
    streams,
    vram::Vram,
};
use kernel::{
    debugfs::Dir,
    new_mutex,
    prelude::*,
    sync::Mutex,
    uaccess::{UserSliceReader, UserSliceWriter},
};

/// Region offsets in the device file are `index << REGION_SHIFT` (the
/// vfio-pci convention).
const REGION_SHIFT: u32 = 40;

/// debugfs counters, in this order.
const COUNTER_NAMES: [&CStr; 5] = [
    c"commands",
    c"bytes",
    c"pinned_pages",
    c"pin_budget",
    c"errors",
];
const C_COMMANDS: usize = 0;
const C_BYTES: usize = 1;
const C_PINNED: usize = 2;
const C_BUDGET: usize = 3;
const C_ERRORS: usize = 4;

/// What a device reset covers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// The device only (`VFIO_DEVICE_RESET`): the user's interrupt
    /// triggers and DMA logging stay.
    Device,
    /// The device and what belonged to the user of the device file
    /// (interrupt triggers, DMA logging): for open and close.
    NewUser,
}

/// The driver data of one mblit VFIO device.
#[pin_data]
pub(crate) struct MblitDevice {
    /// Device memory size in bytes (fixed by the mdev type).
    vram_size: u64,
    /// The mdev type id (device memory in MiB).
    type_id: u32,
    /// The hardware; lock 3 of # Locks.
    #[pin]
    state: Mutex<Hw>,
    /// The pinned guest pages; its lock is taken alone (# Locks).
    #[pin]
    pins: PinTracker,
    /// debugfs counters (atomics).
    #[pin]
    counters: Counters<5>,
    /// The v2 migration; its lock is lock 1 of # Locks.
    #[pin]
    migration: Migration<Self>,
    /// The DEVICE_STATE region; its lock is lock 4 of # Locks.
    #[pin]
    state_region: StateRegion,
    /// DMA logging; its lock is taken alone (# Locks).
    #[pin]
    log: DirtyLog,
}

impl MblitDevice {
    /// A device of mdev type `type_index` named `name`, in its reset state,
    /// with a pin budget of `pin_budget` pages and its counters in
    /// `debugfs/<name>` under `debug_root`.
    pub(crate) fn new(
        type_index: usize,
        pin_budget: u32,
        debug_root: &Dir,
        name: &CStr,
    ) -> impl PinInit<Self, Error> {
        let ty = TYPES.get(type_index).copied();
        // Creates the debugfs directory now, so the initialiser borrows
        // nothing.
        let counters = Counters::new(debug_root, name, &COUNTER_NAMES);
        try_pin_init!(Self {
            vram_size: ty.map_or(0, |t| t.vram_bytes()),
            type_id: ty.map_or(0, |t| t.vram_mib),
            state <- {
                let ty = ty.ok_or(EINVAL)?;
                new_mutex!(Hw::new(ty)?, "mblit_state")
            },
            pins <- PinTracker::new(pin_budget),
            counters <- counters,
            migration <- Migration::new(),
            state_region <- StateRegion::new(state::max_encoded_len(
                ty.map_or(0, |t| t.vram_bytes())
            )),
            log <- DirtyLog::new(),
        })
        .pin_chain(move |this| {
            this.counters.set(C_BUDGET, u64::from(pin_budget));
            Ok(())
        })
    }

    /// Makes sure the engine has stopped: waits for the command in
    /// progress (which unpins its pages when it ends). The caller has made
    /// the engine unable to start another command (e.g. cleared `ENABLE`).
    fn quiesce(dev: &Device<Self>) {
        dev.flush_work();
        dev.update_pin_count();
    }

    /// Brings the device to the state a reset gives: the migration ends,
    /// the engine stops (its pages unpinned), registers, config space,
    /// device memory (freed: it reads as zeros) and the DEVICE_STATE region
    /// go back to their reset values; [`Reset::NewUser`] also drops what
    /// belongs to the user of the device file.
    fn reset_device(dev: &Device<Self>, scope: Reset) {
        let new_user = scope == Reset::NewUser;
        Migration::reset(&**dev);
        if new_user {
            dev.log.stop();
        }
        dev.state.lock().regs.set(Reg::Ctrl, 0);
        Self::quiesce(dev);
        let mut st = dev.state.lock();
        st.reset_engine();
        st.config.reset();
        st.vram.clear();
        if new_user {
            st.irq.clear();
        }
        st.running = true;
        dev.state_region.clear();
        st.sync(0);
    }

    /// Queues the engine if it has work it may run.
    fn kick(dev: &Device<Self>) {
        if dev.state.lock().next_command().is_some() {
            dev.queue_work();
        }
    }

    /// A BAR0 write of `data` (right-aligned, `width` bytes) at `offset`,
    /// and what it makes the engine do. `EBUSY` while a migration protocol
    /// has the device stopped, checked in the critical section that writes
    /// (so a write cannot land after a stop took its snapshot).
    fn write_reg(dev: &Device<Self>, acc: &RegAccess, data: u64) -> Result {
        let mut st = dev.state.lock();
        let after = st.write_reg(acc, data)?;
        dev.counters.set(C_ERRORS, st.errors);
        drop(st);
        match after {
            After::Nothing => {}
            After::Run => {
                dev.queue_work();
            }
            After::Stop => Self::quiesce(dev),
            After::ResetEngine => {
                // The command in progress finishes first.
                Self::quiesce(dev);
                dev.state.lock().reset_engine();
            }
        }
        Ok(())
    }

    /// A config space write: bus master and INTx disable affect the engine
    /// and the interrupt.
    fn write_config(dev: &Device<Self>, offset: u64, data: &[u8]) -> Result {
        let after = dev.state.lock().write_config(offset, data)?;
        match after {
            After::Run => {
                dev.queue_work();
            }
            After::Stop => dev.flush_work(),
            After::Nothing | After::ResetEngine => {}
        }
        Ok(())
    }

    /// `VFIO_DEVICE_GET_INFO`.
    fn get_info(arg: UserPtr) -> Result<isize> {
        // mblit reports no capabilities (cap_offset is not written back).
        let mut info: DeviceInfo = vfio::read_arg(arg)?;
        info.flags = uapi::DEVICE_FLAGS_PCI | uapi::DEVICE_FLAGS_RESET;
        info.num_regions = region::STATE_REGION_INDEX + 1;
        info.num_irqs = uapi::PCI_NUM_IRQS;
        vfio::write_arg(arg, &info)?;
        Ok(0)
    }
}

impl engine::Host for MblitDevice {
    fn pins(&self) -> &PinTracker {
        &self.pins
    }

    fn vram_size(&self) -> u64 {
        self.vram_size
    }

    fn log_write(&self, page_iova: u64) {
        self.log.mark(page_iova);
    }

    fn vram_read(&self, offset: u64, out: &mut [u8]) -> Result {
        self.state.lock().vram.read_into(offset, out)
    }

    fn vram_write(&self, offset: u64, data: &[u8]) -> Result {
        self.state.lock().vram.write_from(offset, data)
    }

    fn next_command(&self) -> Option<(Ring, u32)> {
        self.state.lock().next_command()
    }

    fn finish_command(&self, head: u32, result: core::result::Result<Completion, EngineError>) {
        self.update_pin_count();
        let mut st = self.state.lock();
        if let Ok(done) = &result {
            self.counters.add(C_COMMANDS, 1);
            self.counters.add(C_BYTES, done.bytes);
        }
        st.complete(head, result);
        self.counters.set(C_ERRORS, st.errors);
    }

    fn engine_idle(&self) {
        let errors = self.state.lock().errors;
        self.counters.set(C_ERRORS, errors);
        self.update_pin_count();
    }

    fn update_pin_count(&self) {
        let n = self.pins.count();
        self.counters.set(C_PINNED, n as u64);
    }
}

impl streams::Source for MblitDevice {
    fn state_type(&self) -> (u32, u64) {
        (self.type_id, self.vram_size)
    }

    fn with_vram<R>(&self, f: impl FnOnce(&Vram) -> R) -> R {
        f(&self.state.lock().vram)
    }

    fn with_vram_mut<R>(&self, f: impl FnOnce(&mut Vram) -> Result<R>) -> Result<R> {
        f(&mut self.state.lock().vram)
    }

    fn device_state(&self) -> DeviceState {
        self.state.lock().device_state(self.type_id, self.vram_size)
    }
}

impl migration::Host for MblitDevice {
    fn migration(&self) -> &Migration<Self> {
        &self.migration
    }

    fn region_running(&self) -> bool {
        self.state.lock().running
    }

    fn v2_state(&self) -> MigState {
        self.state.lock().v2
    }

    fn set_v2_state(&self, s: MigState) {
        let mut st = self.state.lock();
        st.v2 = s;
        st.sync(0);
    }

    fn quiesce_engine(dev: &Device<Self>) {
        Self::quiesce(dev);
    }

    fn kick_engine(dev: &Device<Self>) {
        Self::kick(dev);
    }

    fn apply_device_state(&self, s: &DeviceState) -> Result {
        let config = Hw::config_of(self.type_id, self.vram_size, s)?;
        let mut st = self.state.lock();
        st.load(s, config);
        st.sync(0);
        self.counters.set(C_ERRORS, st.errors);
        Ok(())
    }

    fn reset_contents(&self) {
        let mut st = self.state.lock();
        st.reset_engine();
        st.config.reset();
        st.vram.clear();
        st.sync(0);
    }
}

impl state_region::Host for MblitDevice {
    fn hw(&self) -> &Mutex<Hw> {
        &self.state
    }

    fn state_region(&self) -> &StateRegion {
        &self.state_region
    }

    fn errors_changed(&self, errors: u64) {
        self.counters.set(C_ERRORS, errors);
    }
}

/// Splits a device file offset into region index and offset in the region.
fn split(pos: u64) -> (u64, u64) {
    (pos >> REGION_SHIFT, pos & ((1u64 << REGION_SHIFT) - 1))
}

#[vtable]
impl vfio::Ops for MblitDevice {
    const NAME: &'static CStr = c"mblit";

    fn open(dev: &Device<Self>) -> Result {
        // A new user starts from the reset state, whatever happened before
        // (close resets too; this makes the rule local).
        Self::reset_device(dev, Reset::NewUser);
        Ok(())
    }

    fn close(dev: &Device<Self>) {
        // Stop the engine, drop every pin and interrupt trigger, end the
        // migration, free device memory: nothing of this user may stay
        // reachable once the device is closed.
        Self::reset_device(dev, Reset::NewUser);
    }

    fn removed(dev: &Device<Self>) {
        // Every user has closed the device (so it is in its reset state);
        // a migration file may still be open. Free what is left, so the
        // budget that the parent now returns is really free, and let stale
        // files fail.
        dev.migration.end_streams();
        dev.log.stop();
        {
            let mut st = dev.state.lock();
            st.vram.release();
            dev.state_region.clear();
        }
        dev.counters.remove();
    }

    fn read(dev: &Device<Self>, out: &mut UserSliceWriter, pos: u64) -> Result<usize> {
        let (index, offset) = split(pos);
        let len = out.len();
        match u32::try_from(index).map_err(|_| EINVAL)? {
            uapi::PCI_CONFIG_REGION_INDEX => {
                // Most reads are of one register: no 256-byte buffer to
                // clear for those.
                let mut small = [0u8; 8];
                let mut whole;
                let buf = if len <= small.len() {
                    &mut small[..len]
                } else {
                    whole = [0u8; CONFIG_SIZE as usize];
                    whole.get_mut(..len).ok_or(EINVAL)?
                };
                dev.state
                    .lock()
                    .config
                    .read(offset, buf)
                    .map_err(|_| EINVAL)?;
                out.write_slice(buf)?;
            }
            uapi::PCI_BAR0_REGION_INDEX => {
                let acc = regs::decode(offset, len).map_err(|_| EINVAL)?;
                let value = dev.state.lock().regs.read(&acc).to_le_bytes();
                out.write_slice(&value[..len])?;
            }
            uapi::PCI_BAR2_REGION_INDEX => bar2::read(&dev.state, dev.vram_size, offset, out)?,
            region::STATE_REGION_INDEX => StateRegion::user_read(dev, out, offset)?,
            _ => return Err(EINVAL),
        }
        Ok(len)
    }

    fn write(dev: &Device<Self>, input: &mut UserSliceReader, pos: u64) -> Result<usize> {
        let (index, offset) = split(pos);
        let len = input.len();
        match u32::try_from(index).map_err(|_| EINVAL)? {
            uapi::PCI_CONFIG_REGION_INDEX => {
                // Validate before copying: a bad access is EINVAL even if
                // its buffer faults.
                let end = offset.checked_add(len as u64).ok_or(EINVAL)?;
                if len == 0 || end > u64::from(CONFIG_SIZE) {
                    return Err(EINVAL);
                }
                let mut buf = [0u8; CONFIG_SIZE as usize];
                let buf = buf.get_mut(..len).ok_or(EINVAL)?;
                input.read_slice(buf)?;
                Self::write_config(dev, offset, buf)?;
            }
            uapi::PCI_BAR0_REGION_INDEX => {
                // Validate before copying, so a bad access reads nothing.
                let acc = regs::decode(offset, len).map_err(|_| EINVAL)?;
                let mut bytes = [0u8; 8];
                input.read_slice(&mut bytes[..len])?;
                Self::write_reg(dev, &acc, u64::from_le_bytes(bytes))?;
            }
            uapi::PCI_BAR2_REGION_INDEX => bar2::write(&dev.state, dev.vram_size, offset, input)?,
            region::STATE_REGION_INDEX => StateRegion::user_write(dev, input, offset)?,
            _ => return Err(EINVAL),
        }
        Ok(len)
    }

    fn region_info(dev: &Device<Self>, index: u32) -> Result<RegionInfo> {
        let rw = uapi::REGION_INFO_FLAG_READ | uapi::REGION_INFO_FLAG_WRITE;
        let size = match index {
            uapi::PCI_CONFIG_REGION_INDEX => u64::from(CONFIG_SIZE),
            uapi::PCI_BAR0_REGION_INDEX => u64::from(BAR0_SIZE),
            uapi::PCI_BAR2_REGION_INDEX => dev.vram_size,
            region::STATE_REGION_INDEX => {
                return Ok(RegionInfo {
                    offset: u64::from(index) << REGION_SHIFT,
                    size: dev.state_region.size(),
                    flags: rw,
                    cap_type: Some((
                        region::REGION_TYPE_DEVICE_STATE,
                        region::REGION_SUBTYPE_DEVICE_STATE,
                    )),
                })
            }
            i if i < uapi::PCI_NUM_REGIONS => 0,
            _ => return Err(EINVAL),
        };
        Ok(RegionInfo {
            offset: u64::from(index) << REGION_SHIFT,
            size,
            flags: if size != 0 { rw } else { 0 },
            cap_type: None,
        })
    }

    fn ioctl(dev: &Device<Self>, cmd: u32, arg: UserPtr) -> Result<isize> {
        match cmd {
            ioctl::DEVICE_GET_INFO => Self::get_info(arg),
            ioctl::DEVICE_GET_IRQ_INFO => irq::get_irq_info(arg),
            ioctl::DEVICE_SET_IRQS => {
                let req = irq::parse_set(arg)?;
                let mut st = dev.state.lock();
                let st = &mut *st;
                let pending = st.config.intx_pending();
                st.irq.apply(req, &mut st.config, pending)?;
                Ok(0)
            }
            ioctl::DEVICE_RESET => {
                Self::reset_device(dev, Reset::Device);
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }

    fn dma_unmap(dev: &Device<Self>, iova: u64, length: u64) {
        // Never unpin here (pins.rs explains why): stop the command in
        // progress and wait, on what the engine signals, until no page of
        // the range is pinned. No timeout: the engine always gets there.
        dev.pins.unmap(iova, length);
        dev.update_pin_count();
    }

    fn work(dev: &Device<Self>) {
        Engine::run(dev);
    }

    const MIGRATION_FLAGS: u32 = migration::MIGRATION_FLAGS;

    fn mig_set_state(dev: &Device<Self>, new: u32) -> Result<Option<DataFile>> {
        Migration::set_state(dev, new)
    }

    fn mig_get_state(dev: &Device<Self>) -> Result<u32> {
        Ok(dev.v2_state().value())
    }

    fn mig_data_size(dev: &Device<Self>) -> Result<usize> {
        Migration::data_size(dev)
    }

    fn log_start(dev: &Device<Self>, ranges: &[(u64, u64)], page_size: &mut u64) -> Result {
        dev.log.start(ranges, page_size)
    }

    fn log_stop(dev: &Device<Self>) -> Result {
        dev.log.stop();
        Ok(())
    }

    fn log_read_and_clear(
        dev: &Device<Self>,
        iova: u64,
        length: u64,
        dirty: &mut IovaBitmap<'_>,
    ) -> Result {
        dev.log
            .read_and_clear(iova, length, |p| dirty.set(p, GUEST_PAGE))
    }
}
