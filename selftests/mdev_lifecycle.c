// SPDX-License-Identifier: GPL-2.0
/*
 * mdev lifecycle tests, run against mblit and against the upstream mtty
 * sample side by side: types and their attributes, the instance budget,
 * create/remove, and opening the device through both VFIO back-ends.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "mdev_lib.h"

#define MAX_TYPES	4
#define MAX_INSTANCES	64

struct mdev_type_spec {
	const char *name;		/* e.g. "mblit-16m" */
	unsigned int units;		/* share of the parent's budget */
	const char *desc_needle;	/* must appear in "description" */
};

/*
 * A parent device and its types.  Every type draws from one budget of
 * "units" (MiB of device memory for mblit, serial ports for mtty): with
 * nothing created, available_instances == budget / units.
 */
struct mdev_parent_spec {
	const char *module;
	const char *parent_dir;		/* the parent device in sysfs */
	unsigned int budget;
	int ntypes;
	struct mdev_type_spec types[MAX_TYPES];
	int big;			/* index of the type the budget test fills */
	int small;			/* index of a one-unit type */
	bool has_description;
	uint32_t device_flags;		/* VFIO_DEVICE_GET_INFO flags, exactly */
	uint32_t num_regions;		/* ... and counts, exactly */
	uint32_t num_irqs;
};

static const struct mdev_parent_spec mblit_parent = {
	.module = "mblit",
	.parent_dir = "/sys/class/mblit/mblit",
	.budget = 512,
	.ntypes = 3,
	.types = {
		{ "mblit-1m", 1, "1 MiB" },
		{ "mblit-16m", 16, "16 MiB" },
		{ "mblit-256m", 256, "256 MiB" },
	},
	.big = 2,
	.small = 0,
	.has_description = true,
	.device_flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET,
	.num_regions = VFIO_PCI_NUM_REGIONS + 1,	/* + DEVICE_STATE */
	.num_irqs = VFIO_PCI_NUM_IRQS,
};

static const struct mdev_parent_spec mtty_parent = {
	.module = "mtty",
	.parent_dir = "/sys/class/mtty/mtty",
	.budget = 24,
	.ntypes = 2,
	.types = {
		{ "mtty-1", 1, NULL },
		{ "mtty-2", 2, NULL },
	},
	.big = 1,
	.small = 0,
	.has_description = false,
	.device_flags = VFIO_DEVICE_FLAGS_PCI,
	.num_regions = VFIO_PCI_NUM_REGIONS,
	.num_irqs = VFIO_PCI_NUM_IRQS,
};

/* Every type's availability must match the budget minus @used units. */
static void check_availability(struct __test_metadata *_metadata,
			       const struct mdev_parent_spec *p,
			       unsigned int used)
{
	int i, avail;

	for (i = 0; i < p->ntypes; i++) {
		avail = mdev_type_available(p->types[i].name);
		ASSERT_LE(0, avail) TH_LOG("%s", mdev_lib_error());
		EXPECT_EQ((p->budget - used) / p->types[i].units,
			  (unsigned int)avail)
			TH_LOG("%s: available_instances %d with %u of %u units used",
			       p->types[i].name, avail, used, p->budget);
	}
}

/* ---- types, budget, create/remove: no VFIO back-end involved ---- */

FIXTURE(mdev_types) {
	const struct mdev_parent_spec *p;
	int n;
	char uuids[MAX_INSTANCES][MDEV_UUID_LEN + 1];
};

FIXTURE_VARIANT(mdev_types) {
	const struct mdev_parent_spec *parent;
};

FIXTURE_VARIANT_ADD(mdev_types, mblit) {
	.parent = &mblit_parent,
};

FIXTURE_VARIANT_ADD(mdev_types, mtty) {
	.parent = &mtty_parent,
};

FIXTURE_SETUP(mdev_types)
{
	self->p = variant->parent;
	self->n = 0;
	ASSERT_TRUE(module_loaded(self->p->module))
		TH_LOG("module %s is not loaded", self->p->module);
	ASSERT_TRUE(path_exists(self->p->parent_dir))
		TH_LOG("no parent device %s", self->p->parent_dir);
	/* Every test starts from an empty parent. */
	check_availability(_metadata, self->p, 0);
}

FIXTURE_TEARDOWN(mdev_types)
{
	int i;

	for (i = 0; i < self->n; i++) {
		if (mdev_exists(self->uuids[i]) && mdev_remove(self->uuids[i]))
			TH_LOG("cleanup: %s", mdev_lib_error());
	}
}

/* Create an instance that teardown removes; returns 0 or -errno. */
static int track_create(struct __test_metadata *_metadata,
			FIXTURE_DATA(mdev_types) *self, const char *type)
{
	int ret;

	ASSERT_GT(MAX_INSTANCES, self->n);
	ret = mdev_create(type, self->uuids[self->n]);
	if (!ret)
		self->n++;
	return ret;
}

static int track_remove(FIXTURE_DATA(mdev_types) *self, int i)
{
	int ret = mdev_remove(self->uuids[i]);

	if (!ret) {
		self->n--;
		memmove(self->uuids[i], self->uuids[self->n],
			sizeof(self->uuids[i]));
	}
	return ret;
}

TEST_F(mdev_types, types)
{
	const struct mdev_parent_spec *p = self->p;
	char path[MDEV_PATH_MAX + 64], buf[256], dir[MDEV_PATH_MAX];
	char real_parent[MDEV_PATH_MAX], real_type[MDEV_PATH_MAX];
	bool seen[MAX_TYPES] = { 0 };
	struct dirent *de;
	int i, count = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/mdev_supported_types", p->parent_dir);
	d = opendir(path);
	ASSERT_NE(NULL, d) TH_LOG("opendir %s: %s", path, strerror(errno));
	while ((de = readdir(d))) {
		bool known = false;

		if (de->d_name[0] == '.')
			continue;
		count++;
		for (i = 0; i < p->ntypes; i++) {
			if (!strcmp(de->d_name, p->types[i].name)) {
				EXPECT_FALSE(seen[i]);
				seen[i] = true;
				known = true;
			}
		}
		EXPECT_TRUE(known) TH_LOG("unexpected type %s in %s",
					  de->d_name, path);
	}
	closedir(d);
	EXPECT_EQ(p->ntypes, count);

	ASSERT_NE(NULL, realpath(p->parent_dir, real_parent));
	for (i = 0; i < p->ntypes; i++) {
		const struct mdev_type_spec *t = &p->types[i];

		EXPECT_TRUE(seen[i]) TH_LOG("type %s missing", t->name);

		/* Found through /sys/class/mdev_bus under this parent. */
		ASSERT_EQ(0, mdev_type_dir(t->name, dir, sizeof(dir)))
			TH_LOG("%s", mdev_lib_error());
		ASSERT_NE(NULL, realpath(dir, real_type));
		EXPECT_EQ(0, strncmp(real_type, real_parent,
				     strlen(real_parent)))
			TH_LOG("%s is not below %s", real_type, real_parent);

		ASSERT_LT(0, mdev_type_attr(t->name, "name", buf, sizeof(buf)))
			TH_LOG("%s: empty or unreadable name: %s", t->name,
			       mdev_lib_error());

		ASSERT_LE(0, mdev_type_attr(t->name, "device_api", buf,
					    sizeof(buf)))
			TH_LOG("%s", mdev_lib_error());
		EXPECT_STREQ("vfio-pci", buf);

		ASSERT_LE(0, mdev_type_available(t->name))
			TH_LOG("%s", mdev_lib_error());

		snprintf(path, sizeof(path), "%s/create", dir);
		EXPECT_TRUE(path_exists(path));
		snprintf(path, sizeof(path), "%s/devices", dir);
		EXPECT_TRUE(path_exists(path));

		snprintf(path, sizeof(path), "%s/description", dir);
		if (!p->has_description) {
			EXPECT_FALSE(path_exists(path));
			continue;
		}
		ASSERT_LT(0, mdev_type_attr(t->name, "description", buf,
					    sizeof(buf)))
			TH_LOG("%s: empty or unreadable description: %s",
			       t->name, mdev_lib_error());
		EXPECT_NE(NULL, strstr(buf, t->desc_needle))
			TH_LOG("%s: description '%s' does not mention '%s'",
			       t->name, buf, t->desc_needle);
	}
}

TEST_F_TIMEOUT(mdev_types, budget, 300)
{
	const struct mdev_parent_spec *p = self->p;
	const char *type = p->types[p->big].name;
	char uuid[MDEV_UUID_LEN + 1];
	int start, i, avail, ret;

	start = mdev_type_available(type);
	ASSERT_LE(0, start) TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(p->budget / p->types[p->big].units, (unsigned int)start);
	ASSERT_LT(0, start);

	for (i = 0; i < start; i++) {
		ret = track_create(_metadata, self, type);
		ASSERT_EQ(0, ret) TH_LOG("create %d of %d: %s", i + 1, start,
					 mdev_lib_error());
		avail = mdev_type_available(type);
		ASSERT_EQ(start - 1 - i, avail)
			TH_LOG("after %d creates", i + 1);
	}
	check_availability(_metadata, p, start * p->types[p->big].units);

	/* Over budget: the write to "create" fails with ENOSPC. */
	mdev_uuid_generate(uuid);
	ret = mdev_create_uuid(type, uuid);
	EXPECT_EQ(-ENOSPC, ret) TH_LOG("over-budget create: %s",
				       ret ? mdev_lib_error() : "succeeded");
	if (!ret)
		mdev_remove(uuid);
	EXPECT_FALSE(mdev_exists(uuid));
	EXPECT_EQ(0, mdev_type_available(type));

	/* Removing one makes exactly one available again. */
	ASSERT_EQ(0, track_remove(self, 0)) TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(1, mdev_type_available(type));
	ret = track_create(_metadata, self, type);
	ASSERT_EQ(0, ret) TH_LOG("create after remove: %s", mdev_lib_error());
	EXPECT_EQ(0, mdev_type_available(type));

	while (self->n)
		ASSERT_EQ(0, track_remove(self, self->n - 1))
			TH_LOG("%s", mdev_lib_error());
	check_availability(_metadata, p, 0);
}

/* All types share one budget: creating one type lowers the others. */
TEST_F_TIMEOUT(mdev_types, shared_budget, 300)
{
	const struct mdev_parent_spec *p = self->p;
	unsigned int used = 0;
	int i;

	for (i = p->ntypes - 1; i >= 0; i--) {
		ASSERT_EQ(0, track_create(_metadata, self, p->types[i].name))
			TH_LOG("%s", mdev_lib_error());
		used += p->types[i].units;
		check_availability(_metadata, p, used);
	}
	while (self->n) {
		char type[128];
		int j;

		ASSERT_EQ(0, mdev_device_type(self->uuids[0], type,
					      sizeof(type)))
			TH_LOG("%s", mdev_lib_error());
		for (j = 0; j < p->ntypes; j++)
			if (!strcmp(type, p->types[j].name))
				break;
		ASSERT_LT(j, p->ntypes) TH_LOG("unknown type %s", type);
		ASSERT_EQ(0, track_remove(self, 0))
			TH_LOG("%s", mdev_lib_error());
		used -= p->types[j].units;
		check_availability(_metadata, p, used);
	}
	EXPECT_EQ(0, used);
}

TEST_F(mdev_types, remove)
{
	const struct mdev_parent_spec *p = self->p;
	const char *type = p->types[p->small].name;
	char path[MDEV_PATH_MAX], buf[128];
	char uuid[MDEV_UUID_LEN + 1];
	int start;

	start = mdev_type_available(type);
	ASSERT_LT(0, start) TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, track_create(_metadata, self, type))
		TH_LOG("%s", mdev_lib_error());
	snprintf(uuid, sizeof(uuid), "%s", self->uuids[0]);
	ASSERT_TRUE(mdev_exists(uuid));
	ASSERT_EQ(0, mdev_device_type(uuid, buf, sizeof(buf)))
		TH_LOG("%s", mdev_lib_error());
	EXPECT_STREQ(type, buf);
	EXPECT_EQ(start - 1, mdev_type_available(type));

	/* Writing 0 to "remove" is accepted and removes nothing. */
	snprintf(path, sizeof(path), MDEV_BUS_DEVICES "/%s/remove", uuid);
	EXPECT_EQ(0, sysfs_write_str(path, "0")) TH_LOG("%s", mdev_lib_error());
	EXPECT_TRUE(mdev_exists(uuid));

	ASSERT_EQ(0, track_remove(self, 0)) TH_LOG("%s", mdev_lib_error());
	EXPECT_FALSE(mdev_exists(uuid));
	EXPECT_EQ(start, mdev_type_available(type));
	/* Gone for good: the remove attribute went with it. */
	EXPECT_EQ(-ENOENT, mdev_remove(uuid));
}

TEST_F(mdev_types, bad_create)
{
	const struct mdev_parent_spec *p = self->p;
	const char *type = p->types[p->small].name;
	char dir[MDEV_PATH_MAX], path[MDEV_PATH_MAX + 16];
	int start;

	start = mdev_type_available(type);
	ASSERT_LT(0, start) TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, mdev_type_dir(type, dir, sizeof(dir)))
		TH_LOG("%s", mdev_lib_error());
	snprintf(path, sizeof(path), "%s/create", dir);

	EXPECT_EQ(-EINVAL, sysfs_write_str(path, "not-a-uuid"));
	EXPECT_EQ(-EINVAL, sysfs_write_str(path,
			"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"));
	EXPECT_EQ(-EINVAL, sysfs_write_str(path,
			"00000000-0000-4000-8000-000000000000-too-long"));

	/* The same UUID twice. */
	ASSERT_EQ(0, track_create(_metadata, self, type))
		TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(-EEXIST, mdev_create_uuid(type, self->uuids[0]));
	EXPECT_EQ(start - 1, mdev_type_available(type));
	ASSERT_EQ(0, track_remove(self, 0)) TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(start, mdev_type_available(type));
}

#define CYCLES 100

TEST_F_TIMEOUT(mdev_types, create_remove_100, 600)
{
	const struct mdev_parent_spec *p = self->p;
	int start[MAX_TYPES], i, j;

	for (j = 0; j < p->ntypes; j++) {
		start[j] = mdev_type_available(p->types[j].name);
		ASSERT_LE(0, start[j]) TH_LOG("%s", mdev_lib_error());
	}
	for (i = 0; i < CYCLES; i++) {
		/* Alternate the types so every one is exercised. */
		j = i % p->ntypes;
		ASSERT_EQ(0, track_create(_metadata, self, p->types[j].name))
			TH_LOG("cycle %d: %s", i, mdev_lib_error());
		ASSERT_TRUE(mdev_exists(self->uuids[0]));
		ASSERT_EQ(start[j] - 1,
			  mdev_type_available(p->types[j].name))
			TH_LOG("cycle %d", i);
		ASSERT_EQ(0, track_remove(self, 0))
			TH_LOG("cycle %d: %s", i, mdev_lib_error());
		ASSERT_FALSE(mdev_exists(self->uuids[0]));
	}
	for (j = 0; j < p->ntypes; j++)
		EXPECT_EQ(start[j], mdev_type_available(p->types[j].name));
}

/* ---- the device through both VFIO back-ends ---- */

FIXTURE(vfio_dev) {
	const struct mdev_parent_spec *p;
	char uuid[MDEV_UUID_LEN + 1];
	bool created;
	struct vfio_mdev dev;
	int extra_fd;		/* a second device fd, closed by teardown */
};

FIXTURE_VARIANT(vfio_dev) {
	const struct mdev_parent_spec *parent;
	enum vfio_backend backend;
};

FIXTURE_VARIANT_ADD(vfio_dev, mblit_type1) {
	.parent = &mblit_parent,
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(vfio_dev, mblit_iommufd) {
	.parent = &mblit_parent,
	.backend = VFIO_BACKEND_IOMMUFD,
};

FIXTURE_VARIANT_ADD(vfio_dev, mtty_type1) {
	.parent = &mtty_parent,
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(vfio_dev, mtty_iommufd) {
	.parent = &mtty_parent,
	.backend = VFIO_BACKEND_IOMMUFD,
};

FIXTURE_SETUP(vfio_dev)
{
	const struct mdev_parent_spec *p = variant->parent;
	int ret;

	self->p = p;
	self->created = false;
	self->dev.device_fd = -1;
	self->dev.group_fd = -1;
	self->dev.container_fd = -1;
	self->dev.iommufd = -1;
	self->extra_fd = -1;
	ASSERT_TRUE(module_loaded(p->module))
		TH_LOG("module %s is not loaded", p->module);
	ret = mdev_create(p->types[p->small].name, self->uuid);
	ASSERT_EQ(0, ret) TH_LOG("%s", mdev_lib_error());
	self->created = true;
}

FIXTURE_TEARDOWN(vfio_dev)
{
	/* Removing an mdev waits until every fd of it is closed. */
	if (self->extra_fd >= 0)
		close(self->extra_fd);
	vfio_mdev_close(&self->dev);
	if (self->created && mdev_remove(self->uuid))
		TH_LOG("cleanup: %s", mdev_lib_error());
}

TEST_F(vfio_dev, open_close)
{
	struct vfio_device_info info;

	ASSERT_EQ(0, vfio_mdev_open(&self->dev, self->uuid, variant->backend))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, vfio_mdev_device_info(&self->dev, &info))
		TH_LOG("%s", mdev_lib_error());
	EXPECT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI)
		TH_LOG("flags %#x", info.flags);
	EXPECT_EQ(self->p->device_flags,
		  info.flags & ~(uint32_t)VFIO_DEVICE_FLAGS_CAPS)
		TH_LOG("flags %#x, expected %#x", info.flags,
		       self->p->device_flags);
	EXPECT_EQ(self->p->num_regions, info.num_regions);
	EXPECT_EQ(self->p->num_irqs, info.num_irqs);
	vfio_mdev_close(&self->dev);
	EXPECT_EQ(-1, self->dev.device_fd);
}

TEST_F(vfio_dev, open_twice)
{
	struct vfio_device_info info;
	int i;

	/* Open and close in sequence. */
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, vfio_mdev_open(&self->dev, self->uuid,
					    variant->backend))
			TH_LOG("open %d: %s", i + 1, mdev_lib_error());
		ASSERT_EQ(0, vfio_mdev_device_info(&self->dev, &info))
			TH_LOG("%s", mdev_lib_error());
		vfio_mdev_close(&self->dev);
	}

	/*
	 * A second fd while the first is open: the group path allows it,
	 * the cdev path refuses a second bind with EINVAL.
	 */
	ASSERT_EQ(0, vfio_mdev_open(&self->dev, self->uuid, variant->backend))
		TH_LOG("%s", mdev_lib_error());
	self->extra_fd = vfio_mdev_open_another_fd(&self->dev);
	if (variant->backend == VFIO_BACKEND_TYPE1) {
		ASSERT_LE(0, self->extra_fd) TH_LOG("%s", mdev_lib_error());
		memset(&info, 0, sizeof(info));
		info.argsz = sizeof(info);
		EXPECT_EQ(0, ioctl(self->extra_fd, VFIO_DEVICE_GET_INFO, &info));
		EXPECT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI);
	} else {
		EXPECT_EQ(-EINVAL, self->extra_fd);
	}
	if (self->extra_fd >= 0)
		close(self->extra_fd);
	self->extra_fd = -1;
	/* The first fd still works after the second went away. */
	EXPECT_EQ(0, vfio_mdev_device_info(&self->dev, &info))
		TH_LOG("%s", mdev_lib_error());
	vfio_mdev_close(&self->dev);
}

/* An open device pins its module; closing it releases the pin. */
TEST_F(vfio_dev, module_busy)
{
	const char *module = self->p->module;
	int refcnt, busy;

	refcnt = module_refcnt(module);
	ASSERT_LE(0, refcnt) TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, vfio_mdev_open(&self->dev, self->uuid, variant->backend))
		TH_LOG("%s", mdev_lib_error());
	busy = module_refcnt(module);
	EXPECT_LT(refcnt, busy);

	EXPECT_EQ(-EWOULDBLOCK, module_unload(module))
		TH_LOG("delete_module(%s) with an open device: %s", module,
		       mdev_lib_error());
	EXPECT_TRUE(module_loaded(module));
	EXPECT_TRUE(path_exists(self->p->parent_dir));
	EXPECT_TRUE(mdev_exists(self->uuid));

	vfio_mdev_close(&self->dev);
	EXPECT_EQ(refcnt, module_refcnt(module));
	EXPECT_TRUE(module_loaded(module));
}

TEST_F(vfio_dev, dma_map)
{
	const uint64_t iova = 0x10000000, size = 2 << 20;
	void *buf;

	buf = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	memset(buf, 0x5a, size);
	ASSERT_EQ(0, vfio_mdev_open(&self->dev, self->uuid, variant->backend))
		TH_LOG("%s", mdev_lib_error());

	ASSERT_EQ(0, vfio_mdev_dma_map(&self->dev, buf, iova, size))
		TH_LOG("%s", mdev_lib_error());
	/* The same IOVA range again is refused. */
	EXPECT_EQ(-EEXIST, vfio_mdev_dma_map(&self->dev, buf, iova, size));
	EXPECT_EQ(0, vfio_mdev_dma_unmap(&self->dev, iova, size))
		TH_LOG("%s", mdev_lib_error());
	/* Map again after the unmap, and leave it to close to clean up. */
	EXPECT_EQ(0, vfio_mdev_dma_map(&self->dev, buf, iova, size))
		TH_LOG("%s", mdev_lib_error());
	vfio_mdev_close(&self->dev);
	munmap(buf, size);
}

TEST_HARNESS_MAIN
