// SPDX-License-Identifier: GPL-2.0

//! The `data_fd` streams of a VFIO migration v2 (docs/migration.md §3):
//! [`SaveStream`] on the source, with iterative pre-copy of device memory,
//! and [`ResumeStream`] on the destination. `migration.rs` creates and
//! ends them; they reach the device through [`Source`].
//!
//! # Locks
//!
//! A stream's lock is taken before the device's state lock, and never
//! while `state` is held (the full order: `device.rs`).
//!
//! No lock is held while a stream copies to or from the user: a reader
//! takes the record it reads out of the stream (marking the stream busy,
//! so a second reader gets `EBUSY`), copies, and puts it back; a writer
//! copies into a bounce buffer first and feeds the stream under its lock.
//! Copies go a user page at a time, so a fault after some bytes is a short
//! read or write with the stream advanced by exactly those bytes.
//!
//! Memory a stream holds (the record being read out, the record being
//! received) is the user's: charged to its memory cgroup and bounded by
//! the largest record of the device's type. Ending a stream frees it.

use crate::{
    kapi::{
        compat,
        datafile::{Stream, StreamIn, StreamOut},
        vfio::{self, uapi, Device, DeviceRef, Ops, PrecopyInfo},
    },
    logic::state::{self, DeviceState, RecordKind, StateError, HEADER_LEN, PAGES_CHUNK_MAX},
    vram::Vram,
};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
};

/// What a stream needs from its device.
pub(crate) trait Source: Ops {
    /// The type id and device memory size a state record must match.
    fn state_type(&self) -> (u32, u64);
    /// Everything but device memory, for a state record.
    fn device_state(&self) -> DeviceState;
    /// Runs `f` on device memory.
    fn with_vram<R>(&self, f: impl FnOnce(&Vram) -> R) -> R;
    /// Runs `f` on device memory, mutably.
    fn with_vram_mut<R>(&self, f: impl FnOnce(&mut Vram) -> Result<R>) -> Result<R>;
}

/// The errno for a state record a receiver refuses (docs/migration.md
/// §1.8): `EPROTONOSUPPORT` for a format version newer than this build's,
/// with a (rate-limited) log line naming both versions; `EINVAL` for any
/// other fault.
pub(crate) fn refusal(e: StateError) -> Error {
    match e {
        StateError::NewerVersion(found) => {
            if crate::kapi::log_ratelimit() {
                pr_info!(
                    "refused device state of format version {found}: this driver reads versions {} to {}\n",
                    state::OLDEST_VERSION,
                    state::FORMAT_VERSION
                );
            }
            compat::eprotonosupport()
        }
        _ => EINVAL,
    }
}

/// The source side: reading it yields pages records, then (once stopped)
/// the dirty pages and a final device record, then end of stream.
#[pin_data]
pub(crate) struct SaveStream<T: Source> {
    dev: DeviceRef<T>,
    /// The record being read out and the pass's progress; lock 2 of the
    /// device's # Locks (`device.rs`).
    #[pin]
    inner: Mutex<SaveInner>,
}

struct SaveInner {
    disabled: bool,
    /// A reader has `buf` out (copying it to the user, no lock held).
    reading: bool,
    /// The record being read out, and how much of it was read.
    buf: KVVec<u8>,
    pos: usize,
    /// Whether `buf` is part of the initial pass.
    buf_initial: bool,
    /// Next page index of the initial pass (`None`: the pass is done).
    cursor: Option<usize>,
    /// STOP_COPY: the final device record, until it is queued.
    last: Option<KVVec<u8>>,
    stopped: bool,
}

/// The destination side: records written to it are validated one at a
/// time; pages go into device memory, the device record's state is kept
/// for the transition out of RESUMING.
#[pin_data]
pub(crate) struct ResumeStream<T: Source> {
    dev: DeviceRef<T>,
    /// The record being received and the device record taken in; lock 2
    /// of the device's # Locks (`device.rs`).
    #[pin]
    inner: Mutex<ResumeInner>,
}

struct ResumeInner {
    disabled: bool,
    /// A writer has `buf` out (copying user bytes into it, no lock held).
    writing: bool,
    /// The record being received (its room reserved once its length is
    /// known).
    buf: KVVec<u8>,
    /// Length of the record being received, once its header is in.
    need: Option<(usize, RecordKind)>,
    poisoned: bool,
    device: Option<DeviceState>,
}

/// When a save stream starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// While the device runs (PRE_COPY): pages first, the final record
    /// once the device stops.
    PreCopy,
    /// With the device stopped (STOP_COPY): the final record is taken now.
    StopCopy,
}

impl<T: Source> SaveStream<T> {
    /// Ends the stream: its file reports `ENODEV` from now on, and what it
    /// held is freed (the file may stay open for long).
    pub(crate) fn end(&self) {
        let mut inner = self.inner.lock();
        inner.disabled = true;
        inner.buf = KVVec::new();
        inner.pos = 0;
        inner.last = None;
    }

    /// A stream of `dev`'s state, started in `phase`.
    pub(crate) fn new(dev: &Device<T>, phase: Phase) -> Result<Arc<Self>> {
        let stopped = phase == Phase::StopCopy;
        let last = if stopped {
            Some(Self::final_record(dev)?)
        } else {
            None
        };
        Arc::pin_init(
            try_pin_init!(Self {
                dev: dev.get_ref(),
                inner <- new_mutex!(
                    SaveInner {
                        disabled: false,
                        reading: false,
                        buf: KVVec::new(),
                        pos: 0,
                        buf_initial: false,
                        cursor: Some(0),
                        last,
                        stopped,
                    },
                    "mblit_save"
                ),
            }),
            GFP_KERNEL,
        )
    }

    /// The device record that ends a stream: everything but device memory
    /// (the pages records carry that).
    fn final_record(dev: &Device<T>) -> Result<KVVec<u8>> {
        let ds = dev.device_state();
        let mut out = KVVec::from_elem(0u8, state::encoded_len(0), GFP_KERNEL_ACCOUNT)?;
        state::encode(&ds, 0, core::iter::empty(), &mut out).map_err(|_| EINVAL)?;
        Ok(out)
    }

    /// Builds the next record into `inner.buf`; false when there is none
    /// now. Everything is allocated before the state lock is taken, and a
    /// page's dirty bit is cleared only in the critical section that
    /// encoded it: a failure never loses a page.
    fn refill(&self, inner: &mut SaveInner) -> Result<bool> {
        let found = self.encode_next(inner);
        if !matches!(found, Ok(true)) {
            // Nothing (valid) to read.
            inner.buf.clear();
            inner.pos = 0;
        }
        found
    }

    /// [`SaveStream::refill`]'s work. The consumed record's buffer is
    /// reused as it is: encoding overwrites it in place, and only what a
    /// longer record adds is zero-filled first.
    fn encode_next(&self, inner: &mut SaveInner) -> Result<bool> {
        let dev = &*self.dev;
        inner.pos = 0;
        let max_len = state::pages_chunk_len(PAGES_CHUNK_MAX);
        let reserve = max_len.saturating_sub(inner.buf.len());
        inner.buf.reserve(reserve, GFP_KERNEL_ACCOUNT)?;
        let mut indices = KVec::with_capacity(PAGES_CHUNK_MAX, GFP_KERNEL)?;
        let (type_id, vram_size) = dev.state_type();
        let buf = &mut inner.buf;
        if let Some(from) = inner.cursor {
            let next = dev.with_vram_mut(|v| {
                let next = v.written_from(from, &mut indices);
                if indices.is_empty() {
                    return Ok(None);
                }
                Self::encode_pages(v, type_id, vram_size, &indices, buf)?;
                Ok(Some(next))
            })?;
            inner.cursor = next;
            if next.is_some() {
                inner.buf_initial = true;
                return Ok(true);
            }
        }
        let buf = &mut inner.buf;
        let found = dev.with_vram_mut(|v| {
            v.dirty_pages(&mut indices);
            if indices.is_empty() {
                return Ok(false);
            }
            Self::encode_pages(v, type_id, vram_size, &indices, buf)?;
            v.clear_dirty(&indices);
            Ok(true)
        })?;
        if found {
            inner.buf_initial = false;
            return Ok(true);
        }
        if let Some(last) = inner.last.take() {
            inner.buf = last;
            inner.buf_initial = false;
            return Ok(true);
        }
        Ok(false)
    }

    /// Encodes pages `indices` of `v` into `buf`, whose capacity holds the
    /// largest pages record (so nothing is allocated here); `buf` is
    /// resized to the record, its old bytes overwritten.
    fn encode_pages(
        v: &Vram,
        type_id: u32,
        vram_size: u64,
        indices: &[usize],
        buf: &mut KVVec<u8>,
    ) -> Result {
        buf.resize(state::pages_chunk_len(indices.len()), 0, GFP_KERNEL_ACCOUNT)?;
        let pages = indices.iter().map(|&i| (i as u64, v.page(i)));
        state::encode_pages_chunk(type_id, vram_size, indices.len(), pages, buf).map_err(|_| EINVAL)
    }

    /// STOP_COPY reached from PRE_COPY_P2P: the same stream goes on with
    /// the final part.
    pub(crate) fn stop(&self) -> Result {
        let last = Self::final_record(&self.dev)?;
        let mut inner = self.inner.lock();
        inner.last = Some(last);
        inner.stopped = true;
        Ok(())
    }

    /// `(initial_bytes, dirty_bytes)` not read yet.
    fn pending(&self, inner: &SaveInner) -> (u64, u64) {
        let dev = &*self.dev;
        // 0 while a reader has the record out.
        let in_buf = inner.buf.len().saturating_sub(inner.pos) as u64;
        let initial_pages = inner
            .cursor
            .map_or(0, |from| dev.with_vram(|v| v.page_count_from(from)));
        let dirty_pages = dev.with_vram(|v| v.dirty_count());
        let mut initial = state::pages_stream_len(initial_pages) as u64;
        let mut dirty = state::pages_stream_len(dirty_pages) as u64;
        // Sizes of data bounded by device memory: saturating only to keep
        // a report from ever panicking.
        if inner.buf_initial {
            initial = initial.saturating_add(in_buf);
        } else {
            dirty = dirty.saturating_add(in_buf);
        }
        (initial, dirty)
    }

    /// Bytes a STOP_COPY from now would produce: what is pending, and the
    /// final device record unless it is already queued (then `pending`
    /// counts what is left of it) or read.
    pub(crate) fn stop_copy_size(&self) -> usize {
        let inner = self.inner.lock();
        let (initial, dirty) = self.pending(&inner);
        let last = if !inner.stopped || inner.last.is_some() {
            state::encoded_len(0)
        } else {
            0
        };
        usize::try_from(initial.saturating_add(dirty))
            .unwrap_or(usize::MAX)
            .saturating_add(last)
    }
}

impl<T: Source> Stream for SaveStream<T> {
    const NAME: &'static CStr = c"mblit_mig";

    fn read(&self, out: &mut StreamOut) -> Result<usize> {
        // What a read that stops early returns: the bytes it copied, or
        // `e` if it copied none.
        let partial = |done: usize, e: Error| if done > 0 { Ok(done) } else { Err(e) };
        let mut done = 0;
        while out.len() > 0 {
            let mut inner = self.inner.lock();
            if inner.disabled {
                return partial(done, ENODEV);
            }
            if inner.reading {
                return partial(done, EBUSY);
            }
            if inner.pos == inner.buf.len() {
                match self.refill(&mut inner) {
                    Ok(true) => {}
                    Ok(false) if done == 0 && !inner.stopped => {
                        // Pre-copy's temporary end of stream.
                        return Err(compat::enomsg());
                    }
                    Ok(false) => break,
                    Err(e) => return partial(done, e),
                }
            }
            // Copy with no lock held: the record leaves the stream for the
            // copy and comes back with the position advanced by what the
            // user really got.
            let buf = core::mem::replace(&mut inner.buf, KVVec::new());
            let pos = inner.pos;
            inner.reading = true;
            drop(inner);
            let rest = buf.get(pos..).unwrap_or(&[]);
            let want = rest.len().min(out.len());
            let n = out.write_partial(rest);
            let mut inner = self.inner.lock();
            inner.reading = false;
            if !inner.disabled {
                inner.buf = buf;
                inner.pos = pos + n;
            }
            drop(inner);
            done += n;
            if n < want {
                return partial(done, EFAULT);
            }
        }
        Ok(done)
    }

    fn write(&self, _input: &mut StreamIn) -> Result<usize> {
        Err(EINVAL)
    }

    fn ioctl(&self, cmd: u32, arg: UserPtr) -> Result<isize> {
        if cmd != vfio::ioctl::MIG_GET_PRECOPY_INFO {
            return Err(ENOTTY);
        }
        let mut info: PrecopyInfo = vfio::read_arg(arg)?;
        let inner = self.inner.lock();
        if inner.disabled || inner.stopped {
            // Only in PRE_COPY and PRE_COPY_P2P.
            return Err(EINVAL);
        }
        let (initial, dirty) = self.pending(&inner);
        drop(inner);
        info.flags = 0;
        info.initial_bytes = initial;
        info.dirty_bytes = dirty;
        vfio::write_arg(arg, &info)?;
        Ok(0)
    }

    fn poll(&self) -> u32 {
        uapi::POLL_IN
    }
}

impl<T: Source> ResumeStream<T> {
    /// Ends the stream, as [`SaveStream::end`].
    pub(crate) fn end(&self) {
        let mut inner = self.inner.lock();
        inner.disabled = true;
        inner.buf = KVVec::new();
        inner.need = None;
        inner.device = None;
    }

    /// A stream into `dev`'s state.
    pub(crate) fn new(dev: &Device<T>) -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self {
                dev: dev.get_ref(),
                inner <- new_mutex!(
                    ResumeInner {
                        disabled: false,
                        writing: false,
                        buf: KVVec::new(),
                        need: None,
                        poisoned: false,
                        device: None,
                    },
                    "mblit_resume"
                ),
            }),
            GFP_KERNEL,
        )
    }

    /// How many more bytes the record being received needs, with room
    /// for them reserved in `inner.buf` (a header's worth until its header
    /// is in, then the rest of the record, bounded by `peek_record`).
    fn room(inner: &mut ResumeInner) -> Result<usize> {
        if inner.device.is_some() {
            // Nothing may follow the device record.
            return Err(EINVAL);
        }
        let target = inner.need.map_or(HEADER_LEN, |(len, _)| len);
        let want = target.checked_sub(inner.buf.len()).ok_or(EINVAL)?;
        inner.buf.reserve(want, GFP_KERNEL_ACCOUNT)?;
        Ok(want)
    }

    /// Called once `inner.buf` holds what [`ResumeStream::room`] asked
    /// for: the header is checked (and the record's length learnt), or the
    /// complete record is validated and taken in.
    fn advance(&self, inner: &mut ResumeInner) -> Result {
        let dev = &*self.dev;
        match inner.need {
            None => {
                let info = state::peek_record(&inner.buf, dev.state_type().0, dev.state_type().1)
                    .map_err(refusal)?;
                inner.need = Some((info.len, info.kind));
            }
            Some((_, kind)) => {
                self.take_record(inner, kind)?;
                inner.need = None;
                if inner.buf.capacity() > state::pages_chunk_len(PAGES_CHUNK_MAX) {
                    // A device record can be as large as the device
                    // memory: do not keep its room.
                    inner.buf = KVVec::new();
                } else {
                    // Pages records are all about this size: keep it.
                    inner.buf.clear();
                }
            }
        }
        Ok(())
    }

    /// Validates the complete record in `inner.buf` and takes it in.
    fn take_record(&self, inner: &mut ResumeInner, kind: RecordKind) -> Result {
        let dev = &*self.dev;
        let (type_id, vram_size) = dev.state_type();
        match kind {
            RecordKind::Pages => {
                let chunk =
                    state::decode_pages_chunk(&inner.buf, type_id, vram_size).map_err(refusal)?;
                dev.with_vram_mut(|v| v.write_pages(chunk.pages()))
            }
            RecordKind::Device => {
                let decoded = state::decode(&inner.buf, type_id, vram_size).map_err(refusal)?;
                dev.with_vram_mut(|v| v.write_pages(decoded.pages()))?;
                inner.device = Some(decoded.state);
                Ok(())
            }
        }
    }

    /// The end of the stream (leaving RESUMING): the device record's state
    /// if the stream was complete and valid.
    pub(crate) fn finish(&self) -> Result<DeviceState> {
        let mut inner = self.inner.lock();
        inner.disabled = true;
        let complete =
            !inner.poisoned && !inner.writing && inner.buf.is_empty() && inner.need.is_none();
        match inner.device.take() {
            Some(ds) if complete => Ok(ds),
            _ => Err(EINVAL),
        }
    }
}

impl<T: Source> Stream for ResumeStream<T> {
    const NAME: &'static CStr = c"mblit_mig";

    fn read(&self, _out: &mut StreamOut) -> Result<usize> {
        Err(EINVAL)
    }

    fn write(&self, input: &mut StreamIn) -> Result<usize> {
        let mut done = 0;
        while input.len() > 0 {
            let mut inner = self.inner.lock();
            if inner.disabled {
                return Err(ENODEV);
            }
            if inner.poisoned {
                return Err(EINVAL);
            }
            if inner.writing {
                return if done > 0 { Ok(done) } else { Err(EBUSY) };
            }
            let want = match Self::room(&mut inner) {
                Ok(want) => want,
                Err(e) => {
                    inner.poisoned = true;
                    return Err(e);
                }
            };
            // The user's bytes go straight into the record, with no lock
            // held: the buffer leaves the stream for the copy and comes
            // back with what arrived.
            let mut buf = core::mem::replace(&mut inner.buf, KVVec::new());
            inner.writing = true;
            drop(inner);
            let n = input.read_append(&mut buf, want);
            let mut inner = self.inner.lock();
            inner.writing = false;
            if inner.disabled {
                return Err(ENODEV);
            }
            inner.buf = buf;
            if n == 0 {
                return if done > 0 { Ok(done) } else { Err(EFAULT) };
            }
            done += n;
            if n == want {
                if let Err(e) = self.advance(&mut inner) {
                    inner.poisoned = true;
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    fn ioctl(&self, _cmd: u32, _arg: UserPtr) -> Result<isize> {
        Err(ENOTTY)
    }

    fn poll(&self) -> u32 {
        uapi::POLL_OUT
    }
}
