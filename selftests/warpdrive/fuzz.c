// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive fuzzer: a seeded, bounded stream of hostile input at the queue
 * interface, each result checked against what the UAPI header promises.
 *
 *  - ioctls: random command numbers, and the real ioctls with garbage
 *    arguments and bad pointers; REGISTER and UNREGISTER against a model
 *    of the registered buffers, the last quarter under RLIMIT_MEMLOCK;
 *  - mmap: random region offsets, lengths, protections and flags, and
 *    munmap, mprotect, mremap and MAP_FIXED on what got mapped;
 *  - ring: batches of valid and malformed descriptors, every one of them
 *    expected to complete exactly once with the documented status, valid
 *    ones with the right data; corrupt ring indices; PUT_Q with commands
 *    in flight;
 *  - races: threads that KICK, REGISTER, UNREGISTER, munmap buffers and
 *    rings, and close queues at once, for a bounded time;
 *  - recovers: queues opened, used, stopped, unmapped and closed in random
 *    order with commands in flight; then the totals of the whole run.
 *
 * Each test ends with the machine as it found it: no queue left, VmPin and
 * available_instances back to their start values, and a fresh queue on
 * every device that copies, computes factorials and CRCs correctly.
 *
 * WD_FUZZ_SEED=<n> (decimal or 0x hex) replays a run: each test derives its
 * own stream from it, so a test replays alone too. The races test also
 * depends on timing, so it replays only roughly.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "wd_ring.h"

#define KiB		1024UL
#define MiB		(1024UL * KiB)

#define DEFAULT_SEED	0x5744465a5a0001ULL	/* "WDFZZ" */
#define MAX_LOGGED	16

/*
 * Operations per test. The fixed counts alone add up to the 100,000 the
 * fuzzer promises per run, in every kernel profile; the races test runs
 * for a bounded time on top.
 */
#define IOCTL_OPS	40000
#define MMAP_OPS	12000
#define RING_DESCS	40000
#define RECOVER_OPS	10000
#define RACE_MS		4000
#define MIN_TOTAL_OPS	100000


/* ---- the run's totals, shared by the tests' processes ---- */

enum { T_IOCTLS, T_MMAP, T_RING, T_RACES, T_RECOVERS, NR_TESTS };

static const char *const test_names[NR_TESTS] = {
	"ioctls", "mmap", "ring", "races", "recovers",
};

struct totals {
	uint64_t ops[NR_TESTS];
	uint32_t ran;		/* a bit per test that finished its loop */
};

/*
 * Each test runs in a process of its own: the totals live in a shared
 * page that the harness's process maps before it forks any of them.
 */
static struct totals *totals;

__attribute__((constructor)) static void totals_init(void)
{
	void *p = mmap(NULL, sizeof(*totals), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	totals = p == MAP_FAILED ? NULL : p;
}

/* ---- seeded randomness ---- */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

struct rng {
	uint64_t s;
};

static void rng_init(struct rng *r, uint64_t seed, uint64_t stream)
{
	r->s = splitmix64(seed ^ splitmix64(stream));
	if (!r->s)
		r->s = 1;
}

/* xorshift64*: small, fast, and the same sequence everywhere. */
static uint64_t rnd(struct rng *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static uint64_t below(struct rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

static bool chance(struct rng *r, unsigned int pct)
{
	return below(r, 100) < pct;
}

/* A 64-bit value from the edges more often than not. */
static uint64_t edgy64(struct rng *r)
{
	static const uint64_t edges[] = {
		0, 1, 2, 3, 4, 7, 8, 0xff, 0x1000, 0xfff, 0x7fffffff,
		0x80000000, 0xffffffff, 0x100000000ULL, 1ULL << 62,
		1ULL << 63, ~0ULL, ~0ULL - 1, WD_KERNEL_ADDR,
	};

	switch (below(r, 4)) {
	case 0:
		return edges[below(r, ARRAY_SIZE(edges))];
	case 1:
		return below(r, 1 << 20);
	default:
		return rnd(r);
	}
}

/* WD_FUZZ_SEED, or the default; *@bad if it was set but no number. */
static uint64_t fuzz_seed(bool *bad)
{
	const char *s = getenv("WD_FUZZ_SEED");
	unsigned long long v;
	char *end;

	*bad = false;
	if (!s || !*s)
		return DEFAULT_SEED;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end) {
		*bad = true;
		return DEFAULT_SEED;
	}
	return v;
}

/* ---- errno sets ---- */

typedef uint32_t eset_t;

static const struct {
	int err;
	const char *name;
} errnames[] = {
	{ EINVAL, "EINVAL" }, { EOPNOTSUPP, "EOPNOTSUPP" },
	{ EFAULT, "EFAULT" }, { EACCES, "EACCES" }, { ENOENT, "ENOENT" },
	{ ENOMEM, "ENOMEM" }, { EAGAIN, "EAGAIN" },
	{ ECANCELED, "ECANCELED" }, { ENODEV, "ENODEV" },
	{ ENOTTY, "ENOTTY" }, { EPERM, "EPERM" }, { EEXIST, "EEXIST" },
	{ E2BIG, "E2BIG" }, { ENOSPC, "ENOSPC" }, { EBADF, "EBADF" },
	{ EBUSY, "EBUSY" }, { EOVERFLOW, "EOVERFLOW" },
};

/* The set holding just @err; an errno outside the table is in no set. */
static eset_t E(int err)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(errnames); i++)
		if (errnames[i].err == err)
			return 1U << i;
	return 0;
}

static const char *ename(int err, char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(errnames); i++)
		if (errnames[i].err == err)
			return errnames[i].name;
	snprintf(buf, len, "errno %d", err);
	return buf;
}

static const char *eset_str(eset_t s, char *buf, size_t len)
{
	size_t i, pos = 0;

	buf[0] = 0;
	for (i = 0; i < ARRAY_SIZE(errnames) && pos < len; i++)
		if (s & (1U << i))
			pos += snprintf(buf + pos, len - pos, "%s%s",
					pos ? "|" : "", errnames[i].name);
	if (!pos)
		snprintf(buf, len, "nothing");
	return buf;
}

/* How often each outcome came up: slot 0 is success, then errnames[]. */
typedef uint64_t hist_t[ARRAY_SIZE(errnames) + 2];

static void hist_add(hist_t h, bool failed, int err)
{
	size_t i;

	if (!failed) {
		h[0]++;
		return;
	}
	for (i = 0; i < ARRAY_SIZE(errnames); i++)
		if (errnames[i].err == err)
			break;
	h[1 + i]++;	/* the last slot: any other errno */
}

static const char *hist_str(const hist_t h, char *buf, size_t len)
{
	size_t i, pos = 0;

	buf[0] = 0;
	for (i = 0; i < ARRAY_SIZE(errnames) + 2 && pos < len; i++)
		if (h[i])
			pos += snprintf(buf + pos, len - pos, "%s%s %llu",
					pos ? ", " : "",
					!i ? "ok" : i <= ARRAY_SIZE(errnames) ?
					errnames[i - 1].name : "other",
					(unsigned long long)h[i]);
	return buf;
}

/* ---- findings and counters ---- */

#define MAX_COUNTERS	16

struct fz {
	struct __test_metadata *md;
	int test;
	uint64_t seed;
	struct rng r;
	uint64_t op;		/* the operation running, for reports */
	unsigned int findings;
	pthread_mutex_t log_lock;
	const char *const *names;
	unsigned int ncounters;
	uint64_t count[MAX_COUNTERS];
	uint64_t start_ms;
};

static void fz_init(struct fz *f, struct __test_metadata *md, int test,
		    const char *const *names, unsigned int ncounters)
{
	struct __test_metadata *_metadata = md;
	bool bad;

	memset(f, 0, sizeof(*f));
	f->md = md;
	f->test = test;
	f->seed = fuzz_seed(&bad);
	if (bad)
		TH_LOG("WD_FUZZ_SEED=%s is no number: the default seed it is",
		       getenv("WD_FUZZ_SEED"));
	rng_init(&f->r, f->seed, test + 1);
	pthread_mutex_init(&f->log_lock, NULL);
	f->names = names;
	f->ncounters = ncounters;
	f->start_ms = wd_now_ms();
}

/*
 * Something the kernel did that the UAPI does not allow. Logged with what
 * replays it, counted, and failed at the end of the test, so that one
 * finding does not hide the others.
 */
__printf(2, 3) static void finding(struct fz *f, const char *fmt, ...)
{
	struct __test_metadata *_metadata = f->md;
	unsigned int n;
	char msg[1024];
	va_list ap;

	n = __atomic_fetch_add(&f->findings, 1, __ATOMIC_RELAXED);
	if (n >= MAX_LOGGED)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&f->log_lock);
	TH_LOG("FINDING %u (WD_FUZZ_SEED=%#llx, fuzz.%s, op %llu): %s", n + 1,
	       (unsigned long long)f->seed, test_names[f->test],
	       (unsigned long long)f->op, msg);
	pthread_mutex_unlock(&f->log_lock);
}

/* Whether a call's outcome is allowed: success if @ok, else an errno in @errs. */
static bool allowed(bool failed, int err, bool ok, eset_t errs)
{
	if (!failed)
		return ok;
	return E(err) & errs;
}

/* Reports an outcome that allowed() refused; @what says which call it was. */
static void mismatch(struct fz *f, const char *what, bool failed, int err,
		     bool ok, eset_t errs)
{
	char b1[32], b2[160];

	if (!failed)
		finding(f, "%s succeeded, expected %s", what,
			eset_str(errs, b2, sizeof(b2)));
	else
		finding(f, "%s failed with %s, expected %s%s", what,
			ename(err, b1, sizeof(b1)), ok ? "success or " : "",
			eset_str(errs, b2, sizeof(b2)));
}

/*
 * Logs the seed and the operations per category, adds them to the run's
 * totals, and fails the test if anything was found.
 */
static void summary(struct fz *f)
{
	struct __test_metadata *_metadata = f->md;
	uint64_t total = 0;
	char line[1024];
	size_t pos = 0;
	unsigned int i;

	line[0] = 0;
	for (i = 0; i < f->ncounters; i++) {
		total += f->count[i];
		pos += snprintf(line + pos, sizeof(line) - pos, "%s%s %llu",
				i ? ", " : "", f->names[i],
				(unsigned long long)f->count[i]);
		if (pos >= sizeof(line))
			break;
	}
	TH_LOG("seed %#llx: %llu operations in %llu ms (%s)",
	       (unsigned long long)f->seed, (unsigned long long)total,
	       (unsigned long long)(wd_now_ms() - f->start_ms), line);
	if (totals) {
		__atomic_add_fetch(&totals->ops[f->test], total,
				   __ATOMIC_RELAXED);
		__atomic_or_fetch(&totals->ran, 1U << f->test,
				  __ATOMIC_RELAXED);
	}
	EXPECT_EQ(0U, f->findings)
		TH_LOG("%u findings, the first %u logged above", f->findings,
		       f->findings < MAX_LOGGED ? f->findings : MAX_LOGGED);
}

/* ---- memory helpers ---- */

/* @len bytes of address space that nothing can use: PROT_NONE. */
static char *reserve(size_t len)
{
	void *p = mmap(NULL, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Fresh anonymous memory exactly at @addr, replacing what was there. */
static bool map_fixed(void *addr, size_t len, int prot)
{
	return mmap(addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		    -1, 0) == addr;
}

/* An address below the static binary's text, where nothing is mapped. */
#define LOW_HOLE	0x10000UL

static uintptr_t page_count(uintptr_t addr, uint64_t len, size_t page)
{
	return ((addr + len + page - 1) / page) - addr / page;
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

/* ---- the fixture: the machine's state to come back to ---- */

FIXTURE(fuzz) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	int avail[WD_MAX_DEVS];
	long vmpin;
	size_t page, mmio, dus;
};

FIXTURE_SETUP(fuzz)
{
	int i;

	WD_SETUP_EDU(self->devs, self->n);
	self->page = wd_page_size();
	self->mmio = wd_region_size(&self->devs[0], WD_REGION_MMIO);
	self->dus = wd_region_size(&self->devs[0], WD_REGION_DUS);
	ASSERT_LE(sizeof(struct wd_queue_status), self->mmio);
	ASSERT_LE(2 * self->page, self->dus);
	for (i = 0; i < self->n; i++) {
		self->avail[i] = wd_avail(&self->devs[i]);
		ASSERT_LE(0, self->avail[i])
			TH_LOG("%s: available_instances", self->devs[i].name);
	}
	/* Two queues fuzzed at once, plus one opened and closed meanwhile. */
	ASSERT_LE(3, self->avail[0])
		TH_LOG("%s: %d queues free", self->devs[0].name,
		       self->avail[0]);
	self->vmpin = wd_vmpin_kb();
	ASSERT_LE(0, self->vmpin);
}

FIXTURE_TEARDOWN(fuzz)
{
}

/*
 * A fresh queue on @dev does what it should: a copy at odd offsets, a
 * factorial through the ring and through the ioctl, and a CRC.
 */
static void fresh_queue_works(struct __test_metadata *_metadata,
			      const struct wd_dev *dev, uint64_t seed)
{
	const size_t len = 64 * KiB;
	struct wd_desc d[3];
	struct wd_cqe cqe[3];
	struct wd_queue q;
	char *src, *dst;
	uint32_t res;

	ASSERT_EQ(0, wd_queue_open(&q, dev, 0))
		TH_LOG("%s: %s", dev->name, wd_ring_error());
	src = wd_alloc(len);
	dst = wd_alloc(len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, len, seed, 0);
	memset(dst, 0, len);
	d[0] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, src + 3, dst + 1, len - 7, 0);
	d[1] = wd_mkdesc(WD_EDU_OP_FACTORIAL, 1, NULL, NULL, 0, 12);
	d[2] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 2, src, NULL, len, 0);
	ASSERT_EQ(0, wd_run(&q, d, 3, cqe, WD_WAIT_MS))
		TH_LOG("%s: %s", dev->name, wd_ring_error());
	EXPECT_EQ(0, cqe[0].status);
	EXPECT_EQ(len - 7, cqe[0].result);
	EXPECT_EQ(-1, wd_check(dst + 1, len - 7, seed, 3));
	EXPECT_EQ(0, dst[0]);
	EXPECT_EQ(-1, wd_check_byte(dst + len - 6, 6, 0));
	EXPECT_EQ(0, cqe[1].status);
	EXPECT_EQ(479001600ULL, cqe[1].result);
	EXPECT_EQ(0, cqe[2].status);
	EXPECT_EQ(wd_crc32c(0, src, len), cqe[2].result);
	ASSERT_EQ(0, wd_factorial(q.fd, 10, &res)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(3628800U, res);
	wd_queue_close(&q);
	munmap(src, len);
	munmap(dst, len);
}

/* Whatever a test did, every queue and pin is gone and the devices work. */
static void recovered(struct __test_metadata *_metadata,
		      struct _test_data_fuzz *self, uint64_t seed)
{
	int i;

	for (i = 0; i < self->n; i++)
		EXPECT_TRUE(WD_WAIT_FOR(wd_avail(&self->devs[i]) ==
				     self->avail[i], 5000))
			TH_LOG("%s: available_instances %d, was %d",
			       self->devs[i].name, wd_avail(&self->devs[i]),
			       self->avail[i]);
	EXPECT_TRUE(WD_WAIT_FOR(wd_vmpin_kb() == self->vmpin, 5000))
		TH_LOG("VmPin %ld kB, was %ld kB", wd_vmpin_kb(), self->vmpin);
	for (i = 0; i < self->n; i++)
		fresh_queue_works(_metadata, &self->devs[i], seed + i);
	for (i = 0; i < self->n; i++)
		EXPECT_EQ(self->avail[i], wd_avail(&self->devs[i]))
			TH_LOG("%s", self->devs[i].name);
	EXPECT_EQ(self->vmpin, wd_vmpin_kb());
}

/* ====================================================================== */
/* fuzz.ioctls                                                            */
/* ====================================================================== */

enum {
	IO_UNKNOWN, IO_WTYPE, IO_REGISTER, IO_UNREGISTER, IO_KICK,
	IO_STARTPUT, IO_FACTORIAL, IO_CHECK, NR_IO
};

static const char *const io_names[NR_IO] = {
	"unknown-cmd", "W-cmd", "register", "unregister", "kick",
	"start/put", "factorial", "checks",
};

/* Where an ioctl's argument points. */
enum {
	PC_GOOD,	/* read-write memory */
	PC_RO,		/* the same bytes, through a read-only mapping */
	PC_NULL, PC_ONE, PC_KERNEL, PC_NONCANON,
	PC_UNMAPPED,	/* a page that was munmapped */
	PC_STRADDLE,	/* runs from read-write memory into PROT_NONE */
	PC_LOW,		/* below the binary, never mapped */
	PC_TOP,		/* wraps around the end of the address space */
	NR_PC
};

static const char *const pc_names[NR_PC] = {
	"good", "read-only", "NULL", "(void *)1", "kernel", "non-canonical",
	"munmapped", "straddling", "low", "top",
};

#define IO_MAX_LIVE	32
#define IO_RW_PAGES	64
#define IO_RO_PAGES	8

struct io_buf {
	uint32_t handle;
	uintptr_t addr, last;
	uint64_t pages;
};

struct io_ctx {
	struct fz *f;
	size_t page;
	struct wd_queue a;	/* the queue fuzzed; not started at first */
	bool started;
	int b_fd;		/* another queue, with buffers of its own */
	uint32_t b_handles[2];
	uint64_t b_pages;
	char *argres;		/* [argw: 2 pages][PROT_NONE page] */
	char *argw, *argr;	/* one memfd, mapped read-write and read-only */
	char *res;		/* the memory registered, within guards */
	size_t res_len;
	char *rw, *ro, *hole;
	struct io_buf live[IO_MAX_LIVE];
	unsigned int nlive;
	uint32_t stale[64];
	unsigned int nstale;
	bool limited;		/* RLIMIT_MEMLOCK applies */
	uint64_t limit_pages;
	long vmpin0;
	hist_t reg_hist;
};

static bool io_hole_unmapped(struct io_ctx *c)
{
	return !wd_is_mapped(c->hole, c->page);
}

/* A pointer of class @pc to @size bytes; *@off is its offset in argw. */
static uintptr_t io_arg(struct io_ctx *c, int pc, size_t size, size_t *off)
{
	struct rng *r = &c->f->r;

	*off = below(r, c->page - size + 1);
	switch (pc) {
	case PC_GOOD:
		return (uintptr_t)c->argw + *off;
	case PC_RO:
		return (uintptr_t)c->argr + *off;
	case PC_NULL:
		return 0;
	case PC_ONE:
		return 1;
	case PC_KERNEL:
		return WD_KERNEL_ADDR + below(r, 1 << 20) * 8;
	case PC_NONCANON:
		return WD_NONCANON_ADDR + below(r, 1 << 20) * 8;
	case PC_UNMAPPED:
		/* Something else may have been mapped there since. */
		if (io_hole_unmapped(c))
			return (uintptr_t)c->hole + *off;
		return LOW_HOLE;
	case PC_STRADDLE:
		return (uintptr_t)c->argw + 2 * c->page - 1 -
		       below(r, size - 1);
	case PC_LOW:
		return LOW_HOLE + below(r, 16) * c->page + *off;
	default:
		return ~0UL - below(r, size - 1);
	}
}

static int io_pick_pc(struct rng *r)
{
	uint64_t x = below(r, 100);

	if (x < 55)
		return PC_GOOD;
	if (x < 65)
		return PC_RO;
	return PC_NULL + below(r, NR_PC - PC_NULL);
}

static bool known_cmd(unsigned int cmd)
{
	return cmd == WD_CMD_START_Q || cmd == WD_CMD_PUT_Q ||
	       cmd == WD_EDU_CMD_FACTORIAL || cmd == WD_IOCTL_REGISTER ||
	       cmd == WD_IOCTL_UNREGISTER || cmd == WD_IOCTL_KICK;
}

/*
 * ioctl types the VFS answers itself, before the driver sees the call
 * (FIFREEZE on the device's file system, for one, is not for a fuzzer).
 */
static bool vfs_type(unsigned int type)
{
	return type == 0x00 || type == 'T' || type == 'f' || type == 'X' ||
	       type == 0x94 || type == 0x15;
}

static unsigned int io_random_cmd(struct rng *r, bool w_type)
{
	static const unsigned int sizes[] = { 0, 4, 8, 16, 24, 32, 4096 };
	unsigned int cmd, nr, size;

	do {
		if (w_type) {
			nr = chance(r, 60) ? below(r, 0x50) : below(r, 256);
			size = chance(r, 60) ?
			       sizes[below(r, ARRAY_SIZE(sizes))] :
			       below(r, _IOC_SIZEMASK + 1);
			cmd = _IOC(below(r, 4), 'W', nr, size);
		} else {
			cmd = rnd(r);
		}
	} while (known_cmd(cmd) || (!w_type && vfs_type(_IOC_TYPE(cmd))));
	return cmd;
}

/* An ioctl nobody defined: ENOTTY or EINVAL, and its argument untouched. */
static void io_unknown(struct io_ctx *c, bool w_type)
{
	struct rng *r = &c->f->r;
	unsigned int cmd = io_random_cmd(r, w_type);
	unsigned char before[64];
	uintptr_t arg;
	size_t off = 0;
	int pc = -1, ret, err;
	char what[160];

	if (chance(r, 20)) {
		arg = edgy64(r);
	} else {
		pc = io_pick_pc(r);
		arg = io_arg(c, pc, sizeof(before), &off);
	}
	memcpy(before, c->argw + off, sizeof(before));
	errno = 0;
	ret = ioctl(c->a.fd, cmd, arg);
	err = errno;
	c->f->count[w_type ? IO_WTYPE : IO_UNKNOWN]++;
	if (!allowed(ret < 0, err, false, E(ENOTTY) | E(EINVAL))) {
		snprintf(what, sizeof(what), "ioctl %#x (arg %#lx, %s)", cmd,
			 (unsigned long)arg, pc < 0 ? "value" : pc_names[pc]);
		mismatch(c->f, what, ret < 0, err, false,
			 E(ENOTTY) | E(EINVAL));
	}
	if (memcmp(before, c->argw + off, sizeof(before))) {
		finding(c->f, "ioctl %#x (arg %#lx) wrote to its argument",
			cmd, (unsigned long)arg);
		memcpy(c->argw + off, before, sizeof(before));
	}
}

/* Pages of the live buffers, all mapped for the device (none pinned). */
static uint64_t io_mapped_pages(struct io_ctx *c)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < c->nlive; i++)
		n += c->live[i].pages;
	return n;
}

static int io_find_live(struct io_ctx *c, uint32_t handle)
{
	unsigned int i;

	for (i = 0; i < c->nlive; i++)
		if (c->live[i].handle == handle)
			return i;
	return -1;
}

static bool io_overlaps(struct io_ctx *c, uintptr_t addr, uintptr_t last)
{
	unsigned int i;

	for (i = 0; i < c->nlive; i++)
		if (addr <= c->live[i].last && c->live[i].addr <= last)
			return true;
	return false;
}

/* The ranges REGISTER is asked for. */
enum {
	R_RW, R_RW_OVER, R_RO, R_HOLE, R_NULL, R_KERNEL, R_NONCANON, R_WRAP,
	R_ZERO, R_BIG, R_1G, R_OVERLAP, NR_R
};

/*
 * Fills @reg with a random request and works out what REGISTER must do
 * with it: *@ok if it must succeed, else the errnos it may fail with.
 */
static void io_gen_register(struct io_ctx *c, struct wd_register *reg,
			    bool *ok, eset_t *errs, uint64_t *pages)
{
	struct rng *r = &c->f->r;
	const uintptr_t rw = (uintptr_t)c->rw, ro = (uintptr_t)c->ro;
	const size_t rw_len = IO_RW_PAGES * c->page;
	const size_t ro_len = IO_RO_PAGES * c->page;
	uintptr_t addr = 0, last;
	uint64_t len = 1;
	bool mapped = false, far = false;
	struct io_buf *b;
	size_t off;

	reg->flags = chance(r, 85) ? (chance(r, 50) ? WD_REGISTER_WRITE : 0) :
		     (uint32_t)rnd(r) | (2U << below(r, 31));
	switch (below(r, NR_R)) {
	case R_RW:
		off = below(r, rw_len);
		addr = rw + off;
		len = 1 + below(r, rw_len - off < 16 * c->page ?
				    rw_len - off : 16 * c->page);
		mapped = true;
		break;
	case R_RW_OVER:
		off = below(r, rw_len);
		addr = rw + off;
		len = rw_len - off + 1 + below(r, 4 * c->page);
		break;
	case R_RO:
		off = below(r, ro_len);
		addr = ro + off;
		len = 1 + below(r, ro_len - off);
		mapped = !(reg->flags & WD_REGISTER_WRITE);
		break;
	case R_HOLE:
		if (!io_hole_unmapped(c))
			break;	/* NULL then */
		off = below(r, c->page);
		addr = (uintptr_t)c->hole + off;
		len = 1 + below(r, c->page - off);
		break;
	case R_NULL:
		len = 1 + below(r, 8 * c->page);
		break;
	case R_KERNEL:
		addr = WD_KERNEL_ADDR + below(r, 1 << 30);
		len = 1 + below(r, MiB);
		break;
	case R_NONCANON:
		addr = WD_NONCANON_ADDR + below(r, 1 << 30);
		len = 1 + below(r, MiB);
		break;
	case R_WRAP:
		len = 2 + below(r, MiB);
		addr = ~0UL - below(r, len - 1);
		break;
	case R_ZERO:
		addr = chance(r, 50) ? rw + below(r, rw_len) : edgy64(r);
		len = 0;
		break;
	case R_BIG:
		addr = rw;
		len = chance(r, 50) ? WD_MAX_BUFFER_SIZE + 1 + below(r, MiB) :
		      edgy64(r) | (1ULL << 63);
		break;
	case R_1G:
		addr = rw + below(r, rw_len);
		len = WD_MAX_BUFFER_SIZE;
		far = true;
		break;
	default:
		if (!c->nlive) {
			addr = rw;
			len = c->page;
			mapped = true;
			break;
		}
		b = &c->live[below(r, c->nlive)];
		addr = b->addr - below(r, 2 * c->page);
		if (addr < rw)
			addr = rw;
		len = b->addr - addr + 1 + below(r, 4 * c->page);
		mapped = addr + len <= rw + rw_len;
		break;
	}
	reg->addr = addr;
	reg->len = len;
	*pages = 0;
	*ok = false;
	if ((reg->flags & ~WD_REGISTER_WRITE) || !len) {
		*errs = E(EINVAL);
		return;
	}
	if (len > WD_MAX_BUFFER_SIZE) {
		*errs = E(E2BIG);
		return;
	}
	/* addr + len must fit too: a range may not end at the very top. */
	if (__builtin_add_overflow(addr, len - 1, &last) || last == UINT64_MAX) {
		*errs = E(EINVAL);
		return;
	}
	if (io_overlaps(c, addr, last)) {
		*errs = E(EEXIST);
		return;
	}
	*pages = page_count(addr, len, c->page);
	*errs = 0;
	/*
	 * Registered memory is mirrored, not pinned: RLIMIT_MEMLOCK does not
	 * apply. A range that runs on past the reservation covers the
	 * queue's own rings, which nothing can mirror: EFAULT as for a hole.
	 */
	if (!mapped || far)
		*errs |= E(EFAULT);
	*ok = !*errs;
}

static void io_register(struct io_ctx *c)
{
	struct rng *r = &c->f->r;
	struct wd_register reg = { 0 }, *out;
	int pc = io_pick_pc(r), ret, err;
	bool ok, content_ok;
	eset_t errs;
	uint64_t pages;
	uintptr_t arg;
	char what[256];
	size_t off;

	io_gen_register(c, &reg, &content_ok, &errs, &pages);
	reg.handle = rnd(r);
	arg = io_arg(c, pc, sizeof(reg), &off);
	if (pc == PC_GOOD || pc == PC_RO) {
		memcpy(c->argw + off, &reg, sizeof(reg));
		/* Read, registered, but the handle cannot be written back. */
		ok = content_ok && pc == PC_GOOD;
		if (content_ok && pc == PC_RO)
			errs = E(EFAULT);
	} else {
		ok = false;
		errs = E(EFAULT);
	}
	errno = 0;
	ret = ioctl(c->a.fd, WD_IOCTL_REGISTER, arg);
	err = errno;
	c->f->count[IO_REGISTER]++;
	hist_add(c->reg_hist, ret < 0, err);
	if (!allowed(ret < 0, err, ok, errs)) {
		snprintf(what, sizeof(what),
			 "REGISTER addr %#llx len %#llx flags %#x (arg %s)%s",
			 (unsigned long long)reg.addr,
			 (unsigned long long)reg.len, reg.flags, pc_names[pc],
			 c->limited ? " under RLIMIT_MEMLOCK" : "");
		mismatch(c->f, what, ret < 0, err, ok, errs);
	}
	if (ret < 0)
		return;
	if (pc != PC_GOOD) {
		/* Registered with a handle nobody knows: the model is lost. */
		finding(c->f, "REGISTER through a %s argument succeeded",
			pc_names[pc]);
		return;
	}
	out = (void *)(c->argw + off);
	if (!out->handle || io_find_live(c, out->handle) >= 0) {
		finding(c->f, "REGISTER returned handle %u, in use or 0",
			out->handle);
		return;
	}
	if (c->nlive == IO_MAX_LIVE || !ok) {
		/* Unexpected success: give it back at once. */
		if (wd_unregister(c->a.fd, out->handle))
			finding(c->f, "UNREGISTER of fresh handle %u: %s",
				out->handle, strerror(errno));
		return;
	}
	c->live[c->nlive++] = (struct io_buf){
		.handle = out->handle,
		.addr = reg.addr,
		.last = reg.addr + reg.len - 1,
		.pages = pages,
	};
}

static void io_forget(struct io_ctx *c, int i)
{
	if (c->nstale < ARRAY_SIZE(c->stale))
		c->stale[c->nstale++] = c->live[i].handle;
	else
		c->stale[below(&c->f->r, c->nstale)] = c->live[i].handle;
	c->live[i] = c->live[--c->nlive];
}

static void io_unregister(struct io_ctx *c)
{
	struct rng *r = &c->f->r;
	int pc = io_pick_pc(r), ret, err, i = -1;
	uint32_t handle;
	uintptr_t arg;
	char what[128];
	eset_t errs;
	size_t off;
	bool ok;

	switch (below(r, 5)) {
	case 0:
	case 1:
		handle = c->nlive ? c->live[below(r, c->nlive)].handle : 1;
		break;
	case 2:
		handle = c->nstale ? c->stale[below(r, c->nstale)] : 0;
		break;
	case 3:
		handle = c->b_handles[below(r, 2)];
		break;
	default:
		handle = edgy64(r);
		break;
	}
	arg = io_arg(c, pc, sizeof(handle), &off);
	if (pc == PC_GOOD || pc == PC_RO) {
		memcpy(c->argw + off, &handle, sizeof(handle));
		i = io_find_live(c, handle);
		ok = i >= 0;
		errs = E(ENOENT);
	} else {
		ok = false;
		errs = E(EFAULT);
	}
	errno = 0;
	ret = ioctl(c->a.fd, WD_IOCTL_UNREGISTER, arg);
	err = errno;
	c->f->count[IO_UNREGISTER]++;
	if (!allowed(ret < 0, err, ok, errs)) {
		snprintf(what, sizeof(what), "UNREGISTER %u (arg %s, %s)",
			 handle, pc_names[pc], i >= 0 ? "live" : "not live");
		mismatch(c->f, what, ret < 0, err, ok, errs);
	}
	if (!ret && i >= 0)
		io_forget(c, i);
}

static void io_factorial(struct io_ctx *c)
{
	struct rng *r = &c->f->r;
	int pc = io_pick_pc(r), ret, err;
	struct wd_edu_factorial fa, *out;
	char what[128];
	uintptr_t arg;
	eset_t errs;
	size_t off;
	bool ok;

	fa.n = chance(r, 80) ? below(r, 40) : rnd(r);
	fa.result = rnd(r);
	arg = io_arg(c, pc, sizeof(fa), &off);
	if (pc == PC_GOOD) {
		memcpy(c->argw + off, &fa, sizeof(fa));
		ok = c->started;
		errs = E(EINVAL);
	} else if (pc == PC_RO) {
		memcpy(c->argw + off, &fa, sizeof(fa));
		ok = false;
		errs = c->started ? E(EFAULT) : E(EINVAL);
	} else {
		/* UAPI: EINVAL if not started; which check is first is open. */
		ok = false;
		errs = E(EFAULT) | (c->started ? 0 : E(EINVAL));
	}
	errno = 0;
	ret = ioctl(c->a.fd, WD_EDU_CMD_FACTORIAL, arg);
	err = errno;
	c->f->count[IO_FACTORIAL]++;
	if (!allowed(ret < 0, err, ok, errs)) {
		snprintf(what, sizeof(what), "FACTORIAL %u (arg %s, %s)", fa.n,
			 pc_names[pc], c->started ? "started" : "not started");
		mismatch(c->f, what, ret < 0, err, ok, errs);
	}
	if (ret || pc != PC_GOOD)
		return;
	out = (void *)(c->argw + off);
	if (out->result != wd_fact_u32(fa.n < 34 ? fa.n : 34) || out->n != fa.n)
		finding(c->f, "FACTORIAL %u: result %u, expected %u", fa.n,
			out->result, wd_fact_u32(fa.n < 34 ? fa.n : 34));
}

static void io_kick(struct io_ctx *c)
{
	int ret, err;

	errno = 0;
	ret = ioctl(c->a.fd, WD_IOCTL_KICK, edgy64(&c->f->r));
	err = errno;
	c->f->count[IO_KICK]++;
	/* Nothing was ever published on this queue's ring. */
	if (c->started ? ret != 0 : !(ret == -1 && err == EINVAL))
		finding(c->f, "KICK (%s, empty ring): %d (%s)",
			c->started ? "started" : "not started", ret,
			ret < 0 ? strerror(err) : "ok");
}

static void io_startput(struct io_ctx *c)
{
	bool start = chance(&c->f->r, 50);
	int ret, err;

	errno = 0;
	ret = ioctl(c->a.fd, start ? WD_CMD_START_Q : WD_CMD_PUT_Q,
		    edgy64(&c->f->r));
	err = errno;
	c->f->count[IO_STARTPUT]++;
	if (start && c->started) {
		if (!(ret == -1 && err == EINVAL))
			finding(c->f, "second START_Q: %d (%s)", ret,
				ret < 0 ? strerror(err) : "ok");
	} else if (ret) {
		finding(c->f, "%s: %s", start ? "START_Q" : "PUT_Q",
			strerror(err));
	} else {
		c->started = start;
	}
}

/* The status page and VmPin agree with the model. */
static void io_check(struct io_ctx *c)
{
	struct wd_queue_status st;
	long pin;

	c->f->count[IO_CHECK]++;
	wd_status(&c->a, &st);
	if (st.buffers != c->nlive || st.mapped_pages != io_mapped_pages(c) ||
	    st.pinned_pages)
		finding(c->f,
			"status: %llu buffers, %llu pages mapped, %llu pinned; expected %u, %llu, 0",
			(unsigned long long)st.buffers,
			(unsigned long long)st.mapped_pages,
			(unsigned long long)st.pinned_pages, c->nlive,
			(unsigned long long)io_mapped_pages(c));
	if (st.state != (c->started ? WD_QUEUE_STARTED : WD_QUEUE_INIT))
		finding(c->f, "status: state %u, started %d", st.state,
			c->started);
	/* Neither queue's buffers are pinned. */
	pin = wd_vmpin_kb();
	if (pin != c->vmpin0)
		finding(c->f, "VmPin %ld kB, expected %ld", pin, c->vmpin0);
}

/* From here on RLIMIT_MEMLOCK applies: room for 48 more pages. */
static void io_limit(struct __test_metadata *_metadata, struct io_ctx *c,
		     struct rlimit *old)
{
	struct rlimit rl;

	io_check(c);
	ASSERT_EQ(0, getrlimit(RLIMIT_MEMLOCK, old));
	c->limit_pages = c->b_pages + io_mapped_pages(c) + 48;
	rl.rlim_cur = c->limit_pages * c->page;
	rl.rlim_max = old->rlim_max;
	ASSERT_LE(rl.rlim_cur, rl.rlim_max);
	ASSERT_EQ(0, drop_ipc_lock());
	ASSERT_EQ(0, setrlimit(RLIMIT_MEMLOCK, &rl));
	c->limited = true;
}

static void io_setup(struct __test_metadata *_metadata,
		     struct _test_data_fuzz *self, struct io_ctx *c)
{
	const size_t page = self->page;
	struct wd_queue_status st;
	int memfd;

	c->page = page;
	c->b_fd = -1;
	c->vmpin0 = self->vmpin;
	ASSERT_EQ(0, wd_queue_open(&c->a, &self->devs[0], WD_Q_NOSTART))
		TH_LOG("%s", wd_ring_error());

	/* Arguments: a memfd seen read-write and read-only. */
	memfd = memfd_create("wd-fuzz-args", MFD_CLOEXEC);
	ASSERT_LE(0, memfd);
	ASSERT_EQ(0, ftruncate(memfd, 2 * page));
	c->argres = reserve(3 * page);
	ASSERT_NE(NULL, c->argres);
	c->argw = mmap(c->argres, 2 * page, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, memfd, 0);
	ASSERT_EQ(c->argres, c->argw);
	c->argr = mmap(NULL, 2 * page, PROT_READ, MAP_SHARED, memfd, 0);
	ASSERT_NE(MAP_FAILED, c->argr);
	close(memfd);

	/* [guard][rw][guard][ro][guard][hole][guard] */
	c->res_len = (IO_RW_PAGES + IO_RO_PAGES + 5) * page;
	c->res = reserve(c->res_len);
	ASSERT_NE(NULL, c->res);
	c->rw = c->res + page;
	c->ro = c->rw + (IO_RW_PAGES + 1) * page;
	c->hole = c->ro + (IO_RO_PAGES + 1) * page;
	ASSERT_EQ(0, mprotect(c->rw, IO_RW_PAGES * page,
			      PROT_READ | PROT_WRITE));
	memset(c->rw, 0x11, IO_RW_PAGES * page);
	ASSERT_EQ(0, mprotect(c->ro, IO_RO_PAGES * page,
			      PROT_READ | PROT_WRITE));
	memset(c->ro, 0x22, IO_RO_PAGES * page);
	ASSERT_EQ(0, mprotect(c->ro, IO_RO_PAGES * page, PROT_READ));
	ASSERT_EQ(0, munmap(c->hole, page));
	ASSERT_FALSE(wd_is_mapped((void *)LOW_HOLE, 16 * page));

	/* Queue B's handles are numbers queue A may or may not use. */
	c->b_fd = wd_open(&self->devs[0]);
	ASSERT_LE(0, c->b_fd) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, wd_register(c->b_fd, c->rw, page, 0, &c->b_handles[0]));
	ASSERT_EQ(0, wd_register(c->b_fd, c->ro, page, 0, &c->b_handles[1]));
	c->b_pages = 2;
	wd_status(&c->a, &st);
	ASSERT_EQ(0ULL, st.buffers);
}

static void io_teardown(struct io_ctx *c)
{
	while (c->nlive) {
		if (wd_unregister(c->a.fd, c->live[0].handle))
			finding(c->f, "UNREGISTER %u at the end: %s",
				c->live[0].handle, strerror(errno));
		io_forget(c, 0);
	}
	io_check(c);
	if (c->b_fd >= 0)
		close(c->b_fd);
	wd_queue_close(&c->a);
	if (c->argr && c->argr != MAP_FAILED)
		munmap(c->argr, 2 * c->page);
	if (c->argres)
		munmap(c->argres, 3 * c->page);
	if (c->res)
		munmap(c->res, c->res_len);
}

TEST_F_TIMEOUT(fuzz, ioctls, 900)
{
	struct io_ctx c = { 0 };
	struct rlimit old;
	char line[256];
	struct fz f;
	uint64_t x;

	fz_init(&f, _metadata, T_IOCTLS, io_names, NR_IO);
	c.f = &f;
	TH_LOG("seed %#llx (WD_FUZZ_SEED)", (unsigned long long)f.seed);
	io_setup(_metadata, self, &c);

	for (f.op = 0; f.op < IOCTL_OPS; f.op++) {
		if (f.op == IOCTL_OPS * 3 / 4)
			io_limit(_metadata, &c, &old);
		if (c.nlive == IO_MAX_LIVE) {
			io_unregister(&c);
			continue;
		}
		x = below(&f.r, 100);
		if (x < 34)
			io_unknown(&c, false);
		else if (x < 56)
			io_unknown(&c, true);
		else if (x < 66)
			io_register(&c);
		else if (x < 75)
			io_unregister(&c);
		else if (x < 84)
			io_kick(&c);
		else if (x < 90)
			io_startput(&c);
		else if (x < 97)
			io_factorial(&c);
		else
			io_check(&c);
	}
	io_teardown(&c);
	if (c.limited)
		EXPECT_EQ(0, setrlimit(RLIMIT_MEMLOCK, &old));
	TH_LOG("REGISTER: %s", hist_str(c.reg_hist, line, sizeof(line)));
	summary(&f);
	recovered(_metadata, self, f.seed);
}

/* ====================================================================== */
/* fuzz.mmap                                                              */
/* ====================================================================== */

enum {
	MM_MAP, MM_FIXED, MM_OVER, MM_UNMAP, MM_PARTIAL, MM_PROTECT, MM_REMAP,
	MM_TOUCH, MM_STATE, NR_MM
};

static const char *const mm_names[NR_MM] = {
	"mmap", "mmap-fixed", "mmap-over", "munmap", "partial-munmap",
	"mprotect", "mremap", "touch", "start/put",
};

#define MM_SCRATCH_PAGES	64

struct mm_held {
	char *p;		/* NULL if the region is not mapped */
	size_t len;
	int prot;
	bool priv;
};

struct mm_ctx {
	struct fz *f;
	int fd;
	bool started;
	size_t page, size[2];
	struct mm_held held[2];
	char *scratch;		/* PROT_NONE, for MAP_FIXED */
	size_t scratch_len;
	unsigned int priv_ok;	/* MAP_PRIVATE mappings the driver took */
	hist_t hist;
};

static size_t round_up_page(uint64_t len, size_t page, bool *overflow)
{
	uint64_t r;

	*overflow = __builtin_add_overflow(len, page - 1, &r);
	return r & ~(uint64_t)(page - 1);
}

/* Reads what a region must hold, wherever the mapping can be read. */
static void mm_touch_mapping(struct mm_ctx *c, int region, char *p,
			     size_t len, int prot, bool priv)
{
	uint32_t magic, want;
	size_t i;

	c->f->count[MM_TOUCH]++;
	if (!(prot & (PROT_READ | PROT_WRITE)))
		return;		/* PROT_NONE: any access faults */
	magic = wd_read32(p);
	want = region == WD_REGION_MMIO ? WD_QUEUE_STATUS_MAGIC :
					  WD_RING_MAGIC;
	if (magic != want)
		finding(c->f, "region %d mapped at %p reads magic %#x", region,
			p, magic);
	for (i = c->page; i < len; i += c->page)
		(void)wd_read32(p + i);
	/* A word user space owns: the first reserved one of the header. */
	if (region == WD_REGION_DUS && (prot & PROT_WRITE) && !priv) {
		struct wd_ring_header *h = (void *)p;
		uint32_t v = rnd(&c->f->r);

		wd_write32(&h->rsvd0[0], v);
		if (wd_read32(&h->rsvd0[0]) != v)
			finding(c->f, "DUS write did not stick");
	}
}

static void mm_unmap_held(struct mm_ctx *c, int region)
{
	struct mm_held *h = &c->held[region];

	c->f->count[MM_UNMAP]++;
	if (munmap(h->p, h->len))
		finding(c->f, "munmap of region %d: %s", region,
			strerror(errno));
	h->p = NULL;
}

/* Puts the PROT_NONE scratch range back after MAP_FIXED used it. */
static void mm_rescratch(struct __test_metadata *_metadata,
			 struct mm_ctx *c)
{
	ASSERT_EQ(c->scratch, mmap(c->scratch, c->scratch_len, PROT_NONE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
				   MAP_NORESERVE, -1, 0))
		TH_LOG("scratch at %p: %s", c->scratch, strerror(errno));
}

/*
 * One mmap() of the queue with random parameters, checked against what
 * the driver and mm must say. Success means the mapping is the region's,
 * whole.
 */
static void mm_map(struct __test_metadata *_metadata, struct mm_ctx *c,
		   bool fixed)
{
	static const uint64_t odd_pgoffs[] = {
		2, 3, 4, 16, 255, 256, 0x10000, 1ULL << 30, 1ULL << 40,
	};
	struct rng *r = &c->f->r;
	int region = -1, prot, flags, err, sure;
	uint64_t pgoff, off, len, x, rounded;
	bool ok, overflow, keep;
	char what[200];
	eset_t errs = 0;
	char *p, *addr;

	x = below(r, 100);
	if (x < 45)
		pgoff = WD_REGION_MMIO;
	else if (x < 90)
		pgoff = WD_REGION_DUS;
	else if (x < 97)
		pgoff = odd_pgoffs[below(r, ARRAY_SIZE(odd_pgoffs))];
	else
		pgoff = (1ULL << 39) + below(r, 1ULL << 40);
	off = pgoff * c->page;
	if (pgoff < 2)
		region = pgoff;
	if (chance(r, 3))
		off += 1 + below(r, c->page - 1);

	x = below(r, 100);
	if (region >= 0 && x < 55)
		len = c->size[region] - below(r, c->page);
	else if (x < 62)
		len = c->size[region >= 0 ? region : 1] +
		      c->page * (1 + below(r, 4));
	else if (x < 69)
		len = c->size[region >= 0 ? region : 1] - c->page;
	else if (x < 75)
		len = 0;
	else if (x < 88)
		len = 1 + below(r, 4 * MiB);
	else if (x < 94)
		len = 1ULL << (40 + below(r, 7));
	else
		len = ~0ULL - below(r, c->page);

	if (chance(r, 50))
		prot = region == WD_REGION_DUS ? PROT_READ | PROT_WRITE :
						 PROT_READ;
	else
		prot = below(r, 8);	/* any of READ, WRITE, EXEC */

	x = below(r, 100);
	if (x < 78)
		flags = MAP_SHARED;
	else if (x < 86)
		flags = MAP_PRIVATE;
	else if (x < 92)
		flags = MAP_SHARED | MAP_POPULATE;
	else if (x < 96)
		flags = MAP_SHARED_VALIDATE;
	else
		flags = MAP_SHARED_VALIDATE | MAP_SYNC;	/* no DAX here */

	addr = NULL;
	if (fixed) {
		if (len == 0 || len > c->scratch_len)
			len = c->scratch_len - below(r, c->page);
		addr = c->scratch;
		flags |= MAP_FIXED;
	}

	/* What must happen. */
	rounded = round_up_page(len, c->page, &overflow);
	sure = 1;	/* 0: either outcome is fine */
	if (off % c->page || !len) {
		errs = E(EINVAL);
	} else if (overflow) {
		errs = E(ENOMEM) | E(EINVAL) | E(EOVERFLOW);
	} else {
		/* mm may find no room before the driver sees the size. */
		if (rounded > (1ULL << 32))
			errs |= E(ENOMEM);
		if ((flags & MAP_SYNC) == MAP_SYNC)
			errs |= E(EOPNOTSUPP) | E(EINVAL);
		if (region < 0 || rounded != c->size[region])
			errs |= E(EINVAL);
		else if ((flags & MAP_TYPE) == MAP_PRIVATE)
			errs |= E(EINVAL);	/* the regions are shared only */
		else if (c->held[region].p)
			errs |= E(EEXIST);
		if (!errs && (prot & PROT_EXEC)) {
			/* noexec mounts */
			sure = 0;
			errs = E(EPERM) | E(EACCES) | E(EINVAL);
		}
	}
	ok = !errs || !sure;

	errno = 0;
	p = mmap(addr, len, prot, flags, c->fd, off);
	err = errno;
	c->f->count[fixed ? MM_FIXED : MM_MAP]++;
	hist_add(c->hist, p == MAP_FAILED, err);
	if (!allowed(p == MAP_FAILED, err, ok, errs)) {
		snprintf(what, sizeof(what),
			 "mmap(%p, %#llx, prot %#x, flags %#x, pgoff %#llx + %llu)",
			 addr, (unsigned long long)len, prot, flags,
			 (unsigned long long)(off / c->page),
			 (unsigned long long)(off % c->page));
		mismatch(c->f, what, p == MAP_FAILED, err, ok, errs);
	}
	if (p == MAP_FAILED) {
		if (fixed)
			mm_rescratch(_metadata, c);
		return;
	}
	if (!ok || region < 0 || rounded != c->size[region] ||
	    c->held[region].p) {
		/* Reported above: get rid of it without touching it. */
		munmap(p, rounded);
		if (fixed)
			mm_rescratch(_metadata, c);
		return;
	}
	if (fixed && p != addr)
		finding(c->f, "MAP_FIXED mapping at %p, not %p", p, addr);
	if ((flags & MAP_TYPE) == MAP_PRIVATE)
		c->priv_ok++;
	mm_touch_mapping(c, region, p, rounded, prot,
			 (flags & MAP_TYPE) == MAP_PRIVATE);
	keep = !fixed && chance(r, 60);
	if (keep) {
		c->held[region] = (struct mm_held){
			.p = p, .len = rounded, .prot = prot,
			.priv = (flags & MAP_TYPE) == MAP_PRIVATE,
		};
		return;
	}
	c->f->count[MM_UNMAP]++;
	if (munmap(p, rounded))
		finding(c->f, "munmap of a fresh mapping: %s", strerror(errno));
	if (fixed)
		mm_rescratch(_metadata, c);
}

/*
 * MAP_FIXED over a region's own mapping with the region again. mm closes
 * the old mapping first, so this may work; if it fails, the old mapping
 * is gone or intact, and the region must be free exactly when it is gone.
 */
static void mm_over(struct mm_ctx *c, int region)
{
	struct mm_held *h = &c->held[region];
	int prot = region == WD_REGION_DUS ? PROT_READ | PROT_WRITE : PROT_READ;
	char *p;

	c->f->count[MM_OVER]++;
	p = mmap(h->p, h->len, prot, MAP_SHARED | MAP_FIXED, c->fd,
		 region * c->page);
	if (p != MAP_FAILED) {
		if (p != h->p)
			finding(c->f, "MAP_FIXED mapping at %p, not %p", p,
				h->p);
		h->p = p;
		h->prot = prot;
		h->priv = false;
		mm_touch_mapping(c, region, p, h->len, prot, false);
		return;
	}
	if (errno != EEXIST && errno != EINVAL && errno != ENOMEM)
		finding(c->f, "MAP_FIXED over region %d's mapping: %s", region,
			strerror(errno));
	if (!wd_is_mapped(h->p, h->len))
		h->p = NULL;	/* so the next mmap must work */
}

static void mm_partial(struct mm_ctx *c, int region)
{
	struct mm_held *h = &c->held[region];
	size_t at;

	if (h->len < 2 * c->page)
		return;
	at = below(&c->f->r, h->len / c->page) * c->page;
	c->f->count[MM_PARTIAL]++;
	errno = 0;
	if (!munmap(h->p + at, c->page)) {
		finding(c->f, "munmap of page %zu of region %d's %zu bytes worked",
			at / c->page, region, h->len);
		munmap(h->p, h->len);
		h->p = NULL;
	} else if (errno != EINVAL) {
		finding(c->f, "partial munmap of region %d: %s", region,
			strerror(errno));
	}
}

static void mm_protect(struct mm_ctx *c, int region)
{
	struct mm_held *h = &c->held[region];
	int prot = below(&c->f->r, 8), ret, err;

	c->f->count[MM_PROTECT]++;
	errno = 0;
	ret = mprotect(h->p, h->len, prot);
	err = errno;
	/* Both regions may be writable, as libwd maps them. */
	if (ret && !(prot & PROT_EXEC))
		finding(c->f, "mprotect(%#x) of region %d: %s", prot, region,
			strerror(err));
	if (!ret)
		h->prot = prot;
}

static void mm_remap(struct mm_ctx *c, int region)
{
	struct mm_held *h = &c->held[region];
	struct rng *r = &c->f->r;
	char *p, *target;

	c->f->count[MM_REMAP]++;
	switch (below(r, 3)) {
	case 0:
		/* The region cannot grow, in place or moved (VM_DONTEXPAND). */
		p = mremap(h->p, h->len, h->len + c->page,
			   chance(r, 50) ? MREMAP_MAYMOVE : 0);
		if (p != MAP_FAILED) {
			finding(c->f, "mremap grew region %d", region);
			munmap(p, h->len + c->page);
			h->p = NULL;
		}
		break;
	case 1:
		/* Shrinking is a partial munmap. */
		p = mremap(h->p, h->len, h->len - c->page, 0);
		if (p != MAP_FAILED) {
			if (h->len > c->page)
				finding(c->f, "mremap shrank region %d", region);
			munmap(h->p, h->len);
			h->p = NULL;
		}
		break;
	default:
		/*
		 * The region cannot move either. MREMAP_FIXED unmaps the
		 * target first, so it gets a range of its own.
		 */
		target = reserve(h->len);
		if (!target)
			break;
		p = mremap(h->p, h->len, h->len, MREMAP_MAYMOVE |
			   MREMAP_FIXED, target);
		if (p != MAP_FAILED) {
			finding(c->f, "mremap moved region %d", region);
			munmap(p, h->len);
			h->p = NULL;
		} else {
			munmap(target, h->len);
			if (!wd_is_mapped(h->p, h->len)) {
				finding(c->f, "failed mremap lost region %d",
					region);
				h->p = NULL;
			}
		}
		break;
	}
}

TEST_F_TIMEOUT(fuzz, mmap, 900)
{
	struct mm_ctx c = { 0 };
	char line[256];
	struct fz f;
	int region;
	uint64_t x;

	fz_init(&f, _metadata, T_MMAP, mm_names, NR_MM);
	c.f = &f;
	c.page = self->page;
	c.size[WD_REGION_MMIO] = self->mmio;
	c.size[WD_REGION_DUS] = self->dus;
	TH_LOG("seed %#llx (WD_FUZZ_SEED)", (unsigned long long)f.seed);
	c.fd = wd_open(&self->devs[0]);
	ASSERT_LE(0, c.fd) TH_LOG("%s", strerror(errno));
	c.scratch_len = MM_SCRATCH_PAGES * c.page;
	c.scratch = reserve(c.scratch_len);
	ASSERT_NE(NULL, c.scratch);

	for (f.op = 0; f.op < MMAP_OPS && c.scratch; f.op++) {
		x = below(&f.r, 100);
		region = below(&f.r, 2);
		if (x < 55 || (x >= 62 && x < 95 && !c.held[region].p)) {
			mm_map(_metadata, &c, false);
		} else if (x < 62) {
			mm_map(_metadata, &c, true);
		} else if (x < 66) {
			mm_over(&c, region);
		} else if (x < 74) {
			mm_unmap_held(&c, region);
		} else if (x < 77) {
			mm_partial(&c, region);
		} else if (x < 81) {
			mm_protect(&c, region);
		} else if (x < 85) {
			mm_remap(&c, region);
		} else if (x < 95) {
			mm_touch_mapping(&c, region, c.held[region].p,
					 c.held[region].len,
					 c.held[region].prot,
					 c.held[region].priv);
		} else {
			f.count[MM_STATE]++;
			if (ioctl(c.fd, c.started ? WD_CMD_PUT_Q :
				  WD_CMD_START_Q))
				finding(&f, "START_Q/PUT_Q: %s",
					strerror(errno));
			else
				c.started = !c.started;
		}
	}
	ASSERT_NE(NULL, c.scratch);
	for (region = 0; region < 2; region++)
		if (c.held[region].p)
			mm_unmap_held(&c, region);
	/* Both regions are free again: each maps once more. */
	for (region = 0; region < 2; region++) {
		void *p = wd_map(c.fd, region, c.size[region], PROT_READ);

		EXPECT_NE(MAP_FAILED, p) TH_LOG("region %d: %s", region,
						strerror(errno));
		if (p != MAP_FAILED)
			munmap(p, c.size[region]);
	}
	TH_LOG("mmap: %s", hist_str(c.hist, line, sizeof(line)));
	if (c.priv_ok)
		TH_LOG("note: %u MAP_PRIVATE mappings of a region were accepted",
		       c.priv_ok);
	close(c.fd);
	munmap(c.scratch, c.scratch_len);
	summary(&f);
	recovered(_metadata, self, f.seed);
}

/* ====================================================================== */
/* fuzz.ring                                                              */
/* ====================================================================== */

enum {
	RG_VALID, RG_MALFORMED, RG_RANDOM, RG_KICK, RG_CORRUPT, RG_SCRIBBLE,
	RG_PUTQ, RG_REGISTER, NR_RG
};

static const char *const rg_names[NR_RG] = {
	"valid", "malformed", "random", "kick", "corrupt-index",
	"scribble-kernel-index", "put-q-in-flight", "register/unregister",
};

/*
 * The memory the descriptors point at, each area between PROT_NONE guard
 * pages: a range that runs past an area's end always faults.
 */
enum {
	A_SRC,		/* pattern, registered read-only on A */
	A_DST,		/* slots for valid copies, registered writable on A */
	A_PSRC,		/* pattern, not registered */
	A_PDST,		/* slots for valid copies, not registered */
	A_RO,		/* pattern, mapped read-only, not registered */
	A_ROBUF,	/* pattern, writable, registered read-only on A */
	A_OTHERQ,	/* pattern, registered on queue B only */
	A_STALE,	/* pattern, registered on A now and then */
	A_CANARY,	/* only malformed commands name it as dst */
	A_GONE,		/* registered writable on A, then PROT_NONE over it */
	NR_AREAS
};

static const struct {
	const char *name;
	size_t kib;
	bool pattern;
} areas[NR_AREAS] = {
	[A_SRC] = { "src", 128, true },
	[A_DST] = { "dst", 128, false },
	[A_PSRC] = { "plain-src", 64, true },
	[A_PDST] = { "plain-dst", 128, false },
	[A_RO] = { "read-only", 16, true },
	[A_ROBUF] = { "ro-buffer", 16, true },
	[A_OTHERQ] = { "other-queue", 16, true },
	[A_STALE] = { "stale", 16, true },
	[A_CANARY] = { "canary", 64, false },
	[A_GONE] = { "gone", 16, false },
};

static const char *area_name(int a)
{
	return a >= 0 && a < NR_AREAS && areas[a].name ? areas[a].name : "?";
}

static const int src_areas[] = {
	A_SRC, A_PSRC, A_RO, A_ROBUF, A_OTHERQ, A_STALE,
};

#define AREA_MAX	(128 * KiB)
#define SLOT		512	/* A_DST and A_PDST: one slot per batch entry */
#define CANARY		0x5c
#define SLOT_FILL	0xa5
#define NRECS		1024

enum { K_NOP, K_FACT, K_MEMCPY, K_CRC, K_DMA };

enum { R_FREE, R_PUBLISHED, R_ACCEPTED, R_DONE };

/* Ways to break a descriptor; each one alone makes it fail for sure. */
enum {
	M_FLAGS, M_RSVD0, M_RSVD1, M_OPCODE, M_LEN0, M_LENMAX, M_LENBEYOND,
	M_SRCBAD, M_DSTBAD, M_REGONLY, M_CRCARG, M_DMAALIGN, M_UNUSED, M_SWAP,
	NR_M
};

static const char *const m_names[NR_M] = {
	"flags", "rsvd0", "rsvd1", "opcode", "len-0", "len-max", "len-beyond",
	"src-bad", "dst-bad", "registered-only", "crc-arg", "dma-align",
	"unused-operand", "swap-opcode",
};

/* The fields a mutation changes, so that two never undo each other. */
enum {
	FL_OP = 1, FL_FLAGS = 2, FL_RSVD0 = 4, FL_RSVD1 = 8, FL_SRC = 16,
	FL_DST = 32, FL_LEN = 64, FL_ARG = 128, FL_ALL = 255,
};

struct rec {
	struct wd_desc d;
	uint8_t state;
	uint8_t kind;
	bool ok;		/* must complete with status 0 */
	bool random;
	bool may_cancel;	/* a PUT_Q came while it was in flight */
	eset_t errs;		/* else: the statuses it may fail with */
	uint32_t muts;
	uint64_t result;
	char *slot;		/* valid copies: their SLOT bytes of dst */
	char *dst;
	uint64_t seed, soff;	/* the pattern its src holds */
};

struct ring_ctx {
	struct fz *f;
	size_t page;
	struct wd_queue a, b;
	char *res;
	size_t res_len;
	char *area[NR_AREAS];
	size_t alen[NR_AREAS];
	uint64_t aseed[NR_AREAS];
	bool reg[NR_AREAS];	/* registered on A */
	uint32_t handle[NR_AREAS];
	uint32_t b_handle;
	uint32_t stale[64];
	unsigned int nstale;
	char *hole;
	/* Our copies of the indices: the header's may be scribbled on. */
	uint32_t sq_tail, sq_head, cq_head;
	uint32_t seq;
	unsigned int outstanding;
	uint64_t descs, accepted, completions, errors, bytes;
	uint64_t hist[ARRAY_SIZE(errnames) + 1];
	unsigned int dma_done;
	uint64_t dma_at[2];	/* the few DMA copies that really run */
	struct rec recs[NRECS];
};

static bool op_src(uint16_t op)
{
	return op == WD_EDU_OP_EMU_MEMCPY || op == WD_EDU_OP_EMU_CRC32C ||
	       op == WD_EDU_OP_DMA_COPY;
}

static bool op_dst(uint16_t op)
{
	return op == WD_EDU_OP_EMU_MEMCPY || op == WD_EDU_OP_DMA_COPY;
}

static const char *desc_str(const struct rec *rc, char *buf, size_t len)
{
	const struct wd_desc *d = &rc->d;
	size_t pos;
	int m;

	pos = snprintf(buf, len,
		       "{op %u flags %#x rsvd0 %#x src %#llx dst %#llx len %#llx arg %#llx rsvd1 %#llx,%#llx}",
		       d->opcode, d->flags, d->rsvd0,
		       (unsigned long long)d->src, (unsigned long long)d->dst,
		       (unsigned long long)d->len, (unsigned long long)d->arg,
		       (unsigned long long)d->rsvd1[0],
		       (unsigned long long)d->rsvd1[1]);
	for (m = 0; m < NR_M && pos < len; m++)
		if (rc->muts & (1U << m))
			pos += snprintf(buf + pos, len - pos, " %s", m_names[m]);
	if (rc->random && pos < len)
		snprintf(buf + pos, len - pos, " random");
	return buf;
}

/* @len bytes inside area @a, aligned to @align, at *@off from its start. */
static char *pick_in(struct ring_ctx *c, int a, uint64_t len,
		     unsigned int align, uint64_t *off)
{
	uint64_t room = c->alen[a] > len ? c->alen[a] - len : 0;

	*off = below(&c->f->r, room / align + 1) * align;
	return c->area[a] + *off;
}

static bool ring_hole_unmapped(struct ring_ctx *c)
{
	return !wd_is_mapped(c->hole, c->page);
}

enum {
	BA_NULL, BA_SMALL, BA_KERNEL, BA_NONCANON, BA_ABOVE, BA_LOW, BA_GUARD,
	BA_STRADDLE, BA_WRAP, BA_HOLE, BA_GONE, NR_BA
};

/*
 * An address where @len bytes cannot be used by a command: not user
 * memory, not mapped, wrapping, or running into a guard page.
 */
static uint64_t bad_addr(struct ring_ctx *c, uint64_t len, unsigned int align)
{
	struct rng *r = &c->f->r;
	const size_t page = c->page;
	int a = below(r, NR_AREAS);
	uint64_t k, j, off;

	switch (below(r, NR_BA)) {
	case BA_NULL:
		return 0;
	case BA_SMALL:
		return align * (1 + below(r, 64));
	case BA_KERNEL:
		return WD_KERNEL_ADDR + below(r, 1 << 20) * page;
	case BA_NONCANON:
		return WD_NONCANON_ADDR + below(r, 1 << 20) * page;
	case BA_ABOVE:
		return 0x800000000000ULL + below(r, 1 << 20) * page;
	case BA_LOW:
		return LOW_HOLE + below(r, 16) * page +
		       below(r, page / align) * align;
	case BA_STRADDLE:
		if (len > align) {
			k = len - 1 < c->alen[a] ? len - 1 : c->alen[a];
			k = align * (1 + below(r, k / align));
			return (uintptr_t)c->area[a] + c->alen[a] - k;
		}
		/* fall through */
	case BA_GUARD:
		return (uintptr_t)c->area[a] - page +
		       below(r, page / align) * align;
	case BA_WRAP:
		j = len / align ? below(r, len / align < 64 ? len / align : 64) :
			0;
		return ~0ULL - (align - 1) - j * align;
	case BA_HOLE:
		if (ring_hole_unmapped(c))
			return (uintptr_t)c->hole + below(r, page / align) * align;
		return LOW_HOLE;
	default:
		return (uintptr_t)pick_in(c, A_GONE, len, align, &off);
	}
}

/* A descriptor that is valid as it stands, or would be but for its dst. */
static void gen_template(struct ring_ctx *c, struct rec *rc, unsigned int slot,
			 bool valid, int kind)
{
	struct rng *r = &c->f->r;
	struct wd_desc *d = &rc->d;
	unsigned int align;
	uint64_t len, off, n;
	char *src;
	int a, da;

	rc->kind = kind;
	switch (kind) {
	case K_NOP:
		d->opcode = WD_EDU_OP_NOP;
		d->arg = edgy64(r);
		if (chance(r, 20))
			d->flags = WD_DESC_REGISTERED;
		rc->result = 0;
		break;
	case K_FACT:
		n = chance(r, 80) ? below(r, 40) : edgy64(r);
		d->opcode = WD_EDU_OP_FACTORIAL;
		d->arg = n;
		if (chance(r, 20))
			d->flags = WD_DESC_REGISTERED;
		/* The driver caps n at 34, where n! in 32 bits is 0 for good. */
		rc->result = wd_fact_u32(n > 34 ? 34 : n);
		break;
	case K_MEMCPY:
	case K_DMA:
		align = kind == K_DMA ? 4 : 1;
		len = kind == K_DMA ? 4 * (1 + below(r, SLOT / 4)) :
				      1 + below(r, SLOT);
		a = src_areas[below(r, ARRAY_SIZE(src_areas))];
		d->src = (uintptr_t)pick_in(c, a, len, align, &off);
		rc->seed = c->aseed[a];
		rc->soff = off;
		if (valid) {
			da = chance(r, 50) ? A_DST : A_PDST;
			rc->slot = c->area[da] + slot * SLOT;
			rc->dst = rc->slot +
				  below(r, (SLOT - len) / align + 1) * align;
			d->dst = (uintptr_t)rc->dst;
			if (da == A_DST && c->reg[a] && chance(r, 50))
				d->flags = WD_DESC_REGISTERED;
		} else {
			d->dst = (uintptr_t)pick_in(c, A_CANARY, len, align,
						    &off);
		}
		d->opcode = kind == K_DMA ? WD_EDU_OP_DMA_COPY :
					    WD_EDU_OP_EMU_MEMCPY;
		d->len = len;
		rc->result = len;
		break;
	default:
		len = 1 + below(r, 4096);
		a = src_areas[below(r, ARRAY_SIZE(src_areas))];
		src = pick_in(c, a, len, 1, &off);
		d->opcode = WD_EDU_OP_EMU_CRC32C;
		d->src = (uintptr_t)src;
		d->len = len;
		d->arg = chance(r, 10) ? 0 : (uint32_t)rnd(r);
		if (c->reg[a] && chance(r, 30))
			d->flags = WD_DESC_REGISTERED;
		if (valid)
			rc->result = wd_crc32c(d->arg, src, len);
		break;
	}
}

/* Applies mutation @m to @rc if it fits; returns whether it did. */
static bool mutate(struct ring_ctx *c, struct rec *rc, int m,
		   unsigned int *fields)
{
	static const uint16_t unreg_src[] = { A_PSRC, A_RO, A_OTHERQ, A_STALE };
	struct rng *r = &c->f->r;
	struct wd_desc *d = &rc->d;
	const uint16_t op = d->opcode;
	const unsigned int align = op == WD_EDU_OP_DMA_COPY ? 4 : 1;
	const uint64_t max = op == WD_EDU_OP_DMA_COPY ? WD_EDU_DMA_COPY_MAX :
							WD_EDU_BULK_MAX;
	unsigned int need;
	uint64_t off;
	eset_t e = E(EINVAL);
	int a, which = 0;

	switch (m) {
	case M_FLAGS:
		need = FL_FLAGS;
		break;
	case M_RSVD0:
		need = FL_RSVD0;
		break;
	case M_RSVD1:
		need = FL_RSVD1;
		break;
	case M_OPCODE:
		need = FL_OP;
		break;
	case M_LEN0:
	case M_LENMAX:
		if (!op_src(op))
			return false;
		need = FL_LEN;
		break;
	case M_LENBEYOND:
		if (!op_src(op) || op == WD_EDU_OP_DMA_COPY)
			return false;
		need = FL_LEN;
		break;
	case M_SRCBAD:
		if (!op_src(op))
			return false;
		need = FL_SRC;
		break;
	case M_DSTBAD:
		if (!op_dst(op))
			return false;
		need = FL_DST;
		break;
	case M_REGONLY:
		if (!op_src(op))
			return false;
		which = op_dst(op) && chance(r, 50) ? FL_DST : FL_SRC;
		need = FL_FLAGS | which;
		break;
	case M_CRCARG:
		if (op != WD_EDU_OP_EMU_CRC32C)
			return false;
		need = FL_ARG;
		break;
	case M_DMAALIGN:
		if (op != WD_EDU_OP_DMA_COPY)
			return false;
		which = below(r, 3);
		which = which == 0 ? FL_SRC : which == 1 ? FL_DST : FL_LEN;
		need = which;
		break;
	case M_UNUSED:
		if (*fields || op == WD_EDU_OP_EMU_MEMCPY ||
		    op == WD_EDU_OP_DMA_COPY)
			return false;
		need = FL_ALL;
		break;
	default:
		if (*fields)
			return false;
		need = FL_ALL;
		break;
	}
	if (*fields & need)
		return false;
	*fields |= need;

	switch (m) {
	case M_FLAGS:
		d->flags = (rnd(r) & 0xfffe) | (rnd(r) & 1);
		if (!(d->flags & ~WD_DESC_REGISTERED))
			d->flags |= 2U << below(r, 15);
		break;
	case M_RSVD0:
		d->rsvd0 = (uint32_t)rnd(r) | (1U << below(r, 32));
		break;
	case M_RSVD1:
		d->rsvd1[below(r, 2)] = rnd(r) | (1ULL << below(r, 64));
		break;
	case M_OPCODE:
		d->opcode = chance(r, 20) ? 0 : 6 + below(r, 0xfffa);
		e = E(EOPNOTSUPP);
		break;
	case M_LEN0:
		d->len = 0;
		break;
	case M_LENMAX:
		switch (below(r, 4)) {
		case 0:
			d->len = max + 1 + below(r, 4096);
			break;
		case 1:
			d->len = max + align * (1 + below(r, 1 << 20));
			break;
		case 2:
			d->len = (1ULL << 32) + below(r, 1 << 20);
			break;
		default:
			d->len = edgy64(r) | (1ULL << (33 + below(r, 31)));
			break;
		}
		break;
	case M_LENBEYOND:
		/* Longer than any area: reaches a guard page whatever src is. */
		d->len = AREA_MAX + 1 + below(r, WD_EDU_BULK_MAX - AREA_MAX);
		e = E(EFAULT);
		break;
	case M_SRCBAD:
		d->src = bad_addr(c, d->len, align);
		e = E(EFAULT);
		break;
	case M_DSTBAD:
		switch (below(r, 6)) {
		case 0:
			d->dst = (uintptr_t)pick_in(c, A_RO, d->len, align,
						    &off);
			e = E(EFAULT);
			break;
		case 1:
			d->dst = (uintptr_t)pick_in(c, A_ROBUF, d->len, align,
						    &off);
			e = d->len <= c->alen[A_ROBUF] ? E(EACCES) : E(EFAULT);
			break;
		default:
			d->dst = bad_addr(c, d->len, align);
			e = E(EFAULT);
			break;
		}
		break;
	case M_REGONLY:
		d->flags = WD_DESC_REGISTERED;
		if (which == FL_SRC) {
			do
				a = unreg_src[below(r, ARRAY_SIZE(unreg_src))];
			while (c->reg[a]);
			d->src = (uintptr_t)pick_in(c, a, d->len, align, &off);
		} else {
			d->dst = (uintptr_t)pick_in(c, A_CANARY, d->len, align,
						    &off);
		}
		e = E(ENOENT);
		break;
	case M_CRCARG:
		d->arg = rnd(r) | (1ULL << (32 + below(r, 32)));
		break;
	case M_DMAALIGN:
		if (which == FL_SRC)
			d->src += 1 + below(r, 3);
		else if (which == FL_DST)
			d->dst += 1 + below(r, 3);
		else
			d->len = (d->len & ~3ULL) + 1 + below(r, 3);
		break;
	case M_UNUSED:
		off = edgy64(r) | 1;
		if (op == WD_EDU_OP_EMU_CRC32C)
			d->dst = off;
		else if (chance(r, 34))
			d->src = off;
		else if (chance(r, 50))
			d->dst = off;
		else
			d->len = off;
		break;
	default:
		if (op_src(op)) {
			/* An operand the new opcode does not use. */
			d->opcode = op_dst(op) && chance(r, 34) ?
				    WD_EDU_OP_EMU_CRC32C :
				    chance(r, 50) ? WD_EDU_OP_NOP :
						    WD_EDU_OP_FACTORIAL;
		} else {
			/* No length for an opcode that needs one. */
			d->opcode = chance(r, 34) ? WD_EDU_OP_EMU_MEMCPY :
				    chance(r, 50) ? WD_EDU_OP_EMU_CRC32C :
						    WD_EDU_OP_DMA_COPY;
		}
		break;
	}
	rc->muts |= 1U << m;
	rc->errs |= e;
	return true;
}

/* The next descriptor: valid, malformed or random, and what it must do. */
static void gen_rec(struct ring_ctx *c, struct rec *rc, unsigned int slot)
{
	static const int mkinds[] = {
		K_NOP, K_FACT, K_MEMCPY, K_MEMCPY, K_MEMCPY, K_MEMCPY, K_CRC,
		K_CRC, K_DMA, K_DMA,
	};
	static const int vkinds[] = {
		K_NOP, K_NOP, K_NOP, K_FACT, K_FACT, K_FACT, K_MEMCPY,
		K_MEMCPY, K_MEMCPY, K_MEMCPY, K_MEMCPY, K_MEMCPY, K_MEMCPY,
		K_MEMCPY, K_MEMCPY, K_CRC, K_CRC, K_CRC, K_CRC, K_CRC,
	};
	struct rng *r = &c->f->r;
	struct wd_desc *d = &rc->d;
	unsigned int fields = 0, want, n, tries;
	uint64_t x = below(r, 100), *w;
	size_t i;

	memset(rc, 0, sizeof(*rc));
	if (c->dma_done < ARRAY_SIZE(c->dma_at) &&
	    c->seq >= c->dma_at[c->dma_done]) {
		/* One of the few DMA copies that really run (200 ms each). */
		c->dma_done++;
		gen_template(c, rc, slot, true, K_DMA);
		rc->ok = true;
		c->f->count[RG_VALID]++;
	} else if (x < 35) {
		gen_template(c, rc, slot, true,
			     vkinds[below(r, ARRAY_SIZE(vkinds))]);
		rc->ok = true;
		c->f->count[RG_VALID]++;
	} else if (x < 42) {
		/* Noise; the flags and reserved fields are checked first. */
		w = (uint64_t *)d;
		for (i = 0; i < sizeof(*d) / sizeof(*w); i++)
			w[i] = rnd(r);
		if (!(d->flags & ~WD_DESC_REGISTERED) && !d->rsvd0 &&
		    !d->rsvd1[0] && !d->rsvd1[1])
			d->rsvd0 = 1;
		rc->errs = E(EINVAL);
		rc->random = true;
		c->f->count[RG_RANDOM]++;
	} else if (x < 47) {
		/* Noise with the fields checked first in order. */
		d->opcode = chance(r, 10) ? 0 : 6 + below(r, 0xfffa);
		d->flags = below(r, 2);
		d->src = edgy64(r);
		d->dst = edgy64(r);
		d->len = edgy64(r);
		d->arg = edgy64(r);
		rc->errs = E(EOPNOTSUPP);
		rc->random = true;
		c->f->count[RG_RANDOM]++;
	} else {
		gen_template(c, rc, slot, false,
			     mkinds[below(r, ARRAY_SIZE(mkinds))]);
		want = chance(r, 70) ? 1 : chance(r, 66) ? 2 : 3;
		for (n = tries = 0; n < want && tries < 32; tries++)
			n += mutate(c, rc, below(r, NR_M), &fields);
		if (!n)
			mutate(c, rc, M_RSVD0, &fields);
		/* Not in a buffer: ENOENT may come before the real flaw. */
		if (d->flags & WD_DESC_REGISTERED)
			rc->errs |= E(ENOENT);
		if (d->opcode == WD_EDU_OP_DMA_COPY &&
		    ((d->src | d->dst | d->len) & 3))
			rc->errs |= E(EINVAL);
		c->f->count[RG_MALFORMED]++;
	}
	d->user_data = ((uint64_t)(uint32_t)rnd(r) << 32) | c->seq;
	rc->state = R_PUBLISHED;
	c->seq++;
}

static void ring_check(struct ring_ctx *c, const struct wd_cqe *cqe)
{
	struct rec *rc = &c->recs[(uint32_t)cqe->user_data % NRECS];
	char b1[32], b2[160], b3[400];
	eset_t errs;
	ssize_t bad;
	size_t i;

	if (rc->d.user_data != cqe->user_data ||
	    (rc->state != R_ACCEPTED && rc->state != R_PUBLISHED)) {
		finding(c->f, "completion with user_data %#llx (status %d): %s",
			(unsigned long long)cqe->user_data, cqe->status,
			rc->d.user_data != cqe->user_data ? "unknown" :
			rc->state == R_DONE ? "completed twice" :
			"never submitted");
		return;
	}
	if (rc->state == R_PUBLISHED)
		finding(c->f, "completion for %s before KICK took it",
			desc_str(rc, b3, sizeof(b3)));
	rc->state = R_DONE;
	c->outstanding--;
	c->completions++;
	for (i = 0; i < ARRAY_SIZE(errnames); i++)
		if (cqe->status && E(-cqe->status) == 1U << i)
			break;
	c->hist[cqe->status ? i : ARRAY_SIZE(errnames)]++;
	if (cqe->status)
		c->errors++;
	else
		c->bytes += rc->d.len;
	if (cqe->flags)
		finding(c->f, "completion flags %#x", cqe->flags);

	if (rc->ok) {
		if (cqe->status == -ECANCELED && rc->may_cancel)
			return;
		if (cqe->status) {
			finding(c->f, "valid command %s failed with %s",
				desc_str(rc, b3, sizeof(b3)),
				ename(-cqe->status, b1, sizeof(b1)));
			return;
		}
		if (cqe->result != rc->result) {
			finding(c->f, "%s: result %#llx, expected %#llx",
				desc_str(rc, b3, sizeof(b3)),
				(unsigned long long)cqe->result,
				(unsigned long long)rc->result);
			return;
		}
		if (!rc->slot)
			return;
		bad = wd_check(rc->dst, rc->d.len, rc->seed, rc->soff);
		if (bad >= 0)
			finding(c->f, "%s: byte %zd of dst is wrong",
				desc_str(rc, b3, sizeof(b3)), bad);
		if (wd_check_byte(rc->slot, rc->dst - rc->slot, SLOT_FILL) >= 0 ||
		    wd_check_byte(rc->dst + rc->d.len,
				  rc->slot + SLOT - rc->dst - rc->d.len,
				  SLOT_FILL) >= 0)
			finding(c->f, "%s wrote outside dst",
				desc_str(rc, b3, sizeof(b3)));
		return;
	}
	errs = rc->errs | (rc->may_cancel ? E(ECANCELED) : 0);
	if (!cqe->status)
		finding(c->f, "malformed command %s completed with status 0 (expected %s)",
			desc_str(rc, b3, sizeof(b3)),
			eset_str(errs, b2, sizeof(b2)));
	else if (!(E(-cqe->status) & errs))
		finding(c->f, "%s: status %s, expected %s",
			desc_str(rc, b3, sizeof(b3)),
			ename(-cqe->status, b1, sizeof(b1)),
			eset_str(errs, b2, sizeof(b2)));
}

/* Reaps what the completion ring holds, without waiting. */
static unsigned int ring_reap(struct ring_ctx *c)
{
	uint32_t n = wd_cq_tail(&c->a) - c->cq_head, i;
	struct wd_cqe cqe;

	/* A cq_tail scribbled on, until the kernel writes it again. */
	if (n > c->a.cq_entries)
		return 0;
	for (i = 0; i < n; i++) {
		cqe = *wd_cq_slot(&c->a, c->cq_head + i);
		ring_check(c, &cqe);
	}
	c->cq_head += n;
	wd_set_cq_head(&c->a, c->cq_head);
	return n;
}

/* Every command taken completes, within WD_WAIT_MS. */
static bool ring_wait(struct ring_ctx *c)
{
	uint64_t end = wd_now_ms() + WD_WAIT_MS;
	struct pollfd pfd = { .fd = c->a.fd, .events = POLLIN };
	char b[400];
	int64_t left;
	unsigned int i, shown = 0;

	while (c->outstanding) {
		if (ring_reap(c))
			continue;
		left = end - wd_now_ms();
		if (left <= 0)
			break;
		poll(&pfd, 1, left < 100 ? left : 100);
	}
	if (!c->outstanding)
		return true;
	finding(c->f, "%u commands never completed in %d ms (sq_head %u, cq_tail %u, cq_head %u)",
		c->outstanding, WD_WAIT_MS, wd_sq_head(&c->a),
		wd_cq_tail(&c->a), c->cq_head);
	for (i = 0; i < NRECS && shown < 4; i++)
		if (c->recs[i].state == R_ACCEPTED && ++shown)
			finding(c->f, "lost: %s",
				desc_str(&c->recs[i], b, sizeof(b)));
	return false;
}

/*
 * A corrupt index makes KICK fail with EINVAL and change nothing; put
 * right, KICK works again. Nothing is in flight here, so cq_tail stays.
 */
static bool ring_corrupt(struct ring_ctx *c)
{
	struct rng *r = &c->f->r;
	struct wd_queue_status before, after;
	const bool sq = chance(r, 50);
	uint32_t bad;
	int ret, err;

	c->f->count[RG_CORRUPT]++;
	if (sq) {
		bad = chance(r, 50) ?
		      c->sq_head + c->a.sq_entries + 1 + below(r, 1U << 31) :
		      c->sq_head - 1 - below(r, 1U << 30);
		wd_set_sq_tail(&c->a, bad);
	} else {
		bad = chance(r, 50) ?
		      c->cq_head + 1 + below(r, 1U << 31) :
		      c->cq_head - c->a.cq_entries - 1 - below(r, 1U << 30);
		wd_set_cq_head(&c->a, bad);
	}
	wd_status(&c->a, &before);
	errno = 0;
	ret = ioctl(c->a.fd, WD_IOCTL_KICK);
	err = errno;
	wd_status(&c->a, &after);
	if (!(ret == -1 && err == EINVAL)) {
		finding(c->f, "KICK with %s %#x (sq_head %u, cq_tail %u): %d (%s), expected EINVAL",
			sq ? "sq_tail" : "cq_head", bad, c->sq_head, c->cq_head,
			ret, ret < 0 ? strerror(err) : "ok");
		return false;
	}
	if (wd_sq_head(&c->a) != c->sq_head ||
	    after.submitted != before.submitted ||
	    after.completed != before.completed)
		finding(c->f, "refused KICK changed the queue: sq_head %u -> %u, submitted %llu -> %llu",
			c->sq_head, wd_sq_head(&c->a),
			(unsigned long long)before.submitted,
			(unsigned long long)after.submitted);
	wd_set_sq_tail(&c->a, c->sq_tail);
	wd_set_cq_head(&c->a, c->cq_head);
	errno = 0;
	ret = ioctl(c->a.fd, WD_IOCTL_KICK);
	c->f->count[RG_KICK]++;
	if (ret) {
		finding(c->f, "KICK with the index put right: %d (%s)", ret,
			ret < 0 ? strerror(errno) : "took descriptors");
		return false;
	}
	return true;
}

static bool ring_live_handle(struct ring_ctx *c, uint32_t h)
{
	int a;

	for (a = 0; a < NR_AREAS; a++)
		if (c->reg[a] && c->handle[a] == h)
			return true;
	return false;
}

/* Buffers come and go between batches: stale handles, overlaps. */
static void ring_registry(struct ring_ctx *c)
{
	static const int live[] = { A_SRC, A_DST, A_ROBUF, A_GONE };
	struct rng *r = &c->f->r;
	uint64_t k;
	uint32_t h;
	char *p;
	int a;

	c->f->count[RG_REGISTER]++;
	switch (below(r, 3)) {
	case 0:
		if (c->reg[A_STALE]) {
			if (wd_unregister(c->a.fd, c->handle[A_STALE]))
				finding(c->f, "UNREGISTER stale area: %s",
					strerror(errno));
			c->reg[A_STALE] = false;
			if (c->nstale < ARRAY_SIZE(c->stale))
				c->stale[c->nstale++] = c->handle[A_STALE];
		} else if (wd_register(c->a.fd, c->area[A_STALE],
				       c->alen[A_STALE], WD_REGISTER_WRITE,
				       &c->handle[A_STALE])) {
			finding(c->f, "REGISTER stale area: %s",
				strerror(errno));
		} else {
			c->reg[A_STALE] = true;
		}
		break;
	case 1:
		h = chance(r, 40) && c->nstale ? c->stale[below(r, c->nstale)] :
		    chance(r, 50) ? c->b_handle : (uint32_t)edgy64(r);
		if (ring_live_handle(c, h))
			break;
		errno = 0;
		if (wd_unregister(c->a.fd, h) != -1 || errno != ENOENT)
			finding(c->f, "UNREGISTER of handle %u, not live: %s", h,
				errno ? strerror(errno) : "succeeded");
		break;
	default:
		a = live[below(r, ARRAY_SIZE(live))];
		p = c->area[a] + below(r, c->alen[a]);
		k = below(r, 64);
		errno = 0;
		if (wd_register(c->a.fd, p - k, k + 1 + below(r, 8192),
				chance(r, 50) ? WD_REGISTER_WRITE : 0, &h) != -1 ||
		    errno != EEXIST)
			finding(c->f, "REGISTER overlapping the %s buffer: %s",
				areas[a].name,
				errno ? strerror(errno) : "succeeded");
		break;
	}
}

/* One batch: publish, KICK until all is taken, reap everything. */
static bool ring_batch(struct ring_ctx *c)
{
	struct rng *r = &c->f->r;
	const uint32_t first = c->seq;
	unsigned int n, i, consumed = 0;
	struct rec *rc;
	uint64_t x;
	int ret;

	n = chance(r, 30) ? 1 + below(r, 8) : 1 + below(r, c->a.sq_entries);
	if (c->descs + n > RING_DESCS)
		n = RING_DESCS - c->descs;

	x = below(r, 100);
	if (x < 4 && !ring_corrupt(c))
		return false;
	if (x >= 4 && x < 6) {
		/* The kernel keeps its own copies and writes them back. */
		wd_write32(&c->a.hdr->sq_head, rnd(r));
		wd_write32(&c->a.hdr->cq_tail,
			   c->cq_head + 0x40000000 + below(r, 1 << 20));
		c->f->count[RG_SCRIBBLE]++;
	}
	if (x >= 6 && x < 12)
		ring_registry(c);

	for (i = 0; i < n; i++) {
		rc = &c->recs[(first + i) % NRECS];
		gen_rec(c, rc, i);
		if (rc->slot)
			memset(rc->slot, SLOT_FILL, SLOT);
		*wd_sq_slot(&c->a, c->sq_tail + i) = rc->d;
	}
	c->descs += n;
	c->sq_tail += n;
	wd_set_sq_tail(&c->a, c->sq_tail);

	while (consumed < n) {
		errno = 0;
		ret = ioctl(c->a.fd, WD_IOCTL_KICK);
		c->f->count[RG_KICK]++;
		if (ret < 0 || (unsigned int)ret > n - consumed) {
			finding(c->f, "KICK with %u published: %d (%s)",
				n - consumed, ret,
				ret < 0 ? strerror(errno) : "too many");
			return false;
		}
		if (wd_sq_head(&c->a) != c->sq_head + ret)
			finding(c->f, "KICK took %d but sq_head is %u, was %u",
				ret, wd_sq_head(&c->a), c->sq_head);
		for (i = 0; i < (unsigned int)ret; i++) {
			rc = &c->recs[(first + consumed + i) % NRECS];
			if (rc->state == R_PUBLISHED)
				rc->state = R_ACCEPTED;
		}
		c->sq_head += ret;
		consumed += ret;
		c->outstanding += ret;
		c->accepted += ret;
		ring_reap(c);
		if (!ret) {
			if (!c->outstanding) {
				finding(c->f, "KICK takes none of %u with nothing in flight",
					n - consumed);
				return false;
			}
			wd_cq_wait(&c->a, 100);
		}
	}

	if (chance(r, 2)) {
		/* Stopped with commands in flight: each still completes. */
		c->f->count[RG_PUTQ]++;
		for (i = 0; i < n; i++)
			c->recs[(first + i) % NRECS].may_cancel = true;
		if (ioctl(c->a.fd, WD_CMD_PUT_Q))
			finding(c->f, "PUT_Q: %s", strerror(errno));
		errno = 0;
		if (ioctl(c->a.fd, WD_IOCTL_KICK) != -1 || errno != EINVAL)
			finding(c->f, "KICK on a stopped queue: %s",
				errno ? strerror(errno) : "succeeded");
		if (!ring_wait(c))
			return false;
		if (ioctl(c->a.fd, WD_CMD_START_Q))
			finding(c->f, "START_Q: %s", strerror(errno));
	}
	if (!ring_wait(c))
		return false;
	if (wd_check_byte(c->area[A_CANARY], c->alen[A_CANARY], CANARY) >= 0) {
		finding(c->f, "a malformed command wrote to its dst (batch from %u)",
			first);
		memset(c->area[A_CANARY], CANARY, c->alen[A_CANARY]);
	}
	return true;
}

static void ring_setup(struct __test_metadata *_metadata,
		       struct _test_data_fuzz *self, struct ring_ctx *c)
{
	const size_t page = self->page;
	char *p;
	int a;

	c->page = page;
	c->res_len = 3 * page;
	for (a = 0; a < NR_AREAS; a++) {
		c->alen[a] = areas[a].kib * KiB;
		c->res_len += c->alen[a] + page;
	}
	c->res = reserve(c->res_len);
	ASSERT_NE(NULL, c->res);
	p = c->res + page;
	for (a = 0; a < NR_AREAS; a++) {
		c->area[a] = p;
		p += c->alen[a] + page;
		ASSERT_EQ(0, mprotect(c->area[a], c->alen[a],
				      PROT_READ | PROT_WRITE));
		c->aseed[a] = c->f->seed + 0x100 * (a + 1);
		if (areas[a].pattern)
			wd_fill(c->area[a], c->alen[a], c->aseed[a], 0);
	}
	memset(c->area[A_CANARY], CANARY, c->alen[A_CANARY]);
	ASSERT_EQ(0, mprotect(c->area[A_RO], c->alen[A_RO], PROT_READ));
	c->hole = p;
	ASSERT_EQ(0, munmap(c->hole, page));
	ASSERT_FALSE(wd_is_mapped((void *)LOW_HOLE, 16 * page));

	ASSERT_EQ(0, wd_queue_open(&c->a, &self->devs[0], 0))
		TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_queue_open(&c->b, &self->devs[0], 0))
		TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_register(c->a.fd, c->area[A_SRC], c->alen[A_SRC], 0,
				 &c->handle[A_SRC]));
	ASSERT_EQ(0, wd_register(c->a.fd, c->area[A_DST], c->alen[A_DST],
				 WD_REGISTER_WRITE, &c->handle[A_DST]));
	ASSERT_EQ(0, wd_register(c->a.fd, c->area[A_ROBUF], c->alen[A_ROBUF],
				 0, &c->handle[A_ROBUF]));
	ASSERT_EQ(0, wd_register(c->a.fd, c->area[A_GONE], c->alen[A_GONE],
				 WD_REGISTER_WRITE, &c->handle[A_GONE]));
	ASSERT_EQ(0, wd_register(c->a.fd, c->area[A_STALE], c->alen[A_STALE],
				 WD_REGISTER_WRITE, &c->handle[A_STALE]));
	ASSERT_EQ(0, wd_unregister(c->a.fd, c->handle[A_STALE]));
	c->stale[c->nstale++] = c->handle[A_STALE];
	c->reg[A_SRC] = c->reg[A_DST] = c->reg[A_ROBUF] = c->reg[A_GONE] = true;
	ASSERT_EQ(0, wd_register(c->b.fd, c->area[A_OTHERQ],
				 c->alen[A_OTHERQ], WD_REGISTER_WRITE,
				 &c->b_handle));
	/* Nothing usable is mapped under the buffer any more. */
	ASSERT_TRUE(map_fixed(c->area[A_GONE], c->alen[A_GONE], PROT_NONE));

	c->sq_tail = wd_sq_tail(&c->a);
	c->sq_head = wd_sq_head(&c->a);
	c->cq_head = wd_cq_head(&c->a);
	c->dma_at[0] = below(&c->f->r, RING_DESCS / 2);
	c->dma_at[1] = RING_DESCS / 2 + below(&c->f->r, RING_DESCS / 2);
}

TEST_F_TIMEOUT(fuzz, ring, 1200)
{
	struct ring_ctx *c;
	struct wd_queue_status st;
	char line[512];
	size_t i, pos = 0;
	struct fz f;
	int a;

	fz_init(&f, _metadata, T_RING, rg_names, NR_RG);
	TH_LOG("seed %#llx (WD_FUZZ_SEED)", (unsigned long long)f.seed);
	c = calloc(1, sizeof(*c));
	ASSERT_NE(NULL, c);
	c->f = &f;
	ring_setup(_metadata, self, c);

	while (c->descs < RING_DESCS) {
		f.op = c->descs;
		if (!ring_batch(c))
			break;
	}
	EXPECT_EQ((uint64_t)RING_DESCS, c->descs);
	EXPECT_EQ(2U, c->dma_done);

	wd_status(&c->a, &st);
	EXPECT_EQ(c->accepted, st.submitted);
	EXPECT_EQ(c->completions, st.completed);
	EXPECT_EQ(c->errors, st.errors);
	EXPECT_EQ(c->bytes, st.bytes);
	for (a = 0; a < NR_AREAS; a++)
		if (areas[a].pattern)
			EXPECT_EQ(-1, wd_check(c->area[a], c->alen[a],
					       c->aseed[a], 0))
				TH_LOG("the %s area changed", area_name(a));

	for (i = 0; i < ARRAY_SIZE(c->hist); i++)
		if (c->hist[i] && pos < sizeof(line))
			pos += snprintf(line + pos, sizeof(line) - pos, " %s %llu",
					i < ARRAY_SIZE(errnames) ?
					errnames[i].name : "ok",
					(unsigned long long)c->hist[i]);
	TH_LOG("completions:%s", line);

	for (a = 0; a < NR_AREAS; a++)
		if (c->reg[a])
			EXPECT_EQ(0, wd_unregister(c->a.fd, c->handle[a]))
				TH_LOG("%s: %s", area_name(a), strerror(errno));
	EXPECT_EQ(0, wd_unregister(c->b.fd, c->b_handle));
	EXPECT_EQ(0ULL, wd_read64(&c->a.st->buffers));
	EXPECT_TRUE(WD_WAIT_FOR(wd_read64(&c->a.st->pinned_pages) == 0, 2000));
	wd_queue_close(&c->a);
	wd_queue_close(&c->b);
	munmap(c->res, c->res_len);
	free(c);
	summary(&f);
	recovered(_metadata, self, f.seed);
}

/* ====================================================================== */
/* fuzz.races                                                             */
/* ====================================================================== */

enum {
	RC_DESC, RC_KICK, RC_REGISTER, RC_UNREGISTER, RC_MEMORY, RC_RING_MAP,
	RC_OPEN_CLOSE, RC_OTHER, NR_RC
};

static const char *const rc_names[NR_RC] = {
	"descriptors", "kick", "register", "unregister", "munmap/remap",
	"ring-map/unmap", "open/close", "other",
};

#define RACE_SLOTS	8
#define RACE_SLOT_PAGES	4
#define RACE_HANDLES	64
/*
 * Records of commands by sequence number. Failed ones complete at once and
 * overtake the copies queued before them, so the oldest command in flight
 * may be far behind the newest: a record still in use is never reused,
 * the submitter waits instead.
 */
#define RACE_RECS	4096
#define RACE_PRIV	(64 * KiB)

/* Commands on a queue whose KICKs come from several threads. */
struct race_trk {
	uint32_t seq;
	uint64_t published, completed, reaped;
	struct {
		uint64_t ud;
		bool busy;	/* published, not completed yet */
		bool ok;	/* must succeed */
		eset_t errs;
	} r[RACE_RECS];
};

static bool race_rec_free(const struct race_trk *t)
{
	return !t->r[t->seq % RACE_RECS].busy;
}

struct race_ctx {
	struct fz *f;
	size_t page, mmio, dus;
	uint64_t deadline;
	int stop;
	struct wd_queue q;	/* everyone's */
	int q2fd;		/* its ring is mapped and unmapped meanwhile */
	int q3fd;		/* opened and closed over and over */
	const struct wd_dev *q3dev;
	char *res;
	size_t res_len, slot_len;
	int poisoned[RACE_SLOTS];	/* something else took the slot */
	char *priv;		/* the submitter's: [src][dst] */
	uint64_t count[NR_RC];
	uint32_t max_handle;
	struct race_trk t1, t2;	/* on q and on q2 */
	uint32_t q2_tail, q2_cq_head;
};

static char *race_slot(struct race_ctx *c, int s)
{
	return c->res + c->page + s * (c->slot_len + c->page);
}

static bool race_stop(struct race_ctx *c)
{
	return __atomic_load_n(&c->stop, __ATOMIC_RELAXED) ||
	       wd_now_ms() >= c->deadline;
}

static void race_count(struct race_ctx *c, int what)
{
	__atomic_add_fetch(&c->count[what], 1, __ATOMIC_RELAXED);
}

/* A descriptor on slot memory that others unmap, protect and register. */
static struct wd_desc race_desc(struct race_ctx *c, struct rng *r,
				struct race_trk *t, bool *ok, eset_t *errs)
{
	const eset_t racy = E(EFAULT) | E(ENOENT) | E(EAGAIN);
	int s = below(r, RACE_SLOTS);
	uint64_t off = below(r, c->slot_len), len;
	struct wd_desc d = { 0 };
	char *slot = race_slot(c, s);
	uint64_t x = below(r, 100);

	len = 1 + below(r, c->slot_len - off);
	*ok = true;
	*errs = racy;
	if (x < 25) {
		d.opcode = WD_EDU_OP_NOP;
		*ok = true;
		*errs = 0;
	} else if (x < 50) {
		d.opcode = WD_EDU_OP_EMU_CRC32C;
		d.src = (uintptr_t)slot + off;
		d.len = len;
	} else if (x < 70 || __atomic_load_n(&c->poisoned[s],
					     __ATOMIC_RELAXED)) {
		d.opcode = WD_EDU_OP_EMU_MEMCPY;
		d.src = (uintptr_t)slot + off;
		d.dst = (uintptr_t)c->priv + RACE_PRIV + below(r, RACE_PRIV - len + 1);
		d.len = len;
	} else if (x < 85) {
		d.opcode = WD_EDU_OP_EMU_MEMCPY;
		d.src = (uintptr_t)c->priv + below(r, RACE_PRIV - len + 1);
		d.dst = (uintptr_t)slot + off;
		d.len = len;
		*errs |= E(EACCES);	/* a read-only registration */
	} else if (x < 92) {
		d.opcode = 6 + below(r, 100);
		*ok = false;
		*errs = E(EOPNOTSUPP);
	} else {
		d.opcode = WD_EDU_OP_EMU_CRC32C;
		d.src = WD_KERNEL_ADDR;
		d.len = len;
		*ok = false;
		*errs = E(EFAULT);
	}
	if (d.opcode != WD_EDU_OP_NOP && chance(r, 30))
		d.flags = WD_DESC_REGISTERED;
	if (d.flags)
		*errs |= E(ENOENT);
	d.user_data = ((uint64_t)(uint32_t)rnd(r) << 32) | t->seq;
	t->r[t->seq % RACE_RECS].ud = d.user_data;
	t->r[t->seq % RACE_RECS].busy = true;
	t->r[t->seq % RACE_RECS].ok = *ok;
	t->r[t->seq % RACE_RECS].errs = *errs;
	t->seq++;
	t->published++;
	return d;
}

static void race_check(struct race_ctx *c, struct race_trk *t,
		       const struct wd_cqe *cqe, const char *qname)
{
	uint32_t i = (uint32_t)cqe->user_data % RACE_RECS;
	char b1[32], b2[128];

	t->reaped++;
	if (t->r[i].ud != cqe->user_data || !t->r[i].busy) {
		finding(c->f, "%s: completion with user_data %#llx (status %d): %s (record %#llx, %llu published, %llu reaped)",
			qname, (unsigned long long)cqe->user_data, cqe->status,
			t->r[i].ud != cqe->user_data ? "unknown" :
			"completed twice", (unsigned long long)t->r[i].ud,
			(unsigned long long)t->published,
			(unsigned long long)t->reaped);
		return;
	}
	t->r[i].busy = false;
	t->completed++;
	if (!allowed(cqe->status != 0, -cqe->status, t->r[i].ok,
		     t->r[i].errs))
		finding(c->f, "%s: command %#llx completed with %s, expected %s%s",
			qname, (unsigned long long)cqe->user_data,
			cqe->status ? ename(-cqe->status, b1, sizeof(b1)) :
			"status 0",
			t->r[i].ok ? "success or " : "",
			eset_str(t->r[i].errs, b2, sizeof(b2)));
}

/* Reaps from a ring mapped at @hdr; *@cq_head is ours. */
static void race_reap(struct race_ctx *c, struct race_trk *t,
		      struct wd_ring_header *hdr, uint32_t *cq_head,
		      const char *qname)
{
	struct wd_cqe *cq = (void *)((char *)hdr + hdr->cq_offset);
	uint32_t n, i, mask = hdr->cq_entries - 1;
	struct wd_cqe cqe;

	n = __atomic_load_n(&hdr->cq_tail, __ATOMIC_ACQUIRE) - *cq_head;
	if (n > hdr->cq_entries) {
		finding(c->f, "%s: cq_tail %u, cq_head %u", qname,
			hdr->cq_tail, *cq_head);
		return;
	}
	for (i = 0; i < n; i++) {
		cqe = cq[(*cq_head + i) & mask];
		race_check(c, t, &cqe, qname);
	}
	*cq_head += n;
	__atomic_store_n(&hdr->cq_head, *cq_head, __ATOMIC_RELEASE);
}

/* KICKs every queue in sight, and computes factorials meanwhile. */
static void *race_kicker(void *arg)
{
	struct race_ctx *c = arg;
	struct wd_edu_factorial fa;
	struct rng r;
	unsigned int i;
	int ret, fd;

	rng_init(&r, c->f->seed, 101);
	for (i = 0; !race_stop(c); i++) {
		errno = 0;
		ret = ioctl(c->q.fd, WD_IOCTL_KICK);
		race_count(c, RC_KICK);
		if (ret < 0)
			finding(c->f, "kicker: KICK: %s", strerror(errno));
		ret = ioctl(c->q2fd, WD_IOCTL_KICK);
		race_count(c, RC_KICK);
		if (ret < 0)
			finding(c->f, "kicker: KICK of q2: %s", strerror(errno));
		/* Any file at all by now: closed, reopened, or not a queue. */
		fd = __atomic_load_n(&c->q3fd, __ATOMIC_RELAXED);
		if (fd >= 0) {
			errno = 0;
			ret = ioctl(fd, WD_IOCTL_KICK);
			race_count(c, RC_KICK);
			if (ret < 0 && errno != EBADF && errno != EINVAL &&
			    errno != ENOTTY && errno != ENODEV)
				finding(c->f, "kicker: KICK of q3: %s",
					strerror(errno));
		}
		if (i % 8 == 0) {
			fa.n = below(&r, 20);
			race_count(c, RC_OTHER);
			if (ioctl(c->q.fd, WD_EDU_CMD_FACTORIAL, &fa))
				finding(c->f, "kicker: FACTORIAL: %s",
					strerror(errno));
			else if (fa.result != wd_fact_u32(fa.n))
				finding(c->f, "kicker: %u! = %u?", fa.n,
					fa.result);
		}
	}
	return NULL;
}

static void race_note_handle(struct race_ctx *c, uint32_t h)
{
	uint32_t old = __atomic_load_n(&c->max_handle, __ATOMIC_RELAXED);

	while (h > old && !__atomic_compare_exchange_n(&c->max_handle, &old, h,
						       false, __ATOMIC_RELAXED,
						       __ATOMIC_RELAXED))
		;
}

/* REGISTERs and UNREGISTERs slot memory; others unmap it meanwhile. */
static void *race_registrar(void *arg)
{
	struct race_ctx *c = arg;
	uint32_t handles[RACE_HANDLES], h;
	unsigned int nh = 0, i;
	uint64_t off, len, x;
	struct rng r;
	int s, ret, fd;

	rng_init(&r, c->f->seed, 102);
	while (!race_stop(c)) {
		x = below(&r, 100);
		if (x < 45 && nh < RACE_HANDLES) {
			s = below(&r, RACE_SLOTS);
			if (__atomic_load_n(&c->poisoned[s], __ATOMIC_RELAXED))
				continue;
			off = below(&r, c->slot_len);
			len = 1 + below(&r, c->slot_len - off);
			errno = 0;
			ret = wd_register(c->q.fd, race_slot(c, s) + off, len,
					  chance(&r, 50) ? WD_REGISTER_WRITE : 0,
					  &h);
			race_count(c, RC_REGISTER);
			if (!ret) {
				handles[nh++] = h;
				race_note_handle(c, h);
			} else if (errno != EEXIST && errno != EFAULT &&
				   errno != EAGAIN) {
				finding(c->f, "registrar: REGISTER: %s",
					strerror(errno));
			}
		} else if (x < 85 && nh) {
			i = below(&r, nh);
			errno = 0;
			/* The unmapper may have unregistered it already. */
			if (wd_unregister(c->q.fd, handles[i]) && errno != ENOENT)
				finding(c->f, "registrar: UNREGISTER: %s",
					strerror(errno));
			race_count(c, RC_UNREGISTER);
			handles[i] = handles[--nh];
		} else if (x < 92) {
			h = 1 + below(&r, __atomic_load_n(&c->max_handle,
							 __ATOMIC_RELAXED) + 2);
			errno = 0;
			if (wd_unregister(c->q.fd, h) && errno != ENOENT)
				finding(c->f, "registrar: UNREGISTER %u: %s", h,
					strerror(errno));
			race_count(c, RC_UNREGISTER);
		} else {
			/* A queue being closed, or whatever has its fd now. */
			fd = __atomic_load_n(&c->q3fd, __ATOMIC_RELAXED);
			if (fd < 0)
				continue;
			errno = 0;
			ret = wd_register(fd, c->priv, c->page, 0, &h);
			race_count(c, RC_REGISTER);
			if (ret && errno != EBADF && errno != ENOTTY &&
			    errno != EEXIST && errno != ENODEV)
				finding(c->f, "registrar: REGISTER on q3: %s",
					strerror(errno));
		}
	}
	for (i = 0; i < nh; i++) {
		errno = 0;
		if (wd_unregister(c->q.fd, handles[i]) && errno != ENOENT)
			finding(c->f, "registrar: UNREGISTER at the end: %s",
				strerror(errno));
		race_count(c, RC_UNREGISTER);
	}
	return NULL;
}

/* Maps q2's ring, submits and reaps, unmaps it again; KICKs come anyway. */
static void race_ring_dance(struct race_ctx *c, struct rng *r,
			    uint32_t *tail, uint32_t *cq_head, void **st)
{
	struct wd_ring_header *hdr;
	struct wd_desc *sq, d;
	uint32_t room, k, i;
	eset_t errs;
	bool ok;

	hdr = wd_map(c->q2fd, WD_REGION_DUS, c->dus, PROT_READ | PROT_WRITE);
	race_count(c, RC_RING_MAP);
	if (hdr == MAP_FAILED) {
		/* Unmapped by us, so the region must be free. */
		finding(c->f, "unmapper: mmap of q2's ring: %s",
			strerror(errno));
		return;
	}
	race_reap(c, &c->t2, hdr, cq_head, "q2");
	sq = (void *)((char *)hdr + hdr->sq_offset);
	room = hdr->sq_entries -
	       (*tail - __atomic_load_n(&hdr->sq_head, __ATOMIC_ACQUIRE));
	k = 1 + below(r, 16);
	if (room > hdr->sq_entries)
		room = 0;
	for (i = 0; i < k && i < room && race_rec_free(&c->t2); i++) {
		d = race_desc(c, r, &c->t2, &ok, &errs);
		sq[(*tail + i) & (hdr->sq_entries - 1)] = d;
		race_count(c, RC_DESC);
	}
	*tail += i;
	__atomic_store_n(&hdr->sq_tail, *tail, __ATOMIC_RELEASE);
	if (chance(r, 30)) {
		race_count(c, RC_KICK);
		if (ioctl(c->q2fd, WD_IOCTL_KICK) < 0)
			finding(c->f, "unmapper: KICK of q2: %s",
				strerror(errno));
	}
	race_count(c, RC_RING_MAP);
	if (munmap(hdr, c->dus))
		finding(c->f, "unmapper: munmap of q2's ring: %s",
			strerror(errno));
	if (*st) {
		race_count(c, RC_RING_MAP);
		if (wd_read32(*st) != WD_QUEUE_STATUS_MAGIC)
			finding(c->f, "q2 status magic %#x", wd_read32(*st));
		munmap(*st, c->mmio);
		*st = NULL;
	} else {
		race_count(c, RC_RING_MAP);
		*st = wd_map(c->q2fd, WD_REGION_MMIO, c->mmio, PROT_READ);
		if (*st == MAP_FAILED) {
			finding(c->f, "unmapper: mmap of q2's status: %s",
				strerror(errno));
			*st = NULL;
		}
	}
}

/*
 * Replaces, unmaps, zaps and write-protects slot memory under the
 * registered buffers and commands using it, and dances with q2's ring.
 */
static void *race_unmapper(void *arg)
{
	struct race_ctx *c = arg;
	uint32_t tail = 0, cq_head = 0, h;
	void *st = NULL, *p, *q;
	struct rng r;
	uint64_t x;
	int s;

	rng_init(&r, c->f->seed, 103);
	while (!race_stop(c)) {
		s = below(&r, RACE_SLOTS);
		p = race_slot(c, s);
		x = below(&r, 100);
		if (x >= 72) {
			race_ring_dance(c, &r, &tail, &cq_head, &st);
			continue;
		}
		if (__atomic_load_n(&c->poisoned[s], __ATOMIC_RELAXED))
			continue;
		race_count(c, RC_MEMORY);
		if (x < 25) {
			if (!map_fixed(p, c->slot_len, PROT_READ | PROT_WRITE))
				finding(c->f, "unmapper: MAP_FIXED: %s",
					strerror(errno));
			else
				wd_fill(p, c->slot_len, s, 0);
		} else if (x < 40) {
			if (munmap(p, c->slot_len))
				finding(c->f, "unmapper: munmap: %s",
					strerror(errno));
			q = mmap(p, c->slot_len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS |
				 MAP_FIXED_NOREPLACE, -1, 0);
			if (q != p) {
				/* Not ours any more: nobody may write there. */
				__atomic_store_n(&c->poisoned[s], 1,
						 __ATOMIC_RELAXED);
				if (q != MAP_FAILED)
					munmap(q, c->slot_len);
			} else {
				wd_fill(p, c->slot_len, s, 0);
			}
		} else if (x < 52) {
			if (madvise(p, c->slot_len, MADV_DONTNEED))
				finding(c->f, "unmapper: MADV_DONTNEED: %s",
					strerror(errno));
		} else if (x < 64) {
			if (mprotect(p, c->slot_len, PROT_READ) ||
			    mprotect(p, c->slot_len, PROT_READ | PROT_WRITE))
				finding(c->f, "unmapper: mprotect: %s",
					strerror(errno));
		} else {
			h = 1 + below(&r, __atomic_load_n(&c->max_handle,
							 __ATOMIC_RELAXED) + 2);
			errno = 0;
			if (wd_unregister(c->q.fd, h) && errno != ENOENT)
				finding(c->f, "unmapper: UNREGISTER %u: %s", h,
					strerror(errno));
			race_count(c, RC_UNREGISTER);
		}
	}
	if (st)
		munmap(st, c->mmio);
	/* For the main thread, which drains q2 once everyone is done. */
	c->q2_tail = tail;
	c->q2_cq_head = cq_head;
	return NULL;
}

/*
 * Opens a queue, starts it, maps its ring, submits copies, maybe stops
 * it, and closes it again with the commands in flight, in random order;
 * the other threads KICK and REGISTER on its fd number meanwhile.
 */
static void *race_closer(void *arg)
{
	struct race_ctx *c = arg;
	struct wd_ring_header *hdr;
	uint32_t k, i, taken, done, seen;
	struct wd_desc *sq, d;
	struct wd_cqe *cq;
	uint64_t end;
	bool started, stopped;
	struct rng r;
	int fd, order;

	rng_init(&r, c->f->seed, 104);
	while (!race_stop(c)) {
		fd = wd_open(c->q3dev);
		race_count(c, RC_OPEN_CLOSE);
		if (fd < 0) {
			/* The last one may not be released quite yet. */
			if (errno != EBUSY)
				finding(c->f, "closer: open: %s",
					strerror(errno));
			usleep(1000);
			continue;
		}
		__atomic_store_n(&c->q3fd, fd, __ATOMIC_RELAXED);
		started = chance(&r, 80);
		if (started && ioctl(fd, WD_CMD_START_Q)) {
			finding(c->f, "closer: START_Q: %s", strerror(errno));
			started = false;
		}
		hdr = NULL;
		k = 0;
		if (started && chance(&r, 70)) {
			hdr = wd_map(fd, WD_REGION_DUS, c->dus,
				     PROT_READ | PROT_WRITE);
			race_count(c, RC_RING_MAP);
			if (hdr == MAP_FAILED) {
				finding(c->f, "closer: mmap: %s",
					strerror(errno));
				hdr = NULL;
			}
		}
		if (hdr) {
			/* A fresh queue: its indices start at 0. */
			sq = (void *)((char *)hdr + hdr->sq_offset);
			k = 1 + below(&r, 16);
			for (i = 0; i < k; i++) {
				d = chance(&r, 25) ?
				    wd_mkdesc(WD_EDU_OP_NOP, i, NULL, NULL, 0, 0) :
				    wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, i,
					      c->priv + 2 * RACE_PRIV,
					      c->priv + 3 * RACE_PRIV,
					      RACE_PRIV, 0);
				sq[i] = d;
				race_count(c, RC_DESC);
			}
			__atomic_store_n(&hdr->sq_tail, k, __ATOMIC_RELEASE);
			race_count(c, RC_KICK);
			if (ioctl(fd, WD_IOCTL_KICK) < 0)
				finding(c->f, "closer: KICK: %s",
					strerror(errno));
		}
		stopped = chance(&r, 30);
		if (stopped) {
			race_count(c, RC_OTHER);
			if (ioctl(fd, WD_CMD_PUT_Q))
				finding(c->f, "closer: PUT_Q: %s",
					strerror(errno));
		}
		order = below(&r, 3);
		if (hdr && order == 0) {
			/* The mapping keeps the queue: all it took completes. */
			race_count(c, RC_OPEN_CLOSE);
			if (close(fd))
				finding(c->f, "closer: close: %s",
					strerror(errno));
			end = wd_now_ms() + WD_WAIT_MS;
			for (;;) {
				taken = __atomic_load_n(&hdr->sq_head,
							__ATOMIC_ACQUIRE);
				done = __atomic_load_n(&hdr->cq_tail,
						       __ATOMIC_ACQUIRE);
				if (done == taken || wd_now_ms() > end)
					break;
				usleep(1000);
			}
			if (done != taken || taken > k)
				finding(c->f, "closer: %u of %u commands taken completed after close (%u published)",
					done, taken, k);
			/* In any order, each command once. */
			cq = (void *)((char *)hdr + hdr->cq_offset);
			seen = 0;
			for (i = 0; i < done && i < k; i++) {
				if (cq[i].user_data >= k ||
				    (seen & (1U << cq[i].user_data)) ||
				    (cq[i].status &&
				     !(stopped && cq[i].status == -ECANCELED)))
					finding(c->f, "closer: completion %u: user_data %llu, status %d",
						i,
						(unsigned long long)cq[i].user_data,
						cq[i].status);
				else
					seen |= 1U << cq[i].user_data;
			}
			race_count(c, RC_RING_MAP);
			munmap(hdr, c->dus);
			continue;
		}
		if (hdr && order == 1) {
			race_count(c, RC_RING_MAP);
			munmap(hdr, c->dus);
		}
		race_count(c, RC_OPEN_CLOSE);
		if (close(fd))
			finding(c->f, "closer: close: %s", strerror(errno));
		if (hdr && order == 2) {
			race_count(c, RC_RING_MAP);
			munmap(hdr, c->dus);
		}
		/* c->q3fd keeps the number: the others race its reuse. */
	}
	return NULL;
}

/* The main thread: submits on q, which the kicker KICKs as well. */
static void race_submitter(struct race_ctx *c, uint32_t *tail,
			   uint32_t *cq_head)
{
	struct wd_desc d;
	uint32_t room, n, i;
	struct rng r;
	eset_t errs;
	bool ok;

	rng_init(&r, c->f->seed, 100);
	while (!race_stop(c)) {
		room = c->q.sq_entries - (*tail - wd_sq_head(&c->q));
		if (room > c->q.sq_entries)
			room = 0;
		n = 1 + below(&r, 32);
		if (n > room)
			n = room;
		for (i = 0; i < n && race_rec_free(&c->t1); i++) {
			d = race_desc(c, &r, &c->t1, &ok, &errs);
			*wd_sq_slot(&c->q, *tail + i) = d;
			race_count(c, RC_DESC);
		}
		n = i;
		*tail += n;
		wd_set_sq_tail(&c->q, *tail);
		/* Back-pressure: no more in flight than the two rings hold. */
		if (c->t1.published - c->t1.reaped >
		    c->q.sq_entries + c->q.cq_entries)
			finding(c->f, "q: %llu commands published, %llu reaped (sq_head %u, cq_tail %u)",
				(unsigned long long)c->t1.published,
				(unsigned long long)c->t1.reaped,
				wd_sq_head(&c->q), wd_cq_tail(&c->q));
		race_count(c, RC_KICK);
		if (ioctl(c->q.fd, WD_IOCTL_KICK) < 0)
			finding(c->f, "submitter: KICK: %s", strerror(errno));
		race_reap(c, &c->t1, c->q.hdr, cq_head, "q");
		if (!n)
			wd_cq_wait(&c->q, 10);
	}
}

/* Once the threads are gone: everything published completes, once. */
static bool race_drain(struct race_ctx *c, struct race_trk *t, int fd,
		       struct wd_ring_header *hdr, uint32_t tail,
		       uint32_t *cq_head, const char *qname)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint64_t end = wd_now_ms() + WD_WAIT_MS;

	while (t->completed < t->published) {
		if (__atomic_load_n(&hdr->sq_head, __ATOMIC_ACQUIRE) != tail &&
		    ioctl(fd, WD_IOCTL_KICK) < 0) {
			finding(c->f, "%s: KICK while draining: %s", qname,
				strerror(errno));
			return false;
		}
		race_reap(c, t, hdr, cq_head, qname);
		if (t->completed == t->published)
			break;
		if (wd_now_ms() > end) {
			finding(c->f, "%s: %llu of %llu commands completed (sq_head %u, sq_tail %u, cq_tail %u)",
				qname, (unsigned long long)t->completed,
				(unsigned long long)t->published, hdr->sq_head,
				tail, hdr->cq_tail);
			return false;
		}
		poll(&pfd, 1, 10);
	}
	return true;
}

TEST_F_TIMEOUT(fuzz, races, 600)
{
	void *(*const fns[])(void *) = {
		race_kicker, race_registrar, race_unmapper, race_closer,
	};
	const char *const fn_names[] = {
		"kicker", "registrar", "unmapper", "closer",
	};
	uint32_t q1_tail, q1_cq_head, h, s;
	struct wd_queue_status st;
	struct wd_ring_header *hdr;
	pthread_t th[ARRAY_SIZE(fns)];
	struct timespec ts;
	struct race_ctx *c;
	int poisoned = 0;
	struct fz f;
	size_t i;
	void *p;

	fz_init(&f, _metadata, T_RACES, rc_names, NR_RC);
	TH_LOG("seed %#llx (WD_FUZZ_SEED), %d ms", (unsigned long long)f.seed,
	       RACE_MS);
	c = calloc(1, sizeof(*c));
	ASSERT_NE(NULL, c);
	c->f = &f;
	c->page = self->page;
	c->mmio = self->mmio;
	c->dus = self->dus;
	c->q3fd = -1;
	c->q3dev = &self->devs[self->n > 1 ? 1 : 0];
	c->slot_len = RACE_SLOT_PAGES * c->page;
	c->res_len = c->page + RACE_SLOTS * (c->slot_len + c->page);
	c->res = reserve(c->res_len);
	ASSERT_NE(NULL, c->res);
	for (s = 0; s < RACE_SLOTS; s++) {
		ASSERT_TRUE(map_fixed(race_slot(c, s), c->slot_len,
				      PROT_READ | PROT_WRITE));
		wd_fill(race_slot(c, s), c->slot_len, s, 0);
	}
	/* [submitter's src][submitter's dst][closer's src][closer's dst] */
	c->priv = wd_alloc(4 * RACE_PRIV);
	ASSERT_NE(NULL, c->priv);
	wd_fill(c->priv, 4 * RACE_PRIV, f.seed, 0);
	ASSERT_EQ(0, wd_queue_open(&c->q, &self->devs[0], 0))
		TH_LOG("%s", wd_ring_error());
	c->q2fd = wd_open(&self->devs[0]);
	ASSERT_LE(0, c->q2fd) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(c->q2fd, WD_CMD_START_Q));

	q1_tail = wd_sq_tail(&c->q);
	q1_cq_head = wd_cq_head(&c->q);
	c->deadline = wd_now_ms() + RACE_MS;
	for (i = 0; i < ARRAY_SIZE(fns); i++)
		ASSERT_EQ(0, pthread_create(&th[i], NULL, fns[i], c));
	race_submitter(c, &q1_tail, &q1_cq_head);
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < ARRAY_SIZE(fns); i++) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 2 * WD_WAIT_MS / 1000;
		/* A thread stuck in the kernel: the kernel log has the rest. */
		ASSERT_EQ(0, pthread_timedjoin_np(th[i], NULL, &ts))
			TH_LOG("the %s thread did not stop in %d s (WD_FUZZ_SEED=%#llx)",
			       fn_names[i], 2 * WD_WAIT_MS / 1000,
			       (unsigned long long)f.seed);
	}
	f.op = 0;
	for (i = 0; i < NR_RC; i++)
		f.count[i] = c->count[i];

	/* q: everything the submitter published completes exactly once. */
	race_drain(c, &c->t1, c->q.fd, c->q.hdr, q1_tail, &q1_cq_head, "q");
	wd_status(&c->q, &st);
	EXPECT_EQ(c->t1.published, st.submitted);
	EXPECT_EQ(c->t1.published, st.completed);
	EXPECT_EQ(c->t1.completed, st.completed);

	/* q2: the same, through a fresh mapping of its ring. */
	hdr = wd_map(c->q2fd, WD_REGION_DUS, c->dus, PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, hdr) TH_LOG("q2: %s", strerror(errno));
	race_drain(c, &c->t2, c->q2fd, hdr, c->q2_tail, &c->q2_cq_head, "q2");
	munmap(hdr, c->dus);
	p = wd_map(c->q2fd, WD_REGION_MMIO, c->mmio, PROT_READ);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("q2: %s", strerror(errno));
	EXPECT_EQ(c->t2.published, wd_read64(&((struct wd_queue_status *)p)->submitted));
	EXPECT_EQ(c->t2.completed, wd_read64(&((struct wd_queue_status *)p)->completed));
	munmap(p, c->mmio);

	/* Whatever is still registered goes, by handle. */
	for (h = 1; h <= c->max_handle + 1; h++) {
		errno = 0;
		if (wd_unregister(c->q.fd, h) && errno != ENOENT)
			finding(&f, "UNREGISTER %u at the end: %s", h,
				strerror(errno));
	}
	EXPECT_EQ(0ULL, wd_read64(&c->q.st->buffers));
	EXPECT_TRUE(WD_WAIT_FOR(wd_read64(&c->q.st->pinned_pages) == 0, 2000))
		TH_LOG("%llu pages pinned",
		       (unsigned long long)wd_read64(&c->q.st->pinned_pages));
	wd_queue_close(&c->q);
	close(c->q2fd);

	for (s = 0; s < RACE_SLOTS; s++)
		poisoned += c->poisoned[s];
	if (poisoned)
		TH_LOG("%d slots were mapped by something else after munmap",
		       poisoned);
	else
		munmap(c->res, c->res_len);
	munmap(c->priv, 4 * RACE_PRIV);
	free(c);
	summary(&f);
	recovered(_metadata, self, f.seed);
}

/* ====================================================================== */
/* fuzz.recovers                                                          */
/* ====================================================================== */

enum {
	RV_OPEN, RV_CLOSE, RV_STARTPUT, RV_MAP, RV_UNMAP, RV_DESC, RV_KICK,
	RV_REAP, RV_REGISTER, RV_FACTORIAL, NR_RV
};

static const char *const rv_names[NR_RV] = {
	"open", "close", "start/put", "mmap", "munmap", "descriptors", "kick",
	"reap", "register/unregister", "factorial",
};

#define RV_MAXQ		12
#define RV_RECS		4096	/* see RACE_RECS */
#define RV_BUF		(256 * KiB)
#define RV_REG_PAGES	64
#define RV_MAX_REGS	300	/* successful REGISTERs: each pins and maps */
#define RV_MAX_HANDLES	8

struct rv_q {
	bool used;
	int dev;
	int fd;			/* -1 once closed; mappings keep the queue */
	bool started;
	struct wd_queue_status *st;
	struct wd_ring_header *hdr;
	uint32_t tail, head, cq_head;
	uint32_t seq;
	uint64_t accepted, completed;
	uint32_t handles[RV_MAX_HANDLES];
	uintptr_t haddr[RV_MAX_HANDLES];
	unsigned int nh;
	struct {
		uint64_t ud;
		uint64_t result;
		uint8_t state;
		bool ok;
		bool may_cancel;
		eset_t errs;
	} r[RV_RECS];
};

struct rv_ctx {
	struct fz *f;
	const struct _test_data_fuzz *self;
	size_t page;
	struct rv_q *q;
	int held[WD_MAX_DEVS];
	char *src, *dst, *reg;
	unsigned int regs;
};

static void rv_release_if_gone(struct rv_ctx *c, struct rv_q *q)
{
	/* No fd and no mapping: the queue is released, its commands lost. */
	if (q->fd < 0 && !q->st && !q->hdr) {
		q->used = false;
		c->held[q->dev]--;
	}
}

static void rv_open(struct rv_ctx *c)
{
	struct rng *r = &c->f->r;
	int dev = below(r, c->self->n), fd, i;
	const bool room = c->held[dev] < c->self->avail[dev];
	struct rv_q *q = NULL;

	for (i = 0; i < RV_MAXQ && !q; i++)
		if (!c->q[i].used)
			q = &c->q[i];
	if (!q)
		return;
	errno = 0;
	fd = wd_open(&c->self->devs[dev]);
	c->f->count[RV_OPEN]++;
	if (fd < 0) {
		if (room || errno != EBUSY)
			finding(c->f, "open %s with %d of %d queues open: %s",
				c->self->devs[dev].name, c->held[dev],
				c->self->avail[dev], strerror(errno));
		return;
	}
	if (!room)
		finding(c->f, "open %s with all %d queues open worked",
			c->self->devs[dev].name, c->self->avail[dev]);
	memset(q, 0, sizeof(*q));
	q->used = true;
	q->dev = dev;
	q->fd = fd;
	c->held[dev]++;
	if (chance(r, 70)) {
		c->f->count[RV_STARTPUT]++;
		if (ioctl(fd, WD_CMD_START_Q))
			finding(c->f, "START_Q of a fresh queue: %s",
				strerror(errno));
		else
			q->started = true;
	}
}

static void rv_check(struct rv_ctx *c, struct rv_q *q, const struct wd_cqe *cqe)
{
	unsigned int i = (uint32_t)cqe->user_data % RV_RECS;
	char b1[32], b2[128];
	eset_t errs;

	if (q->r[i].ud != cqe->user_data || q->r[i].state != R_ACCEPTED) {
		finding(c->f, "completion with user_data %#llx: %s",
			(unsigned long long)cqe->user_data,
			q->r[i].ud != cqe->user_data ? "unknown" :
			q->r[i].state == R_DONE ? "completed twice" :
			"never taken");
		return;
	}
	q->r[i].state = R_DONE;
	q->completed++;
	if (q->r[i].ok && !cqe->status) {
		if (cqe->result != q->r[i].result)
			finding(c->f, "command %#llx: result %#llx, expected %#llx",
				(unsigned long long)cqe->user_data,
				(unsigned long long)cqe->result,
				(unsigned long long)q->r[i].result);
		return;
	}
	errs = q->r[i].errs | (q->r[i].may_cancel ? E(ECANCELED) : 0);
	if (!allowed(cqe->status != 0, -cqe->status, q->r[i].ok, errs))
		finding(c->f, "command %#llx: %s, expected %s%s",
			(unsigned long long)cqe->user_data,
			cqe->status ? ename(-cqe->status, b1, sizeof(b1)) :
			"status 0", q->r[i].ok ? "success or " : "",
			eset_str(errs, b2, sizeof(b2)));
}

static void rv_reap(struct rv_ctx *c, struct rv_q *q)
{
	struct wd_cqe *cq = (void *)((char *)q->hdr + q->hdr->cq_offset);
	uint32_t n, i, mask = q->hdr->cq_entries - 1;
	struct wd_cqe cqe;

	c->f->count[RV_REAP]++;
	n = __atomic_load_n(&q->hdr->cq_tail, __ATOMIC_ACQUIRE) - q->cq_head;
	if (n > q->hdr->cq_entries) {
		finding(c->f, "cq_tail %u, cq_head %u", q->hdr->cq_tail,
			q->cq_head);
		return;
	}
	for (i = 0; i < n; i++) {
		cqe = cq[(q->cq_head + i) & mask];
		rv_check(c, q, &cqe);
	}
	q->cq_head += n;
	__atomic_store_n(&q->hdr->cq_head, q->cq_head, __ATOMIC_RELEASE);
}

static void rv_kick(struct rv_ctx *c, struct rv_q *q)
{
	uint32_t pending = q->tail - q->head, i, head;
	int ret, err;

	c->f->count[RV_KICK]++;
	errno = 0;
	ret = ioctl(q->fd, WD_IOCTL_KICK);
	err = errno;
	head = __atomic_load_n(&q->hdr->sq_head, __ATOMIC_ACQUIRE);
	if (!q->started) {
		if (ret != -1 || err != EINVAL || head != q->head)
			finding(c->f, "KICK on a stopped queue: %d (%s), sq_head %u -> %u",
				ret, ret < 0 ? strerror(err) : "ok", q->head,
				head);
		return;
	}
	if (ret < 0 || (uint32_t)ret > pending || head != q->head + ret) {
		finding(c->f, "KICK with %u pending: %d (%s), sq_head %u -> %u",
			pending, ret, ret < 0 ? strerror(err) : "ok", q->head,
			head);
		return;
	}
	for (i = 0; i < (uint32_t)ret; i++)
		q->r[(q->head + i) % RV_RECS].state = R_ACCEPTED;
	q->head += ret;
	q->accepted += ret;
}

static void rv_submit(struct rv_ctx *c, struct rv_q *q)
{
	struct rng *r = &c->f->r;
	uint32_t room = q->hdr->sq_entries - (q->tail - q->head), n, i, k;
	struct wd_desc *sq = (void *)((char *)q->hdr + q->hdr->sq_offset);
	struct wd_desc d;
	uint64_t len, x;
	void *rec;

	n = 1 + below(r, 16);
	if (n > room)
		n = room;
	for (i = 0; i < n; i++) {
		k = q->seq % RV_RECS;
		if (q->r[k].state == R_PUBLISHED ||
		    q->r[k].state == R_ACCEPTED)
			break;
		rec = &q->r[k];
		memset(rec, 0, sizeof(q->r[k]));
		q->r[k].ok = true;
		x = below(r, 100);
		len = 1 + below(r, 16 * KiB);
		if (x < 20) {
			d = wd_mkdesc(WD_EDU_OP_NOP, 0, NULL, NULL, 0, 0);
		} else if (x < 35) {
			d = wd_mkdesc(WD_EDU_OP_FACTORIAL, 0, NULL, NULL, 0,
				      below(r, 20));
			q->r[k].result = wd_fact_u32(d.arg);
		} else if (x < 65) {
			d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0,
				      c->src + below(r, RV_BUF - len),
				      c->dst + below(r, RV_BUF - len), len, 0);
			q->r[k].result = len;
		} else if (x < 80) {
			len = 1 + below(r, 4 * KiB);
			d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0,
				      c->src + below(r, RV_BUF - len), NULL,
				      len, 0);
			q->r[k].result = wd_crc32c(0, (void *)(uintptr_t)d.src,
						   len);
		} else if (x < 90) {
			d = wd_mkdesc(6 + below(r, 1000), 0, NULL, NULL, 0, 0);
			q->r[k].ok = false;
			q->r[k].errs = E(EOPNOTSUPP);
		} else {
			d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 0, NULL, NULL, len,
				      0);
			d.src = WD_KERNEL_ADDR;
			q->r[k].ok = false;
			q->r[k].errs = E(EFAULT);
		}
		d.user_data = ((uint64_t)(uint32_t)rnd(r) << 32) | q->seq;
		q->r[k].ud = d.user_data;
		q->r[k].state = R_PUBLISHED;
		sq[(q->tail + i) & (q->hdr->sq_entries - 1)] = d;
		q->seq++;
		c->f->count[RV_DESC]++;
	}
	n = i;
	q->tail += n;
	__atomic_store_n(&q->hdr->sq_tail, q->tail, __ATOMIC_RELEASE);
	(void)rec;
	rv_kick(c, q);
}

static void rv_map(struct rv_ctx *c, struct rv_q *q)
{
	const int region = below(&c->f->r, 2);
	void **slot = region ? (void **)&q->hdr : (void **)&q->st;
	size_t len = region ? c->self->dus : c->self->mmio;
	void *p;

	c->f->count[RV_MAP]++;
	errno = 0;
	p = wd_map(q->fd, region, len,
		   region ? PROT_READ | PROT_WRITE : PROT_READ);
	if (*slot) {
		if (p != MAP_FAILED || errno != EEXIST)
			finding(c->f, "second mmap of region %d: %s", region,
				p == MAP_FAILED ? strerror(errno) : "worked");
		if (p != MAP_FAILED)
			munmap(p, len);
		return;
	}
	if (p == MAP_FAILED) {
		finding(c->f, "mmap of region %d: %s", region, strerror(errno));
		return;
	}
	*slot = p;
}

static void rv_unmap(struct rv_ctx *c, struct rv_q *q)
{
	const int region = below(&c->f->r, 2);

	c->f->count[RV_UNMAP]++;
	if (region && q->hdr) {
		munmap(q->hdr, c->self->dus);
		q->hdr = NULL;
	} else if (!region && q->st) {
		munmap(q->st, c->self->mmio);
		q->st = NULL;
	}
	rv_release_if_gone(c, q);
}

static void rv_registry(struct rv_ctx *c, struct rv_q *q)
{
	struct rng *r = &c->f->r;
	uintptr_t addr;
	unsigned int i;
	bool overlap;
	uint32_t h;
	int ret;

	c->f->count[RV_REGISTER]++;
	if (q->nh && chance(r, 45)) {
		i = below(r, q->nh);
		if (wd_unregister(q->fd, q->handles[i]))
			finding(c->f, "UNREGISTER %u: %s", q->handles[i],
				strerror(errno));
		q->handles[i] = q->handles[--q->nh];
		q->haddr[i] = q->haddr[q->nh];
		return;
	}
	if (q->nh == RV_MAX_HANDLES || c->regs >= RV_MAX_REGS) {
		/* Never registered on this queue: ENOENT. */
		h = 100000 + below(r, 1000);
		errno = 0;
		if (wd_unregister(q->fd, h) != -1 || errno != ENOENT)
			finding(c->f, "UNREGISTER %u: %s", h,
				errno ? strerror(errno) : "worked");
		return;
	}
	addr = (uintptr_t)c->reg + below(r, RV_REG_PAGES) * c->page;
	overlap = false;
	for (i = 0; i < q->nh; i++)
		overlap |= q->haddr[i] == addr;
	errno = 0;
	ret = wd_register(q->fd, (void *)addr, c->page,
			  chance(r, 50) ? WD_REGISTER_WRITE : 0, &h);
	if (!allowed(ret < 0, errno, !overlap, E(EEXIST))) {
		mismatch(c->f, overlap ? "REGISTER of a registered page" :
			 "REGISTER of a free page", ret < 0, errno, !overlap,
			 E(EEXIST));
	}
	if (!ret) {
		c->regs++;
		if (overlap) {
			wd_unregister(q->fd, h);
			return;
		}
		q->handles[q->nh] = h;
		q->haddr[q->nh++] = addr;
	}
}

static void rv_startput(struct rv_ctx *c, struct rv_q *q)
{
	const bool start = chance(&c->f->r, 50);
	unsigned int i;
	int ret;

	c->f->count[RV_STARTPUT]++;
	errno = 0;
	ret = ioctl(q->fd, start ? WD_CMD_START_Q : WD_CMD_PUT_Q);
	if (start && q->started) {
		if (ret != -1 || errno != EINVAL)
			finding(c->f, "second START_Q: %s",
				ret ? strerror(errno) : "worked");
		return;
	}
	if (ret) {
		finding(c->f, "%s: %s", start ? "START_Q" : "PUT_Q",
			strerror(errno));
		return;
	}
	q->started = start;
	if (!start)
		for (i = 0; i < RV_RECS; i++)
			if (q->r[i].state == R_ACCEPTED)
				q->r[i].may_cancel = true;
}

static void rv_factorial(struct rv_ctx *c, struct rv_q *q)
{
	struct wd_edu_factorial fa = { .n = below(&c->f->r, 20) };
	int ret;

	c->f->count[RV_FACTORIAL]++;
	errno = 0;
	ret = ioctl(q->fd, WD_EDU_CMD_FACTORIAL, &fa);
	if (q->started ? ret || fa.result != wd_fact_u32(fa.n) :
			 ret != -1 || errno != EINVAL)
		finding(c->f, "FACTORIAL %u on a %s queue: %d (%s), result %u",
			fa.n, q->started ? "started" : "stopped", ret,
			ret ? strerror(errno) : "ok", fa.result);
}

/* Everything the queue took completes; then it goes. */
static void rv_finish(struct rv_ctx *c, struct rv_q *q)
{
	struct pollfd pfd;
	uint64_t end;

	if (q->fd >= 0 && !q->hdr)
		q->hdr = wd_map(q->fd, WD_REGION_DUS, c->self->dus,
				PROT_READ | PROT_WRITE);
	if (q->hdr == MAP_FAILED) {
		finding(c->f, "mmap of the ring at the end: %s",
			strerror(errno));
		q->hdr = NULL;
	}
	if (q->hdr) {
		if (q->fd >= 0 && !q->started &&
		    !ioctl(q->fd, WD_CMD_START_Q))
			q->started = true;
		end = wd_now_ms() + WD_WAIT_MS;
		while (wd_now_ms() < end) {
			if (q->fd >= 0 && q->head != q->tail)
				rv_kick(c, q);
			rv_reap(c, q);
			if (q->completed == q->accepted &&
			    (q->fd < 0 || q->head == q->tail))
				break;
			pfd = (struct pollfd){ .fd = q->fd, .events = POLLIN };
			if (q->fd >= 0)
				poll(&pfd, 1, 10);
			else
				usleep(1000);
		}
		if (q->completed != q->accepted)
			finding(c->f, "%llu of %llu commands taken completed",
				(unsigned long long)q->completed,
				(unsigned long long)q->accepted);
	}
	if (q->st) {
		/* Without the ring, the status page is all there is to see. */
		if (!q->hdr)
			WD_WAIT_FOR(wd_read64(&q->st->completed) ==
				 wd_read64(&q->st->submitted), WD_WAIT_MS);
		if (wd_read64(&q->st->submitted) != q->accepted ||
		    wd_read64(&q->st->completed) !=
		    (q->hdr ? q->completed : q->accepted))
			finding(c->f, "status: submitted %llu, completed %llu; expected %llu, %llu",
				(unsigned long long)wd_read64(&q->st->submitted),
				(unsigned long long)wd_read64(&q->st->completed),
				(unsigned long long)q->accepted,
				(unsigned long long)(q->hdr ? q->completed :
						     q->accepted));
		munmap(q->st, c->self->mmio);
		q->st = NULL;
	}
	if (q->hdr)
		munmap(q->hdr, c->self->dus);
	q->hdr = NULL;
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	rv_release_if_gone(c, q);
}

TEST_F_TIMEOUT(fuzz, recovers, 900)
{
	struct rv_ctx c = { 0 };
	struct rv_q *q;
	uint64_t x, sum = 0;
	char line[512];
	size_t pos = 0;
	struct fz f;
	int i, t;

	fz_init(&f, _metadata, T_RECOVERS, rv_names, NR_RV);
	TH_LOG("seed %#llx (WD_FUZZ_SEED)", (unsigned long long)f.seed);
	c.f = &f;
	c.self = self;
	c.page = self->page;
	c.q = calloc(RV_MAXQ, sizeof(*c.q));
	ASSERT_NE(NULL, c.q);
	c.src = wd_alloc(RV_BUF);
	c.dst = wd_alloc(RV_BUF);
	c.reg = wd_alloc(RV_REG_PAGES * c.page);
	ASSERT_NE(NULL, c.src);
	ASSERT_NE(NULL, c.dst);
	ASSERT_NE(NULL, c.reg);
	wd_fill(c.src, RV_BUF, f.seed, 0);
	memset(c.dst, 0, RV_BUF);
	memset(c.reg, 1, RV_REG_PAGES * c.page);

	for (f.op = 0; f.op < RECOVER_OPS; f.op++) {
		q = &c.q[below(&f.r, RV_MAXQ)];
		x = below(&f.r, 100);
		if (!q->used) {
			if (x < 40)
				rv_open(&c);
			continue;
		}
		if (q->fd < 0) {
			/* Closed, alive while mapped: reap, or unmap. */
			if (q->hdr && x < 70)
				rv_reap(&c, q);
			else
				rv_unmap(&c, q);
			continue;
		}
		if (x < 8) {
			rv_open(&c);
		} else if (x < 13) {
			c.f->count[RV_CLOSE]++;
			if (close(q->fd))
				finding(&f, "close: %s", strerror(errno));
			q->fd = -1;
			q->nh = 0;
			rv_release_if_gone(&c, q);
		} else if (x < 19) {
			rv_startput(&c, q);
		} else if (x < 28) {
			rv_map(&c, q);
		} else if (x < 32) {
			rv_unmap(&c, q);
		} else if (x < 60) {
			if (q->hdr)
				rv_submit(&c, q);
			else
				rv_map(&c, q);
		} else if (x < 75) {
			if (q->hdr)
				rv_reap(&c, q);
		} else if (x < 85) {
			rv_registry(&c, q);
		} else if (x < 92) {
			rv_factorial(&c, q);
		} else if (q->hdr && q->accepted != q->completed) {
			wd_cq_wait(&(struct wd_queue){ .fd = q->fd,
				.hdr = q->hdr, .cq_entries = q->hdr->cq_entries },
				50);
			rv_reap(&c, q);
		}
	}
	for (i = 0; i < RV_MAXQ; i++)
		if (c.q[i].used)
			rv_finish(&c, &c.q[i]);
	for (i = 0; i < self->n; i++)
		EXPECT_EQ(0, c.held[i]);
	free(c.q);
	munmap(c.src, RV_BUF);
	munmap(c.dst, RV_BUF);
	munmap(c.reg, RV_REG_PAGES * c.page);
	summary(&f);
	recovered(_metadata, self, f.seed);

	/* The whole run, every test's process included. */
	ASSERT_NE(NULL, totals);
	for (t = 0; t < NR_TESTS; t++) {
		sum += totals->ops[t];
		pos += snprintf(line + pos, sizeof(line) - pos, "%s%s %llu",
				t ? ", " : "", test_names[t],
				(unsigned long long)totals->ops[t]);
	}
	TH_LOG("fuzz: %llu operations (%s), seed %#llx",
	       (unsigned long long)sum, line, (unsigned long long)f.seed);
	if (totals->ran == (1U << NR_TESTS) - 1) {
		EXPECT_LE((uint64_t)MIN_TOTAL_OPS, sum);
	} else {
		TH_LOG("not every fuzz test ran to its end: the %d-operation floor is not checked",
		       MIN_TOTAL_OPS);
	}
}

TEST_HARNESS_MAIN
