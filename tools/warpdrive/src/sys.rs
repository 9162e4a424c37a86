// SPDX-License-Identifier: GPL-2.0
//! The only module with `unsafe` code: the ioctls, the mappings of a queue's
//! two regions, and the loads and stores that the ring protocol needs on
//! memory the kernel shares with us.
//!
//! Everything here is small and checked by its callers; the rest of the
//! crate is safe code on top of it.

#![allow(unsafe_code)]

use core::ffi::c_void;
use core::mem::offset_of;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};
use rustix::mm::{MapFlags, ProtFlags};

use crate::abi::{
    WdCqe, WdDesc, WdEduFactorial, WdQueueStatus, WdRegister, WdRingHeader, WD_CMD_PUT_Q,
    WD_CMD_START_Q, WD_EDU_CMD_FACTORIAL, WD_IOCTL_KICK, WD_IOCTL_REGISTER, WD_IOCTL_UNREGISTER,
};

/// One ioctl with an optional pointer argument, returning the ioctl's own
/// return value (KICK returns a count).
struct RawIoctl {
    opcode: Opcode,
    arg: *mut c_void,
}

// SAFETY: each RawIoctl is built below for one of the header's ioctls with the
// argument type the header gives it, and the kernel writes at most
// `_IOC_SIZE(opcode)` bytes at `arg`, which the callers size exactly.
unsafe impl Ioctl for RawIoctl {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

fn raw_ioctl(fd: BorrowedFd<'_>, opcode: u32, arg: *mut c_void) -> io::Result<i32> {
    let req = RawIoctl {
        opcode: opcode as Opcode,
        arg,
    };
    // SAFETY: see `impl Ioctl for RawIoctl`; `arg` is null or points to a
    // live value of the type the opcode encodes (the typed wrappers below).
    unsafe { rustix::ioctl::ioctl(fd, req) }.map_err(io::Error::from)
}

/// `WD_CMD_START_Q`.
pub fn start_q(fd: BorrowedFd<'_>) -> io::Result<()> {
    raw_ioctl(fd, WD_CMD_START_Q, ptr::null_mut()).map(drop)
}

/// `WD_CMD_PUT_Q`.
pub fn put_q(fd: BorrowedFd<'_>) -> io::Result<()> {
    raw_ioctl(fd, WD_CMD_PUT_Q, ptr::null_mut()).map(drop)
}

/// `WD_IOCTL_KICK`: the number of descriptors the kernel took.
pub fn kick(fd: BorrowedFd<'_>) -> io::Result<u32> {
    raw_ioctl(fd, WD_IOCTL_KICK, ptr::null_mut()).map(|n| n as u32)
}

/// `WD_IOCTL_REGISTER`; fills in `reg.handle`.
pub fn register(fd: BorrowedFd<'_>, reg: &mut WdRegister) -> io::Result<()> {
    raw_ioctl(fd, WD_IOCTL_REGISTER, ptr::from_mut(reg).cast()).map(drop)
}

/// `WD_IOCTL_UNREGISTER`.
pub fn unregister(fd: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    let mut handle = handle;
    raw_ioctl(fd, WD_IOCTL_UNREGISTER, ptr::from_mut(&mut handle).cast()).map(drop)
}

/// `WD_EDU_CMD_FACTORIAL`; fills in `arg.result`.
pub fn edu_factorial(fd: BorrowedFd<'_>, arg: &mut WdEduFactorial) -> io::Result<()> {
    raw_ioctl(fd, WD_EDU_CMD_FACTORIAL, ptr::from_mut(arg).cast()).map(drop)
}

/// A shared mapping of one region of a queue, unmapped on drop.
///
/// The kernel zaps both regions when the device goes away; touching them
/// afterwards raises SIGBUS. [`crate::Queue`] stops touching them once it
/// has seen the device gone, but cannot close the window in which the
/// device goes away between its check and the access.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
}

// SAFETY: the mapping is process-wide memory; the pointer is not tied to the
// thread that created it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of region `region` (a page offset) of `fd`, for
    /// reading and also for writing if `writable`. The kernel accepts either
    /// protection for both regions; the status page, which it rewrites and
    /// never reads back, is mapped read-only by [`crate::Queue`] because
    /// nothing here writes it.
    pub fn new(fd: BorrowedFd<'_>, region: u64, len: usize, writable: bool) -> io::Result<Self> {
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        let offset = region * rustix::param::page_size() as u64;
        // SAFETY: a new shared mapping at an address the kernel picks, so it
        // replaces nothing of ours; it is unmapped only by `Drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                ptr::null_mut(),
                len,
                prot,
                MapFlags::SHARED,
                fd.as_fd(),
                offset,
            )
        }?;
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Self { ptr, len })
    }

    /// The mapping's length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The address of `size` bytes at `off`, asserted to lie in the mapping
    /// and to be aligned to `align`.
    fn at(&self, off: usize, size: usize, align: usize) -> *mut u8 {
        assert!(off.is_multiple_of(align) && off.checked_add(size).is_some_and(|e| e <= self.len));
        // The mapping is page aligned, so `off`'s alignment is the address's.
        self.ptr.as_ptr().cast::<u8>().wrapping_add(off)
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        let p = self.at(off, 4, 4).cast();
        // SAFETY: `at` checked bounds and alignment, and the mapping lives as
        // long as `self`. The kernel accesses it concurrently, so only atomic
        // accesses are made through it.
        unsafe { AtomicU32::from_ptr(p) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        let p = self.at(off, 8, 8).cast();
        // SAFETY: as for `u32_at`.
        unsafe { AtomicU64::from_ptr(p) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are those of our own mapping, and nothing
        // borrowed from it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// Reads the status page, each field once and atomically: the counters are
/// each consistent, not all of them together.
pub fn read_status(map: &Mapping) -> WdQueueStatus {
    let r32 = |off: usize| map.u32_at(off).load(Ordering::Relaxed);
    let r64 = |off: usize| map.u64_at(off).load(Ordering::Relaxed);
    WdQueueStatus {
        magic: r32(offset_of!(WdQueueStatus, magic)),
        state: r32(offset_of!(WdQueueStatus, state)),
        queue_index: r32(offset_of!(WdQueueStatus, queue_index)),
        rsvd: r32(offset_of!(WdQueueStatus, rsvd)),
        submitted: r64(offset_of!(WdQueueStatus, submitted)),
        completed: r64(offset_of!(WdQueueStatus, completed)),
        errors: r64(offset_of!(WdQueueStatus, errors)),
        bytes: r64(offset_of!(WdQueueStatus, bytes)),
        pinned_pages: r64(offset_of!(WdQueueStatus, pinned_pages)),
        buffers: r64(offset_of!(WdQueueStatus, buffers)),
        invalidations: r64(offset_of!(WdQueueStatus, invalidations)),
        mapped_pages: r64(offset_of!(WdQueueStatus, mapped_pages)),
    }
}

/// Reads the constant part of the ring header (magic to cqe_size).
pub fn read_ring_header(map: &Mapping) -> WdRingHeader {
    let r = |off: usize| map.u32_at(off).load(Ordering::Relaxed);
    WdRingHeader {
        magic: r(0),
        version: r(4),
        sq_entries: r(8),
        cq_entries: r(12),
        sq_offset: r(16),
        cq_offset: r(20),
        desc_size: r(24),
        cqe_size: r(28),
        rsvd0: [0; 8],
        sq_tail: r(64),
        rsvd1: [0; 15],
        sq_head: r(128),
        rsvd2: [0; 15],
        cq_tail: r(192),
        rsvd3: [0; 15],
        cq_head: r(256),
        rsvd4: [0; 15],
    }
}

const SQ_TAIL: usize = 64;
const SQ_HEAD: usize = 128;
const CQ_TAIL: usize = 192;
const CQ_HEAD: usize = 256;

/// The rings of a mapped DUS region whose header was validated.
#[derive(Debug)]
pub struct RingMap {
    map: Mapping,
    sq_offset: usize,
    sq_entries: u32,
    cq_offset: usize,
    cq_entries: u32,
}

impl RingMap {
    /// Takes over `map` with rings at the given places. The caller checked
    /// (see `ring::check_header`) that they lie within the mapping, are
    /// 8-byte aligned and have power-of-two sizes; this asserts it again.
    pub fn new(map: Mapping, sq: (usize, u32), cq: (usize, u32)) -> Self {
        let fits = |(off, n): (usize, u32), size: usize| {
            off.is_multiple_of(8)
                && n.is_power_of_two()
                && (n as usize)
                    .checked_mul(size)
                    .and_then(|l| l.checked_add(off))
                    .is_some_and(|end| end <= map.len())
        };
        assert!(fits(sq, size_of::<WdDesc>()) && fits(cq, size_of::<WdCqe>()));
        Self {
            map,
            sq_offset: sq.0,
            sq_entries: sq.1,
            cq_offset: cq.0,
            cq_entries: cq.1,
        }
    }

    /// sq_tail as we last wrote it (we are its only writer).
    pub fn sq_tail(&self) -> u32 {
        self.map.u32_at(SQ_TAIL).load(Ordering::Relaxed)
    }

    /// sq_head, with acquire ordering: slots before it are free again.
    pub fn sq_head(&self) -> u32 {
        self.map.u32_at(SQ_HEAD).load(Ordering::Acquire)
    }

    /// cq_tail, with acquire ordering: the completions before it are
    /// written.
    pub fn cq_tail(&self) -> u32 {
        self.map.u32_at(CQ_TAIL).load(Ordering::Acquire)
    }

    /// cq_head as we last wrote it.
    pub fn cq_head(&self) -> u32 {
        self.map.u32_at(CQ_HEAD).load(Ordering::Relaxed)
    }

    /// Publishes the descriptors before `tail` (release: written first).
    pub fn set_sq_tail(&self, tail: u32) {
        self.map.u32_at(SQ_TAIL).store(tail, Ordering::Release);
    }

    /// Hands the completions before `head` back (release: read first).
    pub fn set_cq_head(&self, head: u32) {
        self.map.u32_at(CQ_HEAD).store(head, Ordering::Release);
    }

    /// Writes descriptor slot `idx` (modulo the ring size). The caller only
    /// writes slots between sq_tail and sq_head + sq_entries, which the
    /// kernel does not read until sq_tail is published past them.
    pub fn write_desc(&self, idx: u32, desc: &WdDesc) {
        let off = self.sq_offset + (idx & (self.sq_entries - 1)) as usize * size_of::<WdDesc>();
        let p = self.map.at(off, size_of::<WdDesc>(), 8).cast::<WdDesc>();
        // SAFETY: `at` checked that the slot lies in the mapping, aligned;
        // volatile because the kernel reads the slot (once it is published).
        unsafe { ptr::write_volatile(p, *desc) }
    }

    /// Reads completion slot `idx` (modulo the ring size); the caller read
    /// cq_tail past it first.
    pub fn read_cqe(&self, idx: u32) -> WdCqe {
        let off = self.cq_offset + (idx & (self.cq_entries - 1)) as usize * size_of::<WdCqe>();
        let p = self.map.at(off, size_of::<WdCqe>(), 8).cast::<WdCqe>();
        // SAFETY: as in `write_desc`; the kernel wrote this slot before it
        // published cq_tail, which we loaded with acquire ordering.
        unsafe { ptr::read_volatile(p) }
    }

    /// Submission ring size.
    pub fn sq_entries(&self) -> u32 {
        self.sq_entries
    }

    /// Completion ring size.
    pub fn cq_entries(&self) -> u32 {
        self.cq_entries
    }
}
