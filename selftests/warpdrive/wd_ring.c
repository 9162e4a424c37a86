// SPDX-License-Identifier: GPL-2.0
/*
 * Shadow-ring helpers for the warpdrive selftests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "wd_ring.h"

static __thread char ring_err[256];

const char *wd_ring_error(void)
{
	return ring_err;
}

/* Records why a helper failed and returns @err, a negative errno. */
__printf(2, 3) static int fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ring_err, sizeof(ring_err), fmt, ap);
	va_end(ap);
	return err;
}

/* Prefixes the recorded reason with more context. */
__printf(2, 3) static int fail_more(int err, const char *fmt, ...)
{
	char prev[sizeof(ring_err)], pre[128];
	va_list ap;

	memcpy(prev, ring_err, sizeof(prev));
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	snprintf(ring_err, sizeof(ring_err), "%s: %s", pre, prev);
	return err;
}

void wd_queue_init(struct wd_queue *q)
{
	memset(q, 0, sizeof(*q));
	q->fd = -1;
}

void wd_queue_close(struct wd_queue *q)
{
	if (q->st)
		munmap(q->st, q->st_len);
	if (q->dus)
		munmap(q->dus, q->dus_len);
	if (q->fd >= 0)
		close(q->fd);
	wd_queue_init(q);
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* Checks the ring header against the region it sits in. */
static int check_header(const struct wd_ring_header *h, size_t dus_len)
{
	uint64_t sq_end, cq_end;

	if (h->magic != WD_RING_MAGIC)
		return fail(-EBADMSG, "ring magic %#x", h->magic);
	if (h->version != WD_RING_VERSION)
		return fail(-EBADMSG, "ring version %u", h->version);
	if (h->desc_size != sizeof(struct wd_desc) ||
	    h->cqe_size != sizeof(struct wd_cqe))
		return fail(-EBADMSG, "desc_size %u, cqe_size %u",
			    h->desc_size, h->cqe_size);
	if (!pow2(h->sq_entries) || !pow2(h->cq_entries))
		return fail(-EBADMSG, "sq_entries %u, cq_entries %u",
			    h->sq_entries, h->cq_entries);
	sq_end = (uint64_t)h->sq_offset + (uint64_t)h->sq_entries * h->desc_size;
	cq_end = (uint64_t)h->cq_offset + (uint64_t)h->cq_entries * h->cqe_size;
	if (h->sq_offset < sizeof(*h) || h->cq_offset < sizeof(*h) ||
	    h->sq_offset % 8 || h->cq_offset % 8 ||
	    sq_end > dus_len || cq_end > dus_len ||
	    (h->sq_offset < cq_end && h->cq_offset < sq_end))
		return fail(-EBADMSG,
			    "rings at %u (%u x %u) and %u (%u x %u) in %zu bytes",
			    h->sq_offset, h->sq_entries, h->desc_size,
			    h->cq_offset, h->cq_entries, h->cqe_size, dus_len);
	return 0;
}

int wd_queue_attach(struct wd_queue *q, int fd, size_t mmio_len,
		    size_t dus_len)
{
	void *p;
	int ret;

	wd_queue_init(q);
	q->fd = fd;
	if (mmio_len < sizeof(struct wd_queue_status) ||
	    dus_len < sizeof(struct wd_ring_header)) {
		ret = fail(-EINVAL, "region sizes %zu and %zu", mmio_len,
			   dus_len);
		goto err;
	}
	p = wd_map(fd, WD_REGION_MMIO, mmio_len, PROT_READ);
	if (p == MAP_FAILED) {
		ret = fail(-errno, "mmap MMIO: %s", strerror(errno));
		goto err;
	}
	q->st = p;
	q->st_len = mmio_len;
	p = wd_map(fd, WD_REGION_DUS, dus_len, PROT_READ | PROT_WRITE);
	if (p == MAP_FAILED) {
		ret = fail(-errno, "mmap DUS: %s", strerror(errno));
		goto err;
	}
	q->dus = p;
	q->dus_len = dus_len;
	q->hdr = p;
	if (wd_read32(&q->st->magic) != WD_QUEUE_STATUS_MAGIC) {
		ret = fail(-EBADMSG, "status magic %#x",
			   wd_read32(&q->st->magic));
		goto err;
	}
	ret = check_header(q->hdr, dus_len);
	if (ret)
		goto err;
	q->sq_entries = q->hdr->sq_entries;
	q->cq_entries = q->hdr->cq_entries;
	q->sq = (void *)((char *)p + q->hdr->sq_offset);
	q->cq = (void *)((char *)p + q->hdr->cq_offset);
	return 0;
err:
	wd_queue_close(q);
	return ret;
}

int wd_queue_open(struct wd_queue *q, const struct wd_dev *dev,
		  unsigned int flags)
{
	size_t mmio = wd_region_size(dev, WD_REGION_MMIO);
	size_t dus = wd_region_size(dev, WD_REGION_DUS);
	int fd, ret;

	wd_queue_init(q);
	fd = wd_open(dev);
	if (fd < 0)
		return fail(-errno, "open %s: %s", dev->node, strerror(errno));
	if (!(flags & WD_Q_NOSTART) && ioctl(fd, WD_CMD_START_Q)) {
		ret = fail(-errno, "START_Q: %s", strerror(errno));
		close(fd);
		return ret;
	}
	return wd_queue_attach(q, fd, mmio, dus);
}

unsigned int wd_sq_push(struct wd_queue *q, const struct wd_desc *d,
			unsigned int n)
{
	uint32_t tail = wd_sq_tail(q);
	uint32_t used = tail - wd_sq_head(q);
	unsigned int i, room;

	/* A ring a test corrupted on purpose has no room. */
	room = used > q->sq_entries ? 0 : q->sq_entries - used;
	if (n > room)
		n = room;
	for (i = 0; i < n; i++)
		*wd_sq_slot(q, tail + i) = d[i];
	if (n)
		wd_set_sq_tail(q, tail + n);
	return n;
}

int wd_kick(struct wd_queue *q)
{
	uint32_t head = wd_sq_head(q), moved;
	int ret;

	ret = ioctl(q->fd, WD_IOCTL_KICK);
	if (ret < 0)
		return fail(-errno, "KICK: %s", strerror(errno));
	moved = wd_sq_head(q) - head;
	if (moved != (uint32_t)ret)
		return fail(-EPROTO, "KICK returned %d but sq_head moved %u",
			    ret, moved);
	return ret;
}

int wd_cq_wait(struct wd_queue *q, int timeout_ms)
{
	uint64_t end = wd_now_ms() + timeout_ms;
	struct pollfd pfd;
	uint32_t n;
	int64_t left;
	int ret;

	for (;;) {
		n = wd_cq_count(q);
		if (n > q->cq_entries)
			return fail(-EPROTO, "cq_tail %u, cq_head %u",
				    wd_cq_tail(q), wd_cq_head(q));
		if (n)
			return n;
		left = end - wd_now_ms();
		if (left <= 0)
			return fail(-ETIMEDOUT,
				    "no completion in %d ms (sq_head %u, sq_tail %u, cq_tail %u)",
				    timeout_ms, wd_sq_head(q), wd_sq_tail(q),
				    wd_cq_tail(q));
		pfd = (struct pollfd){ .fd = q->fd, .events = POLLIN };
		ret = poll(&pfd, 1, left);
		if (ret < 0 && errno != EINTR)
			return fail(-errno, "poll: %s", strerror(errno));
		/* The completion may have landed with the error. */
		if (ret > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) &&
		    !wd_cq_count(q))
			return fail(-ENODEV, "poll: revents %#x", pfd.revents);
	}
}

unsigned int wd_cq_pop(struct wd_queue *q, struct wd_cqe *out,
		       unsigned int max)
{
	uint32_t head = wd_cq_head(q), n = wd_cq_count(q), i;

	if (n > q->cq_entries)
		n = 0;		/* corrupt: nothing sensible to reap */
	if (n > max)
		n = max;
	for (i = 0; i < n; i++)
		out[i] = *wd_cq_slot(q, head + i);
	if (n)
		wd_set_cq_head(q, head + n);
	return n;
}

int wd_reap(struct wd_queue *q, struct wd_cqe *out, unsigned int n,
	    int timeout_ms)
{
	uint64_t end = wd_now_ms() + timeout_ms;
	unsigned int got = 0;
	int64_t left;
	int ret;

	while (got < n) {
		left = end - wd_now_ms();
		ret = wd_cq_wait(q, left > 0 ? left : 0);
		if (ret < 0)
			return fail_more(ret, "%u of %u completions", got, n);
		got += wd_cq_pop(q, out + got, n - got);
	}
	return 0;
}

/* Index of the descriptor that @ud belongs to, or -1. */
static long find_ud(const struct wd_desc *d, unsigned int n,
		    const unsigned char *seen, uint64_t ud)
{
	unsigned int i;

	if (ud < n && d[ud].user_data == ud && !seen[ud])
		return ud;
	for (i = 0; i < n; i++)
		if (d[i].user_data == ud && !seen[i])
			return i;
	return -1;
}

int wd_run(struct wd_queue *q, const struct wd_desc *d, unsigned int n,
	   struct wd_cqe *out, int timeout_ms)
{
	unsigned int pushed = 0, done = 0, batch, i;
	uint64_t end = wd_now_ms() + timeout_ms;
	struct wd_cqe *cqes;
	unsigned char *seen;
	int64_t left;
	int ret = 0;
	long idx;

	cqes = calloc(q->cq_entries, sizeof(*cqes));
	seen = calloc(n ? n : 1, 1);
	if (!cqes || !seen) {
		ret = fail(-ENOMEM, "out of memory");
		goto out;
	}
	while (done < n) {
		pushed += wd_sq_push(q, d + pushed, n - pushed);
		if (wd_sq_pending(q)) {
			ret = wd_kick(q);
			if (ret < 0)
				goto out;
		}
		batch = wd_cq_pop(q, cqes, q->cq_entries);
		for (i = 0; i < batch; i++) {
			idx = find_ud(d, n, seen, cqes[i].user_data);
			if (idx < 0) {
				ret = fail(-EBADMSG,
					   "completion with unknown or repeated user_data %#llx",
					   (unsigned long long)cqes[i].user_data);
				goto out;
			}
			seen[idx] = 1;
			out[idx] = cqes[i];
		}
		done += batch;
		if (batch || done == n)
			continue;
		/*
		 * Nothing to reap. Something must be in flight, or KICK
		 * would have taken the pending descriptors.
		 */
		if (pushed - wd_sq_pending(q) == done) {
			ret = fail(-EPROTO,
				   "%u of %u done, %u pending, nothing in flight, KICK takes none",
				   done, n, wd_sq_pending(q));
			goto out;
		}
		left = end - wd_now_ms();
		ret = wd_cq_wait(q, left > 0 ? left : 0);
		if (ret < 0) {
			ret = fail_more(ret, "%u of %u done", done, n);
			goto out;
		}
	}
	ret = 0;
out:
	free(cqes);
	free(seen);
	return ret;
}

bool wd_cq_quiet(struct wd_queue *q, int ms)
{
	struct pollfd pfd = { .fd = q->fd, .events = POLLIN };

	if (wd_cq_count(q))
		return false;
	poll(&pfd, 1, ms);
	return !wd_cq_count(q);
}

void wd_status(const struct wd_queue *q, struct wd_queue_status *out)
{
	const struct wd_queue_status *st = q->st;

	/* A new field must be loaded below too. */
	_Static_assert(sizeof(*st) == 80, "wd_status() misses a field");
#define LD(f) (out->f = __atomic_load_n(&st->f, __ATOMIC_RELAXED))
	LD(magic);
	LD(state);
	LD(queue_index);
	LD(rsvd);
	LD(submitted);
	LD(completed);
	LD(errors);
	LD(bytes);
	LD(pinned_pages);
	LD(buffers);
	LD(invalidations);
	LD(mapped_pages);
#undef LD
}

int wd_register(int fd, const void *addr, size_t len, uint32_t flags,
		uint32_t *handle)
{
	struct wd_register reg = {
		.addr = (uintptr_t)addr,
		.len = len,
		.flags = flags,
	};
	int ret;

	ret = ioctl(fd, WD_IOCTL_REGISTER, &reg);
	if (!ret && handle)
		*handle = reg.handle;
	return ret;
}

int wd_register_retry(int fd, const void *addr, size_t len, uint32_t flags,
		      uint32_t *handle, unsigned int tries,
		      unsigned int *again)
{
	int ret;

	while ((ret = wd_register(fd, addr, len, flags, handle)) &&
	       errno == EAGAIN && --tries) {
		if (again)
			++*again;
	}
	return ret;
}

int wd_unregister(int fd, uint32_t handle)
{
	return ioctl(fd, WD_IOCTL_UNREGISTER, &handle);
}

long wd_vmpin_kb(void)
{
	char line[256];
	long val = -ENOENT;
	FILE *f;

	f = fopen("/proc/self/status", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %ld kB", &val) == 1)
			break;
	fclose(f);
	return val;
}

/* Slicing-by-8 tables: the bulk checks of a test run over many MiB. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	uint32_t c;
	int i, j;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c >> 1) ^ (c & 1 ? 0x82f63b78 : 0);
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (j = 1; j < 8; j++)
			crc_table[j][i] = (crc_table[j - 1][i] >> 8) ^
					  crc_table[0][crc_table[j - 1][i] & 0xff];
}

uint32_t wd_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t w;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	for (; len >= 8; len -= 8, p += 8) {
		memcpy(&w, p, 8);	/* little-endian x86 */
		w ^= crc;
		crc = crc_table[7][w & 0xff] ^
		      crc_table[6][(w >> 8) & 0xff] ^
		      crc_table[5][(w >> 16) & 0xff] ^
		      crc_table[4][(w >> 24) & 0xff] ^
		      crc_table[3][(w >> 32) & 0xff] ^
		      crc_table[2][(w >> 40) & 0xff] ^
		      crc_table[1][(w >> 48) & 0xff] ^
		      crc_table[0][w >> 56];
	}
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

/* splitmix64's finaliser: every word of the pattern differs. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t pattern_word(uint64_t seed, uint64_t word)
{
	return mix64(seed * 0x9e3779b97f4a7c15ULL + word + 1);
}

static unsigned char pattern_byte(uint64_t seed, uint64_t off)
{
	return pattern_word(seed, off >> 3) >> ((off & 7) * 8);
}

void wd_fill(void *p, size_t len, uint64_t seed, uint64_t off)
{
	unsigned char *b = p;
	uint64_t w;

	for (; len && (off & 7); len--, off++)
		*b++ = pattern_byte(seed, off);
	for (; len >= 8; len -= 8, off += 8, b += 8) {
		w = pattern_word(seed, off >> 3);
		memcpy(b, &w, 8);
	}
	for (; len; len--, off++)
		*b++ = pattern_byte(seed, off);
}

ssize_t wd_check(const void *p, size_t len, uint64_t seed, uint64_t off)
{
	const unsigned char *b = p;
	size_t i = 0;
	uint64_t w;

	for (; i < len && ((off + i) & 7); i++)
		if (b[i] != pattern_byte(seed, off + i))
			return i;
	for (; len - i >= 8; i += 8) {
		memcpy(&w, b + i, 8);
		if (w != pattern_word(seed, (off + i) >> 3))
			break;
	}
	for (; i < len; i++)
		if (b[i] != pattern_byte(seed, off + i))
			return i;
	return -1;
}

ssize_t wd_check_prefix(const void *p, size_t len, uint64_t seed,
			uint64_t off, unsigned char c)
{
	ssize_t i = wd_check(p, len, seed, off);

	if (i < 0)
		return -1;
	return wd_check_byte((const unsigned char *)p + i, len - i, c) < 0 ?
		-1 : i;
}

ssize_t wd_check_byte(const void *p, size_t len, unsigned char c)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i] != c)
			return i;
	return -1;
}

void *wd_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

uint64_t wd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}
