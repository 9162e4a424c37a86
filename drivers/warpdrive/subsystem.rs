// SPDX-License-Identifier: GPL-2.0

//! What every warpdrive device shares: its class, its device numbers, the ids in use, and the
//! debugfs directory.

use kernel::{
    chrdev,
    id_pool::IdPool,
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
};

/// The class shared with uacce, so that uacce's user space finds warpdrive's devices.
const CLASS_NAME: &CStr = c"uacce";

/// How many device numbers warpdrive reserves, as uacce does.
const MINORS: u32 = (1 << kernel::bindings::MINORBITS) - 1;

/// The subsystem's shared state, from module load to unload.
#[pin_data]
pub(crate) struct Subsystem {
    pub(crate) class: chrdev::Class,
    pub(crate) region: chrdev::Region,
    #[pin]
    ids: Mutex<IdPool>,
    /// `warpdrive/` in debugfs, for the devices' statistics.
    debugfs: kernel::debugfs::Dir,
}

kernel::sync::global_lock! {
    // SAFETY: Initialised in `Subsystem::start`, from the module's init, before any driver can
    // reach it: drivers link against this module, so they load after its init has returned.
    unsafe(uninit) static SUBSYSTEM: Mutex<Option<Arc<Subsystem>>> = None;
}

impl Subsystem {
    /// Creates the subsystem's class and device numbers. Called once, from the module's init.
    pub(crate) fn start() -> Result {
        // SAFETY: Called exactly once, from the module's init, before anything else uses the
        // lock.
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
        Ok(())
    }

    /// Drops the subsystem, at module unload. Drivers hold references to the module's symbols,
    /// so all of them have unloaded, and their registrations with them: this is the last
    /// reference.
    pub(crate) fn stop() {
        SUBSYSTEM.lock().take();
    }

    /// The subsystem, for a driver that registers a device.
    pub(crate) fn get() -> Result<Arc<Self>> {
        SUBSYSTEM.lock().clone().ok_or(ENODEV)
    }

    /// Takes the lowest free device id.
    pub(crate) fn alloc_id(&self) -> Result<u32> {
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

    /// Gives an id back.
    pub(crate) fn free_id(&self, id: u32) {
        self.ids.lock().release_id(id as usize);
    }

    /// The subsystem's debugfs directory.
    pub(crate) fn debugfs(&self) -> &kernel::debugfs::Dir {
        &self.debugfs
    }
}
