// SPDX-License-Identifier: GPL-2.0

//! The edu device as a warpdrive device: its queues, their regions and private ioctls.

use crate::engine::Engine;
use kernel::{
    ioctl::_IOWR,
    mm::virt::VmaNew,
    new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
    transmute::{AsBytes, FromBytes},
};
use warpdrive::{uapi::DRIVER_IOCTL_BASE, uapi::IOCTL_TYPE, QueueContext, Region, SharedPages};

/// The interface version in sysfs `api`.
pub(crate) const API: &CStr = c"warpdrive_edu_v1";

/// The device's engines, in sysfs `algorithms`.
pub(crate) const ALGORITHMS: &[&CStr] = &[c"factorial", c"dma_copy"];

/// The private ioctls of an edu queue.
pub(crate) const IOCTLS: &[u32] = &[CMD_FACTORIAL];

/// The size of a queue's DUS region, in pages.
pub(crate) const DUS_PAGES: usize = 4;

/// `WD_EDU_STATUS_MAGIC`, "WDED".
const STATUS_MAGIC: u32 = 0x5744_4544;

/// `struct wd_edu_factorial` of `include/uapi/misc/warpdrive.h`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Factorial {
    n: u32,
    result: u32,
}

// SAFETY: `Factorial` is two `u32`s with no padding, and any bit pattern is valid.
unsafe impl FromBytes for Factorial {}
// SAFETY: `Factorial` is two `u32`s with no padding.
unsafe impl AsBytes for Factorial {}

/// From this `n` on, `n!` truncated to 32 bits is 0: it has at least 32 factors of two.
const FACTORIAL_ZERO_FROM: u32 = 34;

/// `WD_EDU_CMD_FACTORIAL`.
pub(crate) const CMD_FACTORIAL: u32 = _IOWR::<Factorial>(IOCTL_TYPE, DRIVER_IOCTL_BASE);

/// `struct wd_edu_status` of `include/uapi/misc/warpdrive.h`, the MMIO region's only page.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Status {
    magic: u32,
    queue_index: u32,
    started: u32,
    completed: u32,
}

// SAFETY: `Status` is four `u32`s with no padding.
unsafe impl AsBytes for Status {}

/// Which of a device's queues are handed out; a queue's index names its status page.
#[pin_data]
struct Slots {
    /// Bit `i` is set while queue `i` is handed out.
    #[pin]
    used: SpinLock<u64>,
    count: u32,
}

impl Slots {
    fn get(&self) -> Result<u32> {
        let mut used = self.used.lock();
        let index = (!*used).trailing_zeros();
        if index >= self.count {
            return Err(EBUSY);
        }
        *used |= 1 << index;
        Ok(index)
    }

    fn put(&self, index: u32) {
        *self.used.lock() &= !(1 << index);
    }
}

/// One edu device, as warpdrive's driver sees it.
pub(crate) struct EduDevice {
    engine: Arc<Engine>,
    slots: Arc<Slots>,
}

impl EduDevice {
    /// A device whose `queues` queues share `engine`.
    pub(crate) fn new(engine: Arc<Engine>, queues: u32) -> Result<Self> {
        if queues == 0 || queues > u64::BITS {
            return Err(EINVAL);
        }
        let slots = Arc::pin_init(
            pin_init!(Slots {
                used <- new_spinlock!(0),
                count: queues,
            }),
            GFP_KERNEL,
        )?;
        Ok(Self { engine, slots })
    }
}

impl warpdrive::Driver for EduDevice {
    fn get_queue(&self, _ctx: QueueContext) -> Result<KBox<dyn warpdrive::Queue>> {
        let index = self.slots.get()?;
        let pages = SharedPages::new(1)
            .and_then(|status| Ok((status, SharedPages::new(DUS_PAGES)?)))
            .inspect_err(|_| self.slots.put(index))?;
        // From here on, dropping the queue gives the slot back.
        let mut queue = EduQueue {
            engine: self.engine.clone(),
            slots: self.slots.clone(),
            index,
            status: Status {
                magic: STATUS_MAGIC,
                queue_index: index,
                ..Default::default()
            },
            status_page: pages.0,
            dus: pages.1,
        };
        queue.publish_status()?;
        Ok(KBox::new(queue, GFP_KERNEL)?)
    }
}

/// One queue of an edu device.
struct EduQueue {
    engine: Arc<Engine>,
    slots: Arc<Slots>,
    index: u32,
    status: Status,
    status_page: SharedPages,
    dus: SharedPages,
}

impl EduQueue {
    fn publish_status(&mut self) -> Result {
        self.status_page.write(0, &self.status)
    }

    fn factorial(&mut self, data: &mut [u8]) -> Result<isize> {
        if self.status.started == 0 {
            return Err(EINVAL);
        }
        let args = Factorial::from_bytes_mut(data).ok_or(EINVAL)?;
        // The device loops `n` times, so a huge `n` would hold the shared unit for seconds; every
        // `n` from 34 on has the same 32-bit result, which the device computes for 34.
        args.result = self.engine.factorial(args.n.min(FACTORIAL_ZERO_FROM))?;
        self.status.completed = self.status.completed.wrapping_add(1);
        self.publish_status()?;
        Ok(0)
    }
}

impl warpdrive::Queue for EduQueue {
    fn start(&mut self) -> Result {
        self.status.started = 1;
        self.publish_status()
    }

    fn stop(&mut self) {
        self.status.started = 0;
        // Cannot fail: the status fits in its page.
        let _ = self.publish_status();
    }

    fn mmap(&mut self, region: Region, vma: &VmaNew) -> Result {
        match region {
            Region::Mmio => self.status_page.map_read_only(vma),
            Region::Dus => self.dus.map(vma),
        }
    }

    fn ioctl(&mut self, cmd: u32, data: &mut [u8]) -> Result<isize> {
        match cmd {
            CMD_FACTORIAL => self.factorial(data),
            _ => Err(ENOTTY),
        }
    }
}

impl Drop for EduQueue {
    fn drop(&mut self) {
        self.slots.put(self.index);
    }
}
