// SPDX-License-Identifier: GPL-2.0
/*
 * wd_demo: lists every uacce device, then opens two queues on each warpdrive
 * edu device and runs real work through their shadow rings: factorials on
 * the device's factorial unit, a copy by its DMA engine, and copies and
 * CRC-32Cs by the emulated bulk engine, from plain and from registered
 * memory. Every result is checked against the CPU. It ends with the
 * command rate of NOPs and of 64 KiB copies, and the queues' status pages.
 * Needs only libc and include/uapi of this repository.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <misc/warpdrive.h>

#define CLASS_DIR	"/sys/class/uacce"
#define EDU_API		"warpdrive_edu_v2"
#define MAX_DEVS	16
#define QUEUES		2
#define MAX_N		12
#define WAIT_MS		30000
#define BENCH_MS	1000		/* per measurement */
#define BULK_LEN	(1U << 20)	/* emulated copy and CRC */
#define DMA_LEN		8192		/* two device transfers of 4 KiB */
#define COPY_LEN	(64U << 10)	/* the measured copy */

struct wd_device {
	char name[NAME_MAX + 1];
	char api[64];
	char algs[256];
	char bdf[64];
	char numa[16];
	unsigned long flags, mmio_size, dus_size;
	long avail;
};

/* A started queue with its status page and ring mapped. */
struct queue {
	int fd;
	struct wd_queue_status *st;
	void *dus;
	struct wd_ring_header *hdr;
	struct wd_desc *sq;
	struct wd_cqe *cq;
};

static int errors;

#define fail(fmt, ...) do {						\
	printf("wd_demo: error: " fmt "\n", ##__VA_ARGS__);		\
	errors++;							\
} while (0)

/* Reads one attribute into @buf without its trailing newline; "?" if none. */
static void attr(const char *dev, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];
	ssize_t n = -1;
	int fd;

	snprintf(path, sizeof(path), "%s/%s/%s", CLASS_DIR, dev, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, len - 1);
		close(fd);
	}
	if (n <= 0) {
		snprintf(buf, len, "?");
		return;
	}
	buf[n] = '\0';
	if (buf[n - 1] == '\n')
		buf[n - 1] = '\0';
}

static unsigned long attr_ul(const char *dev, const char *name)
{
	char buf[32];

	attr(dev, name, buf, sizeof(buf));
	return strtoul(buf, NULL, 10);
}

static void load(struct wd_device *d)
{
	char path[PATH_MAX], real[PATH_MAX], buf[32], *p;

	attr(d->name, "api", d->api, sizeof(d->api));
	attr(d->name, "algorithms", d->algs, sizeof(d->algs));
	for (p = d->algs; *p; p++)
		if (*p == '\n')
			*p = ',';
	attr(d->name, "device/numa_node", d->numa, sizeof(d->numa));
	attr(d->name, "available_instances", buf, sizeof(buf));
	d->avail = strtol(buf, NULL, 10);
	d->flags = attr_ul(d->name, "flags");
	d->mmio_size = attr_ul(d->name, "region_mmio_size");
	d->dus_size = attr_ul(d->name, "region_dus_size");
	snprintf(path, sizeof(path), "%s/%s/device", CLASS_DIR, d->name);
	snprintf(d->bdf, sizeof(d->bdf), "%s",
		 realpath(path, real) ? basename(real) : "?");
}

static void show(const struct wd_device *d)
{
	printf("%s (PCI %s, NUMA node %s)\n", d->name, d->bdf, d->numa);
	printf("  api %s, flags %#lx%s, algorithms %s\n", d->api, d->flags,
	       d->flags & WD_DEV_SHADOW_RING ? " (shadow ring)" : "", d->algs);
	printf("  available_instances %ld, mmio region %lu bytes, dus region %lu bytes\n",
	       d->avail, d->mmio_size, d->dus_size);
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

static uint32_t fact_u32(uint32_t n)
{
	uint32_t r = 1;

	while (n > 1)
		r *= n--;
	return r;
}

/* CRC-32C (Castagnoli), chainable from 0, as the emulated engine does it. */
static uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	static uint32_t table[256];
	const unsigned char *p = buf;
	uint32_t c;
	int i, j;

	if (!table[1]) {
		for (i = 0; i < 256; i++) {
			c = i;
			for (j = 0; j < 8; j++)
				c = (c >> 1) ^ (c & 1 ? 0x82f63b78 : 0);
			table[i] = c;
		}
	}
	crc = ~crc;
	while (len--)
		crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xff];
	return ~crc;
}

static void fill(void *p, size_t len, uint32_t seed)
{
	unsigned char *b = p;
	size_t i;

	for (i = 0; i < len; i++) {
		seed = seed * 1103515245 + 12345;
		b[i] = seed >> 16;
	}
}

static void *alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static const char *state_name(uint32_t state)
{
	switch (state) {
	case WD_QUEUE_INIT:
		return "init";
	case WD_QUEUE_STARTED:
		return "started";
	case WD_QUEUE_ORPHANED:
		return "orphaned";
	case WD_QUEUE_DEAD:
		return "dead";
	}
	return "?";
}

static int queue_open(struct queue *q, const struct wd_device *d)
{
	char node[PATH_MAX];
	struct wd_ring_header *h;

	memset(q, 0, sizeof(*q));
	snprintf(node, sizeof(node), "/dev/%s", d->name);
	q->fd = open(node, O_RDWR | O_CLOEXEC);
	if (q->fd < 0)
		return -errno;
	if (ioctl(q->fd, WD_CMD_START_Q))
		return -errno;
	q->st = mmap(NULL, d->mmio_size, PROT_READ, MAP_SHARED, q->fd,
		     WD_REGION_MMIO * getpagesize());
	if (q->st == MAP_FAILED)
		return -errno;
	q->dus = mmap(NULL, d->dus_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      q->fd, WD_REGION_DUS * getpagesize());
	if (q->dus == MAP_FAILED)
		return -errno;
	h = q->hdr = q->dus;
	if (q->st->magic != WD_QUEUE_STATUS_MAGIC || h->magic != WD_RING_MAGIC ||
	    h->version != WD_RING_VERSION ||
	    h->desc_size != sizeof(struct wd_desc) ||
	    h->cqe_size != sizeof(struct wd_cqe) ||
	    h->sq_offset + (size_t)h->sq_entries * h->desc_size > d->dus_size ||
	    h->cq_offset + (size_t)h->cq_entries * h->cqe_size > d->dus_size)
		return -EPROTO;
	q->sq = (void *)((char *)q->dus + h->sq_offset);
	q->cq = (void *)((char *)q->dus + h->cq_offset);
	return 0;
}

static void queue_close(struct queue *q, const struct wd_device *d)
{
	if (q->st && q->st != MAP_FAILED)
		munmap(q->st, d->mmio_size);
	if (q->dus && q->dus != MAP_FAILED)
		munmap(q->dus, d->dus_size);
	if (q->fd > 0)
		close(q->fd);
}

/*
 * Runs @n commands through the ring, as many at a time as fit, and
 * collects their completions into out[], indexed by user_data (which must
 * be 0..n-1). Returns 0 or -errno.
 */
static int run(struct queue *q, struct wd_desc *d, unsigned int n,
	       struct wd_cqe *out)
{
	struct wd_ring_header *h = q->hdr;
	unsigned int pushed = 0, done = 0;
	uint32_t tail, head, room;
	struct pollfd pfd;
	struct wd_cqe c;
	int ret;

	while (done < n) {
		/* Descriptors first, then the tail that publishes them. */
		tail = h->sq_tail;
		room = h->sq_entries - (tail - __atomic_load_n(&h->sq_head,
							       __ATOMIC_ACQUIRE));
		for (; pushed < n && room; room--)
			q->sq[tail++ & (h->sq_entries - 1)] = d[pushed++];
		__atomic_store_n(&h->sq_tail, tail, __ATOMIC_RELEASE);
		if (tail != __atomic_load_n(&h->sq_head, __ATOMIC_ACQUIRE) &&
		    ioctl(q->fd, WD_IOCTL_KICK) < 0)
			return -errno;

		/* Completions up to cq_tail, then hand the slots back. */
		head = h->cq_head;
		if (head == __atomic_load_n(&h->cq_tail, __ATOMIC_ACQUIRE)) {
			pfd = (struct pollfd){ .fd = q->fd, .events = POLLIN };
			ret = poll(&pfd, 1, WAIT_MS);
			if (ret < 0)
				return -errno;
			if (!ret)
				return -ETIMEDOUT;
			if (pfd.revents & (POLLERR | POLLHUP))
				return -ENODEV;
			continue;
		}
		while (head != __atomic_load_n(&h->cq_tail, __ATOMIC_ACQUIRE)) {
			c = q->cq[head++ & (h->cq_entries - 1)];
			if (c.user_data >= n)
				return -EBADMSG;
			out[c.user_data] = c;
			done++;
		}
		__atomic_store_n(&h->cq_head, head, __ATOMIC_RELEASE);
	}
	return 0;
}

static struct wd_desc desc(uint16_t op, uint64_t ud, const void *src,
			   void *dst, uint64_t len, uint64_t arg)
{
	return (struct wd_desc){
		.user_data = ud, .opcode = op, .src = (uintptr_t)src,
		.dst = (uintptr_t)dst, .len = len, .arg = arg,
	};
}

/* Checks one completion; returns 1 if it is right. */
static int check(const struct wd_device *d, const char *what,
		 const struct wd_cqe *c, uint64_t want)
{
	if (c->status) {
		fail("%s: %s: status %d (%s)", d->name, what, c->status,
		     strerror(-c->status));
		return 0;
	}
	if (c->result != want) {
		fail("%s: %s: result %#llx, CPU says %#llx", d->name, what,
		     (unsigned long long)c->result, (unsigned long long)want);
		return 0;
	}
	return 1;
}

/* 1!..12! on the device's factorial unit, through the ring. */
static void do_factorials(const struct wd_device *d, struct queue *q)
{
	struct wd_desc ds[MAX_N];
	struct wd_cqe cs[MAX_N];
	char line[256] = "";
	size_t len = 0;
	int n, ret;

	for (n = 1; n <= MAX_N; n++)
		ds[n - 1] = desc(WD_EDU_OP_FACTORIAL, n - 1, NULL, NULL, 0, n);
	ret = run(q, ds, MAX_N, cs);
	if (ret) {
		fail("%s: factorials: %s", d->name, strerror(-ret));
		return;
	}
	for (n = 1; n <= MAX_N; n++) {
		check(d, "factorial", &cs[n - 1], fact_u32(n));
		len += snprintf(line + len, sizeof(line) - len, " %llu",
				(unsigned long long)cs[n - 1].result);
	}
	printf("  ring: 1!..%d!:%s\n", MAX_N, line);
}

/* The device's DMA engine: 8 KiB through its 4 KiB buffer. */
static void do_dma_copy(const struct wd_device *d, struct queue *q)
{
	char *src = alloc(DMA_LEN), *dst = alloc(DMA_LEN);
	struct wd_desc ds;
	struct wd_cqe c;
	uint64_t t0;
	int ret;

	if (!src || !dst) {
		fail("out of memory");
		return;
	}
	fill(src, DMA_LEN, 1);
	ds = desc(WD_EDU_OP_DMA_COPY, 0, src, dst, DMA_LEN, 0);
	t0 = now_us();
	ret = run(q, &ds, 1, &c);
	if (ret)
		fail("%s: dma_copy: %s", d->name, strerror(-ret));
	else if (check(d, "dma_copy", &c, DMA_LEN) &&
		 memcmp(src, dst, DMA_LEN))
		fail("%s: dma_copy: data differs", d->name);
	else
		printf("  ring: dma_copy %u bytes by the device, %llu ms, data verified\n",
		       DMA_LEN, (unsigned long long)(now_us() - t0) / 1000);
	munmap(src, DMA_LEN);
	munmap(dst, DMA_LEN);
}

/*
 * The emulated engine: a 1 MiB copy at odd offsets, the CRC-32C of the
 * same bytes, the standard check value, and a CRC chained across two
 * commands.
 */
static void do_bulk(const struct wd_device *d, struct queue *q)
{
	const size_t len = BULK_LEN + 32;
	char *src = alloc(len), *dst = alloc(len), *chk;
	struct wd_desc ds[4];
	struct wd_cqe cs[4];
	uint32_t crc;
	int ret;

	if (!src || !dst) {
		fail("out of memory");
		return;
	}
	fill(src, len, 2);
	chk = src + BULK_LEN + 16;
	memcpy(chk, "123456789", 9);
	crc = crc32c(0, src + 3, BULK_LEN);
	ds[0] = desc(WD_EDU_OP_EMU_MEMCPY, 0, src + 3, dst + 5, BULK_LEN, 0);
	ds[1] = desc(WD_EDU_OP_EMU_CRC32C, 1, src + 3, NULL, BULK_LEN, 0);
	ds[2] = desc(WD_EDU_OP_EMU_CRC32C, 2, chk, NULL, 9, 0);
	/* "56789" continued from the CRC of "1234" is the whole again. */
	ds[3] = desc(WD_EDU_OP_EMU_CRC32C, 3, chk + 4, NULL, 5,
		     crc32c(0, chk, 4));
	ret = run(q, ds, 4, cs);
	if (ret) {
		fail("%s: bulk: %s", d->name, strerror(-ret));
		goto out;
	}
	if (check(d, "emulated_memcpy", &cs[0], BULK_LEN) &&
	    memcmp(src + 3, dst + 5, BULK_LEN))
		fail("%s: emulated_memcpy: data differs", d->name);
	check(d, "emulated_crc32c", &cs[1], crc);
	check(d, "crc32c(\"123456789\")", &cs[2], 0xe3069283);
	check(d, "chained crc32c", &cs[3], 0xe3069283);
	printf("  ring: emulated_memcpy %u bytes verified, crc32c %#010x verified, crc32c(\"123456789\") = %#010llx, chained %#010llx\n",
	       BULK_LEN, crc, (unsigned long long)cs[2].result,
	       (unsigned long long)cs[3].result);
out:
	munmap(src, len);
	munmap(dst, len);
}

/*
 * Commands per second of @one, repeated for a second in batches that fill
 * the submission ring. Returns the rate, 0 on failure.
 */
static double rate(const struct wd_device *dev, struct queue *q,
		   struct wd_desc one, const char *what, uint64_t *count)
{
	unsigned int batch = q->hdr->sq_entries, i;
	struct wd_desc *ds = calloc(batch, sizeof(*ds));
	struct wd_cqe *cs = calloc(batch, sizeof(*cs));
	uint64_t t0 = now_us(), t;
	double r = 0;
	int ret;

	*count = 0;
	if (!ds || !cs) {
		fail("out of memory");
		goto out;
	}
	for (i = 0; i < batch; i++) {
		ds[i] = one;
		ds[i].user_data = i;
	}
	do {
		ret = run(q, ds, batch, cs);
		if (ret) {
			fail("%s: %s: %s", dev->name, what, strerror(-ret));
			goto out;
		}
		for (i = 0; i < batch; i++)
			if (cs[i].status) {
				fail("%s: %s: status %d", dev->name, what,
				     cs[i].status);
				goto out;
			}
		*count += batch;
		t = now_us() - t0;
	} while (t < BENCH_MS * 1000ULL);
	r = *count * 1e6 / t;
out:
	free(ds);
	free(cs);
	return r;
}

/* NOPs, then 64 KiB copies between registered buffers. */
static void bench(const struct wd_device *d, struct queue *q)
{
	char *src = alloc(COPY_LEN), *dst = alloc(COPY_LEN);
	struct wd_register rs = { .len = COPY_LEN };
	struct wd_register rd = {
		.len = COPY_LEN, .flags = WD_REGISTER_WRITE,
	};
	struct wd_desc one;
	uint64_t n;
	double r;

	r = rate(d, q, desc(WD_EDU_OP_NOP, 0, NULL, NULL, 0, 0), "nop", &n);
	if (r)
		printf("  ring: %llu NOPs, %.0f commands/s\n",
		       (unsigned long long)n, r);

	if (!src || !dst) {
		fail("out of memory");
		return;
	}
	fill(src, COPY_LEN, 3);
	rs.addr = (uintptr_t)src;
	rd.addr = (uintptr_t)dst;
	if (ioctl(q->fd, WD_IOCTL_REGISTER, &rs) ||
	    ioctl(q->fd, WD_IOCTL_REGISTER, &rd)) {
		fail("%s: REGISTER: %s", d->name, strerror(errno));
		goto out;
	}
	printf("  registered 2 x %u bytes (handles %u, %u): %llu pages mapped for the device, %llu pinned\n",
	       COPY_LEN, rs.handle, rd.handle,
	       (unsigned long long)q->st->mapped_pages,
	       (unsigned long long)q->st->pinned_pages);
	one = desc(WD_EDU_OP_EMU_MEMCPY, 0, src, dst, COPY_LEN, 0);
	one.flags = WD_DESC_REGISTERED;
	r = rate(d, q, one, "64 KiB copies", &n);
	if (r)
		printf("  ring: %llu copies of 64 KiB, %.0f commands/s, %.1f MB/s\n",
		       (unsigned long long)n, r, r * COPY_LEN / 1e6);
	if (memcmp(src, dst, COPY_LEN))
		fail("%s: 64 KiB copies: data differs", d->name);
	if (ioctl(q->fd, WD_IOCTL_UNREGISTER, &rs.handle) ||
	    ioctl(q->fd, WD_IOCTL_UNREGISTER, &rd.handle))
		fail("%s: UNREGISTER: %s", d->name, strerror(errno));
out:
	munmap(src, COPY_LEN);
	munmap(dst, COPY_LEN);
}

static void show_status(const struct queue *q, int i)
{
	const struct wd_queue_status *st = q->st;

	printf("  queue %d status: magic %#x%s, %s, index %u, submitted %llu, completed %llu, errors %llu, bytes %llu, pinned %llu, mapped %llu, buffers %llu\n",
	       i, st->magic,
	       st->magic == WD_QUEUE_STATUS_MAGIC ? " (ok)" : " (BAD)",
	       state_name(st->state), st->queue_index,
	       (unsigned long long)st->submitted,
	       (unsigned long long)st->completed,
	       (unsigned long long)st->errors,
	       (unsigned long long)st->bytes,
	       (unsigned long long)st->pinned_pages,
	       (unsigned long long)st->mapped_pages,
	       (unsigned long long)st->buffers);
}

/* Two queues on one edu device. Returns the number of queues used. */
static int demo(struct wd_device *d)
{
	struct queue q[QUEUES];
	int nq, i, want, ret;

	/* Two queues if the device has them, to show the count dropping. */
	want = d->avail < QUEUES ? d->avail : QUEUES;
	if (want < 1)
		fail("%s: no free queue", d->name);
	for (nq = 0; nq < want; nq++) {
		ret = queue_open(&q[nq], d);
		if (ret) {
			fail("%s: queue %d: %s", d->name, nq, strerror(-ret));
			queue_close(&q[nq], d);
			break;
		}
		printf("  queue %d opened, started and mapped (sq %u, cq %u entries), available_instances now %lu\n",
		       nq, q[nq].hdr->sq_entries, q[nq].hdr->cq_entries,
		       attr_ul(d->name, "available_instances"));
		if (q[nq].st->state != WD_QUEUE_STARTED)
			fail("%s: queue %d: state %u", d->name, nq,
			     q[nq].st->state);
	}
	if (!nq)
		return 0;

	/* The device's own units on the first queue, the bulk engine on the last. */
	do_factorials(d, &q[0]);
	do_dma_copy(d, &q[0]);
	do_bulk(d, &q[nq - 1]);
	bench(d, &q[0]);

	for (i = 0; i < nq; i++) {
		show_status(&q[i], i);
		if (q[i].st->completed != q[i].st->submitted ||
		    q[i].st->errors)
			fail("%s: queue %d: counters do not add up", d->name,
			     i);
		queue_close(&q[i], d);
	}
	printf("  queues closed, available_instances back to %lu\n",
	       attr_ul(d->name, "available_instances"));
	return nq;
}

static int by_name(const void *a, const void *b)
{
	return strverscmp(((const struct wd_device *)a)->name,
			  ((const struct wd_device *)b)->name);
}

int main(void)
{
	static struct wd_device devs[MAX_DEVS];
	int ndevs = 0, nedu = 0, nqueues = 0, i;
	struct dirent *de;
	DIR *dir;

	setvbuf(stdout, NULL, _IOLBF, 0);
	dir = opendir(CLASS_DIR);
	if (!dir) {
		printf("wd_demo: %s: %s\n", CLASS_DIR, strerror(errno));
		return 1;
	}
	while ((de = readdir(dir)) && ndevs < MAX_DEVS)
		if (de->d_name[0] != '.')
			snprintf(devs[ndevs++].name, sizeof(devs[0].name), "%s",
				 de->d_name);
	closedir(dir);
	qsort(devs, ndevs, sizeof(devs[0]), by_name);

	for (i = 0; i < ndevs; i++) {
		load(&devs[i]);
		show(&devs[i]);
		if (strcmp(devs[i].api, EDU_API) ||
		    !(devs[i].flags & WD_DEV_SHADOW_RING)) {
			printf("  not a warpdrive edu device, skipped\n");
			continue;
		}
		nedu++;
		nqueues += demo(&devs[i]);
	}

	if (!nedu)
		fail("no warpdrive edu device under %s", CLASS_DIR);
	if (errors) {
		printf("wd_demo: FAILED with %d error(s)\n", errors);
		return 1;
	}
	printf("wd_demo: %d devices, %d queues, all results verified\n", nedu,
	       nqueues);
	return 0;
}
