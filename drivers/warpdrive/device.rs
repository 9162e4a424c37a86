// SPDX-License-Identifier: GPL-2.0

//! Devices: what a driver registers, their sysfs attributes, and their removal.

use crate::{
    debugfs::DeviceDebugfs,
    queue::{QueueContext, QueueEvents, QueueFile, QueueInner},
    ring::Ring,
    uapi, Opcode, Queue, Subsystem,
};
use core::{fmt::Write, marker::PhantomData};
use kernel::{
    chrdev::{self, AttributeBuffer},
    device::{Bound, Device},
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    str::CString,
    sync::{aref::ARef, Arc, Mutex},
};

/// What a driver tells warpdrive about one of its devices.
///
/// The references point into the driver's module, which may be unloaded while files of the
/// device are still open: warpdrive reads them only while the device's registration lives, and
/// keeps its own copy of what it shows after that (the node's name).
pub struct DeviceInfo {
    /// The name of the device node, `/dev/<name>-<id>`, and of its class device.
    pub name: &'static CStr,
    /// The interface version user space must speak, shown in sysfs `api`.
    pub api: &'static CStr,
    /// `uapi::DEV_*` flags, shown in sysfs `flags`.
    pub flags: u32,
    /// The algorithms the device offers, shown one per line in sysfs `algorithms`.
    pub algorithms: &'static [&'static CStr],
    /// How many queues can be open at once.
    pub queues: u32,
    /// The driver-private ioctl commands, whole (`_IOWR(...)`): any other command from
    /// `uapi::DRIVER_IOCTL_BASE` up fails with `ENOTTY` before its argument is touched, and the
    /// direction and size encoded in each command are what warpdrive copies.
    pub ioctls: &'static [u32],
    /// The opcodes of the device's commands and the operands each uses: warpdrive rejects any
    /// other descriptor before the driver sees it.
    pub opcodes: &'static [Opcode],
    /// The number of descriptors in each queue's submission ring, a power of two.
    pub sq_entries: u32,
    /// The number of completions in each queue's completion ring, a power of two: also the most
    /// commands a queue has in flight.
    pub cq_entries: u32,
}

impl DeviceInfo {
    /// The size of the MMIO region, one status page, in pages.
    pub(crate) const MMIO_PAGES: usize = 1;

    /// The size of the DUS region, the rings, in pages.
    pub(crate) fn dus_pages(&self) -> usize {
        Ring::dus_pages(self.sq_entries, self.cq_entries)
    }
}

/// The operations of a driver on one of its devices.
///
/// warpdrive calls these with no lock of the driver held. After [`Registration`] is dropped it
/// never calls them again, and it has dropped every [`Queue`] it got.
pub trait Driver: Send + Sync {
    /// Gets a queue for a process that opened the device (uacce's `get_queue`). Dropping the
    /// queue puts it back (`put_queue`).
    ///
    /// warpdrive never asks for more than [`DeviceInfo::queues`] queues at once; a driver that
    /// cannot provide one returns `EBUSY`.
    fn get_queue(&self, ctx: QueueContext) -> Result<KBox<dyn Queue>>;

    /// Whether the device is isolated after errors, shown in sysfs `isolate`. A driver that
    /// does not track isolation returns `None`, and the attribute is hidden.
    fn isolated(&self) -> Option<bool> {
        None
    }
}

/// The state of a device that its queues share, behind `Device::state`.
pub(crate) struct DeviceState {
    /// The driver, until the registration is dropped.
    driver: Option<Arc<dyn Driver>>,
    /// The queues that are open.
    queues: KVec<Arc<QueueInner>>,
}

/// A registered device, shared by its node and its open queues.
#[pin_data]
pub(crate) struct WdDevice {
    info: DeviceInfo,
    id: u32,
    /// `<name>-<id>`, owned: `info.name` goes with the driver's module.
    node_name: CString,
    /// The device the driver registered this for; bound while the registration lives.
    parent: ARef<Device>,
    has_isolate: bool,
    /// Held while a queue is opened, released or revoked. Nests outside each queue's lock.
    #[pin]
    state: Mutex<DeviceState>,
}

impl WdDevice {
    pub(crate) fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The device node's name, `<name>-<id>`; valid after the driver is gone.
    pub(crate) fn node_name(&self) -> &CStr {
        &self.node_name
    }

    /// The device the driver registered this for. It is bound for as long as the registration
    /// lives, which a queue knows while it is alive.
    pub(crate) fn parent(&self) -> &Device {
        &self.parent
    }

    /// Opens a queue: takes one from the driver, or fails with `EBUSY` when all are in use and
    /// with `ENODEV` once the device is gone.
    pub(crate) fn open_queue(self: &Arc<Self>) -> Result<Arc<QueueInner>> {
        let mut state = self.state.lock();
        let driver = state.driver.clone().ok_or(ENODEV)?;
        if state.queues.len() >= self.info.queues as usize {
            return Err(EBUSY);
        }
        state.queues.reserve(1, GFP_KERNEL)?;
        // The lowest index not in use: there are fewer queues open than indices.
        let index = (0..self.info.queues)
            .find(|i| state.queues.iter().all(|q| q.index() != *i))
            .ok_or(EBUSY)?;
        let events = QueueEvents::new()?;
        let ring = Ring::new(
            index,
            self.info.sq_entries,
            self.info.cq_entries,
            events.clone(),
        )?;
        let queue = driver.get_queue(QueueContext::new(index))?;
        let inner = QueueInner::new(self.clone(), index, ring, events, queue)?;
        // Cannot fail: the room was reserved above.
        let _ = state.queues.push_within_capacity(inner.clone());
        Ok(inner)
    }

    /// Puts a queue whose file is being released.
    pub(crate) fn release_queue(&self, queue: &Arc<QueueInner>) {
        let mut state = self.state.lock();
        queue.put();
        if let Some(i) = state.queues.iter().position(|q| Arc::ptr_eq(q, queue)) {
            let _ = state.queues.remove(i);
        }
    }

    /// Stops and puts every open queue and forgets the driver: afterwards no driver code runs
    /// on behalf of this device. Returns the driver, so that its last reference can be dropped
    /// by the caller.
    fn revoke(&self) -> Option<Arc<dyn Driver>> {
        let mut state = self.state.lock();
        for queue in state.queues.iter() {
            queue.put();
        }
        state.driver.take()
    }

    /// How many queues are open.
    pub(crate) fn open_queues(&self) -> usize {
        self.state.lock().queues.len()
    }

    /// Calls `f` on each open queue, in the order they were opened, until it fails.
    pub(crate) fn for_each_queue<E>(
        &self,
        mut f: impl FnMut(&QueueInner) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        self.state.lock().queues.iter().try_for_each(|q| f(q))
    }

    fn available_instances(&self) -> usize {
        let state = self.state.lock();
        if state.driver.is_none() {
            return 0;
        }
        (self.info.queues as usize).saturating_sub(state.queues.len())
    }

    fn isolated(&self) -> Result<bool> {
        let driver = self.state.lock().driver.clone().ok_or(ENODEV)?;
        driver.isolated().ok_or(ENODEV)
    }
}

/// The sysfs attributes of a warpdrive device, in [`QueueFile`]'s `ATTRIBUTES` order. They
/// match uacce's, so that uacce's user space can read them.
pub(crate) const ATTRIBUTES: &[&CStr] = &[
    c"api",
    c"flags",
    c"available_instances",
    c"algorithms",
    c"region_mmio_size",
    c"region_dus_size",
    c"isolate",
];

pub(crate) fn show_attribute(dev: &WdDevice, index: usize, buf: &mut AttributeBuffer) -> Result {
    let info = &dev.info;
    let res = match ATTRIBUTES.get(index).map(|name| name.to_bytes()) {
        Some(b"api") => buf.write_fmt(fmt!("{}\n", info.api)),
        Some(b"flags") => writeln!(buf, "{}", info.flags),
        Some(b"available_instances") => writeln!(buf, "{}", dev.available_instances()),
        Some(b"algorithms") => info
            .algorithms
            .iter()
            .try_for_each(|alg| buf.write_fmt(fmt!("{}\n", alg))),
        Some(b"region_mmio_size") => writeln!(buf, "{}", DeviceInfo::MMIO_PAGES * PAGE_SIZE),
        Some(b"region_dus_size") => writeln!(buf, "{}", info.dus_pages() * PAGE_SIZE),
        Some(b"isolate") => writeln!(buf, "{}", u32::from(dev.isolated()?)),
        _ => return Err(EINVAL),
    };
    res.map_err(|_| EINVAL)
}

/// Whether attribute `index` shows; uacce hides empty regions and `isolate` when the driver
/// does not track it.
pub(crate) fn attribute_is_visible(dev: &WdDevice, index: usize) -> bool {
    match ATTRIBUTES.get(index).map(|name| name.to_bytes()) {
        Some(b"isolate") => dev.has_isolate,
        Some(_) => true,
        None => false,
    }
}

/// A device registered with warpdrive.
///
/// Dropping it unregisters the device: every open queue is stopped and put back to the driver,
/// user mappings of the queues are zapped, the device node disappears, and warpdrive never calls
/// the driver again. Open files stay valid and fail with `ENODEV` until they are closed.
///
/// It borrows the bound parent device for `'bound`: warpdrive maps user memory for the parent
/// while the registration lives.
pub struct Registration<'bound> {
    subsystem: Arc<Subsystem>,
    device: Arc<WdDevice>,
    node: Option<chrdev::Node<QueueFile>>,
    /// The device's statistics in debugfs; none if debugfs could not take them.
    _debugfs: Option<DeviceDebugfs>,
    _parent: PhantomData<&'bound Device<Bound>>,
}

impl<'bound> Registration<'bound> {
    /// Registers a device of `driver`, child of `parent`, described by `info`.
    ///
    /// The device must be a shadow-ring device (`uapi::DEV_SHADOW_RING`), with valid ring sizes.
    ///
    /// # Safety
    ///
    /// Callers must not `mem::forget()` the returned [`Registration`] or otherwise prevent its
    /// [`Drop`] implementation from running before `parent` is unbound, as with
    /// `irq::Registration`: warpdrive relies on it to stop using the device.
    pub unsafe fn new(
        parent: &'bound Device<Bound>,
        info: DeviceInfo,
        driver: Arc<dyn Driver>,
    ) -> Result<Self> {
        if info.queues == 0 || info.name.is_empty() {
            return Err(EINVAL);
        }
        // Binding a queue to the process address space needs an SVA abstraction that the kernel
        // crate does not have yet; refuse rather than pretend.
        if info.flags & uapi::DEV_SVA != 0 {
            return Err(EOPNOTSUPP);
        }
        if info.flags & uapi::DEV_SHADOW_RING == 0
            || !info.sq_entries.is_power_of_two()
            || !info.cq_entries.is_power_of_two()
            || info.cq_entries < info.sq_entries
        {
            return Err(EINVAL);
        }
        let subsystem = Subsystem::get()?;
        let id = subsystem.alloc_id()?;
        let has_isolate = driver.isolated().is_some();
        let node_name = match CString::try_from_fmt(fmt!("{}-{}", info.name, id)) {
            Ok(name) => name,
            Err(e) => {
                subsystem.free_id(id);
                return Err(e);
            }
        };

        let device = match Arc::pin_init(
            try_pin_init!(WdDevice {
                info,
                id,
                node_name,
                parent: parent.into(),
                has_isolate,
                state <- new_mutex!(DeviceState {
                    driver: Some(driver),
                    queues: KVec::new(),
                }),
            }),
            GFP_KERNEL,
        ) {
            Ok(device) => device,
            Err(e) => {
                subsystem.free_id(id);
                return Err(e);
            }
        };

        let node = subsystem.region.devt(id).and_then(|devt| {
            chrdev::Node::<QueueFile>::register(
                &subsystem.class,
                devt,
                parent,
                fmt!("{}", device.node_name()),
                Ok::<_, Error>(device.clone()),
            )
        });
        match node {
            Ok(node) => Ok(Self {
                // Statistics are for people debugging; the device works without them.
                _debugfs: DeviceDebugfs::new(subsystem.debugfs(), &device).ok(),
                subsystem,
                device,
                node: Some(node),
                _parent: PhantomData,
            }),
            Err(e) => {
                drop(device.revoke());
                subsystem.free_id(id);
                Err(e)
            }
        }
    }

    /// The id in the device's name, `/dev/<name>-<id>`.
    pub fn id(&self) -> u32 {
        self.device.id
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // Queues first: once this returns, no driver code runs for them, and their state says
        // so to every later file operation.
        let driver = self.device.revoke();
        if let Some(node) = self.node.take() {
            // The queue memory was the driver's: take it away from user space. The next access
            // to a mapping faults, and there is no fault handler, so it gets SIGBUS.
            node.unmap_user_mappings();
            drop(node);
        }
        self.subsystem.free_id(self.device.id);
        // The driver's last reference goes while the driver is still bound.
        drop(driver);
    }
}
