// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive shadow ring, the happy path: every edu opcode with results
 * checked against the CPU, batches much larger than the rings, completion
 * back-pressure, registered and unregistered buffers at odd offsets and
 * lengths, the status counters, and several queues and processes at once.
 * Descriptors that must fail are bad_ring's; memory rules are memory's.
 */
#include "kselftest_harness.h"

#include <pthread.h>
#include <sys/ioctl.h>

#include "wd_ring.h"

#define KiB		1024UL
#define MiB		(1024UL * KiB)

FIXTURE(ring) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	struct wd_queue q;
	size_t page;
};

FIXTURE_SETUP(ring)
{
	wd_queue_init(&self->q);
	self->page = wd_page_size();
	WD_SETUP_EDU_QUEUE(self->devs, self->n, &self->q);
}

FIXTURE_TEARDOWN(ring)
{
	wd_queue_close(&self->q);
}

/* Fails the test with the helper's reason unless @call returned 0. */
static void expect_ok(struct __test_metadata *_metadata,
		      const struct wd_cqe *cqe, uint64_t ud, uint64_t result)
{
	EXPECT_EQ(ud, cqe->user_data);
	EXPECT_EQ(0, cqe->status) TH_LOG("command %#llx: status %d",
					 (unsigned long long)ud, cqe->status);
	EXPECT_EQ(result, cqe->result) TH_LOG("command %#llx",
					      (unsigned long long)ud);
	EXPECT_EQ(0U, cqe->flags);
}

/* A fresh started queue: empty ring, zero counters, nothing to poll. */
TEST_F(ring, fresh_queue)
{
	struct pollfd pfd = { .fd = self->q.fd, .events = POLLIN };
	struct wd_queue_status st;

	wd_status(&self->q, &st);
	EXPECT_EQ((__u32)WD_QUEUE_STARTED, st.state);
	EXPECT_EQ(0ULL, st.submitted);
	EXPECT_EQ(0ULL, st.completed);
	EXPECT_EQ(0ULL, st.errors);
	EXPECT_EQ(0ULL, st.bytes);
	EXPECT_EQ(0ULL, st.pinned_pages);
	EXPECT_EQ(0ULL, st.buffers);
	EXPECT_EQ(0U, wd_sq_head(&self->q));
	EXPECT_EQ(0U, wd_cq_tail(&self->q));
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	/* Nothing published: KICK takes nothing. */
	EXPECT_EQ(0, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	EXPECT_TRUE(wd_cq_quiet(&self->q, 50));
}

/*
 * One NOP, step by step: KICK consumes it, the completion comes back with
 * the user_data, poll() reports it until it is reaped, and the counters
 * follow.
 */
TEST_F(ring, nop)
{
	const uint64_t ud = 0xfeedface12345678ULL;
	struct pollfd pfd = { .fd = self->q.fd, .events = POLLIN };
	struct wd_desc d = wd_mkdesc(WD_EDU_OP_NOP, ud, NULL, NULL, 0, 0);
	struct wd_queue_status st;
	struct wd_cqe cqe;

	ASSERT_EQ(1U, wd_sq_push(&self->q, &d, 1));
	/* Published but not kicked: nothing happens. */
	EXPECT_TRUE(wd_cq_quiet(&self->q, 50));
	EXPECT_EQ(0U, wd_sq_head(&self->q));
	ASSERT_EQ(1, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(1U, wd_sq_head(&self->q));
	ASSERT_EQ(1, wd_cq_wait(&self->q, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(1U, wd_cq_tail(&self->q));

	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN, pfd.revents & (POLLIN | POLLERR | POLLHUP));
	/* Still unreaped: still reported. */
	EXPECT_EQ(1, poll(&pfd, 1, 0));

	ASSERT_EQ(1U, wd_cq_pop(&self->q, &cqe, 1));
	expect_ok(_metadata, &cqe, ud, cqe.result);
	EXPECT_EQ(0, poll(&pfd, 1, 0)) TH_LOG("revents %#x after reaping",
					      pfd.revents);
	/* A KICK with nothing new takes nothing. */
	EXPECT_EQ(0, wd_kick(&self->q));

	wd_status(&self->q, &st);
	EXPECT_EQ(1ULL, st.submitted);
	EXPECT_EQ(1ULL, st.completed);
	EXPECT_EQ(0ULL, st.errors);
	EXPECT_EQ(0ULL, st.bytes);
}

/*
 * A NOP completes within the KICK that takes it (the UAPI header says so):
 * its completion is in the ring when KICK returns, ahead of a CRC32C
 * submitted before it that waits behind the held bulk engine.
 */
TEST_F_TIMEOUT(ring, nop_completes_in_kick, 60)
{
	struct wd_desc d[2];
	struct wd_cqe cqe[2];
	uint32_t crc, got;
	char *buf;
	int kicked;

	buf = wd_alloc(self->page);
	ASSERT_NE(NULL, buf);
	wd_fill(buf, self->page, 7, 0);
	crc = wd_crc32c(0, buf, self->page);
	d[0] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 1, buf, NULL, self->page, 0);
	d[1] = wd_mkdesc(WD_EDU_OP_NOP, 2, NULL, NULL, 0, 0);
	ASSERT_EQ(0, wd_engine_hold(&self->devs[0], "bulk", true))
		TH_LOG("hold_bulk: is the edu driver's debugfs there?");
	ASSERT_EQ(2U, wd_sq_push(&self->q, d, 2));
	kicked = wd_kick(&self->q);
	/* Read before the engine goes on: only the NOP can be there. */
	got = wd_cq_count(&self->q);
	EXPECT_EQ(1U, got);
	if (got == 1)
		wd_cq_pop(&self->q, cqe, 1);
	ASSERT_EQ(0, wd_engine_hold(&self->devs[0], "bulk", false));
	ASSERT_EQ(2, kicked) TH_LOG("%s", wd_ring_error());
	if (got == 1) {
		expect_ok(_metadata, &cqe[0], 2, 0);
		ASSERT_EQ(0, wd_reap(&self->q, &cqe[1], 1, WD_WAIT_MS))
			TH_LOG("%s", wd_ring_error());
		expect_ok(_metadata, &cqe[1], 1, crc);
	}
	munmap(buf, self->page);
}

/* user_data comes back exactly, every bit of it. */
TEST_F(ring, user_data)
{
	static const uint64_t uds[] = {
		0, 1, ~0ULL, 0x8000000000000000ULL, 0x0123456789abcdefULL,
		0xdeadbeefcafef00dULL, 0x00000000ffffffffULL,
	};
	struct wd_desc d[ARRAY_SIZE(uds)];
	struct wd_cqe cqe[ARRAY_SIZE(uds)];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(uds); i++)
		d[i] = wd_mkdesc(WD_EDU_OP_NOP, uds[i], NULL, NULL, 0, 0);
	ASSERT_EQ(0, wd_run(&self->q, d, ARRAY_SIZE(uds), cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	for (i = 0; i < ARRAY_SIZE(uds); i++)
		expect_ok(_metadata, &cqe[i], uds[i], cqe[i].result);
}

/* The device's factorial unit through the ring, as the ioctl computes it. */
TEST_F(ring, factorial)
{
	static const uint64_t ns[] = {
		0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
		18, 19, 20, 21, 31, 32, 33, 34, 35, 100, 1000,
	};
	struct wd_desc d[ARRAY_SIZE(ns)];
	struct wd_cqe cqe[ARRAY_SIZE(ns)];
	uint32_t res;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ns); i++)
		d[i] = wd_mkdesc(WD_EDU_OP_FACTORIAL, i, NULL, NULL, 0, ns[i]);
	ASSERT_EQ(0, wd_run(&self->q, d, ARRAY_SIZE(ns), cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	for (i = 0; i < ARRAY_SIZE(ns); i++)
		expect_ok(_metadata, &cqe[i], i, wd_fact_u32(ns[i]));
	/* The ioctl still works beside the ring, with the same answer. */
	ASSERT_EQ(0, wd_factorial(self->q.fd, 13, &res));
	EXPECT_EQ(wd_fact_u32(13), res);
}

/*
 * A copy from @src_off of a pattern-filled source to @dst_off of a
 * canary-filled destination: the bytes around the copy must keep the
 * canary.
 */
struct copy_case {
	size_t src_off, dst_off, len;
};

static void check_copy(struct __test_metadata *_metadata, const char *dst,
		       size_t dst_len, const struct copy_case *c,
		       uint64_t seed, unsigned char canary)
{
	ssize_t bad;

	bad = wd_check(dst + c->dst_off, c->len, seed, c->src_off);
	EXPECT_EQ(-1, bad) TH_LOG("copy %zu -> %zu, %zu bytes: byte %zd wrong",
				  c->src_off, c->dst_off, c->len, bad);
	bad = wd_check_byte(dst, c->dst_off, canary);
	EXPECT_EQ(-1, bad) TH_LOG("copy %zu -> %zu, %zu bytes: wrote byte %zd",
				  c->src_off, c->dst_off, c->len, bad);
	bad = wd_check_byte(dst + c->dst_off + c->len,
			    dst_len - c->dst_off - c->len, canary);
	EXPECT_EQ(-1, bad) TH_LOG("copy %zu -> %zu, %zu bytes: wrote %zd past the end",
				  c->src_off, c->dst_off, c->len, bad);
}

static void run_copies(struct __test_metadata *_metadata, struct wd_queue *q,
		       uint16_t op, const struct copy_case *cases, size_t n,
		       size_t buf_len)
{
	struct wd_queue_status before, after;
	uint64_t bytes = 0;
	struct wd_desc d;
	struct wd_cqe cqe;
	char *src, *dst;
	size_t i;

	src = wd_alloc(buf_len);
	dst = wd_alloc(buf_len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, buf_len, 7, 0);
	wd_status(q, &before);
	for (i = 0; i < n; i++) {
		memset(dst, 0xa5, buf_len);
		d = wd_mkdesc(op, i, src + cases[i].src_off,
			      dst + cases[i].dst_off, cases[i].len, 0);
		ASSERT_EQ(0, wd_run1(q, &d, &cqe)) TH_LOG("%s", wd_ring_error());
		expect_ok(_metadata, &cqe, i, cases[i].len);
		check_copy(_metadata, dst, buf_len, &cases[i], 7, 0xa5);
		bytes += cases[i].len;
	}
	/* Source untouched. */
	EXPECT_EQ(-1, wd_check(src, buf_len, 7, 0));
	wd_status(q, &after);
	EXPECT_EQ(before.submitted + n, after.submitted);
	EXPECT_EQ(before.completed + n, after.completed);
	EXPECT_EQ(before.errors, after.errors);
	EXPECT_EQ(before.bytes + bytes, after.bytes);
	munmap(src, buf_len);
	munmap(dst, buf_len);
}

/*
 * The device's DMA engine: aligned to 4 but not to pages, crossing page
 * boundaries, and larger than its 4 KiB buffer. Each 4 KiB takes QEMU
 * 200 ms, so the cases are few and small.
 */
TEST_F_TIMEOUT(ring, dma_copy, 60)
{
	const struct copy_case cases[] = {
		{ 0, 0, 4 },
		{ 0, 0, 4096 },
		{ 4092, 8188, 8 },		/* both cross a page */
		{ 2048, 6148, 8192 },		/* three pages each */
		{ 100, 4000, 4100 },		/* more than one chunk */
	};

	run_copies(_metadata, &self->q, WD_EDU_OP_DMA_COPY, cases,
		   ARRAY_SIZE(cases), 16 * KiB);
}

/* The emulated bulk copy, at any alignment and length. */
TEST_F_TIMEOUT(ring, emu_memcpy, 60)
{
	const struct copy_case cases[] = {
		{ 0, 0, 1 },
		{ 1, 2, 3 },
		{ 7, 5, 4095 },
		{ 0, 0, 4096 },
		{ 4095, 1, 2 },			/* crosses a page */
		{ 4093, 8190, 4099 },
		{ 3, 4097, 65537 },
		{ 123, 321, 1 * MiB + 13 },
		{ 0, 0, 2 * MiB },
	};

	run_copies(_metadata, &self->q, WD_EDU_OP_EMU_MEMCPY, cases,
		   ARRAY_SIZE(cases), 2 * MiB + 4 * KiB);
}

/* The CPU reference first, or nothing else here means anything. */
TEST(crc32c_reference)
{
	const char *v = "123456789";
	unsigned char zeros[32] = { 0 };

	EXPECT_EQ(0xe3069283U, wd_crc32c(0, v, 9));
	EXPECT_EQ(0U, wd_crc32c(0, v, 0));
	/* Chained: the CRC of the halves continues into the whole. */
	EXPECT_EQ(0xe3069283U, wd_crc32c(wd_crc32c(0, v, 4), v + 4, 5));
	/* iSCSI's test vector (RFC 3720 B.4): 32 bytes of zeroes. */
	EXPECT_EQ(0x8a9136aaU, wd_crc32c(0, zeros, 32));
}

/*
 * The emulated CRC-32C engine: the check value, any alignment and length,
 * and chaining through arg.
 */
TEST_F_TIMEOUT(ring, emu_crc32c, 60)
{
	static const struct {
		size_t off, len;
	} cases[] = {
		{ 0, 1 }, { 1, 7 }, { 3, 4093 }, { 4095, 2 }, { 0, 4096 },
		{ 4000, 70001 }, { 5, 1 * MiB + 3 },
	};
	const size_t buf_len = 2 * MiB;
	struct wd_desc d[ARRAY_SIZE(cases) + 4];
	struct wd_cqe cqe[ARRAY_SIZE(cases) + 4];
	struct wd_queue_status before, after;
	uint64_t bytes = 0;
	uint32_t mid;
	size_t i, n;
	char *buf;

	buf = wd_alloc(buf_len);
	ASSERT_NE(NULL, buf);
	wd_fill(buf, buf_len, 3, 0);
	memcpy(buf + buf_len - 9, "123456789", 9);
	wd_status(&self->q, &before);

	for (n = 0; n < ARRAY_SIZE(cases); n++) {
		d[n] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, n, buf + cases[n].off,
				 NULL, cases[n].len, 0);
		bytes += cases[n].len;
	}
	/* The check value. */
	d[n] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, n, buf + buf_len - 9, NULL, 9,
			 0);
	n++;
	/* "56789" continued from the CRC of "1234": the check value again. */
	mid = wd_crc32c(0, "1234", 4);
	d[n] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, n, buf + buf_len - 5, NULL, 5,
			 mid);
	n++;
	/* Any 32-bit seed. */
	d[n] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, n, buf, NULL, 4096,
			 0xffffffffU);
	n++;
	d[n] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, n, buf + 1, NULL, 100,
			 0x12345678U);
	n++;
	bytes += 9 + 5 + 4096 + 100;
	ASSERT_EQ(0, wd_run(&self->q, d, n, cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());

	for (i = 0; i < ARRAY_SIZE(cases); i++)
		expect_ok(_metadata, &cqe[i], i,
			  wd_crc32c(0, buf + cases[i].off, cases[i].len));
	expect_ok(_metadata, &cqe[i], i, 0xe3069283U);
	i++;
	expect_ok(_metadata, &cqe[i], i, 0xe3069283U);
	i++;
	expect_ok(_metadata, &cqe[i], i, wd_crc32c(0xffffffffU, buf, 4096));
	i++;
	expect_ok(_metadata, &cqe[i], i, wd_crc32c(0x12345678U, buf + 1, 100));

	/* A 1 MiB chain in the device equals the CPU's CRC of the whole. */
	mid = 0;
	for (i = 0; i < 16; i++) {
		d[0] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, buf + i * 65536,
				 NULL, 65536, mid);
		ASSERT_EQ(0, wd_run1(&self->q, d, cqe))
			TH_LOG("%s", wd_ring_error());
		EXPECT_EQ(0, cqe[0].status);
		mid = cqe[0].result;
		bytes += 65536;
	}
	EXPECT_EQ(wd_crc32c(0, buf, 1 * MiB), mid);

	/* The source is only read. */
	EXPECT_EQ(-1, wd_check(buf, buf_len - 9, 3, 0));
	wd_status(&self->q, &after);
	EXPECT_EQ(before.submitted + n + 16, after.submitted);
	EXPECT_EQ(before.errors, after.errors);
	EXPECT_EQ(before.bytes + bytes, after.bytes);
	munmap(buf, buf_len);
}

/*
 * Mixed work for batches: NOPs, factorials, copies from a pattern-filled
 * source into distinct slots of the destination, and CRCs, with sizes and
 * offsets from a seeded LCG. Registered commands (WD_DESC_REGISTERED) are
 * mixed in when the caller registered both buffers.
 */
struct mix {
	char *src, *dst;
	size_t src_len, slot;	/* dst holds n slots of @slot bytes */
	uint64_t seed;		/* of the source pattern */
	bool registered;
	uint32_t rng;
};

static uint32_t rnd(struct mix *m, uint32_t bound)
{
	m->rng = m->rng * 1664525 + 1013904223;
	return (m->rng >> 8) % bound;
}

static void mix_make(struct mix *m, struct wd_desc *d, unsigned int n)
{
	unsigned int i;
	size_t off, len;

	for (i = 0; i < n; i++) {
		len = 1 + rnd(m, m->slot - 8);
		off = rnd(m, m->src_len - len + 1);
		switch (rnd(m, 4)) {
		case 0:
			d[i] = wd_mkdesc(WD_EDU_OP_NOP, i, NULL, NULL, 0, 0);
			break;
		case 1:
			d[i] = wd_mkdesc(WD_EDU_OP_FACTORIAL, i, NULL, NULL, 0,
					 rnd(m, 40));
			break;
		case 2:
			d[i] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, i, m->src + off,
					 m->dst + i * m->slot + rnd(m, 8), len,
					 0);
			break;
		default:
			d[i] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, i, m->src + off,
					 NULL, len, rnd(m, 2) ? m->rng : 0);
			break;
		}
		if (m->registered && d[i].len && rnd(m, 2))
			d[i].flags = WD_DESC_REGISTERED;
	}
}

/*
 * Checks each completion of a mix_make() batch. Returns the number of
 * wrong ones and describes the first in @why.
 */
static unsigned int mix_check(const struct mix *m, const struct wd_desc *d,
			      const struct wd_cqe *cqe, unsigned int n,
			      char *why, size_t why_len)
{
	unsigned int i, bad = 0;
	uint64_t want;
	ssize_t off;

	for (i = 0; i < n; i++) {
		want = 0;
		off = -1;
		switch (d[i].opcode) {
		case WD_EDU_OP_NOP:
			want = cqe[i].result;	/* unspecified */
			break;
		case WD_EDU_OP_FACTORIAL:
			want = wd_fact_u32(d[i].arg);
			break;
		case WD_EDU_OP_EMU_MEMCPY:
			want = d[i].len;
			off = wd_check((void *)(uintptr_t)d[i].dst, d[i].len,
				       m->seed,
				       (char *)(uintptr_t)d[i].src - m->src);
			break;
		case WD_EDU_OP_EMU_CRC32C:
			want = wd_crc32c(d[i].arg, (void *)(uintptr_t)d[i].src,
					 d[i].len);
			break;
		}
		if (cqe[i].user_data == d[i].user_data && !cqe[i].status &&
		    !cqe[i].flags && cqe[i].result == want && off == -1)
			continue;
		if (!bad++)
			snprintf(why, why_len,
				 "command %u (opcode %u, len %llu): status %d, result %#llx, want %#llx, byte %zd wrong",
				 i, d[i].opcode, (unsigned long long)d[i].len,
				 cqe[i].status,
				 (unsigned long long)cqe[i].result,
				 (unsigned long long)want, off);
	}
	return bad;
}

#define BIG_BATCH	2000

/*
 * 2000 mixed commands through a 256-entry submission ring and a
 * 512-entry completion ring: wd_run() pushes, kicks and reaps in a loop,
 * wrapping both rings several times. Every completion must come back once,
 * right.
 */
TEST_F_TIMEOUT(ring, big_batch, 120)
{
	struct mix m = {
		.src_len = 256 * KiB, .slot = 512, .seed = 11, .rng = 5,
	};
	struct wd_queue_status before, after;
	struct wd_desc *d;
	struct wd_cqe *cqe;
	unsigned int i, bad, fails = 0;
	uint64_t bytes = 0;
	char why[256] = "";

	d = calloc(BIG_BATCH, sizeof(*d));
	cqe = calloc(BIG_BATCH, sizeof(*cqe));
	m.src = wd_alloc(m.src_len);
	m.dst = wd_alloc(BIG_BATCH * m.slot);
	ASSERT_NE(NULL, d);
	ASSERT_NE(NULL, cqe);
	ASSERT_NE(NULL, m.src);
	ASSERT_NE(NULL, m.dst);
	wd_fill(m.src, m.src_len, m.seed, 0);
	mix_make(&m, d, BIG_BATCH);
	for (i = 0; i < BIG_BATCH; i++)
		bytes += d[i].len;

	wd_status(&self->q, &before);
	ASSERT_EQ(0, wd_run(&self->q, d, BIG_BATCH, cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	bad = mix_check(&m, d, cqe, BIG_BATCH, why, sizeof(why));
	EXPECT_EQ(0U, bad) TH_LOG("%u wrong, first: %s", bad, why);

	wd_status(&self->q, &after);
	EXPECT_EQ(before.submitted + BIG_BATCH, after.submitted);
	EXPECT_EQ(before.completed + BIG_BATCH, after.completed);
	EXPECT_EQ(before.errors, after.errors);
	EXPECT_EQ(before.bytes + bytes, after.bytes);
	/* The indices count every command, past the ring sizes. */
	EXPECT_EQ(before.submitted + BIG_BATCH, (uint64_t)wd_sq_head(&self->q));
	EXPECT_EQ(before.completed + BIG_BATCH, (uint64_t)wd_cq_tail(&self->q));
	for (i = 0; i < BIG_BATCH; i++)
		fails += cqe[i].status != 0;
	EXPECT_EQ(0U, fails);
	free(d);
	free(cqe);
}

/* What the watcher of index_monotonic saw. */
struct index_watch {
	struct wd_queue *q;
	volatile bool stop;
	uint64_t reads;
	uint64_t cq_moves, sq_moves;	/* reads that saw the index move */
	uint32_t cq_bad, sq_bad;	/* 0, or the first index out of line */
	uint32_t cq_prev, sq_prev;
	uint32_t start;		/* both indices before the first command */
	uint32_t issued;	/* commands pushed so far, store-release */
	bool backwards;
};

/*
 * Spins on cq_tail and sq_head as user space does while it waits: each
 * read must be at or after the one before, and no further than the
 * commands pushed by then (a torn or stale index fails one of the two).
 * Not "within a ring of the read before": the watcher may be descheduled
 * while several batches go through.
 */
static void *watch_indices(void *arg)
{
	struct index_watch *w = arg;
	uint32_t cq = w->cq_prev, sq = w->sq_prev;

	while (!w->stop && !w->backwards) {
		uint32_t ncq = wd_cq_tail(w->q), nsq = wd_sq_head(w->q);
		/* Read after the indices, which cannot pass it. */
		uint32_t issued = __atomic_load_n(&w->issued,
						  __ATOMIC_ACQUIRE);

		if ((int32_t)(ncq - cq) < 0 || ncq - w->start > issued) {
			w->backwards = true;
			w->cq_bad = ncq;
			w->cq_prev = cq;
		}
		if ((int32_t)(nsq - sq) < 0 || nsq - w->start > issued) {
			w->backwards = true;
			w->sq_bad = nsq;
			w->sq_prev = sq;
		}
		w->cq_moves += ncq != cq;
		w->sq_moves += nsq != sq;
		cq = ncq;
		sq = nsq;
		w->reads++;
	}
	return NULL;
}

/*
 * The kernel publishes sq_head and cq_tail with single-copy atomic
 * stores: a thread that spins on them while the kernel completes
 * thousands of NOPs, many at once from the engine, only ever sees them
 * move forward. Every completion is checked too.
 */
TEST_F_TIMEOUT(ring, index_monotonic, 120)
{
	const unsigned int total = 20000, batch = 200;
	struct index_watch w = { .q = &self->q };
	struct wd_desc d[200];
	struct wd_cqe cqe[200];
	unsigned int done, i, wrong = 0;
	pthread_t t;

	w.cq_prev = wd_cq_tail(&self->q);
	w.sq_prev = wd_sq_head(&self->q);
	/* A fresh queue: nothing submitted, nothing completed yet. */
	ASSERT_EQ(w.cq_prev, w.sq_prev);
	w.start = w.cq_prev;
	ASSERT_EQ(0, pthread_create(&t, NULL, watch_indices, &w));
	for (done = 0; done < total && !w.backwards; done += batch) {
		for (i = 0; i < batch; i++)
			d[i] = wd_mkdesc(WD_EDU_OP_NOP, done + i, NULL, NULL,
					 0, 0);
		__atomic_store_n(&w.issued, done + batch, __ATOMIC_RELEASE);
		ASSERT_EQ(0, wd_run(&self->q, d, batch, cqe, WD_WAIT_MS))
			TH_LOG("%s", wd_ring_error());
		for (i = 0; i < batch; i++)
			wrong += cqe[i].user_data != done + i ||
				 cqe[i].status != 0;
	}
	w.stop = true;
	pthread_join(t, NULL);
	EXPECT_FALSE(w.backwards)
		TH_LOG("cq_tail %u after %u, sq_head %u after %u", w.cq_bad,
		       w.cq_prev, w.sq_bad, w.sq_prev);
	EXPECT_EQ(0U, wrong);
	EXPECT_EQ(total, done);
	/* The watcher ran beside the kernel all along. */
	EXPECT_LT(total / batch / 2, w.cq_moves)
		TH_LOG("%llu reads, cq_tail moved in %llu",
		       (unsigned long long)w.reads,
		       (unsigned long long)w.cq_moves);
	ksft_print_msg("index_monotonic: %llu reads, cq_tail moved in %llu, sq_head in %llu\n",
		       (unsigned long long)w.reads,
		       (unsigned long long)w.cq_moves,
		       (unsigned long long)w.sq_moves);
}

/* Waits without reaping until @n completions are unreaped. */
static int wait_unreaped(struct wd_queue *q, uint32_t n)
{
	uint64_t end = wd_now_ms() + WD_WAIT_MS;

	while (wd_cq_count(q) < n) {
		if (wd_now_ms() > end)
			return -ETIMEDOUT;
		usleep(1000);
	}
	return wd_cq_count(q) == n ? 0 : -EPROTO;
}

/*
 * Nobody reaps: KICK takes only what the completion ring has room for
 * (cq_entries minus in flight minus unreaped), 0 when it is full, and what
 * it leaves stays published for the next KICK. Nothing is lost and
 * nothing comes twice.
 */
TEST_F_TIMEOUT(ring, cq_backpressure, 60)
{
	const uint32_t sqn = self->q.sq_entries, cqn = self->q.cq_entries;
	const uint32_t total = cqn + sqn;
	struct pollfd pfd = { .fd = self->q.fd, .events = POLLIN };
	struct wd_cqe *cqe;
	unsigned char *seen;
	struct wd_desc *d;
	uint32_t i, got = 0, pushed = 0, reap;

	/* The arithmetic below wants a completion ring of 2 x the SQ. */
	ASSERT_EQ(2 * sqn, cqn);
	d = calloc(total, sizeof(*d));
	cqe = calloc(total, sizeof(*cqe));
	seen = calloc(total, 1);
	ASSERT_NE(NULL, d);
	ASSERT_NE(NULL, cqe);
	ASSERT_NE(NULL, seen);
	for (i = 0; i < total; i++)
		d[i] = wd_mkdesc(WD_EDU_OP_NOP, i, NULL, NULL, 0, 0);

	/* Two full submission rings fill the completion ring... */
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(sqn, wd_sq_push(&self->q, d + pushed, sqn));
		pushed += sqn;
		ASSERT_EQ((int)sqn, wd_kick(&self->q))
			TH_LOG("%s", wd_ring_error());
		ASSERT_EQ(0, wait_unreaped(&self->q, pushed));
	}
	EXPECT_EQ(1, poll(&pfd, 1, 0));

	/* ...so the third is published and left alone. */
	ASSERT_EQ(sqn, wd_sq_push(&self->q, d + pushed, sqn));
	EXPECT_EQ(0, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(2 * sqn, wd_sq_head(&self->q));
	EXPECT_EQ(sqn, wd_sq_pending(&self->q));
	EXPECT_EQ(cqn, wd_cq_count(&self->q));

	/* Reaping some makes exactly that much room. */
	reap = 100;
	got += wd_cq_pop(&self->q, cqe + got, reap);
	ASSERT_EQ(reap, got);
	EXPECT_EQ((int)reap, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wait_unreaped(&self->q, cqn));
	EXPECT_EQ(0, wd_kick(&self->q));

	/* Reaping everything lets the rest through. */
	while (got < total) {
		if (wd_sq_pending(&self->q))
			ASSERT_LE(0, wd_kick(&self->q))
				TH_LOG("%s", wd_ring_error());
		if (!wd_cq_count(&self->q))
			ASSERT_LT(0, wd_cq_wait(&self->q, WD_WAIT_MS))
				TH_LOG("%s", wd_ring_error());
		got += wd_cq_pop(&self->q, cqe + got, total - got);
	}
	EXPECT_EQ(0U, wd_sq_pending(&self->q));
	EXPECT_TRUE(wd_cq_quiet(&self->q, 50));

	for (i = 0; i < total; i++) {
		ASSERT_GT(total, cqe[i].user_data);
		EXPECT_EQ(0, seen[cqe[i].user_data]++)
			TH_LOG("user_data %llu twice",
			       (unsigned long long)cqe[i].user_data);
		EXPECT_EQ(0, cqe[i].status);
	}
	free(d);
	free(cqe);
	free(seen);
}

/*
 * Buffers registered for the device: their pages are mapped for it once
 * and never pinned (the status page shows them mapped, VmPin does not
 * move), and commands inside them, flagged
 * WD_DESC_REGISTERED or not, use them; sub-ranges at any offset work;
 * unregistered memory works beside them; unregistering releases it all.
 */
TEST_F_TIMEOUT(ring, registered_buffers, 60)
{
	const size_t len = 64 * KiB, pages = len / self->page;
	struct wd_queue_status st;
	uint32_t hsrc, hdst;
	struct wd_desc d[6];
	struct wd_cqe cqe[6];
	char *src, *dst, *plain;

	long pin;

	src = wd_alloc(len);
	dst = wd_alloc(len);
	plain = wd_alloc(len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	ASSERT_NE(NULL, plain);
	/* Filled first, so that registering maps the final pages. */
	wd_fill(src, len, 21, 0);
	memset(dst, 0x5a, len);
	memset(plain, 0x5a, len);
	pin = wd_vmpin_kb();
	ASSERT_LE(0, pin);

	ASSERT_EQ(0, wd_register(self->q.fd, src, len, 0, &hsrc))
		TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, len, WD_REGISTER_WRITE,
				 &hdst)) TH_LOG("%s", strerror(errno));
	EXPECT_LT(0U, hsrc);
	EXPECT_LT(0U, hdst);
	EXPECT_NE(hsrc, hdst);
	wd_status(&self->q, &st);
	EXPECT_EQ(2ULL, st.buffers);
	EXPECT_EQ((uint64_t)(2 * pages), st.mapped_pages);
	EXPECT_EQ(0ULL, st.pinned_pages);
	EXPECT_EQ(pin, wd_vmpin_kb());

	/* Registered only, whole and in parts. */
	d[0] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, src, dst, len, 0);
	d[0].flags = WD_DESC_REGISTERED;
	d[1] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 1, src + 3, NULL, len - 3, 0);
	d[1].flags = WD_DESC_REGISTERED;
	/* Registered, not flagged: found anyway. */
	d[2] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 2, src + len - 1, NULL, 1, 0);
	/* From a registered buffer into plain memory, and back. */
	d[3] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 3, src + 4095, plain + 1,
			 5000, 0);
	d[4] = wd_mkdesc(WD_EDU_OP_DMA_COPY, 4, src + 4092, plain + 8192,
			 1024, 0);
	d[5] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 5, plain + 1, NULL, 5000, 0);
	ASSERT_EQ(0, wd_run(&self->q, d, 4, cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_run(&self->q, d + 4, 2, cqe + 4, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	expect_ok(_metadata, &cqe[0], 0, len);
	EXPECT_EQ(-1, wd_check(dst, len, 21, 0));
	expect_ok(_metadata, &cqe[1], 1, wd_crc32c(0, src + 3, len - 3));
	expect_ok(_metadata, &cqe[2], 2, wd_crc32c(0, src + len - 1, 1));
	expect_ok(_metadata, &cqe[3], 3, 5000);
	EXPECT_EQ(-1, wd_check(plain + 1, 5000, 21, 4095));
	EXPECT_EQ(0x5a, plain[0]);
	EXPECT_EQ(0x5a, plain[5001]);
	expect_ok(_metadata, &cqe[4], 4, 1024);
	EXPECT_EQ(-1, wd_check(plain + 8192, 1024, 21, 4092));
	expect_ok(_metadata, &cqe[5], 5, wd_crc32c(0, src + 4095, 5000));

	/* Per-command pins went before their completions were written. */
	wd_status(&self->q, &st);
	EXPECT_EQ(0ULL, st.pinned_pages);
	EXPECT_EQ((uint64_t)(2 * pages), st.mapped_pages);
	EXPECT_EQ(0ULL, st.invalidations);


	EXPECT_EQ(0, wd_unregister(self->q.fd, hsrc));
	wd_status(&self->q, &st);
	EXPECT_EQ(1ULL, st.buffers);
	EXPECT_EQ((uint64_t)pages, st.mapped_pages);
	EXPECT_EQ(0, wd_unregister(self->q.fd, hdst));
	wd_status(&self->q, &st);
	EXPECT_EQ(0ULL, st.buffers);
	EXPECT_EQ(0ULL, st.mapped_pages);
	EXPECT_EQ(pin, wd_vmpin_kb());

	/* Unregistered, the same memory still works, pinned per command. */
	memset(dst, 0, len);
	d[0].flags = 0;
	ASSERT_EQ(0, wd_run1(&self->q, &d[0], cqe))
		TH_LOG("%s", wd_ring_error());
	expect_ok(_metadata, &cqe[0], 0, len);
	EXPECT_EQ(-1, wd_check(dst, len, 21, 0));
	munmap(src, len);
	munmap(dst, len);
	munmap(plain, len);
}

/*
 * The kernel copies each descriptor once, at KICK: rewriting the slot
 * afterwards changes nothing about the command.
 */
TEST_F_TIMEOUT(ring, descriptor_copied_once, 60)
{
	const size_t len = 16 * MiB;
	struct wd_desc d, *slot;
	struct wd_cqe cqe;
	char *src, *dst, *other;
	uint32_t tail;

	src = wd_alloc(len);
	dst = wd_alloc(len);
	other = wd_alloc(len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	ASSERT_NE(NULL, other);
	wd_fill(src, len, 31, 0);
	memset(other, 0x77, len);

	tail = wd_sq_tail(&self->q);
	d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 42, src, dst, len, 0);
	ASSERT_EQ(1U, wd_sq_push(&self->q, &d, 1));
	ASSERT_EQ(1, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	slot = wd_sq_slot(&self->q, tail);
	slot->dst = (uintptr_t)other;
	slot->len = 1;
	slot->user_data = 43;
	slot->opcode = WD_EDU_OP_NOP;
	ASSERT_EQ(0, wd_reap(&self->q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	expect_ok(_metadata, &cqe, 42, len);
	EXPECT_EQ(-1, wd_check(dst, len, 31, 0));
	EXPECT_EQ(-1, wd_check_byte(other, len, 0x77));
	/* And it is not consumed again. */
	EXPECT_EQ(0, wd_kick(&self->q));
	EXPECT_TRUE(wd_cq_quiet(&self->q, 50));
	munmap(src, len);
	munmap(dst, len);
	munmap(other, len);
}

/*
 * Work for one queue of its own, for the threads and processes below:
 * batches of mixed commands from registered and unregistered buffers.
 * Returns 0, or -1 with the reason in @why.
 */
static int workload(const struct wd_dev *dev, uint32_t seed, char *why,
		    size_t why_len)
{
	const unsigned int batch = 300, rounds = 3;
	struct mix m = {
		.src_len = 128 * KiB, .slot = 1024, .seed = seed,
		.registered = true, .rng = seed,
	};
	struct wd_desc d[300];
	struct wd_cqe cqe[300];
	struct wd_queue_status st;
	uint32_t h1, h2;
	struct wd_queue q;
	unsigned int r, bad;
	int ret = -1;

	if (wd_queue_open(&q, dev, 0)) {
		snprintf(why, why_len, "%s: %s", dev->name, wd_ring_error());
		return -1;
	}
	m.src = wd_alloc(m.src_len);
	m.dst = wd_alloc(batch * m.slot);
	if (!m.src || !m.dst) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	wd_fill(m.src, m.src_len, seed, 0);
	memset(m.dst, 0, batch * m.slot);
	if (wd_register(q.fd, m.src, m.src_len, 0, &h1) ||
	    wd_register(q.fd, m.dst, batch * m.slot, WD_REGISTER_WRITE, &h2)) {
		snprintf(why, why_len, "REGISTER: %s", strerror(errno));
		goto out;
	}
	for (r = 0; r < rounds; r++) {
		mix_make(&m, d, batch);
		if (wd_run(&q, d, batch, cqe, WD_WAIT_MS)) {
			snprintf(why, why_len, "round %u: %s", r,
				 wd_ring_error());
			goto out;
		}
		bad = mix_check(&m, d, cqe, batch, why, why_len);
		if (bad)
			goto out;
	}
	wd_status(&q, &st);
	if (st.submitted != batch * rounds || st.completed != batch * rounds ||
	    st.errors) {
		snprintf(why, why_len, "status: %llu submitted, %llu completed, %llu errors",
			 (unsigned long long)st.submitted,
			 (unsigned long long)st.completed,
			 (unsigned long long)st.errors);
		goto out;
	}
	ret = 0;
out:
	wd_queue_close(&q);
	if (m.src)
		munmap(m.src, m.src_len);
	if (m.dst)
		munmap(m.dst, batch * m.slot);
	return ret;
}

struct worker {
	pthread_t thread;
	const struct wd_dev *dev;
	uint32_t seed;
	int ret;
	char why[256];
};

static void *worker_fn(void *arg)
{
	struct worker *w = arg;

	w->ret = workload(w->dev, w->seed, w->why, sizeof(w->why));
	return NULL;
}

/* Every free queue of every device, each driven by a thread of its own. */
TEST_F_TIMEOUT(ring, queues_threads, 180)
{
	struct worker w[WD_MAX_DEVS * 4];
	int i, k, nw = 0, avail;

	/* The fixture's queue would take one of them. */
	wd_queue_close(&self->q);
	for (i = 0; i < self->n; i++) {
		avail = wd_avail(&self->devs[i]);
		ASSERT_LT(0, avail);
		for (k = 0; k < avail && k < 4; k++, nw++) {
			w[nw].dev = &self->devs[i];
			w[nw].seed = 1000 + nw;
		}
	}
	for (i = 0; i < nw; i++)
		ASSERT_EQ(0, pthread_create(&w[i].thread, NULL, worker_fn,
					    &w[i]));
	for (i = 0; i < nw; i++) {
		ASSERT_EQ(0, pthread_join(w[i].thread, NULL));
		EXPECT_EQ(0, w[i].ret) TH_LOG("queue %d on %s: %s", i,
					      w[i].dev->name, w[i].why);
	}
}

/*
 * Queues in different processes at once: each child opens its own and
 * exits 0 if all its results were right.
 */
TEST_F_TIMEOUT(ring, queues_processes, 180)
{
	pid_t pids[WD_MAX_DEVS * 2];
	int i, k, np = 0, status;
	char why[256];

	wd_queue_close(&self->q);
	for (i = 0; i < self->n; i++) {
		for (k = 0; k < 2; k++, np++) {
			pids[np] = fork();
			ASSERT_LE(0, pids[np]);
			if (pids[np])
				continue;
			if (workload(&self->devs[i], 2000 + np, why,
				     sizeof(why))) {
				fprintf(stderr, "# child %d on %s: %s\n", np,
					self->devs[i].name, why);
				_exit(1);
			}
			_exit(0);
		}
	}
	for (i = 0; i < np; i++) {
		ASSERT_EQ(pids[i], waitpid(pids[i], &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
			TH_LOG("child %d: status %#x", i, status);
	}
}

/* Reads the value of @key from /proc/self/fdinfo/@fd; -1 if absent. */
static long long fdinfo_value(int fd, const char *key, char *str, size_t len)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long long val = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) || line[klen] != ':')
			continue;
		if (str)
			snprintf(str, len, "%s", line + klen + 1 +
				 strspn(line + klen + 1, " \t"));
		val = strtoll(line + klen + 1, NULL, 10);
	}
	fclose(f);
	return val;
}

/*
 * The counters as fdinfo and debugfs show them: the same as the status
 * page's, with the commands in flight and the device's name.
 */
TEST_F(ring, fdinfo_and_debugfs)
{
	struct wd_desc d[3];
	struct wd_cqe cqe[3];
	struct wd_queue_status st;
	char path[128], line[256], name[64], want[128];
	bool found = false;
	FILE *f;
	int i;

	for (i = 0; i < 3; i++)
		d[i] = wd_mkdesc(WD_EDU_OP_NOP, i, NULL, NULL, 0, 0);
	d[2].opcode = 0x7fff;	/* fails: an error completion */
	ASSERT_EQ(0, wd_run(&self->q, d, 3, cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	wd_status(&self->q, &st);

	EXPECT_EQ(3, fdinfo_value(self->q.fd, "wd-submitted", NULL, 0));
	EXPECT_EQ(3, fdinfo_value(self->q.fd, "wd-completed", NULL, 0));
	EXPECT_EQ(1, fdinfo_value(self->q.fd, "wd-errors", NULL, 0));
	EXPECT_EQ(0, fdinfo_value(self->q.fd, "wd-in-flight", NULL, 0));
	EXPECT_EQ((long long)st.queue_index,
		  fdinfo_value(self->q.fd, "wd-queue-index", NULL, 0));
	fdinfo_value(self->q.fd, "wd-state", line, sizeof(line));
	EXPECT_STREQ("started\n", line);
	fdinfo_value(self->q.fd, "wd-device", name, sizeof(name));
	name[strcspn(name, "\n")] = 0;
	EXPECT_STREQ(self->devs[0].name, name);

	snprintf(path, sizeof(path), "/sys/kernel/debug/warpdrive/%s/queues",
		 self->devs[0].name);
	f = fopen(path, "r");
	if (!f)
		SKIP(return, "%s: %s (no debugfs?)", path, strerror(errno));
	/* "index state submitted completed errors in_flight ..." */
	snprintf(want, sizeof(want), "%u started 3 3 1 0 ", st.queue_index);
	while (fgets(line, sizeof(line), f))
		found |= !strncmp(line, want, strlen(want));
	fclose(f);
	EXPECT_TRUE(found) TH_LOG("no line \"%s...\" in %s", want, path);
}

/*
 * The status page tells the truth while commands are in flight: two
 * registered DMA_COPYs (each about 1.5 s on the device) count as
 * submitted the moment KICK accepts them, not at completion, while fdinfo
 * shows both in flight and nothing completed yet.
 */
TEST_F_TIMEOUT(ring, status_while_in_flight, 60)
{
	const size_t len = WD_EDU_DMA_COPY_MAX;
	struct wd_queue_status st;
	struct wd_desc d[2];
	struct wd_cqe cqe[2];
	uint32_t hs, hd;
	char *src, *dst;
	int i;

	src = wd_alloc(len);
	dst = wd_alloc(2 * len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, len, 61, 0);
	memset(dst, 0, 2 * len);
	ASSERT_EQ(0, wd_register(self->q.fd, src, len, 0, &hs));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, 2 * len, WD_REGISTER_WRITE,
				 &hd));
	for (i = 0; i < 2; i++) {
		d[i] = wd_mkdesc(WD_EDU_OP_DMA_COPY, i, src, dst + i * len,
				 len, 0);
		d[i].flags = WD_DESC_REGISTERED;
	}
	ASSERT_EQ(2U, wd_sq_push(&self->q, d, 2));
	ASSERT_EQ(2, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	wd_status(&self->q, &st);
	EXPECT_EQ(2ULL, st.submitted);
	EXPECT_EQ(0ULL, st.completed)
		TH_LOG("a 64 KiB DMA_COPY finished before KICK returned");
	EXPECT_EQ(2, fdinfo_value(self->q.fd, "wd-submitted", NULL, 0));
	EXPECT_EQ(2, fdinfo_value(self->q.fd, "wd-in-flight", NULL, 0));
	EXPECT_EQ(0, fdinfo_value(self->q.fd, "wd-completed", NULL, 0));

	ASSERT_EQ(0, wd_reap(&self->q, cqe, 2, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	for (i = 0; i < 2; i++)
		expect_ok(_metadata, &cqe[i], cqe[i].user_data, len);
	wd_status(&self->q, &st);
	EXPECT_EQ(2ULL, st.submitted);
	EXPECT_EQ(2ULL, st.completed);
	EXPECT_EQ(0, fdinfo_value(self->q.fd, "wd-in-flight", NULL, 0));
	EXPECT_EQ(-1, wd_check(dst, len, 61, 0));
	EXPECT_EQ(-1, wd_check(dst + len, len, 61, 0));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hs));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hd));
}

TEST_HARNESS_MAIN
