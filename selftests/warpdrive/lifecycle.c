// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive queue lifecycle: START_Q/PUT_Q state machine, the edu factorial
 * ioctl, the status page, poll, and what stopping a queue does to the
 * commands on its ring.
 */
#include "kselftest_harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>

#include "wd_ring.h"

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
	struct wd_queue_status *st;
	size_t st_size;
};

FIXTURE_SETUP(queue)
{
	self->fd = -1;
	WD_SETUP_EDU(self->devs, self->n);
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
	ASSERT_LE(sizeof(struct wd_queue_status), self->st_size);
	p = wd_map(self->fd, WD_REGION_MMIO, self->st_size, PROT_READ);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("mmap MMIO: %s", strerror(errno));
	self->st = p;
	ASSERT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, wd_read32(&self->st->magic));
}

/* No ring command ran on the queue: the factorial ioctl does not count. */
static void expect_no_commands(struct __test_metadata *_metadata,
			       const struct wd_queue_status *st)
{
	EXPECT_EQ(0ULL, wd_read64(&st->submitted));
	EXPECT_EQ(0ULL, wd_read64(&st->completed));
	EXPECT_EQ(0ULL, wd_read64(&st->errors));
	EXPECT_EQ(0ULL, wd_read64(&st->bytes));
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
	uint32_t res;
	int i;

	map_status(_metadata, self);
	EXPECT_EQ((__u32)WD_QUEUE_INIT, wd_read32(&self->st->state));
	expect_no_commands(_metadata, self->st);
	EXPECT_EQ(0ULL, wd_read64(&self->st->pinned_pages));
	EXPECT_EQ(0ULL, wd_read64(&self->st->buffers));
	EXPECT_EQ(0ULL, wd_read64(&self->st->invalidations));

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ((__u32)WD_QUEUE_STARTED, wd_read32(&self->st->state));
	for (i = 1; i <= 5; i++)
		ASSERT_EQ(0, wd_factorial(self->fd, i, &res));
	/* The ioctl runs outside the ring and changes no counter. */
	expect_no_commands(_metadata, self->st);

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
	EXPECT_EQ((__u32)WD_QUEUE_INIT, wd_read32(&self->st->state));
	ASSERT_EQ(-1, wd_factorial(self->fd, 3, &res));
	expect_no_commands(_metadata, self->st);

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ((__u32)WD_QUEUE_STARTED, wd_read32(&self->st->state));
	EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, wd_read32(&self->st->magic));
}

/* KICK needs a started queue, like the factorial ioctl. */
TEST_F(queue, kick_not_started)
{
	struct wd_desc d = wd_mkdesc(WD_EDU_OP_NOP, 1, NULL, NULL, 0, 0);
	struct wd_cqe cqe;
	struct wd_queue q;

	close(self->fd);
	self->fd = -1;
	ASSERT_EQ(0, wd_queue_open(&q, &self->devs[0], WD_Q_NOSTART))
		TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(1U, wd_sq_push(&q, &d, 1));
	EXPECT_EQ(-1, ioctl(q.fd, WD_IOCTL_KICK));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0U, wd_sq_head(&q));
	EXPECT_TRUE(wd_cq_quiet(&q, 100));

	/* Started, the published NOP runs. */
	ASSERT_EQ(0, ioctl(q.fd, WD_CMD_START_Q));
	ASSERT_EQ(1, wd_kick(&q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_reap(&q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(1ULL, cqe.user_data);
	EXPECT_EQ(0, cqe.status);

	/* Stopped again, KICK is refused again. */
	ASSERT_EQ(1U, wd_sq_push(&q, &d, 1));
	ASSERT_EQ(0, ioctl(q.fd, WD_CMD_PUT_Q));
	EXPECT_EQ((__u32)WD_QUEUE_INIT, wd_read32(&q.st->state));
	EXPECT_EQ(-1, ioctl(q.fd, WD_IOCTL_KICK));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(1U, wd_sq_head(&q));
	EXPECT_TRUE(wd_cq_quiet(&q, 100));
	wd_queue_close(&q);
}

/*
 * PUT_Q with slow DMA commands queued: each completes, with -ECANCELED if
 * it had not run yet. Four 64 KiB copies take the device about 13 s, so
 * the later ones cannot have run by then. The ring is the same ring after
 * the queue is started again.
 */
TEST_F_TIMEOUT(queue, put_cancels, 60)
{
	const size_t len = WD_EDU_DMA_COPY_MAX;
	struct wd_desc d[4], nop;
	unsigned int i, cancelled = 0;
	struct wd_queue_status st;
	struct wd_cqe cqe[4];
	struct wd_queue q;
	char *src, *dst, *out;

	close(self->fd);
	self->fd = -1;
	ASSERT_EQ(0, wd_queue_open(&q, &self->devs[0], 0))
		TH_LOG("%s", wd_ring_error());
	src = wd_alloc(len);
	dst = wd_alloc(4 * len);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	wd_fill(src, len, 41, 0);
	memset(dst, 0xee, 4 * len);
	for (i = 0; i < 4; i++)
		d[i] = wd_mkdesc(WD_EDU_OP_DMA_COPY, i, src, dst + i * len,
				 len, 0);
	ASSERT_EQ(4U, wd_sq_push(&q, d, 4));
	ASSERT_EQ(4, wd_kick(&q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, ioctl(q.fd, WD_CMD_PUT_Q));
	EXPECT_EQ((__u32)WD_QUEUE_INIT, wd_read32(&q.st->state));

	ASSERT_EQ(0, wd_reap(&q, cqe, 4, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	/* Completions come in any order: each copy by its user_data. */
	for (i = 0; i < 4; i++) {
		ASSERT_GT(4ULL, cqe[i].user_data);
		out = dst + cqe[i].user_data * len;
		if (cqe[i].status == -ECANCELED) {
			cancelled++;
			/*
			 * The header: cut short while running, it may have
			 * written a prefix of dst, and nothing else.
			 */
			EXPECT_EQ(-1, wd_check_prefix(out, len, 41, 0, 0xee))
				TH_LOG("copy %llu: -ECANCELED, and not a prefix",
				       (unsigned long long)cqe[i].user_data);
			continue;
		}
		EXPECT_EQ(0, cqe[i].status)
			TH_LOG("copy %llu: %d",
			       (unsigned long long)cqe[i].user_data,
			       cqe[i].status);
		EXPECT_EQ((uint64_t)len, cqe[i].result);
		EXPECT_EQ(-1, wd_check(out, len, 41, 0));
	}
	EXPECT_LE(2U, cancelled);
	wd_status(&q, &st);
	EXPECT_EQ(4ULL, st.submitted);
	EXPECT_EQ(4ULL, st.completed);
	EXPECT_EQ((uint64_t)cancelled, st.errors);

	ASSERT_EQ(0, ioctl(q.fd, WD_CMD_START_Q));
	nop = wd_mkdesc(WD_EDU_OP_NOP, 99, NULL, NULL, 0, 0);
	ASSERT_EQ(0, wd_run1(&q, &nop, cqe)) TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(0, cqe[0].status);
	EXPECT_EQ(5U, wd_sq_head(&q));
	EXPECT_EQ(5U, wd_cq_tail(&q));
	munmap(src, len);
	munmap(dst, 4 * len);
	wd_queue_close(&q);
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
	EXPECT_EQ((__u32)WD_QUEUE_INIT, wd_read32(&self->st->state));
	expect_no_commands(_metadata, self->st);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	ASSERT_EQ(0, wd_factorial(self->fd, 7, &res));
	EXPECT_EQ(5040U, res);
}

#define WORKER_ITERS	200

struct worker {
	pthread_t thread;
	struct wd_queue q;
	unsigned int seed;
	int done;
	int ring;		/* of which through the ring */
	int bad;		/* wrong results */
	int err;		/* first errno, 0 if none */
	uint32_t bad_n;
	char why[256];
};

/* Every other factorial goes through the ring, the rest through the ioctl. */
static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	struct wd_desc d;
	struct wd_cqe cqe;
	uint32_t n, res;
	int i, ret;

	for (i = 0; i < WORKER_ITERS; i++) {
		w->seed = w->seed * 1103515245 + 12345;
		n = (w->seed >> 16) % 40;
		if (i & 1) {
			d = wd_mkdesc(WD_EDU_OP_FACTORIAL, i, NULL, NULL, 0, n);
			ret = wd_run1(&w->q, &d, &cqe);
			if (ret || cqe.status) {
				w->err = ret ? -ret : -cqe.status;
				snprintf(w->why, sizeof(w->why), "%s",
					 ret ? wd_ring_error() : "status");
				break;
			}
			res = cqe.result;
			if (cqe.result > UINT32_MAX)
				w->bad++;
			w->ring++;
		} else if (wd_factorial(w->q.fd, n, &res)) {
			w->err = errno;
			snprintf(w->why, sizeof(w->why), "ioctl");
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
 * Several queues of each device share its one factorial unit, through the
 * ioctl and through their rings: run them from concurrent threads and check
 * every result and every queue's count.
 */
TEST_F_TIMEOUT(queue, concurrent_factorial, 120)
{
	struct worker w[WD_MAX_DEVS * 2];
	struct wd_queue_status st;
	int i, q, nw = 0, avail;

	memset(w, 0, sizeof(w));
	close(self->fd);
	self->fd = -1;
	for (i = 0; i < self->n; i++) {
		avail = wd_avail(&self->devs[i]);
		ASSERT_LT(0, avail);
		for (q = 0; q < 2 && q < avail; q++, nw++) {
			ASSERT_EQ(0, wd_queue_open(&w[nw].q, &self->devs[i], 0))
				TH_LOG("%s", wd_ring_error());
			w[nw].seed = nw + 1;
		}
	}
	for (i = 0; i < nw; i++)
		ASSERT_EQ(0, pthread_create(&w[i].thread, NULL, worker_fn,
					    &w[i]));
	for (i = 0; i < nw; i++)
		ASSERT_EQ(0, pthread_join(w[i].thread, NULL));

	for (i = 0; i < nw; i++) {
		EXPECT_EQ(0, w[i].err) TH_LOG("worker %d: %s: %s", i, w[i].why,
					      strerror(w[i].err));
		EXPECT_EQ(WORKER_ITERS, w[i].done);
		EXPECT_EQ(0, w[i].bad) TH_LOG("worker %d: e.g. %u!", i,
					      w[i].bad_n);
		/* Only the ring's commands count. */
		wd_status(&w[i].q, &st);
		EXPECT_EQ((uint64_t)w[i].ring, st.submitted);
		EXPECT_EQ((uint64_t)w[i].ring, st.completed);
		EXPECT_EQ(0ULL, st.errors);
		EXPECT_EQ(0ULL, st.bytes);
		wd_queue_close(&w[i].q);
	}
}

TEST_HARNESS_MAIN
