// SPDX-License-Identifier: GPL-2.0

//! The C side of [`Ops`]: the `vfio_device_ops`, `vfio_migration_ops` and
//! `vfio_log_ops` tables of a driver `T`, and the callbacks in them, each
//! of which turns the core's pointers into a [`Device<T>`] and calls the
//! driver.

use super::{bindings, Device, IovaBitmap, Ops};
use core::{marker::PhantomData, sync::atomic::Ordering};
use kernel::{
    error::{from_result, to_result},
    prelude::*,
    types::Opaque,
    uaccess::UserSlice,
};

/// `Some(f)` when the driver implements the operation (`has`, a `HAS_*`
/// constant of its `#[vtable]`), `None` otherwise, which the C core treats
/// as not implemented. A macro, not a `const fn`, so that `f` coerces to the
/// table field's function-pointer type.
macro_rules! optional_op {
    ($has:expr, $f:expr) => {
        if $has {
            Some($f)
        } else {
            None
        }
    };
}

/// The shape of a C callback that returns an errno and, on success, its
/// result through an out pointer: calls `f` and writes what it returns
/// through `out` (0), or writes nothing (its error's errno).
///
/// # Safety
///
/// `out` must be valid for writes of a `V` for the duration of the call.
unsafe fn out_param<V>(out: *mut V, f: impl FnOnce() -> Result<V>) -> c_int {
    from_result(|| {
        let value = f()?;
        // SAFETY: valid for writes (caller); `write` neither reads nor
        // drops what was there.
        unsafe { out.write(value) };
        Ok(0)
    })
}

/// The shape of a C `read`/`write` callback at the file position
/// `*ppos`: calls `f` with the position and advances it by the byte count
/// `f` returns, which is also the callback's result (or its error's
/// errno, leaving the position alone).
///
/// # Safety
///
/// `ppos` must be valid for reads and writes for the duration of the call.
unsafe fn at_pos(ppos: *mut bindings::loff_t, f: impl FnOnce(u64) -> Result<usize>) -> isize {
    from_result(|| {
        // SAFETY: valid for reads (caller).
        let pos = unsafe { *ppos };
        let n = f(u64::try_from(pos).map_err(|_| EINVAL)?)?;
        // The VFS checked that `pos + count` fits (rw_verify_area) and
        // `n <= count`; a driver that reports more gets EINVAL, not an
        // overflow.
        let n = isize::try_from(n).map_err(|_| EINVAL)?;
        let end = pos.checked_add(n as bindings::loff_t).ok_or(EINVAL)?;
        // SAFETY: valid for writes (caller).
        unsafe { *ppos = end };
        Ok(n)
    })
}

/// The ops tables of driver `T`.
pub(super) struct VTable<T: Ops>(PhantomData<T>);

impl<T: Ops> VTable<T> {
    pub(super) const OPS: bindings::vfio_device_ops = bindings::vfio_device_ops {
        name: T::NAME.as_ptr().cast_mut().cast(),
        release: Some(Self::release),
        bind_iommufd: Some(bindings::vfio_iommufd_emulated_bind),
        unbind_iommufd: Some(bindings::vfio_iommufd_emulated_unbind),
        attach_ioas: Some(bindings::vfio_iommufd_emulated_attach_ioas),
        detach_ioas: Some(bindings::vfio_iommufd_emulated_detach_ioas),
        open_device: Some(Self::open_device),
        close_device: Some(Self::close_device),
        read: Some(Self::read),
        write: Some(Self::write),
        ioctl: Some(Self::ioctl),
        get_region_info_caps: Some(Self::get_region_info_caps),
        dma_unmap: Some(Self::dma_unmap),
        ..pin_init::zeroed()
    };

    /// Installed only if `T` implements the migration operations.
    pub(super) const MIG_OPS: bindings::vfio_migration_ops = bindings::vfio_migration_ops {
        migration_set_state: optional_op!(T::HAS_MIG_SET_STATE, Self::mig_set_state),
        migration_get_state: optional_op!(T::HAS_MIG_GET_STATE, Self::mig_get_state),
        migration_get_data_size: optional_op!(T::HAS_MIG_DATA_SIZE, Self::mig_get_data_size),
    };

    /// Installed only if `T` implements the DMA logging operations.
    pub(super) const LOG_OPS: bindings::vfio_log_ops = bindings::vfio_log_ops {
        log_start: optional_op!(T::HAS_LOG_START, Self::log_start),
        log_stop: optional_op!(T::HAS_LOG_STOP, Self::log_stop),
        log_read_and_clear: optional_op!(T::HAS_LOG_READ_AND_CLEAR, Self::log_read_and_clear),
    };

    /// # Safety
    ///
    /// `vfio_device_ops.release`: `vdev` is the `vdev` field of a `Device<T>`
    /// allocated by [`Device::register`] whose last reference was just
    /// dropped; it is called once, before the memory is freed, and nothing
    /// else uses the device any more.
    unsafe extern "C" fn release(vdev: *mut bindings::vfio_device) {
        let this = vdev.cast::<Device<T>>();
        // SAFETY: the core calls release once, after the last reference is
        // gone and before freeing; `data` is dropped iff it was initialised.
        unsafe {
            if (*this).live {
                (*this).live = false;
                (*this).data.assume_init_drop();
            }
        }
    }

    /// # Safety
    ///
    /// `vfio_device_ops.open_device`: `vdev` belongs to a registered
    /// `Device<T>` (so its data is initialised), and the core serialises
    /// open and close of the device (`dev_set->lock`).
    unsafe extern "C" fn open_device(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: the core only opens registered (hence live) devices.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        // SAFETY: takes a reference to the caller's memory cgroup (or
        // returns NULL), which `set_memcg` keeps until close.
        dev.set_memcg(unsafe { bindings::kapi_memcg_of_current() });
        let ret = from_result(|| T::open(dev).map(|()| 0));
        if ret != 0 {
            dev.set_memcg(core::ptr::null_mut());
        }
        ret
    }

    /// # Safety
    ///
    /// `vfio_device_ops.close_device`: `vdev` belongs to a registered
    /// `Device<T>` that [`VTable::open_device`] opened successfully; the core
    /// serialises it with open.
    unsafe extern "C" fn close_device(vdev: *mut bindings::vfio_device) {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        T::close(dev);
        // Nothing queues the work item of a closed device; let the last
        // run finish before its memory cgroup goes.
        dev.flush_work();
        dev.set_memcg(core::ptr::null_mut());
    }

    /// # Safety
    ///
    /// `vfio_device_ops.read`: `vdev` belongs to an open, registered
    /// `Device<T>`; `buf` is a user address of `count` bytes (checked by the
    /// user copy, not trusted) and `ppos` points to the file position, valid
    /// for reads and writes during the call.
    unsafe extern "C" fn read(
        vdev: *mut bindings::vfio_device,
        buf: *mut c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        let mut out = UserSlice::new(UserPtr::from_ptr(buf.cast()), count).writer();
        // SAFETY: the core passes a valid position pointer.
        unsafe { at_pos(ppos, |pos| T::read(dev, &mut out, pos)) }
    }

    /// # Safety
    ///
    /// `vfio_device_ops.write`: as [`VTable::read`], with `buf` the
    /// user's source buffer.
    unsafe extern "C" fn write(
        vdev: *mut bindings::vfio_device,
        buf: *const c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        let mut input = UserSlice::new(UserPtr::from_ptr(buf.cast_mut().cast()), count).reader();
        // SAFETY: the core passes a valid position pointer.
        unsafe { at_pos(ppos, |pos| T::write(dev, &mut input, pos)) }
    }

    /// # Safety
    ///
    /// `vfio_device_ops.ioctl`: `vdev` belongs to an open, registered
    /// `Device<T>`; `arg` is the user's untrusted argument, only used through
    /// user copies.
    unsafe extern "C" fn ioctl(
        vdev: *mut bindings::vfio_device,
        cmd: c_uint,
        arg: c_ulong,
    ) -> c_long {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        from_result(|| T::ioctl(dev, cmd, UserPtr::from_addr(arg as usize)).map(|n| n as c_long))
    }

    /// # Safety
    ///
    /// `vfio_device_ops.get_region_info_caps`: `vdev` belongs to an open,
    /// registered `Device<T>`; `info` is the core's kernel copy of the user's
    /// `vfio_region_info` and `caps` its capability chain, both valid for
    /// reads and writes during the call.
    unsafe extern "C" fn get_region_info_caps(
        vdev: *mut bindings::vfio_device,
        info: *mut bindings::vfio_region_info,
        caps: *mut bindings::vfio_info_cap,
    ) -> c_int {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        from_result(|| {
            // SAFETY: the core passes its own copy of the user's argument,
            // valid for reads and writes during the call.
            let info = unsafe { &mut *info };
            let r = T::region_info(dev, info.index)?;
            info.offset = r.offset;
            info.size = r.size;
            info.flags = r.flags;
            if let Some((type_, subtype)) = r.cap_type {
                let mut cap = bindings::vfio_region_info_cap_type {
                    header: bindings::vfio_info_cap_header {
                        id: bindings::VFIO_REGION_INFO_CAP_TYPE as u16,
                        version: 1,
                        next: 0,
                    },
                    type_,
                    subtype,
                };
                // SAFETY: `caps` is the core's capability chain for this
                // call; `cap` is a complete capability of the given size,
                // which the core copies.
                to_result(unsafe {
                    bindings::vfio_info_add_capability(
                        caps,
                        &mut cap.header,
                        core::mem::size_of_val(&cap),
                    )
                })?;
            }
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `vfio_migration_ops.migration_set_state`: `vdev` belongs to an
    /// open, registered `Device<T>` that implements migration (the table is
    /// installed only then); the driver serialises the calls itself.
    unsafe extern "C" fn mig_set_state(
        vdev: *mut bindings::vfio_device,
        new: bindings::vfio_device_mig_state,
    ) -> *mut bindings::file {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        match T::mig_set_state(dev, new) {
            Ok(Some(file)) => file.into_raw(),
            Ok(None) => core::ptr::null_mut(),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// `vfio_migration_ops.migration_get_state`: as
    /// [`VTable::mig_set_state`]; `state` points to a `vfio_device_mig_state`
    /// valid for writes during the call.
    unsafe extern "C" fn mig_get_state(
        vdev: *mut bindings::vfio_device,
        state: *mut bindings::vfio_device_mig_state,
    ) -> c_int {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        // SAFETY: the core passes a valid output pointer.
        unsafe { out_param(state, || T::mig_get_state(dev)) }
    }

    /// # Safety
    ///
    /// `vfio_migration_ops.migration_get_data_size`: as
    /// [`VTable::mig_set_state`]; `len` points to an `unsigned long` valid
    /// for writes during the call.
    unsafe extern "C" fn mig_get_data_size(
        vdev: *mut bindings::vfio_device,
        len: *mut c_ulong,
    ) -> c_int {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        // SAFETY: the core passes a valid output pointer.
        unsafe { out_param(len, || T::mig_data_size(dev).map(|n| n as c_ulong)) }
    }

    /// # Safety
    ///
    /// `vfio_log_ops.log_start`: `vdev` belongs to an open, registered
    /// `Device<T>` that implements DMA logging; `ranges` is an interval tree
    /// of `nnodes` nodes that lives for the call, and `page_size` points to
    /// the requested page size, valid for reads and writes.
    unsafe extern "C" fn log_start(
        vdev: *mut bindings::vfio_device,
        ranges: *mut bindings::rb_root_cached,
        nnodes: u32,
        page_size: *mut u64,
    ) -> c_int {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        from_result(|| {
            let mut list = KVec::with_capacity(nnodes as usize, GFP_KERNEL)?;
            // SAFETY: the core built `ranges` as an interval tree of
            // `nnodes` nodes that lives for the call.
            let mut node = unsafe { bindings::interval_tree_iter_first(ranges, 0, u64::MAX as _) };
            while !node.is_null() {
                // SAFETY: `node` is a node of that tree.
                let (start, last) = unsafe { ((*node).start as u64, (*node).last as u64) };
                list.push((start, last), GFP_KERNEL)?;
                // SAFETY: as above.
                node = unsafe { bindings::interval_tree_iter_next(node, 0, u64::MAX as _) };
            }
            // SAFETY: the core passes a valid in/out page size.
            let page_size = unsafe { &mut *page_size };
            T::log_start(dev, &list, page_size).map(|()| 0)
        })
    }

    /// # Safety
    ///
    /// `vfio_log_ops.log_stop`: `vdev` belongs to an open, registered
    /// `Device<T>` that implements DMA logging.
    unsafe extern "C" fn log_stop(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        from_result(|| T::log_stop(dev).map(|()| 0))
    }

    /// # Safety
    ///
    /// `vfio_log_ops.log_read_and_clear`: as [`VTable::log_stop`];
    /// `dirty` is the core's `iova_bitmap` covering `[iova, iova + length)`,
    /// valid during the call.
    unsafe extern "C" fn log_read_and_clear(
        vdev: *mut bindings::vfio_device,
        iova: c_ulong,
        length: c_ulong,
        dirty: *mut bindings::iova_bitmap,
    ) -> c_int {
        // SAFETY: as in `open_device`.
        let dev = unsafe { Device::<T>::from_raw(vdev) };
        let mut bitmap = IovaBitmap {
            raw: dirty,
            _p: PhantomData,
        };
        from_result(|| {
            T::log_read_and_clear(dev, iova as u64, length as u64, &mut bitmap).map(|()| 0)
        })
    }

    /// # Safety
    ///
    /// The work function of a `Device<T>`'s `work` item (set by
    /// [`Device::register`]): `work` is that field of a registered device,
    /// whose work item is disabled before the device is freed.
    pub(super) unsafe extern "C" fn work(work: *mut bindings::work_struct) {
        // SAFETY: the work item is the `work` field of a registered
        // `Device<T>` (only `register` initialises it, and it is disabled
        // before the device is freed).
        let dev = unsafe {
            &*kernel::container_of!(
                work.cast::<Opaque<bindings::work_struct>>(),
                Device<T>,
                work
            )
        };
        let memcg = dev.memcg.load(Ordering::Acquire);
        // SAFETY: `memcg` is NULL or referenced until the device is closed,
        // which flushes this work item first; the previous active memcg is
        // restored below, on the same task.
        let old = unsafe { bindings::kapi_memcg_enter(memcg) };
        T::work(dev);
        // SAFETY: restores what `kapi_memcg_enter` returned.
        unsafe { bindings::kapi_memcg_leave(old) };
    }

    /// # Safety
    ///
    /// `vfio_device_ops.dma_unmap`: `vdev` belongs to a registered
    /// `Device<T>`; the IOMMU back-end calls it with its own locks held while
    /// `[iova, iova + length)` is being unmapped.
    unsafe extern "C" fn dma_unmap(vdev: *mut bindings::vfio_device, iova: u64, length: u64) {
        // SAFETY: as in `open_device`.
        T::dma_unmap(unsafe { Device::<T>::from_raw(vdev) }, iova, length);
    }
}
