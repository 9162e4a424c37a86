// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive and huge pages: registered buffers backed by transparent huge
 * pages and by hugetlbfs register, run commands with their data checked,
 * and survive what mm does to huge pages (a THP split into 4 KiB pages,
 * MADV_COLLAPSE back into a THP, munmap of a hugetlb mapping). Where the
 * buffer is mapped for the device once (not per access, as with swiotlb
 * bouncing), a huge page is not one DMA segment per 4 KiB page: behind an
 * IOMMU the whole buffer is one IOVA range, without one each huge page is
 * contiguous.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <sys/ioctl.h>

#include "wd_ring.h"

#define KiB		1024UL
#define MiB		(1024UL * KiB)
#define HUGE		(2 * MiB)
#define LEN		(4 * MiB)

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE	25
#endif

FIXTURE(huge) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	struct wd_queue q;
	char *raw;		/* the mapping that p is aligned in */
	size_t raw_len;
	char *src;
	long nr_hugepages;	/* to restore, -1 if untouched */
};

FIXTURE_SETUP(huge)
{
	self->nr_hugepages = -1;
	wd_queue_init(&self->q);
	WD_SETUP_EDU_QUEUE(self->devs, self->n, &self->q);
	self->src = wd_alloc(LEN);
	ASSERT_NE(NULL, self->src);
}

FIXTURE_TEARDOWN(huge)
{
	char num[32];

	wd_queue_close(&self->q);
	if (self->raw)
		munmap(self->raw, self->raw_len);
	if (self->nr_hugepages >= 0) {
		snprintf(num, sizeof(num), "%ld", self->nr_hugepages);
		wd_write_file("/proc/sys/vm/nr_hugepages", num);
	}
}

/* kB of AnonHugePages (or @key) in the VMA of /proc/self/smaps at @p. */
static long smaps_kb(const void *p, const char *key)
{
	unsigned long start, end, a = (uintptr_t)p;
	bool in = false;
	char line[256];
	long kb = -1;
	FILE *f;

	f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			if (in)
				break;
			in = a >= start && a < end;
			continue;
		}
		if (in && !strncmp(line, key, strlen(key))) {
			sscanf(line + strlen(key), " %ld", &kb);
			break;
		}
	}
	fclose(f);
	return kb;
}

/*
 * The buffer's line of debugfs "buffers": how many pages are mapped for
 * the device and in how many DMA-contiguous segments, and whether it is
 * mapped once ("persistent") or per access. 0, or -errno.
 */
static int buffer_segments(const struct wd_queue *q, const struct wd_dev *dev,
			   uint32_t handle, long *mapped, long *segments,
			   bool *persistent)
{
	char path[WD_PATH_LEN], line[256], how[32];
	unsigned int qi, h;
	int ret = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/debug/warpdrive/%s/buffers",
		 dev->name);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%u %u %*x %*u %*s %ld %ld %31s", &qi, &h,
			   mapped, segments, how) != 5)
			continue;
		if (qi == wd_read32(&q->st->queue_index) && h == handle) {
			*persistent = !strcmp(how, "persistent");
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* Runs one command and returns its status, its result in *@res. */
static int run(struct __test_metadata *_metadata, struct wd_queue *q,
	       uint16_t op, const void *src, void *dst, size_t len,
	       uint64_t *res)
{
	struct wd_desc d = wd_mkdesc(op, 0, src, dst, len, 0);
	struct wd_cqe cqe;

	/* Only the huge buffer is registered; src of a copy is not. */
	d.flags = op == WD_EDU_OP_EMU_CRC32C ? WD_DESC_REGISTERED : 0;
	EXPECT_EQ(0, wd_run1(q, &d, &cqe)) TH_LOG("%s", wd_ring_error());
	if (res)
		*res = cqe.result;
	return cqe.status;
}

/*
 * The device reads and writes the whole registered buffer @p:
 * CRC-32C of what user space wrote, then a copy of src over it, checked.
 */
static void use_buffer(struct __test_metadata *_metadata,
		       struct _test_data_huge *self, char *p, uint64_t seed)
{
	uint64_t res = 0;

	wd_fill(p, LEN, seed, 0);
	EXPECT_EQ(0, run(_metadata, &self->q, WD_EDU_OP_EMU_CRC32C, p, NULL,
			 LEN, &res));
	EXPECT_EQ(wd_crc32c(0, p, LEN), res);
	wd_fill(self->src, LEN, seed + 1, 0);
	EXPECT_EQ(0, run(_metadata, &self->q, WD_EDU_OP_EMU_MEMCPY, self->src,
			 p, LEN, NULL));
	EXPECT_EQ(-1, wd_check(p, LEN, seed + 1, 0));
}

/*
 * Mapped for the device in fewer segments than 4 KiB pages: at most one
 * per huge page (one in all behind an IOMMU). Not checked where every
 * access maps the pages anew (swiotlb bouncing: nothing stays mapped).
 */
static void check_segments(struct __test_metadata *_metadata,
			   struct _test_data_huge *self, uint32_t h,
			   const char *when)
{
	const char *swiotlb = getenv("WD_SWIOTLB");
	bool bounced = swiotlb && !strcmp(swiotlb, "1");
	long mapped = -1, segments = -1;
	bool persistent = false;

	ASSERT_EQ(0, buffer_segments(&self->q, &self->devs[0], h, &mapped,
				     &segments, &persistent))
		TH_LOG("no line for buffer %u in debugfs \"buffers\"", h);
	ksft_print_msg("huge pages, %s: %ld pages mapped in %ld segments (%s)\n",
		       when, mapped, segments,
		       persistent ? "persistent" : "per-access");
	/* Bounced DMA cannot stay mapped; direct or IOMMU DMA stays. */
	EXPECT_EQ(!bounced, persistent)
		TH_LOG("%s: %s mappings with swiotlb=%s", when,
		       persistent ? "persistent" : "per-access",
		       bounced ? "force" : "off");
	if (!persistent)
		return;
	EXPECT_EQ((long)(LEN / wd_page_size()), mapped);
	EXPECT_LE(1, segments);
	EXPECT_GE((long)(LEN / HUGE), segments)
		TH_LOG("%s: %ld segments for %ld pages", when, segments,
		       mapped);
	if (getenv("WD_EXPECT_IOMMU") &&
	    !strcmp(getenv("WD_EXPECT_IOMMU"), "1"))
		EXPECT_EQ(1, segments) TH_LOG("%s: one IOVA range expected",
					      when);
}

/* @len bytes aligned to a huge page, in the fixture's mapping. */
static char *map_aligned(struct _test_data_huge *self, size_t len)
{
	uintptr_t a;

	self->raw_len = len + HUGE;
	self->raw = mmap(NULL, self->raw_len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (self->raw == MAP_FAILED) {
		self->raw = NULL;
		return NULL;
	}
	a = ((uintptr_t)self->raw + HUGE - 1) & ~(HUGE - 1);
	return (char *)a;
}

/* Splits the THPs of [p, p + len) (debugfs split_huge_pages). */
static int split_thp(const void *p, size_t len)
{
	char arg[128];

	snprintf(arg, sizeof(arg), "%d,%#lx,%#lx", getpid(), (uintptr_t)p,
		 (uintptr_t)p + len);
	return wd_write_file("/sys/kernel/debug/split_huge_pages", arg);
}

/*
 * A buffer of two THPs: used by the device, split into 4 KiB pages under
 * it, used again, collapsed back into THPs, used again. Each change takes
 * the old pages from the device (an invalidation) and the next command
 * finds the new ones.
 */
TEST_F_TIMEOUT(huge, thp_split_collapse, 120)
{
	uint64_t inv;
	uint32_t h;
	char *p;
	int i, ret;

	p = map_aligned(self, LEN);
	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, madvise(p, LEN, MADV_HUGEPAGE)) TH_LOG("%s",
							    strerror(errno));
	memset(p, 1, LEN);
	ASSERT_EQ((long)(LEN / KiB), smaps_kb(p, "AnonHugePages:"))
		TH_LOG("no THP behind the buffer (transparent_hugepage?)");
	ASSERT_EQ(0, wd_register(self->q.fd, p, LEN, WD_REGISTER_WRITE, &h))
		TH_LOG("%s", strerror(errno));
	use_buffer(_metadata, self, p, 0x7401);
	check_segments(_metadata, self, h, "THP");

	/*
	 * A split keeps the same physical pages behind the buffer, so the
	 * device's mapping may stay; what matters is that it stays right.
	 */
	inv = wd_read64(&self->q.st->invalidations);
	ASSERT_EQ(0, split_thp(p, LEN)) TH_LOG("split_huge_pages");
	EXPECT_EQ(0, smaps_kb(p, "AnonHugePages:"));
	ksft_print_msg("huge pages: the split invalidated %llu times\n",
		       (unsigned long long)(wd_read64(&self->q.st->invalidations) -
					    inv));
	use_buffer(_metadata, self, p, 0x7402);

	inv = wd_read64(&self->q.st->invalidations);
	for (i = 0, ret = -1; i < 10 && ret; i++) {
		ret = madvise(p, LEN, MADV_COLLAPSE);
		if (ret && errno != EAGAIN)
			break;
	}
	ASSERT_EQ(0, ret) TH_LOG("MADV_COLLAPSE: %s", strerror(errno));
	EXPECT_EQ((long)(LEN / KiB), smaps_kb(p, "AnonHugePages:"));
	EXPECT_LT(inv, wd_read64(&self->q.st->invalidations));
	/* What the device wrote last survived the collapse. */
	EXPECT_EQ(-1, wd_check(p, LEN, 0x7403, 0));
	use_buffer(_metadata, self, p, 0x7404);
	check_segments(_metadata, self, h, "THP after collapse");
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
}

/*
 * A buffer of two hugetlb pages: registered, used, mapped in few
 * segments; then munmap() while registered takes the pages from the
 * device, and the next command on it fails with EFAULT.
 */
TEST_F_TIMEOUT(huge, hugetlb, 120)
{
	char num[32];
	uint32_t h;
	uint64_t res;
	long nr = -1;
	char *p;

	ASSERT_LE(0, wd_read_file("/proc/sys/vm/nr_hugepages", num,
				  sizeof(num)));
	ASSERT_EQ(0, wd_parse_long(num, &nr));
	self->nr_hugepages = nr;
	snprintf(num, sizeof(num), "%ld", nr + LEN / HUGE);
	ASSERT_EQ(0, wd_write_file("/proc/sys/vm/nr_hugepages", num));
	p = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("MAP_HUGETLB: %s", strerror(errno));
	memset(p, 2, LEN);
	ASSERT_EQ((long)(LEN / KiB), smaps_kb(p, "Private_Hugetlb:"))
		TH_LOG("the mapping is not backed by hugetlb pages");
	ASSERT_EQ(0, wd_register(self->q.fd, p, LEN, WD_REGISTER_WRITE, &h))
		TH_LOG("%s", strerror(errno));
	use_buffer(_metadata, self, p, 0x7501);
	check_segments(_metadata, self, h, "hugetlb");

	ASSERT_EQ(0, munmap(p, LEN));
	EXPECT_EQ(0ULL, wd_read64(&self->q.st->mapped_pages));
	EXPECT_EQ(-EFAULT, run(_metadata, &self->q, WD_EDU_OP_EMU_CRC32C, p,
			       NULL, LEN, &res));
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
}

TEST_HARNESS_MAIN
