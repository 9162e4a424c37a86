// SPDX-License-Identifier: GPL-2.0

//! What a driver implements and declares: its devices' description, and the operations on its
//! devices and queues.

use crate::command::{Command, Opcode};
use kernel::prelude::*;

/// What a driver tells warpdrive about one of its devices.
///
/// The references point into the driver's module. warpdrive copies what it needs when the
/// device is registered, and never reads them afterwards, so nothing of the module is used once
/// the registration is gone.
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

/// What a driver gets with each queue it hands out.
pub struct QueueContext {
    index: u32,
}

impl QueueContext {
    pub(crate) fn new(index: u32) -> Self {
        Self { index }
    }

    /// Which of the device's queues this is, from 0 to `DeviceInfo::queues - 1`: the lowest
    /// index not in use when it was opened.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// The operations of a driver on one of its devices.
///
/// warpdrive calls these with no lock of the driver held. After the device's `Registration` is
/// dropped it never calls them again, and it has dropped every [`Queue`] it got.
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

/// The operations of a driver on one of its queues (uacce's `uacce_ops` for a queue).
///
/// warpdrive serialises them per queue. Dropping the queue puts it back to the driver; this
/// happens when the file is released, or when the device is unregistered, whichever is first.
/// Dropping it must cancel the commands it has not started and wait for those it has: once it
/// is dropped, the device must not access their memory any more.
pub trait Queue: Send + Sync {
    /// Starts the queue (`WD_CMD_START_Q`).
    fn start(&mut self) -> Result {
        Ok(())
    }

    /// Stops the queue (`WD_CMD_PUT_Q`). It may be started again. Commands not started yet
    /// should be dropped, which completes them with `ECANCELED`.
    fn stop(&mut self) {}

    /// Takes a command from the shadow ring. The driver completes it later, from any context
    /// that may sleep, with [`Command::complete`]; dropping it instead cancels it. A command
    /// that takes the CPU no more than microseconds (a `NOP`) may be completed here, before
    /// `submit` returns: its completion is then in the ring when `KICK` returns, and no work
    /// item has to run for it.
    ///
    /// warpdrive only submits commands while the queue is started, and never more at once than
    /// the completion ring has room for. It holds a lock of the queue, but none that memory
    /// management or the device's removal waits for.
    fn submit(&mut self, cmd: Command);

    /// Handles a driver-private ioctl, one of `DeviceInfo::ioctls`.
    ///
    /// `data` is the ioctl's argument, `_IOC_SIZE(cmd)` bytes: warpdrive copied it in from user
    /// space if the ioctl has `_IOC_WRITE`, and copies it back out if it has `_IOC_READ`, so the
    /// driver never touches user memory here.
    fn ioctl(&mut self, _cmd: u32, _data: &mut [u8]) -> Result<isize> {
        Err(ENOTTY)
    }
}
