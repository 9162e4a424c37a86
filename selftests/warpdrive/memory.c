// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive memory safety: the pages the device uses are always the pages
 * the process has mapped at those addresses, and the device stops using a
 * page before memory management lets it go.
 *
 *  - a command's own pins outlive its DMA, even if the memory is unmapped;
 *  - a registered buffer is mirrored, never pinned: munmap(), mremap(),
 *    MADV_DONTNEED and mprotect() take its pages from the device after
 *    waiting for the transfer in progress only, never for the whole
 *    command or the commands queued behind it, and a command sees what is
 *    mapped there when the device gets to it;
 *  - close() with commands in flight leaves nothing pinned or running;
 *  - which memory may be registered, and how much (RLIMIT_MEMLOCK applies to
 *    commands' own pins only, WD_MAX_BUFFERS, WD_MAX_BUFFER_SIZE, overlaps).
 *
 * migration, KSM, compaction and reclaim on registered memory are the
 * mm_progress test's.
 *
 * Ownership across processes is the ownership test's.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/userfaultfd.h>
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
	WD_SETUP_EDU_QUEUE(self->devs, self->n, &self->q);
}

FIXTURE_TEARDOWN(mem)
{
	wd_queue_close(&self->q);
	if (self->ramfs[0]) {
		umount2(self->ramfs, MNT_DETACH);
		rmdir(self->ramfs);
	}
}


static uint64_t pinned(const struct wd_queue *q)
{
	return wd_read64(&q->st->pinned_pages);
}

static uint64_t invalidations(const struct wd_queue *q)
{
	return wd_read64(&q->st->invalidations);
}

/* Pages of registered buffers mapped for the device (never pinned). */
static uint64_t mapped(const struct wd_queue *q)
{
	return wd_read64(&q->st->mapped_pages);
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
	EXPECT_TRUE(WD_WAIT_FOR(wd_vmpin_kb() == pin, 2000))
		TH_LOG("VmPin %ld kB, was %ld kB", wd_vmpin_kb(), pin);
	EXPECT_TRUE(WD_WAIT_FOR(pinned(&self->q) == 0, 2000));
	munmap(fresh, fresh_len);
}

/*
 * Unmaps @victim, a registered buffer that a long command uses while it
 * runs, and checks that munmap() did not wait for the command: only for
 * the transfer in progress. The command then fails with -EFAULT, having
 * written a prefix of its destination at most.
 */
static void munmap_in_flight(struct __test_metadata *_metadata,
			     struct wd_queue *q, struct wd_desc *d,
			     void *victim, size_t len)
{
	struct wd_cqe cqe;
	uint32_t tail;
	uint64_t t0, took;

	tail = wd_cq_tail(q);
	ASSERT_EQ(1U, wd_sq_push(q, d, 1));
	ASSERT_EQ(1, wd_kick(q)) TH_LOG("%s", wd_ring_error());
	/* Let the engine start on it. */
	usleep(300 * 1000);
	ASSERT_EQ(tail, wd_cq_tail(q)) TH_LOG("the command finished too soon");
	t0 = wd_now_ms();
	ASSERT_EQ(0, munmap(victim, len));
	took = wd_now_ms() - t0;
	ASSERT_EQ(0, wd_reap(q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(d->user_data, cqe.user_data);
	/* Had munmap() waited for the whole command, it would have succeeded. */
	EXPECT_EQ(-EFAULT, cqe.status)
		TH_LOG("munmap returned after %llu ms, and the command went on: it waited for it",
		       (unsigned long long)took);
	TH_LOG("munmap took %llu ms with the command running",
	       (unsigned long long)took);
}

/*
 * munmap() of a registered buffer while a DMA copy from it runs (64 KiB,
 * 32 transfers of 100 ms on the device) waits for the transfer in progress
 * only. The copy fails; the address is then unusable until something is
 * mapped there again, and what is mapped then is used. Nothing is ever
 * pinned.
 */
TEST_F_TIMEOUT(mem, munmap_during_dma, 60)
{
	const size_t pages = COPY_MAX / self->page;
	uint32_t hsrc, hdst;
	uint64_t inval, res;
	struct wd_desc d;
	char *src, *dst;
	long pin;

	pin = wd_vmpin_kb();
	src = wd_alloc(COPY_MAX);
	dst = wd_alloc(COPY_MAX);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, COPY_MAX, 3, 0);
	memset(dst, 0, COPY_MAX);
	ASSERT_EQ(0, wd_register(self->q.fd, src, COPY_MAX, 0, &hsrc));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, COPY_MAX, WD_REGISTER_WRITE,
				 &hdst));
	/* Mapped for the device at once, and not pinned. */
	ASSERT_EQ((uint64_t)(2 * pages), mapped(&self->q));
	EXPECT_EQ(0ULL, pinned(&self->q));
	EXPECT_EQ(pin, wd_vmpin_kb());
	inval = invalidations(&self->q);

	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 1, src, dst, COPY_MAX, 0);
	d.flags = WD_DESC_REGISTERED;
	munmap_in_flight(_metadata, &self->q, &d, src, COPY_MAX);
	EXPECT_EQ(-1, wd_check_prefix(dst, COPY_MAX, 3, 0, 0))
		TH_LOG("the device wrote more than a prefix of the copy");
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ((uint64_t)pages, mapped(&self->q));
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
	EXPECT_EQ((uint64_t)(2 * pages), mapped(&self->q));

	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hdst));
	EXPECT_EQ(0ULL, mapped(&self->q));
	EXPECT_EQ(pin, wd_vmpin_kb());
	munmap(src, COPY_MAX);
	munmap(dst, COPY_MAX);
}

/*
 * The same for a long emulated copy between two 128 MiB registered
 * buffers, unmapping the source while it runs: munmap() waits for one
 * 64 KiB chunk of the copy at most.
 */
TEST_F_TIMEOUT(mem, munmap_during_memcpy, 120)
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
	EXPECT_EQ(-1, wd_check_prefix(dst, len, 5, 0, 0));
	EXPECT_EQ((uint64_t)(len / self->page), mapped(&self->q));
	EXPECT_EQ(0ULL, pinned(&self->q));
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
	ASSERT_EQ((uint64_t)(2 * pages), mapped(&self->q));
	ASSERT_EQ(0, madvise(src, len, MADV_DONTNEED));
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ((uint64_t)pages, mapped(&self->q));
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
	EXPECT_EQ(0ULL, mapped(&self->q));
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
	EXPECT_EQ((uint64_t)(len / self->page), mapped(&self->q));

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
 * A protection change that keeps the access a buffer needs does not tear
 * it down: the pages stay mapped for the device, and the next command only
 * looks them up again. One that takes the access away keeps the mapping
 * too (the page has not moved), but no command may use it until the
 * access is back.
 */
TEST_F(mem, protection_change_keeps_mapping)
{
	const size_t len = 64 * KiB, pages = len / self->page;
	uint64_t inval, res;
	uint32_t h;
	char *src;

	src = wd_alloc(len);
	ASSERT_NE(NULL, src);
	wd_fill(src, len, 23, 0);
	ASSERT_EQ(0, wd_register(self->q.fd, src, len, 0, &h));
	ASSERT_EQ((uint64_t)pages, mapped(&self->q));

	inval = invalidations(&self->q);
	ASSERT_EQ(0, mprotect(src, len, PROT_READ));
	EXPECT_LT(inval, invalidations(&self->q));
	EXPECT_EQ((uint64_t)pages, mapped(&self->q)) TH_LOG("torn down");
	EXPECT_EQ(0, crc_of(_metadata, &self->q, src, len, WD_DESC_REGISTERED,
			    &res));
	EXPECT_EQ(wd_crc32c(0, src, len), res);
	EXPECT_EQ((uint64_t)pages, mapped(&self->q));

	ASSERT_EQ(0, mprotect(src, len, PROT_NONE));
	EXPECT_EQ((uint64_t)pages, mapped(&self->q));
	EXPECT_EQ(-EFAULT, crc_of(_metadata, &self->q, src, len,
				  WD_DESC_REGISTERED, NULL));
	ASSERT_EQ(0, mprotect(src, len, PROT_READ | PROT_WRITE));
	EXPECT_EQ(0, crc_of(_metadata, &self->q, src, len, WD_DESC_REGISTERED,
			    &res));
	EXPECT_EQ(wd_crc32c(0, src, len), res);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	EXPECT_EQ(0ULL, mapped(&self->q));
	munmap(src, len);
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
 * File mappings register for writing as for reading: nothing is pinned, so
 * a file system's writeback write-protects the pages, which takes the
 * device's write access, and the file sees what the device wrote. ramfs
 * (no writeback), memfd and shared anonymous memory (shmem) here; ext2 on
 * a real disk is mm_progress's.
 */
TEST_F(mem, file_backed)
{
	const size_t len = 64 * KiB;
	char path[128], *p, *rd;
	uint64_t res;
	uint32_t h;
	int fd;

	rd = wd_alloc(len);
	ASSERT_NE(NULL, rd);

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
	ASSERT_EQ(0, wd_register(self->q.fd, p, len, 0, &h))
		TH_LOG("read-only: %s", strerror(errno));
	EXPECT_EQ(0, crc_of(_metadata, &self->q, p, len, WD_DESC_REGISTERED,
			    &res));
	EXPECT_EQ(wd_crc32c(0, p, len), res);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	ASSERT_EQ(0, wd_register(self->q.fd, p, len, WD_REGISTER_WRITE, &h))
		TH_LOG("ramfs, writable: %s", strerror(errno));
	wd_fill(rd, len, 21, 0);
	EXPECT_EQ(0, copy_to(_metadata, &self->q, rd, p, len, 0));
	memset(rd, 0, len);
	ASSERT_EQ((ssize_t)len, pread(fd, rd, len, 0));
	EXPECT_EQ(-1, wd_check(rd, len, 21, 0));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	EXPECT_EQ(0ULL, pinned(&self->q));
	munmap(p, len);
	close(fd);
	unlink(path);

	/* memfd: shmem, and the file sees what the device wrote. */
	fd = memfd_create("wd", MFD_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, len));
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
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

/* Runs "sync" and drops the clean page cache, so that reads go to the disk. */
static int sync_and_drop_caches(void)
{
	sync();
	return wd_write_file("/proc/sys/vm/drop_caches", "3");
}

/* Reads @len bytes at offset 0 of @path past the page cache (O_DIRECT). */
static int read_direct(const char *path, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, buf, len, 0);
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

/* Copies @len bytes of @src to @dst: the first @dma_len by the device's DMA. */
static void write_file_by_device(struct __test_metadata *_metadata,
				 struct wd_queue *q, const char *src,
				 char *dst, size_t dma_len, size_t len)
{
	struct wd_desc d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 1, src, dst,
				     dma_len, 0);

	EXPECT_EQ(0, run_one(_metadata, q, d, NULL));
	EXPECT_EQ(0, copy_to(_metadata, q, src + dma_len, dst + dma_len,
			     len - dma_len, 0));
}

/*
 * A writable registration of a file on a real disk file system (ext2 on
 * virtio-blk, $WD_DISK in the test guest). Writeback write-protects the
 * pages it cleans (page_mkclean), which takes them from the device; the
 * device's next write faults them writable again and so dirty, and that
 * write reaches the disk too. Without that, the second write would sit in
 * clean page cache and the read from the disk would miss it.
 */
TEST_F_TIMEOUT(mem, disk_file_writable, 120)
{
	const size_t len = 1 * MiB, dma_len = 64 * KiB;
	const size_t second = 512 * KiB;
	const char *disk = getenv("WD_DISK");
	char path[WD_PATH_LEN], *p, *src, *rd;
	uint64_t inv;
	uint32_t h;
	int fd;

	if (!disk)
		SKIP(return, "no disk file system (WD_DISK)");
	snprintf(path, sizeof(path), "%s/wd-disk-XXXXXX", disk);
	fd = mkostemp(path, O_CLOEXEC);
	ASSERT_LE(0, fd) TH_LOG("%s: %s", path, strerror(errno));
	ASSERT_EQ(0, ftruncate(fd, len));
	src = wd_alloc(len);
	ASSERT_NE(NULL, src);
	rd = aligned_alloc(self->page, len);
	ASSERT_NE(NULL, rd);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	wd_fill(p, len, 40, 0);
	ASSERT_EQ(0, wd_register(self->q.fd, p, len, WD_REGISTER_WRITE, &h))
		TH_LOG("ext2, writable: %s", strerror(errno));

	/* The first 64 KiB by real DMA, the rest by the bulk engine. */
	wd_fill(src, len, 41, 0);
	write_file_by_device(_metadata, &self->q, src, p, dma_len, len);
	EXPECT_EQ(-1, wd_check(p, len, 41, 0));
	inv = invalidations(&self->q);
	ASSERT_EQ(0, fsync(fd));
	EXPECT_LT(inv, invalidations(&self->q))
		TH_LOG("writeback cleaned the pages without the device losing "
		       "its write access");

	/* Written again after writeback, then only the final sync. */
	wd_fill(src, len, 42, 0);
	write_file_by_device(_metadata, &self->q, src, p, dma_len, second);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	EXPECT_EQ(0ULL, mapped(&self->q));
	munmap(p, len);
	close(fd);
	ASSERT_EQ(0, sync_and_drop_caches());

	ASSERT_EQ(0, read_direct(path, rd, len)) TH_LOG("%s", path);
	EXPECT_EQ(-1, wd_check(rd, second, 42, 0))
		TH_LOG("the write after writeback did not reach the disk");
	EXPECT_EQ(-1, wd_check(rd + second, len - second, 41, second));
	/* And through the page cache, read back from the disk. */
	memset(rd, 0, len);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)len, pread(fd, rd, len, 0));
	EXPECT_EQ(-1, wd_check(rd, second, 42, 0));
	EXPECT_EQ(-1, wd_check(rd + second, len - second, 41, second));
	close(fd);
	unlink(path);
	free(rd);
	munmap(src, len);
}

/*
 * The driver's engine never waits for user space: a registered buffer
 * whose pages were dropped under a userfaultfd that nobody serves, after
 * KICK took the command, fails that command with -EFAULT instead of
 * leaving the engine (and every queue behind it) waiting for the fault.
 */
TEST_F_TIMEOUT(mem, engine_never_waits_for_uffd, 60)
{
	const size_t len = 64 * KiB;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct wd_desc d;
	struct wd_cqe cqe;
	uint64_t res;
	uint32_t h;
	int uffd, ret;
	char *p;

	p = wd_alloc(len);
	ASSERT_NE(NULL, p);
	memset(p, 0x5a, len);
	ASSERT_EQ(0, wd_register(self->q.fd, p, len, 0, &h));
	uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
	ASSERT_LE(0, uffd) TH_LOG("userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	reg.range.start = (uintptr_t)p;
	reg.range.len = len;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));

	ASSERT_EQ(0, wd_engine_hold(&self->devs[0], "bulk", true))
		TH_LOG("hold_bulk: is the edu driver's debugfs there?");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 7, p, NULL, len, 0);
	d.flags = WD_DESC_REGISTERED;
	ASSERT_EQ(1U, wd_sq_push(&self->q, &d, 1));
	ret = wd_kick(&self->q);
	EXPECT_EQ(1, ret) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, madvise(p, len, MADV_DONTNEED));
	ASSERT_EQ(0, wd_engine_hold(&self->devs[0], "bulk", false));

	ASSERT_EQ(0, wd_reap(&self->q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(7ULL, cqe.user_data);
	EXPECT_EQ(-EFAULT, cqe.status);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	close(uffd);
	/* The engine is free for the next command, on the same memory. */
	memset(p, 0x5a, len);
	EXPECT_EQ(0, crc_of(_metadata, &self->q, p, len, 0, &res));
	EXPECT_EQ(wd_crc32c(0, p, len), res);
	munmap(p, len);
}

struct register_arg {
	int fd;
	void *p;
	size_t len;
	int ret, err;
	uint32_t handle;
};

static void *register_fn(void *arg)
{
	struct register_arg *a = arg;

	a->ret = wd_register(a->fd, a->p, a->len, 0, &a->handle);
	a->err = errno;
	return NULL;
}

/*
 * A REGISTER that fails while faulting its range in (here: its second
 * page waits for a userfaultfd handler, then goes away) has already put
 * the buffer where commands find it. A command that another thread
 * queued on the first page meanwhile runs on it, and the buffer only goes
 * once that command is done, as UNREGISTER would do it: the command never
 * sees it torn down (-ECANCELED).
 */
TEST_F_TIMEOUT(mem, failed_register_waits_for_commands, 60)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct register_arg ra = { .fd = self->q.fd, .ret = -2 };
	size_t len = 2 * self->page;
	struct wd_queue_status st;
	struct pollfd pfd;
	struct uffd_msg msg;
	struct wd_desc d;
	struct wd_cqe cqe;
	pthread_t t;
	uint32_t crc;
	char *p;
	int uffd;

	p = wd_alloc(len);
	ASSERT_NE(NULL, p);
	memset(p, 0x3c, self->page);
	crc = wd_crc32c(0, p, self->page);
	uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
	ASSERT_LE(0, uffd) TH_LOG("userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	reg.range.start = (uintptr_t)p + self->page;
	reg.range.len = self->page;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));

	ra.p = p;
	ra.len = len;
	ASSERT_EQ(0, pthread_create(&t, NULL, register_fn, &ra));
	/* REGISTER now waits for the second page. */
	pfd = (struct pollfd){ .fd = uffd, .events = POLLIN };
	ASSERT_EQ(1, poll(&pfd, 1, WD_WAIT_MS)) TH_LOG("no fault from REGISTER");
	ASSERT_EQ((ssize_t)sizeof(msg), read(uffd, &msg, sizeof(msg)));
	EXPECT_EQ(UFFD_EVENT_PAGEFAULT, msg.event);

	ASSERT_EQ(0, wd_engine_hold(&self->devs[0], "bulk", true))
		TH_LOG("hold_bulk: is the edu driver's debugfs there?");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 5, p, NULL, self->page, 0);
	d.flags = WD_DESC_REGISTERED;
	EXPECT_EQ(1U, wd_sq_push(&self->q, &d, 1));
	EXPECT_EQ(1, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	/* The page goes, and the fault, woken, finds nothing there. */
	EXPECT_EQ(0, munmap(p + self->page, self->page));
	close(uffd);
	/* REGISTER waits for the queued command rather than failing now. */
	usleep(200 * 1000);
	EXPECT_EQ(-2, __atomic_load_n(&ra.ret, __ATOMIC_RELAXED));
	ASSERT_EQ(0, wd_engine_hold(&self->devs[0], "bulk", false));

	ASSERT_EQ(0, wd_reap(&self->q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(5ULL, cqe.user_data);
	EXPECT_EQ(0, cqe.status) TH_LOG("status %d", cqe.status);
	EXPECT_EQ((uint64_t)crc, cqe.result);
	pthread_join(t, NULL);
	EXPECT_EQ(-1, ra.ret);
	EXPECT_EQ(EFAULT, ra.err) TH_LOG("REGISTER: %s", strerror(ra.err));
	/* It is gone: nothing is left registered. */
	wd_status(&self->q, &st);
	EXPECT_EQ(0ULL, st.buffers);
	munmap(p, self->page);
}

/*
 * The queue's own pages never reach the device: the ring and the status
 * page, of this queue or another one of the process, are shared between
 * the kernel and user space, and neither registration (read-only or
 * writable) nor a command's operand may hand them to the device. Both
 * regions are VM_IO | VM_PFNMAP mappings, which GUP and HMM refuse.
 */
TEST_F(mem, own_regions_never_reach_device)
{
	struct wd_queue other;
	struct {
		const char *what;
		void *p;
		size_t len;
	} r[4];
	unsigned int i, f;
	char *buf;
	uint32_t h;

	wd_queue_init(&other);
	ASSERT_EQ(0, wd_queue_open(&other, &self->devs[0], 0))
		TH_LOG("%s", wd_ring_error());
	r[0] = (typeof(r[0])){ "ring", self->q.dus, self->q.dus_len };
	r[1] = (typeof(r[0])){ "status page", self->q.st, self->q.st_len };
	r[2] = (typeof(r[0])){ "other queue's ring", other.dus, other.dus_len };
	r[3] = (typeof(r[0])){ "other status page", other.st, other.st_len };
	buf = wd_alloc(self->page);
	ASSERT_NE(NULL, buf);
	memset(buf, 1, self->page);

	for (i = 0; i < 4; i++) {
		for (f = 0; f < 2; f++) {
			uint32_t flags = f ? WD_REGISTER_WRITE : 0;

			errno = 0;
			EXPECT_EQ(-1, wd_register(self->q.fd, r[i].p,
						  r[i].len, flags, &h))
				TH_LOG("%s registered (flags %u)", r[i].what,
				       flags);
			EXPECT_EQ(EFAULT, errno)
				TH_LOG("%s, flags %u: %s", r[i].what, flags,
				       strerror(errno));
		}
		/* As a command's source, by DMA and by the CPU engine... */
		{
			struct wd_desc d = wd_mkdesc(WD_EDU_OP_DMA_COPY, i,
						     r[i].p, buf, self->page,
						     0);
			EXPECT_EQ(-EFAULT, run_one(_metadata, &self->q, d,
						   NULL))
				TH_LOG("DMA_COPY from the %s", r[i].what);
		}
		EXPECT_EQ(-EFAULT, crc_of(_metadata, &self->q, r[i].p,
					  self->page, 0, NULL))
			TH_LOG("CRC32C of the %s", r[i].what);
		/* ...and as its destination. */
		EXPECT_EQ(-EFAULT, copy_to(_metadata, &self->q, buf, r[i].p,
					   self->page, 0))
			TH_LOG("MEMCPY into the %s", r[i].what);
	}
	/* Nothing reached either ring: both queues still work. */
	EXPECT_EQ((uint32_t)WD_RING_MAGIC, wd_read32(&self->q.hdr->magic));
	EXPECT_EQ((uint32_t)WD_RING_MAGIC, wd_read32(&other.hdr->magic));
	EXPECT_EQ(0, crc_of(_metadata, &other, buf, self->page, 0, NULL));
	EXPECT_EQ(0ULL, mapped(&self->q));
	EXPECT_EQ(0ULL, pinned(&self->q));
	wd_queue_close(&other);
	munmap(buf, self->page);
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

/*
 * REGISTER pins nothing, so it is not charged to RLIMIT_MEMLOCK: four
 * times the limit registers, and VmPin does not move.
 */
TEST_F(mem, memlock_register)
{
	const size_t limit = 64;	/* KiB */
	uint64_t res;
	uint32_t h1, h2;
	char *buf;
	long pin;

	limit_memlock(_metadata, limit);
	buf = wd_alloc(4 * limit * KiB);
	ASSERT_NE(NULL, buf);
	wd_fill(buf, 4 * limit * KiB, 22, 0);
	pin = wd_vmpin_kb();
	ASSERT_LE(0, pin);

	ASSERT_EQ(0, wd_register(self->q.fd, buf, 2 * limit * KiB, 0, &h1))
		TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, wd_register(self->q.fd, buf + 2 * limit * KiB,
				 2 * limit * KiB, WD_REGISTER_WRITE, &h2))
		TH_LOG("%s", strerror(errno));
	EXPECT_EQ(pin, wd_vmpin_kb());
	EXPECT_EQ(0ULL, pinned(&self->q));
	EXPECT_EQ((uint64_t)(4 * limit * KiB / self->page), mapped(&self->q));
	EXPECT_EQ(0, crc_of(_metadata, &self->q, buf, 2 * limit * KiB,
			    WD_DESC_REGISTERED, &res));
	EXPECT_EQ(wd_crc32c(0, buf, 2 * limit * KiB), res);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h1));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h2));
	munmap(buf, 4 * limit * KiB);
}

/*
 * A command's own pins are charged: one that would exceed the limit
 * completes with -ENOMEM and writes nothing. Registered buffers, however
 * large, take none of the room.
 */
TEST_F(mem, memlock_command)
{
	const size_t limit = 64;	/* KiB */
	uint64_t res;
	char *a, *b;
	uint32_t h;

	limit_memlock(_metadata, limit);
	a = wd_alloc(512 * KiB);
	b = wd_alloc(256 * KiB);
	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	wd_fill(a, 512 * KiB, 20, 0);
	memset(b, 0x55, 256 * KiB);

	/* 2 x 128 KiB of pins for a 64 KiB limit. */
	EXPECT_EQ(-ENOMEM, copy_to(_metadata, &self->q, a, b, 128 * KiB, 0));
	EXPECT_EQ(-1, wd_check_byte(b, 256 * KiB, 0x55));
	EXPECT_EQ(-ENOMEM, crc_of(_metadata, &self->q, a, 128 * KiB, 0,
				  NULL));
	/* 2 x 16 KiB is fine. */
	EXPECT_EQ(0, copy_to(_metadata, &self->q, a, b, 16 * KiB, 0));
	EXPECT_EQ(-1, wd_check(b, 16 * KiB, 20, 0));
	/* Its pins went before its completion was written. */
	EXPECT_EQ(0ULL, pinned(&self->q));

	/* 256 KiB registered, four times the limit, leaves all of it. */
	ASSERT_EQ(0, wd_register(self->q.fd, a + 256 * KiB, 256 * KiB, 0, &h))
		TH_LOG("%s", strerror(errno));
	memset(b, 0x55, 256 * KiB);
	EXPECT_EQ(0, copy_to(_metadata, &self->q, a, b, 24 * KiB, 0));
	EXPECT_EQ(-1, wd_check(b, 24 * KiB, 20, 0));
	/* From the registered buffer, only b is pinned. */
	EXPECT_EQ(0, copy_to(_metadata, &self->q, a + 256 * KiB, b, 48 * KiB,
			     0));
	EXPECT_EQ(-1, wd_check(b, 48 * KiB, 20, 256 * KiB));
	EXPECT_EQ(0, crc_of(_metadata, &self->q, a + 256 * KiB, 256 * KiB,
			    WD_DESC_REGISTERED, &res));
	EXPECT_EQ(wd_crc32c(0, a + 256 * KiB, 256 * KiB), res);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	munmap(a, 512 * KiB);
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
	/* Ending at the very top: addr + len does not fit in 64 bits. */
	EXPECT_EQ(-1, wd_register(self->q.fd, (void *)(~0UL - 4095), 4096, 0,
				  &h));
	EXPECT_EQ(EINVAL, errno) TH_LOG("end at 2^64: %s", strerror(errno));
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
 * inserts an interval notifier and maps its page; under KASAN and TCG that
 * is some 10 ms each, hence the long timeout.
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
	EXPECT_EQ((uint64_t)WD_MAX_BUFFERS, mapped(&self->q));
	EXPECT_EQ(0ULL, pinned(&self->q));
	EXPECT_EQ(pin, wd_vmpin_kb());

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
