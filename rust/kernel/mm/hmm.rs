// SPDX-License-Identifier: GPL-2.0

//! Mirroring process memory for a device, without pinning it.
//!
//! A device that works on a process' memory through DMA addresses must stop using a page before
//! the process, or the kernel's memory management, lets the page go. Pinning the page keeps it in
//! place, but also keeps migration, compaction, KSM and reclaim from moving or freeing it, and
//! tearing a pin down from an invalidation collides with the folio locks those paths hold.
//!
//! The heterogeneous memory management (HMM) model does without pins: an [`IntervalNotifier`]
//! learns of every change to the range, [`IntervalNotifier::hmm_fault`] and
//! [`IntervalNotifier::hmm_fault_unlocked`] (`hmm_range_fault()`) look up, and if asked fault
//! in, the pages that back it now, and an [`HmmDmaMap`] maps them for the device. Readers follow
//! the sequence protocol of [`IntervalNotifier`]: a lookup is only used if no invalidation has
//! started since the sequence number it was made under, checked under the lock that the
//! invalidation takes too. The invalidation waits for the device to stop using the pages and
//! clears their entries in the map, and the memory can then change.
//!
//! C headers: [`include/linux/hmm.h`](srctree/include/linux/hmm.h),
//! [`include/linux/hmm-dma.h`](srctree/include/linux/hmm-dma.h).

use crate::{
    bindings,
    device::{Bound, Device},
    dma::{DataDirection, DmaAddress},
    error::to_result,
    mm::{
        interval_notifier::{IntervalNotifier, IntervalNotifierOps, ReadSeq},
        MmWithUser,
    },
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::aref::ARef,
    time::msecs_to_jiffies,
};

/// One entry of a mirrored range: a page frame number with HMM's flags (`HMM_PFN_*`), as
/// `hmm_range_fault()` fills it in.
#[repr(transparent)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HmmPfn(usize);

impl HmmPfn {
    /// An empty entry, for input to a fault.
    pub const NONE: Self = Self(0);

    /// The flag bits of an entry.
    const FLAGS: usize = bindings::hmm_pfn_flags_HMM_PFN_FLAGS as usize;

    /// Whether a page backs the address: the rest of the entry means something only then.
    pub fn is_valid(self) -> bool {
        self.0 & bindings::hmm_pfn_flags_HMM_PFN_VALID as usize != 0
    }

    /// Whether the page is mapped writable, so that a device may write it.
    pub fn is_writable(self) -> bool {
        self.is_valid() && self.0 & bindings::hmm_pfn_flags_HMM_PFN_WRITE as usize != 0
    }

    /// Whether the address cannot be mirrored (a `VM_IO` or `VM_PFNMAP` mapping, for instance).
    pub fn is_error(self) -> bool {
        self.0 & bindings::hmm_pfn_flags_HMM_PFN_ERROR as usize != 0
    }

    /// The page frame number, for a valid entry.
    pub fn pfn(self) -> usize {
        self.0 & !Self::FLAGS
    }

    /// The order of the CPU mapping the page lies in: 0 for a base page, 9 for a 2 MiB huge
    /// page on x86-64. The pages of such a mapping are physically contiguous.
    pub fn map_order(self) -> u32 {
        ((self.0 >> bindings::hmm_pfn_flags_HMM_PFN_ORDER_SHIFT) & 0x1f) as u32
    }
}

/// Whether the VMAs of `[start, end)` include one that a userfaultfd handles.
///
/// # Safety
///
/// The caller holds the mmap lock of `mm`.
unsafe fn userfault_armed(mm: &MmWithUser, start: usize, end: usize) -> bool {
    let mut addr = start;
    while addr < end {
        // SAFETY: The caller holds the mmap lock, which `find_vma()` needs.
        let vma = unsafe { bindings::find_vma(mm.as_raw(), addr) };
        if vma.is_null() {
            return false;
        }
        // SAFETY: `find_vma()` returned a valid VMA, stable under the mmap lock.
        let (vm_start, vm_end) = unsafe {
            (
                (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_start,
                (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_end,
            )
        };
        if vm_start >= end {
            return false;
        }
        // SAFETY: As above, `vma` is valid.
        if unsafe { bindings::userfaultfd_armed(vma) } {
            return true;
        }
        addr = vm_end;
    }
    false
}

impl<T: IntervalNotifierOps> IntervalNotifier<T> {
    /// Checks that `[start, start + pfns.len() pages)` is a page-aligned part of the notifier's
    /// range in `mm`, and returns its end.
    fn hmm_range_end(&self, mm: &MmWithUser, start: usize, pfns: &[HmmPfn]) -> Result<usize> {
        let len = pfns.len().checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        let end = start.checked_add(len).ok_or(EINVAL)?;
        if pfns.is_empty() || start % PAGE_SIZE != 0 || !core::ptr::eq(self.mm_raw(), mm.as_raw()) {
            return Err(EINVAL);
        }
        // The sequence protocol only covers the notifier's own range: every page looked up
        // must overlap it.
        let (first, last) = self.range();
        if start < first & !(PAGE_SIZE - 1) || end - 1 > last | (PAGE_SIZE - 1) {
            return Err(EINVAL);
        }
        Ok(end)
    }

    fn hmm_range(
        &self,
        seq: usize,
        start: usize,
        end: usize,
        pfns: &mut [HmmPfn],
        flags: usize,
    ) -> bindings::hmm_range {
        pfns.fill(HmmPfn::NONE);
        bindings::hmm_range {
            notifier: self.as_raw(),
            notifier_seq: seq,
            start,
            end,
            hmm_pfns: pfns.as_mut_ptr().cast(),
            default_flags: flags,
            pfn_flags_mask: 0,
            dev_private_owner: core::ptr::null_mut(),
        }
    }

    /// Looks up the pages that back `[start, start + pfns.len() pages)` of `mm` and stores them
    /// in `pfns`, faulting in any that are missing, for writing if `write`.
    ///
    /// `start` must be page-aligned, the range must lie in the notifier's, and `mm` must be the
    /// address space the notifier watches (`EINVAL` otherwise). `seq` is from
    /// [`IntervalNotifier::read_begin`]; if the range is invalidated meanwhile this fails with
    /// `EBUSY`, and the caller starts again with a new sequence number. Either way the entries
    /// may only be used under the caller's lock, and only if
    /// [`IntervalNotifier::read_retry`] then says that no invalidation started since `seq`.
    ///
    /// It takes the mmap read lock, so the caller must not hold it, nor any lock that an
    /// invalidation of the range waits for.
    ///
    /// This never waits for user space, so it may be called from a kernel thread: a range that a
    /// userfaultfd handles is only looked up, not faulted in, and fails with `EFAULT` unless
    /// every page is already there (faulting it in would be for the handler to do, and a kernel
    /// thread cannot wait for that). Fails with `EFAULT` for an address that no mapping allows
    /// the access at, or that cannot be mirrored (`VM_IO`, `VM_PFNMAP`), and with `EPERM` for a
    /// write to a mapping without `VM_WRITE`.
    pub fn hmm_fault(
        &self,
        mm: &MmWithUser,
        seq: ReadSeq,
        start: usize,
        pfns: &mut [HmmPfn],
        write: bool,
    ) -> Result {
        let end = self.hmm_range_end(mm, start, pfns)?;
        let guard = mm.mmap_read_lock();
        // SAFETY: `guard` holds the mmap lock of `mm`.
        let fault = !unsafe { userfault_armed(mm, start, end) };
        let mut flags = 0;
        if fault {
            flags = bindings::hmm_pfn_flags_HMM_PFN_REQ_FAULT as usize;
            if write {
                flags |= bindings::hmm_pfn_flags_HMM_PFN_REQ_WRITE as usize;
            }
        }
        let mut range = self.hmm_range(seq.raw(), start, end, pfns, flags);
        // SAFETY: The mmap lock of the notifier's mm is held by `guard`, the notifier is
        // inserted (type invariants of `IntervalNotifier`), and `range.hmm_pfns` points to
        // `pfns`, which has one entry for each page of `[start, end)`.
        let ret = unsafe { bindings::hmm_range_fault(&mut range) };
        drop(guard);
        to_result(ret)?;
        if !fault
            && pfns
                .iter()
                .any(|pfn| !pfn.is_valid() || (write && !pfn.is_writable()))
        {
            return Err(EFAULT);
        }
        Ok(())
    }

    /// Like [`IntervalNotifier::hmm_fault`], for the task that owns `mm`: takes the mmap lock
    /// itself and lets a fault drop it, so that a fault may wait for a userfaultfd handler, or
    /// for I/O, killably. Invalidations that keep coming are retried for up to `timeout_ms`
    /// milliseconds (0: for ever), and then fail with `EBUSY`.
    ///
    /// Returns the sequence number the lookup is valid for, to check with
    /// [`IntervalNotifier::read_retry`]. Fails with `EINTR` once the task is being killed.
    pub fn hmm_fault_unlocked(
        &self,
        mm: &MmWithUser,
        start: usize,
        pfns: &mut [HmmPfn],
        write: bool,
        timeout_ms: u32,
    ) -> Result<ReadSeq> {
        let end = self.hmm_range_end(mm, start, pfns)?;
        let mut flags = bindings::hmm_pfn_flags_HMM_PFN_REQ_FAULT as usize;
        if write {
            flags |= bindings::hmm_pfn_flags_HMM_PFN_REQ_WRITE as usize;
        }
        let mut range = self.hmm_range(0, start, end, pfns, flags);
        let timeout = if timeout_ms == 0 {
            0
        } else {
            msecs_to_jiffies(timeout_ms)
        };
        // SAFETY: The caller does not hold the mmap lock (which this takes), the notifier is
        // inserted (type invariants of `IntervalNotifier`), and `range.hmm_pfns` points to
        // `pfns`, which has one entry for each page of `[start, end)`.
        to_result(unsafe { bindings::hmm_range_fault_unlocked_timeout(&mut range, timeout) })?;
        Ok(ReadSeq::from_raw(range.notifier_seq))
    }
}

/// How the entries of an [`HmmDmaMap`] reach the device.
enum Kind {
    /// Long-lived mappings with `hmm_dma_map_pfn()`, contiguous in IOVA space where the IOMMU
    /// allows. `addrs` caches each mapped entry's address, since the C side does not keep it
    /// when the mapping needs no unmapping.
    Persistent {
        map: bindings::hmm_dma_map,
        addrs: KVVec<DmaAddress>,
    },
    /// For devices whose DMA needs syncing (swiotlb bouncing, non-coherent caches), which
    /// `hmm_dma_map_alloc()` refuses, since a long-lived mapping of memory that the CPU keeps
    /// using cannot hand the buffer back and forth: each access maps and unmaps the pages it
    /// uses, with its own direction (see [`HmmDmaMap::device_access`]).
    Streaming { pfns: KVVec<HmmPfn> },
}

/// The pages of a mirrored range, one entry per page, and their DMA mappings for one device.
///
/// An entry is *set* to a page with [`HmmDmaMap::set`] and cleared with
/// [`HmmDmaMap::clear`]. The device may use a set entry's page, and the CPU may read and write
/// it with [`HmmDmaMap::read`] and [`HmmDmaMap::write`].
///
/// The mappings must be cleared, or the map dropped, before the device is unbound, as for
/// [`SGTable`](crate::scatterlist::SGTable).
///
/// # Invariants
///
/// - For [`Kind::Persistent`], `map` was allocated by `hmm_dma_map_alloc()` for `dev` with `len`
///   entries of `PAGE_SIZE` bytes, and `addrs` has `len` elements. An entry is set exactly when
///   its `pfn_list` word has `HMM_PFN_VALID` and `HMM_PFN_DMA_MAPPED`, and `addrs` then holds
///   its address. For [`Kind::Streaming`], `pfns` has `len` elements, and an entry is set
///   exactly when it is valid.
/// - The page of every set entry stays allocated until the entry is cleared (the safety
///   requirement of [`HmmDmaMap::set`]).
pub struct HmmDmaMap {
    dev: ARef<Device>,
    len: usize,
    kind: Kind,
}

// SAFETY: The map's memory is owned by it, and the C functions it calls may run on any thread.
unsafe impl Send for HmmDmaMap {}
// SAFETY: Methods taking `&self` only read the map, or copy to and from its pages through C,
// which user space and devices may access at the same time anyway.
unsafe impl Sync for HmmDmaMap {}

/// A page of an [`HmmDmaMap`] made accessible to the device by [`HmmDmaMap::device_access`].
///
/// # Invariants
///
/// If `unmap` is true, `[addr, addr + len)` was mapped with `dma_map_page_attrs()` for `dev`
/// with `dir`, and is unmapped when this is dropped.
pub struct DeviceAccess<'a> {
    dev: &'a Device,
    addr: DmaAddress,
    len: usize,
    dir: DataDirection,
    unmap: bool,
}

impl DeviceAccess<'_> {
    /// The DMA address of the part of the page that was asked for.
    pub fn dma_address(&self) -> DmaAddress {
        self.addr
    }
}

impl Drop for DeviceAccess<'_> {
    fn drop(&mut self) {
        if self.unmap {
            // SAFETY: By the type invariants, this is the mapping made for `dev` with `dir`.
            unsafe {
                bindings::dma_unmap_page_attrs(
                    self.dev.as_raw(),
                    self.addr,
                    self.len,
                    self.dir.into(),
                    0,
                )
            };
        }
    }
}

impl HmmDmaMap {
    /// A map of `len` entries for `dev`, all clear.
    ///
    /// Uses long-lived DMA mappings when the device allows, and mappings per access otherwise
    /// (see [`HmmDmaMap::is_streaming`]).
    pub fn new(dev: &Device<Bound>, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let mut map = pin_init::zeroed::<bindings::hmm_dma_map>();
        // SAFETY: `dev` is a valid device.
        let ret = if unsafe { bindings::is_swiotlb_force_bounce(dev.as_raw()) } {
            // Every mapping bounces, which `hmm_dma_map_pfn()` refuses (it requires coherent
            // mappings); `hmm_dma_map_alloc()` only finds out once the first bounce is made.
            EOPNOTSUPP.to_errno()
        } else {
            // SAFETY: `dev` is a bound device, `map` is a zeroed `struct hmm_dma_map`. The C
            // side keeps no pointer to it, so it may move afterwards.
            unsafe { bindings::hmm_dma_map_alloc(dev.as_raw(), &mut map, len, PAGE_SIZE) }
        };
        let kind = match to_result(ret) {
            Ok(()) => {
                let addrs = match KVVec::from_elem(0, len, GFP_KERNEL_ACCOUNT) {
                    Ok(addrs) => addrs,
                    Err(e) => {
                        // SAFETY: `map` was just allocated for `dev`, and nothing is mapped.
                        unsafe { bindings::hmm_dma_map_free(dev.as_raw(), &mut map) };
                        return Err(e.into());
                    }
                };
                Kind::Persistent { map, addrs }
            }
            Err(e) if e == EOPNOTSUPP => Kind::Streaming {
                pfns: KVVec::from_elem(HmmPfn::NONE, len, GFP_KERNEL_ACCOUNT)?,
            },
            Err(e) => return Err(e),
        };
        // INVARIANT: Every entry is clear: `hmm_dma_map_alloc()` zeroes `pfn_list`.
        Ok(Self {
            dev: dev.into(),
            len,
            kind,
        })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no entries; it never has.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the device's DMA needs mappings per access, rather than long-lived ones.
    pub fn is_streaming(&self) -> bool {
        matches!(self.kind, Kind::Streaming { .. })
    }

    /// The `pfn_list` word of entry `idx` of a persistent map.
    fn raw_entry(map: &bindings::hmm_dma_map, idx: usize) -> *mut usize {
        // SAFETY: By the type invariants, `pfn_list` has `len` entries, and callers pass
        // `idx < len`.
        unsafe { map.pfn_list.add(idx).cast() }
    }

    /// The page entry `idx` is set to, if it is set.
    pub fn entry(&self, idx: usize) -> Option<HmmPfn> {
        if idx >= self.len {
            return None;
        }
        let mapped = (bindings::hmm_pfn_flags_HMM_PFN_VALID
            | bindings::hmm_pfn_flags_HMM_PFN_DMA_MAPPED) as usize;
        match &self.kind {
            Kind::Persistent { map, .. } => {
                // SAFETY: `idx < len`, and the word is only written through `&mut self`.
                let word = unsafe { *Self::raw_entry(map, idx) };
                (word & mapped == mapped).then_some(HmmPfn(word))
            }
            Kind::Streaming { pfns } => Some(pfns[idx]).filter(|pfn| pfn.is_valid()),
        }
    }

    /// The DMA address of entry `idx`, if it is set and the map is not streaming.
    pub fn dma_address(&self, idx: usize) -> Option<DmaAddress> {
        match &self.kind {
            Kind::Persistent { addrs, .. } => self.entry(idx).map(|_| addrs[idx]),
            Kind::Streaming { .. } => None,
        }
    }

    /// Sets entry `idx` to the page of `pfn`, a valid entry from a fault, and maps it for the
    /// device. An entry already set to the same page keeps its mapping, and takes the write
    /// permission of `pfn`.
    ///
    /// Fails with `EINVAL` for an invalid `pfn` or `idx`, and with `ENOMEM` if the page cannot
    /// be mapped; the entry is then clear.
    ///
    /// # Safety
    ///
    /// The page of `pfn` must stay allocated until the entry is cleared or the map dropped. A
    /// caller that got `pfn` from [`IntervalNotifier::hmm_fault`] meets this by setting it only
    /// under its lock, when [`IntervalNotifier::read_retry`] says the lookup is current, and by
    /// clearing the entry from its notifier's invalidation, under the same lock, before the
    /// invalidation returns, for every event that may take the page away.
    pub unsafe fn set(&mut self, idx: usize, pfn: HmmPfn) -> Result {
        if idx >= self.len || !pfn.is_valid() || pfn.is_error() {
            return Err(EINVAL);
        }
        let same_page = self.entry(idx).is_some_and(|old| old.pfn() == pfn.pfn());
        if !same_page {
            self.clear(idx);
        }
        let dev = self.dev.as_raw();
        match &mut self.kind {
            Kind::Persistent { map, addrs } => {
                let entry = Self::raw_entry(map, idx);
                let sticky = bindings::hmm_pfn_flags_HMM_PFN_DMA_MAPPED as usize;
                // SAFETY: `idx < len`, and `&mut self` excludes other accesses. The flags that
                // say how the entry is mapped stay; the page and its permissions are `pfn`'s.
                unsafe { *entry = (*entry & sticky) | (pfn.0 & !sticky) };
                if same_page {
                    return Ok(());
                }
                // A zeroed state: no page of a user mapping that `hmm_range_fault()` returns is
                // peer-to-peer memory, whose state this would cache.
                let mut p2p = pin_init::zeroed::<bindings::pci_p2pdma_map_state>();
                // SAFETY: `map` was allocated for `dev` with `len` entries, entry `idx` holds a
                // valid page, which the caller keeps allocated while it is mapped.
                let addr = unsafe { bindings::hmm_dma_map_pfn(dev, map, idx, &mut p2p) };
                // `DMA_MAPPING_ERROR`, all ones.
                if addr == DmaAddress::MAX {
                    // SAFETY: As above; the entry is not mapped, so it is only cleared.
                    unsafe { *entry = 0 };
                    return Err(ENOMEM);
                }
                // INVARIANT: The entry is valid and mapped, and its address is recorded.
                addrs[idx] = addr;
            }
            // INVARIANT: The entry is valid; it is mapped at each access.
            Kind::Streaming { pfns } => pfns[idx] = pfn,
        }
        Ok(())
    }

    /// Clears entry `idx`: unmaps it from the device, which must no longer use it. Returns
    /// whether it was set.
    pub fn clear(&mut self, idx: usize) -> bool {
        if self.entry(idx).is_none() {
            return false;
        }
        let dev = self.dev.as_raw();
        match &mut self.kind {
            Kind::Persistent { map, .. } => {
                // SAFETY: `map` was allocated for `dev`, and entry `idx` is set, so it is mapped
                // with `hmm_dma_map_pfn()`.
                unsafe { bindings::hmm_dma_unmap_pfn(dev, map, idx) };
                // SAFETY: `idx < len`, and `&mut self` excludes other accesses.
                unsafe { *Self::raw_entry(map, idx) = 0 };
            }
            Kind::Streaming { pfns } => pfns[idx] = HmmPfn::NONE,
        }
        true
    }

    /// The page of a set entry, checked to be within a page.
    fn page(&self, idx: usize, offset: usize, len: usize) -> Result<(*mut bindings::page, HmmPfn)> {
        let pfn = self.entry(idx).ok_or(EFAULT)?;
        if offset.checked_add(len).ok_or(EINVAL)? > PAGE_SIZE {
            return Err(EINVAL);
        }
        // SAFETY: `pfn` is the valid entry of a page that stays allocated while it is set.
        Ok((unsafe { bindings::hmm_pfn_to_page(pfn.0) }, pfn))
    }

    /// Makes `[offset, offset + len)` of the page of set entry `idx` accessible to the device,
    /// for `dir`, until the returned access is dropped; the caller must keep the entry set
    /// until then. `EFAULT` if the entry is clear, `EINVAL` if the range leaves the page.
    ///
    /// Long-lived mappings need nothing; mappings per access map the range here and unmap it at
    /// the drop, which is when a bounce buffer's contents reach the page.
    pub fn device_access(
        &self,
        idx: usize,
        offset: usize,
        len: usize,
        dir: DataDirection,
    ) -> Result<DeviceAccess<'_>> {
        let (page, _) = self.page(idx, offset, len)?;
        match &self.kind {
            Kind::Persistent { addrs, .. } => Ok(DeviceAccess {
                dev: &self.dev,
                addr: addrs[idx] + offset as DmaAddress,
                len,
                dir,
                unmap: false,
            }),
            Kind::Streaming { .. } => {
                // SAFETY: `page` is allocated while the entry is set, and the range is in it.
                let addr = unsafe {
                    bindings::dma_map_page_attrs(
                        self.dev.as_raw(),
                        page,
                        offset,
                        len,
                        dir.into(),
                        0,
                    )
                };
                // SAFETY: `addr` was just returned for `dev`.
                if unsafe { bindings::dma_mapping_error(self.dev.as_raw(), addr) } != 0 {
                    return Err(ENOMEM);
                }
                // INVARIANT: Mapped for `dev` with `dir`.
                Ok(DeviceAccess {
                    dev: &self.dev,
                    addr,
                    len,
                    dir,
                    unmap: true,
                })
            }
        }
    }

    /// Copies `dst.len()` bytes at `offset` in the page of set entry `idx` into `dst`, with the
    /// CPU. User space and the device may write the page at the same time, as with
    /// `copy_from_user()`.
    pub fn read(&self, idx: usize, offset: usize, dst: &mut [u8]) -> Result {
        let (page, _) = self.page(idx, offset, dst.len())?;
        // SAFETY: `page` is allocated while the entry is set, the range is in it, and `dst` is
        // valid for writing `dst.len()` bytes. The copy goes through C, never a Rust reference.
        unsafe { bindings::memcpy_from_page(dst.as_mut_ptr().cast(), page, offset, dst.len()) };
        Ok(())
    }

    /// Copies `src` to `offset` in the page of set entry `idx`, with the CPU. Fails with `EPERM`
    /// if the page is not mapped writable (it may be shared copy-on-write, or be the zero page).
    pub fn write(&self, idx: usize, offset: usize, src: &[u8]) -> Result {
        let (page, pfn) = self.page(idx, offset, src.len())?;
        if !pfn.is_writable() {
            return Err(EPERM);
        }
        // SAFETY: `page` is allocated while the entry is set, and mapped writable, the range is
        // in it, and `src` is valid for reading `src.len()` bytes.
        unsafe { bindings::memcpy_to_page(page, offset, src.as_ptr().cast(), src.len()) };
        Ok(())
    }

    /// Marks the page of set entry `idx` dirty, after the device or the CPU wrote it through
    /// the map: nothing else tells memory management that a page written without a page-table
    /// access needs writing back (anonymous memory after `MADV_FREE`, or shmem that was only
    /// read-faulted, would be discarded clean). Does nothing for an entry that is clear or not
    /// writable.
    ///
    /// As in RDMA's on-demand paging, this takes no folio lock: the caller holds the entry set,
    /// so its notifier's invalidation, which truncation and every unmapping go through, has not
    /// returned, and the page is still mapped.
    pub fn mark_dirty(&self, idx: usize) {
        if let Ok((page, pfn)) = self.page(idx, 0, 0) {
            if pfn.is_writable() {
                // SAFETY: `page` is allocated and mapped while the entry is set (see above).
                unsafe { bindings::set_page_dirty(page) };
            }
        }
    }
}

impl Drop for HmmDmaMap {
    fn drop(&mut self) {
        for idx in 0..self.len {
            self.clear(idx);
        }
        if let Kind::Persistent { map, .. } = &mut self.kind {
            // SAFETY: By the type invariants, `map` was allocated for `dev`; nothing is mapped.
            unsafe { bindings::hmm_dma_map_free(self.dev.as_raw(), map) };
        }
    }
}

/// The index of the page that holds byte `addr` of a map whose first entry is the page at
/// `base` (page-aligned).
pub fn page_index(base: usize, addr: usize) -> usize {
    (addr - base) >> PAGE_SHIFT
}

#[kunit_tests(rust_kernel_mm_hmm)]
mod tests {
    use super::*;
    use crate::mm::interval_notifier::Invalidation;

    /// A notifier that only records the sequence, as a driver's would under its lock.
    struct Seq;

    impl IntervalNotifierOps for Seq {
        fn invalidate(notifier: &IntervalNotifier<Self>, inv: &Invalidation<'_>) -> bool {
            notifier.set_seq(inv);
            true
        }
    }

    fn map_anonymous(pages: usize, prot: u32) -> Result<usize> {
        // SAFETY: Called from a KUnit test, which `kunit_get_current_test()` returns.
        let addr = unsafe {
            bindings::kunit_vm_mmap(
                bindings::kunit_get_current_test(),
                core::ptr::null_mut(),
                0,
                pages * PAGE_SIZE,
                prot as usize,
                (bindings::MAP_ANONYMOUS | bindings::MAP_PRIVATE) as usize,
                0,
            )
        };
        if addr == 0 {
            return Err(ENOMEM);
        }
        Ok(addr)
    }

    /// Looks the range up until no invalidation gets in the way: the first write fault of a
    /// page invalidates the range itself (the zero page is replaced), so `EBUSY` is expected.
    fn fault(
        n: &IntervalNotifier<Seq>,
        mm: &MmWithUser,
        start: usize,
        pfns: &mut [HmmPfn],
        write: bool,
    ) -> Result<ReadSeq> {
        loop {
            let seq = n.read_begin();
            match n.hmm_fault(mm, seq, start, pfns, write) {
                Err(e) if e == EBUSY => continue,
                Err(e) => return Err(e),
                Ok(()) => return Ok(seq),
            }
        }
    }

    fn notifier(
        mm: &MmWithUser,
        start: usize,
        pages: usize,
    ) -> Result<Pin<KBox<IntervalNotifier<Seq>>>> {
        KBox::pin_init(
            IntervalNotifier::new(mm, start, pages * PAGE_SIZE, Ok::<_, Error>(Seq)),
            GFP_KERNEL,
        )
    }

    #[test]
    fn fault_in_for_reading_and_writing() -> Result {
        let addr = map_anonymous(4, bindings::PROT_READ | bindings::PROT_WRITE)?;
        let task = crate::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = notifier(mm, addr, 4)?;
        let mut pfns = [HmmPfn::NONE; 4];

        let seq = fault(&n, mm, addr, &mut pfns, false)?;
        assert!(pfns.iter().all(|p| p.is_valid() && !p.is_error()));
        assert!(!n.read_retry(seq));

        // A write fault breaks the zero page's sharing: every page is writable, and its own.
        // Replacing the zero page invalidated the first lookup.
        let seq2 = fault(&n, mm, addr, &mut pfns, true)?;
        assert!(n.read_retry(seq));
        assert!(!n.read_retry(seq2));
        assert!(pfns.iter().all(|p| p.is_writable()));
        assert_ne!(pfns[0].pfn(), pfns[1].pfn());
        assert_eq!(pfns[0].map_order(), 0);

        // The same lookup again finds the same pages.
        let mut again = [HmmPfn::NONE; 4];
        let seq2 = n.hmm_fault_unlocked(mm, addr, &mut again, true, 1000)?;
        assert!(!n.read_retry(seq2));
        assert!(pfns
            .iter()
            .zip(again.iter())
            .all(|(a, b)| a.pfn() == b.pfn()));
        Ok(())
    }

    #[test]
    fn unaligned_range_looks_up_the_pages_it_overlaps() -> Result {
        let addr = map_anonymous(3, bindings::PROT_READ | bindings::PROT_WRITE)?;
        let task = crate::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        // Bytes 100 of the first page to 50 of the second: two pages.
        let n = KBox::pin_init(
            IntervalNotifier::new(mm, addr + 100, PAGE_SIZE - 50, Ok::<_, Error>(Seq)),
            GFP_KERNEL,
        )?;
        let mut two = [HmmPfn::NONE; 2];
        let seq = fault(&n, mm, addr, &mut two, false)?;
        assert!(two.iter().all(|p| p.is_valid()));
        // The third page is outside.
        let mut three = [HmmPfn::NONE; 3];
        assert_eq!(n.hmm_fault(mm, seq, addr, &mut three, false), Err(EINVAL));
        Ok(())
    }

    #[test]
    fn unmapped_and_read_only_ranges_fail() -> Result {
        let addr = map_anonymous(2, bindings::PROT_READ)?;
        let task = crate::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = notifier(mm, addr, 2)?;
        let mut pfns = [HmmPfn::NONE; 2];
        let seq = n.read_begin();
        assert_eq!(n.hmm_fault(mm, seq, addr, &mut pfns, true), Err(EPERM));

        // SAFETY: The test owns the mapping.
        to_result(unsafe { bindings::vm_munmap(addr + PAGE_SIZE, PAGE_SIZE) })?;
        // The unmap invalidated the lookup.
        assert!(n.read_retry(seq));
        let seq = n.read_begin();
        assert_eq!(n.hmm_fault(mm, seq, addr, &mut pfns, false), Err(EFAULT));

        // Outside the notifier's range, or unaligned: refused before any lookup.
        let mut three = [HmmPfn::NONE; 3];
        assert_eq!(n.hmm_fault(mm, seq, addr, &mut three, false), Err(EINVAL));
        assert_eq!(
            n.hmm_fault(mm, seq, addr + 1, &mut pfns, false),
            Err(EINVAL)
        );
        Ok(())
    }

    #[test]
    fn dma_map_entries_give_the_page_to_the_cpu_and_the_device() -> Result {
        let addr = map_anonymous(2, bindings::PROT_READ | bindings::PROT_WRITE)?;
        let task = crate::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = notifier(mm, addr, 2)?;
        let mut pfns = [HmmPfn::NONE; 2];
        fault(&n, mm, addr, &mut pfns, true)?;

        // SAFETY: Called from a KUnit test; the device goes with the test.
        let raw = crate::error::from_err_ptr(unsafe {
            bindings::kunit_device_register(
                bindings::kunit_get_current_test(),
                c"rust-kernel-mm-hmm".as_char_ptr(),
            )
        })?;
        // SAFETY: `raw` is a valid device that nothing maps memory for yet.
        to_result(unsafe { bindings::dma_coerce_mask_and_coherent(raw, u64::MAX) })?;
        // SAFETY: `raw` is valid for the test, and KUnit bound it to a driver of its own.
        let dev = unsafe { Device::<crate::device::Normal>::from_raw(raw).as_bound() };
        // A device on KUnit's bus has no IOMMU: direct mappings, long-lived unless the kernel
        // bounces all DMA (swiotlb=force), which makes them per access.
        let mut map = HmmDmaMap::new(dev, 2)?;
        assert_eq!(map.entry(0), None);
        assert_eq!(map.dma_address(0), None);
        assert_eq!(map.read(0, 0, &mut [0u8; 4]), Err(EFAULT));

        // SAFETY: The lookup is current (the test changes nothing meanwhile), and the entry is
        // cleared below, or with the map, before the test's mapping goes.
        unsafe { map.set(0, pfns[0])? };
        assert_eq!(map.entry(0).map(HmmPfn::pfn), Some(pfns[0].pfn()));
        assert_eq!(map.dma_address(0).is_some(), !map.is_streaming());
        map.write(0, 100, b"mirror")?;
        map.mark_dirty(0);
        let mut back = [0u8; 6];
        map.read(0, 100, &mut back)?;
        assert_eq!(&back, b"mirror");
        // The process sees what went through the map: it is the same page.
        let mut user = [0u8; 6];
        crate::uaccess::UserSlice::new(crate::uaccess::UserPtr::from_addr(addr + 100), 6)
            .reader()
            .read_slice(&mut user)?;
        assert_eq!(&user, b"mirror");

        {
            let access = map.device_access(0, 64, 128, DataDirection::ToDevice)?;
            assert_ne!(access.dma_address(), 0);
        }
        assert_eq!(
            map.device_access(0, PAGE_SIZE - 1, 2, DataDirection::ToDevice)
                .err(),
            Some(EINVAL)
        );
        assert!(map.clear(0));
        assert!(!map.clear(0));
        assert_eq!(map.dma_address(0), None);
        assert_eq!(map.write(0, 0, b"x"), Err(EFAULT));
        Ok(())
    }

    #[test]
    fn invalidation_during_lookup_retries() -> Result {
        let addr = map_anonymous(1, bindings::PROT_READ | bindings::PROT_WRITE)?;
        let task = crate::current!();
        let mm = task.mm().ok_or(EINVAL)?;
        let n = notifier(mm, addr, 1)?;
        let mut pfns = [HmmPfn::NONE; 1];
        let seq = n.read_begin();
        // SAFETY: The test owns the mapping, and `current->mm` is the one it is in.
        to_result(unsafe {
            bindings::do_madvise(mm.as_raw(), addr, PAGE_SIZE, bindings::MADV_DONTNEED as i32)
        })?;
        // A lookup under a stale sequence number is refused, not silently used.
        assert_eq!(n.hmm_fault(mm, seq, addr, &mut pfns, false), Err(EBUSY));
        Ok(())
    }
}
