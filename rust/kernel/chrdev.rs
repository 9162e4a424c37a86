// SPDX-License-Identifier: GPL-2.0

//! Character devices that belong to a device class.
//!
//! A subsystem that exposes one character device per hardware device (uacce, for instance) needs
//! three things: a range of device numbers ([`Region`]), a class that groups its devices in sysfs
//! ([`Class`]), and for each device a `struct device` with a `struct cdev` whose file operations
//! are implemented in Rust ([`Node`]).
//!
//! A [`Node`] follows the pattern that `cdev_device_add()` documents: the `struct cdev` and the
//! `struct device` live in one allocation whose lifetime is the device's reference count. Every
//! open file holds a reference to the cdev, which holds one to the device, so the per-node data
//! ([`Operations::Data`]) outlives every open file, even after the [`Node`] is dropped and the
//! device has disappeared from sysfs and `/dev`.
//!
//! C headers: [`include/linux/cdev.h`](srctree/include/linux/cdev.h),
//! [`include/linux/device/class.h`](srctree/include/linux/device/class.h).

use crate::{
    bindings, container_of,
    device::Device,
    error::{from_err_ptr, to_result, VTABLE_DEFAULT_ERROR},
    fs::File,
    mm::virt::VmaNew,
    module::this_module,
    new_mutex,
    prelude::*,
    seq_file::SeqFile,
    str::CStr,
    sync::{poll::PollTable, Mutex},
    types::{ForeignOwnable, Opaque},
};
use core::{fmt, marker::PhantomData, ptr::NonNull};

/// A device class, as listed under `/sys/class/`.
///
/// # Invariants
///
/// `ptr` is a class returned by a successful `class_create()` that has not been destroyed yet.
pub struct Class {
    ptr: NonNull<bindings::class>,
}

// SAFETY: A `struct class` may be used and destroyed from any thread.
unsafe impl Send for Class {}
// SAFETY: All `&self` uses of a class go through C functions that synchronise internally.
unsafe impl Sync for Class {}

impl Class {
    /// Creates and registers the class `name`.
    pub fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: `name` is a valid C string that lives forever, as `class_create()` requires.
        let ptr = from_err_ptr(unsafe { bindings::class_create(name.as_char_ptr()) })?;
        // INVARIANT: `class_create()` succeeded.
        Ok(Self {
            ptr: NonNull::new(ptr).ok_or(ENOMEM)?,
        })
    }

    fn as_raw(&self) -> *mut bindings::class {
        self.ptr.as_ptr()
    }
}

impl Drop for Class {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the class was created and not destroyed yet.
        unsafe { bindings::class_destroy(self.as_raw()) };
    }
}

/// A range of character device numbers with one major number.
///
/// # Invariants
///
/// `base..base + count` was allocated by `alloc_chrdev_region()` and not unregistered yet.
pub struct Region {
    base: bindings::dev_t,
    count: u32,
}

impl Region {
    /// Allocates `count` minor numbers under a dynamically chosen major, named `name` in
    /// `/proc/devices`.
    pub fn new(count: u32, name: &'static CStr) -> Result<Self> {
        if count == 0 || count > 1 << bindings::MINORBITS {
            return Err(EINVAL);
        }
        let mut base: bindings::dev_t = 0;
        // SAFETY: `base` is valid for writes and `name` outlives the region.
        to_result(unsafe {
            bindings::alloc_chrdev_region(&mut base, 0, count, name.as_char_ptr())
        })?;
        // INVARIANT: The allocation succeeded.
        Ok(Self { base, count })
    }

    /// Returns the device number of `minor`, which must be below the region's count.
    pub fn devt(&self, minor: u32) -> Result<bindings::dev_t> {
        if minor >= self.count {
            return Err(EINVAL);
        }
        Ok(self.base + minor)
    }

    /// The number of minors in this region.
    pub fn count(&self) -> u32 {
        self.count
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the range is allocated.
        unsafe { bindings::unregister_chrdev_region(self.base, self.count) };
    }
}

/// The buffer that a sysfs `show` callback writes into.
///
/// Output beyond the one page that sysfs provides is truncated.
///
/// # Invariants
///
/// `buf` is valid for writes of `PAGE_SIZE` bytes, and `len <= PAGE_SIZE`.
pub struct AttributeBuffer {
    buf: *mut u8,
    len: usize,
}

impl AttributeBuffer {
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Write for AttributeBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(crate::page::PAGE_SIZE - self.len);
        // SAFETY: By the type invariants, `buf + len .. buf + len + n` is within the page, and it
        // cannot overlap `s`, which is not sysfs' buffer.
        unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), self.buf.add(self.len), n) };
        // INVARIANT: `n` was clamped so that `len` stays within the page.
        self.len += n;
        if n < s.len() {
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// The file operations and sysfs attributes of a [`Node`].
///
/// The file operations are instantiated in the module that implements this trait, and the cdev
/// is owned by that module, so it cannot be unloaded while a file is open.
#[vtable]
pub trait Operations: Sized + 'static {
    /// Data shared by every open file of a node. It lives as long as the node's device: until
    /// the [`Node`] is dropped and the last file is closed.
    type Data: Send + Sync;

    /// The private data of one open file.
    type Ptr: ForeignOwnable + Send + Sync;

    /// The names of the read-only attributes in the device's sysfs directory.
    const ATTRIBUTES: &'static [&'static CStr] = &[];

    /// Formats attribute `index` of [`Operations::ATTRIBUTES`].
    fn show_attribute(_data: &Self::Data, _index: usize, _buf: &mut AttributeBuffer) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Whether attribute `index` of [`Operations::ATTRIBUTES`] appears in sysfs. It is asked
    /// once, when the device is registered.
    fn attribute_is_visible(_data: &Self::Data, _index: usize) -> bool {
        true
    }

    /// Called when the device node is opened.
    ///
    /// This can be called after the [`Node`] was dropped, through a file system node that was
    /// looked up before; an implementation that revokes `data` should return `ENODEV` then.
    fn open(data: &Self::Data, file: &File) -> Result<Self::Ptr>;

    /// Called when the last reference to an open file is gone.
    fn release(device: Self::Ptr, _file: &File) {
        drop(device);
    }

    /// Called on `mmap()`; the VMA is set up according to what this leaves in `vma`.
    fn mmap(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _vma: &VmaNew,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles an ioctl.
    fn ioctl(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _cmd: u32,
        _arg: usize,
    ) -> Result<isize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles an ioctl from 32-bit user space. Without it, `compat_ptr_ioctl()` is used.
    #[cfg(CONFIG_COMPAT)]
    fn compat_ioctl(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _cmd: u32,
        _arg: usize,
    ) -> Result<isize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles `poll()`: registers on `table` what to wait for and returns the ready events.
    fn poll(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _table: PollTable<'_>,
    ) -> u32 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Prints the file's entries of `/proc/<pid>/fdinfo/<fd>`.
    fn show_fdinfo(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _m: &SeqFile,
        _file: &File,
    ) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// One sysfs attribute of a node, found again from the `struct device_attribute` that sysfs
/// passes to `show`.
#[repr(C)]
struct Attribute {
    attr: bindings::device_attribute,
    index: usize,
}

/// The address space of open files, counted, so that their user mappings can be revoked.
struct OpenMapping {
    mapping: *mut bindings::address_space,
    files: usize,
}

/// The allocation behind a [`Node`]: its device, cdev, sysfs attributes and data.
///
/// # Invariants
///
/// - Once `dev` is initialised, the allocation is owned by the device's reference count and is
///   freed by [`Inner::release`].
/// - `attr_ptrs` is a NULL-terminated array of pointers into `attrs`, `group` points to it, and
///   `groups` is a NULL-terminated array that points to `group`. Neither vector is resized after
///   the pointers are taken.
/// - Every pointer in `mappings` is the `f_mapping` of a file of this node that is still open.
#[repr(C)]
#[pin_data]
struct Inner<T: Operations> {
    dev: Opaque<bindings::device>,
    cdev: Opaque<bindings::cdev>,
    group: Opaque<bindings::attribute_group>,
    groups: [*const bindings::attribute_group; 2],
    attrs: KVec<Attribute>,
    attr_ptrs: KVec<*mut bindings::attribute>,
    #[pin]
    mappings: Mutex<KVec<OpenMapping>>,
    #[pin]
    data: T::Data,
}

// SAFETY: The raw pointers are into the allocation itself or to address spaces, used under the
// `mappings` lock; `T::Data` is `Send`.
unsafe impl<T: Operations> Send for Inner<T> {}
// SAFETY: `&self` methods only read the attribute tables, lock `mappings`, or share `T::Data`,
// which is `Sync`.
unsafe impl<T: Operations> Sync for Inner<T> {}

impl<T: Operations> Inner<T> {
    /// # Safety
    ///
    /// `dev` must be the device of an `Inner<T>` whose reference count just dropped to zero.
    unsafe extern "C" fn release(dev: *mut bindings::device) {
        // SAFETY: The caller passes the device of an `Inner<T>`.
        let inner = unsafe { Self::from_dev(dev) }.cast_mut();
        // SAFETY: The allocation was made by `KBox::pin_init()` in `Node::register()`, and the
        // device's reference count, which owned it, is zero.
        drop(unsafe { KBox::from_raw(inner) });
    }

    /// # Safety
    ///
    /// `dev` must point to the `dev` field of an `Inner<T>`.
    unsafe fn from_dev(dev: *const bindings::device) -> *const Self {
        // SAFETY: The caller promises that `dev` is the `dev` field of an `Inner<T>`.
        unsafe { container_of!(Opaque::cast_from(dev), Self, dev) }
    }

    /// # Safety
    ///
    /// `cdev` must point to the `cdev` field of a live `Inner<T>`.
    unsafe fn from_cdev<'a>(cdev: *const bindings::cdev) -> &'a Self {
        // SAFETY: The caller promises that `cdev` is the `cdev` field of a live `Inner<T>`.
        unsafe { &*container_of!(Opaque::cast_from(cdev), Self, cdev) }
    }

    fn track_open(&self, mapping: *mut bindings::address_space) -> Result {
        let mut mappings = self.mappings.lock();
        if let Some(m) = mappings.iter_mut().find(|m| m.mapping == mapping) {
            m.files += 1;
            return Ok(());
        }
        mappings.push(OpenMapping { mapping, files: 1 }, GFP_KERNEL)?;
        Ok(())
    }

    fn track_release(&self, mapping: *mut bindings::address_space) {
        let mut mappings = self.mappings.lock();
        if let Some(i) = mappings.iter().position(|m| m.mapping == mapping) {
            mappings[i].files -= 1;
            if mappings[i].files == 0 {
                let _ = mappings.remove(i);
            }
        }
    }
}

/// A character device node: `/dev/<name>` and `/sys/class/<class>/<name>`.
///
/// Dropping the node removes the device from sysfs and `/dev` and stops new opens; files that
/// are already open keep working against [`Operations::Data`] until they are closed.
///
/// # Invariants
///
/// `inner` points to an `Inner<T>` whose device and cdev were added by `cdev_device_add()` and
/// not deleted yet; the node owns one reference to the device.
pub struct Node<T: Operations> {
    inner: NonNull<Inner<T>>,
}

// SAFETY: The node may be dropped from any thread; `Inner<T>` is `Send`.
unsafe impl<T: Operations> Send for Node<T> {}
// SAFETY: `&self` methods only use `Inner<T>` through `&`, and `Inner<T>` is `Sync`.
unsafe impl<T: Operations> Sync for Node<T> {}

impl<T: Operations> Node<T> {
    /// Creates the device `name` in `class` with device number `devt`, child of `parent`, and
    /// makes it visible to user space.
    pub fn register(
        class: &Class,
        devt: bindings::dev_t,
        parent: &Device,
        name: fmt::Arguments<'_>,
        data: impl PinInit<T::Data, Error>,
    ) -> Result<Self> {
        let nattrs = if T::HAS_SHOW_ATTRIBUTE {
            T::ATTRIBUTES.len()
        } else {
            0
        };
        let mut attrs = KVec::with_capacity(nattrs, GFP_KERNEL)?;
        let attr_ptrs = KVec::with_capacity(nattrs + 1, GFP_KERNEL)?;
        for (index, attr_name) in T::ATTRIBUTES.iter().take(nattrs).enumerate() {
            let mut attr: bindings::device_attribute = pin_init::zeroed();
            attr.attr.name = attr_name.as_char_ptr();
            attr.attr.mode = 0o444;
            attr.__bindgen_anon_1.show = Some(Self::show);
            // As `sysfs_attr_init()`: lockdep needs a static key for an attribute that is not
            // static itself. One key for all of them, as in a C loop.
            #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
            {
                attr.attr.key = crate::static_lock_class!().as_ptr();
            }
            attrs.push(Attribute { attr, index }, GFP_KERNEL)?;
        }

        let inner = KBox::pin_init(
            try_pin_init!(Inner::<T> {
                dev: Opaque::zeroed(),
                cdev: Opaque::zeroed(),
                group: Opaque::zeroed(),
                groups: [core::ptr::null(); 2],
                attrs,
                attr_ptrs,
                mappings <- new_mutex!(KVec::new()),
                data <- data,
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: The allocation is never moved out of: it is freed in place by `release`.
        let inner = KBox::into_raw(unsafe { Pin::into_inner_unchecked(inner) });

        // SAFETY: `inner` is valid and not shared yet. The attribute tables are set up before
        // the device is added, and not changed afterwards (type invariants of `Inner`).
        unsafe {
            let i = &mut *inner;
            // The capacity was reserved above, so these pushes cannot fail.
            for attr in i.attrs.iter_mut() {
                if T::attribute_is_visible(&i.data, attr.index) {
                    let _ = i.attr_ptrs.push_within_capacity(&raw mut attr.attr.attr);
                }
            }
            let _ = i.attr_ptrs.push_within_capacity(core::ptr::null_mut());
            let group = i.group.get();
            (*group).__bindgen_anon_2.attrs = i.attr_ptrs.as_mut_ptr();
            i.groups[0] = group;
        }

        let dev = Opaque::cast_into(
            // SAFETY: `inner` is valid.
            unsafe { &raw const (*inner).dev },
        );
        // SAFETY: `dev` is zeroed memory for a device. From here on the allocation belongs to
        // the device's reference count, and `put_device()` frees it through `Inner::release`.
        unsafe {
            bindings::device_initialize(dev);
            (*dev).devt = devt;
            (*dev).class = class.as_raw();
            (*dev).parent = parent.as_raw();
            (*dev).groups = (*inner).groups.as_ptr().cast_mut();
            (*dev).release = Some(Inner::<T>::release);
        }

        // SAFETY: `dev` is an initialised device, and "%pA" takes a `fmt::Arguments`.
        let ret = unsafe {
            bindings::dev_set_name(
                dev,
                c"%pA".as_char_ptr(),
                core::ptr::from_ref(&name).cast::<c_void>(),
            )
        };
        if let Err(e) = to_result(ret) {
            // SAFETY: This drops the only reference, which frees `inner`.
            unsafe { bindings::put_device(dev) };
            return Err(e);
        }

        let cdev = Opaque::cast_into(
            // SAFETY: `inner` is valid.
            unsafe { &raw const (*inner).cdev },
        );
        // SAFETY: `cdev` is zeroed memory for a cdev, and the vtable is static. Once added, the
        // cdev holds a reference to `dev`, which keeps the allocation alive for open files.
        let ret = unsafe {
            bindings::cdev_init(cdev, FileVTable::<T>::build());
            (*cdev).owner = this_module::<T::OwnerModule>().as_ptr();
            bindings::cdev_device_add(cdev, dev)
        };
        if let Err(e) = to_result(ret) {
            // SAFETY: `cdev_device_add()` undid what it did; drop the only reference.
            unsafe { bindings::put_device(dev) };
            return Err(e);
        }

        // INVARIANT: The device and the cdev were added, and this reference is the node's.
        Ok(Self {
            // SAFETY: `inner` came from `KBox::into_raw()`.
            inner: unsafe { NonNull::new_unchecked(inner) },
        })
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: By the type invariants, the node holds a reference to the allocation.
        unsafe { self.inner.as_ref() }
    }

    /// The node's data.
    pub fn data(&self) -> &T::Data {
        &self.inner().data
    }

    /// The node's device (the one in `/sys/class/<class>/`).
    pub fn device(&self) -> &Device {
        // SAFETY: By the type invariants, the device is initialised and alive.
        unsafe { Device::from_raw(self.inner().dev.get()) }
    }

    /// Zaps every user mapping of every open file of this node, so that the next access to
    /// them faults. Use it when revoking what the mappings referred to.
    pub fn unmap_user_mappings(&self) {
        let mappings = self.inner().mappings.lock();
        for m in mappings.iter() {
            // SAFETY: By the invariants of `Inner`, `m.mapping` belongs to a file that is still
            // open, which keeps its inode, and thus the address space, alive.
            unsafe { bindings::unmap_mapping_range(m.mapping, 0, 0, 1) };
        }
    }

    /// # Safety
    ///
    /// Called by sysfs with a device and an attribute of an `Inner<T>`, and a page-sized buffer.
    unsafe extern "C" fn show(
        dev: *mut bindings::device,
        attr: *mut bindings::device_attribute,
        buf: *mut c_char,
    ) -> isize {
        // SAFETY: sysfs calls this only while the attribute file exists, that is while the
        // device is registered, so the `Inner<T>` is alive.
        let inner = unsafe { &*Inner::<T>::from_dev(dev) };
        // SAFETY: `attr` is the first field of an `Attribute` (`repr(C)`) in `inner.attrs`.
        let index = unsafe { (*attr.cast::<Attribute>()).index };
        // INVARIANT: sysfs passes a buffer of one page.
        let mut out = AttributeBuffer {
            buf: buf.cast(),
            len: 0,
        };
        match T::show_attribute(&inner.data, index, &mut out) {
            Ok(()) => out.len as isize,
            Err(e) => e.to_errno() as isize,
        }
    }
}

impl<T: Operations> Drop for Node<T> {
    fn drop(&mut self) {
        let inner = self.inner.as_ptr();
        // SAFETY: By the type invariants, the device and cdev were added and not deleted, and
        // this drops the node's reference; open files keep theirs.
        unsafe {
            let dev = Opaque::cast_into(&raw const (*inner).dev);
            bindings::cdev_device_del(Opaque::cast_into(&raw const (*inner).cdev), dev);
            bindings::put_device(dev);
        }
    }
}

/// The `file_operations` of the nodes of `T`.
struct FileVTable<T: Operations>(PhantomData<T>);

impl<T: Operations> FileVTable<T> {
    /// # Safety
    ///
    /// `inode` and `file` are an inode of a node of `T` and a file that is being opened on it.
    unsafe extern "C" fn open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: `chrdev_open()` set `i_cdev` to the node's cdev and holds a reference to it
        // for as long as the file is open, so the `Inner<T>` outlives this call.
        let inner = unsafe { Inner::<T>::from_cdev(bindings::inode_cdev(inode)) };
        // SAFETY: The file is being opened, so it is valid, and has no fdget_pos region.
        let f = unsafe { File::from_raw_file(file) };
        // SAFETY: `file` is valid.
        let mapping = unsafe { (*file).f_mapping };

        if let Err(e) = inner.track_open(mapping) {
            return e.to_errno();
        }
        match T::open(&inner.data, f) {
            Ok(ptr) => {
                // SAFETY: Open may set the private data; the other operations read it back as
                // `T::Ptr`, and `release` takes it back.
                unsafe { (*file).private_data = ptr.into_foreign().cast() };
                0
            }
            Err(e) => {
                inner.track_release(mapping);
                e.to_errno()
            }
        }
    }

    /// # Safety
    ///
    /// `inode` and `file` are an inode of a node of `T` and a file of it being released.
    unsafe extern "C" fn release(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: The file still holds its reference to the cdev (`__fput()` drops it after
        // calling us), so the `Inner<T>` is alive.
        let inner = unsafe { Inner::<T>::from_cdev(bindings::inode_cdev(inode)) };
        // SAFETY: `open` stored a `T::Ptr` here, and release is its last user.
        let ptr = unsafe { <T::Ptr as ForeignOwnable>::from_foreign((*file).private_data.cast()) };
        // SAFETY: The file is valid for the duration of this call and has no fdget_pos region.
        T::release(ptr, unsafe { File::from_raw_file(file) });
        // SAFETY: `file` is valid.
        inner.track_release(unsafe { (*file).f_mapping });
        0
    }

    /// # Safety
    ///
    /// `file` is an open file of a node of `T`, and `vma` is being set up for it.
    unsafe extern "C" fn mmap(
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: `open` stored a `T::Ptr`, which lives until `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY: `vma` is undergoing initial setup in `f_op->mmap()`.
        let vma = unsafe { VmaNew::from_raw(vma) };
        // SAFETY: The file is valid for the duration of this call and has no fdget_pos region.
        let file = unsafe { File::from_raw_file(file) };
        match T::mmap(device, file, vma) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `file` is an open file of a node of `T`.
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: `open` stored a `T::Ptr`, which lives until `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY: The file is valid for the duration of this call and has no fdget_pos region.
        let file = unsafe { File::from_raw_file(file) };
        match T::ioctl(device, file, cmd, arg) {
            Ok(ret) => ret as c_long,
            Err(e) => e.to_errno() as c_long,
        }
    }

    /// # Safety
    ///
    /// `file` is an open file of a node of `T`.
    #[cfg(CONFIG_COMPAT)]
    unsafe extern "C" fn compat_ioctl(
        file: *mut bindings::file,
        cmd: c_uint,
        arg: c_ulong,
    ) -> c_long {
        // SAFETY: `open` stored a `T::Ptr`, which lives until `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY: The file is valid for the duration of this call and has no fdget_pos region.
        let file = unsafe { File::from_raw_file(file) };
        match T::compat_ioctl(device, file, cmd, arg) {
            Ok(ret) => ret as c_long,
            Err(e) => e.to_errno() as c_long,
        }
    }

    /// # Safety
    ///
    /// `file` is an open file of a node of `T`; `table` is NULL or a valid poll table.
    unsafe extern "C" fn poll(
        file: *mut bindings::file,
        table: *mut bindings::poll_table_struct,
    ) -> bindings::__poll_t {
        // SAFETY: `open` stored a `T::Ptr`, which lives until `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY: The caller's table is NULL or valid for the duration of this call.
        let table = unsafe { PollTable::from_raw(table) };
        // SAFETY: The file is valid for the duration of this call and has no fdget_pos region.
        let file = unsafe { File::from_raw_file(file) };
        T::poll(device, file, table)
    }

    /// # Safety
    ///
    /// `file` is an open file of a node of `T`; `m` is a seq_file being written.
    unsafe extern "C" fn show_fdinfo(m: *mut bindings::seq_file, file: *mut bindings::file) {
        // SAFETY: `open` stored a `T::Ptr`, which lives until `release`.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY: The file is valid for the duration of this call and has no fdget_pos region.
        let file = unsafe { File::from_raw_file(file) };
        // SAFETY: `m` is valid and exclusively ours for the duration of this call.
        let m = unsafe { SeqFile::from_raw(m) };
        T::show_fdinfo(device, m, file);
    }

    const VTABLE: bindings::file_operations = bindings::file_operations {
        owner: this_module::<T::OwnerModule>().as_ptr(),
        open: Some(Self::open),
        release: Some(Self::release),
        mmap: if T::HAS_MMAP { Some(Self::mmap) } else { None },
        unlocked_ioctl: if T::HAS_IOCTL {
            Some(Self::ioctl)
        } else {
            None
        },
        #[cfg(CONFIG_COMPAT)]
        compat_ioctl: if T::HAS_COMPAT_IOCTL {
            Some(Self::compat_ioctl)
        } else if T::HAS_IOCTL {
            bindings::compat_ptr_ioctl
        } else {
            None
        },
        poll: if T::HAS_POLL { Some(Self::poll) } else { None },
        show_fdinfo: if T::HAS_SHOW_FDINFO {
            Some(Self::show_fdinfo)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::file_operations {
        &Self::VTABLE
    }
}

#[kunit_tests(rust_kernel_chrdev)]
mod tests {
    use super::*;
    use crate::{faux, page::PAGE_SIZE};
    use core::fmt::Write;

    const NAME: &CStr = c"rust_kunit_chrdev";

    struct TestNode;

    #[vtable]
    impl Operations for TestNode {
        type Data = u32;
        type Ptr = ();

        const ATTRIBUTES: &'static [&'static CStr] = &[c"value", c"hidden"];

        fn show_attribute(data: &u32, index: usize, buf: &mut AttributeBuffer) -> Result {
            writeln!(buf, "{}", *data as usize + index).map_err(|_| EINVAL)
        }

        fn attribute_is_visible(_data: &u32, index: usize) -> bool {
            index == 0
        }

        fn open(_data: &u32, _file: &File) -> Result {
            Ok(())
        }
    }

    #[test]
    fn region_bounds() -> Result {
        assert_eq!(Region::new(0, NAME).err(), Some(EINVAL));
        let region = Region::new(2, NAME)?;
        assert_eq!(region.count(), 2);
        assert!(region.devt(1).is_ok());
        assert_eq!(region.devt(2).err(), Some(EINVAL));
        Ok(())
    }

    #[test]
    fn attribute_buffer_truncates_at_one_page() -> Result {
        let mut page = KVec::<u8>::with_capacity(PAGE_SIZE, GFP_KERNEL)?;
        // INVARIANT: `page` has room for `PAGE_SIZE` bytes.
        let mut buf = AttributeBuffer {
            buf: page.as_mut_ptr(),
            len: 0,
        };
        for _ in 0..PAGE_SIZE / 8 {
            assert!(buf.write_str("abcdefgh").is_ok());
        }
        assert_eq!(buf.len(), PAGE_SIZE);
        assert!(buf.write_str("x").is_err());
        assert_eq!(buf.len(), PAGE_SIZE);
        Ok(())
    }

    #[test]
    fn node_names_shows_and_hides_attributes() -> Result {
        let faux = faux::Registration::new(NAME, None)?;
        let faux_dev: &faux::Device<crate::device::Bound> = faux.as_ref();
        let parent: &Device<crate::device::Bound> = faux_dev.as_ref();
        let class = Class::new(NAME)?;
        let region = Region::new(1, NAME)?;
        let node = Node::<TestNode>::register(
            &class,
            region.devt(0)?,
            parent,
            format_args!("kunit-{}", 7),
            Ok::<u32, Error>(40),
        )?;
        assert_eq!(*node.data(), 40);
        assert_eq!(node.device().name().to_bytes(), b"kunit-7");

        let inner = node.inner();
        // Only the visible attribute is in the group, then the NULL terminator.
        assert_eq!(inner.attr_ptrs.len(), 2);
        assert!(inner.attr_ptrs[1].is_null());

        let mut page = KVec::<u8>::with_capacity(PAGE_SIZE, GFP_KERNEL)?;
        // SAFETY: The device and attribute belong to the registered `node`, and `page` has room
        // for one page, as sysfs provides.
        let len = unsafe {
            Node::<TestNode>::show(
                inner.dev.get(),
                (&raw const inner.attrs[0].attr).cast_mut(),
                page.as_mut_ptr().cast(),
            )
        };
        assert_eq!(len, 3);
        // SAFETY: `show` initialised the first `len` bytes.
        let shown = unsafe { core::slice::from_raw_parts(page.as_ptr(), 3) };
        assert_eq!(shown, b"40\n");
        Ok(())
    }
}
