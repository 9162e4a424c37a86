// SPDX-License-Identifier: GPL-2.0
/*
 * warpdrive discovery: the uacce class devices of the edu driver, their
 * /dev nodes, their sysfs attributes and their PCI parents.
 */
#include "kselftest_harness.h"

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "wd_ring.h"

FIXTURE(edu) {
	struct wd_dev devs[WD_MAX_DEVS];
	struct wd_pci pci[WD_MAX_DEVS];
	int n;
	int npci;
};

FIXTURE_SETUP(edu)
{
	self->npci = wd_list_pci(WD_EDU_VENDOR, WD_EDU_DEVICE, self->pci,
				 WD_MAX_DEVS);
	ASSERT_LE(0, self->npci);
	if (!self->npci)
		SKIP(return, "no QEMU edu PCI device");
	self->n = wd_list_devs(self->devs, WD_MAX_DEVS, WD_EDU_PREFIX);
	ASSERT_LE(0, self->n);
}

FIXTURE_TEARDOWN(edu)
{
}

static const struct wd_dev *find_dev(struct _test_data_edu *self,
				     const char *name)
{
	int i;

	for (i = 0; i < self->n; i++)
		if (!strcmp(self->devs[i].name, name))
			return &self->devs[i];
	return NULL;
}

/* One class device per edu PCI function, and the other way round. */
TEST_F(edu, one_class_device_per_pci_device)
{
	char name[WD_NAME_LEN];
	const struct wd_dev *dev;
	int i, j;

	ASSERT_EQ(self->npci, self->n);
	for (i = 0; i < self->npci; i++) {
		EXPECT_TRUE(wd_pci_bound(self->pci[i].bdf))
			TH_LOG("%s not bound to %s", self->pci[i].bdf,
			       WD_EDU_DRV_NAME);
		ASSERT_EQ(1, wd_pci_uacce(self->pci[i].bdf, name, sizeof(name)))
			TH_LOG("%s/%s/uacce/", WD_PCI_DIR, self->pci[i].bdf);
		dev = find_dev(self, name);
		ASSERT_NE(NULL, dev)
			TH_LOG("%s/uacce/%s not in %s", self->pci[i].bdf, name,
			       WD_CLASS_DIR);
		EXPECT_STREQ(self->pci[i].bdf, dev->bdf);
	}
	/* Every class device has a distinct PCI parent. */
	for (i = 0; i < self->n; i++)
		for (j = i + 1; j < self->n; j++)
			EXPECT_STRNE(self->devs[i].bdf, self->devs[j].bdf);
}

/* The class device's "device" link resolves to the edu PCI device. */
TEST_F(edu, device_link)
{
	char path[WD_PATH_LEN], a[PATH_MAX], b[PATH_MAX];
	unsigned long vendor, device;
	const struct wd_dev *dev;
	char buf[32];
	int i;

	for (i = 0; i < self->n; i++) {
		dev = &self->devs[i];
		ASSERT_NE(0, dev->bdf[0]) TH_LOG("%s: no device link", dev->name);
		ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/device",
				     dev->sysfs));
		ASSERT_NE(NULL, realpath(path, a));
		ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/%s", WD_PCI_DIR,
				     dev->bdf));
		ASSERT_NE(NULL, realpath(path, b));
		EXPECT_STREQ(b, a);

		ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/vendor", b));
		ASSERT_LT(0, wd_read_file(path, buf, sizeof(buf)));
		vendor = strtoul(buf, NULL, 16);
		ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/device", b));
		ASSERT_LT(0, wd_read_file(path, buf, sizeof(buf)));
		device = strtoul(buf, NULL, 16);
		EXPECT_EQ((unsigned long)WD_EDU_VENDOR, vendor);
		EXPECT_EQ((unsigned long)WD_EDU_DEVICE, device);

		/* The class entry is the device under the PCI parent. */
		ASSERT_NE(NULL, realpath(dev->sysfs, a));
		ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/%s/uacce/%s",
				     WD_PCI_DIR, dev->bdf, dev->name));
		ASSERT_NE(NULL, realpath(path, b));
		EXPECT_STREQ(b, a);

		ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/subsystem",
				     dev->sysfs));
		ASSERT_NE(NULL, realpath(path, a));
		EXPECT_STREQ("uacce", basename(a));
	}
}

/* Names are edu-<id> with ids 0..n-1: lowest free first, no holes. */
TEST_F(edu, ids_dense)
{
	bool seen[WD_MAX_DEVS] = { false };
	char buf[WD_NAME_LEN + 1];
	unsigned long id;
	int i;

	for (i = 0; i < self->n; i++) {
		/* wd_parse_ulong() wants the sysfs "%lu\n" form. */
		snprintf(buf, sizeof(buf), "%s\n",
			 self->devs[i].name + strlen(WD_EDU_PREFIX));
		ASSERT_EQ(0, wd_parse_ulong(buf, &id))
			TH_LOG("bad name %s", self->devs[i].name);
		ASSERT_GT((unsigned long)self->n, id)
			TH_LOG("%s with %d devices", self->devs[i].name,
			       self->n);
		EXPECT_FALSE(seen[id]);
		seen[id] = true;
	}
}

/* /dev/<name> is the char device that sysfs "dev" names. */
TEST_F(edu, dev_nodes)
{
	unsigned int major, minor;
	const struct wd_dev *dev;
	struct dirent *de;
	char buf[32], c;
	struct stat st;
	int i, ret, nodes = 0;
	DIR *dir;

	for (i = 0; i < self->n; i++) {
		dev = &self->devs[i];
		ASSERT_EQ(0, stat(dev->node, &st)) TH_LOG("%s", dev->node);
		EXPECT_TRUE(S_ISCHR(st.st_mode));
		ASSERT_LT(0, wd_attr(dev, "dev", buf, sizeof(buf)));
		ret = sscanf(buf, "%u:%u%c", &major, &minor, &c);
		ASSERT_EQ(3, ret) TH_LOG("dev '%s'", buf);
		EXPECT_EQ('\n', c);
		EXPECT_EQ(major, major(st.st_rdev));
		EXPECT_EQ(minor, minor(st.st_rdev));
	}

	dir = opendir("/dev");
	ASSERT_NE(NULL, dir);
	while ((de = readdir(dir))) {
		if (strncmp(de->d_name, WD_EDU_PREFIX, strlen(WD_EDU_PREFIX)))
			continue;
		nodes++;
		EXPECT_NE(NULL, find_dev(self, de->d_name))
			TH_LOG("/dev/%s has no class device", de->d_name);
	}
	closedir(dir);
	EXPECT_EQ(self->n, nodes);
}

static void check_tokens(struct __test_metadata *_metadata, const char *buf)
{
	const char *p = buf, *nl;

	ASSERT_NE(0, *buf);
	while (*p) {
		nl = strchr(p, '\n');
		ASSERT_NE(NULL, nl) TH_LOG("unterminated token in '%s'", buf);
		ASSERT_LT(p, nl) TH_LOG("empty token in '%s'", buf);
		for (; p < nl; p++)
			ASSERT_TRUE(isgraph((unsigned char)*p))
				TH_LOG("bad character in '%s'", buf);
		p = nl + 1;
	}
}

TEST_F(edu, attr_formats)
{
	static const char * const ro_attrs[] = {
		"api", "flags", "available_instances", "algorithms",
		"region_mmio_size", "region_dus_size",
	};
	size_t page = wd_page_size();
	char buf[WD_ATTR_LEN], path[WD_PATH_LEN];
	unsigned long val;
	const struct wd_dev *dev;
	struct stat st;
	long avail;
	int i, j;

	ASSERT_LT(0, self->n);
	for (i = 0; i < self->n; i++) {
		dev = &self->devs[i];
		TH_LOG("%s (%s)", dev->name, dev->bdf);

		ASSERT_LT(0, wd_attr(dev, "api", buf, sizeof(buf)));
		EXPECT_STREQ(WD_EDU_API "\n", buf);

		ASSERT_LT(0, wd_attr(dev, "flags", buf, sizeof(buf)));
		ASSERT_EQ(0, wd_parse_ulong(buf, &val)) TH_LOG("flags '%s'", buf);
		EXPECT_GE((unsigned long)UINT_MAX, val);
		/* edu: no SVA, so the shadow ring, and no other flag. */
		EXPECT_EQ((unsigned long)WD_DEV_SHADOW_RING, val);

		ASSERT_LT(0, wd_attr(dev, "available_instances", buf,
				     sizeof(buf)));
		ASSERT_EQ(0, wd_parse_long(buf, &avail))
			TH_LOG("available_instances '%s'", buf);
		EXPECT_LT(0, avail);	/* nothing holds a queue now */
		EXPECT_GE((long)INT_MAX, avail);

		ASSERT_LT(0, wd_attr(dev, "algorithms", buf, sizeof(buf)));
		check_tokens(_metadata, buf);
		EXPECT_STREQ(WD_EDU_ALGS, buf);

		ASSERT_LT(0, wd_attr(dev, "region_mmio_size", buf,
				     sizeof(buf)));
		ASSERT_EQ(0, wd_parse_ulong(buf, &val))
			TH_LOG("region_mmio_size '%s'", buf);
		EXPECT_EQ(page, val);	/* one status page */
		EXPECT_EQ(WD_EDU_RING_MMIO_SIZE, val);

		ASSERT_LT(0, wd_attr(dev, "region_dus_size", buf,
				     sizeof(buf)));
		ASSERT_EQ(0, wd_parse_ulong(buf, &val))
			TH_LOG("region_dus_size '%s'", buf);
		EXPECT_NE(0UL, val);
		EXPECT_EQ(0UL, val % page);
		/* Header page, 256 descriptors, 512 completions. */
		EXPECT_EQ(WD_EDU_RING_DUS_SIZE, val);

		/* No isolation support: mainline hides the attribute. */
		ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/isolate",
				     dev->sysfs));
		EXPECT_EQ(-1, access(path, F_OK));
		EXPECT_EQ(ENOENT, errno);

		for (j = 0; j < (int)ARRAY_SIZE(ro_attrs); j++) {
			ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/%s",
					     dev->sysfs, ro_attrs[j]));
			ASSERT_EQ(0, stat(path, &st));
			EXPECT_EQ(0U, st.st_mode & 0222)
				TH_LOG("%s is writable", path);
		}
	}
}

TEST_F(edu, numa_node)
{
	char buf[32];
	long node;
	int i;

	for (i = 0; i < self->n; i++) {
		ASSERT_LT(0, wd_attr(&self->devs[i], "device/numa_node", buf,
				     sizeof(buf)));
		ASSERT_EQ(0, wd_parse_long(buf, &node))
			TH_LOG("numa_node '%s'", buf);
		EXPECT_LE(-1, node);
	}
}

/* With an IOMMU, every edu device is in an IOMMU group; without, none. */
TEST_F(edu, iommu)
{
	const char *env = getenv("WD_EXPECT_IOMMU");
	char path[WD_PATH_LEN];
	bool expect;
	int i;

	if (!env)
		SKIP(return, "WD_EXPECT_IOMMU not set");
	ASSERT_TRUE(!strcmp(env, "0") || !strcmp(env, "1"))
		TH_LOG("WD_EXPECT_IOMMU='%s'", env);
	expect = env[0] == '1';
	for (i = 0; i < self->npci; i++) {
		ASSERT_EQ(0, wd_path(path, sizeof(path), "%s/%s/iommu_group",
				     WD_PCI_DIR, self->pci[i].bdf));
		EXPECT_EQ(expect, access(path, F_OK) == 0)
			TH_LOG("%s: expected %s", path,
			       expect ? "present" : "absent");
	}
}

/*
 * The layout the edu driver promises, once: the other tests read sizes and
 * offsets from the header. A fresh queue's ring is empty.
 */
TEST_F(edu, ring_layout)
{
	const struct wd_ring_header *h;
	struct wd_queue_status st;
	struct wd_queue q;
	int i;

	ASSERT_LT(0, self->n);
	for (i = 0; i < self->n; i++) {
		ASSERT_EQ(0, wd_queue_open(&q, &self->devs[i], WD_Q_NOSTART))
			TH_LOG("%s: %s", self->devs[i].name, wd_ring_error());
		h = q.hdr;
		EXPECT_EQ((__u32)WD_RING_MAGIC, h->magic);
		EXPECT_EQ((__u32)WD_RING_VERSION, h->version);
		EXPECT_EQ(WD_EDU_SQ_ENTRIES, h->sq_entries);
		EXPECT_EQ(WD_EDU_CQ_ENTRIES, h->cq_entries);
		EXPECT_EQ(WD_EDU_SQ_OFFSET, h->sq_offset);
		EXPECT_EQ(WD_EDU_CQ_OFFSET, h->cq_offset);
		EXPECT_EQ(64U, h->desc_size);
		EXPECT_EQ(32U, h->cqe_size);
		EXPECT_EQ(0U, h->sq_tail);
		EXPECT_EQ(0U, h->sq_head);
		EXPECT_EQ(0U, h->cq_tail);
		EXPECT_EQ(0U, h->cq_head);
		/* Both rings end exactly at the end of the region. */
		EXPECT_EQ(q.dus_len, (size_t)h->cq_offset +
				     h->cq_entries * h->cqe_size);

		wd_status(&q, &st);
		EXPECT_EQ((__u32)WD_QUEUE_STATUS_MAGIC, st.magic);
		EXPECT_EQ((__u32)WD_QUEUE_INIT, st.state);
		EXPECT_EQ(0ULL, st.submitted);
		EXPECT_EQ(0ULL, st.completed);
		EXPECT_EQ(0ULL, st.errors);
		EXPECT_EQ(0ULL, st.bytes);
		EXPECT_EQ(0ULL, st.pinned_pages);
		EXPECT_EQ(0ULL, st.buffers);
		EXPECT_EQ(0ULL, st.invalidations);
		wd_queue_close(&q);
	}
}

/* The ABI's sizes, which user space compiles in. */
TEST(abi_sizes)
{
	EXPECT_EQ(64UL, sizeof(struct wd_desc));
	EXPECT_EQ(32UL, sizeof(struct wd_cqe));
	EXPECT_EQ(24UL, sizeof(struct wd_register));
	EXPECT_EQ(80UL, sizeof(struct wd_queue_status));
	EXPECT_EQ(320UL, sizeof(struct wd_ring_header));
	/* Each index on a cache line of its own. */
	EXPECT_EQ(64UL, offsetof(struct wd_ring_header, sq_tail));
	EXPECT_EQ(128UL, offsetof(struct wd_ring_header, sq_head));
	EXPECT_EQ(192UL, offsetof(struct wd_ring_header, cq_tail));
	EXPECT_EQ(256UL, offsetof(struct wd_ring_header, cq_head));
}

TEST_HARNESS_MAIN
