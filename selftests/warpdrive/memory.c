// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive memory safety: the pages the device uses are always the pages
 * the process has mapped at those addresses, pinned for as long as the
 * device may touch them and no longer.
 *
 *  - a command's own pins outlive its DMA, even if the memory is unmapped;
 *  - a registered buffer follows the address space: munmap(), mremap(),
 *    MADV_DONTNEED and mprotect() unpin it (after waiting for the commands
 *    using it), and the next command sees what is mapped there then;
 *  - close() with commands in flight leaves nothing pinned or running;
 *  - which memory may be registered, and how much (RLIMIT_MEMLOCK,
 *    WD_MAX_BUFFERS, WD_MAX_BUFFER_SIZE, overlaps).
 *
 * Ownership across processes is the ownership test's.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>

#include "wd_ring.h"

#define KiB		1024UL
#define MiB		(1024UL * KiB)
#define COPY_MAX	WD_EDU_DMA_COPY_MAX	/* about 3 s on the device */

FIXTURE(mem) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	struct wd_queue q;
	size_t page;
	char ramfs[64];		/* mounted by a test, "" if not */
};

FIXTURE_SETUP(mem)
{
	wd_queue_init(&self->q);
	self->page = wd_page_size();
	self->n = wd_get_edu(self->devs, WD_MAX_DEVS);
	if (!self->n)
		SKIP(return, "no QEMU edu device");
	ASSERT_LT(0, self->n) TH_LOG("edu PCI devices but no edu class device");
	ASSERT_EQ(0, wd_queue_open(&self->q, &self->devs[0], 0))
		TH_LOG("%s: %s", self->devs[0].name, wd_ring_error());
}

FIXTURE_TEARDOWN(mem)
{
	wd_queue_close(&self->q);
	if (self->ramfs[0]) {
		umount2(self->ramfs, MNT_DETACH);
		rmdir(self->ramfs);
	}
}

/* Polls @cond every 10 ms for up to @ms milliseconds; its final value. */
#define WAIT_FOR(cond, ms) ({						\
	uint64_t __end = wd_now_ms() + (ms);				\
	bool __ok;							\
									\
	while (!(__ok = (cond)) && wd_now_ms() < __end)			\
		usleep(10000);						\
	__ok;								\
})

static uint64_t pinned(const struct wd_queue *q)
{
	return wd_read64(&q->st->pinned_pages);
}

static uint64_t invalidations(const struct wd_queue *q)
{
	return wd_read64(&q->st->invalidations);
}

/* One command, synchronously: its completion status, result in *@res. */
static int run_one(struct __test_metadata *_metadata, struct wd_queue *q,
		   struct wd_desc d, uint64_t *res)
{
	struct wd_cqe cqe;
	int ret;

	ret = wd_run1(q, &d, &cqe);
	EXPECT_EQ(0, ret) TH_LOG("%s", wd_ring_error());
	if (ret)
		return ret;
	EXPECT_EQ(d.user_data, cqe.user_data);
	if (res)
		*res = cqe.result;
	return cqe.status;
}

static int crc_of(struct __test_metadata *_metadata, struct wd_queue *q,
		  const void *p, size_t len, uint16_t flags, uint64_t *res)
{
	struct wd_desc d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, p, NULL, len, 0);

	d.flags = flags;
	return run_one(_metadata, q, d, res);
}

static int copy_to(struct __test_metadata *_metadata, struct wd_queue *q,
		   const void *src, void *dst, size_t len, uint16_t flags)
{
	struct wd_desc d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, src, dst, len, 0);

	d.flags = flags;
	return run_one(_metadata, q, d, NULL);
}

/* Maps @len bytes of fresh anonymous memory exactly at @addr. */
static void *map_at(void *addr, size_t len)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * A command's own pins hold its pages until it completes: unmapping the
 * memory while a slow DMA copy runs neither fails the copy nor lets the
 * device write into the pages' next owner. Fresh memory, likely to reuse
 * the freed pages, is filled right after the munmap and must keep its
 * contents.
 */
TEST_F_TIMEOUT(mem, command_pins_outlive_munmap, 60)
{
	const size_t fresh_len = 16 * MiB;
	struct wd_desc d;
	struct wd_cqe cqe;
	char *src, *dst, *fresh;
	long pin;

	pin = wd_vmpin_kb();
	ASSERT_LE(0, pin);
	src = wd_alloc(COPY_MAX);
	dst = wd_alloc(COPY_MAX);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, COPY_MAX, 1, 0);
	memset(dst, 0, COPY_MAX);

	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 9, src, dst, COPY_MAX, 0);
	ASSERT_EQ(1U, wd_sq_push(&self->q, &d, 1));
	ASSERT_EQ(1, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, munmap(src, COPY_MAX));
	ASSERT_EQ(0, munmap(dst, COPY_MAX));
	if (wd_cq_count(&self->q))
		TH_LOG("the copy finished before the fresh memory: proves less");

	fresh = wd_alloc(fresh_len);
	ASSERT_NE(NULL, fresh);
	wd_fill(fresh, fresh_len, 2, 0);
	ASSERT_EQ(0, wd_reap(&self->q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(9ULL, cqe.user_data);
	EXPECT_EQ(0, cqe.status);
	EXPECT_EQ(-1, wd_check(fresh, fresh_len, 2, 0))
		TH_LOG("DMA into pages freed by munmap");
	/* The pins went with the command. */
	EXPECT_TRUE(WAIT_FOR(wd_vmpin_kb() == pin, 2000))
		TH_LOG("VmPin %ld kB, was %ld kB", wd_vmpin_kb(), pin);
	EXPECT_TRUE(WAIT_FOR(pinned(&self->q) == 0, 2000));
	munmap(fresh, fresh_len);
}

/*
 * Unmaps @victim, a registered buffer that an in-flight command uses, and
 * checks that munmap() returned only once the command had completed.
 */
static void munmap_in_flight(struct __test_metadata *_metadata,
			     struct wd_queue *q, struct wd_desc *d,
			     void *victim, size_t len)
{
	struct wd_cqe cqe;
	uint32_t tail;
	uint64_t t0;

	tail = wd_cq_tail(q);
	ASSERT_EQ(1U, wd_sq_push(q, d, 1));
	ASSERT_EQ(1, wd_kick(q)) TH_LOG("%s", wd_ring_error());
	if (wd_cq_tail(q) != tail)
		TH_LOG("the command finished before the munmap: proves less");
	t0 = wd_now_ms();
	ASSERT_EQ(0, munmap(victim, len));
	/* The completion is in the ring already, not on its way. */
	EXPECT_EQ(tail + 1, wd_cq_tail(q))
		TH_LOG("munmap returned after %llu ms with the command in flight",
		       (unsigned long long)(wd_now_ms() - t0));
	ASSERT_EQ(0, wd_reap(q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(d->user_data, cqe.user_data);
	EXPECT_EQ(0, cqe.status);
	EXPECT_EQ(d->len, cqe.result);
}

/*
 * munmap() of a registered buffer waits for the DMA using it (3 s for
 * 64 KiB on the device), then unpins it; the address is then unusable
 * until something is mapped there again, and what is mapped then is used.
 */
TEST_F_TIMEOUT(mem, munmap_waits_for_dma, 60)
{
	const size_t pages = COPY_MAX / self->page;
	uint32_t hsrc, hdst;
	uint64_t inval, res;
	struct wd_desc d;
	char *src, *dst;
	long pin;

	src = wd_alloc(COPY_MAX);
	dst = wd_alloc(COPY_MAX);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, COPY_MAX, 3, 0);
	memset(dst, 0, COPY_MAX);
	ASSERT_EQ(0, wd_register(self->q.fd, src, COPY_MAX, 0, &hsrc));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, COPY_MAX, WD_REGISTER_WRITE,
				 &hdst));
	ASSERT_EQ((uint64_t)(2 * pages), pinned(&self->q));
	inval = invalidations(&self->q);
	pin = wd_vmpin_kb();

	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 1, src, dst, COPY_MAX, 0);
	d.flags = WD_DESC_REGISTERED;
	munmap_in_flight(_metadata, &self->q, &d, src, COPY_MAX);
	EXPECT_EQ(-1, wd_check(dst, COPY_MAX, 3, 0));
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ((uint64_t)pages, pinned(&self->q));
	EXPECT_EQ(pin - (long)(COPY_MAX / KiB), wd_vmpin_kb());
	EXPECT_EQ(2ULL, wd_read64(&self->q.st->buffers));

	/* Nothing mapped: the handle is still valid, the address is not. */
	EXPECT_EQ(-EFAULT, crc_of(_metadata, &self->q, src, 4096, 0, NULL));
	EXPECT_EQ(-EFAULT, crc_of(_metadata, &self->q, src, 4096,
				  WD_DESC_REGISTERED, NULL));

	/* New memory at the same address is what the device reads now. */
	ASSERT_EQ(src, map_at(src, COPY_MAX));
	wd_fill(src, COPY_MAX, 4, 0);
	EXPECT_EQ(0, crc_of(_metadata, &self->q, src, COPY_MAX,
			    WD_DESC_REGISTERED, &res));
	EXPECT_EQ(wd_crc32c(0, src, COPY_MAX), res);
	EXPECT_EQ((uint64_t)(2 * pages), pinned(&self->q));

	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hdst));
	EXPECT_EQ(0ULL, pinned(&self->q));
	munmap(src, COPY_MAX);
	munmap(dst, COPY_MAX);
}

/*
 * The same for a long emulated copy between two 128 MiB registered
 * buffers, unmapping the source while it runs.
 */
TEST_F_TIMEOUT(mem, munmap_waits_for_memcpy, 120)
{
	const size_t len = 128 * MiB;
	uint32_t hsrc, hdst;
	struct wd_desc d;
	char *src, *dst;

	src = wd_alloc(len);
	dst = wd_alloc(len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, len, 5, 0);
	memset(dst, 0, len);
	ASSERT_EQ(0, wd_register(self->q.fd, src, len, 0, &hsrc))
		TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, len, WD_REGISTER_WRITE,
				 &hdst)) TH_LOG("%s", strerror(errno));

	d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 2, src, dst, len, 0);
	d.flags = WD_DESC_REGISTERED;
	munmap_in_flight(_metadata, &self->q, &d, src, len);
	EXPECT_EQ(-1, wd_check(dst, len, 5, 0));
	EXPECT_EQ((uint64_t)(len / self->page), pinned(&self->q));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hdst));
	munmap(dst, len);
}

/* UNREGISTER waits for the commands using the buffer, like munmap(). */
TEST_F_TIMEOUT(mem, unregister_waits_for_dma, 60)
{
	uint32_t hsrc, hdst, tail;
	struct wd_desc d;
	struct wd_cqe cqe;
	char *src, *dst;
	long pin;

	pin = wd_vmpin_kb();
	src = wd_alloc(COPY_MAX);
	dst = wd_alloc(COPY_MAX);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, COPY_MAX, 6, 0);
	memset(dst, 0, COPY_MAX);
	ASSERT_EQ(0, wd_register(self->q.fd, src, COPY_MAX, 0, &hsrc));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, COPY_MAX, WD_REGISTER_WRITE,
				 &hdst));

	tail = wd_cq_tail(&self->q);
	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 3, src, dst, COPY_MAX, 0);
	d.flags = WD_DESC_REGISTERED;
	ASSERT_EQ(1U, wd_sq_push(&self->q, &d, 1));
	ASSERT_EQ(1, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_unregister(self->q.fd, hdst));
	EXPECT_EQ(tail + 1, wd_cq_tail(&self->q))
		TH_LOG("UNREGISTER returned with the command in flight");
	ASSERT_EQ(0, wd_reap(&self->q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(0, cqe.status);
	EXPECT_EQ(-1, wd_check(dst, COPY_MAX, 6, 0));
	EXPECT_EQ(1ULL, wd_read64(&self->q.st->buffers));

	/* Gone: the handle is unknown, and dst is no buffer any more. */
	EXPECT_EQ(-1, wd_unregister(self->q.fd, hdst));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-ENOENT, copy_to(_metadata, &self->q, src, dst, 64,
				   WD_DESC_REGISTERED));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	EXPECT_EQ(pin, wd_vmpin_kb());
	munmap(src, COPY_MAX);
	munmap(dst, COPY_MAX);
}

/*
 * MADV_DONTNEED drops the pages of registered buffers: the device must
 * then read the process's new pages (zeroes, then what it writes), and
 * its writes must land where the process reads, not in the old pages.
 */
TEST_F(mem, madv_dontneed)
{
	const size_t len = 64 * KiB, pages = len / self->page;
	char *src, *dst, *zero;
	uint32_t hsrc, hdst;
	uint64_t inval, res;

	src = wd_alloc(len);
	dst = wd_alloc(len);
	zero = wd_alloc(len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	ASSERT_NE(NULL, zero);
	wd_fill(src, len, 7, 0);
	wd_fill(dst, len, 8, 0);
	ASSERT_EQ(0, wd_register(self->q.fd, src, len, 0, &hsrc));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, len, WD_REGISTER_WRITE,
				 &hdst));
	ASSERT_EQ(0, crc_of(_metadata, &self->q, src, len, WD_DESC_REGISTERED,
			    &res));
	ASSERT_EQ(wd_crc32c(0, src, len), res);

	/* The source: zeroes now, then whatever is written. */
	inval = invalidations(&self->q);
	ASSERT_EQ(0, madvise(src, len, MADV_DONTNEED));
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ((uint64_t)pages, pinned(&self->q));
	ASSERT_EQ(-1, wd_check_byte(src, len, 0));
	EXPECT_EQ(0, crc_of(_metadata, &self->q, src, len, WD_DESC_REGISTERED,
			    &res));
	EXPECT_EQ(wd_crc32c(0, zero, len), res) TH_LOG("stale source pages");
	wd_fill(src, len, 9, 0);
	EXPECT_EQ(0, crc_of(_metadata, &self->q, src, len, WD_DESC_REGISTERED,
			    &res));
	EXPECT_EQ(wd_crc32c(0, src, len), res) TH_LOG("stale source pages");

	/* The destination: the device's writes show in the new pages. */
	inval = invalidations(&self->q);
	ASSERT_EQ(0, madvise(dst, len, MADV_DONTNEED));
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ(0, copy_to(_metadata, &self->q, src, dst, len,
			     WD_DESC_REGISTERED));
	EXPECT_EQ(-1, wd_check(dst, len, 9, 0))
		TH_LOG("the device wrote to the old pages");

	/* Part of a buffer: the rest keeps working too. */
	ASSERT_EQ(0, madvise(dst + self->page, self->page, MADV_DONTNEED));
	wd_fill(src, len, 10, 0);
	EXPECT_EQ(0, copy_to(_metadata, &self->q, src, dst, len,
			     WD_DESC_REGISTERED));
	EXPECT_EQ(-1, wd_check(dst, len, 10, 0));

	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hdst));
	EXPECT_EQ(0ULL, pinned(&self->q));
	munmap(src, len);
	munmap(dst, len);
	munmap(zero, len);
}

/*
 * munmap() then a new mapping at the same address (MAP_FIXED): the
 * registration stays, on the new pages. Between the two, commands fail
 * with EFAULT and write nothing.
 */
TEST_F(mem, munmap_then_remap)
{
	const size_t len = 64 * KiB;
	uint32_t hsrc, hdst;
	uint64_t inval;
	char *src, *dst;

	src = wd_alloc(len);
	dst = wd_alloc(len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, len, 11, 0);
	memset(dst, 0, len);
	ASSERT_EQ(0, wd_register(self->q.fd, src, len, 0, &hsrc));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, len, WD_REGISTER_WRITE,
				 &hdst));
	EXPECT_EQ(0, copy_to(_metadata, &self->q, src, dst, len,
			     WD_DESC_REGISTERED));
	EXPECT_EQ(-1, wd_check(dst, len, 11, 0));

	inval = invalidations(&self->q);
	ASSERT_EQ(0, munmap(dst, len));
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ(-EFAULT, copy_to(_metadata, &self->q, src, dst, len,
				   WD_DESC_REGISTERED));
	EXPECT_EQ(-EFAULT, copy_to(_metadata, &self->q, src, dst, len, 0));

	ASSERT_EQ(dst, map_at(dst, len));
	memset(dst, 0x33, len);
	wd_fill(src, len, 12, 0);
	EXPECT_EQ(0, copy_to(_metadata, &self->q, src, dst, len,
			     WD_DESC_REGISTERED));
	EXPECT_EQ(-1, wd_check(dst, len, 12, 0))
		TH_LOG("the device wrote to the unmapped pages");

	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hdst));
	EXPECT_EQ(0ULL, pinned(&self->q));
	munmap(src, len);
	munmap(dst, len);
}

/*
 * mremap() moves the pages away: the registered range is empty (EFAULT),
 * and the registration does not follow the pages to their new address.
 */
TEST_F(mem, mremap_moves_away)
{
	const size_t len = 64 * KiB;
	char *src, *dst, *target, *moved;
	uint32_t hsrc, hdst;
	uint64_t inval;

	src = wd_alloc(len);
	dst = wd_alloc(len);
	target = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		      0);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	ASSERT_NE(MAP_FAILED, target);
	wd_fill(src, len, 13, 0);
	memset(dst, 0, len);
	ASSERT_EQ(0, wd_register(self->q.fd, src, len, 0, &hsrc));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, len, WD_REGISTER_WRITE,
				 &hdst));

	inval = invalidations(&self->q);
	moved = mremap(dst, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, target);
	ASSERT_EQ(target, moved);
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ((uint64_t)(len / self->page), pinned(&self->q));

	EXPECT_EQ(-EFAULT, copy_to(_metadata, &self->q, src, dst, len,
				   WD_DESC_REGISTERED));
	/* The new address is no registered buffer... */
	EXPECT_EQ(-ENOENT, copy_to(_metadata, &self->q, src, moved, len,
				   WD_DESC_REGISTERED));
	/* ...but plain memory, which a command pins for itself. */
	EXPECT_EQ(0, copy_to(_metadata, &self->q, src, moved, len, 0));
	EXPECT_EQ(-1, wd_check(moved, len, 13, 0));

	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hdst));
	munmap(src, len);
	munmap(moved, len);
}

/*
 * mprotect() takes write access away: the device may not write the buffer
 * either (EFAULT), until the process may again. Taking all access away
 * stops reads as well.
 */
TEST_F(mem, mprotect)
{
	const size_t len = 64 * KiB;
	uint32_t hsrc, hdst;
	uint64_t inval, res;
	char *src, *dst;

	src = wd_alloc(len);
	dst = wd_alloc(len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, len, 14, 0);
	memset(dst, 0x44, len);
	ASSERT_EQ(0, wd_register(self->q.fd, src, len, 0, &hsrc));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, len, WD_REGISTER_WRITE,
				 &hdst));

	inval = invalidations(&self->q);
	ASSERT_EQ(0, mprotect(dst, len, PROT_READ));
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ(-EFAULT, copy_to(_metadata, &self->q, src, dst, len,
				   WD_DESC_REGISTERED));
	EXPECT_EQ(-EFAULT, copy_to(_metadata, &self->q, src, dst + 100, 8, 0));
	EXPECT_EQ(-1, wd_check_byte(dst, len, 0x44));

	ASSERT_EQ(0, mprotect(dst, len, PROT_READ | PROT_WRITE));
	EXPECT_EQ(0, copy_to(_metadata, &self->q, src, dst, len,
			     WD_DESC_REGISTERED));
	EXPECT_EQ(-1, wd_check(dst, len, 14, 0));

	inval = invalidations(&self->q);
	ASSERT_EQ(0, mprotect(src, len, PROT_NONE));
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ(-EFAULT, crc_of(_metadata, &self->q, src, len,
				  WD_DESC_REGISTERED, NULL));
	ASSERT_EQ(0, mprotect(src, len, PROT_READ));
	EXPECT_EQ(0, crc_of(_metadata, &self->q, src, len, WD_DESC_REGISTERED,
			    &res));
	EXPECT_EQ(wd_crc32c(0, src, len), res);

	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hdst));
	munmap(src, len);
	munmap(dst, len);
}

/*
 * close() with commands queued and running: it returns once they are done
 * or cancelled, with every pin released and no DMA after it.
 */
TEST_F_TIMEOUT(mem, close_in_flight, 60)
{
	const struct wd_dev *dev = &self->devs[0];
	const size_t big = 4 * MiB;
	char *src, *dst, *snap, *bsrc, *bdst;
	struct wd_desc d[6];
	uint64_t t0, took;
	long pin;
	int avail, i;
	uint32_t h;

	wd_queue_close(&self->q);
	avail = wd_avail(dev);
	pin = wd_vmpin_kb();
	ASSERT_LE(0, pin);
	src = wd_alloc(COPY_MAX);
	dst = wd_alloc(4 * COPY_MAX);
	snap = wd_alloc(4 * COPY_MAX);
	bsrc = wd_alloc(big);
	bdst = wd_alloc(big);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	ASSERT_NE(NULL, snap);
	ASSERT_NE(NULL, bsrc);
	ASSERT_NE(NULL, bdst);
	wd_fill(src, COPY_MAX, 15, 0);
	wd_fill(bsrc, big, 16, 0);
	memset(dst, 0, 4 * COPY_MAX);

	ASSERT_EQ(0, wd_queue_open(&self->q, dev, 0))
		TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_register(self->q.fd, src, COPY_MAX, 0, &h));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, 4 * COPY_MAX,
				 WD_REGISTER_WRITE, &h));
	for (i = 0; i < 4; i++)
		d[i] = wd_mkdesc(WD_EDU_OP_DMA_COPY, i, src,
				 dst + i * COPY_MAX, COPY_MAX, 0);
	/* Plain memory, pinned per command. */
	d[4] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 4, bsrc, bdst, big, 0);
	d[5] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 5, bsrc, NULL, big, 0);
	ASSERT_EQ(6U, wd_sq_push(&self->q, d, 6));
	ASSERT_EQ(6, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	EXPECT_LT(pin, wd_vmpin_kb());

	t0 = wd_now_ms();
	wd_queue_close(&self->q);
	took = wd_now_ms() - t0;
	TH_LOG("close took %llu ms", (unsigned long long)took);
	EXPECT_EQ(pin, wd_vmpin_kb());
	EXPECT_EQ(avail, wd_avail(dev));

	/* Nothing writes to the destinations any more. */
	memcpy(snap, dst, 4 * COPY_MAX);
	usleep(500 * 1000);
	EXPECT_EQ(0, memcmp(snap, dst, 4 * COPY_MAX))
		TH_LOG("DMA after close");
	/* A copy wrote a prefix of its destination at most, nothing else. */
	for (i = 0; i < 4; i++)
		EXPECT_EQ(-1, wd_check_prefix(dst + i * COPY_MAX, COPY_MAX, 15,
					      0, 0))
			TH_LOG("copy %d wrote more than a prefix", i);
	munmap(src, COPY_MAX);
	munmap(dst, 4 * COPY_MAX);
	munmap(snap, 4 * COPY_MAX);
	munmap(bsrc, big);
	munmap(bdst, big);
}

/*
 * A writable registration of a file mapping is refused unless the file is
 * shmem (tmpfs, memfd, shared anonymous memory): other file systems would
 * not see the device's writes. A read-only one is fine anywhere.
 */
TEST_F(mem, file_backed)
{
	const size_t len = 64 * KiB;
	char path[128], *p, *rd;
	uint64_t res;
	uint32_t h;
	int fd;

	/* ramfs: not shmem. */
	snprintf(self->ramfs, sizeof(self->ramfs), "/tmp/wd-ramfs-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->ramfs));
	ASSERT_EQ(0, mount("ramfs", self->ramfs, "ramfs", 0, NULL))
		TH_LOG("mount ramfs: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/buf", self->ramfs);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, len));
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	wd_fill(p, len, 17, 0);
	EXPECT_EQ(-1, wd_register(self->q.fd, p, len, WD_REGISTER_WRITE, &h));
	EXPECT_EQ(EOPNOTSUPP, errno) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0ULL, wd_read64(&self->q.st->buffers));
	EXPECT_EQ(0ULL, pinned(&self->q));
	ASSERT_EQ(0, wd_register(self->q.fd, p, len, 0, &h))
		TH_LOG("read-only: %s", strerror(errno));
	EXPECT_EQ(0, crc_of(_metadata, &self->q, p, len, WD_DESC_REGISTERED,
			    &res));
	EXPECT_EQ(wd_crc32c(0, p, len), res);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	munmap(p, len);
	close(fd);
	unlink(path);

	/* memfd: shmem, and the file sees what the device wrote. */
	fd = memfd_create("wd", MFD_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, len));
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	rd = wd_alloc(len);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_NE(NULL, rd);
	wd_fill(rd, len, 18, 0);
	ASSERT_EQ(0, wd_register(self->q.fd, p, len, WD_REGISTER_WRITE, &h))
		TH_LOG("memfd: %s", strerror(errno));
	EXPECT_EQ(0, copy_to(_metadata, &self->q, rd, p, len, 0));
	EXPECT_EQ(-1, wd_check(p, len, 18, 0));
	memset(rd, 0, len);
	ASSERT_EQ((ssize_t)len, pread(fd, rd, len, 0));
	EXPECT_EQ(-1, wd_check(rd, len, 18, 0));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	munmap(p, len);
	close(fd);

	/* Shared anonymous memory is shmem too. */
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	memset(p, 0, len);
	ASSERT_EQ(0, wd_register(self->q.fd, p, len, WD_REGISTER_WRITE, &h))
		TH_LOG("shared anonymous: %s", strerror(errno));
	wd_fill(rd, len, 19, 0);
	/* Only dst is registered: src is pinned for the command. */
	EXPECT_EQ(0, copy_to(_metadata, &self->q, rd, p, len, 0));
	EXPECT_EQ(-1, wd_check(p, len, 19, 0));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	munmap(p, len);
	munmap(rd, len);
}

/* Drops CAP_IPC_LOCK, which lets root pin past RLIMIT_MEMLOCK. */
static int drop_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	const int i = CAP_TO_INDEX(CAP_IPC_LOCK);

	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	data[i].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	data[i].permitted &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	data[i].inheritable &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	return 0;
}

/* Limits locked memory to @kib without CAP_IPC_LOCK to bypass it. */
static void limit_memlock(struct __test_metadata *_metadata, size_t kib)
{
	struct rlimit rl = { .rlim_cur = kib * KiB, .rlim_max = kib * KiB };
	char *p;

	ASSERT_EQ(0, drop_ipc_lock());
	ASSERT_EQ(0, setrlimit(RLIMIT_MEMLOCK, &rl));
	/* The limit is real now: mlock() of more than it fails. */
	p = wd_alloc(2 * kib * KiB);
	ASSERT_NE(NULL, p);
	ASSERT_EQ(-1, mlock(p, 2 * kib * KiB));
	munmap(p, 2 * kib * KiB);
}

/* REGISTER is charged to RLIMIT_MEMLOCK, up to the limit and no further. */
TEST_F(mem, memlock_register)
{
	const size_t limit = 64;	/* KiB */
	uint32_t h1, h2, h3;
	char *buf;
	long pin;

	limit_memlock(_metadata, limit);
	buf = wd_alloc(4 * limit * KiB);
	ASSERT_NE(NULL, buf);
	memset(buf, 1, 4 * limit * KiB);
	pin = wd_vmpin_kb();
	ASSERT_LE(0, pin);

	EXPECT_EQ(-1, wd_register(self->q.fd, buf, 2 * limit * KiB, 0, &h1));
	EXPECT_EQ(ENOMEM, errno) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(pin, wd_vmpin_kb());
	EXPECT_EQ(0ULL, pinned(&self->q));

	/* Two halves fill it exactly... */
	ASSERT_EQ(0, wd_register(self->q.fd, buf, limit / 2 * KiB, 0, &h1))
		TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, wd_register(self->q.fd, buf + limit * KiB,
				 limit / 2 * KiB, WD_REGISTER_WRITE, &h2))
		TH_LOG("%s", strerror(errno));
	EXPECT_EQ(pin + (long)limit, wd_vmpin_kb());
	/* ...and not one page more fits. */
	EXPECT_EQ(-1, wd_register(self->q.fd, buf + 2 * limit * KiB,
				  self->page, 0, &h3));
	EXPECT_EQ(ENOMEM, errno) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(2ULL, wd_read64(&self->q.st->buffers));

	/* Unregistering gives the room back. */
	EXPECT_EQ(0, wd_unregister(self->q.fd, h1));
	EXPECT_EQ(0, wd_register(self->q.fd, buf + 2 * limit * KiB,
				 self->page, 0, &h3)) TH_LOG("%s",
							     strerror(errno));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h2));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h3));
	EXPECT_EQ(pin, wd_vmpin_kb());
	munmap(buf, 4 * limit * KiB);
}

/*
 * A command's own pins are charged as well: one that would exceed the
 * limit completes with -ENOMEM and writes nothing, counting what is
 * registered already.
 */
TEST_F(mem, memlock_command)
{
	const size_t limit = 64;	/* KiB */
	uint64_t res;
	char *a, *b;
	uint32_t h;

	limit_memlock(_metadata, limit);
	a = wd_alloc(256 * KiB);
	b = wd_alloc(256 * KiB);
	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	wd_fill(a, 256 * KiB, 20, 0);
	memset(b, 0x55, 256 * KiB);

	/* 2 x 128 KiB of pins for a 64 KiB limit. */
	EXPECT_EQ(-ENOMEM, copy_to(_metadata, &self->q, a, b, 128 * KiB, 0));
	EXPECT_EQ(-1, wd_check_byte(b, 256 * KiB, 0x55));
	EXPECT_EQ(-ENOMEM, crc_of(_metadata, &self->q, a, 128 * KiB, 0,
				  NULL));
	/* 2 x 16 KiB is fine. */
	EXPECT_EQ(0, copy_to(_metadata, &self->q, a, b, 16 * KiB, 0));
	EXPECT_EQ(-1, wd_check(b, 16 * KiB, 20, 0));
	/* Its pins go when it completes; not necessarily before. */
	ASSERT_TRUE(WAIT_FOR(pinned(&self->q) == 0, 2000));

	/* 56 KiB registered leaves room for two pages, not four. */
	ASSERT_EQ(0, wd_register(self->q.fd, a + 128 * KiB, 56 * KiB, 0, &h))
		TH_LOG("%s", strerror(errno));
	memset(b, 0x55, 256 * KiB);
	EXPECT_EQ(-ENOMEM, copy_to(_metadata, &self->q, a, b, 8 * KiB, 0));
	EXPECT_EQ(-1, wd_check_byte(b, 256 * KiB, 0x55));
	ASSERT_TRUE(WAIT_FOR(pinned(&self->q) == 56 * KiB / self->page, 2000));
	/* From the registered buffer, one page of b is pinned: it fits. */
	EXPECT_EQ(0, copy_to(_metadata, &self->q, a + 128 * KiB, b, 4 * KiB,
			     0));
	EXPECT_EQ(-1, wd_check(b, 4 * KiB, 20, 128 * KiB));
	EXPECT_EQ(0, crc_of(_metadata, &self->q, a + 128 * KiB, 56 * KiB,
			    WD_DESC_REGISTERED, &res));
	EXPECT_EQ(wd_crc32c(0, a + 128 * KiB, 56 * KiB), res);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	munmap(a, 256 * KiB);
	munmap(b, 256 * KiB);
}

TEST_F(mem, register_einval)
{
	char *buf = wd_alloc(2 * self->page);
	uint32_t h;

	ASSERT_NE(NULL, buf);
	EXPECT_EQ(-1, wd_register(self->q.fd, buf, 0, 0, &h));
	EXPECT_EQ(EINVAL, errno) TH_LOG("len 0: %s", strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, buf, self->page, 1U << 1, &h));
	EXPECT_EQ(EINVAL, errno) TH_LOG("flags 2: %s", strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, buf, self->page, ~0U, &h));
	EXPECT_EQ(EINVAL, errno) TH_LOG("flags ~0: %s", strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, (void *)(~0UL - 4095), 8192, 0,
				  &h));
	EXPECT_EQ(EINVAL, errno) TH_LOG("wrap-around: %s", strerror(errno));
	EXPECT_EQ(0ULL, wd_read64(&self->q.st->buffers));
	munmap(buf, 2 * self->page);
}

/* Not mapped, or mapped without the access asked for. */
TEST_F(mem, register_efault)
{
	size_t page = self->page;
	char *m;
	uint32_t h;

	m = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	memset(m, 1, 3 * page);
	ASSERT_EQ(0, mprotect(m + page, page, PROT_READ));
	ASSERT_EQ(0, munmap(m + 2 * page, page));

	EXPECT_EQ(-1, wd_register(self->q.fd, m + 2 * page, page, 0, &h));
	EXPECT_EQ(EFAULT, errno) TH_LOG("unmapped: %s", strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, m, 3 * page, 0, &h));
	EXPECT_EQ(EFAULT, errno) TH_LOG("runs into a hole: %s",
					strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, m + page, page,
				  WD_REGISTER_WRITE, &h));
	EXPECT_EQ(EFAULT, errno) TH_LOG("write, PROT_READ: %s",
					strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, m, 2 * page, WD_REGISTER_WRITE,
				  &h));
	EXPECT_EQ(EFAULT, errno) TH_LOG("write, half PROT_READ: %s",
					strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, (void *)WD_KERNEL_ADDR, page, 0,
				  &h));
	EXPECT_EQ(EFAULT, errno) TH_LOG("kernel address: %s",
					strerror(errno));
	/* Nothing half-registered stays pinned. */
	EXPECT_EQ(0ULL, wd_read64(&self->q.st->buffers));
	EXPECT_EQ(0ULL, pinned(&self->q));
	/* Read-only is fine on the read-only page. */
	EXPECT_EQ(0, wd_register(self->q.fd, m + page, page, 0, &h));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	munmap(m, 2 * page);
}

/* Buffers may touch but not overlap, by a single byte. */
TEST_F(mem, register_eexist)
{
	size_t page = self->page;
	static const struct {
		long off, len;	/* in pages, relative to the buffer */
	} overlaps[] = {
		{ 0, 2 }, { 0, 1 }, { 1, 1 }, { -1, 2 }, { 1, 2 }, { -1, 4 },
	};
	uint32_t h, h2, h3;
	char *m, *b;
	size_t i;

	m = wd_alloc(8 * page);
	ASSERT_NE(NULL, m);
	memset(m, 1, 8 * page);
	b = m + 2 * page;
	ASSERT_EQ(0, wd_register(self->q.fd, b, 2 * page, 0, &h));
	for (i = 0; i < ARRAY_SIZE(overlaps); i++) {
		EXPECT_EQ(-1, wd_register(self->q.fd,
					  b + overlaps[i].off * (long)page,
					  overlaps[i].len * page, 0, &h2))
			TH_LOG("overlap %zu", i);
		EXPECT_EQ(EEXIST, errno) TH_LOG("overlap %zu: %s", i,
						strerror(errno));
	}
	/* One byte of overlap at either end. */
	EXPECT_EQ(-1, wd_register(self->q.fd, b - page, page + 1, 0, &h2));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-1, wd_register(self->q.fd, b + 2 * page - 1, page, 0, &h2));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(1ULL, wd_read64(&self->q.st->buffers));

	/* Adjacent on both sides is fine. */
	ASSERT_EQ(0, wd_register(self->q.fd, b - page, page, 0, &h2));
	ASSERT_EQ(0, wd_register(self->q.fd, b + 2 * page, page,
				 WD_REGISTER_WRITE, &h3));
	EXPECT_NE(h, h2);
	EXPECT_NE(h2, h3);
	EXPECT_NE(h, h3);
	EXPECT_EQ(3ULL, wd_read64(&self->q.st->buffers));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	/* Its range is free again. */
	ASSERT_EQ(0, wd_register(self->q.fd, b, 2 * page, 0, &h));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h2));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h3));
	munmap(m, 8 * page);
}

/*
 * Longer than WD_MAX_BUFFER_SIZE is E2BIG. The range is reserved but
 * PROT_NONE, so that exactly the maximum fails differently (EFAULT: not
 * readable), without pinning a GiB to find out.
 */
TEST_F(mem, register_e2big)
{
	const size_t max = WD_MAX_BUFFER_SIZE;
	uint32_t h;
	char *m;

	m = mmap(NULL, max + 2 * self->page, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	EXPECT_EQ(-1, wd_register(self->q.fd, m, max + 1, 0, &h));
	EXPECT_EQ(E2BIG, errno) TH_LOG("max + 1: %s", strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, m, max + self->page, 0, &h));
	EXPECT_EQ(E2BIG, errno) TH_LOG("max + page: %s", strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, m, 1ULL << 62, 0, &h));
	EXPECT_EQ(E2BIG, errno) TH_LOG("2^62: %s", strerror(errno));
	EXPECT_EQ(-1, wd_register(self->q.fd, m, max, 0, &h));
	EXPECT_EQ(EFAULT, errno) TH_LOG("max: %s", strerror(errno));
	munmap(m, max + 2 * self->page);
}

/*
 * WD_MAX_BUFFERS buffers of a page each, then ENOSPC. Each registration
 * inserts an interval notifier and maps a scatterlist; under KASAN and TCG
 * that is some 10 ms each, hence the long timeout.
 */
TEST_F_TIMEOUT(mem, register_enospc, 900)
{
	const size_t page = self->page, len = (WD_MAX_BUFFERS + 1) * page;
	uint32_t *h, extra;
	unsigned int i, bad = 0;
	char *m;
	long pin;

	h = calloc(WD_MAX_BUFFERS, sizeof(*h));
	m = wd_alloc(len);
	ASSERT_NE(NULL, h);
	ASSERT_NE(NULL, m);
	memset(m, 1, len);
	pin = wd_vmpin_kb();
	for (i = 0; i < WD_MAX_BUFFERS; i++) {
		if (wd_register(self->q.fd, m + i * page, page, 0, &h[i])) {
			TH_LOG("buffer %u: %s", i, strerror(errno));
			break;
		}
	}
	ASSERT_EQ((unsigned int)WD_MAX_BUFFERS, i);
	EXPECT_EQ((uint64_t)WD_MAX_BUFFERS,
		  wd_read64(&self->q.st->buffers));
	EXPECT_EQ((uint64_t)WD_MAX_BUFFERS, pinned(&self->q));
	EXPECT_EQ(pin + (long)(WD_MAX_BUFFERS * page / KiB), wd_vmpin_kb());

	EXPECT_EQ(-1, wd_register(self->q.fd, m + i * page, page, 0, &extra));
	EXPECT_EQ(ENOSPC, errno) TH_LOG("%s", strerror(errno));
	/* One out, one in. */
	EXPECT_EQ(0, wd_unregister(self->q.fd, h[100]));
	EXPECT_EQ(0, wd_register(self->q.fd, m + i * page, page, 0, &h[100]));

	/* Handles are distinct: each unregisters exactly once. */
	for (i = 0; i < WD_MAX_BUFFERS; i++)
		bad += !!wd_unregister(self->q.fd, h[i]);
	EXPECT_EQ(0U, bad);
	EXPECT_EQ(0ULL, wd_read64(&self->q.st->buffers));
	EXPECT_EQ(pin, wd_vmpin_kb());
	munmap(m, len);
	free(h);
}

TEST_F(mem, unregister_enoent)
{
	char *buf = wd_alloc(self->page);
	uint32_t h;

	ASSERT_NE(NULL, buf);
	EXPECT_EQ(-1, wd_unregister(self->q.fd, 0));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-1, wd_unregister(self->q.fd, 12345));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-1, wd_unregister(self->q.fd, ~0U));
	EXPECT_EQ(ENOENT, errno);
	ASSERT_EQ(0, wd_register(self->q.fd, buf, self->page, 0, &h));
	EXPECT_LT(0U, h);
	EXPECT_EQ(-1, wd_unregister(self->q.fd, h + 1));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	EXPECT_EQ(-1, wd_unregister(self->q.fd, h));
	EXPECT_EQ(ENOENT, errno);
	munmap(buf, self->page);
}

/* Buffers are per queue: another queue neither sees nor frees them. */
TEST_F(mem, buffers_per_queue)
{
	struct wd_queue other;
	char *buf = wd_alloc(self->page);
	uint32_t h, h2;

	ASSERT_NE(NULL, buf);
	memset(buf, 1, self->page);
	ASSERT_EQ(0, wd_queue_open(&other, &self->devs[0], 0))
		TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_register(self->q.fd, buf, self->page, 0, &h));
	/* The same range on another queue is no overlap. */
	ASSERT_EQ(0, wd_register(other.fd, buf, self->page, 0, &h2));
	EXPECT_EQ(1ULL, wd_read64(&other.st->buffers));
	if (h != h2) {
		EXPECT_EQ(-1, wd_unregister(other.fd, h));
		EXPECT_EQ(ENOENT, errno);
	}
	wd_queue_close(&other);
	EXPECT_EQ(1ULL, wd_read64(&self->q.st->buffers));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	munmap(buf, self->page);
}

TEST_HARNESS_MAIN
