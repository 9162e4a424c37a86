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
    prelude::*,
    sync::{Arc, ArcBorrow},
};
use core::marker::PhantomData;

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
    /// The operations installed here are code of the module that instantiates this function. It
    /// must be the module that owns the file being mapped: the VMA's reference to that file is
    /// what keeps the module loaded for as long as the VMA exists.
    pub fn set_shared_data<T: Send + Sync + 'static>(&self, data: Arc<T>) {
        let vma = self.as_ptr();
        // SAFETY: The VMA is undergoing initial setup (type invariants of `VmaNew`), so nothing
        // else uses these fields yet. The reference taken by `into_raw` belongs to this VMA and
        // is given back in `close`.
        unsafe {
            (*vma).vm_private_data = Arc::into_raw(data).cast_mut().cast();
            (*vma).vm_ops = SharedDataVTable::<T>::build();
        }
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
