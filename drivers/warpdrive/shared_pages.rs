// SPDX-License-Identifier: GPL-2.0

//! Kernel memory that a queue shares with user space through `mmap()`.

use kernel::{
    mm::virt::VmaNew,
    page::{Page, PAGE_SIZE},
    prelude::*,
    transmute::{AsBytes, FromBytes},
};

/// Zeroed kernel pages that a queue maps into user space: its status page and its rings.
///
/// User space may read and write the pages at any time through its mapping, so their contents
/// are never borrowed by Rust: every kernel-side access copies bytes in or out through the C
/// side, like `copy_{to,from}_user()`. That is also why writes take `&self`: two kernel writes
/// racing on the same bytes can at worst mix their values, as a racing user-space write could.
/// Callers that care about a value serialise its writers themselves, and readers treat every
/// value they read as untrusted input.
pub(crate) struct SharedPages {
    pages: KVec<Page>,
}

impl SharedPages {
    /// Allocates `count` zeroed pages.
    pub(crate) fn new(count: usize) -> Result<Self> {
        let mut pages = KVec::with_capacity(count, GFP_KERNEL)?;
        for _ in 0..count {
            pages.push(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?, GFP_KERNEL)?;
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
            // SAFETY: `bytes[done..done + n]` is valid for reads. The page is shared with user
            // space and never borrowed by Rust (see the type's documentation), so a racing
            // write can only mix values; `write_raw` checks the bounds in the page.
            unsafe { page.write_raw(bytes[done..].as_ptr(), in_page, n) }
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
            // SAFETY: `bytes[done..done + n]` is valid for writes and is any `T`'s memory,
            // which accepts every bit pattern (`FromBytes`). The page is never borrowed by Rust
            // (see the type's documentation); `read_raw` checks the bounds in the page.
            unsafe { page.read_raw(bytes[done..].as_mut_ptr(), in_page, n) }
        })?;
        Ok(value)
    }

    /// Maps all pages into `vma`, which must cover exactly [`SharedPages::size`] bytes.
    pub(crate) fn map(&self, vma: &VmaNew) -> Result {
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
    pub(crate) fn map_read_only(&self, vma: &VmaNew) -> Result {
        if vma.writable() {
            return Err(EPERM);
        }
        vma.try_clear_maywrite()?;
        self.map(vma)
    }
}
