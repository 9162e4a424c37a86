// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive shadow ring, what must fail: one test per way a descriptor can
 * be wrong, each checking the documented completion status, that nothing
 * was written, that the status page counted one error, and that the queue
 * still works; then corrupt ring indices, which KICK refuses without
 * consuming anything.
 */
#include "kselftest_harness.h"

#include <sys/ioctl.h>

#include "wd_ring.h"

#define BUF_LEN		(64 * 1024UL)
#define CANARY		0xc3
#define SEED		0x5eed

FIXTURE(bad_ring) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	struct wd_queue q;
	size_t page;
	char *src;	/* pattern, must stay the pattern */
	char *dst;	/* canary, must stay the canary */
	uint64_t ud;
};

FIXTURE_SETUP(bad_ring)
{
	wd_queue_init(&self->q);
	self->page = wd_page_size();
	WD_SETUP_EDU_QUEUE(self->devs, self->n, &self->q);
	self->src = wd_alloc(BUF_LEN);
	self->dst = wd_alloc(BUF_LEN);
	ASSERT_NE(NULL, self->src);
	ASSERT_NE(NULL, self->dst);
	wd_fill(self->src, BUF_LEN, SEED, 0);
	memset(self->dst, CANARY, BUF_LEN);
}

FIXTURE_TEARDOWN(bad_ring)
{
	if (self->src)
		munmap(self->src, BUF_LEN);
	if (self->dst)
		munmap(self->dst, BUF_LEN);
	wd_queue_close(&self->q);
}

/*
 * Runs @d alone and expects it to complete with @status, having counted as
 * one error and touched neither buffer.
 */
static void run_bad_any(struct __test_metadata *_metadata,
			struct _test_data_bad_ring *self, struct wd_desc d,
			int status, int alt, const char *what)
{
	struct wd_queue_status before, after;
	struct wd_cqe cqe;

	d.user_data = 0xbad0000000000000ULL | ++self->ud;
	wd_status(&self->q, &before);
	ASSERT_EQ(0, wd_run1(&self->q, &d, &cqe))
		TH_LOG("%s: %s", what, wd_ring_error());
	EXPECT_TRUE(cqe.status == status || cqe.status == alt)
		TH_LOG("%s: status %d (%s), expected %d (%s)", what,
		       cqe.status, strerror(-cqe.status), status,
		       strerror(-status));
	EXPECT_EQ(d.user_data, cqe.user_data);
	EXPECT_EQ(0U, cqe.flags);
	wd_status(&self->q, &after);
	EXPECT_EQ(before.submitted + 1, after.submitted) TH_LOG("%s", what);
	EXPECT_EQ(before.completed + 1, after.completed) TH_LOG("%s", what);
	EXPECT_EQ(before.errors + 1, after.errors) TH_LOG("%s", what);
	EXPECT_EQ(before.bytes, after.bytes) TH_LOG("%s", what);
	EXPECT_EQ(-1, wd_check_byte(self->dst, BUF_LEN, CANARY))
		TH_LOG("%s: wrote to dst", what);
	EXPECT_EQ(-1, wd_check(self->src, BUF_LEN, SEED, 0))
		TH_LOG("%s: wrote to src", what);
}

static void run_bad(struct __test_metadata *_metadata,
		    struct _test_data_bad_ring *self, struct wd_desc d,
		    int status, const char *what)
{
	run_bad_any(_metadata, self, d, status, status, what);
}

/* A command that must work: the queue survived whatever came before. */
static void still_works(struct __test_metadata *_metadata,
			struct _test_data_bad_ring *self)
{
	struct wd_desc d[2];
	struct wd_cqe cqe[2];
	char *out;

	out = wd_alloc(BUF_LEN);
	ASSERT_NE(NULL, out);
	d[0] = wd_mkdesc(WD_EDU_OP_NOP, 0, NULL, NULL, 0, 0);
	d[1] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 1, self->src + 1, out + 3,
			 BUF_LEN - 4, 0);
	ASSERT_EQ(0, wd_run(&self->q, d, 2, cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(0, cqe[0].status);
	EXPECT_EQ(0, cqe[1].status);
	EXPECT_EQ(BUF_LEN - 4, cqe[1].result);
	EXPECT_EQ(-1, wd_check(out + 3, BUF_LEN - 4, SEED, 1));
	munmap(out, BUF_LEN);
}

static struct wd_desc nop(void)
{
	return wd_mkdesc(WD_EDU_OP_NOP, 0, NULL, NULL, 0, 0);
}

static struct wd_desc copy(struct _test_data_bad_ring *self, size_t len)
{
	return wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, self->src, self->dst, len, 0);
}

TEST_F(bad_ring, unknown_opcode)
{
	static const uint16_t ops[] = { 0, 6, 7, 0x100, 0x8001, 0xffff };
	struct wd_desc d;
	char what[32];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ops); i++) {
		d = nop();
		d.opcode = ops[i];
		snprintf(what, sizeof(what), "opcode %#x", ops[i]);
		run_bad(_metadata, self, d, -EOPNOTSUPP, what);
	}
	/* With operands, as if it were a copy. */
	d = copy(self, 64);
	d.opcode = 6;
	run_bad(_metadata, self, d, -EOPNOTSUPP, "opcode 6 with operands");
	still_works(_metadata, self);
}

TEST_F(bad_ring, unknown_flags)
{
	static const uint16_t flags[] = { 1U << 1, 1U << 2, 1U << 15, 0xfffe };
	struct wd_desc d;
	char what[32];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(flags); i++) {
		d = copy(self, 64);
		d.flags = flags[i];
		snprintf(what, sizeof(what), "copy, flags %#x", flags[i]);
		run_bad(_metadata, self, d, -EINVAL, what);
		d = nop();
		d.flags = flags[i];
		snprintf(what, sizeof(what), "nop, flags %#x", flags[i]);
		run_bad(_metadata, self, d, -EINVAL, what);
	}
	still_works(_metadata, self);
}

TEST_F(bad_ring, reserved_fields)
{
	struct wd_desc d;

	d = copy(self, 64);
	d.rsvd0 = 1;
	run_bad(_metadata, self, d, -EINVAL, "rsvd0");
	d = copy(self, 64);
	d.rsvd1[0] = 1ULL << 63;
	run_bad(_metadata, self, d, -EINVAL, "rsvd1[0]");
	d = copy(self, 64);
	d.rsvd1[1] = 1;
	run_bad(_metadata, self, d, -EINVAL, "rsvd1[1]");
	d = nop();
	d.rsvd0 = 0x80000000U;
	run_bad(_metadata, self, d, -EINVAL, "nop rsvd0");
	d = nop();
	d.rsvd1[1] = ~0ULL;
	run_bad(_metadata, self, d, -EINVAL, "nop rsvd1[1]");
	still_works(_metadata, self);
}

/* An address or length the opcode does not use must be 0. */
TEST_F(bad_ring, unused_operands)
{
	struct wd_desc d;

	d = nop();
	d.src = (uintptr_t)self->src;
	run_bad(_metadata, self, d, -EINVAL, "nop src");
	d = nop();
	d.dst = (uintptr_t)self->dst;
	run_bad(_metadata, self, d, -EINVAL, "nop dst");
	d = nop();
	d.len = 4;
	run_bad(_metadata, self, d, -EINVAL, "nop len");

	d = wd_mkdesc(WD_EDU_OP_FACTORIAL, 0, self->src, NULL, 0, 5);
	run_bad(_metadata, self, d, -EINVAL, "factorial src");
	d = wd_mkdesc(WD_EDU_OP_FACTORIAL, 0, NULL, self->dst, 0, 5);
	run_bad(_metadata, self, d, -EINVAL, "factorial dst");
	d = wd_mkdesc(WD_EDU_OP_FACTORIAL, 0, NULL, NULL, 8, 5);
	run_bad(_metadata, self, d, -EINVAL, "factorial len");
	d = wd_mkdesc(WD_EDU_OP_FACTORIAL, 0, self->src, self->dst, 64, 5);
	run_bad(_metadata, self, d, -EINVAL, "factorial src, dst, len");

	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, self->src, self->dst, 64, 0);
	run_bad(_metadata, self, d, -EINVAL, "crc32c dst");
	still_works(_metadata, self);
}

TEST_F(bad_ring, zero_length)
{
	struct wd_desc d;

	run_bad(_metadata, self, copy(self, 0), -EINVAL, "memcpy len 0");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, self->src, NULL, 0, 0);
	run_bad(_metadata, self, d, -EINVAL, "crc32c len 0");
	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, self->src, self->dst, 0, 0);
	run_bad(_metadata, self, d, -EINVAL, "dma_copy len 0");
	still_works(_metadata, self);
}

/*
 * Longer than the opcode allows. The buffers are mapped (never touched,
 * so they cost nothing) for the whole length, so that the length is the
 * only thing wrong.
 */
TEST_F(bad_ring, length_above_max)
{
	const size_t big = WD_EDU_BULK_MAX + self->page;
	struct wd_desc d;
	char *a, *b;

	a = mmap(NULL, big, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	b = mmap(NULL, big, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, a);
	ASSERT_NE(MAP_FAILED, b);

	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, a, b, WD_EDU_DMA_COPY_MAX + 4, 0);
	run_bad(_metadata, self, d, -EINVAL, "dma_copy 64 KiB + 4");
	d.len = 2ULL * WD_EDU_DMA_COPY_MAX;
	run_bad(_metadata, self, d, -EINVAL, "dma_copy 128 KiB");
	d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, a, b, WD_EDU_BULK_MAX + 1ULL, 0);
	run_bad(_metadata, self, d, -EINVAL, "memcpy 256 MiB + 1");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, a, NULL, WD_EDU_BULK_MAX + 1ULL,
		      0);
	run_bad(_metadata, self, d, -EINVAL, "crc32c 256 MiB + 1");
	/*
	 * Huge lengths must not be truncated to a small one. These run past
	 * the mappings as well, so EFAULT is a fine answer too: success is
	 * not.
	 */
	d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, a, b, (1ULL << 32) + 16, 0);
	run_bad_any(_metadata, self, d, -EINVAL, -EFAULT, "memcpy 4 GiB + 16");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, a, NULL, 1ULL << 63, 0);
	run_bad_any(_metadata, self, d, -EINVAL, -EFAULT, "crc32c 2^63");
	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, a, b, (1ULL << 32) + 16, 0);
	run_bad_any(_metadata, self, d, -EINVAL, -EFAULT,
		    "dma_copy 4 GiB + 16");
	munmap(a, big);
	munmap(b, big);
	still_works(_metadata, self);
}

/* The DMA engine moves 32-bit words: address and length multiples of 4. */
TEST_F(bad_ring, dma_copy_misaligned)
{
	static const struct {
		size_t src_off, dst_off, len;
	} cases[] = {
		{ 1, 0, 64 }, { 2, 0, 64 }, { 0, 3, 64 }, { 0, 2, 64 },
		{ 0, 0, 63 }, { 0, 0, 6 }, { 0, 0, 1 }, { 1, 1, 3 },
	};
	struct wd_desc d;
	char what[64];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0,
			      self->src + cases[i].src_off,
			      self->dst + cases[i].dst_off, cases[i].len, 0);
		snprintf(what, sizeof(what), "dma_copy %zu -> %zu, %zu bytes",
			 cases[i].src_off, cases[i].dst_off, cases[i].len);
		run_bad(_metadata, self, d, -EINVAL, what);
	}
	still_works(_metadata, self);
}

/* Ranges that wrap around the end of the address space. */
TEST_F(bad_ring, wraparound)
{
	struct wd_desc d;

	d = copy(self, 64);
	d.src = ~0ULL - 4095;
	d.len = 8192;
	run_bad(_metadata, self, d, -EFAULT, "src wraps");
	d = copy(self, 64);
	d.dst = ~0ULL - 3;
	d.len = 8;
	run_bad(_metadata, self, d, -EFAULT, "dst wraps");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, NULL, NULL, 4096, 0);
	d.src = ~0ULL;
	run_bad(_metadata, self, d, -EFAULT, "crc32c src wraps");
	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, self->src, NULL, 64, 0);
	d.dst = ~0ULL - 31;
	run_bad(_metadata, self, d, -EFAULT, "dma_copy dst wraps");
	still_works(_metadata, self);
}

/* Kernel and non-canonical addresses are no user memory. */
TEST_F(bad_ring, not_user_memory)
{
	static const uint64_t addrs[] = {
		WD_KERNEL_ADDR, 0xffffffff81000000ULL, WD_NONCANON_ADDR,
		0x0000800000000000ULL,		/* just above user space */
		0x00007ffffffff000ULL,		/* runs past its end */
	};
	struct wd_desc d;
	char what[64];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(addrs); i++) {
		d = copy(self, 8192);
		d.src = addrs[i];
		snprintf(what, sizeof(what), "memcpy src %#llx",
			 (unsigned long long)addrs[i]);
		run_bad(_metadata, self, d, -EFAULT, what);
		d = copy(self, 8192);
		d.dst = addrs[i];
		snprintf(what, sizeof(what), "memcpy dst %#llx",
			 (unsigned long long)addrs[i]);
		run_bad(_metadata, self, d, -EFAULT, what);
		d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, NULL, NULL, 8192, 0);
		d.src = addrs[i];
		snprintf(what, sizeof(what), "crc32c src %#llx",
			 (unsigned long long)addrs[i]);
		run_bad(_metadata, self, d, -EFAULT, what);
		d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, self->src, NULL, 4096, 0);
		d.dst = addrs[i];
		snprintf(what, sizeof(what), "dma_copy dst %#llx",
			 (unsigned long long)addrs[i]);
		run_bad(_metadata, self, d, -EFAULT, what);
	}
	still_works(_metadata, self);
}

/*
 * Unmapped memory, wholly or in part. Where part of dst is mapped, the
 * part that is must not be written either: the command never ran.
 */
TEST_F(bad_ring, unmapped)
{
	size_t page = self->page;
	struct wd_desc d;
	char *m;

	/* Two pages, the second unmapped. */
	m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, munmap(m + page, page));
	memset(m, CANARY, page);

	d = copy(self, 64);
	d.src = (uintptr_t)(m + page);
	run_bad(_metadata, self, d, -EFAULT, "src unmapped");
	d = copy(self, 64);
	d.dst = (uintptr_t)(m + page);
	run_bad(_metadata, self, d, -EFAULT, "dst unmapped");
	d = copy(self, 64);
	d.src = (uintptr_t)(m + page - 16);
	run_bad(_metadata, self, d, -EFAULT, "src runs into a hole");
	d = copy(self, 64);
	d.dst = (uintptr_t)(m + page - 16);
	run_bad(_metadata, self, d, -EFAULT, "dst runs into a hole");
	EXPECT_EQ(-1, wd_check_byte(m, page, CANARY));
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, m + page - 4, NULL, 8, 0);
	run_bad(_metadata, self, d, -EFAULT, "crc32c runs into a hole");
	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, self->src, m + page - 8, 64, 0);
	run_bad(_metadata, self, d, -EFAULT, "dma_copy dst runs into a hole");
	EXPECT_EQ(-1, wd_check_byte(m, page, CANARY));
	d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, NULL, self->dst, 64, 0);
	run_bad(_metadata, self, d, -EFAULT, "src NULL");
	munmap(m, page);
	still_works(_metadata, self);
}

/* Mapped, but not with the access the command needs. */
TEST_F(bad_ring, no_access)
{
	size_t page = self->page;
	struct wd_desc d;
	struct wd_cqe cqe;
	char *ro, *none;

	ro = mmap(NULL, page, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, ro);
	memset(ro, CANARY, page);
	ASSERT_EQ(0, mprotect(ro, page, PROT_READ));
	none = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, none);

	d = copy(self, 64);
	d.dst = (uintptr_t)ro;
	run_bad(_metadata, self, d, -EFAULT, "memcpy into PROT_READ");
	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, self->src, ro, 64, 0);
	run_bad(_metadata, self, d, -EFAULT, "dma_copy into PROT_READ");
	EXPECT_EQ(-1, wd_check_byte(ro, page, CANARY));
	d = copy(self, 64);
	d.src = (uintptr_t)none;
	run_bad(_metadata, self, d, -EFAULT, "memcpy from PROT_NONE");
	d = copy(self, 64);
	d.dst = (uintptr_t)none;
	run_bad(_metadata, self, d, -EFAULT, "memcpy into PROT_NONE");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, none, NULL, 64, 0);
	run_bad(_metadata, self, d, -EFAULT, "crc32c of PROT_NONE");
	/* Reading a read-only mapping is fine. */
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 1, ro, NULL, page, 0);
	ASSERT_EQ(0, wd_run1(&self->q, &d, &cqe)) TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(0, cqe.status);
	EXPECT_EQ(wd_crc32c(0, ro, page), cqe.result);
	munmap(ro, page);
	munmap(none, page);
	still_works(_metadata, self);
}

/*
 * A buffer registered read-only is never written by the device: a
 * command with dst in it fails with EACCES, whether or not it asks for
 * registered buffers only, though the memory itself is writable.
 */
TEST_F(bad_ring, dst_registered_read_only)
{
	struct wd_desc d;
	struct wd_cqe cqe;
	uint32_t h, hs;

	ASSERT_EQ(0, wd_register(self->q.fd, self->dst, BUF_LEN, 0, &h))
		TH_LOG("%s", strerror(errno));
	/* src registered too, so that only dst is wrong. */
	ASSERT_EQ(0, wd_register(self->q.fd, self->src, BUF_LEN, 0, &hs))
		TH_LOG("%s", strerror(errno));
	d = copy(self, 64);
	d.flags = WD_DESC_REGISTERED;
	run_bad(_metadata, self, d, -EACCES, "memcpy, registered only");
	d = copy(self, 64);
	d.dst += 4096;
	run_bad(_metadata, self, d, -EACCES, "memcpy, any buffer");
	d = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, self->src, self->dst + 64, 64, 0);
	run_bad(_metadata, self, d, -EACCES, "dma_copy");
	/* As a source it is fine. */
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 1, self->dst, NULL, BUF_LEN, 0);
	d.flags = WD_DESC_REGISTERED;
	ASSERT_EQ(0, wd_run1(&self->q, &d, &cqe)) TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(0, cqe.status);
	EXPECT_EQ(wd_crc32c(0, self->dst, BUF_LEN), cqe.result);
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hs));
	still_works(_metadata, self);
}

/* WD_DESC_REGISTERED: every address wholly inside a registered buffer. */
TEST_F(bad_ring, registered_only)
{
	uint32_t h;
	struct wd_desc d;

	/* Nothing registered at all. */
	d = copy(self, 64);
	d.flags = WD_DESC_REGISTERED;
	run_bad(_metadata, self, d, -ENOENT, "nothing registered");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, self->src, NULL, 64, 0);
	d.flags = WD_DESC_REGISTERED;
	run_bad(_metadata, self, d, -ENOENT, "crc32c, nothing registered");

	/* Only the first half of src registered, dst not at all. */
	ASSERT_EQ(0, wd_register(self->q.fd, self->src, BUF_LEN / 2, 0, &h))
		TH_LOG("%s", strerror(errno));
	d = copy(self, 64);
	d.flags = WD_DESC_REGISTERED;
	run_bad(_metadata, self, d, -ENOENT, "dst not registered");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, self->src + BUF_LEN / 2 - 8,
		      NULL, 16, 0);
	d.flags = WD_DESC_REGISTERED;
	run_bad(_metadata, self, d, -ENOENT, "src runs past the buffer");
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, self->src + BUF_LEN / 2, NULL,
		      16, 0);
	d.flags = WD_DESC_REGISTERED;
	run_bad(_metadata, self, d, -ENOENT, "src just past the buffer");
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));

	/* Unregistered again: back to ENOENT. */
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, self->src, NULL, 16, 0);
	d.flags = WD_DESC_REGISTERED;
	run_bad(_metadata, self, d, -ENOENT, "after UNREGISTER");
	still_works(_metadata, self);
}

/*
 * Bad descriptors among good ones: each completes on its own, with its
 * own status; the good ones are not affected.
 */
TEST_F(bad_ring, mixed_batch)
{
	struct wd_queue_status before, after;
	struct wd_desc d[6];
	struct wd_cqe cqe[6];
	char *out;
	int i;

	out = wd_alloc(BUF_LEN);
	ASSERT_NE(NULL, out);
	d[0] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, self->src, out, 1000, 0);
	d[1] = wd_mkdesc(0x77, 1, NULL, NULL, 0, 0);
	d[2] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 2, self->src, NULL, 1000, 0);
	d[3] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 3, self->src, NULL, 64, 0);
	d[3].dst = WD_KERNEL_ADDR;
	d[4] = wd_mkdesc(WD_EDU_OP_FACTORIAL, 4, NULL, NULL, 0, 10);
	d[5] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 5, self->src, out + 2000, 0, 0);
	wd_status(&self->q, &before);
	ASSERT_EQ(0, wd_run(&self->q, d, 6, cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	for (i = 0; i < 6; i++)
		EXPECT_EQ((uint64_t)i, cqe[i].user_data);
	EXPECT_EQ(0, cqe[0].status);
	EXPECT_EQ(1000ULL, cqe[0].result);
	EXPECT_EQ(-1, wd_check(out, 1000, SEED, 0));
	EXPECT_EQ(-EOPNOTSUPP, cqe[1].status);
	EXPECT_EQ(0, cqe[2].status);
	EXPECT_EQ(wd_crc32c(0, self->src, 1000), cqe[2].result);
	EXPECT_EQ(-EFAULT, cqe[3].status);
	EXPECT_EQ(0, cqe[4].status);
	EXPECT_EQ(3628800ULL, cqe[4].result);
	EXPECT_EQ(-EINVAL, cqe[5].status);
	EXPECT_EQ(-1, wd_check_byte(out + 1000, BUF_LEN - 1000, 0));
	wd_status(&self->q, &after);
	EXPECT_EQ(before.submitted + 6, after.submitted);
	EXPECT_EQ(before.completed + 6, after.completed);
	EXPECT_EQ(before.errors + 3, after.errors);
	EXPECT_EQ(before.bytes + 2000, after.bytes);
	munmap(out, BUF_LEN);
}

/*
 * Expects KICK to refuse the ring as it is (EINVAL) and to leave
 * everything as it was: no descriptor consumed, no completion, no count.
 */
static void kick_refused(struct __test_metadata *_metadata,
			 struct _test_data_bad_ring *self, const char *what)
{
	struct wd_queue_status before, after;
	uint32_t sq_head = wd_sq_head(&self->q);
	uint32_t cq_tail = wd_cq_tail(&self->q);

	wd_status(&self->q, &before);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->q.fd, WD_IOCTL_KICK)) TH_LOG("%s", what);
	EXPECT_EQ(EINVAL, errno) TH_LOG("%s: %s", what, strerror(errno));
	EXPECT_EQ(sq_head, wd_sq_head(&self->q)) TH_LOG("%s", what);
	/* Completions would be written at once for bad descriptors. */
	usleep(100 * 1000);
	EXPECT_EQ(cq_tail, wd_cq_tail(&self->q)) TH_LOG("%s", what);
	wd_status(&self->q, &after);
	EXPECT_EQ(before.submitted, after.submitted) TH_LOG("%s", what);
	EXPECT_EQ(before.completed, after.completed) TH_LOG("%s", what);
}

/* Publishes @n NOPs without kicking; their user_data counts from @ud. */
static void publish_nops(struct __test_metadata *_metadata,
			 struct wd_queue *q, unsigned int n, uint64_t ud)
{
	struct wd_desc d;
	unsigned int i;

	for (i = 0; i < n; i++) {
		d = wd_mkdesc(WD_EDU_OP_NOP, ud + i, NULL, NULL, 0, 0);
		ASSERT_EQ(1U, wd_sq_push(q, &d, 1));
	}
}

/* sq_tail more than sq_entries ahead of sq_head, or behind it. */
TEST_F(bad_ring, corrupt_sq_tail)
{
	const uint32_t sqn = self->q.sq_entries;
	uint32_t head, i;
	struct wd_cqe cqe[2];

	/* Move the indices off zero first. */
	still_works(_metadata, self);
	head = wd_sq_head(&self->q);
	ASSERT_EQ(head, wd_sq_tail(&self->q));
	/* Every slot holds a valid NOP, so only the index is wrong. */
	for (i = 0; i < sqn; i++)
		*wd_sq_slot(&self->q, i) = wd_mkdesc(WD_EDU_OP_NOP, 1000 + i,
						     NULL, NULL, 0, 0);

	wd_set_sq_tail(&self->q, head + sqn + 1);
	kick_refused(_metadata, self, "sq_tail = sq_head + sq_entries + 1");
	wd_set_sq_tail(&self->q, head + 0x80000000U);
	kick_refused(_metadata, self, "sq_tail = sq_head + 2^31");
	wd_set_sq_tail(&self->q, head - 1);
	kick_refused(_metadata, self, "sq_tail = sq_head - 1");

	/* A full ring is not corrupt: all of it is consumed. */
	wd_set_sq_tail(&self->q, head + sqn);
	ASSERT_EQ((int)sqn, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	for (i = 0; i < sqn; i += 2)
		ASSERT_EQ(0, wd_reap(&self->q, cqe, 2, WD_WAIT_MS))
			TH_LOG("%s", wd_ring_error());
	still_works(_metadata, self);
}

/* cq_head ahead of cq_tail, or more than cq_entries behind it. */
TEST_F(bad_ring, corrupt_cq_head)
{
	const uint32_t cqn = self->q.cq_entries;
	struct wd_desc d = nop();
	struct wd_cqe cqe;
	uint32_t tail;

	still_works(_metadata, self);
	tail = wd_cq_tail(&self->q);
	ASSERT_EQ(tail, wd_cq_head(&self->q));
	publish_nops(_metadata, &self->q, 1, 77);

	wd_set_cq_head(&self->q, tail + 1);
	kick_refused(_metadata, self, "cq_head = cq_tail + 1");
	wd_set_cq_head(&self->q, tail - cqn - 1);
	kick_refused(_metadata, self, "cq_head = cq_tail - cq_entries - 1");
	wd_set_cq_head(&self->q, tail + 0x80000000U);
	kick_refused(_metadata, self, "cq_head = cq_tail + 2^31");

	/*
	 * Exactly cq_entries behind is not corrupt: a full completion ring,
	 * with no room, so KICK takes nothing.
	 */
	wd_set_cq_head(&self->q, tail - cqn);
	EXPECT_EQ(0, ioctl(self->q.fd, WD_IOCTL_KICK)) TH_LOG("%s",
							       strerror(errno));
	EXPECT_EQ(1U, wd_sq_pending(&self->q));

	/* Put right, the NOP goes through. */
	wd_set_cq_head(&self->q, tail);
	ASSERT_EQ(1, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_reap(&self->q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(77ULL, cqe.user_data);
	EXPECT_EQ(0, cqe.status);
	d.user_data = 78;
	ASSERT_EQ(0, wd_run1(&self->q, &d, &cqe)) TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(78ULL, cqe.user_data);
	still_works(_metadata, self);
}

/*
 * sq_head and cq_tail are the kernel's to write: it keeps its own copies
 * and never reads them back, so scribbling on them changes nothing, and
 * the kernel puts them right the next time it moves them.
 */
TEST_F(bad_ring, kernel_indices_ignored)
{
	struct pollfd pfd = { .fd = self->q.fd, .events = POLLIN };
	uint32_t sq_head, cq_tail;
	struct wd_cqe cqe;

	still_works(_metadata, self);
	sq_head = wd_sq_head(&self->q);
	cq_tail = wd_cq_tail(&self->q);
	publish_nops(_metadata, &self->q, 1, 55);
	wd_write32(&self->q.hdr->sq_head, sq_head + 1000);
	wd_write32(&self->q.hdr->cq_tail, cq_tail - 7);

	ASSERT_EQ(1, ioctl(self->q.fd, WD_IOCTL_KICK)) TH_LOG("%s",
							      strerror(errno));
	EXPECT_EQ(sq_head + 1, wd_sq_head(&self->q));
	ASSERT_EQ(1, poll(&pfd, 1, WD_WAIT_MS));
	EXPECT_EQ(cq_tail + 1, wd_cq_tail(&self->q));
	ASSERT_EQ(1U, wd_cq_pop(&self->q, &cqe, 1));
	EXPECT_EQ(55ULL, cqe.user_data);
	EXPECT_EQ(0, cqe.status);
	still_works(_metadata, self);
}

TEST_HARNESS_MAIN
