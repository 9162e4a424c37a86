// SPDX-License-Identifier: GPL-2.0

//! Long-term pinned user pages.
//!
//! A device that cannot use the process' page tables (no shared virtual addressing) can only
//! access a user buffer through the physical pages backing it. Those pages must then stay put for
//! as long as the device may access them: they are pinned with `FOLL_LONGTERM`, which migrates
//! them out of movable zones first and refuses memory that cannot stay pinned indefinitely, and
//! DMA-mapped. [`PinnedPages`] does the pinning, charges the pages to the owning process'
//! `RLIMIT_MEMLOCK` like RDMA's `ib_umem_get()` does, and undoes both when dropped. Its pages can
//! be DMA-mapped with [`SGTable::new`].
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)
//!
//! [`SGTable::new`]: crate::scatterlist::SGTable::new

use crate::{
    alloc::KVVec,
    bindings,
    error::{
        code::*,
        to_result,
        Result, //
    },
    ffi::c_int,
    mm::{
        Mm,
        MmWithUser, //
    },
    page::{
        page_align,
        AsPageIter,
        BorrowedPage,
        PAGE_MASK,
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    scatterlist::SGPageIter,
    sync::{
        aref::ARef,
        Arc, //
    },
    uaccess::UserPtr, //
};
use core::{
    mem::size_of,
    ptr::NonNull,
    slice, //
};

/// The access a device is given to pinned pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The device only reads the pages.
    ReadOnly,
    /// The device writes the pages, and may read them.
    ///
    /// The pages are pinned with `FOLL_WRITE`, which breaks copy-on-write sharing first so that
    /// the process sees what the device writes, and are marked dirty when unpinned.
    ReadWrite,
}

/// User pages pinned with `FOLL_LONGTERM` and charged to the process' `RLIMIT_MEMLOCK`.
///
/// [`PinnedPages::new`] pins the pages spanning a user address range of the current process, for
/// as long as the [`PinnedPages`] lives. The pages keep backing the range while the process does
/// not change its mapping; if it unmaps or remaps the range, the pinned pages no longer back it
/// but stay pinned, and allocated, until the [`PinnedPages`] is dropped. Drivers that need to
/// follow such changes use a notifier on the range.
///
/// The pinned pages are charged to the `pinned_vm` counter of the process' address space, which
/// is limited by `RLIMIT_MEMLOCK` unless the process has `CAP_IPC_LOCK`, and uncharged from the
/// same address space when the [`PinnedPages`] is dropped, which may happen in any task, also
/// after the process exited.
///
/// The pages can be read and written by the kernel with [`PinnedPages::copy_from`] and
/// [`PinnedPages::copy_to`], and DMA-mapped for a device by passing the [`PinnedPages`] (or an
/// [`Arc`] of it) to [`SGTable::new`], which maps exactly the pinned range, starting at
/// [`PinnedPages::offset`] in the first page.
///
/// Dropping a [`PinnedPages`] may sleep.
///
/// # Examples
///
/// ```
/// use kernel::{
///     mm::pin::{Access, PinnedPages},
///     uaccess::UserPtr,
/// };
///
/// /// Pins a buffer that the process passed in an ioctl, for the device to write.
/// fn pin_buffer(addr: UserPtr, len: usize) -> Result<PinnedPages> {
///     // Never pin more than 1 GiB for a single buffer.
///     PinnedPages::new(addr, len, Access::ReadWrite, (1 << 30) / kernel::page::PAGE_SIZE)
/// }
/// ```
///
/// [`SGTable::new`]: crate::scatterlist::SGTable::new
///
/// # Invariants
///
/// - Every entry of `pages` is a valid page pinned by `pin_user_pages_fast()`, with `FOLL_WRITE`
///   if `access` is [`Access::ReadWrite`], whose pin is owned by this object.
/// - Once [`PinnedPages::new`] returns it, `pages` holds the `page_count(addr, size)` pages
///   backing the user range `[addr, addr + size)` when it was pinned, in order, `size` is
///   non-zero, and `pages` never changes anymore.
/// - `charge` accounts for `page_count(addr, size)` pages.
pub struct PinnedPages {
    pages: KVVec<*mut bindings::page>,
    addr: usize,
    size: usize,
    access: Access,
    charge: MemlockCharge,
}

// SAFETY: The pinned pages may be accessed and unpinned, and the address space reference in
// `charge` dropped, from any task.
unsafe impl Send for PinnedPages {}

// SAFETY: A shared reference only gives access to the page array, which does not change after
// construction, and to copies out of the pages, which C code does and which may run concurrently.
unsafe impl Sync for PinnedPages {}

/// Returns the number of pages spanning the non-empty user range `[addr, addr + size)`, or
/// [`None`] if the range wraps around or ends in the last page of the address space.
fn page_count(addr: usize, size: usize) -> Option<usize> {
    let end = page_align(addr.checked_add(size)?)?;
    Some((end - (addr & PAGE_MASK)) >> PAGE_SHIFT)
}

impl PinnedPages {
    /// The most pages a [`PinnedPages`] can hold, whatever the caller's limit.
    ///
    /// The array of page pointers must fit in one `kvmalloc()` allocation, which is limited to
    /// `INT_MAX` bytes; this is 1 TiB of memory with 4 KiB pages.
    pub const MAX_PAGES: usize = i32::MAX as usize / size_of::<*mut bindings::page>();

    /// Pins the pages spanning the user range `[addr, addr + size)` of the current process.
    ///
    /// The range need not be page-aligned. It must be non-empty and must not wrap around, and the
    /// pages spanning it must be at most `max_pages` and at most [`PinnedPages::MAX_PAGES`];
    /// otherwise this returns [`EINVAL`].
    ///
    /// This must be called by the process (or a kernel thread using the address space) that owns
    /// the memory: it pins from `current->mm`, charges the pages to its `pinned_vm` counter and
    /// checks the current task's `RLIMIT_MEMLOCK` and `CAP_IPC_LOCK`, like `ib_umem_get()`. It
    /// returns [`EFAULT`] if the current task has no address space, and [`ENOMEM`] if the pages
    /// would exceed `RLIMIT_MEMLOCK` and the task lacks `CAP_IPC_LOCK`.
    ///
    /// Failures to pin are returned as `pin_user_pages_fast()` reports them, and [`EFAULT`] if it
    /// pins nothing. Pins of unmapped addresses, of mappings without the requested access, and
    /// of `VM_IO` or `VM_PFNMAP` mappings fail with [`EFAULT`].
    ///
    /// [`Access::ReadWrite`] pins of a shared, writable mapping of a file that needs dirty
    /// tracking, as the files of most filesystems do (through `page_mkwrite`, like even ramfs, or
    /// writeback), fail with [`EOPNOTSUPP`]: `FOLL_LONGTERM` refuses them in `check_vma_flags()`,
    /// as the filesystem would not see the device's writes, and this tells that refusal apart
    /// from a bad address. Anonymous memory and shmem, including memfds and shared anonymous
    /// mappings, can be pinned for writing, as can private file mappings, which are copied on
    /// write.
    ///
    /// On failure, any page pinned so far is unpinned and nothing remains charged.
    ///
    /// This may sleep.
    pub fn new(addr: UserPtr, size: usize, access: Access, max_pages: usize) -> Result<Self> {
        let addr = addr.as_const_ptr().addr();
        if size == 0 {
            return Err(EINVAL);
        }
        let count = page_count(addr, size).ok_or(EINVAL)?;
        if count > max_pages || count > Self::MAX_PAGES {
            return Err(EINVAL);
        }

        // `current!().mm()` is the address space `pin_user_pages_fast()` pins from.
        let charge = MemlockCharge::new(current!().mm().ok_or(EFAULT)?, count)?;
        let pages = KVVec::with_capacity(count, GFP_KERNEL)?;

        // INVARIANT: `pages` is empty and `charge` accounts for `count` pages. `pin()` fills
        // `pages`; if it fails, dropping `this` unpins the pages pinned so far and uncharges.
        let mut this = Self {
            pages,
            addr,
            size,
            access,
            charge,
        };
        match this.pin(count) {
            Err(e) if e == EFAULT && access == Access::ReadWrite => {
                // Unpin and uncharge before looking at the mappings.
                drop(this);
                let task = current!();
                let mm = task.mm().ok_or(EFAULT)?;
                if has_shared_file_mapping(mm, addr, addr + size) {
                    Err(EOPNOTSUPP)
                } else {
                    Err(EFAULT)
                }
            }
            Err(e) => Err(e),
            Ok(()) => Ok(this),
        }
    }

    /// Pins the pages backing the range until `self.pages` holds `count` pages.
    ///
    /// `pin_user_pages_fast()` may pin fewer pages than asked, for instance up to a hole in the
    /// range, so ask again for the rest until it is done or fails.
    fn pin(&mut self, count: usize) -> Result {
        let mut gup_flags = bindings::FOLL_LONGTERM;
        if self.access == Access::ReadWrite {
            gup_flags |= bindings::FOLL_WRITE;
        }
        let first = self.addr & PAGE_MASK;

        while self.pages.len() < count {
            let done = self.pages.len();
            // `count` is at most `MAX_PAGES`, so this does not fail.
            let nr_pages = c_int::try_from(count - done)?;
            let spare = self.pages.spare_capacity_mut();

            // SAFETY: `spare` has room for the `count - done` pointers `pin_user_pages_fast()`
            // may store. The address is in the user range, which does not wrap around.
            let ret = unsafe {
                bindings::pin_user_pages_fast(
                    first + done * PAGE_SIZE,
                    nr_pages,
                    gup_flags,
                    spare.as_mut_ptr().cast(),
                )
            };
            to_result(ret)?;
            // GUP reports pinning nothing as 0 only in corner cases; it is a failure all the same.
            let pinned = usize::try_from(ret)?;
            if pinned == 0 {
                return Err(EFAULT);
            }

            // SAFETY: `pin_user_pages_fast()` pinned `pinned` pages, at most `nr_pages`, and
            // stored pointers to them in the first `pinned` entries of `spare`.
            unsafe { self.pages.inc_len(pinned) };
        }
        Ok(())
    }

    /// Returns the user address the range starts at.
    #[inline]
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Returns the size of the range in bytes, as passed to [`PinnedPages::new`].
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// Returns the offset of the range in its first page.
    #[inline]
    pub fn offset(&self) -> usize {
        self.addr & !PAGE_MASK
    }

    /// Returns the number of pinned pages.
    #[inline]
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Returns the access the pages were pinned for.
    #[inline]
    pub fn access(&self) -> Access {
        self.access
    }

    /// Returns the address space the pages were pinned from, and are charged to.
    #[inline]
    pub fn mm(&self) -> &Mm {
        &self.charge.mm
    }

    /// Returns an iterator over the pinned pages, in the order of the addresses they back.
    #[inline]
    pub fn pages(&self) -> PinnedPageIter<'_> {
        PinnedPageIter {
            pages: self.pages.iter(),
            count: self.page_count(),
            offset: self.offset(),
            size: self.size,
        }
    }

    /// Calls `f(page, page_offset, buf_offset, len)` for each piece of the range
    /// `[offset, offset + len)` of the pinned range that lies in one page, in order.
    ///
    /// Returns [`EINVAL`] without calling `f` if the range does not fit in the pinned range.
    fn for_each_piece(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(*mut bindings::page, usize, usize, usize),
    ) -> Result {
        if offset.checked_add(len).ok_or(EINVAL)? > self.size {
            return Err(EINVAL);
        }
        let mut done = 0;
        while done < len {
            // At most `self.offset() + self.size`, which fits in the pinned pages.
            let pos = self.offset() + offset + done;
            let page_offset = pos & !PAGE_MASK;
            let n = (PAGE_SIZE - page_offset).min(len - done);
            f(self.pages[pos >> PAGE_SHIFT], page_offset, done, n);
            done += n;
        }
        Ok(())
    }

    /// Copies `dst.len()` bytes at `offset` in the pinned range into `dst`.
    ///
    /// Returns [`EINVAL`] if `[offset, offset + dst.len())` does not fit in the pinned range.
    ///
    /// The pages are shared with user space and possibly a device, which may write them at the
    /// same time: as with `copy_from_user()`, the copy may then see a mix of old and new data.
    /// This is not undefined behaviour: the copy is done by C code through a temporary kernel
    /// mapping, and no Rust reference to the pinned memory is ever created.
    pub fn copy_from(&self, offset: usize, dst: &mut [u8]) -> Result {
        let dst_ptr = dst.as_mut_ptr();
        self.for_each_piece(offset, dst.len(), |page, page_offset, buf_offset, n| {
            // SAFETY: `page` is pinned, hence valid, while `self` lives, and
            // `[page_offset, page_offset + n)` is within it. `dst_ptr + buf_offset` is valid for
            // writing `n` bytes of `dst`, which is borrowed mutably for this call.
            unsafe {
                bindings::memcpy_from_page(dst_ptr.add(buf_offset).cast(), page, page_offset, n)
            }
        })
    }

    /// Copies `src` to `offset` in the pinned range.
    ///
    /// Returns [`EINVAL`] if `[offset, offset + src.len())` does not fit in the pinned range, and
    /// [`EPERM`] if the pages were pinned with [`Access::ReadOnly`]: they may be shared
    /// copy-on-write with other processes, or be the zero page, and must not be written.
    ///
    /// As for [`PinnedPages::copy_from`], user space and devices may access the pages at the
    /// same time, like with `copy_to_user()`. This takes `&self` for the same reason: the pages
    /// are user memory that Rust never borrows, so writing them needs no exclusive access, and
    /// the kernel can act as a device on pages that several users hold.
    pub fn copy_to(&self, offset: usize, src: &[u8]) -> Result {
        if self.access != Access::ReadWrite {
            return Err(EPERM);
        }
        self.for_each_piece(offset, src.len(), |page, page_offset, buf_offset, n| {
            // SAFETY: `page` is pinned for writing while `self` lives, and
            // `[page_offset, page_offset + n)` is within it. `src[buf_offset..]` holds at least
            // `n` bytes.
            unsafe {
                bindings::memcpy_to_page(page, page_offset, src.as_ptr().add(buf_offset).cast(), n)
            }
        })
    }
}

impl Drop for PinnedPages {
    fn drop(&mut self) {
        if self.pages.is_empty() {
            return;
        }
        // SAFETY: By the type invariants, `self.pages` holds pages pinned by
        // `pin_user_pages_fast()` whose pins this object owns; they are unpinned once, here.
        // Pages the device may have written, pinned with `FOLL_WRITE`, are marked dirty.
        unsafe {
            bindings::unpin_user_pages_dirty_lock(
                self.pages.as_mut_ptr(),
                self.pages.len(),
                self.access == Access::ReadWrite,
            )
        };
        // `self.charge` uncharges the pages when dropped next.
    }
}

/// An [`Iterator`] over the pages of a [`PinnedPages`], in the order of the addresses they back.
pub struct PinnedPageIter<'a> {
    pages: slice::Iter<'a, *mut bindings::page>,
    count: usize,
    offset: usize,
    size: usize,
}

impl<'a> Iterator for PinnedPageIter<'a> {
    type Item = BorrowedPage<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let page = *self.pages.next()?;
        // SAFETY: `page` is a valid, hence non-null, page pinned by the `PinnedPages` borrowed
        // for `'a`, which keeps it pinned until dropped.
        Some(unsafe { BorrowedPage::from_raw(NonNull::new_unchecked(page)) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pages.size_hint()
    }
}

impl ExactSizeIterator for PinnedPageIter<'_> {}

// SAFETY:
// - The pages are pinned until the `PinnedPages` is dropped, and moving a `PinnedPages` (or an
//   `Arc` of it) does not change its page array.
// - The iterator yields all `count` pinned pages.
// - `offset` is the offset of the range in its first page, and the `count` pages are exactly
//   those spanning `[offset, offset + size)` from the start of the first page, with `size > 0`.
unsafe impl SGPageIter for PinnedPageIter<'_> {
    #[inline]
    fn page_count(&self) -> usize {
        self.count
    }

    #[inline]
    fn offset(&self) -> usize {
        self.offset
    }

    #[inline]
    fn size(&self) -> usize {
        self.size
    }
}

impl AsPageIter for PinnedPages {
    type Iter<'a> = PinnedPageIter<'a>;

    fn page_iter(&mut self) -> Self::Iter<'_> {
        self.pages()
    }
}

impl AsPageIter for Arc<PinnedPages> {
    type Iter<'a> = PinnedPageIter<'a>;

    fn page_iter(&mut self) -> Self::Iter<'_> {
        self.pages()
    }
}

/// Returns whether a shared mapping of a file other than shmem overlaps `[start, end)` of `mm`.
///
/// These are the mappings that long-term write pins are refused for, unless their filesystem
/// neither tracks dirty pages nor writes them back, which none that can be mapped shared and
/// written is known to do. Only used to explain a refusal, never to grant a pin.
fn has_shared_file_mapping(mm: &MmWithUser, start: usize, end: usize) -> bool {
    let guard = mm.mmap_read_lock();
    let mut addr = start;
    while addr < end {
        let Some(vma) = guard.vma_lookup(addr) else {
            // A hole: look for the next mapping, the lookup only finds one containing `addr`.
            addr = (addr & PAGE_MASK) + PAGE_SIZE;
            continue;
        };
        let raw = vma.as_ptr();
        // SAFETY: `raw` is a valid VMA while the mmap read lock is held, and `vm_file` does not
        // change while it is.
        let file = unsafe { (*raw).vm_file };
        // SAFETY: As above; `vma_is_shmem()` only reads the VMA.
        if vma.flags() & crate::mm::virt::flags::SHARED != 0
            && !file.is_null()
            && !unsafe { bindings::vma_is_shmem(raw) }
        {
            return true;
        }
        addr = vma.end();
    }
    false
}

/// Returns whether a process may have `pinned` pages pinned with a `RLIMIT_MEMLOCK` of
/// `limit` pages; `can_lock` tells whether it has `CAP_IPC_LOCK`.
///
/// `can_lock` is only called when over the limit, as `capable()` marks the task as having used a
/// privilege and may audit it.
fn memlock_allowed(pinned: usize, limit: usize, can_lock: impl FnOnce() -> bool) -> bool {
    pinned <= limit || can_lock()
}

/// Returns a pointer to the `pinned_vm` counter of `mm`.
fn pinned_vm(mm: &Mm) -> *mut bindings::atomic64_t {
    // SAFETY: `mm.as_raw()` is a valid `struct mm_struct` while `mm` is borrowed.
    unsafe { &raw mut (*mm.as_raw()).__bindgen_anon_1.pinned_vm }
}

/// Pages charged to the `pinned_vm` counter of an address space.
///
/// # Invariants
///
/// `pages` was added to `mm->pinned_vm` by this object, which subtracts it when dropped.
struct MemlockCharge {
    mm: ARef<Mm>,
    pages: i64,
}

impl MemlockCharge {
    /// Charges `pages` pages to `mm`, which must be the current task's address space.
    ///
    /// Like `ib_umem_get()`, this adds first and checks the sum, so that concurrent charges
    /// cannot together exceed the limit, and fails with [`ENOMEM`] if the current task's
    /// `RLIMIT_MEMLOCK` is exceeded and it lacks `CAP_IPC_LOCK`.
    fn new(mm: &Mm, pages: usize) -> Result<Self> {
        let pages = i64::try_from(pages)?;
        let counter = pinned_vm(mm);

        // SAFETY: `counter` points to the `atomic64_t` of a live address space.
        let pinned = unsafe { bindings::atomic64_add_return(pages, counter) };
        // SAFETY: `rlimit()` reads a limit of the current task, which is always valid.
        let limit = unsafe { bindings::rlimit(bindings::RLIMIT_MEMLOCK) } >> PAGE_SHIFT;
        // Compared as `unsigned long`, like in C.
        let allowed = memlock_allowed(pinned as usize, limit, || {
            // SAFETY: `capable()` may be called from any task context.
            unsafe { bindings::capable(bindings::CAP_IPC_LOCK as c_int) }
        });
        if !allowed {
            // SAFETY: As above; this undoes the addition.
            unsafe { bindings::atomic64_sub(pages, counter) };
            return Err(ENOMEM);
        }

        // INVARIANT: `pages` was added to `mm->pinned_vm`, and `ARef::from` takes an `mmgrab`
        // reference, which keeps the counter valid until the charge is dropped, also after the
        // address space is torn down.
        Ok(Self {
            mm: ARef::from(mm),
            pages,
        })
    }
}

impl Drop for MemlockCharge {
    fn drop(&mut self) {
        // SAFETY: `self.mm` holds an `mmgrab` reference, so the counter is valid; by the type
        // invariants, `self.pages` was added to it by this object.
        unsafe { bindings::atomic64_sub(self.pages, pinned_vm(&self.mm)) };
    }
}

#[kunit_tests(rust_kernel_mm_pin)]
mod tests {
    use super::*;
    use crate::{
        device::{
            Bound,
            Device, //
        },
        dma::DataDirection,
        error::from_err_ptr,
        faux,
        scatterlist::SGTable,
        sync::Completion,
        uaccess::UserSlice,
        workqueue, //
    };
    use core::{
        cell::Cell,
        ptr, //
    };

    const RW: u32 = bindings::PROT_READ | bindings::PROT_WRITE;
    const ANON: u32 = bindings::MAP_PRIVATE | bindings::MAP_ANONYMOUS;
    // A shared anonymous mapping is backed by a shmem file.
    const SHMEM: u32 = bindings::MAP_SHARED | bindings::MAP_ANONYMOUS;
    const NO_MAX: usize = usize::MAX;

    /// Maps `len` bytes of `file` (or anonymous memory if NULL) into the test's address space.
    ///
    /// KUnit creates an address space for the test thread on first use, and tears it down, with
    /// all mappings, when the test thread exits.
    fn mmap(file: *mut bindings::file, len: usize, prot: u32, flags: u32) -> Result<usize> {
        // SAFETY: `kunit_get_current_test()` may be called from any context.
        let test = unsafe { bindings::kunit_get_current_test() };
        if test.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: `test` is the running test. `file` is NULL or a file the caller holds a
        // reference to; the mapping takes its own.
        let addr = unsafe {
            bindings::kunit_vm_mmap(test, file, 0, len, prot as usize, flags as usize, 0)
        };
        // `kunit_vm_mmap()` returns 0 or, from `vm_mmap()`, an error code.
        if addr == 0 || addr > usize::MAX - bindings::MAX_ERRNO as usize {
            return Err(ENOMEM);
        }
        Ok(addr)
    }

    fn write_user(addr: usize, data: &[u8]) -> Result {
        UserSlice::new(UserPtr::from_addr(addr), data.len())
            .writer()
            .write_slice(data)
    }

    fn read_user(addr: usize, out: &mut [u8]) -> Result {
        UserSlice::new(UserPtr::from_addr(addr), out.len())
            .reader()
            .read_slice(out)
    }

    /// Returns the `pinned_vm` counter of the test's address space.
    fn current_pinned_vm() -> Result<i64> {
        let counter = pinned_vm(current!().mm().ok_or(EFAULT)?);
        // SAFETY: The counter of the current address space is valid.
        Ok(unsafe { bindings::atomic64_read(counter) })
    }

    /// Returns a byte pattern that differs between pages and offsets.
    fn pattern(len: usize, seed: u8) -> Result<KVec<u8>> {
        let mut v = KVec::with_capacity(len, GFP_KERNEL)?;
        for i in 0..len {
            v.push(((i % 251) as u8) ^ seed, GFP_KERNEL)?;
        }
        Ok(v)
    }

    /// Runs `f` with the current task's credentials lacking `CAP_IPC_LOCK`.
    fn without_ipc_lock<T>(f: impl FnOnce() -> T) -> Result<T> {
        // SAFETY: `prepare_creds()` may be called from any task context.
        let new = unsafe { bindings::prepare_creds() };
        if new.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `new` is a private copy of our credentials, which may be changed until used.
        unsafe { (*new).cap_effective.val &= !(1u64 << bindings::CAP_IPC_LOCK) };
        // SAFETY: `new` stays valid, as we hold the reference `prepare_creds()` returned, until
        // the override ends below.
        let old = unsafe { bindings::override_creds(new.cast_const()) };
        let ret = f();
        // SAFETY: `old` is what `override_creds()` replaced; this restores it.
        unsafe { bindings::revert_creds(old) };
        // SAFETY: We own this reference, and the credentials are no longer in use.
        unsafe { bindings::put_cred(new.cast_const()) };
        Ok(ret)
    }

    /// Returns the reference count of `page`.
    /// The pins on a small page: each adds `GUP_PIN_COUNTING_BIAS` to its reference count. Plain
    /// references come and go behind the test's back (per-CPU LRU batches hold one until they
    /// are drained), so they are rounded away.
    fn page_pins(page: &BorrowedPage<'_>) -> i32 {
        // SAFETY: `page` is valid, and its reference count is an atomic.
        let refs = unsafe { bindings::atomic_read(&raw const (*page.as_ptr())._refcount) };
        refs / bindings::GUP_PIN_COUNTING_BIAS as i32
    }

    #[test]
    fn invalid_ranges() -> Result {
        let addr = mmap(ptr::null_mut(), 2 * PAGE_SIZE, RW, ANON)?;
        let user = UserPtr::from_addr;
        let before = current_pinned_vm()?;

        assert_eq!(
            PinnedPages::new(user(addr), 0, Access::ReadOnly, NO_MAX).err(),
            Some(EINVAL)
        );
        assert_eq!(
            PinnedPages::new(user(usize::MAX - 10), 100, Access::ReadOnly, NO_MAX).err(),
            Some(EINVAL)
        );
        // Two bytes across a page boundary are two pages.
        let across = addr + PAGE_SIZE - 1;
        assert_eq!(
            PinnedPages::new(user(across), 2, Access::ReadOnly, 1).err(),
            Some(EINVAL)
        );
        assert_eq!(current_pinned_vm()?, before);

        let pin = PinnedPages::new(user(across), 2, Access::ReadOnly, 2)?;
        assert_eq!(pin.page_count(), 2);
        assert_eq!(pin.offset(), PAGE_SIZE - 1);
        Ok(())
    }

    #[test]
    fn anonymous_range_across_pages() -> Result {
        let addr = mmap(ptr::null_mut(), 4 * PAGE_SIZE, RW, ANON)?;
        let data = pattern(4 * PAGE_SIZE, 0x5a)?;
        write_user(addr, &data)?;
        let before = current_pinned_vm()?;

        let size = 2 * PAGE_SIZE;
        let pin = PinnedPages::new(
            UserPtr::from_addr(addr + 100),
            size,
            Access::ReadWrite,
            NO_MAX,
        )?;
        assert_eq!(pin.page_count(), 3);
        assert_eq!(pin.offset(), 100);
        assert_eq!(pin.size(), size);
        assert_eq!(pin.addr(), addr + 100);
        assert_eq!(pin.access(), Access::ReadWrite);
        assert!(ptr::eq(pin.mm(), &**current!().mm().ok_or(EFAULT)?));
        assert_eq!(current_pinned_vm()?, before + 3);
        assert_eq!(pin.pages().len(), 3);

        // What user space wrote is visible through the pages.
        let mut buf = KVec::from_elem(0u8, size, GFP_KERNEL)?;
        pin.copy_from(0, &mut buf)?;
        assert!(buf[..] == data[100..100 + size]);

        // What the kernel writes through the pages, across a page boundary, is visible to user
        // space, and nothing else changes.
        let ones = [0xa5u8; 400];
        pin.copy_to(PAGE_SIZE - 200, &ones)?;
        let mut user = KVec::from_elem(0u8, 4 * PAGE_SIZE, GFP_KERNEL)?;
        read_user(addr, &mut user)?;
        let written = 100 + PAGE_SIZE - 200;
        assert!(user[written..written + 400] == ones[..]);
        assert!(user[..written] == data[..written]);
        assert!(user[written + 400..] == data[written + 400..]);

        // And what user space writes after pinning is visible through the pages too.
        write_user(addr + 100 + size - 8, b"tail end")?;
        let mut tail = [0u8; 8];
        pin.copy_from(size - 8, &mut tail)?;
        assert!(&tail == b"tail end");

        // Accesses must fit in the range.
        assert_eq!(pin.copy_from(size - 1, &mut [0u8; 2]).err(), Some(EINVAL));
        assert_eq!(pin.copy_from(usize::MAX, &mut [0u8; 2]).err(), Some(EINVAL));
        assert_eq!(pin.copy_to(size, &[0u8; 1]).err(), Some(EINVAL));
        assert!(pin.copy_from(size, &mut []).is_ok());

        drop(pin);
        assert_eq!(current_pinned_vm()?, before);
        Ok(())
    }

    #[test]
    fn read_only_pins() -> Result {
        let addr = mmap(ptr::null_mut(), PAGE_SIZE, RW, ANON)?;
        // Pinned before user space ever touches the page: a long-term pin must not keep the
        // shared zero page, or later writes by user space would not be seen.
        let pin = PinnedPages::new(UserPtr::from_addr(addr), 16, Access::ReadOnly, 1)?;
        write_user(addr, b"written by user!")?;
        let mut buf = [0u8; 16];
        pin.copy_from(0, &mut buf)?;
        assert!(&buf == b"written by user!");
        assert_eq!(pin.copy_to(0, b"x").err(), Some(EPERM));

        let ro = mmap(ptr::null_mut(), PAGE_SIZE, bindings::PROT_READ, ANON)?;
        assert_eq!(
            PinnedPages::new(UserPtr::from_addr(ro), PAGE_SIZE, Access::ReadWrite, 1).err(),
            Some(EFAULT)
        );
        let pin = PinnedPages::new(UserPtr::from_addr(ro), PAGE_SIZE, Access::ReadOnly, 1)?;
        pin.copy_from(0, &mut buf)?;
        assert!(buf == [0u8; 16]);
        Ok(())
    }

    #[test]
    fn shmem_writable_pin() -> Result {
        let addr = mmap(ptr::null_mut(), 2 * PAGE_SIZE, RW, SHMEM)?;
        let pin = PinnedPages::new(
            UserPtr::from_addr(addr),
            2 * PAGE_SIZE,
            Access::ReadWrite,
            2,
        )?;
        pin.copy_to(PAGE_SIZE - 3, b"shmem!")?;
        let mut buf = [0u8; 6];
        read_user(addr + PAGE_SIZE - 3, &mut buf)?;
        assert!(&buf == b"shmem!");
        Ok(())
    }

    /// Fills `file` with a page of data, maps it shared and writable, and pins it.
    fn pin_file(file: *mut bindings::file) -> Result {
        let data = KVec::from_elem(0x3cu8, PAGE_SIZE, GFP_KERNEL)?;
        let mut pos = 0;
        // SAFETY: `file` is open for writing, and `data` is valid for `PAGE_SIZE` bytes.
        let written =
            unsafe { bindings::kernel_write(file, data.as_ptr().cast(), PAGE_SIZE, &mut pos) };
        if written != PAGE_SIZE as isize {
            return Err(EIO);
        }
        let addr = mmap(file, PAGE_SIZE, RW, bindings::MAP_SHARED)?;
        let user = UserPtr::from_addr(addr);
        let before = current_pinned_vm()?;

        assert_eq!(
            PinnedPages::new(user, PAGE_SIZE, Access::ReadWrite, 1).err(),
            Some(EOPNOTSUPP)
        );
        assert_eq!(current_pinned_vm()?, before);

        // Reading is fine: the device does not dirty the pages.
        let pin = PinnedPages::new(user, PAGE_SIZE, Access::ReadOnly, 1)?;
        let mut buf = [0u8; 4];
        pin.copy_from(PAGE_SIZE - 4, &mut buf)?;
        assert!(buf == [0x3c; 4]);
        Ok(())
    }

    /// Writable long-term pins of a shared mapping of a file on a filesystem that tracks dirty
    /// pages fail with `EOPNOTSUPP`. ramfs does, through `filemap_page_mkwrite()`, and can be
    /// mounted privately here, which a disk filesystem cannot.
    #[test]
    fn file_writable_pin_refused() -> Result {
        // SAFETY: The name is a valid C string.
        let fs = unsafe { bindings::get_fs_type(c"ramfs".as_char_ptr()) };
        if fs.is_null() {
            return Err(ENODEV);
        }
        // SAFETY: `fs` is a registered filesystem type, held by `get_fs_type()`.
        let mnt = from_err_ptr(unsafe { bindings::kern_mount(fs) });
        // SAFETY: The mount, if any, holds its own reference to the filesystem type.
        unsafe { bindings::put_filesystem(fs) };
        let mnt = mnt?;

        let path = bindings::path {
            mnt,
            // SAFETY: `mnt` is a valid mount.
            dentry: unsafe { (*mnt).mnt_root },
        };
        // SAFETY: `path` is the root of the mount, and the name a valid C string.
        let file = from_err_ptr(unsafe {
            bindings::file_open_root(
                &path,
                c"pinned".as_char_ptr(),
                (bindings::O_CREAT | bindings::O_RDWR) as c_int,
                0o600,
            )
        });
        let result = file.and_then(|file| {
            let result = pin_file(file);
            // SAFETY: We hold this reference from `file_open_root()`; the mapping has its own.
            unsafe { bindings::fput(file) };
            result
        });
        // SAFETY: The mount is ours; open files and mappings keep what they use alive.
        unsafe { bindings::kern_unmount(mnt) };
        result
    }

    /// A failure in the middle of the range unpins the pages pinned before it.
    #[test]
    fn partial_pin_unwinds() -> Result {
        let addr = mmap(ptr::null_mut(), 2 * PAGE_SIZE, RW, ANON)?;
        write_user(addr, &KVec::from_elem(1u8, 2 * PAGE_SIZE, GFP_KERNEL)?)?;
        // Hold the first page to look at its reference count.
        let first = PinnedPages::new(UserPtr::from_addr(addr), 1, Access::ReadOnly, 1)?;
        let page = first.pages().next().ok_or(EINVAL)?;
        let pins = page_pins(&page);
        let before = current_pinned_vm()?;

        // SAFETY: The second page is only used through this test's user pointers.
        to_result(unsafe { bindings::vm_munmap(addr + PAGE_SIZE, PAGE_SIZE) })?;

        // `pin_user_pages_fast()` pins the first page and stops at the hole...
        let mut raw = [ptr::null_mut(); 2];
        let gup_flags = bindings::FOLL_LONGTERM | bindings::FOLL_WRITE;
        // SAFETY: `raw` has room for the two pages asked for.
        let ret = unsafe { bindings::pin_user_pages_fast(addr, 2, gup_flags, raw.as_mut_ptr()) };
        assert_eq!(ret, 1);
        // SAFETY: The first entry of `raw` was just pinned, by this test.
        unsafe { bindings::unpin_user_pages_dirty_lock(raw.as_mut_ptr(), 1, true) };
        assert_eq!(page_pins(&page), pins);

        // ... so `PinnedPages::new()` asks again for the rest, fails, and unpins the first page.
        assert_eq!(
            PinnedPages::new(
                UserPtr::from_addr(addr),
                2 * PAGE_SIZE,
                Access::ReadWrite,
                2
            )
            .err(),
            Some(EFAULT)
        );
        assert_eq!(page_pins(&page), pins);
        assert_eq!(current_pinned_vm()?, before);
        Ok(())
    }

    #[test]
    fn memlock_decision() {
        let asked = &Cell::new(false);
        let can_lock = |answer| {
            move || {
                asked.set(true);
                answer
            }
        };
        assert!(memlock_allowed(10, 10, can_lock(false)));
        assert!(!asked.get());
        assert!(!memlock_allowed(11, 10, can_lock(false)));
        assert!(asked.get());
        assert!(memlock_allowed(11, 10, can_lock(true)));
        assert!(!memlock_allowed(usize::MAX, 0, can_lock(false)));
    }

    /// Pins beyond `RLIMIT_MEMLOCK` fail with `ENOMEM` without `CAP_IPC_LOCK`, and succeed with
    /// it, as KUnit's kernel threads have.
    #[test]
    fn memlock_limit() -> Result {
        // SAFETY: `rlimit()` reads a limit of the current task.
        let limit = unsafe { bindings::rlimit(bindings::RLIMIT_MEMLOCK) } >> PAGE_SHIFT;
        // Kernel threads have the default limit, 8 MiB; do not pin gigabytes if it is larger.
        if limit == 0 || limit > 64 * 1024 * 1024 / PAGE_SIZE {
            pr_info!("RLIMIT_MEMLOCK of {limit} pages, not testing it\n");
            return Ok(());
        }
        let len = (limit + 1) * PAGE_SIZE;
        let addr = mmap(ptr::null_mut(), len, RW, ANON)?;
        let user = UserPtr::from_addr(addr);
        let before = current_pinned_vm()?;

        let result = without_ipc_lock(|| PinnedPages::new(user, len, Access::ReadWrite, NO_MAX))?;
        assert_eq!(result.err(), Some(ENOMEM));
        assert_eq!(current_pinned_vm()?, before);
        let small = without_ipc_lock(|| PinnedPages::new(user, PAGE_SIZE, Access::ReadOnly, 1))?;
        let small = small?;
        assert_eq!(current_pinned_vm()?, before + 1);

        // With `CAP_IPC_LOCK`, the limit does not apply...
        let big = PinnedPages::new(user, len, Access::ReadWrite, NO_MAX)?;
        assert_eq!(current_pinned_vm()?, before + 1 + (limit as i64 + 1));
        // ... but the pages count towards it for everyone else.
        let result = without_ipc_lock(|| PinnedPages::new(user, 1, Access::ReadOnly, 1))?;
        assert_eq!(result.err(), Some(ENOMEM));

        drop(big);
        drop(small);
        assert_eq!(current_pinned_vm()?, before);
        Ok(())
    }

    /// Drops a pin from a workqueue thread, which has no address space: the pin still uncharges
    /// the address space it charged.
    #[test]
    fn dropped_from_another_task() -> Result {
        let addr = mmap(ptr::null_mut(), 3 * PAGE_SIZE, RW, ANON)?;
        let before = current_pinned_vm()?;
        let pin = PinnedPages::new(
            UserPtr::from_addr(addr),
            3 * PAGE_SIZE,
            Access::ReadWrite,
            3,
        )?;
        assert_eq!(current_pinned_vm()?, before + 3);

        let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
        let signal = done.clone();
        workqueue::system_long().try_spawn(GFP_KERNEL, move || {
            drop(pin);
            signal.complete_all();
        })?;
        done.wait_for_completion();
        assert_eq!(current_pinned_vm()?, before);
        Ok(())
    }

    /// The pinned range can be DMA-mapped through a scatter-gather table.
    #[test]
    fn dma_map_sgtable() -> Result {
        let faux = faux::Registration::new(c"rust_kunit_mm_pin", None)?;
        let faux_dev: &faux::Device<Bound> = faux.as_ref();
        let dev: &Device<Bound> = faux_dev.as_ref();
        let raw = dev.as_raw();
        // SAFETY: The device is ours and not used for DMA yet. Like platform code for devices
        // without a bus-provided mask, point `dma_mask` at `coherent_dma_mask` so it can be set.
        unsafe { (*raw).dma_mask = &raw mut (*raw).coherent_dma_mask };
        // SAFETY: As above.
        to_result(unsafe { bindings::dma_set_mask_and_coherent(raw, u64::MAX) })?;

        let addr = mmap(ptr::null_mut(), 3 * PAGE_SIZE, RW, ANON)?;
        let before = current_pinned_vm()?;
        let size = 2 * PAGE_SIZE + 1;
        let pin = Arc::new(
            PinnedPages::new(
                UserPtr::from_addr(addr + 7),
                size,
                Access::ReadWrite,
                NO_MAX,
            )?,
            GFP_KERNEL,
        )?;
        let sgt = KBox::pin_init(
            SGTable::new(dev, pin.clone(), DataDirection::Bidirectional, GFP_KERNEL),
            GFP_KERNEL,
        )?;

        // A bounce slot (swiotlb=force) keeps only the offset bits that the device's
        // `min_align_mask` asks for, and this device asks for none.
        // SAFETY: `raw` is a valid device.
        let bounced = unsafe { bindings::is_swiotlb_force_bounce(raw) };
        let mut total = 0;
        let mut entries = 0;
        for entry in sgt.iter() {
            if entries == 0 && !bounced {
                assert_eq!(entry.dma_address() % PAGE_SIZE as u64, 7);
            }
            total += entry.dma_len();
            entries += 1;
        }
        assert!(entries >= 1);
        assert_eq!(total, size as u64);

        drop(pin);
        assert_eq!(current_pinned_vm()?, before + 3);
        drop(sgt);
        assert_eq!(current_pinned_vm()?, before);
        Ok(())
    }
}
