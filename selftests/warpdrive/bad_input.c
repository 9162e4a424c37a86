// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive bad input: ioctl numbers nobody defined, with NULL, valid and
 * unmapped arguments, and the factorial, REGISTER and UNREGISTER ioctls
 * with bad pointers. Nothing may crash (the runner checks dmesg), errnos
 * must be the documented ones and the queue must still work afterwards.
 * Bad ring descriptors are bad_ring's.
 */
#include "kselftest_harness.h"

#include <sys/ioctl.h>

#include "wd_ring.h"

#define UNMAPPED_ADDR	((void *)0x1000UL)
#define KERNEL_ADDR	((void *)0xffffffff81000000UL)
#define NONCANON_ADDR	((void *)0x8000000000000000UL)
#define BUF_SIZE	4096
#define RANDOM_CMDS	700
#define MAX_LOGGED	8

FIXTURE(bad) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	int fd;
	unsigned char *buf;		/* zeroed, must stay zeroed */
	unsigned int calls;
	unsigned int failures;
};

FIXTURE_SETUP(bad)
{
	self->fd = -1;
	self->buf = MAP_FAILED;
	WD_SETUP_EDU(self->devs, self->n);
	self->fd = wd_open(&self->devs[0]);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", self->devs[0].node,
				      strerror(errno));
	self->buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->buf);
	/* The "unmapped" argument really is. */
	ASSERT_FALSE(wd_is_mapped(UNMAPPED_ADDR, wd_page_size()));
}

FIXTURE_TEARDOWN(bad)
{
	if (self->buf != MAP_FAILED)
		munmap(self->buf, BUF_SIZE);
	if (self->fd >= 0)
		close(self->fd);
}

static bool known_cmd(unsigned long cmd)
{
	return cmd == WD_CMD_START_Q || cmd == WD_CMD_PUT_Q ||
	       cmd == WD_EDU_CMD_FACTORIAL || cmd == WD_IOCTL_REGISTER ||
	       cmd == WD_IOCTL_UNREGISTER || cmd == WD_IOCTL_KICK;
}

static bool buf_zero(const unsigned char *buf)
{
	size_t i;

	for (i = 0; i < BUF_SIZE; i++)
		if (buf[i])
			return false;
	return true;
}

/* An unknown @cmd must fail with ENOTTY or EINVAL and touch nothing. */
static void try_unknown(struct __test_metadata *_metadata,
			struct _test_data_bad *self, unsigned long cmd)
{
	void *args[] = { NULL, self->buf, UNMAPPED_ADDR };
	const char *what = NULL;
	size_t i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(args); i++) {
		self->calls++;
		errno = 0;
		ret = ioctl(self->fd, cmd, args[i]);
		if (ret != -1)
			what = "succeeded";
		else if (errno != ENOTTY && errno != EINVAL)
			what = strerror(errno);
		else if (!buf_zero(self->buf))
			what = "wrote to its argument";
		if (!what)
			continue;
		if (self->failures++ < MAX_LOGGED)
			TH_LOG("ioctl %#lx (arg %p): %s, ret %d", cmd, args[i],
			       what, ret);
		memset(self->buf, 0, BUF_SIZE);
		what = NULL;
	}
}

static const struct {
	unsigned int dir;
	unsigned int size;
} shapes[] = {
	{ _IOC_NONE, 0 },
	{ _IOC_NONE, 8 },
	{ _IOC_READ, 4 },
	{ _IOC_READ, 8 },
	{ _IOC_WRITE, 4 },
	{ _IOC_WRITE, 8 },
	{ _IOC_READ | _IOC_WRITE, 4 },
	{ _IOC_READ | _IOC_WRITE, 8 },
	{ _IOC_READ | _IOC_WRITE, _IOC_SIZEMASK },
};

/* ioctl types the VFS answers itself, before the driver sees the call. */
static bool vfs_type(unsigned int type)
{
	return type == 0x00 || type == 'T' || type == 'f' || type == 'X' ||
	       type == 0x94 || type == 0x15;
}

static void sweep(struct __test_metadata *_metadata, struct _test_data_bad *self)
{
	unsigned int nr, i, type, seed = 0x57445744;
	unsigned long cmd;

	/* Every 'W' number, in every shape that is not a defined command. */
	for (nr = 0; nr < 256; nr++) {
		for (i = 0; i < ARRAY_SIZE(shapes); i++) {
			cmd = _IOC(shapes[i].dir, 'W', nr, shapes[i].size);
			if (!known_cmd(cmd))
				try_unknown(_metadata, self, cmd);
		}
	}

	/* Random numbers from a fixed-seed LCG, half of them of type 'W'. */
	for (i = 0; i < RANDOM_CMDS; ) {
		seed = seed * 1664525 + 1013904223;
		cmd = seed;
		if (i & 1)
			cmd = (cmd & ~(_IOC_TYPEMASK << _IOC_TYPESHIFT)) |
			      ('W' << _IOC_TYPESHIFT);
		type = _IOC_TYPE(cmd);
		if (vfs_type(type) || known_cmd(cmd))
			continue;
		try_unknown(_metadata, self, cmd);
		i++;
	}
	TH_LOG("%u calls", self->calls);
	EXPECT_EQ(0U, self->failures);
}

static void factorial_ok(struct __test_metadata *_metadata, int fd)
{
	uint32_t res;

	ASSERT_EQ(0, wd_factorial(fd, 10, &res)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(3628800U, res);
}

TEST_F_TIMEOUT(bad, sweep_idle, 120)
{
	sweep(_metadata, self);
	/* Still in its initial state, and fully working. */
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	factorial_ok(_metadata, self->fd);
}

TEST_F_TIMEOUT(bad, sweep_started, 120)
{
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	sweep(_metadata, self);
	/* Still started, and fully working. */
	ASSERT_EQ(-1, ioctl(self->fd, WD_CMD_START_Q));
	EXPECT_EQ(EINVAL, errno);
	factorial_ok(_metadata, self->fd);
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q));
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	factorial_ok(_metadata, self->fd);
}

/* _IO commands ignore their argument. */
TEST_F(bad, noarg_cmds_ignore_arg)
{
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q, UNMAPPED_ADDR));
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q, KERNEL_ADDR));
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q, ~0UL));
	factorial_ok(_metadata, self->fd);
	/* Nothing published: KICK consumes nothing, whatever its argument. */
	ASSERT_EQ(0, ioctl(self->fd, WD_IOCTL_KICK, KERNEL_ADDR));
	ASSERT_EQ(0, ioctl(self->fd, WD_IOCTL_KICK, UNMAPPED_ADDR));
	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_PUT_Q, NULL));
}

static void ioctl_efault(struct __test_metadata *_metadata, int fd,
			 unsigned long cmd, void *arg, const char *what)
{
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, cmd, arg)) TH_LOG("%s", what);
	EXPECT_EQ(EFAULT, errno) TH_LOG("%s: %s", what, strerror(errno));
}

/*
 * REGISTER's argument is read and then written (the handle): bad pointers
 * fail with EFAULT and leave nothing registered or pinned, even when the
 * argument was readable and only the handle could not be stored.
 */
TEST_F(bad, register_bad_pointers)
{
	size_t page = wd_page_size();
	struct wd_queue_status st;
	struct wd_register *arg;
	struct wd_queue q;
	uint32_t handle;
	long pin;
	char *p;

	close(self->fd);
	self->fd = -1;
	ASSERT_EQ(0, wd_queue_open(&q, &self->devs[0], 0))
		TH_LOG("%s", wd_ring_error());
	pin = wd_vmpin_kb();
	ASSERT_LE(0, pin);

	ioctl_efault(_metadata, q.fd, WD_IOCTL_REGISTER, NULL, "NULL");
	ioctl_efault(_metadata, q.fd, WD_IOCTL_REGISTER, UNMAPPED_ADDR,
		     "unmapped");
	ioctl_efault(_metadata, q.fd, WD_IOCTL_REGISTER, KERNEL_ADDR,
		     "kernel address");
	ioctl_efault(_metadata, q.fd, WD_IOCTL_REGISTER, NONCANON_ADDR,
		     "non-canonical");
	ioctl_efault(_metadata, q.fd, WD_IOCTL_UNREGISTER, NULL,
		     "UNREGISTER NULL");
	ioctl_efault(_metadata, q.fd, WD_IOCTL_UNREGISTER, KERNEL_ADDR,
		     "UNREGISTER kernel address");

	/* The argument in a read-only page, describing a good buffer. */
	p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	memset(self->buf, 1, BUF_SIZE);
	arg = (void *)(p + page);
	*arg = (struct wd_register){
		.addr = (uintptr_t)self->buf,
		.len = BUF_SIZE,
		.flags = WD_REGISTER_WRITE,
	};
	ASSERT_EQ(0, mprotect(p + page, page, PROT_READ));
	ioctl_efault(_metadata, q.fd, WD_IOCTL_REGISTER, arg, "read-only");
	/* Straddling from read-write into read-only: written while writable. */
	ASSERT_EQ(0, mprotect(p + page, page, PROT_READ | PROT_WRITE));
	arg = (void *)(p + page - 8);
	*arg = (struct wd_register){
		.addr = (uintptr_t)self->buf,
		.len = BUF_SIZE,
	};
	ASSERT_EQ(0, mprotect(p + page, page, PROT_READ));
	ioctl_efault(_metadata, q.fd, WD_IOCTL_REGISTER, arg,
		     "half read-only");

	wd_status(&q, &st);
	EXPECT_EQ(0ULL, st.buffers);
	EXPECT_EQ(0ULL, st.pinned_pages);
	EXPECT_EQ(pin, wd_vmpin_kb());
	/* Not registered after all: the same range registers now. */
	ASSERT_EQ(0, wd_register(q.fd, self->buf, BUF_SIZE, WD_REGISTER_WRITE,
				 &handle)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, wd_unregister(q.fd, handle));
	munmap(p, 2 * page);
	wd_queue_close(&q);
}

static void factorial_efault(struct __test_metadata *_metadata, int fd,
			     void *arg, const char *what)
{
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, WD_EDU_CMD_FACTORIAL, arg)) TH_LOG("%s", what);
	EXPECT_EQ(EFAULT, errno) TH_LOG("%s: %s", what, strerror(errno));
}

TEST_F(bad, factorial_bad_pointers)
{
	size_t page = wd_page_size();
	struct wd_edu_factorial *arg;
	unsigned char *p;

	/* Not started: either check may come first. */
	EXPECT_EQ(-1, ioctl(self->fd, WD_EDU_CMD_FACTORIAL, NULL));
	EXPECT_TRUE(errno == EINVAL || errno == EFAULT)
		TH_LOG("%s", strerror(errno));

	ASSERT_EQ(0, ioctl(self->fd, WD_CMD_START_Q));
	factorial_efault(_metadata, self->fd, NULL, "NULL");
	factorial_efault(_metadata, self->fd, UNMAPPED_ADDR, "unmapped");
	factorial_efault(_metadata, self->fd, KERNEL_ADDR, "kernel address");
	factorial_efault(_metadata, self->fd, NONCANON_ADDR, "non-canonical");

	/* Three pages: read-write, read-only, none. */
	p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	arg = (void *)(p + page);
	arg->n = 5;
	ASSERT_EQ(0, mprotect(p + page, page, PROT_READ));
	ASSERT_EQ(0, mprotect(p + 2 * page, page, PROT_NONE));

	/* Readable but not writable: the result cannot be stored. */
	factorial_efault(_metadata, self->fd, arg, "read-only");
	EXPECT_EQ(5U, arg->n);
	factorial_efault(_metadata, self->fd, p + 2 * page, "PROT_NONE");
	/* Straddling from read-only into PROT_NONE. */
	factorial_efault(_metadata, self->fd, p + 2 * page - 4,
			 "half PROT_NONE");
	/* Straddling from read-write into read-only. */
	arg = (void *)(p + page - 4);
	arg->n = 4;
	factorial_efault(_metadata, self->fd, arg, "half read-only");
	munmap(p, 3 * page);

	factorial_ok(_metadata, self->fd);
}

TEST_HARNESS_MAIN
