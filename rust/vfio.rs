// SPDX-License-Identifier: GPL-2.0

//! VFIO devices with an emulated IOMMU (the kind an mdev driver registers).
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).
//!
//! [`Device<T>`] embeds `struct vfio_device` as its first field, followed
//! by the driver's data `T`; the VFIO core allocates it (so it owns the
//! memory and its reference count) and calls back through an ops table
//! built from the [`Ops`] trait, the way `kernel::miscdevice` builds
//! `file_operations`. [`Registration<T>`] is the driver's handle: it
//! registers the device with the VFIO core and, on drop, unregisters it
//! (waiting for every user to close it) and drops the driver's reference.
//!
//! Each device also has one work item for its driver ([`Ops::work`],
//! queued by [`Device::queue_work`]): work the driver defers to process
//! context, charged to the memory cgroup of the task that opened the
//! device; closing the device waits for it, unregistering disables it
//! (a queued run is cancelled and nothing can queue it again).
//!
//! Why not `kernel::workqueue` (7.3) for that work item: its `Work<T>` is
//! queued by moving an owning pointer (`Arc<T>`, `Pin<KBox<T>>` or
//! `ARef<T>`) into the queue, which `run` gets back. `Device<T>` is
//! allocated and reference-counted by the VFIO core, so only `ARef` could
//! apply (with `get_device()`/`put_device()`), and then a queued item holds
//! a reference. But the kernel crate's `Work` has no `flush_work()` and no
//! `disable_work_sync()`, and the device needs both: close must wait for the
//! last run before the opener's memory cgroup and the driver's per-open
//! state go, and unregistering must cancel a queued run, and keep it from
//! being queued again through a reference a file still holds, before the driver
//! data and the module's code can go; a cancel would also have to hand the
//! queued reference back, which no kernel-crate API does. So the work item
//! is a raw `work_struct` (`INIT_WORK`, `queue_work()`, `flush_work()`,
//! `disable_work_sync()`), owned by the device and never outliving it.
//!
//! Why not `kernel::page` for pinned guest pages ([`PinnedPage`]):
//! `BorrowedPage::from_raw()` could wrap the `struct page` that
//! `vfio_pin_pages()` returns, but its `read_raw()`/`write_raw()` require
//! that no write to the page races with the copy, and a guest page is user
//! memory that the user may write at any time (the device emulates DMA
//! into memory the CPU shares). The copies go through
//! `memcpy_{from,to}_page()` in C instead. (`PAGE_SIZE` does come from
//! `kernel::page`.)

use super::{bindings, datafile::DataFile};
use core::{
    marker::PhantomData,
    mem::MaybeUninit,
    ops::Deref,
    ptr::NonNull,
    sync::atomic::{AtomicPtr, Ordering},
};
use kernel::{
    error::{from_err_ptr, to_result, VTABLE_DEFAULT_ERROR},
    prelude::*,
    types::Opaque,
    uaccess::{UserSliceReader, UserSliceWriter},
};

/// The callbacks of a VFIO device driver with data `Self`.
///
/// Each gets the whole [`Device`], which dereferences to `Self`.
#[vtable]
pub(crate) trait Ops: Send + Sync + Sized + 'static {
    /// The driver's name, as the VFIO core shows it (`vfio_device_ops.name`).
    const NAME: &'static CStr;

    /// The first file descriptor for the device was opened.
    fn open(_dev: &Device<Self>) -> Result {
        Ok(())
    }

    /// The last file descriptor for the device was closed.
    fn close(_dev: &Device<Self>) {}

    /// The device was unregistered (every user has closed it; its work item
    /// is disabled). Files the driver handed out (e.g. a migration
    /// `data_fd`) may still hold the device's memory: free what they must
    /// not keep.
    fn removed(_dev: &Device<Self>) {}

    /// `read(2)`/`pread(2)` at `offset`: fill `out`, return the byte count.
    fn read(dev: &Device<Self>, out: &mut UserSliceWriter, offset: u64) -> Result<usize>;

    /// `write(2)`/`pwrite(2)` at `offset`: consume `input`, return the byte
    /// count.
    fn write(dev: &Device<Self>, input: &mut UserSliceReader, offset: u64) -> Result<usize>;

    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index` (the core copies
    /// the argument in and out and adds the capability chain).
    fn region_info(dev: &Device<Self>, index: u32) -> Result<RegionInfo>;

    /// A `VFIO_DEVICE_*` ioctl the core does not handle itself.
    fn ioctl(dev: &Device<Self>, cmd: u32, arg: UserPtr) -> Result<isize>;

    /// The user unmapped `[iova, iova + length)`: every page pinned in the
    /// range must be unpinned before this returns.
    fn dma_unmap(_dev: &Device<Self>, _iova: u64, _length: u64) {}

    /// The device's work item ran (see [`Device::queue_work`]): process
    /// context, may sleep; `__GFP_ACCOUNT` allocations are charged to the
    /// memory cgroup of the task that opened the device. One run at a time;
    /// closing the device waits for a run in progress, unregistering it
    /// cancels a queued one and keeps it from being queued again.
    fn work(_dev: &Device<Self>) {}

    /// `VFIO_MIGRATION_*` flags; 0: the device does not migrate (v2).
    /// A device that migrates implements the three `mig_*` operations
    /// below, one that does not implements none of them.
    const MIGRATION_FLAGS: u32 = 0;

    /// Moves the device to v2 state `new` (any arc; use
    /// [`Device::mig_next_state`] to walk it), returning the data file
    /// the new state hands out, if any.
    fn mig_set_state(_dev: &Device<Self>, _new: u32) -> Result<Option<DataFile>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The current v2 state.
    fn mig_get_state(_dev: &Device<Self>) -> Result<u32> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Estimated bytes a STOP_COPY from now would produce.
    fn mig_data_size(_dev: &Device<Self>) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    // DMA logging (`vfio_log_ops`): a device that offers it implements the
    // three `log_*` operations below; they are only offered when the kernel
    // can report (`CONFIG_IOMMUFD_DRIVER`, which provides the `iova_bitmap`
    // helpers).

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START` with the (validated,
    /// non-overlapping) `ranges` as `(first, last)` IOVAs; may change
    /// `page_size`.
    fn log_start(_dev: &Device<Self>, _ranges: &[(u64, u64)], _page_size: &mut u64) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
    fn log_stop(_dev: &Device<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT` for `[iova, iova +
    /// length)`: set the pages written since the last report in `dirty`
    /// and forget them.
    fn log_read_and_clear(
        _dev: &Device<Self>,
        _iova: u64,
        _length: u64,
        _dirty: &mut IovaBitmap<'_>,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The bitmap a DMA logging report fills (`struct iova_bitmap`).
pub(crate) struct IovaBitmap<'a> {
    raw: *mut bindings::iova_bitmap,
    _p: PhantomData<&'a mut bindings::iova_bitmap>,
}

impl IovaBitmap<'_> {
    /// Marks `[iova, iova + length)` dirty.
    pub(crate) fn set(&mut self, iova: u64, length: u64) {
        // SAFETY: `raw` is the bitmap the core passed for this report,
        // valid for the callback (the lifetime); iova_bitmap_set() clips
        // to the bitmap's own range.
        unsafe { bindings::iova_bitmap_set(self.raw, iova as usize, length as usize) };
    }
}

/// What `VFIO_DEVICE_GET_REGION_INFO` reports for one region.
pub(crate) struct RegionInfo {
    /// Offset of the region in the device file.
    pub(crate) offset: u64,
    /// Size in bytes (0: the region does not exist).
    pub(crate) size: u64,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub(crate) flags: u32,
    /// `(type, subtype)` for a `VFIO_REGION_INFO_CAP_TYPE` capability.
    pub(crate) cap_type: Option<(u32, u32)>,
}

/// A VFIO device with driver data `T`.
///
/// # Invariants
///
/// `vdev` is a `struct vfio_device` allocated by `_vfio_alloc_device()`
/// with `VTable::<T>::OPS`; `data` is initialised iff `live` is true;
/// `memcg` is NULL or a referenced memory cgroup (the opener's, while the
/// device is open).
#[repr(C)]
pub(crate) struct Device<T: Ops> {
    vdev: Opaque<bindings::vfio_device>,
    work: Opaque<bindings::work_struct>,
    live: bool,
    /// The memory cgroup of the task that opened the device: the work item
    /// charges its `__GFP_ACCOUNT` allocations there.
    memcg: AtomicPtr<bindings::mem_cgroup>,
    data: MaybeUninit<T>,
}

impl<T: Ops> Device<T> {
    /// Allocates a VFIO device whose parent is `parent` (for an mdev
    /// driver: the mdev being probed), initialises its data with `init` and
    /// registers it with an emulated IOMMU (group/container and iommufd
    /// cdev).
    pub(crate) fn register(
        parent: &kernel::device::Device,
        init: impl PinInit<T, Error>,
    ) -> Result<Registration<T>> {
        const {
            // kvzalloc() gives no more than 8-byte alignment.
            assert!(core::mem::align_of::<Device<T>>() <= 8);
            assert!(core::mem::offset_of!(Device<T>, vdev) == 0);
            // The migration operations come all together, with the flags.
            let mig = T::HAS_MIG_SET_STATE;
            assert!(mig == T::HAS_MIG_GET_STATE && mig == T::HAS_MIG_DATA_SIZE);
            assert!(mig == (T::MIGRATION_FLAGS != 0));
            // So do the DMA logging operations.
            let log = T::HAS_LOG_START;
            assert!(log == T::HAS_LOG_STOP && log == T::HAS_LOG_READ_AND_CLEAR);
        }
        let parent = super::device_ptr(parent);
        // SAFETY: the size covers `Device<T>`, whose first field is the
        // vfio_device; `parent` is a live device for the whole call (it is
        // borrowed), and once the VFIO device is registered below the
        // driver core holds a reference to it as the VFIO device's parent
        // (a failed registration puts the VFIO device before returning);
        // the ops table is static.
        let raw = from_err_ptr(unsafe {
            bindings::_vfio_alloc_device(
                core::mem::size_of::<Device<T>>(),
                parent,
                &VTable::<T>::OPS,
            )
        })?;
        let this = raw.cast::<Device<T>>();
        // SAFETY: `work` is ours to initialise; it is disabled before the
        // device is freed (`Registration::drop`).
        unsafe { bindings::kapi_init_work((*this).work.get(), Some(VTable::<T>::work)) };
        // SAFETY: `this` is a zeroed allocation of `Device<T>` that nobody
        // else uses yet; `data` is pinned there until `release`.
        let ret = unsafe { super::compat::init_slot((*this).data.as_mut_ptr(), init) };
        if let Err(e) = ret {
            // SAFETY: drops the only reference; `live` is false so
            // `release` leaves `data` alone.
            unsafe { bindings::put_device(&raw mut (*raw).device) };
            return Err(e);
        }
        // SAFETY: `data` was just initialised; nobody else sees `this` yet;
        // the migration ops are static and must be set before registering.
        unsafe {
            (*this).live = true;
            if T::HAS_MIG_SET_STATE {
                (*raw).mig_ops = &VTable::<T>::MIG_OPS;
                (*raw).migration_flags = T::MIGRATION_FLAGS;
            }
            if T::HAS_LOG_START && cfg!(CONFIG_IOMMUFD_DRIVER) {
                (*raw).log_ops = &VTable::<T>::LOG_OPS;
            }
        }
        // SAFETY: `raw` is an initialised vfio_device.
        if let Err(e) = to_result(unsafe { bindings::vfio_register_emulated_iommu_dev(raw) }) {
            // SAFETY: drops the only reference; `release` drops `data`.
            unsafe { bindings::put_device(&raw mut (*raw).device) };
            return Err(e);
        }
        // INVARIANT: registered above; the reference from
        // `_vfio_alloc_device` moves into the registration.
        Ok(Registration {
            dev: NonNull::new(this).ok_or(ENOMEM)?,
        })
    }

    fn raw(&self) -> *mut bindings::vfio_device {
        self.vdev.get()
    }

    /// # Safety
    ///
    /// `vdev` must be the `vdev` field of a live `Device<T>` whose data is
    /// initialised (true for every callback after registration).
    unsafe fn from_raw<'a>(vdev: *mut bindings::vfio_device) -> &'a Self {
        // SAFETY: `vdev` is the first field of a `#[repr(C)]` `Device<T>`.
        unsafe { &*vdev.cast::<Self>() }
    }

    /// Queues the device's work item (which calls [`Ops::work`]) unless it
    /// is already queued, or the device was unregistered (the item is
    /// disabled then). Returns whether it was queued now.
    pub(crate) fn queue_work(&self) -> bool {
        // SAFETY: `work` was initialised at registration; it is disabled
        // when the device is unregistered (so it is never queued again) and
        // the device is freed only after that.
        unsafe { bindings::kapi_queue_work(self.work.get()) }
    }

    /// Replaces the opener's memory cgroup with `memcg` (a reference the
    /// device takes over, or NULL) and drops the old one.
    fn set_memcg(&self, memcg: *mut bindings::mem_cgroup) {
        let old = self.memcg.swap(memcg, Ordering::AcqRel);
        // SAFETY: `old` is NULL or the reference the device held (type
        // invariant); it is no longer reachable through `memcg`.
        unsafe { bindings::kapi_memcg_put(old) };
    }

    /// Waits until the work item, if queued or running, has finished.
    pub(crate) fn flush_work(&self) {
        // SAFETY: as in `queue_work`.
        unsafe { bindings::flush_work(self.work.get()) };
    }

    /// The next state on the way from `cur` to `new` (the VFIO core's
    /// migration FSM); `EINVAL` for an arc the uAPI does not allow.
    pub(crate) fn mig_next_state(&self, cur: u32, new: u32) -> Result<u32> {
        let mut next = 0;
        // SAFETY: the device is registered; `next` is valid for writes.
        to_result(unsafe { bindings::vfio_mig_get_next_state(self.raw(), cur, new, &mut next) })?;
        Ok(next)
    }

    /// A counted reference to this device: keeps its memory (and the
    /// driver data) alive, not its registration.
    pub(crate) fn get_ref(&self) -> DeviceRef<T> {
        // SAFETY: the embedded `struct device` is live while `&self` is.
        unsafe { bindings::get_device(&raw mut (*self.raw()).device) };
        // INVARIANT: the reference was just taken.
        DeviceRef {
            dev: NonNull::from(self),
        }
    }

    /// Pins the guest page at `iova` (page aligned) for device access;
    /// `write` if the device will write it.
    pub(crate) fn pin_page(&self, iova: u64, write: bool) -> Result<PinnedPage> {
        if iova % kernel::page::PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        let prot = bindings::KAPI_IOMMU_READ | if write { bindings::KAPI_IOMMU_WRITE } else { 0 };
        let mut page: *mut bindings::page = core::ptr::null_mut();
        // SAFETY: the device is registered and opened by a user (the
        // driver pins only while it is); one page is pinned into `page`.
        let n = unsafe { bindings::vfio_pin_pages(self.raw(), iova, 1, prot, &mut page) };
        to_result(n)?;
        if n != 1 || page.is_null() {
            return Err(EFAULT);
        }
        // INVARIANT: one page pinned at `iova`.
        Ok(PinnedPage {
            vdev: self.raw(),
            iova,
            page,
        })
    }
}

/// A counted reference to a [`Device`] (its `struct device`), dropped
/// with `put_device()`; the last one releases the device and its data.
///
/// # Invariants
///
/// `dev` points to a device whose data is initialised and on which this
/// value holds one reference.
pub(crate) struct DeviceRef<T: Ops> {
    dev: NonNull<Device<T>>,
}

impl<T: Ops> Deref for DeviceRef<T> {
    type Target = Device<T>;

    fn deref(&self) -> &Device<T> {
        // SAFETY: the reference keeps the device alive (type invariant).
        unsafe { self.dev.as_ref() }
    }
}

impl<T: Ops> Drop for DeviceRef<T> {
    fn drop(&mut self) {
        // SAFETY: drops the reference taken in `get_ref`.
        unsafe { bindings::put_device(&raw mut (*self.raw()).device) };
    }
}

// SAFETY: see `Device<T>`.
unsafe impl<T: Ops> Send for DeviceRef<T> {}
// SAFETY: see `Device<T>`.
unsafe impl<T: Ops> Sync for DeviceRef<T> {}

/// One guest page pinned through `vfio_pin_pages()`; unpinned on drop.
///
/// The driver must drop every pinned page before its device is closed
/// (`Ops::close`), as the VFIO core requires.
///
/// # Invariants
///
/// `page` is pinned at `iova` for `vdev`, which outlives it.
pub(crate) struct PinnedPage {
    vdev: *mut bindings::vfio_device,
    iova: u64,
    page: *mut bindings::page,
}

impl PinnedPage {
    /// The page's IOVA.
    pub(crate) fn iova(&self) -> u64 {
        self.iova
    }

    fn check(offset: usize, len: usize) -> Result {
        match offset.checked_add(len) {
            Some(end) if end <= kernel::page::PAGE_SIZE => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// Copies `out.len()` bytes at `offset` in the page into `out`.
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> Result {
        Self::check(offset, out.len())?;
        // SAFETY: the page is pinned (type invariant) and the range is
        // inside it (checked); `out` is valid for writes of its length.
        unsafe { bindings::kapi_page_read(self.page, offset, out.as_mut_ptr().cast(), out.len()) };
        Ok(())
    }

    /// Copies `data` into the page at `offset`.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> Result {
        Self::check(offset, data.len())?;
        // SAFETY: as in `read`; `data` is valid for reads.
        unsafe { bindings::kapi_page_write(self.page, offset, data.as_ptr().cast(), data.len()) };
        Ok(())
    }
}

impl Drop for PinnedPage {
    fn drop(&mut self) {
        // SAFETY: pinned at `iova` for `vdev` (type invariant).
        unsafe { bindings::vfio_unpin_pages(self.vdev, self.iova, 1) };
    }
}

// SAFETY: a pinned page may be accessed and unpinned from any thread.
unsafe impl Send for PinnedPage {}
// SAFETY: `&PinnedPage` copies through a kernel mapping; concurrent copies
// are no more racy than the DMA they emulate.
unsafe impl Sync for PinnedPage {}

impl<T: Ops> Deref for Device<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: a `&Device<T>` is only handed out while `live` (type
        // invariant), when `data` is initialised.
        unsafe { self.data.assume_init_ref() }
    }
}

// SAFETY: the VFIO core's structure is used through its own locking; `T` is
// `Send + Sync`.
unsafe impl<T: Ops> Send for Device<T> {}
// SAFETY: as above.
unsafe impl<T: Ops> Sync for Device<T> {}

/// A registered VFIO device; unregistered and released on drop.
///
/// # Invariants
///
/// `dev` is registered with the VFIO core and this handle owns one
/// reference to it.
pub(crate) struct Registration<T: Ops> {
    dev: NonNull<Device<T>>,
}

impl<T: Ops> Deref for Registration<T> {
    type Target = Device<T>;

    fn deref(&self) -> &Device<T> {
        // SAFETY: the handle holds a reference (type invariant).
        unsafe { self.dev.as_ref() }
    }
}

impl<T: Ops> Drop for Registration<T> {
    fn drop(&mut self) {
        let raw = self.raw();
        // SAFETY: registered (type invariant). Unregistering waits until
        // every user has closed the device; then the work item is disabled:
        // a run still queued is cancelled, a running one waited for, and
        // `queue_work` does nothing from now on, even through a reference a
        // file still holds.
        unsafe {
            bindings::vfio_unregister_group_dev(raw);
            bindings::disable_work_sync(self.work.get());
        }
        T::removed(self);
        // SAFETY: drops the registration's reference; `release` runs once
        // the last one (e.g. a migration file's) is gone.
        unsafe { bindings::put_device(&raw mut (*raw).device) };
    }
}

// SAFETY: see `Device<T>`.
unsafe impl<T: Ops> Send for Registration<T> {}
// SAFETY: see `Device<T>`.
unsafe impl<T: Ops> Sync for Registration<T> {}

mod args;
pub(crate) mod ioctl;
pub(crate) mod uapi;
mod vtable;

use vtable::VTable;

pub(crate) use args::{
    read_arg, read_arg_tail, write_arg, Arg, DeviceInfo, IrqInfo, IrqSet, PrecopyInfo,
};
