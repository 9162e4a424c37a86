// SPDX-License-Identifier: GPL-2.0

//! warpdrive: a user-space accelerator subsystem, compatible with uacce.
//!
//! An accelerator driver registers each of its devices with a [`Registration`]. warpdrive then
//! gives the device a character device `/dev/<name>-<id>` in class `uacce`, with uacce's sysfs
//! attributes and ioctls, so that uacce's user space (Linaro UADK's libwd) finds and uses it.
//! Every `open()` of the node gets one hardware queue of the device, or `EBUSY`.
//!
//! Devices without SVA get warpdrive's shadow ring: user space queues commands in plain memory,
//! and warpdrive copies, validates and translates each one into a [`Command`] for the driver,
//! with the user memory it references pinned and DMA-mapped.
//!
//! The driver-facing API is [`DeviceInfo`], [`Driver`], [`Queue`] and [`Command`]; see
//! `Documentation/warpdrive/` for the rules a driver must keep.

use kernel::{
    chrdev,
    id_pool::IdPool,
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
};

mod buffer;
mod command;
mod debugfs;
mod device;
mod queue;
mod ring;
mod shared_pages;
pub mod uapi;

pub use command::{Command, Opcode, Operand};
pub use device::{DeviceInfo, Driver, Registration};
pub use queue::{Queue, QueueContext};

module! {
    type: Warpdrive,
    name: "warpdrive",
    authors: ["warpdrive developers"],
    description: "User-space accelerator subsystem, compatible with uacce",
    license: "GPL",
}

/// The class shared with uacce, so that uacce's user space finds warpdrive's devices.
const CLASS_NAME: &CStr = c"uacce";

/// How many device numbers warpdrive reserves, as uacce does.
const MINORS: u32 = (1 << kernel::bindings::MINORBITS) - 1;

/// What every warpdrive device shares: its class, its device numbers, and the ids in use.
#[pin_data]
pub(crate) struct Subsystem {
    class: chrdev::Class,
    region: chrdev::Region,
    #[pin]
    ids: Mutex<IdPool>,
    /// `warpdrive/` in debugfs, for the devices' statistics.
    debugfs: kernel::debugfs::Dir,
}

kernel::sync::global_lock! {
    // SAFETY: Initialised in `Warpdrive::init`, before any driver can reach it: drivers link
    // against this module, so they load after its init has returned.
    unsafe(uninit) static SUBSYSTEM: Mutex<Option<Arc<Subsystem>>> = None;
}

impl Subsystem {
    /// The subsystem, for a driver that registers a device.
    fn get() -> Result<Arc<Self>> {
        SUBSYSTEM.lock().clone().ok_or(ENODEV)
    }

    /// Takes the lowest free device id.
    fn alloc_id(&self) -> Result<u32> {
        let mut ids = self.ids.lock();
        loop {
            if let Some(id) = ids.find_unused_id(0) {
                let id = id.acquire();
                if id >= self.region.count() as usize {
                    ids.release_id(id);
                    return Err(ENOSPC);
                }
                return Ok(id as u32);
            }
            let request = ids.grow_request().ok_or(ENOSPC)?;
            drop(ids);
            let resizer = request.realloc(GFP_KERNEL)?;
            ids = self.ids.lock();
            ids.grow(resizer);
        }
    }

    fn free_id(&self, id: u32) {
        self.ids.lock().release_id(id as usize);
    }

    /// The subsystem's debugfs directory.
    fn debugfs(&self) -> &kernel::debugfs::Dir {
        &self.debugfs
    }
}

struct Warpdrive;

impl kernel::Module for Warpdrive {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: Called exactly once, before anything else uses the lock.
        unsafe { SUBSYSTEM.init() };
        let subsystem = Arc::pin_init(
            try_pin_init!(Subsystem {
                class: chrdev::Class::new(CLASS_NAME)?,
                region: chrdev::Region::new(MINORS, CLASS_NAME)?,
                ids <- new_mutex!(IdPool::with_capacity(64, GFP_KERNEL)?),
                debugfs: kernel::debugfs::Dir::new(c"warpdrive"),
            }),
            GFP_KERNEL,
        )?;
        *SUBSYSTEM.lock() = Some(subsystem);
        Ok(Warpdrive)
    }
}

impl Drop for Warpdrive {
    fn drop(&mut self) {
        // Drivers hold references to this module's symbols, so all of them have unloaded, and
        // their registrations with them: this is the last reference.
        SUBSYSTEM.lock().take();
    }
}
