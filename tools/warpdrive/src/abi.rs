// SPDX-License-Identifier: GPL-2.0
//! A hand-written mirror of `include/uapi/misc/warpdrive.h`.
//!
//! The header is the reference. Every structure here is `#[repr(C)]` and its
//! size and field offsets are checked at compile time against the sizes the
//! header and `Documentation/warpdrive/shadow-ring.rst` document, so a
//! change on either side that is not made on both fails the build.

use core::mem::{offset_of, size_of};

/// `WD_DEV_SVA`: the device shares the process address space.
pub const WD_DEV_SVA: u32 = 1 << 0;
/// `WD_DEV_SHADOW_RING`: the device's queues use the shadow ring.
pub const WD_DEV_SHADOW_RING: u32 = 1 << 4;

/// `WD_REGION_MMIO`: page offset of the status page mapping.
pub const WD_REGION_MMIO: u64 = 0;
/// `WD_REGION_DUS`: page offset of the ring mapping.
pub const WD_REGION_DUS: u64 = 1;

/// `WD_QUEUE_STATUS_MAGIC`, "WDQS".
pub const WD_QUEUE_STATUS_MAGIC: u32 = 0x5744_5153;
/// `WD_RING_MAGIC`, "WDRG".
pub const WD_RING_MAGIC: u32 = 0x5744_5247;
/// `WD_RING_VERSION`.
pub const WD_RING_VERSION: u32 = 1;

/// `WD_DESC_REGISTERED`: src and dst must lie in registered buffers.
pub const WD_DESC_REGISTERED: u16 = 1 << 0;
/// `WD_REGISTER_WRITE`: the device may write the registered buffer.
pub const WD_REGISTER_WRITE: u32 = 1 << 0;
/// `WD_MAX_BUFFERS`: registered buffers per queue.
pub const WD_MAX_BUFFERS: u32 = 16384;
/// `WD_MAX_BUFFER_SIZE`: the largest registered buffer.
pub const WD_MAX_BUFFER_SIZE: u64 = 1 << 30;

/// `enum wd_queue_state`: `WD_QUEUE_INIT`.
pub const WD_QUEUE_INIT: u32 = 0;
/// `WD_QUEUE_STARTED`.
pub const WD_QUEUE_STARTED: u32 = 1;
/// `WD_QUEUE_ORPHANED`.
pub const WD_QUEUE_ORPHANED: u32 = 2;
/// `WD_QUEUE_DEAD`.
pub const WD_QUEUE_DEAD: u32 = 3;

/// `enum wd_edu_op`: `WD_EDU_OP_NOP`.
pub const WD_EDU_OP_NOP: u16 = 1;
/// `WD_EDU_OP_FACTORIAL`: result = arg! truncated to 32 bits.
pub const WD_EDU_OP_FACTORIAL: u16 = 2;
/// `WD_EDU_OP_DMA_COPY`: the device's DMA engine, at most
/// [`WD_EDU_DMA_COPY_MAX`] bytes, multiples of 4.
pub const WD_EDU_OP_DMA_COPY: u16 = 3;
/// `WD_EDU_OP_EMU_MEMCPY`: the emulated bulk copy.
pub const WD_EDU_OP_EMU_MEMCPY: u16 = 4;
/// `WD_EDU_OP_EMU_CRC32C`: the emulated CRC-32C, chained through arg.
pub const WD_EDU_OP_EMU_CRC32C: u16 = 5;
/// `WD_EDU_DMA_COPY_MAX`.
pub const WD_EDU_DMA_COPY_MAX: u64 = 64 << 10;
/// `WD_EDU_BULK_MAX`: the longest EMU_MEMCPY or EMU_CRC32C.
pub const WD_EDU_BULK_MAX: u64 = 256 << 20;

/// The api string of the edu driver (sysfs `api`).
pub const EDU_API: &str = "warpdrive_edu_v2";

/// `struct wd_queue_status`: the status page. The kernel rewrites it and
/// never reads it back, so it may be mapped read-only (as this crate does)
/// or `PROT_READ | PROT_WRITE` (as UADK's libwd maps every region).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WdQueueStatus {
    /// [`WD_QUEUE_STATUS_MAGIC`].
    pub magic: u32,
    /// `enum wd_queue_state`.
    pub state: u32,
    /// Which of the device's queues this is.
    pub queue_index: u32,
    /// Reserved.
    pub rsvd: u32,
    /// Commands accepted by KICK.
    pub submitted: u64,
    /// Completions written, failed ones included.
    pub completed: u64,
    /// Completions with a non-zero status.
    pub errors: u64,
    /// Bytes of successful commands.
    pub bytes: u64,
    /// Pages pinned now for commands' own memory (operands outside
    /// registered buffers, pinned while their command lives).
    pub pinned_pages: u64,
    /// Buffers registered now.
    pub buffers: u64,
    /// Invalidations that took current pages of a registered buffer away
    /// from the device.
    pub invalidations: u64,
    /// Pages of registered buffers mapped for the device now (mirrored,
    /// never pinned).
    pub mapped_pages: u64,
}

/// `struct wd_ring_header`: the first bytes of the DUS region. Each index
/// sits in its own 64-byte line.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WdRingHeader {
    /// [`WD_RING_MAGIC`].
    pub magic: u32,
    /// [`WD_RING_VERSION`].
    pub version: u32,
    /// Submission ring size, a power of two.
    pub sq_entries: u32,
    /// Completion ring size, a power of two.
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
    /// User: the next descriptor to write.
    pub sq_tail: u32,
    /// Reserved.
    pub rsvd1: [u32; 15],
    /// Kernel: descriptors consumed.
    pub sq_head: u32,
    /// Reserved.
    pub rsvd2: [u32; 15],
    /// Kernel: completions written.
    pub cq_tail: u32,
    /// Reserved.
    pub rsvd3: [u32; 15],
    /// User: completions reaped.
    pub cq_head: u32,
    /// Reserved.
    pub rsvd4: [u32; 15],
}

/// `struct wd_desc`: one command in the submission ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WdDesc {
    /// Returned in the completion.
    pub user_data: u64,
    /// The opcode, of the device's api.
    pub opcode: u16,
    /// `WD_DESC_*`.
    pub flags: u16,
    /// Must be 0.
    pub rsvd0: u32,
    /// User address the device reads, or 0.
    pub src: u64,
    /// User address the device writes, or 0.
    pub dst: u64,
    /// Bytes at src and dst.
    pub len: u64,
    /// Opcode-specific input.
    pub arg: u64,
    /// Must be 0.
    pub rsvd1: [u64; 2],
}

/// `struct wd_cqe`: one completion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WdCqe {
    /// The command's user_data.
    pub user_data: u64,
    /// Opcode-specific result.
    pub result: u64,
    /// 0 or a negative errno.
    pub status: i32,
    /// 0.
    pub flags: u32,
    /// Reserved.
    pub rsvd: u64,
}

/// `struct wd_register`: the argument of `WD_IOCTL_REGISTER`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WdRegister {
    /// In: start address.
    pub addr: u64,
    /// In: length in bytes.
    pub len: u64,
    /// In: `WD_REGISTER_*`.
    pub flags: u32,
    /// Out: handle for `WD_IOCTL_UNREGISTER`.
    pub handle: u32,
}

/// `struct wd_edu_factorial`: the argument of `WD_EDU_CMD_FACTORIAL`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WdEduFactorial {
    /// In.
    pub n: u32,
    /// Out.
    pub result: u32,
}

const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = 8;
const IOC_SIZESHIFT: u32 = 16;
const IOC_DIRSHIFT: u32 = 30;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// The Linux `_IOC()` encoding (x86, arm64, riscv: the generic one).
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

const WD_IOC_TYPE: u8 = b'W';
/// `WD_IOCTL_BASE`: first ioctl number of warpdrive's own.
pub const WD_IOCTL_BASE: u8 = 0x10;
/// `WD_DRIVER_IOCTL_BASE`: first driver-private ioctl number.
pub const WD_DRIVER_IOCTL_BASE: u8 = 0x40;

/// `WD_CMD_START_Q`, `_IO('W', 0)`.
pub const WD_CMD_START_Q: u32 = ioc(0, WD_IOC_TYPE, 0, 0);
/// `WD_CMD_PUT_Q`, `_IO('W', 1)`.
pub const WD_CMD_PUT_Q: u32 = ioc(0, WD_IOC_TYPE, 1, 0);
/// `WD_IOCTL_REGISTER`, `_IOWR('W', 0x10, struct wd_register)`.
pub const WD_IOCTL_REGISTER: u32 = ioc(
    IOC_READ | IOC_WRITE,
    WD_IOC_TYPE,
    WD_IOCTL_BASE,
    size_of::<WdRegister>(),
);
/// `WD_IOCTL_UNREGISTER`, `_IOW('W', 0x11, __u32)`.
pub const WD_IOCTL_UNREGISTER: u32 =
    ioc(IOC_WRITE, WD_IOC_TYPE, WD_IOCTL_BASE + 1, size_of::<u32>());
/// `WD_IOCTL_KICK`, `_IO('W', 0x12)`.
pub const WD_IOCTL_KICK: u32 = ioc(0, WD_IOC_TYPE, WD_IOCTL_BASE + 2, 0);
/// `WD_EDU_CMD_FACTORIAL`, `_IOWR('W', 0x40, struct wd_edu_factorial)`.
pub const WD_EDU_CMD_FACTORIAL: u32 = ioc(
    IOC_READ | IOC_WRITE,
    WD_IOC_TYPE,
    WD_DRIVER_IOCTL_BASE,
    size_of::<WdEduFactorial>(),
);

// The layout the header documents. A mismatch is a compile error.
const _: () = {
    assert!(size_of::<WdQueueStatus>() == 80);
    assert!(offset_of!(WdQueueStatus, queue_index) == 8);
    assert!(offset_of!(WdQueueStatus, submitted) == 16);
    assert!(offset_of!(WdQueueStatus, completed) == 24);
    assert!(offset_of!(WdQueueStatus, errors) == 32);
    assert!(offset_of!(WdQueueStatus, bytes) == 40);
    assert!(offset_of!(WdQueueStatus, pinned_pages) == 48);
    assert!(offset_of!(WdQueueStatus, buffers) == 56);
    assert!(offset_of!(WdQueueStatus, invalidations) == 64);
    assert!(offset_of!(WdQueueStatus, mapped_pages) == 72);

    assert!(size_of::<WdRingHeader>() == 320);
    assert!(offset_of!(WdRingHeader, desc_size) == 24);
    assert!(offset_of!(WdRingHeader, cqe_size) == 28);
    assert!(offset_of!(WdRingHeader, sq_tail) == 64);
    assert!(offset_of!(WdRingHeader, sq_head) == 128);
    assert!(offset_of!(WdRingHeader, cq_tail) == 192);
    assert!(offset_of!(WdRingHeader, cq_head) == 256);

    assert!(size_of::<WdDesc>() == 64);
    assert!(offset_of!(WdDesc, opcode) == 8);
    assert!(offset_of!(WdDesc, flags) == 10);
    assert!(offset_of!(WdDesc, src) == 16);
    assert!(offset_of!(WdDesc, dst) == 24);
    assert!(offset_of!(WdDesc, len) == 32);
    assert!(offset_of!(WdDesc, arg) == 40);
    assert!(offset_of!(WdDesc, rsvd1) == 48);

    assert!(size_of::<WdCqe>() == 32);
    assert!(offset_of!(WdCqe, result) == 8);
    assert!(offset_of!(WdCqe, status) == 16);
    assert!(offset_of!(WdCqe, flags) == 20);

    assert!(size_of::<WdRegister>() == 24);
    assert!(offset_of!(WdRegister, handle) == 20);
    assert!(size_of::<WdEduFactorial>() == 8);

    // The numbers <linux/ioctl.h> gives for the header's macros.
    assert!(WD_CMD_START_Q == 0x5700);
    assert!(WD_CMD_PUT_Q == 0x5701);
    assert!(WD_IOCTL_REGISTER == 0xc018_5710);
    assert!(WD_IOCTL_UNREGISTER == 0x4004_5711);
    assert!(WD_IOCTL_KICK == 0x5712);
    assert!(WD_EDU_CMD_FACTORIAL == 0xc008_5740);
};
