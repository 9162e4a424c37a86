/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared helpers for the warpdrive selftests: finding uacce class devices,
 * reading their sysfs attributes strictly, and driving the edu PCI driver.
 */
#ifndef WD_UTIL_H
#define WD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <misc/warpdrive.h>

#include "kselftest.h"		/* __printf() */

#define WD_CLASS_DIR		"/sys/class/uacce"
#define WD_PCI_DIR		"/sys/bus/pci/devices"
#define WD_EDU_DRV_NAME		"warpdrive_edu"
#define WD_EDU_DRV_DIR		"/sys/bus/pci/drivers/" WD_EDU_DRV_NAME
#define WD_EDU_PREFIX		"edu-"
#define WD_EDU_API		"warpdrive_edu_v2"
#define WD_EDU_ALGS \
	"factorial\ndma_copy\nnop\nemulated_memcpy\nemulated_crc32c\n"
#define WD_EDU_VENDOR		0x1234
#define WD_EDU_DEVICE		0x11e8

#define WD_MAX_DEVS		16
#define WD_MAX_QUEUES		256
#define WD_NAME_LEN		64
#define WD_PATH_LEN		320
#define WD_BDF_LEN		32
#define WD_ATTR_LEN		4096

struct wd_dev {
	char name[WD_NAME_LEN];		/* class device, e.g. "edu-0" */
	char node[WD_PATH_LEN];		/* "/dev/edu-0" */
	char sysfs[WD_PATH_LEN];	/* "/sys/class/uacce/edu-0" */
	char bdf[WD_BDF_LEN];		/* parent device, "" if unknown */
};

struct wd_pci {
	char bdf[WD_BDF_LEN];
};

/*
 * Loads and stores the compiler must emit as written: for the status page,
 * which the driver updates, and for probing mappings that should fault.
 */
static inline uint32_t wd_read32(const void *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
}

static inline uint64_t wd_read64(const void *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

static inline void wd_write32(void *p, uint32_t val)
{
	__atomic_store_n((uint32_t *)p, val, __ATOMIC_RELAXED);
}

/* snprintf() that returns -ENAMETOOLONG instead of truncating, else 0. */
__printf(3, 4) int wd_path(char *buf, size_t len, const char *fmt, ...);

/* Whole-file I/O. Return bytes read / 0, or -errno. */
int wd_read_file(const char *path, char *buf, size_t len);
int wd_write_file(const char *path, const char *str);

/*
 * Strict parsers for sysfs numbers: "%lu\n" and "%ld\n" exactly (digits,
 * optional '-' for the signed one, one trailing newline, nothing else).
 */
int wd_parse_ulong(const char *str, unsigned long *val);
int wd_parse_long(const char *str, long *val);

/* Lists class devices whose name starts with @prefix (NULL: all), sorted. */
int wd_list_devs(struct wd_dev *devs, int max, const char *prefix);

/* Fills @dev for class device @name. Returns 0 or -errno. */
int wd_dev_init(struct wd_dev *dev, const char *name);

/*
 * PCI functions with the given IDs, sorted by BDF, into @pci unless it is
 * NULL. Returns their number or -errno.
 */
int wd_list_pci(unsigned int vendor, unsigned int device, struct wd_pci *pci,
		int max);

/*
 * The edu class devices. Returns their number, 0 if the machine has no edu
 * PCI device at all (tests skip), or -ENODEV if it has edu PCI devices but
 * no edu class device (tests fail).
 */
int wd_get_edu(struct wd_dev *devs, int max);

/*
 * For a kselftest_harness.h FIXTURE_SETUP: the edu class devices into the
 * array @devs, their number into @n; skips the test on a machine without
 * edu devices and fails it where their driver did not bind.
 */
#define WD_SETUP_EDU(devs, n)						\
	do {								\
		(n) = wd_get_edu((devs), WD_MAX_DEVS);			\
		if (!(n))						\
			SKIP(return, "no QEMU edu device");		\
		ASSERT_LT(0, (n))					\
			TH_LOG("edu PCI devices but no edu class device"); \
	} while (0)

/* Attribute @attr of @dev, raw (with its newline). Returns length or -errno. */
int wd_attr(const struct wd_dev *dev, const char *attr, char *buf, size_t len);
int wd_attr_ulong(const struct wd_dev *dev, const char *attr,
		  unsigned long *val);
int wd_attr_long(const struct wd_dev *dev, const char *attr, long *val);

/* available_instances, or -errno (also for a malformed value). */
int wd_avail(const struct wd_dev *dev);

/* open(node, O_RDWR | O_CLOEXEC): an fd, or -1 with errno set. */
int wd_open(const struct wd_dev *dev);

/* ioctl(WD_EDU_CMD_FACTORIAL): ioctl's return value, errno as set by it. */
int wd_factorial(int fd, uint32_t n, uint32_t *result);

/* n! in u32 arithmetic, as the edu device computes it. */
uint32_t wd_fact_u32(uint32_t n);

/* mmap(NULL, len, prot, MAP_SHARED, fd, region * page size). */
void *wd_map(int fd, unsigned int region, size_t len, int prot);

/* True if [addr, addr + len) is mapped in this process (msync test). */
bool wd_is_mapped(void *addr, size_t len);

size_t wd_page_size(void);

/* Region sizes from sysfs, 0 if unreadable. */
size_t wd_region_size(const struct wd_dev *dev, unsigned int region);

/* PCI driver binding by BDF. Return 0 or -errno. */
int wd_pci_unbind(const char *bdf);
int wd_pci_bind(const char *bdf);
bool wd_pci_bound(const char *bdf);

/*
 * The class devices under /sys/bus/pci/devices/<bdf>/uacce/. Returns how
 * many there are (the first one's name in @name) or -errno.
 */
int wd_pci_uacce(const char *bdf, char *name, size_t len);

/*
 * Accesses @addr (a 32-bit read or write); returns the signal it raised,
 * SIGBUS or SIGSEGV, or 0 if none.
 */
int wd_touch(void *addr, bool write);

/*
 * The edu driver's test hook (debugfs warpdrive/<dev>/hold_<engine>):
 * holds @engine ("device" or "bulk") of @dev, which then starts no command,
 * or releases it. Returns 0 or -errno.
 */
int wd_engine_hold(const struct wd_dev *dev, const char *engine, bool hold);

#endif /* WD_UTIL_H */
