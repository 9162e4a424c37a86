// SPDX-License-Identifier: GPL-2.0

//! Queues: one per open file of a device node. Starting and stopping, registering memory, and
//! taking commands from the shadow ring.

use crate::{
    buffer::{Access, Buffer, BufferRef, Pinned, RegisteredBuffer, Registry},
    command::{Command, Operand, Reach},
    driver::Queue,
    identity::Identity,
    ring::{QueueEvents, Ring},
    uapi,
};
use kernel::{
    device::{Bound, Device},
    ioctl::_IOC_SIZE,
    mm::{
        interval_notifier::{Event, IntervalNotifier, IntervalNotifierOps, Invalidation},
        virt::{SharedPageSource, VmaNew},
        Mm, MmWithUser,
    },
    new_mutex, new_spinlock,
    page::{Page, PAGE_SIZE},
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Acquire, Atomic, Release},
        lock::{mutex::MutexBackend, Guard},
        Arc, Mutex, SpinLock,
    },
    uaccess::{UserPtr, UserSlice},
};

/// The regions of a queue that user space maps, selected by the `mmap()` page offset.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    /// Page offset 0, uacce's `UACCE_QFRT_MMIO`: the status page.
    Mmio,
    /// Page offset 1, uacce's `UACCE_QFRT_DUS`: the rings.
    Dus,
}

impl Region {
    pub(crate) fn from_pgoff(pgoff: usize) -> Result<Self> {
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

/// What `REGISTER`, `UNREGISTER` and `KICK` look up, under the queue's submission lock. It is
/// only ever held briefly: never across a fault on user memory, which may wait for ever.
///
/// # Invariants
///
/// While `alive` is true, the queue has not been put back, so its device is registered and
/// bound: putting the queue clears it under the same lock first.
struct Submission {
    alive: bool,
    buffers: Registry,
}

/// What `KICK` keeps between calls. Its lock serialises `KICK`s and is held while they fault on
/// user memory; nothing else takes it, so a `KICK` that waits (for a userfaultfd handler, say)
/// holds up nobody but other `KICK`s of the same queue.
struct Kick {
    /// The next descriptor to consume, the kernel's own `sq_head`.
    sq_head: u32,
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
            // The buffers' own notifiers clear their mappings; nothing can submit any more,
            // since only the owner may.
            notifier.data().ring.orphan();
        }
        true
    }
}

/// An open queue: the private data of an open file of a device node.
///
/// Locks, outermost first: the device's state lock, `kick`, `submission`, the mmap lock (taken
/// by faults), `state`. `mmap()` takes `state` with the mmap lock held, so nothing holding
/// `state` may fault on user memory. Only `kick` is ever held across a fault.
#[pin_data]
pub(crate) struct QueueInner {
    identity: Arc<Identity>,
    index: u32,
    /// The address space that opened the queue, the only one that may use it.
    owner: ARef<Mm>,
    ring: Arc<Ring>,
    events: Arc<QueueEvents>,
    #[pin]
    owner_watch: IntervalNotifier<OwnerWatch>,
    /// `Region::bit()`s of the regions that the owner has mapped now. A spinlock, because the
    /// VMA's close takes it with the mmap lock held.
    #[pin]
    mapped: SpinLock<u32>,
    #[pin]
    kick: Mutex<Kick>,
    #[pin]
    submission: Mutex<Submission>,
    #[pin]
    state: Mutex<QueueState>,
    /// Whether the queue was put back: set with [`Phase::Zombie`], under `state`'s lock, and
    /// read without a lock by the first check of every ioctl and by `poll()`, which would
    /// otherwise take that lock on every call.
    zombie: Atomic<bool>,
}

impl QueueInner {
    pub(crate) fn new(
        identity: Arc<Identity>,
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
                identity,
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
                kick <- new_mutex!(Kick { sq_head: 0 }),
                // INVARIANT: The queue is not put back yet.
                submission <- new_mutex!(Submission {
                    alive: true,
                    buffers: Registry::new(),
                }),
                // INVARIANT: The driver's queue is present in `Init`.
                state <- new_mutex!(QueueState {
                    phase: Phase::Init,
                    driver: Some(driver),
                }),
                zombie: Atomic::new(false),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// Which of the device's queues this is.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The device's description.
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The queue's rings and counters.
    pub(crate) fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// What `poll()` waits on.
    pub(crate) fn events(&self) -> &QueueEvents {
        &self.events
    }

    /// Stops the queue if needed, gives it back to the driver, and drops every registered
    /// buffer. Called with the device's state lock held, while the device is bound.
    ///
    /// Waits for what the device is running, and for nothing that user space controls: not for
    /// a `KICK` or `REGISTER` that waits on a fault.
    pub(crate) fn put(&self) {
        let mut buffers = {
            let mut submission = self.submission.lock();
            // INVARIANT: Cleared before the queue is put back.
            submission.alive = false;
            core::mem::replace(&mut submission.buffers, Registry::new())
        };
        let driver = {
            let mut state = self.state.lock();
            // INVARIANT: The driver's queue is gone, and the phase says so.
            state.phase = Phase::Zombie;
            self.zombie.store(true, Release);
            state.driver.take()
        };
        if let Some(mut driver) = driver {
            driver.stop();
            // Cancels what is queued and waits for what the device is doing.
            drop(driver);
        }
        // No command accesses a buffer any more. The notifiers go here, in process context.
        while let Some(buffer) = buffers.pop() {
            buffer.data().retire();
        }
        self.ring.update_status(|status| {
            if status.state != uapi::QueueState::Orphaned as u32 {
                status.state = uapi::QueueState::Dead as u32;
            }
        });
        // Whoever polls learns that the queue is gone.
        self.events.notify();
    }

    pub(crate) fn start(&self) -> Result<isize> {
        self.check_owner()?;
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

    pub(crate) fn stop(&self) -> Result<isize> {
        self.check_owner()?;
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

    /// Whether the current process is the queue's owner.
    pub(crate) fn is_owner(&self) -> bool {
        let task = kernel::current!();
        task.mm()
            .is_some_and(|mm| core::ptr::eq(mm.as_raw(), self.owner.as_raw()))
    }

    /// Fails with `EPERM` unless the current process is the queue's owner (see
    /// `WD_IOCTL_KICK` in the UAPI header).
    pub(crate) fn check_owner(&self) -> Result {
        if self.is_owner() {
            Ok(())
        } else {
            Err(EPERM)
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
        unsafe { self.identity.parent.as_bound() }
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
        // Tag bits would make the notifier watch a range that no invalidation overlaps.
        let addr = UserPtr::from_addr(addr).untagged_addr();
        let len = usize::try_from(data.len).map_err(|_| EINVAL)?;
        // Not `len - 1`: the buffer's page span is computed from `addr + len`, which must fit.
        addr.checked_add(len).ok_or(EINVAL)?;
        let last = addr + (len - 1);
        let access = if data.flags & uapi::REGISTER_WRITE != 0 {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };

        let task = kernel::current!();
        let mm: &MmWithUser = task.mm().ok_or(EPERM)?;
        let (buffer, handle) = {
            let mut submission = self.lock_submission()?;
            if submission.buffers.len() >= uapi::MAX_BUFFERS {
                return Err(ENOSPC);
            }
            if submission.buffers.overlaps(addr, last) {
                return Err(EEXIST);
            }
            let handle = submission.buffers.next_handle();
            let dev = self.bound_device(&submission);
            let buffer = Buffer::new(dev, mm, &self.ring, handle, addr, len, access)?;
            if let Err(e) = submission.buffers.insert(buffer.clone()) {
                // Takes it out of the queue's status again.
                buffer.data().retire();
                return Err(e);
            }
            (buffer, handle)
        };
        // Look the whole range up now, so that a bad one fails here rather than in a command.
        // Without the submission lock: the fault may wait for user space.
        if let Err(e) = Buffer::prefault(&buffer, 0, len) {
            // Commands of another thread may have found the buffer meanwhile: it goes after
            // them, not from under them. If an `UNREGISTER` (of a guessed handle) has started
            // on it already, that one finishes the job.
            self.take_away(&buffer, handle);
            return Err(e);
        }
        data.handle = handle;
        Ok(0)
    }

    /// `WD_IOCTL_REGISTER`: a buffer whose handle cannot be written back is unregistered again,
    /// since user space could never unregister it.
    pub(crate) fn register_ioctl(&self, arg: usize) -> Result<isize> {
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

    /// `WD_IOCTL_UNREGISTER`: waits for the commands that use the buffer, then drops it.
    pub(crate) fn unregister(&self, handle: u32) -> Result<isize> {
        self.check_owner()?;
        let buffer = self
            .lock_submission()?
            .buffers
            .get(handle)
            .ok_or(ENOENT)?
            .clone();
        if !self.take_away(&buffer, handle) {
            return Err(ENOENT);
        }
        // The notifier goes with the last reference, here or in the registry's release.
        drop(buffer);
        Ok(0)
    }

    /// Unregisters `buffer`, registered as `handle`: closes it to new commands, waits for the
    /// commands that use it, then takes it out of the registry and stops mirroring it. Returns
    /// `false`, doing nothing, if that had started already.
    fn take_away(&self, buffer: &RegisteredBuffer, handle: u32) -> bool {
        if buffer.data().start_unregistering() {
            return false;
        }
        // No lock held: the commands may take a while, and new ones no longer find it.
        buffer.data().wait_unused();
        let mut submission = self.submission.lock();
        // Once the queue is put, its release retired every buffer.
        if submission.alive {
            if let Some(buffer) = submission.buffers.remove(handle) {
                buffer.data().retire();
            }
        }
        true
    }

    /// Consumes the descriptors that user space published (see `WD_IOCTL_KICK`).
    pub(crate) fn kick(&self) -> Result<isize> {
        self.check_owner()?;
        let mut kick = self.kick.lock();
        match self.state.lock().phase {
            Phase::Started => {}
            Phase::Zombie => return Err(ENODEV),
            Phase::Init => return Err(EINVAL),
        }
        let ring = &self.ring;
        let published = ring.user_sq_tail().wrapping_sub(kick.sq_head);
        if published > ring.sq_entries() {
            return Err(EINVAL);
        }
        let taken = ring.reserve(published)?;
        // One wake-up for the commands completed here (bad descriptors, and what the driver
        // completes within `submit`), not one each.
        let quiet = ring.quiet_completions();
        // The queue's lock, kept across commands and let go of before any translation that may
        // fault: taking it once per command was a good part of what a NOP costs.
        let mut state = None;
        for _ in 0..taken {
            let desc = ring.read_desc(kick.sq_head);
            kick.sq_head = kick.sq_head.wrapping_add(1);
            // Translating operands may fault and wait, which must happen without the queue's
            // lock (`mmap()` takes it under the mmap lock) and with no completion held back.
            let faults = self
                .identity
                .opcode(desc.opcode)
                .is_some_and(|op| op.has_operands());
            if faults {
                state = None;
                quiet.flush();
            }
            match self.translate(&desc) {
                Ok(cmd) => {
                    let locked = state.get_or_insert_with(|| self.state.lock());
                    if let Some(rejected) = Self::submit(locked, cmd) {
                        // Stopped meanwhile: dropping it cancels it, outside the lock, since
                        // it may unpin.
                        state = None;
                        drop(rejected);
                    }
                }
                Err(e) => ring.complete(desc.user_data, Err(e), 0),
            }
        }
        drop(state);
        ring.publish_sq_head(kick.sq_head);
        drop(quiet);
        Ok(taken as isize)
    }

    /// Hands `cmd` to the driver, if the queue is still started; else gives it back.
    fn submit(state: &mut Guard<'_, QueueState, MutexBackend>, cmd: Command) -> Option<Command> {
        match (state.phase, state.driver.as_mut()) {
            (Phase::Started, Some(driver)) => {
                driver.submit(cmd);
                None
            }
            _ => Some(cmd),
        }
    }

    /// Validates `desc` and translates its addresses into a command.
    fn translate(&self, desc: &uapi::Desc) -> Result<Command> {
        if desc.flags & !uapi::DESC_REGISTERED != 0 || desc.rsvd0 != 0 || desc.rsvd1 != [0; 2] {
            return Err(EINVAL);
        }
        let op = *self.identity.opcode(desc.opcode).ok_or(EOPNOTSUPP)?;
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
        // Checked to be a power of two at registration.
        let mask = op.align.max(1) - 1;
        let used = |addr: u64, is_used: bool| if is_used { addr } else { 0 };
        if (used(desc.src, op.src) | used(desc.dst, op.dst) | desc.len) & mask != 0 {
            return Err(EINVAL);
        }
        let len = usize::try_from(desc.len).map_err(|_| EINVAL)?;
        let registered_only = desc.flags & uapi::DESC_REGISTERED != 0;
        let src = match op.src {
            true => Some(self.operand(desc.src, len, false, registered_only, op.reach)?),
            false => None,
        };
        let dst = match op.dst {
            true => Some(self.operand(desc.dst, len, true, registered_only, op.reach)?),
            false => None,
        };
        Ok(Command::new(
            self.ring.clone(),
            desc.user_data,
            desc.opcode,
            desc.arg,
            desc.len,
            src,
            dst,
        ))
    }

    /// The `len` bytes at user address `addr`, which the device writes if `write`: part of a
    /// registered buffer if one contains them, else pinned for this command.
    ///
    /// Faults here, in the owner's system call, without a lock that removal needs: a fault may
    /// wait for user space, and a fatal signal ends it.
    fn operand(
        &self,
        addr: u64,
        len: usize,
        write: bool,
        registered_only: bool,
        reach: Reach,
    ) -> Result<Operand> {
        let addr = usize::try_from(addr).map_err(|_| EFAULT)?;
        let addr = UserPtr::from_addr(addr).untagged_addr();
        addr.checked_add(len).ok_or(EFAULT)?;
        // Counted as a user before the lock goes, so that an `UNREGISTER` that starts after the
        // lookup waits for this command rather than retiring the buffer under it.
        let registered = self
            .lock_submission()?
            .buffers
            .lookup(addr, len)
            .and_then(BufferRef::try_new);
        if let Some(buffer) = registered {
            let Some(notifier) = buffer.notifier() else {
                return Err(ECANCELED);
            };
            if write && notifier.data().access() != Access::ReadWrite {
                return Err(EACCES);
            }
            let offset = addr - notifier.data().addr();
            // The engine usually finds the pages current then; if they change before it runs,
            // it looks them up again.
            Buffer::prefault(notifier, offset, len)?;
            return Ok(Operand::registered(buffer, offset, len, write));
        }
        if registered_only {
            return Err(ENOENT);
        }
        let mut pinned = Pinned::pin(&self.ring, addr, len, write)?;
        if reach == Reach::Dma {
            let submission = self.lock_submission()?;
            pinned.map(self.bound_device(&submission), write)?;
        }
        Ok(Operand::pinned(pinned, len, write))
    }

    /// A driver-private ioctl (see `Queue::ioctl`).
    pub(crate) fn driver_ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        self.check_owner()?;
        if !self.identity.ioctls.contains(&cmd) {
            return Err(ENOTTY);
        }
        let size = _IOC_SIZE(cmd);
        let dir = kernel::ioctl::_IOC_DIR(cmd);
        if size > uapi::MAX_DRIVER_IOCTL_SIZE {
            return Err(EINVAL);
        }
        let mut data = KVec::from_elem(0u8, size, GFP_KERNEL_ACCOUNT)?;
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
    pub(crate) fn check_alive(&self) -> Result {
        if self.is_zombie() {
            return Err(ENODEV);
        }
        Ok(())
    }

    /// Whether the queue was put back. What an ioctl then does checks again, under the lock.
    pub(crate) fn is_zombie(&self) -> bool {
        self.zombie.load(Acquire)
    }

    /// Maps `region` into `vma`, which covers it exactly and is shared.
    ///
    /// Each region is mapped by the owner at most once at a time (`EEXIST`); other processes
    /// may only map the status page, and do so without claiming it, so they can never keep the
    /// owner from mapping it. Done under the queue's lock, so that a mapping either exists
    /// before the device's removal zaps them all, or fails with `ENODEV`.
    pub(crate) fn map_region(self: &Arc<Self>, vma: &VmaNew, region: Region) -> Result {
        let owner = self.is_owner();
        // The rings carry the owner's commands; anyone holding the fd may look at the status.
        if region == Region::Dus && !owner {
            return Err(EPERM);
        }
        let state = self.state.lock();
        if state.phase == Phase::Zombie {
            return Err(ENODEV);
        }
        if owner {
            let mut mapped = self.mapped.lock();
            if *mapped & region.bit() != 0 {
                return Err(EEXIST);
            }
            *mapped |= region.bit();
        }
        // From here on, dropping `mapping` gives the region back.
        let mapping = match Arc::new(
            RegionMapping {
                queue: self.clone(),
                region,
                claimed: owner,
            },
            GFP_KERNEL_ACCOUNT,
        ) {
            Ok(mapping) => mapping,
            Err(e) => {
                if owner {
                    *self.mapped.lock() &= !region.bit();
                }
                return Err(e.into());
            }
        };
        // VM_IO makes VM_DONTCOPY permanent (MADV_DOFORK refuses it), so a child never gets the
        // queue's memory.
        vma.set_io();
        vma.set_dontcopy();
        vma.set_dontexpand();
        vma.set_wipeonfork();
        // SAFETY: warpdrive owns the file being mapped: its `file_operations` are the chrdev
        // `QueueFile`'s, in this module, which instantiates the VMA operations here.
        let mapped = unsafe { vma.set_shared_pages(mapping) };
        drop(state);
        mapped
    }

    /// Calls `f` on each registered buffer, for debugfs.
    pub(crate) fn for_each_buffer(
        &self,
        mut f: impl FnMut(&Buffer) -> core::fmt::Result,
    ) -> core::fmt::Result {
        let submission = self.submission.lock();
        submission.buffers.for_each(|buffer| f(buffer))
    }
}

/// What the VMA of one mapped region keeps: the queue, which keeps the pages, and, for the
/// owner's mapping, the claim on the region, which is given back when the last VMA is gone.
struct RegionMapping {
    queue: Arc<QueueInner>,
    region: Region,
    claimed: bool,
}

impl SharedPageSource for RegionMapping {
    fn pages(&self) -> &[Page] {
        match self.region {
            Region::Mmio => self.queue.ring.status_page().pages(),
            Region::Dus => self.queue.ring.dus().pages(),
        }
    }
}

impl Drop for RegionMapping {
    fn drop(&mut self) {
        if self.claimed {
            *self.queue.mapped.lock() &= !self.region.bit();
        }
    }
}
