// SPDX-License-Identifier: GPL-2.0
/*
 * The per-device pin budget (docs/device.md §8, ERR_PIN_BUDGET): mblit is
 * reloaded with pin_budget=16 (the parameter is read at mdev creation),
 * a command needing more guest pages pinned at once than that fails with
 * ERR_PIN_BUDGET, CTRL.RESET recovers and commands within the budget work.
 * The module is reloaded with its defaults afterwards.  Runs after
 * mblit_engine and before mblit_module (selftests/Makefile's list): no
 * mblit mdev may exist while it reloads the module.
 */

#include "kselftest_harness.h"
#include "mblit_dev.h"

#define BUDGET		16
#define G(off)		(MB_DATA_IOVA + (off))

/* Unload mblit (no mdev may exist) and load it with @params. */
static int reload_mblit(const char *params)
{
	char cmd[128];
	int ret;

	if (module_loaded("mblit")) {
		ret = module_unload("mblit");
		if (ret)
			return ret;
	}
	snprintf(cmd, sizeof(cmd), "modprobe mblit %s", params);
	ret = run_cmd(cmd);
	return ret ? -EIO : 0;
}

FIXTURE(pin_budget) {
	struct mb_dev dev;
	bool reloaded;
};

FIXTURE_VARIANT(pin_budget) {
	enum vfio_backend backend;
};

FIXTURE_VARIANT_ADD(pin_budget, type1) {
	.backend = VFIO_BACKEND_TYPE1,
};

FIXTURE_VARIANT_ADD(pin_budget, iommufd) {
	.backend = VFIO_BACKEND_IOMMUFD,
};

FIXTURE_SETUP(pin_budget)
{
	int ret;

	mb_init(&self->dev);
	self->reloaded = true;
	ret = reload_mblit("pin_budget=16");
	ASSERT_EQ(0, ret) TH_LOG("reloading mblit with pin_budget=16: %s",
				 ret == -EIO ? "modprobe failed" :
				 mdev_lib_error());
	mb_open(_metadata, &self->dev, "mblit-16m", variant->backend);
}

FIXTURE_TEARDOWN(pin_budget)
{
	mb_close(_metadata, &self->dev);
	if (self->reloaded && reload_mblit(""))
		TH_LOG("reloading mblit with default parameters failed: %s",
		       mdev_lib_error());
}

/* Run @x (after ring index @idx), expect ERR_PIN_BUDGET; returns ERR_ADDR. */
static uint64_t expect_budget_error(struct __test_metadata *_metadata,
				    struct mb_dev *d, const struct mblit_desc *x,
				    uint32_t idx)
{
	uint32_t st;

	mb_submit_bad(_metadata, d, x, 1);
	st = mb_wait_error(_metadata, d);
	EXPECT_EQ(MBLIT_STATUS_ERROR |
		  (MBLIT_ERR_PIN_BUDGET << MBLIT_STATUS_ERR_CODE_SHIFT), st)
		TH_LOG("STATUS code %#x, want PIN_BUDGET",
		       MBLIT_STATUS_ERR_CODE(st));
	EXPECT_EQ(idx, RD32(MBLIT_REG_ERR_INDEX));
	EXPECT_EQ(idx, RD32(MBLIT_REG_RING_HEAD));
	EXPECT_EQ(idx, RD64(MBLIT_REG_CMD_COUNT));
	/* The command's own pins are gone; the ring page may stay. */
	EXPECT_GE(1, mb_debugfs(_metadata, d, "pinned_pages"));
	/* Part of the destination may have been written (§8). */
	memcpy(d->mg + (x->dst - MB_IOVA), d->buf + (x->dst - MB_IOVA),
	       x->len);
	mb_check_guest(_metadata, d, "after PIN_BUDGET");
	return RD64(MBLIT_REG_ERR_ADDR);
}

TEST_F_TIMEOUT(pin_budget, budget_16, 180)
{
	struct mb_dev *d = &self->dev;
	const uint64_t dst = G(MB_MIB), src = G(0);
	struct mblit_desc x;
	uint64_t addr;
	char uuid[MDEV_UUID_LEN + 1];

	EXPECT_EQ(BUDGET, mb_debugfs(_metadata, d, "pin_budget"));
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));

	/* The descriptor's page + 15 data pages: exactly the budget. */
	mb_ring_setup(_metadata, d, 8);
	x = mb_fill(dst, 15 * MB_PAGE, 0x11223344, 0);
	mb_run(_metadata, d, &x, 1);
	/* Nothing stays pinned once the command is done. */
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));

	/* COPY of 64 KiB guest -> guest: 32 data pages > 16. */
	x = mb_copy(dst, src, 64 * 1024, 0);
	addr = expect_budget_error(_metadata, d, &x, 1);
	TH_LOG("64 KiB COPY: ERR_ADDR %#llx", (unsigned long long)addr);
	EXPECT_EQ(0, addr % MB_PAGE);
	EXPECT_TRUE((addr >= dst && addr < dst + 64 * 1024) ||
		    (addr >= src && addr < src + 64 * 1024))
		TH_LOG("ERR_ADDR %#llx is in neither range",
		       (unsigned long long)addr);

	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_expect_reset_regs(_metadata, d, "after CTRL.RESET");

	/* A 16 KiB copy (8 + 8 pages + the ring page) works. */
	mb_ring_setup(_metadata, d, 8);
	x = mb_copy(dst + 5, src + 7, 16 * 1024, 0);
	mb_run(_metadata, d, &x, 1);
	mb_check_guest(_metadata, d, "16 KiB copy");

	/* Device memory needs no pins: a 1 MiB device copy works. */
	x = mb_copy(8 * MB_MIB, 0, MBLIT_XFER_MAX,
		    MBLIT_FLAG_DST_DEV | MBLIT_FLAG_SRC_DEV);
	mb_run(_metadata, d, &x, 1);
	x = mb_copy(100, src, 15 * MB_PAGE, MBLIT_FLAG_DST_DEV);
	mb_run(_metadata, d, &x, 1);
	mb_check_dev(_metadata, d, 0, MB_MIB, "device memory");

	/*
	 * FILL of 17 pages: with the ring page pinned, data page 16 (index
	 * 15) is the first over the budget.
	 */
	x = mb_fill(dst, 17 * MB_PAGE, 0x55667788, 0);
	addr = expect_budget_error(_metadata, d, &x, 3);
	EXPECT_EQ(dst + 15 * MB_PAGE, addr);

	mb_engine_reset(_metadata, d);
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_ring_setup(_metadata, d, 8);
	x = mb_fill(dst + 1, 3 * MB_PAGE, 0x99aabbcc, 0);
	mb_run(_metadata, d, &x, 1);
	mb_check_guest(_metadata, d, "after recovery");
	mb_engine_reset(_metadata, d);

	/* Back to the defaults: a new mdev has the default budget. */
	mb_close(_metadata, d);
	ASSERT_EQ(0, reload_mblit("")) TH_LOG("reload: %s", mdev_lib_error());
	self->reloaded = false;
	ASSERT_EQ(0, mdev_create("mblit-1m", uuid)) TH_LOG("%s",
							  mdev_lib_error());
	{
		struct mb_dev tmp;
		uint64_t v = 0;
		int ret;

		mb_init(&tmp);
		memcpy(tmp.uuid, uuid, sizeof(uuid));
		ret = mb_debugfs_try(&tmp, "pin_budget", &v);
		EXPECT_EQ(0, ret);
		EXPECT_EQ(1024, v);
	}
	EXPECT_EQ(0, mdev_remove(uuid)) TH_LOG("%s", mdev_lib_error());
}

/*
 * VFIO_DEVICE_RESET gives the budget back as CTRL.RESET does (docs/device.md
 * §11: the engine's pins are released by either reset).  Three rounds of a
 * command needing exactly the budget (it runs), then one over it
 * (ERR_PIN_BUDGET), then a device reset: nothing stays pinned, the device
 * is at its reset state with the budget unchanged, and the next round's
 * exact-budget command runs -- a page of budget kept by an error stop, or
 * not returned by the device reset, would make it fail.
 */
TEST_F_TIMEOUT(pin_budget, budget_recovers_through_device_reset, 300)
{
	struct mb_dev *d = &self->dev;
	const uint64_t dst = G(MB_MIB), src = G(0);
	struct mblit_desc x;
	uint64_t addr;
	unsigned int round;

	for (round = 0; round < 4; round++) {
		/* The descriptor's page + 15 data pages: exactly the budget. */
		mb_ring_setup(_metadata, d, 8);
		x = mb_fill(dst + 5 * MB_PAGE, 15 * MB_PAGE, 0x10203040 + round, 0);
		mb_run(_metadata, d, &x, 1);
		mb_check_guest(_metadata, d, "the exact budget");
		EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
		if (round == 3)
			break;

		switch (round) {
		case 0:		/* 32 data pages */
			x = mb_copy(dst, src, 64 * 1024, 0);
			addr = expect_budget_error(_metadata, d, &x, 1);
			EXPECT_TRUE((addr >= dst && addr < dst + 64 * 1024) ||
				    (addr >= src && addr < src + 64 * 1024))
				TH_LOG("ERR_ADDR %#llx", (unsigned long long)addr);
			break;
		case 1:		/* 17 destination pages */
			x = mb_fill(dst, 17 * MB_PAGE, 0x55667788, 0);
			addr = expect_budget_error(_metadata, d, &x, 1);
			EXPECT_EQ(dst + 15 * MB_PAGE, addr);
			break;
		default:	/* device -> guest, 16 pages + 1 byte */
			x = mb_copy(dst + MB_PAGE - 1, 0, 16 * MB_PAGE + 1,
				    MBLIT_FLAG_SRC_DEV);
			addr = expect_budget_error(_metadata, d, &x, 1);
			EXPECT_EQ(dst + 15 * MB_PAGE, addr);
		}

		ASSERT_EQ(0, ioctl(d->v.device_fd, VFIO_DEVICE_RESET))
			TH_LOG("VFIO_DEVICE_RESET: %s", strerror(errno));
		EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"))
			TH_LOG("round %u: pinned after VFIO_DEVICE_RESET", round);
		EXPECT_EQ(BUDGET, mb_debugfs(_metadata, d, "pin_budget"));
		mb_expect_reset_regs(_metadata, d, "after VFIO_DEVICE_RESET");
		EXPECT_EQ(0, mb_cfg_rd16(_metadata, d, PCI_COMMAND));
		EXPECT_FALSE(mb_irq_pending(_metadata, d));
		memset(d->md, 0, d->mem);
		mb_check_dev(_metadata, d, 0, MB_MIB, "device memory after reset");
		mb_check_guest(_metadata, d, "after VFIO_DEVICE_RESET");
		mb_set_command(_metadata, d, PCI_COMMAND_MASTER, 0);
		d->tail = 0;
	}

	/* Within the budget, guest and device memory both work. */
	x = mb_copy(dst + 5, src + 7, 16 * 1024, 0);
	mb_run(_metadata, d, &x, 1);
	x = mb_copy(100, src, 15 * MB_PAGE, MBLIT_FLAG_DST_DEV);
	mb_run(_metadata, d, &x, 1);
	mb_check_guest(_metadata, d, "after the resets");
	mb_check_dev(_metadata, d, 0, MB_MIB, "after the resets");
	EXPECT_EQ(0, mb_debugfs(_metadata, d, "pinned_pages"));
	mb_engine_reset(_metadata, d);
}

TEST_HARNESS_MAIN
