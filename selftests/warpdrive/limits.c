// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive queue limits: every open takes one of a device's queues, until
 * there is none left (EBUSY); available_instances follows.
 */
#include "kselftest_harness.h"

#include <sys/ioctl.h>

#include "wd_util.h"

FIXTURE(limits) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	int avail;		/* of devs[0] at setup */
	int fds[WD_MAX_QUEUES];
	int nfds;
};

FIXTURE_SETUP(limits)
{
	WD_SETUP_EDU(self->devs, self->n);
	self->avail = wd_avail(&self->devs[0]);
	ASSERT_LT(0, self->avail);
	ASSERT_GE(WD_MAX_QUEUES, self->avail);
}

FIXTURE_TEARDOWN(limits)
{
	while (self->nfds > 0)
		close(self->fds[--self->nfds]);
}

/* Takes every free queue of devs[0], checking the count at each step. */
static void open_all(struct __test_metadata *_metadata,
		     struct _test_data_limits *self)
{
	const struct wd_dev *dev = &self->devs[0];
	int i, fd;

	for (i = 0; i < self->avail; i++) {
		fd = wd_open(dev);
		ASSERT_LE(0, fd) TH_LOG("open %d of %d: %s", i + 1,
					self->avail, strerror(errno));
		self->fds[self->nfds++] = fd;
		EXPECT_EQ(self->avail - i - 1, wd_avail(dev));
	}
	/* No queue left. */
	ASSERT_EQ(-1, wd_open(dev));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(0, wd_avail(dev));
}

static void close_last(struct _test_data_limits *self)
{
	close(self->fds[--self->nfds]);
}

TEST_F(limits, open_until_ebusy)
{
	const struct wd_dev *dev = &self->devs[0];
	int i;

	open_all(_metadata, self);
	/* Failed opens take nothing. */
	for (i = 0; i < 8; i++) {
		ASSERT_EQ(-1, wd_open(dev));
		EXPECT_EQ(EBUSY, errno);
	}
	EXPECT_EQ(0, wd_avail(dev));

	/* One close makes room for exactly one open. */
	close_last(self);
	EXPECT_EQ(1, wd_avail(dev));
	self->fds[self->nfds] = wd_open(dev);
	ASSERT_LE(0, self->fds[self->nfds]) TH_LOG("%s", strerror(errno));
	self->nfds++;
	EXPECT_EQ(0, wd_avail(dev));
	ASSERT_EQ(-1, wd_open(dev));
	EXPECT_EQ(EBUSY, errno);

	/* Counting back up, one by one. */
	for (i = 1; self->nfds; i++) {
		close_last(self);
		EXPECT_EQ(i, wd_avail(dev));
	}
	EXPECT_EQ(self->avail, wd_avail(dev));

	/* Nothing leaked: the same number of queues again. */
	open_all(_metadata, self);
	EXPECT_EQ(self->avail, self->nfds);
}

/* Every queue's status page names a different queue of the device. */
TEST_F(limits, queue_indices)
{
	size_t size = wd_region_size(&self->devs[0], WD_REGION_MMIO);
	bool seen[WD_MAX_QUEUES] = { false };
	struct wd_queue_status *st;
	uint32_t idx;
	int i;

	ASSERT_LE(sizeof(*st), size);
	open_all(_metadata, self);
	for (i = 0; i < self->nfds; i++) {
		st = wd_map(self->fds[i], WD_REGION_MMIO, size, PROT_READ);
		ASSERT_NE(MAP_FAILED, st) TH_LOG("%s", strerror(errno));
		EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, wd_read32(&st->magic));
		idx = wd_read32(&st->queue_index);
		munmap(st, size);
		/* All queues are open, so the indices are 0..avail-1. */
		ASSERT_GT((uint32_t)self->avail, idx);
		EXPECT_FALSE(seen[idx]) TH_LOG("queue_index %u twice", idx);
		seen[idx] = true;
	}
}

static uint32_t queue_index(struct __test_metadata *_metadata, int fd,
			    size_t size)
{
	struct wd_queue_status *st;
	uint32_t idx;

	st = wd_map(fd, WD_REGION_MMIO, size, PROT_READ);
	EXPECT_NE(MAP_FAILED, st) TH_LOG("%s", strerror(errno));
	if (st == MAP_FAILED)
		return UINT32_MAX;
	idx = wd_read32(&st->queue_index);
	munmap(st, size);
	return idx;
}

/*
 * A new queue takes the lowest free index: with every queue open, the one
 * freed by a close; with none, 0.
 */
TEST_F(limits, queue_index_lowest_free)
{
	size_t size = wd_region_size(&self->devs[0], WD_REGION_MMIO);
	int fd[WD_MAX_QUEUES] = { 0 };
	uint32_t idx[WD_MAX_QUEUES];
	int i, k;

	/* Nothing else holds a queue of the device while the tests run. */
	if (self->avail < 2)
		SKIP(return, "needs two queues");
	open_all(_metadata, self);
	/* Opened in turn with all lower ones taken: 0, 1, 2, ... */
	for (i = 0; i < self->nfds; i++) {
		idx[i] = queue_index(_metadata, self->fds[i], size);
		EXPECT_EQ((uint32_t)i, idx[i]);
	}
	/* Free two in the middle: the lower one comes back first. */
	k = self->nfds / 2;
	close(self->fds[k]);
	close(self->fds[0]);
	fd[0] = wd_open(&self->devs[0]);
	ASSERT_LE(0, fd[0]);
	EXPECT_EQ(0U, queue_index(_metadata, fd[0], size));
	fd[1] = wd_open(&self->devs[0]);
	ASSERT_LE(0, fd[1]);
	EXPECT_EQ((uint32_t)k, queue_index(_metadata, fd[1], size));
	self->fds[0] = fd[0];
	self->fds[k] = fd[1];

	while (self->nfds > 0)
		close_last(self);
	fd[0] = wd_open(&self->devs[0]);
	ASSERT_LE(0, fd[0]);
	EXPECT_EQ(0U, queue_index(_metadata, fd[0], size));
	close(fd[0]);
}

/* The queue belongs to the open file, not to the descriptor. */
TEST_F(limits, dup_keeps_queue)
{
	const struct wd_dev *dev = &self->devs[0];
	int fd, fd2;

	fd = wd_open(dev);
	ASSERT_LE(0, fd);
	EXPECT_EQ(self->avail - 1, wd_avail(dev));
	fd2 = dup(fd);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(0, close(fd));
	EXPECT_EQ(self->avail - 1, wd_avail(dev));
	EXPECT_EQ(0, ioctl(fd2, WD_CMD_START_Q));
	EXPECT_EQ(0, close(fd2));
	EXPECT_EQ(self->avail, wd_avail(dev));
}

/* Running out of queues on one device leaves the others alone. */
TEST_F(limits, devices_independent)
{
	int i, fd, other;

	if (self->n < 2)
		SKIP(return, "only one edu device");
	open_all(_metadata, self);
	for (i = 1; i < self->n; i++) {
		other = wd_avail(&self->devs[i]);
		ASSERT_LT(0, other) TH_LOG("%s", self->devs[i].name);
		fd = wd_open(&self->devs[i]);
		ASSERT_LE(0, fd) TH_LOG("%s: %s", self->devs[i].name,
					strerror(errno));
		EXPECT_EQ(other - 1, wd_avail(&self->devs[i]));
		EXPECT_EQ(0, wd_avail(&self->devs[0]));
		EXPECT_EQ(0, close(fd));
		EXPECT_EQ(other, wd_avail(&self->devs[i]));
	}
}

TEST_HARNESS_MAIN
