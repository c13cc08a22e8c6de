// SPDX-License-Identifier: GPL-2.0

//! [`Hw`]: the emulated hardware of one mblit device (docs/device.md) —
//! config space, BAR0 registers and their side effects, device memory, the
//! interrupt state, the validated ring and the error latch, and the run
//! flags of both migration protocols — and its state record in and out.
//!
//! Everything here runs under the device's state lock and does short,
//! bounded work; what must happen outside the lock (waiting for the
//! engine, queueing it) is returned to the caller as an [`After`].

use crate::{
    engine::Completion,
    irq::Irq,
    logic::{
        config_space::{self, ConfigSpace},
        desc::Ring,
        mig::MigState,
        regs::{
            self, status_value, ErrorCode, Reg, RegAccess, RegFile, CTRL_ENABLE, CTRL_RESET,
            INT_ALL, INT_ERROR, INT_FENCE,
        },
        state::{self, DeviceState},
        types::TypeInfo,
    },
    pins::EngineError,
    streams,
    vram::Vram,
};
use kernel::prelude::*;

/// What the engine must do after a guest write, outside the state lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Nothing.
    Nothing,
    /// Run: it has work it may run now.
    Run,
    /// Stop: it may not start another command; wait for the one in
    /// progress.
    Stop,
    /// Reset: wait for the command in progress, then reset the engine
    /// ([`Hw::reset_engine`]).
    ResetEngine,
}

/// The emulated hardware of one device. The device keeps it behind its
/// state lock (`device.rs`, # Locks).
pub(crate) struct Hw {
    pub(crate) config: ConfigSpace,
    pub(crate) regs: RegFile,
    pub(crate) vram: Vram,
    pub(crate) irq: Irq,
    /// The ring validated when `ENABLE` was set.
    pub(crate) ring: Option<Ring>,
    /// The error the engine stopped on, until a reset.
    pub(crate) error: Option<ErrorCode>,
    /// Error stops since creation (debugfs); a counter that wraps.
    pub(crate) errors: u64,
    /// Run-control: false while stopped for migration.
    pub(crate) running: bool,
    /// The v2 migration state (`migration.rs` drives it).
    pub(crate) v2: MigState,
}

impl Hw {
    /// The hardware of a new device of type `ty`, in its reset state.
    pub(crate) fn new(ty: TypeInfo) -> Result<Self> {
        Ok(Self {
            config: ConfigSpace::new(ty.vram_bytes(), config_space::type_id(ty.vram_mib)),
            regs: RegFile::new(),
            vram: Vram::new(ty.vram_bytes())?,
            irq: Irq::default(),
            ring: None,
            error: None,
            errors: 0,
            running: true,
            v2: MigState::Running,
        })
    }

    /// Whether BAR0/BAR2 writes are accepted (not stopped by either
    /// migration protocol).
    pub(crate) fn mmio_writable(&self) -> bool {
        self.running && self.v2.mmio_writable()
    }

    pub(crate) fn enabled(&self) -> bool {
        self.regs.get(Reg::Ctrl) & u64::from(CTRL_ENABLE) != 0
    }

    /// The next command, if the engine may run one: `(ring, head)`.
    pub(crate) fn next_command(&mut self) -> Option<(Ring, u32)> {
        if !self.running
            || !self.v2.engine_runs()
            || !self.enabled()
            || !self.config.bus_master()
            || self.error.is_some()
        {
            return None;
        }
        let ring = self.ring?;
        let head = self.regs.get(Reg::RingHead) as u32;
        let tail = self.regs.get(Reg::RingTail) as u32;
        match ring.pending(head, tail) {
            Ok(0) => None,
            Ok(_) => Some((ring, head)),
            Err(code) => {
                self.fail(code, u64::from(tail));
                None
            }
        }
    }

    /// Recomputes `STATUS` and the interrupt; `events` are sources that
    /// fired just now.
    pub(crate) fn sync(&mut self, events: u32) {
        let head = self.regs.get(Reg::RingHead);
        let tail = self.regs.get(Reg::RingTail);
        let busy = self.enabled() && self.error.is_none() && head != tail;
        self.regs
            .set(Reg::Status, u64::from(status_value(busy, self.error)));
        let status = self.regs.get(Reg::IntStatus) as u32;
        let unmasked = status & !(self.regs.get(Reg::IntMask) as u32) & INT_ALL;
        let events = events & !(self.regs.get(Reg::IntMask) as u32);
        self.irq.update(&mut self.config, unmasked != 0, events);
    }

    /// Raises interrupt sources `bits` in `INT_STATUS`.
    pub(crate) fn raise(&mut self, bits: u32) {
        let s = self.regs.get(Reg::IntStatus) | u64::from(bits);
        self.regs.set(Reg::IntStatus, s);
        self.sync(bits);
    }

    /// Stops the engine on `code` at the current head.
    pub(crate) fn fail(&mut self, code: ErrorCode, addr: u64) {
        self.error = Some(code);
        // Restored from a state blob like every register: any value is
        // valid, so the counter wraps by design.
        self.errors = self.errors.wrapping_add(1);
        let head = self.regs.get(Reg::RingHead);
        self.regs.set(Reg::ErrIndex, head);
        self.regs.set(Reg::ErrAddr, addr);
        self.raise(INT_ERROR);
    }

    /// Engine reset: registers, ring, error and interrupt state.
    pub(crate) fn reset_engine(&mut self) {
        self.regs.reset();
        self.ring = None;
        self.error = None;
        self.irq.reset();
        self.sync(0);
    }

    /// Everything but device memory, for a state record of a device of
    /// `type_id` with `vram_size` bytes of device memory.
    pub(crate) fn device_state(&self, type_id: u32, vram_size: u64) -> DeviceState {
        DeviceState {
            type_id,
            vram_size,
            config: *self.config.image(),
            regs: *self.regs.values(),
            ring_valid: self.ring.is_some() && self.enabled(),
            error: self.error.map_or(regs::ERR_NONE, |e| e.code()),
            errors: self.errors,
            intx_masked: self.irq.masked(),
        }
    }

    /// The config space `s` holds, checked against the read-only bits of
    /// a device of `type_id` with `vram_size` bytes of device memory.
    pub(crate) fn config_of(type_id: u32, vram_size: u64, s: &DeviceState) -> Result<ConfigSpace> {
        let mut config = ConfigSpace::new(vram_size, config_space::type_id(type_id));
        config.load(&s.config).map_err(|_| EINVAL)?;
        Ok(config)
    }

    /// Replaces everything but device memory with `s` (validated by the
    /// state decoder) and `config` (from [`Hw::config_of`]).
    pub(crate) fn load(&mut self, s: &DeviceState, config: ConfigSpace) {
        self.config = config;
        self.regs = s.reg_file();
        self.ring = s.ring();
        self.error = s.error_code();
        self.errors = s.errors;
        self.irq.set_masked(s.intx_masked);
    }

    /// Encodes the whole device state (the device is stopped).
    pub(crate) fn save(&self, type_id: u32, vram_size: u64) -> Result<KVVec<u8>> {
        let ds = self.device_state(type_id, vram_size);
        let npages = self.vram.page_count();
        // The user's memory, bounded by the type's largest state.
        let mut blob = KVVec::from_elem(0u8, state::encoded_len(npages), GFP_KERNEL_ACCOUNT)?;
        state::encode(&ds, npages, self.vram.pages(), &mut blob).map_err(|_| EINVAL)?;
        Ok(blob)
    }

    /// Validates `blob` completely, then replaces the device state with it.
    /// On error nothing has changed.
    pub(crate) fn restore(&mut self, type_id: u32, vram_size: u64, blob: &[u8]) -> Result {
        let decoded = state::decode(blob, type_id, vram_size).map_err(streams::refusal)?;
        let s = &decoded.state;
        // decode() checked the config image against this type's read-only
        // bits and the ring; this cannot fail now.
        let config = Self::config_of(type_id, vram_size, s)?;
        // Build the new device memory first: running out of memory must
        // leave the old state intact.
        let mut vram = Vram::new(vram_size)?;
        vram.write_pages(decoded.pages())?;
        self.load(s, config);
        self.vram = vram;
        Ok(())
    }

    /// A guest write of `data` (right-aligned) through `acc` to BAR0, with
    /// its side effects on the device; `EBUSY` while a migration protocol
    /// has the device stopped. Returns what the engine must do.
    pub(crate) fn write_reg(&mut self, acc: &RegAccess, data: u64) -> Result<After> {
        if !self.mmio_writable() {
            return Err(EBUSY);
        }
        if matches!(
            acc.info.reg,
            Reg::Scratch0 | Reg::Scratch1 | Reg::Scratch2 | Reg::Scratch3
        ) {
            // Plain storage: nothing else depends on it.
            self.regs.write(acc, data);
            return Ok(After::Nothing);
        }
        let was_enabled = self.enabled();
        match acc.info.reg {
            Reg::Ctrl if acc.written(data) & u64::from(CTRL_RESET) != 0 => {
                // Engine reset: the command in progress finishes first.
                self.regs.set(Reg::Ctrl, 0);
                return Ok(After::ResetEngine);
            }
            Reg::RingBase | Reg::RingSize if was_enabled => {
                // Ignored while the ring is enabled.
            }
            Reg::IntMask => {
                let old = self.regs.get(Reg::IntMask) as u32;
                let new = self.regs.write(acc, data) as u32;
                // Unmasking a source whose status is set signals MSI once.
                let status = self.regs.get(Reg::IntStatus) as u32;
                self.sync(old & !new & status);
            }
            _ => {
                self.regs.write(acc, data);
                if acc.info.reg == Reg::Ctrl && !was_enabled && self.enabled() {
                    let base = self.regs.get(Reg::RingBase);
                    let size = self.regs.get(Reg::RingSize) as u32;
                    match Ring::new(base, size) {
                        Ok(ring) => self.ring = Some(ring),
                        Err(code) => {
                            self.ring = None;
                            self.fail(code, base);
                        }
                    }
                }
                self.sync(0);
            }
        }
        // next_command() may stop the engine (BAD_TAIL).
        let runnable = self.next_command().is_some();
        let stopped = was_enabled && !self.enabled();
        Ok(Self::after(runnable, stopped))
    }

    /// A guest write of config space: bus master and INTx disable affect
    /// the engine and the interrupt. Returns what the engine must do.
    pub(crate) fn write_config(&mut self, offset: u64, data: &[u8]) -> Result<After> {
        let was_master = self.config.bus_master();
        self.config.write(offset, data).map_err(|_| EINVAL)?;
        self.sync(0);
        let runnable = self.next_command().is_some();
        let stopped = was_master && !self.config.bus_master();
        Ok(Self::after(runnable, stopped))
    }

    /// Records the outcome of the command at `head`: the registers a
    /// completion updates (and its interrupt), or the error stop.
    pub(crate) fn complete(
        &mut self,
        head: u32,
        result: core::result::Result<Completion, EngineError>,
    ) {
        match result {
            Ok(done) => {
                let mut events = 0;
                if let Some((value, irq)) = done.fence {
                    self.regs.set(Reg::FenceLast, value);
                    if irq {
                        events = INT_FENCE;
                    }
                }
                let bytes = self.regs.get(Reg::ByteCount).wrapping_add(done.bytes);
                self.regs.set(Reg::ByteCount, bytes);
                let cmds = self.regs.get(Reg::CmdCount).wrapping_add(1);
                self.regs.set(Reg::CmdCount, cmds);
                self.regs
                    .set(Reg::RingHead, u64::from(head.wrapping_add(1)));
                if events != 0 {
                    self.raise(events);
                } else {
                    self.sync(0);
                }
            }
            Err((code, addr)) => self.fail(code, addr),
        }
    }

    fn after(runnable: bool, stopped: bool) -> After {
        if runnable {
            After::Run
        } else if stopped {
            After::Stop
        } else {
            After::Nothing
        }
    }
}
