// SPDX-License-Identifier: GPL-2.0

//! Registering a driver's device: its node `/dev/<name>-<id>` in class `uacce`, its debugfs
//! statistics, and its removal.

use crate::{
    debugfs::DeviceDebugfs,
    device::WdDevice,
    driver::{DeviceInfo, Driver},
    file::QueueFile,
    identity::Identity,
    subsystem::Subsystem,
};
use core::marker::PhantomData;
use kernel::{
    chrdev,
    device::{Bound, Device},
    prelude::*,
    sync::Arc,
};

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
    /// The device must be a shadow-ring device (`uapi::DEV_SHADOW_RING`), with valid ring sizes,
    /// opcodes that each appear once, and alignments that are powers of two (`EINVAL`
    /// otherwise). warpdrive copies `info`: nothing of it is read once this returns.
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
        let subsystem = Subsystem::get()?;
        let id = subsystem.alloc_id()?;
        let device = match Identity::new(&info, id, parent)
            .and_then(|identity| WdDevice::new(identity, id, driver))
        {
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
                fmt!("{}", device.identity().node_name()),
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
        self.device.id()
    }

    /// The device's debugfs directory, `warpdrive/<name>-<id>/`, where the driver may add files
    /// of its own; `None` without debugfs.
    pub fn debugfs_dir(&self) -> Option<&kernel::debugfs::Dir> {
        self._debugfs.as_ref().map(DeviceDebugfs::dir)
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
        self.subsystem.free_id(self.device.id());
        // The driver's last reference goes while the driver is still bound.
        drop(driver);
    }
}
