// SPDX-License-Identifier: GPL-2.0
/*
 * wd_bench: what warpdrive's shadow ring costs, measured side by side in one
 * run ("make bench" boots a guest for it).
 *
 *   wd_bench [-o FILE] [-r REPS] [-t MS] [-c /dev/wd_null_c] [-P CASE]
 *
 * Every case runs REPS times (default 15). The cases are interleaved: each
 * repetition runs all of them once, forwards in even repetitions and
 * backwards in odd ones, so that a slow phase of a noisy host hits every
 * case alike and ratios between cases stay meaningful. Each sample runs as
 * many iterations as take about MS milliseconds (default 40), counted once
 * before the repetitions, in a pass that also warms everything up. A sample
 * is the time per operation in ns; the table shows the median, min and max
 * over the repetitions, and each ratio is the median of the per-repetition
 * ratios of two cases measured in the same repetition.
 *
 * The table goes to stdout, the whole result as JSON to FILE, or to stdout
 * after the table if no FILE is given.
 *
 * -P CASE runs that case once more after the repetitions, under ftrace's
 * function profiler (CONFIG_FUNCTION_PROFILER), and prints the kernel
 * functions that took the most time, each without its children, per CPU:
 * where the case's time goes. The measured repetitions run without it.
 *
 * Uses nothing but the UAPI header, and the kernel's own io_uring header
 * for the anchor that warpdrive's ring is measured against (io_uring set up
 * by raw system calls, no liburing). Under TCG the absolute numbers say
 * little about hardware; the ratios are what to look at, and the goals of
 * issue 11 are ratios: each is printed with its goal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/mempolicy.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <misc/warpdrive.h>

/*
 * The "null" ioctl of a queue fd: a number in warpdrive's own range ('W',
 * 0x10 to 0x3f) that no ioctl uses, below the drivers' range. The VFS passes
 * it to warpdrive untouched (do_vfs_ioctl() only takes the generic FIO and
 * FS_IOC numbers), and warpdrive answers ENOTTY after its one check that the
 * device is still there, without calling the driver or touching the
 * argument: the least an ioctl on a queue does. KICK with an empty ring is
 * measured too, as the cheapest ioctl that does something.
 */
#define NULL_IOCTL		_IO('W', 0x3f)

#define MAX_REPS		31
#define DEFAULT_REPS		15
#define MAX_CASES		96
#define MAX_RATIOS		24
#define WAIT_MS			30000
#define KIB			1024UL
#define MIB			(1024 * KIB)
/* The memcpy buffers: room for the largest batch of the largest size. */
#define COPY_BUF		(4 * MIB)
#define INVAL_PAGES		256
#define SCALE_BATCH		64
#define CRC_LEN			64

static const char *usage =
	"usage: wd_bench [-o FILE] [-r REPS] [-t MS] [-c NULL_DEV] [-P CASE]\n";

static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "wd_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* ---- a shadow-ring queue ---- */

struct queue {
	const char *dev;
	int fd;
	struct wd_queue_status *st;
	size_t st_len;
	void *dus;
	size_t dus_len;
	struct wd_ring_header *hdr;
	struct wd_desc *sq;
	struct wd_cqe *cq;
	uint32_t sq_entries, cq_entries;
	/* We are the only writer of these two, so they are cached. */
	uint32_t sq_tail, cq_head;
};

static size_t region_size(const char *dev, const char *attr)
{
	char path[256];
	unsigned long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/uacce/%s/%s", dev, attr);
	f = fopen(path, "re");
	if (!f || fscanf(f, "%lu", &v) != 1)
		die("cannot read %s", path);
	fclose(f);
	return v;
}

/* Opens and starts a queue of @dev; -errno (EBUSY: none left) on failure. */
static int queue_open(struct queue *q, const char *dev)
{
	char node[128];
	long pg = sysconf(_SC_PAGESIZE);

	memset(q, 0, sizeof(*q));
	q->dev = dev;
	q->st_len = region_size(dev, "region_mmio_size");
	q->dus_len = region_size(dev, "region_dus_size");
	snprintf(node, sizeof(node), "/dev/%s", dev);
	q->fd = open(node, O_RDWR | O_CLOEXEC);
	if (q->fd < 0)
		return -errno;
	if (ioctl(q->fd, WD_CMD_START_Q))
		die("%s: START_Q: %s", node, strerror(errno));
	q->st = mmap(NULL, q->st_len, PROT_READ, MAP_SHARED, q->fd,
		     WD_REGION_MMIO * pg);
	q->dus = mmap(NULL, q->dus_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		      q->fd, WD_REGION_DUS * pg);
	if (q->st == MAP_FAILED || q->dus == MAP_FAILED)
		die("%s: mmap: %s", node, strerror(errno));
	q->hdr = q->dus;
	if (q->hdr->magic != WD_RING_MAGIC ||
	    q->hdr->desc_size != sizeof(struct wd_desc) ||
	    q->hdr->cqe_size != sizeof(struct wd_cqe) ||
	    q->st->magic != WD_QUEUE_STATUS_MAGIC)
		die("%s: not a shadow-ring queue", node);
	q->sq = (void *)((char *)q->dus + q->hdr->sq_offset);
	q->cq = (void *)((char *)q->dus + q->hdr->cq_offset);
	q->sq_entries = q->hdr->sq_entries;
	q->cq_entries = q->hdr->cq_entries;
	q->sq_tail = q->hdr->sq_tail;
	q->cq_head = q->hdr->cq_head;
	return 0;
}

/* A queue on the first of @devs, in order, that has one free. */
static void queue_open_any(struct queue *q, char devs[][32], int ndevs)
{
	int i, ret = -ENODEV;

	for (i = 0; i < ndevs; i++) {
		ret = queue_open(q, devs[i]);
		if (!ret)
			return;
		if (ret != -EBUSY)
			die("open /dev/%s: %s", devs[i], strerror(-ret));
	}
	die("no free queue: %s", strerror(-ret));
}

static void push(struct queue *q, const struct wd_desc *d)
{
	q->sq[q->sq_tail++ & (q->sq_entries - 1)] = *d;
}

static void publish(struct queue *q)
{
	__atomic_store_n(&q->hdr->sq_tail, q->sq_tail, __ATOMIC_RELEASE);
}

/*
 * KICK, which must take all @n published descriptors: the benchmark never
 * leaves completions unreaped, so the completion ring always has room.
 */
static void kick(struct queue *q, unsigned int n)
{
	int ret = ioctl(q->fd, WD_IOCTL_KICK);

	if (ret < 0)
		die("%s: KICK: %s", q->dev, strerror(errno));
	if ((unsigned int)ret != n)
		die("%s: KICK took %d of %u", q->dev, ret, n);
}

/*
 * Reaps @n completions, sleeping in poll() while there is none, as an
 * application would. A failed command makes the numbers meaningless, so it
 * ends the run.
 */
/* poll() calls that reap() made: how often the benchmark slept. */
static unsigned long npolls;

static void reap(struct queue *q, unsigned int n)
{
	struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
	uint32_t tail, avail, i;
	struct wd_cqe *c;

	while (n) {
		tail = __atomic_load_n(&q->hdr->cq_tail, __ATOMIC_ACQUIRE);
		avail = tail - q->cq_head;
		if (!avail) {
			npolls++;
			if (poll(&pfd, 1, WAIT_MS) <= 0 ||
			    (pfd.revents & (POLLERR | POLLHUP)))
				die("%s: no completion in %d ms", q->dev,
				    WAIT_MS);
			continue;
		}
		if (avail > n)
			die("%s: %u completions, expected %u", q->dev, avail,
			    n);
		for (i = 0; i < avail; i++) {
			c = &q->cq[(q->cq_head + i) & (q->cq_entries - 1)];
			if (c->status)
				die("%s: command %llu failed: %s", q->dev,
				    (unsigned long long)c->user_data,
				    strerror(-c->status));
		}
		q->cq_head += avail;
		__atomic_store_n(&q->hdr->cq_head, q->cq_head,
				 __ATOMIC_RELEASE);
		n -= avail;
	}
}

static struct wd_desc mkdesc(uint16_t op, const void *src, void *dst,
			     uint64_t len)
{
	return (struct wd_desc){
		.opcode = op,
		.src = (uintptr_t)src,
		.dst = (uintptr_t)dst,
		.len = len,
	};
}

static uint32_t reg(struct queue *q, void *addr, size_t len, uint32_t flags)
{
	struct wd_register r = {
		.addr = (uintptr_t)addr, .len = len, .flags = flags,
	};

	if (ioctl(q->fd, WD_IOCTL_REGISTER, &r))
		die("%s: REGISTER %zu bytes: %s", q->dev, len,
		    strerror(errno));
	return r.handle;
}

static void unreg(struct queue *q, uint32_t handle)
{
	if (ioctl(q->fd, WD_IOCTL_UNREGISTER, &handle))
		die("%s: UNREGISTER: %s", q->dev, strerror(errno));
}

/* A counter of a queue's status page, which the kernel updates. */
static uint64_t counter(const __u64 *field)
{
	return __atomic_load_n(field, __ATOMIC_RELAXED);
}

/*
 * Writes a byte to every page of [p, p + len), which faults them in. Far
 * cheaper than memset() under TCG, where glibc's string functions can crawl
 * (its memcpy() of 4 to 64 KiB ran at about 20 MiB/s in this guest).
 */
static void touch(char *p, size_t len, char val)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t i;

	for (i = 0; i < len; i += pg)
		p[i] = val;
}

/*
 * Private anonymous memory, faulted in. Without transparent huge pages, so
 * that pinning costs are per 4 KiB page whatever the guest's THP setting.
 */
static char *alloc(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap %zu: %s", len, strerror(errno));
	madvise(p, len, MADV_NOHUGEPAGE);
	touch(p, len, 0x5a);
	return p;
}

/* ---- cases ---- */

struct bcase;
/*
 * Runs @iters iterations and returns the time of what the case measures,
 * in ns. A case with a twin stores the twin's time in *aux.
 */
typedef uint64_t (*run_fn)(struct bcase *c, unsigned long iters,
			   uint64_t *aux);

struct bcase {
	const char *group;
	char name[48];
	const char *unit;	/* the time per what: "ns/cmd", "ns/op"... */
	char desc[160];
	run_fn run;		/* NULL for a twin */
	void (*settle)(struct bcase *c); /* after each run, untimed */
	struct bcase *twin;	/* sampled by the same run */
	struct bcase *same;	/* runs as many iterations as this one */
	unsigned int ops;	/* operations per iteration */
	size_t bytes;		/* per operation, for MiB/s */
	unsigned int pages;	/* per operation, for ns/page */
	int max_reps;		/* 0: every repetition */
	unsigned long iters;	/* 0 until calibrated */
	unsigned long max_iters;
	long p1, p2;
	struct queue *q;
	struct uring *uring;
	char *a, *b;
	uint32_t handle;
	double v[MAX_REPS];	/* ns per operation, by repetition */
	int n;
	unsigned long polls;	/* poll() calls in the repetitions */
	unsigned long polled_ops; /* operations of those repetitions */
};

struct ratio {
	const char *name;
	const char *desc;
	struct bcase *num, *den;
	int key;
	const char *goal_id;	/* issue 11's goal, "P1"..., or NULL */
	double goal;		/* at most this */
	double med, min, max, of_medians;
	int n;
};

static struct bcase cases[MAX_CASES];
static int ncases;
static struct ratio ratios[MAX_RATIOS];
static int nratios;
static int null_c_fd = -1;

static struct bcase *add(const char *group, const char *unit, run_fn run,
			 unsigned int ops, const char *name_fmt, ...)
{
	struct bcase *c;
	va_list ap;

	if (ncases == MAX_CASES)
		die("too many cases");
	c = &cases[ncases++];
	c->group = group;
	c->unit = unit;
	c->run = run;
	c->ops = ops;
	c->max_iters = 1000000;
	va_start(ap, name_fmt);
	vsnprintf(c->name, sizeof(c->name), name_fmt, ap);
	va_end(ap);
	return c;
}

static void describe(struct bcase *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->desc, sizeof(c->desc), fmt, ap);
	va_end(ap);
}

static struct bcase *twin_of(struct bcase *c, const char *unit,
			     const char *name_fmt, ...)
{
	struct bcase *t = add(c->group, unit, NULL, c->ops, "%s", "");
	va_list ap;

	va_start(ap, name_fmt);
	vsnprintf(t->name, sizeof(t->name), name_fmt, ap);
	va_end(ap);
	c->twin = t;
	t->bytes = c->bytes;
	t->pages = c->pages;
	return t;
}

static struct ratio *add_ratio(const char *name, struct bcase *num,
			       struct bcase *den, int key, const char *desc)
{
	if (nratios == MAX_RATIOS)
		die("too many ratios");
	ratios[nratios] = (struct ratio){
		.name = name, .desc = desc, .num = num, .den = den, .key = key,
	};
	return &ratios[nratios++];
}

/* A key ratio that is one of issue 11's goals: at most @goal. */
static void add_goal(const char *id, double goal, const char *name,
		     struct bcase *num, struct bcase *den, const char *desc)
{
	struct ratio *r = add_ratio(name, num, den, 1, desc);

	r->goal_id = id;
	r->goal = goal;
}

/* (1) submission */

/* p1 NOPs per KICK, then all of them reaped. *aux: the KICKs alone. */
static uint64_t run_nop_batch(struct bcase *c, unsigned long iters,
			      uint64_t *aux)
{
	struct wd_desc d = mkdesc(WD_EDU_OP_NOP, NULL, NULL, 0);
	uint64_t t0 = now_ns(), t1, k = 0;
	unsigned long i;
	long j;

	for (i = 0; i < iters; i++) {
		for (j = 0; j < c->p1; j++)
			push(c->q, &d);
		publish(c->q);
		t1 = now_ns();
		kick(c->q, c->p1);
		k += now_ns() - t1;
		reap(c->q, c->p1);
	}
	*aux = k;
	return now_ns() - t0;
}

/* p1 NOPs with a KICK each, reaped once all are in. *aux: the KICKs. */
static uint64_t run_nop_kick_each(struct bcase *c, unsigned long iters,
				  uint64_t *aux)
{
	struct wd_desc d = mkdesc(WD_EDU_OP_NOP, NULL, NULL, 0);
	uint64_t t0 = now_ns(), t1, k = 0;
	unsigned long i;
	long j;

	for (i = 0; i < iters; i++) {
		for (j = 0; j < c->p1; j++) {
			push(c->q, &d);
			publish(c->q);
			t1 = now_ns();
			kick(c->q, 1);
			k += now_ns() - t1;
		}
		reap(c->q, c->p1);
	}
	*aux = k;
	return now_ns() - t0;
}

static uint64_t run_kick_empty(struct bcase *c, unsigned long iters,
			       uint64_t *aux)
{
	uint64_t t0 = now_ns();
	unsigned long i;

	(void)aux;
	for (i = 0; i < iters; i++)
		kick(c->q, 0);
	return now_ns() - t0;
}

static uint64_t run_null_wd(struct bcase *c, unsigned long iters,
			    uint64_t *aux)
{
	uint64_t t0 = now_ns();
	unsigned long i;

	(void)aux;
	for (i = 0; i < iters; i++)
		if (ioctl(c->q->fd, NULL_IOCTL, 0) != -1 || errno != ENOTTY)
			die("null ioctl on %s: not ENOTTY", c->q->dev);
	return now_ns() - t0;
}

static uint64_t run_null_c(struct bcase *c, unsigned long iters,
			   uint64_t *aux)
{
	uint64_t t0 = now_ns();
	unsigned long i;

	(void)c;
	(void)aux;
	for (i = 0; i < iters; i++)
		if (ioctl(null_c_fd, NULL_IOCTL, 0))
			die("null ioctl on wd_null_c: %s", strerror(errno));
	return now_ns() - t0;
}

static uint64_t run_getppid(struct bcase *c, unsigned long iters,
			    uint64_t *aux)
{
	uint64_t t0 = now_ns();
	unsigned long i;

	(void)c;
	(void)aux;
	for (i = 0; i < iters; i++)
		syscall(SYS_getppid);
	return now_ns() - t0;
}

/* (1b) anchors: io_uring's submission ring, and a pipe between two CPUs */

#define URING_ENTRIES		256
#define URING_SQ_IDLE_MS	10

/*
 * An io_uring set up with raw system calls, as liburing does. The SQ index
 * array maps every slot to itself once, so a submission is an SQE written
 * and the tail published, as on warpdrive's ring.
 */
struct uring {
	int fd;
	unsigned int *sq_tail, *sq_flags, sq_mask, tail;
	unsigned int *cq_head, *cq_tail, cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static int sys_io_uring_enter(int fd, unsigned int submit, unsigned int wait,
			      unsigned int flags)
{
	return syscall(__NR_io_uring_enter, fd, submit, wait, flags, NULL, 0);
}

/* Runs the calling thread on @cpu only, or anywhere for -1. */
static void run_on(int cpu)
{
	cpu_set_t set;
	int i;

	CPU_ZERO(&set);
	for (i = 0; i < CPU_SETSIZE; i++)
		if (cpu < 0 || i == cpu)
			CPU_SET(i, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity(%d): %s", cpu, strerror(errno));
}

/*
 * With @sqpoll, the kernel's SQ thread polls the ring from CPU 1 while the
 * benchmark, on CPU 0, spins on the completion ring: no system call per
 * command, as warpdrive's poll mode is meant to have.
 */
static void uring_setup(struct uring *u, bool sqpoll)
{
	struct io_uring_params p = { 0 };
	size_t len;
	char *ring;
	unsigned int i, *array;

	if (sqpoll) {
		p.flags = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF;
		p.sq_thread_cpu = 1;
		p.sq_thread_idle = URING_SQ_IDLE_MS;
	}
	u->fd = syscall(__NR_io_uring_setup, URING_ENTRIES, &p);
	if (u->fd < 0)
		die("io_uring_setup%s: %s", sqpoll ? " (SQPOLL)" : "",
		    strerror(errno));
	if (!(p.features & IORING_FEAT_SINGLE_MMAP))
		die("io_uring: no IORING_FEAT_SINGLE_MMAP");
	len = p.sq_off.array + p.sq_entries * sizeof(unsigned int);
	if (len < p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe))
		len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	ring = mmap(NULL, len, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQ_RING);
	u->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
		       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       u->fd, IORING_OFF_SQES);
	if (ring == MAP_FAILED || u->sqes == MAP_FAILED)
		die("io_uring mmap: %s", strerror(errno));
	u->sq_tail = (unsigned int *)(ring + p.sq_off.tail);
	u->sq_flags = (unsigned int *)(ring + p.sq_off.flags);
	u->sq_mask = *(unsigned int *)(ring + p.sq_off.ring_mask);
	u->cq_head = (unsigned int *)(ring + p.cq_off.head);
	u->cq_tail = (unsigned int *)(ring + p.cq_off.tail);
	u->cq_mask = *(unsigned int *)(ring + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)(ring + p.cq_off.cqes);
	array = (unsigned int *)(ring + p.sq_off.array);
	for (i = 0; i < p.sq_entries; i++)
		array[i] = i;
	u->tail = *u->sq_tail;
}

/* Writes @n NOP SQEs and publishes them. */
static void uring_push_nops(struct uring *u, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = &u->sqes[u->tail++ & u->sq_mask];

		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = IORING_OP_NOP;
		sqe->user_data = i;
	}
	__atomic_store_n(u->sq_tail, u->tail, __ATOMIC_RELEASE);
}

/*
 * Takes @n completions: they must be there already, unless the SQ thread
 * is still producing them (@spin).
 */
static void uring_reap(struct uring *u, unsigned int n, bool spin)
{
	unsigned int head = *u->cq_head, tail;

	while (n) {
		tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
		if (head == tail && !spin)
			die("io_uring: %u completions missing", n);
		for (; head != tail && n; head++, n--)
			if (u->cqes[head & u->cq_mask].res)
				die("io_uring NOP: %s",
				    strerror(-u->cqes[head & u->cq_mask].res));
		__atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
	}
}

/* p1 NOPs, one io_uring_enter() that submits them and waits for them all. */
static uint64_t run_uring_nop(struct bcase *c, unsigned long iters,
			      uint64_t *aux)
{
	struct uring *u = c->uring;
	uint64_t t0 = now_ns();
	unsigned long i;
	int n;

	(void)aux;
	for (i = 0; i < iters; i++) {
		uring_push_nops(u, c->p1);
		n = sys_io_uring_enter(u->fd, c->p1, c->p1,
				       IORING_ENTER_GETEVENTS);
		if (n != c->p1)
			die("io_uring_enter: %d of %ld: %s", n, c->p1,
			    strerror(errno));
		uring_reap(u, c->p1, false);
	}
	return now_ns() - t0;
}

/*
 * p1 NOPs for the SQ thread, woken by io_uring_enter() only when it asks
 * (IORING_SQ_NEED_WAKEUP), completions awaited by spinning. *aux: the
 * wake-ups per million commands.
 */
static uint64_t run_uring_sqpoll(struct bcase *c, unsigned long iters,
				 uint64_t *aux)
{
	struct uring *u = c->uring;
	uint64_t t0, t, wakeups = 0;
	unsigned long i;

	run_on(0);
	t0 = now_ns();
	for (i = 0; i < iters; i++) {
		uring_push_nops(u, c->p1);
		/* The tail's store before the flags' load, as liburing has it. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(u->sq_flags, __ATOMIC_RELAXED) &
		    IORING_SQ_NEED_WAKEUP) {
			wakeups++;
			if (sys_io_uring_enter(u->fd, 0, 0,
					       IORING_ENTER_SQ_WAKEUP) < 0)
				die("io_uring_enter (wake-up): %s",
				    strerror(errno));
		}
		uring_reap(u, c->p1, true);
	}
	t = now_ns() - t0;
	run_on(-1);
	if (aux)
		*aux = wakeups * 1000000;
	return t;
}

/*
 * Waits, untimed, until the SQ thread sleeps again: it would otherwise spin
 * on CPU 1 for its idle time into the next case (the pipe's far end is
 * there).
 */
static void settle_sqpoll(struct bcase *c)
{
	struct uring *u = c->uring;
	uint64_t t0 = now_ns();

	while (!(__atomic_load_n(u->sq_flags, __ATOMIC_RELAXED) &
		 IORING_SQ_NEED_WAKEUP)) {
		if (now_ns() - t0 > 100 * URING_SQ_IDLE_MS * 1000000ULL)
			die("io_uring: the SQ thread does not go to sleep");
		usleep(1000);
	}
}

static int pipe_there[2], pipe_back[2];

/* The far end of the pipe round trip, on CPU 1: answers every byte. */
static void *pipe_echo(void *arg)
{
	char b;

	(void)arg;
	run_on(1);
	while (read(pipe_there[0], &b, 1) == 1)
		if (write(pipe_back[1], &b, 1) != 1)
			break;
	return NULL;
}

/*
 * One byte written to a thread on the other CPU, which writes it back: the
 * floor for submitting and being woken by a completion from another CPU.
 */
static uint64_t run_pipe_rtt(struct bcase *c, unsigned long iters,
			     uint64_t *aux)
{
	uint64_t t0, t;
	unsigned long i;
	char b = 'x';

	(void)c;
	(void)aux;
	run_on(0);
	t0 = now_ns();
	for (i = 0; i < iters; i++)
		if (write(pipe_there[1], &b, 1) != 1 ||
		    read(pipe_back[0], &b, 1) != 1)
			die("pipe round trip: %s", strerror(errno));
	t = now_ns() - t0;
	run_on(-1);
	return t;
}

/* (2) copies */

/*
 * p2 commands of opcode p1 per KICK, the k-th copying bytes from a + k *
 * bytes to b + k * bytes, then all reaped.
 */
static uint64_t run_copy_ring(struct bcase *c, unsigned long iters,
			      uint64_t *aux)
{
	uint64_t t0 = now_ns();
	struct wd_desc d;
	unsigned long i;
	long k;

	(void)aux;
	for (i = 0; i < iters; i++) {
		for (k = 0; k < c->p2; k++) {
			d = mkdesc(c->p1, c->a + k * c->bytes,
				   c->b + k * c->bytes, c->bytes);
			push(c->q, &d);
		}
		publish(c->q);
		kick(c->q, c->p2);
		reap(c->q, c->p2);
	}
	return now_ns() - t0;
}

/* write() into a tmpfs file (memfd), read() back: two copies. */
static uint64_t run_memfd(struct bcase *c, unsigned long iters,
			  uint64_t *aux)
{
	uint64_t t0 = now_ns();
	unsigned long i;

	(void)aux;
	for (i = 0; i < iters; i++) {
		if (pwrite(c->p1, c->a, c->bytes, 0) != (ssize_t)c->bytes ||
		    pread(c->p1, c->b, c->bytes, 0) != (ssize_t)c->bytes)
			die("memfd: %s", strerror(errno));
	}
	return now_ns() - t0;
}

/* (3) pinning */

/*
 * REGISTER then UNREGISTER of buffer a; *aux: UNREGISTER. With p1, the
 * buffer gets new pages before each REGISTER (MADV_DONTNEED and a write to
 * each page, untimed), as a buffer that a command pins again has.
 */
static uint64_t run_reg_unreg(struct bcase *c, unsigned long iters,
			      uint64_t *aux)
{
	uint64_t t0, t1, t2, r = 0, u = 0;
	unsigned long i;
	uint32_t h;

	for (i = 0; i < iters; i++) {
		if (c->p1) {
			if (madvise(c->a, c->bytes, MADV_DONTNEED))
				die("madvise: %s", strerror(errno));
			touch(c->a, c->bytes, (char)i);
		}
		t0 = now_ns();
		h = reg(c->q, c->a, c->bytes, WD_REGISTER_WRITE);
		t1 = now_ns();
		unreg(c->q, h);
		t2 = now_ns();
		r += t1 - t0;
		u += t2 - t1;
	}
	*aux = u;
	return r;
}

/* One EMU_CRC32C of @len bytes at the start of buffer a. */
static void crc_cmd(struct bcase *c, size_t len)
{
	struct wd_desc d = mkdesc(WD_EDU_OP_EMU_CRC32C, c->a, NULL, len);

	push(c->q, &d);
	publish(c->q);
	kick(c->q, 1);
	reap(c->q, 1);
}

static uint64_t run_crc_pinned(struct bcase *c, unsigned long iters,
			       uint64_t *aux)
{
	uint64_t t0 = now_ns();
	unsigned long i;

	(void)aux;
	for (i = 0; i < iters; i++)
		crc_cmd(c, c->bytes);
	return now_ns() - t0;
}

/*
 * The registered buffer a loses its pages (p1: 0 MADV_DONTNEED, 1 munmap
 * and a new mapping at the same address); the application writes to every
 * page of it again, then a command uses it, which faults it in again. Timed: the
 * madvise() or munmap() (the notifier's invalidation) and, in *aux, the
 * command. With p2, a is not registered and no command runs: what the
 * madvise() or munmap() costs without warpdrive.
 */
static uint64_t run_invalidate(struct bcase *c, unsigned long iters,
			       uint64_t *aux)
{
	uint64_t t0, t1, inval = 0, repin = 0, before = 0;
	unsigned long i;
	void *p;

	if (!c->p2) {
		/*
		 * REGISTER maps nothing: a command maps the pages it uses. Map
		 * all of them, so that the first madvise() or munmap() takes
		 * pages from the device like every later one.
		 */
		crc_cmd(c, c->bytes);
		before = counter(&c->q->st->invalidations);
	}

	for (i = 0; i < iters; i++) {
		t0 = now_ns();
		if (c->p1 == 0) {
			if (madvise(c->a, c->bytes, MADV_DONTNEED))
				die("madvise: %s", strerror(errno));
		} else if (munmap(c->a, c->bytes)) {
			die("munmap: %s", strerror(errno));
		}
		t1 = now_ns();
		inval += t1 - t0;
		if (c->p1 == 1) {
			p = mmap(c->a, c->bytes, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
				 -1, 0);
			if (p != c->a)
				die("mmap at %p: %s", c->a, strerror(errno));
			madvise(c->a, c->bytes, MADV_NOHUGEPAGE);
		}
		touch(c->a, c->bytes, (char)i);
		if (c->p2)
			continue;
		t0 = now_ns();
		crc_cmd(c, c->bytes);
		repin += now_ns() - t0;
	}
	/* Otherwise this measured something else than an invalidation. */
	if (!c->p2 && counter(&c->q->st->invalidations) - before < iters)
		die("%s: %llu invalidations for %lu iterations", c->name,
		    (unsigned long long)(counter(&c->q->st->invalidations) -
					     before), iters);
	*aux = repin;
	return inval;
}

/* (4) migration of registered memory */

/* move_pages() moves, rather than only reports (numaif.h's MPOL_MF_MOVE). */
#define MOVE_PAGES_MOVE		(1 << 1)
#define MIG_LEN			(4 * MIB)
#define MIG_QUEUED		100
#define MIG_ITERS		16

/* The node of the page at @p, or -errno. */
static int page_node(void *p)
{
	int status = -1;

	if (syscall(SYS_move_pages, 0, 1UL, &p, NULL, &status, 0))
		die("move_pages (query): %s", strerror(errno));
	return status;
}

/*
 * Moves the page at @p to the other of nodes 0 and 1 and returns how long
 * the call took. A move that did not happen would time something else.
 */
static uint64_t move_page(struct bcase *c, void *p)
{
	int node = 1 - page_node(p), status = -1;
	uint64_t t0 = now_ns();

	if (syscall(SYS_move_pages, 0, 1UL, &p, &node, &status,
		    MOVE_PAGES_MOVE))
		die("%s: move_pages: %s", c->name, strerror(errno));
	t0 = now_ns() - t0;
	if (status != node)
		die("%s: move_pages left the page on %d, not %d", c->name,
		    status, node);
	return t0;
}

/* Holds (or lets go of) the bulk engine of the case's device. */
static void hold_engine(struct bcase *c, int hold)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/debug/warpdrive/%s/hold_bulk",
		 c->q->dev);
	f = fopen(path, "we");
	if (!f || fprintf(f, "%d\n", hold) < 0 || fclose(f))
		die("%s: %s", path, strerror(errno));
}

/* p1 EMU_CRC32C commands over the whole registered buffer a, KICKed. */
static void queue_crcs(struct bcase *c, unsigned int n)
{
	struct wd_desc d = mkdesc(WD_EDU_OP_EMU_CRC32C, c->a, NULL, MIG_LEN);
	unsigned int i;

	d.flags = WD_DESC_REGISTERED;
	for (i = 0; i < n; i++)
		push(c->q, &d);
	publish(c->q);
	kick(c->q, n);
}

/*
 * move_pages() of the first page of a registered 4 MiB memfd buffer, to
 * the other node, timed. p1: what the buffer's queue is doing meanwhile:
 * 0 nothing; 1 MIG_QUEUED 4 MiB EMU_CRC32C commands of the buffer queued
 * behind a held engine; 2 one such command running (started 2 ms before
 * the move; *aux counts the moves during which it was still running).
 */
static uint64_t run_migrate(struct bcase *c, unsigned long iters,
			    uint64_t *aux)
{
	uint64_t t = 0, done = 0;
	unsigned long i;

	if (c->p1 == 1) {
		hold_engine(c, 1);
		queue_crcs(c, MIG_QUEUED);
	}
	for (i = 0; i < iters; i++) {
		if (c->p1 == 2) {
			queue_crcs(c, 1);
			usleep(2000);
			done = counter(&c->q->st->completed);
		}
		t += move_page(c, c->a);
		if (c->p1 == 2) {
			*aux += counter(&c->q->st->completed) == done;
			reap(c->q, 1);
		}
	}
	if (c->p1 == 1) {
		if (counter(&c->q->st->completed) !=
		    counter(&c->q->st->submitted) - MIG_QUEUED)
			die("%s: the held engine ran commands", c->name);
		hold_engine(c, 0);
		reap(c->q, MIG_QUEUED);
	}
	return t;
}

/* One EMU_CRC32C of the whole 4 MiB buffer, KICK to completion. */
static uint64_t run_crc_4m(struct bcase *c, unsigned long iters,
			   uint64_t *aux)
{
	uint64_t t0 = now_ns();
	unsigned long i;

	(void)aux;
	for (i = 0; i < iters; i++) {
		queue_crcs(c, 1);
		reap(c->q, 1);
	}
	return now_ns() - t0;
}

/* (3) lookup scaling */

static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	/* xorshift64: reproducible from run to run */
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/*
 * SCALE_BATCH EMU_CRC32C commands per KICK, each on a random one of the p1
 * one-page buffers registered at a, then all reaped. *aux: the KICKs alone.
 */
static uint64_t run_scaling(struct bcase *c, unsigned long iters,
			    uint64_t *aux)
{
	uint64_t t0 = now_ns(), t1, k = 0;
	long pg = sysconf(_SC_PAGESIZE);
	struct wd_desc d;
	unsigned long i;
	int j;

	for (i = 0; i < iters; i++) {
		for (j = 0; j < SCALE_BATCH; j++) {
			d = mkdesc(WD_EDU_OP_EMU_CRC32C,
				   c->a + (rnd() % c->p1) * pg, NULL,
				   CRC_LEN);
			push(c->q, &d);
		}
		publish(c->q);
		t1 = now_ns();
		kick(c->q, SCALE_BATCH);
		k += now_ns() - t1;
		reap(c->q, SCALE_BATCH);
	}
	*aux = k;
	return now_ns() - t0;
}

/*
 * @n one-page buffers on @q, in memory that NUMA balancing leaves alone:
 * its scans skip a mapping with a policy of its own (task_numa_work() wants
 * MPOL_F_MOF, which only the default policy has), so they never make these
 * pages PROT_NONE, which would invalidate the buffers' mirrors and have
 * KICK fault them in again.
 */
static char *scale_buffers(struct queue *q, long n, bool numa_balanced)
{
	long pg = sysconf(_SC_PAGESIZE), k;
	unsigned long node0 = 1;
	char *base = alloc(n * pg);

	if (!numa_balanced &&
	    syscall(SYS_mbind, base, n * pg, MPOL_PREFERRED, &node0,
		    8 * sizeof(node0), 0))
		die("mbind: %s", strerror(errno));
	for (k = 0; k < n; k++)
		reg(q, base + k * pg, pg, 0);
	if (counter(&q->st->buffers) != (uint64_t)n)
		die("%s: %llu buffers registered, expected %ld", q->dev,
		    (unsigned long long)counter(&q->st->buffers), n);
	return base;
}

/* ---- running ---- */

static void sample(struct bcase *c, int rep)
{
	unsigned long polls = npolls;
	uint64_t aux = 0, t;

	t = c->run(c, c->iters, &aux);
	if (c->settle)
		c->settle(c);
	c->polls += npolls - polls;
	c->polled_ops += c->iters * c->ops;
	c->v[rep] = (double)t / (c->iters * c->ops);
	c->n = rep + 1;
	if (c->twin) {
		c->twin->v[rep] = (double)aux / (c->iters * c->ops);
		c->twin->n = rep + 1;
		c->twin->iters = c->iters;
	}
}

/*
 * Picks the number of iterations that takes about @target_ns, from runs of
 * growing length; the first run also warms the path up.
 */
static unsigned long clamp_iters(const struct bcase *c, double iters)
{
	if (iters < 2)
		return 2;
	return iters > c->max_iters ? c->max_iters : (unsigned long)iters;
}

static void calibrate(struct bcase *c, uint64_t target_ns)
{
	unsigned long iters = 1;
	double per_iter;
	uint64_t aux, t;

	if (c->iters)
		return;
	if (c->same) {
		calibrate(c->same, target_ns);
		c->iters = c->same->iters;
		c->run(c, 1, &aux);
		return;
	}
	/* On the wall clock: a case may time only part of an iteration. */
	for (;;) {
		t = now_ns();
		c->run(c, iters, &aux);
		t = now_ns() - t;
		if (c->settle)
			c->settle(c);
		if (t >= target_ns / 4 || iters >= c->max_iters)
			break;
		iters *= t < target_ns / 64 ? 16 : 4;
	}
	per_iter = (double)(t ? t : 1) / iters;
	/*
	 * Once more at the count found: a stall of the host in either run
	 * would otherwise make every sample of the case short.
	 */
	iters = clamp_iters(c, target_ns / per_iter);
	t = now_ns();
	c->run(c, iters, &aux);
	t = now_ns() - t;
	if (c->settle)
		c->settle(c);
	if (t && (double)t / iters < per_iter)
		per_iter = (double)t / iters;
	c->iters = clamp_iters(c, target_ns / per_iter);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, int n, double *min, double *max)
{
	double s[MAX_REPS];

	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	*min = s[0];
	*max = s[n - 1];
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void compute_ratio(struct ratio *r)
{
	double v[MAX_REPS], a, b, lo, hi;
	int i, n = r->num->n < r->den->n ? r->num->n : r->den->n;

	for (i = 0; i < n; i++)
		v[i] = r->num->v[i] / r->den->v[i];
	r->n = n;
	r->med = median(v, n, &r->min, &r->max);
	a = median(r->num->v, r->num->n, &lo, &hi);
	b = median(r->den->v, r->den->n, &lo, &hi);
	r->of_medians = a / b;
}

/* ---- profile ---- */

#define TRACEFS		"/sys/kernel/tracing"
#define PROFILE_TOP	30

static void tracefs_write(const char *file, const char *val)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), TRACEFS "/%s", file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, strlen(val)) != (ssize_t)strlen(val))
		die("%s: %s (a kernel with CONFIG_FUNCTION_PROFILER?)", path,
		    strerror(errno));
	close(fd);
}

/*
 * One more run of @c, as long as one of its samples, under the function
 * profiler; then the top of each CPU's table (trace_stat/functionN: hits,
 * total and average time), which it keeps sorted by time.
 */
static void profile_case(struct bcase *c)
{
	char path[64], line[256];
	uint64_t aux = 0, t;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int cpu, n;
	FILE *f;

	if (access(TRACEFS "/function_profile_enabled", F_OK) &&
	    mount("nodev", TRACEFS, "tracefs", 0, NULL))
		die("mount tracefs on %s: %s", TRACEFS, strerror(errno));
	/* Each function's own time, not its children's. */
	tracefs_write("options/graph-time", "0");
	tracefs_write("function_profile_enabled", "1");
	t = c->run(c, c->iters, &aux);
	tracefs_write("function_profile_enabled", "0");
	if (c->settle)
		c->settle(c);
	printf("### wd_bench: begin profile %s\n", c->name);
	printf("%s: %lu iterations of %u operations in %.1f ms, under the function profiler (times exclude children)\n",
	       c->name, c->iters, c->ops, t / 1e6);
	for (cpu = 0; cpu < ncpu; cpu++) {
		snprintf(path, sizeof(path), TRACEFS "/trace_stat/function%d",
			 cpu);
		f = fopen(path, "re");
		if (!f)
			die("%s: %s", path, strerror(errno));
		printf("CPU %d:\n", cpu);
		for (n = 0; n < PROFILE_TOP + 2 && fgets(line, sizeof(line), f);
		     n++)
			fputs(line, stdout);
		fclose(f);
	}
	printf("### wd_bench: end profile\n");
	fflush(stdout);
}

/* ---- output ---- */

static double polls_per_op(const struct bcase *c)
{
	return c->polled_ops ? (double)c->polls / c->polled_ops : 0;
}

static void print_extra(FILE *f, const struct bcase *c, double med)
{
	if (c->bytes && strcmp(c->group, "pinning"))
		fprintf(f, "%10.2f MiB/s", c->bytes / med * 1e9 / MIB);
	else if (c->pages)
		fprintf(f, "%10.1f ns/page", med / c->pages);
	else if (c->q && c->run)
		fprintf(f, "%10.2f polls/cmd", polls_per_op(c));
}

static void print_table(void)
{
	const char *group = "";
	double med, min, max;
	int i;

	printf("\n%-11s %-30s %-7s %12s %12s %12s %8s  %s\n", "group", "case",
	       "unit", "median", "min", "max", "iters", "derived (median)");
	for (i = 0; i < ncases; i++) {
		struct bcase *c = &cases[i];

		if (!c->n)
			continue;
		if (strcmp(group, c->group))
			printf("\n");
		group = c->group;
		med = median(c->v, c->n, &min, &max);
		printf("%-11s %-30s %-7s %12.0f %12.0f %12.0f %8lu  ", c->group,
		       c->name, c->unit, med, min, max, c->iters);
		print_extra(stdout, c, med);
		printf("\n");
	}
	printf("\nratios (median of per-repetition ratios [min, max]):\n");
	for (i = 0; i < nratios; i++) {
		struct ratio *r = &ratios[i];

		printf("%s %-34s %8.3f  [%.3f, %.3f]  %s\n", r->key ? "*" : " ",
		       r->name, r->med, r->min, r->max, r->desc);
	}
	printf("(* key ratios)\n\ngoals (issue 11):\n");
	for (i = 0; i < nratios; i++) {
		struct ratio *r = &ratios[i];

		if (r->goal_id)
			printf("%s %.2f (goal <= %.2f, spread %.2f-%.2f)\n",
			       r->goal_id, r->med, r->goal, r->min, r->max);
	}
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void write_json(FILE *f, int reps, unsigned int target_ms,
		       const char *dev, const char *dma_dev, double seconds)
{
	const char *profile = getenv("WD_PROFILE");
	const char *iommu = getenv("WD_EXPECT_IOMMU");
	double med, min, max;
	struct utsname u;
	int i, j;

	uname(&u);
	fprintf(f, "{\n  \"tool\": \"wd_bench\",\n  \"version\": 1,\n");
	fprintf(f, "  \"kernel\": ");
	json_str(f, u.release);
	fprintf(f, ",\n  \"profile\": ");
	json_str(f, profile ? profile : "unknown");
	fprintf(f, ",\n  \"iommu\": %s,\n", iommu && !strcmp(iommu, "1") ?
		"true" : "false");
	fprintf(f, "  \"cpus\": %ld,\n  \"page_size\": %ld,\n",
		sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_PAGESIZE));
	fprintf(f, "  \"reps\": %d,\n  \"target_ms\": %u,\n", reps, target_ms);
	fprintf(f, "  \"seconds\": %.1f,\n", seconds);
	fprintf(f, "  \"device\": \"%s\",\n  \"dma_device\": \"%s\",\n", dev,
		dma_dev);
	fprintf(f, "  \"null_ioctl\": \"0x%lx\",\n", (unsigned long)NULL_IOCTL);
	fprintf(f, "  \"cases\": [\n");
	for (i = 0, j = 0; i < ncases; i++) {
		struct bcase *c = &cases[i];
		int k;

		if (!c->n)
			continue;
		med = median(c->v, c->n, &min, &max);
		fprintf(f, "%s    {\"group\": ", j++ ? ",\n" : "");
		json_str(f, c->group);
		fprintf(f, ", \"name\": ");
		json_str(f, c->name);
		fprintf(f, ", \"unit\": ");
		json_str(f, c->unit);
		fprintf(f, ",\n     \"desc\": ");
		json_str(f, c->desc);
		fprintf(f, ",\n     \"iters\": %lu, \"ops_per_iter\": %u, \"bytes\": %zu, \"pages\": %u, \"polls_per_op\": %.3f,\n",
			c->iters, c->ops, c->bytes, c->pages, polls_per_op(c));
		fprintf(f, "     \"median\": %.1f, \"min\": %.1f, \"max\": %.1f, \"samples\": [",
			med, min, max);
		for (k = 0; k < c->n; k++)
			fprintf(f, "%s%.1f", k ? ", " : "", c->v[k]);
		fprintf(f, "]}");
	}
	fprintf(f, "\n  ],\n  \"ratios\": [\n");
	for (i = 0; i < nratios; i++) {
		struct ratio *r = &ratios[i];

		fprintf(f, "    {\"name\": ");
		json_str(f, r->name);
		fprintf(f, ", \"key\": %s, \"num\": ", r->key ? "true" : "false");
		json_str(f, r->num->name);
		fprintf(f, ", \"den\": ");
		json_str(f, r->den->name);
		fprintf(f, ",\n     \"desc\": ");
		json_str(f, r->desc);
		if (r->goal_id) {
			fprintf(f, ", \"goal_id\": ");
			json_str(f, r->goal_id);
			fprintf(f, ", \"goal\": %.2f", r->goal);
		}
		fprintf(f, ",\n     \"median\": %.4f, \"min\": %.4f, \"max\": %.4f, \"of_medians\": %.4f, \"n\": %d}%s\n",
			r->med, r->min, r->max, r->of_medians, r->n,
			i + 1 < nratios ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
}

/* ---- set-up ---- */

static int list_edu(char devs[][32], int max)
{
	char path[64];
	int i, n = 0;

	/* edu-0, edu-1, ...: the ids are small and dense. */
	for (i = 0; i < 64 && n < max; i++) {
		snprintf(path, sizeof(path), "/sys/class/uacce/edu-%d", i);
		if (access(path, F_OK))
			continue;
		snprintf(devs[n++], 32, "edu-%d", i);
	}
	return n;
}

static const long nop_batches[] = { 1, 8, 64, 256 };
static const size_t copy_sizes[] = { 4 * KIB, 64 * KIB, MIB };
/* Commands per KICK for throughput: at least 256 KiB, at most COPY_BUF. */
static const long copy_batch[] = { 64, 16, 4 };
static const unsigned int pin_pages[] = { 1, 16, 256 };
static const long scale_bufs[] = { 10, 1000, 10000 };

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv)
{
	const char *out = NULL, *null_dev = "/dev/wd_null_c", *prof = NULL;
	static struct queue qa, qdma, qscale[ARRAY_SIZE(scale_bufs)];
	static struct queue qnonuma[2];
	static struct uring uring_plain, uring_sqpoll;
	struct bcase *c, *t, *b1 = NULL, *b64 = NULL, *each = NULL;
	struct bcase *u64 = NULL, *rtt = NULL, *memfd4k = NULL, *scn[2];
	pthread_t echo;
	struct bcase *nwd, *nc, *kempty, *sysc, *reg4k = NULL;
	struct bcase *unreg4k = NULL, *sc[ARRAY_SIZE(scale_bufs)][2];
	struct bcase *crc, *rep_madv = NULL, *rep_unmap = NULL, *b;
	struct bcase *inval[2][2], *mig[4] = { NULL };
	long pg = sysconf(_SC_PAGESIZE);
	char devs[16][32], *rsrc, *rdst, *usrc, *udst;
	unsigned int target_ms = 40, i, j;
	int reps = DEFAULT_REPS, ndev, opt, r, mfd;
	uint64_t start = now_ns();
	FILE *f;

	while ((opt = getopt(argc, argv, "o:r:t:c:P:h")) != -1) {
		switch (opt) {
		case 'P':
			prof = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'r':
			reps = atoi(optarg);
			break;
		case 't':
			target_ms = atoi(optarg);
			break;
		case 'c':
			null_dev = optarg;
			break;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (reps < 1 || reps > MAX_REPS || !target_ms)
		die("reps must be 1-%d, the target at least 1 ms", MAX_REPS);

	ndev = list_edu(devs, 16);
	if (!ndev)
		die("no edu device in /sys/class/uacce");
	null_c_fd = open(null_dev, O_RDWR | O_CLOEXEC);
	if (null_c_fd < 0)
		die("%s: %s (is wd_null_c.ko loaded?)", null_dev,
		    strerror(errno));

	/*
	 * One queue for submission, copies and pinning, one for each buffer
	 * count of the lookup scaling (a queue's buffers are one tree), and
	 * the real DMA engine on the last device, so that its 100 ms
	 * transfers never share a scheduler with the bulk engine's turns.
	 */
	queue_open_any(&qa, devs, ndev);
	for (i = 0; i < ARRAY_SIZE(scale_bufs); i++)
		queue_open_any(&qscale[i], devs, ndev);
	for (i = 0; i < ARRAY_SIZE(qnonuma); i++)
		queue_open_any(&qnonuma[i], devs, ndev);
	queue_open_any(&qdma, devs + ndev - 1, 1);
	printf("wd_bench: queues on %s (submission, copies, pinning), %s %s %s (lookup scaling), %s (DMA_COPY); %d repetitions of about %u ms per case\n",
	       qa.dev, qscale[0].dev, qscale[1].dev, qscale[2].dev, qdma.dev,
	       reps, target_ms);

	/* (1) submission cost per command */
	for (i = 0; i < ARRAY_SIZE(nop_batches); i++) {
		long batch = nop_batches[i];

		c = add("submission", "ns/cmd", run_nop_batch, batch,
			"nop_batch_%ld", batch);
		c->q = &qa;
		c->p1 = batch;
		describe(c, "%ld NOPs written, one KICK, %ld completions reaped (poll() while none)",
			 batch, batch);
		t = twin_of(c, "ns/cmd", "nop_batch_%ld_kick", batch);
		describe(t, "the KICK ioctl alone of nop_batch_%ld, per command",
			 batch);
		if (batch == 1)
			b1 = c;
		if (batch == 64)
			b64 = c;
	}
	each = add("submission", "ns/cmd", run_nop_kick_each, 64,
		   "nop_kick_each_64");
	each->q = &qa;
	each->p1 = 64;
	describe(each, "64 NOPs, each written and KICKed on its own (64 ioctls), then the 64 completions reaped");
	t = twin_of(each, "ns/cmd", "nop_kick_each_64_kick");
	describe(t, "the 64 KICK ioctls alone of nop_kick_each_64, per command");
	kempty = add("submission", "ns/call", run_kick_empty, 1, "kick_empty");
	kempty->q = &qa;
	describe(kempty, "KICK with nothing published: returns 0");
	nwd = add("submission", "ns/call", run_null_wd, 1, "null_ioctl_wd");
	nwd->q = &qa;
	describe(nwd, "ioctl(queue fd, _IO('W', 0x3f)): unused number, ENOTTY from warpdrive's dispatch (Rust)");
	nc = add("submission", "ns/call", run_null_c, 1, "null_ioctl_c");
	nc->same = nwd;
	describe(nc, "ioctl(/dev/wd_null_c, _IO('W', 0x3f)): the C misc device's null ioctl, returns 0; as many calls as null_ioctl_wd");
	sysc = add("submission", "ns/call", run_getppid, 1, "syscall_getppid");
	describe(sysc, "syscall(SYS_getppid): a system call that reaches no driver");

	/* (1b) the anchors, on two CPUs: the guest has two */
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		die("the io_uring SQPOLL and pipe anchors need two CPUs");
	uring_setup(&uring_plain, false);
	uring_setup(&uring_sqpoll, true);
	for (i = 0; i < ARRAY_SIZE(nop_batches); i++) {
		long batch = nop_batches[i];

		c = add("anchors", "ns/cmd", run_uring_nop, batch,
			"uring_nop_%ld", batch);
		c->uring = &uring_plain;
		c->p1 = batch;
		describe(c, "io_uring: %ld IORING_OP_NOP SQEs written, one io_uring_enter() submits them and waits for all, completions reaped",
			 batch);
		if (batch == 64)
			u64 = c;
	}
	for (i = 0; i < ARRAY_SIZE(nop_batches); i++) {
		long batch = nop_batches[i];

		c = add("anchors", "ns/cmd", run_uring_sqpoll, batch,
			"uring_sqpoll_nop_%ld", batch);
		c->uring = &uring_sqpoll;
		c->settle = settle_sqpoll;
		c->p1 = batch;
		describe(c, "io_uring SQPOLL (SQ thread on CPU 1, idle %d ms): %ld NOPs published, enter() only on IORING_SQ_NEED_WAKEUP, completions awaited spinning on CPU 0",
			 URING_SQ_IDLE_MS, batch);
		t = twin_of(c, "wake/Mc", "uring_sqpoll_nop_%ld_wakeups",
			    batch);
		describe(t, "io_uring_enter() wake-ups of uring_sqpoll_nop_%ld, per million commands (not ns)",
			 batch);
	}
	if (pipe2(pipe_there, O_CLOEXEC) || pipe2(pipe_back, O_CLOEXEC))
		die("pipe2: %s", strerror(errno));
	errno = pthread_create(&echo, NULL, pipe_echo, NULL);
	if (errno)
		die("pthread_create: %s", strerror(errno));
	rtt = add("anchors", "ns/op", run_pipe_rtt, 1, "pipe_round_trip");
	describe(rtt, "one byte through a pipe to a thread on CPU 1 and back through another (CPU 0 sleeps in read()): submit, and be woken by an answer from another CPU");

	/* (2) copies */
	rsrc = alloc(COPY_BUF);
	rdst = alloc(COPY_BUF);
	usrc = alloc(COPY_BUF);
	udst = alloc(COPY_BUF);
	for (i = 0; i < COPY_BUF; i++)
		rsrc[i] = usrc[i] = (char)(i * 131 + (i >> 12));
	reg(&qa, rsrc, COPY_BUF, 0);
	reg(&qa, rdst, COPY_BUF, WD_REGISTER_WRITE);
	mfd = memfd_create("wd_bench", MFD_CLOEXEC);
	if (mfd < 0)
		die("memfd_create: %s", strerror(errno));
	for (i = 0; i < ARRAY_SIZE(copy_sizes); i++) {
		size_t s = copy_sizes[i];
		unsigned int kb = s / KIB;

		for (j = 0; j < 4; j++) {
			int regd = j % 2 == 0, tput = j >= 2;
			long batch = tput ? copy_batch[i] : 1;

			c = add("memcpy", tput ? "ns/cmd" : "ns/op",
				run_copy_ring, batch, "emu_memcpy_%s_%s_%uk",
				regd ? "reg" : "unreg",
				tput ? "tput" : "lat", kb);
			c->q = &qa;
			c->p1 = WD_EDU_OP_EMU_MEMCPY;
			c->p2 = batch;
			c->bytes = s;
			c->a = regd ? rsrc : usrc;
			c->b = regd ? rdst : udst;
			if (tput)
				describe(c, "%ld EMU_MEMCPY of %u KiB per KICK, %s buffers, then reaped: time per command",
					 batch, kb, regd ? "registered" :
					 "unregistered (pinned and mapped per command)");
			else
				describe(c, "one EMU_MEMCPY of %u KiB, KICK, wait for its completion; %s buffers",
					 kb, regd ? "registered" :
					 "unregistered (pinned and mapped per command)");
			if (s == 4 * KIB && !tput && regd)
				reg4k = c;
			if (s == 4 * KIB && !tput && !regd)
				unreg4k = c;
		}
		c = add("memcpy", "ns/op", run_memfd, 1, "memfd_write_read_%uk",
			kb);
		if (s == 4 * KIB)
			memfd4k = c;
		c->p1 = mfd;
		c->bytes = s;
		c->a = usrc;
		c->b = udst;
		describe(c, "pwrite() of %u KiB into a memfd (tmpfs page cache) at 0, pread() back: two copies through the kernel",
			 kb);
	}
	c = add("memcpy", "ns/op", run_copy_ring, 1, "edu_dma_copy_4k");
	c->q = &qdma;
	c->p1 = WD_EDU_OP_DMA_COPY;
	c->p2 = 1;
	c->bytes = 4 * KIB;
	c->a = alloc(4 * KIB);
	c->b = alloc(4 * KIB);
	reg(&qdma, c->a, 4 * KIB, 0);
	reg(&qdma, c->b, 4 * KIB, WD_REGISTER_WRITE);
	c->iters = 1;
	c->max_reps = 3;
	describe(c, "one DMA_COPY of 4 KiB on the real edu device, registered buffers: bound by the device model (QEMU takes 100 ms per transfer)");

	/* (3) pinning, unpinning, invalidation */
	for (i = 0; i < ARRAY_SIZE(pin_pages); i++) {
		unsigned int p = pin_pages[i];

		c = add("pinning", "ns/op", run_reg_unreg, 1, "register_%up",
			p);
		c->q = &qa;
		c->bytes = p * pg;
		c->pages = p;
		c->a = alloc(p * pg);
		describe(c, "REGISTER (WD_REGISTER_WRITE) of %u faulted-in page(s): look up (hmm_range_fault) and DMA-map, nothing pinned", p);
		t = twin_of(c, "ns/op", "unregister_%up", p);
		describe(t, "UNREGISTER of the same %u page(s): stop mirroring, unmap",
			 p);
	}
	c = add("pinning", "ns/op", run_reg_unreg, 1, "register_new_%dp",
		INVAL_PAGES);
	c->q = &qa;
	c->p1 = 1;
	c->bytes = INVAL_PAGES * pg;
	c->pages = INVAL_PAGES;
	c->a = alloc(c->bytes);
	describe(c, "REGISTER of %d pages just faulted in again (MADV_DONTNEED and a write to each page before, untimed): compare repin_*",
		 INVAL_PAGES);
	t = twin_of(c, "ns/op", "unregister_new_%dp", INVAL_PAGES);
	describe(t, "UNREGISTER of those %d pages", INVAL_PAGES);
	crc = add("pinning", "ns/op", run_crc_pinned, 1, "crc_cmd_pinned_%dp",
		  INVAL_PAGES);
	crc->q = &qa;
	crc->a = alloc(INVAL_PAGES * pg);
	crc->bytes = INVAL_PAGES * pg;
	reg(&qa, crc->a, crc->bytes, WD_REGISTER_WRITE);
	describe(crc, "EMU_CRC32C of all of a registered %d-page buffer whose pages are all mapped for the device: the baseline of the repin_* cases",
		 INVAL_PAGES);
	for (i = 0; i < 2; i++) {
		const char *how = i ? "munmap" : "madvise";

		c = add("pinning", "ns/op", run_invalidate, 1,
			"inval_%s_%dp", how, INVAL_PAGES);
		c->q = &qa;
		c->p1 = i;
		c->bytes = INVAL_PAGES * pg;
		c->pages = INVAL_PAGES;
		c->a = alloc(c->bytes);
		reg(&qa, c->a, c->bytes, WD_REGISTER_WRITE);
		describe(c, i ? "munmap() of a registered %d-page buffer: the notifier takes the pages from the device (then mmap(MAP_FIXED) and a write to each page, untimed)" :
			 "madvise(MADV_DONTNEED) of a registered %d-page buffer: the notifier takes the pages from the device (then a write to each page, untimed)",
			 INVAL_PAGES);
		t = twin_of(c, "ns/op", "repin_%s_%dp", how,
			    INVAL_PAGES);
		describe(t, "the next EMU_CRC32C of all of that buffer: faults in and maps its %d pages again (compare crc_cmd_pinned)",
			 INVAL_PAGES);
		if (i)
			rep_unmap = t;
		else
			rep_madv = t;
		/* The same without warpdrive. */
		b = add("pinning", "ns/op", run_invalidate, 1,
			"%s_unregistered_%dp", how, INVAL_PAGES);
		b->p1 = i;
		b->p2 = 1;
		b->bytes = INVAL_PAGES * pg;
		b->pages = INVAL_PAGES;
		b->a = alloc(b->bytes);
		describe(b, "the same %s() of a %d-page buffer that is not registered: the cost without warpdrive",
			 how, INVAL_PAGES);
		inval[i][0] = c;
		inval[i][1] = b;
	}

	/* (4) migration: how long mm waits for warpdrive */
	if (access("/sys/devices/system/node/node1", F_OK)) {
		printf("wd_bench: one NUMA node, no migration cases\n");
	} else {
		int fd = memfd_create("wd_bench_mig", MFD_CLOEXEC);
		char *m;

		if (fd < 0 || ftruncate(fd, MIG_LEN))
			die("memfd: %s", strerror(errno));
		m = mmap(NULL, MIG_LEN, PROT_READ | PROT_WRITE, MAP_SHARED,
			 fd, 0);
		if (m == MAP_FAILED)
			die("mmap memfd: %s", strerror(errno));
		touch(m, MIG_LEN, 0x3c);
		reg(&qa, m, MIG_LEN, WD_REGISTER_WRITE);
		for (i = 0; i < 3; i++) {
			static const char *const what[] = {
				"idle", "100_queued", "running",
			};

			c = add("migration", "ns/op", run_migrate, 1,
				"move_page_%s", what[i]);
			c->q = &qa;
			c->p1 = i;
			c->a = m;
			c->iters = MIG_ITERS;
			mig[i] = c;
		}
		describe(mig[0], "move_pages() of one page of a registered 4 MiB memfd buffer to the other node, its queue idle");
		describe(mig[1], "the same with %d EMU_CRC32C of the whole buffer queued behind the held engine: waits for none of them",
			 MIG_QUEUED);
		describe(mig[2], "the same while one EMU_CRC32C of the whole buffer runs: waits at most for the engine's current 64 KiB chunk");
		t = twin_of(mig[2], "share", "move_page_running_hits");
		describe(t, "of move_page_running's moves, the share during which the command was still running (1.0: all)");
		c = add("migration", "ns/op", run_crc_4m, 1, "crc_cmd_4m");
		c->q = &qa;
		c->a = m;
		c->iters = 4;
		describe(c, "one EMU_CRC32C of the whole 4 MiB buffer, KICK to completion: what a move would wait for if it waited for a command");
		mig[3] = c;
	}

	/* (3) lookup scaling */
	for (i = 0; i < ARRAY_SIZE(scale_bufs); i++) {
		long n = scale_bufs[i];
		char *base = scale_buffers(&qscale[i], n, true);

		c = add("scaling", "ns/cmd", run_scaling, SCALE_BATCH,
			"bufs_%ld_total", n);
		c->q = &qscale[i];
		c->p1 = n;
		c->a = base;
		describe(c, "%d EMU_CRC32C of %d bytes per KICK, each in a random one of %ld registered one-page buffers, then reaped",
			 SCALE_BATCH, CRC_LEN, n);
		t = twin_of(c, "ns/cmd", "bufs_%ld_kick", n);
		describe(t, "the KICK ioctl alone of bufs_%ld_total: lookup, hold, submit, per command",
			 n);
		sc[i][0] = c;
		sc[i][1] = t;
	}
	/* The fewest and the most again, where NUMA balancing does not scan. */
	for (i = 0; i < 2; i++) {
		long n = scale_bufs[i ? ARRAY_SIZE(scale_bufs) - 1 : 0];

		c = add("scaling", "ns/cmd", run_scaling, SCALE_BATCH,
			"bufs_%ld_nonuma_total", n);
		c->q = &qnonuma[i];
		c->p1 = n;
		c->a = scale_buffers(c->q, n, false);
		describe(c, "bufs_%ld_total in memory with a policy of its own (MPOL_PREFERRED, node 0), which NUMA balancing does not scan",
			 n);
		t = twin_of(c, "ns/cmd", "bufs_%ld_nonuma_kick", n);
		describe(t, "the KICK ioctl alone of bufs_%ld_nonuma_total",
			 n);
		scn[i] = t;
	}

	/* Issue 11's goals: P5 and P6 need poll mode, which is not built. */
	add_goal("P1", 1.5, "nop_batch64_vs_uring_nop64", b64, u64,
		 "ns/cmd of 64 NOPs per KICK / io_uring NOPs, 64 per io_uring_enter()");
	add_goal("P1b", 1.5, "nop_round_trip_vs_pipe", b1, rtt,
		 "one NOP: KICK, then poll() until its completion / a pipe round trip between two CPUs");
	add_goal("P2", 1.5, "memcpy_4k_reg_vs_memfd", reg4k, memfd4k,
		 "latency of a 4 KiB EMU_MEMCPY on registered buffers / memfd pwrite() + pread() of 4 KiB");
	add_ratio("kick_batch64_vs_batch1", b64, b1, 1,
		  "ns/cmd of 64 NOPs per KICK / ns/cmd of one KICK (and wait) per NOP");
	add_ratio("kick_batch64_vs_kick_each", b64, each, 0,
		  "ns/cmd of 64 NOPs per KICK / 64 NOPs with a KICK each, reaped together");
	add_ratio("memcpy_4k_reg_vs_unreg", reg4k, unreg4k, 1,
		  "latency of a 4 KiB EMU_MEMCPY, registered / unregistered buffers");
	add_goal("P3", 1.05, "null_ioctl_rust_vs_c", nwd, nc,
		 "warpdrive's (Rust) null ioctl / the C misc device's");
	add_ratio("kick_empty_vs_null_c", kempty, nc, 0,
		  "KICK with an empty ring / the C misc device's null ioctl");
	add_ratio("null_ioctl_c_vs_syscall", nc, sysc, 0,
		  "the C misc device's null ioctl / getppid()");
	add_goal("P4", 1.1, "kick_10000_vs_10_bufs", sc[2][1], sc[0][1],
		 "KICK ioctl per command, 10000 / 10 registered buffers (O(log n) lookup: near 1)");
	add_ratio("kick_10000_vs_10_bufs_nonuma", scn[1], scn[0], 0,
		  "the same with NUMA balancing off: what NUMA-hinting scans add");
	add_ratio("total_10000_vs_10_bufs", sc[2][0], sc[0][0], 0,
		  "KICK + completion per command, 10000 / 10 registered buffers");
	add_ratio("kick_1000_vs_10_bufs", sc[1][1], sc[0][1], 0,
		  "KICK ioctl per command, 1000 / 10 registered buffers");
	add_ratio("inval_madvise_vs_unregistered", inval[0][0], inval[0][1],
		  0, "MADV_DONTNEED of 256 pages, registered / not registered");
	add_ratio("inval_munmap_vs_unregistered", inval[1][0], inval[1][1], 0,
		  "munmap() of 256 pages, registered / not registered");
	add_ratio("repin_madv_vs_pinned", rep_madv, crc, 0,
		  "command after MADV_DONTNEED (faults 256 pages in again) / the same command on a mapped buffer");
	if (mig[0]) {
		add_ratio("move_page_100_queued_vs_idle", mig[1], mig[0], 1,
			  "move_pages() of a registered page, 100 commands queued / queue idle");
		add_ratio("move_page_100_queued_vs_one_cmd", mig[1], mig[3],
			  1, "move_pages() with 100 commands queued / one 4 MiB command (goal: at most 1)");
		add_ratio("move_page_running_vs_one_cmd", mig[2], mig[3], 0,
			  "move_pages() while a 4 MiB command runs / that command");
	}
	add_ratio("repin_munmap_vs_pinned", rep_unmap, crc, 0,
		  "command after munmap + new mapping (faults 256 pages in again) / on a mapped buffer");

	/* A copy that is wrong would make its timing meaningless. */
	for (i = 0; i < (unsigned int)ncases; i++) {
		c = &cases[i];
		if (c->run != run_copy_ring && c->run != run_memfd)
			continue;
		memset(c->b, 0, c->bytes * (c->p2 ? c->p2 : 1));
		c->run(c, 1, NULL);
		if (memcmp(c->a, c->b, c->bytes * (c->p2 ? c->p2 : 1)))
			die("%s: the copy differs from its source", c->name);
	}

	printf("wd_bench: calibrating (%d cases)\n", ncases);
	fflush(stdout);
	for (i = 0; i < (unsigned int)ncases; i++)
		if (cases[i].run)
			calibrate(&cases[i], target_ms * 1000000ULL);

	for (r = 0; r < reps; r++) {
		printf("wd_bench: repetition %d of %d\n", r + 1, reps);
		fflush(stdout);
		for (i = 0; i < (unsigned int)ncases; i++) {
			/* Backwards in odd repetitions. */
			c = &cases[i];
			if (r % 2)
				c = &cases[ncases - 1 - i];
			if (!c->run || (c->max_reps && r >= c->max_reps))
				continue;
			sample(c, c->max_reps ? c->n : r);
		}
	}
	for (i = 0; i < (unsigned int)nratios; i++)
		compute_ratio(&ratios[i]);
	if (prof) {
		for (i = 0; i < (unsigned int)ncases; i++)
			if (cases[i].run && !strcmp(cases[i].name, prof))
				break;
		if (i == (unsigned int)ncases)
			die("-P %s: no such case", prof);
		profile_case(&cases[i]);
	}

	print_table();
	if (out) {
		f = fopen(out, "we");
		if (!f)
			die("%s: %s", out, strerror(errno));
	} else {
		f = stdout;
		printf("### wd_bench: begin json\n");
	}
	write_json(f, reps, target_ms, qa.dev, qdma.dev,
		   (now_ns() - start) / 1e9);
	if (out) {
		if (fclose(f))
			die("%s: %s", out, strerror(errno));
	} else {
		printf("### wd_bench: end json\n");
	}
	return 0;
}
