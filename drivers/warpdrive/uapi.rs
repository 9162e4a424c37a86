// SPDX-License-Identifier: GPL-2.0

//! The numbers of warpdrive's user-space ABI.
//!
//! These mirror `include/uapi/misc/warpdrive.h`, which is the reference; the selftests use the
//! header and check the behaviour behind every number here.

use kernel::{
    ioctl::{_IO, _IOW, _IOWR},
    transmute::{AsBytes, FromBytes},
};

/// The ioctl type of uacce and warpdrive.
pub const IOCTL_TYPE: u32 = b'W' as u32;

/// `WD_CMD_START_Q`, uacce's `UACCE_CMD_START_Q`.
pub const CMD_START_Q: u32 = _IO(IOCTL_TYPE, 0);

/// `WD_CMD_PUT_Q`, uacce's `UACCE_CMD_PUT_Q`.
pub const CMD_PUT_Q: u32 = _IO(IOCTL_TYPE, 1);

/// `WD_IOCTL_BASE`: warpdrive's own ioctl numbers start here.
pub const IOCTL_BASE: u32 = 0x10;

/// `WD_DRIVER_IOCTL_BASE`: driver-private ioctl numbers start here.
pub const DRIVER_IOCTL_BASE: u32 = 0x40;

/// `WD_DEV_SVA`, uacce's `UACCE_DEV_SVA`: the device shares the process address space.
pub const DEV_SVA: u32 = 1 << 0;

/// The largest argument of a driver-private ioctl that warpdrive copies in and out.
pub const MAX_DRIVER_IOCTL_SIZE: usize = 4096;

/// `WD_DEV_SHADOW_RING`: the device has no SVA, and its queues use warpdrive's shadow ring.
pub const DEV_SHADOW_RING: u32 = 1 << 4;

/// `WD_IOCTL_REGISTER`.
pub const IOCTL_REGISTER: u32 = _IOWR::<Register>(IOCTL_TYPE, IOCTL_BASE);

/// `WD_IOCTL_UNREGISTER`.
pub const IOCTL_UNREGISTER: u32 = _IOW::<u32>(IOCTL_TYPE, IOCTL_BASE + 1);

/// `WD_IOCTL_KICK`.
pub const IOCTL_KICK: u32 = _IO(IOCTL_TYPE, IOCTL_BASE + 2);

/// `WD_REGISTER_WRITE`: the device may write the buffer.
pub const REGISTER_WRITE: u32 = 1 << 0;

/// `WD_MAX_BUFFERS`: how many buffers a queue may have registered at once.
pub const MAX_BUFFERS: usize = 16384;

/// `WD_MAX_BUFFER_SIZE`: the largest buffer that can be registered, in bytes.
pub const MAX_BUFFER_SIZE: u64 = 1 << 30;

/// `WD_DESC_REGISTERED`: the command's addresses must lie in registered buffers.
pub const DESC_REGISTERED: u16 = 1 << 0;

/// `WD_QUEUE_STATUS_MAGIC`, "WDQS".
pub const QUEUE_STATUS_MAGIC: u32 = 0x5744_5153;

/// `WD_RING_MAGIC`, "WDRG".
pub const RING_MAGIC: u32 = 0x5744_5247;

/// `WD_RING_VERSION`.
pub const RING_VERSION: u32 = 1;

/// `enum wd_queue_state`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum QueueState {
    /// `WD_QUEUE_INIT`: open, not started.
    Init = 0,
    /// `WD_QUEUE_STARTED`: between `START_Q` and `PUT_Q`.
    Started = 1,
    /// `WD_QUEUE_ORPHANED`: the address space that opened the queue exited.
    Orphaned = 2,
    /// `WD_QUEUE_DEAD`: the device is gone.
    Dead = 3,
}

/// `struct wd_queue_status`, the MMIO region of a shadow-ring queue.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct QueueStatus {
    /// `WD_QUEUE_STATUS_MAGIC`.
    pub magic: u32,
    /// A [`QueueState`].
    pub state: u32,
    /// Which of the device's queues this is.
    pub queue_index: u32,
    /// Reserved, 0.
    pub rsvd: u32,
    /// Commands accepted by `KICK`.
    pub submitted: u64,
    /// Completions written.
    pub completed: u64,
    /// Completions with a non-zero status.
    pub errors: u64,
    /// Bytes of successful commands.
    pub bytes: u64,
    /// Pages the queue keeps pinned now.
    pub pinned_pages: u64,
    /// Buffers registered now.
    pub buffers: u64,
    /// Registered mappings torn down by the MMU notifier.
    pub invalidations: u64,
    /// Pages of registered buffers mapped for the device now.
    pub mapped_pages: u64,
}

/// `struct wd_ring_header`, at the start of the DUS region of a shadow-ring queue.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RingHeader {
    /// `WD_RING_MAGIC`.
    pub magic: u32,
    /// `WD_RING_VERSION`.
    pub version: u32,
    /// Descriptors in the submission ring, a power of two.
    pub sq_entries: u32,
    /// Completions in the completion ring, a power of two.
    pub cq_entries: u32,
    /// Byte offset of the submission ring in the region.
    pub sq_offset: u32,
    /// Byte offset of the completion ring in the region.
    pub cq_offset: u32,
    /// `sizeof(struct wd_desc)`.
    pub desc_size: u32,
    /// `sizeof(struct wd_cqe)`.
    pub cqe_size: u32,
    /// Reserved.
    pub rsvd0: [u32; 8],
    /// Written by user space: the next descriptor it will write.
    pub sq_tail: u32,
    /// Reserved.
    pub rsvd1: [u32; 15],
    /// Written by the kernel: descriptors consumed.
    pub sq_head: u32,
    /// Reserved.
    pub rsvd2: [u32; 15],
    /// Written by the kernel: completions written.
    pub cq_tail: u32,
    /// Reserved.
    pub rsvd3: [u32; 15],
    /// Written by user space: completions reaped.
    pub cq_head: u32,
    /// Reserved.
    pub rsvd4: [u32; 15],
}

impl RingHeader {
    /// The byte offset of `sq_tail` in the header.
    pub const SQ_TAIL: usize = core::mem::offset_of!(RingHeader, sq_tail);
    /// The byte offset of `sq_head` in the header.
    pub const SQ_HEAD: usize = core::mem::offset_of!(RingHeader, sq_head);
    /// The byte offset of `cq_tail` in the header.
    pub const CQ_TAIL: usize = core::mem::offset_of!(RingHeader, cq_tail);
    /// The byte offset of `cq_head` in the header.
    pub const CQ_HEAD: usize = core::mem::offset_of!(RingHeader, cq_head);
}

/// `struct wd_desc`, a command descriptor.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Desc {
    /// Returned in the completion.
    pub user_data: u64,
    /// The device's opcode.
    pub opcode: u16,
    /// `WD_DESC_*`.
    pub flags: u16,
    /// Must be 0.
    pub rsvd0: u32,
    /// The user address the device reads, or 0.
    pub src: u64,
    /// The user address the device writes, or 0.
    pub dst: u64,
    /// Bytes at `src` and at `dst`.
    pub len: u64,
    /// Opcode-specific input.
    pub arg: u64,
    /// Must be 0.
    pub rsvd1: [u64; 2],
}

/// `struct wd_cqe`, a completion.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Cqe {
    /// The descriptor's `user_data`.
    pub user_data: u64,
    /// Opcode-specific output.
    pub result: u64,
    /// 0 or a negative errno.
    pub status: i32,
    /// 0.
    pub flags: u32,
    /// 0.
    pub rsvd: u64,
}

/// `struct wd_register`, the argument of `WD_IOCTL_REGISTER`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Register {
    /// The start of the buffer.
    pub addr: u64,
    /// Its length in bytes.
    pub len: u64,
    /// `WD_REGISTER_*`.
    pub flags: u32,
    /// Out: the handle.
    pub handle: u32,
}

// The layouts are the header's; the selftests check the behaviour behind them.
const _: () = assert!(core::mem::size_of::<Desc>() == 64);
const _: () = assert!(core::mem::size_of::<Cqe>() == 32);
const _: () = assert!(core::mem::size_of::<RingHeader>() == 320);
const _: () = assert!(core::mem::size_of::<QueueStatus>() == 80);
const _: () = assert!(core::mem::size_of::<Register>() == 24);

// SAFETY: Integers and arrays of integers, with no padding (the sizes above are the sums of the
// fields'), so any bit pattern is valid and every byte is initialised.
unsafe impl FromBytes for Desc {}
// SAFETY: As above.
unsafe impl AsBytes for Cqe {}
// SAFETY: As above.
unsafe impl AsBytes for RingHeader {}
// SAFETY: As above.
unsafe impl AsBytes for QueueStatus {}
// SAFETY: As above.
unsafe impl FromBytes for Register {}
// SAFETY: As above.
unsafe impl AsBytes for Register {}
// SAFETY: As above.
unsafe impl AsBytes for Desc {}
