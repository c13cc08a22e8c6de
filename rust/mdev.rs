// SPDX-License-Identifier: GPL-2.0

//! Mediated devices: an mdev driver and its parent with a set of types.
//!
//! C header: [`include/linux/mdev.h`](srctree/include/linux/mdev.h).
//!
//! A [`Registration`] owns a `struct mdev_driver`, a `struct mdev_parent` and
//! the parent's `struct mdev_type`s, registers them on creation and
//! unregisters them on drop. The mdev core's callbacks (`probe`, `remove`,
//! `get_available`, `show_description`) are delivered to a [`Driver`]
//! implementation, which the registration also owns, as it owns the
//! [`Parent`] device the types hang off.

use super::{bindings, device_ptr};
use core::ptr::null_mut;
use kernel::{
    error::{from_result, to_result},
    prelude::*,
    types::{ForeignOwnable, Opaque},
};

/// Most types one parent can have.
pub(crate) const MAX_TYPES: usize = 8;

/// The device API of a driver's mdevs (`mdev_driver.device_api`, shown in
/// each type's `device_api` attribute): which of the device interfaces of
/// `include/uapi/linux/vfio.h` its VFIO devices present to user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code, reason = "the uAPI's whole list; a driver uses one")]
pub(crate) enum DeviceApi {
    /// `VFIO_DEVICE_API_PCI_STRING` (`vfio-pci`).
    Pci,
    /// `VFIO_DEVICE_API_PLATFORM_STRING` (`vfio-platform`).
    Platform,
    /// `VFIO_DEVICE_API_AMBA_STRING` (`vfio-amba`).
    Amba,
    /// `VFIO_DEVICE_API_CCW_STRING` (`vfio-ccw`).
    Ccw,
    /// `VFIO_DEVICE_API_AP_STRING` (`vfio-ap`).
    Ap,
}

impl DeviceApi {
    /// The uAPI's NUL-terminated name of the API.
    const fn name(self) -> &'static [u8] {
        match self {
            Self::Pci => bindings::VFIO_DEVICE_API_PCI_STRING,
            Self::Platform => bindings::VFIO_DEVICE_API_PLATFORM_STRING,
            Self::Amba => bindings::VFIO_DEVICE_API_AMBA_STRING,
            Self::Ccw => bindings::VFIO_DEVICE_API_CCW_STRING,
            Self::Ap => bindings::VFIO_DEVICE_API_AP_STRING,
        }
    }
}

/// A device that can be the parent of a [`Registration`]'s mdev types: the
/// types' sysfs directories are created below it
/// (`<device>/mdev_supported_types/<driver>-<type>`, where `<driver>` is
/// the device's driver name or, for a class device without a driver, its
/// class name).
///
/// The registration owns the value, shares it only as `&Self` while the
/// parent is registered (never moves or mutably borrows it), and drops it
/// after `mdev_unregister_parent()`.
///
/// # Safety
///
/// [`Parent::device`] returns the same device on every call, and that
/// device is registered with the driver core (added to sysfs) from before
/// the first call until the value is dropped: the mdev core creates sysfs
/// directories below it and removes them at `mdev_unregister_parent()`.
pub(crate) unsafe trait Parent: Send + Sync + 'static {
    /// The parent's driver-model device.
    fn device(&self) -> &kernel::device::Device;
}

/// An mdev vendor driver.
pub(crate) trait Driver: Send + Sync + Sized + 'static {
    /// What `probe` creates for each mdev and `remove` gets back.
    type Device: Send + Sync;

    /// Driver name (`/sys/bus/mdev/drivers/<NAME>`).
    const NAME: &'static CStr;

    /// The device API of the driver's mdevs.
    const DEVICE_API: DeviceApi;

    /// Number of types of the parent (at most [`MAX_TYPES`]); a type is
    /// identified by its index in the callbacks below.
    const TYPE_COUNT: usize;

    /// The sysfs names of type `type_index`: the suffix of its directory
    /// (`<parent>-<suffix>`) and its `name` attribute.
    fn type_names(type_index: usize) -> (&'static CStr, &'static CStr);

    /// A new mdev of type `type_index` was created: set it up.
    fn probe(&self, mdev: &MdevDevice, type_index: usize) -> Result<KBox<Self::Device>>;

    /// The mdev that `probe` returned `device` for is being removed.
    fn remove(&self, device: KBox<Self::Device>);

    /// How many more mdevs of `type_index` can be created.
    fn available(&self, type_index: usize) -> u32;

    /// Writes the `description` of `type_index` into `buf`; returns the
    /// number of bytes written.
    fn describe(&self, type_index: usize, buf: &mut [u8]) -> usize;
}

/// A mediated device, as the mdev core hands it to `probe`.
#[repr(transparent)]
pub(crate) struct MdevDevice(Opaque<bindings::mdev_device>);

impl MdevDevice {
    /// # Safety
    ///
    /// `ptr` must point to a live `struct mdev_device` for the lifetime `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::mdev_device) -> &'a Self {
        // SAFETY: `MdevDevice` is a transparent wrapper of the C struct,
        // which the caller guarantees is live for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// The embedded `struct device`.
    fn as_raw_device(&self) -> *mut bindings::device {
        // SAFETY: `self.0` is a live mdev_device; taking a field's address
        // does not read it.
        unsafe { &raw mut (*self.0.get()).dev }
    }

    /// The mdev as a driver-model device (for logging, and as the parent
    /// of the VFIO device registered for it).
    pub(crate) fn device(&self) -> &kernel::device::Device {
        // SAFETY: the embedded device lives as long as the mdev (`&self`).
        unsafe { kernel::device::Device::from_raw(self.as_raw_device()) }
    }
}

/// The registered mdev driver `T` and its parent, device `P`.
///
/// # Invariants
///
/// `driver` is registered with the mdev bus iff `driver_registered`, and
/// `parent` (on `parent_dev.device()`) with `types[..T::TYPE_COUNT]` iff
/// `parent_registered` (both are, once the initialiser has succeeded).
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: Driver, P: Parent> {
    #[pin]
    driver: Opaque<bindings::mdev_driver>,
    #[pin]
    parent: Opaque<bindings::mdev_parent>,
    #[pin]
    types: [Opaque<bindings::mdev_type>; MAX_TYPES],
    type_ptrs: [*mut bindings::mdev_type; MAX_TYPES],
    /// What drop must unregister: an initialiser that fails part-way is
    /// dropped too, with only some of it registered.
    driver_registered: bool,
    parent_registered: bool,
    #[pin]
    data: T,
    // Only shared, never moved; dropped after the parent is unregistered
    // (`PinnedDrop` runs first).
    #[pin]
    parent_dev: P,
}

// SAFETY: the raw structures are only touched by the mdev core (which
// serialises its own use) and by `Drop`; `T` and `P` are `Send`.
unsafe impl<T: Driver, P: Parent> Send for Registration<T, P> {}
// SAFETY: shared references only reach `data` (`T: Sync`), `parent_dev`
// (`P: Sync`) and the core's structures, which are not mutated through
// `&Registration`.
unsafe impl<T: Driver, P: Parent> Sync for Registration<T, P> {}

impl<T: Driver, P: Parent> Registration<T, P> {
    /// Registers driver `T` (owning `data`) and makes `parent_dev` an mdev
    /// parent with `T::TYPE_COUNT` types. The registration owns
    /// `parent_dev` and drops it after unregistering.
    pub(crate) fn new(
        module: &'static ThisModule,
        parent_dev: P,
        data: impl PinInit<T, Error>,
    ) -> impl PinInit<Self, Error> {
        build_assert!(T::TYPE_COUNT <= MAX_TYPES);
        try_pin_init!(Self {
            // Only filled in here: registering happens in `pin_chain` below,
            // after every field is initialised, so no failing initialiser
            // can free a registered driver.
            driver <- Opaque::ffi_init(move |slot: *mut bindings::mdev_driver| {
                // SAFETY: `slot` is valid for writes; the rest of the
                // structure is zero (NULL pointers, no callbacks).
                unsafe {
                    slot.write(bindings::mdev_driver {
                        device_api: T::DEVICE_API.name().as_ptr().cast(),
                        max_instances: 0,
                        probe: Some(Self::probe_callback),
                        remove: Some(Self::remove_callback),
                        get_available: Some(Self::get_available_callback),
                        show_description: Some(Self::show_description_callback),
                        ..Default::default()
                    });
                    (*slot).driver.name = T::NAME.as_char_ptr();
                    (*slot).driver.owner = module.as_ptr();
                }
            }),
            parent: Opaque::uninit(),
            types: [const { Opaque::<bindings::mdev_type>::zeroed() }; MAX_TYPES],
            type_ptrs: [null_mut(); MAX_TYPES],
            driver_registered: false,
            parent_registered: false,
            data <- data,
            parent_dev,
        })
        .pin_chain(move |this| {
            // SAFETY: nothing is moved out of the pinned registration; the
            // raw pointers below stay valid because it is pinned.
            let this = unsafe { this.get_unchecked_mut() };
            for i in 0..T::TYPE_COUNT {
                let t = this.types[i].get();
                let (sysfs_name, pretty_name) = T::type_names(i);
                // SAFETY: `t` points to a zeroed mdev_type owned by us; the
                // names are static.
                unsafe {
                    (*t).sysfs_name = sysfs_name.as_char_ptr();
                    (*t).pretty_name = pretty_name.as_char_ptr();
                }
                this.type_ptrs[i] = t;
            }
            // SAFETY: the driver is fully initialised and pinned (inside
            // the pinned registration).
            to_result(unsafe { bindings::mdev_register_driver(this.driver.get()) })?;
            // INVARIANT: registered just now.
            this.driver_registered = true;
            // SAFETY: the device is live and registered while `parent_dev`
            // is, which `this` owns until after unregistering (`Parent`);
            // the driver is registered; the mdev_parent and the types are
            // pinned and outlive the registration (unregistered in `drop`).
            let ret = to_result(unsafe {
                bindings::mdev_register_parent(
                    this.parent.get(),
                    device_ptr(this.parent_dev.device()),
                    this.driver.get(),
                    this.type_ptrs.as_mut_ptr(),
                    T::TYPE_COUNT as u32,
                )
            });
            // On failure, the failed initialiser is dropped, which
            // unregisters the driver (and only the driver).
            ret?;
            // INVARIANT: registered just now.
            this.parent_registered = true;
            Ok(())
        })
    }

    /// # Safety
    ///
    /// `mtype` must be one of the types of a live `Registration<T, P>`.
    unsafe fn from_type<'a>(mtype: *mut bindings::mdev_type) -> (&'a Self, usize) {
        // SAFETY: the core sets `mtype->parent` to our `parent` field at
        // registration, and the registration is live (caller).
        let this = unsafe {
            let parent = (*mtype).parent.cast::<Opaque<bindings::mdev_parent>>();
            &*kernel::container_of!(parent, Self, parent)
        };
        let index = this.type_ptrs.iter().position(|&p| p == mtype).unwrap_or(0);
        (this, index)
    }

    /// # Safety
    ///
    /// Only called by the mdev core, for an mdev or type of a live
    /// `Registration<T, P>`.
    unsafe extern "C" fn probe_callback(mdev: *mut bindings::mdev_device) -> c_int {
        from_result(|| {
            // SAFETY: the mdev core calls probe with a live mdev whose type
            // belongs to our (live, since the driver is registered) parent.
            let (this, index) = unsafe { Self::from_type((*mdev).type_) };
            // SAFETY: `mdev` is live during probe.
            let m = unsafe { MdevDevice::from_raw(mdev) };
            let device = this.data.probe(m, index)?;
            // SAFETY: drvdata of a device being probed is ours to set; it is
            // taken back in `remove_callback`.
            unsafe { (*mdev).dev.driver_data = device.into_foreign().cast() };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Only called by the mdev core, for an mdev or type of a live
    /// `Registration<T, P>`.
    unsafe extern "C" fn remove_callback(mdev: *mut bindings::mdev_device) {
        // SAFETY: as in `probe_callback`.
        let (this, _) = unsafe { Self::from_type((*mdev).type_) };
        // SAFETY: a bound mdev's drvdata was set by `probe_callback` from
        // `KBox::into_foreign` and is taken back exactly once, here.
        let device = unsafe { KBox::<T::Device>::from_foreign((*mdev).dev.driver_data.cast()) };
        // SAFETY: as above; the pointer is no longer ours.
        unsafe { (*mdev).dev.driver_data = null_mut() };
        this.data.remove(device);
    }

    /// # Safety
    ///
    /// Only called by the mdev core, for an mdev or type of a live
    /// `Registration<T, P>`.
    unsafe extern "C" fn get_available_callback(mtype: *mut bindings::mdev_type) -> c_uint {
        // SAFETY: the core passes one of our registered types.
        let (this, index) = unsafe { Self::from_type(mtype) };
        this.data.available(index)
    }

    /// # Safety
    ///
    /// Only called by the mdev core, for an mdev or type of a live
    /// `Registration<T, P>`.
    unsafe extern "C" fn show_description_callback(
        mtype: *mut bindings::mdev_type,
        buf: *mut c_char,
    ) -> isize {
        // SAFETY: the core passes one of our registered types.
        let (this, index) = unsafe { Self::from_type(mtype) };
        // SAFETY: sysfs show buffers are PAGE_SIZE bytes, writable, and not
        // aliased during the call.
        let buf =
            unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE) };
        this.data.describe(index, buf) as isize
    }
}

#[pinned_drop]
impl<T: Driver, P: Parent> PinnedDrop for Registration<T, P> {
    fn drop(self: Pin<&mut Self>) {
        // The parent goes first (it removes every mdev, calling
        // `remove`), then the driver; each only if it was registered.
        if self.parent_registered {
            // SAFETY: registered (type invariant).
            unsafe { bindings::mdev_unregister_parent(self.parent.get()) };
        }
        if self.driver_registered {
            // SAFETY: registered (type invariant).
            unsafe { bindings::mdev_unregister_driver(self.driver.get()) };
        }
    }
}
