// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive teardown under load: the removal test's single unbind, repeated
 * many times and three ways, each time with queues open, started and
 * mapped, buffers registered and commands in flight:
 *
 *  - unbind: the edu driver is unbound from the device through sysfs and
 *    bound again;
 *  - pci_remove: the PCI device is removed and found again by a rescan;
 *  - rmmod: warpdrive_edu is unloaded, then warpdrive, which must refuse
 *    while its driver is loaded and while a queue file lives (open or
 *    mapped), and both are loaded again.
 *
 * After each removal, what the queues promise: every command accepted is
 * completed (with an error if it did not finish) and none is lost, which
 * the queue's fdinfo counters show, since the rings are gone; ioctls fail
 * with ENODEV; poll() reports EPOLLERR | EPOLLHUP; the mappings raise
 * SIGBUS; no destination changes any more; nothing stays pinned. Then the
 * device comes back with all of its queues, and they work. A queue of
 * another device stays open and busy across the removals and must not
 * notice them.
 *
 * Run last. The fixture's teardown runs in the parent and puts back
 * whatever a failed test left removed, unbound or unloaded. A test killed
 * by its timeout has no teardown: the next test's setup, and main() at
 * exit, put things back then.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "wd_ring.h"

#define KiB		1024UL
#define MiB		(1024 * KiB)

#define CYCLES		50	/* removals of each kind per run */
#define DEBUG_CYCLES	10	/* ... on the debug kernel */
#define DMA_EVERY	5	/* every 5th cycle also has a DMA_COPY running */
#define VICTIM_QUEUES	2	/* busy queues of the device removed */
#define BULK_CMDS	3	/* EMU_MEMCPYs on each of them */
#define BULK_LEN	(2 * MiB)
#define DMA_LEN		(16 * KiB)	/* 4 chunks of two 100 ms transfers */
#define DMA_DELAY_MS	50	/* from submitting it to the removal */
#define BYST_CMDS	2	/* commands of the bystander per cycle */
#define BYST_LEN	(256 * KiB)
#define SMALL_LEN	(64 * KiB)
/*
 * How long a destination is watched after the removal: the emulated
 * engine writes a 64 KiB chunk every few microseconds, the device one
 * transfer every 100 ms.
 */
#define QUIET_MS	20
#define DMA_QUIET_MS	250
#define PROBE_WAIT_MS	10000

/* Each victim queue's destinations: the copies', then the DMA_COPY's. */
#define VICTIM_AREA	(BULK_CMDS * BULK_LEN + DMA_LEN)
#define MAX_VICTIMS	(VICTIM_QUEUES + WD_MAX_DEVS - 1)

#define MODULE_DIR	"/wd/modules"
#define WD_MODULE	"warpdrive"
#define EDU_MODULE	"warpdrive_edu"

enum kind { KIND_UNBIND, KIND_PCI_REMOVE, KIND_RMMOD };

static const char *const kind_names[] = {
	[KIND_UNBIND] = "unbind",
	[KIND_PCI_REMOVE] = "pci_remove",
	[KIND_RMMOD] = "rmmod",
};

/* ---- putting the system back ---- */

static bool module_loaded(const char *name)
{
	char path[WD_PATH_LEN], buf[32];

	if (wd_path(path, sizeof(path), "/sys/module/%s/initstate", name))
		return false;
	return wd_read_file(path, buf, sizeof(buf)) > 0 &&
	       !strcmp(buf, "live\n");
}

/* finit_module() of MODULE_DIR/<name>.ko: 0 or -errno. */
static int load_module(const char *name)
{
	char path[WD_PATH_LEN];
	int fd, ret;

	if (wd_path(path, sizeof(path), "%s/%s.ko", MODULE_DIR, name))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, "", 0) ? -errno : 0;
	close(fd);
	return ret;
}

/*
 * delete_module() as rmmod does it: never waits for the module's users,
 * fails with EWOULDBLOCK (or EBUSY) while there are any.
 */
static int unload_module(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK) ? -errno : 0;
}

static bool pci_present(const char *bdf)
{
	char path[WD_PATH_LEN];

	return !wd_path(path, sizeof(path), "%s/%s", WD_PCI_DIR, bdf) &&
	       !access(path, F_OK);
}

static int pci_remove(const char *bdf)
{
	char path[WD_PATH_LEN];

	if (wd_path(path, sizeof(path), "%s/%s/remove", WD_PCI_DIR, bdf))
		return -ENAMETOOLONG;
	return wd_write_file(path, "1");
}

static int pci_rescan(void)
{
	return wd_write_file("/sys/bus/pci/rescan", "1");
}

/*
 * Probing may finish after the write that triggered it returned: waits
 * until @bdf is bound and has its class device.
 */
static bool wait_probed(const char *bdf, int ms)
{
	uint64_t end = wd_now_ms() + ms;
	char name[WD_NAME_LEN];

	for (;;) {
		if (wd_pci_bound(bdf) &&
		    wd_pci_uacce(bdf, name, sizeof(name)) == 1)
			return true;
		if (wd_now_ms() >= end)
			return false;
		usleep(10 * 1000);
	}
}

/*
 * Loads the modules, finds the PCI devices and binds them, as far as
 * needed; says what it did. Never fails: it runs after the tests.
 */
static void restore(const char (*bdfs)[WD_BDF_LEN], int n)
{
	int i, ret;

	if (!module_loaded(WD_MODULE)) {
		ret = load_module(WD_MODULE);
		ksft_print_msg("teardown: loading %s: %s\n", WD_MODULE,
			       ret ? strerror(-ret) : "ok");
	}
	if (!module_loaded(EDU_MODULE)) {
		ret = load_module(EDU_MODULE);
		ksft_print_msg("teardown: loading %s: %s\n", EDU_MODULE,
			       ret ? strerror(-ret) : "ok");
	}
	for (i = 0; i < n; i++) {
		if (pci_present(bdfs[i]))
			continue;
		ret = pci_rescan();
		ksft_print_msg("teardown: rescan for %s: %s\n", bdfs[i],
			       ret ? strerror(-ret) : "ok");
		wait_probed(bdfs[i], PROBE_WAIT_MS);
		break;
	}
	for (i = 0; i < n; i++) {
		if (wd_pci_bound(bdfs[i]))
			continue;
		ret = wd_pci_bind(bdfs[i]);
		ksft_print_msg("teardown: binding %s: %s\n", bdfs[i],
			       ret ? strerror(-ret) : "ok");
	}
}

/* The edu functions that main() found, before any test ran. */
static struct wd_pci boot_pci[WD_MAX_DEVS];
static int boot_n;

static void restore_boot(void)
{
	char bdfs[WD_MAX_DEVS][WD_BDF_LEN];
	int i;

	for (i = 0; i < boot_n; i++)
		memcpy(bdfs[i], boot_pci[i].bdf, WD_BDF_LEN);
	restore((const char (*)[WD_BDF_LEN])bdfs, boot_n);
}

/*
 * The debug kernel (KASAN, lockdep) under TCG is several times slower,
 * and the guest gives each test binary 1500 s instead of 300 s there. The
 * tests' limits add up to less, so that the harness, not the guest, stops
 * a test that runs over, and the devices are put back after it.
 */
static bool debug_profile(void)
{
	const char *profile = getenv("WD_PROFILE");

	return profile && !strcmp(profile, "debug");
}

static int time_limit(int normal_s)
{
	return debug_profile() ? 5 * normal_s : normal_s;
}

/*
 * The debug kernel is there to catch what KASAN, lockdep and kmemleak see
 * in a removal, which ten cycles of each kind show as well as fifty: fifty
 * PCI removals ran past their 375 s limit there (CI has 90 minutes).
 */
static int cycles(void)
{
	return debug_profile() ? DEBUG_CYCLES : CYCLES;
}

/* ---- fdinfo ---- */

/* The wd- lines of /proc/self/fdinfo/<fd>. */
struct fdinfo {
	char device[WD_NAME_LEN];	/* "" if absent */
	char state[16];
	unsigned long long submitted;
	unsigned long long completed;
	unsigned long long errors;
	unsigned long long in_flight;
	unsigned long long bytes;	/* the next ones only if has_* */
	unsigned long long pinned;
	unsigned long long buffers;
	bool has_bytes, has_pinned, has_buffers;
	char raw[2048];			/* the whole file, for the log */
};

static int parse_ull(const char *s, unsigned long long *val)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*val = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

/*
 * Parses the fdinfo of @fd, whose keys are tab separated from their values
 * as the VFS's own ("pos:\t0"). Returns 0, -ENOENT if one of the lines the
 * test needs is missing, or -EINVAL if one is malformed.
 */
static int read_fdinfo(int fd, struct fdinfo *fi)
{
	enum { STATE = 1, SUBMITTED = 2, COMPLETED = 4, ERRORS = 8,
	       IN_FLIGHT = 16, ALL = 31 };
	char path[64], buf[sizeof(fi->raw)], *line, *val, *save;
	unsigned int found = 0;
	int ret;

	memset(fi, 0, sizeof(*fi));
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	ret = wd_read_file(path, fi->raw, sizeof(fi->raw));
	if (ret < 0)
		return ret;
	memcpy(buf, fi->raw, sizeof(buf));
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "wd-", 3))
			continue;
		val = strstr(line, ":\t");
		if (!val)
			return -EINVAL;
		*val = '\0';
		val += 2;
		ret = 0;
		if (!strcmp(line, "wd-device")) {
			if (strlen(val) >= sizeof(fi->device))
				return -EINVAL;
			memcpy(fi->device, val, strlen(val) + 1);
		} else if (!strcmp(line, "wd-state")) {
			if (strlen(val) >= sizeof(fi->state))
				return -EINVAL;
			memcpy(fi->state, val, strlen(val) + 1);
			found |= STATE;
		} else if (!strcmp(line, "wd-submitted")) {
			ret = parse_ull(val, &fi->submitted);
			found |= SUBMITTED;
		} else if (!strcmp(line, "wd-completed")) {
			ret = parse_ull(val, &fi->completed);
			found |= COMPLETED;
		} else if (!strcmp(line, "wd-errors")) {
			ret = parse_ull(val, &fi->errors);
			found |= ERRORS;
		} else if (!strcmp(line, "wd-in-flight")) {
			ret = parse_ull(val, &fi->in_flight);
			found |= IN_FLIGHT;
		} else if (!strcmp(line, "wd-bytes")) {
			ret = parse_ull(val, &fi->bytes);
			fi->has_bytes = true;
		} else if (!strcmp(line, "wd-pinned-pages")) {
			ret = parse_ull(val, &fi->pinned);
			fi->has_pinned = true;
		} else if (!strcmp(line, "wd-buffers")) {
			ret = parse_ull(val, &fi->buffers);
			fi->has_buffers = true;
		}
		if (ret)
			return ret;
	}
	return found == ALL ? 0 : -ENOENT;
}

/* ---- checks ---- */

#define EXPECT_GONE(call, c) do {					\
	errno = 0;							\
	EXPECT_EQ(-1, (call)) TH_LOG("cycle %d: %s succeeded", c, #call); \
	EXPECT_TRUE(errno == ENODEV || errno == ENXIO)			\
		TH_LOG("cycle %d: %s: %s", c, #call, strerror(errno));	\
} while (0)

/*
 * How many bytes of @dst are a copy of @src, the rest of @dst being still
 * zero, as a copy that was cut short leaves it; -1 if @dst holds anything
 * else. memcmp() rather than the pattern functions: this runs over many
 * MiB per cycle.
 */
static ssize_t copied(const char *dst, const char *src, size_t len)
{
	static const char zero[4096];
	size_t off, n;

	for (off = 0; off < len; off += n) {
		n = len - off < sizeof(zero) ? len - off : sizeof(zero);
		if (memcmp(dst + off, src + off, n))
			break;
	}
	while (off < len && dst[off] == src[off])
		off++;
	if (off == len)
		return len;
	len -= off;
	dst += off;
	for (n = 0; n < len; n += sizeof(zero))
		if (memcmp(dst + n, zero, len - n < sizeof(zero) ?
			   len - n : sizeof(zero)))
			return -1;
	return off;
}

/* ---- the test ---- */

FIXTURE(teardown) {
	struct wd_dev devs[WD_MAX_DEVS];	/* renamed as they come back */
	char bdfs[WD_MAX_DEVS][WD_BDF_LEN];
	int total[WD_MAX_DEVS];			/* available_instances */
	int n;
};

FIXTURE_SETUP(teardown)
{
	int i;

	/* A test killed by its timeout had no teardown. */
	restore_boot();
	WD_SETUP_EDU(self->devs, self->n);
	for (i = 0; i < self->n; i++) {
		ASSERT_NE(0, self->devs[i].bdf[0]);
		ASSERT_TRUE(wd_pci_bound(self->devs[i].bdf));
		memcpy(self->bdfs[i], self->devs[i].bdf, WD_BDF_LEN);
		self->total[i] = wd_avail(&self->devs[i]);
		ASSERT_LT(0, self->total[i]);
	}
}

FIXTURE_TEARDOWN_PARENT(teardown)
{
	restore((const char (*)[WD_BDF_LEN])self->bdfs, self->n);
}

/* A busy queue of a device about to be removed. */
struct victim {
	struct wd_queue q;
	int dev;
	char name[WD_NAME_LEN];	/* of its device, which goes */
	bool dma;		/* has a DMA_COPY too */
	char *dst;		/* its VICTIM_AREA in the cycle's area */
	unsigned int submitted;	/* taken by KICK */
	uint64_t done_before;	/* completed before the removal */
};

/* One test: the memory its cycles share, and what they counted. */
struct run {
	enum kind kind;
	char *src;		/* BULK_LEN of pattern: every copy's source */
	char *area;		/* the cycle's victims' destinations */
	size_t area_len;
	char *snap;		/* the area just after the removal */
	char *small;		/* SMALL_LEN, for the queue that checks */
	struct victim v[MAX_VICTIMS];
	int nv;
	/* A started queue of another device, with two buffers. */
	struct wd_queue byst;
	int byst_dev;		/* -1: none */
	char *byst_dst;		/* BYST_CMDS * BYST_LEN, registered */
	unsigned int byst_submitted;
	long pin0;		/* VmPin at the start of the cycle */
	/* statistics */
	int cycles, dma_cycles, busy_cycles;
	unsigned long long cancelled;
	unsigned long long pending;	/* not completed just before */
	uint64_t removal_max_ms[2], removal_sum_ms[2];	/* [dma] */
};

/* Finds device @i again by its BDF, after it came back. */
static void refind(struct __test_metadata *_metadata,
		   struct _test_data_teardown *self, int i)
{
	const char *bdf = self->bdfs[i];
	char name[WD_NAME_LEN];

	ASSERT_TRUE(wait_probed(bdf, PROBE_WAIT_MS)) TH_LOG("%s", bdf);
	ASSERT_EQ(1, wd_pci_uacce(bdf, name, sizeof(name)));
	ASSERT_EQ(0, strncmp(name, WD_EDU_PREFIX, strlen(WD_EDU_PREFIX)));
	ASSERT_EQ(0, wd_dev_init(&self->devs[i], name));
	ASSERT_STREQ(bdf, self->devs[i].bdf);
}

/* A new queue of device @i works, and all of its queues are free. */
static void check_works(struct __test_metadata *_metadata,
			struct _test_data_teardown *self, struct run *r,
			int i, int c)
{
	const struct wd_dev *dev = &self->devs[i];
	struct wd_desc d;
	struct wd_cqe cqe;
	struct wd_queue q;
	uint32_t res;

	EXPECT_EQ(self->total[i], wd_avail(dev))
		TH_LOG("cycle %d: %s", c, dev->name);
	ASSERT_EQ(0, wd_queue_open(&q, dev, 0))
		TH_LOG("cycle %d: %s: %s", c, dev->name, wd_ring_error());
	EXPECT_EQ(self->total[i] - 1, wd_avail(dev));
	ASSERT_EQ(0, wd_factorial(q.fd, 11, &res))
		TH_LOG("cycle %d: %s", c, strerror(errno));
	EXPECT_EQ(39916800U, res);
	memset(r->small, 0, SMALL_LEN);
	d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, r->src, r->small, SMALL_LEN, 0);
	ASSERT_EQ(0, wd_run1(&q, &d, &cqe))
		TH_LOG("cycle %d: %s", c, wd_ring_error());
	EXPECT_EQ(0, cqe.status) TH_LOG("cycle %d", c);
	EXPECT_EQ(SMALL_LEN, cqe.result);
	EXPECT_EQ(0, memcmp(r->small, r->src, SMALL_LEN)) TH_LOG("cycle %d", c);
	wd_queue_close(&q);
	EXPECT_EQ(self->total[i], wd_avail(dev));
}

static void open_bystander(struct __test_metadata *_metadata,
			   struct _test_data_teardown *self, struct run *r,
			   int i)
{
	struct wd_queue *q = &r->byst;

	ASSERT_EQ(0, wd_queue_open(q, &self->devs[i], 0))
		TH_LOG("%s: %s", self->devs[i].name, wd_ring_error());
	ASSERT_EQ(0, wd_register(q->fd, r->src, BULK_LEN, 0, NULL))
		TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, wd_register(q->fd, r->byst_dst, BYST_CMDS * BYST_LEN,
				 WD_REGISTER_WRITE, NULL))
		TH_LOG("%s", strerror(errno));
	r->byst_dev = i;
	r->byst_submitted = 0;
}

static void byst_submit(struct __test_metadata *_metadata, struct run *r)
{
	struct wd_desc d[BYST_CMDS];
	unsigned int k;

	memset(r->byst_dst, 0, BYST_CMDS * BYST_LEN);
	for (k = 0; k < BYST_CMDS; k++) {
		d[k] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, k, r->src,
				 r->byst_dst + k * BYST_LEN, BYST_LEN, 0);
		/* Its pins are the buffers', which VmPin counts throughout. */
		d[k].flags = WD_DESC_REGISTERED;
	}
	ASSERT_EQ((unsigned int)BYST_CMDS, wd_sq_push(&r->byst, d, BYST_CMDS));
	ASSERT_EQ(BYST_CMDS, wd_kick(&r->byst)) TH_LOG("%s", wd_ring_error());
	r->byst_submitted += BYST_CMDS;
}

/* The bystander's commands all succeeded, and it still works. */
static void byst_check(struct __test_metadata *_metadata, struct run *r,
		       int c)
{
	struct wd_cqe cqe[BYST_CMDS];
	struct fdinfo fi;
	unsigned int k;
	uint32_t res;

	ASSERT_EQ(0, wd_reap(&r->byst, cqe, BYST_CMDS, WD_WAIT_MS))
		TH_LOG("cycle %d: bystander: %s", c, wd_ring_error());
	for (k = 0; k < BYST_CMDS; k++) {
		EXPECT_EQ(0, cqe[k].status)
			TH_LOG("cycle %d: bystander command %llu: %s", c,
			       (unsigned long long)cqe[k].user_data,
			       strerror(-cqe[k].status));
		EXPECT_EQ(BYST_LEN, cqe[k].result);
	}
	EXPECT_EQ(0, memcmp(r->byst_dst, r->src, BYST_LEN));
	EXPECT_EQ(0, memcmp(r->byst_dst + BYST_LEN, r->src, BYST_LEN));
	ASSERT_EQ(0, wd_factorial(r->byst.fd, 11, &res))
		TH_LOG("cycle %d: bystander: %s", c, strerror(errno));
	EXPECT_EQ(39916800U, res);

	ASSERT_EQ(0, read_fdinfo(r->byst.fd, &fi))
		TH_LOG("fdinfo without the wd- lines:\n%s", fi.raw);
	EXPECT_STREQ("started", fi.state) TH_LOG("cycle %d", c);
	EXPECT_EQ(0ULL, fi.in_flight);
	EXPECT_EQ(0ULL, fi.errors) TH_LOG("cycle %d", c);
	EXPECT_EQ((unsigned long long)r->byst_submitted, fi.submitted);
	EXPECT_EQ(fi.submitted, fi.completed);
}

/* Opens, fills and kicks a busy queue of device @i. */
static void victim_start(struct __test_metadata *_metadata,
			 struct _test_data_teardown *self, struct run *r,
			 struct victim *vq, int i, bool dma)
{
	struct wd_desc d[BULK_CMDS + 1];
	unsigned int k, n = 0;

	vq->dev = i;
	memcpy(vq->name, self->devs[i].name, sizeof(vq->name));
	vq->dma = dma;
	vq->submitted = 0;
	ASSERT_EQ(0, wd_queue_open(&vq->q, &self->devs[i], 0))
		TH_LOG("%s: %s", self->devs[i].name, wd_ring_error());
	/*
	 * The source and the first copy's destination are registered; the
	 * other destinations are pinned for their command alone.
	 */
	ASSERT_EQ(0, wd_register(vq->q.fd, r->src, BULK_LEN, 0, NULL))
		TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, wd_register(vq->q.fd, vq->dst, BULK_LEN,
				 WD_REGISTER_WRITE, NULL))
		TH_LOG("%s", strerror(errno));
	for (k = 0; k < BULK_CMDS; k++)
		d[n++] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, k, r->src,
				   vq->dst + k * BULK_LEN, BULK_LEN, 0);
	if (dma)
		d[n++] = wd_mkdesc(WD_EDU_OP_DMA_COPY, k, r->src,
				   vq->dst + BULK_CMDS * BULK_LEN, DMA_LEN, 0);
	ASSERT_EQ(n, wd_sq_push(&vq->q, d, n));
	vq->submitted = n;
}

static void victim_kick(struct __test_metadata *_metadata, struct victim *vq)
{
	ASSERT_EQ((int)vq->submitted, wd_kick(&vq->q))
		TH_LOG("%s", wd_ring_error());
}

/*
 * After the removal: the queue is dead and says so everywhere, and each
 * command it took either finished or failed. Returns how many failed.
 */
static unsigned long long check_dead(struct __test_metadata *_metadata,
				     struct run *r, struct victim *vq, int c)
{
	struct wd_edu_factorial arg = { .n = 3 };
	struct wd_register reg = {
		.addr = (uintptr_t)r->small,
		.len = SMALL_LEN,
	};
	struct pollfd pfd = { .fd = vq->q.fd, .events = POLLIN };
	unsigned long long incomplete = 0, ok, bytes;
	bool dma_done = false;
	uint32_t handle = 0;
	struct fdinfo fi;
	unsigned int k;
	ssize_t got;
	int fd = vq->q.fd;

	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLERR | POLLHUP, pfd.revents & (POLLERR | POLLHUP))
		TH_LOG("cycle %d: revents %#x", c, pfd.revents);

	EXPECT_GONE(ioctl(fd, WD_CMD_START_Q), c);
	EXPECT_GONE(ioctl(fd, WD_IOCTL_KICK), c);
	EXPECT_GONE(ioctl(fd, WD_IOCTL_REGISTER, &reg), c);
	EXPECT_GONE(ioctl(fd, WD_IOCTL_UNREGISTER, &handle), c);
	EXPECT_GONE(ioctl(fd, WD_EDU_CMD_FACTORIAL, &arg), c);

	EXPECT_EQ(SIGBUS, wd_touch(vq->q.st, false)) TH_LOG("cycle %d", c);
	EXPECT_EQ(SIGBUS, wd_touch(vq->q.dus, false)) TH_LOG("cycle %d", c);
	EXPECT_EQ(SIGBUS, wd_touch((char *)vq->q.dus + vq->q.dus_len - 4, true))
		TH_LOG("cycle %d", c);

	/* What the destinations say about each command. */
	for (k = 0; k < BULK_CMDS; k++) {
		got = copied(vq->dst + k * BULK_LEN, r->src, BULK_LEN);
		EXPECT_LE(0, got)
			TH_LOG("cycle %d: copy %u wrote something else", c, k);
		if (got != (ssize_t)BULK_LEN)
			incomplete++;
	}
	if (vq->dma) {
		got = copied(vq->dst + BULK_CMDS * BULK_LEN, r->src, DMA_LEN);
		EXPECT_LE(0, got)
			TH_LOG("cycle %d: DMA_COPY wrote something else", c);
		dma_done = got == (ssize_t)DMA_LEN;
		if (!dma_done)
			incomplete++;
	}

	/* The rings are gone: the counters tell that none was lost. */
	ASSERT_EQ(0, read_fdinfo(fd, &fi))
		TH_LOG("fdinfo without the wd- lines:\n%s", fi.raw);
	EXPECT_STREQ("dead", fi.state) TH_LOG("cycle %d", c);
	/* Still right when the driver that named it is gone. */
	if (fi.device[0])
		EXPECT_STREQ(vq->name, fi.device) TH_LOG("cycle %d", c);
	EXPECT_EQ(0ULL, fi.in_flight) TH_LOG("cycle %d", c);
	EXPECT_EQ((unsigned long long)vq->submitted, fi.submitted)
		TH_LOG("cycle %d", c);
	EXPECT_EQ(fi.submitted, fi.completed) TH_LOG("cycle %d", c);
	EXPECT_LE(fi.errors, fi.completed);
	/* Those that completed before the removal all succeeded. */
	EXPECT_LE(fi.errors, vq->submitted - vq->done_before)
		TH_LOG("cycle %d: %llu errors, %llu completed before",
		       c, fi.errors, (unsigned long long)vq->done_before);
	/* A command that did not write all of dst cannot have succeeded. */
	EXPECT_LE(incomplete, fi.errors)
		TH_LOG("cycle %d: %llu commands unfinished, %llu errors",
		       c, incomplete, fi.errors);
	if (fi.has_bytes && fi.errors <= fi.completed) {
		ok = fi.completed - fi.errors;
		bytes = ok * BULK_LEN;
		if (dma_done && ok && fi.bytes != bytes)
			bytes = (ok - 1) * BULK_LEN + DMA_LEN;
		EXPECT_EQ(bytes, fi.bytes)
			TH_LOG("cycle %d: %llu succeeded", c, ok);
	}
	if (fi.has_pinned)
		EXPECT_EQ(0ULL, fi.pinned) TH_LOG("cycle %d", c);
	if (fi.has_buffers)
		EXPECT_EQ(0ULL, fi.buffers) TH_LOG("cycle %d", c);
	return fi.errors;
}

/* After an unbind or a PCI removal: the device is gone from sysfs and /dev. */
static void check_gone(struct __test_metadata *_metadata,
		       const struct wd_dev *dev, int c)
{
	char name[WD_NAME_LEN];

	EXPECT_FALSE(wd_pci_bound(dev->bdf)) TH_LOG("cycle %d", c);
	EXPECT_EQ(-1, access(dev->sysfs, F_OK)) TH_LOG("%s", dev->sysfs);
	EXPECT_EQ(-1, access(dev->node, F_OK)) TH_LOG("%s", dev->node);
	EXPECT_EQ(-1, wd_open(dev));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(0, wd_pci_uacce(dev->bdf, name, sizeof(name)));
}

static void expect_busy(struct __test_metadata *_metadata, const char *why,
			int c)
{
	int ret = unload_module(WD_MODULE);

	EXPECT_TRUE(ret == -EWOULDBLOCK || ret == -EBUSY)
		TH_LOG("cycle %d: rmmod %s %s: %s", c, WD_MODULE, why,
		       ret ? strerror(-ret) : "succeeded");
	if (!ret)
		ASSERT_EQ(0, load_module(WD_MODULE));
}

/* Takes the device of the cycle (for rmmod: every device) away. */
static void remove_dev(struct __test_metadata *_metadata,
		       struct _test_data_teardown *self, enum kind kind,
		       int i, int c)
{
	int ret = -EINVAL;

	switch (kind) {
	case KIND_UNBIND:
		ret = wd_pci_unbind(self->bdfs[i]);
		break;
	case KIND_RMMOD:
		ret = unload_module(EDU_MODULE);
		break;
	case KIND_PCI_REMOVE:
		ret = pci_remove(self->bdfs[i]);
		break;
	}
	ASSERT_EQ(0, ret) TH_LOG("cycle %d: %s %s: %s", c, kind_names[kind],
				 self->bdfs[i], strerror(-ret));
}

static void check_removed(struct __test_metadata *_metadata,
			  struct _test_data_teardown *self, enum kind kind,
			  int i, int c)
{
	struct wd_dev devs[WD_MAX_DEVS];

	switch (kind) {
	case KIND_UNBIND:
		check_gone(_metadata, &self->devs[i], c);
		break;
	case KIND_RMMOD:
		EXPECT_FALSE(module_loaded(EDU_MODULE));
		EXPECT_EQ(0, wd_list_devs(devs, WD_MAX_DEVS, WD_EDU_PREFIX))
			TH_LOG("cycle %d: edu devices after rmmod", c);
		break;
	case KIND_PCI_REMOVE:
		EXPECT_FALSE(pci_present(self->bdfs[i])) TH_LOG("cycle %d", c);
		check_gone(_metadata, &self->devs[i], c);
		break;
	}
}

/* Brings back what remove_dev() took. */
static void bring_back(struct __test_metadata *_metadata,
		       struct _test_data_teardown *self, enum kind kind,
		       int i, int c)
{
	int ret = 0, j;

	switch (kind) {
	case KIND_UNBIND:
		ret = wd_pci_bind(self->bdfs[i]);
		break;
	case KIND_RMMOD:
		/* If warpdrive failed to unload, that was reported already. */
		if (!module_loaded(WD_MODULE))
			ret = load_module(WD_MODULE);
		if (!ret)
			ret = load_module(EDU_MODULE);
		break;
	case KIND_PCI_REMOVE:
		ret = pci_rescan();
		break;
	}
	ASSERT_EQ(0, ret) TH_LOG("cycle %d: undoing %s: %s", c,
				 kind_names[kind], strerror(-ret));
	for (j = 0; j < self->n; j++)
		if (kind == KIND_RMMOD || j == i)
			refind(_metadata, self, j);
}

/* Closes the victims. For rmmod, warpdrive goes with the last of them. */
static void close_victims(struct __test_metadata *_metadata,
			  struct run *r, int c)
{
	struct victim *last = &r->v[0];
	int k;

	if (r->kind != KIND_RMMOD) {
		for (k = 0; k < r->nv; k++)
			wd_queue_close(&r->v[k].q);
		return;
	}
	expect_busy(_metadata, "with queues open", c);
	/*
	 * A mapping holds its file, and the file the module: closing the
	 * fds is not enough while the status page is mapped.
	 */
	for (k = 1; k < r->nv; k++)
		wd_queue_close(&r->v[k].q);
	munmap(last->q.dus, last->q.dus_len);
	last->q.dus = NULL;
	EXPECT_EQ(0, close(last->q.fd));
	last->q.fd = -1;
	expect_busy(_metadata, "with a queue mapped", c);
	wd_queue_close(&last->q);
	EXPECT_EQ(0, unload_module(WD_MODULE))
		TH_LOG("cycle %d: rmmod %s with nothing open: %s", c,
		       WD_MODULE, strerror(errno));
	EXPECT_FALSE(module_loaded(WD_MODULE));
}

static void one_cycle(struct __test_metadata *_metadata,
		      struct _test_data_teardown *self, struct run *r, int c)
{
	enum kind kind = r->kind;
	bool dma = c % DMA_EVERY == 0;
	unsigned long long errors = 0;
	uint64_t t0, t1, quiet;
	uint32_t res;
	int i, j, k;

	/*
	 * The device removed. The first half of the cycles takes one, the
	 * second half the other, so that the bystander on the other device
	 * lives through many removals. rmmod takes both anyway.
	 */
	i = kind == KIND_RMMOD ? c % self->n : c * self->n / cycles();
	if (r->byst_dev == i || (kind == KIND_RMMOD && r->byst_dev >= 0)) {
		wd_queue_close(&r->byst);
		r->byst_dev = -1;
	}
	if (kind != KIND_RMMOD && self->n > 1 && r->byst_dev < 0)
		open_bystander(_metadata, self, r, (i + 1) % self->n);

	r->pin0 = wd_vmpin_kb();
	ASSERT_LE(0, r->pin0);

	/* Two busy queues of the device, and for rmmod one of each other. */
	r->nv = VICTIM_QUEUES;
	if (kind == KIND_RMMOD)
		r->nv += self->n - 1;
	r->area_len = r->nv * VICTIM_AREA;
	r->area = wd_alloc(r->area_len);
	ASSERT_NE(NULL, r->area);
	for (k = 0; k < r->nv; k++) {
		j = k < VICTIM_QUEUES ? i : (i + 1 + k - VICTIM_QUEUES) % self->n;
		r->v[k].dst = r->area + k * VICTIM_AREA;
		victim_start(_metadata, self, r, &r->v[k], j, dma && !k);
	}
	if (kind == KIND_RMMOD)
		expect_busy(_metadata, "under " EDU_MODULE, c);

	/* Everything goes at once, so that much is still to do. */
	if (r->byst_dev >= 0)
		byst_submit(_metadata, r);
	for (k = 0; k < r->nv; k++)
		victim_kick(_metadata, &r->v[k]);
	/* The device's transfers cannot be cut short: let one start. */
	if (dma)
		usleep(DMA_DELAY_MS * 1000);
	for (k = 0; k < r->nv; k++) {
		r->v[k].done_before = wd_read64(&r->v[k].q.st->completed);
		r->pending += r->v[k].submitted - r->v[k].done_before;
	}
	EXPECT_EQ(0, wd_touch(r->v[0].q.st, false));
	EXPECT_EQ(0, wd_touch(r->v[0].q.dus, false));

	t0 = wd_now_ms();
	remove_dev(_metadata, self, kind, i, c);
	t1 = wd_now_ms();
	/* From here on, nothing may write to the destinations. */
	memcpy(r->snap, r->area, r->area_len);
	r->removal_sum_ms[dma] += t1 - t0;
	if (t1 - t0 > r->removal_max_ms[dma])
		r->removal_max_ms[dma] = t1 - t0;

	check_removed(_metadata, self, kind, i, c);
	for (k = 0; k < r->nv; k++)
		errors += check_dead(_metadata, r, &r->v[k], c);
	if (r->byst_dev >= 0)
		byst_check(_metadata, r, c);
	/* The removal dropped every pin of the victims. */
	EXPECT_EQ(r->pin0, wd_vmpin_kb()) TH_LOG("cycle %d: after removal", c);

	quiet = dma ? DMA_QUIET_MS : QUIET_MS;
	if (wd_now_ms() < t1 + quiet)
		usleep((t1 + quiet - wd_now_ms()) * 1000);
	EXPECT_EQ(0, memcmp(r->snap, r->area, r->area_len))
		TH_LOG("cycle %d: a destination changed after the removal", c);

	close_victims(_metadata, r, c);
	munmap(r->area, r->area_len);
	r->area = NULL;
	EXPECT_EQ(r->pin0, wd_vmpin_kb()) TH_LOG("cycle %d: after close", c);

	bring_back(_metadata, self, kind, i, c);
	for (j = 0; j < self->n; j++)
		if (kind == KIND_RMMOD || j == i)
			check_works(_metadata, self, r, j, c);
	/* The bystander saw its neighbour go and come back. */
	if (r->byst_dev >= 0) {
		j = r->byst_dev;
		ASSERT_EQ(0, wd_factorial(r->byst.fd, 12, &res))
			TH_LOG("cycle %d: bystander: %s", c, strerror(errno));
		EXPECT_EQ(479001600U, res);
		EXPECT_EQ(self->total[j] - 1, wd_avail(&self->devs[j]));
	}

	r->cycles++;
	r->dma_cycles += dma;
	r->busy_cycles += errors > 0;
	r->cancelled += errors;
}

static void run_kind(struct __test_metadata *_metadata,
		     struct _test_data_teardown *self, enum kind kind)
{
	uint64_t start = wd_now_ms();
	struct run *r;
	int c;

	r = calloc(1, sizeof(*r));
	ASSERT_NE(NULL, r);
	r->kind = kind;
	r->byst_dev = -1;
	wd_queue_init(&r->byst);
	r->src = wd_alloc(BULK_LEN);
	r->snap = wd_alloc((VICTIM_QUEUES + self->n - 1) * VICTIM_AREA);
	r->small = wd_alloc(SMALL_LEN);
	r->byst_dst = wd_alloc(BYST_CMDS * BYST_LEN);
	ASSERT_NE(NULL, r->src);
	ASSERT_NE(NULL, r->snap);
	ASSERT_NE(NULL, r->small);
	ASSERT_NE(NULL, r->byst_dst);
	wd_fill(r->src, BULK_LEN, kind + 1, 0);

	for (c = 0; c < cycles(); c++)
		one_cycle(_metadata, self, r, c);
	wd_queue_close(&r->byst);

	TH_LOG("%s: %d cycles (%d with a DMA_COPY), %d with commands cut short; %llu commands unfinished just before the removals, %llu failed",
	       kind_names[kind], r->cycles, r->dma_cycles, r->busy_cycles,
	       r->pending, r->cancelled);
	TH_LOG("%s: removal %llu ms on average, %llu at most; with a DMA_COPY %llu ms on average, %llu at most; %.1f s in all",
	       kind_names[kind],
	       (unsigned long long)(r->removal_sum_ms[0] /
				    (r->cycles - r->dma_cycles ?: 1)),
	       (unsigned long long)r->removal_max_ms[0],
	       (unsigned long long)(r->removal_sum_ms[1] /
				    (r->dma_cycles ?: 1)),
	       (unsigned long long)r->removal_max_ms[1],
	       (wd_now_ms() - start) / 1000.0);
	/* A DMA_COPY of DMA_LEN outlasts DMA_DELAY_MS plus a removal. */
	EXPECT_LE(r->dma_cycles, r->busy_cycles);
	free(r);
}

TEST_F_TIMEOUT(teardown, unbind, time_limit(75))
{
	run_kind(_metadata, self, KIND_UNBIND);
}

TEST_F_TIMEOUT(teardown, pci_remove, time_limit(75))
{
	run_kind(_metadata, self, KIND_PCI_REMOVE);
}

TEST_F_TIMEOUT(teardown, rmmod, time_limit(120))
{
	char path[WD_PATH_LEN];

	if (!module_loaded(WD_MODULE) || !module_loaded(EDU_MODULE))
		SKIP(return, "warpdrive is not a loaded module");
	ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/%s.ko", MODULE_DIR,
			     EDU_MODULE));
	if (access(path, R_OK))
		SKIP(return, "no %s", path);
	run_kind(_metadata, self, KIND_RMMOD);
}

int main(int argc, char **argv)
{
	boot_n = wd_list_pci(WD_EDU_VENDOR, WD_EDU_DEVICE, boot_pci,
			     WD_MAX_DEVS);
	if (boot_n > 0)
		atexit(restore_boot);
	else
		boot_n = 0;
	return test_harness_run(argc, argv);
}
