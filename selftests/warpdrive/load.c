// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive under load, from many processes at once:
 *
 *  - sharing: every queue of every edu device in use by a process of its
 *    own, and four more processes per device that find none free (EBUSY)
 *    and get one as the others close theirs. Each moves tens of MiB
 *    through the bulk engine and some 4 KiB chunks through the device's
 *    DMA engine, checked byte for byte against the CPU;
 *  - kill_in_flight: a process killed with hundreds of commands in flight
 *    on queues of both devices gives back every queue and every pin, and
 *    the queues of a process working beside it never notice;
 *  - close_in_flight, close_mapped_in_flight: close() with hundreds of
 *    commands in flight, with the rings unmapped first (close() releases
 *    the queue) or still mapped (the mappings hold the file, so the queue
 *    lives on until they go).
 *
 * Processes report through a shared page and their exit status: the
 * harness's ASSERTs must not run outside the test's own process, nor in
 * threads other than its main one.
 *
 * WD_PROFILE=debug (a KASAN and lockdep kernel, several times slower under
 * TCG) scales the volume of sharing down, and says so in the log.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "wd_ring.h"

#define KiB		1024UL
#define MiB		(1024UL * KiB)

/* How long a test waits for a batch of commands on a shared device. */
#define LOAD_WAIT_MS	120000

FIXTURE(load) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	int total[WD_MAX_DEVS];	/* queues of each device */
	bool debug;
};

FIXTURE_SETUP(load)
{
	const char *profile = getenv("WD_PROFILE");
	int i;

	self->debug = profile && !strcmp(profile, "debug");
	WD_SETUP_EDU(self->devs, self->n);
	/* Nothing of this test holds a queue yet: all of them are free. */
	for (i = 0; i < self->n; i++) {
		self->total[i] = wd_avail(&self->devs[i]);
		ASSERT_LT(0, self->total[i]) TH_LOG("%s", self->devs[i].name);
		ASSERT_GE(WD_MAX_QUEUES, self->total[i]);
	}
}

FIXTURE_TEARDOWN(load)
{
}

/* Polls @cond every 2 ms for up to @ms milliseconds; its final value. */
#define WAIT_FOR(cond, ms) ({						\
	uint64_t __end = wd_now_ms() + (ms);				\
	bool __ok;							\
									\
	while (!(__ok = (cond)) && wd_now_ms() < __end)			\
		usleep(2000);						\
	__ok;								\
})

static int ld(const int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void st(int *p, int v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void inc(int *p)
{
	__atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL);
}

static void dec(int *p)
{
	__atomic_sub_fetch(p, 1, __ATOMIC_ACQ_REL);
}

static uint32_t rnd(uint32_t *rng, uint32_t bound)
{
	*rng = *rng * 1664525 + 1013904223;
	return (*rng >> 8) % bound;
}

/* MAP_SHARED memory, for children to report in. NULL on failure. */
static void *alloc_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* VmPin of /proc/<pid>/status in kB, or -errno (-ENOENT if absent). */
static long vmpin_of(pid_t pid)
{
	char path[64], line[256];
	long val = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %ld kB", &val) == 1)
			break;
	fclose(f);
	return val;
}

/*
 * The "@key:\t<number>" line of /proc/<pid>/fdinfo/<fd>, which warpdrive
 * adds for its queues: 0, or -ENOENT if there is none (an older kernel),
 * or another -errno. Only ever extra evidence, never a test's core check.
 */
static int fdinfo_u64(pid_t pid, int fd, const char *key, uint64_t *val)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	unsigned long long v;
	int ret = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", pid, fd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) || line[klen] != ':')
			continue;
		if (sscanf(line + klen + 1, "%llu", &v) == 1) {
			*val = v;
			ret = 0;
		}
		break;
	}
	fclose(f);
	return ret;
}

/* Commands accepted by KICK that have no completion yet. */
static uint64_t in_flight(const struct wd_queue *q)
{
	struct wd_queue_status s;

	wd_status(q, &s);
	return s.submitted - s.completed;
}

/* Samples the @n queues' commands in flight into @flight: whether none is 0. */
static bool all_in_flight(const struct wd_queue *q, int n, uint64_t *flight)
{
	bool all = true;
	int i;

	for (i = 0; i < n; i++) {
		flight[i] = in_flight(&q[i]);
		all &= flight[i] > 0;
	}
	return all;
}

/* Bytes of @buf that copies did not write: sorted, disjoint ranges. */
struct range {
	size_t off, len;
};

/* -1 if every byte of @buf outside @r is @c, else the first that is not. */
static ssize_t check_gaps(const char *buf, size_t len, const struct range *r,
			  unsigned int n, unsigned char c)
{
	size_t pos = 0;
	unsigned int i;
	ssize_t bad;

	for (i = 0; i <= n; i++) {
		size_t end = i < n ? r[i].off : len;

		bad = wd_check_byte(buf + pos, end - pos, c);
		if (bad >= 0)
			return pos + bad;
		if (i < n)
			pos = r[i].off + r[i].len;
	}
	return -1;
}

/*
 * What a completion must say: its result and, for a copy, the pattern
 * (@seed at @off) that must now be at @dst.
 */
struct want {
	uint64_t result;
	char *dst;
	uint64_t seed, off, len;
};

/*
 * Checks @n completions against @w, command i having user_data i.
 * Returns the number of wrong ones and describes the first in @why.
 */
static unsigned int check_cqes(const struct wd_desc *d,
			       const struct wd_cqe *cqe, const struct want *w,
			       unsigned int n, char *why, size_t why_len)
{
	unsigned int i, bad = 0;
	ssize_t off;

	for (i = 0; i < n; i++) {
		off = -1;
		if (w[i].dst && !cqe[i].status)
			off = wd_check(w[i].dst, w[i].len, w[i].seed,
				       w[i].off);
		if (cqe[i].user_data == i && !cqe[i].status && !cqe[i].flags &&
		    cqe[i].result == w[i].result && off == -1)
			continue;
		if (!bad++)
			snprintf(why, why_len,
				 "command %u (opcode %u, len %llu): user_data %llu, status %d, result %#llx, want %#llx, byte %zd wrong",
				 i, d[i].opcode, (unsigned long long)d[i].len,
				 (unsigned long long)cqe[i].user_data,
				 cqe[i].status,
				 (unsigned long long)cqe[i].result,
				 (unsigned long long)w[i].result, off);
	}
	return bad;
}

/* Puts reaped completions in user_data order; -1 for a strange one. */
static int sort_cqes(struct wd_cqe *out, const struct wd_cqe *in,
		     unsigned int n, char *why, size_t why_len)
{
	unsigned char seen[256] = { 0 };
	unsigned int i;
	uint64_t ud;

	if (n > sizeof(seen))
		return -1;
	for (i = 0; i < n; i++) {
		ud = in[i].user_data;
		if (ud >= n || seen[ud]++) {
			snprintf(why, why_len,
				 "completion %u: unknown or repeated user_data %llu",
				 i, (unsigned long long)ud);
			return -1;
		}
		out[ud] = in[i];
	}
	return 0;
}

/* ---- sharing ---- */

/* Processes beyond the queues of a device, which must wait for one. */
#define NEXTRA		4
#define SRC_LEN		(4 * MiB + 64 * KiB)
#define DST_LEN		(4 * MiB)
#define DMA_LEN		(32 * KiB)
#define ROUND_MAX	128

/* One process of sharing, as it reports to the parent. */
struct share_slot {
	int dev;
	bool extra;		/* one of the NEXTRA late ones */
	int first_errno;	/* of the first open(), 0 if it worked */
	int avail_before;	/* extras: available_instances just before */
	unsigned int attempts;	/* open() calls until one worked */
	uint64_t waited_ms;	/* extras: from EBUSY to a queue */
	bool saw_other;		/* another device had work in flight */
	bool ok;		/* everything checked out */
	uint32_t index;		/* the queue's index */
	unsigned int register_retries;	/* REGISTERs again after EAGAIN */
	uint64_t copied, crc, dma;	/* bytes checked */
	uint64_t ms;		/* from open to close */
	long vmpin_after;	/* VmPin once the queue is closed */
	char why[256];
};

struct share {
	int opened[WD_MAX_DEVS];	/* owners that tried to open */
	int tried[WD_MAX_DEVS];		/* extras that got their EBUSY */
	int active[WD_MAX_DEVS];	/* processes with work in flight */
	int ndev;
	struct share_slot slot[];
};

/* The memory of one sharing process. */
struct share_mem {
	char *rsrc, *rdst;	/* registered */
	char *usrc, *udst;	/* not */
	char *dma;		/* first half registered, second half not */
	uint64_t rseed, useed;
};

__printf(3, 4) static int why_fail(struct share_slot *s, int ret,
				   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	return ret;
}

/*
 * REGISTER, again after EAGAIN: sixteen processes on two vCPUs of the debug
 * kernel can take longer than the second that REGISTER gives a range that
 * mm keeps changing (seen there: three processes at once).
 */
static int share_register(struct wd_queue *q, void *addr, size_t len,
			  uint32_t flags, struct share_slot *s)
{
	return wd_register_retry(q->fd, addr, len, flags, NULL, 5,
				 &s->register_retries);
}

static int share_setup(struct wd_queue *q, struct share_mem *m,
		       uint32_t seed, struct share_slot *s)
{

	m->rsrc = wd_alloc(SRC_LEN);
	m->usrc = wd_alloc(SRC_LEN);
	m->rdst = wd_alloc(DST_LEN);
	m->udst = wd_alloc(DST_LEN);
	m->dma = wd_alloc(DMA_LEN);
	if (!m->rsrc || !m->usrc || !m->rdst || !m->udst || !m->dma)
		return why_fail(s, -1, "out of memory");
	m->rseed = 2 * seed;
	m->useed = 2 * seed + 1;
	wd_fill(m->rsrc, SRC_LEN, m->rseed, 0);
	wd_fill(m->usrc, SRC_LEN, m->useed, 0);
	/* Written first, so that registering pins the final pages. */
	memset(m->rdst, 0, DST_LEN);
	memset(m->dma, 0, DMA_LEN);
	if (share_register(q, m->rsrc, SRC_LEN, 0, s) ||
	    share_register(q, m->rdst, DST_LEN, WD_REGISTER_WRITE, s) ||
	    share_register(q, m->dma, DMA_LEN / 2, WD_REGISTER_WRITE, s))
		return why_fail(s, -1, "REGISTER: %s", strerror(errno));
	return 0;
}

static void share_free(struct share_mem *m)
{
	if (m->rsrc)
		munmap(m->rsrc, SRC_LEN);
	if (m->usrc)
		munmap(m->usrc, SRC_LEN);
	if (m->rdst)
		munmap(m->rdst, DST_LEN);
	if (m->udst)
		munmap(m->udst, DST_LEN);
	if (m->dma)
		munmap(m->dma, DMA_LEN);
}

/* Picks one of the two sources: registered or not. */
static const char *pick_src(const struct share_mem *m, uint32_t *rng,
			    uint64_t *seed, bool *registered)
{
	*registered = rnd(rng, 2);
	*seed = *registered ? m->rseed : m->useed;
	return *registered ? m->rsrc : m->usrc;
}

/*
 * The two DMA copies through the device's 4 KiB buffer, three transfers
 * in all, into the DMA buffer: registered into registered, then plain
 * into plain at offsets that cross pages.
 */
static unsigned int add_dma(const struct share_mem *m, uint32_t *rng,
			    struct wd_desc *d, struct want *w,
			    struct range *r, unsigned int n)
{
	size_t soff = 4 * rnd(rng, (SRC_LEN - 8 * KiB) / 4);

	memset(m->dma, 0xd3, DMA_LEN);
	d[n] = wd_mkdesc(WD_EDU_OP_DMA_COPY, n, m->rsrc + soff, m->dma,
			 4 * KiB, 0);
	d[n].flags = WD_DESC_REGISTERED;
	w[n] = (struct want){ 4 * KiB, m->dma, m->rseed, soff, 4 * KiB };
	r[0] = (struct range){ 0, 4 * KiB };
	n++;
	soff = 4092 + 4 * rnd(rng, (SRC_LEN - 16 * KiB) / 4);
	d[n] = wd_mkdesc(WD_EDU_OP_DMA_COPY, n, m->usrc + soff,
			 m->dma + DMA_LEN / 2 + 2044, 8 * KiB, 0);
	w[n] = (struct want){ 8 * KiB, m->dma + DMA_LEN / 2 + 2044, m->useed,
			      soff, 8 * KiB };
	r[1] = (struct range){ DMA_LEN / 2 + 2044, 8 * KiB };
	return n + 1;
}

/*
 * One round: copies of 64 KiB to 4 MiB, less a little, from either source
 * to consecutive places in one destination (registered in even rounds),
 * with gaps that must keep their canary, and a CRC. Round 0 adds the DMA
 * copies. Returns 0, or -1 with the reason in @s->why.
 */
static int share_round(struct wd_queue *q, const struct share_mem *m,
		       unsigned int round, uint32_t *rng, struct share_slot *s)
{
	static const size_t sizes[] = {
		64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, 2 * MiB,
		4 * MiB,
	};
	struct wd_desc d[ROUND_MAX];
	struct wd_cqe cqe[ROUND_MAX];
	struct want w[ROUND_MAX];
	struct range r[ROUND_MAX], dr[2];
	bool dreg = !(round & 1), sreg;
	char *dst = dreg ? m->rdst : m->udst;
	unsigned char canary = 0x5a + round;
	unsigned int n = 0, nr = 0, i, bad;
	size_t pos = 0, doff, soff, len;
	uint64_t seed, copied = 0, crc = 0, dma = 0;
	const char *src;
	char why[256];
	ssize_t off;

	memset(dst, canary, DST_LEN);
	while (pos + 64 < DST_LEN && n < ROUND_MAX - 4) {
		doff = pos + rnd(rng, 64);
		len = sizes[rnd(rng, ARRAY_SIZE(sizes))] - rnd(rng, 4096);
		if (len > DST_LEN - doff)
			len = DST_LEN - doff;
		src = pick_src(m, rng, &seed, &sreg);
		soff = rnd(rng, SRC_LEN - len + 1);
		d[n] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, n, src + soff,
				 dst + doff, len, 0);
		if (dreg && sreg && rnd(rng, 2))
			d[n].flags = WD_DESC_REGISTERED;
		w[n] = (struct want){ len, dst + doff, seed, soff, len };
		r[nr++] = (struct range){ doff, len };
		copied += len;
		pos = doff + len;
		n++;
	}
	/* A CRC of up to 1 MiB, from scratch or continuing a given one. */
	src = pick_src(m, rng, &seed, &sreg);
	len = (64 * KiB << rnd(rng, 5)) - rnd(rng, 100);
	soff = rnd(rng, SRC_LEN - len + 1);
	d[n] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, n, src + soff, NULL, len,
			 rnd(rng, 2) ? *rng : 0);
	w[n] = (struct want){ .result = wd_crc32c(d[n].arg, src + soff, len) };
	crc += len;
	n++;
	if (!round) {
		i = n;
		n = add_dma(m, rng, d, w, dr, n);
		for (; i < n; i++)
			dma += d[i].len;
	}

	if (wd_run(q, d, n, cqe, LOAD_WAIT_MS))
		return why_fail(s, -1, "round %u: %s", round, wd_ring_error());
	bad = check_cqes(d, cqe, w, n, why, sizeof(why));
	if (bad)
		return why_fail(s, -1, "round %u: %u wrong, first: %.180s",
				round, bad, why);
	off = check_gaps(dst, DST_LEN, r, nr, canary);
	if (off >= 0)
		return why_fail(s, -1, "round %u: byte %zd of %s dst written",
				round, off, dreg ? "registered" : "plain");
	if (!round) {
		off = check_gaps(m->dma, DMA_LEN, dr, 2, 0xd3);
		if (off >= 0)
			return why_fail(s, -1, "byte %zd of the DMA buffer written",
					off);
	}
	s->copied += copied;
	s->crc += crc;
	s->dma += dma;
	return 0;
}

/* Polls @p until it reaches @val, for up to @ms. */
static bool wait_count(const int *p, int val, int ms)
{
	return WAIT_FOR(ld(p) >= val, ms);
}

static bool other_busy(struct share *sh, int dev)
{
	int i;

	for (i = 0; i < sh->ndev; i++)
		if (i != dev && ld(&sh->active[i]))
			return true;
	return false;
}

/*
 * A sharing process: gets a queue of @dev (an extra one first sees EBUSY
 * while the owners hold them all, then waits for one), moves @target bytes
 * through it and checks them. The owners close only once every extra has
 * had its EBUSY. Returns the exit status.
 */
static int share_child(const struct wd_dev *dev, int total,
		       struct share *sh, struct share_slot *s,
		       uint64_t target, uint32_t seed)
{
	struct share_mem m = { 0 };
	struct wd_queue_status qs;
	uint64_t t0, t1;
	struct wd_queue q;
	unsigned int round;
	uint32_t rng = seed;
	int ret, fd;

	wd_queue_init(&q);
	if (s->extra) {
		if (!wait_count(&sh->opened[s->dev], total, 60000)) {
			inc(&sh->tried[s->dev]);
			return why_fail(s, 1, "owners did not open in 60 s");
		}
		s->avail_before = wd_avail(dev);
		fd = wd_open(dev);
		s->first_errno = fd < 0 ? errno : 0;
		s->attempts = 1;
		if (fd >= 0)
			close(fd);
		inc(&sh->tried[s->dev]);
		if (fd >= 0)
			return why_fail(s, 1, "a free queue with %d owners",
					total);
		t0 = wd_now_ms();
		for (;;) {
			s->attempts++;
			ret = wd_queue_open(&q, dev, 0);
			if (ret != -EBUSY || wd_now_ms() - t0 > 150000)
				break;
			usleep(20000);
		}
		s->waited_ms = wd_now_ms() - t0;
	} else {
		s->attempts = 1;
		ret = wd_queue_open(&q, dev, 0);
		s->first_errno = -ret;
		inc(&sh->opened[s->dev]);
	}
	if (ret)
		return why_fail(s, 1, "%s", wd_ring_error());

	t0 = wd_now_ms();
	s->index = wd_read32(&q.st->queue_index);
	ret = share_setup(&q, &m, seed, s);
	inc(&sh->active[s->dev]);
	for (round = 0; !ret && (s->copied < target || round < 2); round++) {
		ret = share_round(&q, &m, round, &rng, s);
		if (other_busy(sh, s->dev))
			s->saw_other = true;
	}
	dec(&sh->active[s->dev]);
	wd_status(&q, &qs);
	if (!ret && (qs.errors || qs.submitted != qs.completed))
		ret = why_fail(s, -1, "status: %llu submitted, %llu completed, %llu errors",
			       (unsigned long long)qs.submitted,
			       (unsigned long long)qs.completed,
			       (unsigned long long)qs.errors);
	if (!s->extra && !wait_count(&sh->tried[s->dev], NEXTRA, 120000) &&
	    !ret)
		ret = why_fail(s, -1, "the extras did not try in 120 s");
	wd_queue_close(&q);
	t1 = wd_now_ms();
	s->ms = t1 - t0;
	share_free(&m);
	/* Nothing else of this process pins anything. */
	WAIT_FOR(wd_vmpin_kb() == 0, 2000);
	s->vmpin_after = wd_vmpin_kb();
	if (ret)
		return 1;
	s->ok = true;
	return 0;
}

/* Waits for @pids with a deadline; kills what is left after it. */
static void wait_children(struct __test_metadata *_metadata, pid_t *pids,
			  int *status, int n, int ms)
{
	uint64_t end = wd_now_ms() + ms;
	int left = n, i, ws;
	pid_t pid;

	for (i = 0; i < n; i++)
		status[i] = -1;
	while (left) {
		pid = waitpid(-1, &ws, WNOHANG);
		if (pid > 0) {
			for (i = 0; i < n; i++)
				if (pids[i] == pid)
					status[i] = ws;
			left--;
			continue;
		}
		if (wd_now_ms() > end)
			break;
		usleep(20000);
	}
	EXPECT_EQ(0, left) TH_LOG("%d processes still running after %d s",
				  left, ms / 1000);
	for (i = 0; left && i < n; i++) {
		if (status[i] != -1)
			continue;
		kill(pids[i], SIGKILL);
		waitpid(pids[i], &status[i], 0);
	}
}

/*
 * Every queue of every device taken by a process of its own, plus NEXTRA
 * processes per device that must see EBUSY while all are taken, and then
 * get one as the owners close theirs. All devices work at once, and every
 * process moves at least @target bytes, checked.
 */
TEST_F_TIMEOUT(load, sharing, 280)
{
	const uint64_t target = (self->debug ? 8 : 64) * MiB;
	uint64_t copied = 0, crc = 0, dma = 0, t0, secs, waited = 0;
	unsigned int retries = 0;
	int np = 0, i, d, *status;
	bool saw_other = false;
	struct share *sh;
	size_t sh_len;
	pid_t *pids;

	if (self->debug)
		TH_LOG("debug profile: %llu MiB per process instead of 64",
		       (unsigned long long)(target / MiB));
	for (d = 0; d < self->n; d++)
		np += self->total[d] + NEXTRA;
	sh_len = sizeof(*sh) + np * sizeof(sh->slot[0]);
	sh = alloc_shared(sh_len);
	pids = calloc(np, sizeof(*pids));
	status = calloc(np, sizeof(*status));
	ASSERT_NE(NULL, sh);
	ASSERT_NE(NULL, pids);
	ASSERT_NE(NULL, status);
	sh->ndev = self->n;

	t0 = wd_now_ms();
	np = 0;
	for (d = 0; d < self->n; d++) {
		for (i = 0; i < self->total[d] + NEXTRA; i++, np++) {
			struct share_slot *s = &sh->slot[np];

			s->dev = d;
			s->extra = i >= self->total[d];
			pids[np] = fork();
			ASSERT_LE(0, pids[np]);
			if (pids[np])
				continue;
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			_exit(share_child(&self->devs[d], self->total[d], sh,
					  s, target, 100 + np));
		}
	}
	wait_children(_metadata, pids, status, np, 260000);
	secs = (wd_now_ms() - t0 + 500) / 1000;

	for (i = 0; i < np; i++) {
		struct share_slot *s = &sh->slot[i];
		const char *name = self->devs[s->dev].name;

		EXPECT_TRUE(WIFEXITED(status[i]) && !WEXITSTATUS(status[i]))
			TH_LOG("process %d (%s, %s): status %#x: %s", i, name,
			       s->extra ? "extra" : "owner", status[i],
			       s->why);
		EXPECT_TRUE(s->ok) TH_LOG("process %d on %s: %s", i, name,
					  s->why);
		if (s->extra) {
			EXPECT_EQ(EBUSY, s->first_errno)
				TH_LOG("extra %d on %s: first open: %s", i,
				       name, strerror(s->first_errno));
			EXPECT_EQ(0, s->avail_before)
				TH_LOG("extra %d on %s", i, name);
			EXPECT_LT(1U, s->attempts);
			waited += s->waited_ms;
		} else {
			EXPECT_EQ(0, s->first_errno)
				TH_LOG("owner %d on %s: open: %s", i, name,
				       strerror(s->first_errno));
		}
		EXPECT_LE(target, s->copied) TH_LOG("process %d", i);
		EXPECT_LT(0ULL, s->crc);
		EXPECT_EQ(12 * KiB, s->dma) TH_LOG("process %d", i);
		EXPECT_EQ(0, s->vmpin_after)
			TH_LOG("process %d: VmPin %ld kB after close", i,
			       s->vmpin_after);
		TH_LOG("process %d: %s queue %u, %s, %u opens, %llu MiB in %llu ms",
		       i, name, s->index, s->extra ? "extra" : "owner",
		       s->attempts, (unsigned long long)(s->copied / MiB),
		       (unsigned long long)s->ms);
		saw_other |= s->saw_other;
		retries += s->register_retries;
		copied += s->copied;
		crc += s->crc;
		dma += s->dma;
	}
	if (self->n > 1)
		EXPECT_TRUE(saw_other)
			TH_LOG("no process saw another device at work");
	for (d = 0; d < self->n; d++)
		EXPECT_TRUE(WAIT_FOR(wd_avail(&self->devs[d]) ==
				     self->total[d], 5000))
			TH_LOG("%s: %d of %d queues free afterwards",
			       self->devs[d].name, wd_avail(&self->devs[d]),
			       self->total[d]);
	TH_LOG("%d processes on %d devices in %llu s: %llu MiB copied, %llu MiB CRC, %llu KiB DMA, all checked; extras waited %llu ms on average",
	       np, self->n, (unsigned long long)secs,
	       (unsigned long long)(copied / MiB),
	       (unsigned long long)(crc / MiB),
	       (unsigned long long)(dma / KiB),
	       (unsigned long long)(waited / (NEXTRA * self->n)));
	if (retries)
		TH_LOG("%u REGISTERs tried again after EAGAIN", retries);
	/* Last, so that a log cut to its tail still says why. */
	for (i = 0; i < np; i++)
		if (!sh->slot[i].ok)
			TH_LOG("process %d failed: status %#x: %s", i,
			       status[i], sh->slot[i].why);
	munmap(sh, sh_len);
	free(pids);
	free(status);
}

/* ---- kill_in_flight ---- */

#define CHILD_QUEUES	2		/* per device */
#define CHILD_LEN	(8 * MiB)	/* each of src and dst, per queue */
#define CHILD_PLAIN	(2 * MiB)
#define CHILD_CMDS	480		/* per queue */

struct kill_report {
	int ready;
	int nq;
	int fds[WD_MAX_DEVS * CHILD_QUEUES];
	uint64_t in_flight;		/* at ready, over all queues */
	uint64_t registered_kb;
	char why[256];
};

/*
 * The victim: CHILD_QUEUES queues on each device, each with registered
 * buffers and nearly a completion ring's worth of copies of 256 KiB to
 * 1 MiB in flight (one in eight from plain memory, pinned for itself),
 * after a 64 KiB DMA copy on each device's first. It never reaps; it
 * reports, then registers and unregisters a buffer until it is killed.
 * Returns an exit status only if it fails.
 */
static int kill_child(const struct wd_dev *devs, int n, const int *total,
		      struct kill_report *rep)
{
	struct wd_queue q[WD_MAX_DEVS * CHILD_QUEUES];
	struct wd_desc *d;
	char *plain, *src, *dst, *extra;
	uint32_t rng = 77, h;
	unsigned int i, k, pushed;
	size_t len, off;
	int dev, nq = 0, ret;

	d = calloc(CHILD_CMDS + 1, sizeof(*d));
	plain = wd_alloc(CHILD_PLAIN);
	if (!d || !plain)
		goto oom;
	wd_fill(plain, CHILD_PLAIN, 78, 0);
	for (dev = 0; dev < n; dev++) {
		for (k = 0; k < CHILD_QUEUES && (int)k < total[dev] - 1; k++) {
			if (wd_queue_open(&q[nq], &devs[dev], 0)) {
				snprintf(rep->why, sizeof(rep->why), "%s: %s",
					 devs[dev].name, wd_ring_error());
				return 2;
			}
			src = wd_alloc(CHILD_LEN);
			dst = wd_alloc(CHILD_LEN);
			if (!src || !dst)
				goto oom;
			wd_fill(src, CHILD_LEN, 79 + nq, 0);
			memset(dst, 0, CHILD_LEN);
			if (wd_register(q[nq].fd, src, CHILD_LEN, 0, &h) ||
			    wd_register(q[nq].fd, dst, CHILD_LEN,
					WD_REGISTER_WRITE, &h)) {
				snprintf(rep->why, sizeof(rep->why),
					 "REGISTER: %s", strerror(errno));
				return 3;
			}
			rep->registered_kb += 2 * CHILD_LEN / KiB;
			i = 0;
			if (!k)
				d[i++] = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, src,
						   dst, WD_EDU_DMA_COPY_MAX, 0);
			for (; i < CHILD_CMDS; i++) {
				len = 256 * KiB + rnd(&rng, 768 * KiB);
				off = rnd(&rng, CHILD_LEN - len);
				if (i % 8 == 7)
					d[i] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY,
							 i, plain,
							 dst + off % (CHILD_LEN -
								      CHILD_PLAIN),
							 CHILD_PLAIN, 0);
				else
					d[i] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY,
							 i, src + off,
							 dst + CHILD_LEN - len -
							 off, len, 0);
			}
			/* Pushes and kicks until everything is taken. */
			for (pushed = 0; pushed < i;) {
				pushed += wd_sq_push(&q[nq], d + pushed,
						     i - pushed);
				ret = wd_kick(&q[nq]);
				if (ret <= 0) {
					snprintf(rep->why, sizeof(rep->why),
						 "KICK took %d of %u: %s", ret,
						 i - pushed, wd_ring_error());
					return 4;
				}
			}
			rep->fds[nq] = q[nq].fd;
			nq++;
		}
	}
	for (i = 0; i < (unsigned int)nq; i++)
		rep->in_flight += in_flight(&q[i]);
	rep->nq = nq;
	/* Busy in the kernel when the signal comes: pinning, unpinning. */
	extra = wd_alloc(CHILD_PLAIN);
	if (!extra)
		goto oom;
	memset(extra, 1, CHILD_PLAIN);
	st(&rep->ready, 1);
	for (;;)
		if (!wd_register(q[0].fd, extra, CHILD_PLAIN,
				 WD_REGISTER_WRITE, &h))
			wd_unregister(q[0].fd, h);
oom:
	snprintf(rep->why, sizeof(rep->why), "out of memory");
	return 5;
}

#define BG_LEN		(1 * MiB)	/* registered src and dst */
#define BG_ULEN		(512 * KiB)	/* plain src and dst */
#define BG_SLOT		(160 * KiB)
#define BG_CMDS		12

/* A thread of the parent that keeps checking work on a queue of its own. */
struct bg {
	pthread_t thread;
	struct wd_queue *q;
	char *src, *dst, *usrc, *udst;
	uint64_t seed;		/* src's; usrc's is seed + 1 */
	uint32_t rng;
	int stop, arm, armed;
	int rounds;		/* checked */
	int during;		/* rounds in flight when armed, checked */
	uint64_t bytes;
	int err;
	char why[256];
};

__printf(2, 3) static int bg_fail(struct bg *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b->why, sizeof(b->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* One round of the background work: 12 commands, checked. */
static int bg_round(struct bg *b)
{
	struct wd_desc d[BG_CMDS];
	struct wd_cqe got[BG_CMDS], cqe[BG_CMDS];
	struct want w[BG_CMDS];
	struct range r[6], ur[3];
	unsigned char canary = 0xa0 + (b->rounds & 15);
	unsigned int n = 0, i, bad;
	bool armed = false;
	const char *src;
	size_t len, off, doff, slen;
	uint64_t seed;
	ssize_t pos;
	int ret;

	memset(b->dst, canary, BG_LEN);
	memset(b->udst, canary, BG_ULEN);
	/* Six copies into the registered dst, two into the plain one. */
	for (i = 0; i < 8; i++) {
		bool reg = rnd(&b->rng, 2);

		src = reg ? b->src : b->usrc;
		slen = reg ? BG_LEN : BG_ULEN;
		seed = reg ? b->seed : b->seed + 1;
		len = i < 6 ? 64 * KiB + rnd(&b->rng, 64 * KiB) :
			      32 * KiB + rnd(&b->rng, 128 * KiB);
		off = rnd(&b->rng, slen - len + 1);
		doff = i < 6 ? i * BG_SLOT + rnd(&b->rng, 64) :
			       (i - 6) * 240 * KiB + rnd(&b->rng, 64);
		d[n] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, n, src + off,
				 (i < 6 ? b->dst : b->udst) + doff, len, 0);
		w[n] = (struct want){ len, (char *)(uintptr_t)d[n].dst, seed,
				      off, len };
		if (i < 6)
			r[i] = (struct range){ doff, len };
		else
			ur[i - 6] = (struct range){ doff, len };
		b->bytes += len;
		n++;
	}
	/* The device's DMA engine, shared with the victim's 64 KiB copy. */
	off = 4 * rnd(&b->rng, (BG_LEN - 4 * KiB) / 4);
	d[n] = wd_mkdesc(WD_EDU_OP_DMA_COPY, n, b->src + off,
			 b->udst + 480 * KiB, 4 * KiB, 0);
	w[n] = (struct want){ 4 * KiB, b->udst + 480 * KiB, b->seed, off,
			      4 * KiB };
	ur[2] = (struct range){ 480 * KiB, 4 * KiB };
	n++;
	for (i = 0; i < 2; i++) {
		len = 4 * KiB + rnd(&b->rng, 256 * KiB);
		src = i ? b->usrc : b->src;
		off = rnd(&b->rng, (i ? BG_ULEN : BG_LEN) - len + 1);
		d[n] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, n, src + off, NULL, len,
				 b->rng);
		w[n] = (struct want){ .result = wd_crc32c(d[n].arg, src + off,
						      len) };
		n++;
	}
	d[n] = wd_mkdesc(WD_EDU_OP_FACTORIAL, n, NULL, NULL, 0,
			 rnd(&b->rng, 34));
	w[n] = (struct want){ .result = wd_fact_u32(d[n].arg) };
	n++;

	if (wd_sq_push(b->q, d, n) != n)
		return bg_fail(b, "SQ full");
	ret = wd_kick(b->q);
	if (ret != (int)n)
		return bg_fail(b, "KICK took %d of %u: %s", ret, n,
			       wd_ring_error());
	/* In flight now: the parent may kill the victim. */
	if (ld(&b->arm) && !ld(&b->armed)) {
		st(&b->armed, 1);
		armed = true;
	}
	if (wd_reap(b->q, got, n, LOAD_WAIT_MS))
		return bg_fail(b, "round %d: %s", b->rounds, wd_ring_error());
	if (sort_cqes(cqe, got, n, b->why, sizeof(b->why)))
		return -1;
	bad = check_cqes(d, cqe, w, n, b->why, sizeof(b->why));
	if (bad)
		return -1;
	pos = check_gaps(b->dst, BG_LEN, r, 6, canary);
	if (pos < 0)
		pos = check_gaps(b->udst, BG_ULEN, ur, 3, canary);
	if (pos >= 0)
		return bg_fail(b, "round %d: a copy wrote outside its range",
			       b->rounds);
	if (armed)
		st(&b->during, 1);
	return 0;
}

static void *bg_fn(void *arg)
{
	struct bg *b = arg;

	while (!ld(&b->stop)) {
		if (bg_round(b)) {
			st(&b->err, 1);
			break;
		}
		inc(&b->rounds);
	}
	return NULL;
}

static int bg_setup(struct bg *b, struct wd_queue *q, uint64_t seed)
{
	uint32_t h;

	memset(b, 0, sizeof(*b));
	b->q = q;
	b->seed = seed;
	b->rng = seed;
	b->src = wd_alloc(BG_LEN);
	b->dst = wd_alloc(BG_LEN);
	b->usrc = wd_alloc(BG_ULEN);
	b->udst = wd_alloc(BG_ULEN);
	if (!b->src || !b->dst || !b->usrc || !b->udst)
		return -ENOMEM;
	wd_fill(b->src, BG_LEN, seed, 0);
	wd_fill(b->usrc, BG_ULEN, seed + 1, 0);
	memset(b->dst, 0, BG_LEN);
	if (wd_register(q->fd, b->src, BG_LEN, 0, &h) ||
	    wd_register(q->fd, b->dst, BG_LEN, WD_REGISTER_WRITE, &h))
		return -errno;
	return 0;
}

static void bg_free(struct bg *b)
{
	if (b->src)
		munmap(b->src, BG_LEN);
	if (b->dst)
		munmap(b->dst, BG_LEN);
	if (b->usrc)
		munmap(b->usrc, BG_ULEN);
	if (b->udst)
		munmap(b->udst, BG_ULEN);
}

static bool rounds_at_least(struct bg *b, int n, int want)
{
	int i;

	for (i = 0; i < n; i++)
		if (ld(&b[i].rounds) < want && !ld(&b[i].err))
			return false;
	return true;
}

static bool all_armed(struct bg *b, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!ld(&b[i].armed) && !ld(&b[i].err))
			return false;
	return true;
}

/* A new queue of @dev: one copy and one CRC, checked. */
static void fresh_queue_works(struct __test_metadata *_metadata,
			      struct wd_queue *q, const struct wd_dev *dev,
			      char *src, char *dst, uint64_t seed)
{
	struct wd_desc d[2];
	struct wd_cqe cqe[2];

	ASSERT_EQ(0, wd_queue_open(q, dev, 0))
		TH_LOG("%s: %s", dev->name, wd_ring_error());
	memset(dst, 0, 256 * KiB);
	d[0] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, src, dst, 256 * KiB, 0);
	d[1] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 1, src + 1, NULL, 100000, 0);
	ASSERT_EQ(0, wd_run(q, d, 2, cqe, LOAD_WAIT_MS))
		TH_LOG("%s: %s", dev->name, wd_ring_error());
	EXPECT_EQ(0, cqe[0].status);
	EXPECT_EQ(256 * KiB, cqe[0].result);
	EXPECT_EQ(-1, wd_check(dst, 256 * KiB, seed, 0)) TH_LOG("%s",
								dev->name);
	EXPECT_EQ(0, cqe[1].status);
	EXPECT_EQ(wd_crc32c(0, src + 1, 100000), cqe[1].result);
}

/*
 * A process with hundreds of commands in flight on queues of both devices
 * is killed. Meanwhile the parent's threads keep checking work on a queue
 * of each device: before the kill, across it (a round in flight when it
 * happens) and after it. Once the victim is reaped, all its queues come
 * back, the parent's pins and queues are as they were, and every queue of
 * every device works.
 */
TEST_F_TIMEOUT(load, kill_in_flight, 180)
{
	struct wd_queue pq[WD_MAX_DEVS], *fresh;
	struct bg bg[WD_MAX_DEVS];
	struct kill_report *rep;
	uint64_t t_kill, t_reap, t_back, val, flight[WD_MAX_DEVS];
	int d, i, k, status = 0, nfresh = 0, rounds[WD_MAX_DEVS];
	uint64_t child_flight = 0;
	long pin0, child_pin, cmd_pin_kb = 0, mapped_kb = 0;
	char *src, *dst;
	pid_t pid;

	for (d = 0; d < self->n; d++) {
		if (self->total[d] < 2)
			SKIP(return, "%s has only one queue",
			     self->devs[d].name);
		wd_queue_init(&pq[d]);
	}
	rep = alloc_shared(sizeof(*rep));
	ASSERT_NE(NULL, rep);
	for (d = 0; d < self->n; d++) {
		ASSERT_EQ(0, wd_queue_open(&pq[d], &self->devs[d], 0))
			TH_LOG("%s: %s", self->devs[d].name, wd_ring_error());
		ASSERT_EQ(0, bg_setup(&bg[d], &pq[d], 500 + 2 * d))
			TH_LOG("%s", strerror(errno));
	}
	/* Registered buffers are mirrored, never pinned. */
	pin0 = wd_vmpin_kb();
	ASSERT_EQ(0, pin0) TH_LOG("the parent's buffers are in VmPin");

	fflush(NULL);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(kill_child(self->devs, self->n, self->total, rep));
	}
	for (d = 0; d < self->n; d++)
		ASSERT_EQ(0, pthread_create(&bg[d].thread, NULL, bg_fn,
					    &bg[d]));

	/* Before: the victim is loaded, the parent's work checks out. */
	ASSERT_TRUE(WAIT_FOR(ld(&rep->ready) ||
			     waitpid(pid, &status, WNOHANG) == pid, 120000))
		TH_LOG("the victim did not get ready in 120 s");
	ASSERT_TRUE(ld(&rep->ready)) TH_LOG("victim: status %#x: %s", status,
					    rep->why);
	ASSERT_TRUE(WAIT_FOR(rounds_at_least(bg, self->n, 1), 60000));
	EXPECT_LT(100ULL * rep->nq, rep->in_flight)
		TH_LOG("hardly anything in flight");

	/* During: kill it while each parent queue has a round in flight. */
	for (d = 0; d < self->n; d++)
		st(&bg[d].arm, 1);
	ASSERT_TRUE(WAIT_FOR(all_armed(bg, self->n), 60000));
	/*
	 * The queue armed first may have finished its round by the time
	 * the last one arms: wait for a moment when every queue has work
	 * in the kernel (each round's DMA_COPY alone takes 200 ms).
	 */
	WAIT_FOR(all_in_flight(pq, self->n, flight), 10000);
	for (i = 0; i < rep->nq; i++) {
		if (!fdinfo_u64(pid, rep->fds[i], "wd-in-flight", &val))
			child_flight += val;
		if (!fdinfo_u64(pid, rep->fds[i], "wd-pinned-pages", &val))
			cmd_pin_kb += val * wd_page_size() / KiB;
		if (!fdinfo_u64(pid, rep->fds[i], "wd-mapped-pages", &val))
			mapped_kb += val * wd_page_size() / KiB;
	}
	/* Read after the queues' pins: those only go down meanwhile. */
	child_pin = vmpin_of(pid);
	t_kill = wd_now_ms();
	ASSERT_EQ(0, kill(pid, SIGKILL));
	TH_LOG("victim: %d queues, %llu commands in flight when ready, VmPin %ld kB (%llu kB registered) at the kill",
	       rep->nq, (unsigned long long)rep->in_flight, child_pin,
	       (unsigned long long)rep->registered_kb);
	if (child_flight)
		TH_LOG("victim: %llu in flight at the kill, by fdinfo",
		       (unsigned long long)child_flight);
	/*
	 * Only the victim's commands' own pins, at most: not its buffers,
	 * which are mapped for the device without a pin.
	 */
	EXPECT_GE(cmd_pin_kb, child_pin)
		TH_LOG("VmPin %ld kB, the commands' own pins %ld kB", child_pin,
		       cmd_pin_kb);
	EXPECT_LT(0L, mapped_kb) TH_LOG("no registered page mapped");
	for (d = 0; d < self->n; d++)
		EXPECT_LT(0ULL, flight[d])
			TH_LOG("%s: nothing of the parent's in flight at the kill",
			       self->devs[d].name);
	ASSERT_TRUE(WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, 60000))
		TH_LOG("the victim did not die in 60 s");
	t_reap = wd_now_ms();
	for (d = 0; d < self->n; d++)
		rounds[d] = ld(&bg[d].rounds);
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		TH_LOG("status %#x: %s", status, rep->why);

	/* Its queues come back, maybe a little after the exit. */
	for (d = 0; d < self->n; d++)
		EXPECT_TRUE(WAIT_FOR(wd_avail(&self->devs[d]) ==
				     self->total[d] - 1, 30000))
			TH_LOG("%s: %d free, want %d", self->devs[d].name,
			       wd_avail(&self->devs[d]), self->total[d] - 1);
	t_back = wd_now_ms();
	TH_LOG("killed with %llu commands of the parent's in flight on %s; reaped after %llu ms, queues back after %llu ms",
	       (unsigned long long)flight[0], self->devs[0].name,
	       (unsigned long long)(t_reap - t_kill),
	       (unsigned long long)(t_back - t_kill));

	/* After: two more rounds each. */
	for (d = 0; d < self->n; d++)
		EXPECT_TRUE(WAIT_FOR(ld(&bg[d].rounds) >= rounds[d] + 2 ||
				     ld(&bg[d].err), 60000));
	for (d = 0; d < self->n; d++) {
		st(&bg[d].stop, 1);
		ASSERT_EQ(0, pthread_join(bg[d].thread, NULL));
		EXPECT_EQ(0, bg[d].err) TH_LOG("%s: %s", self->devs[d].name,
					       bg[d].why);
		EXPECT_EQ(1, bg[d].during)
			TH_LOG("%s: the round across the kill", self->devs[d].name);
		TH_LOG("%s: %d rounds, %llu KiB copied, checked",
		       self->devs[d].name, bg[d].rounds,
		       (unsigned long long)(bg[d].bytes / KiB));
	}
	/* The parent's per-command pins are gone, the victim's never counted. */
	EXPECT_TRUE(WAIT_FOR(wd_vmpin_kb() == pin0, 2000))
		TH_LOG("VmPin %ld kB, was %ld kB", wd_vmpin_kb(), pin0);
	for (d = 0; d < self->n; d++) {
		struct wd_queue_status qs;

		wd_status(&pq[d], &qs);
		EXPECT_EQ((__u32)WD_QUEUE_STARTED, qs.state);
		EXPECT_EQ(0ULL, qs.errors);
		EXPECT_EQ(qs.submitted, qs.completed);
		/*
		 * Still mirrored, but mm may have moved or reclaimed some
		 * pages under the victim's pressure: those are looked up
		 * again when next used, so fewer may be mapped, never more.
		 */
		EXPECT_GE((uint64_t)(2 * BG_LEN / wd_page_size()),
			  qs.mapped_pages);
		EXPECT_EQ(0ULL, qs.pinned_pages);
		if (!fdinfo_u64(getpid(), pq[d].fd, "wd-in-flight", &val))
			EXPECT_EQ(0ULL, val) TH_LOG("fdinfo wd-in-flight");
	}

	/* Every queue of every device serves again. */
	fresh = calloc(WD_MAX_DEVS * WD_MAX_QUEUES, sizeof(*fresh));
	src = wd_alloc(256 * KiB + 4 * KiB);
	dst = wd_alloc(256 * KiB);
	ASSERT_NE(NULL, fresh);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, 256 * KiB + 4 * KiB, 600, 0);
	for (d = 0; d < self->n; d++) {
		for (k = 0; k < self->total[d] - 1; k++)
			fresh_queue_works(_metadata, &fresh[nfresh++],
					  &self->devs[d], src, dst, 600);
		EXPECT_EQ(0, wd_avail(&self->devs[d]));
	}
	for (i = 0; i < nfresh; i++)
		wd_queue_close(&fresh[i]);
	for (d = 0; d < self->n; d++) {
		wd_queue_close(&pq[d]);
		bg_free(&bg[d]);
		EXPECT_EQ(self->total[d], wd_avail(&self->devs[d]));
	}
	EXPECT_EQ(0, wd_vmpin_kb());
	munmap(src, 256 * KiB + 4 * KiB);
	munmap(dst, 256 * KiB);
	munmap(rep, sizeof(*rep));
	free(fresh);
}

/* ---- close_in_flight ---- */

#define CLOSE_LEN	(8 * MiB)
#define CLOSE_CMDS	480
#define CLOSE_PLAIN	(2 * MiB)

/* A queue of @dev with registered buffers and CLOSE_CMDS commands in flight. */
struct close_ctx {
	struct wd_queue q;
	char *src, *dst, *plain, *snap;
	struct wd_desc d[CLOSE_CMDS];
	long pin0;
	int avail0;
};

static void close_load(struct __test_metadata *_metadata, struct close_ctx *c,
		       const struct wd_dev *dev)
{
	unsigned int i, pushed;
	uint32_t rng = 99, h;
	size_t len, off;
	int ret;

	c->avail0 = wd_avail(dev);
	c->pin0 = wd_vmpin_kb();
	ASSERT_LE(0, c->pin0);
	c->src = wd_alloc(CLOSE_LEN);
	c->dst = wd_alloc(CLOSE_LEN);
	c->snap = wd_alloc(CLOSE_LEN);
	c->plain = wd_alloc(CLOSE_PLAIN);
	ASSERT_NE(NULL, c->src);
	ASSERT_NE(NULL, c->dst);
	ASSERT_NE(NULL, c->snap);
	ASSERT_NE(NULL, c->plain);
	wd_fill(c->src, CLOSE_LEN, 98, 0);
	wd_fill(c->plain, CLOSE_PLAIN, 97, 0);
	memset(c->dst, 0, CLOSE_LEN);
	ASSERT_EQ(0, wd_queue_open(&c->q, dev, 0))
		TH_LOG("%s: %s", dev->name, wd_ring_error());
	ASSERT_EQ(0, wd_register(c->q.fd, c->src, CLOSE_LEN, 0, &h));
	ASSERT_EQ(0, wd_register(c->q.fd, c->dst, CLOSE_LEN,
				 WD_REGISTER_WRITE, &h));

	/* A 16 KiB DMA copy (0.8 s) first, then bulk copies. */
	c->d[0] = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, c->src, c->dst, 16 * KiB,
			    0);
	for (i = 1; i < CLOSE_CMDS; i++) {
		len = 256 * KiB + rnd(&rng, 768 * KiB);
		off = rnd(&rng, CLOSE_LEN - len);
		if (i % 8)
			c->d[i] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, i,
					    c->src + off, c->dst + off, len, 0);
		else
			c->d[i] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, i, c->plain,
					    c->dst + off % (CLOSE_LEN - CLOSE_PLAIN),
					    CLOSE_PLAIN, 0);
	}
	for (pushed = 0; pushed < CLOSE_CMDS;) {
		pushed += wd_sq_push(&c->q, c->d + pushed,
				     CLOSE_CMDS - pushed);
		ret = wd_kick(&c->q);
		ASSERT_LT(0, ret) TH_LOG("KICK took %d, %u of %u pushed: %s",
					 ret, pushed, CLOSE_CMDS,
					 wd_ring_error());
	}
	EXPECT_LT(100ULL, in_flight(&c->q)) TH_LOG("hardly anything in flight");
	EXPECT_LT(c->pin0, wd_vmpin_kb());
}

/* Nothing writes to dst any more, and everything is given back. */
static void close_after(struct __test_metadata *_metadata,
			struct close_ctx *c, const struct wd_dev *dev)
{
	EXPECT_EQ(c->pin0, wd_vmpin_kb());
	EXPECT_EQ(c->avail0, wd_avail(dev));
	memcpy(c->snap, c->dst, CLOSE_LEN);
	usleep(300 * 1000);
	EXPECT_EQ(0, memcmp(c->snap, c->dst, CLOSE_LEN))
		TH_LOG("a command wrote after the queue was released");
	munmap(c->src, CLOSE_LEN);
	munmap(c->dst, CLOSE_LEN);
	munmap(c->snap, CLOSE_LEN);
	munmap(c->plain, CLOSE_PLAIN);
}

/*
 * The rings unmapped, close() is the last reference: with hundreds of
 * commands in flight it returns 0 once they are cancelled or done, with
 * every pin given back and the queue free again.
 */
TEST_F_TIMEOUT(load, close_in_flight, 60)
{
	const struct wd_dev *dev = &self->devs[0];
	struct close_ctx *c;
	uint64_t t0, n;
	int fd;

	c = calloc(1, sizeof(*c));
	ASSERT_NE(NULL, c);
	close_load(_metadata, c, dev);
	n = in_flight(&c->q);
	fd = c->q.fd;
	ASSERT_EQ(0, munmap(c->q.st, c->q.st_len));
	ASSERT_EQ(0, munmap(c->q.dus, c->q.dus_len));
	EXPECT_EQ(c->avail0 - 1, wd_avail(dev)) TH_LOG("unmapping freed it");
	t0 = wd_now_ms();
	EXPECT_EQ(0, close(fd)) TH_LOG("%s", strerror(errno));
	TH_LOG("close with %llu commands in flight took %llu ms",
	       (unsigned long long)n, (unsigned long long)(wd_now_ms() - t0));
	close_after(_metadata, c, dev);
	free(c);
}

/*
 * The rings still mapped, close() is not the last reference: the mappings
 * hold the file, so the queue lives on. close() returns 0 at once, the
 * status page and the rings stay readable and writable as before, and
 * completions keep arriving, right. Unmapping the last region releases
 * the queue: the rest are cancelled, and every pin is given back.
 */
TEST_F_TIMEOUT(load, close_mapped_in_flight, 60)
{
	const struct wd_dev *dev = &self->devs[0];
	struct wd_cqe cqe[64];
	struct close_ctx *c;
	uint32_t tail0, got, i;
	uint64_t t0, n, ud;
	int bad = 0;

	c = calloc(1, sizeof(*c));
	ASSERT_NE(NULL, c);
	close_load(_metadata, c, dev);
	n = in_flight(&c->q);
	tail0 = wd_cq_tail(&c->q);
	t0 = wd_now_ms();
	EXPECT_EQ(0, close(c->q.fd)) TH_LOG("%s", strerror(errno));
	c->q.fd = -1;
	TH_LOG("close with %llu commands in flight, rings mapped, took %llu ms",
	       (unsigned long long)n, (unsigned long long)(wd_now_ms() - t0));

	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, wd_read32(&c->q.st->magic));
	EXPECT_EQ((__u32)WD_QUEUE_STARTED, wd_read32(&c->q.st->state));
	EXPECT_EQ(c->avail0 - 1, wd_avail(dev));
	/* Completions keep coming: reap some, through the ring. */
	EXPECT_TRUE(WAIT_FOR(wd_cq_tail(&c->q) - tail0 >= 8, 30000))
		TH_LOG("%u completions after close", wd_cq_tail(&c->q) - tail0);
	got = wd_cq_pop(&c->q, cqe, ARRAY_SIZE(cqe));
	EXPECT_LT(0U, got);
	for (i = 0; i < got; i++) {
		ud = cqe[i].user_data;
		if (ud < CLOSE_CMDS && !cqe[i].status &&
		    cqe[i].result == c->d[ud].len)
			continue;
		if (!bad++)
			TH_LOG("completion %u: user_data %llu, status %d, result %llu",
			       i, (unsigned long long)ud, cqe[i].status,
			       (unsigned long long)cqe[i].result);
	}
	EXPECT_EQ(0, bad);
	EXPECT_LT(c->pin0, wd_vmpin_kb()) TH_LOG("the buffers went with close");

	n = in_flight(&c->q);
	if (!n)
		TH_LOG("all done before the unmap: proves less");
	ASSERT_EQ(0, munmap(c->q.dus, c->q.dus_len));
	EXPECT_EQ(c->avail0 - 1, wd_avail(dev)) TH_LOG("the status page holds it");
	t0 = wd_now_ms();
	ASSERT_EQ(0, munmap(c->q.st, c->q.st_len));
	TH_LOG("the last munmap with %llu in flight took %llu ms",
	       (unsigned long long)n, (unsigned long long)(wd_now_ms() - t0));
	c->q.st = NULL;
	c->q.dus = NULL;
	close_after(_metadata, c, dev);
	free(c);
}

TEST_HARNESS_MAIN
