// SPDX-License-Identifier: GPL-2.0
/*
 * wd_demo: lists every uacce device, then opens two queues on each warpdrive
 * edu device, maps their regions and checks the device's factorials against
 * the CPU. Needs only libc and include/uapi of this repository.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <misc/warpdrive.h>

#define CLASS_DIR	"/sys/class/uacce"
#define EDU_API		"warpdrive_edu_v1"
#define MAX_DEVS	16
#define QUEUES		2
#define MAX_N		12

struct wd_device {
	char name[NAME_MAX + 1];
	char api[64];
	char algs[256];
	char bdf[64];
	char numa[16];
	unsigned long flags, mmio_size, dus_size;
	long avail;
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
	printf("  api %s, flags %#lx, algorithms %s\n", d->api, d->flags,
	       d->algs);
	printf("  available_instances %ld, mmio region %lu bytes, dus region %lu bytes\n",
	       d->avail, d->mmio_size, d->dus_size);
}

static uint32_t fact_u32(uint32_t n)
{
	uint32_t r = 1;

	while (n > 1)
		r *= n--;
	return r;
}

/* Two queues on one edu device. Returns the number of queues used. */
static int run(struct wd_device *d)
{
	struct wd_edu_status *st[QUEUES] = { NULL };
	void *dus[QUEUES] = { NULL };
	int done[QUEUES] = { 0 };
	int fd[QUEUES], nq, q, n, want;
	char node[PATH_MAX], line[256] = "";
	size_t len;

	/* Two queues if the device has them, to show the count dropping. */
	want = d->avail < QUEUES ? d->avail : QUEUES;
	if (want < 1)
		fail("%s: no free queue", d->name);
	snprintf(node, sizeof(node), "/dev/%s", d->name);
	for (nq = 0; nq < want; nq++) {
		fd[nq] = open(node, O_RDWR | O_CLOEXEC);
		if (fd[nq] < 0) {
			fail("%s: open queue %d: %s", node, nq, strerror(errno));
			break;
		}
		if (ioctl(fd[nq], WD_CMD_START_Q))
			fail("%s: queue %d: START_Q: %s", d->name, nq,
			     strerror(errno));
		else
			printf("  queue %d opened and started, available_instances now %lu\n",
			       nq, attr_ul(d->name, "available_instances"));
	}

	for (q = 0; q < nq; q++) {
		st[q] = mmap(NULL, d->mmio_size, PROT_READ, MAP_SHARED, fd[q],
			     WD_REGION_MMIO * getpagesize());
		dus[q] = mmap(NULL, d->dus_size, PROT_READ | PROT_WRITE,
			      MAP_SHARED, fd[q], WD_REGION_DUS * getpagesize());
		if (st[q] == MAP_FAILED || dus[q] == MAP_FAILED) {
			fail("%s: queue %d: mmap: %s", d->name, q,
			     strerror(errno));
			continue;
		}
		memset(dus[q], q, d->dus_size);
		printf("  queue %d status: magic %#x%s, index %u, started %u, completed %u\n",
		       q, st[q]->magic,
		       st[q]->magic == WD_EDU_STATUS_MAGIC ? " (ok)" : " (BAD)",
		       st[q]->queue_index, st[q]->started, st[q]->completed);
		if (st[q]->magic != WD_EDU_STATUS_MAGIC || st[q]->started != 1)
			fail("%s: queue %d: bad status page", d->name, q);
	}

	for (n = 1, len = 0; nq && n <= MAX_N; n++) {
		struct wd_edu_factorial f = { .n = n };

		q = n % nq;
		if (ioctl(fd[q], WD_EDU_CMD_FACTORIAL, &f)) {
			fail("%s: queue %d: %d!: %s", d->name, q, n,
			     strerror(errno));
			continue;
		}
		done[q]++;
		len += snprintf(line + len, sizeof(line) - len, " %u",
				f.result);
		if (f.result != fact_u32(n))
			fail("%s: %d! = %u, CPU says %u", d->name, n, f.result,
			     fact_u32(n));
	}
	if (nq)
		printf("  1!..%d!:%s\n", MAX_N, line);

	for (q = 0; q < nq; q++) {
		if (st[q] && st[q] != MAP_FAILED) {
			printf("  queue %d completed %u factorials\n", q,
			       st[q]->completed);
			if (st[q]->completed != (uint32_t)done[q])
				fail("%s: queue %d: completed %u, expected %d",
				     d->name, q, st[q]->completed, done[q]);
			munmap(st[q], d->mmio_size);
		}
		if (dus[q] && dus[q] != MAP_FAILED)
			munmap(dus[q], d->dus_size);
		close(fd[q]);
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
		if (strcmp(devs[i].api, EDU_API)) {
			printf("  not an edu device, skipped\n");
			continue;
		}
		nedu++;
		nqueues += run(&devs[i]);
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
