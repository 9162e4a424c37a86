// SPDX-License-Identifier: GPL-2.0
//! The shadow ring's arithmetic and command encoding, independent of any
//! mapping so that it can be tested on the host.
//!
//! Indices are free-running `u32` counters that wrap; an entry's slot is
//! the index modulo the (power-of-two) ring size.

use core::marker::PhantomData;

use crate::abi::{
    WdDesc, WdRingHeader, WD_DESC_REGISTERED, WD_EDU_OP_DMA_COPY, WD_EDU_OP_EMU_CRC32C,
    WD_EDU_OP_EMU_MEMCPY, WD_EDU_OP_FACTORIAL, WD_EDU_OP_NOP, WD_RING_MAGIC, WD_RING_VERSION,
};
use crate::error::{Error, Result};

/// Entries between `head` and `tail`, across wrap-around.
pub fn used(tail: u32, head: u32) -> u32 {
    tail.wrapping_sub(head)
}

/// Free entries of a ring of `entries` slots, or `None` if the indices are
/// corrupt (`tail` more than `entries` ahead of `head`).
pub fn room(entries: u32, tail: u32, head: u32) -> Option<u32> {
    entries.checked_sub(used(tail, head))
}

/// Whether nothing lies between `head` and `tail`.
pub fn is_empty(tail: u32, head: u32) -> bool {
    tail == head
}

/// Whether the ring has no free entry.
pub fn is_full(entries: u32, tail: u32, head: u32) -> bool {
    used(tail, head) == entries
}

/// The slot of free-running index `idx` in a ring of `entries` (a power of
/// two) slots.
pub fn slot(idx: u32, entries: u32) -> u32 {
    debug_assert!(entries.is_power_of_two());
    idx & (entries - 1)
}

/// Where the rings lie in the DUS region: `(offset, entries)` of the
/// submission ring, then of the completion ring.
pub type RingLayout = ((usize, u32), (usize, u32));

/// Checks a ring header against the region of `region_len` bytes it sits in,
/// as `wd_ring.c` does, and returns the rings' layout.
pub fn check_header(h: &WdRingHeader, region_len: usize) -> Result<RingLayout> {
    let bad = |what: String| Err(Error::Protocol(format!("ring header: {what}")));
    if h.magic != WD_RING_MAGIC {
        return bad(format!("magic {:#x}", h.magic));
    }
    if h.version != WD_RING_VERSION {
        return bad(format!("version {}", h.version));
    }
    if h.desc_size as usize != size_of::<WdDesc>()
        || h.cqe_size as usize != size_of::<crate::abi::WdCqe>()
    {
        return bad(format!(
            "desc_size {}, cqe_size {}",
            h.desc_size, h.cqe_size
        ));
    }
    if !h.sq_entries.is_power_of_two() || !h.cq_entries.is_power_of_two() {
        return bad(format!(
            "sq_entries {}, cq_entries {}",
            h.sq_entries, h.cq_entries
        ));
    }
    let hdr = size_of::<WdRingHeader>() as u64;
    let (sq, cq) = (u64::from(h.sq_offset), u64::from(h.cq_offset));
    let sq_end = sq + u64::from(h.sq_entries) * u64::from(h.desc_size);
    let cq_end = cq + u64::from(h.cq_entries) * u64::from(h.cqe_size);
    let len = region_len as u64;
    if sq < hdr
        || cq < hdr
        || !sq.is_multiple_of(8)
        || !cq.is_multiple_of(8)
        || sq_end > len
        || cq_end > len
        || (sq < cq_end && cq < sq_end)
    {
        return bad(format!(
            "rings at {sq} ({} x {}) and {cq} ({} x {}) in {len} bytes",
            h.sq_entries, h.desc_size, h.cq_entries, h.cqe_size
        ));
    }
    Ok(((sq as usize, h.sq_entries), (cq as usize, h.cq_entries)))
}

/// A command for the ring: a descriptor, and the borrows of the memory it
/// names for as long as the command can run.
///
/// The device reads `src` and writes `dst` behind the compiler's back, so a
/// command borrows both: the buffers cannot be touched, moved or freed while
/// the `Cmd` exists, and [`crate::Queue::run`] keeps the commands borrowed
/// until each has completed (or the queue has been stopped). Commands for
/// [`crate::Queue::submit`], which returns before they complete, must
/// therefore borrow for `'static`.
#[derive(Clone, Debug)]
pub struct Cmd<'a> {
    desc: WdDesc,
    _bufs: PhantomData<(&'a [u8], &'a mut [u8])>,
}

fn addr(buf: &[u8]) -> u64 {
    buf.as_ptr() as usize as u64
}

impl Cmd<'static> {
    /// A command that touches no memory: `src`, `dst` and `len` are 0.
    pub fn no_memory(opcode: u16, arg: u64) -> Self {
        Self {
            desc: WdDesc {
                opcode,
                arg,
                ..WdDesc::default()
            },
            _bufs: PhantomData,
        }
    }

    /// `WD_EDU_OP_NOP`.
    pub fn nop() -> Self {
        Self::no_memory(WD_EDU_OP_NOP, 0)
    }

    /// `WD_EDU_OP_FACTORIAL`: result = n! truncated to 32 bits.
    pub fn factorial(n: u32) -> Self {
        Self::no_memory(WD_EDU_OP_FACTORIAL, u64::from(n))
    }
}

impl<'a> Cmd<'a> {
    /// A command that reads `src` and writes nothing.
    pub fn read(opcode: u16, src: &'a [u8], arg: u64) -> Self {
        Self {
            desc: WdDesc {
                opcode,
                src: addr(src),
                len: src.len() as u64,
                arg,
                ..WdDesc::default()
            },
            _bufs: PhantomData,
        }
    }

    /// A command that reads `src` and writes `dst`, `src.len()` bytes each.
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn copy(opcode: u16, src: &'a [u8], dst: &'a mut [u8], arg: u64) -> Self {
        assert_eq!(src.len(), dst.len(), "src and dst lengths differ");
        Self {
            desc: WdDesc {
                opcode,
                src: addr(src),
                dst: addr(dst),
                len: src.len() as u64,
                arg,
                ..WdDesc::default()
            },
            _bufs: PhantomData,
        }
    }

    /// `WD_EDU_OP_EMU_CRC32C` of `src`, continuing from `crc` (0 to start).
    pub fn crc32c(src: &'a [u8], crc: u32) -> Self {
        Self::read(WD_EDU_OP_EMU_CRC32C, src, u64::from(crc))
    }

    /// `WD_EDU_OP_EMU_MEMCPY` from `src` to `dst`.
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn memcpy(src: &'a [u8], dst: &'a mut [u8]) -> Self {
        Self::copy(WD_EDU_OP_EMU_MEMCPY, src, dst, 0)
    }

    /// `WD_EDU_OP_DMA_COPY` (the device's own engine) from `src` to `dst`.
    ///
    /// # Panics
    ///
    /// If the lengths differ.
    pub fn dma_copy(src: &'a [u8], dst: &'a mut [u8]) -> Self {
        Self::copy(WD_EDU_OP_DMA_COPY, src, dst, 0)
    }

    /// Sets `WD_DESC_REGISTERED`: the operands must lie in registered
    /// buffers, else the command fails with `-ENOENT`.
    pub fn registered_only(mut self) -> Self {
        self.desc.flags |= WD_DESC_REGISTERED;
        self
    }

    /// Sets the user_data that the completion returns (used by
    /// [`crate::Queue::submit`]; [`crate::Queue::run`] sets its own).
    pub fn with_user_data(mut self, user_data: u64) -> Self {
        self.desc.user_data = user_data;
        self
    }

    /// The descriptor as it goes into the ring.
    pub fn desc(&self) -> &WdDesc {
        &self.desc
    }

    /// The opcode.
    pub fn opcode(&self) -> u16 {
        self.desc.opcode
    }
}

/// A completion, as read from the completion ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The command's user_data.
    pub user_data: u64,
    /// Opcode-specific result.
    pub result: u64,
    /// 0 or a negative errno.
    pub status: i32,
    /// The command's opcode, when the queue knows it ([`crate::Queue::run`]).
    pub opcode: Option<u16>,
}

impl Completion {
    /// The result, or the error for a negative status: [`Error::Command`],
    /// or [`Error::MemlockLimit`] for `-ENOMEM` (see
    /// [`Error::from_completion`]).
    pub fn ok(&self) -> Result<u64> {
        if self.status == 0 {
            Ok(self.result)
        } else {
            Err(Error::from_completion(
                self.opcode.unwrap_or(0),
                self.user_data,
                self.status,
            ))
        }
    }
}

/// user_data of command `index` of run number `seq`: the run's number in
/// the high half keeps a stale completion from an earlier run from being
/// taken for one of this run's.
pub(crate) fn run_tag(seq: u32, index: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(index)
}

/// The inverse of [`run_tag`]: the index if the tag belongs to run `seq`.
pub(crate) fn run_index(seq: u32, tag: u64) -> Option<u32> {
    ((tag >> 32) as u32 == seq).then_some(tag as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::WdCqe;

    #[test]
    fn arithmetic_wraps() {
        assert_eq!(used(5, 3), 2);
        assert_eq!(used(2, u32::MAX - 1), 4);
        assert_eq!(room(256, 2, u32::MAX - 1), Some(252));
        assert_eq!(room(256, 0, 0), Some(256));
        assert!(is_empty(7, 7));
        assert!(is_empty(0, 0));
        assert!(is_full(4, 1, u32::MAX - 2));
        assert!(!is_full(4, 0, u32::MAX - 2));
        // A tail behind the head, or too far ahead, is corrupt.
        assert_eq!(room(256, 257, 0), None);
        assert_eq!(room(256, 3, 4), None);
        assert_eq!(slot(u32::MAX, 256), 255);
        assert_eq!(slot(256, 256), 0);
        assert_eq!(slot(u32::MAX.wrapping_add(1), 512), 0);
    }

    fn header() -> WdRingHeader {
        WdRingHeader {
            magic: WD_RING_MAGIC,
            version: WD_RING_VERSION,
            sq_entries: 256,
            cq_entries: 512,
            sq_offset: 4096,
            cq_offset: 4096 + 16384,
            desc_size: 64,
            cqe_size: 32,
            rsvd0: [0; 8],
            sq_tail: 0,
            rsvd1: [0; 15],
            sq_head: 0,
            rsvd2: [0; 15],
            cq_tail: 0,
            rsvd3: [0; 15],
            cq_head: 0,
            rsvd4: [0; 15],
        }
    }

    #[test]
    fn edu_header_is_accepted() {
        // The edu driver's layout (WD_EDU_RING_* in wd_ring.h).
        assert_eq!(
            check_header(&header(), 36864).unwrap(),
            ((4096, 256), (20480, 512))
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        type Case = (&'static str, fn(&mut WdRingHeader), usize);
        let cases: [Case; 8] = [
            ("magic", |h| h.magic = 0, 36864),
            ("version", |h| h.version = 2, 36864),
            ("desc_size", |h| h.desc_size = 32, 36864),
            ("entries", |h| h.sq_entries = 100, 36864),
            ("zero entries", |h| h.cq_entries = 0, 36864),
            ("overlap", |h| h.cq_offset = 8192, 36864),
            ("past end", |h| h.cq_offset = 30000, 36864),
            ("short region", |_| {}, 36863),
        ];
        for (name, mutate, len) in cases {
            let mut h = header();
            mutate(&mut h);
            assert!(
                matches!(check_header(&h, len), Err(Error::Protocol(_))),
                "{name}"
            );
        }
        let mut h = header();
        h.sq_offset = 100;
        assert!(check_header(&h, 36864).is_err(), "inside the header");
    }

    #[test]
    fn encoding() {
        let src = [1u8; 64];
        let mut dst = [0u8; 64];
        let (s, d) = (src.as_ptr() as u64, dst.as_mut_ptr() as u64);
        let c = Cmd::memcpy(&src, &mut dst)
            .with_user_data(9)
            .registered_only();
        assert_eq!(
            *c.desc(),
            WdDesc {
                user_data: 9,
                opcode: WD_EDU_OP_EMU_MEMCPY,
                flags: WD_DESC_REGISTERED,
                rsvd0: 0,
                src: s,
                dst: d,
                len: 64,
                arg: 0,
                rsvd1: [0; 2],
            }
        );
        let c = Cmd::crc32c(&src[..9], 0x1234);
        assert_eq!(
            (
                c.desc().opcode,
                c.desc().src,
                c.desc().dst,
                c.desc().len,
                c.desc().arg
            ),
            (WD_EDU_OP_EMU_CRC32C, s, 0, 9, 0x1234)
        );
        let c = Cmd::factorial(12);
        assert_eq!(
            *c.desc(),
            WdDesc {
                opcode: WD_EDU_OP_FACTORIAL,
                arg: 12,
                ..WdDesc::default()
            }
        );
        assert_eq!(Cmd::nop().opcode(), WD_EDU_OP_NOP);
        let c = Cmd::dma_copy(&src[..8], &mut dst[..8]);
        assert_eq!((c.opcode(), c.desc().len), (WD_EDU_OP_DMA_COPY, 8));
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn copy_lengths_must_match() {
        let src = [0u8; 8];
        let mut dst = [0u8; 4];
        let _ = Cmd::memcpy(&src, &mut dst);
    }

    #[test]
    fn tags() {
        let t = run_tag(7, 300);
        assert_eq!(run_index(7, t), Some(300));
        assert_eq!(run_index(6, t), None);
        assert_eq!(
            run_index(u32::MAX, run_tag(u32::MAX, u32::MAX)),
            Some(u32::MAX)
        );
    }

    #[test]
    fn completion_status() {
        let c = Completion {
            user_data: 1,
            result: 42,
            status: 0,
            opcode: Some(2),
        };
        assert_eq!(c.ok().unwrap(), 42);
        let c = Completion { status: -125, ..c };
        assert!(matches!(
            c.ok(),
            Err(Error::Command {
                opcode: 2,
                user_data: 1,
                status: -125
            })
        ));
        // A command's own pins over RLIMIT_MEMLOCK.
        let c = Completion { status: -12, ..c };
        assert!(matches!(
            c.ok(),
            Err(Error::MemlockLimit {
                opcode: 2,
                user_data: 1,
                ..
            })
        ));
        // The mirror's sizes are what the slots are cut by.
        assert_eq!(size_of::<WdCqe>(), 32);
    }
}
