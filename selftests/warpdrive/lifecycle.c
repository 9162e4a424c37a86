// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive queue lifecycle: START_Q/PUT_Q state machine, the edu factorial
 * ioctl, the status page and poll.
 */
#include "kselftest_harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>

#include "wd_util.h"

/*
 * Factorial inputs checked on every device: 0..20 and some wrapped ones.
 * The device loops n times, so UINT32_MAX only completes within the
 * driver's timeout because every n >= 34 has the same 32-bit result.
 */
static const uint32_t fact_inputs[] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
	20, 33, 34, 35, 100, UINT32_MAX,
};

FIXTURE(queue) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	int fd;
	struct wd_edu_status *st;
	size_t st_size;
};

FIXTURE_SETUP(queue)
{
	self->fd = -1;
	self->n = wd_get_edu(self->devs, WD_MAX_DEVS);
	if (!self->n)
		SKIP(return, "no QEMU edu device");
	ASSERT_LT(0, self->n) TH_LOG("edu PCI devices but no edu class device");
	self->fd = wd_open(&self->devs[0]);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", self->devs[0].node,
				      strerror(errno));
}

FIXTURE_TEARDOWN(queue)
{
	if (self->st)
		munmap(self->st, self->st_size);
	if (self->fd >= 0)
		close(self->fd);
}

static void map_status(struct __test_metadata *_metadata,
		       struct _test_data_queue *self)
{
	void *p;

	self->st_size = wd_region_size(&self->devs[0], WD_REGION_MMIO);
	ASSERT_LE(sizeof(struct wd_edu_status), self->st_size);
	p = wd_map(self->fd, WD_REGION_MMIO, self->st_size, PROT_READ);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("mmap MMIO: %s", strerror(errno));
	self->st = p;
	ASSERT_EQ((__u32)WD_EDU_STATUS_MAGIC, wd_read32(&self->st->magic));
}

TEST_F(queue, open_cloexec)
{
	int flags = fcntl(self->fd, F_GETFD);

	ASSERT_LE(0, flags);
	EXPECT_EQ(FD_CLOEXEC, flags & FD_CLOEXEC);
}

TEST_F(queue, start_twice)
{
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	ASSERT_EQ(-1, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	ASSERT_EQ(-1, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
}

TEST_F(queue, put_fresh)
{
	EXPECT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
	EXPECT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
	EXPECT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
	EXPECT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
}

TEST_F(queue, factorial_not_started)
{
	uint32_t res;

	ASSERT_EQ(-1, wd_factorial(self->fd, 5, &res));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	ASSERT_EQ(0, wd_factorial(self->fd, 5, &res));
	EXPECT_EQ(120U, res);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
	ASSERT_EQ(-1, wd_factorial(self->fd, 5, &res));
	EXPECT_EQ(EINVAL, errno);
}

static void check_factorials(struct __test_metadata *_metadata, int fd,
			     const char *name)
{
	uint32_t res;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(fact_inputs); i++) {
		ASSERT_EQ(0, wd_factorial(fd, fact_inputs[i], &res))
			TH_LOG("%s: %u!: %s", name, fact_inputs[i],
			       strerror(errno));
		EXPECT_EQ(wd_fact_u32(fact_inputs[i]), res)
			TH_LOG("%s: %u!", name, fact_inputs[i]);
	}
}

TEST_F(queue, factorial_values)
{
	int i, fd;

	/* The CPU reference itself: 12! fits, 13! wraps, 34! is 0. */
	ASSERT_EQ(479001600U, wd_fact_u32(12));
	ASSERT_EQ(1932053504U, wd_fact_u32(13));
	ASSERT_EQ(2147483648U, wd_fact_u32(33));
	ASSERT_EQ(0U, wd_fact_u32(34));

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	check_factorials(_metadata, self->fd, self->devs[0].name);
	for (i = 1; i < self->n; i++) {
		fd = wd_open(&self->devs[i]);
		ASSERT_LE(0, fd) TH_LOG("open %s: %s", self->devs[i].node,
					strerror(errno));
		ASSERT_EQ(0, ioctl(fd, WD_CMD_START_Q));
		check_factorials(_metadata, fd, self->devs[i].name);
		EXPECT_EQ(0, close(fd));
	}
}

TEST_F(queue, status_page)
{
	uint32_t res, done;
	int i;

	map_status(_metadata, self);
	EXPECT_EQ(0U, wd_read32(&self->st->started));
	EXPECT_EQ(0U, wd_read32(&self->st->completed));

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ(1U, wd_read32(&self->st->started));
	done = wd_read32(&self->st->completed);
	EXPECT_EQ(0U, done);	/* fresh queue */
	for (i = 1; i <= 5; i++) {
		ASSERT_EQ(0, wd_factorial(self->fd, i, &res));
		EXPECT_EQ(done + i, wd_read32(&self->st->completed));
	}

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
	EXPECT_EQ(0U, wd_read32(&self->st->started));
	done = wd_read32(&self->st->completed);
	ASSERT_EQ(-1, wd_factorial(self->fd, 3, &res));
	/* A refused factorial does not count. */
	EXPECT_EQ(done, wd_read32(&self->st->completed));

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ(1U, wd_read32(&self->st->started));
	EXPECT_EQ((__u32)WD_EDU_STATUS_MAGIC, wd_read32(&self->st->magic));
}

TEST_F(queue, poll_idle)
{
	struct pollfd pfd = { .fd = self->fd, .events = POLLIN };

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	EXPECT_EQ(0, pfd.revents);
}

/* Closing a started queue frees it; a new one starts from scratch. */
TEST_F(queue, close_started)
{
	const struct wd_dev *dev = &self->devs[0];
	int avail = wd_avail(dev);
	uint32_t res;

	ASSERT_LE(0, avail);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	ASSERT_EQ(0, wd_factorial(self->fd, 6, &res));
	ASSERT_EQ(0, close(self->fd));
	self->fd = -1;
	EXPECT_EQ(avail + 1, wd_avail(dev));

	self->fd = wd_open(dev);
	ASSERT_LE(0, self->fd);
	EXPECT_EQ(avail, wd_avail(dev));
	map_status(_metadata, self);
	EXPECT_EQ(0U, wd_read32(&self->st->started));
	EXPECT_EQ(0U, wd_read32(&self->st->completed));
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	ASSERT_EQ(0, wd_factorial(self->fd, 7, &res));
	EXPECT_EQ(5040U, res);
}

#define WORKER_ITERS	200

struct worker {
	pthread_t thread;
	int fd;
	size_t mmio;		/* region_mmio_size of its device */
	unsigned int seed;
	int done;
	int bad;		/* wrong results */
	int err;		/* first errno, 0 if none */
	uint32_t bad_n;
};

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	uint32_t n, res;
	int i;

	for (i = 0; i < WORKER_ITERS; i++) {
		w->seed = w->seed * 1103515245 + 12345;
		n = (w->seed >> 16) % 40;
		if (wd_factorial(w->fd, n, &res)) {
			w->err = errno;
			break;
		}
		if (res != wd_fact_u32(n)) {
			w->bad++;
			w->bad_n = n;
		}
		w->done++;
	}
	return NULL;
}

/*
 * Several queues of each device share its one factorial unit: run them
 * from concurrent threads and check every result and every queue's count.
 */
TEST_F_TIMEOUT(queue, concurrent_factorial, 120)
{
	struct worker w[WD_MAX_DEVS * 2] = { 0 };
	struct wd_edu_status *st;
	int i, q, nw = 0, avail;

	close(self->fd);
	self->fd = -1;
	for (i = 0; i < self->n; i++) {
		avail = wd_avail(&self->devs[i]);
		ASSERT_LT(0, avail);
		for (q = 0; q < 2 && q < avail; q++, nw++) {
			w[nw].fd = wd_open(&self->devs[i]);
			ASSERT_LE(0, w[nw].fd);
			ASSERT_EQ(0, ioctl(w[nw].fd, WD_CMD_START_Q));
			w[nw].mmio = wd_region_size(&self->devs[i],
						    WD_REGION_MMIO);
			w[nw].seed = nw + 1;
		}
	}
	for (i = 0; i < nw; i++)
		ASSERT_EQ(0, pthread_create(&w[i].thread, NULL, worker_fn,
					    &w[i]));
	for (i = 0; i < nw; i++)
		ASSERT_EQ(0, pthread_join(w[i].thread, NULL));

	for (i = 0; i < nw; i++) {
		EXPECT_EQ(0, w[i].err) TH_LOG("worker %d: %s", i,
					      strerror(w[i].err));
		EXPECT_EQ(WORKER_ITERS, w[i].done);
		EXPECT_EQ(0, w[i].bad) TH_LOG("worker %d: e.g. %u!", i,
					      w[i].bad_n);
		st = wd_map(w[i].fd, WD_REGION_MMIO, w[i].mmio, PROT_READ);
		ASSERT_NE(MAP_FAILED, st);
		EXPECT_EQ((uint32_t)WORKER_ITERS, wd_read32(&st->completed));
		munmap(st, w[i].mmio);
		close(w[i].fd);
	}
}

TEST_HARNESS_MAIN
