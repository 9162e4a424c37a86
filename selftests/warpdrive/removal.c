// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive device removal: unbinding the edu driver from a device whose
 * queues are open, started and mapped, with buffers registered and
 * commands in flight, or with the owner stuck in a fault that user space
 * never serves, then binding it again. Run last: it
 * unbinds every edu device in turn. The fixture's teardown runs in the
 * parent process and rebinds whatever the test left unbound, even if the
 * test died.
 */
#include "kselftest_harness.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "wd_ring.h"

FIXTURE(removal) {
	struct wd_dev devs[WD_MAX_DEVS];
	char bdfs[WD_MAX_DEVS][WD_BDF_LEN];	/* survives devs[] updates */
	int total[WD_MAX_DEVS];		/* available_instances when idle */
	bool unbound[WD_MAX_DEVS];
	int n;
};

FIXTURE_SETUP(removal)
{
	int i;

	WD_SETUP_EDU(self->devs, self->n);
	for (i = 0; i < self->n; i++) {
		ASSERT_NE(0, self->devs[i].bdf[0]);
		ASSERT_TRUE(wd_pci_bound(self->devs[i].bdf));
		memcpy(self->bdfs[i], self->devs[i].bdf, WD_BDF_LEN);
		self->total[i] = wd_avail(&self->devs[i]);
		ASSERT_LT(0, self->total[i]);
	}
}

FIXTURE_TEARDOWN_PARENT(removal)
{
	int i, ret;

	for (i = 0; i < self->n; i++) {
		if (!self->unbound[i] || wd_pci_bound(self->bdfs[i]))
			continue;
		ret = wd_pci_bind(self->bdfs[i]);
		TH_LOG("rebinding %s: %s", self->bdfs[i],
		       ret ? strerror(-ret) : "ok");
	}
}

#define EXPECT_GONE(call) do {						\
	errno = 0;							\
	EXPECT_EQ(-1, (call)) TH_LOG("%s succeeded", #call);		\
	EXPECT_TRUE(errno == ENODEV || errno == ENXIO)			\
		TH_LOG("%s: %s", #call, strerror(errno));		\
} while (0)

static void factorial_ok(struct __test_metadata *_metadata, int fd)
{
	uint32_t res;

	ASSERT_EQ(0, wd_factorial(fd, 11, &res)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(39916800U, res);
}

static void check_gone(struct __test_metadata *_metadata,
		       const struct wd_dev *dev)
{
	char name[WD_NAME_LEN];

	EXPECT_FALSE(wd_pci_bound(dev->bdf));
	EXPECT_EQ(-1, access(dev->sysfs, F_OK)) TH_LOG("%s", dev->sysfs);
	EXPECT_EQ(-1, access(dev->node, F_OK)) TH_LOG("%s", dev->node);
	EXPECT_EQ(-1, wd_open(dev));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(0, wd_pci_uacce(dev->bdf, name, sizeof(name)));
}

/* Binds device @i again and checks that a new queue works. */
static void rebind(struct __test_metadata *_metadata,
		   struct _test_data_removal *self, int i)
{
	struct wd_dev *dev = &self->devs[i];
	const char *bdf = self->bdfs[i];
	char name[WD_NAME_LEN];
	int fd;

	ASSERT_EQ(0, wd_pci_bind(bdf));
	self->unbound[i] = false;
	EXPECT_TRUE(wd_pci_bound(bdf));
	ASSERT_EQ(1, wd_pci_uacce(bdf, name, sizeof(name)));
	ASSERT_EQ(0, strncmp(name, WD_EDU_PREFIX, strlen(WD_EDU_PREFIX)));
	ASSERT_EQ(0, wd_dev_init(dev, name));
	ASSERT_EQ(0, access(dev->sysfs, F_OK)) TH_LOG("%s", dev->sysfs);
	EXPECT_STREQ(bdf, dev->bdf);

	/* All queues are free again: none went with the old device. */
	EXPECT_EQ(self->total[i], wd_avail(dev));
	fd = wd_open(dev);
	ASSERT_LE(0, fd) TH_LOG("open %s: %s", dev->node, strerror(errno));
	EXPECT_EQ(self->total[i] - 1, wd_avail(dev));
	ASSERT_EQ(0, ioctl(fd, WD_CMD_START_Q));
	factorial_ok(_metadata, fd);
	EXPECT_EQ(0, close(fd));
	EXPECT_EQ(self->total[i], wd_avail(dev));
}

/* Nothing open: the device goes away and comes back. */
TEST_F_TIMEOUT(removal, unbind_idle, 120)
{
	int i;

	for (i = 0; i < self->n; i++) {
		TH_LOG("%s (%s)", self->devs[i].name, self->devs[i].bdf);
		self->unbound[i] = true;
		ASSERT_EQ(0, wd_pci_unbind(self->bdfs[i]));
		check_gone(_metadata, &self->devs[i]);
		rebind(_metadata, self, i);
	}
}

#define COPY_LEN	WD_EDU_DMA_COPY_MAX

static void unbind_busy(struct __test_metadata *_metadata,
			struct _test_data_removal *self, int i)
{
	struct wd_edu_factorial arg = { .n = 3 };
	const struct wd_dev *dev = &self->devs[i];
	struct pollfd pfd = { .events = POLLIN };
	struct wd_register reg = { 0 };
	size_t mmio_len, dus_len;
	int fd, idle_fd, other = -1;
	struct wd_desc d[2];
	char *src, *dst, *snap;
	uint32_t handle;
	struct wd_queue q;
	void *mmio, *dus;
	long pin;

	mmio_len = wd_region_size(dev, WD_REGION_MMIO);
	dus_len = wd_region_size(dev, WD_REGION_DUS);
	ASSERT_NE(0UL, mmio_len);
	ASSERT_NE(0UL, dus_len);
	src = wd_alloc(COPY_LEN);
	dst = wd_alloc(2 * COPY_LEN);
	snap = wd_alloc(2 * COPY_LEN);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	ASSERT_NE(NULL, snap);
	wd_fill(src, COPY_LEN, i, 0);
	pin = wd_vmpin_kb();
	ASSERT_LE(0, pin);

	/* A started queue of another device, which must not notice. */
	if (self->n > 1) {
		other = wd_open(&self->devs[(i + 1) % self->n]);
		ASSERT_LE(0, other);
		ASSERT_EQ(0, ioctl(other, WD_CMD_START_Q));
	}

	/* A started queue with both regions mapped... */
	fd = wd_open(dev);
	ASSERT_LE(0, fd) TH_LOG("open %s: %s", dev->node, strerror(errno));
	ASSERT_EQ(0, ioctl(fd, WD_CMD_START_Q));
	factorial_ok(_metadata, fd);
	ASSERT_EQ(0, wd_queue_attach(&q, fd, mmio_len, dus_len))
		TH_LOG("%s", wd_ring_error());
	mmio = q.st;
	dus = q.dus;
	/*
	 * Two slow DMA copies on the ring, the first in flight at the
	 * unbind, from a registered buffer to an unregistered one.
	 */
	ASSERT_EQ(0, wd_register(fd, src, COPY_LEN, 0, &handle))
		TH_LOG("%s", strerror(errno));
	d[0] = wd_mkdesc(WD_EDU_OP_DMA_COPY, 0, src, dst, COPY_LEN, 0);
	d[1] = wd_mkdesc(WD_EDU_OP_DMA_COPY, 1, src, dst + COPY_LEN,
			 COPY_LEN, 0);
	ASSERT_EQ(2U, wd_sq_push(&q, d, 2));
	ASSERT_EQ(2, wd_kick(&q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_touch(mmio, false));
	ASSERT_EQ(0, wd_touch(dus, false));
	/* ...and an idle one that stays open across the rebind. */
	idle_fd = self->total[i] > 1 ? wd_open(dev) : -1;
	if (self->total[i] > 1)
		ASSERT_LE(0, idle_fd);

	self->unbound[i] = true;
	ASSERT_EQ(0, wd_pci_unbind(self->bdfs[i]));
	check_gone(_metadata, dev);

	EXPECT_GONE(ioctl(fd, WD_CMD_START_Q));
	EXPECT_GONE(ioctl(fd, WD_CMD_PUT_Q));
	EXPECT_GONE(ioctl(fd, WD_EDU_CMD_FACTORIAL, &arg));
	EXPECT_GONE(ioctl(fd, _IO('W', 0x7f)));
	EXPECT_GONE(ioctl(fd, WD_IOCTL_KICK));
	reg.addr = (uintptr_t)snap;
	reg.len = COPY_LEN;
	EXPECT_GONE(ioctl(fd, WD_IOCTL_REGISTER, &reg));
	EXPECT_GONE(ioctl(fd, WD_IOCTL_UNREGISTER, &handle));

	/* The device is gone, so is its DMA: dst no longer changes. */
	memcpy(snap, dst, 2 * COPY_LEN);
	usleep(500 * 1000);
	EXPECT_EQ(0, memcmp(snap, dst, 2 * COPY_LEN))
		TH_LOG("DMA into dst after the unbind");

	pfd.fd = fd;
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_NE(0, pfd.revents & (POLLERR | POLLHUP))
		TH_LOG("revents %#x", pfd.revents);

	EXPECT_EQ(SIGBUS, wd_touch(mmio, false));
	EXPECT_EQ(SIGBUS, wd_touch(dus, false));
	EXPECT_EQ(SIGBUS, wd_touch((char *)dus + dus_len - 4, true));

	EXPECT_EQ(0, munmap(dus, dus_len));
	EXPECT_GONE(wd_map(fd, WD_REGION_DUS, dus_len,
			   PROT_READ | PROT_WRITE) == MAP_FAILED ? -1 : 0);
	if (idle_fd >= 0)
		EXPECT_GONE(wd_map(idle_fd, WD_REGION_MMIO, mmio_len,
				   PROT_READ) == MAP_FAILED ? -1 : 0);

	if (other >= 0)
		factorial_ok(_metadata, other);

	/* The mapping outlives the fd; both go without complaint. */
	EXPECT_EQ(0, close(fd));
	EXPECT_EQ(0, munmap(mmio, mmio_len));
	/* Every pin went with the queue. */
	EXPECT_EQ(pin, wd_vmpin_kb());
	munmap(src, COPY_LEN);
	munmap(dst, 2 * COPY_LEN);
	munmap(snap, 2 * COPY_LEN);

	rebind(_metadata, self, i);

	/* The old file never reaches the new device. */
	if (idle_fd >= 0) {
		EXPECT_GONE(ioctl(idle_fd, WD_CMD_START_Q));
		EXPECT_EQ(0, close(idle_fd));
	}
	if (other >= 0) {
		factorial_ok(_metadata, other);
		EXPECT_EQ(0, close(other));
	}
}

TEST_F_TIMEOUT(removal, unbind_open_queue, 120)
{
	int i;

	for (i = 0; i < self->n; i++) {
		TH_LOG("%s (%s)", self->devs[i].name, self->devs[i].bdf);
		unbind_busy(_metadata, self, i);
	}
}

/*
 * Anonymous memory under a userfaultfd that nobody serves: any fault on it
 * waits until the process dies. Returns the range, or NULL.
 */
static void *unserved_range(size_t len)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	void *p;
	int uffd;

	uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api))
		return NULL;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	reg.range.start = (uintptr_t)p;
	reg.range.len = len;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return NULL;
	/* uffd stays open: closing it would wake the faults. */
	return p;
}

enum hostage_call { HOSTAGE_KICK, HOSTAGE_REGISTER };

/*
 * The child: a queue of @dev, then a KICK whose command reads unserved
 * memory (pinned for the command, so KICK faults it), or a REGISTER of
 * such memory. Tells the parent on @ready just before the call, which
 * should never return.
 */
static int hostage_child(const struct wd_dev *dev, enum hostage_call call,
			 int ready)
{
	const size_t len = 64 * 1024;
	struct wd_queue q;
	struct wd_desc d;
	uint32_t h;
	char *src, *dst;

	wd_queue_init(&q);
	if (wd_queue_open(&q, dev, 0))
		return 10;
	src = unserved_range(len);
	dst = wd_alloc(len);
	if (!src || !dst)
		return 11;
	if (call == HOSTAGE_KICK) {
		d = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 1, src, dst, len, 0);
		if (wd_sq_push(&q, &d, 1) != 1)
			return 12;
	}
	if (write(ready, "r", 1) != 1)
		return 13;
	if (call == HOSTAGE_KICK)
		wd_kick(&q);
	else
		wd_register(q.fd, src, len, 0, &h);
	return 14;	/* returned, though nothing served the fault */
}

/* Whether @pid is still there after @ms, and so blocked. */
static bool still_running(pid_t pid, int ms)
{
	int status;

	usleep(ms * 1000);
	return waitpid(pid, &status, WNOHANG) == 0;
}

/*
 * User space cannot hold removal hostage: with the owner of a queue stuck
 * for good in a fault from KICK or REGISTER (userfaultfd, never served),
 * unbinding the device finishes at once, and the stuck task still dies on
 * SIGKILL. Neither call holds a lock that removal takes across the fault.
 */
static void hostage(struct __test_metadata *_metadata,
		    struct _test_data_removal *self, enum hostage_call call)
{
	struct wd_dev *dev = &self->devs[0];
	uint64_t start, took;
	int ready[2], status;
	pid_t pid;
	char c;

	ASSERT_EQ(0, pipe2(ready, O_CLOEXEC));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		close(ready[0]);
		_exit(hostage_child(dev, call, ready[1]));
	}
	close(ready[1]);
	ASSERT_EQ(1, read(ready[0], &c, 1)) TH_LOG("the child failed early");
	close(ready[0]);
	/* Under way: blocked in the fault, not finished. */
	ASSERT_TRUE(still_running(pid, 500))
		TH_LOG("the %s returned without the fault being served",
		       call == HOSTAGE_KICK ? "KICK" : "REGISTER");

	start = wd_now_ms();
	self->unbound[0] = true;
	ASSERT_EQ(0, wd_pci_unbind(self->bdfs[0]));
	took = wd_now_ms() - start;
	check_gone(_metadata, dev);
	ksft_print_msg("%s hostage: unbind took %llu ms\n",
		       call == HOSTAGE_KICK ? "KICK" : "REGISTER",
		       (unsigned long long)took);
	/* Still stuck in its fault, which the unbind did not touch. */
	EXPECT_TRUE(still_running(pid, 100));

	ASSERT_EQ(0, kill(pid, SIGKILL));
	EXPECT_TRUE(WD_WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, 10000))
		TH_LOG("the stuck task did not die on SIGKILL");
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		TH_LOG("status %#x", status);
	rebind(_metadata, self, 0);
}

TEST_F_TIMEOUT(removal, kick_hostage, 120)
{
	hostage(_metadata, self, HOSTAGE_KICK);
}

TEST_F_TIMEOUT(removal, register_hostage, 120)
{
	hostage(_metadata, self, HOSTAGE_REGISTER);
}

TEST_HARNESS_MAIN
