// SPDX-License-Identifier: GPL-2.0

//! User memory for commands: the buffers user space registers, mirrored for the device without
//! pins, and the memory of single commands, pinned while they live.
//!
//! # Registered buffers
//!
//! A registered buffer follows the HMM model (`Documentation/warpdrive/rationale.rst`). An
//! interval notifier watches its range, `hmm_range_fault()` finds the pages behind it, and an
//! [`HmmDmaMap`] maps them for the device. No page is pinned, so migration, compaction, KSM,
//! reclaim and NUMA balancing all work on it as on any other memory. What the device may use is
//! tracked per page: an entry is *current* from the moment it is installed, under the buffer's
//! lock and only if no invalidation started since its lookup, until an invalidation of its page.
//!
//! The device only touches a page through an [`Access`]: it is taken when the command that runs
//! on the device reaches that part of its operand, once every page of the part is current, and
//! dropped as soon as the device is done with it. An invalidation clears the current bits of its
//! range, waits for the accesses in progress on the buffer (never for commands that are only
//! queued: they hold no access), and unmaps the pages that may go away. It takes no folio lock,
//! drops no pin, and allocates nothing. The next access faults the range in again: from the
//! owner's own `KICK` (where a fault may wait for user space, killably) or from the driver's
//! engine, which never waits for user space.
//!
//! # Commands' own memory
//!
//! An operand outside every registered buffer is pinned when `KICK` takes the command (charged
//! to `RLIMIT_MEMLOCK`) and unpinned when the command completes, before its completion is
//! written. A pin lives as long as its command, not as long as a buffer, and nothing in memory
//! management waits for it: migration and compaction skip pinned pages.

use crate::{ring::Ring, uapi};
use kernel::{
    bitmap::BitmapVec,
    device::{Bound, Device},
    dma::{DataDirection, DmaAddress},
    mm::{
        hmm::{page_index, HmmDmaMap, HmmPfn},
        interval_notifier::{Event, IntervalNotifier, IntervalNotifierOps, Invalidation},
        pin::{Access as PinAccess, PinnedPages},
        Mm, MmWithUser,
    },
    new_condvar, new_mutex, new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    scatterlist::{Owned, SGTable},
    sync::{
        aref::ARef,
        lock::{mutex::MutexBackend, Guard},
        Arc, CondVar, Mutex, SpinLock,
    },
    time::{Instant, Monotonic},
    uaccess::UserPtr,
};

/// How many pages one lookup covers: the entries live on the stack.
const FAULT_WINDOW: usize = 64;

/// How long an access, or the lookup of a window of pages, keeps trying without progress when
/// its pages are invalidated again and again before it can use them (migration of a whole
/// buffer, say), before it fails with `EAGAIN`; see [`Patience`].
const RETRY_MS: u32 = 1000;

/// How many tries in a row must have failed as well, before [`RETRY_MS`] without progress
/// count as giving up.
const RETRY_TRIES: u32 = 4;

/// How long an access keeps trying at most, progress or not: the engine that it holds up
/// serves every queue of the device.
const ACCESS_MAX_MS: i64 = 10 * RETRY_MS as i64;

/// Whether the device may write a registered buffer.
pub(crate) use kernel::mm::pin::Access;

/// Where a fault runs.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) enum FaultContext {
    /// In the owner's own system call (`KICK`, `REGISTER`): it may wait for a userfaultfd
    /// handler or for I/O, and a fatal signal ends it.
    Owner,
    /// In the driver's engine, which serves every queue and must never wait for user space.
    Engine,
}

/// The state of a registered buffer's mirror, under its lock.
///
/// # Invariants
///
/// - A bit of `current` is set only if its entry of `map` is set, and only between an install
///   that followed the notifier's protocol and the next invalidation of its page.
/// - `gens[i]` changes with every invalidation of page `i`.
/// - `active` counts the [`BufferAccess`]es of the buffer.
/// - `idle_waiters` counts the tasks waiting on `Buffer::idle` for `active` to reach zero.
/// - Once `retired`, no entry is set and none is installed again.
struct MirrorState {
    map: HmmDmaMap,
    current: BitmapVec,
    /// Per page, a generation that each invalidation of the page moves on: a lookup whose
    /// pages kept theirs is still good, even if other pages of the buffer changed meanwhile.
    gens: KVVec<u32>,
    active: u32,
    /// Waking nobody costs each access a wake-up call, so the last access wakes only these.
    idle_waiters: u32,
    retired: bool,
    /// Entries set now, for the queue's `mapped_pages`.
    mapped: usize,
}

/// A buffer registered with `WD_IOCTL_REGISTER`: the data of its interval notifier.
#[pin_data]
pub(crate) struct Buffer {
    handle: u32,
    /// The first byte, untagged.
    addr: usize,
    len: usize,
    /// The first byte of the first page; entry `i` of the map is the page at `base + i * 4096`.
    base: usize,
    access: Access,
    /// The address space that registered it; faults look it up there.
    owner: ARef<Mm>,
    ring: Arc<Ring>,
    #[pin]
    state: Mutex<MirrorState>,
    /// Notified when `active` drops to zero.
    #[pin]
    idle: CondVar,
    /// The commands that refer to the buffer, for `UNREGISTER` to wait for; closed once
    /// `UNREGISTER` has started on it, so that commands no longer find it.
    users: Arc<Users>,
}

/// A registered buffer, watched by its notifier for as long as it lives.
///
/// The notifier is only ever removed (its last reference dropped) by `UNREGISTER` or by the
/// queue's release, in process context: commands hold a [`BufferRef`], which lets go of its
/// reference before it counts itself out, so that the last one is always the registry's.
pub(crate) type RegisteredBuffer = Arc<IntervalNotifier<Buffer>>;

/// The commands that refer to a buffer, and whether `UNREGISTER` has closed it to new ones.
struct UserCount {
    count: u32,
    closed: bool,
}

/// A count of users, closed to new ones when unregistering starts, and a condition variable to
/// wait for none.
///
/// # Invariants
///
/// Once `closed`, `count` never grows: a command either counted itself before the buffer was
/// closed, and `UNREGISTER` waits for it, or never finds the buffer.
#[pin_data]
pub(crate) struct Users {
    #[pin]
    count: SpinLock<UserCount>,
    #[pin]
    none: CondVar,
}

impl Users {
    /// Counts a user, unless the buffer is closed.
    fn try_get(&self) -> bool {
        let mut users = self.count.lock();
        if users.closed {
            return false;
        }
        users.count += 1;
        true
    }

    fn put(&self) {
        let mut users = self.count.lock();
        users.count -= 1;
        // Only `wait_none` waits, and only once the count is closed.
        if users.count == 0 && users.closed {
            self.none.notify_all();
        }
    }

    /// Closes the buffer to new users; returns whether it was closed already.
    fn close(&self) -> bool {
        core::mem::replace(&mut self.count.lock().closed, true)
    }

    /// Waits until no user is counted. Must be called once the count is closed: `put` only
    /// wakes anyone then.
    fn wait_none(&self) {
        let mut users = self.count.lock();
        while users.count > 0 {
            self.none.wait(&mut users);
        }
    }
}

impl IntervalNotifierOps for Buffer {
    fn invalidate(notifier: &IntervalNotifier<Self>, inv: &Invalidation<'_>) -> bool {
        let buffer = notifier.data();
        let (first, last) = buffer.overlap(inv.start(), inv.end());
        // The page stays where it is for these: only its permissions change (mprotect(),
        // NUMA-hinting faults, write-protection for copy-on-write or writeback). The next
        // access looks it up again and keeps the mapping if it finds the same page with the
        // access it needs.
        let keeps_pages = matches!(
            inv.event(),
            Event::ProtectionVma | Event::ProtectionPage | Event::SoftDirty
        );
        if !inv.may_block() {
            // The OOM reaper: nothing here may sleep, and unmapping from an IOMMU may. Only a
            // range that the device neither uses nor has mapped can go now; the caller tries
            // again where it may block.
            let Some(mut state) = buffer.state.try_lock() else {
                return false;
            };
            if state.active > 0 || (first..=last).any(|i| state.map.entry(i).is_some()) {
                return false;
            }
            notifier.set_seq(inv);
            clear_bits(&mut state.current, first, last);
            for gen in &mut state.gens[first..=last] {
                *gen = gen.wrapping_add(1);
            }
            return true;
        }

        let mut state = buffer.state.lock();
        // Lookups that started before this are stale from now on.
        notifier.set_seq(inv);
        let was_current = state.current.next_bit(first).is_some_and(|i| i <= last);
        clear_bits(&mut state.current, first, last);
        for gen in &mut state.gens[first..=last] {
            *gen = gen.wrapping_add(1);
        }
        // The device may be using the pages right now: wait for that, and only that. Queued
        // commands hold no access, and look the pages up again when they run.
        Self::wait_idle(buffer, &mut state);
        if !keeps_pages {
            let mut unmapped = 0;
            for i in first..=last {
                if state.map.clear(i) {
                    unmapped += 1;
                }
            }
            state.mapped -= unmapped;
            if unmapped > 0 {
                buffer.ring.update_status(|status| {
                    status.mapped_pages = status.mapped_pages.saturating_sub(unmapped as u64)
                });
            }
        }
        drop(state);
        if was_current {
            buffer
                .ring
                .update_status(|status| status.invalidations += 1);
        }
        true
    }
}

/// When to give up on pages that invalidations keep taking away: once [`RETRY_MS`] have passed
/// since the last progress *and* [`RETRY_TRIES`] tries in a row have failed.
///
/// Time alone would fail work that is merely slow (a fault that swaps pages in, on a loaded or
/// debug kernel, can take longer than the bound, and an invalidation meanwhile undoes it once);
/// tries alone would give up at once on invalidations that come quickly but end.
struct Patience {
    since: Instant<Monotonic>,
    tries: u32,
}

impl Patience {
    fn new() -> Self {
        Self {
            since: Instant::<Monotonic>::now(),
            tries: 0,
        }
    }

    /// Records progress: the bound starts again.
    fn progress(&mut self) {
        *self = Self::new();
    }

    /// Records a failed try; returns whether to give up.
    fn exhausted(&mut self) -> bool {
        self.tries = self.tries.saturating_add(1);
        self.tries >= RETRY_TRIES && self.since.elapsed().as_millis() > i64::from(RETRY_MS)
    }
}

/// Clears bits `first..=last` of `bits`.
fn clear_bits(bits: &mut BitmapVec, first: usize, last: usize) {
    let mut at = first;
    while let Some(i) = bits.next_bit(at) {
        if i > last {
            break;
        }
        bits.clear_bit(i);
        at = i + 1;
    }
}

/// Whether bits `first..=last` of `bits` are all set.
fn all_set(bits: &BitmapVec, first: usize, last: usize) -> bool {
    bits.next_zero_bit(first).is_none_or(|i| i > last)
}

/// How many of bits `first..=last` of `bits` are clear.
fn count_clear(bits: &BitmapVec, first: usize, last: usize) -> usize {
    let mut clear = 0;
    let mut at = first;
    while let Some(i) = bits.next_zero_bit(at) {
        if i > last {
            break;
        }
        clear += 1;
        at = i + 1;
    }
    clear
}

impl Buffer {
    /// Registers `[addr, addr + len)` of `mm`, the current process' address space (`addr`
    /// untagged), with its mirror for `dev`, all clear.
    ///
    /// The range is only watched here; [`Buffer::prefault`] then looks it up.
    pub(crate) fn new(
        dev: &Device<Bound>,
        mm: &MmWithUser,
        ring: &Arc<Ring>,
        handle: u32,
        addr: usize,
        len: usize,
        access: Access,
    ) -> Result<RegisteredBuffer> {
        let base = addr & !(PAGE_SIZE - 1);
        let pages = (addr + len - base).div_ceil(PAGE_SIZE);
        let map = HmmDmaMap::new(dev, pages)?;
        let current = BitmapVec::new(pages, GFP_KERNEL_ACCOUNT)?;
        let gens = KVVec::from_elem(0, pages, GFP_KERNEL_ACCOUNT)?;
        let users = Arc::pin_init(
            pin_init!(Users {
                count <- new_spinlock!(UserCount {
                    count: 0,
                    closed: false,
                }),
                none <- new_condvar!(),
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        let buffer = Arc::pin_init(
            IntervalNotifier::new(
                mm,
                addr,
                len,
                try_pin_init!(Buffer {
                    handle,
                    addr,
                    len,
                    base,
                    access,
                    owner: ARef::from(&**mm),
                    ring: ring.clone(),
                    // INVARIANT: Nothing is set, current, or accessed.
                    state <- new_mutex!(MirrorState {
                        map,
                        current,
                        gens,
                        active: 0,
                        idle_waiters: 0,
                        retired: false,
                        mapped: 0,
                    }),
                    idle <- new_condvar!(),
                    users,
                }),
            ),
            GFP_KERNEL_ACCOUNT,
        )?;
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

    /// Whether the device may write the buffer.
    pub(crate) fn writable(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// The entries of the pages that `[start, end)` overlaps, clamped to the buffer.
    fn overlap(&self, start: usize, end: usize) -> (usize, usize) {
        let first = start.max(self.base);
        let last = (end - 1).min(self.last());
        (
            page_index(self.base, first),
            page_index(self.base, last.max(first)),
        )
    }

    /// The entries of `[offset, offset + len)` of the buffer, counted from its first byte.
    fn entries(&self, offset: usize, len: usize) -> Result<(usize, usize)> {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if len == 0 || end > self.len {
            return Err(EINVAL);
        }
        let start = self.addr + offset;
        Ok((
            page_index(self.base, start),
            page_index(self.base, start + len - 1),
        ))
    }

    /// Looks up the pages of entries `first..=last` and installs them, a window at a time.
    /// A page invalidated after its lookup is left out; the caller looks again.
    ///
    /// Must be called without a lock that an invalidation waits for, and without an access:
    /// a fault may reclaim memory, and reclaim may invalidate this or another buffer.
    fn fault_in(
        notifier: &IntervalNotifier<Self>,
        first: usize,
        last: usize,
        context: FaultContext,
    ) -> Result {
        let buffer = notifier.data();
        // The address space may be exiting; then there is nothing to run the command on.
        let mm = buffer.owner.mmget_not_zero().ok_or(ECANCELED)?;
        // Dropping the last user reference from an engine would tear the address space down
        // there.
        let mm = MmWithUser::into_mmput_async(mm);
        let write = buffer.writable();
        let mut pfns = [HmmPfn::NONE; FAULT_WINDOW];
        let mut gens = [0u32; FAULT_WINDOW];
        // Per window: a big buffer takes longer than one bound to fault in, and only a window
        // that makes no progress is given up on.
        let mut patience = Patience::new();
        let mut at = first;
        while at <= last {
            let n = (last + 1 - at).min(FAULT_WINDOW);
            let start = buffer.base + at * PAGE_SIZE;
            // Taken before the lookup: an invalidation that has run its callback by then is
            // finished before the lookup starts, since looking up waits for those in progress.
            let current = {
                let state = buffer.state.lock();
                if state.retired {
                    return Err(ECANCELED);
                }
                for (snapshot, gen) in gens.iter_mut().zip(&state.gens[at..at + n]) {
                    *snapshot = *gen;
                }
                all_set(&state.current, at, at + n - 1)
            };
            // Looking again at what is current costs a walk of the page tables, and on a
            // second pass (see `begin_access`) most windows are.
            if current {
                at += n;
                continue;
            }
            let looked_up = match context {
                // The lookup retries invalidations itself, for a share of the bound: the rest
                // of the bound's tries are made here.
                FaultContext::Owner => notifier.hmm_fault_unlocked(
                    &mm,
                    start,
                    &mut pfns[..n],
                    write,
                    RETRY_MS / RETRY_TRIES,
                ),
                FaultContext::Engine => {
                    let seq = notifier.read_begin();
                    notifier
                        .hmm_fault(&mm, seq, start, &mut pfns[..n], write)
                        .map(|()| seq)
                }
            };
            let seq = match looked_up {
                Ok(seq) => seq,
                Err(e) if e == EBUSY && patience.exhausted() => return Err(EAGAIN),
                Err(e) if e == EBUSY => continue,
                // Mapped, but not with the access the buffer needs.
                Err(e) if e == EPERM => return Err(EFAULT),
                Err(e) => return Err(e),
            };
            let mut state = buffer.state.lock();
            if state.retired {
                return Err(ECANCELED);
            }
            // Nothing of the buffer changed, or at least not these pages.
            let all_fresh = !notifier.read_retry(seq);
            let mut newly: isize = 0;
            let installed = pfns[..n]
                .iter()
                .enumerate()
                .try_for_each(|(i, pfn)| -> Result {
                    let idx = at + i;
                    if !all_fresh && state.gens[idx] != gens[i] {
                        return Ok(());
                    }
                    let was_set = state.map.entry(idx).is_some();
                    // SAFETY: The lookup is current for this page: no invalidation started since
                    // `seq`, or none of this page since `gens[i]` was taken (each bumps it under
                    // this lock before it changes the page), checked under the lock that every
                    // invalidation of this buffer takes. The entry is cleared by the invalidation
                    // that may take the page away, under the same lock, before it returns
                    // (`invalidate` above), or by `retire`.
                    let set = unsafe { state.map.set(idx, *pfn) };
                    match (was_set, set.is_ok()) {
                        (false, true) => newly += 1,
                        // A failed `set` leaves the entry clear.
                        (true, false) => newly -= 1,
                        _ => {}
                    }
                    set?;
                    // INVARIANT: Installed under the protocol, and set.
                    state.current.set_bit(idx);
                    Ok(())
                });
            state.mapped = state.mapped.wrapping_add_signed(newly);
            drop(state);
            if newly != 0 {
                buffer.ring.update_status(|status| {
                    status.mapped_pages = status.mapped_pages.wrapping_add_signed(newly as i64)
                });
            }
            installed?;
            at += n;
            patience.progress();
        }
        Ok(())
    }

    /// Makes sure `[offset, offset + len)` of the buffer is current, faulting it in from the
    /// owner's system call, so that the engine usually finds it so. Fails like a command would:
    /// `EFAULT` if nothing with the buffer's access is mapped there.
    pub(crate) fn prefault(notifier: &IntervalNotifier<Self>, offset: usize, len: usize) -> Result {
        let buffer = notifier.data();
        let (first, last) = buffer.entries(offset, len)?;
        {
            let state = buffer.state.lock();
            if state.retired {
                return Err(ECANCELED);
            }
            if all_set(&state.current, first, last) {
                return Ok(());
            }
        }
        Self::fault_in(notifier, first, last, FaultContext::Owner)
    }

    /// Takes an access to `[offset, offset + len)` of the buffer for the device or the CPU,
    /// faulting in what is not current. While it lives, invalidations of the buffer wait.
    pub(crate) fn begin_access(
        notifier: &IntervalNotifier<Self>,
        offset: usize,
        len: usize,
        write: bool,
    ) -> Result<BufferAccess<'_>> {
        let buffer = notifier.data();
        if write && !buffer.writable() {
            return Err(EACCES);
        }
        let (first, last) = buffer.entries(offset, len)?;
        // Progress is a new low of pages not current: reclaim may take back some of what a pass
        // faulted in, while the pass gains more.
        let mut patience = Patience::new();
        let started = patience.since;
        let mut fewest = usize::MAX;
        loop {
            let missing = {
                let mut state = buffer.state.lock();
                if state.retired {
                    return Err(ECANCELED);
                }
                if all_set(&state.current, first, last) {
                    // INVARIANT: Counted here, uncounted when the access is dropped.
                    state.active += 1;
                    return Ok(BufferAccess {
                        buffer,
                        first,
                        last,
                        start: buffer.addr + offset - (buffer.base + first * PAGE_SIZE),
                        len,
                        write,
                    });
                }
                count_clear(&state.current, first, last)
            };
            if missing < fewest {
                fewest = missing;
                patience.progress();
            } else if patience.exhausted() {
                return Err(EAGAIN);
            }
            if started.elapsed().as_millis() > ACCESS_MAX_MS {
                return Err(EAGAIN);
            }
            Self::fault_in(notifier, first, last, FaultContext::Engine)?;
        }
    }

    /// Stops mirroring the buffer, for unregistering it or releasing its queue: clears every
    /// entry, and refuses to install any again. Must be called while the device is bound.
    pub(crate) fn retire(&self) {
        let mut state = self.state.lock();
        Self::wait_idle(self, &mut state);
        // INVARIANT: Nothing is set once retired, and nothing is installed after.
        state.retired = true;
        let len = state.map.len();
        clear_bits(&mut state.current, 0, len - 1);
        for i in 0..len {
            state.map.clear(i);
        }
        let unmapped = core::mem::take(&mut state.mapped) as u64;
        drop(state);
        self.ring.update_status(|status| {
            status.mapped_pages = status.mapped_pages.saturating_sub(unmapped);
            status.buffers = status.buffers.saturating_sub(1);
        });
    }

    /// Waits, with the buffer's lock, until no access of the buffer is in progress.
    fn wait_idle(buffer: &Buffer, state: &mut Guard<'_, MirrorState, MutexBackend>) {
        while state.active > 0 {
            state.idle_waiters += 1;
            buffer.idle.wait(state);
            state.idle_waiters -= 1;
        }
    }

    /// Starts unregistering the buffer: commands no longer find it. Returns whether it had
    /// started already.
    pub(crate) fn start_unregistering(&self) -> bool {
        self.users.close()
    }

    /// Waits until no command refers to the buffer.
    pub(crate) fn wait_unused(&self) {
        self.users.wait_none();
    }

    /// How many DMA-contiguous segments the mapped pages of the buffer make, and how many
    /// pages are mapped; for debugfs.
    pub(crate) fn segments(&self) -> (usize, usize, bool) {
        let state = self.state.lock();
        let streaming = state.map.is_streaming();
        let mut segments = 0;
        let mut next: Option<DmaAddress> = None;
        for i in 0..state.map.len() {
            match state.map.dma_address(i) {
                Some(addr) => {
                    if next != Some(addr) {
                        segments += 1;
                    }
                    next = Some(addr + PAGE_SIZE as DmaAddress);
                }
                None => next = None,
            }
        }
        (segments, state.mapped, streaming)
    }
}

/// An access to part of a registered buffer (see [`Buffer::begin_access`]). While it lives, the
/// pages it covers stay current, so the device and the CPU may use them.
///
/// # Invariants
///
/// It is counted in its buffer's `active`, and entries `first..=last` are set and current; no
/// invalidation clears them before it is dropped, since each one waits for `active` to fall.
pub(crate) struct BufferAccess<'a> {
    buffer: &'a Buffer,
    first: usize,
    last: usize,
    /// Where the range starts in its first page.
    start: usize,
    len: usize,
    write: bool,
}

impl BufferAccess<'_> {
    /// Calls `f(page_index, offset_in_page, offset_in_range, len)` for each piece of the range
    /// that lies in one page.
    fn for_each_piece(&self, mut f: impl FnMut(usize, usize, usize, usize) -> Result) -> Result {
        let mut done = 0;
        let mut idx = self.first;
        let mut in_page = self.start;
        while done < self.len {
            let n = (PAGE_SIZE - in_page).min(self.len - done);
            f(idx, in_page, done, n)?;
            done += n;
            idx += 1;
            in_page = 0;
        }
        Ok(())
    }

    /// Calls `f(dma_address, len)` for each DMA-contiguous piece of the range, in order. The
    /// device may use each piece until `f` returns for it.
    ///
    /// Allocates nothing: an allocation may reclaim, and reclaim may invalidate this buffer,
    /// which would wait for this very access.
    pub(crate) fn for_each_dma_range(
        &self,
        mut f: impl FnMut(DmaAddress, usize) -> Result,
    ) -> Result {
        let dir = if self.write {
            DataDirection::FromDevice
        } else {
            DataDirection::ToDevice
        };
        if self.buffer.state.lock().map.is_streaming() {
            // Each piece is mapped, handed over and unmapped on its own: the unmapping is when a
            // bounce buffer reaches the page. The lock keeps the map borrowed meanwhile, which
            // an invalidation would wait for anyway, as it waits for this access.
            return self.for_each_piece(|idx, in_page, _, n| {
                let state = self.buffer.state.lock();
                let access = state.map.device_access(idx, in_page, n, dir)?;
                f(access.dma_address(), n)
            });
        }
        // Long-lived mappings: merge pieces that are contiguous for the device, which they all
        // are behind an IOMMU that mapped the buffer in one IOVA range. The addresses are
        // read under the lock; the device works without it.
        let mut pending: Option<(DmaAddress, usize)> = None;
        self.for_each_piece(|idx, in_page, _, n| {
            let page = self
                .buffer
                .state
                .lock()
                .map
                .dma_address(idx)
                .ok_or(EFAULT)?;
            let addr = page + in_page as DmaAddress;
            pending = match pending {
                Some((start, len)) if start + len as DmaAddress == addr => Some((start, len + n)),
                Some((start, len)) => {
                    f(start, len)?;
                    Some((addr, n))
                }
                None => Some((addr, n)),
            };
            Ok(())
        })?;
        match pending {
            Some((start, len)) => f(start, len),
            None => Ok(()),
        }
    }

    /// Copies `dst.len()` bytes at `offset` in the range into `dst`, with the CPU.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> Result {
        let state = self.buffer.state.lock();
        self.for_each_piece(|idx, in_page, done, n| {
            let (from, to) = clip(done, n, offset, dst.len());
            if from < to {
                state.map.read(
                    idx,
                    in_page + from - done,
                    &mut dst[from - offset..to - offset],
                )?;
            }
            Ok(())
        })
    }

    /// Copies `src` to `offset` in the range, with the CPU.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> Result {
        if !self.write {
            return Err(EPERM);
        }
        let state = self.buffer.state.lock();
        self.for_each_piece(|idx, in_page, done, n| {
            let (from, to) = clip(done, n, offset, src.len());
            if from < to {
                state
                    .map
                    .write(idx, in_page + from - done, &src[from - offset..to - offset])?;
            }
            Ok(())
        })
    }
}

/// The part of the piece `[done, done + n)` that `[offset, offset + len)` covers.
fn clip(done: usize, n: usize, offset: usize, len: usize) -> (usize, usize) {
    (done.max(offset), (done + n).min(offset + len))
}

impl Drop for BufferAccess<'_> {
    fn drop(&mut self) {
        let mut state = self.buffer.state.lock();
        if self.write {
            // The device or the CPU wrote through the map, unseen by the page tables.
            for idx in self.first..=self.last {
                state.map.mark_dirty(idx);
            }
        }
        state.active -= 1;
        if state.active == 0 && state.idle_waiters > 0 {
            self.buffer.idle.notify_all();
        }
    }
}

/// A command's reference to a registered buffer: counts it as a user until dropped, so that
/// `UNREGISTER` can wait for it.
///
/// # Invariants
///
/// `users` is the buffer's, and counts this reference until it is dropped.
pub(crate) struct BufferRef {
    /// Dropped before the user is counted out: `UNREGISTER` still holds its reference then, so
    /// this is never the last one while it waits.
    buffer: Option<RegisteredBuffer>,
    users: Arc<Users>,
}

impl BufferRef {
    /// A reference to `buffer`, counted as a user; `None` once `UNREGISTER` has started on it.
    pub(crate) fn try_new(buffer: RegisteredBuffer) -> Option<Self> {
        let users = buffer.data().users.clone();
        if !users.try_get() {
            return None;
        }
        // INVARIANT: Counted just now.
        Some(Self {
            buffer: Some(buffer),
            users,
        })
    }

    /// The buffer's notifier.
    pub(crate) fn notifier(&self) -> Option<&IntervalNotifier<Buffer>> {
        self.buffer.as_deref()
    }
}

impl Drop for BufferRef {
    fn drop(&mut self) {
        drop(self.buffer.take());
        self.users.put();
    }
}

/// A user range pinned for one command, and mapped for the device if the device reaches it.
///
/// Dropping it unmaps the pages from the device, then unpins them, then takes them off its
/// queue's count of pinned pages, in the order of the fields.
pub(crate) struct Pinned {
    /// Declared first: unmapped before the pages are unpinned.
    sgt: Option<Pin<KBox<PinnedTable>>>,
    pages: Arc<PinnedPages>,
    /// Declared last: the queue's count falls only once the pages are unpinned and no longer
    /// charged to `RLIMIT_MEMLOCK`, so user space that sees it fall can pin them again.
    _counted: PinnedCount,
}

/// The DMA mapping of a command's pinned pages.
type PinnedTable = SGTable<Owned<Arc<PinnedPages>>>;

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

impl Pinned {
    /// Pins `[addr, addr + len)` (untagged) of the current process, for writing if `write`.
    ///
    /// Fails with `EFAULT` if the range cannot be pinned with that access, and `ENOMEM` for
    /// `RLIMIT_MEMLOCK`. The pin may wait for a page fault, killably: the caller holds no lock
    /// that removal needs.
    pub(crate) fn pin(ring: &Arc<Ring>, addr: usize, len: usize, write: bool) -> Result<Self> {
        let max_pages = usize::try_from(uapi::MAX_BUFFER_SIZE)? / PAGE_SIZE + 1;
        let access = if write {
            PinAccess::ReadWrite
        } else {
            PinAccess::ReadOnly
        };
        let pages = PinnedPages::new(UserPtr::from_addr(addr), len, access, max_pages)
            // A shared file mapping that GUP will not pin for writing is memory the command
            // cannot have, like any other.
            .map_err(|e| if e == EOPNOTSUPP { EFAULT } else { e })?;
        let count = pages.page_count() as u64;
        let pages = Arc::new(pages, GFP_KERNEL_ACCOUNT)?;
        ring.update_status(|status| status.pinned_pages += count);
        Ok(Self {
            sgt: None,
            pages,
            _counted: PinnedCount {
                ring: ring.clone(),
                count,
            },
        })
    }

    /// Maps the pages for `dev`, which reads them (or writes them if the pin is for writing).
    /// The mapping is made once, when the command is taken, and goes with the command.
    pub(crate) fn map(&mut self, dev: &Device<Bound>, write: bool) -> Result {
        let dir = if write {
            DataDirection::FromDevice
        } else {
            DataDirection::ToDevice
        };
        self.sgt = Some(KBox::pin_init(
            SGTable::new(dev, self.pages.clone(), dir, GFP_KERNEL_ACCOUNT),
            GFP_KERNEL_ACCOUNT,
        )?);
        Ok(())
    }

    /// Calls `f(dma_address, len)` for each DMA-contiguous piece of `[offset, offset + len)`,
    /// in order. `EINVAL` if the range does not fit or the pages are not mapped.
    pub(crate) fn for_each_dma_range(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(DmaAddress, usize) -> Result,
    ) -> Result {
        let sgt = self.sgt.as_ref().ok_or(EINVAL)?;
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.pages.size() {
            return Err(EINVAL);
        }
        // The table starts at the range's first byte, not at its first page's.
        let mut pos = 0usize;
        for entry in sgt.iter() {
            let seg_len = usize::try_from(entry.dma_len())?;
            let seg_end = pos + seg_len;
            if seg_end > offset && pos < end {
                let from = offset.max(pos);
                let to = end.min(seg_end);
                f(entry.dma_address() + (from - pos) as DmaAddress, to - from)?;
            }
            pos = seg_end;
            if pos >= end {
                return Ok(());
            }
        }
        Err(EINVAL)
    }

    /// Copies from `offset` in the range into `dst`, with the CPU. `EPERM` for pages mapped for
    /// the device: a bounce buffer would overwrite what the CPU did when it is unmapped.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> Result {
        if self.sgt.is_some() {
            return Err(EPERM);
        }
        self.pages.copy_from(offset, dst)
    }

    /// Copies `src` to `offset` in the range, with the CPU (see [`Pinned::read`]).
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> Result {
        if self.sgt.is_some() {
            return Err(EPERM);
        }
        self.pages.copy_to(offset, src)
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

    /// The buffer with `handle`.
    pub(crate) fn get(&self, handle: u32) -> Option<&RegisteredBuffer> {
        self.by_last.get(self.by_handle.get(&handle)?)
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
        let by_handle = RBTreeNode::new(handle, last, GFP_KERNEL_ACCOUNT)?;
        let by_last = RBTreeNode::new(last, buffer, GFP_KERNEL_ACCOUNT)?;
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

    /// Calls `f` on each buffer, in address order, until it fails.
    pub(crate) fn for_each<E>(
        &self,
        mut f: impl FnMut(&Buffer) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        self.by_last
            .values()
            .try_for_each(|buffer| f(buffer.data()))
    }

    /// Removes and returns any one buffer. Needs no memory, unlike collecting them all.
    pub(crate) fn pop(&mut self) -> Option<RegisteredBuffer> {
        let handle = *self.by_handle.iter().next()?.0;
        self.remove(handle)
    }
}
