// SPDX-License-Identifier: GPL-2.0

//! Kernel memory that a queue shares with user space through `mmap()`.

use kernel::{
    mm::virt::VmaNew,
    page::{Page, PAGE_SIZE},
    prelude::*,
    transmute::AsBytes,
};

/// Zeroed pages that a driver maps into a queue's region, such as a status page or rings.
///
/// Kernel-side accesses go through `&mut self` for writes, so they never race with each other.
/// User space may access the pages at any time through its mapping; like `copy_to_user()`, that
/// is outside the kernel's memory model, and user space only ever sees its own queue's pages.
pub struct SharedPages {
    pages: KVec<Page>,
}

impl SharedPages {
    /// Allocates `count` zeroed pages.
    pub fn new(count: usize) -> Result<Self> {
        let mut pages = KVec::with_capacity(count, GFP_KERNEL)?;
        for _ in 0..count {
            pages.push(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?, GFP_KERNEL)?;
        }
        Ok(Self { pages })
    }

    /// The size of the memory in bytes.
    pub fn size(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// Writes `value` at byte `offset`, which may cross page boundaries. Fails with `EINVAL` if
    /// it does not fit.
    pub fn write<T: AsBytes>(&mut self, offset: usize, value: &T) -> Result {
        let bytes = value.as_bytes();
        let end = offset.checked_add(bytes.len()).ok_or(EINVAL)?;
        if end > self.size() {
            return Err(EINVAL);
        }
        let mut done = 0;
        while done < bytes.len() {
            let at = offset + done;
            let in_page = at % PAGE_SIZE;
            let len = (PAGE_SIZE - in_page).min(bytes.len() - done);
            // SAFETY: `bytes[done..done + len]` is valid for reads. Kernel-side accesses to the
            // pages are serialised by `&mut self`; `write_raw` checks the bounds in the page.
            unsafe { self.pages[at / PAGE_SIZE].write_raw(bytes[done..].as_ptr(), in_page, len)? };
            done += len;
        }
        Ok(())
    }

    /// Maps all pages into `vma`, which must cover exactly [`SharedPages::size`] bytes.
    pub fn map(&self, vma: &VmaNew) -> Result {
        if vma.end() - vma.start() != self.size() {
            return Err(EINVAL);
        }
        let vma = vma.set_mixedmap();
        for (i, page) in self.pages.iter().enumerate() {
            vma.vm_insert_page(vma.start() + i * PAGE_SIZE, page)?;
        }
        Ok(())
    }

    /// Maps all pages into `vma` so that user space can never write them: a writable mapping
    /// fails with `EPERM`, and the mapping cannot be made writable later.
    pub fn map_read_only(&self, vma: &VmaNew) -> Result {
        if vma.writable() {
            return Err(EPERM);
        }
        vma.try_clear_maywrite()?;
        self.map(vma)
    }
}
