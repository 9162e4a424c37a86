// SPDX-License-Identifier: GPL-2.0
/*
 * The whole flow of a warpdrive shadow-ring queue, with nothing but the UAPI
 * header: for people writing their own library.
 *
 *   wd_example [/dev/edu-0]
 *
 * Opens and starts a queue, maps its status page and rings, registers two
 * buffers, copies one into the other on the driver's bulk engine, and checks
 * the copy and the completion. Error handling is minimal on purpose: every
 * failure prints what failed and exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <misc/warpdrive.h>

#define LEN	(1 << 20)

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* The region sizes are in sysfs; read one as the libraries do. */
static size_t region_size(const char *node, const char *attr)
{
	char path[256];
	unsigned long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/uacce/%s/%s",
		 strrchr(node, '/') + 1, attr);
	f = fopen(path, "r");
	if (!f || fscanf(f, "%lu", &v) != 1)
		die(path);
	fclose(f);
	return v;
}

static uint32_t reg(int fd, void *addr, size_t len, uint32_t flags)
{
	struct wd_register r = {
		.addr = (uintptr_t)addr, .len = len, .flags = flags,
	};

	if (ioctl(fd, WD_IOCTL_REGISTER, &r))
		die("WD_IOCTL_REGISTER");
	return r.handle;
}

int main(int argc, char **argv)
{
	const char *node = argc > 1 ? argv[1] : "/dev/edu-0";
	size_t mmio_len = region_size(node, "region_mmio_size");
	size_t dus_len = region_size(node, "region_dus_size");
	struct wd_ring_header *h;
	struct wd_queue_status *st;
	struct wd_desc *sq;
	struct wd_cqe *cq, c;
	uint32_t src_h, dst_h, tail, head;
	char *dus, *src, *dst;
	int fd, i;

	/* One open() is one hardware queue, or EBUSY when all are taken. */
	fd = open(node, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die(node);
	if (ioctl(fd, WD_CMD_START_Q))
		die("START_Q");

	/* Page offset 0 is the read-only status page, 1 the rings. */
	st = mmap(NULL, mmio_len, PROT_READ, MAP_SHARED, fd,
		  WD_REGION_MMIO * getpagesize());
	dus = mmap(NULL, dus_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		   WD_REGION_DUS * getpagesize());
	if (st == MAP_FAILED || dus == MAP_FAILED)
		die("mmap");
	h = (struct wd_ring_header *)dus;
	if (h->magic != WD_RING_MAGIC || st->magic != WD_QUEUE_STATUS_MAGIC)
		return fprintf(stderr, "not a shadow-ring queue\n"), 1;
	sq = (struct wd_desc *)(dus + h->sq_offset);
	cq = (struct wd_cqe *)(dus + h->cq_offset);

	/* Buffers: mirrored for the device (not pinned), used many times. */
	src = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED)
		die("mmap buffers");
	for (i = 0; i < LEN; i++)
		src[i] = (char)(i * 7 + 1);
	memset(dst, 0, LEN);
	src_h = reg(fd, src, LEN, 0);
	dst_h = reg(fd, dst, LEN, WD_REGISTER_WRITE);

	/* Write the descriptor, then publish the tail with release order. */
	tail = h->sq_tail;
	sq[tail & (h->sq_entries - 1)] = (struct wd_desc) {
		.user_data = 42,
		.opcode = WD_EDU_OP_EMU_MEMCPY,
		.flags = WD_DESC_REGISTERED,
		.src = (uintptr_t)src,
		.dst = (uintptr_t)dst,
		.len = LEN,
	};
	__atomic_store_n(&h->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (ioctl(fd, WD_IOCTL_KICK) != 1)
		die("WD_IOCTL_KICK");

	/* poll() says when a completion is there; the tail says which. */
	head = h->cq_head;
	while (__atomic_load_n(&h->cq_tail, __ATOMIC_ACQUIRE) == head) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (poll(&pfd, 1, 10000) <= 0 ||
		    (pfd.revents & (POLLERR | POLLHUP)))
			return fprintf(stderr, "no completion\n"), 1;
	}
	c = cq[head & (h->cq_entries - 1)];
	__atomic_store_n(&h->cq_head, head + 1, __ATOMIC_RELEASE);

	if (c.user_data != 42 || c.status)
		return fprintf(stderr, "completion %llu: %s\n",
			       (unsigned long long)c.user_data,
			       strerror(-c.status)), 1;
	if (memcmp(src, dst, LEN))
		return fprintf(stderr, "copy differs\n"), 1;
	printf("%s: copied %d bytes, result %llu; queue %u: %llu submitted, %llu completed\n",
	       node, LEN, (unsigned long long)c.result, st->queue_index,
	       (unsigned long long)st->submitted,
	       (unsigned long long)st->completed);

	/* Unregister (or just close: that releases everything). */
	if (ioctl(fd, WD_IOCTL_UNREGISTER, &src_h) ||
	    ioctl(fd, WD_IOCTL_UNREGISTER, &dst_h))
		die("WD_IOCTL_UNREGISTER");
	munmap(dus, dus_len);
	munmap(st, mmio_len);
	close(fd);
	return 0;
}
