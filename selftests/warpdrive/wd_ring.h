/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shadow-ring helpers for the warpdrive selftests: a started queue with its
 * status page and ring mapped, submission and reaping as the UAPI header
 * describes them, buffer registration, and CPU references (CRC-32C, byte
 * patterns) to check the device's results against.
 *
 * Functions that return an int return 0 (or a count) on success and a
 * negative errno on failure, and leave a description of the failure in
 * wd_ring_error() for TH_LOG(). The exceptions, wd_register() and
 * wd_unregister(), return what ioctl() returned and leave errno set, so
 * that tests can check errnos as they do for other ioctls.
 */
#ifndef WD_RING_H
#define WD_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <misc/warpdrive.h>

#include "wd_util.h"

/* What every edu device offers (asserted once, in discovery). */
#define WD_EDU_RING_MMIO_SIZE	4096UL
#define WD_EDU_RING_DUS_SIZE	36864UL
#define WD_EDU_SQ_ENTRIES	256U
#define WD_EDU_CQ_ENTRIES	512U
#define WD_EDU_SQ_OFFSET	4096U
#define WD_EDU_CQ_OFFSET	(4096U + 16384U)

/* How long a test waits for completions before calling the device hung. */
#define WD_WAIT_MS		30000

/* Addresses that are never user memory of a test. */
#define WD_KERNEL_ADDR		0xffff888000000000ULL
#define WD_NONCANON_ADDR	0x8000000000000000ULL

/* A shadow-ring queue with both of its regions mapped. */
struct wd_queue {
	int fd;
	struct wd_queue_status *st;	/* MMIO region, read-only */
	size_t st_len;
	void *dus;			/* DUS region */
	size_t dus_len;
	struct wd_ring_header *hdr;	/* start of the DUS region */
	struct wd_desc *sq;
	struct wd_cqe *cq;
	uint32_t sq_entries;
	uint32_t cq_entries;
};

/* wd_queue_open() flags */
#define WD_Q_NOSTART	(1U << 0)	/* leave the queue in WD_QUEUE_INIT */

/* Why the last failing helper of this thread failed. */
const char *wd_ring_error(void);

/* Marks @q as holding nothing, so that wd_queue_close() is always safe. */
void wd_queue_init(struct wd_queue *q);

/*
 * Opens a queue of @dev, starts it unless WD_Q_NOSTART, maps the MMIO and
 * DUS regions (sizes from sysfs) and checks the status page and the ring
 * header. On failure nothing stays open or mapped.
 */
int wd_queue_open(struct wd_queue *q, const struct wd_dev *dev,
		  unsigned int flags);

/*
 * WD_SETUP_EDU(), then a started queue of the first device into @q, which
 * the fixture's teardown closes (it must have been wd_queue_init()-ed).
 */
#define WD_SETUP_EDU_QUEUE(devs, n, q)					\
	do {								\
		WD_SETUP_EDU(devs, n);					\
		ASSERT_EQ(0, wd_queue_open((q), &(devs)[0], 0))		\
			TH_LOG("%s: %s", (devs)[0].name, wd_ring_error()); \
	} while (0)

/* The same for an fd that is already open; @q owns @fd afterwards. */
int wd_queue_attach(struct wd_queue *q, int fd, size_t mmio_len,
		    size_t dus_len);

/* Unmaps and closes whatever @q holds. */
void wd_queue_close(struct wd_queue *q);

/*
 * Ring indices. User space is the only writer of sq_tail and cq_head, so
 * they are read back from the ring rather than cached: whatever the kernel
 * does to the header at START_Q, the helpers follow it.
 */
static inline uint32_t wd_sq_tail(const struct wd_queue *q)
{
	return __atomic_load_n(&q->hdr->sq_tail, __ATOMIC_RELAXED);
}

static inline uint32_t wd_sq_head(const struct wd_queue *q)
{
	return __atomic_load_n(&q->hdr->sq_head, __ATOMIC_ACQUIRE);
}

static inline uint32_t wd_cq_head(const struct wd_queue *q)
{
	return __atomic_load_n(&q->hdr->cq_head, __ATOMIC_RELAXED);
}

static inline uint32_t wd_cq_tail(const struct wd_queue *q)
{
	return __atomic_load_n(&q->hdr->cq_tail, __ATOMIC_ACQUIRE);
}

/* Publishes descriptors up to @tail (release: they are written first). */
static inline void wd_set_sq_tail(struct wd_queue *q, uint32_t tail)
{
	__atomic_store_n(&q->hdr->sq_tail, tail, __ATOMIC_RELEASE);
}

/* Hands completions up to @head back (release: they were read first). */
static inline void wd_set_cq_head(struct wd_queue *q, uint32_t head)
{
	__atomic_store_n(&q->hdr->cq_head, head, __ATOMIC_RELEASE);
}

/* Published descriptors the kernel has not consumed yet. */
static inline uint32_t wd_sq_pending(const struct wd_queue *q)
{
	return wd_sq_tail(q) - wd_sq_head(q);
}

/* Completions written and not reaped yet. */
static inline uint32_t wd_cq_count(const struct wd_queue *q)
{
	return wd_cq_tail(q) - wd_cq_head(q);
}

/* Slot of free-running index @idx. */
static inline struct wd_desc *wd_sq_slot(const struct wd_queue *q,
					 uint32_t idx)
{
	return &q->sq[idx & (q->sq_entries - 1)];
}

static inline struct wd_cqe *wd_cq_slot(const struct wd_queue *q,
					uint32_t idx)
{
	return &q->cq[idx & (q->cq_entries - 1)];
}

static inline struct wd_desc wd_mkdesc(uint16_t opcode, uint64_t user_data,
				       const void *src, void *dst,
				       uint64_t len, uint64_t arg)
{
	return (struct wd_desc){
		.user_data = user_data,
		.opcode = opcode,
		.src = (uintptr_t)src,
		.dst = (uintptr_t)dst,
		.len = len,
		.arg = arg,
	};
}

/*
 * Writes up to @n descriptors at sq_tail, as many as the submission ring
 * has room for, then publishes them. Returns how many it wrote.
 */
unsigned int wd_sq_push(struct wd_queue *q, const struct wd_desc *d,
			unsigned int n);

/*
 * WD_IOCTL_KICK: the number of descriptors consumed, or -errno. Also
 * checks that sq_head moved by exactly that much (-EPROTO otherwise).
 */
int wd_kick(struct wd_queue *q);

/*
 * Waits up to @timeout_ms with poll() until a completion is unreaped.
 * Returns the number unreaped, -ETIMEDOUT, or -ENODEV when poll() reports
 * POLLERR or POLLHUP with nothing to reap.
 */
int wd_cq_wait(struct wd_queue *q, int timeout_ms);

/* Copies up to @max unreaped completions to @out and reaps them. */
unsigned int wd_cq_pop(struct wd_queue *q, struct wd_cqe *out,
		       unsigned int max);

/* Waits for and reaps exactly @n completions, in ring order. */
int wd_reap(struct wd_queue *q, struct wd_cqe *out, unsigned int n,
	    int timeout_ms);

/*
 * Runs @n commands to completion, however many that is: pushes what fits,
 * kicks, reaps, and waits, until every command has completed. out[i] gets
 * the completion of d[i], matched by user_data, which must therefore be
 * distinct (user_data == i is the fast case). Fails with -EBADMSG for a
 * completion with an unknown or repeated user_data, -EPROTO if the kernel
 * stops making progress with nothing in flight.
 */
int wd_run(struct wd_queue *q, const struct wd_desc *d, unsigned int n,
	   struct wd_cqe *out, int timeout_ms);

/* One command. */
static inline int wd_run1(struct wd_queue *q, const struct wd_desc *d,
			  struct wd_cqe *out)
{
	return wd_run(q, d, 1, out, WD_WAIT_MS);
}

/* True if no completion arrives within @ms (and none is unreaped). */
bool wd_cq_quiet(struct wd_queue *q, int ms);

/* A consistent-enough copy of the status page: each field read once. */
void wd_status(const struct wd_queue *q, struct wd_queue_status *out);

/* WD_IOCTL_REGISTER / WD_IOCTL_UNREGISTER: ioctl()'s result, errno set. */
int wd_register(int fd, const void *addr, size_t len, uint32_t flags,
		uint32_t *handle);
int wd_unregister(int fd, uint32_t handle);

/*
 * wd_register(), made again after EAGAIN (the range kept changing for a
 * second), as the UAPI asks, up to @tries calls in all; adds the repeated
 * ones to *@again unless it is NULL. A range that never settles still
 * fails, with EAGAIN.
 */
int wd_register_retry(int fd, const void *addr, size_t len, uint32_t flags,
		      uint32_t *handle, unsigned int tries,
		      unsigned int *again);

/* VmPin of /proc/self/status in kB, or -errno (-ENOENT if absent). */
long wd_vmpin_kb(void);

/* CRC-32C as the edu bulk engine computes it: chainable, 0 to start. */
uint32_t wd_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * A byte pattern determined by @seed and the byte's offset @off from the
 * start of the pattern, so that a copy of any sub-range, at any alignment,
 * can be checked: byte i of p equals pattern byte off + i.
 */
void wd_fill(void *p, size_t len, uint64_t seed, uint64_t off);

/* The first byte of @p that is not the pattern, or -1 if all are. */
ssize_t wd_check(const void *p, size_t len, uint64_t seed, uint64_t off);

/* The first byte of @p that is not @c, or -1. */
/*
 * -1 if @p is the pattern up to some point and @c from there on, as a copy
 * cancelled while it ran leaves it; else the first byte that is neither.
 */
ssize_t wd_check_prefix(const void *p, size_t len, uint64_t seed,
			uint64_t off, unsigned char c);
ssize_t wd_check_byte(const void *p, size_t len, unsigned char c);

/* Private anonymous read-write memory, NULL on failure. */
void *wd_alloc(size_t len);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t wd_now_ms(void);

/* Polls @cond every 10 ms for up to @ms milliseconds; its final value. */
#define WD_WAIT_FOR(cond, ms) ({					\
	uint64_t __end = wd_now_ms() + (ms);				\
	bool __ok;							\
									\
	while (!(__ok = (cond)) && wd_now_ms() < __end)			\
		usleep(10000);						\
	__ok;								\
})

#endif /* WD_RING_H */
