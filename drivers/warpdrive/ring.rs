// SPDX-License-Identifier: GPL-2.0

//! The shadow ring of a queue without SVA: the submission and completion rings that user space
//! maps as the DUS region, the status page it maps as the MMIO region, and what `poll()` waits
//! on.
//!
//! Ring indices are read with acquire loads and published with release stores, each in one
//! access, as io_uring does: user space never sees a torn `sq_head` or `cq_tail`, and sees a
//! completion's entry before the tail that covers it.

use crate::{
    shared_pages::SharedPages,
    uapi::{self, Cqe, Desc, QueueState, QueueStatus, RingHeader},
};
use kernel::{
    new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        poll::PollCondVar,
        Arc, SpinLock,
    },
};

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
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// The condition variable that `poll()` registers on.
    pub(crate) fn cv(&self) -> &PollCondVar {
        &self.cv
    }

    /// Wakes up `poll()`: completions arrived, or the queue went away.
    pub(crate) fn notify(&self) {
        self.cv.notify_all();
    }
}

/// What the completion side of a ring keeps under its lock.
///
/// # Invariants
///
/// - `tail - head_seen` (wrapping) never exceeds the ring's `cq_entries` plus `in_flight`: a
///   completion is only written for a command that [`Ring::reserve`] counted in `in_flight`.
/// - `in_flight` is the number of commands reserved and not yet completed.
struct CqState {
    /// The next completion to write (`cq_tail`), free-running.
    tail: u32,
    /// Commands accepted whose completion is not written yet.
    in_flight: u32,
    /// The queue's counters, as published on the status page.
    status: QueueStatus,
    /// Whether a [`QuietCompletions`] is active: completions leave waking `poll()` to it.
    quiet: bool,
    /// Whether a completion was written while `quiet`, and nobody was woken for it yet.
    wake_pending: bool,
}

/// Completions that wake `poll()` together (see [`Ring::quiet_completions`]).
pub(crate) struct QuietCompletions<'a> {
    ring: &'a Ring,
}

impl QuietCompletions<'_> {
    /// Wakes `poll()` now for what was completed so far, and stays quiet.
    pub(crate) fn flush(&self) {
        self.ring.wake_if_pending(true);
    }
}

impl Drop for QuietCompletions<'_> {
    fn drop(&mut self) {
        self.ring.wake_if_pending(false);
    }
}

/// The rings and status page of one queue.
///
/// User space writes descriptors and the two indices it owns (`sq_tail`, `cq_head`); the kernel
/// keeps its own copy of `sq_head` (in the queue's KICK state) and of `cq_tail` (here), and only
/// ever writes those to the shared header. Every value read from the shared pages is untrusted.
#[pin_data]
pub(crate) struct Ring {
    dus: SharedPages,
    status_page: SharedPages,
    sq_entries: u32,
    cq_entries: u32,
    sq_offset: usize,
    cq_offset: usize,
    events: Arc<QueueEvents>,
    /// Set when the owner's address space is gone: the queue's commands are cancelled.
    orphaned: Atomic<bool>,
    #[pin]
    cq: SpinLock<CqState>,
}

impl Ring {
    /// The size of the DUS region for these ring sizes, in pages.
    pub(crate) const fn dus_pages(sq_entries: u32, cq_entries: u32) -> usize {
        let bytes = PAGE_SIZE
            + sq_entries as usize * size_of::<Desc>()
            + cq_entries as usize * size_of::<Cqe>();
        bytes.div_ceil(PAGE_SIZE)
    }

    /// Creates the rings of queue `index`, with `sq_entries` descriptors and `cq_entries`
    /// completions, both powers of two.
    pub(crate) fn new(
        index: u32,
        sq_entries: u32,
        cq_entries: u32,
        events: Arc<QueueEvents>,
    ) -> Result<Arc<Self>> {
        if !sq_entries.is_power_of_two() || !cq_entries.is_power_of_two() {
            return Err(EINVAL);
        }
        let sq_offset = PAGE_SIZE;
        let cq_offset = sq_offset + sq_entries as usize * size_of::<Desc>();
        let dus = SharedPages::new(Self::dus_pages(sq_entries, cq_entries))?;
        let status_page = SharedPages::new(1)?;
        let header = RingHeader {
            magic: uapi::RING_MAGIC,
            version: uapi::RING_VERSION,
            sq_entries,
            cq_entries,
            sq_offset: u32::try_from(sq_offset)?,
            cq_offset: u32::try_from(cq_offset)?,
            desc_size: size_of::<Desc>() as u32,
            cqe_size: size_of::<Cqe>() as u32,
            rsvd0: [0; 8],
            sq_tail: 0,
            rsvd1: [0; 15],
            sq_head: 0,
            rsvd2: [0; 15],
            cq_tail: 0,
            rsvd3: [0; 15],
            cq_head: 0,
            rsvd4: [0; 15],
        };
        dus.write(0, &header)?;
        let status = QueueStatus {
            magic: uapi::QUEUE_STATUS_MAGIC,
            state: QueueState::Init as u32,
            queue_index: index,
            ..Default::default()
        };
        status_page.write(0, &status)?;
        Arc::pin_init(
            pin_init!(Self {
                dus,
                status_page,
                sq_entries,
                cq_entries,
                sq_offset,
                cq_offset,
                events,
                orphaned: Atomic::new(false),
                // INVARIANT: Nothing is reserved or written yet.
                cq <- new_spinlock!(CqState {
                    tail: 0,
                    in_flight: 0,
                    status,
                    quiet: false,
                    wake_pending: false,
                }),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// The DUS region's pages.
    pub(crate) fn dus(&self) -> &SharedPages {
        &self.dus
    }

    /// The status page.
    pub(crate) fn status_page(&self) -> &SharedPages {
        &self.status_page
    }

    /// The number of descriptors in the submission ring.
    pub(crate) fn sq_entries(&self) -> u32 {
        self.sq_entries
    }

    /// Reads an index that user space publishes, with acquire ordering: what user space wrote
    /// before it (descriptors before `sq_tail`) is read after it.
    fn read_index(&self, offset: usize) -> u32 {
        // Cannot fail: the header's indices are aligned and fit in the region.
        self.dus.load_acquire(offset).unwrap_or(0)
    }

    /// Publishes an index that the kernel owns, with release ordering: what the kernel wrote
    /// before (completions before `cq_tail`) is seen first.
    fn publish_index(&self, offset: usize, value: u32) {
        // Cannot fail: as above.
        let _ = self.dus.store_release(offset, value);
    }

    /// The `sq_tail` that user space published.
    pub(crate) fn user_sq_tail(&self) -> u32 {
        self.read_index(RingHeader::SQ_TAIL)
    }

    /// Reads descriptor `index` (taken modulo the ring size) once into kernel memory.
    pub(crate) fn read_desc(&self, index: u32) -> Desc {
        let slot = (index & (self.sq_entries - 1)) as usize;
        // Cannot fail: the slot is inside the submission ring.
        self.dus
            .read::<Desc>(self.sq_offset + slot * size_of::<Desc>())
            .unwrap_or_default()
    }

    /// Publishes the kernel's `sq_head`.
    pub(crate) fn publish_sq_head(&self, head: u32) {
        self.publish_index(RingHeader::SQ_HEAD, head);
    }

    /// Reserves room for up to `wanted` completions, for commands about to be accepted, and
    /// returns how many it reserved: the completion ring never holds more than it has room for,
    /// counting the completions that user space has not reaped and those still to come.
    ///
    /// Fails with `EINVAL`, reserving nothing, if user space's `cq_head` is corrupt.
    pub(crate) fn reserve(&self, wanted: u32) -> Result<u32> {
        let head = self.read_index(RingHeader::CQ_HEAD);
        let mut cq = self.cq.lock();
        let unreaped = cq.tail.wrapping_sub(head);
        if unreaped > self.cq_entries {
            return Err(EINVAL);
        }
        let room = self.cq_entries - unreaped;
        let taken = wanted.min(room.saturating_sub(cq.in_flight));
        // INVARIANT: Each reserved command is counted until its completion is written.
        cq.in_flight += taken;
        // Accepted now, so counted now: the status page tells the truth while they run.
        cq.status.submitted += u64::from(taken);
        if taken > 0 {
            self.publish_status(&cq.status);
        }
        Ok(taken)
    }

    /// Writes the completion of a reserved command and wakes up `poll()`.
    ///
    /// `bytes` is what the command moved, counted if it succeeded.
    pub(crate) fn complete(&self, user_data: u64, result: Result<u64>, bytes: u64) {
        let cqe = match result {
            Ok(result) => Cqe {
                user_data,
                result,
                ..Default::default()
            },
            Err(e) => Cqe {
                user_data,
                status: e.to_errno(),
                ..Default::default()
            },
        };
        let mut cq = self.cq.lock();
        let slot = (cq.tail & (self.cq_entries - 1)) as usize;
        // Cannot fail: the slot is inside the completion ring.
        let _ = self
            .dus
            .write(self.cq_offset + slot * size_of::<Cqe>(), &cqe);
        cq.tail = cq.tail.wrapping_add(1);
        // The release store orders the entry before the tail that covers it.
        self.publish_index(RingHeader::CQ_TAIL, cq.tail);
        // INVARIANT: This command was reserved, and is no longer in flight.
        cq.in_flight = cq.in_flight.saturating_sub(1);
        cq.status.completed += 1;
        if cqe.status != 0 {
            cq.status.errors += 1;
        } else {
            cq.status.bytes += bytes;
        }
        self.publish_status(&cq.status);
        let wake = !cq.quiet;
        cq.wake_pending |= cq.quiet;
        drop(cq);
        if wake {
            self.events.notify();
        }
    }

    /// Leaves waking `poll()` for the completions written from now on to the returned guard,
    /// which wakes it once for all of them, when it is flushed or dropped: `KICK`, which
    /// completes many commands itself, wakes waiters once rather than once per command.
    ///
    /// The guard must be flushed before anything that may wait (a fault, say): completions
    /// from other contexts (the driver's engine) are held back until then too.
    pub(crate) fn quiet_completions(&self) -> QuietCompletions<'_> {
        self.cq.lock().quiet = true;
        QuietCompletions { ring: self }
    }

    /// Stays quiet or not, as told, and wakes `poll()` if a completion was written while quiet.
    fn wake_if_pending(&self, stay_quiet: bool) {
        let mut cq = self.cq.lock();
        cq.quiet = stay_quiet;
        let pending = core::mem::take(&mut cq.wake_pending);
        drop(cq);
        if pending {
            self.events.notify();
        }
    }

    /// Whether completions wait for user space to reap them.
    pub(crate) fn has_completions(&self) -> bool {
        let head = self.read_index(RingHeader::CQ_HEAD);
        self.cq.lock().tail != head
    }

    /// Updates the counters on the status page with `f`.
    pub(crate) fn update_status(&self, f: impl FnOnce(&mut QueueStatus)) {
        let mut cq = self.cq.lock();
        f(&mut cq.status);
        self.publish_status(&cq.status);
    }

    /// The queue's counters as published on the status page, and how many commands are in
    /// flight, read together.
    pub(crate) fn counters(&self) -> (QueueStatus, u32) {
        let cq = self.cq.lock();
        (cq.status, cq.in_flight)
    }

    /// Sets the queue state shown on the status page.
    pub(crate) fn set_state(&self, state: QueueState) {
        self.update_status(|status| status.state = state as u32);
    }

    /// Marks the queue orphaned: its owner's address space is gone, nobody can submit to it any
    /// more, and the commands it has queued are cancelled.
    pub(crate) fn orphan(&self) {
        self.orphaned.store(true, Relaxed);
        self.set_state(QueueState::Orphaned);
    }

    /// Whether the queue's commands are to be cancelled.
    pub(crate) fn is_orphaned(&self) -> bool {
        self.orphaned.load(Relaxed)
    }

    fn publish_status(&self, status: &QueueStatus) {
        // Cannot fail: the status fits in its page.
        let _ = self.status_page.write(0, status);
    }
}
