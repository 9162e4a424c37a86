// SPDX-License-Identifier: GPL-2.0

//! Devices: a registered device's open queues and driver, and its sysfs attributes.

use crate::{
    driver::{Driver, QueueContext},
    identity::Identity,
    queue::QueueInner,
    ring::{QueueEvents, Ring},
};
use core::fmt::Write;
use kernel::{
    chrdev::AttributeBuffer,
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{Arc, Mutex},
};

/// The state of a device that its queues share, behind `WdDevice::state`.
struct DeviceState {
    /// The driver, until the registration is dropped.
    driver: Option<Arc<dyn Driver>>,
    /// The queues that are open.
    queues: KVec<Arc<QueueInner>>,
}

/// A registered device, shared by its node and its open files.
#[pin_data]
pub(crate) struct WdDevice {
    identity: Arc<Identity>,
    id: u32,
    has_isolate: bool,
    /// Held while a queue is opened, released or revoked. Nests outside each queue's locks.
    #[pin]
    state: Mutex<DeviceState>,
}

impl WdDevice {
    /// A device of `driver`, described by `identity`, with `id` in its name.
    pub(crate) fn new(identity: Identity, id: u32, driver: Arc<dyn Driver>) -> Result<Arc<Self>> {
        let has_isolate = driver.isolated().is_some();
        Arc::pin_init(
            try_pin_init!(WdDevice {
                identity: Arc::new(identity, GFP_KERNEL)?,
                id,
                has_isolate,
                state <- new_mutex!(DeviceState {
                    driver: Some(driver),
                    queues: KVec::new(),
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// The device's description.
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The id in the device's name.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Opens a queue: takes one from the driver, or fails with `EBUSY` when all are in use and
    /// with `ENODEV` once the device is gone.
    pub(crate) fn open_queue(&self) -> Result<Arc<QueueInner>> {
        let identity = &self.identity;
        let mut state = self.state.lock();
        let driver = state.driver.clone().ok_or(ENODEV)?;
        if state.queues.len() >= identity.queues as usize {
            return Err(EBUSY);
        }
        state.queues.reserve(1, GFP_KERNEL)?;
        // The lowest index not in use: there are fewer queues open than indices.
        let index = (0..identity.queues)
            .find(|i| state.queues.iter().all(|q| q.index() != *i))
            .ok_or(EBUSY)?;
        let events = QueueEvents::new()?;
        let ring = Ring::new(
            index,
            identity.sq_entries,
            identity.cq_entries,
            events.clone(),
        )?;
        let queue = driver.get_queue(QueueContext::new(index))?;
        let inner = QueueInner::new(self.identity.clone(), index, ring, events, queue)?;
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
    pub(crate) fn revoke(&self) -> Option<Arc<dyn Driver>> {
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
        (self.identity.queues as usize).saturating_sub(state.queues.len())
    }

    fn isolated(&self) -> Result<bool> {
        let driver = self.state.lock().driver.clone().ok_or(ENODEV)?;
        driver.isolated().ok_or(ENODEV)
    }
}

/// The sysfs attributes of a warpdrive device, in the order that [`show_attribute`] and
/// [`attribute_is_visible`] take. They match uacce's, so that uacce's user space can read them.
pub(crate) const ATTRIBUTES: &[&CStr] = &[
    c"api",
    c"flags",
    c"available_instances",
    c"algorithms",
    c"region_mmio_size",
    c"region_dus_size",
    c"isolate",
];

/// Shows attribute `index` of `dev`.
pub(crate) fn show_attribute(dev: &WdDevice, index: usize, buf: &mut AttributeBuffer) -> Result {
    let id = &dev.identity;
    let res = match ATTRIBUTES.get(index).map(|name| name.to_bytes()) {
        Some(b"api") => buf.write_fmt(fmt!("{}\n", &*id.api)),
        Some(b"flags") => writeln!(buf, "{}", id.flags),
        Some(b"available_instances") => writeln!(buf, "{}", dev.available_instances()),
        Some(b"algorithms") => id
            .algorithms
            .iter()
            .try_for_each(|alg| buf.write_fmt(fmt!("{}\n", &**alg))),
        Some(b"region_mmio_size") => writeln!(buf, "{}", Identity::MMIO_PAGES * PAGE_SIZE),
        Some(b"region_dus_size") => writeln!(buf, "{}", id.dus_pages() * PAGE_SIZE),
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
