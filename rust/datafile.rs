// SPDX-License-Identifier: GPL-2.0

//! The migration data file (`data_fd` of VFIO migration v2): an anonymous
//! stream file whose operations are delivered to a [`Stream`].
//!
//! C headers: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h),
//! [`include/linux/fs.h`](srctree/include/linux/fs.h).

use super::bindings;
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    alloc::{Allocator, Vec},
    error::{from_err_ptr, from_result},
    prelude::*,
    sync::Arc,
    types::ForeignOwnable,
    uaccess::{UserPtr, UserSlice},
};

/// What a data file does. The file owns an `Arc<Self>` until it is
/// released; everything here runs in process context.
pub(crate) trait Stream: Send + Sync + Sized + 'static {
    /// The name of the file's anonymous inode (`anon_inode:<NAME>` in
    /// `/proc/<pid>/fd`).
    const NAME: &'static CStr;

    /// `read(2)`: fill `out` with the next bytes of the stream; return how
    /// many were copied (a fault after some bytes is a short read).
    fn read(&self, out: &mut StreamOut) -> Result<usize>;

    /// `write(2)`: consume `input`; return how many bytes were taken.
    fn write(&self, input: &mut StreamIn) -> Result<usize>;

    /// `ioctl(2)` on the file (e.g. `VFIO_MIG_GET_PRECOPY_INFO`).
    fn ioctl(&self, cmd: u32, arg: UserPtr) -> Result<isize>;

    /// `poll(2)`: the `EPOLL*` mask ready now. The stream never makes a
    /// reader or writer wait (a read with nothing to give answers at once),
    /// so readiness does not change by itself and no wait queue is needed.
    fn poll(&self) -> u32;
}

/// Page-sized pieces of a user buffer at `addr` with `len` bytes, from
/// `pos` on: `(pos, bytes)` with no piece crossing a user page, so a fault
/// is all or nothing within a piece and counts stay exact.
fn user_pieces(addr: usize, len: usize, pos: usize, max: usize) -> Option<(usize, usize)> {
    let left = len.checked_sub(pos)?.min(max);
    if left == 0 {
        return None;
    }
    let page = kernel::page::PAGE_SIZE;
    let at = addr.wrapping_add(pos) % page;
    Some((pos, (page - at).min(left)))
}

/// The user buffer of a data file `read(2)`: bytes go out a user page at a
/// time, and a fault ends the copy with an exact count of what arrived.
pub(crate) struct StreamOut {
    ptr: UserPtr,
    len: usize,
    pos: usize,
}

impl StreamOut {
    /// Bytes still wanted.
    pub(crate) fn len(&self) -> usize {
        self.len - self.pos
    }

    /// Copies as much of `data` as fits and does not fault; returns how
    /// many bytes were copied (less than asked only at the end of the
    /// buffer or at a fault).
    pub(crate) fn write_partial(&mut self, data: &[u8]) -> usize {
        let mut done = 0;
        while let Some((pos, n)) = user_pieces(
            self.ptr.as_const_ptr() as usize,
            self.len,
            self.pos,
            data.len() - done,
        ) {
            let mut w = UserSlice::new(self.ptr.wrapping_byte_add(pos), n).writer();
            if w.write_slice(&data[done..done + n]).is_err() {
                break;
            }
            self.pos += n;
            done += n;
        }
        done
    }
}

/// The user buffer of a data file `write(2)`, read a user page at a time
/// with an exact count at a fault.
pub(crate) struct StreamIn {
    ptr: UserPtr,
    len: usize,
    pos: usize,
}

impl StreamIn {
    /// Bytes not consumed yet.
    pub(crate) fn len(&self) -> usize {
        self.len - self.pos
    }

    /// Appends up to `max` bytes of the buffer to `v`, within `v`'s spare
    /// capacity (nothing is allocated, and the bytes are not zero-filled
    /// before they are copied in); returns how many bytes arrived (fewer
    /// than asked at the end of the buffer, of the capacity, or at a fault).
    pub(crate) fn read_append<A: Allocator>(&mut self, v: &mut Vec<u8, A>, max: usize) -> usize {
        let limit = max.min(v.capacity() - v.len());
        let mut done = 0;
        while let Some((pos, n)) = user_pieces(
            self.ptr.as_const_ptr() as usize,
            self.len,
            self.pos,
            limit - done,
        ) {
            let Some(dst) = v.spare_capacity_mut().get_mut(..n) else {
                break;
            };
            let mut r = UserSlice::new(self.ptr.wrapping_byte_add(pos), n).reader();
            if r.read_raw(dst).is_err() {
                break;
            }
            // SAFETY: `read_raw` succeeded, so it initialised all `n` bytes
            // of `dst`, which are the first `n` bytes of `v`'s spare
            // capacity.
            unsafe { v.inc_len(n) };
            self.pos += n;
            done += n;
        }
        done
    }
}

/// An open data file, not yet handed to user space; `fput` on drop.
///
/// What the user does with a [`DataFile`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Reads it (the source of a migration): opened `O_RDONLY`.
    Read,
    /// Writes it (the destination): opened `O_WRONLY`.
    Write,
}

/// # Invariants
///
/// `file` holds one reference to a file created by [`DataFile::new`].
pub(crate) struct DataFile {
    file: NonNull<bindings::file>,
}

impl DataFile {
    /// A new stream file serving `stream`, opened for `direction`.
    pub(crate) fn new<S: Stream>(stream: Arc<S>, direction: Direction) -> Result<Self> {
        let flags = match direction {
            Direction::Write => bindings::O_WRONLY,
            Direction::Read => bindings::O_RDONLY,
        };
        let private = stream.into_foreign();
        // SAFETY: the name is a static string, the ops table is static and
        // `private` is an `Arc` the file owns from now on (taken back in
        // `release`, or below on failure).
        let file = unsafe {
            bindings::anon_inode_getfile(
                S::NAME.as_char_ptr(),
                &VTable::<S>::FOPS,
                private.cast(),
                flags as i32,
            )
        };
        let file = match from_err_ptr(file).map(NonNull::new) {
            Ok(Some(file)) => file,
            other => {
                // SAFETY: the file was not created, so `private` is still ours.
                drop(unsafe { Arc::<S>::from_foreign(private) });
                return Err(other.err().unwrap_or(ENOMEM));
            }
        };
        // SAFETY: `file` is a new, valid file; a stream has no position.
        unsafe { bindings::stream_open((*file.as_ptr()).f_inode, file.as_ptr()) };
        Ok(Self { file })
    }

    /// Hands the file (and its reference) over, e.g. to the VFIO core,
    /// which installs it as the user's `data_fd`.
    pub(crate) fn into_raw(self) -> *mut bindings::file {
        let file = self.file.as_ptr();
        core::mem::forget(self);
        file
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        // SAFETY: drops our reference (type invariant).
        unsafe { bindings::fput(self.file.as_ptr()) };
    }
}

// SAFETY: a file reference may be dropped from any thread.
unsafe impl Send for DataFile {}
// SAFETY: `&DataFile` allows nothing.
unsafe impl Sync for DataFile {}

struct VTable<S: Stream>(PhantomData<S>);

impl<S: Stream> VTable<S> {
    const FOPS: bindings::file_operations = bindings::file_operations {
        // This module serves the file: it stays loaded while it is open.
        owner: super::compat::this_module_ptr(),
        read: Some(Self::read),
        write: Some(Self::write),
        poll: Some(Self::poll),
        unlocked_ioctl: Some(Self::ioctl),
        compat_ioctl: Some(Self::ioctl),
        release: Some(Self::release),
        ..pin_init::zeroed()
    };

    /// Runs `f` on the stream of `file`.
    ///
    /// # Safety
    ///
    /// `file` must be a file created by `DataFile::new::<S>` that is not
    /// released yet.
    unsafe fn with<R>(file: *mut bindings::file, f: impl FnOnce(&S) -> R) -> R {
        // SAFETY: private_data is the `Arc<S>` the file owns until release
        // (caller); borrowing it for the call is fine.
        let s = unsafe { <Arc<S> as ForeignOwnable>::borrow((*file).private_data.cast()) };
        f(&s)
    }

    /// # Safety
    ///
    /// Only called by the VFS, on a file created by `DataFile::new::<S>`
    /// that is not released yet (for `release`: being released).
    unsafe extern "C" fn read(
        file: *mut bindings::file,
        buf: *mut c_char,
        count: usize,
        _pos: *mut bindings::loff_t,
    ) -> isize {
        let mut out = StreamOut {
            ptr: UserPtr::from_ptr(buf.cast()),
            len: count,
            pos: 0,
        };
        // SAFETY: the VFS calls read on an open file of ours.
        unsafe {
            Self::with(file, |s| {
                from_result(|| s.read(&mut out).map(|n| n as isize))
            })
        }
    }

    /// # Safety
    ///
    /// Only called by the VFS, on a file created by `DataFile::new::<S>`
    /// that is not released yet (for `release`: being released).
    unsafe extern "C" fn write(
        file: *mut bindings::file,
        buf: *const c_char,
        count: usize,
        _pos: *mut bindings::loff_t,
    ) -> isize {
        let mut input = StreamIn {
            ptr: UserPtr::from_ptr(buf.cast_mut().cast()),
            len: count,
            pos: 0,
        };
        // SAFETY: as in `read`.
        unsafe {
            Self::with(file, |s| {
                from_result(|| s.write(&mut input).map(|n| n as isize))
            })
        }
    }

    /// # Safety
    ///
    /// Only called by the VFS, on a file created by `DataFile::new::<S>`
    /// that is not released yet (for `release`: being released).
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        let arg = UserPtr::from_addr(arg as usize);
        // SAFETY: as in `read`.
        unsafe {
            Self::with(file, |s| {
                from_result(|| s.ioctl(cmd, arg).map(|n| n as c_long))
            })
        }
    }

    /// # Safety
    ///
    /// Only called by the VFS, on a file created by `DataFile::new::<S>`
    /// that is not released yet (for `release`: being released).
    unsafe extern "C" fn poll(
        file: *mut bindings::file,
        _table: *mut kernel::bindings::poll_table_struct,
    ) -> bindings::__poll_t {
        // SAFETY: as in `read`.
        unsafe { Self::with(file, |s| s.poll()) }
    }

    /// # Safety
    ///
    /// Only called by the VFS, on a file created by `DataFile::new::<S>`
    /// that is not released yet (for `release`: being released).
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: the last reference is gone; the `Arc` the file owned is
        // taken back exactly once.
        drop(unsafe { Arc::<S>::from_foreign((*file).private_data.cast()) });
        0
    }
}
