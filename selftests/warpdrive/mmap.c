// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive queue mappings: the read-only status page (MMIO region) and the
 * read-write DUS region, and what may not be done with them.
 */
#include "kselftest_harness.h"

#include <sys/ioctl.h>

#include <sys/socket.h>

#include "wd_ring.h"

FIXTURE(map) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	int fd;
	size_t page, mmio, dus;
};

FIXTURE_SETUP(map)
{
	self->fd = -1;
	WD_SETUP_EDU(self->devs, self->n);
	self->page = wd_page_size();
	self->mmio = wd_region_size(&self->devs[0], WD_REGION_MMIO);
	self->dus = wd_region_size(&self->devs[0], WD_REGION_DUS);
	ASSERT_LE(sizeof(struct wd_queue_status), self->mmio);
	ASSERT_LT(0UL, self->dus);
	self->fd = wd_open(&self->devs[0]);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", self->devs[0].node,
				      strerror(errno));
}

FIXTURE_TEARDOWN(map)
{
	if (self->fd >= 0)
		close(self->fd);
}

static uint32_t pattern(size_t i, uint32_t seed)
{
	return (uint32_t)(i * 2654435761U) ^ seed;
}

static void fill(void *p, size_t len, uint32_t seed)
{
	uint32_t *w = p;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		w[i] = pattern(i, seed);
}

/* Returns the index of the first wrong word, or -1. */
static long check(const void *p, size_t len, uint32_t seed)
{
	const uint32_t *w = p;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		if (wd_read32(&w[i]) != pattern(i, seed))
			return i;
	return -1;
}

static uint32_t status_magic(const void *mmio)
{
	const struct wd_queue_status *st = mmio;

	return wd_read32(&st->magic);
}

static void *map_ok(struct __test_metadata *_metadata, int fd,
		    unsigned int region, size_t len, int prot)
{
	void *p = wd_map(fd, region, len, prot);

	EXPECT_NE(MAP_FAILED, p) TH_LOG("mmap region %u, %zu bytes: %s",
					region, len, strerror(errno));
	return p;
}

/* Maps both regions of the fixture's queue: MMIO read-only, DUS read-write. */
static void map_both(struct __test_metadata *_metadata,
		     struct _test_data_map *self, void **mmio, void **dus)
{
	*mmio = map_ok(_metadata, self->fd, WD_REGION_MMIO, self->mmio,
		       PROT_READ);
	ASSERT_NE(MAP_FAILED, *mmio);
	*dus = map_ok(_metadata, self->fd, WD_REGION_DUS, self->dus,
		      PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, *dus);
}

static void map_fails(struct __test_metadata *_metadata, int fd,
		      unsigned int region, size_t len, int prot, int err)
{
	void *p = wd_map(fd, region, len, prot);

	EXPECT_EQ(MAP_FAILED, p)
		TH_LOG("mmap region %u, %zu bytes succeeded", region, len);
	if (p != MAP_FAILED) {
		munmap(p, len);
		return;
	}
	EXPECT_EQ(err, errno) TH_LOG("mmap region %u, %zu bytes: %s", region,
				     len, strerror(errno));
}

TEST_F(map, regions)
{
	struct wd_queue_status *st;
	void *dus;

	st = map_ok(_metadata, self->fd, WD_REGION_MMIO, self->mmio,
		    PROT_READ);
	ASSERT_NE(MAP_FAILED, st);
	dus = map_ok(_metadata, self->fd, WD_REGION_DUS, self->dus,
		     PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, dus);

	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, wd_read32(&st->magic));
	EXPECT_GT((uint32_t)WD_MAX_QUEUES, wd_read32(&st->queue_index));
	EXPECT_EQ((__u32)WD_QUEUE_INIT, wd_read32(&st->state));
	EXPECT_EQ(0ULL, wd_read64(&st->completed));
	EXPECT_EQ((__u32)WD_RING_MAGIC, wd_read32(dus));
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ((__u32)WD_QUEUE_STARTED, wd_read32(&st->state));

	/* Every byte of DUS is usable memory. */
	fill(dus, self->dus, 0x5a5a0001);
	EXPECT_EQ(-1, check(dus, self->dus, 0x5a5a0001));
	fill(dus, self->dus, 0xa5a50002);
	EXPECT_EQ(-1, check(dus, self->dus, 0xa5a50002));
	memset(dus, 0, self->dus);
	EXPECT_EQ(0U, wd_read32((char *)dus + self->dus - 4));

	EXPECT_EQ(0, munmap(st, self->mmio));
	EXPECT_EQ(0, munmap(dus, self->dus));
}

/*
 * UADK's libwd maps every region exactly so (wd_ctx_mmap_qfr()):
 * mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, region * page size),
 * and its drivers give the context up if the MMIO mapping fails. Both
 * regions take that call. What user space writes to the status page is
 * never read back: the kernel's next update rewrites all of it.
 */
TEST_F(map, libwd_maps_both_regions_writable)
{
	struct wd_queue_status *st;
	void *dus;

	st = mmap(NULL, self->mmio, PROT_READ | PROT_WRITE, MAP_SHARED,
		  self->fd, WD_REGION_MMIO * self->page);
	ASSERT_NE(MAP_FAILED, st) TH_LOG("MMIO: %s", strerror(errno));
	dus = mmap(NULL, self->dus, PROT_READ | PROT_WRITE, MAP_SHARED,
		   self->fd, WD_REGION_DUS * self->page);
	ASSERT_NE(MAP_FAILED, dus) TH_LOG("DUS: %s", strerror(errno));
	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, status_magic(st));

	/* Scribble over the whole status, then make the kernel update it. */
	memset(st, 0xa5, self->mmio);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, wd_read32(&st->magic));
	EXPECT_EQ((__u32)WD_QUEUE_STARTED, wd_read32(&st->state));
	EXPECT_GT((uint32_t)WD_MAX_QUEUES, wd_read32(&st->queue_index));
	EXPECT_EQ(0ULL, wd_read64(&st->submitted));
	EXPECT_EQ(0ULL, wd_read64(&st->completed));
	EXPECT_EQ(0ULL, wd_read64(&st->pinned_pages));
	EXPECT_EQ(0ULL, wd_read64(&st->mapped_pages));
	/* Nothing after the status is the kernel's: it stays as written. */
	EXPECT_EQ(0xa5, ((unsigned char *)st)[sizeof(*st)]);

	/* A second mapping of either region by the owner is refused. */
	map_fails(_metadata, self->fd, WD_REGION_MMIO, self->mmio,
		  PROT_READ | PROT_WRITE, EEXIST);
	map_fails(_metadata, self->fd, WD_REGION_DUS, self->dus,
		  PROT_READ | PROT_WRITE, EEXIST);
	EXPECT_EQ(0, munmap(st, self->mmio));
	EXPECT_EQ(0, munmap(dus, self->dus));
	/* Once unmapped, the regions map again, read-only too. */
	st = map_ok(_metadata, self->fd, WD_REGION_MMIO, self->mmio, PROT_READ);
	ASSERT_NE(MAP_FAILED, st);
	EXPECT_EQ(0, mprotect(st, self->mmio, PROT_READ | PROT_WRITE))
		TH_LOG("mprotect: %s", strerror(errno));
	EXPECT_EQ(0, munmap(st, self->mmio));
}

TEST_F(map, bad_pgoff)
{
	static const unsigned int regions[] = { 2, 3, 255, 1U << 28 };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(regions); i++)
		map_fails(_metadata, self->fd, regions[i], self->page,
			  PROT_READ, EINVAL);
	/* Nothing got stuck: the region still maps. */
	EXPECT_EQ(0, munmap(map_ok(_metadata, self->fd, WD_REGION_MMIO,
				   self->mmio, PROT_READ), self->mmio));
}

TEST_F(map, bad_length)
{
	const struct {
		unsigned int region;
		size_t size;
		int prot;
	} r[] = {
		{ WD_REGION_MMIO, self->mmio, PROT_READ },
		{ WD_REGION_DUS, self->dus, PROT_READ | PROT_WRITE },
	};
	size_t i, half;
	void *p;

	for (i = 0; i < ARRAY_SIZE(r); i++) {
		map_fails(_metadata, self->fd, r[i].region, 2 * r[i].size,
			  r[i].prot, EINVAL);
		map_fails(_metadata, self->fd, r[i].region,
			  r[i].size + self->page, r[i].prot, EINVAL);
		if (r[i].size > self->page)
			map_fails(_metadata, self->fd, r[i].region,
				  r[i].size - self->page, r[i].prot, EINVAL);
		/* Lengths round up to pages: half a page is a full one. */
		half = r[i].size / 2 / self->page * self->page;
		if (half)
			map_fails(_metadata, self->fd, r[i].region, half,
				  r[i].prot, EINVAL);
		p = map_ok(_metadata, self->fd, r[i].region, r[i].size,
			   r[i].prot);
		ASSERT_NE(MAP_FAILED, p);
		EXPECT_EQ(0, munmap(p, r[i].size));
	}
}

/*
 * A private mapping would give user space copies of the ring that the
 * kernel never sees: refused, and the region stays free for a shared one.
 */
TEST_F(map, private_refused)
{
	const struct {
		unsigned int region;
		size_t size;
		int prot;
	} r[] = {
		{ WD_REGION_MMIO, self->mmio, PROT_READ },
		{ WD_REGION_DUS, self->dus, PROT_READ | PROT_WRITE },
		{ WD_REGION_DUS, self->dus, PROT_READ },
	};
	size_t i;
	void *p;

	for (i = 0; i < ARRAY_SIZE(r); i++) {
		errno = 0;
		p = mmap(NULL, r[i].size, r[i].prot, MAP_PRIVATE, self->fd,
			 r[i].region * self->page);
		EXPECT_EQ(MAP_FAILED, p) TH_LOG("region %u mapped private",
						r[i].region);
		EXPECT_EQ(EINVAL, errno) TH_LOG("%s", strerror(errno));
		if (p != MAP_FAILED)
			munmap(p, r[i].size);
		p = map_ok(_metadata, self->fd, r[i].region, r[i].size,
			   r[i].prot);
		ASSERT_NE(MAP_FAILED, p);
		EXPECT_EQ(0, munmap(p, r[i].size));
	}
}

TEST_F(map, double_map)
{
	void *mmio, *dus, *p;
	int fd2, other;

	map_both(_metadata, self, &mmio, &dus);

	map_fails(_metadata, self->fd, WD_REGION_MMIO, self->mmio, PROT_READ,
		  EEXIST);
	map_fails(_metadata, self->fd, WD_REGION_DUS, self->dus,
		  PROT_READ | PROT_WRITE, EEXIST);

	/* Same queue through another descriptor: still taken. */
	fd2 = dup(self->fd);
	ASSERT_LE(0, fd2);
	map_fails(_metadata, fd2, WD_REGION_DUS, self->dus,
		  PROT_READ | PROT_WRITE, EEXIST);
	close(fd2);

	/* Another queue has regions of its own. */
	other = wd_open(&self->devs[0]);
	if (other >= 0) {
		p = map_ok(_metadata, other, WD_REGION_DUS, self->dus,
			   PROT_READ | PROT_WRITE);
		if (p != MAP_FAILED)
			munmap(p, self->dus);
		close(other);
	} else {
		EXPECT_EQ(EBUSY, errno);
	}

	/* After munmap, a region maps again. */
	EXPECT_EQ(0, munmap(dus, self->dus));
	dus = map_ok(_metadata, self->fd, WD_REGION_DUS, self->dus,
		     PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, dus);
	fill(dus, self->dus, 7);
	EXPECT_EQ(-1, check(dus, self->dus, 7));
	EXPECT_EQ(0, munmap(mmio, self->mmio));
	mmio = map_ok(_metadata, self->fd, WD_REGION_MMIO, self->mmio,
		      PROT_READ);
	ASSERT_NE(MAP_FAILED, mmio);
	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, status_magic(mmio));
	munmap(mmio, self->mmio);
	munmap(dus, self->dus);
}

static bool in_proc_maps(void *addr)
{
	char line[512];
	bool found = false;
	void *start;
	FILE *f;

	f = fopen("/proc/self/maps", "r");
	if (!f)
		return true;	/* make the caller fail */
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%p-", &start) == 1 && start == addr)
			found = true;
	fclose(f);
	return found;
}

/*
 * The mappings are VM_DONTCOPY: a child has nothing at their addresses.
 * Exit status bits tell the parent what went wrong.
 */
static int child_checks(void *mmio, size_t mmio_len, void *dus, size_t dus_len)
{
	int bad = 0;

	if (msync(mmio, mmio_len, MS_ASYNC) != -1 || errno != ENOMEM)
		bad |= 1;
	if (msync(dus, dus_len, MS_ASYNC) != -1 || errno != ENOMEM)
		bad |= 2;
	if (in_proc_maps(mmio))
		bad |= 4;
	if (in_proc_maps(dus))
		bad |= 8;
	return bad;
}

TEST_F(map, fork)
{
	void *mmio, *dus;
	int status;
	pid_t pid;

	map_both(_metadata, self, &mmio, &dus);
	fill(dus, self->dus, 0xf0f0);
	ASSERT_TRUE(in_proc_maps(mmio));
	ASSERT_TRUE(in_proc_maps(dus));

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(child_checks(mmio, self->mmio, dus, self->dus));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child: msync mmio %s, msync dus %s, maps mmio %s, maps dus %s",
		       WEXITSTATUS(status) & 1 ? "BAD" : "ok",
		       WEXITSTATUS(status) & 2 ? "BAD" : "ok",
		       WEXITSTATUS(status) & 4 ? "BAD" : "ok",
		       WEXITSTATUS(status) & 8 ? "BAD" : "ok");

	/* Touching the address in a child faults like any unmapped one. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(wd_read32(dus) ? 101 : 100);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)
		TH_LOG("child status %#x", status);

	/* The parent keeps both. */
	EXPECT_TRUE(wd_is_mapped(mmio, self->mmio));
	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, status_magic(mmio));
	EXPECT_EQ(-1, check(dus, self->dus, 0xf0f0));
	munmap(mmio, self->mmio);
	munmap(dus, self->dus);
}

static void check_mremap(struct __test_metadata *_metadata, void *p,
			 size_t len, size_t page)
{
	void *q, *target;

	q = mremap(p, len, len + page, 0);
	EXPECT_EQ(MAP_FAILED, q) TH_LOG("grew in place");
	q = mremap(p, len, len + page, MREMAP_MAYMOVE);
	EXPECT_EQ(MAP_FAILED, q) TH_LOG("grew by moving");

	target = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, target);
	q = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, target);
	EXPECT_EQ(MAP_FAILED, q) TH_LOG("moved");
	munmap(target, len);

	/* Still where it was. */
	EXPECT_TRUE(wd_is_mapped(p, len));
	EXPECT_TRUE(in_proc_maps(p));
}

TEST_F(map, mremap)
{
	void *mmio, *dus;

	map_both(_metadata, self, &mmio, &dus);
	fill(dus, self->dus, 0x1234);

	check_mremap(_metadata, mmio, self->mmio, self->page);
	check_mremap(_metadata, dus, self->dus, self->page);
	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, status_magic(mmio));
	EXPECT_EQ(-1, check(dus, self->dus, 0x1234));

	/* The regions are still taken by these mappings. */
	map_fails(_metadata, self->fd, WD_REGION_MMIO, self->mmio, PROT_READ,
		  EEXIST);
	munmap(mmio, self->mmio);
	munmap(dus, self->dus);
}

/* A region is unmapped whole or not at all: warpdrive refuses to split it. */
TEST_F(map, partial_munmap_refused)
{
	void *mmio, *dus;

	if (self->dus < 2 * self->page)
		SKIP(return, "DUS region is a single page");
	map_both(_metadata, self, &mmio, &dus);
	EXPECT_EQ(-1, munmap(dus, self->page));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, munmap((char *)dus + self->page, self->page));
	EXPECT_EQ(EINVAL, errno);
	/* Still mapped whole: a second mapping of the region is EEXIST. */
	map_fails(_metadata, self->fd, WD_REGION_DUS, self->dus,
		  PROT_READ | PROT_WRITE, EEXIST);
	EXPECT_EQ(0, munmap(dus, self->dus));
	EXPECT_EQ(0, munmap(mmio, self->mmio));
}

/* A mapping keeps the queue: closing the fd frees it only at munmap. */
TEST_F(map, close_keeps_mapping)
{
	const struct wd_dev *dev = &self->devs[0];
	void *mmio, *dus;
	int avail;

	map_both(_metadata, self, &mmio, &dus);
	fill(dus, self->dus, 0xc105e);
	avail = wd_avail(dev);
	ASSERT_LE(0, avail);

	ASSERT_EQ(0, close(self->fd));
	self->fd = -1;
	EXPECT_EQ(avail, wd_avail(dev));
	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, status_magic(mmio));
	EXPECT_EQ(-1, check(dus, self->dus, 0xc105e));

	EXPECT_EQ(0, munmap(mmio, self->mmio));
	EXPECT_EQ(avail, wd_avail(dev));
	EXPECT_EQ(0, munmap(dus, self->dus));
	EXPECT_EQ(avail + 1, wd_avail(dev));
}

/*
 * Exit status of a child that tries to map the queue it inherited: bit 0
 * if mapping the DUS region did not fail with EPERM, bit 1 if the status
 * page could not be mapped read-only, bit 2 if it did not read as the
 * started queue's.
 */
static int child_maps(int fd, size_t mmio_len, size_t dus_len)
{
	struct wd_queue_status *st;
	int bad = 0;
	void *p;

	p = wd_map(fd, WD_REGION_DUS, dus_len, PROT_READ | PROT_WRITE);
	if (p != MAP_FAILED || errno != EPERM)
		bad |= 1;
	p = wd_map(fd, WD_REGION_DUS, dus_len, PROT_READ);
	if (p != MAP_FAILED || errno != EPERM)
		bad |= 1;
	st = wd_map(fd, WD_REGION_MMIO, mmio_len, PROT_READ);
	if (st == MAP_FAILED)
		return bad | 2;
	if (wd_read32(&st->magic) != WD_QUEUE_STATUS_MAGIC ||
	    wd_read32(&st->state) != WD_QUEUE_STARTED)
		bad |= 4;
	munmap(st, mmio_len);
	return bad;
}

static void check_child_maps(struct __test_metadata *_metadata, int status)
{
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child status %#x", status);
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("child: DUS %s, MMIO map %s, MMIO contents %s",
		       WEXITSTATUS(status) & 1 ? "BAD (not EPERM)" : "ok",
		       WEXITSTATUS(status) & 2 ? "BAD" : "ok",
		       WEXITSTATUS(status) & 4 ? "BAD" : "ok");
}

/*
 * The ring belongs to the address space that opened the queue: a child
 * that inherited the fd cannot map it, though it may watch the status
 * page. Neither region is mapped in the parent, so EEXIST cannot hide
 * the answer.
 */
TEST_F(map, dus_other_mm_fork)
{
	int status;
	pid_t pid;
	void *p;

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(child_maps(self->fd, self->mmio, self->dus));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	check_child_maps(_metadata, status);

	/* The owner still maps both. */
	p = map_ok(_metadata, self->fd, WD_REGION_DUS, self->dus,
		   PROT_READ | PROT_WRITE);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ((__u32)WD_RING_MAGIC, wd_read32(p));
	munmap(p, self->dus);
	p = map_ok(_metadata, self->fd, WD_REGION_MMIO, self->mmio, PROT_READ);
	ASSERT_NE(MAP_FAILED, p);
	munmap(p, self->mmio);
}

/* The same for a process that got the fd over a unix socket. */
TEST_F(map, dus_other_mm_scm_rights)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = "q", .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg;
	int sv[2], status, fd;
	char c;
	pid_t pid;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	/* The child exists before the queue does: it never inherits it. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		close(sv[0]);
		close(self->fd);
		iov.iov_base = &c;
		if (recvmsg(sv[1], &msg, 0) != 1)
			_exit(100);
		cmsg = CMSG_FIRSTHDR(&msg);
		if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS)
			_exit(101);
		memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
		_exit(child_maps(fd, self->mmio, self->dus));
	}
	close(sv[1]);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &self->fd, sizeof(int));
	ASSERT_EQ(1, sendmsg(sv[0], &msg, 0));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	close(sv[0]);
	ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) >= 100)
		TH_LOG("child did not get the fd");
	check_child_maps(_metadata, status);
}

TEST_HARNESS_MAIN
