// SPDX-License-Identifier: GPL-2.0

//! Driver data shared by the VMAs of one mapping.
//!
//! A driver that maps memory it owns into user space needs to know when the mapping is gone, for
//! instance to let the same region be mapped again, and it must never be surprised by a copy of
//! the VMA it did not see. [`VmaNew::set_shared_data`] attaches a reference-counted value to the
//! VMA: every copy of the VMA holds its own reference, and the value is dropped when the last VMA
//! of the mapping is unmapped.

use super::VmaNew;
use crate::{
    bindings,
    error::to_result,
    page::{Page, PAGE_SIZE},
    prelude::*,
    sync::{Arc, ArcBorrow},
};
use core::marker::PhantomData;

/// Kernel pages that a driver maps into user space with [`VmaNew::set_shared_pages`].
pub trait SharedPageSource: Send + Sync + 'static {
    /// The pages, in the order they are mapped from the start of the VMA.
    fn pages(&self) -> &[Page];
}

impl VmaNew {
    /// Attaches `data` to this VMA, to be dropped when the mapping is gone.
    ///
    /// The VMA becomes unsplittable (a partial `munmap()` or `mprotect()` fails with `EINVAL`)
    /// and cannot be moved by `mremap()` (`EPERM`), so the mapping stays as it was created until
    /// it is unmapped as a whole. Copies that the kernel still makes (none, if the VMA is also
    /// `VM_DONTCOPY`) take their own reference.
    ///
    /// `T` is dropped with the mmap lock held, so its destructor must not take the mmap lock or
    /// any lock that is held while faulting on user memory.
    ///
    /// # Safety
    ///
    /// The VMA's operations become code of the module that instantiates this function, and only
    /// the VMA's reference to its file keeps a module loaded. The caller must be the module
    /// that owns the file being mapped (its `file_operations`), so that the code stays for as
    /// long as the VMA.
    pub unsafe fn set_shared_data<T: Send + Sync + 'static>(&self, data: Arc<T>) {
        let vma = self.as_ptr();
        // SAFETY: The VMA is undergoing initial setup (type invariants of `VmaNew`), so nothing
        // else uses these fields yet. The reference taken by `into_raw` belongs to this VMA and
        // is given back in `close`. The caller guarantees that the operations outlive the VMA.
        unsafe {
            (*vma).vm_private_data = Arc::into_raw(data).cast_mut().cast();
            (*vma).vm_ops = SharedDataVTable::<T>::build();
        }
    }

    /// Maps the pages of `data` from the start of this VMA, which must cover exactly as many
    /// pages (`EINVAL` otherwise), and attaches `data` as with [`VmaNew::set_shared_data`], so
    /// that the pages stay allocated for as long as the mapping.
    ///
    /// The pages are mapped with `remap_pfn_range()`, as uacce maps its queue memory: the VMA
    /// becomes `VM_IO | VM_PFNMAP`, and its page-table entries are special. Nothing can pin
    /// them or look them up with `get_user_pages()`, the lockless `pin_user_pages_fast()` or
    /// `hmm_range_fault()`, so a device never reaches them through a user address, and they are
    /// never counted as the process' own memory. The mapping is writable if the VMA is.
    ///
    /// On failure the VMA may be partly mapped; the caller fails the `mmap()`, which unmaps it.
    ///
    /// # Safety
    ///
    /// As for [`VmaNew::set_shared_data`].
    pub unsafe fn set_shared_pages<T: SharedPageSource>(&self, data: Arc<T>) -> Result {
        let pages = data.pages();
        if self.end() - self.start() != pages.len() * PAGE_SIZE {
            return Err(EINVAL);
        }
        let vma = self.as_ptr();
        for (i, page) in pages.iter().enumerate() {
            // SAFETY: The VMA is undergoing initial setup with the mmap lock held for writing,
            // the range is one page inside it, and the page is allocated for as long as `data`,
            // which the VMA keeps until it is closed (below).
            to_result(unsafe {
                bindings::remap_pfn_range(
                    vma,
                    self.start() + i * PAGE_SIZE,
                    bindings::page_to_pfn(page.as_ptr()),
                    PAGE_SIZE,
                    (*vma).vm_page_prot,
                )
            })?;
        }
        // SAFETY: The caller's guarantee.
        unsafe { self.set_shared_data(data) };
        Ok(())
    }
}

/// The `vm_operations_struct` of VMAs with shared data of type `T`.
struct SharedDataVTable<T>(PhantomData<T>);

impl<T: Send + Sync + 'static> SharedDataVTable<T> {
    /// # Safety
    ///
    /// `vma` is a new copy of a VMA set up by [`VmaNew::set_shared_data::<T>`].
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: The copy has the same private data, an `Arc<T>` that the original VMA keeps
        // alive for the duration of this call.
        let data = unsafe { ArcBorrow::<T>::from_raw((*vma).vm_private_data.cast()) };
        // The copy gets a reference of its own, given back by its `close`.
        let _ = Arc::into_raw(Arc::from(data));
    }

    /// # Safety
    ///
    /// `vma` was set up by [`VmaNew::set_shared_data::<T>`] or copied from such a VMA, and is
    /// being removed.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        // SAFETY: This VMA owns one reference, taken in `set_shared_data` or `open`.
        drop(unsafe { Arc::<T>::from_raw((*vma).vm_private_data.cast()) });
    }

    extern "C" fn may_split(_vma: *mut bindings::vm_area_struct, _addr: usize) -> c_int {
        EINVAL.to_errno()
    }

    extern "C" fn mremap(_vma: *mut bindings::vm_area_struct) -> c_int {
        EPERM.to_errno()
    }

    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        open: Some(Self::open),
        close: Some(Self::close),
        may_split: Some(Self::may_split),
        mremap: Some(Self::mremap),
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::vm_operations_struct {
        &Self::VTABLE
    }
}
