// SPDX-License-Identifier: GPL-2.0
/*
 * Shared helpers for the warpdrive selftests.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wd_util.h"

int wd_path(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (ret < 0)
		return -EINVAL;
	return (size_t)ret < len ? 0 : -ENAMETOOLONG;
}

int wd_read_file(const char *path, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t ret;
	int fd;

	if (!len)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (got < len - 1) {
		ret = read(fd, buf + got, len - 1 - got);
		if (ret < 0) {
			ret = -errno;
			close(fd);
			return ret;
		}
		if (!ret)
			break;
		got += ret;
	}
	buf[got] = '\0';
	/* A full buffer must be the whole file. */
	if (got == len - 1 && read(fd, &(char){ 0 }, 1) > 0)
		got = -EFBIG;
	close(fd);
	return got;
}

int wd_write_file(const char *path, const char *str)
{
	size_t len = strlen(str);
	ssize_t ret;
	int fd;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = write(fd, str, len);
	if (ret < 0)
		ret = -errno;
	else if ((size_t)ret != len)
		ret = -EIO;
	else
		ret = 0;
	close(fd);
	return ret;
}

int wd_parse_ulong(const char *str, unsigned long *val)
{
	const char *p = str;
	unsigned long v = 0;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	/* "%lu" prints no leading zeroes. */
	if (p[0] == '0' && isdigit((unsigned char)p[1]))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned int d = *p - '0';

		if (v > (ULONG_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (p[0] != '\n' || p[1] != '\0')
		return -EINVAL;
	*val = v;
	return 0;
}

int wd_parse_long(const char *str, long *val)
{
	bool neg = str[0] == '-';
	unsigned long v;
	int ret;

	ret = wd_parse_ulong(str + neg, &v);
	if (ret)
		return ret;
	if (neg && !v)
		return -EINVAL;		/* "%ld" never prints "-0" */
	if (v > (unsigned long)LONG_MAX + neg)
		return -ERANGE;
	*val = neg ? (long)(0UL - v) : (long)v;
	return 0;
}

static int wd_cmp_names(const void *a, const void *b)
{
	return strverscmp(a, b);
}

int wd_dev_init(struct wd_dev *dev, const char *name)
{
	char path[WD_PATH_LEN], real[PATH_MAX];

	memset(dev, 0, sizeof(*dev));
	if (wd_path(dev->name, sizeof(dev->name), "%s", name) ||
	    wd_path(dev->node, sizeof(dev->node), "/dev/%s", name) ||
	    wd_path(dev->sysfs, sizeof(dev->sysfs), "%s/%s", WD_CLASS_DIR,
		    name) ||
	    wd_path(path, sizeof(path), "%s/device", dev->sysfs))
		return -ENAMETOOLONG;
	if (realpath(path, real) &&
	    wd_path(dev->bdf, sizeof(dev->bdf), "%s", basename(real)))
		dev->bdf[0] = '\0';
	return 0;
}

int wd_list_devs(struct wd_dev *devs, int max, const char *prefix)
{
	char (*names)[WD_NAME_LEN];
	struct dirent *de;
	int n = 0, i, ret = 0;
	DIR *dir;

	dir = opendir(WD_CLASS_DIR);
	if (!dir)
		return errno == ENOENT ? 0 : -errno;
	names = calloc(WD_MAX_DEVS, sizeof(*names));
	if (!names) {
		closedir(dir);
		return -ENOMEM;
	}
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		if (prefix && strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		if (n == WD_MAX_DEVS || n == max) {
			ret = -E2BIG;
			break;
		}
		ret = wd_path(names[n++], WD_NAME_LEN, "%s", de->d_name);
		if (ret)
			break;
	}
	closedir(dir);
	qsort(names, n, sizeof(*names), wd_cmp_names);
	for (i = 0; !ret && i < n; i++)
		ret = wd_dev_init(&devs[i], names[i]);
	free(names);
	return ret ? ret : n;
}

static int wd_read_hex(const char *dir, const char *file, unsigned long *val)
{
	char path[WD_PATH_LEN], buf[32], *end;
	int ret;

	ret = wd_path(path, sizeof(path), "%s/%s", dir, file);
	if (ret)
		return ret;
	ret = wd_read_file(path, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	errno = 0;
	*val = strtoul(buf, &end, 16);
	if (errno || end == buf || (*end && *end != '\n'))
		return -EINVAL;
	return 0;
}

int wd_list_pci(unsigned int vendor, unsigned int device, struct wd_pci *pci,
		int max)
{
	char path[WD_PATH_LEN];
	unsigned long v, d;
	struct dirent *de;
	int n = 0;
	DIR *dir;

	dir = opendir(WD_PCI_DIR);
	if (!dir)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		if (wd_path(path, sizeof(path), "%s/%s", WD_PCI_DIR,
			    de->d_name))
			continue;
		if (wd_read_hex(path, "vendor", &v) ||
		    wd_read_hex(path, "device", &d))
			continue;
		if (v != vendor || d != device)
			continue;
		if (pci && (n == max ||
			    wd_path(pci[n].bdf, sizeof(pci[n].bdf), "%s",
				    de->d_name))) {
			closedir(dir);
			return -E2BIG;
		}
		n++;
	}
	closedir(dir);
	if (pci)
		qsort(pci, n, sizeof(*pci), wd_cmp_names);
	return n;
}

int wd_get_edu(struct wd_dev *devs, int max)
{
	int n, pci;

	n = wd_list_devs(devs, max, WD_EDU_PREFIX);
	if (n)
		return n;
	pci = wd_list_pci(WD_EDU_VENDOR, WD_EDU_DEVICE, NULL, 0);
	return pci > 0 ? -ENODEV : 0;
}

int wd_attr(const struct wd_dev *dev, const char *attr, char *buf, size_t len)
{
	char path[WD_PATH_LEN];
	int ret;

	ret = wd_path(path, sizeof(path), "%s/%s", dev->sysfs, attr);
	if (ret)
		return ret;
	return wd_read_file(path, buf, len);
}

int wd_attr_ulong(const struct wd_dev *dev, const char *attr,
		  unsigned long *val)
{
	char buf[64];
	int ret;

	ret = wd_attr(dev, attr, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	return wd_parse_ulong(buf, val);
}

int wd_attr_long(const struct wd_dev *dev, const char *attr, long *val)
{
	char buf[64];
	int ret;

	ret = wd_attr(dev, attr, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	return wd_parse_long(buf, val);
}

int wd_avail(const struct wd_dev *dev)
{
	long val;
	int ret;

	ret = wd_attr_long(dev, "available_instances", &val);
	if (ret)
		return ret;
	if (val < 0 || val > INT_MAX)
		return -ERANGE;
	return val;
}

int wd_open(const struct wd_dev *dev)
{
	return open(dev->node, O_RDWR | O_CLOEXEC);
}

int wd_factorial(int fd, uint32_t n, uint32_t *result)
{
	struct wd_edu_factorial arg = { .n = n, .result = 0xdeadbeef };
	int ret;

	ret = ioctl(fd, WD_EDU_CMD_FACTORIAL, &arg);
	if (!ret)
		*result = arg.result;
	return ret;
}

uint32_t wd_fact_u32(uint32_t n)
{
	uint32_t r = 1, i;

	/* Once a factor of 2^32 is in, the product stays 0 (n >= 34). */
	for (i = 2; i <= n && r; i++)
		r *= i;
	return r;
}

size_t wd_page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

void *wd_map(int fd, unsigned int region, size_t len, int prot)
{
	return mmap(NULL, len, prot, MAP_SHARED, fd,
		    (off_t)region * (off_t)wd_page_size());
}

bool wd_is_mapped(void *addr, size_t len)
{
	return msync(addr, len, MS_ASYNC) == 0;
}

size_t wd_region_size(const struct wd_dev *dev, unsigned int region)
{
	unsigned long val;

	if (wd_attr_ulong(dev, region == WD_REGION_MMIO ? "region_mmio_size" :
			  "region_dus_size", &val))
		return 0;
	return val;
}

int wd_pci_unbind(const char *bdf)
{
	return wd_write_file(WD_EDU_DRV_DIR "/unbind", bdf);
}

int wd_pci_bind(const char *bdf)
{
	return wd_write_file(WD_EDU_DRV_DIR "/bind", bdf);
}

bool wd_pci_bound(const char *bdf)
{
	char path[WD_PATH_LEN], link[PATH_MAX];
	ssize_t len;

	if (wd_path(path, sizeof(path), "%s/%s/driver", WD_PCI_DIR, bdf))
		return false;
	len = readlink(path, link, sizeof(link) - 1);
	if (len < 0)
		return false;
	link[len] = '\0';
	return !strcmp(basename(link), WD_EDU_DRV_NAME);
}

int wd_pci_uacce(const char *bdf, char *name, size_t len)
{
	char path[WD_PATH_LEN], first[WD_NAME_LEN] = "";
	struct dirent *de;
	int n = 0;
	DIR *dir;

	if (wd_path(path, sizeof(path), "%s/%s/uacce", WD_PCI_DIR, bdf))
		return -ENAMETOOLONG;
	dir = opendir(path);
	if (!dir)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		if (!n++ || strverscmp(de->d_name, first) < 0)
			wd_path(first, sizeof(first), "%s", de->d_name);
	}
	closedir(dir);
	if (n && wd_path(name, len, "%s", first))
		return -ENAMETOOLONG;
	return n;
}

static __thread sigjmp_buf touch_env;

static void touch_handler(int sig)
{
	siglongjmp(touch_env, sig);
}

int wd_touch(void *addr, bool write)
{
	struct sigaction sa = { .sa_handler = touch_handler };
	struct sigaction old_bus, old_segv;
	int sig;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);
	sig = sigsetjmp(touch_env, 1);
	if (!sig) {
		if (write)
			wd_write32(addr, 0x5a5a5a5a);
		else
			wd_read32(addr);
	}
	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
	return sig;
}

int wd_engine_hold(const struct wd_dev *dev, const char *engine, bool hold)
{
	char path[WD_PATH_LEN];
	int ret;

	ret = wd_path(path, sizeof(path), "/sys/kernel/debug/warpdrive/%s/hold_%s",
		      dev->name, engine);
	if (ret)
		return ret;
	return wd_write_file(path, hold ? "1" : "0");
}
