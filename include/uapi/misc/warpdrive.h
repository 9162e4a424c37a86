/* SPDX-License-Identifier: GPL-2.0+ WITH Linux-syscall-note */
/*
 * warpdrive: user-space ABI.
 *
 * warpdrive is uacce-compatible: every device is a character device
 * /dev/<name>-<id> in class "uacce", with uacce's sysfs attributes and its
 * START_Q/PUT_Q ioctls, so that <misc/uacce/uacce.h> users (Linaro UADK's
 * libwd) work unchanged. This header repeats those definitions so that it can
 * be used on its own, and adds warpdrive's own, which never reuse the
 * numbers that out-of-tree uacce forks took: ioctl 'W' 2 and 3, flag bits 1,
 * 2 and 7.
 *
 * Usable from C and, through bindgen or by hand, from Rust.
 */
#ifndef _UAPI_MISC_WARPDRIVE_H
#define _UAPI_MISC_WARPDRIVE_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* ---- uacce-compatible part (identical to <misc/uacce/uacce.h>) ---- */

/*
 * Start the queue. The queue must be in its initial state: a second
 * START_Q without PUT_Q in between fails with EINVAL.
 */
#define WD_CMD_START_Q		_IO('W', 0)

/*
 * Stop the queue. It can be started again; its resources are freed when the
 * file is released.
 */
#define WD_CMD_PUT_Q		_IO('W', 1)

/* The device shares the process address space (SVA/PASID). */
#define WD_DEV_SVA		(1U << 0)

/*
 * mmap() regions, selected by the page offset of the mapping. Each region
 * can be mapped once per queue at a time; its size is in sysfs
 * (region_mmio_size, region_dus_size), and a mapping must cover it exactly
 * and be MAP_SHARED (EINVAL otherwise).
 */
enum wd_region {
	WD_REGION_MMIO = 0,	/* uacce UACCE_QFRT_MMIO */
	WD_REGION_DUS = 1,	/* uacce UACCE_QFRT_DUS */
};

/* ---- warpdrive's own numbers start here ---- */

/* First ioctl number of warpdrive's own ioctls. */
#define WD_IOCTL_BASE		0x10

/*
 * First ioctl number a driver may use for its private ioctls. Numbers from
 * WD_IOCTL_BASE up to here belong to warpdrive itself.
 */
#define WD_DRIVER_IOCTL_BASE	0x40

/*
 * The device has no SVA: its queues use warpdrive's shadow ring, below.
 *
 * User space never touches the hardware queue. It writes command
 * descriptors into a submission ring in plain memory (the DUS region) and
 * calls WD_IOCTL_KICK. The kernel copies each new descriptor once,
 * validates it, translates the user addresses it references into DMA
 * addresses that only the kernel and the driver see, and queues it to the
 * device. Each command ends with exactly one completion in the completion
 * ring.
 *
 * No physical or DMA address is ever visible to user space.
 */
#define WD_DEV_SHADOW_RING	(1U << 4)

/*
 * The MMIO region of a shadow-ring queue: one page of queue status. It may
 * be mapped writable, as libwd maps every region, but the kernel never reads
 * it back: what user space writes there is overwritten at the next update.
 * It never maps device registers.
 *
 * Registered buffers are mirrored, not pinned, so they are counted apart:
 * mapped_pages are their pages mapped for the device now, pinned_pages only
 * the pages pinned for commands' own memory, which RLIMIT_MEMLOCK limits.
 * invalidations counts those that took current pages of a registered buffer
 * away from the device.
 */
struct wd_queue_status {
	__u32 magic;		/* WD_QUEUE_STATUS_MAGIC */
	__u32 state;		/* enum wd_queue_state */
	__u32 queue_index;	/* which of the device's queues this is */
	__u32 rsvd;
	__u64 submitted;	/* commands accepted by KICK */
	__u64 completed;	/* completions written, failed ones included */
	__u64 errors;		/* completions with a non-zero status */
	__u64 bytes;		/* bytes of successful commands (their len) */
	__u64 pinned_pages;	/* pinned now, for commands' own memory */
	__u64 buffers;		/* buffers registered now */
	__u64 invalidations;	/* see above */
	__u64 mapped_pages;	/* of registered buffers, mapped now */
};

#define WD_QUEUE_STATUS_MAGIC	0x57445153	/* "WDQS" */

enum wd_queue_state {
	WD_QUEUE_INIT = 0,	/* open, not started */
	WD_QUEUE_STARTED = 1,	/* between START_Q and PUT_Q */
	WD_QUEUE_ORPHANED = 2,	/* the address space that opened it exited */
	WD_QUEUE_DEAD = 3,	/* the device is gone */
};

/*
 * The DUS region of a shadow-ring queue starts with this header, valid from
 * open() on. START_Q and PUT_Q do not reset the indices. The
 * submission ring (sq_entries descriptors) and the completion ring
 * (cq_entries completions) follow at the offsets it gives. The sizes are
 * powers of two; indices are free-running __u32 counters, taken modulo the
 * ring size to find an entry.
 *
 * Each index has one writer. User space writes sq_tail (after the
 * descriptors, with release ordering) and cq_head (after reading the
 * completions). The kernel writes sq_head and cq_tail; it keeps its own
 * copy of both and never reads them back, so overwriting them does
 * nothing. KICK fails with EINVAL, and leaves the queue unchanged, if
 * sq_tail is more than sq_entries ahead of sq_head or cq_head is not within
 * cq_entries behind cq_tail.
 */
struct wd_ring_header {
	__u32 magic;		/* WD_RING_MAGIC */
	__u32 version;		/* WD_RING_VERSION */
	__u32 sq_entries;
	__u32 cq_entries;
	__u32 sq_offset;	/* bytes from the start of the region */
	__u32 cq_offset;
	__u32 desc_size;	/* sizeof(struct wd_desc) */
	__u32 cqe_size;		/* sizeof(struct wd_cqe) */
	__u32 rsvd0[8];
	__u32 sq_tail;		/* user: next descriptor to write */
	__u32 rsvd1[15];
	__u32 sq_head;		/* kernel: descriptors consumed */
	__u32 rsvd2[15];
	__u32 cq_tail;		/* kernel: completions written */
	__u32 rsvd3[15];
	__u32 cq_head;		/* user: completions reaped */
	__u32 rsvd4[15];
};

#define WD_RING_MAGIC		0x57445247	/* "WDRG" */
#define WD_RING_VERSION		1

/*
 * A command. The opcodes, and which of src and dst each uses, belong to
 * the device's api (sysfs "api"). An unused address or length must be 0.
 *
 * src is read by the device and dst written, len bytes each. Both are
 * user virtual addresses of the process that opened the queue. If one
 * lies wholly inside a registered buffer (WD_IOCTL_REGISTER) with the
 * access the command needs, the device uses the pages mapped there when it
 * gets to them, and nothing is pinned. Otherwise the pages are pinned for
 * this command alone, from KICK until just before its completion is
 * written, unless WD_DESC_REGISTERED asks for registered buffers only. A
 * dst inside a buffer registered read-only fails with -EACCES; it is not
 * pinned on its own instead.
 */
struct wd_desc {
	__u64 user_data;	/* returned in the completion */
	__u16 opcode;
	__u16 flags;		/* WD_DESC_* */
	__u32 rsvd0;		/* must be 0 */
	__u64 src;
	__u64 dst;
	__u64 len;
	__u64 arg;		/* opcode-specific input */
	__u64 rsvd1[2];		/* must be 0 */
};

/* src and dst must lie in registered buffers, else the command fails. */
#define WD_DESC_REGISTERED	(1U << 0)

/*
 * A completion. status is 0 or a negative errno. A command that fails
 * validation completes at once and never reaches the device; registered
 * memory is looked up again when the device gets to it, so -EFAULT and
 * -EAGAIN may also come from a command that had started:
 *
 *   -EINVAL      unknown flags, non-zero reserved fields, a length of 0 or
 *                beyond the opcode's limit, a misaligned address or
 *                length, or a non-zero address the opcode does not use
 *   -EOPNOTSUPP  unknown opcode
 *   -EFAULT      an address range that wraps around, is not user memory,
 *                is not mapped, or is mapped without the access needed,
 *                registered memory no longer mapped included; one that
 *                was running may have written a prefix of dst
 *   -EACCES      dst lies in a buffer registered read-only
 *   -ENOENT      WD_DESC_REGISTERED, and an address is in no buffer
 *   -ENOMEM      pinning a command's own memory would exceed
 *                RLIMIT_MEMLOCK, or the kernel is out of memory
 *   -ECANCELED   the queue was stopped, released or orphaned, or its
 *                device removed, before the command finished; one that
 *                was cut short while running may have written a prefix
 *                of dst
 *   -EAGAIN      the memory kept changing: for a second with no
 *                progress, or for ten seconds in all
 *   -ENODEV      the device went away while the command ran
 *
 * and a device's own errors. result is opcode-specific.
 */
struct wd_cqe {
	__u64 user_data;
	__u64 result;
	__s32 status;
	__u32 flags;		/* 0 */
	__u64 rsvd;
};

/*
 * Register [addr, addr + len) for commands, for the device to read, and to
 * write too with WD_REGISTER_WRITE. Returns a handle for
 * WD_IOCTL_UNREGISTER.
 *
 * Nothing is pinned or charged to RLIMIT_MEMLOCK: the kernel mirrors the
 * range for the device, so that memory management can migrate, merge,
 * compact and reclaim its pages as any other. Whatever changes them
 * (munmap(), mremap(), madvise(), mprotect(), copy-on-write, migration,
 * reclaim, writeback) waits at most for the transfer the device is doing on
 * the buffer now, never for queued commands; a command uses what is mapped
 * there when the device gets to it, and fails with -EFAULT if nothing with
 * the access it needs is. So writable shared file mappings work on any file
 * system: writeback write-protects the pages for the device as well, and
 * its next write dirties them again. The range is faulted in here, so that
 * a bad one fails now. The handle stays valid until unregistered.
 *
 * Errors: EINVAL (len 0, unknown flags, wrap-around), E2BIG (longer than
 * WD_MAX_BUFFER_SIZE), ENOSPC (WD_MAX_BUFFERS registered already), EEXIST
 * (overlaps a registered buffer), ENOMEM (out of kernel memory), EFAULT
 * (not mapped, or not with the access asked for), EINTR (a fatal signal
 * while faulting it in), EAGAIN (it kept changing, for a second with no
 * progress), EPERM (not the owner).
 */
struct wd_register {
	__u64 addr;		/* in */
	__u64 len;		/* in */
	__u32 flags;		/* in: WD_REGISTER_* */
	__u32 handle;		/* out */
};

#define WD_REGISTER_WRITE	(1U << 0)	/* the device may write it */

#define WD_MAX_BUFFERS		16384		/* per queue */
#define WD_MAX_BUFFER_SIZE	(1ULL << 30)

#define WD_IOCTL_REGISTER	_IOWR('W', WD_IOCTL_BASE + 0, struct wd_register)

/*
 * Unregister the buffer with this handle (ENOENT if there is none). Waits
 * for the commands in flight that use it, queued ones included, then stops
 * mirroring it; there is nothing to unpin.
 */
#define WD_IOCTL_UNREGISTER	_IOW('W', WD_IOCTL_BASE + 1, __u32)

/*
 * Consume the descriptors from sq_head up to sq_tail. Returns how many were
 * taken: fewer when the completion ring could not hold their completions
 * (reap some, then kick again), never losing one. Each taken descriptor
 * has a completion, written at once if it failed validation. Fails with
 * EINVAL if the queue is not started or an index is corrupt. KICK faults
 * in the memory of the commands it takes and may wait for that (for a
 * userfaultfd handler, say); a fatal signal ends the wait.
 *
 * Ownership: a queue belongs to the address space that opened it. Every
 * ioctl (START_Q, PUT_Q, KICK, REGISTER, UNREGISTER and the driver's own)
 * and mmap() of the DUS region from any other address space fail with
 * EPERM: a child that inherited the fd across fork(), or a process that got
 * it over SCM_RIGHTS. Anyone holding the fd may map the status page. After
 * fork(), the parent's buffers stay its own. If the owner's address space
 * exits while another process still holds the fd, the queue is orphaned:
 * commands not finished are cancelled, buffers stop being mirrored and
 * every pin is dropped.
 */
#define WD_IOCTL_KICK		_IO('W', WD_IOCTL_BASE + 2)

/* ---- QEMU edu device driver (samples/warpdrive/edu), api warpdrive_edu_v2 ---- */

/*
 * Opcodes of an edu queue. The device's own units are slow (each DMA
 * transfer takes QEMU 100 ms); the bulk engine is emulated by the driver
 * in software, on the same path through warpdrive, for volume.
 */
enum wd_edu_op {
	/*
	 * Nothing; completes with status 0 within the KICK that takes it,
	 * ahead of commands still queued. No operands.
	 */
	WD_EDU_OP_NOP = 1,
	/* The device's factorial unit: result = arg! truncated to 32 bits. */
	WD_EDU_OP_FACTORIAL = 2,
	/*
	 * The device's DMA engine: copy len bytes from src to dst through its
	 * 4 KiB buffer. src, dst and len are multiples of 4, len at most
	 * WD_EDU_DMA_COPY_MAX. result = len.
	 */
	WD_EDU_OP_DMA_COPY = 3,
	/* Emulated bulk engine: copy len bytes from src to dst. result = len. */
	WD_EDU_OP_EMU_MEMCPY = 4,
	/*
	 * Emulated bulk engine: result = CRC-32C (Castagnoli, as iSCSI and
	 * ext4) of len bytes at src, continuing from the CRC in arg (0 to
	 * start).
	 */
	WD_EDU_OP_EMU_CRC32C = 5,
};

#define WD_EDU_DMA_COPY_MAX	(64U << 10)
#define WD_EDU_BULK_MAX		(256U << 20)	/* EMU_MEMCPY and EMU_CRC32C */

/*
 * Compute n! on the device's factorial unit, synchronously, outside the
 * ring. The unit is shared by every queue of the device; the call waits
 * for the device's completion interrupt. The result is the device's: n!
 * truncated to 32 bits (0 for n >= 34). Fails with EINVAL if the queue is
 * not started.
 */
struct wd_edu_factorial {
	__u32 n;		/* in */
	__u32 result;		/* out */
};

#define WD_EDU_CMD_FACTORIAL	_IOWR('W', WD_DRIVER_IOCTL_BASE + 0, \
				      struct wd_edu_factorial)

#endif /* _UAPI_MISC_WARPDRIVE_H */
