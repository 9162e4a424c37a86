// SPDX-License-Identifier: GPL-2.0

//! The file operations of warpdrive's device nodes: uacce's ioctls, `mmap()` and `poll()`, and
//! warpdrive's own ioctls, on the queue that each open file gets.

use crate::{
    device::{self, WdDevice},
    queue::{QueueInner, Region},
    uapi,
};
use kernel::{
    bindings,
    chrdev::{self, AttributeBuffer},
    fs::File,
    ioctl::{_IOC_NR, _IOC_TYPE},
    mm::virt::{flags, VmaNew},
    prelude::*,
    seq_file::{seq_print, SeqFile},
    sync::{poll::PollTable, Arc, ArcBorrow},
    uaccess::{UserPtr, UserSlice},
};

/// An open file of a device node: its queue, and the device to give the queue back to.
pub(crate) struct OpenFile {
    device: Arc<WdDevice>,
    queue: Arc<QueueInner>,
}

/// The file operations and sysfs attributes of warpdrive's device nodes.
pub(crate) struct QueueFile;

/// The name of a `uapi::QueueState`, as fdinfo and debugfs show it.
pub(crate) fn state_name(state: u32) -> &'static str {
    match state {
        s if s == uapi::QueueState::Init as u32 => "init",
        s if s == uapi::QueueState::Started as u32 => "started",
        s if s == uapi::QueueState::Orphaned as u32 => "orphaned",
        _ => "dead",
    }
}

#[vtable]
impl chrdev::Operations for QueueFile {
    type Data = Arc<WdDevice>;
    type Ptr = Arc<OpenFile>;

    const ATTRIBUTES: &'static [&'static CStr] = device::ATTRIBUTES;

    fn show_attribute(device: &Arc<WdDevice>, index: usize, buf: &mut AttributeBuffer) -> Result {
        device::show_attribute(device, index, buf)
    }

    fn attribute_is_visible(device: &Arc<WdDevice>, index: usize) -> bool {
        device::attribute_is_visible(device, index)
    }

    fn open(device: &Arc<WdDevice>, _file: &File) -> Result<Arc<OpenFile>> {
        let queue = device.open_queue()?;
        match Arc::new(
            OpenFile {
                device: device.clone(),
                queue: queue.clone(),
            },
            GFP_KERNEL_ACCOUNT,
        ) {
            Ok(file) => Ok(file),
            Err(e) => {
                device.release_queue(&queue);
                Err(e.into())
            }
        }
    }

    fn release(open: Arc<OpenFile>, _file: &File) {
        open.device.release_queue(&open.queue);
    }

    fn ioctl(open: ArcBorrow<'_, OpenFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let queue = &open.queue;
        // As uacce: once the device is gone, every ioctl says so, known or not.
        queue.check_alive()?;
        // Every ioctl is the owner's: a child or a process that received the fd could otherwise
        // stop the owner's queue and cancel its commands (see the UAPI header).
        match cmd {
            uapi::CMD_START_Q => queue.start(),
            uapi::CMD_PUT_Q => queue.stop(),
            uapi::IOCTL_KICK => queue.kick(),
            uapi::IOCTL_REGISTER => queue.register_ioctl(arg),
            uapi::IOCTL_UNREGISTER => {
                let handle: u32 = UserSlice::new(UserPtr::from_addr(arg), size_of::<u32>())
                    .reader()
                    .read()?;
                queue.unregister(handle)
            }
            _ if _IOC_TYPE(cmd) == uapi::IOCTL_TYPE && _IOC_NR(cmd) >= uapi::DRIVER_IOCTL_BASE => {
                queue.driver_ioctl(cmd, arg)
            }
            _ => Err(ENOTTY),
        }
    }

    /// Maps the status page (page offset 0) or the rings (page offset 1), whole, shared, with
    /// whatever protection user space asks for: UADK's libwd maps every region
    /// `PROT_READ | PROT_WRITE`. The kernel never reads back what user space writes to the
    /// status page, and treats everything in the rings as untrusted.
    fn mmap(open: ArcBorrow<'_, OpenFile>, _file: &File, vma: &VmaNew) -> Result {
        let queue = &open.queue;
        let region = Region::from_pgoff(vma.pgoff())?;
        let size = match region {
            Region::Mmio => queue.ring().status_page().size(),
            Region::Dus => queue.ring().dus().size(),
        };
        if vma.end() - vma.start() != size {
            return Err(EINVAL);
        }
        // A private mapping would give user space copy-on-write copies of the ring that the
        // kernel never sees, yet hold the region.
        if vma.flags() & flags::SHARED == 0 {
            return Err(EINVAL);
        }
        queue.map_region(vma, region)
    }

    fn poll(open: ArcBorrow<'_, OpenFile>, file: &File, table: PollTable<'_>) -> u32 {
        let queue = &open.queue;
        table.register_wait(file, queue.events().cv());
        if queue.is_zombie() {
            return bindings::POLLERR | bindings::POLLHUP;
        }
        if queue.ring().has_completions() {
            return bindings::POLLIN | bindings::POLLRDNORM;
        }
        0
    }

    /// The queue's counters, for tools and for checking that no command is lost: once the
    /// queue is dead, `wd-in-flight` is 0 and every submitted command is counted as completed.
    fn show_fdinfo(open: ArcBorrow<'_, OpenFile>, m: &SeqFile, _file: &File) {
        let queue = &open.queue;
        let (status, in_flight) = queue.ring().counters();
        seq_print!(
            m,
            "wd-device:\t{}\nwd-queue-index:\t{}\nwd-state:\t{}\n",
            queue.identity().node_name(),
            queue.index(),
            state_name(status.state)
        );
        seq_print!(
            m,
            "wd-submitted:\t{}\nwd-completed:\t{}\nwd-errors:\t{}\nwd-in-flight:\t{}\n",
            status.submitted,
            status.completed,
            status.errors,
            in_flight
        );
        seq_print!(
            m,
            "wd-bytes:\t{}\nwd-pinned-pages:\t{}\nwd-buffers:\t{}\nwd-invalidations:\t{}\n",
            status.bytes,
            status.pinned_pages,
            status.buffers,
            status.invalidations
        );
        seq_print!(m, "wd-mapped-pages:\t{}\n", status.mapped_pages);
    }
}
