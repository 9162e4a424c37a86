// SPDX-License-Identifier: GPL-2.0

//! Interval notifiers: learning that a range of a process address space changes.
//!
//! A driver that keeps pages of a process pinned or mapped for a device must stop using them
//! when the process unmaps, remaps or otherwise invalidates that memory. An [`IntervalNotifier`]
//! watches one range of an address space and calls [`IntervalNotifierOps::invalidate`] before
//! any part of it changes. Readers use the sequence protocol of the C API: take
//! [`IntervalNotifier::read_begin`], look up pages, then, under the lock that the invalidation
//! also takes, check [`IntervalNotifier::read_retry`] before publishing what they found.
//!
//! C header: [`include/linux/mmu_notifier.h`](srctree/include/linux/mmu_notifier.h).

use crate::{
    bindings,
    container_of,
    error::to_result,
    mm::MmWithUser,
    prelude::*,
    types::Opaque, //
};
use core::marker::PhantomData;

/// Why a range is invalidated (`enum mmu_notifier_event`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The range is unmapped, or moved away by `mremap()`.
    Unmap,
    /// Page table entries are cleared, for example by `madvise(MADV_DONTNEED)` or a
    /// copy-on-write break.
    Clear,
    /// The protection of the VMA changes.
    ProtectionVma,
    /// The protection of some pages changes.
    ProtectionPage,
    /// Soft-dirty tracking is reset.
    SoftDirty,
    /// The whole address space is torn down.
    Release,
    /// Pages are migrated.
    Migrate,
    /// Pages are made exclusive to a device.
    Exclusive,
    /// An event this abstraction does not know yet.
    Other(u32),
}

impl Event {
    fn from_raw(event: bindings::mmu_notifier_event) -> Self {
        match event {
            bindings::mmu_notifier_event_MMU_NOTIFY_UNMAP => Self::Unmap,
            bindings::mmu_notifier_event_MMU_NOTIFY_CLEAR => Self::Clear,
            bindings::mmu_notifier_event_MMU_NOTIFY_PROTECTION_VMA => Self::ProtectionVma,
            bindings::mmu_notifier_event_MMU_NOTIFY_PROTECTION_PAGE => Self::ProtectionPage,
            bindings::mmu_notifier_event_MMU_NOTIFY_SOFT_DIRTY => Self::SoftDirty,
            bindings::mmu_notifier_event_MMU_NOTIFY_RELEASE => Self::Release,
            bindings::mmu_notifier_event_MMU_NOTIFY_MIGRATE => Self::Migrate,
            bindings::mmu_notifier_event_MMU_NOTIFY_EXCLUSIVE => Self::Exclusive,
            other => Self::Other(other),
        }
    }
}

/// One invalidation of (part of) a notifier's range.
///
/// # Invariants
///
/// `range` is the `struct mmu_notifier_range` that the C side passed to the callback, valid for
/// `'a`, and `cur_seq` is the sequence number it passed with it.
pub struct Invalidation<'a> {
    range: &'a bindings::mmu_notifier_range,
    cur_seq: usize,
}

impl Invalidation<'_> {
    /// The first address being invalidated. It may lie before the notifier's range.
    pub fn start(&self) -> usize {
        self.range.start
    }

    /// The end (exclusive) of the addresses being invalidated. It may lie after the notifier's
    /// range.
    pub fn end(&self) -> usize {
        self.range.end
    }

    /// Why the range is invalidated.
    pub fn event(&self) -> Event {
        Event::from_raw(self.range.event)
    }

    /// Whether the callback may sleep. When it may not, it may instead refuse with `false`.
    pub fn may_block(&self) -> bool {
        // SAFETY: By the type invariants, `range` is a valid range.
        unsafe { bindings::mmu_notifier_range_blockable(self.range) }
    }
}

/// The callbacks of an [`IntervalNotifier`].
pub trait IntervalNotifierOps: Send + Sync + Sized {
    /// Called before the pages of `inv`'s range (which overlaps the notifier's) change.
    ///
    /// When this returns `true`, the memory may change or be freed: anything that used the old
    /// pages, a device included, must be done with them. An implementation calls
    /// [`IntervalNotifier::set_seq`] with `inv` under the lock that its readers hold when they
    /// call [`IntervalNotifier::read_retry`].
    ///
    /// If [`Invalidation::may_block`] is false, it must not sleep; it may then return `false`
    /// to make the caller try again where it may block. Returning `false` when it may block is
    /// a bug that the kernel warns about.
    fn invalidate(notifier: &IntervalNotifier<Self>, inv: &Invalidation<'_>) -> bool;
}

/// A read-side sequence number, from [`IntervalNotifier::read_begin`].
#[derive(Copy, Clone, Debug)]
pub struct ReadSeq(usize);

impl ReadSeq {
    /// The number, for the C side.
    pub(crate) fn raw(self) -> usize {
        self.0
    }

    /// A number that the C side returned for the notifier, as `hmm_range_fault()` updates it.
    pub(crate) fn from_raw(seq: usize) -> Self {
        Self(seq)
    }
}

/// A notifier on one range of an address space, carrying data of type `T`.
///
/// It is inserted when initialised and removed when dropped; once dropped, its callback neither
/// runs nor will run. It holds a reference to the `mm_struct` (not to its users) until then.
///
/// # Invariants
///
/// `sub` was inserted by `mmu_interval_notifier_insert()` with the operations of
/// `VTable<T>`, and is removed only in `drop`.
#[pin_data(PinnedDrop)]
pub struct IntervalNotifier<T: IntervalNotifierOps> {
    #[pin]
    data: T,
    #[pin]
    sub: Opaque<bindings::mmu_interval_notifier>,
}

// SAFETY: The C side may call the callback from any thread, and `T` is `Send + Sync`.
unsafe impl<T: IntervalNotifierOps> Send for IntervalNotifier<T> {}
// SAFETY: `&self` methods only read `T` and use C functions that synchronise internally.
unsafe impl<T: IntervalNotifierOps> Sync for IntervalNotifier<T> {}

impl<T: IntervalNotifierOps> IntervalNotifier<T> {
    /// Watches `[start, start + length)` of `mm`, with `data` for the callback.
    ///
    /// It may take `mm`'s mmap lock, so the caller must not hold it. `data` is initialised
    /// before the notifier is inserted, as the callback may run at once.
    pub fn new<'a>(
        mm: &'a MmWithUser,
        start: usize,
        length: usize,
        data: impl PinInit<T, Error> + 'a,
    ) -> impl PinInit<Self, Error> + 'a
    where
        T: 'a,
    {
        try_pin_init!(Self {
            data <- data,
            sub <- Opaque::try_ffi_init(move |slot: *mut bindings::mmu_interval_notifier| {
                // SAFETY: `slot` is pinned memory that outlives the notifier: `drop` removes it
                // before the memory goes. `mm` has users, as insertion requires, and the vtable
                // is static.
                // INVARIANT: On success the notifier is inserted with `VTable<T>`.
                to_result(unsafe {
                    bindings::mmu_interval_notifier_insert(
                        slot,
                        mm.as_raw(),
                        start,
                        length,
                        VTable::<T>::build(),
                    )
                })
            }),
        })
    }

    /// Starts a read-side critical section: waits for invalidations of the range that are in
    /// progress, and returns the sequence number to check with [`IntervalNotifier::read_retry`].
    pub fn read_begin(&self) -> ReadSeq {
        // SAFETY: By the type invariants, `sub` is inserted.
        ReadSeq(unsafe { bindings::mmu_interval_read_begin(self.sub.get()) })
    }

    /// Whether an invalidation has started since `seq` was taken, so that what was looked up
    /// since may be stale. Call it under the lock that the callback holds around
    /// [`IntervalNotifier::set_seq`] for the answer to hold until that lock is dropped.
    pub fn read_retry(&self, seq: ReadSeq) -> bool {
        // SAFETY: By the type invariants, `sub` is inserted.
        unsafe { bindings::mmu_interval_read_retry(self.sub.get(), seq.0) }
    }

    /// Records, from the callback, that `inv` has started, so that readers retry.
    pub fn set_seq(&self, inv: &Invalidation<'_>) {
        // SAFETY: By the type invariants, `sub` is inserted; `inv` carries the sequence number
        // the C side passed to the callback.
        unsafe { bindings::mmu_interval_set_seq(self.sub.get(), inv.cur_seq) };
    }

    /// The notifier's data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The first and the last byte of the watched range.
    pub fn range(&self) -> (usize, usize) {
        // SAFETY: By the type invariants, `sub` is inserted; its interval does not change until
        // it is removed.
        unsafe {
            let tree = &(*self.sub.get()).interval_tree;
            (tree.start, tree.last)
        }
    }

    /// The `struct mmu_interval_notifier`, inserted (type invariants).
    pub(crate) fn as_raw(&self) -> *mut bindings::mmu_interval_notifier {
        self.sub.get()
    }

    /// The `struct mm_struct` the notifier watches.
    pub(crate) fn mm_raw(&self) -> *mut bindings::mm_struct {
        // SAFETY: By the type invariants, `sub` is inserted, which set `mm` for good.
        unsafe { (*self.sub.get()).mm }
    }
}

#[pinned_drop]
impl<T: IntervalNotifierOps> PinnedDrop for IntervalNotifier<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants, `sub` is inserted, and this is not called from the
        // callback (which only gets `&Self`). Once this returns the callback no longer runs.
        unsafe { bindings::mmu_interval_notifier_remove(self.sub.get()) };
    }
}

/// The `mmu_interval_notifier_ops` of notifiers with data `T`.
struct VTable<T>(PhantomData<T>);

impl<T: IntervalNotifierOps> VTable<T> {
    /// # Safety
    ///
    /// `sub` is the `sub` field of an inserted `IntervalNotifier<T>`, and `range` and `cur_seq`
    /// are what the C side passes with an invalidation.
    unsafe extern "C" fn invalidate(
        sub: *mut bindings::mmu_interval_notifier,
        range: *const bindings::mmu_notifier_range,
        cur_seq: usize,
    ) -> bool {
        // SAFETY: The notifier is alive while it is inserted, and removal waits for callbacks.
        let notifier = unsafe { &*container_of!(Opaque::cast_from(sub), IntervalNotifier<T>, sub) };
        // INVARIANT: `range` is valid for the duration of the callback.
        let inv = Invalidation {
            // SAFETY: The C side passes a valid range.
            range: unsafe { &*range },
            cur_seq,
        };
        T::invalidate(notifier, &inv)
    }

    const VTABLE: bindings::mmu_interval_notifier_ops = bindings::mmu_interval_notifier_ops {
        invalidate: Some(Self::invalidate),
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::mmu_interval_notifier_ops {
        &Self::VTABLE
    }
}

#[kunit_tests(rust_kernel_mm_interval_notifier)]
mod tests {
    use super::*;
    use crate::{
        page::PAGE_SIZE,
        sync::{atomic::Atomic, atomic::Relaxed, new_spinlock, SpinLock},
    };

    /// Records what the notifier was told.
    #[pin_data]
    struct Recorder {
        /// Guards `set_seq` against readers, as a driver's lock would.
        #[pin]
        lock: SpinLock<()>,
        calls: Atomic<u32>,
        unmaps: Atomic<u32>,
        clears: Atomic<u32>,
        outside: Atomic<u32>,
        start: usize,
        end: usize,
    }

    impl IntervalNotifierOps for Recorder {
        fn invalidate(notifier: &IntervalNotifier<Self>, inv: &Invalidation<'_>) -> bool {
            let me = notifier.data();
            let _guard = me.lock.lock();
            notifier.set_seq(inv);
            me.calls.fetch_add(1, Relaxed);
            match inv.event() {
                Event::Unmap => me.unmaps.fetch_add(1, Relaxed),
                Event::Clear => me.clears.fetch_add(1, Relaxed),
                _ => 0,
            };
            if inv.end() <= me.start || inv.start() >= me.end {
                me.outside.fetch_add(1, Relaxed);
            }
            true
        }
    }

    /// Maps `pages` anonymous pages into the test's own address space, which KUnit creates
    /// and tears down with the test.
    fn map_anonymous(pages: usize) -> Result<usize> {
        // SAFETY: Called from a KUnit test, which `kunit_get_current_test()` returns.
        let addr = unsafe {
            bindings::kunit_vm_mmap(
                bindings::kunit_get_current_test(),
                core::ptr::null_mut(),
                0,
                pages * PAGE_SIZE,
                (bindings::PROT_READ | bindings::PROT_WRITE) as usize,
                (bindings::MAP_ANONYMOUS | bindings::MAP_PRIVATE) as usize,
                0,
            )
        };
        // KUnit returns 0 when the mapping failed.
        if addr == 0 {
            return Err(ENOMEM);
        }
        Ok(addr)
    }

    fn new_notifier(
        mm: &MmWithUser,
        start: usize,
        len: usize,
    ) -> Result<Pin<KBox<IntervalNotifier<Recorder>>>> {
        let end = start + len;
        KBox::pin_init(
            IntervalNotifier::new(
                mm,
                start,
                len,
                try_pin_init!(Recorder {
                    lock <- new_spinlock!(()),
                    calls: Atomic::new(0),
                    unmaps: Atomic::new(0),
                    clears: Atomic::new(0),
                    outside: Atomic::new(0),
                    start,
                    end,
                }),
            ),
            GFP_KERNEL,
        )
    }

    #[test]
    fn munmap_inside_invalidates_and_retries_readers() -> Result {
        let addr = map_anonymous(4)?;
        let task = crate::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = new_notifier(mm, addr + PAGE_SIZE, 2 * PAGE_SIZE)?;

        let seq = n.read_begin();
        assert!(!n.read_retry(seq));

        // Outside the watched range: no callback.
        // SAFETY: The test owns the mapping at `addr`.
        to_result(unsafe { bindings::vm_munmap(addr, PAGE_SIZE) })?;
        assert_eq!(n.data().calls.load(Relaxed), 0);
        assert!(!n.read_retry(seq));

        // Inside: one callback for an unmap, and readers must retry.
        // SAFETY: The test owns the mapping at `addr`.
        to_result(unsafe { bindings::vm_munmap(addr + 2 * PAGE_SIZE, PAGE_SIZE) })?;
        assert_eq!(n.data().calls.load(Relaxed), 1);
        assert_eq!(n.data().unmaps.load(Relaxed), 1);
        assert_eq!(n.data().outside.load(Relaxed), 0);
        assert!(n.read_retry(seq));

        // A new read section sees no invalidation in progress.
        let seq = n.read_begin();
        assert!(!n.read_retry(seq));
        Ok(())
    }

    #[test]
    fn madvise_dontneed_clears() -> Result {
        let addr = map_anonymous(2)?;
        let task = crate::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = new_notifier(mm, addr, 2 * PAGE_SIZE)?;
        let seq = n.read_begin();

        // SAFETY: The test owns the mapping, and `current->mm` is the one it is in.
        to_result(unsafe {
            bindings::do_madvise(mm.as_raw(), addr, PAGE_SIZE, bindings::MADV_DONTNEED as i32)
        })?;
        assert!(n.data().clears.load(Relaxed) >= 1);
        assert_eq!(n.data().unmaps.load(Relaxed), 0);
        assert!(n.read_retry(seq));
        Ok(())
    }

    #[test]
    fn dropped_notifier_is_not_called() -> Result {
        let addr = map_anonymous(1)?;
        let task = crate::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = new_notifier(mm, addr, PAGE_SIZE)?;
        drop(n);
        // The callback would touch freed memory if it were still inserted.
        // SAFETY: The test owns the mapping at `addr`.
        to_result(unsafe { bindings::vm_munmap(addr, PAGE_SIZE) })?;
        Ok(())
    }
}
