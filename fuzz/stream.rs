// SPDX-License-Identifier: GPL-2.0

//! A host-side receiver of a v2 migration stream, parsing it as the
//! driver's `ResumeStream` (src/migration.rs) does: buffer a header,
//! `peek_record` it, buffer the record, decode it by kind, write its pages
//! into device memory (last record wins), keep the device record's state;
//! nothing may follow the device record; a failed write poisons the
//! stream; the stream is complete when nothing is pending and a device
//! record arrived. Writes may split records anywhere.

use mblit_logic::state::{self, DeviceState, RecordKind, HEADER_LEN};

use crate::model::{collect_pages, normalise, Page, StreamOutcome, Vram};

/// Why a write failed (the driver answers both with `EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// This write failed once the stream reached byte `at`.
    Invalid { at: usize },
    /// An earlier write failed.
    Poisoned,
}

/// A record the receiver took in.
#[derive(Debug, Clone)]
pub struct Taken {
    pub kind: RecordKind,
    /// Its offset and length in the stream.
    pub start: usize,
    pub len: usize,
    pub state: Option<DeviceState>,
    pub pages: Vec<(u64, Page)>,
}

pub struct Resume {
    type_id: u32,
    vram_size: u64,
    buf: Vec<u8>,
    need: Option<(usize, RecordKind)>,
    poisoned: bool,
    device: Option<DeviceState>,
    /// Bytes of the stream taken into `buf` so far.
    pos: usize,
    pub vram: Vram,
    pub taken: Vec<Taken>,
}

impl Resume {
    pub fn new(type_id: u32, vram_size: u64) -> Self {
        Self {
            type_id,
            vram_size,
            buf: Vec::new(),
            need: None,
            poisoned: false,
            device: None,
            pos: 0,
            vram: Vram::new(),
            taken: Vec::new(),
        }
    }

    /// `Stream::write` of the driver: the whole of `data` or an error.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        if self.poisoned {
            return Err(WriteError::Poisoned);
        }
        if let Err(e) = self.feed(data) {
            self.poisoned = true;
            return Err(e);
        }
        Ok(data.len())
    }

    fn invalid(&self) -> WriteError {
        WriteError::Invalid { at: self.pos }
    }

    /// `ResumeStream::feed`.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), WriteError> {
        while !data.is_empty() {
            if self.device.is_some() {
                return Err(self.invalid());
            }
            let target = self.need.map_or(HEADER_LEN, |(len, _)| len);
            let want = target.checked_sub(self.buf.len()).ok_or(self.invalid())?;
            let n = want.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            self.pos += n;
            data = &data[n..];
            if self.buf.len() < target {
                break;
            }
            match self.need {
                None => {
                    let info = state::peek_record(&self.buf, self.type_id, self.vram_size)
                        .map_err(|_| self.invalid())?;
                    info.len.checked_sub(self.buf.len()).ok_or(self.invalid())?;
                    self.need = Some((info.len, info.kind));
                }
                Some((_, kind)) => {
                    self.take_record(kind)?;
                    self.need = None;
                    self.buf = Vec::new();
                }
            }
        }
        Ok(())
    }

    /// `ResumeStream::take_record`.
    fn take_record(&mut self, kind: RecordKind) -> Result<(), WriteError> {
        let (state, pages) = match kind {
            RecordKind::Pages => {
                let c = state::decode_pages_chunk(&self.buf, self.type_id, self.vram_size)
                    .map_err(|_| self.invalid())?;
                (None, collect_pages(c.pages()))
            }
            RecordKind::Device => {
                let d = state::decode(&self.buf, self.type_id, self.vram_size)
                    .map_err(|_| self.invalid())?;
                (Some(d.state), collect_pages(d.pages()))
            }
        };
        for (i, p) in &pages {
            self.vram.insert(*i, p.clone());
        }
        self.device = state;
        self.taken.push(Taken {
            kind,
            start: self.pos - self.buf.len(),
            len: self.buf.len(),
            state,
            pages,
        });
        Ok(())
    }

    /// `ResumeStream::finish`: the device record's state if the stream is
    /// complete and valid.
    pub fn finish(&mut self) -> Option<DeviceState> {
        let complete = !self.poisoned && self.buf.is_empty() && self.need.is_none();
        match self.device.take() {
            Some(ds) if complete => Some(ds),
            _ => None,
        }
    }
}

/// Feeds `bytes` in writes of the sizes in `writes` (cycled; 0 counts as
/// 1), stopping at the first failed write, and ends the stream.
pub fn receive(
    bytes: &[u8],
    type_id: u32,
    vram_size: u64,
    writes: &[u16],
) -> (StreamOutcome, Resume) {
    let mut r = Resume::new(type_id, vram_size);
    let mut rest = bytes;
    let mut sizes = writes.iter().cycle();
    while !rest.is_empty() {
        let n = usize::from(*sizes.next().unwrap_or(&u16::MAX))
            .max(1)
            .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        match r.write(chunk) {
            Ok(w) => assert_eq!(w, n),
            Err(WriteError::Invalid { at }) => {
                // A failed stream stays failed.
                assert_eq!(r.write(b"x"), Err(WriteError::Poisoned));
                assert_eq!(r.finish(), None);
                return (StreamOutcome::Refused { at }, r);
            }
            Err(WriteError::Poisoned) => panic!("poisoned without a failed write"),
        }
        rest = tail;
    }
    let outcome = match r.finish() {
        Some(state) => {
            let mut vram = r.vram.clone();
            normalise(&mut vram);
            StreamOutcome::Ok { state, vram }
        }
        None => StreamOutcome::Incomplete,
    };
    (outcome, r)
}
