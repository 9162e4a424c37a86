// SPDX-License-Identifier: GPL-2.0

//! The edu device as a warpdrive device: its queues and their private ioctl.

use crate::{
    commands::{self, DeviceUnits, EmulatedBulk, FACTORIAL_ZERO_FROM},
    engine::Engine,
    sched::{Lane, Scheduler},
};
use kernel::{
    ioctl::_IOWR,
    prelude::*,
    sync::Arc,
    transmute::{AsBytes, FromBytes},
};
use warpdrive::{
    uapi::{DRIVER_IOCTL_BASE, IOCTL_TYPE},
    Command, QueueContext,
};

/// The interface version in sysfs `api`.
pub(crate) const API: &CStr = c"warpdrive_edu_v2";

/// The device's engines, in sysfs `algorithms`. The emulated ones say so.
pub(crate) const ALGORITHMS: &[&CStr] = &[
    c"factorial",
    c"dma_copy",
    c"nop",
    c"emulated_memcpy",
    c"emulated_crc32c",
];

/// The private ioctls of an edu queue.
pub(crate) const IOCTLS: &[u32] = &[CMD_FACTORIAL];

/// Descriptors in a queue's submission ring.
pub(crate) const SQ_ENTRIES: u32 = 256;

/// Completions in a queue's completion ring, and so the most commands it has in flight.
pub(crate) const CQ_ENTRIES: u32 = 512;

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

/// `WD_EDU_CMD_FACTORIAL`.
pub(crate) const CMD_FACTORIAL: u32 = _IOWR::<Factorial>(IOCTL_TYPE, DRIVER_IOCTL_BASE);

/// One edu device, as warpdrive's driver sees it: its two engines, shared by its queues.
pub(crate) struct EduDevice {
    engine: Arc<Engine>,
    device_units: Arc<Scheduler<DeviceUnits>>,
    bulk: Arc<Scheduler<EmulatedBulk>>,
}

impl EduDevice {
    /// A device whose queues share `engine`.
    pub(crate) fn new(engine: Arc<Engine>) -> Result<Self> {
        Ok(Self {
            device_units: Scheduler::new(Ok::<_, Error>(DeviceUnits::new(engine.clone())))?,
            bulk: Scheduler::new(EmulatedBulk::new()?)?,
            engine,
        })
    }
}

impl EduDevice {
    /// The scheduler of the device's own units.
    pub(crate) fn device_units(&self) -> &Arc<Scheduler<DeviceUnits>> {
        &self.device_units
    }

    /// The scheduler of the emulated bulk engine.
    pub(crate) fn bulk(&self) -> &Arc<Scheduler<EmulatedBulk>> {
        &self.bulk
    }
}

impl Drop for EduDevice {
    fn drop(&mut self) {
        // warpdrive dropped every queue first, so no lane is left and nothing is queued: wait
        // for the work items to return before the module can go.
        self.device_units.flush();
        self.bulk.flush();
    }
}

impl warpdrive::Driver for EduDevice {
    fn get_queue(&self, _ctx: QueueContext) -> Result<KBox<dyn warpdrive::Queue>> {
        let capacity = CQ_ENTRIES as usize;
        let device_lane = Lane::new(capacity)?;
        let bulk_lane = Lane::new(capacity)?;
        self.device_units.attach(device_lane.clone())?;
        // From here on, dropping the queue detaches what was attached.
        let mut queue = EduQueue {
            engine: self.engine.clone(),
            device_units: self.device_units.clone(),
            bulk: self.bulk.clone(),
            device_lane,
            bulk_lane: None,
            started: false,
        };
        self.bulk.attach(bulk_lane.clone())?;
        queue.bulk_lane = Some(bulk_lane);
        Ok(KBox::new(queue, GFP_KERNEL)?)
    }
}

/// One queue of an edu device: its place in each engine's turns.
struct EduQueue {
    engine: Arc<Engine>,
    device_units: Arc<Scheduler<DeviceUnits>>,
    bulk: Arc<Scheduler<EmulatedBulk>>,
    device_lane: Arc<Lane>,
    /// `None` only while the queue is being set up.
    bulk_lane: Option<Arc<Lane>>,
    started: bool,
}

impl EduQueue {
    fn factorial(&mut self, data: &mut [u8]) -> Result<isize> {
        if !self.started {
            return Err(EINVAL);
        }
        let args = Factorial::from_bytes_mut(data).ok_or(EINVAL)?;
        // See `DeviceUnits::execute`.
        args.result = self.engine.factorial(args.n.min(FACTORIAL_ZERO_FROM))?;
        Ok(0)
    }

    /// Cancels what waits and waits for what runs, on both engines.
    fn drain(&self) {
        self.device_lane.drain();
        if let Some(lane) = &self.bulk_lane {
            lane.drain();
        }
    }
}

impl warpdrive::Queue for EduQueue {
    fn start(&mut self) -> Result {
        self.started = true;
        Ok(())
    }

    fn stop(&mut self) {
        self.started = false;
        self.drain();
    }

    fn submit(&mut self, cmd: Command) {
        // There is nothing to run: it completes here, within `KICK`, without a turn on the
        // bulk engine or a work item woken for it.
        if cmd.opcode() == commands::OP_NOP {
            cmd.complete(Ok(0));
            return;
        }
        if commands::runs_on_device(cmd.opcode()) {
            self.device_units.submit(&self.device_lane, cmd);
        } else if let Some(lane) = &self.bulk_lane {
            self.bulk.submit(lane, cmd);
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
        self.device_units.detach(&self.device_lane);
        if let Some(lane) = &self.bulk_lane {
            self.bulk.detach(lane);
        }
        // Detached lanes get no turns, but a command may still be running.
        self.drain();
    }
}
