// SPDX-License-Identifier: GPL-2.0
/*
 * Module unload and reload with mdevs present (but not open): unloading
 * removes the mdevs and the parent, loading again brings the parent back
 * with its full budget.  Then mblit's load and an mdev creation with each
 * of their slab allocations failing in turn (fail-nth): every failure is
 * clean.  Run last: it unloads the modules under test.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "mdev_lib.h"

struct module_spec {
	const char *module;
	const char *class_dir;		/* removed with the module */
	const char *parent_dir;
	const char *types[2];		/* the mdevs created before unloading */
};

static const struct module_spec mblit_spec = {
	.module = "mblit",
	.class_dir = "/sys/class/mblit",
	.parent_dir = "/sys/class/mblit/mblit",
	.types = { "mblit-1m", "mblit-16m" },
};

static const struct module_spec mtty_spec = {
	.module = "mtty",
	.class_dir = "/sys/class/mtty",
	.parent_dir = "/sys/class/mtty/mtty",
	.types = { "mtty-1", "mtty-2" },
};

static void unload_reload(struct __test_metadata *_metadata,
			  const struct module_spec *m)
{
	char uuids[2][MDEV_UUID_LEN + 1], path[MDEV_PATH_MAX], cmd[128];
	int avail[2], i, ret;

	ASSERT_TRUE(module_loaded(m->module))
		TH_LOG("module %s is not loaded", m->module);
	ASSERT_TRUE(path_exists(m->parent_dir));
	for (i = 0; i < 2; i++) {
		avail[i] = mdev_type_available(m->types[i]);
		ASSERT_LT(0, avail[i]) TH_LOG("%s", mdev_lib_error());
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, mdev_create(m->types[i], uuids[i]))
			TH_LOG("%s", mdev_lib_error());
	}

	ret = module_unload(m->module);
	if (ret) {
		TH_LOG("%s", mdev_lib_error());
		for (i = 0; i < 2; i++)
			mdev_remove(uuids[i]);
	}
	ASSERT_EQ(0, ret);
	EXPECT_FALSE(module_loaded(m->module));
	snprintf(path, sizeof(path), "/sys/module/%s", m->module);
	EXPECT_FALSE(path_exists(path));
	EXPECT_FALSE(path_exists(m->class_dir));
	snprintf(path, sizeof(path), MDEV_BUS_CLASS "/%s",
		 strrchr(m->parent_dir, '/') + 1);
	EXPECT_FALSE(path_exists(path));
	for (i = 0; i < 2; i++) {
		EXPECT_FALSE(mdev_exists(uuids[i]));
		EXPECT_EQ(-ENOENT, mdev_type_available(m->types[i]));
	}

	snprintf(cmd, sizeof(cmd), "modprobe %s", m->module);
	ASSERT_EQ(0, run_cmd(cmd)) TH_LOG("%s failed", cmd);
	EXPECT_TRUE(module_loaded(m->module));
	EXPECT_TRUE(path_exists(m->parent_dir));
	for (i = 0; i < 2; i++) {
		EXPECT_FALSE(mdev_exists(uuids[i]));
		EXPECT_EQ(avail[i], mdev_type_available(m->types[i]))
			TH_LOG("%s after reload: %s", m->types[i],
			       mdev_lib_error());
	}

	/* The reloaded parent works: one create/remove round trip. */
	ASSERT_EQ(0, mdev_create(m->types[0], uuids[0]))
		TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(avail[0] - 1, mdev_type_available(m->types[0]));
	EXPECT_EQ(0, mdev_remove(uuids[0])) TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(avail[0], mdev_type_available(m->types[0]));
}

FIXTURE(mblit_module) {
};

FIXTURE_SETUP(mblit_module)
{
}

FIXTURE_TEARDOWN(mblit_module)
{
}

TEST_F_TIMEOUT(mblit_module, unload_reload, 120)
{
	unload_reload(_metadata, &mblit_spec);
}

/* ---- slab fault injection (CONFIG_FAILSLAB, /proc/<tid>/fail-nth) ---- */

#define MBLIT_DEBUGFS	"/sys/kernel/debug/mblit"
/* More slab allocations than a load or a create makes. */
#define FAIL_NTH_MAX	1000

/*
 * [start, end) of the kernel function @name, from /proc/kallsyms: its
 * address and the next higher symbol's.  0 on success.
 */
static int kernel_fn_range(const char *name, unsigned long *start,
			   unsigned long *end)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	unsigned long addr, next = ~0UL;
	char type, sym[256];

	*start = 0;
	if (!f)
		return -errno;
	while (fscanf(f, "%lx %c %255s%*[^\n]", &addr, &type, sym) == 3) {
		if (!strcmp(sym, name))
			*start = addr;
	}
	rewind(f);
	while (*start && fscanf(f, "%lx %c %255s%*[^\n]", &addr, &type,
				sym) == 3) {
		if (addr > *start && addr < next)
			next = addr;
	}
	fclose(f);
	if (!*start || next == ~0UL)
		return -ENOENT;
	*end = next;
	return 0;
}

/*
 * A failure the VFIO core does not handle cleanly: when
 * vfio_create_group() fails after vfio_group_alloc(), the group is put
 * with its iommu_group still set and vfio_group_release() WARNs
 * (drivers/vfio/group.c, seen on 7.3.4).  That is the core's bug, not
 * mblit's; injected failures are kept out of that function.
 */
#define CORE_BUG_FN	"vfio_create_group"

/*
 * Failures are injected only into allocations with module code on the
 * stack (x86_64's module area): mblit's init and probe, and what they call,
 * but not the module loader reading mblit.ko, whose failures are the
 * loader's business (and which reports them with a stack dump).
 */
#define MODULES_START	0xffffffffa0000000UL
#define MODULES_END	0xffffffffff000000UL

/* Whether module @mod has symbols, all in [MODULES_START, MODULES_END). */
static bool module_in_module_area(const char *mod)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	bool found = false, inside = true;
	char *line = NULL, want[64];
	size_t cap = 0, wl;
	unsigned long addr;

	if (!f)
		return false;
	/* Module symbols end in "\t[module]"; Rust names can be very long. */
	wl = snprintf(want, sizeof(want), "\t[%s]", mod);
	while (getline(&line, &cap, f) > 0) {
		size_t len = strcspn(line, "\n");

		if (len < wl || strncmp(line + len - wl, want, wl))
			continue;
		if (sscanf(line, "%lx", &addr) != 1)
			continue;
		found = true;
		if (addr < MODULES_START || addr >= MODULES_END)
			inside = false;
	}
	free(line);
	fclose(f);
	return found && inside;
}

FIXTURE(mblit_failslab) {
	int nth;
	char wait[8], verbose[8], rstart[32], rend[32], qstart[32], qend[32];
	bool saved;
};

FIXTURE_SETUP(mblit_failslab)
{
	self->nth = -1;
	self->saved = false;
	ASSERT_LE(0, sysfs_read_str(FAILSLAB "/ignore-gfp-wait", self->wait,
				    sizeof(self->wait)))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_LE(0, sysfs_read_str(FAILSLAB "/verbose", self->verbose,
				    sizeof(self->verbose)))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_LE(0, sysfs_read_str(FAILSLAB "/reject-start", self->rstart,
				    sizeof(self->rstart)))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_LE(0, sysfs_read_str(FAILSLAB "/reject-end", self->rend,
				    sizeof(self->rend)))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_LE(0, sysfs_read_str(FAILSLAB "/require-start", self->qstart,
				    sizeof(self->qstart)))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_LE(0, sysfs_read_str(FAILSLAB "/require-end", self->qend,
				    sizeof(self->qend)))
		TH_LOG("%s", mdev_lib_error());
	self->saved = true;
	ASSERT_TRUE(module_in_module_area("mdev"))
		TH_LOG("mdev's symbols are not in [%#lx, %#lx): the module area differs",
		       MODULES_START, MODULES_END);
	{
		char v[32];

		snprintf(v, sizeof(v), "%#lx", MODULES_START);
		ASSERT_EQ(0, sysfs_write_str(FAILSLAB "/require-start", v))
			TH_LOG("%s", mdev_lib_error());
		snprintf(v, sizeof(v), "%#lx", MODULES_END);
		ASSERT_EQ(0, sysfs_write_str(FAILSLAB "/require-end", v))
			TH_LOG("%s", mdev_lib_error());
	}
	{
		unsigned long start = 0, end = 0;
		char v[32];

		ASSERT_EQ(0, kernel_fn_range(CORE_BUG_FN, &start, &end))
			TH_LOG("%s not found in /proc/kallsyms", CORE_BUG_FN);
		snprintf(v, sizeof(v), "%#lx", start);
		ASSERT_EQ(0, sysfs_write_str(FAILSLAB "/reject-start", v))
			TH_LOG("%s", mdev_lib_error());
		snprintf(v, sizeof(v), "%#lx", end);
		ASSERT_EQ(0, sysfs_write_str(FAILSLAB "/reject-end", v))
			TH_LOG("%s", mdev_lib_error());
	}
	/* Sleeping allocations fail too; no report of each failure. */
	ASSERT_EQ(0, sysfs_write_str(FAILSLAB "/ignore-gfp-wait", "N"))
		TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, sysfs_write_str(FAILSLAB "/verbose", "0"))
		TH_LOG("%s", mdev_lib_error());
	self->nth = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->nth) TH_LOG("/proc/thread-self/fail-nth: %s",
				       strerror(errno));
}

FIXTURE_TEARDOWN(mblit_failslab)
{
	if (self->nth >= 0) {
		fail_nth_set(self->nth, 0);
		close(self->nth);
	}
	if (self->saved) {
		sysfs_write_str(FAILSLAB "/ignore-gfp-wait", self->wait);
		sysfs_write_str(FAILSLAB "/verbose", self->verbose);
		sysfs_write_str(FAILSLAB "/reject-start", self->rstart);
		sysfs_write_str(FAILSLAB "/reject-end", self->rend);
		sysfs_write_str(FAILSLAB "/require-start", self->qstart);
		sysfs_write_str(FAILSLAB "/require-end", self->qend);
	}
	if (!module_loaded("mblit") && run_cmd("modprobe mblit"))
		TH_LOG("cleanup: modprobe mblit failed");
}

/*
 * Load mblit (no mdev exists) with its 1st, 2nd, ... slab allocation
 * failing, until a load makes fewer allocations than the one to fail.
 * Each failed load leaves nothing behind: no module, no class, no mdev
 * parent, no debugfs directory.  A load that absorbs the failure must
 * work; it is unloaded and the next allocation tried.
 */
TEST_F_TIMEOUT(mblit_failslab, module_load_fails_cleanly_at_every_allocation,
	       1200)
{
	unsigned int n, failed = 0, absorbed = 0;
	char ko[256], uuid[MDEV_UUID_LEN + 1];
	bool loaded = false;
	struct utsname u;
	int avail;

	ASSERT_EQ(0, uname(&u));
	snprintf(ko, sizeof(ko), "/lib/modules/%s/extra/mblit.ko", u.release);
	ASSERT_TRUE(path_exists(ko)) TH_LOG("no %s", ko);
	if (module_loaded("mblit"))
		ASSERT_EQ(0, module_unload("mblit")) TH_LOG("%s", mdev_lib_error());
	ASSERT_FALSE(path_exists(mblit_spec.class_dir));

	for (n = 1; n <= FAIL_NTH_MAX; n++) {
		int fd, ret, err, left;

		fd = open(ko, O_RDONLY | O_CLOEXEC);
		ASSERT_LE(0, fd) TH_LOG("open %s: %s", ko, strerror(errno));
		ASSERT_EQ(0, fail_nth_set(self->nth, n));
		ret = syscall(SYS_finit_module, fd, "", 0);
		err = errno;
		left = fail_nth_get(self->nth);
		ASSERT_EQ(0, fail_nth_set(self->nth, 0));
		close(fd);
		ASSERT_LE(0, left) TH_LOG("reading fail-nth: %s", strerror(-left));

		if (!ret) {
			ASSERT_TRUE(path_exists(mblit_spec.parent_dir))
				TH_LOG("n=%u: loaded, but no %s", n,
				       mblit_spec.parent_dir);
			if (left > 0) {
				loaded = true;	/* nothing was failed */
				break;
			}
			absorbed++;
			ASSERT_EQ(0, module_unload("mblit"))
				TH_LOG("n=%u: %s", n, mdev_lib_error());
			continue;
		}
		failed++;
		ASSERT_EQ(0, left)
			TH_LOG("n=%u: finit_module failed (%s) with no allocation failed",
			       n, strerror(err));
		ASSERT_FALSE(module_loaded("mblit"))
			TH_LOG("n=%u: a failed load (%s) left mblit loaded", n,
			       strerror(err));
		ASSERT_FALSE(path_exists(mblit_spec.class_dir))
			TH_LOG("n=%u: a failed load (%s) left %s", n,
			       strerror(err), mblit_spec.class_dir);
		ASSERT_FALSE(path_exists(MDEV_BUS_CLASS "/mblit"))
			TH_LOG("n=%u: a failed load (%s) left the mdev parent", n,
			       strerror(err));
		ASSERT_FALSE(path_exists(MBLIT_DEBUGFS))
			TH_LOG("n=%u: a failed load (%s) left " MBLIT_DEBUGFS, n,
			       strerror(err));
	}
	ASSERT_TRUE(loaded) TH_LOG("mblit did not load within %d allocations",
				   FAIL_NTH_MAX);
	TH_LOG("loaded with allocation %u not reached: %u loads failed, %u absorbed the failure",
	       n, failed, absorbed);

	/* The module that loaded works. */
	avail = mdev_type_available("mblit-1m");
	ASSERT_LT(0, avail) TH_LOG("%s", mdev_lib_error());
	ASSERT_EQ(0, mdev_create("mblit-1m", uuid)) TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(avail - 1, mdev_type_available("mblit-1m"));
	EXPECT_EQ(0, mdev_remove(uuid)) TH_LOG("%s", mdev_lib_error());
	EXPECT_EQ(avail, mdev_type_available("mblit-1m"));
}

/*
 * Create an mblit-1m mdev (a sysfs write to the type's create file) with
 * its 1st, 2nd, ... slab allocation failing, until a create makes fewer
 * allocations than the one to fail.  A failed create leaves no mdev, no
 * debugfs directory, and the budget as it was.
 */
TEST_F_TIMEOUT(mblit_failslab, mdev_create_fails_cleanly_at_every_allocation,
	       900)
{
	char dir[MDEV_PATH_MAX], create[MDEV_PATH_MAX + 16];
	char uuid[MDEV_UUID_LEN + 1], dbg[MDEV_PATH_MAX];
	unsigned int n, failed = 0, absorbed = 0;
	bool done = false, exists;
	int avail0;

	if (!module_loaded("mblit"))
		ASSERT_EQ(0, run_cmd("modprobe mblit"));
	ASSERT_EQ(0, mdev_type_dir("mblit-1m", dir, sizeof(dir)))
		TH_LOG("%s", mdev_lib_error());
	snprintf(create, sizeof(create), "%s/create", dir);
	avail0 = mdev_type_available("mblit-1m");
	ASSERT_LT(0, avail0) TH_LOG("%s", mdev_lib_error());

	for (n = 1; n <= FAIL_NTH_MAX; n++) {
		int fd, err, left;
		ssize_t w;

		mdev_uuid_generate(uuid);
		snprintf(dbg, sizeof(dbg), MBLIT_DEBUGFS "/%s", uuid);
		fd = open(create, O_WRONLY | O_CLOEXEC);
		ASSERT_LE(0, fd) TH_LOG("open %s: %s", create, strerror(errno));
		ASSERT_EQ(0, fail_nth_set(self->nth, n));
		w = write(fd, uuid, MDEV_UUID_LEN);
		err = errno;
		left = fail_nth_get(self->nth);
		ASSERT_EQ(0, fail_nth_set(self->nth, 0));
		close(fd);
		ASSERT_LE(0, left) TH_LOG("reading fail-nth: %s", strerror(-left));

		if (w == MDEV_UUID_LEN) {
			ASSERT_TRUE(mdev_exists(uuid))
				TH_LOG("n=%u: create succeeded, no mdev", n);
			/* (debugfs may be missing if its creation failed) */
			if (left > 0)
				EXPECT_TRUE(path_exists(dbg))
					TH_LOG("n=%u: no %s", n, dbg);
			EXPECT_EQ(avail0 - 1, mdev_type_available("mblit-1m"));
			ASSERT_EQ(0, mdev_remove(uuid))
				TH_LOG("n=%u: %s", n, mdev_lib_error());
			EXPECT_EQ(avail0, mdev_type_available("mblit-1m"));
			if (left > 0) {
				done = true;	/* nothing was failed */
				break;
			}
			absorbed++;
			continue;
		}
		failed++;
		ASSERT_EQ(0, left)
			TH_LOG("n=%u: create failed (%s) with no allocation failed",
			       n, w < 0 ? strerror(err) : "short write");
		exists = mdev_exists(uuid);
		if (exists)
			mdev_remove(uuid);
		ASSERT_FALSE(exists)
			TH_LOG("n=%u: a failed create (%s) left the mdev", n,
			       strerror(err));
		ASSERT_FALSE(path_exists(dbg))
			TH_LOG("n=%u: a failed create (%s) left %s", n,
			       strerror(err), dbg);
		ASSERT_EQ(avail0, mdev_type_available("mblit-1m"))
			TH_LOG("n=%u: a failed create (%s) changed the budget", n,
			       strerror(err));
	}
	ASSERT_TRUE(done) TH_LOG("no create completed within %d allocations",
				 FAIL_NTH_MAX);
	TH_LOG("created with allocation %u not reached: %u creates failed, %u absorbed the failure",
	       n, failed, absorbed);
}

FIXTURE(mtty_module) {
};

FIXTURE_SETUP(mtty_module)
{
}

FIXTURE_TEARDOWN(mtty_module)
{
}

TEST_F_TIMEOUT(mtty_module, unload_reload, 120)
{
	unload_reload(_metadata, &mtty_spec);
}

TEST_HARNESS_MAIN
