// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive queue ownership: a queue belongs to the address space that
 * opened it. Other processes holding the fd (a forked child, a process
 * that got it over SCM_RIGHTS) cannot submit, register or map its ring;
 * fork() leaves the parent's buffers and results the parent's; and when
 * the owner's address space goes while someone else holds the fd, the
 * queue is orphaned: its commands cancelled, its pins dropped.
 *
 * Children report through their exit status, one bit per check, because
 * the harness's ASSERTs must not run outside the test's own process.
 */
#define _GNU_SOURCE
#include "kselftest_harness.h"

#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "wd_ring.h"

#define KiB		1024UL
#define BUF_LEN		(64 * KiB)

FIXTURE(owner) {
	struct wd_dev devs[WD_MAX_DEVS];
	int n;
	struct wd_queue q;
	char *buf;
};

FIXTURE_SETUP(owner)
{
	wd_queue_init(&self->q);
	WD_SETUP_EDU_QUEUE(self->devs, self->n, &self->q);
	self->buf = wd_alloc(BUF_LEN);
	ASSERT_NE(NULL, self->buf);
	memset(self->buf, 0x11, BUF_LEN);
}

FIXTURE_TEARDOWN(owner)
{
	if (self->buf)
		munmap(self->buf, BUF_LEN);
	wd_queue_close(&self->q);
}


/* Sends @fd and one byte @c over the unix socket @sock. */
static int send_fd(int sock, int fd, char c)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

/* Receives an fd and its byte; the fd, or -1. */
static int recv_fd(int sock, char *c)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = c, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg;
	int fd;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET ||
	    cmsg->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

/*
 * What a process that is not the owner tries with the queue's @fd. Exit
 * status bits: 1 KICK, 2 REGISTER, 4 UNREGISTER of the owner's handle
 * @h, 8 mapping the ring, 16 PUT_Q, START_Q or the driver's FACTORIAL
 * ioctl; each set if it did not fail with EPERM.
 */
static int intruder(int fd, uint32_t h, size_t dus_len, bool try_map)
{
	struct wd_edu_factorial f = { .n = 5 };
	char *mine = wd_alloc(BUF_LEN);
	uint32_t h2;
	int bad = 0;
	void *p;

	if (!mine)
		return 64;
	memset(mine, 1, BUF_LEN);
	/* Stopping the owner's queue would cancel its commands. */
	if (ioctl(fd, WD_CMD_PUT_Q) != -1 || errno != EPERM)
		bad |= 16;
	if (ioctl(fd, WD_CMD_START_Q) != -1 || errno != EPERM)
		bad |= 16;
	if (ioctl(fd, WD_EDU_CMD_FACTORIAL, &f) != -1 || errno != EPERM)
		bad |= 16;
	if (ioctl(fd, WD_IOCTL_KICK) != -1 || errno != EPERM)
		bad |= 1;
	if (wd_register(fd, mine, BUF_LEN, WD_REGISTER_WRITE, &h2) != -1 ||
	    errno != EPERM)
		bad |= 2;
	if (wd_unregister(fd, h) != -1 || errno != EPERM)
		bad |= 4;
	if (try_map) {
		p = wd_map(fd, WD_REGION_DUS, dus_len, PROT_READ | PROT_WRITE);
		if (p != MAP_FAILED || errno != EPERM)
			bad |= 8;
	}
	return bad;
}

static void check_intruder(struct __test_metadata *_metadata, int status)
{
	int bits;

	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child status %#x", status);
	bits = WEXITSTATUS(status);
	EXPECT_EQ(0, bits)
		TH_LOG("not refused with EPERM:%s%s%s%s%s%s", bits & 1 ? " KICK" : "",
		       bits & 2 ? " REGISTER" : "",
		       bits & 4 ? " UNREGISTER" : "",
		       bits & 8 ? " mmap of the ring" : "",
		       bits & 16 ? " PUT_Q/START_Q/FACTORIAL" : "",
		       bits >= 32 ? " (child failed)" : "");
}

/*
 * The owner's queue as the intruder left it: the published NOP not
 * consumed, the buffer still registered, the queue still started; then
 * the owner's KICK runs it.
 */
static void check_untouched(struct __test_metadata *_metadata,
			    struct wd_queue *q, uint32_t h)
{
	struct wd_queue_status st;
	struct wd_cqe cqe;

	EXPECT_EQ(0U, wd_sq_head(q));
	EXPECT_TRUE(wd_cq_quiet(q, 100));
	wd_status(q, &st);
	EXPECT_EQ((__u32)WD_QUEUE_STARTED, st.state);
	EXPECT_EQ(0ULL, st.submitted);
	EXPECT_EQ(1ULL, st.buffers);
	EXPECT_LT(0ULL, st.mapped_pages);
	ASSERT_EQ(1, wd_kick(q)) TH_LOG("%s", wd_ring_error());
	ASSERT_EQ(0, wd_reap(q, &cqe, 1, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(5ULL, cqe.user_data);
	EXPECT_EQ(0, cqe.status);
	EXPECT_EQ(0, wd_unregister(q->fd, h));
}

/* A child that inherited the fd across fork() is not the owner. */
TEST_F(owner, forked_child)
{
	struct wd_desc d = wd_mkdesc(WD_EDU_OP_NOP, 5, NULL, NULL, 0, 0);
	int status;
	uint32_t h;
	pid_t pid;

	ASSERT_EQ(0, wd_register(self->q.fd, self->buf, BUF_LEN, 0, &h));
	ASSERT_EQ(1U, wd_sq_push(&self->q, &d, 1));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(intruder(self->q.fd, h, self->q.dus_len, false));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	check_intruder(_metadata, status);
	/* Its exit, and its copy of the fd going, did not orphan the queue. */
	check_untouched(_metadata, &self->q, h);
}

/* Nor is a process that got the fd over a unix socket. */
TEST_F(owner, scm_rights)
{
	struct wd_desc d = wd_mkdesc(WD_EDU_OP_NOP, 5, NULL, NULL, 0, 0);
	int sv[2], status, fd;
	uint32_t h;
	pid_t pid;
	char c;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		/* Drop the inherited queue: only the received fd counts. */
		close(self->q.fd);
		close(sv[0]);
		if (read(sv[1], &h, sizeof(h)) != sizeof(h))
			_exit(100);
		fd = recv_fd(sv[1], &c);
		if (fd < 0)
			_exit(101);
		_exit(intruder(fd, h, self->q.dus_len, false));
	}
	close(sv[1]);
	ASSERT_EQ(0, wd_register(self->q.fd, self->buf, BUF_LEN, 0, &h));
	ASSERT_EQ(1U, wd_sq_push(&self->q, &d, 1));
	/* The owner's handle, to try to unregister. */
	ASSERT_EQ((ssize_t)sizeof(h), write(sv[0], &h, sizeof(h)));
	ASSERT_EQ(0, send_fd(sv[0], self->q.fd, 'q'));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	close(sv[0]);
	check_intruder(_metadata, status);
	check_untouched(_metadata, &self->q, h);
}

/*
 * A process that got the fd may map the status page as often as it likes,
 * writable too, as libwd does, but its mappings never count against the
 * owner's: while it holds one, the owner maps the status page itself.
 */
TEST_F(owner, receiver_mapping_never_blocks_owner)
{
	size_t mmio = self->q.st_len;
	int sv[2], status, fd;
	void *mine, *p1, *p2;
	pid_t pid;
	char c;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	/* The owner gives its own mapping up first. */
	ASSERT_EQ(0, munmap(self->q.st, mmio));
	self->q.st = NULL;
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		close(self->q.fd);
		close(sv[0]);
		fd = recv_fd(sv[1], &c);
		if (fd < 0)
			_exit(101);
		p1 = wd_map(fd, WD_REGION_MMIO, mmio, PROT_READ | PROT_WRITE);
		p2 = wd_map(fd, WD_REGION_MMIO, mmio, PROT_READ);
		if (p1 == MAP_FAILED || p2 == MAP_FAILED)
			_exit(102);
		if (wd_read32(&((struct wd_queue_status *)p2)->magic) !=
		    WD_QUEUE_STATUS_MAGIC)
			_exit(103);
		/* Mapped: tell the owner, and hold on until it is done. */
		if (write(sv[1], "m", 1) != 1 || read(sv[1], &c, 1) != 1)
			_exit(104);
		_exit(0);
	}
	close(sv[1]);
	ASSERT_EQ(0, send_fd(sv[0], self->q.fd, 'q'));
	ASSERT_EQ(1, read(sv[0], &c, 1));
	mine = wd_map(self->q.fd, WD_REGION_MMIO, mmio, PROT_READ | PROT_WRITE);
	EXPECT_NE(MAP_FAILED, mine) TH_LOG("owner's mmap: %s", strerror(errno));
	/* The owner's own second mapping is still refused. */
	EXPECT_EQ(MAP_FAILED, wd_map(self->q.fd, WD_REGION_MMIO, mmio,
				     PROT_READ));
	EXPECT_EQ(EEXIST, errno);
	ASSERT_EQ(1, write(sv[0], "x", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	close(sv[0]);
	EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("receiver status %#x", status);
	if (mine != MAP_FAILED)
		self->q.st = mine;
}

struct thread_arg {
	struct wd_queue *q;
	char *buf;
	int ret;
	char why[128];
};

static void *thread_fn(void *p)
{
	struct thread_arg *a = p;
	struct wd_desc d;
	struct wd_cqe cqe;
	uint32_t h;

	a->ret = -1;
	if (wd_register(a->q->fd, a->buf, BUF_LEN, 0, &h)) {
		snprintf(a->why, sizeof(a->why), "REGISTER: %s",
			 strerror(errno));
		return NULL;
	}
	d = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 8, a->buf, NULL, BUF_LEN, 0);
	d.flags = WD_DESC_REGISTERED;
	if (wd_run1(a->q, &d, &cqe)) {
		snprintf(a->why, sizeof(a->why), "%s", wd_ring_error());
		return NULL;
	}
	if (cqe.status || cqe.result != wd_crc32c(0, a->buf, BUF_LEN)) {
		snprintf(a->why, sizeof(a->why), "status %d", cqe.status);
		return NULL;
	}
	if (wd_unregister(a->q->fd, h)) {
		snprintf(a->why, sizeof(a->why), "UNREGISTER: %s",
			 strerror(errno));
		return NULL;
	}
	a->ret = 0;
	return NULL;
}

/* Another thread shares the address space, so it is the owner too. */
TEST_F(owner, thread)
{
	struct thread_arg a = { .q = &self->q, .buf = self->buf };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, thread_fn, &a));
	ASSERT_EQ(0, pthread_join(t, NULL));
	EXPECT_EQ(0, a.ret) TH_LOG("%s", a.why);
}

/*
 * Copy-on-write after fork() never moves the parent's data away from the
 * device: the parent writes to its registered buffers after the fork and
 * the device sees it; the device writes to the parent's pages and the
 * parent sees it, including pages still shared with the child, which
 * keeps its own contents whatever either side does.
 *
 * Child exit bits: 1 src, 2 dst, 4 plain, 8 late not as the child left
 * them.
 */
TEST_F_TIMEOUT(owner, fork_cow, 60)
{
	char *src, *dst, *plain = self->buf, *late;
	int go[2], done[2], status, bits;
	struct wd_desc d[4];
	struct wd_cqe cqe[4];
	uint32_t hs, hd, hl;
	pid_t pid;
	char c;

	src = wd_alloc(BUF_LEN);
	dst = wd_alloc(BUF_LEN);
	late = wd_alloc(BUF_LEN);
	ASSERT_NE(NULL, src);
	ASSERT_NE(NULL, dst);
	ASSERT_NE(NULL, late);
	wd_fill(src, BUF_LEN, 1, 0);
	memset(dst, 0, BUF_LEN);
	wd_fill(late, BUF_LEN, 3, 0);
	ASSERT_EQ(0, wd_register(self->q.fd, src, BUF_LEN, 0, &hs));
	ASSERT_EQ(0, wd_register(self->q.fd, dst, BUF_LEN, WD_REGISTER_WRITE,
				 &hd));
	ASSERT_EQ(0, pipe(go));
	ASSERT_EQ(0, pipe(done));

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		/* Write to its copies of src and dst; leave plain and late. */
		if (read(go[0], &c, 1) != 1)
			_exit(100);
		wd_fill(src, BUF_LEN, 99, 0);
		wd_fill(dst, BUF_LEN, 98, 0);
		if (write(done[1], "w", 1) != 1)
			_exit(101);
		if (read(go[0], &c, 1) != 1)
			_exit(102);
		bits = 0;
		if (wd_check(src, BUF_LEN, 99, 0) != -1)
			bits |= 1;
		if (wd_check(dst, BUF_LEN, 98, 0) != -1)
			bits |= 2;
		if (wd_check_byte(plain, BUF_LEN, 0x11) != -1)
			bits |= 4;
		if (wd_check(late, BUF_LEN, 3, 0) != -1)
			bits |= 8;
		_exit(bits);
	}
	ASSERT_EQ(1, write(go[1], "g", 1));
	ASSERT_EQ(1, read(done[0], &c, 1));

	/*
	 * late is still shared with the child. Registered read-only now,
	 * then written by the parent: the device must see the new data.
	 */
	ASSERT_EQ(0, wd_register(self->q.fd, late, BUF_LEN, 0, &hl));
	wd_fill(late, BUF_LEN, 4, 0);
	/* The parent writes its src after the fork. */
	wd_fill(src, BUF_LEN, 2, 0);

	d[0] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 0, src, dst, BUF_LEN, 0);
	d[0].flags = WD_DESC_REGISTERED;
	/* plain is shared with the child too, and not registered. */
	d[1] = wd_mkdesc(WD_EDU_OP_EMU_MEMCPY, 1, src, plain, BUF_LEN, 0);
	d[2] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 2, src, NULL, BUF_LEN, 0);
	d[2].flags = WD_DESC_REGISTERED;
	d[3] = wd_mkdesc(WD_EDU_OP_EMU_CRC32C, 3, late, NULL, BUF_LEN, 0);
	d[3].flags = WD_DESC_REGISTERED;
	ASSERT_EQ(0, wd_run(&self->q, d, 4, cqe, WD_WAIT_MS))
		TH_LOG("%s", wd_ring_error());
	EXPECT_EQ(0, cqe[0].status);
	EXPECT_EQ(0, cqe[1].status);
	EXPECT_EQ(-1, wd_check(dst, BUF_LEN, 2, 0))
		TH_LOG("the parent does not see the device's write");
	EXPECT_EQ(-1, wd_check(plain, BUF_LEN, 2, 0))
		TH_LOG("the parent does not see the device's write");
	EXPECT_EQ(-1, wd_check(src, BUF_LEN, 2, 0));
	EXPECT_EQ(0, cqe[2].status);
	EXPECT_EQ(wd_crc32c(0, src, BUF_LEN), cqe[2].result)
		TH_LOG("the device read src as it was before the fork");
	EXPECT_EQ(0, cqe[3].status);
	EXPECT_EQ(wd_crc32c(0, late, BUF_LEN), cqe[3].result)
		TH_LOG("the device read late as it was before the parent wrote");

	ASSERT_EQ(1, write(go[1], "c", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	bits = WEXITSTATUS(status);
	EXPECT_EQ(0, bits)
		TH_LOG("the child's copy changed:%s%s%s%s%s",
		       bits & 1 ? " src" : "", bits & 2 ? " dst" : "",
		       bits & 4 ? " plain" : "", bits & 8 ? " late" : "",
		       bits >= 16 ? " (child failed)" : "");
	EXPECT_EQ(0, wd_unregister(self->q.fd, hs));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hd));
	EXPECT_EQ(0, wd_unregister(self->q.fd, hl));
	munmap(src, BUF_LEN);
	munmap(dst, BUF_LEN);
	munmap(late, BUF_LEN);
}

#define ORPHAN_CMDS	4

/*
 * The child: opens a queue, registers buffers, queues four slow DMA
 * copies (13 s of work), hands the fd to the parent and exits at once.
 * Exit status: 0, or where it failed.
 */
static int orphan_child(const struct wd_dev *dev, int sock)
{
	const size_t len = WD_EDU_DMA_COPY_MAX;
	struct wd_desc d[ORPHAN_CMDS];
	struct wd_queue q;
	char *src, *dst;
	uint32_t h;
	int i;
	char c;

	if (wd_queue_open(&q, dev, 0))
		return 1;
	src = wd_alloc(len);
	dst = wd_alloc(ORPHAN_CMDS * len);
	if (!src || !dst)
		return 2;
	memset(src, 1, len);
	memset(dst, 0, ORPHAN_CMDS * len);
	if (wd_register(q.fd, src, len, 0, &h) ||
	    wd_register(q.fd, dst, ORPHAN_CMDS * len, WD_REGISTER_WRITE, &h))
		return 3;
	for (i = 0; i < ORPHAN_CMDS; i++)
		d[i] = wd_mkdesc(WD_EDU_OP_DMA_COPY, i, src, dst + i * len,
				 len, 0);
	if (wd_sq_push(&q, d, ORPHAN_CMDS) != ORPHAN_CMDS ||
	    wd_kick(&q) != ORPHAN_CMDS)
		return 4;
	if (send_fd(sock, q.fd, 'q'))
		return 5;
	/* Exit only once the parent holds the fd. */
	if (read(sock, &c, 1) != 1)
		return 6;
	return 0;
}

/*
 * The owner's address space exits while another process holds the fd:
 * the queue is orphaned. Its status page says so, every pin is dropped,
 * and its commands complete: cancelled, bar the one that may have been
 * running. The holder still cannot use it, and closing it frees it.
 */
TEST_F_TIMEOUT(owner, orphaned, 60)
{
	const struct wd_dev *dev = &self->devs[0];
	size_t mmio = wd_region_size(dev, WD_REGION_MMIO);
	size_t dus = wd_region_size(dev, WD_REGION_DUS);
	struct wd_queue_status *st;
	int sv[2], status, fd, avail, err;
	uint32_t h = 1;
	pid_t pid;
	char c;

	wd_queue_close(&self->q);
	avail = wd_avail(dev);
	ASSERT_LT(0, avail);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		close(sv[0]);
		_exit(orphan_child(dev, sv[1]));
	}
	close(sv[1]);
	fd = recv_fd(sv[0], &c);
	ASSERT_LE(0, fd) TH_LOG("no fd from the child");
	ASSERT_EQ(1, write(sv[0], "x", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	close(sv[0]);
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("child status %#x", status);

	/* Anyone holding the fd may watch the status page. */
	st = wd_map(fd, WD_REGION_MMIO, mmio, PROT_READ);
	ASSERT_NE(MAP_FAILED, st) TH_LOG("%s", strerror(errno));
	EXPECT_TRUE(WD_WAIT_FOR(wd_read32(&st->state) == WD_QUEUE_ORPHANED, 5000))
		TH_LOG("state %u", wd_read32(&st->state));
	EXPECT_TRUE(WD_WAIT_FOR(wd_read64(&st->pinned_pages) == 0, 5000))
		TH_LOG("%llu pages pinned",
		       (unsigned long long)wd_read64(&st->pinned_pages));
	/* The address space's release took every page from the device. */
	EXPECT_EQ(0ULL, wd_read64(&st->mapped_pages));
	EXPECT_EQ((uint64_t)ORPHAN_CMDS, wd_read64(&st->submitted));
	EXPECT_TRUE(WD_WAIT_FOR(wd_read64(&st->completed) == ORPHAN_CMDS, 20000))
		TH_LOG("%llu completed",
		       (unsigned long long)wd_read64(&st->completed));
	/* The header: "pending commands are cancelled". */
	EXPECT_LE((uint64_t)ORPHAN_CMDS - 1, wd_read64(&st->errors))
		TH_LOG("only %llu cancelled",
		       (unsigned long long)wd_read64(&st->errors));

	/* Still not the holder's to use, nor to restart. */
	EXPECT_EQ(-1, ioctl(fd, WD_CMD_PUT_Q));
	EXPECT_EQ(EPERM, errno) TH_LOG("PUT_Q: %s", strerror(errno));
	EXPECT_EQ(-1, ioctl(fd, WD_CMD_START_Q));
	EXPECT_EQ(EPERM, errno) TH_LOG("START_Q: %s", strerror(errno));
	EXPECT_EQ(-1, ioctl(fd, WD_IOCTL_KICK));
	err = errno;
	EXPECT_TRUE(err == EPERM || err == EINVAL) TH_LOG("KICK: %s",
							  strerror(err));
	EXPECT_EQ(-1, wd_register(fd, self->buf, BUF_LEN, 0, &h));
	EXPECT_EQ(EPERM, errno) TH_LOG("REGISTER: %s", strerror(errno));
	EXPECT_EQ(-1, wd_unregister(fd, h));
	EXPECT_EQ(EPERM, errno) TH_LOG("UNREGISTER: %s", strerror(errno));
	EXPECT_EQ(MAP_FAILED, wd_map(fd, WD_REGION_DUS, dus,
				     PROT_READ | PROT_WRITE));
	EXPECT_EQ(EPERM, errno) TH_LOG("mmap DUS: %s", strerror(errno));
	EXPECT_EQ((__u32)WD_QUEUE_ORPHANED, wd_read32(&st->state));

	munmap(st, mmio);
	EXPECT_EQ(avail - 1, wd_avail(dev));
	EXPECT_EQ(0, close(fd));
	EXPECT_EQ(avail, wd_avail(dev));
}

TEST_HARNESS_MAIN
