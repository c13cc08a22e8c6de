// SPDX-License-Identifier: GPL-2.0
/*
 * Module unload and reload with mdevs present (but not open): unloading
 * removes the mdevs and the parent, loading again brings the parent back
 * with its full budget.  Run last: it unloads the modules under test.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
