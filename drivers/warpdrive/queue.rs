// SPDX-License-Identifier: GPL-2.0

//! Queues: one per open file of a device node, with uacce's ioctls, mmap and poll.

use crate::{
    device::{self, WdDevice},
    uapi,
};
use kernel::{
    bindings,
    chrdev::{self, AttributeBuffer},
    fs::File,
    ioctl::{_IOC_DIR, _IOC_NR, _IOC_SIZE, _IOC_TYPE},
    mm::virt::VmaNew,
    new_mutex, new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        poll::{PollCondVar, PollTable},
        Arc, ArcBorrow, Mutex, SpinLock,
    },
    uaccess::{UserPtr, UserSlice},
};

/// The regions of a queue that user space maps, selected by the `mmap()` page offset.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Region {
    /// Page offset 0, uacce's `UACCE_QFRT_MMIO`.
    Mmio,
    /// Page offset 1, uacce's `UACCE_QFRT_DUS`.
    Dus,
}

impl Region {
    fn from_pgoff(pgoff: usize) -> Result<Self> {
        match pgoff {
            0 => Ok(Self::Mmio),
            1 => Ok(Self::Dus),
            _ => Err(EINVAL),
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The operations of a driver on one of its queues (uacce's `uacce_ops` for a queue).
///
/// warpdrive serialises them per queue. Dropping the queue puts it back to the driver; this
/// happens when the file is released, or when the device is unregistered, whichever is first.
pub trait Queue: Send + Sync {
    /// Starts the queue (`WD_CMD_START_Q`).
    fn start(&mut self) -> Result {
        Ok(())
    }

    /// Stops the queue (`WD_CMD_PUT_Q`, release, or removal). It may be started again.
    fn stop(&mut self) {}

    /// Maps `region` into `vma`, which covers exactly the region's size.
    ///
    /// warpdrive has already made the VMA `VM_IO | VM_DONTCOPY | VM_DONTEXPAND |
    /// VM_WIPEONFORK`, and it stops the VMA from being split or moved. Memory mapped here must
    /// stay valid for as long as it is mapped, after the queue is dropped too: insert pages,
    /// which the mapping then holds a reference to.
    fn mmap(&mut self, region: Region, vma: &VmaNew) -> Result;

    /// Handles a driver-private ioctl, one of `DeviceInfo::ioctls`.
    ///
    /// `data` is the ioctl's argument, `_IOC_SIZE(cmd)` bytes: warpdrive copied it in from user
    /// space if the ioctl has `_IOC_WRITE`, and copies it back out if it has `_IOC_READ`, so the
    /// driver never touches user memory here.
    fn ioctl(&mut self, _cmd: u32, _data: &mut [u8]) -> Result<isize> {
        Err(ENOTTY)
    }

    /// Whether the queue has completions for user space to reap; `poll()` reports `EPOLLIN`.
    fn has_completions(&self) -> bool {
        false
    }
}

/// What a driver gets with each queue it hands out: a way to wake up `poll()`.
pub struct QueueContext {
    events: Arc<QueueEvents>,
}

impl QueueContext {
    pub(crate) fn new() -> Result<(Self, Arc<QueueEvents>)> {
        let events = Arc::pin_init(
            pin_init!(QueueEvents {
                cv <- kernel::new_poll_condvar!("warpdrive::QueueEvents::cv"),
            }),
            GFP_KERNEL,
        )?;
        Ok((
            Self {
                events: events.clone(),
            },
            events,
        ))
    }

    /// Wakes up the queue's `poll()` waiters; call it when [`Queue::has_completions`] may have
    /// become true.
    pub fn notify_completions(&self) {
        self.events.cv.notify_all();
    }
}

/// What `poll()` waits on.
#[pin_data]
pub(crate) struct QueueEvents {
    #[pin]
    cv: PollCondVar,
}

/// Where a queue is in its life, as in uacce.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Phase {
    /// Open, not started.
    Init,
    /// Between `START_Q` and `PUT_Q`.
    Started,
    /// Put back to the driver: the device is gone or the file is being released.
    Zombie,
}

/// The state of a queue under its lock.
///
/// # Invariants
///
/// `driver` is `Some` unless `phase` is [`Phase::Zombie`].
struct QueueState {
    phase: Phase,
    driver: Option<KBox<dyn Queue>>,
}

/// An open queue: the private data of an open file of a device node.
#[pin_data]
pub(crate) struct QueueInner {
    device: Arc<WdDevice>,
    events: Arc<QueueEvents>,
    /// `Region::bit()`s of the regions mapped now. A spinlock, because the VMA's close takes it
    /// with the mmap lock held.
    #[pin]
    mapped: SpinLock<u32>,
    /// Taken in `mmap()` with the mmap lock held, so nothing may fault on user memory while
    /// holding it.
    #[pin]
    state: Mutex<QueueState>,
}

impl QueueInner {
    pub(crate) fn new(
        device: Arc<WdDevice>,
        events: Arc<QueueEvents>,
        driver: KBox<dyn Queue>,
    ) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                device,
                events,
                mapped <- new_spinlock!(0),
                // INVARIANT: The driver's queue is present in `Init`.
                state <- new_mutex!(QueueState {
                    phase: Phase::Init,
                    driver: Some(driver),
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Stops the queue if needed and gives it back to the driver. Called with the device's
    /// state lock held.
    pub(crate) fn put(&self) {
        let mut state = self.state.lock();
        let driver = state.driver.take();
        if let Some(mut driver) = driver {
            if state.phase == Phase::Started {
                driver.stop();
            }
            drop(driver);
        }
        // INVARIANT: The driver's queue is gone, and the phase says so.
        state.phase = Phase::Zombie;
        drop(state);
        // Whoever polls learns that the queue is gone.
        self.events.cv.notify_all();
    }

    fn start(&self) -> Result<isize> {
        let mut state = self.state.lock();
        match state.phase {
            Phase::Init => {
                state.driver.as_mut().ok_or(ENODEV)?.start()?;
                state.phase = Phase::Started;
                Ok(0)
            }
            Phase::Started => Err(EINVAL),
            Phase::Zombie => Err(ENODEV),
        }
    }

    fn stop(&self) -> Result<isize> {
        let mut state = self.state.lock();
        match state.phase {
            // As uacce: stopping a queue that is not started is not an error.
            Phase::Init => Ok(0),
            Phase::Started => {
                if let Some(driver) = state.driver.as_mut() {
                    driver.stop();
                }
                state.phase = Phase::Init;
                Ok(0)
            }
            Phase::Zombie => Err(ENODEV),
        }
    }

    fn driver_ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        if !self.device.info().ioctls.contains(&cmd) {
            return Err(ENOTTY);
        }
        let size = _IOC_SIZE(cmd);
        let dir = _IOC_DIR(cmd);
        if size > uapi::MAX_DRIVER_IOCTL_SIZE {
            return Err(EINVAL);
        }
        let mut data = KVec::from_elem(0u8, size, GFP_KERNEL)?;
        let user = UserSlice::new(UserPtr::from_addr(arg), size);
        // Copy in and out without the queue lock: a fault on user memory takes the mmap lock,
        // which `mmap()` holds while it takes the queue lock.
        let (mut reader, mut writer) = user.reader_writer();
        if dir & kernel::uapi::_IOC_WRITE != 0 {
            reader.read_slice(&mut data)?;
        }
        let ret = {
            let mut state = self.state.lock();
            if state.phase == Phase::Zombie {
                return Err(ENODEV);
            }
            state.driver.as_mut().ok_or(ENODEV)?.ioctl(cmd, &mut data)?
        };
        if dir & kernel::uapi::_IOC_READ != 0 {
            writer.write_slice(&data)?;
        }
        Ok(ret)
    }

    /// Fails with `ENODEV` once the queue was put back because its device is gone.
    fn check_alive(&self) -> Result {
        if self.state.lock().phase == Phase::Zombie {
            return Err(ENODEV);
        }
        Ok(())
    }

    fn unmap_region(&self, region: Region) {
        *self.mapped.lock() &= !region.bit();
    }
}

/// What the VMA of one mapped region keeps: when its last VMA is gone, the region can be mapped
/// again.
struct RegionMapping {
    queue: Arc<QueueInner>,
    region: Region,
}

impl Drop for RegionMapping {
    fn drop(&mut self) {
        self.queue.unmap_region(self.region);
    }
}

/// The file operations and sysfs attributes of warpdrive's device nodes.
pub(crate) struct QueueFile;

#[vtable]
impl chrdev::Operations for QueueFile {
    type Data = Arc<WdDevice>;
    type Ptr = Arc<QueueInner>;

    const ATTRIBUTES: &'static [&'static CStr] = device::ATTRIBUTES;

    fn show_attribute(device: &Arc<WdDevice>, index: usize, buf: &mut AttributeBuffer) -> Result {
        device::show_attribute(device, index, buf)
    }

    fn attribute_is_visible(device: &Arc<WdDevice>, index: usize) -> bool {
        device::attribute_is_visible(device, index)
    }

    fn open(device: &Arc<WdDevice>, _file: &File) -> Result<Arc<QueueInner>> {
        device.open_queue()
    }

    fn release(queue: Arc<QueueInner>, _file: &File) {
        queue.device.release_queue(&queue);
    }

    fn ioctl(
        queue: ArcBorrow<'_, QueueInner>,
        _file: &File,
        cmd: u32,
        arg: usize,
    ) -> Result<isize> {
        // As uacce: once the device is gone, every ioctl says so, known or not.
        queue.check_alive()?;
        match cmd {
            uapi::CMD_START_Q => queue.start(),
            uapi::CMD_PUT_Q => queue.stop(),
            _ if _IOC_TYPE(cmd) == uapi::IOCTL_TYPE && _IOC_NR(cmd) >= uapi::DRIVER_IOCTL_BASE => {
                queue.driver_ioctl(cmd, arg)
            }
            _ => Err(ENOTTY),
        }
    }

    fn mmap(queue: ArcBorrow<'_, QueueInner>, _file: &File, vma: &VmaNew) -> Result {
        let region = Region::from_pgoff(vma.pgoff())?;
        let pages = queue.device.info().region_pages(region);
        if pages == 0 || vma.end() - vma.start() != pages * PAGE_SIZE {
            return Err(EINVAL);
        }
        let mut state = queue.state.lock();
        if state.phase == Phase::Zombie {
            return Err(ENODEV);
        }
        let driver = state.driver.as_mut().ok_or(ENODEV)?;
        {
            let mut mapped = queue.mapped.lock();
            if *mapped & region.bit() != 0 {
                return Err(EEXIST);
            }
            *mapped |= region.bit();
        }
        // From here on, dropping `mapping` gives the region back.
        let mapping = match Arc::new(
            RegionMapping {
                queue: queue.into(),
                region,
            },
            GFP_KERNEL,
        ) {
            Ok(mapping) => mapping,
            Err(e) => {
                queue.unmap_region(region);
                return Err(e.into());
            }
        };
        // VM_IO makes VM_DONTCOPY permanent (MADV_DOFORK refuses it), so a child never gets the
        // queue's memory, and nothing can pin these pages with get_user_pages().
        vma.set_io();
        vma.set_dontcopy();
        vma.set_dontexpand();
        vma.set_wipeonfork();
        if let Err(e) = driver.mmap(region, vma) {
            drop(state);
            drop(mapping);
            return Err(e);
        }
        vma.set_shared_data(mapping);
        Ok(())
    }

    fn poll(queue: ArcBorrow<'_, QueueInner>, file: &File, table: PollTable<'_>) -> u32 {
        table.register_wait(file, &queue.events.cv);
        let state = queue.state.lock();
        match (&state.phase, state.driver.as_ref()) {
            (Phase::Zombie, _) | (_, None) => bindings::POLLERR | bindings::POLLHUP,
            (_, Some(driver)) if driver.has_completions() => {
                bindings::POLLIN | bindings::POLLRDNORM
            }
            _ => 0,
        }
    }
}
