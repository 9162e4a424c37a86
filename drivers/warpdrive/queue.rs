// SPDX-License-Identifier: GPL-2.0

//! Queues: one per open file of a device node, with uacce's ioctls, mmap and poll.

use crate::{
    buffer::{Buffer, Mapping, RegisteredBuffer, Registry, MAX_PIN_RETRIES},
    command::{Command, Operand},
    device::{self, WdDevice},
    ring::Ring,
    uapi,
};
use kernel::{
    bindings,
    chrdev::{self, AttributeBuffer},
    device::{Bound, Device},
    fs::File,
    ioctl::{_IOC_DIR, _IOC_NR, _IOC_SIZE, _IOC_TYPE},
    mm::{
        interval_notifier::{Event, IntervalNotifier, IntervalNotifierOps, Invalidation},
        pin::Access,
        virt::{flags, VmaNew},
        Mm,
    },
    new_mutex, new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    seq_file::{seq_print, SeqFile},
    sync::{
        aref::ARef,
        lock::{mutex::MutexBackend, Guard},
        poll::{PollCondVar, PollTable},
        Arc, ArcBorrow, Mutex, SpinLock,
    },
    uaccess::{UserPtr, UserSlice},
};

/// The regions of a queue that user space maps, selected by the `mmap()` page offset.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Region {
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
    /// that may sleep, with [`Command::complete`]; dropping it instead cancels it.
    ///
    /// warpdrive only submits commands while the queue is started, and never more at once than
    /// the completion ring has room for.
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

/// What `poll()` waits on.
#[pin_data]
pub(crate) struct QueueEvents {
    #[pin]
    cv: PollCondVar,
}

impl QueueEvents {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(QueueEvents {
                cv <- kernel::new_poll_condvar!("warpdrive::QueueEvents::cv"),
            }),
            GFP_KERNEL,
        )
    }

    /// Wakes up `poll()`: completions arrived, or the queue went away.
    pub(crate) fn notify(&self) {
        self.cv.notify_all();
    }
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

/// What `KICK`, `REGISTER` and `UNREGISTER` work on, under the queue's submission lock.
///
/// # Invariants
///
/// While `alive` is true, the queue has not been put back, so its device is registered and
/// bound: putting the queue clears it under the same lock first.
struct Submission {
    alive: bool,
    /// The next descriptor to consume, the kernel's own `sq_head`.
    sq_head: u32,
    buffers: Registry,
}

/// Learns when the address space that opened a queue exits: its notifier covers a range that is
/// never mapped, so it only fires when the whole address space goes.
struct OwnerWatch {
    ring: Arc<Ring>,
}

impl IntervalNotifierOps for OwnerWatch {
    fn invalidate(notifier: &IntervalNotifier<Self>, inv: &Invalidation<'_>) -> bool {
        notifier.set_seq(inv);
        if inv.event() == Event::Release {
            // The buffers' own notifiers drop their pins; nothing can submit any more, since
            // only the owner may.
            notifier.data().ring.orphan();
        }
        true
    }
}

/// An open queue: the private data of an open file of a device node.
///
/// Locks, outermost first: the device's state lock, `submission`, the mmap lock (taken by
/// pinning), `state`. `mmap()` takes `state` with the mmap lock held, so nothing holding
/// `state` may fault on user memory or pin it.
#[pin_data]
pub(crate) struct QueueInner {
    device: Arc<WdDevice>,
    index: u32,
    /// The address space that opened the queue, the only one that may use it.
    owner: ARef<Mm>,
    ring: Arc<Ring>,
    events: Arc<QueueEvents>,
    #[pin]
    owner_watch: IntervalNotifier<OwnerWatch>,
    /// `Region::bit()`s of the regions mapped now. A spinlock, because the VMA's close takes it
    /// with the mmap lock held.
    #[pin]
    mapped: SpinLock<u32>,
    #[pin]
    submission: Mutex<Submission>,
    #[pin]
    state: Mutex<QueueState>,
}

impl QueueInner {
    pub(crate) fn new(
        device: Arc<WdDevice>,
        index: u32,
        ring: Arc<Ring>,
        events: Arc<QueueEvents>,
        driver: KBox<dyn Queue>,
    ) -> Result<Arc<Self>> {
        let task = kernel::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let owner: ARef<Mm> = ARef::from(&**mm);
        let watched = ring.clone();
        Arc::pin_init(
            try_pin_init!(Self {
                device,
                index,
                owner,
                ring,
                events,
                owner_watch <- IntervalNotifier::new(
                    mm,
                    0,
                    PAGE_SIZE,
                    Ok::<_, Error>(OwnerWatch { ring: watched }),
                ),
                mapped <- new_spinlock!(0),
                // INVARIANT: The queue is not put back yet.
                submission <- new_mutex!(Submission {
                    alive: true,
                    sq_head: 0,
                    buffers: Registry::new(),
                }),
                // INVARIANT: The driver's queue is present in `Init`.
                state <- new_mutex!(QueueState {
                    phase: Phase::Init,
                    driver: Some(driver),
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Which of the device's queues this is.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The queue's counters and how many commands are in flight.
    pub(crate) fn counters(&self) -> (uapi::QueueStatus, u32) {
        self.ring.counters()
    }

    /// Stops the queue if needed, gives it back to the driver, and drops every registered
    /// buffer. Called with the device's state lock held.
    pub(crate) fn put(&self) {
        let mut submission = self.submission.lock();
        // INVARIANT: Cleared before the queue is put back.
        submission.alive = false;
        let buffers = submission.buffers.take_all();
        let mut state = self.state.lock();
        let driver = state.driver.take();
        // INVARIANT: The driver's queue is gone, and the phase says so.
        state.phase = Phase::Zombie;
        drop(state);
        drop(submission);
        if let Some(mut driver) = driver {
            driver.stop();
            // Cancels what is queued and waits for what the device is doing.
            drop(driver);
        }
        // No command holds a buffer any more.
        for buffer in buffers.iter() {
            buffer.data().retire();
        }
        drop(buffers);
        self.ring.update_status(|status| {
            if status.state != uapi::QueueState::Orphaned as u32 {
                status.state = uapi::QueueState::Dead as u32;
            }
        });
        // Whoever polls learns that the queue is gone.
        self.events.notify();
    }

    fn start(&self) -> Result<isize> {
        let mut state = self.state.lock();
        match state.phase {
            Phase::Init => {
                state.driver.as_mut().ok_or(ENODEV)?.start()?;
                state.phase = Phase::Started;
                self.ring.set_state(uapi::QueueState::Started);
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
                self.ring.set_state(uapi::QueueState::Init);
                Ok(0)
            }
            Phase::Zombie => Err(ENODEV),
        }
    }

    /// Fails with `EPERM` unless the current process is the queue's owner (see
    /// `WD_IOCTL_KICK` in the UAPI header).
    fn check_owner(&self) -> Result {
        let task = kernel::current!();
        match task.mm() {
            Some(mm) if core::ptr::eq(mm.as_raw(), self.owner.as_raw()) => Ok(()),
            _ => Err(EPERM),
        }
    }

    /// Locks the submission state of a live queue. The device is bound while the guard lives.
    fn lock_submission(&self) -> Result<Guard<'_, Submission, MutexBackend>> {
        let submission = self.submission.lock();
        if !submission.alive {
            return Err(ENODEV);
        }
        Ok(submission)
    }

    /// The device, bound while `submission` (which proves the queue alive) is held.
    fn bound_device<'a>(
        &'a self,
        _submission: &'a Guard<'_, Submission, MutexBackend>,
    ) -> &'a Device<Bound> {
        // SAFETY: By the invariants of `Submission`, the queue is alive while the guard is held,
        // so its device is registered, and a `Registration` does not outlive the binding of its
        // parent device (see `Registration::new`). The reference does not outlive the guard.
        unsafe { self.device.parent().as_bound() }
    }

    fn register(&self, data: &mut uapi::Register) -> Result<isize> {
        self.check_owner()?;
        if data.flags & !uapi::REGISTER_WRITE != 0 || data.len == 0 {
            return Err(EINVAL);
        }
        if data.len > uapi::MAX_BUFFER_SIZE {
            return Err(E2BIG);
        }
        let addr = usize::try_from(data.addr).map_err(|_| EINVAL)?;
        let len = usize::try_from(data.len).map_err(|_| EINVAL)?;
        let last = addr.checked_add(len - 1).ok_or(EINVAL)?;
        let access = if data.flags & uapi::REGISTER_WRITE != 0 {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };

        let mut submission = self.lock_submission()?;
        if submission.buffers.len() >= uapi::MAX_BUFFERS {
            return Err(ENOSPC);
        }
        if submission.buffers.overlaps(addr, last) {
            return Err(EEXIST);
        }
        let handle = submission.buffers.next_handle();
        let task = kernel::current!();
        let mm = task.mm().ok_or(EPERM)?;
        let dev = self.bound_device(&submission);
        let buffer = Buffer::register(dev, mm, &self.ring, handle, addr, len, access)?;
        if let Err(e) = submission.buffers.insert(buffer.clone()) {
            drop(submission);
            buffer.data().retire();
            return Err(e);
        }
        data.handle = handle;
        Ok(0)
    }

    /// `WD_IOCTL_REGISTER`: a buffer whose handle cannot be written back is unregistered again,
    /// since user space could never unregister it.
    fn register_ioctl(&self, arg: usize) -> Result<isize> {
        let user = UserSlice::new(UserPtr::from_addr(arg), size_of::<uapi::Register>());
        let (mut reader, mut writer) = user.reader_writer();
        let mut data: uapi::Register = reader.read()?;
        let ret = self.register(&mut data)?;
        if let Err(e) = writer.write(&data) {
            // Cannot fail: the buffer was just registered, and only the owner, which is
            // here, can unregister it.
            let _ = self.unregister(data.handle);
            return Err(e);
        }
        Ok(ret)
    }

    fn unregister(&self, handle: u32) -> Result<isize> {
        self.check_owner()?;
        let buffer = self
            .lock_submission()?
            .buffers
            .remove(handle)
            .ok_or(ENOENT)?;
        // Waits for the commands that use it; the notifier goes with the last reference.
        buffer.data().retire();
        Ok(0)
    }

    /// Consumes the descriptors that user space published (see `WD_IOCTL_KICK`).
    fn kick(&self) -> Result<isize> {
        self.check_owner()?;
        let mut submission = self.lock_submission()?;
        if self.state.lock().phase != Phase::Started {
            return Err(EINVAL);
        }
        let ring = &self.ring;
        let published = ring.user_sq_tail().wrapping_sub(submission.sq_head);
        if published > ring.sq_entries() {
            return Err(EINVAL);
        }
        let taken = ring.reserve(published)?;
        for _ in 0..taken {
            let desc = ring.read_desc(submission.sq_head);
            submission.sq_head = submission.sq_head.wrapping_add(1);
            match self.translate(&submission, &desc) {
                Ok(cmd) => {
                    let mut state = self.state.lock();
                    match (state.phase, state.driver.as_mut()) {
                        (Phase::Started, Some(driver)) => driver.submit(cmd),
                        // Stopped meanwhile: dropping it cancels it.
                        _ => drop(cmd),
                    }
                }
                Err(e) => ring.complete(desc.user_data, Err(e), 0),
            }
        }
        ring.publish_sq_head(submission.sq_head);
        Ok(taken as isize)
    }

    /// Validates `desc` and translates its addresses into a command.
    fn translate(
        &self,
        submission: &Guard<'_, Submission, MutexBackend>,
        desc: &uapi::Desc,
    ) -> Result<Command> {
        if desc.flags & !uapi::DESC_REGISTERED != 0 || desc.rsvd0 != 0 || desc.rsvd1 != [0; 2] {
            return Err(EINVAL);
        }
        let op = self
            .device
            .info()
            .opcodes
            .iter()
            .find(|op| op.code == desc.opcode)
            .ok_or(EOPNOTSUPP)?;
        if !op.has_operands() {
            if desc.src != 0 || desc.dst != 0 || desc.len != 0 {
                return Err(EINVAL);
            }
            return Ok(Command::new(
                self.ring.clone(),
                desc.user_data,
                desc.opcode,
                desc.arg,
                0,
                None,
                None,
            ));
        }
        if desc.len == 0 || desc.len > op.max_len {
            return Err(EINVAL);
        }
        if (!op.src && desc.src != 0) || (!op.dst && desc.dst != 0) {
            return Err(EINVAL);
        }
        let align = op.align.max(1);
        let used = |addr: u64, is_used: bool| if is_used { addr } else { 0 };
        if (used(desc.src, op.src) | used(desc.dst, op.dst) | desc.len) % align != 0 {
            return Err(EINVAL);
        }
        let len = usize::try_from(desc.len).map_err(|_| EINVAL)?;
        let registered_only = desc.flags & uapi::DESC_REGISTERED != 0;
        let dev = self.bound_device(submission);

        for _ in 0..MAX_PIN_RETRIES {
            // First make sure everything is pinned, which may sleep and take the mmap lock, then
            // take the holds, which does neither: an invalidation waits for the holds, so a
            // command must never hold one buffer while it pins another.
            let src = match op.src {
                true => {
                    Some(self.prepare(submission, dev, desc.src, len, false, registered_only)?)
                }
                false => None,
            };
            let dst = match op.dst {
                true => {
                    Some(self.prepare(submission, dev, desc.dst, len, true, registered_only)?)
                }
                false => None,
            };
            let src = match src.map(Prepared::hold) {
                Some(Some(operand)) => Some(operand?),
                // A buffer was invalidated after it was pinned: pin it again.
                Some(None) => continue,
                None => None,
            };
            let dst = match dst.map(Prepared::hold) {
                Some(Some(operand)) => Some(operand?),
                Some(None) => continue,
                None => None,
            };
            return Ok(Command::new(
                self.ring.clone(),
                desc.user_data,
                desc.opcode,
                desc.arg,
                desc.len,
                src,
                dst,
            ));
        }
        Err(EAGAIN)
    }

    /// Makes the `len` bytes at user address `addr` available to the device, for writing if
    /// `write`: from a registered buffer if one contains them, else pinned for this command.
    fn prepare(
        &self,
        submission: &Guard<'_, Submission, MutexBackend>,
        dev: &Device<Bound>,
        addr: u64,
        len: usize,
        write: bool,
        registered_only: bool,
    ) -> Result<Prepared> {
        let addr = usize::try_from(addr).map_err(|_| EFAULT)?;
        addr.checked_add(len).ok_or(EFAULT)?;
        if let Some(buffer) = submission.buffers.lookup(addr, len) {
            if write && buffer.data().access() != Access::ReadWrite {
                return Err(EACCES);
            }
            // The access was right when the buffer was registered; if the memory there no
            // longer allows it, that is a fault like any other for a command.
            Buffer::ensure_mapped(&buffer, dev).map_err(fault_for_command)?;
            return Ok(Prepared::Registered(buffer, addr, len));
        }
        if registered_only {
            return Err(ENOENT);
        }
        let access = if write {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let mapping =
            Mapping::new(dev, &self.ring, addr, len, access).map_err(fault_for_command)?;
        Ok(Prepared::Pinned(mapping, len))
    }

    fn driver_ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        self.check_owner()?;
        {
            // The driver's tables live in its module: only read them while its queue is here.
            let state = self.state.lock();
            if state.driver.is_none() {
                return Err(ENODEV);
            }
            if !self.device.info().ioctls.contains(&cmd) {
                return Err(ENOTTY);
            }
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

/// The status of a command whose memory could not be pinned: `EOPNOTSUPP` (a shared file
/// mapping that the device would write) is an address without the access the command needs,
/// `-EFAULT` in the completion ring, where `-EOPNOTSUPP` means an unknown opcode.
/// The name of a `uapi::QueueState`, as fdinfo and debugfs show it.
pub(crate) fn state_name(state: u32) -> &'static str {
    match state {
        s if s == uapi::QueueState::Init as u32 => "init",
        s if s == uapi::QueueState::Started as u32 => "started",
        s if s == uapi::QueueState::Orphaned as u32 => "orphaned",
        _ => "dead",
    }
}

fn fault_for_command(e: Error) -> Error {
    if e == EOPNOTSUPP {
        EFAULT
    } else {
        e
    }
}

/// An operand that is pinned and mapped, before the command holds it.
enum Prepared {
    Registered(RegisteredBuffer, usize, usize),
    Pinned(Arc<Mapping>, usize),
}

impl Prepared {
    /// Holds the operand for the command, or `None` if its buffer was invalidated since it was
    /// prepared. Never sleeps on anything but the buffer's lock.
    fn hold(self) -> Option<Result<Operand>> {
        match self {
            Prepared::Registered(buffer, addr, len) => {
                let hold = Buffer::try_hold(&buffer)?;
                Some(Operand::registered(hold, addr, len))
            }
            Prepared::Pinned(mapping, len) => Some(Ok(Operand::pinned(mapping, len))),
        }
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
            // Starting and stopping are the owner's too: a child or a process that received the
            // fd could otherwise stop the owner's queue and cancel its commands.
            uapi::CMD_START_Q => {
                queue.check_owner()?;
                queue.start()
            }
            uapi::CMD_PUT_Q => {
                queue.check_owner()?;
                queue.stop()
            }
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

    fn mmap(queue: ArcBorrow<'_, QueueInner>, _file: &File, vma: &VmaNew) -> Result {
        let region = Region::from_pgoff(vma.pgoff())?;
        let pages = match region {
            Region::Mmio => queue.ring.status_page(),
            Region::Dus => queue.ring.dus(),
        };
        if vma.end() - vma.start() != pages.size() {
            return Err(EINVAL);
        }
        // A private mapping would give user space copy-on-write copies of the ring that the
        // kernel never sees, yet hold the region.
        if vma.flags() & flags::SHARED == 0 {
            return Err(EINVAL);
        }
        // The rings carry the owner's commands; anyone may look at the status.
        if region == Region::Dus {
            queue.check_owner()?;
        }
        let state = queue.state.lock();
        if state.phase == Phase::Zombie {
            return Err(ENODEV);
        }
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
        let mapped = match region {
            Region::Mmio => pages.map_read_only(vma),
            Region::Dus => pages.map(vma),
        };
        drop(state);
        if let Err(e) = mapped {
            drop(mapping);
            return Err(e);
        }
        vma.set_shared_data(mapping);
        Ok(())
    }

    fn poll(queue: ArcBorrow<'_, QueueInner>, file: &File, table: PollTable<'_>) -> u32 {
        table.register_wait(file, &queue.events.cv);
        if queue.state.lock().phase == Phase::Zombie {
            return bindings::POLLERR | bindings::POLLHUP;
        }
        if queue.ring.has_completions() {
            return bindings::POLLIN | bindings::POLLRDNORM;
        }
        0
    }

    /// The queue's counters, for tools and for checking that no command is lost: once the
    /// queue is dead, `wd-in-flight` is 0 and every submitted command is counted as completed.
    fn show_fdinfo(queue: ArcBorrow<'_, QueueInner>, m: &SeqFile, _file: &File) {
        let (status, in_flight) = queue.ring.counters();
        let state = state_name(status.state);
        seq_print!(
            m,
            "wd-device:\t{}\nwd-queue-index:\t{}\nwd-state:\t{}\n",
            queue.device.node_name(),
            queue.index,
            state
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
    }
}
