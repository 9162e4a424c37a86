// SPDX-License-Identifier: GPL-2.0
/*
 * mm always makes progress: memory management moves, merges, compacts,
 * write-protects and reclaims registered buffers as any other memory, with
 * their commands idle, queued (the engine held, through the edu driver's
 * debugfs hook) or running, and never waits for more than the transfer the
 * device is doing now. Every system call returns, and every result is
 * checked byte for byte against the CPU.
 *
 * Buffers of four kinds: private anonymous memory, a memfd, and a file on
 * ext2 on a virtio disk (WD_DISK, which the test guest mounts) registered
 * read-only and writable.
 *
 * The tests log what they drove, as lines starting "mm-progress:", which
 * the closing notes quote: pages migrated, pages merged by KSM,
 * compactions, and reclaim.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <fcntl.h>
#include <linux/mempolicy.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "wd_ring.h"

#define KiB		1024UL
#define MiB		(1024UL * KiB)
#define REGION_LEN	(1 * MiB)
#define QUEUED		64	/* commands queued behind a held engine */
#define BOUND_MS	30000	/* a call that takes this long is stuck */

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT	21
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE	25
#endif

enum kind { ANON, MEMFD, FILE_RO, FILE_RW };

static const char *const kind_names[] = { "anon", "memfd", "file-ro", "file-rw" };

/* A registered buffer of @kind, filled with pattern @seed. */
struct region {
	enum kind kind;
	char *p;
	size_t len;
	int fd;
	uint32_t handle;
	uint64_t seed;
};

static size_t page_size(void)
{
	return wd_page_size();
}

/* Reads a number from @path; -1 if it cannot. */
static long long read_num(const char *path)
{
	char buf[64];

	if (wd_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	return strtoll(buf, NULL, 10);
}

static int write_num(const char *path, long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", v);
	return wd_write_file(path, buf);
}

/* One counter of /proc/vmstat, or -1. */
static long long vmstat(const char *name)
{
	char line[128];
	long long v = -1;
	size_t n = strlen(name);
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, n) && line[n] == ' ')
			v = strtoll(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

/* Maps @len bytes of @kind and fills them; 0 or -errno. */
static int region_make(struct region *r, enum kind kind, size_t len,
		       uint64_t seed)
{
	const char *disk = getenv("WD_DISK");
	char path[256];

	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->len = len;
	r->fd = -1;
	r->seed = seed;
	switch (kind) {
	case ANON:
		r->p = wd_alloc(len);
		if (!r->p)
			return -ENOMEM;
		wd_fill(r->p, len, seed, 0);
		return 0;
	case MEMFD:
		r->fd = memfd_create("wd-mm", MFD_CLOEXEC);
		break;
	case FILE_RO:
	case FILE_RW:
		if (!disk)
			return -ENOENT;
		snprintf(path, sizeof(path), "%s/mm-%d-%d", disk, getpid(),
			 kind);
		r->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
			     0600);
		unlink(path);
		break;
	}
	if (r->fd < 0 || ftruncate(r->fd, len))
		return -errno;
	r->p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	if (r->p == MAP_FAILED) {
		r->p = NULL;
		return -errno;
	}
	wd_fill(r->p, len, seed, 0);
	/* File pages start out clean on disk, as mm finds most of them. */
	if (kind >= FILE_RO && fsync(r->fd))
		return -errno;
	return 0;
}

static bool region_writable(const struct region *r)
{
	return r->kind != FILE_RO;
}

static void region_free(struct region *r)
{
	if (r->p)
		munmap(r->p, r->len);
	if (r->fd >= 0)
		close(r->fd);
	r->p = NULL;
	r->fd = -1;
}

/* The NUMA node of the page at @p, or -errno. */
static int page_node(void *p)
{
	int status = -1;

	if (syscall(SYS_move_pages, 0, 1UL, &p, NULL, &status, 0))
		return -errno;
	return status;
}

/*
 * Moves every page of [p, p + len) to @node with move_pages(), trying
 * again for pages that were busy. Returns how many moved, or -errno.
 */
static long move_to(char *p, size_t len, int node)
{
	size_t n = len / page_size(), i, moved = 0;
	void **pages = calloc(n, sizeof(*pages));
	int *nodes = calloc(n, sizeof(*nodes));
	int *status = calloc(n, sizeof(*status));
	int round;

	if (!pages || !nodes || !status) {
		free(pages);
		free(nodes);
		free(status);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		pages[i] = p + i * page_size();
		nodes[i] = node;
	}
	for (round = 0; round < 5; round++) {
		if (syscall(SYS_move_pages, 0, n, pages, nodes, status,
			    MPOL_MF_MOVE) < 0) {
			moved = -errno;
			break;
		}
		moved = 0;
		for (i = 0; i < n; i++)
			moved += status[i] == node;
		if (moved == n)
			break;
		usleep(20000);
	}
	free(pages);
	free(nodes);
	free(status);
	return moved;
}

/* What the tests drove, for the logs. */
static long total_migrated;

/*
 * Runs @fn(@arg) on a thread and waits up to BOUND_MS for it: false if it
 * did not return in time (then it is stuck in the kernel; the test fails).
 */
struct bounded {
	long (*fn)(void *arg);
	void *arg;
	long ret;
	int done;
};

static void *bounded_thread(void *p)
{
	struct bounded *b = p;

	b->ret = b->fn(b->arg);
	__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool bounded(long (*fn)(void *), void *arg, long *ret)
{
	struct bounded *b = calloc(1, sizeof(*b));
	pthread_t t;
	bool ok;

	if (!b)
		return false;
	b->fn = fn;
	b->arg = arg;
	if (pthread_create(&t, NULL, bounded_thread, b)) {
		free(b);
		return false;
	}
	ok = WD_WAIT_FOR(__atomic_load_n(&b->done, __ATOMIC_ACQUIRE), BOUND_MS);
	if (!ok) {
		/* Leave it: it holds @b, and the test has failed anyway. */
		pthread_detach(t);
		return false;
	}
	pthread_join(t, NULL);
	if (ret)
		*ret = b->ret;
	free(b);
	return true;
}

struct move_arg {
	char *p;
	size_t len;
	int node;
};

static long move_fn(void *p)
{
	struct move_arg *m = p;

	return move_to(m->p, m->len, m->node);
}

FIXTURE(mmp) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	struct wd_queue q;
	struct region r, src;
	bool held;
	int nodes;
};

FIXTURE_VARIANT(mmp) {
	enum kind kind;
};

FIXTURE_VARIANT_ADD(mmp, anon) { .kind = ANON };
FIXTURE_VARIANT_ADD(mmp, memfd) { .kind = MEMFD };
FIXTURE_VARIANT_ADD(mmp, file_ro) { .kind = FILE_RO };
FIXTURE_VARIANT_ADD(mmp, file_rw) { .kind = FILE_RW };

FIXTURE_SETUP(mmp)
{
	int ret;

	wd_queue_init(&self->q);
	self->r.fd = self->src.fd = -1;
	WD_SETUP_EDU(self->devs, self->n);
	for (self->nodes = 0; self->nodes < 8; self->nodes++) {
		char path[64];

		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d",
			 self->nodes);
		if (access(path, F_OK))
			break;
	}
	ASSERT_EQ(0, wd_queue_open(&self->q, &self->devs[0], 0))
		TH_LOG("%s", wd_ring_error());
	ret = region_make(&self->r, variant->kind, REGION_LEN, 0x6d6d01);
	ASSERT_EQ(0, ret) TH_LOG("%s: %s%s", kind_names[variant->kind],
				 strerror(-ret),
				 ret == -ENOENT ? " (no WD_DISK)" : "");
	ret = region_make(&self->src, ANON, REGION_LEN, 0x6d6d02);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, wd_register(self->q.fd, self->r.p, self->r.len,
				 region_writable(&self->r) ? WD_REGISTER_WRITE : 0,
				 &self->r.handle))
		TH_LOG("REGISTER %s: %s", kind_names[variant->kind],
		       strerror(errno));
	ASSERT_EQ(0, wd_register(self->q.fd, self->src.p, self->src.len, 0,
				 &self->src.handle));
}

FIXTURE_TEARDOWN(mmp)
{
	if (self->held)
		wd_engine_hold(&self->devs[0], "bulk", false);
	wd_queue_close(&self->q);
	region_free(&self->r);
	region_free(&self->src);
}

/*
 * Pushes commands @first to @first + @n of @d (user_data: their index)
 * on @r and kicks them: CRCs of its quarters,
 * and, if it is writable, every fourth one a copy of src's quarter into it
 * instead. Returns 0, having recorded in @d what each should give.
 */
static int queue_work(struct __test_metadata *_metadata, struct wd_queue *q,
		      struct region *r, struct region *src, struct wd_desc *d,
		      unsigned int first, unsigned int n)
{
	size_t quarter = r->len / 4;
	unsigned int i, pushed = first;
	int ret;

	n += first;
	for (i = first; i < n; i++) {
		size_t off = (i % 4) * quarter;

		if (region_writable(r) && i % 4 == 3)
			d[i] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, i, src->p + off,
					 r->p + off, quarter, 0);
		else
			d[i] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, i, r->p + off,
					 NULL, quarter, 0);
		d[i].flags = WD_DESC_REGISTERED;
	}
	while (pushed < n) {
		pushed += wd_sq_push(q, d + pushed, n - pushed);
		ret = wd_kick(q);
		if (ret < 0) {
			TH_LOG("KICK: %s", wd_ring_error());
			return ret;
		}
	}
	return 0;
}

/*
 * Reaps @n completions of queue_work()'s commands and checks each: the
 * copies land where the CPU then finds src's data, and the CRCs are of
 * what the region holds, computed by the CPU once everything is done.
 */
static void check_work(struct __test_metadata *_metadata, struct wd_queue *q,
		       struct region *r, struct region *src,
		       const struct wd_desc *d, unsigned int n)
{
	struct wd_cqe *cqe = calloc(n, sizeof(*cqe));
	size_t quarter = r->len / 4;
	char *orig = malloc(quarter);
	uint32_t crc[4], crc_orig3;
	unsigned int i, bad = 0;
	bool copied = false;

	ASSERT_NE(NULL, cqe);
	ASSERT_NE(NULL, orig);
	/* What quarter 3 held before any copy into it. */
	wd_fill(orig, quarter, r->seed, 3 * quarter);
	crc_orig3 = wd_crc32c(0, orig, quarter);
	free(orig);
	ASSERT_EQ(0, wd_reap(q, cqe, n, 120000)) TH_LOG("%s", wd_ring_error());
	for (i = 0; i < n; i++)
		copied |= d[i].opcode == WD_EDU_OP_EMU_MEMCPY;
	/* With copies in the mix, quarter 3 is src's once they ran. */
	if (copied)
		EXPECT_EQ(-1, wd_check(r->p + 3 * quarter, quarter, src->seed,
				       3 * quarter))
			TH_LOG("the device's copies are not where the CPU reads");
	for (i = 0; i < 4; i++)
		crc[i] = wd_crc32c(0, r->p + i * quarter, quarter);
	for (i = 0; i < n; i++) {
		const struct wd_desc *dd = &d[cqe[i].user_data % n];
		unsigned int qi = (cqe[i].user_data % n) % 4;
		bool ok;

		if (cqe[i].status) {
			ok = false;
		} else if (dd->opcode == WD_EDU_OP_EMU_MEMCPY) {
			ok = cqe[i].result == quarter;
		} else if (qi == 3 && copied) {
			/* Before or after the copies: either content. */
			ok = cqe[i].result == crc[3] ||
			     cqe[i].result == crc_orig3;
		} else {
			ok = cqe[i].result == crc[qi];
		}
		if (!ok && !bad++)
			TH_LOG("command %llu: status %d, result %#llx",
			       (unsigned long long)cqe[i].user_data,
			       cqe[i].status,
			       (unsigned long long)cqe[i].result);
	}
	EXPECT_EQ(0U, bad) TH_LOG("%u of %u commands wrong", bad, n);
	free(cqe);
}

/* Holds the bulk engine, so that commands stay queued. */
static void hold(struct __test_metadata *_metadata, struct _test_data_mmp *self,
		 bool on)
{
	ASSERT_EQ(0, wd_engine_hold(&self->devs[0], "bulk", on))
		TH_LOG("hold_bulk: is the edu driver's debugfs there?");
	self->held = on;
}

/*
 * move_pages() of every page of the buffer to the other node, and back:
 * with the buffer idle, with QUEUED commands queued behind a held engine,
 * and while commands run. It returns every time, having moved every page,
 * and every command's result is right.
 */
TEST_F_TIMEOUT(mmp, move_pages, 300)
{
	struct wd_desc *d = calloc(QUEUED, sizeof(*d));
	struct move_arg m = { .p = self->r.p, .len = self->r.len };
	long moved, pages = self->r.len / page_size();
	int node, i;

	ASSERT_NE(NULL, d);
	if (self->nodes < 2)
		SKIP(return, "one NUMA node: nothing to migrate to");
	node = page_node(self->r.p);
	ASSERT_LE(0, node);

	/* Idle. */
	m.node = !node;
	ASSERT_TRUE(bounded(move_fn, &m, &moved)) TH_LOG("move_pages is stuck");
	EXPECT_EQ(pages, moved);
	total_migrated += moved > 0 ? moved : 0;
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				0, 8));
	check_work(_metadata, &self->q, &self->r, &self->src, d, 8);

	/* Queued: move_pages() does not wait for commands that hold nothing. */
	hold(_metadata, self, true);
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				0, QUEUED));
	m.node = node;
	EXPECT_TRUE(bounded(move_fn, &m, &moved))
		TH_LOG("move_pages waited for queued commands");
	EXPECT_EQ(pages, moved);
	total_migrated += moved > 0 ? moved : 0;
	EXPECT_TRUE(wd_cq_quiet(&self->q, 50)) TH_LOG("a held engine ran");
	hold(_metadata, self, false);
	check_work(_metadata, &self->q, &self->r, &self->src, d, QUEUED);

	/* Running: back and forth while the engine works on the buffer. */
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				0, QUEUED));
	for (i = 0; i < 4 && wd_cq_count(&self->q) < QUEUED; i++) {
		m.node = i % 2 ? node : !node;
		EXPECT_TRUE(bounded(move_fn, &m, &moved))
			TH_LOG("move_pages is stuck with commands running");
		total_migrated += moved > 0 ? moved : 0;
	}
	check_work(_metadata, &self->q, &self->r, &self->src, d, QUEUED);
	TH_LOG("mm-progress: %s: %ld pages migrated by move_pages so far",
	       kind_names[variant->kind], total_migrated);
	free(d);
}

struct mbind_arg {
	char *p;
	size_t len;
	int node;
};

static long mbind_fn(void *p)
{
	struct mbind_arg *a = p;
	unsigned long mask = 1UL << a->node;

	if (syscall(SYS_mbind, a->p, a->len, MPOL_BIND, &mask, 64,
		    MPOL_MF_MOVE | MPOL_MF_STRICT))
		return -errno;
	return 0;
}

/* mbind(MPOL_MF_MOVE) of the buffer while commands are queued on it. */
TEST_F_TIMEOUT(mmp, mbind_move, 300)
{
	struct wd_desc *d = calloc(QUEUED, sizeof(*d));
	struct mbind_arg a = { .p = self->r.p, .len = self->r.len };
	long ret = -1, on = 0;
	size_t i;
	int node;

	ASSERT_NE(NULL, d);
	if (self->nodes < 2)
		SKIP(return, "one NUMA node: nothing to migrate to");
	node = page_node(self->r.p);
	ASSERT_LE(0, node);
	a.node = !node;
	hold(_metadata, self, true);
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				0, QUEUED));
	EXPECT_TRUE(bounded(mbind_fn, &a, &ret))
		TH_LOG("mbind waited for queued commands");
	EXPECT_EQ(0, ret) TH_LOG("mbind: %s", strerror(-ret));
	for (i = 0; i < self->r.len; i += page_size())
		on += page_node(self->r.p + i) == a.node;
	EXPECT_EQ((long)(self->r.len / page_size()), on);
	total_migrated += on;
	hold(_metadata, self, false);
	check_work(_metadata, &self->q, &self->r, &self->src, d, QUEUED);
	TH_LOG("mm-progress: %s: %ld pages migrated by mbind", kind_names[variant->kind], on);
	free(d);
}

static long compact_fn(void *p)
{
	(void)p;
	return wd_write_file("/proc/sys/vm/compact_memory", "1");
}

/* Compaction of all memory, with commands queued and then running. */
TEST_F_TIMEOUT(mmp, compaction, 300)
{
	struct wd_desc *d = calloc(QUEUED, sizeof(*d));
	long long mig0 = vmstat("pgmigrate_success");
	long long scan0 = vmstat("compact_migrate_scanned");
	long ret = -1;

	ASSERT_NE(NULL, d);
	hold(_metadata, self, true);
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				0, QUEUED / 2));
	EXPECT_TRUE(bounded(compact_fn, NULL, &ret))
		TH_LOG("compaction waited for queued commands");
	EXPECT_EQ(0, ret);
	hold(_metadata, self, false);
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				QUEUED / 2, QUEUED / 2));
	EXPECT_TRUE(bounded(compact_fn, NULL, &ret))
		TH_LOG("compaction is stuck with commands running");
	check_work(_metadata, &self->q, &self->r, &self->src, d, QUEUED);
	EXPECT_LT(scan0, vmstat("compact_migrate_scanned"))
		TH_LOG("compaction scanned nothing");
	TH_LOG("mm-progress: %s: 2 compactions, %lld pages migrated, %lld scanned",
	       kind_names[variant->kind], vmstat("pgmigrate_success") - mig0,
	       vmstat("compact_migrate_scanned") - scan0);
	free(d);
}

struct prot_arg {
	char *p;
	size_t len;
};

static long munmap_fn(void *p)
{
	struct prot_arg *a = p;

	return munmap(a->p, a->len) ? -errno : 0;
}

static long mprotect_fn(void *p)
{
	struct prot_arg *a = p;
	int i;

	for (i = 0; i < 20; i++)
		if (mprotect(a->p, a->len, i % 2 ? PROT_READ | PROT_WRITE :
						   PROT_READ))
			return -errno;
	return 0;
}

/*
 * mprotect() back and forth with commands queued: it never waits for them,
 * and they run on the same pages afterwards.
 */
TEST_F_TIMEOUT(mmp, mprotect_queued, 300)
{
	struct wd_desc *d = calloc(QUEUED, sizeof(*d));
	struct prot_arg a = { .p = self->r.p, .len = self->r.len };
	long ret = -1;

	ASSERT_NE(NULL, d);
	hold(_metadata, self, true);
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				0, QUEUED));
	EXPECT_TRUE(bounded(mprotect_fn, &a, &ret))
		TH_LOG("mprotect waited for queued commands");
	EXPECT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	/* The last mprotect() left it writable, as it was registered. */
	hold(_metadata, self, false);
	check_work(_metadata, &self->q, &self->r, &self->src, d, QUEUED);
	free(d);
}

static long drop_caches_fn(void *p)
{
	(void)p;
	sync();
	return wd_write_file("/proc/sys/vm/drop_caches", "3");
}

/* drop_caches with commands queued: returns, and they run. */
TEST_F_TIMEOUT(mmp, drop_caches, 300)
{
	struct wd_desc *d = calloc(QUEUED, sizeof(*d));
	long ret = -1;

	ASSERT_NE(NULL, d);
	hold(_metadata, self, true);
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				0, QUEUED));
	EXPECT_TRUE(bounded(drop_caches_fn, NULL, &ret))
		TH_LOG("drop_caches waited for queued commands");
	EXPECT_EQ(0, ret);
	hold(_metadata, self, false);
	check_work(_metadata, &self->q, &self->r, &self->src, d, QUEUED);
	free(d);
}

struct pageout_arg {
	char *p;
	size_t len;
};

static long pageout_fn(void *p)
{
	struct pageout_arg *a = p;

	return madvise(a->p, a->len, MADV_PAGEOUT) ? -errno : 0;
}

/*
 * MADV_PAGEOUT of the buffer with commands queued: mm reclaims it (to swap,
 * or back to the file) while the device's work waits, and the work then
 * finds the data again.
 */
TEST_F_TIMEOUT(mmp, pageout_queued, 300)
{
	struct wd_desc *d = calloc(QUEUED, sizeof(*d));
	struct pageout_arg a = { .p = self->r.p, .len = self->r.len };
	long long swapped0 = vmstat("pswpout");
	long ret = -1;

	ASSERT_NE(NULL, d);
	hold(_metadata, self, true);
	ASSERT_EQ(0, queue_work(_metadata, &self->q, &self->r, &self->src, d,
				0, QUEUED));
	EXPECT_TRUE(bounded(pageout_fn, &a, &ret))
		TH_LOG("MADV_PAGEOUT waited for queued commands");
	EXPECT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	hold(_metadata, self, false);
	check_work(_metadata, &self->q, &self->r, &self->src, d, QUEUED);
	EXPECT_EQ(-1, wd_check(self->r.p, self->r.len / 2, self->r.seed, 0));
	TH_LOG("mm-progress: %s: MADV_PAGEOUT, %lld pages swapped out",
	       kind_names[variant->kind], vmstat("pswpout") - swapped0);
	free(d);
}

FIXTURE(mmx) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	struct wd_queue q;
	bool held;
};

FIXTURE_SETUP(mmx)
{
	wd_queue_init(&self->q);
	WD_SETUP_EDU_QUEUE(self->devs, self->n, &self->q);
}

FIXTURE_TEARDOWN(mmx)
{
	if (self->held)
		wd_engine_hold(&self->devs[0], "bulk", false);
	wd_queue_close(&self->q);
}

static void holdx(struct __test_metadata *_metadata, struct _test_data_mmx *self,
		  bool on)
{
	ASSERT_EQ(0, wd_engine_hold(&self->devs[0], "bulk", on))
		TH_LOG("hold_bulk: is the edu driver's debugfs there?");
	self->held = on;
}

/* One command, synchronously; its status, and its result in *@res. */
static int run_one(struct __test_metadata *_metadata, struct wd_queue *q,
		   struct wd_desc d, uint64_t *res)
{
	struct wd_cqe cqe;

	EXPECT_EQ(0, wd_run1(q, &d, &cqe)) TH_LOG("%s", wd_ring_error());
	if (res)
		*res = cqe.result;
	return cqe.status;
}

static int copy(struct __test_metadata *_metadata, struct wd_queue *q,
		const void *src, void *dst, size_t len)
{
	return run_one(_metadata, q, wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 1, src,
					       dst, len, 0), NULL);
}

#define KSM "/sys/kernel/mm/ksm/"

/*
 * KSM merges identical pages of registered buffers while commands are
 * queued on them, and keeps scanning (full_scans advances) with the
 * engine held; a command that then writes a merged buffer gets its own
 * pages (copy-on-write), and every result is right.
 */
TEST_F_TIMEOUT(mmx, ksm, 300)
{
	const size_t len = 2 * MiB, pages = len / page_size();
	struct wd_desc d[QUEUED];
	struct wd_cqe cqe[QUEUED];
	long long scans0, merged = 0, m;
	uint32_t ha, hb, crc;
	char *a, *b, *ref;
	unsigned int i;
	size_t off;

	a = wd_alloc(len);
	b = wd_alloc(len);
	ref = wd_alloc(len);
	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_NE(NULL, ref);
	/* Every page of a and b alike: all of them can merge. */
	for (off = 0; off < len; off += page_size()) {
		wd_fill(a + off, page_size(), 0x6b, 0);
		wd_fill(b + off, page_size(), 0x6b, 0);
	}
	wd_fill(ref, len, 0x6c, 0);
	crc = wd_crc32c(0, a, len);
	ASSERT_EQ(0, madvise(a, len, MADV_MERGEABLE));
	ASSERT_EQ(0, madvise(b, len, MADV_MERGEABLE));
	ASSERT_EQ(0, wd_register(self->q.fd, a, len, 0, &ha));
	ASSERT_EQ(0, wd_register(self->q.fd, b, len, WD_REGISTER_WRITE, &hb));

	ASSERT_EQ(0, write_num(KSM "pages_to_scan", 4000));
	ASSERT_EQ(0, write_num(KSM "sleep_millisecs", 0));
	scans0 = read_num(KSM "full_scans");
	ASSERT_LE(0, scans0);
	holdx(_metadata, self, true);
	for (i = 0; i < QUEUED - 1; i++) {
		d[i] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, i, i % 2 ? b : a, NULL,
				 len, 0);
		d[i].flags = WD_DESC_REGISTERED;
	}
	d[i] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, i, ref, b, len, 0);
	ASSERT_EQ((unsigned int)QUEUED, wd_sq_push(&self->q, d, QUEUED));
	ASSERT_EQ(QUEUED, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, write_num(KSM "run", 1));
	/* ksmd merges the held buffers, and goes on scanning. */
	EXPECT_TRUE(WD_WAIT_FOR((m = read_num("/proc/self/ksm_merging_pages"),
				 merged = m > merged ? m : merged,
				 merged >= (long long)pages &&
				 read_num(KSM "full_scans") >= scans0 + 3),
				120000))
		TH_LOG("%lld of %zu pages merged, full_scans %lld -> %lld",
		       merged, 2 * pages, scans0, read_num(KSM "full_scans"));
	EXPECT_TRUE(wd_cq_quiet(&self->q, 50));
	holdx(_metadata, self, false);
	ASSERT_EQ(0, wd_reap(&self->q, cqe, QUEUED, 120000))
		TH_LOG("%s", wd_ring_error());
	for (i = 0; i < QUEUED; i++) {
		EXPECT_EQ(0, cqe[i].status);
		if (cqe[i].user_data < QUEUED - 1 && cqe[i].user_data % 2 == 0)
			EXPECT_EQ(crc, cqe[i].result);
	}
	/* The copy broke b's sharing; a kept its content. */
	EXPECT_EQ(-1, wd_check(b, len, 0x6c, 0));
	EXPECT_EQ(crc, wd_crc32c(0, a, len));
	TH_LOG("mm-progress: ksm: %lld pages of registered buffers merged with %u commands queued, full_scans %lld -> %lld",
	       merged, QUEUED, scans0, read_num(KSM "full_scans"));
	ASSERT_EQ(0, write_num(KSM "run", 2));
	write_num(KSM "sleep_millisecs", 20);
	EXPECT_EQ(0, wd_unregister(self->q.fd, ha));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hb));
	write_num(KSM "run", 0);
	munmap(a, len);
	munmap(b, len);
	munmap(ref, len);
}

/*
 * Registered memory that mm finds clean after the device wrote it: an
 * anonymous buffer after MADV_FREE and a shmem one that was only
 * read-faulted, both written by the device from src, with QUEUED CRCs of
 * them queued behind the held engine.
 */
struct clean_pair {
	char *src, *anon, *shm;
	size_t len;
	int fd;
	uint32_t ha, hs, crc;
	int seed;
	struct wd_desc d[QUEUED];
	struct wd_cqe cqe[QUEUED];
};

static void clean_pair_queue(struct __test_metadata *_metadata,
			     struct _test_data_mmx *self, struct clean_pair *cp,
			     size_t len, int seed, const char *name)
{
	unsigned int i;
	size_t off;

	cp->len = len;
	cp->seed = seed;
	cp->src = wd_alloc(len);
	cp->anon = wd_alloc(len);
	ASSERT_NE(NULL, cp->src);
	ASSERT_NE(NULL, cp->anon);
	wd_fill(cp->src, len, seed, 0);
	wd_fill(cp->anon, len, seed + 1, 0);
	cp->fd = memfd_create(name, MFD_CLOEXEC);
	ASSERT_LE(0, cp->fd);
	ASSERT_EQ(0, ftruncate(cp->fd, len));
	cp->shm = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, cp->fd,
		       0);
	ASSERT_NE(MAP_FAILED, cp->shm);
	/* Read-faulted only: clean zero pages in the page cache. */
	for (off = 0; off < len; off += page_size())
		(void)wd_read32(cp->shm + off);
	ASSERT_EQ(0, madvise(cp->anon, len, MADV_FREE));
	ASSERT_EQ(0, wd_register(self->q.fd, cp->anon, len, WD_REGISTER_WRITE,
				 &cp->ha));
	ASSERT_EQ(0, wd_register(self->q.fd, cp->shm, len, WD_REGISTER_WRITE,
				 &cp->hs));
	/* The device writes both; nothing else tells mm they are dirty. */
	EXPECT_EQ(0, copy(_metadata, &self->q, cp->src, cp->anon, len));
	EXPECT_EQ(0, copy(_metadata, &self->q, cp->src, cp->shm, len));
	cp->crc = wd_crc32c(0, cp->src, len);

	holdx(_metadata, self, true);
	for (i = 0; i < QUEUED; i++) {
		cp->d[i] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, i,
				     i % 2 ? cp->shm : cp->anon, NULL, len, 0);
		cp->d[i].flags = WD_DESC_REGISTERED;
	}
	ASSERT_EQ((unsigned int)QUEUED, wd_sq_push(&self->q, cp->d, QUEUED));
	ASSERT_EQ(QUEUED, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
}

/*
 * Releases the engine: every queued CRC finds the device's data, and so
 * does the CPU, whatever reclaim did meanwhile. Then lets the memory go.
 */
static void clean_pair_check(struct __test_metadata *_metadata,
			     struct _test_data_mmx *self, struct clean_pair *cp)
{
	unsigned int i;

	holdx(_metadata, self, false);
	ASSERT_EQ(0, wd_reap(&self->q, cp->cqe, QUEUED, 120000))
		TH_LOG("%s", wd_ring_error());
	for (i = 0; i < QUEUED; i++) {
		EXPECT_EQ(0, cp->cqe[i].status);
		EXPECT_EQ(cp->crc, cp->cqe[i].result)
			TH_LOG("command %u read back other data", i);
	}
	EXPECT_EQ(-1, wd_check(cp->anon, cp->len, cp->seed, 0))
		TH_LOG("the device's writes to MADV_FREE memory were dropped");
	EXPECT_EQ(-1, wd_check(cp->shm, cp->len, cp->seed, 0))
		TH_LOG("the device's writes to clean shmem were dropped");
	EXPECT_EQ(0, wd_unregister(self->q.fd, cp->ha));
	EXPECT_EQ(0, wd_unregister(self->q.fd, cp->hs));
	munmap(cp->shm, cp->len);
	close(cp->fd);
	munmap(cp->anon, cp->len);
	munmap(cp->src, cp->len);
}

/*
 * Pages that mm finds clean, and could drop without writing them out,
 * after the device wrote them: anonymous memory after MADV_FREE, and shmem
 * that was only read-faulted. MADV_PAGEOUT then reclaims them with
 * commands queued, and the device's data must come back, not zeroes.
 */
TEST_F_TIMEOUT(mmx, pageout_clean_pages, 300)
{
	struct clean_pair cp;
	struct pageout_arg pa, ps;
	long ret = -1;

	clean_pair_queue(_metadata, self, &cp, 1 * MiB, 0x70, "wd-clean");
	pa = (struct pageout_arg){ .p = cp.anon, .len = cp.len };
	ps = (struct pageout_arg){ .p = cp.shm, .len = cp.len };
	EXPECT_TRUE(bounded(pageout_fn, &pa, &ret))
		TH_LOG("MADV_PAGEOUT of clean anonymous pages is stuck");
	EXPECT_EQ(0, ret);
	EXPECT_TRUE(bounded(pageout_fn, &ps, &ret))
		TH_LOG("MADV_PAGEOUT of clean shmem is stuck");
	EXPECT_EQ(0, ret);
	clean_pair_check(_metadata, self, &cp);
}

/* Runs in a memory cgroup of @limit bytes: see memcg_reclaim. */
static int memcg_child(const struct wd_dev *dev, size_t len)
{
	struct wd_queue q;
	struct wd_desc d[QUEUED];
	struct wd_cqe cqe[QUEUED];
	const size_t part = len / QUEUED;
	uint32_t h, crc[QUEUED];
	unsigned int i;
	char *p;
	int fd;

	wd_queue_init(&q);
	if (wd_queue_open(&q, dev, 0))
		return 10;
	fd = memfd_create("wd-memcg", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, len))
		return 11;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 12;
	/* More than the limit: filling it swaps the first part out. */
	wd_fill(p, len, 0x72, 0);
	for (i = 0; i < QUEUED; i++)
		crc[i] = wd_crc32c(0, p + i * part, part);
	/*
	 * Reclaim in the cgroup takes pages while REGISTER looks them up:
	 * EAGAIN (they kept changing, a second with no progress) asks to
	 * try again.
	 */
	if (wd_register_retry(q.fd, p, len, WD_REGISTER_WRITE, &h, 21, NULL))
		return 100 + errno;	/* 111: EAGAIN, 112: ENOMEM */
	if (wd_engine_hold(dev, "bulk", true))
		return 14;
	for (i = 0; i < QUEUED; i++) {
		/* Each command its own part: the buffer is read once. */
		d[i] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, i, p + i * part, NULL,
				 part, 0);
		d[i].flags = WD_DESC_REGISTERED;
	}
	if (wd_sq_push(&q, d, QUEUED) != QUEUED || wd_kick(&q) != QUEUED)
		return 15;
	/* Touch it all again: reclaim within the cgroup, registered pages too. */
	for (i = 0; i < 2; i++)
		if (wd_check(p, len, 0x72, 0) != -1)
			return 16;
	if (wd_engine_hold(dev, "bulk", false))
		return 17;
	if (wd_reap(&q, cqe, QUEUED, 120000))
		return 18;
	for (i = 0; i < QUEUED; i++) {
		struct wd_cqe *c = &cqe[i];

		if (c->user_data >= QUEUED || c->status ||
		    c->result != crc[c->user_data]) {
			/* -EAGAIN: the part could not be made resident. */
			fprintf(stderr, "# memcg: command %llu: status %d\n",
				(unsigned long long)c->user_data, c->status);
			return 19;
		}
	}
	if (wd_check(p, len, 0x72, 0) != -1)
		return 20;
	wd_unregister(q.fd, h);
	wd_queue_close(&q);
	return 0;
}

/*
 * shmem reclaim under a memory cgroup limit: a process whose registered
 * memfd is three times its limit, with commands queued on it, keeps
 * running; the pages are swapped out and in under the device's queued
 * work, and every result is right.
 */
TEST_F_TIMEOUT(mmx, memcg_reclaim, 300)
{
	const size_t limit = 16 * MiB, len = 48 * MiB;
	char cg[128], path[192];
	long long swapped0 = vmstat("pswpout");
	int status = -1;
	pid_t pid;

	snprintf(cg, sizeof(cg), "/sys/fs/cgroup/wd-mm-%d", getpid());
	ASSERT_EQ(0, mkdir(cg, 0755)) TH_LOG("%s: %s (cgroup v2 mounted?)", cg,
					     strerror(errno));
	snprintf(path, sizeof(path), "%s/memory.max", cg);
	ASSERT_EQ(0, write_num(path, limit));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
		if (write_num(path, getpid()))
			_exit(9);
		_exit(memcg_child(&self->devs[0], len));
	}
	EXPECT_TRUE(WD_WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, 240000))
		TH_LOG("the limited process did not finish");
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("child status %#x", status);
	wd_engine_hold(&self->devs[0], "bulk", false);
	TH_LOG("mm-progress: memcg: %lld pages swapped out during the run",
	       vmstat("pswpout") - swapped0);
	rmdir(cg);
}

/* The node of the calling CPU's memory, and how much of it is free. */
static long long node_free_kb(int node)
{
	char path[96], line[160];
	long long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo",
		 node);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *s = strstr(line, "MemFree:");

		if (s)
			kb = strtoll(s + 8, NULL, 10);
	}
	fclose(f);
	return kb;
}

/*
 * Real memory pressure from another process: a hog bound to the node of
 * the registered buffers takes nearly all of it, so that kswapd reclaims
 * them (clean shmem, and anonymous memory after MADV_FREE that the device
 * wrote) with commands queued. Everything finishes, and the data is the
 * device's.
 */
TEST_F_TIMEOUT(mmx, kswapd_pressure, 300)
{
	long long kswapd0 = vmstat("pgscan_kswapd"), free_kb;
	struct clean_pair cp;
	int node, status = -1;
	pid_t pid;

	clean_pair_queue(_metadata, self, &cp, 8 * MiB, 0x73, "wd-kswapd");
	node = page_node(cp.shm);
	ASSERT_LE(0, node);

	free_kb = node_free_kb(node);
	ASSERT_LT(64 * 1024LL, free_kb);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		unsigned long mask = 1UL << node;
		/* More than is free: the node must reclaim to satisfy it. */
		size_t hog = (free_kb + 24 * 1024) * KiB, off;
		char *p;

		if (syscall(SYS_set_mempolicy, MPOL_BIND, &mask, 64))
			_exit(2);
		p = mmap(NULL, hog, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			_exit(3);
		for (off = 0; off < hog; off += page_size())
			p[off] = 1;
		_exit(0);
	}
	EXPECT_TRUE(WD_WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, 240000))
		TH_LOG("the hog did not finish");
	EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("hog status %#x", status);
	clean_pair_check(_metadata, self, &cp);
	EXPECT_LT(kswapd0, vmstat("pgscan_kswapd")) TH_LOG("kswapd never ran");
	TH_LOG("mm-progress: kswapd: %lld pages scanned by kswapd on node %d",
	       vmstat("pgscan_kswapd") - kswapd0, node);
}

/*
 * Another process truncates and punches a hole in a memfd that the owner
 * registered, with the owner's commands queued behind a held engine: it
 * waits for none of them. The commands then see the file as it is: zeroes
 * in the hole, -EFAULT past the end.
 */
TEST_F_TIMEOUT(mmx, truncate_by_other_process, 120)
{
	const size_t len = 4 * MiB, part = MiB;
	struct wd_desc d[3 * 10];
	struct wd_cqe cqe[3 * 10];
	uint32_t h, crc_data, crc_zero;
	char *p, *zero;
	unsigned int i;
	int fd, status = -1;
	pid_t pid;

	zero = calloc(1, part);
	ASSERT_NE(NULL, zero);
	crc_zero = wd_crc32c(0, zero, part);
	fd = memfd_create("wd-trunc", 0);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, len));
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	wd_fill(p, len, 0x74, 0);
	crc_data = wd_crc32c(0, p + part, part);
	ASSERT_EQ(0, wd_register(self->q.fd, p, len, 0, &h));
	holdx(_metadata, self, true);
	for (i = 0; i < 30; i++) {
		/* Quarters 0 (punched), 1 (kept), 3 (truncated away). */
		size_t off = (i % 3 == 2 ? 3 : i % 3) * part;

		d[i] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, i, p + off, NULL, part,
				 0);
		d[i].flags = WD_DESC_REGISTERED;
	}
	ASSERT_EQ(30U, wd_sq_push(&self->q, d, 30));
	ASSERT_EQ(30, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      part))
			_exit(2);
		if (ftruncate(fd, 3 * part))
			_exit(3);
		_exit(0);
	}
	EXPECT_TRUE(WD_WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, 20000))
		TH_LOG("the other process waited for the owner's queued commands");
	EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("status %#x", status);
	holdx(_metadata, self, false);
	ASSERT_EQ(0, wd_reap(&self->q, cqe, 30, 60000)) TH_LOG("%s", wd_ring_error());
	for (i = 0; i < 30; i++) {
		unsigned int k = cqe[i].user_data % 3;

		if (k == 0) {
			EXPECT_EQ(0, cqe[i].status);
			EXPECT_EQ(crc_zero, cqe[i].result) TH_LOG("stale hole");
		} else if (k == 1) {
			EXPECT_EQ(0, cqe[i].status);
			EXPECT_EQ(crc_data, cqe[i].result);
		} else {
			EXPECT_EQ(-EFAULT, cqe[i].status)
				TH_LOG("read past the end of the file");
		}
	}
	EXPECT_EQ(0, wd_unregister(self->q.fd, h));
	munmap(p, len);
	close(fd);
	free(zero);
}

struct unreg_arg {
	int fd;
	uint32_t handle;
	long ret;
	int done;
};

static void *unreg_thread(void *p)
{
	struct unreg_arg *a = p;

	a->ret = wd_unregister(a->fd, a->handle) ? -errno : 0;
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * UNREGISTER of one buffer, racing munmap() of another that has work
 * queued behind it, deterministically: with the engine held, UNREGISTER
 * of A waits for A's queued command, and munmap() of B must still return;
 * released, A's command runs and UNREGISTER returns, and B's fails with
 * -EFAULT. Before the rework, the notifier could be removed from the
 * engine's own work item, which munmap's invalidation waited for.
 */
TEST_F_TIMEOUT(mmx, unregister_races_munmap, 120)
{
	const size_t len = 256 * KiB;
	struct unreg_arg ua = { .fd = self->q.fd };
	struct wd_desc d[2];
	struct wd_cqe cqe[2];
	char *a, *b;
	uint32_t hb;
	pthread_t t;
	unsigned int i;

	a = wd_alloc(len);
	b = wd_alloc(len);
	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	wd_fill(a, len, 0x75, 0);
	wd_fill(b, len, 0x76, 0);
	ASSERT_EQ(0, wd_register(self->q.fd, a, len, 0, &ua.handle));
	ASSERT_EQ(0, wd_register(self->q.fd, b, len, 0, &hb));
	holdx(_metadata, self, true);
	d[0] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, a, NULL, len, 0);
	d[1] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 1, b, NULL, len, 0);
	d[0].flags = d[1].flags = WD_DESC_REGISTERED;
	ASSERT_EQ(2U, wd_sq_push(&self->q, d, 2));
	ASSERT_EQ(2, wd_kick(&self->q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, pthread_create(&t, NULL, unreg_thread, &ua));
	/* UNREGISTER waits for A's command, which the held engine keeps. */
	usleep(200 * 1000);
	EXPECT_FALSE(__atomic_load_n(&ua.done, __ATOMIC_ACQUIRE))
		TH_LOG("UNREGISTER did not wait for the command using it");
	{
		struct prot_arg m = { .p = b, .len = len };
		long ret = -1;

		EXPECT_TRUE(bounded(munmap_fn, &m, &ret))
			TH_LOG("munmap of B deadlocked behind UNREGISTER of A");
		EXPECT_EQ(0, ret);
	}
	holdx(_metadata, self, false);
	EXPECT_TRUE(WD_WAIT_FOR(__atomic_load_n(&ua.done, __ATOMIC_ACQUIRE),
				BOUND_MS))
		TH_LOG("UNREGISTER never returned");
	pthread_join(t, NULL);
	EXPECT_EQ(0, ua.ret);
	ASSERT_EQ(0, wd_reap(&self->q, cqe, 2, 60000)) TH_LOG("%s", wd_ring_error());
	for (i = 0; i < 2; i++) {
		if (cqe[i].user_data == 0) {
			EXPECT_EQ(0, cqe[i].status);
			EXPECT_EQ(wd_crc32c(0, a, len), cqe[i].result);
		} else {
			EXPECT_EQ(-EFAULT, cqe[i].status);
		}
	}
	EXPECT_EQ(0, wd_unregister(self->q.fd, hb));
	munmap(a, len);
}

TEST_HARNESS_MAIN
