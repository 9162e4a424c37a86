// SPDX-License-Identifier: GPL-2.0

//! Kernel memory that a queue shares with user space through `mmap()`.

use kernel::{
    mm::virt::SharedPageSource,
    page::{Page, PAGE_SIZE},
    prelude::*,
    transmute::{AsBytes, FromBytes},
};

/// Zeroed kernel pages that a queue maps into user space: its status page and its rings.
///
/// User space may read and write the pages at any time through its mapping, so the kernel never
/// borrows their contents: it copies bytes in and out with [`Page::copy_from_shared`] and
/// [`Page::copy_to_shared`], like `copy_{from,to}_user()`, and reads and publishes ring indices
/// with single-copy atomic acquire loads and release stores. Two kernel writes racing on the
/// same bytes can at worst mix their values, as a racing user-space write could; callers that
/// care about a value serialise its writers, and readers treat every value as untrusted.
pub(crate) struct SharedPages {
    pages: KVec<Page>,
}

impl SharedPages {
    /// Allocates `count` zeroed pages, charged to the memory cgroup of the task that opens the
    /// queue.
    pub(crate) fn new(count: usize) -> Result<Self> {
        let mut pages = KVec::with_capacity(count, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..count {
            pages.push(
                Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?,
                GFP_KERNEL_ACCOUNT,
            )?;
        }
        Ok(Self { pages })
    }

    /// The size of the memory in bytes.
    pub(crate) fn size(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// Calls `f(page, offset_in_page, offset_in_bytes, len)` for each piece of
    /// `[offset, offset + len)` that lies in one page. Fails with `EINVAL` if the range does not
    /// fit.
    fn for_each_piece(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(&Page, usize, usize, usize) -> Result,
    ) -> Result {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.size() {
            return Err(EINVAL);
        }
        let mut done = 0;
        while done < len {
            let at = offset + done;
            let in_page = at % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(len - done);
            f(&self.pages[at / PAGE_SIZE], in_page, done, n)?;
            done += n;
        }
        Ok(())
    }

    /// Writes `value` at byte `offset`, which may cross page boundaries. Fails with `EINVAL` if
    /// it does not fit.
    pub(crate) fn write<T: AsBytes>(&self, offset: usize, value: &T) -> Result {
        let bytes = value.as_bytes();
        self.for_each_piece(offset, bytes.len(), |page, in_page, done, n| {
            page.copy_to_shared(in_page, &bytes[done..done + n])
        })
    }

    /// Reads a `T` at byte `offset`, which may cross page boundaries. Fails with `EINVAL` if it
    /// does not fit.
    ///
    /// The bytes are copied once; user space may change them right after.
    pub(crate) fn read<T: FromBytes + AsBytes + Default>(&self, offset: usize) -> Result<T> {
        let mut value = T::default();
        let bytes = value.as_bytes_mut();
        self.for_each_piece(offset, bytes.len(), |page, in_page, done, n| {
            page.copy_from_shared(in_page, &mut bytes[done..done + n])
        })?;
        Ok(value)
    }

    /// The `u32` at byte `offset` (4-byte aligned), in one access with acquire ordering.
    pub(crate) fn load_acquire(&self, offset: usize) -> Result<u32> {
        self.pages
            .get(offset / PAGE_SIZE)
            .ok_or(EINVAL)?
            .load_acquire_u32(offset % PAGE_SIZE)
    }

    /// Stores `value` as the `u32` at byte `offset` (4-byte aligned), in one access with release
    /// ordering.
    pub(crate) fn store_release(&self, offset: usize, value: u32) -> Result {
        self.pages
            .get(offset / PAGE_SIZE)
            .ok_or(EINVAL)?
            .store_release_u32(offset % PAGE_SIZE, value)
    }
}

impl SharedPageSource for SharedPages {
    fn pages(&self) -> &[Page] {
        &self.pages
    }
}
