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
 * (region_mmio_size, region_dus_size) and a mapping must cover it exactly.
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

/* ---- QEMU edu device driver (samples/warpdrive/edu) ---- */

/*
 * The MMIO region of an edu queue: one read-only page of queue status.
 * It never maps device registers.
 */
struct wd_edu_status {
	__u32 magic;		/* WD_EDU_STATUS_MAGIC */
	__u32 queue_index;	/* which of the device's queues this is */
	__u32 started;		/* 1 between START_Q and PUT_Q */
	__u32 completed;	/* factorials completed on this queue */
};

#define WD_EDU_STATUS_MAGIC	0x57444544	/* "WDED" */

/*
 * Compute n! on the device's factorial unit. The unit is shared by every
 * queue of the device; the call waits for the device's completion interrupt.
 * The result is the device's: n! truncated to 32 bits (0 for n >= 34).
 * Fails with EINVAL if the queue is not started.
 */
struct wd_edu_factorial {
	__u32 n;		/* in */
	__u32 result;		/* out */
};

#define WD_EDU_CMD_FACTORIAL	_IOWR('W', WD_DRIVER_IOCTL_BASE + 0, \
				      struct wd_edu_factorial)

#endif /* _UAPI_MISC_WARPDRIVE_H */
