// SPDX-License-Identifier: GPL-2.0

//! User memory for commands: pinned, DMA-mapped ranges, the buffers user space registers, and
//! how both follow changes to the address space.
//!
//! A registered buffer keeps its pages pinned and mapped for the device between commands. An
//! interval notifier watches its range: when the process unmaps, remaps, `madvise()`s or
//! otherwise changes it, the notifier waits for the commands in flight on the buffer, then
//! unmaps and unpins its pages. The next command that uses the buffer pins what is mapped there
//! then, with the read-begin/read-retry protocol, as DRM's userptr does.

use crate::{ring::Ring, uapi};
use kernel::{
    device::{Bound, Device},
    dma::{DataDirection, DmaAddress},
    mm::{
        interval_notifier::{Event, IntervalNotifier, IntervalNotifierOps, Invalidation},
        pin::{Access, PinnedPages},
        MmWithUser,
    },
    new_condvar, new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    scatterlist::{Owned, SGTable},
    sync::{Arc, CondVar, Mutex},
    uaccess::UserPtr,
};

/// How often a command tries again to hold its buffers when they keep being invalidated while
/// it pins them, before it fails with `EAGAIN`.
pub(crate) const MAX_PIN_RETRIES: u32 = 8;

/// A user range pinned and DMA-mapped for a device.
///
/// Dropping it unmaps the pages from the device, then unpins them, then takes them off its
/// queue's count of pinned pages, in the order of the fields.
#[pin_data]
pub(crate) struct Mapping {
    /// Declared first: unmapped before the pages are unpinned.
    #[pin]
    sgt: SGTable<Owned<Arc<PinnedPages>>>,
    pages: Arc<PinnedPages>,
    /// Declared last: the queue's count falls only once the pages are unpinned and no longer
    /// charged to `RLIMIT_MEMLOCK`, so user space that sees it fall can pin them again.
    _counted: PinnedCount,
}

/// A mapping's pages on its queue's count of pinned pages; dropping it takes them off.
struct PinnedCount {
    ring: Arc<Ring>,
    count: u64,
}

impl Drop for PinnedCount {
    fn drop(&mut self) {
        let count = self.count;
        self.ring.update_status(|status| {
            status.pinned_pages = status.pinned_pages.saturating_sub(count)
        });
    }
}

impl Mapping {
    /// Pins `[addr, addr + len)` of the current process for `access` and maps it for `dev`.
    ///
    /// A shared file mapping that the device would write fails with `EOPNOTSUPP`; anything else
    /// that cannot be pinned with `EFAULT`, and `RLIMIT_MEMLOCK` with `ENOMEM`.
    pub(crate) fn new(
        dev: &Device<Bound>,
        ring: &Arc<Ring>,
        addr: usize,
        len: usize,
        access: Access,
    ) -> Result<Arc<Self>> {
        let max_pages = usize::try_from(uapi::MAX_BUFFER_SIZE)? / PAGE_SIZE + 1;
        let pages = Arc::new(
            PinnedPages::new(UserPtr::from_addr(addr), len, access, max_pages)?,
            GFP_KERNEL,
        )?;
        let dir = match access {
            Access::ReadOnly => DataDirection::ToDevice,
            Access::ReadWrite => DataDirection::Bidirectional,
        };
        let count = pages.page_count() as u64;
        let mapping = Arc::pin_init(
            try_pin_init!(Self {
                sgt <- SGTable::new(dev, pages.clone(), dir, GFP_KERNEL),
                pages,
                _counted: PinnedCount {
                    ring: ring.clone(),
                    count,
                },
            }),
            GFP_KERNEL,
        )?;
        ring.update_status(|status| status.pinned_pages += count);
        Ok(mapping)
    }

    /// The user address the mapping starts at.
    pub(crate) fn user_addr(&self) -> usize {
        self.pages.addr()
    }

    /// Calls `f(dma_address, len)` for each DMA-contiguous piece of `[offset, offset + len)` of
    /// the mapped range, in order. Fails with `EINVAL` if the range does not fit.
    pub(crate) fn for_each_dma_range(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(DmaAddress, usize) -> Result,
    ) -> Result {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.pages.size() {
            return Err(EINVAL);
        }
        // The mapping starts at the range's first byte, not at its first page's.
        let mut pos = 0usize;
        for entry in self.sgt.iter() {
            let seg_len = usize::try_from(entry.dma_len())?;
            let seg_end = pos + seg_len;
            if seg_end > offset && pos < end {
                let from = offset.max(pos);
                let to = end.min(seg_end);
                let addr = entry.dma_address() + (from - pos) as DmaAddress;
                f(addr, to - from)?;
            }
            pos = seg_end;
            if pos >= end {
                return Ok(());
            }
        }
        // The table maps the whole pinned range, so it cannot end early.
        Err(EINVAL)
    }

    /// Copies from `offset` in the range into `dst`, through the kernel's mapping of the pages.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> Result {
        self.pages.copy_from(offset, dst)
    }

    /// Copies `src` to `offset` in the range, through the kernel's mapping of the pages.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> Result {
        self.pages.copy_to(offset, src)
    }
}

/// The state of a registered buffer, under its lock.
///
/// # Invariants
///
/// `holds` counts the [`BufferHold`]s of the buffer: commands that use `mapping` (or used the
/// mapping that was there when they took their hold).
struct BufferState {
    /// The pinned, mapped pages, until the range is invalidated.
    mapping: Option<Arc<Mapping>>,
    holds: u32,
}

/// A buffer registered with `WD_IOCTL_REGISTER`: the data of its interval notifier.
#[pin_data]
pub(crate) struct Buffer {
    handle: u32,
    addr: usize,
    len: usize,
    access: Access,
    ring: Arc<Ring>,
    #[pin]
    state: Mutex<BufferState>,
    /// Notified when `holds` drops to zero.
    #[pin]
    idle: CondVar,
}

/// A registered buffer, watched by its notifier for as long as it lives.
pub(crate) type RegisteredBuffer = Arc<IntervalNotifier<Buffer>>;

impl IntervalNotifierOps for Buffer {
    fn invalidate(notifier: &IntervalNotifier<Self>, inv: &Invalidation<'_>) -> bool {
        let buffer = notifier.data();
        if !inv.may_block() {
            // Unpinning may sleep, and so may waiting for commands: only an idle, unmapped
            // buffer can let this go on. The caller tries again where it may block.
            let Some(state) = buffer.state.try_lock() else {
                return false;
            };
            if state.mapping.is_some() || state.holds > 0 {
                return false;
            }
            notifier.set_seq(inv);
            return true;
        }

        if inv.event() == Event::ProtectionPage {
            // Only write permissions change, as when fork() write-protects the parent's pages
            // for copy-on-write: the pages stay, and a later copy-on-write break replaces a
            // page with a `Clear`. Pinned pages are not even write-protected, fork() copies
            // them for the child instead, so the parent's buffer keeps its pins.
            let _guard = buffer.state.lock();
            notifier.set_seq(inv);
            return true;
        }

        let mut state = buffer.state.lock();
        // Commands that look the buffer up from now on pin it again.
        notifier.set_seq(inv);
        let mapping = state.mapping.take();
        // The device may still use the old pages: wait for it to be done with them.
        while state.holds > 0 {
            buffer.idle.wait(&mut state);
        }
        drop(state);
        if let Some(mapping) = mapping {
            buffer
                .ring
                .update_status(|status| status.invalidations += 1);
            // The last reference: the pages are unmapped and unpinned here.
            drop(mapping);
        }
        true
    }
}

impl Buffer {
    /// Registers `[addr, addr + len)` of `mm`, the current process' address space, pinning and
    /// mapping it for `dev` at once, so that a bad range fails here rather than in a command.
    pub(crate) fn register(
        dev: &Device<Bound>,
        mm: &MmWithUser,
        ring: &Arc<Ring>,
        handle: u32,
        addr: usize,
        len: usize,
        access: Access,
    ) -> Result<RegisteredBuffer> {
        let buffer = Arc::pin_init(
            IntervalNotifier::new(
                mm,
                addr,
                len,
                try_pin_init!(Buffer {
                    handle,
                    addr,
                    len,
                    access,
                    ring: ring.clone(),
                    state <- new_mutex!(BufferState {
                        mapping: None,
                        holds: 0,
                    }),
                    idle <- new_condvar!(),
                }),
            ),
            GFP_KERNEL,
        )?;
        Self::ensure_mapped(&buffer, dev)?;
        ring.update_status(|status| status.buffers += 1);
        Ok(buffer)
    }

    /// The buffer's handle.
    pub(crate) fn handle(&self) -> u32 {
        self.handle
    }

    /// The buffer's first byte.
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// The buffer's last byte.
    pub(crate) fn last(&self) -> usize {
        self.addr + (self.len - 1)
    }

    /// The access the device has to the buffer.
    pub(crate) fn access(&self) -> Access {
        self.access
    }

    /// Makes sure the buffer's current pages are pinned and mapped for `dev`, without holding
    /// them: pins what is mapped in the range now if it was invalidated.
    ///
    /// Must be called by the process that registered the buffer, without a lock that an
    /// invalidation may wait for: pinning takes the mmap lock. Fails like [`Mapping::new`], and
    /// with `EAGAIN` if the range keeps being invalidated meanwhile.
    pub(crate) fn ensure_mapped(notifier: &IntervalNotifier<Self>, dev: &Device<Bound>) -> Result {
        let buffer = notifier.data();
        for _ in 0..MAX_PIN_RETRIES {
            if buffer.state.lock().mapping.is_some() {
                return Ok(());
            }
            let seq = notifier.read_begin();
            let mapping = Mapping::new(dev, &buffer.ring, buffer.addr, buffer.len, buffer.access)?;
            let mut state = buffer.state.lock();
            if !notifier.read_retry(seq) {
                state.mapping = Some(mapping);
                return Ok(());
            }
            // The range changed while it was pinned: these pages may no longer back it.
            drop(state);
            drop(mapping);
        }
        Err(EAGAIN)
    }

    /// Holds the buffer's current mapping for a command, if it has one: until the hold is
    /// dropped, an invalidation of the range waits, and the pages stay pinned and mapped.
    pub(crate) fn try_hold(notifier: &RegisteredBuffer) -> Option<BufferHold> {
        let buffer = notifier.data();
        let mut state = buffer.state.lock();
        let mapping = state.mapping.clone()?;
        // INVARIANT: Counted here, uncounted when the hold is dropped.
        state.holds += 1;
        Some(BufferHold {
            mapping: Some(mapping),
            buffer: notifier.clone(),
        })
    }

    /// Unpins and unmaps the buffer once no command uses it, for unregistering it.
    pub(crate) fn retire(&self) {
        let mut state = self.state.lock();
        while state.holds > 0 {
            self.idle.wait(&mut state);
        }
        let mapping = state.mapping.take();
        drop(state);
        drop(mapping);
        self.ring
            .update_status(|status| status.buffers = status.buffers.saturating_sub(1));
    }
}

/// A command's hold on a registered buffer (see [`Buffer::try_hold`]).
pub(crate) struct BufferHold {
    /// Dropped before the hold is released, so that an invalidation waiting for the hold drops
    /// the last reference to the old mapping itself.
    mapping: Option<Arc<Mapping>>,
    buffer: RegisteredBuffer,
}

impl BufferHold {
    /// The mapping held.
    pub(crate) fn mapping(&self) -> Option<&Arc<Mapping>> {
        self.mapping.as_ref()
    }
}

impl Drop for BufferHold {
    fn drop(&mut self) {
        drop(self.mapping.take());
        let buffer = self.buffer.data();
        let mut state = buffer.state.lock();
        state.holds -= 1;
        if state.holds == 0 {
            buffer.idle.notify_all();
        }
    }
}

/// The buffers registered on a queue, by address range and by handle.
///
/// # Invariants
///
/// - The ranges of the buffers in `by_last` do not overlap, and each is keyed by its last byte.
/// - `by_handle` maps the handle of every buffer in `by_last` to its key there, and nothing else.
/// - `count` is the number of buffers.
pub(crate) struct Registry {
    by_last: RBTree<usize, RegisteredBuffer>,
    by_handle: RBTree<u32, usize>,
    count: usize,
    next_handle: u32,
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new() -> Self {
        // INVARIANT: Both trees are empty.
        Self {
            by_last: RBTree::new(),
            by_handle: RBTree::new(),
            count: 0,
            next_handle: 1,
        }
    }

    /// The number of buffers registered.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The registered buffer that wholly contains `[addr, addr + len)`, if any. `len` is not 0.
    ///
    /// Buffers do not overlap, so the only candidate is the first one that ends at or after
    /// `addr`: O(log n).
    pub(crate) fn lookup(&self, addr: usize, len: usize) -> Option<RegisteredBuffer> {
        let last = addr.checked_add(len - 1)?;
        let cursor = self.by_last.cursor_lower_bound(&addr)?;
        let (&buffer_last, buffer) = cursor.current();
        (buffer.data().addr() <= addr && last <= buffer_last).then(|| buffer.clone())
    }

    /// Whether `[addr, last]` overlaps a registered buffer.
    pub(crate) fn overlaps(&self, addr: usize, last: usize) -> bool {
        self.by_last
            .cursor_lower_bound(&addr)
            .is_some_and(|cursor| cursor.current().1.data().addr() <= last)
    }

    /// The handle the next buffer gets: never 0, and not in use.
    pub(crate) fn next_handle(&mut self) -> u32 {
        loop {
            let handle = self.next_handle;
            self.next_handle = self.next_handle.wrapping_add(1).max(1);
            if self.by_handle.get(&handle).is_none() {
                return handle;
            }
        }
    }

    /// Adds `buffer`, which must not overlap a registered one.
    pub(crate) fn insert(&mut self, buffer: RegisteredBuffer) -> Result {
        let last = buffer.data().last();
        let handle = buffer.data().handle();
        if self.overlaps(buffer.data().addr(), last) || self.by_handle.get(&handle).is_some() {
            return Err(EEXIST);
        }
        let by_handle = RBTreeNode::new(handle, last, GFP_KERNEL)?;
        let by_last = RBTreeNode::new(last, buffer, GFP_KERNEL)?;
        // INVARIANT: The range overlaps no other, and both trees get the buffer.
        self.by_handle.insert(by_handle);
        self.by_last.insert(by_last);
        self.count += 1;
        Ok(())
    }

    /// Removes the buffer with `handle`.
    pub(crate) fn remove(&mut self, handle: u32) -> Option<RegisteredBuffer> {
        let last = self.by_handle.remove(&handle)?;
        self.count -= 1;
        // INVARIANT: Removed from both trees.
        self.by_last.remove(&last)
    }

    /// Removes every buffer.
    pub(crate) fn take_all(&mut self) -> KVec<RegisteredBuffer> {
        let mut all = KVec::new();
        while let Some(handle) = self.by_handle.iter().next().map(|(h, _)| *h) {
            if let Some(buffer) = self.remove(handle) {
                // If this cannot grow, the buffer is released here, which is as good.
                let _ = all.push(buffer, GFP_KERNEL);
            }
        }
        all
    }
}
