// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive under allocation failures. open() (with START_Q), mmap() of
 * both regions, WD_IOCTL_REGISTER, WD_IOCTL_KICK, and close() of a queue
 * with work pending are driven through every allocation they make, failing
 * each in turn, the way syzkaller does:
 * /proc/thread-self/fail-nth set to n makes the n-th allocation that this
 * thread's next system calls attempt fail (failslab and fail_page_alloc,
 * configured here so that they may fail any allocation), and reads 0
 * afterwards if it did. n goes 1, 2, 3, ... until an operation completes
 * with nothing failed: then every allocation it makes has failed once.
 *
 * Each failure must reach user space as an error (an errno, or the status
 * of the one command it hit), or, where the allocation has a fallback, the
 * operation must succeed completely. Either way nothing stays pinned (VmPin),
 * taken (available_instances), registered, mapped or in flight, and the next
 * identical call succeeds. The memory a failure path leaks is kmemleak's to
 * find: the guest scans after the tests on the debug kernel.
 *
 * Only this thread's system calls see the faults: what the edu driver's
 * workers allocate to run the commands never fails here.
 *
 * Runs on a kernel with CONFIG_FAULT_INJECTION, CONFIG_FAILSLAB,
 * CONFIG_FAIL_PAGE_ALLOC and CONFIG_FAULT_INJECTION_DEBUG_FS (the debug
 * profile); elsewhere it skips.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "wd_ring.h"

#define FAIL_NTH	"/proc/thread-self/fail-nth"
#define DEBUGFS		"/sys/kernel/debug"

/* No operation here makes anywhere near this many allocations. */
#define MAX_NTH		2000U

/* Successes despite a fault that are logged one by one, per operation. */
#define MAX_LOGGED	10

/*
 * The fault injection settings, and what they must be for the allocations
 * warpdrive makes to fail: the defaults skip every allocation that may
 * sleep (ignore-gfp-wait), so every GFP_KERNEL one, and page allocations
 * of order 0. verbose=0, because verbose=2 (the default) dumps a stack
 * trace for each fault, and a "Call Trace" in the kernel log fails the run.
 * The probability stays 0: only fail-nth injects. Each injected fault
 * counts "times" down, so that is restored too.
 */
static const struct {
	const char *path;
	const char *value;	/* NULL: only restored */
} knobs[] = {
	{ DEBUGFS "/failslab/ignore-gfp-wait", "N" },
	{ DEBUGFS "/failslab/verbose", "0" },
	{ DEBUGFS "/failslab/times", NULL },
	{ DEBUGFS "/fail_page_alloc/ignore-gfp-wait", "N" },
	{ DEBUGFS "/fail_page_alloc/ignore-gfp-highmem", "N" },
	{ DEBUGFS "/fail_page_alloc/min-order", "0" },
	{ DEBUGFS "/fail_page_alloc/verbose", "0" },
	{ DEBUGFS "/fail_page_alloc/times", NULL },
};

#define NR_KNOBS	ARRAY_SIZE(knobs)
#define KNOB_LEN	32

enum { OP_OPEN, OP_MMAP, OP_REGISTER, OP_KICK, OP_CLOSE, NR_OPS };

static const char *const op_names[NR_OPS] = {
	"open", "mmap", "register", "kick", "close",
};

#define MAX_ERRNO	134	/* EHWPOISON + 1 */

/*
 * The tally of every test, for the summary: shared with the processes the
 * harness forks for the tests.
 */
struct fault_stats {
	long injected[NR_OPS];		/* faults injected */
	long absorbed[NR_OPS];		/* ... with the operation succeeding */
	long errnos[NR_OPS][MAX_ERRNO];	/* ... failing it, by errno */
};

static struct fault_stats *stats;

static void __attribute__((constructor)) stats_init(void)
{
	void *p = mmap(NULL, sizeof(*stats), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	stats = p == MAP_FAILED ? NULL : p;
}

FIXTURE(faults) {
	struct wd_dev devs[WD_MAX_DEVS];
	const struct wd_dev *dev;
	int nth;			/* FAIL_NTH, open */
	char saved[NR_KNOBS][KNOB_LEN];	/* the settings to restore */
	bool changed[NR_KNOBS];
	size_t page, mmio_len, dus_len;
	int avail;			/* available_instances before */
	long vmpin;			/* VmPin before, in kB */
	int logged;			/* absorbed faults logged */
	uint64_t t0;			/* when the test started, in ms */
};

/* Reads a debugfs setting into @buf, without its newline. */
static int knob_read(const char *path, char *buf)
{
	int ret = wd_read_file(path, buf, KNOB_LEN);

	if (ret < 0)
		return ret;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Puts back the settings that setup changed. */
static int knobs_restore(struct _test_data_faults *self)
{
	int ret = 0, err;
	size_t i;

	for (i = 0; i < NR_KNOBS; i++) {
		if (!self->changed[i])
			continue;
		err = wd_write_file(knobs[i].path, self->saved[i]);
		if (err)
			ret = err;
		else
			self->changed[i] = false;
	}
	return ret;
}

FIXTURE_SETUP(faults)
{
	int n, ret;
	size_t i;

	self->nth = -1;
	WD_SETUP_EDU(self->devs, n);
	self->dev = &self->devs[0];
	if (access(FAIL_NTH, F_OK))
		SKIP(return,
		     "no %s: kernel without CONFIG_FAULT_INJECTION", FAIL_NTH);
	for (i = 0; i < NR_KNOBS; i++)
		if (access(knobs[i].path, F_OK))
			SKIP(return,
			     "no %s: kernel without CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC or CONFIG_FAULT_INJECTION_DEBUG_FS, or debugfs not mounted",
			     knobs[i].path);
	ASSERT_NE(NULL, stats);

	self->nth = open(FAIL_NTH, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->nth) TH_LOG("%s: %s", FAIL_NTH, strerror(errno));
	self->page = wd_page_size();
	self->mmio_len = wd_region_size(self->dev, WD_REGION_MMIO);
	self->dus_len = wd_region_size(self->dev, WD_REGION_DUS);
	ASSERT_NE(0UL, self->mmio_len);
	ASSERT_NE(0UL, self->dus_len);
	self->avail = wd_avail(self->dev);
	ASSERT_LT(0, self->avail) TH_LOG("%s: no free queue", self->dev->name);
	self->vmpin = wd_vmpin_kb();
	ASSERT_LE(0, self->vmpin);

	self->t0 = wd_now_ms();

	/* Last: a setup that fails later has no teardown to restore them. */
	for (i = 0; i < NR_KNOBS; i++) {
		ret = knob_read(knobs[i].path, self->saved[i]);
		if (!ret && knobs[i].value)
			ret = wd_write_file(knobs[i].path, knobs[i].value);
		self->changed[i] = !ret;
		if (ret) {
			knobs_restore(self);
			ASSERT_EQ(0, ret) TH_LOG("%s: %s", knobs[i].path,
						 strerror(-ret));
		}
	}
}

/* In the parent: the settings go back even if the test process crashed. */
FIXTURE_TEARDOWN_PARENT(faults)
{
	EXPECT_EQ(0, knobs_restore(self))
		TH_LOG("could not restore the fault injection settings");
}


/*
 * Arms fail-nth: the @n-th allocation from here on fails. Nothing may run
 * between this and the operation: a page fault of the test itself would
 * take the fault (the stack and buffers are warm from earlier rounds).
 */
static int nth_arm(struct _test_data_faults *self, unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	return write(self->nth, buf, len) == len ? 0 : -errno;
}

/*
 * Right after the operation: whether the fault was injected. If it was not,
 * the operation made fewer than n allocations, and fail-nth is disarmed.
 */
static bool nth_fired(struct __test_metadata *_metadata,
		      struct _test_data_faults *self)
{
	unsigned long left;
	char buf[16];
	ssize_t len;

	len = pread(self->nth, buf, sizeof(buf) - 1, 0);
	ASSERT_LT(0, len) TH_LOG("read %s: %s", FAIL_NTH, strerror(errno));
	buf[len] = '\0';
	ASSERT_EQ(0, wd_parse_ulong(buf, &left)) TH_LOG("%s: '%s'", FAIL_NTH,
							buf);
	if (left)
		ASSERT_EQ(0, nth_arm(self, 0));
	return !left;
}

/* Counts a fault that an operation reported with @err (0: it succeeded). */
static void tally(struct __test_metadata *_metadata,
		  struct _test_data_faults *self, int op, unsigned int n,
		  const char *what, int err)
{
	stats->injected[op]++;
	if (err) {
		stats->errnos[op][err > 0 && err < MAX_ERRNO ? err : 0]++;
		return;
	}
	stats->absorbed[op]++;
	if (self->logged++ < MAX_LOGGED)
		TH_LOG("n=%u: %s succeeded despite the fault (an allocation with a fallback); checked it",
		       n, what);
}

/* Logs an operation's tally and checks that it met faults at all. */
static void report(struct __test_metadata *_metadata,
		   struct _test_data_faults *self, int op, unsigned int rounds)
{
	char buf[512];
	size_t len = 0;
	long failed = 0;
	int e;

	for (e = 0; e < MAX_ERRNO; e++) {
		if (!stats->errnos[op][e])
			continue;
		failed += stats->errnos[op][e];
		len += snprintf(buf + len, sizeof(buf) - len, "%s%s %ld",
				len ? ", " : "", e ? strerrorname_np(e) : "?",
				stats->errnos[op][e]);
		if (len >= sizeof(buf))
			break;
	}
	TH_LOG("faults: %s %ld in %u rounds, %llu s: %ld failed it (%s), %ld absorbed",
	       op_names[op], stats->injected[op], rounds,
	       (unsigned long long)(wd_now_ms() - self->t0) / 1000, failed,
	       failed ? buf : "-", stats->absorbed[op]);
	EXPECT_LT(0, stats->injected[op])
		TH_LOG("%s: no allocation failed: is fault injection working?",
		       op_names[op]);
}

/* Nothing an operation took may stay taken once its results are released. */
static void check_released(struct __test_metadata *_metadata,
			   struct _test_data_faults *self, unsigned int n,
			   const char *what, long vmpin, int avail)
{
	ASSERT_EQ(vmpin, wd_vmpin_kb())
		TH_LOG("n=%u, %s: VmPin %ld kB, was %ld kB", n, what,
		       wd_vmpin_kb(), vmpin);
	ASSERT_EQ(avail, wd_avail(self->dev))
		TH_LOG("n=%u, %s: available_instances %d, was %d", n, what,
		       wd_avail(self->dev), avail);
}

/* One field of the queue's fdinfo, or -errno. */
static long fdinfo_field(int fd, const char *key)
{
	char path[64], line[128];
	size_t klen = strlen(key);
	long val = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			val = strtol(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return val;
}

/* A NOP through the ring of @q: the queue works. */
static void check_nop(struct __test_metadata *_metadata, struct wd_queue *q,
		      unsigned int n, const char *what)
{
	struct wd_desc d = wd_mkdesc(WD_EDU_OP_NOP, 0x4e4f50, NULL, NULL, 0, 0);
	struct wd_cqe cqe;

	ASSERT_EQ(0, wd_run1(q, &d, &cqe))
		TH_LOG("n=%u, %s: NOP: %s", n, what, wd_ring_error());
	ASSERT_EQ(d.user_data, cqe.user_data);
	ASSERT_EQ(0, cqe.status) TH_LOG("n=%u, %s: NOP: status %d", n, what,
					cqe.status);
}

/*
 * A queue that open() and START_Q returned is whole: started, both regions
 * mappable with the right contents, and a command runs. Closes @fd.
 */
static void check_queue(struct __test_metadata *_metadata,
			struct _test_data_faults *self, int fd, unsigned int n)
{
	struct wd_queue q;

	ASSERT_EQ(self->avail - 1, wd_avail(self->dev))
		TH_LOG("n=%u: an open queue is not counted", n);
	ASSERT_EQ(0, wd_queue_attach(&q, fd, self->mmio_len, self->dus_len))
		TH_LOG("n=%u: %s", n, wd_ring_error());
	EXPECT_EQ((uint32_t)WD_QUEUE_STARTED, wd_read32(&q.st->state))
		TH_LOG("n=%u", n);
	check_nop(_metadata, &q, n, "open");
	wd_queue_close(&q);
}

static int open_started(struct _test_data_faults *self)
{
	int fd = wd_open(self->dev);

	if (fd >= 0 && ioctl(fd, WD_CMD_START_Q)) {
		close(fd);
		return -1;
	}
	return fd;
}

TEST_F_TIMEOUT(faults, open, 300)
{
	unsigned int n;
	bool fired;
	int fd, err;

	/* Warms up the test's own path; fail-nth is disarmed. */
	ASSERT_EQ(0, nth_arm(self, 0));
	fd = open_started(self);
	ASSERT_LE(0, fd) TH_LOG("%s: %s", self->dev->node, strerror(errno));
	check_queue(_metadata, self, fd, 0);
	check_released(_metadata, self, 0, "open", self->vmpin, self->avail);

	for (n = 1; n <= MAX_NTH; n++) {
		ASSERT_EQ(0, nth_arm(self, n));
		fd = wd_open(self->dev);
		err = fd < 0 ? errno : 0;
		if (fd >= 0 && ioctl(fd, WD_CMD_START_Q))
			err = errno;
		fired = nth_fired(_metadata, self);
		ASSERT_TRUE(fired || !err)
			TH_LOG("n=%u: %s failed with no fault: %s", n,
			       fd < 0 ? "open" : "START_Q", strerror(err));
		if (fired)
			tally(_metadata, self, OP_OPEN, n, "open", err);
		/* Closed only now, with fail-nth disarmed. */
		if (fd >= 0 && err)
			close(fd);
		else if (fd >= 0)
			check_queue(_metadata, self, fd, n);
		check_released(_metadata, self, n, "open", self->vmpin,
			       self->avail);
		if (!fired)
			break;
		if (!err)
			continue;
		/* The next one works. */
		fd = open_started(self);
		ASSERT_LE(0, fd) TH_LOG("n=%u: open after the fault: %s", n,
					strerror(errno));
		check_queue(_metadata, self, fd, n);
		check_released(_metadata, self, n, "open", self->vmpin,
			       self->avail);
	}
	ASSERT_GE(MAX_NTH, n) TH_LOG("open still meets faults after %u", n);
	report(_metadata, self, OP_OPEN, n);
}

/*
 * A fresh mapping of @region at @p shows what it must, and the ring works
 * through it.
 */
static void check_region(struct __test_metadata *_metadata,
			 struct _test_data_faults *self, int fd,
			 unsigned int region, void *p, unsigned int n)
{
	const struct wd_queue_status *st = p;
	const struct wd_ring_header *h = p;
	struct wd_queue q;

	if (region == WD_REGION_MMIO) {
		ASSERT_EQ((uint32_t)WD_QUEUE_STATUS_MAGIC, wd_read32(&st->magic))
			TH_LOG("n=%u", n);
		ASSERT_EQ((uint32_t)WD_QUEUE_STARTED, wd_read32(&st->state))
			TH_LOG("n=%u", n);
		return;
	}
	ASSERT_EQ((uint32_t)WD_RING_MAGIC, h->magic) TH_LOG("n=%u", n);
	ASSERT_EQ((uint32_t)WD_RING_VERSION, h->version);
	ASSERT_EQ(WD_EDU_SQ_ENTRIES, h->sq_entries);
	ASSERT_EQ(WD_EDU_CQ_ENTRIES, h->cq_entries);
	ASSERT_EQ(WD_EDU_SQ_OFFSET, h->sq_offset);
	ASSERT_EQ(WD_EDU_CQ_OFFSET, h->cq_offset);
	ASSERT_EQ(sizeof(struct wd_desc), (size_t)h->desc_size);
	ASSERT_EQ(sizeof(struct wd_cqe), (size_t)h->cqe_size);

	/* The ring as wd_queue_attach() would set it up, without the status. */
	wd_queue_init(&q);
	q.fd = fd;
	q.dus = p;
	q.dus_len = self->dus_len;
	q.hdr = p;
	q.sq = (void *)((char *)p + h->sq_offset);
	q.cq = (void *)((char *)p + h->cq_offset);
	q.sq_entries = h->sq_entries;
	q.cq_entries = h->cq_entries;
	check_nop(_metadata, &q, n, "mmap");
}

TEST_F_TIMEOUT(faults, mmap, 300)
{
	static const struct {
		unsigned int region;
		int prot;
		const char *name;
	} regions[] = {
		{ WD_REGION_MMIO, PROT_READ, "mmap MMIO" },
		{ WD_REGION_DUS, PROT_READ | PROT_WRITE, "mmap DUS" },
	};
	unsigned int n = 0, rounds = 0;
	size_t i, len;
	bool fired;
	void *p;
	int fd, err, prot;

	fd = open_started(self);
	ASSERT_LE(0, fd) TH_LOG("%s: %s", self->dev->node, strerror(errno));
	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		const char *what = regions[i].name;
		unsigned int region = regions[i].region;

		len = region == WD_REGION_MMIO ? self->mmio_len : self->dus_len;
		prot = regions[i].prot;
		/* Warm-up, disarmed. */
		ASSERT_EQ(0, nth_arm(self, 0));
		p = wd_map(fd, region, len, prot);
		ASSERT_NE(MAP_FAILED, p) TH_LOG("%s: %s", what, strerror(errno));
		check_region(_metadata, self, fd, region, p, 0);
		ASSERT_EQ(0, munmap(p, len));

		for (n = 1; n <= MAX_NTH; n++) {
			ASSERT_EQ(0, nth_arm(self, n));
			p = wd_map(fd, region, len, prot);
			err = p == MAP_FAILED ? errno : 0;
			fired = nth_fired(_metadata, self);
			ASSERT_TRUE(fired || !err)
				TH_LOG("n=%u: %s failed with no fault: %s", n,
				       what, strerror(err));
			if (fired)
				tally(_metadata, self, OP_MMAP, n, what, err);
			if (p != MAP_FAILED) {
				check_region(_metadata, self, fd, region, p, n);
				ASSERT_EQ(0, munmap(p, len));
			}
			check_released(_metadata, self, n, what, self->vmpin,
				       self->avail - 1);
			if (!fired)
				break;
			if (!err)
				continue;
			/* The region is not left mapped, nor half-set-up. */
			p = wd_map(fd, region, len, prot);
			ASSERT_NE(MAP_FAILED, p)
				TH_LOG("n=%u: %s after the fault: %s", n, what,
				       strerror(errno));
			check_region(_metadata, self, fd, region, p, n);
			ASSERT_EQ(0, munmap(p, len));
		}
		ASSERT_GE(MAX_NTH, n) TH_LOG("%s still meets faults after %u",
					     what, n);
		rounds += n;
	}
	close(fd);
	check_released(_metadata, self, n, "mmap", self->vmpin, self->avail);
	report(_metadata, self, OP_MMAP, rounds);
}

/* Pages spanned by [p, p + len). */
static size_t span(const void *p, size_t len, size_t page)
{
	uintptr_t a = (uintptr_t)p;

	return (a + len - 1) / page - a / page + 1;
}

/* One command through @q; its completion status, its result in @res. */
static int run_one(struct __test_metadata *_metadata, struct wd_queue *q,
		   struct wd_desc d, uint64_t *res, unsigned int n)
{
	struct wd_cqe cqe;

	ASSERT_EQ(0, wd_run1(q, &d, &cqe))
		TH_LOG("n=%u: %s", n, wd_ring_error());
	ASSERT_EQ(d.user_data, cqe.user_data);
	*res = cqe.result;
	return cqe.status;
}

/*
 * The buffer registered as @h is whole: pinned and counted as it must be,
 * and used by commands that accept registered buffers only; then
 * unregistering it gives everything back.
 */
static void check_registered(struct __test_metadata *_metadata,
			     struct _test_data_faults *self, struct wd_queue *q,
			     char *buf, size_t len, uint32_t flags, uint32_t h,
			     unsigned int n, long vmpin)
{
	size_t pages = span(buf, len, self->page), half = len / 2;
	struct wd_desc d;
	uint64_t res;

	/* Mirrored, not pinned: every page mapped for the device, none pinned. */
	ASSERT_EQ(vmpin, wd_vmpin_kb())
		TH_LOG("n=%u: VmPin with %zu registered pages", n, pages);
	ASSERT_EQ(1ULL, wd_read64(&q->st->buffers)) TH_LOG("n=%u", n);
	ASSERT_EQ(0ULL, wd_read64(&q->st->pinned_pages)) TH_LOG("n=%u", n);
	ASSERT_EQ((uint64_t)pages, wd_read64(&q->st->mapped_pages))
		TH_LOG("n=%u", n);

	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 1, buf, NULL, len, 0);
	d.flags = WD_DESC_REGISTERED;
	ASSERT_EQ(0, run_one(_metadata, q, d, &res, n)) TH_LOG("n=%u", n);
	ASSERT_EQ(wd_crc32c(0, buf, len), res) TH_LOG("n=%u", n);
	if (flags & WD_REGISTER_WRITE) {
		d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 2, buf, buf + half, half,
			      0);
		d.flags = WD_DESC_REGISTERED;
		ASSERT_EQ(0, run_one(_metadata, q, d, &res, n))
			TH_LOG("n=%u", n);
		ASSERT_EQ((uint64_t)half, res);
		ASSERT_EQ(-1, wd_check(buf + half, half, n, 0))
			TH_LOG("n=%u: the copy within the buffer", n);
	}

	ASSERT_EQ(0, wd_unregister(q->fd, h))
		TH_LOG("n=%u: %s", n, strerror(errno));
	ASSERT_EQ(0ULL, wd_read64(&q->st->buffers)) TH_LOG("n=%u", n);
	ASSERT_EQ(0ULL, wd_read64(&q->st->pinned_pages)) TH_LOG("n=%u", n);
	ASSERT_EQ(vmpin, wd_vmpin_kb()) TH_LOG("n=%u: VmPin after UNREGISTER",
					       n);
}

TEST_F_TIMEOUT(faults, register, 400)
{
	static const struct {
		const char *name;
		size_t off;	/* of the buffer in its first page */
		size_t pages;	/* that it spans */
		uint32_t flags;
	} cases[] = {
		{ "REGISTER 1 page read-only", 0, 1, 0 },
		{ "REGISTER 1 page writable", 0, 1, WD_REGISTER_WRITE },
		{ "REGISTER 16 pages read-only, unaligned", 100, 16, 0 },
		{ "REGISTER 200 pages writable", 0, 200, WD_REGISTER_WRITE },
	};
	struct wd_reg_buf {
		char *map, *buf;
		size_t map_len, len;
	} b;
	unsigned int n = 0, rounds = 0;
	struct wd_queue q;
	uint32_t h;
	bool fired;
	size_t i;
	long vmpin;
	int ret, err;

	ASSERT_EQ(0, wd_queue_open(&q, self->dev, 0))
		TH_LOG("%s: %s", self->dev->node, wd_ring_error());
	vmpin = wd_vmpin_kb();
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *what = cases[i].name;
		uint32_t flags = cases[i].flags;

		b.map_len = cases[i].pages * self->page;
		b.map = wd_alloc(b.map_len);
		ASSERT_NE(NULL, b.map);
		b.buf = b.map + cases[i].off;
		b.len = b.map_len - 2 * cases[i].off;
		ASSERT_EQ(cases[i].pages, span(b.buf, b.len, self->page));

		/* Warm-up, disarmed; populates the pages too. */
		wd_fill(b.buf, b.len, 0, 0);
		ASSERT_EQ(0, nth_arm(self, 0));
		ASSERT_EQ(0, wd_register(q.fd, b.buf, b.len, flags, &h))
			TH_LOG("%s: %s", what, strerror(errno));
		check_registered(_metadata, self, &q, b.buf, b.len, flags, h,
				 0, vmpin);

		for (n = 1; n <= MAX_NTH; n++) {
			wd_fill(b.buf, b.len, n, 0);
			ASSERT_EQ(0, nth_arm(self, n));
			ret = wd_register(q.fd, b.buf, b.len, flags, &h);
			err = ret ? errno : 0;
			fired = nth_fired(_metadata, self);
			ASSERT_TRUE(fired || !err)
				TH_LOG("n=%u: %s failed with no fault: %s", n,
				       what, strerror(err));
			if (fired)
				tally(_metadata, self, OP_REGISTER, n, what,
				      err);
			if (!ret) {
				check_registered(_metadata, self, &q, b.buf,
						 b.len, flags, h, n, vmpin);
			} else {
				/* Nothing half-registered stays. */
				ASSERT_EQ(0ULL, wd_read64(&q.st->buffers))
					TH_LOG("n=%u: %s", n, what);
				ASSERT_EQ(0ULL, wd_read64(&q.st->pinned_pages))
					TH_LOG("n=%u: %s", n, what);
			}
			check_released(_metadata, self, n, what, vmpin,
				       self->avail - 1);
			if (!fired)
				break;
			if (!err)
				continue;
			/* The same range again: nothing of it is left over. */
			wd_fill(b.buf, b.len, n, 0);
			ASSERT_EQ(0, wd_register(q.fd, b.buf, b.len, flags, &h))
				TH_LOG("n=%u: %s after the fault: %s", n, what,
				       strerror(errno));
			check_registered(_metadata, self, &q, b.buf, b.len,
					 flags, h, n, vmpin);
		}
		ASSERT_GE(MAX_NTH, n) TH_LOG("%s still meets faults after %u",
					     what, n);
		rounds += n;
		munmap(b.map, b.map_len);
	}
	wd_queue_close(&q);
	check_released(_metadata, self, n, "register", self->vmpin,
		       self->avail);
	report(_metadata, self, OP_REGISTER, rounds);
}

/*
 * The KICK batch: every kind of operand warpdrive translates. Registered
 * buffers that are pinned cost KICK no allocation; a registered buffer
 * whose pages were dropped (MADV_DONTNEED) is pinned again by KICK, and
 * plain memory is pinned and mapped for the command: those allocate.
 */
#define CHUNK		(16 * 1024UL)	/* of each buffer */
#define CRC_OFF		100		/* an unaligned unregistered source */
#define CRC_LEN		5000
#define FACT_N		10

enum {
	C_NOP,
	C_REG_COPY,
	C_REPIN_COPY,
	C_COPY,
	C_MIXED_COPY,
	C_REG_CRC,
	C_CRC,
	C_FACT,
	NR_CMDS,
};

static const char *const cmd_names[NR_CMDS] = {
	"NOP", "EMU_MEMCPY registered", "EMU_MEMCPY to a dropped buffer",
	"EMU_MEMCPY pinned", "EMU_MEMCPY registered to pinned",
	"EMU_CRC32C registered", "EMU_CRC32C pinned", "FACTORIAL",
};

struct kick_bufs {
	char *rsrc, *rdst;		/* registered, read-only and writable */
	char *rdrop;			/* registered writable, pages dropped */
	char *usrc, *udst, *udst2;	/* not registered */
	uint32_t hsrc, hdst, hdrop;
};

#define POISON		0x5a

/* Pages mapped for the device of the registered buffers while all are. */
#define KICK_REG_PAGES(page)	(3 * CHUNK / (page))

/* Writes the batch for round @seed into @d; 0, or -errno from madvise(). */
static int kick_prepare(struct kick_bufs *k, struct wd_desc *d,
			unsigned int seed)
{
	/* rdrop's buffer loses its pages: KICK maps the new ones. */
	if (madvise(k->rdrop, CHUNK, MADV_DONTNEED))
		return -errno;
	wd_fill(k->rsrc, CHUNK, 2 * seed, 0);
	wd_fill(k->usrc, CHUNK, 2 * seed + 1, 0);
	memset(k->rdst, POISON, CHUNK);
	memset(k->rdrop, POISON, CHUNK);
	memset(k->udst, POISON, CHUNK);
	memset(k->udst2, POISON, CHUNK);

	d[C_NOP] = wd_mkdesc(WD_EDU_OP_NOP, C_NOP, NULL, NULL, 0, 0);
	d[C_REG_COPY] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, C_REG_COPY, k->rsrc,
				  k->rdst, CHUNK, 0);
	d[C_REG_COPY].flags = WD_DESC_REGISTERED;
	d[C_REPIN_COPY] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, C_REPIN_COPY,
				    k->rsrc, k->rdrop, CHUNK, 0);
	d[C_REPIN_COPY].flags = WD_DESC_REGISTERED;
	d[C_COPY] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, C_COPY, k->usrc, k->udst,
			      CHUNK, 0);
	d[C_MIXED_COPY] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, C_MIXED_COPY,
				    k->rsrc, k->udst2, CHUNK, 0);
	d[C_REG_CRC] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, C_REG_CRC, k->rsrc,
				 NULL, CHUNK, 0);
	d[C_REG_CRC].flags = WD_DESC_REGISTERED;
	d[C_CRC] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, C_CRC, k->usrc + CRC_OFF,
			     NULL, CRC_LEN, 0);
	d[C_FACT] = wd_mkdesc(WD_EDU_OP_FACTORIAL, C_FACT, NULL, NULL, 0,
			      FACT_N);
	return 0;
}

/*
 * Whether command @i completed as it must: with its result, or, only if
 * @may_fail, with an error and its destination untouched.
 */
static bool kick_check(struct __test_metadata *_metadata,
		       const struct kick_bufs *k, unsigned int seed,
		       const struct wd_cqe *c, unsigned int i, bool may_fail,
		       unsigned int n)
{
	const char *dst = NULL;
	uint64_t want = 0;
	ssize_t bad;

	switch (i) {
	case C_REG_COPY:
		dst = k->rdst;
		want = CHUNK;
		break;
	case C_REPIN_COPY:
		dst = k->rdrop;
		want = CHUNK;
		break;
	case C_COPY:
		dst = k->udst;
		want = CHUNK;
		break;
	case C_MIXED_COPY:
		dst = k->udst2;
		want = CHUNK;
		break;
	case C_REG_CRC:
		want = wd_crc32c(0, k->rsrc, CHUNK);
		break;
	case C_CRC:
		want = wd_crc32c(0, k->usrc + CRC_OFF, CRC_LEN);
		break;
	case C_FACT:
		want = wd_fact_u32(FACT_N);
		break;
	}
	if (c->status) {
		EXPECT_TRUE(may_fail && c->status < 0)
			TH_LOG("n=%u: %s: status %d with no fault", n,
			       cmd_names[i], c->status);
		/* It never reached the engine. */
		if (dst)
			EXPECT_EQ(-1, wd_check_byte(dst, CHUNK, POISON))
				TH_LOG("n=%u: %s failed (%d) but wrote", n,
				       cmd_names[i], c->status);
		return may_fail && c->status < 0 &&
		       (!dst || wd_check_byte(dst, CHUNK, POISON) < 0);
	}
	EXPECT_EQ(want, c->result) TH_LOG("n=%u: %s", n, cmd_names[i]);
	if (dst) {
		bad = wd_check(dst, CHUNK, i == C_COPY ? 2 * seed + 1 : 2 * seed,
			       0);
		EXPECT_EQ(-1, bad) TH_LOG("n=%u: %s: byte %zd", n,
					  cmd_names[i], bad);
		if (bad >= 0)
			return false;
	}
	return c->result == want;
}

/*
 * Reaps the batch's completions and checks them; returns how many failed
 * (the one that did in @which, with its status in @status), or -1 if any
 * is lost, repeated or wrong. With @may_fail, one command may fail: one
 * allocation failed.
 */
static int kick_reap(struct __test_metadata *_metadata, struct wd_queue *q,
		     const struct kick_bufs *k, unsigned int seed,
		     bool may_fail, unsigned int n, int *which, int *status)
{
	struct wd_cqe cqes[NR_CMDS], *by_ud[NR_CMDS] = { NULL };
	unsigned int i;
	int failed = 0;

	*which = -1;
	*status = 0;
	if (wd_reap(q, cqes, NR_CMDS, WD_WAIT_MS)) {
		TH_LOG("n=%u: %s", n, wd_ring_error());
		return -1;
	}
	for (i = 0; i < NR_CMDS; i++) {
		if (cqes[i].user_data >= NR_CMDS ||
		    by_ud[cqes[i].user_data]) {
			TH_LOG("n=%u: completion with user_data %#llx", n,
			       (unsigned long long)cqes[i].user_data);
			return -1;
		}
		by_ud[cqes[i].user_data] = &cqes[i];
	}
	for (i = 0; i < NR_CMDS; i++) {
		if (!kick_check(_metadata, k, seed, by_ud[i], i, may_fail, n))
			return -1;
		if (by_ud[i]->status) {
			*which = i;
			*status = by_ud[i]->status;
			failed++;
		}
	}
	if (failed > 1) {
		TH_LOG("n=%u: %d commands failed for one fault", n, failed);
		return -1;
	}
	return failed;
}

/*
 * After a batch: nothing in flight, the per-command pins gone (a command
 * lets its memory go before its completion is written), the dropped buffer
 * mapped for the device again (only in part if mapping it is what failed),
 * nothing of the registered buffers pinned, the counters right.
 */
static void kick_settled(struct __test_metadata *_metadata,
			 struct _test_data_faults *self, struct wd_queue *q,
			 const struct wd_queue_status *before, int failed,
			 int which, long vmpin, unsigned int n)
{
	const uint64_t pages = KICK_REG_PAGES(self->page);
	const uint64_t dropped = pages - CHUNK / self->page;
	uint64_t mapped;

	ASSERT_EQ(0, fdinfo_field(q->fd, "wd-in-flight")) TH_LOG("n=%u", n);
	ASSERT_EQ(0ULL, wd_read64(&q->st->pinned_pages))
		TH_LOG("n=%u: %llu pages pinned after the batch", n,
		       (unsigned long long)wd_read64(&q->st->pinned_pages));
	mapped = wd_read64(&q->st->mapped_pages);
	if (wd_read64(&q->st->invalidations) != before->invalidations) {
		/*
		 * mm took pages away during the batch (a NUMA balancing
		 * scan, in this two-node guest): the mirror refills only
		 * what the next command uses.
		 */
		ASSERT_GE(pages, mapped) TH_LOG("n=%u: pages mapped", n);
		TH_LOG("n=%u: %d invalidations during the batch (command %d failed), %llu of %llu pages mapped after it",
		       n, (int)(wd_read64(&q->st->invalidations) -
				before->invalidations), which,
		       (unsigned long long)mapped, (unsigned long long)pages);
	} else if (which == C_REPIN_COPY) {
		ASSERT_TRUE(mapped >= dropped && mapped <= pages)
			TH_LOG("n=%u: %llu pages mapped, %llu before the failed copy",
			       n, (unsigned long long)mapped,
			       (unsigned long long)dropped);
	} else {
		ASSERT_EQ(pages, mapped)
			TH_LOG("n=%u: pages mapped, %d invalidations, command %d failed",
			       n, (int)(wd_read64(&q->st->invalidations) -
					before->invalidations), which);
	}
	ASSERT_EQ(vmpin, wd_vmpin_kb())
		TH_LOG("n=%u: VmPin %ld kB, was %ld kB", n, wd_vmpin_kb(),
		       vmpin);
	ASSERT_EQ(before->submitted + NR_CMDS, wd_read64(&q->st->submitted))
		TH_LOG("n=%u", n);
	ASSERT_EQ(before->completed + NR_CMDS, wd_read64(&q->st->completed))
		TH_LOG("n=%u", n);
	ASSERT_EQ(before->errors + failed, wd_read64(&q->st->errors))
		TH_LOG("n=%u", n);
	ASSERT_EQ(3ULL, wd_read64(&q->st->buffers)) TH_LOG("n=%u", n);
	check_released(_metadata, self, n, "KICK", vmpin, self->avail - 1);
}

/* Pushes the batch for round @seed, after its buffers are reset. */
static void kick_push(struct __test_metadata *_metadata,
		      struct _test_data_faults *self, struct wd_queue *q,
		      struct kick_bufs *k, unsigned int seed,
		      struct wd_queue_status *before, unsigned int n)
{
	const uint64_t dropped = KICK_REG_PAGES(self->page) -
				 CHUNK / self->page;
	uint64_t inval = wd_read64(&q->st->invalidations);
	struct wd_desc d[NR_CMDS];

	ASSERT_EQ(0, kick_prepare(k, d, seed)) TH_LOG("n=%u: madvise", n);
	/* Exactly, unless mm took pages of its own accord meanwhile. */
	if (wd_read64(&q->st->invalidations) == inval + 1) {
		ASSERT_EQ(dropped, wd_read64(&q->st->mapped_pages))
			TH_LOG("n=%u: MADV_DONTNEED left the buffer mapped",
			       n);
	} else {
		ASSERT_GE(dropped, wd_read64(&q->st->mapped_pages))
			TH_LOG("n=%u: MADV_DONTNEED left the buffer mapped",
			       n);
	}
	wd_status(q, before);
	ASSERT_EQ(NR_CMDS, (int)wd_sq_push(q, d, NR_CMDS));
}

/* The batch without faults: all of it taken and all of it right. */
static void kick_clean(struct __test_metadata *_metadata,
		       struct _test_data_faults *self, struct wd_queue *q,
		       struct kick_bufs *k, unsigned int seed, long vmpin,
		       unsigned int n)
{
	struct wd_queue_status before;
	int which, status;

	kick_push(_metadata, self, q, k, seed, &before, n);
	ASSERT_EQ(NR_CMDS, wd_kick(q)) TH_LOG("n=%u: %s", n, wd_ring_error());
	ASSERT_EQ(0, kick_reap(_metadata, q, k, seed, false, n, &which,
			       &status));
	kick_settled(_metadata, self, q, &before, 0, -1, vmpin, n);
}

TEST_F_TIMEOUT(faults, kick, 300)
{
	struct wd_queue_status before;
	int ret, err, failed, which, status;
	struct kick_bufs k;
	struct wd_queue q;
	unsigned int n;
	uint32_t head;
	bool fired;
	long vmpin;

	ASSERT_EQ(0, wd_queue_open(&q, self->dev, 0))
		TH_LOG("%s: %s", self->dev->node, wd_ring_error());
	k.rsrc = wd_alloc(CHUNK);
	k.rdst = wd_alloc(CHUNK);
	k.rdrop = wd_alloc(CHUNK);
	k.usrc = wd_alloc(CHUNK);
	k.udst = wd_alloc(CHUNK);
	k.udst2 = wd_alloc(CHUNK);
	ASSERT_TRUE(k.rsrc && k.rdst && k.rdrop && k.usrc && k.udst &&
		    k.udst2);
	memset(k.rsrc, 0, CHUNK);
	memset(k.rdst, 0, CHUNK);
	memset(k.rdrop, 0, CHUNK);
	ASSERT_EQ(0, wd_register(q.fd, k.rsrc, CHUNK, 0, &k.hsrc));
	ASSERT_EQ(0, wd_register(q.fd, k.rdst, CHUNK, WD_REGISTER_WRITE,
				 &k.hdst));
	ASSERT_EQ(0, wd_register(q.fd, k.rdrop, CHUNK, WD_REGISTER_WRITE,
				 &k.hdrop));
	vmpin = wd_vmpin_kb();

	/* Warm-up, disarmed. */
	ASSERT_EQ(0, nth_arm(self, 0));
	kick_clean(_metadata, self, &q, &k, 0, vmpin, 0);

	for (n = 1; n <= MAX_NTH; n++) {
		kick_push(_metadata, self, &q, &k, n, &before, n);
		head = wd_sq_head(&q);
		ASSERT_EQ(0, nth_arm(self, n));
		ret = ioctl(q.fd, WD_IOCTL_KICK);
		err = ret < 0 ? errno : 0;
		fired = nth_fired(_metadata, self);
		ASSERT_TRUE(fired || !err)
			TH_LOG("n=%u: KICK failed with no fault: %s", n,
			       strerror(err));
		if (ret < 0) {
			/* KICK as a whole failed: it took nothing. */
			ASSERT_EQ(head, wd_sq_head(&q)) TH_LOG("n=%u", n);
			ASSERT_EQ(NR_CMDS, wd_kick(&q))
				TH_LOG("n=%u: KICK after the fault: %s", n,
				       wd_ring_error());
		} else {
			ASSERT_EQ(NR_CMDS, ret) TH_LOG("n=%u", n);
			ASSERT_EQ(head + NR_CMDS, wd_sq_head(&q))
				TH_LOG("n=%u", n);
		}
		failed = kick_reap(_metadata, &q, &k, n, fired, n, &which,
				   &status);
		ASSERT_LE(0, failed) TH_LOG("n=%u: the batch went wrong", n);
		kick_settled(_metadata, self, &q, &before, failed, which,
			     vmpin, n);
		/*
		 * The fault shows as KICK's errno, or as the status of the
		 * command it hit, or nowhere if it was absorbed.
		 */
		if (fired)
			tally(_metadata, self, OP_KICK, n, "KICK",
			      err ? err : -status);
		if (!fired)
			break;
		/* The next one works, with every command. */
		kick_clean(_metadata, self, &q, &k, n + MAX_NTH, vmpin, n);
	}
	ASSERT_GE(MAX_NTH, n) TH_LOG("KICK still meets faults after %u", n);
	ASSERT_EQ(0, wd_unregister(q.fd, k.hsrc));
	ASSERT_EQ(0, wd_unregister(q.fd, k.hdst));
	ASSERT_EQ(0, wd_unregister(q.fd, k.hdrop));
	wd_queue_close(&q);
	check_released(_metadata, self, n, "kick", self->vmpin, self->avail);
	report(_metadata, self, OP_KICK, n);
}

/*
 * close() cannot fail, but it releases the queue with buffers registered
 * and commands in flight, and allocates doing so: each fault there must
 * still leave nothing pinned, taken or leaked.
 */
TEST_F_TIMEOUT(faults, close, 300)
{
	const size_t copy = 4096;	/* the device takes ~200 ms */
	char *src, *dst, *usrc, *udst;
	struct wd_desc d[2];
	struct wd_queue q;
	unsigned int n;
	uint32_t h;
	bool fired;
	int ret, err, fd;

	src = wd_alloc(copy);
	dst = wd_alloc(copy);
	usrc = wd_alloc(CHUNK);
	udst = wd_alloc(CHUNK);
	ASSERT_TRUE(src && dst && usrc && udst);
	wd_fill(src, copy, 1, 0);
	wd_fill(usrc, CHUNK, 2, 0);
	memset(dst, 0, copy);
	memset(udst, 0, CHUNK);

	for (n = 0; n <= MAX_NTH; n++) {
		ASSERT_EQ(0, wd_queue_open(&q, self->dev, 0))
			TH_LOG("n=%u: %s", n, wd_ring_error());
		ASSERT_EQ(0, wd_register(q.fd, src, copy, 0, &h));
		ASSERT_EQ(0, wd_register(q.fd, dst, copy, WD_REGISTER_WRITE,
					 &h));
		d[0] = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, src, dst, copy, 0);
		d[0].flags = WD_DESC_REGISTERED;
		d[1] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 1, usrc, udst, CHUNK, 0);
		ASSERT_EQ(2U, wd_sq_push(&q, d, 2));
		ASSERT_EQ(2, wd_kick(&q)) TH_LOG("n=%u: %s", n,
						 wd_ring_error());
		/* The mappings would keep the file open. */
		fd = q.fd;
		q.fd = -1;
		wd_queue_close(&q);

		/* n = 0 warms up, disarmed. */
		ASSERT_EQ(0, nth_arm(self, n));
		ret = close(fd);
		err = ret ? errno : 0;
		fired = nth_fired(_metadata, self) && n;
		ASSERT_EQ(0, ret) TH_LOG("n=%u: close: %s", n, strerror(err));
		if (fired)
			tally(_metadata, self, OP_CLOSE, n, "close", 0);
		check_released(_metadata, self, n, "close", self->vmpin,
			       self->avail);
		if (n && !fired)
			break;
	}
	ASSERT_GE(MAX_NTH, n) TH_LOG("close still meets faults after %u", n);
	report(_metadata, self, OP_CLOSE, n);
}

/* Runs last: what every operation met. */
TEST_F(faults, summary)
{
	TH_LOG("faults: open %ld, mmap %ld, register %ld, kick %ld, close %ld",
	       stats->injected[OP_OPEN], stats->injected[OP_MMAP],
	       stats->injected[OP_REGISTER], stats->injected[OP_KICK],
	       stats->injected[OP_CLOSE]);
	EXPECT_LT(0, stats->injected[OP_OPEN]);
	EXPECT_LT(0, stats->injected[OP_MMAP]);
	EXPECT_LT(0, stats->injected[OP_REGISTER]);
	EXPECT_LT(0, stats->injected[OP_KICK]);
	EXPECT_LT(0, stats->injected[OP_CLOSE]);
}

TEST_HARNESS_MAIN
